//! The webhook's typed settings from its environment (`APHEX_*` variables) and the parsing of the secret
//! as stored in Secrets Manager (a plain string, or JSON with `current` and `previous` during rotation).

use std::fmt;

use thiserror::Error;

use super::filter::{FilterError, split_globs};
use super::signature::{Secret, SecretError, Secrets};

pub const ENV_SECRET: &str = "APHEX_WEBHOOK_SECRET";
pub const ENV_SECRET_ARN: &str = "APHEX_WEBHOOK_SECRET_ARN";
pub const ENV_SECRET_PREVIOUS: &str = "APHEX_WEBHOOK_SECRET_PREVIOUS";
pub const ENV_BRANCHES: &str = "APHEX_BRANCHES";
pub const ENV_TAGS: &str = "APHEX_TAGS";
pub const ENV_NAMESPACE: &str = "APHEX_NAMESPACE";
pub const ENV_TEMPLATE: &str = "APHEX_TEMPLATE";
pub const ENV_CONCURRENCY: &str = "APHEX_CONCURRENCY";
pub const ENV_ARGO_URL: &str = "APHEX_ARGO_URL";
pub const ENV_CLUSTER: &str = "APHEX_CLUSTER";
/// The bucket of the delivery ledger (see [`super::ledger`]).
pub const ENV_LEDGER_BUCKET: &str = "APHEX_LEDGER_BUCKET";
/// The artifact bucket: the ledger's bucket when [`ENV_LEDGER_BUCKET`] is not set.
pub const ENV_ARTIFACT_BUCKET: &str = "APHEX_ARTIFACT_BUCKET";

/// What happens to a branch's running workflows when a new push to it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concurrency {
    /// Leave them; the WorkflowTemplate's Argo mutex runs them one after another.
    #[default]
    Queue,
    /// Stop them (`spec.shutdown: Stop`) before starting the new one.
    Supersede,
}

/// Where the webhook secret comes from.
#[derive(Clone)]
pub enum SecretSource {
    /// `APHEX_WEBHOOK_SECRET` (local runs and tests).
    Env(Secrets),
    /// `APHEX_WEBHOOK_SECRET_ARN`: read once per cold start; `previous` from the environment, if set.
    SecretsManager { arn: String, previous: Option<Secret> },
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(_) => f.write_str("Env(<redacted>)"),
            SecretSource::SecretsManager { arn, .. } => write!(f, "SecretsManager({arn})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub secret: SecretSource,
    /// `APHEX_BRANCHES`, `APHEX_TAGS`, `APHEX_CONCURRENCY`: overrides of the live WorkflowTemplate's
    /// trigger settings (`pipeline.branches`, `pipeline.tags`, `pipeline.concurrency`), when set.
    pub branches: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub namespace: String,
    pub template: String,
    pub concurrency: Option<Concurrency>,
    pub argo_url: Option<String>,
    pub cluster: Option<String>,
    /// The delivery ledger's bucket: `APHEX_LEDGER_BUCKET`, else `APHEX_ARTIFACT_BUCKET`, else none
    /// (then the Workflow-name 409 is the only deduplication).
    pub ledger_bucket: Option<String>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("no webhook secret: set {ENV_SECRET} (local) or {ENV_SECRET_ARN} (a Secrets Manager secret)")]
    NoSecret,
    #[error("both {ENV_SECRET} and {ENV_SECRET_ARN} are set: keep one")]
    TwoSecrets,
    #[error("{var}: {source}")]
    Secret {
        var: &'static str,
        #[source]
        source: SecretError,
    },
    #[error(
        "the secret {arn} is JSON but has no string field `current`: store the secret itself, or {{\"current\": \"...\", \"previous\": \"...\"}}"
    )]
    SecretJson { arn: String },
    #[error("{ENV_CONCURRENCY}=`{value}`: expected `queue` or `supersede`")]
    Concurrency { value: String },
    #[error("{var}=`{value}`: {reason}")]
    Invalid { var: &'static str, value: String, reason: &'static str },
    #[error(transparent)]
    Filter(#[from] FilterError),
}

fn secret(var: &'static str, value: &str) -> Result<Secret, ConfigError> {
    Secret::new(value).map_err(|source| ConfigError::Secret { var, source })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl WebhookConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the settings through `lookup` (the environment in production, a map in tests). Empty
    /// values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let previous = get(ENV_SECRET_PREVIOUS).map(|p| secret(ENV_SECRET_PREVIOUS, &p)).transpose()?;
        let secret = match (get(ENV_SECRET), get(ENV_SECRET_ARN)) {
            (Some(_), Some(_)) => return Err(ConfigError::TwoSecrets),
            (Some(s), None) => SecretSource::Env(Secrets::new(secret(ENV_SECRET, &s)?, previous)),
            (None, Some(arn)) => SecretSource::SecretsManager { arn, previous },
            (None, None) => return Err(ConfigError::NoSecret),
        };
        let concurrency = match get(ENV_CONCURRENCY).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None => None,
            Some("queue") => Some(Concurrency::Queue),
            Some("supersede") => Some(Concurrency::Supersede),
            Some(other) => return Err(ConfigError::Concurrency { value: other.to_owned() }),
        };
        let namespace = get(ENV_NAMESPACE).unwrap_or_else(|| "argo".to_owned());
        if !is_dns_label(&namespace) {
            return Err(ConfigError::Invalid {
                var: ENV_NAMESPACE,
                value: namespace,
                reason: "a namespace is lower-case letters, digits and '-'",
            });
        }
        let template = get(ENV_TEMPLATE).unwrap_or_else(|| "aphex-pipeline".to_owned());
        if !is_dns_label(&template) {
            return Err(ConfigError::Invalid {
                var: ENV_TEMPLATE,
                value: template,
                reason: "a WorkflowTemplate name is lower-case letters, digits and '-'",
            });
        }
        let argo_url = get(ENV_ARGO_URL).map(|u| u.trim().trim_end_matches('/').to_owned());
        if let Some(u) = &argo_url
            && url::Url::parse(u).is_err()
        {
            return Err(ConfigError::Invalid {
                var: ENV_ARGO_URL,
                value: u.clone(),
                reason: "expected the Argo UI's base URL, e.g. https://argo.example.com",
            });
        }
        let config = Self {
            secret,
            branches: get(ENV_BRANCHES).map(|v| split_globs(&v)),
            tags: get(ENV_TAGS).map(|v| split_globs(&v)),
            namespace,
            template,
            concurrency,
            argo_url,
            cluster: get(ENV_CLUSTER),
            ledger_bucket: get(ENV_LEDGER_BUCKET)
                .or_else(|| get(ENV_ARTIFACT_BUCKET))
                .map(|b| b.trim().to_owned()),
        };
        // Compile the globs now so a typo fails the cold start, not each delivery.
        let none = Vec::new();
        super::filter::RefFilter::new(
            config.branches.as_ref().unwrap_or(&none),
            config.tags.as_ref().unwrap_or(&none),
        )?;
        Ok(config)
    }

    /// The trigger settings the environment sets (each beats the live template's).
    pub fn overrides(&self) -> super::triggers::TriggerSettings {
        super::triggers::TriggerSettings {
            branches: self.branches.clone(),
            tags: self.tags.clone(),
            concurrency: self.concurrency,
        }
    }
}

/// The secrets from a Secrets Manager `SecretString`: the string itself, or a JSON object with
/// `current` and optional `previous`. `previous_env` (APHEX_WEBHOOK_SECRET_PREVIOUS) fills a missing
/// `previous`.
pub fn secrets_from_secret_string(
    arn: &str,
    value: &str,
    previous_env: Option<Secret>,
) -> Result<Secrets, ConfigError> {
    let trimmed = value.trim();
    if trimmed.starts_with('{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(trimmed)
    {
        let current = map
            .get("current")
            .and_then(|v| v.as_str())
            .ok_or_else(|| ConfigError::SecretJson { arn: arn.to_owned() })?;
        let previous = match map.get("previous").and_then(|v| v.as_str()).filter(|p| !p.is_empty()) {
            Some(p) => Some(secret(ENV_SECRET_ARN, p)?),
            None => previous_env,
        };
        return Ok(Secrets::new(secret(ENV_SECRET_ARN, current)?, previous));
    }
    Ok(Secrets::new(secret(ENV_SECRET_ARN, value)?, previous_env))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<WebhookConfig, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        WebhookConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[(ENV_SECRET, "s")]).unwrap();
        assert!(matches!(c.secret, SecretSource::Env(ref s) if s.previous.is_none()));
        // Unset: the live template's settings (or the config's defaults) decide.
        assert_eq!((c.branches, c.tags, c.concurrency), (None, None, None));
        assert_eq!(c.namespace, "argo");
        assert_eq!(c.template, "aphex-pipeline");
        assert_eq!(c.argo_url, None);
        assert_eq!(c.cluster, None);
        assert_eq!(c.ledger_bucket, None);
    }

    #[test]
    fn ledger_bucket_falls_back_to_the_artifact_bucket() {
        fn check(vars: &[(&str, &str)], expect: Option<&str>) {
            let mut all = vec![(ENV_SECRET, "s")];
            all.extend_from_slice(vars);
            assert_eq!(config(&all).unwrap().ledger_bucket.as_deref(), expect, "{vars:?}");
        }
        check(&[], None);
        check(&[(ENV_ARTIFACT_BUCKET, "artifacts")], Some("artifacts"));
        check(&[(ENV_LEDGER_BUCKET, "ledger"), (ENV_ARTIFACT_BUCKET, "artifacts")], Some("ledger"));
        check(&[(ENV_LEDGER_BUCKET, " "), (ENV_ARTIFACT_BUCKET, "artifacts")], Some("artifacts"));
    }

    #[test]
    fn everything_set() {
        let c = config(&[
            (ENV_SECRET_ARN, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hook"),
            (ENV_SECRET_PREVIOUS, "old"),
            (ENV_BRANCHES, "main, release/*"),
            (ENV_TAGS, "v*"),
            (ENV_NAMESPACE, "ci"),
            (ENV_TEMPLATE, "payments"),
            (ENV_CONCURRENCY, "Supersede"),
            (ENV_ARGO_URL, "https://argo.example.com/"),
            (ENV_CLUSTER, "prod-eks"),
        ])
        .unwrap();
        assert!(
            matches!(c.secret, SecretSource::SecretsManager { ref arn, previous: Some(_) } if arn.ends_with(":hook"))
        );
        assert_eq!(c.branches, Some(vec!["main".to_owned(), "release/*".to_owned()]));
        assert_eq!(c.tags, Some(vec!["v*".to_owned()]));
        assert_eq!((c.namespace.as_str(), c.template.as_str()), ("ci", "payments"));
        assert_eq!(c.concurrency, Some(Concurrency::Supersede));
        assert_eq!(c.argo_url.as_deref(), Some("https://argo.example.com"));
        assert_eq!(c.cluster.as_deref(), Some("prod-eks"));
    }

    #[test]
    fn errors_name_the_variable_and_the_fix() {
        fn check(vars: &[(&str, &str)], expect: &str) {
            let err = config(vars).unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
            assert!(!err.contains("topsecret"), "{err}");
        }
        check(&[], "set APHEX_WEBHOOK_SECRET (local) or APHEX_WEBHOOK_SECRET_ARN");
        check(&[(ENV_SECRET, "  ")], "no webhook secret");
        check(&[(ENV_SECRET, "topsecret"), (ENV_SECRET_ARN, "arn")], "keep one");
        check(
            &[(ENV_SECRET, "topsecret"), (ENV_CONCURRENCY, "parallel")],
            "APHEX_CONCURRENCY=`parallel`: expected `queue` or `supersede`",
        );
        check(&[(ENV_SECRET, "topsecret"), (ENV_BRANCHES, "main,[x")], "APHEX_BRANCHES: `[x`");
        check(&[(ENV_SECRET, "topsecret"), (ENV_TAGS, "v{")], "APHEX_TAGS");
        check(&[(ENV_SECRET, "topsecret"), (ENV_NAMESPACE, "Argo")], "APHEX_NAMESPACE=`Argo`");
        check(&[(ENV_SECRET, "topsecret"), (ENV_TEMPLATE, "a_b")], "APHEX_TEMPLATE=`a_b`");
        check(&[(ENV_SECRET, "topsecret"), (ENV_ARGO_URL, "argo")], "APHEX_ARGO_URL=`argo`");
    }

    #[test]
    fn secret_strings_from_secrets_manager() {
        let body = b"x";
        let sig = |s: &str| Secret::new(s).unwrap().sign(body);
        let plain = secrets_from_secret_string("arn", "abc", None).unwrap();
        assert!(plain.verify(body, Some(&sig("abc"))).is_ok() && plain.previous.is_none());
        let json = secrets_from_secret_string("arn", r#"{"current":"new","previous":"old"}"#, None).unwrap();
        assert!(json.verify(body, Some(&sig("new"))).is_ok());
        assert!(json.verify(body, Some(&sig("old"))).is_ok());
        let env_prev =
            secrets_from_secret_string("arn", r#"{"current":"new"}"#, Some(Secret::new("envold").unwrap()))
                .unwrap();
        assert!(env_prev.verify(body, Some(&sig("envold"))).is_ok());
        let err =
            secrets_from_secret_string("arn:x", r#"{"secret":"topsecret"}"#, None).unwrap_err().to_string();
        assert!(err.contains("arn:x") && err.contains("`current`") && !err.contains("topsecret"), "{err}");
        // Not JSON after all: the whole string is the secret.
        let odd = secrets_from_secret_string("arn", "{not json", None).unwrap();
        assert!(odd.verify(body, Some(&sig("{not json"))).is_ok());
    }
}
