//! `aphex step <stage>`: what each Argo container runs. Arguments are exactly those the rendered
//! WorkflowTemplate passes (`aphex::plan` builds them); the artifact store is S3
//! (`APHEX_ARTIFACT_BUCKET`) or a local directory (`APHEX_ARTIFACT_DIR`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use aphex::artifacts::{ArtifactStore, LocalStore, S3Store, s3_client_from_env};
use aphex::steps::{self, RunInfo, StepContext};
use clap::{Args as ClapArgs, Parser, Subcommand};

#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    stage: Stage,
}

/// Arguments every step gets from the workflow.
#[derive(Debug, Clone, ClapArgs)]
pub struct Common {
    /// Clone URL of the repository.
    #[arg(long)]
    repo_url: String,
    /// The pushed commit; the clone is checked out at exactly this commit.
    #[arg(long)]
    commit_sha: String,
    #[arg(long)]
    branch: String,
    /// Unique id of the run (Argo: the workflow name); keys the run's records in the store.
    #[arg(long)]
    run_id: String,
    /// Work tree of this step: where the source is cloned or the artifacts unpacked.
    #[arg(long, env = "APHEX_WORK_DIR", default_value = "/tmp/aphex/work")]
    work_dir: PathBuf,
    /// Config file, relative to the work tree.
    #[arg(long, default_value = aphex::config::DEFAULT_CONFIG_FILE)]
    config: String,
    /// Pipeline name (set by the template).
    #[arg(long, env = "APHEX_PIPELINE", default_value = "aphex-pipeline")]
    pipeline: String,
    /// S3 bucket for artifacts and run records.
    #[arg(long, env = "APHEX_ARTIFACT_BUCKET", conflicts_with = "artifact_dir")]
    artifact_bucket: Option<String>,
    /// A local directory instead of S3.
    #[arg(long, env = "APHEX_ARTIFACT_DIR")]
    artifact_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Stage {
    /// Check the config, each environment's credentials, requiredContext and the tools on PATH.
    Validate(Common),
    /// Clone at the commit, run the build commands, package and upload the artifacts.
    Build(Common),
    /// Self-update: render and check the WorkflowTemplate from the config at this commit, and apply it to
    /// the cluster (KUBECONFIG, APHEX_CLUSTER, or the pod's service account); without a cluster it is
    /// written to --template-out.
    Pipeline {
        #[command(flatten)]
        common: Common,
        /// Where the rendered template is written.
        #[arg(long, default_value = "/tmp/aphex/workflow-template.yaml")]
        template_out: PathBuf,
    },
    /// Download and verify the artifacts, synthesize and deploy one environment.
    Deploy {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        env: String,
        /// Stack outputs as JSON (the Argo output parameter reads it).
        #[arg(long, default_value = aphex::plan::OUTPUTS_FILE)]
        outputs_file: PathBuf,
    },
    /// Run the environment's post-deploy tests with the stack outputs.
    Test {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        env: String,
        #[arg(long, default_value = aphex::plan::OUTPUTS_FILE)]
        outputs_file: PathBuf,
    },
    /// Announce a run event: `--event approval-requested` before a manual approval gate publishes the
    /// `Pipeline Run Waiting For Approval` event (EventBridge; the notify Lambda delivers it) naming the
    /// run, the environment, the commit and the exact command that passes the gate.
    Notify {
        #[command(flatten)]
        common: Common,
        /// The event; `approval-requested` is the one there is.
        #[arg(long, value_parser = [steps::notify::EVENT_APPROVAL_REQUESTED])]
        event: String,
        #[arg(long)]
        env: String,
        /// The gate's node (its task name: `approve-<env>`).
        #[arg(long)]
        gate: String,
        /// Kubernetes namespace of the run (for the `argo resume` command).
        #[arg(long, default_value = "argo")]
        namespace: String,
        /// `notifications.slack.webhookSecret` of the config.
        #[arg(long)]
        slack_webhook_secret: Option<String>,
        /// `notifications.snsTopicArn` of the config.
        #[arg(long)]
        sns_topic_arn: Option<String>,
        /// `notifications.on` of the config, comma-separated.
        #[arg(long, default_value = "failure,approval")]
        notify_on: String,
        /// EventBridge bus for the event (the account's default bus when unset).
        #[arg(long, env = "APHEX_EVENT_BUS")]
        event_bus: Option<String>,
    },
    /// Record the run, print metrics (EMF) and publish the status event. Runs whatever happened.
    Finalize {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        delivery_id: Option<String>,
        #[arg(long)]
        pusher: Option<String>,
        /// The workflow's status (Argo `workflow.status`).
        #[arg(long)]
        status: Option<String>,
        /// EventBridge bus for the status event (the account's default bus when unset).
        #[arg(long, env = "APHEX_EVENT_BUS")]
        event_bus: Option<String>,
        /// Do not publish the status event.
        #[arg(long)]
        no_event: bool,
        /// Do not publish the run metrics to CloudWatch (print them as EMF lines instead).
        #[arg(long)]
        no_metrics: bool,
    },
    /// Run several stages one after another in this process, stopping at the first that fails: what a
    /// pod running several stages executes (`aphex::plan::Plan::pods`). Each stage is given as a word
    /// count followed by that many words of its `aphex step ...` command line without the program name:
    /// `aphex step chain 3 step validate --flag 2 step build`.
    Chain {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 1.., value_name = "N WORDS")]
        stages: Vec<String>,
    },
}

/// One stage's command line inside `aphex step chain`.
#[derive(Debug, Parser)]
#[command(name = "aphex", no_binary_name = true)]
struct ChainedStage {
    #[command(subcommand)]
    command: ChainedCommand,
}

#[derive(Debug, Subcommand)]
enum ChainedCommand {
    Step(Args),
}

/// Splits `N w1..wN M w1..wM ...` into the stages' parsed arguments.
fn chained_stages(words: &[String]) -> anyhow::Result<Vec<Args>> {
    let mut stages = Vec::new();
    let mut rest = words;
    while let Some((count, tail)) = rest.split_first() {
        let n: usize = count
            .parse()
            .ok()
            .filter(|n| *n > 0 && count.bytes().all(|b| b.is_ascii_digit()) && !count.starts_with('0'))
            .with_context(|| {
                format!(
                    "`aphex step chain`: expected the word count of the next stage (a number from 1), found `{count}`"
                )
            })?;
        if n > tail.len() {
            bail!("`aphex step chain`: a stage of {n} words, but only {} follow", tail.len());
        }
        let (line, next) = tail.split_at(n);
        let ChainedCommand::Step(args) = ChainedStage::try_parse_from(line)
            .with_context(|| format!("`aphex step chain`: stage `{}`", line.join(" ")))?
            .command;
        if matches!(args.stage, Stage::Chain { .. }) {
            bail!("`aphex step chain`: a chain cannot contain another chain");
        }
        stages.push(args);
        rest = next;
    }
    if stages.is_empty() {
        bail!("`aphex step chain`: no stage given");
    }
    Ok(stages)
}

async fn context(
    common: &Common,
    delivery_id: Option<String>,
    pusher: Option<String>,
    sink: Arc<dyn steps::OutputSink>,
) -> anyhow::Result<StepContext> {
    let store: Arc<dyn ArtifactStore> = match (&common.artifact_bucket, &common.artifact_dir) {
        (Some(bucket), _) => Arc::new(S3Store::new(s3_client_from_env().await, bucket)),
        (None, Some(dir)) => Arc::new(LocalStore::new(dir)),
        (None, None) => bail!(
            "no artifact store: set APHEX_ARTIFACT_BUCKET (or --artifact-bucket), or APHEX_ARTIFACT_DIR for a local directory"
        ),
    };
    Ok(StepContext {
        run: RunInfo {
            run_id: common.run_id.clone(),
            pipeline: common.pipeline.clone(),
            repo_url: common.repo_url.clone(),
            commit_sha: common.commit_sha.clone(),
            branch: common.branch.clone(),
            delivery_id,
            pusher,
        },
        store,
        sink,
        work_dir: common.work_dir.clone(),
        config_file: common.config.clone(),
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

impl Stage {
    /// The stage's common arguments; a chain has none of its own.
    fn common(&self) -> Option<&Common> {
        match self {
            Stage::Validate(common) | Stage::Build(common) => Some(common),
            Stage::Pipeline { common, .. }
            | Stage::Deploy { common, .. }
            | Stage::Test { common, .. }
            | Stage::Notify { common, .. }
            | Stage::Finalize { common, .. } => Some(common),
            Stage::Chain { .. } => None,
        }
    }

    /// The plan's stage id (the log stream's last part).
    fn id(&self) -> String {
        match self {
            Stage::Validate(_) => "validate".into(),
            Stage::Build(_) => "build".into(),
            Stage::Pipeline { .. } => "pipeline".into(),
            Stage::Deploy { env, .. } => format!("deploy-{env}"),
            Stage::Test { env, .. } => format!("test-{env}"),
            Stage::Notify { env, .. } => format!("{}{env}", steps::notify::APPROVAL_STAGE_PREFIX),
            Stage::Finalize { .. } => "finalize".into(),
            Stage::Chain { .. } => "chain".into(),
        }
    }
}

/// Every line the step prints goes through the redaction; with `APHEX_LOG_GROUP` set (the infra's
/// platform ConfigMap sets it) it is also shipped to CloudWatch Logs, stream `<run-id>/<stage>`.
async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    if let Stage::Chain { stages } = &args.stage {
        // Parse every stage first: a malformed later stage fails before the first one runs. Each
        // stage ships its own log stream.
        for stage in chained_stages(stages)? {
            let code = Box::pin(run_async(stage)).await?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    use aphex::telemetry::logs::{CloudWatchLogs, ENV_LOG_GROUP, LogShipper, ShippingSink};
    let redactor = aphex::telemetry::redact::Redactor::from_env();
    let stage_id = args.stage.id();
    let group = std::env::var(ENV_LOG_GROUP).ok().filter(|g| !g.trim().is_empty());
    let shipper = match group {
        Some(group) => Some(LogShipper::new(
            Arc::new(steps::StderrSink),
            redactor.clone(),
            Arc::new(CloudWatchLogs::from_env().await),
            group,
            args.stage.common().map(|c| c.run_id.clone()).unwrap_or_default(),
        )),
        None => None,
    };
    let sink: Arc<dyn steps::OutputSink> = match &shipper {
        Some(shipper) => shipper.sink.clone(),
        None => Arc::new(ShippingSink::masking_only(Arc::new(steps::StderrSink), redactor)),
    };
    let periodic = shipper.as_ref().map(|s| s.spawn_periodic(std::time::Duration::from_secs(5)));
    let result = run_stage(args.stage, sink.clone()).await;
    let failed = match &result {
        Ok(Ok(())) => false,
        Ok(Err(err)) => {
            sink.line(&stage_id, &format!("error: {err}"));
            true
        }
        Err(err) => {
            sink.line(&stage_id, &format!("error: {err:#}"));
            true
        }
    };
    if let Some(periodic) = periodic {
        periodic.abort();
    }
    if let Some(shipper) = shipper
        && let Err(e) = shipper.flush().await
    {
        eprintln!("warning: step logs not shipped: {e}");
    }
    match result {
        Err(err) => Err(err),
        Ok(_) => Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }),
    }
}

/// Runs one step: `Err` when it could not start (arguments, clients), `Ok(Err)` when the step failed.
async fn run_stage(
    stage: Stage,
    sink: Arc<dyn steps::OutputSink>,
) -> anyhow::Result<Result<(), steps::StepError>> {
    let result = match stage {
        // `run_async` runs a chain's stages itself.
        Stage::Chain { .. } => Ok(()),
        Stage::Validate(common) => {
            let ctx = context(&common, None, None, sink.clone()).await?;
            steps::build::ensure_source(&ctx).await?;
            let identity = steps::adapters::StsIdentity::from_env().await;
            steps::validate::run(&ctx, &identity).await.map(|_| ())
        }
        Stage::Build(common) => {
            let ctx = context(&common, None, None, sink.clone()).await?;
            steps::build::ensure_source(&ctx).await?;
            steps::build::run(&ctx).await.map(|_| ())
        }
        Stage::Pipeline { common, template_out } => {
            let ctx = context(&common, None, None, sink.clone()).await?;
            // In a cluster (`aphex::cluster`'s resolution order: KUBECONFIG, APHEX_CLUSTER, the pod's
            // service account, ~/.kube/config) the pod applies its own next template. Without one (a step
            // run by hand) it renders, checks and writes it; in a pod that cannot reach its API server it
            // fails rather than skip the self-modification silently.
            let template: std::sync::Arc<dyn steps::PipelineUpdater> =
                match aphex::cluster::ClusterTarget::from_env() {
                    Ok(_) => {
                        let store = aphex::template::kube_store_from_env().await?;
                        std::sync::Arc::new(steps::adapters::ApplyToCluster {
                            store: std::sync::Arc::new(store),
                        })
                    }
                    Err(e) if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => bail!(
                        "this pod cannot apply the next WorkflowTemplate: {e}. Mount the service account token \
                         (automountServiceAccountToken: true on pipeline.serviceAccount) or set APHEX_CLUSTER"
                    ),
                    Err(_) => std::sync::Arc::new(steps::adapters::RenderToFile { path: template_out }),
                };
            // The pipeline's own stack (when the config names one) deploys first, through the engine.
            let updater = steps::adapters::OwnStackFirst {
                deployer: std::sync::Arc::new(steps::engine::EngineDeployer {
                    method: steps::engine::EngineDeployer::method_from_env().map_err(anyhow::Error::msg)?,
                    progress: true,
                }),
                inner: template,
                run_id: ctx.run.run_id.clone(),
            };
            // `notifications.email`: the pipeline's topic (APHEX_SNS_TOPIC_ARN), the record in the store.
            let notify = steps::notify::NotifyAdapters::from_env(ctx.store.clone()).await?;
            steps::deploy::run_pipeline(&ctx, &updater, Some(&notify)).await.map(|_| ())
        }
        Stage::Deploy { common, env, outputs_file } => {
            let ctx = context(&common, None, None, sink.clone()).await?;
            let deployer = steps::engine::EngineDeployer {
                method: steps::engine::EngineDeployer::method_from_env().map_err(anyhow::Error::msg)?,
                progress: true,
            };
            steps::deploy::run(&ctx, &env, &outputs_file, &deployer).await.map(|_| ())
        }
        Stage::Test { common, env, outputs_file } => {
            let ctx = context(&common, None, None, sink.clone()).await?;
            steps::test::run(&ctx, &env, &outputs_file).await.map(|_| ())
        }
        Stage::Notify {
            common,
            event: _,
            env,
            gate,
            namespace,
            slack_webhook_secret,
            sns_topic_arn,
            notify_on,
            event_bus,
        } => {
            let ctx = context(&common, None, None, sink.clone()).await?;
            let on = notify_on
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(|w| {
                    aphex::notify::parse_outcome(w).with_context(|| {
                        format!("--notify-on: `{w}` is not one of success, failure, approval")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let settings = aphex::notify::NotificationSettings { slack_webhook_secret, sns_topic_arn, on };
            let stage = format!("{}{env}", steps::notify::APPROVAL_STAGE_PREFIX);
            let publisher = steps::finalize::EventBridgePublisher::from_env(event_bus).await;
            steps::notify::run_approval_requested(
                &ctx, &stage, &env, &gate, &namespace, &settings, &publisher,
            )
            .await
            .map(|_| ())
        }
        Stage::Finalize { common, delivery_id, pusher, status, event_bus, no_event, no_metrics } => {
            let ctx = context(&common, delivery_id, pusher, sink.clone()).await?;
            let publisher = if no_event {
                None
            } else {
                Some(steps::finalize::EventBridgePublisher::from_env(event_bus).await)
            };
            let publisher_ref = publisher.as_ref().map(|p| p as &dyn steps::EventPublisher);
            let status = status.filter(|s| !s.is_empty() && !s.starts_with("{{"));
            // The metrics go to CloudWatch with PutMetricData; the EMF lines are printed only without
            // it, so that a log agent shipping stdout cannot count a run twice.
            let cloudwatch = if no_metrics {
                None
            } else {
                Some(aphex::telemetry::metrics::CloudWatchMetrics::from_env().await)
            };
            let mut stdout: Box<dyn std::io::Write + Send> =
                if cloudwatch.is_some() { Box::new(std::io::sink()) } else { Box::new(std::io::stdout()) };
            let metrics = cloudwatch.as_ref().map(|c| c as &dyn aphex::telemetry::metrics::MetricPublisher);
            match steps::finalize::run(&ctx, status.as_deref(), &[], publisher_ref, &mut *stdout, metrics)
                .await
            {
                Ok(record) => {
                    eprintln!("[finalize] run {} {:?}", record.run.run_id, record.status);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stage: &str, branch: &str) -> Vec<String> {
        let mut w: Vec<String> = ["step", stage].iter().map(|s| s.to_string()).collect();
        for (flag, value) in
            [("--repo-url", "r"), ("--commit-sha", "abc1234"), ("--branch", branch), ("--run-id", "x")]
        {
            w.push(flag.into());
            w.push(value.into());
        }
        w
    }

    fn chain(lines: &[Vec<String>]) -> Vec<String> {
        lines.iter().flat_map(|l| std::iter::once(l.len().to_string()).chain(l.iter().cloned())).collect()
    }

    fn check(words: Vec<String>, expect: Result<Vec<(&str, &str)>, &str>) {
        let got = chained_stages(&words).map(|stages| {
            stages
                .iter()
                .map(|a| match &a.stage {
                    Stage::Validate(c) => ("validate", c.branch.clone()),
                    Stage::Build(c) => ("build", c.branch.clone()),
                    Stage::Pipeline { common, .. } => ("pipeline", common.branch.clone()),
                    other => panic!("unexpected {other:?}"),
                })
                .collect::<Vec<_>>()
        });
        match (got, expect) {
            (Ok(got), Ok(want)) => {
                let want: Vec<(&str, String)> = want.iter().map(|(s, b)| (*s, b.to_string())).collect();
                assert_eq!(got, want);
            }
            (Err(e), Err(want)) => assert!(format!("{e:#}").contains(want), "{e:#}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn chain_splits_by_counts_whatever_the_values() {
        // Values that look like counts or stage words stay values: the counts decide. (A value
        // starting with `-` cannot come from git: `git check-ref-format --branch` refuses it.)
        check(
            chain(&[line("validate", "3"), line("build", "step"), line("pipeline", "main")]),
            Ok(vec![("validate", "3"), ("build", "step"), ("pipeline", "main")]),
        );
        check(vec![], Err("no stage given"));
        check(vec!["x".into()], Err("expected the word count"));
        check(vec!["40".into(), "step".into()], Err("but only 1 follow"));
        for count in ["0", "01", "+2", "-1"] {
            check(vec![count.into(), "step".into(), "build".into()], Err("a number from 1"));
        }
        let nested = chain(&[vec!["step".into(), "chain".into(), "1".into(), "step".into()]]);
        check(nested, Err("cannot contain another chain"));
        let mut bad = chain(&[line("validate", "main")]);
        bad.extend(chain(&[vec!["step".into(), "nope".into()]]));
        check(bad, Err("stage `step nope`"));
    }
}
