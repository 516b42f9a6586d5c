//! Stack-level settings against moto: a change of a setting the app sets is a reason to deploy even
//! when the template is unchanged (tags, the execution role), and the next deploy is unchanged again.
//!
//! moto neither stores nor returns a stack's NotificationARNs on UpdateStack/DescribeStacks, and has
//! no UpdateTerminationProtection, so the notification-topic and termination-protection cases (a topic attached outside the app stays; new ARNs with an unchanged
//! template deploy) are tested on the request aphex sends (`deploy::tests::sdk::
//! unset_settings_are_absent_from_the_request`, the real SDK client) and on the engine's in-memory
//! CloudFormation (`deploy::tests::stack_settings_are_kept_unless_set_and_deployed_when_changed`).

use aphex_tests::deploy_support::{GenStack, aphex, write_assembly, write_config};
use aphex_tests::moto::Moto;
use serde_json::Value;

const ACCOUNT: &str = "111111111111";
const REGION: &str = "us-east-1";

fn setup(value: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_stack(tmp.path(), value);
    write_config(&tmp.path().join("aphex-config.yaml"), "dev", ACCOUNT, REGION, &["Api"]);
    tmp
}

fn write_stack(dir: &std::path::Path, value: &str) {
    write_assembly(
        &dir.join("cdk.out"),
        "aws://unknown-account/unknown-region",
        &[GenStack::parameter("Api", &[], value)],
    );
}

/// Edits the `properties` of stack `Api` in the assembly's manifest.
fn edit_properties(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("cdk.out/manifest.json");
    let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(manifest["artifacts"]["Api"]["properties"].as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
}

/// Deploys and returns the stack's outcome.
fn deploy(moto: &Moto, dir: &std::path::Path, method: &str) -> String {
    let out = aphex(
        dir,
        &moto.env(),
        &["deploy", "--env", "dev", "--assembly", "cdk.out", "--method", method, "--json"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["stacks"][0]["outcome"]["status"].as_str().unwrap().to_owned()
}

async fn cloudformation(moto: &Moto) -> aws_sdk_cloudformation::Client {
    aws_sdk_cloudformation::Client::new(&moto.account_config(ACCOUNT, REGION).await)
}

async fn describe(moto: &Moto) -> aws_sdk_cloudformation::types::Stack {
    cloudformation(moto)
        .await
        .describe_stacks()
        .stack_name("Api")
        .send()
        .await
        .unwrap()
        .stacks
        .unwrap()
        .remove(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setting_the_app_changes_is_deployed_with_an_unchanged_template() {
    let moto = Moto::start();
    moto.bootstrap(ACCOUNT, REGION).await;
    let tmp = setup("same");
    assert_eq!(deploy(&moto, tmp.path(), "direct"), "deployed");
    assert_eq!(deploy(&moto, tmp.path(), "direct"), "unchanged");

    // New tags, same template.
    edit_properties(tmp.path(), |p| {
        p.insert("tags".into(), serde_json::json!({"team": "payments"}));
    });
    assert_eq!(deploy(&moto, tmp.path(), "direct"), "deployed");
    let tags: Vec<(String, String)> = describe(&moto)
        .await
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key.unwrap(), t.value.unwrap()))
        .collect();
    assert_eq!(tags, [("team".to_owned(), "payments".to_owned())]);
    assert_eq!(deploy(&moto, tmp.path(), "direct"), "unchanged");

    // Another execution role, same template.
    let role = format!("arn:aws:iam::{ACCOUNT}:role/custom-exec");
    edit_properties(tmp.path(), |p| {
        p.insert("cloudFormationExecutionRoleArn".into(), serde_json::json!(role));
    });
    assert_eq!(deploy(&moto, tmp.path(), "direct"), "deployed");
    assert_eq!(describe(&moto).await.role_arn, Some(role));
    assert_eq!(deploy(&moto, tmp.path(), "direct"), "unchanged");
}
