//! The `notify` Lambda: wiring only. EventBridge events in (pipeline status, CloudFormation stack status),
//! Slack and SNS messages out, through `aphex::notify`.
//!
//! Environment: `APHEX_SNS_TOPIC_ARN`, `APHEX_SLACK_WEBHOOK_SECRET`, `APHEX_STACK_NOTIFY_ON`,
//! `APHEX_ARGO_URL` (see `aphex::notify::Defaults`), `APHEX_NOTIFY_MAX_ATTEMPTS` (default 3).

use std::sync::Arc;

use aphex::notify::{
    Channels, Defaults, NotifyError, RetryPolicy, SecretsManagerSource, SlackWebhook, SnsTopicPublisher,
    handle_event,
};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use serde_json::Value;

/// The function's typed settings.
struct Config {
    defaults: Defaults,
    retry: RetryPolicy,
}

impl Config {
    fn from_env() -> Result<Config, NotifyError> {
        let defaults = Defaults::from_lookup(|k| std::env::var(k).ok())?;
        let mut retry = RetryPolicy::default();
        if let Ok(value) = std::env::var("APHEX_NOTIFY_MAX_ATTEMPTS") {
            retry.max_attempts =
                value.trim().parse().ok().filter(|n| (1..=10).contains(n)).ok_or_else(|| {
                    NotifyError::Settings {
                        name: "APHEX_NOTIFY_MAX_ATTEMPTS",
                        message: format!("`{value}` is not a number from 1 to 10"),
                    }
                })?;
        }
        Ok(Config { defaults, retry })
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time() // CloudWatch stamps every line
        .init();

    let config = Config::from_env()?;
    // One retry layer: ours (with backoff, per delivery); the SDK's own would multiply the attempts.
    let aws = aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .load()
        .await;
    let secrets = Arc::new(SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&aws)));
    let channels = Channels {
        slack: SlackWebhook::new(secrets)?,
        sns: SnsTopicPublisher::new(aws_sdk_sns::Client::new(&aws)),
    };

    let (channels, config) = (&channels, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let handled =
            handle_event(&event.payload, &config.defaults, channels, config.retry).await.map_err(|e| {
                tracing::error!(error = %e, retryable = e.is_retryable(), "notification failed");
                Diagnostic { error_type: e.error_type().to_owned(), error_message: e.to_string() }
            })?;
        serde_json::to_value(handled).map_err(|e| Diagnostic {
            error_type: "Aphex.Notify.Internal".into(),
            error_message: e.to_string(),
        })
    }))
    .await
}
