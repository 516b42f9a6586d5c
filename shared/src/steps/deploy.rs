//! `aphex step deploy --env NAME` and `aphex step pipeline`: the verified artifacts, then the deploy
//! engine (or the self-update) behind its trait; stack outputs go to a file (the Argo output parameter).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::{
    DeployRequest, EnvironmentDeployer, Outputs, PipelineUpdater, StageFailure, StageRecord, StageReport,
    Status, StepContext, StepError, environment,
};
use crate::artifacts::{self, ArtifactRef};

/// Marker in a work tree saying which artifacts it holds (unpacked there, or verified in place), so
/// stages sharing a work tree (the local runner) fetch them once. Under `.aphex/`, which is never packaged.
pub const MARKER: &str = ".aphex/artifacts";

/// The artifacts of this run in `ctx.work_dir`, downloaded and verified unless the marker says they are
/// already there. Returns where they came from.
pub async fn ensure_artifacts(ctx: &StepContext, stage: &str) -> Result<ArtifactRef, StepError> {
    let at = build_artifacts(ctx, stage).await?;
    let marker = ctx.work_dir.join(MARKER);
    if std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == at.prefix) {
        return Ok(at);
    }
    let clock = Instant::now();
    let manifest = artifacts::download(ctx.store.as_ref(), &at, &ctx.work_dir).await?;
    fetched(ctx, stage, &at, &manifest, "verified (sha256) from", clock)?;
    Ok(at)
}

/// The local runner's way to the artifacts: the tree the build ran in is the work tree of the later
/// stages, checked against the build's manifest (every file's size, the sha256 of every file changed
/// since the packaging, the stored archive's sha256) instead of unpacking a copy of it. A file changed
/// since the build fails the check.
pub async fn adopt_build_tree(ctx: &StepContext, stage: &str) -> Result<ArtifactRef, StepError> {
    let at = build_artifacts(ctx, stage).await?;
    let clock = Instant::now();
    let manifest = artifacts::verify_tree(ctx.store.as_ref(), &at, &ctx.work_dir, true).await?;
    fetched(ctx, stage, &at, &manifest, "of the build's tree verified in place (sha256) against", clock)?;
    Ok(at)
}

/// Where the build stage put this run's artifacts.
async fn build_artifacts(ctx: &StepContext, stage: &str) -> Result<ArtifactRef, StepError> {
    let build = ctx.read_stage(stage, super::build::STAGE).await?;
    build.artifacts.ok_or_else(|| StepError::MissingStage {
        stage: stage.to_owned(),
        needed: "build (with artifacts)".into(),
        location: ctx.store.location(&ctx.stage_key(super::build::STAGE)),
        run_id: ctx.run.run_id.clone(),
    })
}

/// Marks the work tree as holding `at` and says how it got there.
fn fetched(
    ctx: &StepContext,
    stage: &str,
    at: &ArtifactRef,
    manifest: &artifacts::Manifest,
    how: &str,
    clock: Instant,
) -> Result<(), StepError> {
    write_marker(&ctx.work_dir.join(MARKER), at)?;
    ctx.say(
        stage,
        &format!(
            "artifacts: {} files {how} {} in {:.0?}",
            manifest.files.len(),
            ctx.store.location(&at.prefix),
            clock.elapsed()
        ),
    );
    Ok(())
}

fn write_marker(marker: &Path, at: &ArtifactRef) -> Result<(), StepError> {
    let io = |source| StepError::Io { path: marker.to_path_buf(), source };
    if let Some(parent) = marker.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(marker, &at.prefix).map_err(io)
}

/// Deploy stage id of an environment.
pub fn stage_id(env: &str) -> String {
    format!("deploy-{env}")
}

/// Runs `deploy --env NAME`: writes the outputs to `outputs_file` (also when a stack failed, with what
/// deployed).
pub async fn run(
    ctx: &StepContext,
    env_name: &str,
    outputs_file: &Path,
    deployer: &dyn EnvironmentDeployer,
) -> Result<StageRecord, StepError> {
    let id = stage_id(env_name);
    ctx.record(&id, Some(env_name), async {
        ensure_artifacts(ctx, &id).await?;
        let config = ctx.load_config()?;
        let env = environment(&config, env_name)?;
        let request = DeployRequest {
            config: &config,
            env,
            work_dir: &ctx.work_dir,
            run_id: &ctx.run.run_id,
            stage: &id,
        };
        let outcome = deployer.deploy(request, ctx.sink.clone()).await;
        ctx.say(
            &id,
            &format!(
                "synth {:.2}s, waiting on AWS {:.2}s",
                outcome.synth.as_secs_f64(),
                outcome.aws_wait.as_secs_f64()
            ),
        );
        write_outputs(outputs_file, &outcome.outputs)?;
        let report = StageReport {
            external: outcome.synth + outcome.aws_wait,
            stacks: outcome.stacks.clone(),
            outputs: Some(outcome.outputs.clone()),
            artifacts: None,
        };
        match outcome.error {
            None => Ok(report),
            Some(reason) => Err(StageFailure {
                error: StepError::Deploy { env: env_name.to_owned(), reason },
                partial: report,
            }),
        }
    })
    .await
}

/// Writes `{stack: {key: value}}` as JSON, creating the folder.
pub fn write_outputs(path: &Path, outputs: &Outputs) -> Result<(), StepError> {
    let io = |source| StepError::Io { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let json = serde_json::to_vec_pretty(outputs).map_err(|e| StepError::Config(e.to_string()))?;
    std::fs::write(path, json).map_err(io)
}

/// Stage id of the pipeline self-update.
pub const PIPELINE_STAGE: &str = "pipeline";

/// Runs `pipeline`: the config at this commit (from the artifacts), then the updater.
pub async fn run_pipeline(
    ctx: &StepContext,
    updater: &dyn PipelineUpdater,
    notify: Option<&super::notify::NotifyAdapters>,
) -> Result<StageRecord, StepError> {
    ctx.record(PIPELINE_STAGE, None, async {
        ensure_artifacts(ctx, PIPELINE_STAGE).await?;
        let config = ctx.load_config()?;
        let (summary, external) = updater
            .update(&config, &ctx.work_dir, &ctx.run.commit_sha, ctx.sink.clone())
            .await
            .map_err(StepError::Pipeline)?;
        ctx.say(PIPELINE_STAGE, &summary);
        // Once per run: `notifications.email` as subscriptions of the pipeline's topic.
        if let Some(notify) = notify {
            super::notify::sync_subscriptions(ctx, PIPELINE_STAGE, &config, notify).await?;
        }
        Ok(StageReport { external, ..Default::default() })
    })
    .await
}

/// A deployer for tests and dry runs: answers from a table, one outcome per environment.
#[derive(Debug, Default)]
pub struct ScriptedDeployer {
    pub outcomes: std::collections::HashMap<String, super::DeployOutcome>,
}

#[async_trait::async_trait]
impl EnvironmentDeployer for ScriptedDeployer {
    async fn deploy(
        &self,
        request: DeployRequest<'_>,
        sink: Arc<dyn super::OutputSink>,
    ) -> super::DeployOutcome {
        let outcome = self.outcomes.get(&request.env.name).cloned().unwrap_or_default();
        for stack in &outcome.stacks {
            let verb = if stack.status == Status::Succeeded { "deployed" } else { "failed" };
            sink.line(request.stage, &format!("{} {verb}", stack.name));
        }
        outcome
    }
}
