//! Build artifacts: packaging (tar + zstd with a manifest) and the `ArtifactStore` trait (S3, local directory).
//!
//! The archive is produced and consumed as a stream: packaging writes into a bounded channel that the store
//! drains part by part, so memory stays flat whatever the size of the work tree.

mod package;
mod store;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use package::{ChannelReader, ChannelWriter, digest, pack, select_files, unpack, verify_files};
pub use store::{ArtifactStore, LocalStore, MemoryStore, S3Store, StoreError, s3_client_from_env};

/// Object name of the archive under an artifact prefix.
pub const ARCHIVE_NAME: &str = "artifacts.tar.zst";
/// Object name of the manifest under an artifact prefix.
pub const MANIFEST_NAME: &str = "manifest.json";

/// What an artifact archive holds: every file with its size and sha256, and the archive's own digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Manifest format version (1).
    pub version: u32,
    /// Files in archive order.
    pub files: Vec<ManifestEntry>,
    /// Sum of the file sizes, uncompressed.
    pub total_bytes: u64,
    /// Size of the compressed archive.
    pub archive_bytes: u64,
    /// sha256 of the compressed archive.
    pub archive_sha256: String,
    /// When packaging started (UTC, nanoseconds): files unchanged since then are the ones hashed here.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub packed_at: Option<time::OffsetDateTime>,
}

/// One file (or symbolic link) of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    /// Path relative to the work tree root, with `/` separators.
    pub path: String,
    /// Size in bytes (0 for links).
    pub size: u64,
    /// sha256 of the content (empty for links).
    pub sha256: String,
    /// Unix permission bits.
    pub mode: u32,
    /// Target of a symbolic link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Where a run's artifacts live in the store: `<repo>/<commit-sha>/<UTC timestamp>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    /// Key prefix, ending with `/`.
    pub prefix: String,
}

impl ArtifactRef {
    /// The prefix for `repo` (`owner/name` or any path-safe name) at `commit_sha`, stamped `at` (UTC).
    pub fn new(repo: &str, commit_sha: &str, at: time::OffsetDateTime) -> Self {
        let stamp = at
            .to_offset(time::UtcOffset::UTC)
            .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
            .unwrap_or_else(|_| at.unix_timestamp().to_string());
        let repo = repo.trim_matches('/');
        Self { prefix: format!("{repo}/{commit_sha}/{stamp}/") }
    }

    /// When the artifacts were packaged: the prefix's UTC timestamp (whole seconds, so never later than
    /// the packaging started).
    pub fn packed_at(&self) -> Option<std::time::SystemTime> {
        let stamp = self.prefix.trim_end_matches('/').rsplit('/').next()?;
        let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let at = time::PrimitiveDateTime::parse(stamp, format).ok()?.assume_utc();
        Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(at.unix_timestamp()).ok()?))
    }

    /// Key of the archive.
    pub fn archive_key(&self) -> String {
        format!("{}{ARCHIVE_NAME}", self.prefix)
    }

    /// Key of the manifest.
    pub fn manifest_key(&self) -> String {
        format!("{}{MANIFEST_NAME}", self.prefix)
    }
}

/// Errors of packaging, unpacking and verifying artifacts.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("build.artifacts pattern {pattern:?} is not a valid glob: {source}")]
    Glob { pattern: String, source: globset::Error },
    #[error("build.artifacts {patterns:?} matched no file under {root}; fix the patterns or the build")]
    NothingSelected { root: PathBuf, patterns: Vec<String> },
    #[error(
        "artifact file {path} does not match its manifest: sha256 {actual}, expected {expected} (the archive was altered or corrupted; rebuild)"
    )]
    Sha256Mismatch { path: String, expected: String, actual: String },
    #[error(
        "artifact file {path} has {actual} bytes, the manifest says {expected} (the archive was altered; rebuild)"
    )]
    SizeMismatch { path: String, expected: u64, actual: u64 },
    #[error("the archive holds {path}, which its manifest does not list (the archive was altered; rebuild)")]
    NotInManifest { path: String },
    #[error(
        "the manifest lists {path}, which the archive does not hold (the archive was truncated; rebuild)"
    )]
    MissingFromArchive { path: String },
    #[error("the archive's entry {path:?} escapes the destination directory")]
    UnsafePath { path: String },
    #[error("archive sha256 {actual} differs from the manifest's {expected} (corrupted download; retry)")]
    ArchiveMismatch { expected: String, actual: String },
    #[error("reading the archive: {0}")]
    Archive(std::io::Error),
    #[error("manifest {location} is not valid: {source}")]
    Manifest { location: String, source: serde_json::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("packaging task failed: {0}")]
    Task(String),
}

/// Package `root` (the whole tree except `.git`, or the `include` patterns) and upload the archive and its
/// manifest under `at`. Streams: memory stays bounded by the channel and the store's part buffers.
pub async fn upload(
    store: &dyn ArtifactStore,
    root: &std::path::Path,
    include: &[String],
    at: &ArtifactRef,
) -> Result<Manifest, ArtifactError> {
    let started = time::OffsetDateTime::now_utc();
    let files = select_files(root, include)?;
    // Four 1 MiB chunks in flight between the packer thread and the uploader.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let packer = tokio::task::spawn_blocking(move || {
        let mut writer = ChannelWriter::new(tx, 1 << 20);
        let result = pack(&files, &mut writer);
        match result {
            Ok(manifest) => writer.finish().map(|()| manifest).map_err(ArtifactError::Archive),
            Err(err) => {
                writer.fail(&err.to_string());
                Err(err)
            }
        }
    });
    let uploaded = store.put_stream(&at.archive_key(), rx).await;
    let mut manifest = packer.await.map_err(|e| ArtifactError::Task(e.to_string()))??;
    uploaded?;
    manifest.packed_at = Some(started);
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|source| ArtifactError::Manifest { location: store.location(&at.manifest_key()), source })?;
    store.put_bytes(&at.manifest_key(), json).await?;
    Ok(manifest)
}

/// Download the artifacts at `at` into `dest` and verify every file's sha256 against the manifest.
pub async fn download(
    store: &dyn ArtifactStore,
    at: &ArtifactRef,
    dest: &std::path::Path,
) -> Result<Manifest, ArtifactError> {
    let manifest_key = at.manifest_key();
    let bytes = store.get_bytes(&manifest_key).await?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|source| ArtifactError::Manifest { location: store.location(&manifest_key), source })?;
    std::fs::create_dir_all(dest).map_err(|source| ArtifactError::Io { path: dest.to_path_buf(), source })?;
    // Streamed: the unpacker decompresses, hashes and writes while the rest of the archive arrives, with
    // four 1 MiB chunks in flight; nothing is staged on disk.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let dest_owned = dest.to_path_buf();
    let expected = manifest.clone();
    let unpacker = tokio::task::spawn_blocking(move || {
        unpack(std::io::BufReader::new(ChannelReader::new(rx)), &expected, &dest_owned)
    });
    let fetched = store.get_stream(&at.archive_key(), tx).await;
    let unpacked = unpacker.await.map_err(|e| ArtifactError::Task(e.to_string()))?;
    // A failed read truncates the stream, so its own error is the one to report.
    fetched?;
    unpacked?;
    Ok(manifest)
}

/// Checks that the work tree `root` holds exactly the files of the artifacts at `at` (size and sha256 of
/// every file the manifest lists) and that the stored archive is intact (its sha256), without unpacking
/// it: a local run deploys from the tree its build ran in, which must still be what was packaged. With
/// `trust_unchanged`, files untouched since the packaging started are not hashed again (see
/// [`verify_files`]).
pub async fn verify_tree(
    store: &dyn ArtifactStore,
    at: &ArtifactRef,
    root: &std::path::Path,
    trust_unchanged: bool,
) -> Result<Manifest, ArtifactError> {
    let manifest_key = at.manifest_key();
    let bytes = store.get_bytes(&manifest_key).await?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|source| ArtifactError::Manifest { location: store.location(&manifest_key), source })?;
    // File timestamps come from a coarse clock that may lag a scheduler tick: 50 ms of margin on the
    // exact start, a second on the prefix's whole-second stamp (older manifests).
    let packed_at = match manifest.packed_at {
        Some(at) => Some(std::time::SystemTime::from(at) - std::time::Duration::from_millis(50)),
        None => at.packed_at().map(|t| t - std::time::Duration::from_secs(1)),
    }
    .filter(|_| trust_unchanged);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let archive = tokio::task::spawn_blocking(move || digest(ChannelReader::new(rx)));
    let files = {
        let (manifest, root) = (manifest.clone(), root.to_path_buf());
        tokio::task::spawn_blocking(move || verify_files(&manifest, &root, packed_at))
    };
    let fetched = store.get_stream(&at.archive_key(), tx).await;
    let archive = archive.await.map_err(|e| ArtifactError::Task(e.to_string()))?;
    let files = files.await.map_err(|e| ArtifactError::Task(e.to_string()))?;
    fetched?;
    let (actual, _) = archive.map_err(ArtifactError::Archive)?;
    if actual != manifest.archive_sha256 {
        return Err(ArtifactError::ArchiveMismatch { expected: manifest.archive_sha256.clone(), actual });
    }
    files?;
    Ok(manifest)
}
