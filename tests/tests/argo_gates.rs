//! Gates, locks and failures on the real Argo controller: two runs of one environment (the second waits on
//! Argo's mutex, and not on the first run's approval gate); the approval gate stops a run until
//! `argo resume` (the real CLI) continues it; `concurrency: supersede` stops the older run of a branch; a
//! stack CloudFormation rejects fails the Workflow, later stages never start, and the exit handler still
//! records the run.
//!
//! The app is pre-synthesized (a cloud assembly `synth.sh` copies where aphex asks), so the runs are quick;
//! the demo pipeline with the real CDK CLI runs in argo_pipeline.rs.

use std::time::Duration;

use aphex_tests::argo_run::{self, Webhook};
use aphex_tests::cluster::{self, Cluster, Origin};
use aphex_tests::deploy_support::{GenStack, write_assembly};
use kube::api::{Api, DynamicObject};

const BUCKET: &str = "aphex-gates-artifacts";
const PIPELINE: &str = "aphex-gates";

const SYNTH_SH: &str = r#"#!/bin/sh
# A pre-synthesized app: copy the assembly where aphex asks (--output DIR).
out=""
while [ $# -gt 0 ]; do case "$1" in --output) out="$2"; shift 2 ;; *) shift ;; esac; done
[ -n "$out" ] || { echo "synth.sh: no --output" >&2; exit 2; }
mkdir -p "$out" && cp -R assembly/. "$out"/
"#;

fn config(dev_stacks: &str, dev_test: &str) -> String {
    format!(
        r#"version: "1.0"
pipeline:
  name: {PIPELINE}
  artifactBucket: {BUCKET}
build:
  commands: ["true"]
synth:
  command: "sh synth.sh"
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks: [{dev_stacks}]
    tests:
      commands: ["{dev_test}"]
  - name: prod
    region: eu-west-1
    account: "222222222222"
    approval: manual
    stacks: [{{name: Base}}]
"#
    )
}

fn write_app(dir: &std::path::Path, config: &str, stacks: &[GenStack]) {
    argo_run::write(&dir.join("aphex-config.yaml"), config);
    argo_run::write(&dir.join("synth.sh"), SYNTH_SH);
    let _ = std::fs::remove_dir_all(dir.join("assembly"));
    write_assembly(&dir.join("assembly"), "aws://unknown-account/unknown-region", stacks);
}

async fn workflow(client: &kube::Client, name: &str) -> DynamicObject {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "argo", &cluster::argo_resource("Workflow"));
    api.get(name).await.expect("workflow")
}

fn node<'a>(wf: &'a DynamicObject, display: &str) -> Option<&'a serde_json::Value> {
    wf.data.pointer("/status/nodes")?.as_object()?.values().find(|n| n["displayName"] == display)
}

fn node_phase(wf: &DynamicObject, display: &str) -> String {
    node(wf, display).and_then(|n| n["phase"].as_str()).unwrap_or("").to_owned()
}

async fn wait_node(
    client: &kube::Client,
    wf: &str,
    display: &str,
    phases: &[&str],
    timeout: Duration,
) -> DynamicObject {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let w = workflow(client, wf).await;
        if phases.contains(&node_phase(&w, display).as_str()) {
            return w;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{wf}: {display} not {phases:?}:\n{}",
            cluster::describe(&w)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn push(hook: &Webhook, origin: &Origin, message: &str, delivery: &str) -> String {
    let (before, after) = origin.commit_and_push(message);
    let payload = argo_run::push_payload(&origin.url(), "main", &before, &after, message);
    let (status, body) = hook.post(&argo_run::http_client(), "push", delivery, &payload).await.unwrap();
    assert_eq!(status, 202, "{body}\n{}", hook.log_text());
    body["workflow"].as_str().unwrap().to_owned()
}

fn argo_ok(cluster: &Cluster, args: &[&str]) {
    let out = cluster.argo(args);
    assert!(
        out.status.success(),
        "argo {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutexes_gates_supersede_and_failures_on_argo() {
    let cluster = Cluster::up();
    let client = cluster.client("admin").await;
    let moto = aphex_tests::moto::Moto::start();
    argo_run::bootstrap_demo(&moto, &[("111111111111", "us-east-1"), ("222222222222", "eu-west-1")], BUCKET)
        .await;
    cluster.set_pod_environment("argo", &argo_run::pod_environment(&moto)).await;
    let dir = tempfile::tempdir_in(aphex_tests::repo_root().join("target")).unwrap();
    let src = dir.path().join("src");
    let base = [GenStack::parameter("Base", &[], "base")];
    write_app(&src, &config("{name: Base}", "sleep 6"), &base);
    let origin = Origin::from_dir(&src, &dir.path().join("git"));
    let out = argo_run::aphex(cluster, "template-manager", &origin.work, &["template", "apply"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    // Two runs of dev at once: whichever takes dev's mutex second waits on it; each stops at prod's gate,
    // and a run waiting at the gate holds no lock (the second run's dev ran meanwhile).
    let hook = Webhook::start(cluster, PIPELINE, "main", &[], dir.path().join("webhook.log")).await;
    let one = push(&hook, &origin, "run a", &format!("gates-{suffix}-a")).await;
    let two = push(&hook, &origin, "run b", &format!("gates-{suffix}-b")).await;
    let mut waited: Vec<&str> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let mut at_gate = 0;
        for run in [&one, &two] {
            let wf = workflow(&client, run).await;
            let waiting = wf.data.pointer("/status/nodes").and_then(|n| n.as_object()).is_some_and(|nodes| {
                nodes.values().any(|n| n["message"].as_str().is_some_and(|m| m.contains("Waiting for")))
            });
            if waiting && !waited.contains(&run.as_str()) {
                waited.push(run);
            }
            if node_phase(&wf, "approve-prod") == "Running" {
                at_gate += 1;
            }
            assert!(std::time::Instant::now() < deadline, "{}", cluster::describe(&wf));
        }
        if at_gate == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // `a` took the lock first (its deploy started first), `b` waited for it.
    let started = |wf: &DynamicObject| {
        node(wf, "deploy-dev").and_then(|n| n["startedAt"].as_str()).unwrap_or("").to_owned()
    };
    let (w1, w2) = (workflow(&client, &one).await, workflow(&client, &two).await);
    let (a, b) =
        if started(&w1) <= started(&w2) { (one.clone(), two.clone()) } else { (two.clone(), one.clone()) };
    assert!(waited.contains(&b.as_str()), "run b never waited on dev's mutex: {waited:?}");
    let wa = workflow(&client, &a).await;
    let wb = workflow(&client, &b).await;
    let finished_a = node(&wa, "env-dev").and_then(|n| n["finishedAt"].as_str()).unwrap_or("").to_owned();
    let started_b = node(&wb, "deploy-dev").and_then(|n| n["startedAt"].as_str()).unwrap_or("").to_owned();
    assert!(started_b >= finished_a, "b's deploy-dev {started_b} before a's env-dev ended {finished_a}");
    assert_eq!(node_phase(&wa, "deploy-prod"), "", "nothing after the gate runs before approval");

    // Approval: `argo resume` continues run a through prod.
    argo_ok(cluster, &["resume", "-n", "argo", &a]);
    let wa = cluster::wait_for_phase(
        &client,
        "argo",
        &a,
        &["Succeeded", "Failed", "Error"],
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(
        wa.data.pointer("/status/phase").and_then(|p| p.as_str()),
        Some("Succeeded"),
        "{}",
        cluster::describe(&wa)
    );
    assert_eq!(node_phase(&wa, "deploy-prod"), "Succeeded");
    argo_ok(cluster, &["stop", "-n", "argo", &b]);
    cluster::wait_for_phase(&client, "argo", &b, &["Failed", "Error", "Succeeded"], Duration::from_secs(120))
        .await;

    // A stack CloudFormation rejects: the Workflow fails at deploy-dev, nothing later starts, and the exit
    // handler records the run.
    let mut broken = GenStack::parameter("Broken", &["Base"], "b");
    broken.resources = serde_json::json!({"Jobs": {"Type": "AWS::SQS::Queue",
        "Properties": {"QueueName": "jobs", "FifoQueue": true}}});
    write_app(&origin.work, &config("{name: Base}, {name: Broken}", "true"), &[base[0].clone(), broken]);
    let failed = push(&hook, &origin, "broken stack", &format!("gates-{suffix}-broken")).await;
    let wf = cluster::wait_for_phase(
        &client,
        "argo",
        &failed,
        &["Failed", "Error", "Succeeded"],
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(
        wf.data.pointer("/status/phase").and_then(|p| p.as_str()),
        Some("Failed"),
        "{}",
        cluster::describe(&wf)
    );
    assert_eq!(node_phase(&wf, "deploy-dev"), "Failed", "{}", cluster::describe(&wf));
    for later in ["approve-prod", "deploy-prod"] {
        assert!(
            ["", "Omitted", "Skipped"].contains(&node_phase(&wf, later).as_str()),
            "{later}: {}",
            cluster::describe(&wf)
        );
    }
    let message = node(&wf, "deploy-dev").and_then(|n| n["message"].as_str()).unwrap_or("").to_owned();
    assert!(message.contains("Broken"), "the failed node names the stack: {message}");
    assert!(cluster::pod_steps(&wf).contains(&"finalize".to_owned()), "{}", cluster::describe(&wf));
    let finalize = cluster::nodes(&wf).into_iter().find(|(d, t, ..)| d.ends_with(".onExit") && t == "Retry");
    assert!(
        finalize.is_some_and(|(_, _, p, _)| p == "Succeeded"),
        "the exit handler ran: {}",
        cluster::describe(&wf)
    );
    let s3config = moto.sdk_config("us-east-1").await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&s3config).force_path_style(true).build(),
    );
    let record = s3.get_object().bucket(BUCKET).key(format!("runs/{failed}/record.json")).send().await;
    let record = record.expect("the run record of the failed run").body.collect().await.unwrap().into_bytes();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(
        (record["status"].as_str(), record["failedStage"].as_str()),
        (Some("failed"), Some("deploy-dev")),
        "{record}"
    );
    drop(hook);

    // Supersede: a newer push of the branch stops the older run (its running pod is stopped too).
    write_app(&origin.work, &config("{name: Base}", "sleep 120"), &base);
    let hook = Webhook::start(
        cluster,
        PIPELINE,
        "main",
        &[("APHEX_CONCURRENCY", "supersede")],
        dir.path().join("webhook-supersede.log"),
    )
    .await;
    let old = push(&hook, &origin, "slow tests", &format!("gates-{suffix}-old")).await;
    // The tests run in the deploy's pod: wait until the deploy is recorded, i.e. the tests are running.
    wait_node(&client, &old, "deploy-dev", &["Running"], Duration::from_secs(300)).await;
    let deployed = format!("runs/{old}/stages/deploy-dev.json");
    let start = std::time::Instant::now();
    while s3.head_object().bucket(BUCKET).key(&deployed).send().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(300), "{deployed} never written");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    write_app(&origin.work, &config("{name: Base}", "true"), &base);
    let new = push(&hook, &origin, "newer", &format!("gates-{suffix}-new")).await;
    let wold = cluster::wait_for_phase(
        &client,
        "argo",
        &old,
        &["Failed", "Error", "Succeeded"],
        Duration::from_secs(120),
    )
    .await;
    assert_ne!(
        wold.data.pointer("/status/phase").and_then(|p| p.as_str()),
        Some("Succeeded"),
        "{}",
        cluster::describe(&wold)
    );
    assert!(wold.data.pointer("/spec/shutdown").is_some(), "the older run was shut down");
    wait_node(&client, &new, "approve-prod", &["Running"], Duration::from_secs(300)).await;
    argo_ok(cluster, &["stop", "-n", "argo", &new]);
    drop(hook);
}
