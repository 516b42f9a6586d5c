//! File asset packaging and publishing: directories zipped deterministically (sorted entries, fixed
//! timestamps and modes, so the same tree always gives the same bytes), files uploaded as they are,
//! objects that already exist skipped.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;

use crate::assembly::{FileAsset, Packaging};

/// Why an asset could not be packaged.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read asset {asset} at {path}: {source}")]
    Io {
        asset: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot zip asset {asset} at {path}: {source}")]
    Zip {
        asset: String,
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("cannot walk asset {asset} at {path}: {source}")]
    Walk {
        asset: String,
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
}

/// The bytes to upload for `asset`.
pub fn package(asset: &FileAsset) -> Result<Vec<u8>, PackageError> {
    let io =
        |source| PackageError::Io { asset: asset.display_name.clone(), path: asset.path.clone(), source };
    match asset.packaging {
        Packaging::File => std::fs::read(&asset.path).map_err(io),
        Packaging::Zip if asset.path.is_file() => std::fs::read(&asset.path).map_err(io),
        Packaging::Zip => zip_dir(&asset.display_name, &asset.path),
    }
}

/// Zips a directory: entries sorted by path, timestamps 1980-01-01, modes 0644 (0755 for executables).
pub fn zip_dir(asset: &str, dir: &Path) -> Result<Vec<u8>, PackageError> {
    let zip_err = |source| PackageError::Zip { asset: asset.to_owned(), path: dir.to_owned(), source };
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let base = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name().follow_links(true) {
        let entry = entry.map_err(|source| PackageError::Walk {
            asset: asset.to_owned(),
            path: dir.to_owned(),
            source,
        })?;
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let name: String =
            rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        if entry.file_type().is_dir() {
            writer.add_directory(name, base.unix_permissions(0o755)).map_err(zip_err)?;
        } else {
            let bytes = std::fs::read(entry.path()).map_err(|source| PackageError::Io {
                asset: asset.to_owned(),
                path: entry.path().to_owned(),
                source,
            })?;
            writer.start_file(name, base.unix_permissions(mode_of(&entry))).map_err(zip_err)?;
            writer.write_all(&bytes).map_err(|source| PackageError::Io {
                asset: asset.to_owned(),
                path: entry.path().to_owned(),
                source,
            })?;
        }
    }
    Ok(writer.finish().map_err(zip_err)?.into_inner())
}

#[cfg(unix)]
fn mode_of(entry: &walkdir::DirEntry) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    match entry.metadata() {
        Ok(m) if m.permissions().mode() & 0o111 != 0 => 0o755,
        _ => 0o644,
    }
}

#[cfg(not(unix))]
fn mode_of(_: &walkdir::DirEntry) -> u32 {
    0o644
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zips_are_deterministic_and_complete() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("sub")).unwrap();
        std::fs::write(tmp.path().join("b.js"), "b").unwrap();
        std::fs::write(tmp.path().join("a.js"), "exports.handler = 1").unwrap();
        std::fs::write(tmp.path().join("sub/c.txt"), "c").unwrap();
        let one = zip_dir("x", tmp.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(tmp.path().join("b.js"), "b").unwrap(); // new mtime, same content
        let two = zip_dir("x", tmp.path()).unwrap();
        assert_eq!(one, two);
        let archive = zip::ZipArchive::new(Cursor::new(one)).unwrap();
        let names: Vec<_> =
            archive.file_names().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        assert_eq!(names, ["a.js", "b.js", "sub/", "sub/c.txt"]);
    }
}
