//! CDK Stages inside Stages, synthesized by the real `cdk` CLI: the stack names aphex shows and the
//! stacks a pattern selects are, at every nesting depth, what `cdk ls` prints for the same pattern;
//! and `aphex deploy` of `Outer/Inner/*` and of `--stacks Outer/Inner/Api` against moto.

use aphex::assembly::CloudAssembly;
use aphex::config::StackRef;
use aphex::deploy::select;
use aphex_tests::deploy_support::{CdkApp, aphex, write_config};
use aphex_tests::moto::Moto;

const ACCOUNT: &str = "111111111111";
const REGION: &str = "us-east-1";

/// Stages nested three deep, a stack at each depth, and a stack under a plain construct in a Stage.
const APP: &str = r#"
const cdk = require("aws-cdk-lib");
const { Construct } = require("constructs");

class S extends cdk.Stack {
  constructor(scope, id, props) {
    super(scope, id, props);
    // moto needs the parameter's name (it answers 500 to a generated one).
    new cdk.aws_ssm.StringParameter(this, "P", { parameterName: `/stages/${this.node.path}`, stringValue: this.node.path });
    new cdk.CfnOutput(this, "Path", { value: this.node.path });
  }
}

const app = new cdk.App();
new S(app, "Top");
const outer = new cdk.Stage(app, "Outer");
new S(outer, "Web");
const inner = new cdk.Stage(outer, "Inner");
new S(inner, "Api");
const deep = new cdk.Stage(inner, "Deep");
new S(deep, "Db");
new S(new Construct(outer, "Group"), "Jobs");
app.synth();
"#;

/// The app, synthesized once for the tests of this file (each works on a copy of its folder).
fn synthesized() -> &'static std::path::Path {
    static APP_DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    APP_DIR
        .get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            CdkApp::new(tmp.path(), APP).synth();
            tmp
        })
        .path()
}

/// A fresh folder holding the synthesized app.
fn app_copy() -> (tempfile::TempDir, CdkApp) {
    let tmp = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .args(["-a", &format!("{}/.", synthesized().display()), &tmp.path().display().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let app = CdkApp::new(tmp.path(), APP);
    (tmp, app)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn aphex_selects(asm: &CloudAssembly, pattern: &str) -> Vec<String> {
    let refs =
        [StackRef { name: pattern.into(), path: None, depends_on: vec![], parameters: Default::default() }];
    match select::plan(asm, "dev", &refs, &[]) {
        Ok(plan) => plan.into_iter().map(|p| p.stack.display_name).collect(),
        Err(select::SelectError::MissingStack { .. }) => vec![],
        Err(e) => panic!("{pattern}: {e}"),
    }
}

#[test]
fn nested_stage_names_and_selection_match_cdk_ls() {
    let (_tmp, app) = app_copy();
    let asm = CloudAssembly::load(&app.dir.join("cdk.out")).unwrap();

    let all = sorted(app.ls(&[]));
    assert_eq!(all, ["Outer/Group/Jobs", "Outer/Inner/Api", "Outer/Inner/Deep/Db", "Outer/Web", "Top"]);
    assert_eq!(sorted(asm.stacks.iter().map(|s| s.display_name.clone()).collect()), all);

    for pattern in [
        "Outer/Inner/*",
        "Outer/Inner/Api",
        "Outer/Inner/Deep/Db",
        "Outer/*",
        "Outer/**",
        "Outer/*/Api",
        "Outer/**/Db",
        "*",
        "**",
        "*/Web",
        "Top",
    ] {
        assert_eq!(sorted(aphex_selects(&asm, pattern)), sorted(app.ls(&[pattern])), "pattern {pattern:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_a_stack_of_a_stage_inside_a_stage() {
    let (tmp, _app) = app_copy();
    let moto = Moto::start();
    moto.bootstrap(ACCOUNT, REGION).await;

    // The config selects by pattern.
    write_config(&tmp.path().join("aphex-config.yaml"), "dev", ACCOUNT, REGION, &["\"Outer/Inner/*\""]);
    let base = ["deploy", "--env", "dev", "--assembly", "cdk.out", "--method", "direct", "--json"];
    let out = aphex(tmp.path(), &moto.env(), &base);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<(&str, &str)> = report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["displayName"].as_str().unwrap(), s["stackName"].as_str().unwrap()))
        .collect();
    // The CDK names a Stage's stack after its path.
    assert_eq!(names, [("Outer/Inner/Api", "Outer-Inner-Api")]);
    // Progress lines name the stack by its path, once.
    assert!(stderr.contains("] Outer/Inner/Api: deployed"), "{stderr}");
    assert!(!stderr.contains("Outer/Outer"), "{stderr}");
    assert_eq!(report["outputs"][names[0].1]["Path"], "Outer/Inner/Api");

    // `--stacks` narrows by the exact path, here among a config that lists every stack.
    write_config(&tmp.path().join("aphex-config.yaml"), "dev", ACCOUNT, REGION, &["\"**\""]);
    let mut args = base.to_vec();
    args.extend(["--stacks", "Outer/Inner/Api"]);
    let out = aphex(tmp.path(), &moto.env(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["stacks"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["stacks"][0]["displayName"], "Outer/Inner/Api");
    assert_eq!(report["stacks"][0]["outcome"]["status"], "unchanged", "{stderr}");
}
