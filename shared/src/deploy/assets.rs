//! File asset packaging and publishing: directories zipped as the CDK CLI zips them (so the same tree
//! gives the same bytes as `cdk deploy`), files uploaded as they are, objects that already exist
//! skipped.

use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Zips a directory as the CDK CLI publishes it (aws-cdk `writeZipFile`: fast-glob `**` with
/// `dot`, `onlyFiles`, `followSymbolicLinks`; each file added to a yazl archive with
/// `mtime: new Date(1980, 0, 1)`, `mode: stat.mode`, `forceDosTimestamp`), so the same folder gives
/// the same bytes as `cdk deploy` and the same object key holds the same content:
/// - regular files only (symbolic links followed), no folder entries;
/// - in fast-glob's order: breadth first, each folder's entries by name (libuv's scandir sorts them);
/// - each entry: version 2.0 to extract, UTF-8 flag, deflated at zlib level 6, DOS time 1980-01-01
///   00:00, no extra fields; in the central directory, made by Unix (`3 << 8 | 63`), the file's
///   `st_mode` (type bits included) in the high 16 bits of the external attributes.
pub fn zip_dir(asset: &str, dir: &Path) -> Result<Vec<u8>, PackageError> {
    let io =
        |path: &Path, source| PackageError::Io { asset: asset.to_owned(), path: path.to_owned(), source };
    let mut out: Vec<u8> = Vec::new();
    let mut central: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for (name, path) in cli_order(dir).map_err(|(p, e)| io(&p, e))? {
        let data = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let mode = file_mode(&path).map_err(|e| io(&path, e))?;
        let crc = crc32fast::hash(&data);
        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        deflate.write_all(&data).map_err(|e| io(&path, e))?;
        let compressed = deflate.finish().map_err(|e| io(&path, e))?;
        let too_big = |n: usize| {
            u32::try_from(n)
                .map_err(|_| io(&path, std::io::Error::other("over 4 GiB: zip64 is not supported")))
        };
        let (csize, usize_, offset) = (too_big(compressed.len())?, too_big(data.len())?, too_big(out.len())?);
        let name_len =
            u16::try_from(name.len()).map_err(|_| io(&path, std::io::Error::other("file name too long")))?;
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        out.extend_from_slice(&FLAGS.to_le_bytes());
        out.extend_from_slice(&8u16.to_le_bytes()); // deflate
        out.extend_from_slice(&DOS_TIME.to_le_bytes());
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&csize.to_le_bytes());
        out.extend_from_slice(&usize_.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // no extra field
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&compressed);
        // Its central directory record.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&(3u16 << 8 | 63).to_le_bytes()); // made by Unix, spec 6.3
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&FLAGS.to_le_bytes());
        central.extend_from_slice(&8u16.to_le_bytes());
        central.extend_from_slice(&DOS_TIME.to_le_bytes());
        central.extend_from_slice(&DOS_DATE.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&csize.to_le_bytes());
        central.extend_from_slice(&usize_.to_le_bytes());
        central.extend_from_slice(&name_len.to_le_bytes());
        central.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
        central.extend_from_slice(&(mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        count = count
            .checked_add(1)
            .ok_or_else(|| io(dir, std::io::Error::other("over 65534 files: zip64 is not supported")))?;
    }
    let cd_offset = u32::try_from(out.len()).map_err(|_| io(dir, std::io::Error::other("over 4 GiB")))?;
    let cd_size = u32::try_from(central.len()).map_err(|_| io(dir, std::io::Error::other("over 4 GiB")))?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // no comment
    Ok(out)
}

/// General purpose flags: file names are UTF-8 (yazl sets it on every entry).
const FLAGS: u16 = 1 << 11;
/// 1980-01-01 00:00:00 as a DOS date and time.
const DOS_DATE: u16 = 1 | 1 << 5;
const DOS_TIME: u16 = 0;

/// The files under `dir` (symbolic links followed) as fast-glob lists them: breadth first, each
/// folder's entries in byte order; with their `/`-separated names.
fn cli_order(dir: &Path) -> Result<Vec<(String, PathBuf)>, (PathBuf, std::io::Error)> {
    let mut files = Vec::new();
    let mut queue: std::collections::VecDeque<(PathBuf, String)> = [(dir.to_owned(), String::new())].into();
    while let Some((folder, prefix)) = queue.pop_front() {
        let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(&folder)
            .map_err(|e| (folder.clone(), e))?
            .collect::<Result<_, _>>()
            .map_err(|e| (folder.clone(), e))?;
        entries.sort_by(|a, b| a.file_name().as_encoded_bytes().cmp(b.file_name().as_encoded_bytes()));
        for entry in entries {
            let path = entry.path();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            let meta = std::fs::metadata(&path).map_err(|e| (path.clone(), e))?;
            if meta.is_dir() {
                queue.push_back((path, format!("{name}/")));
            } else if meta.is_file() {
                files.push((name, path));
            }
        }
    }
    Ok(files)
}

/// `stat`'s `st_mode` (type and permission bits), as the CLI passes it to yazl.
#[cfg(unix)]
fn file_mode(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.mode() & 0xffff)
}

#[cfg(not(unix))]
fn file_mode(_: &Path) -> std::io::Result<u32> {
    Ok(0o100644)
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
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(one)).unwrap();
        let names: Vec<_> = archive.file_names().map(str::to_owned).collect();
        // No folder entries (the CLI's zip has none), root files first.
        assert_eq!(names, ["a.js", "b.js", "sub/c.txt"]);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut archive.by_name("a.js").unwrap(), &mut text).unwrap();
        assert_eq!(text, "exports.handler = 1");
        assert_eq!(archive.by_name("sub/c.txt").unwrap().unix_mode().map(|m| m & 0o170000), Some(0o100000));
    }
}
