//! Notifications from the steps: `notifications.email` subscriptions (the pipeline stage, once per run)
//! and `aphex step notify --event approval-requested` (the stage before each manual approval gate).
//!
//! The approval event is a pipeline status event (`Pipeline Run Waiting For Approval`) handed to an
//! [`EventPublisher`]: in a pod, EventBridge (the `notify` Lambda delivers it to the pipeline's topic,
//! the config's Slack webhook and extra topic, as it does the run's outcome); in `aphex run --local`,
//! [`DirectDelivery`], which plans and delivers it in process through a [`Notifier`] with the same
//! [`crate::notify::plan`].

use std::sync::Arc;

use async_trait::async_trait;

use super::{EventPublisher, StepContext, StepError};
use crate::artifacts::{ArtifactStore, StoreError};
use crate::config::Config;
use crate::notify::{
    self, Defaults, DeliveryPlan, NotificationSettings, Notifier, OwnedSubscriptions, PipelineStatusEvent,
    RetryPolicy, RunStatus, SyncReport,
};

/// Stage id prefix of the approval notification stages: `notify-approve-<env>`.
pub const APPROVAL_STAGE_PREFIX: &str = "notify-approve-";
/// `--event` value of the approval notification.
pub const EVENT_APPROVAL_REQUESTED: &str = "approval-requested";

/// Where the email subscriptions and the approval notifications go, and how.
#[derive(Clone)]
pub struct NotifyAdapters {
    /// SNS calls (subscriptions; deliveries of [`DirectDelivery`]).
    pub notifier: Arc<dyn Notifier>,
    /// The pipeline's topic (`APHEX_SNS_TOPIC_ARN`) and Slack default, as the `notify` Lambda reads them.
    pub defaults: Defaults,
    /// Keeps the owned-subscriptions record between runs (the artifact bucket in a pod; a directory
    /// beside the local runs).
    pub state: Arc<dyn ArtifactStore>,
}

impl std::fmt::Debug for NotifyAdapters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyAdapters").field("defaults", &self.defaults).finish()
    }
}

impl NotifyAdapters {
    /// The production adapters: Slack and SNS through [`notify::Channels`] with clients from the default
    /// credential chain (honours `AWS_ENDPOINT_URL`), the defaults from `APHEX_SNS_TOPIC_ARN` and
    /// `APHEX_SLACK_WEBHOOK_SECRET` (the notify Lambda's variables), the record kept in `state`.
    pub async fn from_env(state: Arc<dyn ArtifactStore>) -> Result<NotifyAdapters, StepError> {
        let defaults =
            Defaults::from_lookup(|k| std::env::var(k).ok()).map_err(|e| StepError::Notify(e.to_string()))?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let secrets = Arc::new(notify::SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&aws)));
        let slack = notify::SlackWebhook::new(secrets)
            .map_err(|e| StepError::Notify(format!("building the Slack HTTP client: {e}")))?;
        let notifier = Arc::new(notify::Channels {
            slack,
            sns: notify::SnsTopicPublisher::new(aws_sdk_sns::Client::new(&aws)),
        });
        Ok(NotifyAdapters { notifier, defaults, state })
    }
}

/// Key of the record of the email subscriptions this tool made for `pipeline`.
pub fn subscriptions_key(pipeline: &str) -> String {
    format!("pipelines/{pipeline}/email-subscriptions.json")
}

/// The topic `notifications.email` subscribes to: the pipeline's own (`APHEX_SNS_TOPIC_ARN`), else the
/// config's `notifications.snsTopicArn`.
pub fn subscription_topic(config: &Config, defaults: &Defaults) -> Option<String> {
    defaults
        .sns_topic_arn
        .clone()
        .or_else(|| config.notifications.as_ref().and_then(|n| n.sns_topic_arn.clone()))
}

/// Brings the topic's email subscriptions in line with `notifications.email` (see
/// [`crate::notify::subscriptions`] for the rules) and keeps the owned record. `Ok(None)`: nothing to
/// do (no addresses now or before), or no topic to subscribe to (said on the sink).
pub async fn sync_subscriptions(
    ctx: &StepContext,
    stage: &str,
    config: &Config,
    adapters: &NotifyAdapters,
) -> Result<Option<SyncReport>, StepError> {
    let wanted: Vec<String> = config.notifications.as_ref().map(|n| n.email.clone()).unwrap_or_default();
    let key = subscriptions_key(&ctx.run.pipeline);
    let owned: OwnedSubscriptions = match adapters.state.get_bytes(&key).await {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            StepError::Config(format!("{} is not a subscriptions record: {e}", adapters.state.location(&key)))
        })?,
        Err(StoreError::NotFound { .. }) => OwnedSubscriptions::default(),
        Err(e) => return Err(e.into()),
    };
    if wanted.is_empty() && owned.addresses.is_empty() {
        return Ok(None);
    }
    let Some(topic) = subscription_topic(config, &adapters.defaults) else {
        ctx.say(
            stage,
            &format!(
                "notifications.email lists {} address(es) but there is no topic to subscribe them to: set {} \
                 (the infra's NotificationTopicArn) or notifications.snsTopicArn",
                wanted.len(),
                notify::ENV_SNS_TOPIC_ARN
            ),
        );
        return Ok(None);
    };
    let report = notify::sync_email_subscriptions(adapters.notifier.as_ref(), &topic, &wanted, &owned)
        .await
        .map_err(|e| StepError::Notify(e.to_string()))?;
    let json = serde_json::to_vec_pretty(&report.owned).map_err(|e| StepError::Config(e.to_string()))?;
    adapters.state.put_bytes(&key, json).await?;
    ctx.say(stage, &report.summary());
    Ok(Some(report))
}

/// What a person does to pass the gate `gate` of run `run_id`: the exact command in a cluster, the
/// prompt of the local runner for a local run (`delivery_id` `local`).
pub fn approve_instructions(
    run_id: &str,
    delivery_id: Option<&str>,
    namespace: &str,
    gate: &str,
    env: &str,
) -> String {
    if delivery_id == Some("local") {
        format!(
            "`aphex run --local` (run {run_id}) is waiting at its terminal prompt `Deploy to {env} ...? [y/N]`: \
             answer y to deploy, anything else to stop the run (runs started with --approve pass every gate)"
        )
    } else {
        format!(
            "argo resume {run_id} -n {namespace} --node-field-selector displayName={gate} (or Resume on the \
             node in the Argo UI); to refuse: argo stop {run_id} -n {namespace}"
        )
    }
}

/// The `Pipeline Run Waiting For Approval` event of the gate before `env`.
pub fn approval_event(
    ctx: &StepContext,
    env: &str,
    gate: &str,
    namespace: &str,
    settings: &NotificationSettings,
) -> PipelineStatusEvent {
    let run = &ctx.run;
    let mut event = PipelineStatusEvent::new(
        run.run_id.clone(),
        run.pipeline.clone(),
        run.repo_url.clone(),
        run.branch.clone(),
        run.commit_sha.clone(),
        RunStatus::WaitingForApproval,
    );
    event.author = run.pusher.clone().filter(|p| !p.is_empty() && p != "manual");
    event.stage = Some(gate.to_owned());
    event.environment = Some(env.to_owned());
    event.approve_command =
        Some(approve_instructions(&run.run_id, run.delivery_id.as_deref(), namespace, gate, env));
    event.argo_url = std::env::var("APHEX_ARGO_URL").ok().filter(|u| !u.is_empty());
    event.notifications = settings.clone();
    event
}

/// Runs `aphex step notify --event approval-requested`: publishes the approval event and records the
/// stage. A failed publish fails the stage (the gate would otherwise wait for someone nobody told).
pub async fn run_approval_requested(
    ctx: &StepContext,
    stage: &str,
    env: &str,
    gate: &str,
    namespace: &str,
    settings: &NotificationSettings,
    publisher: &dyn EventPublisher,
) -> Result<super::StageRecord, StepError> {
    ctx.record(stage, Some(env), async {
        let event = approval_event(ctx, env, gate, namespace, settings);
        let detail = serde_json::to_value(&event).map_err(|e| StepError::Config(e.to_string()))?;
        publisher.publish(event.detail_type(), &detail).await.map_err(StepError::Event)?;
        ctx.say(
            stage,
            &format!(
                "approval requested for {env} (run {}): {}",
                ctx.run.run_id,
                event.approve_command.unwrap_or_default()
            ),
        );
        Ok(super::StageReport::default())
    })
    .await
}

/// An [`EventPublisher`] that delivers in process what the `notify` Lambda would: [`notify::plan`] with
/// `defaults`, then [`notify::deliver_all`] through `notifier` (the local runner's publisher).
pub struct DirectDelivery {
    pub notifier: Arc<dyn Notifier>,
    pub defaults: Defaults,
}

impl std::fmt::Debug for DirectDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectDelivery").field("defaults", &self.defaults).finish()
    }
}

#[async_trait]
impl EventPublisher for DirectDelivery {
    async fn publish(&self, detail_type: &str, detail: &serde_json::Value) -> Result<(), String> {
        let envelope = serde_json::json!({
            "source": notify::PIPELINE_SOURCE,
            "detail-type": detail_type,
            "detail": detail,
        });
        let incoming = notify::parse_event(&envelope).map_err(|e| e.to_string())?;
        match notify::plan(&incoming, &self.defaults) {
            DeliveryPlan::Skip { reason } => {
                tracing::info!(%reason, "nothing to notify");
                Ok(())
            }
            DeliveryPlan::Send { deliveries, .. } => {
                notify::deliver_all(self.notifier.as_ref(), &deliveries, RetryPolicy::default())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(delivery: Option<&str>, expect: &[&str]) {
        let text = approve_instructions("aphex-d1", delivery, "argo", "approve-prod", "prod");
        for part in expect {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
    }

    #[test]
    fn approval_instructions_name_the_exact_command() {
        check(
            Some("8f0e-delivery"),
            &[
                "argo resume aphex-d1 -n argo --node-field-selector displayName=approve-prod",
                "argo stop aphex-d1 -n argo",
            ],
        );
        check(None, &["argo resume aphex-d1 -n argo"]);
        check(Some("local"), &["aphex run --local", "aphex-d1", "Deploy to prod", "[y/N]", "--approve"]);
    }
}
