//! Stack parameters against moto, with a CDK app synthesized by the real `cdk` CLI whose stack has a
//! `CfnParameter` without a default (an alert e-mail address, as public example apps have) and a
//! `NoEcho` one: refused before any AWS write when no value is given (naming the stack, the
//! parameter and how to give it); deployed with values from the config (`{ssm: ...}`,
//! `{secret: ...}`); overridden by `--parameters`; the secret never printed.

use aphex_tests::deploy_support::{CdkApp, aphex};
use aphex_tests::moto::Moto;

const ACCOUNT: &str = "111111111111";
const REGION: &str = "us-east-1";
const SECRET: &str = "s3cr3t-Pa55word";

const APP: &str = r#"
const cdk = require("aws-cdk-lib");
const app = new cdk.App();
const stack = new cdk.Stack(app, "Alerts");
const email = new cdk.CfnParameter(stack, "AlertEmail", { type: "String", description: "who hears about alarms" });
const password = new cdk.CfnParameter(stack, "DbPassword", { type: "String", noEcho: true });
const topic = new cdk.aws_sns.Topic(stack, "Topic");
topic.addSubscription(new cdk.aws_sns_subscriptions.EmailSubscription(email.valueAsString));
// moto needs the parameter's name; the value shows the secret reached the stack.
new cdk.aws_ssm.StringParameter(stack, "Password", { parameterName: "/alerts/password", stringValue: password.valueAsString });
new cdk.CfnOutput(stack, "Email", { value: email.valueAsString });
app.synth();
"#;

fn config(parameters: &str) -> String {
    format!(
        "version: \"1.0\"\nbuild:\n  commands: [\"true\"]\nenvironments:\n  - name: dev\n    account: \"{ACCOUNT}\"\n    region: {REGION}\n    stacks:\n      - name: Alerts\n{parameters}"
    )
}

fn deploy(moto: &Moto, dir: &std::path::Path, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["deploy", "--env", "dev", "--assembly", "cdk.out", "--method", "direct", "--json"];
    args.extend_from_slice(extra);
    let out = aphex(dir, &moto.env(), &args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_parameter_without_default_is_given_from_config_or_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    CdkApp::new(tmp.path(), APP).synth();
    let moto = Moto::start();
    moto.bootstrap(ACCOUNT, REGION).await;
    let target = moto.account_config(ACCOUNT, REGION).await;
    let cf = aws_sdk_cloudformation::Client::new(&target);

    // No value: refused before any write, saying how to give it.
    std::fs::write(tmp.path().join("aphex-config.yaml"), config("")).unwrap();
    let (ok, _, stderr) = deploy(&moto, tmp.path(), &[]);
    assert!(!ok);
    assert!(
        stderr.contains("stack Alerts needs a value for template parameter AlertEmail (it has no Default)")
            && stderr.contains("--parameters Alerts:AlertEmail=VALUE")
            && stderr.contains("stacks[].parameters"),
        "{stderr}"
    );
    assert!(stderr.contains("template parameter DbPassword"), "{stderr}");
    assert!(cf.describe_stacks().stack_name("Alerts").send().await.is_err(), "nothing was created");

    // From the config: SSM and Secrets Manager, read by the deploying identity (moto's default account).
    let own = moto.sdk_config(REGION).await;
    aws_sdk_ssm::Client::new(&own)
        .put_parameter()
        .name("/alerts/email")
        .value("ops@example.com")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    aws_sdk_secretsmanager::Client::new(&own)
        .create_secret()
        .name("alerts/db")
        .secret_string(SECRET)
        .send()
        .await
        .unwrap();
    std::fs::write(
        tmp.path().join("aphex-config.yaml"),
        config("        parameters:\n          AlertEmail: {ssm: /alerts/email}\n          DbPassword: {secret: alerts/db}\n"),
    )
    .unwrap();
    let (ok, stdout, stderr) = deploy(&moto, tmp.path(), &[]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outputs"]["Alerts"]["Email"], "ops@example.com", "{report}");
    let ssm = aws_sdk_ssm::Client::new(&target);
    let stored = ssm.get_parameter().name("/alerts/password").send().await.unwrap().parameter.unwrap().value;
    assert_eq!(stored.as_deref(), Some(SECRET));
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "the secret was printed:\n{stdout}\n{stderr}"
    );

    // The command line overrides the config, by stack name.
    let (ok, stdout, stderr) =
        deploy(&moto, tmp.path(), &["--parameters", "Alerts:AlertEmail=oncall@example.com"]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outputs"]["Alerts"]["Email"], "oncall@example.com", "{report}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
}

#[test]
fn bad_parameter_entries_are_located() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("aphex-config.yaml"),
        config("        parameters:\n          Alert-Email: x\n          DbPassword: {secrets: alerts/db}\n"),
    )
    .unwrap();
    let out = aphex(tmp.path(), &[], &["validate"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("aphex-config.yaml:11:") && stderr.contains("Alert-Email"), "{stderr}");
    assert!(stderr.contains("aphex-config.yaml:12:"), "{stderr}");
}
