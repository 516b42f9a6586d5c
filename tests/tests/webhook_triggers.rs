//! Trigger settings from one source of truth: `pipeline.branches`, `pipeline.tags` and
//! `pipeline.concurrency` of a config, rendered and server-side applied as the WorkflowTemplate into the
//! fake Kubernetes API server, decide what the webhook starts; a config change re-applied changes the
//! decision of the next delivery; `APHEX_*` variables override. The webhook reads the template through
//! the real Kubernetes adapter (`KubeTemplateStore`).

use std::sync::Arc;
use std::time::Duration;

use aphex::template::{KubeTemplateStore, TemplateStore};
use aphex::webhook::{
    Intake, MemorySubmitter, NoLedger, Peers, Secret, SecretSource, TemplateTriggers, WebhookConfig,
    WebhookRequest, config as whconfig,
};
use aphex_tests::fake_kube::FakeKube;
use http::{HeaderMap, HeaderValue};
use serde_json::Value;

const SECRET: &str = "triggers secret";

fn config(pipeline: &str) -> aphex::config::Config {
    let text = format!(
        r#"version: "1.0"
pipeline:
  name: shop
{pipeline}
build: {{ commands: [make] }}
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks: [{{ name: App }}]
"#
    );
    aphex::config::parse("aphex-config.yaml", &text).unwrap_or_else(|d| panic!("{d:?}"))
}

async fn apply(store: &KubeTemplateStore, pipeline: &str) {
    let rendered = aphex::template::render_config(&config(pipeline), None).unwrap();
    store.apply_template("argo", "shop", &rendered.document).await.unwrap();
}

fn push(delivery: &str, git_ref: &str) -> WebhookRequest {
    let path = aphex_tests::fixtures_dir().join("github/octokit_push_branch_created_with_commit.json");
    let mut payload: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    payload["ref"] = git_ref.into();
    let body = serde_json::to_vec(&payload).unwrap();
    let mut h = HeaderMap::new();
    h.insert("X-GitHub-Event", HeaderValue::from_static("push"));
    h.insert("X-GitHub-Delivery", HeaderValue::from_str(delivery).unwrap());
    h.insert("Content-Type", HeaderValue::from_static("application/json"));
    h.insert(
        "X-Hub-Signature-256",
        HeaderValue::from_str(&Secret::new(SECRET).unwrap().sign(&body)).unwrap(),
    );
    WebhookRequest::new(h, body)
}

fn intake(vars: &[(&str, &str)]) -> Intake {
    let mut all = vec![(whconfig::ENV_SECRET, SECRET), (whconfig::ENV_TEMPLATE, "shop")];
    all.extend_from_slice(vars);
    let config =
        WebhookConfig::from_lookup(|k| all.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
            .unwrap();
    let SecretSource::Env(secrets) = config.secret.clone() else { panic!("env secret") };
    Intake::new(&config, secrets).unwrap()
}

async fn answer(
    intake: &Intake,
    triggers: &TemplateTriggers,
    sub: &MemorySubmitter,
    req: &WebhookRequest,
) -> Value {
    let resp = intake.handle_with(req, Peers { submitter: sub, ledger: &NoLedger, triggers }).await;
    let mut body = resp.body.clone();
    body["http"] = resp.status.into();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applied_templates_annotations_decide_what_starts_a_run() {
    let kube = FakeKube::start();
    let store = KubeTemplateStore::new(kube.client());
    apply(&store, "  branches: [develop]\n  tags: [\"v*\"]").await;
    let live = kube.get("argoproj.io/v1alpha1", "argo", "workflowtemplates", "shop").unwrap();
    assert_eq!(live["metadata"]["annotations"]["aphex.dev/branches"], r#"["develop"]"#);
    assert_eq!(live["metadata"]["annotations"]["aphex.dev/tags"], r#"["v*"]"#);
    assert_eq!(live["metadata"]["annotations"]["aphex.dev/concurrency"], r#""queue""#);

    // No cache, so each delivery reads the live template.
    let triggers = TemplateTriggers::new(Arc::new(store.clone()), Duration::ZERO);
    let webhook = intake(&[]);
    let sub = MemorySubmitter::new();
    let master = answer(&webhook, &triggers, &sub, &push("d-1", "refs/heads/master")).await;
    assert_eq!(master["status"], "ignored", "{master}");
    assert_eq!(master["reason"], "branch `master` does not match pipeline.branches (develop)");
    let develop = answer(&webhook, &triggers, &sub, &push("d-2", "refs/heads/develop")).await;
    assert_eq!(
        (develop["http"].as_u64(), develop["status"].as_str()),
        (Some(202), Some("started")),
        "{develop}"
    );
    let tag = answer(&webhook, &triggers, &sub, &push("d-3", "refs/tags/v1.0.0")).await;
    assert_eq!(tag["status"], "started", "{tag}");

    // A push changes the config; the pipeline stage re-applies the template: the next delivery follows.
    apply(&store, "  branches: [master]\n  concurrency: supersede").await;
    let now = answer(&webhook, &triggers, &sub, &push("d-4", "refs/heads/master")).await;
    assert_eq!(now["status"], "started", "{now}");
    let again = answer(&webhook, &triggers, &sub, &push("d-5", "refs/heads/master")).await;
    assert_eq!(
        again["superseded"],
        serde_json::json!(["aphex-d-4"]),
        "supersede comes from the template: {again}"
    );
    let tag = answer(&webhook, &triggers, &sub, &push("d-6", "refs/tags/v1.0.0")).await;
    assert_eq!(tag["reason"], "tag `v1.0.0`: tag pushes are ignored unless pipeline.tags lists tag globs");

    // APHEX_BRANCHES overrides the template; tags still come from it.
    let overridden = intake(&[(whconfig::ENV_BRANCHES, "develop")]);
    let master = answer(&overridden, &triggers, &sub, &push("d-7", "refs/heads/master")).await;
    assert_eq!(master["reason"], "branch `master` does not match APHEX_BRANCHES (develop)");

    // Within the cache's lifetime the webhook does not read the template again.
    let cached = TemplateTriggers::new(Arc::new(store.clone()), Duration::from_secs(30));
    let _ = answer(&webhook, &cached, &sub, &push("d-8", "refs/heads/develop")).await;
    let reads_before = template_reads(&kube);
    let _ = answer(&webhook, &cached, &sub, &push("d-9", "refs/heads/develop")).await;
    assert_eq!(template_reads(&kube), reads_before);
}

fn template_reads(kube: &FakeKube) -> usize {
    kube.requests().iter().filter(|r| r.method == "GET" && r.path.contains("/workflowtemplates/")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_template_the_defaults_hold_and_a_bad_annotation_is_a_500() {
    let kube = FakeKube::start();
    let store = KubeTemplateStore::new(kube.client());
    let triggers = TemplateTriggers::new(Arc::new(store.clone()), Duration::ZERO);
    let webhook = intake(&[]);
    let sub = MemorySubmitter::new();
    let master = answer(&webhook, &triggers, &sub, &push("e-1", "refs/heads/master")).await;
    assert_eq!(master["reason"], "branch `master` does not match pipeline.branches (main)");

    apply(&store, "").await;
    let mut live = kube.get("argoproj.io/v1alpha1", "argo", "workflowtemplates", "shop").unwrap();
    live["metadata"]["annotations"]["aphex.dev/branches"] = "main".into();
    kube.insert("argoproj.io/v1alpha1", "argo", "workflowtemplates", live);
    let bad = answer(&webhook, &triggers, &sub, &push("e-2", "refs/heads/main")).await;
    assert_eq!(bad["http"], 500, "{bad}");
    assert!(sub.created().is_empty());
}
