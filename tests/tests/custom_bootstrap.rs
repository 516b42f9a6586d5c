//! Custom bootstrap qualifiers and custom roles, end to end against moto with the real `cdk` CLI: an
//! app whose `cdk.json` sets `@aws-cdk/core:bootstrapQualifier`, bootstrapped with
//! `cdk bootstrap --qualifier` (no default bootstrap exists), is validated and deployed through that
//! qualifier's roles, bucket and version parameter; an environment with `role` deploys as that role
//! only. Which roles were assumed is read from moto's STS record.

use aphex::bootstrap::{self, Source};
use aphex::steps::Identity;
use aphex::steps::adapters::{StsIdentity, role_for};
use aphex_tests::deploy_support::{CdkApp, aphex};
use aphex_tests::moto::Moto;

/// moto's default account: `cdk bootstrap` refuses an account its credentials are not in.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const QUALIFIER: &str = "custq1";
const CUSTOM_ROLE: &str = "arn:aws:iam::123456789012:role/team-deployer";

/// A stack with a file asset (the template itself is one, and a Lambda's code) and an output.
const APP: &str = r#"
const cdk = require("aws-cdk-lib");
const app = new cdk.App();
const stack = new cdk.Stack(app, "Qualified");
new cdk.aws_ssm.StringParameter(stack, "P", { parameterName: "/qualified/p", stringValue: "v" });
new cdk.CfnOutput(stack, "Answer", { value: "42" });
app.synth();
"#;

fn config(role: Option<&str>) -> String {
    let role = role.map(|r| format!("    role: {r}\n")).unwrap_or_default();
    format!(
        "version: \"1.0\"\nbuild:\n  commands: [\"true\"]\nenvironments:\n  - name: dev\n    account: \"{ACCOUNT}\"\n    region: {REGION}\n{role}    stacks:\n      - name: Qualified\n"
    )
}

/// The app with the qualifier in its cdk.json, synthesized, and moto bootstrapped with that qualifier
/// by the real CLI.
fn app_and_moto(dir: &std::path::Path) -> (CdkApp, Moto) {
    let app = CdkApp::new(dir, APP);
    std::fs::write(
        dir.join("cdk.json"),
        format!(
            r#"{{"app": "node app.js", "context": {{"@aws-cdk/core:bootstrapQualifier": "{QUALIFIER}"}}}}"#
        ),
    )
    .unwrap();
    app.synth();
    let moto = Moto::start();
    app.cdk(&moto.env(), &["bootstrap", &format!("aws://{ACCOUNT}/{REGION}"), "--qualifier", QUALIFIER]);
    (app, moto)
}

async fn stack_outputs(moto: &Moto) -> Vec<(String, String)> {
    let cf = aws_sdk_cloudformation::Client::new(&moto.sdk_config(REGION).await);
    let out = cf.describe_stacks().stack_name("Qualified").send().await.expect("stack Qualified exists");
    let stack = &out.stacks()[0];
    assert!(stack.stack_status().unwrap().as_str().ends_with("_COMPLETE"), "{:?}", stack.stack_status());
    stack
        .outputs()
        .iter()
        .map(|o| {
            (o.output_key().unwrap_or_default().to_owned(), o.output_value().unwrap_or_default().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_with_a_custom_qualifier_is_validated_and_deployed_through_its_bootstrap() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, moto) = app_and_moto(tmp.path());
    std::fs::write(tmp.path().join("aphex-config.yaml"), config(None)).unwrap();

    // validate: the qualifier from cdk.json, the deploy role it names is the one STS is asked for.
    let config = aphex::config::load(&tmp.path().join("aphex-config.yaml")).unwrap();
    let qualifier = bootstrap::resolve_in(&config, &app.dir);
    assert_eq!((qualifier.value.as_str(), qualifier.source), (QUALIFIER, Source::CdkJson));
    let role = role_for(&config.environments[0], &qualifier);
    let expected_deploy_role =
        format!("arn:aws:iam::{ACCOUNT}:role/cdk-{QUALIFIER}-deploy-role-{ACCOUNT}-{REGION}");
    assert_eq!(role, expected_deploy_role);
    let identity = StsIdentity { base: moto.sdk_config(REGION).await };
    assert_eq!(identity.account_for(&config.environments[0], &role, "run-1").await.unwrap(), ACCOUNT);

    // Without cdk.json's context the assembly still says which qualifier the stacks use.
    std::fs::write(tmp.path().join("cdk.json"), r#"{"app": "node app.js"}"#).unwrap();
    let from_assembly = bootstrap::resolve_in(&config, &app.dir);
    assert_eq!((from_assembly.value.as_str(), from_assembly.source), (QUALIFIER, Source::Assembly));

    let assumed = deploy_and_assumed_roles(tmp.path(), &moto).await;
    assert!(assumed.contains(&expected_deploy_role), "{assumed:?}");
    assert!(
        assumed.iter().all(|r| r.contains(&format!(":role/cdk-{QUALIFIER}-"))),
        "only the custom qualifier's bootstrap roles: {assumed:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_role_is_the_only_role_assumed_for_validate_and_deploy() {
    let tmp = tempfile::tempdir().unwrap();
    let (app, moto) = app_and_moto(tmp.path());
    std::fs::write(tmp.path().join("aphex-config.yaml"), config(Some(CUSTOM_ROLE))).unwrap();

    let config = aphex::config::load(&tmp.path().join("aphex-config.yaml")).unwrap();
    let role = role_for(&config.environments[0], &bootstrap::resolve_in(&config, &app.dir));
    assert_eq!(role, CUSTOM_ROLE);
    let identity = StsIdentity { base: moto.sdk_config(REGION).await };
    assert_eq!(identity.account_for(&config.environments[0], &role, "run-1").await.unwrap(), ACCOUNT);

    let assumed = deploy_and_assumed_roles(tmp.path(), &moto).await;
    assert!(!assumed.is_empty() && assumed.iter().all(|r| r == CUSTOM_ROLE), "{assumed:?}");
}

/// `aphex deploy` of the app's assembly; checks the stack's output and returns the roles STS assumed
/// during the deploy (moto's record).
async fn deploy_and_assumed_roles(dir: &std::path::Path, moto: &Moto) -> Vec<String> {
    let before = moto.assumed_roles().await.len();
    let out = aphex(
        dir,
        &moto.env(),
        &["deploy", "--env", "dev", "--assembly", "cdk.out", "--method", "direct", "--json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stack_outputs(moto).await, [("Answer".to_owned(), "42".to_owned())]);
    moto.assumed_roles().await.split_off(before)
}
