//! The `generate-template` Lambda: wiring only. Renders the WorkflowTemplate from a config, checks it
//! against Argo's schema and applies it (skipped when unchanged), returning what changed.
//!
//! Input: `{"config": "<yaml>" | "s3": {"bucket", "key"}, "commit"?, "force"?, "dryRun"?}`, or an
//! EventBridge "Object Created" event from S3 (a config uploaded to the artifact bucket). Output:
//! `{"status": "ok", "outcome": {...}}` or `{"status": "rejected", "reason", "diagnostics"}`. Retryable
//! failures (S3 or the cluster unavailable, conflicts) fail the invocation so Lambda retries it.

use aphex::cluster::ClusterAccess;
use aphex::template::service::{self, GenerateRequest, S3ConfigFetcher, S3Location, ServiceError};
use aphex::template::{KubeTemplateStore, cluster_access_from_env};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

/// Settings from the environment, read once per cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    /// `APHEX_DRY_RUN=true`: report what would change without applying.
    dry_run: bool,
}

impl Config {
    fn from_env() -> Self {
        Self { dry_run: std::env::var("APHEX_DRY_RUN").is_ok_and(|v| v == "true" || v == "1") }
    }
}

/// A direct request, or an S3 "Object Created" EventBridge event naming the config object.
fn decode(event: Value) -> Result<GenerateRequest, ServiceError> {
    if event.get("detail-type").is_some() {
        let ev: EventBridgeEvent<Value> = serde_json::from_value(event)
            .map_err(|e| ServiceError::rejected(format!("malformed EventBridge event: {e}")))?;
        if ev.source != "aws.s3" || ev.detail_type != "Object Created" {
            return Err(ServiceError::rejected(format!(
                "unsupported EventBridge event `{}` from `{}`: only S3 \"Object Created\" events name a config",
                ev.detail_type, ev.source
            )));
        }
        let field = |p: &str| ev.detail.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let (Some(bucket), Some(key)) = (field("/bucket/name"), field("/object/key")) else {
            return Err(ServiceError::rejected("S3 event without detail.bucket.name and detail.object.key"));
        };
        let source =
            service::ConfigRequest { config: None, s3: Some(S3Location { bucket, key }), file: None };
        return Ok(GenerateRequest { source, commit: None, force: false, dry_run: false });
    }
    serde_json::from_value(event).map_err(|e| {
        ServiceError::rejected(format!(
            "expected {{\"config\": \"<yaml>\"}} or {{\"s3\": {{\"bucket\", \"key\"}}}} with optional commit, force, dryRun: {e}"
        ))
    })
}

struct Deps {
    config: Config,
    fetcher: S3ConfigFetcher,
    cluster: Result<ClusterAccess, String>,
}

async fn handle(deps: &Deps, event: Value) -> Result<Value, Error> {
    let mut req = match decode(event) {
        Ok(r) => r,
        Err(e) => return Ok(json!({ "status": "rejected", "reason": e.message, "diagnostics": [] })),
    };
    req.dry_run |= deps.config.dry_run;
    let cluster = deps.cluster.as_ref().map_err(|e| Error::from(format!("no cluster access: {e}")))?;
    // The cached client is rebuilt before its EKS token expires; a fresh store per call is cheap.
    let store = KubeTemplateStore::new(cluster.client().await.map_err(|e| Error::from(format!("{e:#}")))?);
    match service::generate(&req, &deps.fetcher, &store).await {
        Ok(resp) => Ok(serde_json::to_value(resp)?),
        Err(e) if e.retryable => Err(e.into()),
        Err(e) => Ok(json!({ "status": "rejected", "reason": e.message, "diagnostics": [] })),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let config = Config::from_env();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let deps = Deps {
        config,
        fetcher: S3ConfigFetcher::new(aphex::aws::s3_client(&sdk)),
        cluster: cluster_access_from_env().await.map_err(|e| e.to_string()),
    };
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move { handle(deps, event.payload).await })).await
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
    fn a_real_eventbridge_event_of_another_service_is_rejected() {
        let err = decode(fixture("example-eventbridge-event-obj.json")).err();
        assert!(
            err.as_ref().is_some_and(|e| !e.retryable && e.message.contains("EC2 Instance State-change")),
            "{err:?}"
        );
    }

    #[test]
    fn an_s3_object_created_event_names_the_config() {
        // The fixture's envelope with an S3 "Object Created" detail, as EventBridge delivers it.
        let mut event = fixture("example-eventbridge-event-obj.json");
        event["source"] = json!("aws.s3");
        event["detail-type"] = json!("Object Created");
        event["detail"] =
            json!({ "bucket": { "name": "acme-aphex" }, "object": { "key": "payments/aphex-config.yaml" } });
        let req = decode(event).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            req.source.s3,
            Some(S3Location { bucket: "acme-aphex".into(), key: "payments/aphex-config.yaml".into() })
        );
    }

    #[test]
    fn direct_requests_and_api_gateway_events() {
        let req = decode(json!({ "config": "x", "commit": "abcdef1", "dryRun": true }))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(req.dry_run && req.commit.as_deref() == Some("abcdef1"));
        let err = decode(fixture("example-apigw-v2-request-no-authorizer.json")).err();
        assert!(err.is_some_and(|e| !e.retryable));
    }
}
