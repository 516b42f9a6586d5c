//! What the Argo cluster tests and `scripts/demo --argo` share: the webhook Lambda under
//! `cargo lambda watch` with a given identity, signed pushes built from a real GitHub payload, the demo's
//! AWS accounts in moto, and a run's timings (the Argo overhead).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

use crate::cluster::{Cluster, Origin};

/// The webhook secret of the tests' webhook Lambda.
pub const SECRET: &str = "argo e2e webhook secret";

/// `cargo-lambda` from `$REPO/.venv/bin` or PATH.
pub fn cargo_lambda() -> PathBuf {
    let venv = crate::repo_root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("cargo-lambda")
}

/// A free localhost port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The webhook Lambda under `cargo lambda watch`, stopped (process group) when dropped.
pub struct Webhook {
    child: Child,
    pub log: PathBuf,
    pub url: String,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Webhook {
    /// Starts the webhook as the identity `argo/rbac.yaml` grants it (group `aphex:webhook`), starting runs
    /// of `template` on pushes to `branches`, then waits until it answers a ping.
    pub async fn start(
        cluster: &Cluster,
        template: &str,
        branches: &str,
        extra: &[(&str, &str)],
        log: PathBuf,
    ) -> Webhook {
        use std::os::unix::process::CommandExt as _;
        let root = crate::repo_root();
        let port = free_port();
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(cargo_lambda());
        cmd.args([
            "lambda",
            "watch",
            "-p",
            "webhook",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "--ignore-changes",
        ])
        .current_dir(&root)
        // `cargo test` holds the workspace target dir's lock while tests run: build elsewhere (shared
        // with the other webhook tests).
        .env("CARGO_TARGET_DIR", root.join("target/lambda-e2e"))
        .env("KUBECONFIG", cluster.kubeconfig("webhook"))
        .env("APHEX_WEBHOOK_SECRET", SECRET)
        .env("APHEX_BRANCHES", branches)
        .env("APHEX_NAMESPACE", "argo")
        .env("APHEX_TEMPLATE", template)
        .env("APHEX_ARGO_URL", "https://argo.example.com")
        .env_remove("APHEX_WEBHOOK_SECRET_ARN")
        .env_remove("APHEX_TAGS")
        .env_remove("APHEX_CLUSTER")
        .env("RUST_LOG", "info")
        .env("AWS_REGION", "us-east-1");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("start cargo lambda watch");
        let hook = Webhook { child, log, url: format!("http://127.0.0.1:{port}/lambda-url/webhook/") };
        let client = http_client();
        let ping = json!({"zen": "Keep it logically awesome.", "hook_id": 1, "hook": {"type": "Repository"},
            "repository": {"full_name": "acme/demo", "clone_url": "https://github.com/acme/demo.git"}});
        let deadline = Instant::now() + Duration::from_secs(1500);
        loop {
            match hook.post(&client, "ping", "argo-e2e-ping", &ping).await {
                Ok((200, _)) => return hook,
                Ok((status, body)) => panic!("ping answered {status}: {body}\n{}", hook.log_text()),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(500)).await,
                Err(e) => panic!("no answer from cargo lambda watch: {e}\n{}", hook.log_text()),
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Posts a signed delivery; `(status, JSON body)`.
    pub async fn post(
        &self,
        client: &reqwest::Client,
        event: &str,
        delivery: &str,
        payload: &Value,
    ) -> reqwest::Result<(u16, Value)> {
        let body = serde_json::to_vec(payload).expect("json");
        let signature = aphex::webhook::Secret::new(SECRET).expect("secret").sign(&body);
        let resp = client
            .post(&self.url)
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .header("X-Hub-Signature-256", signature)
            .header("Content-Type", "application/json")
            .header("User-Agent", "GitHub-Hookshot/argo-e2e")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }
}

/// An HTTP client for the webhook.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(900)).build().expect("client")
}

/// A push of `before..after` to `branch` of the repository at `clone_url`, shaped as GitHub sends it
/// (from the real payload `octokit_push_branch_created_with_commit.json`).
pub fn push_payload(clone_url: &str, branch: &str, before: &str, after: &str, message: &str) -> Value {
    let path = crate::fixtures_dir().join("github/octokit_push_branch_created_with_commit.json");
    let mut push: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json");
    push["ref"] = format!("refs/heads/{branch}").into();
    push["before"] = before.into();
    push["after"] = after.into();
    push["created"] = false.into();
    push["deleted"] = false.into();
    push["forced"] = false.into();
    push["repository"]["clone_url"] = clone_url.into();
    push["head_commit"]["id"] = after.into();
    push["head_commit"]["message"] = message.into();
    push["commits"] = json!([push["head_commit"].clone()]);
    push
}

/// The demo's accounts as `cdk bootstrap` leaves them, plus the artifact bucket, in moto.
pub async fn bootstrap_demo(moto: &crate::moto::Moto, accounts: &[(&str, &str)], artifact_bucket: &str) {
    for (account, region) in accounts {
        moto.bootstrap(account, region).await;
    }
    let config = moto.sdk_config("us-east-1").await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
    );
    s3.create_bucket().bucket(artifact_bucket).send().await.expect("create the artifact bucket");
}

/// What the stand-in node gives every pod: moto's endpoint and credentials (as Pod Identity would give
/// real ones), the CDK CLI's settings for a machine without internet.
pub fn pod_environment(moto: &crate::moto::Moto) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = moto.env().into_iter().collect();
    env.insert("CDK_DISABLE_CLI_TELEMETRY".into(), "true".into());
    env.insert("CDK_HOME".into(), "/tmp/cdk-home".into());
    // moto's change sets give no outputs (../shared/TOOLCHAIN.md): deploy directly, as scripts/demo does.
    env.insert("APHEX_DEPLOY_METHOD".into(), "direct".into());
    env.insert("npm_config_prefer_offline".into(), "true".into());
    env.insert("npm_config_audit".into(), "false".into());
    env.insert("npm_config_fund".into(), "false".into());
    env
}

/// One run's timing: the wall time a user sees (webhook answer → Workflow done) and each pod's own
/// process time as the stand-in node measured it.
#[derive(Debug, Clone)]
pub struct RunTiming {
    pub wall: Duration,
    /// `(pod display name, own time)` in start order.
    pub steps: Vec<(String, Duration)>,
}

impl RunTiming {
    pub fn steps_total(&self) -> Duration {
        self.steps.iter().map(|(_, d)| *d).sum()
    }

    /// The Workflow's wall time minus its steps' own time (the stages run one after another).
    pub fn argo_overhead(&self) -> Duration {
        self.wall.saturating_sub(self.steps_total())
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        for (name, d) in &self.steps {
            out.push_str(&format!("    {name:<44} {:>8.2}s\n", d.as_secs_f64()));
        }
        out.push_str(&format!(
            "    total {:.2}s = steps {:.2}s + Argo overhead {:.2}s\n",
            self.wall.as_secs_f64(),
            self.steps_total().as_secs_f64(),
            self.argo_overhead().as_secs_f64()
        ));
        out
    }
}

/// Each pod node's own time, read from the stand-in node's `timing.json` of the pod.
pub fn run_timing(cluster: &Cluster, wf: &kube::api::DynamicObject, wall: Duration) -> RunTiming {
    let mut steps: Vec<(u128, String, Duration)> = Vec::new();
    let nodes = wf.data.pointer("/status/nodes").and_then(|n| n.as_object()).cloned().unwrap_or_default();
    let wf_name = wf.metadata.name.clone().unwrap_or_default();
    for node in nodes.values() {
        if node.get("type").and_then(|t| t.as_str()) != Some("Pod") {
            continue;
        }
        // The template's name: display names carry retry suffixes (`build(0)`, `<wf>.onExit(0)`).
        let template = node.get("templateName").and_then(|t| t.as_str()).unwrap_or("").to_owned();
        let Some(pod) = pod_name(&wf_name, node) else { continue };
        // A pod running several stages names them (`prepare [validate, build, pipeline]`), from the
        // template the Workflow stored.
        let stages = wf
            .data
            .pointer("/status/storedWorkflowTemplateSpec/templates")
            .and_then(|t| t.as_array())
            .and_then(|ts| ts.iter().find(|t| t["name"] == template.as_str()))
            .and_then(|t| t.pointer("/metadata/annotations/aphex.dev~1stages"))
            .and_then(|a| a.as_str())
            .and_then(|a| serde_json::from_str::<Vec<String>>(a).ok());
        let display = match stages {
            Some(stages) => format!("{template} [{}]", stages.join(", ")),
            None => template,
        };
        let timing = std::fs::read_to_string(cluster.pod_dir("argo", &pod).join("timing.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        if let Some(t) = timing {
            let start = t["startedMs"].as_u64().unwrap_or(0) as u128;
            let end = t["finishedMs"].as_u64().unwrap_or(0) as u128;
            steps.push((start, display, Duration::from_millis((end - start.min(end)) as u64)));
        }
    }
    steps.sort();
    RunTiming { wall, steps: steps.into_iter().map(|(_, n, d)| (n, d)).collect() }
}

/// The pod of a node: Argo v3.4+ names pods `<workflow>-<template>-<hash of the node id>` (POD_NAMES=v2);
/// the node's `id` suffix is that hash.
fn pod_name(workflow: &str, node: &Value) -> Option<String> {
    let id = node.get("id")?.as_str()?;
    let template = node.get("templateName")?.as_str()?;
    let hash = id.rsplit('-').next()?;
    Some(format!("{workflow}-{template}-{hash}"))
}

/// Writes `text` to `path`, creating parents.
pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

// The demo pipeline on Argo: shared by tests/tests/argo_pipeline.rs and `scripts/demo --argo`.

pub const BUCKET: &str = "aphex-argo-artifacts";
pub const PIPELINE: &str = "aphex-demo-argo";

pub fn demo_config(extra_env: &str) -> String {
    let base = std::fs::read_to_string(crate::repo_root().join("examples/demo/aphex-config.yaml")).unwrap();
    let base = base.replace(
        "pipeline:\n  name: aphex-demo\n",
        &format!("pipeline:\n  name: {PIPELINE}\n  artifactBucket: {BUCKET}\n"),
    );
    assert!(base.contains(PIPELINE), "the demo config's pipeline block changed; update this test");
    if extra_env.is_empty() {
        return base;
    }
    // The new environment goes between dev and prod.
    base.replace("  - name: prod\n", &format!("{extra_env}  - name: prod\n"))
}

pub const STAGING: &str = "  - name: staging
    account: \"333333333333\"
    region: us-west-2
    stacks:
      - name: DemoData
      - name: DemoService
      - name: DemoConfig
    tests:
      commands:
        - STAGE=staging node test/smoke.mjs
";

pub fn aphex(
    cluster: &Cluster,
    identity: &str,
    dir: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    std::process::Command::new(crate::deploy_support::aphex_bin())
        .args(args)
        .current_dir(dir)
        .env("KUBECONFIG", cluster.kubeconfig(identity))
        .env_remove("APHEX_CLUSTER")
        .output()
        .expect("run aphex")
}

pub async fn live_template(client: &kube::Client) -> DynamicObject {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "argo", &crate::cluster::argo_resource("WorkflowTemplate"));
    api.get(PIPELINE).await.expect("the live WorkflowTemplate")
}

pub fn template_tasks(t: &DynamicObject) -> Vec<String> {
    let templates = t.data.pointer("/spec/templates").and_then(|v| v.as_array()).cloned().unwrap_or_default();
    let main = templates.iter().find(|t| t["name"] == "main").cloned().unwrap_or_default();
    main.pointer("/dag/tasks")
        .and_then(|v| v.as_array())
        .map(|ts| ts.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

pub struct Run {
    pub name: String,
    pub wf: DynamicObject,
    pub timing: RunTiming,
}

pub async fn push_and_wait(
    cluster: &Cluster,
    client: &kube::Client,
    hook: &Webhook,
    origin: &Origin,
    message: &str,
    delivery: &str,
    expect: &[&str],
) -> Run {
    let (before, after) = origin.commit_and_push(message);
    let payload = push_payload(&origin.url(), "main", &before, &after, message);
    let started = Instant::now();
    let (status, body) = hook.post(&http_client(), "push", delivery, &payload).await.unwrap();
    assert_eq!(status, 202, "{body}\n{}", hook.log_text());
    let name = body["workflow"].as_str().expect("workflow name").to_owned();
    let wf = crate::cluster::wait_for_phase(
        client,
        "argo",
        &name,
        &["Succeeded", "Failed", "Error"],
        Duration::from_secs(900),
    )
    .await;
    let wall = started.elapsed();
    let phase = wf.data.pointer("/status/phase").and_then(|p| p.as_str()).unwrap_or("");
    if !expect.contains(&phase) {
        let mut logs = String::new();
        for entry in std::fs::read_dir(cluster.state.join("pods/argo")).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&name) {
                let log = std::fs::read_to_string(entry.path().join("main.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                logs.push_str(&format!(
                    "--- {}\n{}\n",
                    entry.file_name().to_string_lossy(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        panic!("{name} ended {phase}, expected {expect:?}:\n{}\n{logs}", crate::cluster::describe(&wf));
    }
    let timing = run_timing(cluster, &wf, wall);
    eprintln!("run {name} ({message}): {phase}\n{}", timing.table());
    Run { name, wf, timing }
}
