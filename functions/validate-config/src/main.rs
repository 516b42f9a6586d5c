//! The `validate-config` Lambda: wiring only. Takes `{"config": "<yaml>"}` or
//! `{"s3": {"bucket": .., "key": ..}}` and returns the diagnostics as JSON
//! (`{valid, errors, warnings, diagnostics: [{file, line, column, path, severity, message, hint}]}`).
//! A malformed request is answered `{"error": ...}` (a retry would fail the same way); an S3 outage
//! fails the invocation so Lambda retries it.

use aphex::template::service::{self, ConfigRequest, S3ConfigFetcher, ServiceError};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

/// The request, or why it is not one.
fn decode(event: Value) -> Result<ConfigRequest, ServiceError> {
    serde_json::from_value(event).map_err(|e| {
        ServiceError::rejected(format!(
            "expected {{\"config\": \"<yaml>\"}} or {{\"s3\": {{\"bucket\": \"..\", \"key\": \"..\"}}}}: {e}"
        ))
    })
}

async fn handle(fetcher: &S3ConfigFetcher, event: Value) -> Result<Value, Error> {
    let outcome = match decode(event) {
        Ok(req) => service::validate(&req, fetcher).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(resp) => Ok(serde_json::to_value(resp)?),
        Err(e) if e.retryable => {
            tracing::warn!(error = %e, "retryable failure");
            Err(e.into())
        }
        Err(e) => Ok(json!({ "error": e.message })),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    // No settings of its own: the SDK reads its region, credentials and endpoint from the environment.
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let fetcher = S3ConfigFetcher::new(aphex::aws::s3_client(&sdk));
    let fetcher = &fetcher;
    run(service_fn(move |event: LambdaEvent<Value>| async move { handle(fetcher, event.payload).await }))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../../../shared/fixtures/lambda/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn decodes_direct_requests() {
        let req = decode(json!({ "config": "version: \"1.0\"" })).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.config.as_deref(), Some("version: \"1.0\""));
        let req = decode(json!({ "s3": { "bucket": "b", "key": "k" } })).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.s3.map(|l| l.key).as_deref(), Some("k"));
    }

    #[test]
    fn other_event_shapes_are_rejected_not_retried() {
        for name in ["example-apigw-v2-request-no-authorizer.json", "example-eventbridge-event-obj.json"] {
            let err = decode(fixture(name)).err();
            assert!(
                err.as_ref().is_some_and(|e| !e.retryable && e.message.contains("expected")),
                "{name}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn handler_answers_diagnostics_and_errors() {
        let sdk =
            aws_config::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build();
        let fetcher = S3ConfigFetcher::new(aws_sdk_s3::Client::new(&sdk));
        let bad =
            handle(&fetcher, json!({ "config": "version: \"1.0\"\nbuild: {}\n" })).await.unwrap_or_default();
        assert_eq!(bad["valid"], false);
        assert!(bad["diagnostics"].as_array().is_some_and(|d| !d.is_empty()), "{bad}");
        assert!(bad["diagnostics"][0]["line"].is_u64());
        let malformed =
            handle(&fetcher, fixture("example-eventbridge-event-obj.json")).await.unwrap_or_default();
        assert!(malformed["error"].is_string(), "{malformed}");
    }
}
