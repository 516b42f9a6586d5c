//! `aphex deploy` of the example CDK app (synthesized by the real `cdk` CLI) against moto: create,
//! update (a tag change), no-op redeploy with nothing written, outputs checked by the app's own smoke
//! test; and a prod environment that is not bootstrapped.

use std::collections::BTreeMap;

use aphex_tests::deploy_support::{aphex, demo_app};
use aphex_tests::moto::Moto;

type Outputs = BTreeMap<String, BTreeMap<String, String>>;

fn report(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "aphex printed no JSON report ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn statuses(report: &serde_json::Value) -> Vec<(String, String)> {
    report["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .map(|s| {
            (s["stackName"].as_str().unwrap().to_owned(), s["outcome"]["status"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn all(status: &str) -> Vec<(String, String)> {
    ["DemoData", "DemoService", "DemoConfig"].iter().map(|s| (s.to_string(), status.to_owned())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_app_deploys_updates_and_skips_unchanged_stacks() {
    let demo = demo_app();
    let moto = Moto::start();
    moto.bootstrap("111111111111", "us-east-1").await;
    let tmp = tempfile::tempdir().unwrap();
    let outputs_file = tmp.path().join("outputs.json");
    let outputs_arg = outputs_file.display().to_string();
    let args = [
        "deploy",
        "--env",
        "dev",
        "--method",
        "direct",
        "--json",
        "--run-id",
        "t1",
        "--outputs",
        &outputs_arg,
    ];
    let env = moto.env();

    // Create.
    let out = aphex(&demo, &env, &args);
    assert!(out.status.success(), "first deploy failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let first = report(&out);
    assert_eq!(statuses(&first), all("deployed"));
    let outputs: Outputs = serde_json::from_str(&std::fs::read_to_string(&outputs_file).unwrap()).unwrap();
    assert_eq!(outputs["DemoConfig"]["ParameterName"], "/aphex-demo/dev/function-name");
    assert!(outputs["DemoData"]["QueueUrl"].contains("/111111111111/"), "{outputs:?}");
    assert!(
        outputs["DemoService"]["FunctionArn"].starts_with("arn:aws:lambda:us-east-1:111111111111:function:")
    );

    // The stacks live in the environment's account (reached through the assumed deploy role).
    let cfg = moto.account_config("111111111111", "us-east-1").await;
    let cf = aws_sdk_cloudformation::Client::new(&cfg);
    let stack =
        cf.describe_stacks().stack_name("DemoService").send().await.unwrap().stacks.unwrap().remove(0);
    assert_eq!(stack.stack_status.unwrap().as_str(), "CREATE_COMPLETE");
    // The cross-stack reference resolved: the function reads the table the data stack exported.
    let ssm = aws_sdk_ssm::Client::new(&cfg);
    let param = ssm.get_parameter().name("/aphex-demo/dev/function-name").send().await.unwrap();
    assert_eq!(param.parameter.unwrap().value.unwrap(), outputs["DemoService"]["FunctionName"]);

    // The app's own post-deploy test reads the outputs file and checks the queue at the endpoint.
    let smoke = std::process::Command::new("node")
        .arg("test/smoke.mjs")
        .current_dir(&demo)
        .env("APHEX_OUTPUTS_FILE", &outputs_file)
        .env("STAGE", "dev")
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(
        smoke.status.success(),
        "smoke test failed:\n{}{}",
        String::from_utf8_lossy(&smoke.stdout),
        String::from_utf8_lossy(&smoke.stderr)
    );

    // Update: a new tag on every stack.
    let mut env2 = env.clone();
    env2.push(("DEMO_RELEASE".into(), "2".into()));
    let out = aphex(&demo, &env2, &args);
    assert!(out.status.success(), "update failed:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(statuses(&report(&out)), all("deployed"));
    let stack = cf.describe_stacks().stack_name("DemoData").send().await.unwrap().stacks.unwrap().remove(0);
    let tags: BTreeMap<_, _> =
        stack.tags.unwrap().into_iter().map(|t| (t.key.unwrap(), t.value.unwrap())).collect();
    assert_eq!(tags.get("release").map(String::as_str), Some("2"), "{tags:?}");
    assert_eq!(stack.stack_status.unwrap().as_str(), "UPDATE_COMPLETE");

    // No-op: same template, parameters and tags: nothing written, outputs still reported.
    let out = aphex(&demo, &env2, &args);
    assert!(out.status.success(), "no-op failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let noop = report(&out);
    assert_eq!(statuses(&noop), all("unchanged"));
    let again: Outputs = serde_json::from_str(&std::fs::read_to_string(&outputs_file).unwrap()).unwrap();
    assert_eq!(again, outputs);
    let last = cf.describe_stacks().stack_name("DemoData").send().await.unwrap().stacks.unwrap().remove(0);
    assert_eq!(last.last_updated_time, stack.last_updated_time, "a no-op deploy must not update the stack");
}

#[test]
fn prod_without_bootstrap_fails_with_the_bootstrap_command() {
    let demo = demo_app();
    let moto = Moto::start();
    let out = aphex(
        &demo,
        &moto.env(),
        &["deploy", "--env", "prod", "--method", "direct", "--stacks", "DemoData", "--outputs", "/dev/null"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("run `cdk bootstrap aws://222222222222/eu-west-1`"), "{stderr}");
    assert!(stderr.contains("DemoData"), "{stderr}");
}
