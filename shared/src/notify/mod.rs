//! Notifications: the pipeline status event contract, CloudFormation stack status events, the Slack and
//! SNS messages built from them (pure), and their delivery through a `Notifier` with retries.
//!
//! Flow (what the `notify` Lambda runs): [`parse_event`] an EventBridge event → [`plan`] which deliveries
//! it needs (pure, from the event's `notifications` settings and the function's [`Defaults`]) →
//! [`deliver_all`] through a [`Notifier`] (Slack webhook, SNS topic), retrying transient failures with
//! backoff. A malformed event is a [`NotifyError::Malformed`] (never retried); a delivery that still fails
//! after the retries is a [`NotifyError::Delivery`] that says whether a Lambda retry can help.

mod channels;
mod deliver;
mod event;
mod message;
mod plan;
mod slack;
mod sns;
pub mod subscriptions;
#[cfg(test)]
mod tests;

pub use channels::Channels;
pub use deliver::{
    Delivered, DeliveryError, DeliveryFailure, DeliveryReport, Notifier, RecordingNotifier, RetryPolicy,
    deliver_all,
};
pub use event::{
    CLOUDFORMATION_SOURCE, DETAIL_TYPE_FAILED, DETAIL_TYPE_STACK_STATUS_CHANGE, DETAIL_TYPE_STARTED,
    DETAIL_TYPE_SUCCEEDED, DETAIL_TYPE_WAITING_FOR_APPROVAL, FailedStack, IncomingEvent,
    NotificationSettings, PIPELINE_SOURCE, PipelineStatusEvent, RunStatus, StackStatusChange,
    StackStatusDetails, parse_event,
};
pub use message::{
    Link, Notification, Severity, SnsMessage, cloudformation_console_url, slack_message, sns_message,
};
pub use plan::{
    Defaults, Delivery, DeliveryPlan, ENV_ARGO_URL, ENV_SLACK_WEBHOOK_SECRET, ENV_SNS_TOPIC_ARN,
    ENV_STACK_NOTIFY_ON, outcome_word, parse_outcome, plan,
};
pub use slack::{SecretSource, SecretsManagerSource, SlackWebhook, StaticSecret, slack_webhook_url};
pub use sns::SnsTopicPublisher;
pub use subscriptions::{
    OwnedSubscriptions, SubscriptionPlan, SyncReport, TopicSubscription, plan_subscriptions,
    sync_email_subscriptions,
};

use std::fmt;

use serde::Serialize;

/// What the `notify` function did with one event (its invocation result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Handled {
    /// Nothing to send.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Everything went out.
    Delivered {
        /// The notification's one-line summary.
        summary: String,
        /// Each delivery and the attempts it took.
        delivered: Vec<Delivered>,
    },
}

/// The whole job for one EventBridge event: parse, plan, deliver with retries.
pub async fn handle_event(
    event: &serde_json::Value,
    defaults: &Defaults,
    notifier: &dyn Notifier,
    policy: RetryPolicy,
) -> Result<Handled, NotifyError> {
    let incoming = parse_event(event)?;
    match plan(&incoming, defaults) {
        DeliveryPlan::Skip { reason } => {
            tracing::info!(%reason, "nothing to notify");
            Ok(Handled::Skipped { reason })
        }
        DeliveryPlan::Send { notification, deliveries } => {
            let report = deliver_all(notifier, &deliveries, policy).await?;
            Ok(Handled::Delivered { summary: notification.summary(), delivered: report.delivered })
        }
    }
}

/// Why the `notify` Lambda could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The event is not one the function understands. Retrying cannot help.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Some deliveries failed after every retry.
    #[error("{}", DeliveryFailures(.failures))]
    Delivery {
        /// Each failed delivery with its last error.
        failures: Vec<DeliveryFailure>,
    },
    /// The function's own settings (environment variables) are wrong.
    #[error("invalid setting {name}: {message}")]
    Settings {
        /// The environment variable.
        name: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl NotifyError {
    /// Whether running the same event again may succeed (a transient Slack/SNS failure), as opposed to a
    /// malformed event or a permanent rejection (bad webhook URL, missing topic, denied access).
    pub fn is_retryable(&self) -> bool {
        match self {
            NotifyError::Malformed(_) | NotifyError::Settings { .. } => false,
            NotifyError::Delivery { failures } => failures.iter().any(|f| f.error.is_transient()),
        }
    }

    /// A stable error type for the Lambda runtime's error response and for dead-letter readers.
    pub fn error_type(&self) -> &'static str {
        match self {
            NotifyError::Malformed(_) => "Aphex.Notify.MalformedEvent",
            NotifyError::Settings { .. } => "Aphex.Notify.InvalidSettings",
            NotifyError::Delivery { .. } if self.is_retryable() => "Aphex.Notify.DeliveryFailed.Retryable",
            NotifyError::Delivery { .. } => "Aphex.Notify.DeliveryFailed.Permanent",
        }
    }
}

struct DeliveryFailures<'a>(&'a [DeliveryFailure]);

impl fmt::Display for DeliveryFailures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} notification(s) failed after retries: ", self.0.len())?;
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} ({} attempt(s)): {}", failure.target, failure.attempts, failure.error)?;
        }
        Ok(())
    }
}
