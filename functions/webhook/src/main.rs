//! The `webhook` Lambda: wiring only. Reads its settings and secret once per cold start, builds the
//! cluster client once, and hands each HTTP event to `aphex::webhook::Intake`.

mod gateway;

use std::panic::AssertUnwindSafe;

use anyhow::Context as _;
use aphex::cluster::{ClusterAccess, ClusterTarget};
use aphex::webhook::{
    Intake, KubeSubmitter, Ledger, NoLedger, Peers, Rejection, Response, S3Ledger, SecretSource, Secrets,
    TemplateTriggers, WebhookConfig, secrets_from_secret_string, triggers::CACHE_TTL,
};
use futures::FutureExt as _;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

struct State {
    intake: Intake,
    submitter: KubeSubmitter,
    ledger: Box<dyn Ledger>,
    triggers: TemplateTriggers,
}

async fn load_secrets(source: SecretSource) -> anyhow::Result<Secrets> {
    match source {
        SecretSource::Env(secrets) => Ok(secrets),
        SecretSource::SecretsManager { arn, previous } => {
            let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
            let client = aws_sdk_secretsmanager::Client::new(&aws);
            let value = client
                .get_secret_value()
                .secret_id(&arn)
                .send()
                .await
                .with_context(|| format!("reading the webhook secret {arn} from Secrets Manager"))?;
            let text = value.secret_string().with_context(|| {
                format!("the secret {arn} has no SecretString: store the webhook secret as text")
            })?;
            Ok(secrets_from_secret_string(&arn, text, previous)?)
        }
    }
}

async fn handle(state: &State, event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    let (shape, request) = gateway::decode(event.payload);
    let response = match request {
        Err(gateway::GatewayError::Request(e)) => Response::rejected(&Rejection::Request(e)),
        Err(e @ gateway::GatewayError::NotHttp(_)) => {
            tracing::warn!(error = %e, "not an HTTP event");
            Response { status: 400, body: serde_json::json!({"status": "rejected", "error": e.to_string()}) }
        }
        // A panic is a bug; GitHub still gets a 500 with an id that leads to the log line.
        Ok(req) => AssertUnwindSafe(state.intake.handle_with(
            &req,
            Peers { submitter: &state.submitter, ledger: state.ledger.as_ref(), triggers: &state.triggers },
        ))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            let correlation_id = uuid::Uuid::new_v4().to_string();
            tracing::error!(%correlation_id, "webhook handler panicked");
            Response::internal_error(&correlation_id)
        }),
    };
    Ok(gateway::encode(shape, &response))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .init();
    let config = WebhookConfig::from_env()?;
    let secrets = load_secrets(config.secret.clone()).await?;
    let intake = Intake::new(&config, secrets)?;
    // aphex::cluster's resolution order (KUBECONFIG, APHEX_CLUSTER on EKS, a pod's service account,
    // ~/.kube/config); the client is built on first use and cached, its EKS token renewed before expiry.
    let target = ClusterTarget::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // The delivery ledger (S3, conditional puts) keeps "one run per delivery" past the Workflow's TTL.
    let ledger: Box<dyn Ledger> = match &config.ledger_bucket {
        Some(bucket) => Box::new(S3Ledger::new(aphex::aws::s3_client(&aws), bucket.clone())),
        None => {
            tracing::warn!(
                "no APHEX_LEDGER_BUCKET or APHEX_ARTIFACT_BUCKET: a redelivery after the Workflow's TTL starts a second run"
            );
            Box::new(NoLedger)
        }
    };
    // Which pushes start a run: the live WorkflowTemplate's annotations (from aphex-config.yaml),
    // read through the same cluster access, cached for 30 s; APHEX_* variables override them.
    let triggers = TemplateTriggers::from_access(ClusterAccess::new(target.clone(), aws.clone()), CACHE_TTL);
    let state = State {
        intake,
        submitter: KubeSubmitter::from_access(ClusterAccess::new(target, aws)),
        ledger,
        triggers,
    };
    let state = &state;
    lambda_runtime::run(service_fn(move |event| handle(state, event))).await
}
