//! `aphex step build`: the repository at the pushed commit, the build commands, and the artifacts
//! (tar + zstd with a manifest) uploaded under `<repo>/<commit-sha>/<UTC timestamp>/`.

use std::time::Duration;

use super::shell::{self, PlannedCommand};
use super::{StageFailure, StageRecord, StageReport, StepContext, StepError, source};
use crate::artifacts::{self, ArtifactRef};
use crate::config::Config;

/// Stage id.
pub const STAGE: &str = "build";

/// Makes sure the source is in `ctx.work_dir`: a work tree that already holds the config is used as it is
/// (local runs); otherwise the repository is cloned there at exactly the run's commit.
pub async fn ensure_source(ctx: &StepContext) -> Result<(), StepError> {
    if ctx.work_dir.join(&ctx.config_file).is_file() {
        return Ok(());
    }
    ctx.say("source", &format!("cloning at {}", ctx.run.commit_sha));
    let commit = source::clone_at(&ctx.run.repo_url, &ctx.run.commit_sha, &ctx.work_dir)
        .await
        .map_err(StepError::Source)?;
    if commit != ctx.run.commit_sha {
        ctx.say("source", &format!("{} is a tag of commit {commit}", ctx.run.commit_sha));
    }
    Ok(())
}

/// Runs the build stage.
pub async fn run(ctx: &StepContext) -> Result<StageRecord, StepError> {
    ctx.record(STAGE, None, async {
        let config = ctx.load_config()?;
        let mut external = Duration::ZERO;
        for planned in commands(&config) {
            ctx.say(STAGE, &format!("$ {}", planned.command));
            let cmd = planned.shell(&ctx.work_dir, STAGE);
            match shell::run(&cmd, ctx.sink.clone()).await {
                Ok(took) => external += took,
                Err(failure) => {
                    return Err(StageFailure {
                        error: StepError::Build(failure),
                        partial: StageReport { external, ..Default::default() },
                    });
                }
            }
        }
        let at = ArtifactRef::new(&ctx.run.repo_name(), &ctx.run.commit_sha, time::OffsetDateTime::now_utc());
        let include = artifact_patterns(&config, &ctx.config_file);
        let clock = std::time::Instant::now();
        let manifest =
            artifacts::upload(ctx.store.as_ref(), &ctx.work_dir, &include, &at).await.map_err(|e| {
                StageFailure { error: e.into(), partial: StageReport { external, ..Default::default() } }
            })?;
        ctx.say(
            STAGE,
            &format!(
                "artifacts: {} files, {} -> {} at {} in {:.0?}",
                manifest.files.len(),
                human_bytes(manifest.total_bytes),
                human_bytes(manifest.archive_bytes),
                ctx.store.location(&at.prefix),
                clock.elapsed()
            ),
        );
        Ok(StageReport { external, artifacts: Some(at), ..Default::default() })
    })
    .await
}

/// The build commands in order, each with `build.env` and its `build.timeoutMinutes` limit.
pub fn commands(config: &Config) -> Vec<PlannedCommand> {
    let env: Vec<(String, String)> = config.build.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let timeout = Duration::from_secs(u64::from(config.build.timeout_minutes) * 60);
    config
        .build
        .commands
        .iter()
        .map(|command| PlannedCommand { command: command.clone(), env: env.clone(), timeout })
        .collect()
}

/// The globs of the files kept for later stages: `build.artifacts` plus the config file itself (later
/// stages read it from the artifacts); empty (the whole tree but `.git`) when `build.artifacts` is.
pub fn artifact_patterns(config: &Config, config_file: &str) -> Vec<String> {
    let mut include = config.build.artifacts.clone();
    if !include.is_empty() {
        include.push(config_file.to_owned());
    }
    include
}

/// `1.5 MiB`-style sizes for messages.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
