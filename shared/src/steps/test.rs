//! `aphex step test --env NAME`: the environment's test commands, with the stack outputs as
//! `APHEX_OUTPUT_<STACK>_<KEY>` variables and as the JSON file named by `APHEX_OUTPUTS_FILE`.

use std::path::Path;
use std::time::Duration;

use super::shell::{self, PlannedCommand};
use super::{Outputs, StageFailure, StageRecord, StageReport, StepContext, StepError, environment, names};
use crate::config::{Environment, TestSettings};

/// Test stage id of an environment.
pub fn stage_id(env: &str) -> String {
    format!("test-{env}")
}

/// The test commands of `env` in order: each with the environment's `env`, its target, the outputs (as
/// `APHEX_OUTPUT_<STACK>_<KEY>` and the file `outputs_file`) and the `tests.timeoutMinutes` limit.
pub fn commands(
    env: &Environment,
    tests: &TestSettings,
    outputs_file: &Path,
    outputs: &Outputs,
) -> Vec<PlannedCommand> {
    let mut vars: Vec<(String, String)> = env.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.extend([
        ("APHEX_ENVIRONMENT".to_owned(), env.name.clone()),
        ("AWS_REGION".to_owned(), env.region.clone()),
        ("AWS_DEFAULT_REGION".to_owned(), env.region.clone()),
        ("CDK_DEFAULT_REGION".to_owned(), env.region.clone()),
        ("CDK_DEFAULT_ACCOUNT".to_owned(), env.account.clone()),
        ("APHEX_OUTPUTS_FILE".to_owned(), outputs_file.display().to_string()),
    ]);
    vars.extend(names::output_vars(outputs));
    let timeout = Duration::from_secs(u64::from(tests.timeout_minutes) * 60);
    tests.commands.iter().map(|c| PlannedCommand { command: c.clone(), env: vars.clone(), timeout }).collect()
}

/// Runs the test stage. The outputs come from `outputs_file` (written by deploy, or by Argo from the
/// deploy's output parameter), or else from the deploy stage's record.
pub async fn run(ctx: &StepContext, env_name: &str, outputs_file: &Path) -> Result<StageRecord, StepError> {
    let id = stage_id(env_name);
    ctx.record(&id, Some(env_name), async {
        super::deploy::ensure_artifacts(ctx, &id).await?;
        let config = ctx.load_config()?;
        let env = environment(&config, env_name)?;
        let Some(tests) = &env.tests else {
            ctx.say(&id, "no tests configured");
            return Ok(StageReport::default());
        };
        let outputs = read_outputs(ctx, &id, env_name, outputs_file).await?;
        let outputs_file = std::path::absolute(outputs_file)
            .map_err(|source| StepError::Io { path: outputs_file.to_path_buf(), source })?;
        super::deploy::write_outputs(&outputs_file, &outputs)?;
        let mut external = Duration::ZERO;
        for planned in commands(env, tests, &outputs_file, &outputs) {
            ctx.say(&id, &format!("$ {}", planned.command));
            let cmd = planned.shell(&ctx.work_dir, &id);
            match shell::run(&cmd, ctx.sink.clone()).await {
                Ok(took) => external += took,
                Err(failure) => {
                    return Err(StageFailure {
                        error: StepError::Test { env: env_name.to_owned(), failure },
                        partial: StageReport { external, ..Default::default() },
                    });
                }
            }
        }
        Ok(StageReport { external, ..Default::default() })
    })
    .await
}

async fn read_outputs(ctx: &StepContext, id: &str, env: &str, file: &Path) -> Result<Outputs, StepError> {
    match std::fs::read(file) {
        Ok(bytes) if !bytes.is_empty() => serde_json::from_slice(&bytes).map_err(|e| {
            StepError::Config(format!(
                "{}: not a stack outputs file ({{stack: {{key: value}}}}): {e}",
                file.display()
            ))
        }),
        _ => Ok(ctx.read_stage(id, &super::deploy::stage_id(env)).await?.outputs.unwrap_or_default()),
    }
}
