//! The steps chained over an in-memory store, as the pods would run them, with scripted side effects.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::deploy::ScriptedDeployer;
use super::shell::MemorySink;
use super::*;
use crate::artifacts::MemoryStore;

const CONFIG: &str = r#"version: "1.0"
build:
  commands: ["echo building > built.txt"]
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks: [{name: Api}]
    tests:
      commands: ["test \"$APHEX_OUTPUT_API_URL_OUT\" = http://api && grep -q http://api \"$APHEX_OUTPUTS_FILE\" && cat built.txt"]
"#;

struct Fixture {
    store: Arc<MemoryStore>,
    sink: Arc<MemorySink>,
    src: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Fixture {
    fn config(&self) -> crate::config::Config {
        crate::steps::load_config(&self.src.path().join("aphex-config.yaml")).unwrap()
    }

    fn new(config: &str) -> Self {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("aphex-config.yaml"), config).unwrap();
        Fixture {
            store: Arc::new(MemoryStore::new()),
            sink: Arc::new(MemorySink::default()),
            src,
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn ctx(&self, work: &std::path::Path) -> StepContext {
        StepContext {
            run: RunInfo {
                run_id: "run-1".into(),
                pipeline: "demo".into(),
                repo_url: "https://github.com/acme/demo.git".into(),
                commit_sha: "abc".into(),
                branch: "main".into(),
                delivery_id: Some("d-1".into()),
                pusher: Some("octocat".into()),
            },
            store: self.store.clone(),
            sink: self.sink.clone(),
            work_dir: work.to_path_buf(),
            config_file: "aphex-config.yaml".into(),
        }
    }
}

fn outcome(ok: bool) -> DeployOutcome {
    DeployOutcome {
        stacks: vec![StackRecord {
            name: "Api".into(),
            status: if ok { Status::Succeeded } else { Status::Failed },
            duration_ms: 40,
            aws_wait_ms: 30,
            action: Some(if ok { "created" } else { "failed" }.into()),
            error: (!ok).then(|| "Api: ApiFn (AWS::Lambda::Function) CREATE_FAILED: bad runtime".into()),
        }],
        outputs: [("Api".to_owned(), [("UrlOut".to_owned(), "http://api".to_owned())].into_iter().collect())]
            .into_iter()
            .collect(),
        synth: Duration::from_millis(5),
        aws_wait: Duration::from_millis(30),
        error: (!ok)
            .then(|| "stack Api failed: ApiFn (AWS::Lambda::Function) CREATE_FAILED: bad runtime".into()),
    }
}

#[tokio::test]
async fn build_deploy_test_finalize_share_state_through_the_store() {
    let f = Fixture::new(CONFIG);
    let build_ctx = f.ctx(f.src.path());
    build::run(&build_ctx).await.unwrap();
    // A fresh pod: empty work tree, artifacts from the store.
    let ctx = f.ctx(f.work.path());
    let deployer = ScriptedDeployer { outcomes: HashMap::from([("dev".to_owned(), outcome(true))]) };
    let outputs_file = f.work.path().join("out/outputs.json");
    let rec = deploy::run(&ctx, "dev", &outputs_file, &deployer).await.unwrap();
    assert!(rec.external_ms <= rec.duration_ms);
    assert!(std::fs::read_to_string(&outputs_file).unwrap().contains("http://api"));
    assert_eq!(std::fs::read_to_string(f.work.path().join("built.txt")).unwrap(), "building\n");
    test::run(&ctx, "dev", &outputs_file).await.unwrap();
    let mut metrics = Vec::new();
    let cloudwatch = crate::telemetry::metrics::MemoryMetrics::default();
    let record =
        finalize::run(&ctx, Some("Succeeded"), &[], None, &mut metrics, Some(&cloudwatch)).await.unwrap();
    let puts = cloudwatch.puts.lock().unwrap().clone();
    let failed = puts.iter().find(|(_, d)| d.name == "RunsFailed").unwrap();
    assert_eq!(failed.0, "AphexPipeline");
    assert_eq!(failed.1.value, 0.0);
    assert_eq!(failed.1.dimensions, [("Pipeline".to_owned(), record.run.pipeline.clone())]);
    assert!(puts.iter().any(|(_, d)| d.name == "StackDuration" && d.value == 40.0), "{puts:?}");
    assert_eq!(record.status, Status::Succeeded);
    assert_eq!(record.trigger, "push");
    assert_eq!(
        record.stages.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["build", "deploy-dev", "test-dev"]
    );
    assert_eq!(record.outputs["dev"]["Api"]["UrlOut"], "http://api");
    let metrics = String::from_utf8(metrics).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert_eq!(first["_aws"]["CloudWatchMetrics"][0]["Namespace"], "AphexPipeline");
    assert_eq!(first["RunsSucceeded"], 1);
    assert!(metrics.contains("\"StackDuration\":40"), "{metrics}");
    let stored = f.store.get_bytes(&record_key("run-1")).await.unwrap();
    let stored: finalize::RunRecord = serde_json::from_slice(&stored).unwrap();
    assert_eq!(stored, record);
}

#[tokio::test]
async fn a_failing_build_command_is_named_and_recorded() {
    let f = Fixture::new(
        &CONFIG.replace("echo building > built.txt", "echo compiling; echo 'error TS2304' >&2; exit 2"),
    );
    let ctx = f.ctx(f.src.path());
    let err = build::run(&ctx).await.unwrap_err().to_string();
    assert!(
        err.contains("build command `echo compiling; echo 'error TS2304' >&2; exit 2` exited with code 2"),
        "{err}"
    );
    assert!(err.contains("error TS2304"), "{err}");
    // Nothing was uploaded, and a deploy after it finds no artifacts.
    assert!(f.store.list("acme/").await.unwrap().is_empty());
    let deployer = ScriptedDeployer::default();
    let err = deploy::run(&f.ctx(f.work.path()), "dev", &f.work.path().join("o.json"), &deployer)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("build (with artifacts)"), "{err}");
    let mut metrics = Vec::new();
    let cloudwatch = crate::telemetry::metrics::MemoryMetrics::default();
    let record = finalize::run(
        &ctx,
        Some("Failed"),
        &["build".into(), "deploy-dev".into(), "test-dev".into()],
        None,
        &mut metrics,
        Some(&cloudwatch),
    )
    .await
    .unwrap();
    let puts = cloudwatch.puts.lock().unwrap().clone();
    assert!(puts.iter().any(|(_, d)| d.name == "RunsFailed" && d.value == 1.0), "{puts:?}");
    assert_eq!(record.status, Status::Failed);
    assert_eq!(record.failed_stage.as_deref(), Some("build"));
    assert!(record.reason.as_deref().unwrap().contains("exited with code 2"));
    let test = record.stages.iter().find(|s| s.id == "test-dev").unwrap();
    assert_eq!(test.status, Status::Skipped);
    assert!(String::from_utf8(metrics).unwrap().contains("\"RunsFailed\":1"));
}

#[tokio::test]
async fn a_failed_stack_fails_the_stage_with_its_reason_and_outputs_so_far() {
    let f = Fixture::new(CONFIG);
    build::run(&f.ctx(f.src.path())).await.unwrap();
    let ctx = f.ctx(f.work.path());
    let deployer = ScriptedDeployer { outcomes: HashMap::from([("dev".to_owned(), outcome(false))]) };
    let err = deploy::run(&ctx, "dev", &f.work.path().join("o.json"), &deployer).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("deploy of environment dev failed: stack Api failed: ApiFn (AWS::Lambda::Function)"),
        "{err}"
    );
    let rec = ctx.read_stage("t", "deploy-dev").await.unwrap();
    assert_eq!(rec.status, Status::Failed);
    assert_eq!(rec.stacks[0].status, Status::Failed);
    let (detail_type, detail) = finalize::status_event(
        &finalize::build_record(None, &ctx.run, vec![rec], None, &[], time::OffsetDateTime::now_utc()),
        Some(&f.config()),
    );
    assert_eq!(detail_type, "Pipeline Run Failed");
    assert_eq!(detail["failedStack"]["stackName"], "Api");
    assert_eq!(detail["environment"], "dev");
    // The notify Lambda reads exactly this shape.
    let event: crate::notify::PipelineStatusEvent = serde_json::from_value(detail).unwrap();
    assert_eq!(event.status, crate::notify::RunStatus::Failed);
    assert!(event.failure_reason.is_some());
}

#[tokio::test]
async fn a_failing_test_names_the_environment_and_command() {
    let f = Fixture::new(&CONFIG.replace(
        "test \\\"$APHEX_OUTPUT_API_URL_OUT\\\" = http://api",
        "test \\\"$APHEX_OUTPUT_API_URL_OUT\\\" = http://other",
    ));
    build::run(&f.ctx(f.src.path())).await.unwrap();
    let ctx = f.ctx(f.work.path());
    let deployer = ScriptedDeployer { outcomes: HashMap::from([("dev".to_owned(), outcome(true))]) };
    let file = f.work.path().join("o.json");
    deploy::run(&ctx, "dev", &file, &deployer).await.unwrap();
    let err = test::run(&ctx, "dev", &file).await.unwrap_err().to_string();
    assert!(
        err.starts_with(
            "post-deploy test of environment dev: `test \"$APHEX_OUTPUT_API_URL_OUT\" = http://other"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_tampered_artifact_stops_the_deploy_naming_the_file() {
    let f = Fixture::new(CONFIG);
    let rec = build::run(&f.ctx(f.src.path())).await.unwrap();
    let at = rec.artifacts.unwrap();
    let mut manifest: crate::artifacts::Manifest =
        serde_json::from_slice(&f.store.get_bytes(&at.manifest_key()).await.unwrap()).unwrap();
    manifest.files.iter_mut().find(|e| e.path == "built.txt").unwrap().sha256 = "ab".repeat(32);
    f.store.insert(&at.manifest_key(), serde_json::to_vec(&manifest).unwrap());
    let deployer = ScriptedDeployer { outcomes: HashMap::from([("dev".to_owned(), outcome(true))]) };
    let ctx = f.ctx(f.work.path());
    let err =
        deploy::run(&ctx, "dev", &f.work.path().join("o.json"), &deployer).await.unwrap_err().to_string();
    assert!(err.contains("artifact file built.txt does not match its manifest"), "{err}");
    assert!(!f.work.path().join("o.json").exists(), "the deploy engine must not have run");
}
