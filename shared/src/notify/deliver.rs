//! Delivery: the `Notifier` capability, its error classification, and sending a plan's deliveries with
//! retries and exponential backoff. Plus `RecordingNotifier`, the in-memory fake for unit tests.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::NotifyError;
use super::plan::Delivery;
use super::subscriptions::{PENDING_CONFIRMATION, TopicSubscription};

type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Sends one delivery to its target. Adapters: [`super::SlackWebhook`] + [`super::SnsTopicPublisher`]
/// (combined by the Lambda), [`RecordingNotifier`] in tests.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends `delivery` once (retries are the caller's job, see [`deliver_all`]).
    async fn send(&self, delivery: &Delivery) -> Result<(), DeliveryError>;

    /// Every subscription of `topic_arn` (SNS `ListSubscriptionsByTopic`, all pages).
    async fn list_subscriptions(&self, topic_arn: &str) -> Result<Vec<TopicSubscription>, DeliveryError>;

    /// Subscribes an email address to `topic_arn` (SNS `Subscribe`, protocol `email`; SNS mails the
    /// address a confirmation link). Returns the subscription ARN, or `pending confirmation`.
    async fn subscribe_email(&self, topic_arn: &str, address: &str) -> Result<String, DeliveryError>;

    /// Removes a confirmed subscription (SNS `Unsubscribe`).
    async fn unsubscribe(&self, subscription_arn: &str) -> Result<(), DeliveryError>;
}

/// Why one send failed. Never contains the Slack webhook URL.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The endpoint answered with an error status.
    #[error("{service} answered HTTP {status}: {body}")]
    Http {
        /// "Slack", ...
        service: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the response body (Slack explains errors there: `invalid_token`, `no_service`).
        body: String,
    },
    /// The endpoint could not be reached (connect, TLS, timeout).
    #[error("could not reach {service}: {source}")]
    Transport {
        /// "Slack", ...
        service: &'static str,
        /// The transport error (URL removed).
        #[source]
        source: BoxError,
    },
    /// The Slack webhook secret could not be read, or does not hold a usable URL.
    #[error("Slack webhook secret `{secret}`: {message}")]
    Secret {
        /// The secret's ARN or name.
        secret: String,
        /// What is wrong and how to fix it.
        message: String,
        /// Whether trying again may help (throttling, network) rather than a missing secret or a denial.
        transient: bool,
        /// The SDK error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// An AWS service call failed.
    #[error("{service} {operation} failed{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Aws {
        /// "SNS", ...
        service: &'static str,
        /// "Publish", ...
        operation: &'static str,
        /// The service's error code, if it sent one.
        code: Option<String>,
        /// The service's message or the transport problem.
        message: String,
        /// Whether trying again may help.
        transient: bool,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// The notifier has no sender for this kind of delivery.
    #[error("no sender configured for {0}")]
    NoSender(String),
}

impl DeliveryError {
    /// Whether another attempt may succeed: rate limits, server errors and network problems are
    /// transient; a bad webhook URL, a missing topic or an access denial is not.
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Http { status, .. } => *status == 429 || *status >= 500,
            DeliveryError::Transport { .. } => true,
            DeliveryError::Secret { transient, .. } | DeliveryError::Aws { transient, .. } => *transient,
            DeliveryError::NoSender(_) => false,
        }
    }
}

/// How often and how patiently a delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled before each next one.
    pub initial_backoff: Duration,
    /// Upper bound of one wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, waiting 250 ms then 500 ms: well inside a Lambda's timeout, and EventBridge plus the
    /// Lambda's own async retries take over after that.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// A delivery that failed after every attempt.
#[derive(Debug)]
pub struct DeliveryFailure {
    /// [`Delivery::target`].
    pub target: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: DeliveryError,
}

/// One successful delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivered {
    /// [`Delivery::target`].
    pub target: String,
    /// Attempts it took.
    pub attempts: u32,
}

/// What [`deliver_all`] achieved when everything went out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct DeliveryReport {
    /// Every delivery, in plan order.
    pub delivered: Vec<Delivered>,
}

/// Sends every delivery (concurrently), retrying transient failures with backoff. All deliveries are
/// attempted even when one fails; the error lists every failure.
pub async fn deliver_all(
    notifier: &dyn Notifier,
    deliveries: &[Delivery],
    policy: RetryPolicy,
) -> Result<DeliveryReport, NotifyError> {
    let results =
        futures::future::join_all(deliveries.iter().map(|d| deliver_one(notifier, d, policy))).await;
    let mut report = DeliveryReport::default();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(delivered) => report.delivered.push(delivered),
            Err(failure) => failures.push(failure),
        }
    }
    if failures.is_empty() { Ok(report) } else { Err(NotifyError::Delivery { failures }) }
}

async fn deliver_one(
    notifier: &dyn Notifier,
    delivery: &Delivery,
    policy: RetryPolicy,
) -> Result<Delivered, DeliveryFailure> {
    let target = delivery.target();
    let max = policy.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match notifier.send(delivery).await {
            Ok(()) => {
                tracing::info!(target = %target, attempts = attempt, "notification delivered");
                return Ok(Delivered { target, attempts: attempt });
            }
            Err(error) if error.is_transient() && attempt < max => {
                let wait = policy.backoff(attempt);
                tracing::warn!(target = %target, attempt, wait_ms = wait.as_millis() as u64, error = %error, "delivery failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(error) => {
                tracing::error!(target = %target, attempts = attempt, transient = error.is_transient(), error = %error, "delivery failed");
                return Err(DeliveryFailure { target, attempts: attempt, error });
            }
        }
    }
}

/// In-memory [`Notifier`] for tests: records every attempt and answers with scripted errors first; keeps
/// topic subscriptions in a table (every new one pending, as SNS leaves an email subscription until the
/// address confirms it; [`RecordingNotifier::confirm_all`] confirms them).
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    attempts: Mutex<Vec<Delivery>>,
    script: Mutex<VecDeque<DeliveryError>>,
    subscriptions: Mutex<Vec<(String, TopicSubscription)>>,
}

impl RecordingNotifier {
    /// A notifier that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next sends fail with these errors, in order; later sends succeed.
    pub fn failing_with(errors: impl IntoIterator<Item = DeliveryError>) -> Self {
        Self { script: Mutex::new(errors.into_iter().collect()), ..Self::default() }
    }

    /// Confirms every pending subscription (each gets an ARN), as recipients clicking the link.
    pub fn confirm_all(&self) {
        if let Ok(mut subs) = self.subscriptions.lock() {
            for (n, (topic, sub)) in subs.iter_mut().enumerate() {
                if !sub.is_confirmed() {
                    sub.arn = format!("{topic}:sub-{n}");
                }
            }
        }
    }

    /// Every attempted delivery, failed ones included.
    pub fn attempts(&self) -> Vec<Delivery> {
        self.attempts.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn send(&self, delivery: &Delivery) -> Result<(), DeliveryError> {
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.push(delivery.clone());
        }
        let scripted = self.script.lock().ok().and_then(|mut s| s.pop_front());
        match scripted {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    async fn list_subscriptions(&self, topic_arn: &str) -> Result<Vec<TopicSubscription>, DeliveryError> {
        let subs = self.subscriptions.lock().map(|s| s.clone()).unwrap_or_default();
        Ok(subs.into_iter().filter(|(t, _)| t == topic_arn).map(|(_, s)| s).collect())
    }

    async fn subscribe_email(&self, topic_arn: &str, address: &str) -> Result<String, DeliveryError> {
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.push((
                topic_arn.to_owned(),
                TopicSubscription {
                    protocol: "email".into(),
                    endpoint: address.to_owned(),
                    arn: PENDING_CONFIRMATION.into(),
                },
            ));
        }
        Ok("pending confirmation".into())
    }

    async fn unsubscribe(&self, subscription_arn: &str) -> Result<(), DeliveryError> {
        if let Ok(mut subs) = self.subscriptions.lock() {
            subs.retain(|(_, s)| s.arn != subscription_arn);
        }
        Ok(())
    }
}
