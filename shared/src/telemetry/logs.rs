//! Step logs in CloudWatch Logs: [`ShippingSink`] wraps a step's [`OutputSink`], masks every line
//! ([`Redactor`]) before it is printed or kept, and [`LogShipper`] sends the kept lines with
//! `PutLogEvents` to the log group of the pipeline (`APHEX_LOG_GROUP`, `/aphex/<pipeline>` from the
//! infra), one stream per run and stage (`<run-id>/<stage>`), every few seconds and at the end.
//!
//! Limits (CloudWatch Logs `PutLogEvents`): at most 10,000 events and 1,048,576 bytes per call, each
//! event counted as its UTF-8 length + 26 bytes, at most 256 KB per event; events in time order. Log
//! stream names may not hold `:` or `*`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::redact::Redactor;
use crate::steps::{OutputSink, StackUpdate};

/// Environment variable: the log group to ship step logs to (unset: not shipped).
pub const ENV_LOG_GROUP: &str = "APHEX_LOG_GROUP";
/// Events per `PutLogEvents` call.
pub const MAX_EVENTS: usize = 10_000;
/// Bytes per `PutLogEvents` call.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Overhead CloudWatch counts per event.
pub const EVENT_OVERHEAD: usize = 26;
/// Longest message kept (bytes); longer lines are cut (CloudWatch's limit is 256 KB per event).
pub const MAX_MESSAGE_BYTES: usize = 200_000;

/// The log group of a pipeline when the infra names none: `/aphex/<pipeline>`.
pub fn default_log_group(pipeline: &str) -> String {
    format!("/aphex/{pipeline}")
}

/// The stream of a run's stage: `<run-id>/<stage>`, `:` and `*` replaced by `-`.
pub fn stream_name(run_id: &str, stage: &str) -> String {
    format!("{run_id}/{stage}").replace([':', '*'], "-")
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub message: String,
}

/// Why logs could not be shipped.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("CloudWatch Logs {operation} on {group}: {message}")]
    Call { operation: &'static str, group: String, message: String },
}

/// Where log events go.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Makes sure the stream exists (and its group, when the store may create it).
    async fn ensure_stream(&self, group: &str, stream: &str) -> Result<(), LogsError>;
    /// Appends events (in time order, within the call limits).
    async fn put(&self, group: &str, stream: &str, events: &[LogEvent]) -> Result<(), LogsError>;
}

/// CloudWatch Logs through aws-sdk-cloudwatchlogs.
#[derive(Debug, Clone)]
pub struct CloudWatchLogs {
    pub client: aws_sdk_cloudwatchlogs::Client,
}

impl CloudWatchLogs {
    /// A client from the default credential chain and region; honours `AWS_ENDPOINT_URL`.
    pub async fn from_env() -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self { client: aws_sdk_cloudwatchlogs::Client::new(&shared) }
    }
}

#[async_trait]
impl LogStore for CloudWatchLogs {
    async fn ensure_stream(&self, group: &str, stream: &str) -> Result<(), LogsError> {
        use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
        let call = |operation: &'static str, message: String| LogsError::Call {
            operation,
            group: group.to_owned(),
            message,
        };
        let create_stream =
            || self.client.create_log_stream().log_group_name(group).log_stream_name(stream).send();
        match create_stream().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
            // The infra creates the group with its retention; without the infra (a local run) make it.
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                match self.client.create_log_group().log_group_name(group).send().await {
                    Ok(_) => {}
                    Err(e) if e.code() == Some("ResourceAlreadyExistsException") => {}
                    Err(e) => return Err(call("CreateLogGroup", super::sdk_message(&e))),
                }
                match create_stream().await {
                    Ok(_) => Ok(()),
                    Err(e) if e.code() == Some("ResourceAlreadyExistsException") => Ok(()),
                    Err(e) => Err(call("CreateLogStream", super::sdk_message(&e))),
                }
            }
            Err(e) => Err(call("CreateLogStream", super::sdk_message(&e))),
        }
    }

    async fn put(&self, group: &str, stream: &str, events: &[LogEvent]) -> Result<(), LogsError> {
        use aws_sdk_cloudwatchlogs::types::InputLogEvent;
        let events: Vec<InputLogEvent> = events
            .iter()
            .filter_map(|e| {
                InputLogEvent::builder().timestamp(e.timestamp_ms).message(&e.message).build().ok()
            })
            .collect();
        self.client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(events))
            .send()
            .await
            .map_err(|e| LogsError::Call {
                operation: "PutLogEvents",
                group: group.to_owned(),
                message: super::sdk_message(&e),
            })?;
        Ok(())
    }
}

/// Keeps streams in memory (tests).
#[derive(Debug, Default)]
pub struct MemoryLogs {
    pub streams: Mutex<BTreeMap<(String, String), Vec<LogEvent>>>,
}

#[async_trait]
impl LogStore for MemoryLogs {
    async fn ensure_stream(&self, group: &str, stream: &str) -> Result<(), LogsError> {
        if let Ok(mut s) = self.streams.lock() {
            s.entry((group.to_owned(), stream.to_owned())).or_default();
        }
        Ok(())
    }

    async fn put(&self, group: &str, stream: &str, events: &[LogEvent]) -> Result<(), LogsError> {
        if let Ok(mut s) = self.streams.lock() {
            s.entry((group.to_owned(), stream.to_owned())).or_default().extend(events.iter().cloned());
        }
        Ok(())
    }
}

/// Splits events into `PutLogEvents` batches within [`MAX_EVENTS`] and [`MAX_BATCH_BYTES`] (pure).
pub fn batches(events: &[LogEvent]) -> Vec<&[LogEvent]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        let size = e.message.len() + EVENT_OVERHEAD;
        if i > start && (i - start >= MAX_EVENTS || bytes + size > MAX_BATCH_BYTES) {
            out.push(&events[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}

/// An [`OutputSink`] that masks each line, passes it to `inner` and keeps it for the [`LogShipper`].
pub struct ShippingSink {
    inner: Arc<dyn OutputSink>,
    redactor: Redactor,
    /// False: mask and print only (no log group to ship to).
    keep: bool,
    kept: Mutex<Vec<(String, LogEvent)>>,
}

impl std::fmt::Debug for ShippingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShippingSink")
    }
}

impl ShippingSink {
    /// Masks, prints and keeps each line for a [`LogShipper`].
    pub fn new(inner: Arc<dyn OutputSink>, redactor: Redactor) -> Self {
        Self { inner, redactor, keep: true, kept: Mutex::new(Vec::new()) }
    }

    /// Masks and prints only.
    pub fn masking_only(inner: Arc<dyn OutputSink>, redactor: Redactor) -> Self {
        Self { inner, redactor, keep: false, kept: Mutex::new(Vec::new()) }
    }

    fn keep(&self, stage: &str, message: String) {
        if !self.keep {
            return;
        }
        if let Ok(mut kept) = self.kept.lock() {
            // Taken under the lock, so the kept events are in time order.
            let timestamp_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
            kept.push((stage.to_owned(), LogEvent { timestamp_ms, message }));
        }
    }

    fn take(&self) -> Vec<(String, LogEvent)> {
        self.kept.lock().map(|mut k| std::mem::take(&mut *k)).unwrap_or_default()
    }
}

impl OutputSink for ShippingSink {
    fn line(&self, stage: &str, line: &str) {
        let mut clean = self.redactor.apply(line);
        self.inner.line(stage, &clean);
        if clean.len() > MAX_MESSAGE_BYTES {
            let mut cut = MAX_MESSAGE_BYTES;
            while !clean.is_char_boundary(cut) {
                cut -= 1;
            }
            clean.truncate(cut);
        }
        self.keep(stage, clean);
    }

    fn stack(&self, stage: &str, stack: &str, update: &StackUpdate) {
        // Drawn by the inner sink as it likes (reason masked); kept as the plain line.
        let masked = match update {
            StackUpdate::Event { logical_id, resource_type, status, reason } => StackUpdate::Event {
                logical_id: logical_id.clone(),
                resource_type: resource_type.clone(),
                status: status.clone(),
                reason: reason.as_deref().map(|r| self.redactor.apply(r)),
            },
            other => other.clone(),
        };
        self.inner.stack(stage, stack, &masked);
        self.keep(stage, self.redactor.apply(&masked.line(stack)));
    }
}

/// Sends what a [`ShippingSink`] kept to `group`, a stream per run and stage.
pub struct LogShipper {
    pub sink: Arc<ShippingSink>,
    pub store: Arc<dyn LogStore>,
    pub group: String,
    pub run_id: String,
    created: tokio::sync::Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for LogShipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogShipper").field("group", &self.group).field("run_id", &self.run_id).finish()
    }
}

impl LogShipper {
    /// Wraps `inner`: use [`LogShipper::sink`] as the step's sink.
    pub fn new(
        inner: Arc<dyn OutputSink>,
        redactor: Redactor,
        store: Arc<dyn LogStore>,
        group: String,
        run_id: String,
    ) -> Arc<Self> {
        Arc::new(LogShipper {
            sink: Arc::new(ShippingSink::new(inner, redactor)),
            store,
            group,
            run_id,
            created: tokio::sync::Mutex::new(BTreeSet::new()),
        })
    }

    /// Sends every kept line. On failure the lines of that call are lost (a log must not fail a run)
    /// and the error is returned for the caller to print once.
    pub async fn flush(&self) -> Result<(), LogsError> {
        let kept = self.sink.take();
        let mut by_stream: BTreeMap<String, Vec<LogEvent>> = BTreeMap::new();
        for (stage, event) in kept {
            by_stream.entry(stream_name(&self.run_id, &stage)).or_default().push(event);
        }
        let mut created = self.created.lock().await;
        for (stream, events) in by_stream {
            if !created.contains(&stream) {
                self.store.ensure_stream(&self.group, &stream).await?;
                created.insert(stream.clone());
            }
            for batch in batches(&events) {
                self.store.put(&self.group, &stream, batch).await?;
            }
        }
        Ok(())
    }

    /// Flushes every `every` until the returned handle is aborted (then call [`LogShipper::flush`] once
    /// more for the rest).
    pub fn spawn_periodic(self: &Arc<Self>, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let shipper = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = shipper.flush().await {
                    eprintln!("warning: step logs not shipped: {e}");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::shell::MemorySink;

    fn event(len: usize) -> LogEvent {
        LogEvent { timestamp_ms: 0, message: "x".repeat(len) }
    }

    #[test]
    fn batches_respect_the_call_limits() {
        let check = |events: Vec<LogEvent>, expect: &[usize]| {
            let sizes: Vec<usize> = batches(&events).iter().map(|b| b.len()).collect();
            assert_eq!(sizes, expect);
        };
        check(vec![], &[]);
        check(vec![event(10); 3], &[3]);
        check(vec![event(1); MAX_EVENTS + 1], &[MAX_EVENTS, 1]);
        let big = MAX_BATCH_BYTES / 2;
        check(vec![event(big), event(big), event(big)], &[1, 1, 1]);
        check(vec![event(big - EVENT_OVERHEAD), event(big - EVENT_OVERHEAD), event(1)], &[2, 1]);
    }

    #[test]
    fn stream_names() {
        assert_eq!(stream_name("aphex-1f2e", "deploy-dev"), "aphex-1f2e/deploy-dev");
        assert_eq!(stream_name("r:1", "a*b"), "r-1/a-b");
    }

    #[tokio::test]
    async fn lines_are_masked_printed_and_shipped_per_stage() {
        let printed = Arc::new(MemorySink::default());
        let store = Arc::new(MemoryLogs::default());
        let shipper = LogShipper::new(
            printed.clone(),
            Redactor::new(["hunter2-secret".to_owned()]),
            store.clone(),
            "/aphex/p".into(),
            "run-1".into(),
        );
        shipper.sink.line("build", "token hunter2-secret in https://u:pw@github.com/a/b");
        shipper.sink.line("deploy-dev", "deployed");
        shipper.flush().await.unwrap();
        shipper.flush().await.unwrap();
        let streams = store.streams.lock().unwrap().clone();
        let build = &streams[&("/aphex/p".to_owned(), "run-1/build".to_owned())];
        assert_eq!(build.len(), 1);
        assert_eq!(build[0].message, "token *** in https://***@github.com/a/b");
        assert_eq!(streams[&("/aphex/p".to_owned(), "run-1/deploy-dev".to_owned())][0].message, "deployed");
        let printed = printed.lines.lock().unwrap().join("\n");
        assert!(!printed.contains("hunter2") && !printed.contains("pw@"), "{printed}");
    }
}
