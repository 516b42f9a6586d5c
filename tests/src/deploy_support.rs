//! Helpers of the deploy tests and the deploy benchmark: the `aphex` binary, the demo app's npm
//! packages, and a writer of CDK-shaped cloud assemblies (templates, asset manifests, bootstrap roles)
//! for stacks that need no synth.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

/// The `aphex` binary cargo built beside the running test or bench binary (`cargo test --workspace`
/// builds it).
pub fn aphex_bin_path() -> PathBuf {
    aphex_bin()
}

/// The `aphex` binary cargo built beside the running test (`cargo test --workspace` builds it).
pub fn aphex_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("aphex");
    assert!(bin.exists(), "{} is missing: run `cargo build -p aphex`", bin.display());
    bin
}

/// `examples/demo`, with its npm packages installed (scripts/setup-node) if missing.
pub fn demo_app() -> PathBuf {
    let demo = crate::repo_root().join("examples/demo");
    if !demo.join("node_modules/.bin/cdk").exists() {
        let status =
            Command::new(crate::repo_root().join("scripts/setup-node")).status().expect("scripts/setup-node");
        assert!(status.success(), "scripts/setup-node failed");
    }
    demo
}

/// Runs `aphex ARGS` in `dir` with `env`; returns its output.
pub fn aphex(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    Command::new(aphex_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_PROFILE")
        .envs(env.iter().cloned())
        .output()
        .expect("run aphex")
}

/// One stack of a generated assembly.
#[derive(Debug, Clone)]
pub struct GenStack {
    pub id: String,
    pub depends_on: Vec<String>,
    /// The template's `Resources`.
    pub resources: Value,
    /// The template's `Outputs`.
    pub outputs: Value,
    pub tags: Vec<(String, String)>,
}

impl GenStack {
    /// A stack with one SSM parameter and an output of its value.
    pub fn parameter(id: &str, depends_on: &[&str], value: &str) -> GenStack {
        GenStack {
            id: id.to_owned(),
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            resources: json!({"Param": {"Type": "AWS::SSM::Parameter", "Properties": {
                "Name": format!("/gen/{id}"), "Type": "String", "Value": value}}}),
            outputs: json!({"Value": {"Value": value}}),
            tags: vec![],
        }
    }
}

const ROLE: &str = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds";

/// Writes a cloud assembly as aws-cdk-lib 2.x does (schema 55, default synthesizer): per stack a
/// template with the BootstrapVersion parameter, an asset manifest publishing the template, and the
/// bootstrap roles; `environment` is `aws://ACCOUNT/REGION` or the unknown-account form.
pub fn write_assembly(dir: &Path, environment: &str, stacks: &[GenStack]) {
    std::fs::create_dir_all(dir).expect("assembly dir");
    let mut artifacts = serde_json::Map::new();
    for s in stacks {
        let template = json!({
            "Resources": s.resources,
            "Outputs": s.outputs,
            "Parameters": {"BootstrapVersion": {
                "Type": "AWS::SSM::Parameter::Value<String>",
                "Default": "/cdk-bootstrap/hnb659fds/version",
                "Description": "Version of the CDK Bootstrap resources in this environment, automatically retrieved from SSM Parameter Store. [cdk:skip]"
            }},
        });
        let text = serde_json::to_string_pretty(&template).expect("template json");
        let hash = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(text.as_bytes()))
        };
        let template_file = format!("{}.template.json", s.id);
        std::fs::write(dir.join(&template_file), &text).expect("write template");
        let assets = json!({"version": "55.0.0", "files": {hash.clone(): {
            "displayName": format!("{} Template", s.id),
            "source": {"path": template_file, "packaging": "file"},
            "destinations": {"current_account-current_region": {
                "bucketName": "cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}",
                "objectKey": format!("{hash}.json"),
                "assumeRoleArn": format!("{ROLE}-file-publishing-role-${{AWS::AccountId}}-${{AWS::Region}}")
            }}
        }}, "dockerImages": {}});
        std::fs::write(
            dir.join(format!("{}.assets.json", s.id)),
            serde_json::to_string_pretty(&assets).expect("json"),
        )
        .expect("write assets");
        artifacts.insert(
            format!("{}.assets", s.id),
            json!({"type": "cdk:asset-manifest", "properties": {"file": format!("{}.assets.json", s.id),
                "requiresBootstrapStackVersion": 6, "bootstrapStackVersionSsmParameter": "/cdk-bootstrap/hnb659fds/version"}}),
        );
        let mut deps: Vec<String> = s.depends_on.clone();
        deps.push(format!("{}.assets", s.id));
        let tags: serde_json::Map<String, Value> =
            s.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        artifacts.insert(
            s.id.clone(),
            json!({"type": "aws:cloudformation:stack", "environment": environment, "properties": {
                "templateFile": format!("{}.template.json", s.id),
                "tags": tags,
                "terminationProtection": false,
                "validateOnSynth": false,
                "assumeRoleArn": format!("{ROLE}-deploy-role-${{AWS::AccountId}}-${{AWS::Region}}"),
                "cloudFormationExecutionRoleArn": format!("{ROLE}-cfn-exec-role-${{AWS::AccountId}}-${{AWS::Region}}"),
                "stackTemplateAssetObjectUrl": format!("s3://cdk-hnb659fds-assets-${{AWS::AccountId}}-${{AWS::Region}}/{hash}.json"),
                "requiresBootstrapStackVersion": 6,
                "bootstrapStackVersionSsmParameter": "/cdk-bootstrap/hnb659fds/version"
            }, "dependencies": deps, "displayName": s.id}),
        );
    }
    let manifest = json!({"version": "55.0.0", "artifacts": artifacts});
    std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&manifest).expect("json"))
        .expect("manifest");
}

/// A config with one environment deploying `stacks` (in that order) to ACCOUNT/REGION.
pub fn write_config(path: &Path, env: &str, account: &str, region: &str, stacks: &[&str]) {
    let stacks: String = stacks.iter().map(|s| format!("      - name: {s}\n")).collect();
    std::fs::write(
        path,
        format!(
            "version: \"1.0\"\nbuild:\n  commands: [\"true\"]\nenvironments:\n  - name: {env}\n    account: \"{account}\"\n    region: {region}\n    stacks:\n{stacks}"
        ),
    )
    .expect("write config");
}

/// The real `cdk` CLI (the demo app's npm packages) as a command run in `dir`, not yet started:
/// `ARGS --no-notices`, a private `CDK_HOME` (`dir/.cdk-home`, created), telemetry and the version
/// check off, `NODE_PATH` serving `aws-cdk-lib` and `constructs` to an app that `require`s them, no
/// AWS profile, and `env` (moto's, for deploys).
pub fn cdk_command(dir: &Path, env: &[(String, String)], args: &[&str]) -> Command {
    let node_modules = demo_app().join("node_modules");
    let home = dir.join(".cdk-home");
    std::fs::create_dir_all(&home).expect("cdk home");
    let mut command = Command::new(node_modules.join(".bin/cdk"));
    command
        .args(args)
        .arg("--no-notices")
        .current_dir(dir)
        .env("NODE_PATH", &node_modules)
        .env("CDK_HOME", &home)
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        .env("CDK_DISABLE_VERSION_CHECK", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_DEFAULT_PROFILE")
        .envs(env.iter().cloned());
    command
}

/// The real `cdk` CLI, run on a small JavaScript CDK app written by a test: the app's `require`s of
/// `aws-cdk-lib` and `constructs` are served from the demo app's npm packages (`NODE_PATH`), the CLI
/// gets a private `CDK_HOME`, telemetry and notices off, and `env` (moto's, for deploys).
#[derive(Debug)]
pub struct CdkApp {
    pub dir: PathBuf,
}

impl CdkApp {
    /// Writes `app.js` (CommonJS, `require("aws-cdk-lib")`) into `dir`.
    pub fn new(dir: &Path, app_js: &str) -> CdkApp {
        std::fs::create_dir_all(dir).expect("app dir");
        std::fs::write(dir.join("app.js"), app_js).expect("write app.js");
        std::fs::write(dir.join("cdk.json"), r#"{"app": "node app.js"}"#).expect("write cdk.json");
        CdkApp { dir: dir.to_owned() }
    }

    /// Runs `cdk ARGS` in the app's folder; panics with its output when it fails.
    pub fn cdk(&self, env: &[(String, String)], args: &[&str]) -> Output {
        let out = cdk_command(&self.dir, env, args).output().expect("run cdk");
        assert!(
            out.status.success(),
            "cdk {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `cdk synth` into `<dir>/cdk.out`; returns that folder.
    pub fn synth(&self) -> PathBuf {
        self.cdk(&[], &["synth", "--quiet", "--output", "cdk.out"]);
        self.dir.join("cdk.out")
    }

    /// What `cdk ls PATTERNS` prints for the synthesized assembly: one display name per line (the CLI
    /// adds ` (stack-name)` when the two differ; that part is dropped).
    pub fn ls(&self, patterns: &[&str]) -> Vec<String> {
        let mut args = vec!["ls", "--app", "cdk.out"];
        args.extend_from_slice(patterns);
        let out = self.cdk(&[], &args);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split(" (").next().unwrap_or(l).trim().to_owned())
            .collect()
    }
}
