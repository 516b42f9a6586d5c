//! `aphex deploy` failure paths against moto, on generated CDK-shaped assemblies (no synth needed): a
//! resource CloudFormation rejects (the stack and reason named, its dependents not started, an
//! independent stack still fine), a stack name the assembly lacks, a missing bootstrap, a docker asset.

use aphex_tests::deploy_support::{GenStack, aphex, write_assembly, write_config};
use aphex_tests::moto::Moto;
use serde_json::json;

const ACCOUNT: &str = "111111111111";
const REGION: &str = "us-east-1";

fn setup(stacks: &[GenStack], config_stacks: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_assembly(&tmp.path().join("cdk.out"), "aws://unknown-account/unknown-region", stacks);
    write_config(&tmp.path().join("aphex-config.yaml"), "dev", ACCOUNT, REGION, config_stacks);
    tmp
}

fn run(moto: &Moto, dir: &std::path::Path, extra: &[&str]) -> (bool, String, String) {
    let mut args =
        vec!["deploy", "--env", "dev", "--assembly", "cdk.out", "--method", "direct", "--concurrency", "1"];
    args.extend_from_slice(extra);
    let out = aphex(dir, &moto.env(), &args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_resource_stops_dependents_and_names_the_stack() {
    let moto = Moto::start();
    moto.bootstrap(ACCOUNT, REGION).await;
    let mut broken = GenStack::parameter("Broken", &["Base"], "b");
    // moto rejects it as AWS does: a FIFO queue's name must end in .fifo.
    broken.resources =
        json!({"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "jobs", "FifoQueue": true}}});
    let stacks = [
        GenStack::parameter("Base", &[], "base"),
        broken,
        GenStack::parameter("AfterBroken", &["Broken"], "x"),
        GenStack::parameter("Independent", &["Base"], "i"),
    ];
    let tmp = setup(&stacks, &["Base", "Broken", "AfterBroken", "Independent"]);
    let (ok, stdout, stderr) = run(&moto, tmp.path(), &["--json", "--outputs", "out.json"]);
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("error: stack Broken failed") && stderr.contains("Queue name must end in .fifo"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stack AfterBroken not started: it depends on Broken, which did not deploy"),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let status = |name: &str| {
        report["stacks"].as_array().unwrap().iter().find(|s| s["stackName"] == name).unwrap()["outcome"]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status("Base"), "deployed");
    assert_eq!(status("Broken"), "failed");
    assert_eq!(status("AfterBroken"), "notStarted");
    // Outputs of what did deploy are still written.
    let outputs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("out.json")).unwrap()).unwrap();
    assert_eq!(outputs["Base"]["Value"], "base");
    assert!(outputs.get("AfterBroken").is_none());
}

#[test]
fn missing_stack_lists_the_available_ones() {
    let moto = Moto::start();
    let tmp = setup(
        &[GenStack::parameter("Alpha", &[], "a"), GenStack::parameter("Beta", &[], "b")],
        &["Alpha", "Gamma"],
    );
    let (ok, _, stderr) = run(&moto, tmp.path(), &[]);
    assert!(!ok);
    assert!(
        stderr
            .contains("stack \"Gamma\" (environment dev) is not in the cloud assembly; it has: Alpha, Beta"),
        "{stderr}"
    );
}

#[test]
fn missing_bootstrap_names_the_command() {
    let moto = Moto::start();
    let tmp = setup(&[GenStack::parameter("Alpha", &[], "a")], &["Alpha"]);
    let (ok, _, stderr) = run(&moto, tmp.path(), &[]);
    assert!(!ok);
    assert!(stderr.contains("aws://111111111111/us-east-1 is not bootstrapped for stack Alpha"), "{stderr}");
    assert!(stderr.contains("run `cdk bootstrap aws://111111111111/us-east-1`"), "{stderr}");
}

#[test]
fn docker_image_asset_is_a_clear_error() {
    let moto = Moto::start();
    let fixture = aphex_tests::fixtures_dir().join("cdk/synth-docker-image-asset");
    let tmp = tempfile::tempdir().unwrap();
    write_config(&tmp.path().join("aphex-config.yaml"), "dev", ACCOUNT, REGION, &["DockerAssetStack"]);
    let out = aphex(
        tmp.path(),
        &moto.env(),
        &[
            "deploy",
            "--env",
            "dev",
            "--assembly",
            fixture.to_str().unwrap(),
            "--method",
            "direct",
            "--outputs",
            "o.json",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("docker image asset \"Image\"") && stderr.contains("not supported yet"),
        "{stderr}"
    );
}
