//! Where artifacts and run records are kept: the `ArtifactStore` trait and its adapters (S3 with streaming
//! multipart upload, a local directory for `aphex run --local`, memory for tests).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Errors of an artifact store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{location} does not exist")]
    NotFound { location: String },
    #[error("{location}: {source}")]
    Io { location: String, source: io::Error },
    #[error("{operation} {location} failed: {message}")]
    S3 { operation: &'static str, location: String, message: String },
    #[error("the data stream for {location} failed: {source}")]
    Stream { location: String, source: io::Error },
}

/// A key/value object store for artifacts and run records. Keys use `/` separators.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Human-readable location of `key` (`s3://bucket/key`, a path), for messages.
    fn location(&self, key: &str) -> String;
    /// Store the chunks received until the channel closes; an `Err` chunk aborts without storing anything.
    /// Returns the number of bytes stored.
    async fn put_stream(&self, key: &str, body: mpsc::Receiver<io::Result<Bytes>>)
    -> Result<u64, StoreError>;
    /// Store a small object.
    async fn put_bytes(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError>;
    /// Read a small object.
    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Stream an object into `tx` chunk by chunk (the bounded channel paces the read). A consumer that
    /// hangs up early ends the read without an error (it reports its own); a failed read sends an `Err`
    /// chunk, so the consumer never mistakes a truncated object for a whole one. Returns the bytes sent.
    async fn get_stream(&self, key: &str, tx: mpsc::Sender<io::Result<Bytes>>) -> Result<u64, StoreError>;
    /// Keys under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

/// Size of the chunks a store reads an object in.
const READ_CHUNK: usize = 1 << 20;

/// A directory on the local disk: `aphex run --local` and tests.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        // Keys are produced by aphex, but never let one climb out of the root.
        let clean: PathBuf = key.split('/').filter(|p| !p.is_empty() && *p != "." && *p != "..").collect();
        self.root.join(clean)
    }

    fn io(&self, key: &str) -> impl Fn(io::Error) -> StoreError + '_ {
        let location = self.location(key);
        move |source| {
            if source.kind() == io::ErrorKind::NotFound {
                StoreError::NotFound { location: location.clone() }
            } else {
                StoreError::Io { location: location.clone(), source }
            }
        }
    }

    async fn create_parent(&self, path: &Path, key: &str) -> Result<(), StoreError> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(self.io(key))?;
        }
        Ok(())
    }
}

#[async_trait]
impl ArtifactStore for LocalStore {
    fn location(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    async fn put_stream(
        &self,
        key: &str,
        mut body: mpsc::Receiver<io::Result<Bytes>>,
    ) -> Result<u64, StoreError> {
        let path = self.path(key);
        self.create_parent(&path, key).await?;
        // Written beside the target and renamed, so a failed stream never leaves a partial object.
        let partial = path.with_extension("partial");
        let mut file = tokio::fs::File::create(&partial).await.map_err(self.io(key))?;
        let mut total = 0u64;
        while let Some(chunk) = body.recv().await {
            match chunk {
                Ok(bytes) => {
                    file.write_all(&bytes).await.map_err(self.io(key))?;
                    total += bytes.len() as u64;
                }
                Err(source) => {
                    drop(file);
                    let _ = tokio::fs::remove_file(&partial).await;
                    return Err(StoreError::Stream { location: self.location(key), source });
                }
            }
        }
        file.flush().await.map_err(self.io(key))?;
        drop(file);
        tokio::fs::rename(&partial, &path).await.map_err(self.io(key))?;
        Ok(total)
    }

    async fn put_bytes(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        let path = self.path(key);
        self.create_parent(&path, key).await?;
        tokio::fs::write(&path, body).await.map_err(self.io(key))
    }

    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        tokio::fs::read(self.path(key)).await.map_err(self.io(key))
    }

    async fn get_stream(&self, key: &str, tx: mpsc::Sender<io::Result<Bytes>>) -> Result<u64, StoreError> {
        let mut file = tokio::fs::File::open(self.path(key)).await.map_err(self.io(key))?;
        let mut total = 0u64;
        loop {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            match file.read_buf(&mut buf).await {
                Ok(0) => return Ok(total),
                Ok(n) => {
                    total += n as u64;
                    if tx.send(Ok(buf.freeze())).await.is_err() {
                        return Ok(total);
                    }
                }
                Err(source) => {
                    let message = source.to_string();
                    let _ = tx.send(Err(io::Error::new(source.kind(), message))).await;
                    return Err(StoreError::Io { location: self.location(key), source });
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        let keys = tokio::task::spawn_blocking(move || {
            walkdir::WalkDir::new(&root)
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .filter_map(|e| {
                    let rel = e.path().strip_prefix(&root).ok()?;
                    let key = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    key.starts_with(&prefix).then_some(key)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Io {
            location: self.location(""),
            source: io::Error::other(e.to_string()),
        })?;
        let mut keys = keys;
        keys.sort();
        Ok(keys)
    }
}

/// An in-memory store for unit tests of the steps.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replace an object (tests tamper with artifacts through this).
    pub fn insert(&self, key: &str, body: Vec<u8>) {
        self.objects.lock().unwrap_or_else(|p| p.into_inner()).insert(key.to_owned(), body);
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }
}

#[async_trait]
impl ArtifactStore for MemoryStore {
    fn location(&self, key: &str) -> String {
        format!("memory://{key}")
    }

    async fn put_stream(
        &self,
        key: &str,
        mut body: mpsc::Receiver<io::Result<Bytes>>,
    ) -> Result<u64, StoreError> {
        let mut all = Vec::new();
        while let Some(chunk) = body.recv().await {
            let chunk =
                chunk.map_err(|source| StoreError::Stream { location: self.location(key), source })?;
            all.extend_from_slice(&chunk);
        }
        let n = all.len() as u64;
        self.insert(key, all);
        Ok(n)
    }

    async fn put_bytes(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.insert(key, body);
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.get(key).ok_or_else(|| StoreError::NotFound { location: self.location(key) })
    }

    async fn get_stream(&self, key: &str, tx: mpsc::Sender<io::Result<Bytes>>) -> Result<u64, StoreError> {
        let body = Bytes::from(self.get_bytes(key).await?);
        let mut at = 0;
        while at < body.len() {
            let end = (at + READ_CHUNK).min(body.len());
            if tx.send(Ok(body.slice(at..end))).await.is_err() {
                break;
            }
            at = end;
        }
        Ok(at as u64)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        Ok(objects.keys().filter(|k| k.starts_with(prefix)).cloned().collect())
    }
}

/// An S3 bucket (production). Streams are uploaded with multipart upload, `PART_SIZE` per part and at
/// most `MAX_IN_FLIGHT` parts in flight, so memory stays near `PART_SIZE * (MAX_IN_FLIGHT + 1)`.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

const PART_SIZE: usize = 8 << 20;
// Two parts in flight keep an upload busy (the packer refills one while the other is sent); with the
// packer's compression buffers and the allocator's slack, peak memory stays well under 100 MB for any
// archive size (measured by scripts/bench-artifacts).
const MAX_IN_FLIGHT: usize = 2;

/// An S3 client from the environment; path-style addressing when `AWS_ENDPOINT_URL` points at an emulator
/// (virtual-host names such as `bucket.localhost` do not resolve).
pub async fn s3_client_from_env() -> aws_sdk_s3::Client {
    let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let endpoint_set = std::env::var_os("AWS_ENDPOINT_URL").is_some_and(|v| !v.is_empty())
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|v| !v.is_empty());
    let config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(endpoint_set).build();
    aws_sdk_s3::Client::from_conf(config)
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    fn s3_err<E: std::error::Error>(&self, operation: &'static str, key: &str, err: E) -> StoreError {
        // The SDK's Display is terse ("service error"); the source chain carries the S3 code and message.
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        StoreError::S3 { operation, location: self.location(key), message }
    }

    async fn put_small(&self, key: &str, body: Bytes) -> Result<u64, StoreError> {
        let n = body.len() as u64;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .map_err(|e| self.s3_err("PutObject", key, e))?;
        Ok(n)
    }

    async fn multipart(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        body: &mut mpsc::Receiver<io::Result<Bytes>>,
    ) -> Result<(u64, Vec<aws_sdk_s3::types::CompletedPart>), StoreError> {
        let mut in_flight = tokio::task::JoinSet::new();
        let mut parts = Vec::new();
        let mut total = 0u64;
        let mut number = 0i32;
        let mut pending = Some(first);
        let mut buf = BytesMut::with_capacity(PART_SIZE);
        loop {
            let part = match pending.take() {
                Some(p) => Some(p),
                None => {
                    while buf.len() < PART_SIZE {
                        match body.recv().await {
                            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                            Some(Err(source)) => {
                                return Err(StoreError::Stream { location: self.location(key), source });
                            }
                            None => break,
                        }
                    }
                    (!buf.is_empty()).then(|| buf.split().freeze())
                }
            };
            let Some(part) = part else { break };
            while in_flight.len() >= MAX_IN_FLIGHT {
                if let Some(done) = in_flight.join_next().await {
                    parts.push(self.joined(key, done)?);
                }
            }
            number += 1;
            total += part.len() as u64;
            let request = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(part.into());
            in_flight.spawn(async move {
                let out = request.send().await;
                (number, out)
            });
        }
        while let Some(done) = in_flight.join_next().await {
            parts.push(self.joined(key, done)?);
        }
        parts.sort_by_key(|p| p.part_number());
        Ok((total, parts))
    }

    #[allow(clippy::type_complexity)]
    fn joined(
        &self,
        key: &str,
        done: Result<
            (
                i32,
                Result<
                    aws_sdk_s3::operation::upload_part::UploadPartOutput,
                    aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::upload_part::UploadPartError>,
                >,
            ),
            tokio::task::JoinError,
        >,
    ) -> Result<aws_sdk_s3::types::CompletedPart, StoreError> {
        let (number, out) = done.map_err(|e| StoreError::S3 {
            operation: "UploadPart",
            location: self.location(key),
            message: e.to_string(),
        })?;
        let out = out.map_err(|e| self.s3_err("UploadPart", key, e))?;
        Ok(aws_sdk_s3::types::CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_owned))
            .build())
    }
}

#[async_trait]
impl ArtifactStore for S3Store {
    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn put_stream(
        &self,
        key: &str,
        mut body: mpsc::Receiver<io::Result<Bytes>>,
    ) -> Result<u64, StoreError> {
        // Fill the first part; a stream that ends before it is full is one PutObject.
        let mut first = BytesMut::with_capacity(PART_SIZE);
        let mut ended = false;
        while first.len() < PART_SIZE {
            match body.recv().await {
                Some(Ok(chunk)) => first.extend_from_slice(&chunk),
                Some(Err(source)) => return Err(StoreError::Stream { location: self.location(key), source }),
                None => {
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            return self.put_small(key, first.freeze()).await;
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.s3_err("CreateMultipartUpload", key, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        match self.multipart(key, &upload_id, first.freeze(), &mut body).await {
            Ok((total, parts)) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        aws_sdk_s3::types::CompletedMultipartUpload::builder().set_parts(Some(parts)).build(),
                    )
                    .send()
                    .await
                    .map_err(|e| self.s3_err("CompleteMultipartUpload", key, e))?;
                Ok(total)
            }
            Err(err) => {
                // Leave no half-uploaded parts behind to be billed.
                let _ = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                Err(err)
            }
        }
    }

    async fn put_bytes(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.put_small(key, Bytes::from(body)).await.map(|_| ())
    }

    async fn get_bytes(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let out = self.get(key).await?;
        let data = out.body.collect().await.map_err(|e| self.s3_err("GetObject", key, e))?;
        Ok(data.into_bytes().to_vec())
    }

    async fn get_stream(&self, key: &str, tx: mpsc::Sender<io::Result<Bytes>>) -> Result<u64, StoreError> {
        let mut body = self.get(key).await?.body;
        let mut total = 0u64;
        loop {
            match body.next().await {
                None => return Ok(total),
                Some(Ok(chunk)) => {
                    total += chunk.len() as u64;
                    if tx.send(Ok(chunk)).await.is_err() {
                        return Ok(total);
                    }
                }
                Some(Err(e)) => {
                    let err = self.s3_err("GetObject", key, e);
                    let _ = tx.send(Err(io::Error::other(err.to_string()))).await;
                    return Err(err);
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut pages =
            self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.s3_err("ListObjectsV2", prefix, e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        keys.sort();
        Ok(keys)
    }
}

impl S3Store {
    async fn get(&self, key: &str) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StoreError> {
        self.client.get_object().bucket(&self.bucket).key(key).send().await.map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                StoreError::NotFound { location: self.location(key) }
            } else {
                self.s3_err("GetObject", key, e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::{ArtifactError, ArtifactRef, download, upload, verify_tree};

    async fn check_roundtrip(store: &dyn ArtifactStore) {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("lib")).unwrap();
        std::fs::write(src.path().join("lib/app.js"), b"console.log(1)").unwrap();
        std::fs::write(src.path().join("cdk.json"), b"{}").unwrap();
        std::fs::create_dir_all(src.path().join(".git")).unwrap();
        std::fs::write(src.path().join(".git/HEAD"), b"x").unwrap();
        let at = ArtifactRef::new("acme/app", "abc123", time::macros::datetime!(2026-11-27 17:05:09 UTC));
        assert_eq!(at.prefix, "acme/app/abc123/20261127T170509Z/");
        let manifest = upload(store, src.path(), &[], &at).await.unwrap();
        assert_eq!(
            manifest.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["cdk.json", "lib/app.js"]
        );
        let keys = store.list("acme/app/abc123/").await.unwrap();
        assert_eq!(
            keys,
            [
                "acme/app/abc123/20261127T170509Z/artifacts.tar.zst",
                "acme/app/abc123/20261127T170509Z/manifest.json"
            ]
        );
        let dest = tempfile::tempdir().unwrap();
        let got = download(store, &at, dest.path()).await.unwrap();
        assert_eq!(got, manifest);
        assert_eq!(std::fs::read(dest.path().join("lib/app.js")).unwrap(), b"console.log(1)");
        assert!(!dest.path().join(".git").exists());
    }

    #[tokio::test]
    async fn local_and_memory_stores_roundtrip_artifacts() {
        check_roundtrip(&MemoryStore::new()).await;
        let dir = tempfile::tempdir().unwrap();
        check_roundtrip(&LocalStore::new(dir.path())).await;
    }

    #[tokio::test]
    async fn a_failed_stream_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let (tx, rx) = mpsc::channel(2);
        tx.send(Ok(Bytes::from_static(b"part"))).await.unwrap();
        tx.send(Err(io::Error::other("disk gone"))).await.unwrap();
        drop(tx);
        let err = store.put_stream("a/b", rx).await.unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
        assert!(store.list("").await.unwrap().is_empty());
        assert!(matches!(store.get_bytes("a/b").await, Err(StoreError::NotFound { .. })));
    }

    #[tokio::test]
    async fn a_tampered_archive_is_refused_naming_the_file() {
        let store = MemoryStore::new();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.txt"), b"original").unwrap();
        let at = ArtifactRef { prefix: "r/c/t/".into() };
        upload(&store, src.path(), &[], &at).await.unwrap();
        // Rebuild the archive from different content and keep the old manifest.
        std::fs::write(src.path().join("a.txt"), b"tampered").unwrap();
        let other = ArtifactRef { prefix: "r/c/u/".into() };
        upload(&store, src.path(), &[], &other).await.unwrap();
        store.insert(&at.archive_key(), store.get_bytes(&other.archive_key()).await.unwrap());
        let err = download(&store, &at, tempfile::tempdir().unwrap().path()).await.unwrap_err();
        assert!(matches!(err, ArtifactError::Sha256Mismatch { ref path, .. } if path == "a.txt"), "{err}");
    }

    #[tokio::test]
    async fn verifying_a_tree_in_place_catches_a_changed_file_and_a_changed_archive() {
        let store = MemoryStore::new();
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("lib")).unwrap();
        std::fs::write(src.path().join("lib/app.js"), b"console.log(1)").unwrap();
        std::fs::write(src.path().join("cdk.json"), b"{}").unwrap();
        let at = ArtifactRef { prefix: "r/c/t/".into() };
        let manifest = upload(&store, src.path(), &[], &at).await.unwrap();
        assert!(manifest.packed_at.is_some());
        for trust in [true, false] {
            assert_eq!(verify_tree(&store, &at, src.path(), trust).await.unwrap(), manifest);
        }
        // Edited after the packaging, same size: found by its hash even when unchanged files are trusted.
        std::fs::write(src.path().join("lib/app.js"), b"console.log(2)").unwrap();
        let err = verify_tree(&store, &at, src.path(), true).await.unwrap_err();
        assert!(
            matches!(err, ArtifactError::Sha256Mismatch { ref path, .. } if path == "lib/app.js"),
            "{err}"
        );
        std::fs::write(src.path().join("lib/app.js"), b"console.log(1)").unwrap();
        // The stored archive is checked too.
        store.insert(&at.archive_key(), b"not the archive".to_vec());
        let err = verify_tree(&store, &at, src.path(), true).await.unwrap_err();
        assert!(matches!(err, ArtifactError::ArchiveMismatch { .. }), "{err}");
    }
}
