//! `aphex run --local` end to end against moto: the failure paths (what the user sees, that later stages
//! do not run, and what the run record says). The demo itself runs in `run_local_demo.rs`.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{Moto, aphex_bin, write_repo};

const ASSEMBLY: &str = "synth-multi-stack-cross-refs";

fn config(build: &str, tests: &str) -> String {
    format!(
        r#"version: "1.0"
pipeline:
  name: local-test
build:
  commands: [{build}]
  timeoutMinutes: 1
synth:
  command: "sh synth.sh"
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks: [{{name: ProducerStack}}]
    tests:
      commands: [{tests}]
  - name: prod
    region: eu-west-1
    account: "222222222222"
    approval: manual
    stacks: [{{name: ProducerStack}}]
"#
    )
}

struct Run {
    out: Output,
    stderr: String,
    record: serde_json::Value,
}

fn run_local(moto: &Moto, repo: &Path, extra: &[&str]) -> Run {
    let state = repo.join(".aphex/state");
    let out = Command::new(aphex_bin())
        .args(["run", "--local", "--repo"])
        .arg(repo)
        .arg("--state-dir")
        .arg(&state)
        .args(extra)
        .envs(moto.env())
        .env("APHEX_DEPLOY_METHOD", "direct")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let records: Vec<_> = walk(&state.join("store/runs"), "record.json");
    assert_eq!(records.len(), 1, "one run record expected; stderr:\n{stderr}");
    let record = serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    Run { out, stderr, record }
}

fn walk(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                found.extend(walk(&p, name));
            } else if p.file_name().is_some_and(|n| n == name) {
                found.push(p);
            }
        }
    }
    found
}

fn stage_status(record: &serde_json::Value, id: &str) -> String {
    record["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .map(|s| s["status"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| "absent".into())
}

fn setup(build: &str, tests: &str) -> (Moto, tempfile::TempDir) {
    let moto = Moto::start();
    moto.bootstrap("111111111111", "us-east-1");
    moto.bootstrap("222222222222", "eu-west-1");
    let repo = tempfile::tempdir().unwrap();
    write_repo(repo.path(), &config(build, tests), ASSEMBLY);
    (moto, repo)
}

#[test]
fn a_successful_run_deploys_both_environments_and_reports_its_overhead() {
    let (moto, repo) = setup("\"echo built > build.txt\"", "\"test -n \\\"$APHEX_OUTPUTS_FILE\\\"\"");
    let run = run_local(&moto, repo.path(), &["--approve"]);
    assert!(run.out.status.success(), "{}", run.stderr);
    let stdout = String::from_utf8_lossy(&run.out.stdout);
    assert!(stdout.contains("pipeline overhead"), "{stdout}");
    assert!(stdout.contains("ProducerStack"), "{stdout}");
    assert_eq!(run.record["status"], "succeeded");
    for id in ["validate", "build", "pipeline", "deploy-dev", "test-dev", "approve-prod", "deploy-prod"] {
        assert_eq!(stage_status(&run.record, id), "succeeded", "{id}");
    }
}

#[test]
fn a_failing_build_command_stops_the_run_before_any_deploy() {
    let (moto, repo) =
        setup("\"echo compiling; echo 'src/app.ts(3,1): error TS1005' >&2; exit 7\"", "\"true\"");
    let run = run_local(&moto, repo.path(), &["--approve"]);
    assert!(!run.out.status.success());
    assert!(run.stderr.contains("build command `echo compiling; echo 'src/app.ts(3,1): error TS1005' >&2; exit 7` exited with code 7"), "{}", run.stderr);
    assert!(run.stderr.contains("error TS1005"), "the last lines are shown: {}", run.stderr);
    assert_eq!(run.record["status"], "failed");
    assert_eq!(run.record["failedStage"], "build");
    assert!(run.record["reason"].as_str().unwrap().contains("exited with code 7"));
    for id in ["pipeline", "deploy-dev", "test-dev", "deploy-prod"] {
        assert_eq!(stage_status(&run.record, id), "skipped", "{id}");
    }
}

#[test]
fn a_failing_post_deploy_test_stops_before_prod() {
    let (moto, repo) = setup("\"true\"", "\"echo smoke test: expected 200, got 503; exit 1\"");
    let run = run_local(&moto, repo.path(), &["--approve"]);
    assert!(!run.out.status.success());
    assert!(run.stderr.contains("post-deploy test of environment dev: `echo smoke test: expected 200, got 503; exit 1` exited with code 1"), "{}", run.stderr);
    assert_eq!(run.record["failedStage"], "test-dev");
    assert_eq!(stage_status(&run.record, "deploy-dev"), "succeeded");
    assert_eq!(stage_status(&run.record, "deploy-prod"), "skipped");
}

#[test]
fn a_missing_tool_is_reported_by_validate_and_nothing_builds() {
    let (moto, repo) = setup("\"touch build.txt\", \"aphex-no-such-compiler --release\"", "\"true\"");
    let run = run_local(&moto, repo.path(), &["--approve"]);
    assert!(!run.out.status.success());
    assert!(run.stderr.contains("starts `aphex-no-such-compiler`, which is not on PATH"), "{}", run.stderr);
    assert_eq!(run.record["failedStage"], "validate");
    assert_eq!(stage_status(&run.record, "build"), "skipped");
    assert!(!repo.path().join("build.txt").exists(), "the build must not have run");
}

#[test]
fn an_approval_gate_without_a_terminal_is_refused() {
    let (moto, repo) = setup("\"true\"", "\"true\"");
    let run = run_local(&moto, repo.path(), &[]);
    assert!(!run.out.status.success());
    assert!(run.stderr.contains("approval gate before prod: stdin is not a terminal"), "{}", run.stderr);
    assert_eq!(run.record["failedStage"], "approve-prod");
    assert_eq!(stage_status(&run.record, "deploy-dev"), "succeeded");
    assert_eq!(stage_status(&run.record, "deploy-prod"), "skipped");
}

/// A repository whose app has a stack CloudFormation fails to create: `Base`, then `Broken` (a FIFO
/// queue whose name lacks `.fifo`, which moto rejects as AWS does), then `AfterBroken`, which depends
/// on it; dev then prod.
fn broken_repo(moto: &Moto) -> tempfile::TempDir {
    use aphex_tests::deploy_support::{GenStack, write_assembly};
    let repo = tempfile::tempdir().unwrap();
    let mut broken = GenStack::parameter("Broken", &["Base"], "b");
    broken.resources = serde_json::json!({"Jobs": {"Type": "AWS::SQS::Queue",
        "Properties": {"QueueName": "jobs", "FifoQueue": true}}});
    let stacks = [
        GenStack::parameter("Base", &[], "base"),
        broken,
        GenStack::parameter("AfterBroken", &["Broken"], "after"),
    ];
    let config = config("\"true\"", "\"true\"").replace(
        "stacks: [{name: ProducerStack}]",
        "stacks: [{name: Base}, {name: Broken}, {name: AfterBroken}]",
    );
    write_repo(repo.path(), &config, ASSEMBLY);
    // The generated assembly replaces the fixture one that `synth.sh` copies.
    std::fs::remove_dir_all(repo.path().join("assembly")).unwrap();
    write_assembly(&repo.path().join("assembly"), "aws://unknown-account/unknown-region", &stacks);
    moto.bootstrap("111111111111", "us-east-1");
    moto.bootstrap("222222222222", "eu-west-1");
    repo
}

#[test]
fn a_stack_that_fails_to_create_stops_the_run_and_the_record_says_where_and_why() {
    let moto = Moto::start();
    let repo = broken_repo(&moto);
    let run = run_local(&moto, repo.path(), &["--approve"]);
    assert!(!run.out.status.success(), "{}", run.stderr);
    // What the user sees: the stack, the failed call and CloudFormation's reason. (moto validates the
    // resources inside CreateStack and never emits CREATE_FAILED events, so the failed resource's logical
    // id and type, which come from the events, are covered by the engine's tests with a fake CloudFormation.)
    assert!(
        run.stderr.contains("stack Broken failed: cloudformation:CreateStack failed: InvalidParameterValue: Queue name must end in .fifo"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Base: CREATE_COMPLETE in"), "per-stack progress: {}", run.stderr);
    assert!(run.stderr.contains("FAIL deploy-dev"), "{}", run.stderr);
    assert!(run.stderr.contains("AfterBroken") && run.stderr.contains("not started"), "{}", run.stderr);
    // The run record: failed at deploy-dev, why, and nothing after it ran.
    assert_eq!(run.record["status"], "failed");
    assert_eq!(run.record["failedStage"], "deploy-dev");
    let reason = run.record["reason"].as_str().unwrap();
    assert!(reason.contains("Broken") && reason.contains("must end in .fifo"), "{reason}");
    for id in ["test-dev", "approve-prod", "deploy-prod"] {
        assert_eq!(stage_status(&run.record, id), "skipped", "{id}");
    }
    let dev = run.record["stages"].as_array().unwrap().iter().find(|s| s["id"] == "deploy-dev").unwrap();
    let stack = |name: &str| {
        dev["stacks"].as_array().unwrap().iter().find(|s| s["name"] == name).cloned().unwrap_or_default()
    };
    assert_eq!(stack("Base")["status"], "succeeded");
    assert_eq!(stack("Broken")["status"], "failed");
    assert_eq!(stack("AfterBroken")["status"], "skipped");
    // prod was never touched: no stack exists in its account.
    assert_eq!(moto.stack_count("222222222222", "eu-west-1"), 0, "prod must not be deployed");
}
