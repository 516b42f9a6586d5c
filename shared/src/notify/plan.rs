//! Which deliveries an event needs (pure): its outcome against `notifications.on`, and the targets from
//! the event's settings plus the function's defaults.

use serde_json::Value;

use super::NotifyError;
use super::event::IncomingEvent;
use super::message::{Notification, SnsMessage, slack_message, sns_message};
use crate::config::NotifyOn;

/// Environment variable: the pipeline's own SNS topic (email subscriptions); every notification goes there.
pub const ENV_SNS_TOPIC_ARN: &str = "APHEX_SNS_TOPIC_ARN";
/// Environment variable: the Slack webhook secret used when an event names none (and for stack events).
pub const ENV_SLACK_WEBHOOK_SECRET: &str = "APHEX_SLACK_WEBHOOK_SECRET";
/// Environment variable: which CloudFormation stack outcomes notify (comma-separated `success`,
/// `failure`; default `failure`).
pub const ENV_STACK_NOTIFY_ON: &str = "APHEX_STACK_NOTIFY_ON";
/// Environment variable: the Argo UI address, linked from stack notifications.
pub const ENV_ARGO_URL: &str = "APHEX_ARGO_URL";

/// The function's own settings, from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// [`ENV_SNS_TOPIC_ARN`].
    pub sns_topic_arn: Option<String>,
    /// [`ENV_SLACK_WEBHOOK_SECRET`].
    pub slack_webhook_secret: Option<String>,
    /// [`ENV_STACK_NOTIFY_ON`].
    pub stack_notify_on: Vec<NotifyOn>,
    /// [`ENV_ARGO_URL`].
    pub argo_url: Option<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            sns_topic_arn: None,
            slack_webhook_secret: None,
            stack_notify_on: vec![NotifyOn::Failure],
            argo_url: None,
        }
    }
}

impl Defaults {
    /// Reads the settings through `lookup` (`|k| std::env::var(k).ok()` in the Lambda). Empty values
    /// count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Defaults, NotifyError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let stack_notify_on = match get(ENV_STACK_NOTIFY_ON) {
            None => vec![NotifyOn::Failure],
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| match s {
                    "success" => Ok(NotifyOn::Success),
                    "failure" => Ok(NotifyOn::Failure),
                    other => Err(NotifyError::Settings {
                        name: ENV_STACK_NOTIFY_ON,
                        message: format!(
                            "unknown outcome `{other}`; use a comma-separated list of `success`, `failure`"
                        ),
                    }),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Defaults {
            sns_topic_arn: get(ENV_SNS_TOPIC_ARN),
            slack_webhook_secret: get(ENV_SLACK_WEBHOOK_SECRET),
            stack_notify_on,
            argo_url: get(ENV_ARGO_URL),
        })
    }
}

/// One message to one target.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// A Block Kit payload to the Slack webhook whose URL is in `webhook_secret`.
    Slack {
        /// Secrets Manager ARN or name of the webhook URL.
        webhook_secret: String,
        /// The Block Kit payload.
        payload: Value,
    },
    /// A message to an SNS topic.
    Sns {
        /// The topic.
        topic_arn: String,
        /// Subject and body.
        message: SnsMessage,
    },
}

impl Delivery {
    /// Names the target for logs and errors (identifiers only, never the webhook URL).
    pub fn target(&self) -> String {
        match self {
            Delivery::Slack { webhook_secret, .. } => format!("Slack (webhook from secret {webhook_secret})"),
            Delivery::Sns { topic_arn, .. } => format!("SNS topic {topic_arn}"),
        }
    }
}

/// What to do with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryPlan {
    /// Nothing to send, and why.
    Skip {
        /// Why (for the log and the function's result).
        reason: String,
    },
    /// Send these.
    Send {
        /// The notification the deliveries render.
        notification: Notification,
        /// At least one.
        deliveries: Vec<Delivery>,
    },
}

/// Decides what an event sends.
pub fn plan(event: &IncomingEvent, defaults: &Defaults) -> DeliveryPlan {
    let (notification, on, slack_secret, extra_topic) = match event {
        IncomingEvent::Pipeline(run) => (
            Notification::from_run(run),
            run.notifications.on.as_slice(),
            run.notifications.slack_webhook_secret.as_ref().or(defaults.slack_webhook_secret.as_ref()),
            run.notifications.sns_topic_arn.as_ref(),
        ),
        IncomingEvent::Stack(change) => (
            Notification::from_stack(change, defaults.argo_url.as_deref()),
            defaults.stack_notify_on.as_slice(),
            defaults.slack_webhook_secret.as_ref(),
            None,
        ),
    };
    let Some(outcome) = notification.outcome else {
        return DeliveryPlan::Skip {
            reason: format!("{}: not an outcome that notifies", notification.summary()),
        };
    };
    if !on.contains(&outcome) {
        return DeliveryPlan::Skip {
            reason: format!(
                "{}: `{}` is not in notifications.on",
                notification.summary(),
                outcome_word(outcome)
            ),
        };
    }

    let mut deliveries = Vec::new();
    if let Some(secret) = slack_secret {
        deliveries
            .push(Delivery::Slack { webhook_secret: secret.clone(), payload: slack_message(&notification) });
    }
    let message = sns_message(&notification);
    let mut topics: Vec<&String> = defaults.sns_topic_arn.iter().chain(extra_topic).collect();
    topics.dedup();
    for topic in topics {
        deliveries.push(Delivery::Sns { topic_arn: topic.clone(), message: message.clone() });
    }
    if deliveries.is_empty() {
        return DeliveryPlan::Skip {
            reason: format!(
                "{}: no Slack webhook secret or SNS topic configured (event notifications, {ENV_SLACK_WEBHOOK_SECRET}, {ENV_SNS_TOPIC_ARN})",
                notification.summary()
            ),
        };
    }
    DeliveryPlan::Send { notification, deliveries }
}

/// The config's word for an outcome: `success`, `failure`, `approval`.
pub fn outcome_word(on: NotifyOn) -> &'static str {
    match on {
        NotifyOn::Success => "success",
        NotifyOn::Failure => "failure",
        NotifyOn::Approval => "approval",
    }
}

/// Parses [`outcome_word`] back.
pub fn parse_outcome(word: &str) -> Option<NotifyOn> {
    [NotifyOn::Success, NotifyOn::Failure, NotifyOn::Approval].into_iter().find(|o| outcome_word(*o) == word)
}
