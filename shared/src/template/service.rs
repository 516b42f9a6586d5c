//! Handler logic of the `validate-config` and `generate-template` Lambdas (the functions only wire).
//!
//! Requests name the config inline (`{"config": "<yaml>"}`) or in S3 (`{"s3": {"bucket", "key"}}`).
//! Errors are split for Lambda's retry behaviour: a [`ServiceError`] that is retryable (S3 or the cluster
//! unavailable) should fail the invocation so Lambda retries it; anything else is answered with a
//! response that says why, since a retry would fail the same way.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApplyOptions, ApplyOutcome, TemplateError, TemplateStore, apply_rendered, render_text};
use crate::config::{self, Diagnostic, Severity};

/// Largest config accepted (a config is a few KB; this bounds memory on hostile input).
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Where the config is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigRequest {
    /// The config text.
    #[serde(default)]
    pub config: Option<String>,
    /// Or its S3 location.
    #[serde(default)]
    pub s3: Option<S3Location>,
    /// Name used in diagnostics (default `aphex-config.yaml`, or the S3 key).
    #[serde(default)]
    pub file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

/// A `generate-template` request: the config, and how to apply.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateRequest {
    #[serde(flatten)]
    pub source: ConfigRequest,
    /// The commit the config comes from (7-40 hex digits).
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// Reads config files from object storage.
#[async_trait]
pub trait ConfigFetcher: Send + Sync {
    async fn fetch(&self, location: &S3Location) -> Result<Vec<u8>, ServiceError>;
}

/// [`ConfigFetcher`] on S3.
#[derive(Debug, Clone)]
pub struct S3ConfigFetcher {
    client: aws_sdk_s3::Client,
}

impl S3ConfigFetcher {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl ConfigFetcher for S3ConfigFetcher {
    async fn fetch(&self, location: &S3Location) -> Result<Vec<u8>, ServiceError> {
        use aws_sdk_s3::error::SdkError;
        let name = format!("s3://{}/{}", location.bucket, location.key);
        let out = self.client.get_object().bucket(&location.bucket).key(&location.key).send().await.map_err(
            |e| {
                let retryable = matches!(e, SdkError::TimeoutError(_) | SdkError::DispatchFailure(_))
                    || e.raw_response()
                        .is_some_and(|r| r.status().as_u16() >= 500 || r.status().as_u16() == 429);
                let detail = e.as_service_error().map(|s| format!("{s}")).unwrap_or_else(|| e.to_string());
                ServiceError { retryable, message: format!("cannot read {name}: {detail}") }
            },
        )?;
        if out.content_length().unwrap_or(0) > MAX_CONFIG_BYTES as i64 {
            return Err(ServiceError::rejected(format!("{name} is larger than {MAX_CONFIG_BYTES} bytes")));
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| ServiceError { retryable: true, message: format!("reading {name} failed: {e}") })?;
        Ok(bytes.into_bytes().to_vec())
    }
}

/// A failure to handle a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// Whether the same request may succeed later (fail the invocation so Lambda retries).
    pub retryable: bool,
    pub message: String,
}

impl ServiceError {
    pub fn rejected(message: impl Into<String>) -> Self {
        Self { retryable: false, message: message.into() }
    }
}

/// The `validate-config` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateResponse {
    pub valid: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: Vec<Diagnostic>,
}

/// The `generate-template` answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum GenerateResponse {
    /// Applied, or skipped because unchanged (see `outcome`).
    Ok { outcome: ApplyOutcome },
    /// Nothing was applied: the config is invalid (diagnostics) or the template was refused.
    Rejected { reason: String, diagnostics: Vec<Diagnostic> },
}

async fn load(req: &ConfigRequest, fetcher: &dyn ConfigFetcher) -> Result<(String, Vec<u8>), ServiceError> {
    match (&req.config, &req.s3) {
        (Some(text), None) => {
            if text.len() > MAX_CONFIG_BYTES {
                return Err(ServiceError::rejected(format!(
                    "config is larger than {MAX_CONFIG_BYTES} bytes"
                )));
            }
            Ok((
                req.file.clone().unwrap_or_else(|| config::DEFAULT_CONFIG_FILE.into()),
                text.clone().into_bytes(),
            ))
        }
        (None, Some(location)) => {
            let bytes = fetcher.fetch(location).await?;
            Ok((req.file.clone().unwrap_or_else(|| location.key.clone()), bytes))
        }
        _ => Err(ServiceError::rejected(
            "the request must have exactly one of `config` (the YAML text) or `s3` ({bucket, key})",
        )),
    }
}

/// `validate-config`: every diagnostic of the config.
pub async fn validate(
    req: &ConfigRequest,
    fetcher: &dyn ConfigFetcher,
) -> Result<ValidateResponse, ServiceError> {
    let (file, bytes) = load(req, fetcher).await?;
    let report = config::check_bytes(&file, &bytes);
    Ok(ValidateResponse {
        valid: report.config.is_some(),
        errors: report.count(Severity::Error),
        warnings: report.count(Severity::Warning),
        diagnostics: report.diagnostics,
    })
}

/// `generate-template`: validate, render, check against Argo's schema, apply; says what changed.
pub async fn generate(
    req: &GenerateRequest,
    fetcher: &dyn ConfigFetcher,
    store: &dyn TemplateStore,
) -> Result<GenerateResponse, ServiceError> {
    let (file, bytes) = load(&req.source, fetcher).await?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            let report = config::check_bytes(&file, &[]);
            let reason = format!("{file} is not UTF-8 text");
            return Ok(GenerateResponse::Rejected { reason, diagnostics: report.diagnostics });
        }
    };
    let rendered = match render_text(&file, &text, req.commit.as_deref()) {
        Ok(r) => r,
        Err(TemplateError::InvalidConfig { diagnostics, .. }) => {
            return Ok(GenerateResponse::Rejected {
                reason: format!("{file} is not a valid config; the live template is unchanged"),
                diagnostics,
            });
        }
        Err(err) => return Ok(GenerateResponse::Rejected { reason: err.to_string(), diagnostics: vec![] }),
    };
    match apply_rendered(store, &rendered, ApplyOptions { force: req.force, dry_run: req.dry_run }).await {
        Ok(outcome) => Ok(GenerateResponse::Ok { outcome }),
        Err(err) if err.is_retryable() => Err(ServiceError { retryable: true, message: err.to_string() }),
        Err(err) => Ok(GenerateResponse::Rejected { reason: err.to_string(), diagnostics: vec![] }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{MemoryTemplateStore, StoreError, StoreErrorKind};

    /// Serves one object, or fails as S3 would.
    struct Fixed(Result<Vec<u8>, ServiceError>);

    #[async_trait]
    impl ConfigFetcher for Fixed {
        async fn fetch(&self, _: &S3Location) -> Result<Vec<u8>, ServiceError> {
            self.0.clone()
        }
    }

    const GOOD: &str = "version: \"1.0\"\nbuild: { commands: [make] }\nenvironments:\n  - { name: dev, region: us-east-1, account: \"111111111111\", stacks: [{ name: App }] }\n";

    fn request(json: &str) -> GenerateRequest {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[tokio::test]
    async fn validate_inline_and_s3() {
        let none = Fixed(Err(ServiceError::rejected("unused")));
        let req: ConfigRequest =
            serde_json::from_value(serde_json::json!({ "config": GOOD })).unwrap_or_else(|e| panic!("{e}"));
        let ok = validate(&req, &none).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(ok.valid && ok.errors == 0, "{ok:?}");

        let s3 = Fixed(Ok(GOOD.replace("\"111111111111\"", "111111111111").into_bytes()));
        let req: ConfigRequest =
            serde_json::from_str(r#"{"s3": {"bucket": "b", "key": "repo/aphex-config.yaml"}}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        let bad = validate(&req, &s3).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!bad.valid && bad.errors >= 1, "{bad:?}");
        assert_eq!(bad.diagnostics[0].file, "repo/aphex-config.yaml");
        assert_eq!(bad.diagnostics[0].path, "environments[0].account");
    }

    #[tokio::test]
    async fn malformed_requests_and_s3_outages() {
        let none = Fixed(Err(ServiceError { retryable: true, message: "S3 timed out".into() }));
        assert!(serde_json::from_str::<ConfigRequest>(r#"{"conf": "x"}"#).is_err());
        let both: ConfigRequest =
            serde_json::from_str(r#"{"config": "x", "s3": {"bucket": "b", "key": "k"}}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(validate(&both, &none).await.is_err_and(|e| !e.retryable));
        let s3: ConfigRequest =
            serde_json::from_str(r#"{"s3": {"bucket": "b", "key": "k"}}"#).unwrap_or_else(|e| panic!("{e}"));
        assert!(validate(&s3, &none).await.is_err_and(|e| e.retryable));
    }

    #[tokio::test]
    async fn generate_applies_skips_rejects_and_retries() {
        let none = Fixed(Err(ServiceError::rejected("unused")));
        let store = MemoryTemplateStore::new();
        let req = request(&serde_json::json!({ "config": GOOD, "commit": "abcdef1" }).to_string());
        let first = generate(&req, &none, &store).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(first, GenerateResponse::Ok { outcome: ApplyOutcome::Applied { version: 1, .. } }),
            "{first:?}"
        );
        let again = generate(&req, &none, &store).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(again, GenerateResponse::Ok { outcome: ApplyOutcome::Unchanged { .. } }),
            "{again:?}"
        );

        let invalid = request(&serde_json::json!({ "config": GOOD.replace("dev", "Dev") }).to_string());
        let rejected = generate(&invalid, &none, &store).await.unwrap_or_else(|e| panic!("{e}"));
        let GenerateResponse::Rejected { diagnostics, .. } = &rejected else { panic!("{rejected:?}") };
        assert!(!diagnostics.is_empty());
        assert_eq!(store.template_applies(), 1);

        store.fail_next_apply(StoreError {
            kind: StoreErrorKind::Unavailable,
            operation: "apply",
            object: "WorkflowTemplate argo/aphex-pipeline".into(),
            message: "503".into(),
        });
        let forced = request(&serde_json::json!({ "config": GOOD, "force": true }).to_string());
        assert!(generate(&forced, &none, &store).await.is_err_and(|e| e.retryable));
        let json = serde_json::to_value(&first).unwrap_or_default();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["outcome"]["result"], "applied");
    }
}
