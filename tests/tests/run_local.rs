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
