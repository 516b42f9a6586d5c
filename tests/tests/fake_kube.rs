//! The fake Kubernetes API server answers kube-rs the way a real API server does for the calls we make.

use aphex_tests::fake_kube::FakeKube;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

fn workflows(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow");
    Api::namespaced_with(client, "argo", &ApiResource::from_gvk(&gvk))
}

fn workflow(name: &str, branch: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name, "labels": {"aphex.dev/branch": branch}},
        "spec": {"workflowTemplateRef": {"name": "aphex-pipeline"}}
    }))
    .unwrap()
}

fn api_code(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_is_409_on_an_existing_name_and_get_is_404_on_a_missing_one() {
    let fake = FakeKube::start();
    let api = workflows(fake.client());
    let created = api.create(&PostParams::default(), &workflow("run-1", "main")).await.unwrap();
    assert_eq!(created.metadata.resource_version.as_deref(), Some("1"));
    assert!(created.metadata.uid.is_some());

    let again = api.create(&PostParams::default(), &workflow("run-1", "main")).await.unwrap_err();
    assert_eq!(api_code(again), (409, "AlreadyExists".to_owned()));
    assert_eq!(fake.list("argoproj.io/v1alpha1", "argo", "workflows").len(), 1);

    let missing = api.get("nope").await.unwrap_err();
    assert_eq!(api_code(missing), (404, "NotFound".to_owned()));
    assert_eq!(api.get_opt("nope").await.unwrap(), None);
}

#[tokio::test]
async fn invalid_objects_are_422_and_not_stored() {
    let fake = FakeKube::start();
    fake.set_validator(
        "workflows",
        std::sync::Arc::new(|o| {
            if o["spec"].get("workflowTemplateRef").is_some() {
                Ok(())
            } else {
                Err("spec.workflowTemplateRef: Required value".into())
            }
        }),
    );
    let api = workflows(fake.client());
    let bad_name = api.create(&PostParams::default(), &workflow("Run_1", "main")).await.unwrap_err();
    assert_eq!(api_code(bad_name).0, 422);
    let mut no_ref = workflow("run-2", "main");
    no_ref.data = json!({"spec": {}});
    let err = api.create(&PostParams::default(), &no_ref).await.unwrap_err();
    match err {
        kube::Error::Api(s) => assert!(s.message.contains("workflowTemplateRef"), "{}", s.message),
        other => panic!("{other:?}"),
    }
    assert!(fake.list("argoproj.io/v1alpha1", "argo", "workflows").is_empty());
}

#[tokio::test]
async fn list_filters_by_label_selector_and_merge_patch_stops_a_run() {
    let fake = FakeKube::start();
    let api = workflows(fake.client());
    for (name, branch) in [("a", "main"), ("b", "feature"), ("c", "main")] {
        api.create(&PostParams::default(), &workflow(name, branch)).await.unwrap();
    }
    let main: Vec<String> = api
        .list(&ListParams::default().labels("aphex.dev/branch=main"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(main, ["a", "c"]);
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"shutdown": "Stop"}})))
        .await
        .unwrap();
    let stopped = fake.get("argoproj.io/v1alpha1", "argo", "workflows", "a").unwrap();
    assert_eq!(stopped["spec"]["shutdown"], "Stop");
    assert_eq!(stopped["spec"]["workflowTemplateRef"]["name"], "aphex-pipeline");
    assert_eq!(stopped["metadata"]["generation"], 2);
}

#[tokio::test]
async fn server_side_apply_creates_updates_drops_fields_and_detects_conflicts() {
    let fake = FakeKube::start();
    let api = workflows(fake.client());
    let pp = PatchParams::apply("aphex");
    let v1 = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "t", "labels": {"a": "1", "b": "2"}}, "spec": {"entrypoint": "main"}});
    api.patch("t", &pp, &Patch::Apply(&v1)).await.unwrap();
    let v2 = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "t", "labels": {"a": "1"}}, "spec": {"entrypoint": "pipeline"}});
    api.patch("t", &pp, &Patch::Apply(&v2)).await.unwrap();
    let live = fake.get("argoproj.io/v1alpha1", "argo", "workflows", "t").unwrap();
    assert_eq!(
        live["metadata"]["labels"],
        json!({"a": "1"}),
        "a field the manager stopped applying is removed"
    );
    assert_eq!(live["spec"]["entrypoint"], "pipeline");
    assert_eq!(live["metadata"]["managedFields"][0]["manager"], "aphex");

    let other = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "t"}, "spec": {"entrypoint": "other"}});
    let err = api.patch("t", &PatchParams::apply("someone-else"), &Patch::Apply(&other)).await.unwrap_err();
    assert_eq!(api_code(err).0, 409);
    api.patch("t", &PatchParams::apply("someone-else").force(), &Patch::Apply(&other)).await.unwrap();
    assert_eq!(
        fake.get("argoproj.io/v1alpha1", "argo", "workflows", "t").unwrap()["spec"]["entrypoint"],
        "other"
    );

    let no_manager = api.patch("t", &PatchParams::default(), &Patch::Apply(&v2)).await.unwrap_err();
    assert_eq!(api_code(no_manager).0, 422);
}

#[test]
fn kubeconfig_points_at_the_server() {
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let path = fake.write_kubeconfig(dir.path());
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(&format!("server: {}", fake.url())));
    let requests_before = fake.requests().len();
    assert_eq!(requests_before, 0);
}

#[tokio::test]
async fn cluster_access_reads_a_kubeconfig_and_reaches_the_server() {
    use aphex::cluster::{ClusterAccess, ClusterTarget};
    let fake = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let path = fake.write_kubeconfig(dir.path());
    let sdk = aws_config_for_tests();
    let access = ClusterAccess::new(ClusterTarget::Kubeconfig { paths: path.display().to_string() }, sdk);
    let client = access.client().await.unwrap();
    workflows(client).create(&PostParams::default(), &workflow("via-kubeconfig", "main")).await.unwrap();
    assert!(fake.get("argoproj.io/v1alpha1", "argo", "workflows", "via-kubeconfig").is_some());
    let sent = fake.requests();
    assert_eq!(sent.last().unwrap().method, "POST");
}

fn aws_config_for_tests() -> aws_types::SdkConfig {
    aws_types::SdkConfig::builder().behavior_version(aws_config::BehaviorVersion::latest()).build()
}
