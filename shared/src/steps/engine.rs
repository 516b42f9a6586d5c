//! The deploy engine (`aphex::deploy`) as the steps' [`EnvironmentDeployer`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{DeployOutcome, DeployRequest, EnvironmentDeployer, OutputSink, StackRecord, Status};
use crate::deploy::{self, DeployOptions, Method, StackOutcome};

/// Deploys through `aphex::deploy::deploy_environment`: synth just in time in the work tree, then the
/// environment's stacks through CloudFormation.
#[derive(Debug, Clone, Default)]
pub struct EngineDeployer {
    /// Change sets (default) or CreateStack/UpdateStack (`direct`, needed for moto, whose change sets
    /// produce no outputs).
    pub method: Method,
    /// Engine progress lines on stderr (pods); the local runner shows its own per-stack lines.
    pub progress: bool,
}

impl EngineDeployer {
    /// The method named by `APHEX_DEPLOY_METHOD` (`change-set` or `direct`), change sets otherwise.
    pub fn method_from_env() -> Result<Method, String> {
        match std::env::var("APHEX_DEPLOY_METHOD").ok().as_deref() {
            None | Some("") | Some("change-set") => Ok(Method::ChangeSet),
            Some("direct") => Ok(Method::Direct),
            Some(other) => Err(format!("APHEX_DEPLOY_METHOD={other:?}: use change-set or direct")),
        }
    }
}

fn action(outcome: &StackOutcome) -> (Status, &'static str, Option<String>) {
    match outcome {
        StackOutcome::Deployed => (Status::Succeeded, "deployed", None),
        StackOutcome::Unchanged => (Status::Succeeded, "unchanged", None),
        StackOutcome::NoChanges => (Status::Succeeded, "no changes", None),
        StackOutcome::Planned { .. } => (Status::Succeeded, "planned", None),
        StackOutcome::Failed { message, .. } => (Status::Failed, "failed", Some(message.clone())),
        StackOutcome::NotStarted { reason } => (Status::Skipped, "not started", Some(reason.clone())),
    }
}

#[async_trait]
impl EnvironmentDeployer for EngineDeployer {
    async fn deploy(&self, request: DeployRequest<'_>, sink: Arc<dyn OutputSink>) -> DeployOutcome {
        let options = DeployOptions {
            method: self.method,
            run_id: request.run_id.to_owned(),
            progress: self.progress,
            ..Default::default()
        };
        let report =
            match deploy::deploy_environment(request.config, &request.env.name, &options, request.work_dir)
                .await
            {
                Ok(report) => report,
                Err(err) => return DeployOutcome { error: Some(err.to_string()), ..Default::default() },
            };
        let ms = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        let mut outcome = DeployOutcome {
            synth: Duration::from_millis(report.synth_ms.map(ms).unwrap_or(0)),
            ..Default::default()
        };
        for stack in &report.stacks {
            let (status, verb, error) = action(&stack.outcome);
            sink.line(
                request.stage,
                &format!("{} {verb} in {:.2}s", stack.display_name, stack.duration_ms as f64 / 1000.0),
            );
            outcome.aws_wait += Duration::from_millis(ms(stack.aws_wait_ms));
            outcome.stacks.push(StackRecord {
                name: stack.display_name.clone(),
                status,
                duration_ms: ms(stack.duration_ms),
                aws_wait_ms: ms(stack.aws_wait_ms),
                action: Some(verb.to_owned()),
                error,
            });
        }
        outcome.outputs = report
            .outputs
            .iter()
            .map(|(stack, values)| {
                (stack.clone(), values.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            })
            .collect();
        // Parallel stacks wait on AWS at the same time: count the waiting as wall time, never more
        // than the deploy took after synth.
        let wall = Duration::from_millis(ms(report.duration_ms)).saturating_sub(outcome.synth);
        outcome.aws_wait = outcome.aws_wait.min(wall);
        if !report.success() {
            outcome.error = Some(report.failures().join("; "));
        }
        outcome
    }
}
