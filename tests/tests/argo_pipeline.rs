//! The demo pipeline on the real Argo Workflows controller and a real Kubernetes API server
//! (`scripts/cluster`): a signed push to the webhook Lambda (under `cargo lambda watch`, as the identity
//! `argo/rbac.yaml` grants it) starts a Workflow from the WorkflowTemplate `aphex template apply` put there;
//! its pods run validate → build → pipeline → deploy → test → finalize against moto (two accounts);
//! then self-modification: a push that adds an environment changes the live template through the pipeline
//! pod's own service account, so the run after it has the new stages; an invalid config leaves the live
//! template alone; `aphex template history` and `rollback` work against the real API server.
//!
//! Only the kubelet and Argo's executor are stood in (tests/src/pod_node); see scripts/cluster.

use aphex_tests::argo_run::{
    self, BUCKET, PIPELINE, STAGING, Webhook, aphex, demo_config, live_template, push_and_wait,
    template_tasks,
};
use aphex_tests::cluster::{self, Cluster, Origin};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn demo_pipeline_runs_and_modifies_itself_on_argo() {
    let cluster = Cluster::up();
    let client = cluster.client("admin").await;
    let moto = aphex_tests::moto::Moto::start();
    argo_run::bootstrap_demo(
        &moto,
        &[("111111111111", "us-east-1"), ("222222222222", "eu-west-1"), ("333333333333", "us-west-2")],
        BUCKET,
    )
    .await;
    cluster.set_pod_environment("argo", &argo_run::pod_environment(&moto)).await;

    let dir = tempfile::tempdir_in(aphex_tests::repo_root().join("target")).unwrap();
    let origin = Origin::from_dir(&aphex_tests::repo_root().join("examples/demo"), dir.path());
    argo_run::write(&origin.work.join("aphex-config.yaml"), &demo_config(""));
    origin.commit_and_push("the demo on Argo");

    // The operator installs the pipeline once, as the template manager.
    let out = aphex(cluster, "template-manager", &origin.work, &["template", "apply"]);
    assert!(out.status.success(), "aphex template apply: {}", String::from_utf8_lossy(&out.stderr));
    let first = live_template(&client).await;
    assert!(!template_tasks(&first).contains(&"env-staging".to_owned()));

    let hook = Webhook::start(cluster, PIPELINE, "main", &[], dir.path().join("webhook.log")).await;
    // Deliveries are unique per run of this test (the cluster may outlive it).
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    // Run 1: the demo, end to end.
    let run1 = push_and_wait(
        cluster,
        &client,
        &hook,
        &origin,
        "run 1",
        &format!("argo-demo-{suffix}-1"),
        &["Succeeded"],
    )
    .await;
    // Four pods: validate, build and pipeline share `prepare`; each environment's tests run in its
    // deploy's pod.
    let steps1 = cluster::pod_steps(&run1.wf);
    assert_eq!(
        steps1,
        ["prepare", "deploy-dev", "deploy-prod", "finalize"],
        "{}",
        cluster::describe(&run1.wf)
    );
    // The deploy's outputs reached the test step through Argo's output parameter.
    let outputs = run1
        .wf
        .data
        .pointer("/status/nodes")
        .and_then(|n| n.as_object())
        .and_then(|nodes| nodes.values().find(|n| n["templateName"] == "deploy-dev" && n["type"] == "Pod"))
        .and_then(|n| n.pointer("/outputs/parameters/0/value"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .unwrap_or_default();
    let outputs: serde_json::Value =
        serde_json::from_str(&outputs).expect("deploy-dev's outputs parameter is JSON");
    assert!(
        outputs.get("DemoConfig").is_some() || outputs.as_object().is_some_and(|o| !o.is_empty()),
        "{outputs}"
    );
    // The run record, in S3.
    let s3config = moto.sdk_config("us-east-1").await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&s3config).force_path_style(true).build(),
    );
    let record = s3.get_object().bucket(BUCKET).key(format!("runs/{}/record.json", run1.name)).send().await;
    let record = record.expect("the run record is in S3").body.collect().await.unwrap().into_bytes();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["status"], "succeeded", "{record}");
    let stages: Vec<&str> =
        record["stages"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(
        stages,
        ["validate", "build", "pipeline", "deploy-dev", "test-dev", "deploy-prod", "test-prod"]
    );
    assert!(
        record["stages"].as_array().into_iter().flatten().all(|s| s["status"] == "succeeded"),
        "{record}"
    );

    // Run 2 adds an environment: it runs the old shape and its pipeline pod applies the new template.
    argo_run::write(&origin.work.join("aphex-config.yaml"), &demo_config(STAGING));
    let run2 = push_and_wait(
        cluster,
        &client,
        &hook,
        &origin,
        "add staging",
        &format!("argo-demo-{suffix}-2"),
        &["Succeeded"],
    )
    .await;
    let steps2 = cluster::pod_steps(&run2.wf);
    assert!(!steps2.iter().any(|s| s.contains("staging")), "run 2 has the old shape: {steps2:?}");
    let second = live_template(&client).await;
    assert!(template_tasks(&second).contains(&"env-staging".to_owned()), "{:?}", template_tasks(&second));
    let managers: Vec<String> =
        second.metadata.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect();
    assert!(
        managers.contains(&"aphex".to_owned()),
        "server-side applied by the field manager aphex: {managers:?}"
    );

    // Run 3 has the new environment's stages.
    let run3 = push_and_wait(
        cluster,
        &client,
        &hook,
        &origin,
        "run 3",
        &format!("argo-demo-{suffix}-3"),
        &["Succeeded"],
    )
    .await;
    let steps3 = cluster::pod_steps(&run3.wf);
    assert!(steps3.contains(&"deploy-staging".to_owned()), "deploy-staging missing from run 3: {steps3:?}");

    // An invalid config fails the run and leaves the live template as it was.
    let before = live_template(&client).await;
    argo_run::write(
        &origin.work.join("aphex-config.yaml"),
        &demo_config(STAGING).replace("\"333333333333\"", "\"3333\""),
    );
    let run4 = push_and_wait(
        cluster,
        &client,
        &hook,
        &origin,
        "broken config",
        &format!("argo-demo-{suffix}-4"),
        &["Failed"],
    )
    .await;
    let after = live_template(&client).await;
    assert_eq!(
        before.metadata.resource_version, after.metadata.resource_version,
        "the live template changed"
    );
    assert!(
        !cluster::pod_steps(&run4.wf).iter().any(|s| s.starts_with("deploy")),
        "{}",
        cluster::describe(&run4.wf)
    );

    // History and rollback against the real API server, as the template manager.
    let target = ["--name", PIPELINE, "--namespace", "argo"];
    let out =
        aphex(cluster, "template-manager", &origin.work, &[&["template", "history"][..], &target].concat());
    let history = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{history}{}", String::from_utf8_lossy(&out.stderr));
    let out =
        aphex(cluster, "template-manager", &origin.work, &[&["template", "rollback"][..], &target].concat());
    assert!(
        out.status.success(),
        "rollback: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rolled = live_template(&client).await;
    assert!(
        !template_tasks(&rolled).contains(&"env-staging".to_owned()),
        "rolled back to the two-environment shape"
    );

    eprintln!(
        "Argo overhead: run 1 {:.2}s, run 2 {:.2}s, run 3 {:.2}s (history:\n{history})",
        run1.timing.argo_overhead().as_secs_f64(),
        run2.timing.argo_overhead().as_secs_f64(),
        run3.timing.argo_overhead().as_secs_f64()
    );
    drop(hook);
}
