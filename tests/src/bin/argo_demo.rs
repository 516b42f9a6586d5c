//! `aphex-argo-demo`: the README's main job through the real Argo controller (`scripts/demo --argo`).
//!
//! On a cluster from `scripts/cluster up` and a fresh moto: installs the demo's WorkflowTemplate with
//! `aphex template apply`, starts the webhook Lambda under `cargo lambda watch`, pushes the demo app (run 1),
//! pushes a config change that adds a `staging` environment (run 2: its pipeline pod applies the new shape),
//! and pushes once more (run 3: the new shape runs). Prints each run's stages, their own times and the
//! Argo overhead (the Workflow's wall time minus its steps' own time).

use anyhow::{Context as _, bail};
use aphex_tests::argo_run::{
    self, BUCKET, PIPELINE, STAGING, Webhook, aphex, demo_config, push_and_wait, template_tasks,
};
use aphex_tests::cluster::{Cluster, Origin};

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
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
    let dir = tempfile::tempdir_in(aphex_tests::repo_root().join("target")).context("temp dir")?;
    let origin = Origin::from_dir(&aphex_tests::repo_root().join("examples/demo"), dir.path());
    argo_run::write(&origin.work.join("aphex-config.yaml"), &demo_config(""));
    origin.commit_and_push("the demo on Argo");
    let out = aphex(cluster, "template-manager", &origin.work, &["template", "apply"]);
    if !out.status.success() {
        bail!("aphex template apply: {}", String::from_utf8_lossy(&out.stderr));
    }
    eprintln!("==> WorkflowTemplate {PIPELINE} applied; starting the webhook Lambda (cargo lambda watch)");
    let hook = Webhook::start(cluster, PIPELINE, "main", &[], dir.path().join("webhook.log")).await;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    eprintln!("==> run 1: push the demo app");
    let run1 =
        push_and_wait(cluster, &client, &hook, &origin, "demo", &format!("demo-{suffix}-1"), &["Succeeded"])
            .await;
    eprintln!(
        "==> run 2: push a config that adds the environment staging (the pipeline pod applies the new template)"
    );
    argo_run::write(&origin.work.join("aphex-config.yaml"), &demo_config(STAGING));
    let run2 = push_and_wait(
        cluster,
        &client,
        &hook,
        &origin,
        "add staging",
        &format!("demo-{suffix}-2"),
        &["Succeeded"],
    )
    .await;
    let live = argo_run::live_template(&client).await;
    eprintln!("    the live template's stages now: {}", template_tasks(&live).join(" -> "));
    eprintln!("==> run 3: the new shape");
    let run3 =
        push_and_wait(cluster, &client, &hook, &origin, "run 3", &format!("demo-{suffix}-3"), &["Succeeded"])
            .await;
    println!("\nAphexPipeline demo on Argo Workflows (real controller and API server; stand-in node):");
    for (label, run) in [("run 1", &run1), ("run 2 (adds staging)", &run2), ("run 3 (new shape)", &run3)] {
        println!("  {label}: {}\n{}", run.name, run.timing.table());
    }
    drop(hook);
    Ok(())
}
