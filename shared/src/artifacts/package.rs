//! Packing a work tree into tar + zstd while hashing every file, and unpacking with verification.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{ArtifactError, Manifest, ManifestEntry};

/// zstd level 1: a CDK app's tree (mostly `node_modules` JavaScript) compresses almost as well as at the
/// default level 3, at about twice the speed; the archive is read once per environment, never kept long.
const ZSTD_LEVEL: i32 = 1;

/// Read size when packaging and verifying files.
const READ_BUFFER: usize = 256 << 10;

/// Compression workers beside the thread that reads, hashes and tars the files: zstd compresses whole
/// jobs in parallel and the output is the same for any worker count (one or more).
fn compression_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get().min(4)).unwrap_or(1))
}

/// A file selected for the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Relative path with `/` separators.
    pub rel: String,
    pub abs: PathBuf,
}

/// Top-level folders never packaged: git's database and aphex's own scratch space (run state, assemblies).
const EXCLUDED: [&str; 2] = [".git", ".aphex"];

/// The files to package under `root`, sorted: everything except `.git` (and `.aphex`) when `include` is empty, otherwise
/// what the patterns name (a file, a folder and all below it, or a glob).
pub fn select_files(root: &Path, include: &[String]) -> Result<Vec<Selected>, ArtifactError> {
    let set = include_set(include)?;
    let mut out = Vec::new();
    let walker = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name().into_iter();
    for entry in walker.filter_entry(|e| !(e.depth() == 1 && EXCLUDED.iter().any(|x| e.file_name() == *x))) {
        let entry = entry.map_err(|e| ArtifactError::Io {
            path: e.path().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf()),
            source: e.into_io_error().unwrap_or_else(|| io::Error::other("walk error")),
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = rel_string(entry.path().strip_prefix(root).unwrap_or(entry.path()));
        if set.as_ref().is_none_or(|s| s.is_match(&rel)) {
            out.push(Selected { rel, abs: entry.path().to_path_buf() });
        }
    }
    if out.is_empty() && !include.is_empty() {
        return Err(ArtifactError::NothingSelected { root: root.to_path_buf(), patterns: include.to_vec() });
    }
    Ok(out)
}

fn include_set(include: &[String]) -> Result<Option<GlobSet>, ArtifactError> {
    if include.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in include {
        let trimmed = pattern.trim_start_matches("./").trim_end_matches('/');
        // A pattern names the path itself and, when it is a folder, everything below it.
        for candidate in [trimmed.to_owned(), format!("{trimmed}/**")] {
            let glob = Glob::new(&candidate)
                .map_err(|source| ArtifactError::Glob { pattern: pattern.clone(), source })?;
            builder.add(glob);
        }
    }
    builder.build().map(Some).map_err(|source| ArtifactError::Glob { pattern: include.join(", "), source })
}

fn rel_string(path: &Path) -> String {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Write `files` as a tar + zstd stream into `out`, hashing each file as it streams through.
/// Returns the manifest, with the archive's own size and sha256.
pub fn pack<W: Write>(files: &[Selected], out: W) -> Result<Manifest, ArtifactError> {
    let counted = HashingWriter::new(out);
    let mut encoder =
        zstd::stream::write::Encoder::new(counted, ZSTD_LEVEL).map_err(ArtifactError::Archive)?;
    encoder.multithread(compression_workers()).map_err(ArtifactError::Archive)?;
    let mut tar = tar::Builder::new(encoder);
    tar.follow_symlinks(false);
    let mut entries = Vec::with_capacity(files.len());
    let mut total = 0u64;
    for file in files {
        let io_err = |source| ArtifactError::Io { path: file.abs.clone(), source };
        let meta = std::fs::symlink_metadata(&file.abs).map_err(io_err)?;
        let mode = unix_mode(&meta);
        let mut header = tar::Header::new_gnu();
        header.set_mode(mode);
        header.set_mtime(0); // deterministic archives: same tree, same bytes
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&file.abs).map_err(io_err)?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            tar.append_link(&mut header, &file.rel, &target).map_err(io_err)?;
            entries.push(ManifestEntry {
                path: file.rel.clone(),
                size: 0,
                sha256: String::new(),
                mode,
                link: Some(target.to_string_lossy().into_owned()),
            });
            continue;
        }
        let size = meta.len();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        let reader = std::fs::File::open(&file.abs).map_err(io_err)?;
        // Large reads: a few syscalls and hash updates per file instead of one per 8 KiB of tar's copy.
        let mut buffered = io::BufReader::with_capacity(READ_BUFFER, HashingReader::new(reader.take(size)));
        tar.append_data(&mut header, &file.rel, &mut buffered).map_err(io_err)?;
        let hashing = buffered.into_inner();
        if hashing.count != size {
            return Err(ArtifactError::Io {
                path: file.abs.clone(),
                source: io::Error::other(format!(
                    "changed size while packaging ({size} -> {})",
                    hashing.count
                )),
            });
        }
        total += size;
        entries.push(ManifestEntry {
            path: file.rel.clone(),
            size,
            sha256: hex::encode(hashing.hasher.finalize()),
            mode,
            link: None,
        });
    }
    let encoder = tar.into_inner().map_err(ArtifactError::Archive)?;
    let mut counted = encoder.finish().map_err(ArtifactError::Archive)?;
    counted.flush().map_err(ArtifactError::Archive)?;
    Ok(Manifest {
        version: 1,
        files: entries,
        total_bytes: total,
        archive_bytes: counted.count,
        archive_sha256: hex::encode(counted.hasher.finalize()),
        packed_at: None,
    })
}

#[cfg(unix)]
fn unix_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn unix_mode(meta: &std::fs::Metadata) -> u32 {
    if meta.permissions().readonly() { 0o444 } else { 0o644 }
}

/// Unpack a tar + zstd stream into `dest`, checking every file against `manifest` (sha256 and size),
/// refusing entries that are not listed or escape `dest`, and the archive's own digest at the end.
pub fn unpack<R: Read>(input: R, manifest: &Manifest, dest: &Path) -> Result<(), ArtifactError> {
    let mut expected: HashMap<&str, &ManifestEntry> =
        manifest.files.iter().map(|e| (e.path.as_str(), e)).collect();
    let hashing = HashingReader::new(input);
    let decoder = zstd::stream::read::Decoder::new(hashing).map_err(ArtifactError::Archive)?;
    let mut archive = tar::Archive::new(decoder);
    for entry in archive.entries().map_err(ArtifactError::Archive)? {
        let mut entry = entry.map_err(ArtifactError::Archive)?;
        let raw = entry.path().map_err(ArtifactError::Archive)?.into_owned();
        let rel = rel_string(&raw);
        if raw.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(ArtifactError::UnsafePath { path: raw.to_string_lossy().into_owned() });
        }
        let Some(want) = expected.remove(rel.as_str()) else {
            return Err(ArtifactError::NotInManifest { path: rel });
        };
        let target = dest.join(&raw);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|source| ArtifactError::Io { path: parent.to_path_buf(), source })?;
        }
        let io_err = |source| ArtifactError::Io { path: target.clone(), source };
        if entry.header().entry_type().is_symlink() {
            let link = entry.link_name().map_err(ArtifactError::Archive)?.unwrap_or_default().into_owned();
            let _ = std::fs::remove_file(&target);
            symlink(&link, &target).map_err(io_err)?;
            continue;
        }
        let mode = entry.header().mode().unwrap_or(0o644);
        let mut hasher = HashingWriter::new(std::fs::File::create(&target).map_err(io_err)?);
        io::copy(&mut entry, &mut hasher).map_err(io_err)?;
        let actual = hex::encode(hasher.hasher.finalize());
        if hasher.count != want.size {
            return Err(ArtifactError::SizeMismatch { path: rel, expected: want.size, actual: hasher.count });
        }
        if actual != want.sha256 {
            return Err(ArtifactError::Sha256Mismatch { path: rel, expected: want.sha256.clone(), actual });
        }
        set_mode(&target, mode).map_err(io_err)?;
    }
    if let Some(missing) = manifest.files.iter().find(|e| expected.contains_key(e.path.as_str())) {
        return Err(ArtifactError::MissingFromArchive { path: missing.path.clone() });
    }
    // Drain the zstd frame's tail so the archive digest covers every byte.
    let mut decoder = archive.into_inner();
    io::copy(&mut decoder, &mut io::sink()).map_err(ArtifactError::Archive)?;
    let mut buffered = decoder.finish();
    io::copy(&mut buffered, &mut io::sink()).map_err(ArtifactError::Archive)?;
    let mut hashing = buffered.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(ArtifactError::Archive)?;
    let actual = hex::encode(hashing.hasher.finalize());
    if actual != manifest.archive_sha256 {
        return Err(ArtifactError::ArchiveMismatch { expected: manifest.archive_sha256.clone(), actual });
    }
    Ok(())
}

/// Checks that the files under `root` are the ones `manifest` lists: same size and sha256 (links: same
/// target). Hashes on every core, since the files are independent. Files the manifest does not list are
/// not looked at.
///
/// With `packed_at` (no later than the packaging started, less the file timestamps' granularity), a file of the listed size whose status
/// and content last changed before then (ctime and mtime, which no write can leave older; ctime cannot
/// be set by users) is the very file that was hashed into the manifest, and is not read again; any other
/// file is hashed.
pub fn verify_files(
    manifest: &Manifest,
    root: &Path,
    packed_at: Option<std::time::SystemTime>,
) -> Result<(), ArtifactError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let per = manifest.files.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let running: Vec<_> = manifest
            .files
            .chunks(per)
            .map(|chunk| scope.spawn(move || verify_chunk(chunk, root, packed_at)))
            .collect();
        running.into_iter().try_for_each(|t| {
            t.join().unwrap_or_else(|_| Err(ArtifactError::Task("a verifying thread panicked".into())))
        })
    })
}

/// True when `meta` shows no change at or after `packed_at`.
#[cfg(unix)]
fn untouched_since(meta: &std::fs::Metadata, packed_at: std::time::SystemTime) -> bool {
    use std::os::unix::fs::MetadataExt;
    let at = |secs: i64, nanos: i64| {
        u64::try_from(secs).ok().map(|s| {
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(s)
                + std::time::Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
        })
    };
    let changed = at(meta.ctime(), meta.ctime_nsec());
    let modified = at(meta.mtime(), meta.mtime_nsec());
    matches!((changed, modified), (Some(c), Some(m)) if c < packed_at && m < packed_at)
}

#[cfg(not(unix))]
fn untouched_since(_meta: &std::fs::Metadata, _packed_at: std::time::SystemTime) -> bool {
    false
}

fn verify_chunk(
    entries: &[ManifestEntry],
    root: &Path,
    packed_at: Option<std::time::SystemTime>,
) -> Result<(), ArtifactError> {
    let mut buf = vec![0u8; READ_BUFFER];
    for want in entries {
        let path = root.join(&want.path);
        let io_err = |source| ArtifactError::Io { path: path.clone(), source };
        if let Some(link) = &want.link {
            let target = std::fs::read_link(&path).map_err(io_err)?;
            if target.to_string_lossy() != link.as_str() {
                return Err(ArtifactError::Sha256Mismatch {
                    path: want.path.clone(),
                    expected: format!("a link to {link}"),
                    actual: format!("a link to {}", target.display()),
                });
            }
            continue;
        }
        if let Some(packed_at) = packed_at {
            let meta = std::fs::metadata(&path).map_err(io_err)?;
            if meta.len() != want.size {
                return Err(ArtifactError::SizeMismatch {
                    path: want.path.clone(),
                    expected: want.size,
                    actual: meta.len(),
                });
            }
            if untouched_since(&meta, packed_at) {
                continue;
            }
        }
        let mut file = std::fs::File::open(&path).map_err(io_err)?;
        let mut hasher = Sha256::new();
        let mut count = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            count += n as u64;
        }
        if count != want.size {
            return Err(ArtifactError::SizeMismatch {
                path: want.path.clone(),
                expected: want.size,
                actual: count,
            });
        }
        let actual = hex::encode(hasher.finalize());
        if actual != want.sha256 {
            return Err(ArtifactError::Sha256Mismatch {
                path: want.path.clone(),
                expected: want.sha256.clone(),
                actual,
            });
        }
    }
    Ok(())
}

/// sha256 and size of everything `input` yields (an archive, without unpacking it).
pub fn digest<R: Read>(mut input: R) -> io::Result<(String, u64)> {
    let mut hashing = HashingReader::new(&mut input);
    io::copy(&mut hashing, &mut io::sink())?;
    Ok((hex::encode(hashing.hasher.finalize()), hashing.count))
}

#[cfg(unix)]
fn symlink(link: &Path, target: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(link, target)
}

#[cfg(not(unix))]
fn symlink(link: &Path, target: &Path) -> io::Result<()> {
    std::fs::copy(target.parent().unwrap_or(Path::new(".")).join(link), target).map(|_| ())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A blocking `Read` over the chunks an async producer sends through a bounded channel (a store's
/// download): the unpacker verifies and writes while the next chunks arrive. An `Err` chunk is a failed
/// read; a channel closed by the producer is the end of the object.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl std::fmt::Debug for ChannelReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelReader").field("buffered", &self.current.len()).finish()
    }
}

impl ChannelReader {
    /// Call `read` from a blocking thread, never from async code.
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self { rx, current: Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A blocking `Write` that hands fixed-size chunks to an async consumer through a bounded channel, so a
/// slow upload makes packaging wait instead of buffering.
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    chunk: usize,
}

impl std::fmt::Debug for ChannelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelWriter").field("buffered", &self.buf.len()).finish()
    }
}

impl ChannelWriter {
    /// A writer sending chunks of `chunk` bytes. Call from a blocking thread, never from async code.
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>, chunk: usize) -> Self {
        Self { tx, buf: Vec::with_capacity(chunk), chunk }
    }

    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk));
        self.tx
            .blocking_send(Ok(Bytes::from(full)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Send what is buffered; the consumer then sees the end of the stream.
    pub fn finish(mut self) -> io::Result<()> {
        self.send_buf()
    }

    /// Tell the consumer the stream failed, so it aborts instead of storing a truncated archive.
    pub fn fail(self, reason: &str) {
        let _ = self.tx.blocking_send(Err(io::Error::other(reason.to_owned())));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.chunk {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    fn selected(root: &Path, include: &[&str]) -> Vec<String> {
        let include: Vec<String> = include.iter().map(|s| s.to_string()).collect();
        select_files(root, &include).unwrap().into_iter().map(|s| s.rel).collect()
    }

    #[test]
    fn selection_defaults_to_everything_but_git_and_honours_patterns() {
        let dir = tree(&[
            (".git/HEAD", b"ref"),
            (".aphex/runs/r1/store/x", b"old"),
            ("cdk.json", b"{}"),
            ("lib/a.ts", b"a"),
            ("lib/deep/b.ts", b"b"),
            ("dist/x.js", b"x"),
            ("notes.md", b"n"),
            ("sub/.git/keep", b"k"),
        ]);
        let root = dir.path();
        assert_eq!(
            selected(root, &[]),
            ["cdk.json", "dist/x.js", "lib/a.ts", "lib/deep/b.ts", "notes.md", "sub/.git/keep"]
        );
        assert_eq!(selected(root, &["cdk.json", "lib"]), ["cdk.json", "lib/a.ts", "lib/deep/b.ts"]);
        assert_eq!(selected(root, &["./dist/", "**/*.md"]), ["dist/x.js", "notes.md"]);
        let err = select_files(root, &["nothing/**".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("matched no file"), "{err}");
    }

    fn roundtrip(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Manifest, Vec<u8>) {
        let src = tree(files);
        let sel = select_files(src.path(), &[]).unwrap();
        let mut archive = Vec::new();
        let manifest = pack(&sel, &mut archive).unwrap();
        (src, manifest, archive)
    }

    #[test]
    fn pack_then_unpack_restores_every_file_and_the_manifest_describes_them() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (_src, manifest, archive) = roundtrip(&[("a.txt", b"hello"), ("d/big.bin", &big), ("e", b"")]);
        assert_eq!(manifest.files.len(), 3);
        assert_eq!(manifest.total_bytes, 5 + 300_000);
        assert_eq!(manifest.archive_bytes, archive.len() as u64);
        assert_eq!(manifest.archive_sha256, hex::encode(Sha256::digest(&archive)));
        let hello = manifest.files.iter().find(|f| f.path == "a.txt").unwrap();
        assert_eq!(hello.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        let dest = tempfile::tempdir().unwrap();
        unpack(archive.as_slice(), &manifest, dest.path()).unwrap();
        assert_eq!(std::fs::read(dest.path().join("a.txt")).unwrap(), b"hello");
        assert_eq!(std::fs::read(dest.path().join("d/big.bin")).unwrap(), big);
        assert_eq!(std::fs::read(dest.path().join("e")).unwrap(), b"");
    }

    #[test]
    fn packing_is_deterministic() {
        let (_a, m1, a1) = roundtrip(&[("x", b"1"), ("y/z", b"2")]);
        let (_b, m2, a2) = roundtrip(&[("x", b"1"), ("y/z", b"2")]);
        assert_eq!(a1, a2);
        assert_eq!(m1, m2);
    }

    #[test]
    fn a_file_whose_digest_differs_from_the_manifest_is_named() {
        let (_src, mut manifest, archive) = roundtrip(&[("ok.txt", b"fine"), ("lib/app.js", b"code")]);
        let entry = manifest.files.iter_mut().find(|f| f.path == "lib/app.js").unwrap();
        entry.sha256 = "00".repeat(32);
        let dest = tempfile::tempdir().unwrap();
        let err = unpack(archive.as_slice(), &manifest, dest.path()).unwrap_err();
        assert!(
            matches!(err, ArtifactError::Sha256Mismatch { ref path, .. } if path == "lib/app.js"),
            "{err}"
        );
        assert!(err.to_string().contains("lib/app.js"));
    }

    #[test]
    fn unlisted_and_missing_files_are_refused() {
        let (_src, manifest, archive) = roundtrip(&[("a", b"1"), ("b", b"2")]);
        let mut fewer = manifest.clone();
        fewer.files.retain(|f| f.path != "b");
        let dest = tempfile::tempdir().unwrap();
        let err = unpack(archive.as_slice(), &fewer, dest.path()).unwrap_err();
        assert!(matches!(err, ArtifactError::NotInManifest { ref path } if path == "b"), "{err}");
        let mut more = manifest;
        more.files.push(ManifestEntry {
            path: "c".into(),
            size: 1,
            sha256: String::new(),
            mode: 0o644,
            link: None,
        });
        let err = unpack(archive.as_slice(), &more, tempfile::tempdir().unwrap().path()).unwrap_err();
        assert!(matches!(err, ArtifactError::MissingFromArchive { ref path } if path == "c"), "{err}");
    }

    #[test]
    fn verifying_in_place_hashes_every_file_changed_since_packaging() {
        let dir = tree(&[("a.txt", b"alpha"), ("lib/b.js", b"bravo"), ("c.txt", b"charlie")]);
        let sel = select_files(dir.path(), &[]).unwrap();
        let manifest = pack(&sel, &mut Vec::new()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let packed_at = std::time::SystemTime::now();
        verify_files(&manifest, dir.path(), Some(packed_at)).unwrap();
        verify_files(&manifest, dir.path(), None).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        // Same size, new content: only its hash can tell.
        std::fs::write(dir.path().join("lib/b.js"), b"BRAVO").unwrap();
        for since in [Some(packed_at), None] {
            let err = verify_files(&manifest, dir.path(), since).unwrap_err();
            assert!(
                matches!(err, ArtifactError::Sha256Mismatch { ref path, .. } if path == "lib/b.js"),
                "{err}"
            );
        }
        std::fs::write(dir.path().join("lib/b.js"), b"bravo").unwrap();
        std::fs::write(dir.path().join("c.txt"), b"charlie!").unwrap();
        let err = verify_files(&manifest, dir.path(), Some(packed_at)).unwrap_err();
        assert!(matches!(err, ArtifactError::SizeMismatch { ref path, .. } if path == "c.txt"), "{err}");
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        let err = verify_files(&manifest, dir.path(), Some(packed_at)).unwrap_err();
        assert!(err.to_string().contains("a.txt"), "{err}");
    }

    #[test]
    fn artifact_stamps_parse_back() {
        let at = super::super::ArtifactRef::new(
            "acme/app",
            "abc",
            time::macros::datetime!(2026-11-27 17:05:09.7 UTC),
        );
        let packed = at.packed_at().unwrap();
        assert_eq!(packed.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 1_795_799_109);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_and_modes_survive() {
        use std::os::unix::fs::PermissionsExt;
        let src = tree(&[("bin/tool", b"#!/bin/sh\n")]);
        std::fs::set_permissions(src.path().join("bin/tool"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("tool", src.path().join("bin/alias")).unwrap();
        let sel = select_files(src.path(), &[]).unwrap();
        let mut archive = Vec::new();
        let manifest = pack(&sel, &mut archive).unwrap();
        let dest = tempfile::tempdir().unwrap();
        unpack(archive.as_slice(), &manifest, dest.path()).unwrap();
        assert_eq!(std::fs::read_link(dest.path().join("bin/alias")).unwrap(), Path::new("tool"));
        let mode = std::fs::metadata(dest.path().join("bin/tool")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}
