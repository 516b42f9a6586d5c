//! Notify delivery against real components: Secrets Manager and SNS in a local moto server, Slack as an
//! axum server on localhost that records requests and fails the first one with HTTP 500 (to show the
//! retry). SNS delivery is observed through an HTTP subscription: moto POSTs each published message to
//! the same local server.
//!
//! Run with `--nocapture` to see the Slack payload and the SNS message of a failed run:
//! `cargo test -p aphex-tests --test notify -- --nocapture`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aphex::notify::{
    Channels, Defaults, Handled, NotifyError, PipelineStatusEvent, RetryPolicy, SecretsManagerSource,
    SlackWebhook, SnsTopicPublisher, handle_event,
};
use aphex_tests::moto::Moto;
use aws_config::retry::RetryConfig;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

const SHARED_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures");

/// A local port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// moto's SDK config with the SDK's own retries off: our retry policy is under test, and the SDK's
/// retries would hide it.
async fn sdk_config(moto: &Moto) -> aws_config::SdkConfig {
    let sdk = moto.sdk_config("us-east-1").await;
    sdk.to_builder().retry_config(RetryConfig::standard().with_max_attempts(1)).build()
}

// -------------------------------------------------------------------------------- fake Slack + SNS sink

#[derive(Default)]
struct Recorded {
    slack: Vec<(StatusCode, Value)>,
    sns: Vec<Value>,
    /// Statuses the Slack endpoint answers with, in order; then 200 "ok".
    slack_script: Vec<StatusCode>,
}

type Shared = Arc<Mutex<Recorded>>;

async fn slack(State(state): State<Shared>, body: String) -> (StatusCode, &'static str) {
    let mut state = state.lock().unwrap();
    let status = if state.slack_script.is_empty() { StatusCode::OK } else { state.slack_script.remove(0) };
    let payload = serde_json::from_str(&body).unwrap_or(Value::String(body));
    state.slack.push((status, payload));
    (status, if status == StatusCode::OK { "ok" } else { "no_service" })
}

async fn sns_sink(State(state): State<Shared>, body: String) -> StatusCode {
    state.lock().unwrap().sns.push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
    StatusCode::OK
}

/// Starts the fake Slack (`/services/...`) and SNS sink (`/sns`); returns its base URL.
async fn start_fake(state: Shared) -> String {
    let app =
        Router::new().route("/services/{*path}", post(slack)).route("/sns", post(sns_sink)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

// ------------------------------------------------------------------------------------------- fixtures

/// A failed run's status event as finalize publishes it (the notify unit tests' fixture).
fn failed_run() -> PipelineStatusEvent {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tests/fixtures/notify/failed-run.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

/// Our event in the envelope of the real EventBridge fixture (version, id, time, region, resources).
fn eventbridge_event(run: &PipelineStatusEvent) -> Value {
    let path = format!("{SHARED_FIXTURES}/lambda/example-eventbridge-event-obj.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap();
    event["source"] = json!(run.source());
    event["detail-type"] = json!(run.detail_type());
    event["detail"] = serde_json::to_value(run).unwrap();
    event
}

const FAST: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    initial_backoff: Duration::from_millis(50),
    max_backoff: Duration::from_millis(200),
};

struct World {
    _moto: Moto,
    sdk: aws_config::SdkConfig,
    state: Shared,
    fake_url: String,
    topic_arn: String,
}

impl World {
    async fn start() -> World {
        let moto = Moto::start();
        let sdk = sdk_config(&moto).await;
        let state = Shared::default();
        let fake_url = start_fake(state.clone()).await;

        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        secrets
            .create_secret()
            .name("aphex/slack-webhook")
            .secret_string(format!("{fake_url}/services/T000/B000/XXXXSECRETXXXX"))
            .send()
            .await
            .unwrap();
        let sns = aws_sdk_sns::Client::new(&sdk);
        let topic_arn =
            sns.create_topic().name("aphex-notifications").send().await.unwrap().topic_arn.unwrap();
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("http")
            .endpoint(format!("{fake_url}/sns"))
            .send()
            .await
            .unwrap();
        World { _moto: moto, sdk, state, fake_url, topic_arn }
    }

    fn channels(&self) -> Channels {
        let secrets = Arc::new(SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&self.sdk)));
        Channels {
            slack: SlackWebhook::new(secrets).unwrap(),
            sns: SnsTopicPublisher::new(aws_sdk_sns::Client::new(&self.sdk)),
        }
    }

    fn defaults(&self) -> Defaults {
        Defaults { sns_topic_arn: Some(self.topic_arn.clone()), ..Defaults::default() }
    }
}

// ---------------------------------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_reaches_slack_after_a_retry_and_sns_subscribers() {
    let world = World::start().await;
    world.state.lock().unwrap().slack_script = vec![StatusCode::INTERNAL_SERVER_ERROR];
    let channels = world.channels();

    let handled =
        handle_event(&eventbridge_event(&failed_run()), &world.defaults(), &channels, FAST).await.unwrap();
    let Handled::Delivered { summary, delivered } = handled else {
        panic!("expected deliveries, got {handled:?}")
    };
    assert_eq!(summary, "Pipeline run failed: acme/payments-infra@main (deploy prod)");
    let attempts: Vec<(String, u32)> = delivered.iter().map(|d| (d.target.clone(), d.attempts)).collect();
    assert_eq!(
        attempts,
        [
            ("Slack (webhook from secret aphex/slack-webhook)".to_owned(), 2),
            (format!("SNS topic {}", world.topic_arn), 1),
        ]
    );

    let recorded = world.state.lock().unwrap();
    // Slack: the first POST got 500, the retry got 200, with the same Block Kit payload.
    assert_eq!(recorded.slack.iter().map(|(s, _)| s.as_u16()).collect::<Vec<_>>(), [500, 200]);
    assert_eq!(recorded.slack[0].1, recorded.slack[1].1);
    let payload = &recorded.slack[1].1;
    assert_eq!(payload["blocks"][0]["text"]["text"], ":x: Pipeline run failed");
    let facts: Vec<&str> = payload["blocks"][1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert!(
        facts.contains(&"*Failed stack*\nPaymentsStack (123456789012 / eu-west-1, UPDATE_ROLLBACK_COMPLETE)")
    );
    let buttons: Vec<&str> = payload["blocks"][3]["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["text"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(buttons, ["Argo UI", "CloudFormation console", "Commit"]);

    // SNS: moto delivered the published message to the HTTP subscriber.
    assert_eq!(recorded.sns.len(), 1, "one SNS notification: {:?}", recorded.sns);
    let sns = &recorded.sns[0];
    assert_eq!(sns["Type"], "Notification");
    assert_eq!(sns["TopicArn"], world.topic_arn.as_str());
    assert_eq!(sns["Subject"], "[aphex] FAILED: acme/payments-infra@main (deploy prod)");
    let body = sns["Message"].as_str().unwrap();
    assert!(
        body.starts_with("Pipeline run failed\n\nRepository:             acme/payments-infra\n"),
        "{body}"
    );
    assert!(body.contains(
        "Failed stack:           PaymentsStack (123456789012 / eu-west-1, UPDATE_ROLLBACK_COMPLETE)"
    ));
    assert!(
        body.contains(
            "Reason:\n  Resource handler returned message: \"Bucket already exists\" (PaymentsBucket)"
        ),
        "{body}"
    );

    println!("\n===== Slack message of a failed run (Block Kit JSON, as the fake Slack received it) =====");
    println!("{}", serde_json::to_string_pretty(payload).unwrap());
    println!("\n===== SNS message of a failed run (as moto delivered it to the HTTP subscriber) =====");
    println!("Subject: {}\n\n{}", sns["Subject"].as_str().unwrap(), body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_secret_is_read_once_per_process() {
    let world = World::start().await;
    let channels = world.channels();
    let event = eventbridge_event(&failed_run());
    handle_event(&event, &world.defaults(), &channels, FAST).await.unwrap();

    // Gone from Secrets Manager: a second event still reaches Slack from the cached value.
    aws_sdk_secretsmanager::Client::new(&world.sdk)
        .delete_secret()
        .secret_id("aphex/slack-webhook")
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    handle_event(&event, &world.defaults(), &channels, FAST).await.unwrap();
    assert_eq!(world.state.lock().unwrap().slack.len(), 2);

    // A fresh process (new source) must read it again, and says clearly that it cannot.
    let error = handle_event(&event, &world.defaults(), &world.channels(), FAST).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(
            "Slack webhook secret `aphex/slack-webhook`: GetSecretValue failed (ResourceNotFoundException)"
        ),
        "{text}"
    );
    assert!(!error.is_retryable(), "a missing secret is permanent: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_classified_and_never_leak_the_webhook_url() {
    let world = World::start().await;
    let channels = world.channels();
    let event = eventbridge_event(&failed_run());

    // Slack keeps failing with 500: three attempts, then a retryable Lambda error.
    world.state.lock().unwrap().slack_script = vec![StatusCode::INTERNAL_SERVER_ERROR; 5];
    let error = handle_event(&event, &world.defaults(), &channels, FAST).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(error.error_type(), "Aphex.Notify.DeliveryFailed.Retryable");
    assert_eq!(world.state.lock().unwrap().slack.len(), 3);
    let text = error.to_string();
    assert!(text.contains("(3 attempt(s)): Slack answered HTTP 500: no_service"), "{text}");
    assert!(
        !text.contains("XXXXSECRETXXXX") && !text.contains(&world.fake_url),
        "webhook URL leaked: {text}"
    );

    // Slack unreachable (closed port): transport errors are retried, and say nothing of the URL.
    let secrets = aws_sdk_secretsmanager::Client::new(&world.sdk);
    let dead = format!("http://127.0.0.1:{}/services/T000/B000/XXXXSECRETXXXX", free_port());
    secrets.create_secret().name("dead-hook").secret_string(dead).send().await.unwrap();
    let mut run = failed_run();
    run.notifications.slack_webhook_secret = Some("dead-hook".into());
    let error =
        handle_event(&eventbridge_event(&run), &Defaults::default(), &channels, FAST).await.unwrap_err();
    let text = error.to_string();
    assert!(error.is_retryable(), "{text}");
    assert!(text.contains("(3 attempt(s)): could not reach Slack"), "{text}");
    assert!(!text.contains("XXXXSECRETXXXX") && !text.contains("127.0.0.1"), "webhook URL leaked: {text}");

    // SNS topic that does not exist: moto's NotFound is permanent, one attempt.
    let defaults = Defaults {
        sns_topic_arn: Some("arn:aws:sns:us-east-1:123456789012:no-such-topic".into()),
        ..Defaults::default()
    };
    let mut run = failed_run();
    run.notifications.slack_webhook_secret = None;
    let error = handle_event(&eventbridge_event(&run), &defaults, &channels, FAST).await.unwrap_err();
    let NotifyError::Delivery { failures } = &error else { panic!("delivery error: {error:?}") };
    assert_eq!(failures[0].attempts, 1);
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("SNS Publish failed (NotFound)"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_eventbridge_events_that_are_not_ours_are_malformed() {
    for file in ["example-eventbridge-event-obj.json", "example-eventbridge-schedule.json"] {
        let path = format!("{SHARED_FIXTURES}/lambda/{file}");
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).unwrap();
        let notifier = aphex::notify::RecordingNotifier::new();
        let error = handle_event(&event, &Defaults::default(), &notifier, FAST).await.unwrap_err();
        assert_eq!(error.error_type(), "Aphex.Notify.MalformedEvent", "{file}");
        assert!(
            error.to_string().starts_with("malformed event: unsupported event: source `aws."),
            "{file}: {error}"
        );
        assert!(notifier.attempts().is_empty());
    }
}
