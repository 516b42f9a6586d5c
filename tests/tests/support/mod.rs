//! Helpers of the steps and local-runner tests: the shared moto server with blocking helpers (bootstrap
//! an account, S3 objects, stacks of an account), test repositories, the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    aphex_tests::repo_root()
}

/// The `aphex` binary cargo built beside this test.
pub fn aphex_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("aphex");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p aphex` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// The shared moto server (`aphex_tests::moto`) with the blocking helpers these tests use.
pub struct Moto {
    inner: aphex_tests::moto::Moto,
    runtime: tokio::runtime::Runtime,
}

impl Moto {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        Moto { inner: aphex_tests::moto::Moto::start(), runtime }
    }

    pub fn endpoint(&self) -> String {
        self.inner.endpoint()
    }

    /// The environment every aphex process of a test gets: moto only, fake credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.inner.env();
        env.push(("CDK_DISABLE_CLI_TELEMETRY".into(), "true".into()));
        env
    }

    /// What `cdk bootstrap` leaves that aphex needs: the version parameter and the assets bucket, made
    /// from inside `account` (AssumeRole).
    pub fn bootstrap(&self, account: &str, region: &str) {
        self.runtime.block_on(self.inner.bootstrap(account, region));
    }

    /// An SDK config for moto's default account in `region`.
    pub fn sdk_config(&self, region: &str) -> aws_config::SdkConfig {
        self.runtime.block_on(self.inner.sdk_config(region))
    }

    /// Runs an SDK call (or any future) to completion on this helper's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn s3(&self) -> aws_sdk_s3::Client {
        aphex::aws::s3_client(&self.runtime.block_on(self.inner.sdk_config("us-east-1")))
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.runtime.block_on(self.s3().create_bucket().bucket(bucket).send()).expect("create bucket");
    }

    pub fn list_keys(&self, bucket: &str) -> Vec<String> {
        let s3 = self.s3();
        let pages = self
            .runtime
            .block_on(s3.list_objects_v2().bucket(bucket).into_paginator().send().collect::<Vec<_>>());
        pages
            .into_iter()
            .flat_map(|page| page.expect("list objects").contents.unwrap_or_default())
            .filter_map(|object| object.key)
            .collect()
    }

    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let s3 = self.s3();
        self.runtime.block_on(async {
            let object = s3.get_object().bucket(bucket).key(key).send().await.expect("get object");
            object.body.collect().await.expect("read object").to_vec()
        })
    }

    /// How many stacks `account` has in `region` (seen from inside the account).
    pub fn stack_count(&self, account: &str, region: &str) -> usize {
        self.runtime.block_on(async {
            let config = self.inner.account_config(account, region).await;
            let stacks = aws_sdk_cloudformation::Client::new(&config).list_stacks().send().await;
            stacks.expect("list stacks").stack_summaries.unwrap_or_default().len()
        })
    }
}

/// Runs git in `dir`, returning its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A shell "synth" that hands aphex a pre-synthesized assembly (copied to `--output`).
pub const SYNTH_SH: &str = r#"#!/bin/sh
# A pre-synthesized app: copy the assembly where aphex asks (--output DIR).
out=""
while [ $# -gt 0 ]; do case "$1" in --output) out="$2"; shift 2 ;; *) shift ;; esac; done
[ -n "$out" ] || { echo "synth.sh: no --output" >&2; exit 2; }
mkdir -p "$out" && cp -R assembly/. "$out"/
"#;

/// A git repository with the config, `synth.sh` and the fixture assembly `assembly` (from
/// `../shared/fixtures/cdk/`), committed on `main`.
pub fn write_repo(dir: &Path, config: &str, assembly: &str) {
    std::fs::write(dir.join("aphex-config.yaml"), config).unwrap();
    std::fs::write(dir.join("synth.sh"), SYNTH_SH).unwrap();
    copy_dir(&aphex_tests::fixtures_dir().join("cdk").join(assembly), &dir.join("assembly"));
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["-c", "user.email=t@example.com", "-c", "user.name=t", "add", "."]);
    git(dir, &["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "app"]);
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `aphex step <stage> ARGS... --repo-url REPO --commit-sha SHA --branch main --run-id RUN`, with a
/// local artifact directory as the store and the pod's work tree under `pod/work`, as a pod would run
/// it; the caller adds its environment.
pub fn step_command(
    store: &Path,
    pod: &Path,
    repo: &Path,
    sha: &str,
    run_id: &str,
    args: &[&str],
) -> std::process::Command {
    let (stage, rest) = args.split_first().expect("a stage");
    let mut cmd = std::process::Command::new(aphex_bin());
    cmd.args(["step", stage])
        .args(rest)
        .args([
            "--repo-url",
            repo.to_str().expect("utf-8 path"),
            "--commit-sha",
            sha,
            "--branch",
            "main",
            "--run-id",
            run_id,
        ])
        .env("APHEX_ARTIFACT_DIR", store)
        .env("APHEX_WORK_DIR", pod.join("work"))
        .env_remove("APHEX_ARTIFACT_BUCKET");
    cmd
}
