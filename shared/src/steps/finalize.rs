//! `aphex step finalize`: the run record (JSON in the artifact store), the run's metrics (CloudWatch
//! `PutMetricData`; Embedded Metric Format lines for a local run's file), and the pipeline status event (`source: aphex.pipeline`) for notifications.

use std::io::Write;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::validate::{RunStart, start_key};
use super::{EventPublisher, Outputs, RunInfo, StageRecord, Status, StepContext, StepError, record_key};
use crate::artifacts::StoreError;
use crate::config::Config;
use crate::telemetry::metrics::{Datum, MetricPublisher};

/// Stage id.
pub const STAGE: &str = "finalize";
/// `source` of pipeline status events (the notify module owns the event's contract).
pub use crate::notify::PIPELINE_SOURCE as EVENT_SOURCE;
/// CloudWatch namespace of the metrics (one source: [`crate::telemetry::metrics::NAMESPACE`]).
pub use crate::telemetry::metrics::NAMESPACE;

/// The record of a whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    #[serde(flatten)]
    pub run: RunInfo,
    /// What started the run: `push` (webhook) or `local`.
    pub trigger: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_stage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: time::OffsetDateTime,
    pub duration_ms: u64,
    /// Every stage that ran, in start order, then the planned stages that did not run (skipped).
    pub stages: Vec<StageRecord>,
    /// Stack outputs per environment.
    pub outputs: indexmap::IndexMap<String, Outputs>,
}

/// Builds the run record from the stage records. `workflow_status` is Argo's `workflow.status` (a run
/// can fail outside any step: a pod evicted for good, a deadline); `planned` lists stage ids that should
/// have run, so the record shows which were skipped.
pub fn build_record(
    start: Option<RunStart>,
    run: &RunInfo,
    mut stages: Vec<StageRecord>,
    workflow_status: Option<&str>,
    planned: &[String],
    now: time::OffsetDateTime,
) -> RunRecord {
    stages.sort_by_key(|s| s.started_at);
    let failed = stages.iter().find(|s| s.status == Status::Failed);
    let argo_failed = workflow_status.is_some_and(|s| matches!(s, "Failed" | "Error"));
    let status = if failed.is_some() || argo_failed { Status::Failed } else { Status::Succeeded };
    let (failed_stage, reason) = match failed {
        Some(s) => (Some(s.id.clone()), s.error.clone()),
        None if argo_failed => {
            (None, Some(format!("the workflow ended with status {}", workflow_status.unwrap_or_default())))
        }
        None => (None, None),
    };
    for id in planned {
        if !stages.iter().any(|s| &s.id == id) {
            stages.push(StageRecord::skipped(id, None, now));
        }
    }
    let started_at =
        start.map(|s| s.started_at).or_else(|| stages.first().map(|s| s.started_at)).unwrap_or(now);
    let outputs = stages.iter().filter_map(|s| Some((s.env.clone()?, s.outputs.clone()?))).collect();
    let trigger = match run.delivery_id.as_deref() {
        Some("local") => "local",
        Some(_) => "push",
        None => "manual",
    };
    RunRecord {
        run: run.clone(),
        trigger: trigger.to_owned(),
        status,
        failed_stage,
        reason,
        started_at,
        ended_at: now,
        duration_ms: super::ms((now - started_at).unsigned_abs()),
        stages,
        outputs,
    }
}

/// The EMF lines of a run: one for the run counters, one per stage duration, one per stack.
pub fn emf_lines(record: &RunRecord) -> Vec<String> {
    let ts = (record.ended_at.unix_timestamp_nanos() / 1_000_000) as i64;
    let pipeline = &record.run.pipeline;
    let metric = |dims: &[&str], metrics: &[(&str, &str)]| {
        json!({
            "Timestamp": ts,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dims],
                "Metrics": metrics.iter().map(|(n, u)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
            }],
        })
    };
    let failed = u32::from(record.status == Status::Failed);
    let deploys =
        record.stages.iter().flat_map(|s| &s.stacks).filter(|s| s.status != Status::Skipped).count();
    let mut lines = vec![json!({
        "_aws": metric(&["Pipeline"], &[("RunsStarted", "Count"), ("RunsSucceeded", "Count"), ("RunsFailed", "Count"), ("Deploys", "Count"), ("RunDuration", "Milliseconds")]),
        "Pipeline": pipeline,
        "RunsStarted": 1,
        "RunsSucceeded": 1 - failed,
        "RunsFailed": failed,
        "Deploys": deploys,
        "RunDuration": record.duration_ms,
        "RunId": record.run.run_id,
        "Commit": record.run.commit_sha,
    })];
    for stage in record.stages.iter().filter(|s| s.status != Status::Skipped) {
        lines.push(json!({
            "_aws": metric(&["Pipeline", "Stage"], &[("StageDuration", "Milliseconds")]),
            "Pipeline": pipeline,
            "Stage": stage.id,
            "StageDuration": stage.duration_ms,
            "Status": stage.status,
            "RunId": record.run.run_id,
        }));
        for stack in &stage.stacks {
            lines.push(json!({
                "_aws": metric(&["Pipeline", "Environment", "Stack"], &[("StackDuration", "Milliseconds"), ("Deploys", "Count")]),
                "Pipeline": pipeline,
                "Environment": stage.env.clone().unwrap_or_default(),
                "Stack": stack.name,
                "StackDuration": stack.duration_ms,
                "Deploys": 1,
                "Status": stack.status,
                "RunId": record.run.run_id,
            }));
        }
    }
    lines.into_iter().map(|l| l.to_string()).collect()
}

/// The CloudWatch data points of a run, the same set as [`emf_lines`]: with dimension `Pipeline`:
/// `RunsStarted`, `RunsSucceeded`, `RunsFailed` (0 or 1; the infra's `RunsFailedAlarm` sums it), `Deploys`
/// (Count) and `RunDuration` (Milliseconds); per stage that ran, `StageDuration` with `Pipeline`,
/// `Stage`; per stack, `StackDuration` and `Deploys` with `Pipeline`, `Environment`, `Stack`.
pub fn run_metrics(record: &RunRecord) -> Vec<Datum> {
    use crate::telemetry::metrics::{DIMENSION_PIPELINE, RUNS_FAILED, Unit};
    let at = record.ended_at;
    let pipeline = (DIMENSION_PIPELINE.to_owned(), record.run.pipeline.clone());
    let datum = |name: &str, dimensions: Vec<(String, String)>, value: f64, unit: Unit| Datum {
        name: name.to_owned(),
        dimensions,
        value,
        unit,
        timestamp: at,
    };
    let failed = f64::from(u8::from(record.status == Status::Failed));
    let deploys =
        record.stages.iter().flat_map(|s| &s.stacks).filter(|s| s.status != Status::Skipped).count() as f64;
    let run = vec![pipeline.clone()];
    let mut data = vec![
        datum("RunsStarted", run.clone(), 1.0, Unit::Count),
        datum("RunsSucceeded", run.clone(), 1.0 - failed, Unit::Count),
        datum(RUNS_FAILED, run.clone(), failed, Unit::Count),
        datum("Deploys", run.clone(), deploys, Unit::Count),
        datum("RunDuration", run, record.duration_ms as f64, Unit::Milliseconds),
    ];
    for stage in record.stages.iter().filter(|s| s.status != Status::Skipped) {
        let dims = vec![pipeline.clone(), ("Stage".to_owned(), stage.id.clone())];
        data.push(datum("StageDuration", dims, stage.duration_ms as f64, Unit::Milliseconds));
        for stack in &stage.stacks {
            let dims = vec![
                pipeline.clone(),
                ("Environment".to_owned(), stage.env.clone().unwrap_or_default()),
                ("Stack".to_owned(), stack.name.clone()),
            ];
            data.push(datum("StackDuration", dims.clone(), stack.duration_ms as f64, Unit::Milliseconds));
            data.push(datum("Deploys", dims, 1.0, Unit::Count));
        }
    }
    data
}

/// The pipeline status event (`aphex::notify::PipelineStatusEvent`, the contract the notify Lambda
/// reads): detail-type and detail. `config` adds each environment's account and region and the
/// notification settings; without it the event still says what happened.
pub fn status_event(record: &RunRecord, config: Option<&Config>) -> (&'static str, serde_json::Value) {
    use crate::notify::{FailedStack, NotificationSettings, PipelineStatusEvent, RunStatus};
    let status = if record.status == Status::Failed { RunStatus::Failed } else { RunStatus::Succeeded };
    let failed = record.failed_stage.as_ref().and_then(|id| record.stages.iter().find(|s| &s.id == id));
    let environment = failed.and_then(|s| s.env.clone());
    let target = environment.as_deref().and_then(|env| config.and_then(|c| c.environment(env)));
    let mut event = PipelineStatusEvent::new(
        record.run.run_id.clone(),
        record.run.pipeline.clone(),
        record.run.repo_url.clone(),
        record.run.branch.clone(),
        record.run.commit_sha.clone(),
        status,
    );
    event.author = record.run.pusher.clone().filter(|p| !p.is_empty());
    event.stage = record.failed_stage.clone();
    event.environment = environment;
    event.started_at = Some(record.started_at);
    event.duration_seconds = Some(record.duration_ms / 1000);
    event.failed_stack =
        failed.and_then(|s| s.stacks.iter().find(|k| k.status == Status::Failed)).map(|k| FailedStack {
            stack_name: k.name.clone(),
            stack_id: None,
            account: target.map(|e| e.account.clone()).unwrap_or_default(),
            region: target.map(|e| e.region.clone()).unwrap_or_default(),
            status: k.action.clone(),
        });
    event.failure_reason = record.reason.clone();
    event.argo_url = std::env::var("APHEX_ARGO_URL").ok().filter(|u| !u.is_empty());
    if let Some(notifications) = config.and_then(|c| c.notifications.as_ref()) {
        event.notifications = NotificationSettings::from(notifications);
    }
    let detail = serde_json::to_value(&event).unwrap_or_else(|_| json!({}));
    (event.detail_type(), detail)
}

/// Runs finalize: reads the stage records, writes the run record, writes EMF to `metrics_out`, publishes
/// the run's metrics to CloudWatch (when `metrics` is given) and the status event (when a publisher is
/// given). Returns the record.
pub async fn run(
    ctx: &StepContext,
    workflow_status: Option<&str>,
    planned: &[String],
    publisher: Option<&dyn EventPublisher>,
    metrics_out: &mut (dyn Write + Send),
    metrics: Option<&dyn MetricPublisher>,
) -> Result<RunRecord, StepError> {
    let prefix = format!("{}stages/", ctx.run_prefix());
    let mut stages = Vec::new();
    for key in ctx.store.list(&prefix).await? {
        let bytes = ctx.store.get_bytes(&key).await?;
        match serde_json::from_slice::<StageRecord>(&bytes) {
            Ok(s) => stages.push(s),
            Err(e) => {
                ctx.say(STAGE, &format!("ignoring {}: not a stage record ({e})", ctx.store.location(&key)))
            }
        }
    }
    let start = match ctx.store.get_bytes(&start_key(&ctx.run.run_id)).await {
        Ok(bytes) => serde_json::from_slice(&bytes).ok(),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let record =
        build_record(start, &ctx.run, stages, workflow_status, planned, time::OffsetDateTime::now_utc());
    let json = serde_json::to_vec_pretty(&record).map_err(|e| StepError::Config(e.to_string()))?;
    let key = record_key(&ctx.run.run_id);
    ctx.store.put_bytes(&key, json).await?;
    ctx.say(STAGE, &format!("run record: {}", ctx.store.location(&key)));
    for line in emf_lines(&record) {
        writeln!(metrics_out, "{line}")
            .map_err(|source| StepError::Io { path: "<stdout>".into(), source })?;
    }
    if let Some(metrics) = metrics {
        let data = run_metrics(&record);
        metrics.put(NAMESPACE, &data).await.map_err(|e| StepError::Metrics(e.to_string()))?;
        ctx.say(
            STAGE,
            &format!("{} metric data points published to CloudWatch namespace {NAMESPACE}", data.len()),
        );
    }
    if let Some(publisher) = publisher {
        // A config that no longer loads must not stop the failure from being announced.
        let config = ctx.load_config().ok();
        let (detail_type, detail) = status_event(&record, config.as_ref());
        publisher.publish(detail_type, &detail).await.map_err(StepError::Event)?;
    }
    Ok(record)
}

/// Publishes pipeline status events to an EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    pub client: aws_sdk_eventbridge::Client,
    /// Bus name or ARN; `default` when none.
    pub bus: Option<String>,
}

impl EventBridgePublisher {
    /// A client from the default credential chain; honours `AWS_ENDPOINT_URL`.
    pub async fn from_env(bus: Option<String>) -> Self {
        let shared = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self { client: aws_sdk_eventbridge::Client::new(&shared), bus }
    }
}

#[async_trait::async_trait]
impl EventPublisher for EventBridgePublisher {
    async fn publish(&self, detail_type: &str, detail: &serde_json::Value) -> Result<(), String> {
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source(EVENT_SOURCE)
            .detail_type(detail_type)
            .detail(detail.to_string())
            .set_event_bus_name(self.bus.clone())
            .build();
        let out = self.client.put_events().entries(entry).send().await.map_err(|e| {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(&format!(": {s}"));
                source = s.source();
            }
            format!("EventBridge PutEvents: {message}")
        })?;
        if out.failed_entry_count() > 0 {
            let why = out.entries().iter().filter_map(|e| e.error_message()).collect::<Vec<_>>().join("; ");
            return Err(format!("EventBridge rejected the event: {why}"));
        }
        Ok(())
    }
}
