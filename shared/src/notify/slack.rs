//! Slack delivery: the incoming-webhook URL from a secret (read once per cold start, never logged), and
//! the Block Kit POST over reqwest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

use super::deliver::DeliveryError;
use super::sns::aws_error;

/// Reads secret values by ARN or name.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The secret's string value.
    async fn secret_string(&self, id: &str) -> Result<SecretString, DeliveryError>;
}

/// AWS Secrets Manager, with every value cached for the life of the process (one read per cold start;
/// a rotated webhook URL is picked up by the next cold start).
#[derive(Debug)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    cache: Mutex<HashMap<String, SecretString>>,
}

impl SecretsManagerSource {
    /// Reads through `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client, cache: Mutex::default() }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn secret_string(&self, id: &str) -> Result<SecretString, DeliveryError> {
        // Holding the lock across the read makes concurrent first uses share one GetSecretValue.
        let mut cache = self.cache.lock().await;
        if let Some(value) = cache.get(id) {
            return Ok(value.clone());
        }
        let output = self.client.get_secret_value().secret_id(id).send().await.map_err(|e| {
            match aws_error("Secrets Manager", "GetSecretValue", e) {
                DeliveryError::Aws { code, message, transient, source, .. } => DeliveryError::Secret {
                    secret: id.to_owned(),
                    message: format!(
                        "GetSecretValue failed{}: {message} (does the secret exist, and may the notify function's role read it?)",
                        code.map(|c| format!(" ({c})")).unwrap_or_default()
                    ),
                    transient,
                    source: Some(source),
                },
                other => other,
            }
        })?;
        let value: SecretString = output
            .secret_string()
            .ok_or_else(|| DeliveryError::Secret {
                secret: id.to_owned(),
                message: "the secret has no string value (store the webhook URL as SecretString)".to_owned(),
                transient: false,
                source: None,
            })?
            .into();
        cache.insert(id.to_owned(), value.clone());
        Ok(value)
    }
}

/// A fixed secret value (local runs, tests).
#[derive(Debug, Clone)]
pub struct StaticSecret(pub SecretString);

#[async_trait]
impl SecretSource for StaticSecret {
    async fn secret_string(&self, _id: &str) -> Result<SecretString, DeliveryError> {
        Ok(self.0.clone())
    }
}

/// The webhook URL held by a secret value: the URL itself, or a JSON object with `url`, `webhookUrl` or
/// `webhook_url`. It must be `https` (plain `http` only to a loopback address, for local tests). Errors
/// name the secret, never its value.
pub fn slack_webhook_url(secret_id: &str, value: &SecretString) -> Result<url::Url, DeliveryError> {
    let bad = |message: &str| DeliveryError::Secret {
        secret: secret_id.to_owned(),
        message: message.to_owned(),
        transient: false,
        source: None,
    };
    let raw = value.expose_secret().trim();
    let text = if raw.starts_with('{') {
        let json: Value =
            serde_json::from_str(raw).map_err(|_| bad("the value looks like JSON but does not parse"))?;
        ["url", "webhookUrl", "webhook_url"]
            .iter()
            .find_map(|k| json.get(k).and_then(Value::as_str))
            .map(str::to_owned)
            .ok_or_else(|| bad("the JSON value has no `url`, `webhookUrl` or `webhook_url` string"))?
    } else {
        raw.to_owned()
    };
    let url = url::Url::parse(&text)
        .map_err(|_| bad("the value is not a URL (store the Slack incoming-webhook URL)"))?;
    let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
        || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(bad("the webhook URL must use https")),
    }
}

/// Posts Block Kit payloads to Slack incoming webhooks.
pub struct SlackWebhook {
    http: reqwest::Client,
    secrets: Arc<dyn SecretSource>,
}

impl std::fmt::Debug for SlackWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackWebhook").finish_non_exhaustive()
    }
}

impl SlackWebhook {
    /// A sender reading webhook URLs from `secrets`; each POST times out after 10 s.
    pub fn new(secrets: Arc<dyn SecretSource>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("aphex-notify/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { http, secrets })
    }

    /// Posts `payload` to the webhook whose URL is in `webhook_secret`.
    pub async fn post(&self, webhook_secret: &str, payload: &Value) -> Result<(), DeliveryError> {
        let value = self.secrets.secret_string(webhook_secret).await?;
        let url = slack_webhook_url(webhook_secret, &value)?;
        let response =
            self.http.post(url).json(payload).send().await.map_err(|e| DeliveryError::Transport {
                service: "Slack",
                // The URL is the credential: strip it from the error.
                source: Box::new(e.without_url()),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(DeliveryError::Http {
            service: "Slack",
            status: status.as_u16(),
            body: body.chars().take(200).collect(),
        })
    }
}
