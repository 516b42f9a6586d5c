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
        let n: usize = count.parse().with_context(|| {
            format!("`aphex step chain`: expected the word count of the next stage, found `{count}`")
        })?;
        if n > tail.len() {
            bail!("`aphex step chain`: a stage of {n} words, but only {} words follow", tail.len());
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
        sink: Arc::new(steps::StderrSink),
        work_dir: common.work_dir.clone(),
        config_file: common.config.clone(),
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    if let Stage::Chain { stages } = &args.stage {
        // Parse every stage first: a malformed later stage fails before the first one runs.
        for stage in chained_stages(stages)? {
            let code = Box::pin(run_async(stage)).await?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let result = match args.stage {
        Stage::Chain { .. } => Ok(()),
        Stage::Validate(common) => {
            let ctx = context(&common, None, None).await?;
            steps::build::ensure_source(&ctx).await?;
            let identity = steps::adapters::StsIdentity::from_env().await;
            steps::validate::run(&ctx, &identity).await.map(|_| ())
        }
        Stage::Build(common) => {
            let ctx = context(&common, None, None).await?;
            steps::build::ensure_source(&ctx).await?;
            steps::build::run(&ctx).await.map(|_| ())
        }
        Stage::Pipeline { common, template_out } => {
            let ctx = context(&common, None, None).await?;
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
            steps::deploy::run_pipeline(&ctx, &updater).await.map(|_| ())
        }
        Stage::Deploy { common, env, outputs_file } => {
            let ctx = context(&common, None, None).await?;
            let deployer = steps::engine::EngineDeployer {
                method: steps::engine::EngineDeployer::method_from_env().map_err(anyhow::Error::msg)?,
                progress: true,
            };
            steps::deploy::run(&ctx, &env, &outputs_file, &deployer).await.map(|_| ())
        }
        Stage::Test { common, env, outputs_file } => {
            let ctx = context(&common, None, None).await?;
            steps::test::run(&ctx, &env, &outputs_file).await.map(|_| ())
        }
        Stage::Finalize { common, delivery_id, pusher, status, event_bus, no_event } => {
            let ctx = context(&common, delivery_id, pusher).await?;
            let publisher = if no_event {
                None
            } else {
                Some(steps::finalize::EventBridgePublisher::from_env(event_bus).await)
            };
            let mut stdout = std::io::stdout();
            let publisher_ref = publisher.as_ref().map(|p| p as &dyn steps::EventPublisher);
            let status = status.filter(|s| !s.is_empty() && !s.starts_with("{{"));
            match steps::finalize::run(&ctx, status.as_deref(), &[], publisher_ref, &mut stdout).await {
                Ok(record) => {
                    eprintln!("[finalize] run {} {:?}", record.run.run_id, record.status);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(err) => {
            eprintln!("error: {err}");
            Ok(ExitCode::FAILURE)
        }
    }
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
        check(vec!["40".into(), "step".into()], Err("only 1 words follow"));
        let nested = chain(&[vec!["step".into(), "chain".into(), "1".into(), "step".into()]]);
        check(nested, Err("cannot contain another chain"));
        let mut bad = chain(&[line("validate", "main")]);
        bad.extend(chain(&[vec!["step".into(), "nope".into()]]));
        check(bad, Err("stage `step nope`"));
    }
}
