//! Intake on a real Kubernetes API server: the webhook Lambda under `cargo lambda watch`, authenticated as
//! the group `argo/rbac.yaml` grants it (`aphex:webhook`, not an admin), creates Workflows; a redelivery is
//! "already started"; 5 concurrent posts of one delivery make 1 Workflow; 100 distinct deliveries posted
//! twice each, 10 at a time, make exactly 100 Workflows with no 5xx. And `argo lint` (the real CLI against
//! the real server) accepts every template `aphex render` writes for the examples and the committed one.

use std::collections::BTreeMap;
use std::time::Duration;

use aphex_tests::argo_run::{self, Webhook};
use aphex_tests::cluster::{self, Cluster};
use futures::StreamExt as _;
use kube::api::{Api, DynamicObject, ListParams};

/// A template name nothing provides: the controller fails these Workflows at once, so intake is tested
/// without running 100 pipelines.
const TEMPLATE: &str = "aphex-intake-only";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_creates_exactly_one_workflow_per_delivery_in_the_real_api_server() {
    let cluster = Cluster::up();
    let admin = cluster.client("admin").await;
    let dir = tempfile::tempdir().unwrap();
    let hook = Webhook::start(cluster, TEMPLATE, "main", &[], dir.path().join("webhook.log")).await;
    let client = argo_run::http_client();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let url = "file:///nonexistent/intake.git";
    let push = |i: usize| {
        argo_run::push_payload(
            url,
            "main",
            &"0".repeat(40),
            &format!("{:040x}", i + 1),
            &format!("intake {run} {i}"),
        )
    };

    // The webhook's identity may create Workflows but not, say, read Secrets: it is not an admin.
    let webhook_client = cluster.client("webhook").await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(webhook_client, "argo");
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("the webhook identity can list secrets: {other:?}"),
    }

    // One delivery, then its redelivery.
    let delivery = format!("intake-{run}-single");
    let (status, body) = hook.post(&client, "push", &delivery, &push(0)).await.unwrap();
    assert_eq!(status, 202, "{body}\n{}", hook.log_text());
    let (status, body) = hook.post(&client, "push", &delivery, &push(0)).await.unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("already started")), "{body}");

    // Five concurrent posts of one delivery: one Workflow.
    let delivery = format!("intake-{run}-five");
    let payload = push(1);
    let answers =
        futures::future::join_all((0..5).map(|_| hook.post(&client, "push", &delivery, &payload))).await;
    let mut statuses: Vec<u16> = answers.into_iter().map(|a| a.unwrap().0).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 202]);

    // 100 distinct deliveries, each posted twice, 10 requests in flight.
    let posts: Vec<(String, serde_json::Value)> = (0..100)
        .flat_map(|i| {
            let d = format!("intake-{run}-{i:03}");
            let p = push(100 + i);
            [(d.clone(), p.clone()), (d, p)]
        })
        .collect();
    let answers: Vec<(String, u16)> = futures::stream::iter(posts.iter())
        .map(|(d, p)| {
            let (client, hook) = (&client, &hook);
            async move { (d.clone(), hook.post(client, "push", d, p).await.map(|r| r.0).unwrap_or(599)) }
        })
        .buffer_unordered(10)
        .collect()
        .await;
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, s) in &answers {
        *by_status.entry(*s).or_default() += 1;
    }
    assert_eq!(by_status, BTreeMap::from([(200, 100), (202, 100)]), "{}", hook.log_text());

    // What the real API server holds, as the admin sees it.
    let workflows: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), "argo", &cluster::argo_resource("Workflow"));
    let listed = workflows.list(&ListParams::default()).await.unwrap();
    let ours: Vec<&DynamicObject> = listed
        .items
        .iter()
        .filter(|w| {
            w.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("aphex.dev/delivery"))
                .is_some_and(|d| d.starts_with(&format!("intake-{run}-")))
        })
        .collect();
    assert_eq!(ours.len(), 102, "1 + 1 + 100 Workflows");
    let distinct: std::collections::BTreeSet<&str> =
        ours.iter().filter_map(|w| w.metadata.name.as_deref()).collect();
    assert_eq!(distinct.len(), 102);
    let sample =
        ours.iter().find(|w| w.metadata.name.as_deref() == Some(&format!("aphex-intake-{run}-007"))).unwrap();
    assert_eq!(
        sample.data.pointer("/spec/workflowTemplateRef/name").and_then(|v| v.as_str()),
        Some(TEMPLATE)
    );

    // Clean up (the Workflows failed on the missing template; nothing ran).
    for w in ours {
        let _ = workflows.delete(w.metadata.name.as_deref().unwrap(), &Default::default()).await;
    }
    drop(hook);
}

#[test]
fn argo_lint_accepts_every_rendered_template() {
    let cluster = Cluster::up();
    let root = aphex_tests::repo_root();
    let dir = tempfile::tempdir().unwrap();
    let mut files = vec![root.join("argo/workflow-template.yaml")];
    for example in ["minimal", "multi-env", "demo"] {
        let out = std::process::Command::new(aphex_tests::deploy_support::aphex_bin())
            .args(["render", "--format", "yaml", "--config"])
            .arg(root.join("examples").join(example).join("aphex-config.yaml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "render {example}: {}", String::from_utf8_lossy(&out.stderr));
        let path = dir.path().join(format!("{example}.yaml"));
        std::fs::write(&path, &out.stdout).unwrap();
        files.push(path);
    }
    for file in &files {
        let out = cluster.argo(&["lint", "--namespace", "argo", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "argo lint {}:\n{}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = Duration::ZERO;
}
