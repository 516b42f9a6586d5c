//! The notification promises of `aphex-config.yaml` kept by `aphex run --local` against moto:
//! `notifications.email` becomes email subscriptions of the pipeline's topic, once however many runs;
//! removing an address unsubscribes what aphex made; a manual approval gate announces itself on the
//! topic (observed through an HTTP subscription that moto POSTs to) before it waits.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use aphex_tests::moto::Moto;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;
use support::{aphex_bin, git, write_repo};

const ASSEMBLY: &str = "synth-multi-stack-cross-refs";
const PIPELINE: &str = "notify-local";

fn config(emails: &[&str]) -> String {
    let emails = emails.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
    format!(
        r#"version: "1.0"
pipeline:
  name: {PIPELINE}
build:
  commands: ["echo built > build.txt"]
synth:
  command: "sh synth.sh"
environments:
  - name: prod
    region: us-east-1
    account: "111111111111"
    approval: manual
    stacks: [{{name: ProducerStack}}]
notifications:
  email: [{emails}]
  on: [failure, approval]
"#
    )
}

type Received = Arc<Mutex<Vec<Value>>>;

async fn sns_sink(State(received): State<Received>, body: String) -> &'static str {
    received.lock().unwrap().push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
    "ok"
}

/// `aphex run --local --approve` in `repo` with the pipeline's topic; returns stderr and the run record.
async fn run_local(moto: &Moto, repo: &Path, topic: &str) -> (String, Value) {
    let state = repo.join(".aphex/runs-under-test");
    let _ = std::fs::remove_dir_all(&state);
    let mut cmd = Command::new(aphex_bin());
    cmd.args(["run", "--local", "--approve", "--repo"])
        .arg(repo)
        .arg("--state-dir")
        .arg(&state)
        .envs(moto.env())
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        .env("APHEX_DEPLOY_METHOD", "direct")
        .env("APHEX_SNS_TOPIC_ARN", topic);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let record = std::fs::read_dir(state.join("store/runs"))
        .unwrap_or_else(|e| panic!("no runs ({e}); stderr:\n{stderr}"))
        .flatten()
        .map(|run| run.path().join("record.json"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no run record; stderr:\n{stderr}"));
    let record = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    (stderr, record)
}

fn stage_ids(record: &Value) -> Vec<(String, String)> {
    record["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_owned(), s["status"].as_str().unwrap().to_owned()))
        .collect()
}

async fn email_subscriptions(sns: &aws_sdk_sns::Client, topic: &str) -> Vec<(String, String)> {
    let out = sns.list_subscriptions_by_topic().topic_arn(topic).send().await.unwrap();
    let mut subs: Vec<(String, String)> = out
        .subscriptions()
        .iter()
        .filter(|s| s.protocol() == Some("email"))
        .map(|s| {
            (s.endpoint().unwrap_or_default().to_owned(), s.subscription_arn().unwrap_or_default().to_owned())
        })
        .collect();
    subs.sort();
    subs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_subscriptions_once_and_the_approval_gate_announces_itself() {
    let moto = Moto::start();
    moto.bootstrap("111111111111", "us-east-1").await;
    let sdk = moto.sdk_config("us-east-1").await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topic = sns.create_topic().name("aphex-notifications").send().await.unwrap().topic_arn.unwrap();

    // The operators' own subscription (the infra's `notificationEmails`): never aphex's to remove.
    sns.subscribe().topic_arn(&topic).protocol("email").endpoint("ops@example.com").send().await.unwrap();
    // An HTTP endpoint standing for a mailbox: moto POSTs every published message to it.
    let received = Received::default();
    let app = Router::new().route("/sns", post(sns_sink)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink = format!("http://127.0.0.1:{}/sns", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    sns.subscribe().topic_arn(&topic).protocol("http").endpoint(&sink).send().await.unwrap();

    let repo = tempfile::tempdir().unwrap();
    write_repo(repo.path(), &config(&["a@example.com", "b@example.com", "ops@example.com"]), ASSEMBLY);
    let commit = git(repo.path(), &["rev-parse", "HEAD"]);

    // Run 1: subscribes the two new addresses (ops@ is there already), and announces the gate.
    let (stderr, record) = run_local(&moto, repo.path(), &topic).await;
    assert_eq!(record["status"], "succeeded", "{stderr}");
    let stages = stage_ids(&record);
    let at =
        |id: &str| stages.iter().position(|(s, _)| s == id).unwrap_or_else(|| panic!("{id}: {stages:?}"));
    assert!(at("notify-approve-prod") < at("approve-prod"), "{stages:?}");
    let subs = email_subscriptions(&sns, &topic).await;
    let endpoints: Vec<&str> = subs.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(endpoints, ["a@example.com", "b@example.com", "ops@example.com"], "{subs:?}");
    println!("after run 1: {subs:?}");

    let messages: Vec<Value> =
        received.lock().unwrap().iter().filter(|m| m["Type"] == "Notification").cloned().collect();
    assert_eq!(messages.len(), 1, "one approval notification: {messages:#?}");
    let subject = messages[0]["Subject"].as_str().unwrap_or_default();
    let body = messages[0]["Message"].as_str().unwrap_or_default();
    println!("approval notification: {subject}\n{body}");
    assert!(
        subject.contains("waiting for approval") || body.contains("waiting for approval"),
        "{subject}\n{body}"
    );
    let run_id = record["runId"].as_str().unwrap();
    for needed in [run_id, "approve-prod", &commit, "aphex run --local", "[y/N]"] {
        assert!(body.contains(needed), "the message lacks {needed:?}:\n{body}");
    }

    // Run 2, same config: nothing subscribed twice.
    let (stderr, record) = run_local(&moto, repo.path(), &topic).await;
    assert_eq!(record["status"], "succeeded", "{stderr}");
    assert_eq!(email_subscriptions(&sns, &topic).await, subs, "run 2 changed the subscriptions");

    // Run 3: b@ and ops@ leave the config. aphex made b@ and removes it if SNS lets it (confirmed);
    // ops@ was not aphex's and stays.
    std::fs::write(repo.path().join("aphex-config.yaml"), config(&["a@example.com"])).unwrap();
    git(repo.path(), &["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qam", "drop b"]);
    let (stderr, record) = run_local(&moto, repo.path(), &topic).await;
    assert_eq!(record["status"], "succeeded", "{stderr}");
    let after = email_subscriptions(&sns, &topic).await;
    println!("after run 3: {after:?}");
    let b = subs.iter().find(|(e, _)| e == "b@example.com").unwrap();
    if b.1.starts_with("arn:") {
        let endpoints: Vec<&str> = after.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(endpoints, ["a@example.com", "ops@example.com"], "{stderr}");
        assert!(stderr.contains("unsubscribed b@example.com"), "{stderr}");
    } else {
        assert!(stderr.contains("still pending confirmation"), "{stderr}");
    }
}
