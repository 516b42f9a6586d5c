//! The delivery ledger: one small record per GitHub delivery id, kept in S3 where it outlives the
//! Workflow it started (Argo deletes a finished Workflow after its `ttlStrategy`, 3–7 days), so a
//! redelivery from GitHub's UI weeks later is still "already started".
//!
//! A record is written with a conditional put (`If-None-Match: *`: S3 refuses with 412 when the key
//! exists, see the S3 documentation on conditional writes), so of two concurrent deliveries of one id
//! exactly one claims it. The record's state makes a crash safe: `pending` is written before the
//! Workflow is created and `started` after; a retry that finds `pending` creates the Workflow again,
//! and the API server's 409 on the Workflow's name (derived from the delivery id) keeps that to one run.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata as _;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where the records live in the bucket: `<LEDGER_PREFIX><template>/<workflow name>.json`.
pub const LEDGER_PREFIX: &str = "aphex/webhook-deliveries/";

/// How far a delivery got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Claimed; the Workflow may or may not exist yet.
    Pending,
    /// The Workflow was created (or already existed).
    Started,
}

/// One delivery's record, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub delivery: String,
    pub state: EntryState,
    /// The Workflow's name and namespace.
    pub workflow: String,
    pub namespace: String,
    /// The WorkflowTemplate the run was started from (records of pipelines sharing a bucket stay apart).
    pub template: String,
    /// The commit the run builds.
    pub commit: String,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

impl Entry {
    /// The object key of this record.
    pub fn key(&self) -> String {
        format!("{LEDGER_PREFIX}{}/{}.json", self.template, self.workflow)
    }
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No record existed; this call wrote the `pending` one.
    New,
    /// A record exists (a redelivery, or a concurrent or crashed attempt).
    Exists(Entry),
}

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("could not {action} the delivery record s3://{bucket}/{key}: {message}")]
    S3 { action: &'static str, bucket: String, key: String, message: String },
    #[error("the delivery record s3://{bucket}/{key} is not a ledger entry: {source}")]
    Corrupt {
        bucket: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{0}")]
    Injected(String),
}

/// The ledger's two operations.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Writes `entry` (state `pending`) unless a record of its delivery exists, which is returned.
    async fn claim(&self, entry: &Entry) -> Result<Claim, LedgerError>;
    /// Overwrites the record with `entry` (state `started`).
    async fn record(&self, entry: &Entry) -> Result<(), LedgerError>;
}

/// No ledger (no bucket configured): every claim is new, and the Workflow-name 409 is the only
/// deduplication, which ends when Argo deletes the Workflow.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLedger;

#[async_trait]
impl Ledger for NoLedger {
    async fn claim(&self, _entry: &Entry) -> Result<Claim, LedgerError> {
        Ok(Claim::New)
    }
    async fn record(&self, _entry: &Entry) -> Result<(), LedgerError> {
        Ok(())
    }
}

/// The S3 adapter.
#[derive(Debug, Clone)]
pub struct S3Ledger {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Ledger {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    fn error(&self, action: &'static str, key: &str, message: String) -> LedgerError {
        LedgerError::S3 { action, bucket: self.bucket.clone(), key: key.to_owned(), message }
    }

    async fn get(&self, key: &str) -> Result<Entry, LedgerError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("read", key, sdk_message(&e)))?;
        let bytes =
            object.body.collect().await.map_err(|e| self.error("read", key, e.to_string()))?.into_bytes();
        serde_json::from_slice(&bytes).map_err(|source| LedgerError::Corrupt {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            source,
        })
    }

    async fn put(
        &self,
        entry: &Entry,
        if_none_match: bool,
    ) -> Result<(), aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::put_object::PutObjectError>> {
        // Serializing a struct of strings cannot fail.
        let body = serde_json::to_vec_pretty(entry).unwrap_or_default();
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(entry.key())
            .content_type("application/json")
            .body(body.into());
        if if_none_match {
            put = put.if_none_match("*");
        }
        put.send().await.map(|_| ())
    }
}

fn sdk_message<E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + 'static>(
    e: &aws_sdk_s3::error::SdkError<E>,
) -> String {
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or("no message")),
        None => aws_smithy_types::error::display::DisplayErrorContext(e).to_string(),
    }
}

#[async_trait]
impl Ledger for S3Ledger {
    async fn claim(&self, entry: &Entry) -> Result<Claim, LedgerError> {
        let key = entry.key();
        match self.put(entry, true).await {
            Ok(()) => Ok(Claim::New),
            // 412: the key exists. 409 (ConditionalRequestConflict): a concurrent conditional write
            // of the same key is in flight; either way the record is someone else's.
            Err(e) if matches!(e.raw_response().map(|r| r.status().as_u16()), Some(412 | 409)) => {
                Ok(Claim::Exists(self.get(&key).await?))
            }
            Err(e) => Err(self.error("write", &key, sdk_message(&e))),
        }
    }

    async fn record(&self, entry: &Entry) -> Result<(), LedgerError> {
        self.put(entry, false).await.map_err(|e| self.error("write", &entry.key(), sdk_message(&e)))
    }
}

/// An in-memory ledger that behaves as the S3 adapter (conditional create, overwrite), with
/// injectable failures for the crash cases.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default)]
struct MemoryState {
    entries: BTreeMap<String, Entry>,
    fail: Option<String>,
}

impl MemoryLedger {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record of `delivery`, if any.
    pub fn entry(&self, delivery: &str) -> Option<Entry> {
        self.state().entries.values().find(|e| e.delivery == delivery).cloned()
    }

    /// Stores `entry` as it is (a record left by an earlier attempt).
    pub fn insert(&self, entry: Entry) {
        self.state().entries.insert(entry.key(), entry);
    }

    /// Makes every later call fail with `message` (S3 unreachable); `None` heals it.
    pub fn fail_with(&self, message: Option<&str>) {
        self.state().fail = message.map(str::to_owned);
    }

    fn check(&self) -> Result<(), LedgerError> {
        match &self.state().fail {
            Some(m) => Err(LedgerError::Injected(m.clone())),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn claim(&self, entry: &Entry) -> Result<Claim, LedgerError> {
        self.check()?;
        let mut state = self.state();
        if let Some(existing) = state.entries.get(&entry.key()) {
            return Ok(Claim::Exists(existing.clone()));
        }
        state.entries.insert(entry.key(), entry.clone());
        Ok(Claim::New)
    }

    async fn record(&self, entry: &Entry) -> Result<(), LedgerError> {
        self.check()?;
        self.state().entries.insert(entry.key(), entry.clone());
        Ok(())
    }
}
