//! The pipeline steps Argo pods run (`aphex step ...`), shared with the local runner.
//!
//! Each step is a plain async function over a [`StepContext`]: the run's identity, an artifact store
//! (S3 in a pod, a directory locally), an output sink, and its side effects behind small traits
//! ([`Identity`], [`EnvironmentDeployer`], [`PipelineUpdater`], [`EventPublisher`]). Steps talk to each
//! other only through the store: each writes a [`StageRecord`] under `runs/<run-id>/stages/`, which the
//! later steps read (build → artifact location, deploy → outputs) and `finalize` turns into the run record.

pub mod adapters;
pub mod build;
pub mod deploy;
pub mod engine;
pub mod finalize;
pub mod names;
pub mod notify;
pub mod shell;
pub mod source;
pub mod test;
pub mod validate;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::artifacts::{ArtifactError, ArtifactRef, ArtifactStore, StoreError};
use crate::config::{Config, Environment};
pub use shell::{CommandFailure, OutputSink, StackUpdate, StderrSink};

/// Stack outputs: `{stack: {key: value}}`.
pub type Outputs = IndexMap<String, IndexMap<String, String>>;

/// Who and what a run is about (the WorkflowTemplate's arguments).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    pub run_id: String,
    /// `pipeline.name` (Argo passes it as APHEX_PIPELINE).
    pub pipeline: String,
    pub repo_url: String,
    pub commit_sha: String,
    pub branch: String,
    /// GitHub delivery id, or `local` for `aphex run --local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher: Option<String>,
}

impl RunInfo {
    /// `owner/name` of the repository URL (`https://github.com/owner/name.git`, `git@github.com:owner/name`)
    /// or the last path component of a local path: the first part of artifact keys.
    pub fn repo_name(&self) -> String {
        let url = self.repo_url.trim_end_matches('/').trim_end_matches(".git");
        let path = url
            .split_once("://")
            .map(|(_, rest)| rest.split_once('/').map_or("", |(_, p)| p))
            .or_else(|| url.split_once(':').map(|(_, p)| p).filter(|_| !url.starts_with('/')))
            .unwrap_or(url);
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != "." && *p != "..").collect();
        let name = match parts.as_slice() {
            [] => "repository".to_owned(),
            [one] => (*one).to_owned(),
            [.., owner, name] if url.contains("://") || !url.starts_with('/') => format!("{owner}/{name}"),
            [.., name] => (*name).to_owned(),
        };
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_./".contains(c) { c } else { '-' }).collect()
    }
}

/// Outcome of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Succeeded,
    Failed,
    /// Did not run because an earlier stage failed (or an approval was refused).
    Skipped,
}

/// Outcome of one stack of a deploy stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StackRecord {
    pub name: String,
    pub status: Status,
    pub duration_ms: u64,
    /// Time spent waiting on AWS (CloudFormation, asset uploads).
    pub aws_wait_ms: u64,
    /// What the deploy did: created, updated, unchanged, failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one stage left for the others and for the run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ended_at: time::OffsetDateTime,
    pub duration_ms: u64,
    /// Time inside user commands (build, tests), synth and AWS waits: everything that is not aphex itself.
    pub external_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<StackRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<ArtifactRef>,
}

impl StageRecord {
    /// A stage that did not run, stamped `at`.
    pub fn skipped(id: &str, env: Option<&str>, at: time::OffsetDateTime) -> Self {
        StageRecord {
            id: id.to_owned(),
            env: env.map(str::to_owned),
            status: Status::Skipped,
            started_at: at,
            ended_at: at,
            duration_ms: 0,
            external_ms: 0,
            error: None,
            stacks: Vec::new(),
            outputs: None,
            artifacts: None,
        }
    }
}

/// Errors of the steps. Each names what failed and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("validation found {} problem(s):\n  - {}", .0.len(), .0.join("\n  - "))]
    Invalid(Vec<String>),
    #[error("{0}")]
    Config(String),
    #[error("getting the source failed: {0}")]
    Source(String),
    #[error("build command {0}")]
    Build(CommandFailure),
    #[error("post-deploy test of environment {env}: {failure}")]
    Test { env: String, failure: CommandFailure },
    #[error("artifacts: {0}")]
    Artifacts(#[from] ArtifactError),
    #[error("run state: {0}")]
    Store(#[from] StoreError),
    #[error("deploy of environment {env} failed: {reason}")]
    Deploy { env: String, reason: String },
    #[error("pipeline self-update failed: {0}")]
    Pipeline(String),
    #[error("no environment {name:?} in the config; environments: {known}")]
    UnknownEnvironment { name: String, known: String },
    #[error(
        "{stage} needs the {needed} stage's record, which is missing ({location}); did {needed} run for run {run_id}?"
    )]
    MissingStage { stage: String, needed: String, location: String, run_id: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("publishing the pipeline status event failed: {0}")]
    Event(String),
    #[error("notifications: {0}")]
    Notify(String),
    #[error("run metrics: {0}")]
    Metrics(String),
}

/// What a stage reports on success besides its own timing: external time and anything to record.
#[derive(Debug, Clone, Default)]
pub struct StageReport {
    pub external: Duration,
    pub stacks: Vec<StackRecord>,
    pub outputs: Option<Outputs>,
    pub artifacts: Option<ArtifactRef>,
}

/// A failed stage: the error and what was recorded before it (stacks deployed, time spent).
#[derive(Debug)]
pub struct StageFailure {
    pub error: StepError,
    pub partial: StageReport,
}

impl<E: Into<StepError>> From<E> for StageFailure {
    fn from(error: E) -> Self {
        StageFailure { error: error.into(), partial: StageReport::default() }
    }
}

/// Accounts and roles (STS): which account the credentials for `env` are in.
#[async_trait]
pub trait Identity: Send + Sync {
    /// The account id STS reports after assuming `role` for `env` (see [`adapters::role_for`]: its `role`,
    /// else the CDK deploy role of its account and region under the app's bootstrap qualifier).
    async fn account_for(&self, env: &Environment, role: &str, run_id: &str) -> Result<String, String>;
}

/// Everything `deploy --env` needs from the deploy engine.
#[derive(Debug, Clone)]
pub struct DeployRequest<'a> {
    pub config: &'a Config,
    pub env: &'a Environment,
    /// The unpacked artifacts (the CDK app).
    pub work_dir: &'a std::path::Path,
    pub run_id: &'a str,
    pub stage: &'a str,
}

/// What the deploy engine did.
#[derive(Debug, Clone, Default)]
pub struct DeployOutcome {
    pub stacks: Vec<StackRecord>,
    pub outputs: Outputs,
    /// Time in synth (the user's CDK app).
    pub synth: Duration,
    /// Time waiting on AWS.
    pub aws_wait: Duration,
    /// Set when the deploy failed; `stacks` then says which stacks got where.
    pub error: Option<String>,
}

/// The deploy engine: synth just in time and deploy an environment's stacks.
#[async_trait]
pub trait EnvironmentDeployer: Send + Sync {
    async fn deploy(&self, request: DeployRequest<'_>, sink: Arc<dyn OutputSink>) -> DeployOutcome;
}

/// The pipeline's self-update: its own stack when it changed, then the WorkflowTemplate.
#[async_trait]
pub trait PipelineUpdater: Send + Sync {
    /// Returns a one-line summary of what changed; `external` time is reported through the outcome.
    async fn update(
        &self,
        config: &Config,
        work_dir: &std::path::Path,
        commit_sha: &str,
        sink: Arc<dyn OutputSink>,
    ) -> Result<(String, Duration), String>;
}

/// Where pipeline status events go (EventBridge in production).
#[async_trait]
pub trait EventPublisher: Send + Sync {
    async fn publish(&self, detail_type: &str, detail: &serde_json::Value) -> Result<(), String>;
}

/// The shared inputs of every step.
#[derive(Clone)]
pub struct StepContext {
    pub run: RunInfo,
    pub store: Arc<dyn ArtifactStore>,
    pub sink: Arc<dyn OutputSink>,
    /// The step's work tree: the clone (validate, build) or the unpacked artifacts (deploy, test).
    pub work_dir: PathBuf,
    /// Config path relative to the work tree.
    pub config_file: String,
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext").field("run", &self.run).field("work_dir", &self.work_dir).finish()
    }
}

impl StepContext {
    /// Key of a stage record.
    pub fn stage_key(&self, stage: &str) -> String {
        stage_key(&self.run.run_id, stage)
    }

    /// Prefix of this run's records.
    pub fn run_prefix(&self) -> String {
        format!("runs/{}/", self.run.run_id)
    }

    /// Load the config from the work tree.
    pub fn load_config(&self) -> Result<Config, StepError> {
        load_config(&self.work_dir.join(&self.config_file))
    }

    pub fn say(&self, stage: &str, line: &str) {
        self.sink.line(stage, line);
    }

    /// Read another stage's record.
    pub async fn read_stage(&self, stage: &str, needed: &str) -> Result<StageRecord, StepError> {
        let key = self.stage_key(needed);
        match self.store.get_bytes(&key).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StepError::Config(format!("{} is not a stage record: {e}", self.store.location(&key)))
            }),
            Err(StoreError::NotFound { location }) => Err(StepError::MissingStage {
                stage: stage.to_owned(),
                needed: needed.to_owned(),
                location,
                run_id: self.run.run_id.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a stage body, timing it and writing its record (succeeded or failed) to the store.
    pub async fn record<F>(&self, id: &str, env: Option<&str>, body: F) -> Result<StageRecord, StepError>
    where
        F: std::future::Future<Output = Result<StageReport, StageFailure>>,
    {
        let started_at = time::OffsetDateTime::now_utc();
        let clock = Instant::now();
        let result = body.await;
        let duration = clock.elapsed();
        let (status, report, error) = match result {
            Ok(report) => (Status::Succeeded, report, None),
            Err(StageFailure { error, partial }) => (Status::Failed, partial, Some(error)),
        };
        let record = StageRecord {
            id: id.to_owned(),
            env: env.map(str::to_owned),
            status,
            started_at,
            ended_at: time::OffsetDateTime::now_utc(),
            duration_ms: ms(duration),
            external_ms: ms(report.external.min(duration)),
            // The record outlives the run and notifications quote it: no secret may reach it (a
            // failed command's last lines can print one).
            error: error
                .as_ref()
                .map(|e| crate::telemetry::redact::Redactor::from_env().apply(&e.to_string())),
            stacks: report.stacks,
            outputs: report.outputs,
            artifacts: report.artifacts,
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| StepError::Config(e.to_string()))?;
        self.store.put_bytes(&self.stage_key(id), json).await?;
        match error {
            Some(e) => Err(e),
            None => Ok(record),
        }
    }
}

/// Key of a stage record of run `run_id`.
pub fn stage_key(run_id: &str, stage: &str) -> String {
    format!("runs/{run_id}/stages/{stage}.json")
}

/// Key of a run's record.
pub fn record_key(run_id: &str) -> String {
    format!("runs/{run_id}/record.json")
}

/// Reads and validates a config file, with every problem in the message.
pub fn load_config(path: &std::path::Path) -> Result<Config, StepError> {
    crate::config::load(path).map_err(|e| match e {
        crate::config::LoadError::Invalid { file, diagnostics, .. } => StepError::Invalid(
            diagnostics
                .iter()
                .map(|d| {
                    let at = if d.path.is_empty() { String::new() } else { format!(" ({})", d.path) };
                    let hint = d.hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default();
                    format!("{file}:{}:{}{at}: {}{hint}", d.line, d.column, d.message)
                })
                .collect(),
        ),
        other => StepError::Config(other.to_string()),
    })
}

/// The environment called `name`.
pub fn environment<'c>(config: &'c Config, name: &str) -> Result<&'c Environment, StepError> {
    config.environment(name).ok_or_else(|| StepError::UnknownEnvironment {
        name: name.to_owned(),
        known: config.environments.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", "),
    })
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_repo(url: &str, expect: &str) {
        let run = RunInfo {
            run_id: "r".into(),
            pipeline: "p".into(),
            repo_url: url.into(),
            commit_sha: "c".into(),
            branch: "main".into(),
            delivery_id: None,
            pusher: None,
        };
        assert_eq!(run.repo_name(), expect, "{url}");
    }

    #[test]
    fn repo_names_for_artifact_keys() {
        check_repo("https://github.com/acme/app.git", "acme/app");
        check_repo("https://x-access-token@github.com/acme/app", "acme/app");
        check_repo("git@github.com:acme/app.git", "acme/app");
        check_repo("/work/main/examples/demo", "demo");
        check_repo("/work/main/examples/demo/", "demo");
        check_repo("file:///srv/git/acme/app.git", "acme/app");
    }
}

#[cfg(test)]
mod flow_tests;
