//! The local runner: executes a `Plan` in process (`aphex run --local`).
//!
//! Same plan as the Argo template, same step functions as the pods: stages run in plan order, each
//! writing its record to a local artifact directory; an approval gate asks a [`Approver`]; the first
//! failure skips what depends on it and finalize always runs. Progress and the summary go through a
//! [`Progress`] observer so the CLI can draw them (indicatif) and tests can read them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::plan::{Plan, StageKind};
use crate::steps::finalize::RunRecord;
use crate::steps::{
    self, EnvironmentDeployer, Identity, OutputSink, PipelineUpdater, StageRecord, Status, StepContext,
    StepError,
};

/// Decides manual approval gates.
pub trait Approver: Send + Sync {
    /// `Ok(true)` to deploy, `Ok(false)` to stop the run there, `Err` when nobody can be asked.
    fn approve(&self, env: &crate::config::Environment) -> Result<bool, String>;
}

/// Grants every gate (`--approve`).
#[derive(Debug, Clone, Copy)]
pub struct AutoApprove;

impl Approver for AutoApprove {
    fn approve(&self, _env: &crate::config::Environment) -> Result<bool, String> {
        Ok(true)
    }
}

/// Observes the run as it goes.
pub trait Progress: Send + Sync {
    fn stage_started(&self, id: &str, title: &str);
    /// A stage ended (or was skipped) with its record.
    fn stage_finished(&self, record: &StageRecord);
}

/// The side effects a local run uses.
#[derive(Clone)]
pub struct Adapters {
    pub identity: Arc<dyn Identity>,
    pub deployer: Arc<dyn EnvironmentDeployer>,
    pub updater: Arc<dyn PipelineUpdater>,
    pub approver: Arc<dyn Approver>,
    pub progress: Arc<dyn Progress>,
    pub sink: Arc<dyn OutputSink>,
    /// Email subscriptions (pipeline stage) and approval notifications, delivered in process.
    pub notify: steps::notify::NotifyAdapters,
}

impl std::fmt::Debug for Adapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Adapters")
    }
}

/// What a local run needs to know.
#[derive(Debug, Clone)]
pub struct LocalRun {
    /// The repository's work tree; build runs here, in place.
    pub repo_dir: PathBuf,
    /// Config path relative to `repo_dir`.
    pub config_file: String,
    /// Only these environments (all when empty); the others' stages are skipped.
    pub only_envs: Vec<String>,
    /// Run state: artifacts, stage records, the run record.
    pub state_dir: PathBuf,
    pub run: steps::RunInfo,
}

/// The outcome of a local run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub record: RunRecord,
    pub total: Duration,
    /// Build and test commands, synth, AWS waits and approvals: time that is not aphex's.
    pub external: Duration,
    /// CPU time of aphex's own threads during the run (not its child processes), where the platform
    /// tells it: the overhead's cost independent of what else the machine runs.
    pub own_cpu: Option<Duration>,
    pub outputs_file: PathBuf,
    pub record_file: PathBuf,
}

impl RunSummary {
    /// The pipeline's own overhead: total minus the external time.
    pub fn overhead(&self) -> Duration {
        self.total.saturating_sub(self.external)
    }
}

/// Executes `plan` locally. Returns the summary even when a stage failed (the record says which and why).
pub async fn run_local(
    plan: &Plan,
    config: &Config,
    local: &LocalRun,
    adapters: &Adapters,
) -> Result<RunSummary, StepError> {
    let clock = Instant::now();
    let cpu_at_start = own_cpu_time();
    let store: Arc<dyn crate::artifacts::ArtifactStore> =
        Arc::new(crate::artifacts::LocalStore::new(local.state_dir.join("store")));
    let ctx_at = |work_dir: PathBuf| StepContext {
        run: local.run.clone(),
        store: store.clone(),
        sink: adapters.sink.clone(),
        work_dir,
        config_file: local.config_file.clone(),
    };
    // The build runs in place, and its tree is every later stage's work tree: verified against the
    // build's manifest once (a changed file fails the run) instead of unpacked into a copy, which costs
    // more than the rest of aphex together on a CDK app (thousands of node_modules files).
    let source_ctx = ctx_at(local.repo_dir.clone());
    let work_ctx = ctx_at(local.repo_dir.clone());
    let outputs_dir = local.state_dir.join("outputs");
    let mut failed = false;
    let mut approvals = Duration::ZERO;
    let mut planned = Vec::new();
    for stage in &plan.stages {
        planned.push(stage.id.clone());
        let env_selected = stage
            .env_name()
            .is_none_or(|e| local.only_envs.is_empty() || local.only_envs.iter().any(|o| o == e));
        if failed || !env_selected {
            adapters.progress.stage_finished(&skipped(&stage.id, stage.env_name()));
            continue;
        }
        adapters.progress.stage_started(&stage.id, &stage.kind.to_string());
        let result = match &stage.kind {
            StageKind::Validate => {
                steps::build::ensure_source(&source_ctx).await?;
                steps::validate::run(&source_ctx, adapters.identity.as_ref()).await
            }
            StageKind::Build => steps::build::run(&source_ctx).await,
            StageKind::Pipeline => {
                match steps::deploy::adopt_build_tree(&work_ctx, steps::deploy::PIPELINE_STAGE).await {
                    Ok(_) => {
                        steps::deploy::run_pipeline(
                            &work_ctx,
                            adapters.updater.as_ref(),
                            Some(&adapters.notify),
                        )
                        .await
                    }
                    Err(error) => {
                        work_ctx
                            .record(&stage.id, None, async { Err::<steps::StageReport, _>(error.into()) })
                            .await
                    }
                }
            }
            StageKind::ApprovalRequested { env, gate, settings } => {
                let publisher = steps::notify::DirectDelivery {
                    notifier: adapters.notify.notifier.clone(),
                    defaults: adapters.notify.defaults.clone(),
                };
                steps::notify::run_approval_requested(
                    &work_ctx,
                    &stage.id,
                    env,
                    gate,
                    &plan.namespace,
                    settings,
                    &publisher,
                )
                .await
            }
            StageKind::Approval { env } => {
                let waited = Instant::now();
                let environment = steps::environment(config, env)?;
                let answer = adapters.approver.approve(environment);
                approvals += waited.elapsed();
                let outcome = match answer {
                    Ok(true) => Ok(steps::StageReport::default()),
                    Ok(false) => {
                        Err(StepError::Config(format!("deployment to {env} was not approved")).into())
                    }
                    Err(why) => Err(StepError::Config(format!("approval gate before {env}: {why}")).into()),
                };
                work_ctx.record(&stage.id, Some(env), async { outcome }).await
            }
            StageKind::Deploy { env, .. } => {
                let file = outputs_dir.join(format!("{env}.json"));
                steps::deploy::run(&work_ctx, env, &file, adapters.deployer.as_ref()).await
            }
            StageKind::Test { env } => {
                let file = outputs_dir.join(format!("{env}.json"));
                steps::test::run(&work_ctx, env, &file).await
            }
            StageKind::Finalize => continue,
        };
        let record = match result {
            Ok(record) => record,
            Err(_) => {
                failed = true;
                work_ctx
                    .read_stage("runner", &stage.id)
                    .await
                    .unwrap_or_else(|_| skipped(&stage.id, stage.env_name()))
            }
        };
        adapters.progress.stage_finished(&record);
    }
    // Only the stages the run was asked for count as skipped when they did not run.
    let planned: Vec<String> = planned
        .into_iter()
        .filter(|id| {
            plan.stage(id)
                .and_then(|s| s.env_name())
                .is_none_or(|e| local.only_envs.is_empty() || local.only_envs.iter().any(|o| o == e))
        })
        .collect();
    adapters.progress.stage_started("finalize", "finalize");
    let metrics_file = local.state_dir.join("metrics.emf");
    let mut metrics = std::fs::File::create(&metrics_file)
        .map_err(|source| StepError::Io { path: metrics_file.clone(), source })?;
    let mut record = steps::finalize::run(&work_ctx, None, &planned, None, &mut metrics, None).await?;
    let total = clock.elapsed();
    let external =
        Duration::from_millis(record.stages.iter().map(|s| s.external_ms).sum::<u64>()) + approvals;
    // The record's end is the run's end; finalize itself is part of the overhead.
    record.duration_ms = steps_ms(total);
    let outputs_file = local.state_dir.join("outputs.json");
    let json = serde_json::to_vec_pretty(&record.outputs).map_err(|e| StepError::Config(e.to_string()))?;
    std::fs::write(&outputs_file, json)
        .map_err(|source| StepError::Io { path: outputs_file.clone(), source })?;
    let own_cpu = own_cpu_time().zip(cpu_at_start).map(|(end, start)| end.saturating_sub(start));
    Ok(RunSummary {
        record,
        total,
        external,
        own_cpu,
        outputs_file,
        record_file: local.state_dir.join("store").join(steps::record_key(&local.run.run_id)),
    })
}

/// User + system CPU time of this process's threads so far (Linux `/proc/self/stat`, whose clock ticks
/// are the fixed USER_HZ of 100 per second); None elsewhere.
pub fn own_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (in parentheses, which may hold spaces): state is the first, then
    // utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

fn steps_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn skipped(id: &str, env: Option<&str>) -> StageRecord {
    StageRecord::skipped(id, env, time::OffsetDateTime::now_utc())
}

/// The summary table: one row per stage (and per stack under its deploy), then the totals and the
/// pipeline's own overhead.
pub fn summary_table(summary: &RunSummary) -> String {
    let mut out = String::new();
    let secs = |ms: u64| format!("{:.2}s", ms as f64 / 1000.0);
    out.push_str(&format!("{:<28} {:<10} {:>9} {:>11}\n", "STAGE / STACK", "STATUS", "TIME", "EXTERNAL"));
    for stage in &summary.record.stages {
        let status = format!("{:?}", stage.status).to_lowercase();
        out.push_str(&format!(
            "{:<28} {:<10} {:>9} {:>11}\n",
            stage.id,
            status,
            secs(stage.duration_ms),
            secs(stage.external_ms)
        ));
        for stack in &stage.stacks {
            let status = stack.action.clone().unwrap_or_else(|| format!("{:?}", stack.status).to_lowercase());
            out.push_str(&format!(
                "  {:<26} {:<10} {:>9} {:>11}\n",
                stack.name,
                status,
                secs(stack.duration_ms),
                format!("aws {}", secs(stack.aws_wait_ms))
            ));
        }
    }
    let total = steps_ms(summary.total);
    let external = steps_ms(summary.external);
    let cpu =
        summary.own_cpu.map(|c| format!(" (aphex's own CPU time {})", secs(steps_ms(c)))).unwrap_or_default();
    out.push_str(&format!(
        "total {} = external {} (build/test commands, synth, AWS wait, approvals) + pipeline overhead {}{cpu}\n",
        secs(total),
        secs(external),
        secs(steps_ms(summary.overhead()))
    ));
    match summary.record.status {
        Status::Failed => out.push_str(&format!(
            "run {} FAILED at {}: {}\n",
            summary.record.run.run_id,
            summary.record.failed_stage.as_deref().unwrap_or("?"),
            summary.record.reason.as_deref().unwrap_or("unknown")
        )),
        _ => out.push_str(&format!("run {} succeeded\n", summary.record.run.run_id)),
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::steps::deploy::ScriptedDeployer;
    use crate::steps::shell::MemorySink;
    use crate::steps::{DeployOutcome, StackRecord};

    struct Accounts;

    #[async_trait::async_trait]
    impl Identity for Accounts {
        async fn account_for(
            &self,
            env: &crate::config::Environment,
            _role: &str,
            _run: &str,
        ) -> Result<String, String> {
            Ok(env.account.clone())
        }
    }

    #[derive(Default)]
    struct Seen(std::sync::Mutex<Vec<String>>);

    impl Progress for Seen {
        fn stage_started(&self, _id: &str, _title: &str) {}
        fn stage_finished(&self, record: &StageRecord) {
            self.0.lock().unwrap().push(format!("{}:{:?}", record.id, record.status));
        }
    }

    struct Refuse;

    impl Approver for Refuse {
        fn approve(&self, _env: &crate::config::Environment) -> Result<bool, String> {
            Err("stdin is not a terminal".into())
        }
    }

    const CONFIG: &str = r#"version: "1.0"
build:
  commands: ["echo built > out.txt"]
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks: [{name: Api}]
    tests:
      commands: ["test \"$APHEX_OUTPUT_API_URL\" = http://dev"]
  - name: prod
    region: eu-west-1
    account: "222222222222"
    approval: manual
    stacks: [{name: Api}]
"#;

    fn ok(url: &str) -> DeployOutcome {
        DeployOutcome {
            stacks: vec![StackRecord {
                name: "Api".into(),
                status: Status::Succeeded,
                duration_ms: 10,
                aws_wait_ms: 8,
                action: Some("deployed".into()),
                error: None,
            }],
            outputs: [("Api".to_owned(), [("Url".to_owned(), url.to_owned())].into_iter().collect())]
                .into_iter()
                .collect(),
            synth: Duration::from_millis(3),
            aws_wait: Duration::from_millis(8),
            error: None,
        }
    }

    async fn check(approver: Arc<dyn Approver>, only: &[&str]) -> (RunSummary, Vec<String>) {
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("aphex-config.yaml"), CONFIG).unwrap();
        let config = crate::config::parse("aphex-config.yaml", CONFIG).unwrap();
        let plan = crate::plan::build(&config);
        let state = tempfile::tempdir().unwrap();
        let seen = Arc::new(Seen::default());
        let adapters = Adapters {
            identity: Arc::new(Accounts),
            deployer: Arc::new(ScriptedDeployer {
                outcomes: HashMap::from([
                    ("dev".to_owned(), ok("http://dev")),
                    ("prod".to_owned(), ok("http://prod")),
                ]),
            }),
            updater: Arc::new(crate::steps::adapters::RenderToFile { path: state.path().join("wt.yaml") }),
            approver,
            progress: seen.clone(),
            sink: Arc::new(MemorySink::default()),
            notify: crate::steps::notify::NotifyAdapters {
                notifier: Arc::new(crate::notify::RecordingNotifier::new()),
                defaults: crate::notify::Defaults::default(),
                state: Arc::new(crate::artifacts::LocalStore::new(state.path().join("pipeline-state"))),
            },
        };
        let local = LocalRun {
            repo_dir: repo.path().to_path_buf(),
            config_file: "aphex-config.yaml".into(),
            only_envs: only.iter().map(|s| s.to_string()).collect(),
            state_dir: state.path().to_path_buf(),
            run: crate::steps::RunInfo {
                run_id: "local-1".into(),
                pipeline: "aphex-pipeline".into(),
                repo_url: repo.path().display().to_string(),
                commit_sha: "abc".into(),
                branch: "main".into(),
                delivery_id: Some("local".into()),
                pusher: None,
            },
        };
        let summary = run_local(&plan, &config, &local, &adapters).await.unwrap();
        assert!(state.path().join("wt.yaml").exists() || summary.record.status == Status::Failed);
        let seen = seen.0.lock().unwrap().clone();
        (summary, seen)
    }

    #[tokio::test]
    async fn every_stage_of_the_plan_runs_in_order() {
        let (summary, seen) = check(Arc::new(AutoApprove), &[]).await;
        assert_eq!(summary.record.reason, None);
        assert_eq!(
            seen,
            [
                "validate:Succeeded",
                "build:Succeeded",
                "pipeline:Succeeded",
                "deploy-dev:Succeeded",
                "test-dev:Succeeded",
                "notify-approve-prod:Succeeded",
                "approve-prod:Succeeded",
                "deploy-prod:Succeeded"
            ]
        );
        assert_eq!(summary.record.status, Status::Succeeded);
        assert_eq!(summary.record.trigger, "local");
        assert_eq!(summary.record.outputs["prod"]["Api"]["Url"], "http://prod");
        assert!(summary.overhead() <= summary.total);
        if cfg!(target_os = "linux") {
            assert!(summary.own_cpu.is_some_and(|c| c < Duration::from_secs(600)), "{:?}", summary.own_cpu);
        }
        let table = summary_table(&summary);
        assert!(table.contains("deploy-prod") && table.contains("pipeline overhead"), "{table}");
    }

    #[tokio::test]
    async fn a_gate_nobody_can_answer_stops_the_run_before_that_environment() {
        let (summary, seen) = check(Arc::new(Refuse), &[]).await;
        assert_eq!(seen.last().unwrap(), "deploy-prod:Skipped");
        assert!(seen.contains(&"approve-prod:Failed".to_owned()), "{seen:?}");
        assert_eq!(summary.record.failed_stage.as_deref(), Some("approve-prod"));
        assert!(summary.record.reason.as_deref().unwrap().contains("stdin is not a terminal"));
    }

    #[tokio::test]
    async fn only_the_selected_environments_deploy() {
        let (summary, seen) = check(Arc::new(AutoApprove), &["dev"]).await;
        assert!(seen.contains(&"deploy-prod:Skipped".to_owned()), "{seen:?}");
        assert_eq!(summary.record.status, Status::Succeeded);
        assert!(!summary.record.outputs.contains_key("prod"));
    }
}
