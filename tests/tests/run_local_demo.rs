//! The README's main job as a test: `aphex run --local --approve` on `examples/demo` (a real CDK
//! TypeScript app synthesized by the real `cdk` CLI) against moto: dev then prod, two accounts, two
//! regions, post-deploy tests reading a stack output. `scripts/demo` is the same run as one command.

mod support;

use std::process::Command;

use support::{Moto, aphex_bin, repo_root};

#[test]
fn the_demo_deploys_dev_then_prod_and_its_tests_read_the_outputs() {
    let demo = repo_root().join("examples/demo");
    assert!(
        demo.join("node_modules/aws-cdk-lib").exists(),
        "examples/demo/node_modules is missing: run scripts/setup (npm ci in examples/demo)"
    );
    let moto = Moto::start();
    moto.bootstrap("111111111111", "us-east-1");
    moto.bootstrap("222222222222", "eu-west-1");
    let state = tempfile::tempdir_in(demo.join(".aphex").tap_create()).unwrap();
    let out = Command::new(aphex_bin())
        .args(["run", "--local", "--approve", "--repo"])
        .arg(&demo)
        .arg("--state-dir")
        .arg(state.path())
        .envs(moto.env())
        .env("APHEX_DEPLOY_METHOD", "direct")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let outputs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("outputs.json")).unwrap()).unwrap();
    for (env, account, region) in
        [("dev", "111111111111", "us-east-1"), ("prod", "222222222222", "eu-west-1")]
    {
        let arn = outputs[env]["DemoService"]["FunctionArn"].as_str().unwrap_or_default();
        assert!(arn.starts_with(&format!("arn:aws:lambda:{region}:{account}:function:")), "{env}: {outputs}");
    }
    for stage in ["deploy-dev", "test-dev", "deploy-prod", "test-prod"] {
        assert!(
            stdout.lines().any(|l| l.starts_with(stage) && l.contains("succeeded")),
            "{stage}:\n{stdout}"
        );
    }
    assert!(stdout.contains("pipeline overhead"), "{stdout}");
}

trait TapCreate {
    fn tap_create(self) -> Self;
}

impl TapCreate for std::path::PathBuf {
    fn tap_create(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
