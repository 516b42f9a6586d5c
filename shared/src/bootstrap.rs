//! The CDK bootstrap qualifier of an app and the bootstrap roles it names: one resolution, used by every
//! part that needs a bootstrap resource before (or without) reading an assembly's own role ARNs.
//!
//! The qualifier is the `<q>` of `cdk-<q>-deploy-role-<account>-<region>`, `cdk-<q>-assets-...` and
//! `/cdk-bootstrap/<q>/version` (CDK documentation, "Bootstrapping: customizing", the
//! `@aws-cdk/core:bootstrapQualifier` context key and `cdk bootstrap --qualifier`). It is found, first
//! match wins, in:
//! 1. the config's `synth.context["@aws-cdk/core:bootstrapQualifier"]` (passed to synth as `-c`);
//! 2. the app's `cdk.json` `context` (where `cdk init` apps keep it);
//! 3. a synthesized assembly's `manifest.json`: a stack's `bootstrapStackVersionSsmParameter`
//!    (`/cdk-bootstrap/<q>/version`) or its role ARNs (`.../role/cdk-<q>-deploy-role-...`);
//! 4. the CDK's default, `hnb659fds`.

use std::path::Path;

use serde_json::Value;

use crate::config::Config;

/// The qualifier `cdk bootstrap` uses when none is given (aws-cdk-lib `DefaultStackSynthesizer`).
pub const DEFAULT_QUALIFIER: &str = "hnb659fds";
/// The CDK context key that sets the qualifier of an app's stacks.
pub const QUALIFIER_CONTEXT_KEY: &str = "@aws-cdk/core:bootstrapQualifier";

/// Where a qualifier came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `synth.context` of `aphex-config.yaml`.
    Config,
    /// `context` of the app's `cdk.json`.
    CdkJson,
    /// A synthesized assembly's `manifest.json`.
    Assembly,
    /// Nothing set it: the CDK default.
    Default,
}

/// A resolved bootstrap qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qualifier {
    pub value: String,
    pub source: Source,
}

impl Qualifier {
    /// The bootstrap deploy role of `account`/`region` (`${AWS::Partition}` left for
    /// [`crate::assembly::substitute`]).
    pub fn deploy_role_template(&self) -> String {
        format!(
            "arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/cdk-{}-deploy-role-${{AWS::AccountId}}-${{AWS::Region}}",
            self.value
        )
    }

    /// The deploy role of `account`/`region`, partition resolved from the region.
    pub fn deploy_role(&self, account: &str, region: &str) -> String {
        crate::assembly::substitute(&self.deploy_role_template(), account, region)
    }

    /// The SSM parameter holding the bootstrap stack's version.
    pub fn version_parameter(&self) -> String {
        format!("/cdk-bootstrap/{}/version", self.value)
    }
}

/// The `cdk bootstrap` command that creates the resources `version_parameter` (`/cdk-bootstrap/<q>/version`)
/// belongs to: `--qualifier <q>` added unless `<q>` is the default.
pub fn bootstrap_command(account: &str, region: &str, version_parameter: &str) -> String {
    let qualifier =
        version_parameter.strip_prefix("/cdk-bootstrap/").and_then(|r| r.strip_suffix("/version"));
    match qualifier {
        Some(q) if q != DEFAULT_QUALIFIER => {
            format!("cdk bootstrap aws://{account}/{region} --qualifier {q}")
        }
        _ => format!("cdk bootstrap aws://{account}/{region}"),
    }
}

/// The qualifier from what is given; pure. `cdk_json` is the parsed `cdk.json`, `manifest` the parsed
/// `manifest.json` of a synthesized assembly (nested assemblies are not read: every stack of one app
/// has the app's qualifier).
pub fn resolve(config: &Config, cdk_json: Option<&Value>, manifest: Option<&Value>) -> Qualifier {
    if let Some(q) = config.synth.context.get(QUALIFIER_CONTEXT_KEY) {
        return Qualifier { value: q.clone(), source: Source::Config };
    }
    let in_cdk_json = cdk_json.and_then(|j| j.pointer("/context")).and_then(|c| c.get(QUALIFIER_CONTEXT_KEY));
    if let Some(q) = in_cdk_json.and_then(Value::as_str) {
        return Qualifier { value: q.to_owned(), source: Source::CdkJson };
    }
    if let Some(q) = manifest.and_then(from_manifest) {
        return Qualifier { value: q, source: Source::Assembly };
    }
    Qualifier { value: DEFAULT_QUALIFIER.to_owned(), source: Source::Default }
}

/// The qualifier a synthesized assembly's stacks name, if any does.
pub fn from_manifest(manifest: &Value) -> Option<String> {
    let artifacts = manifest.get("artifacts")?.as_object()?;
    artifacts.values().filter_map(|a| a.get("properties")).find_map(|p| {
        let ssm = p.get("bootstrapStackVersionSsmParameter").and_then(Value::as_str).and_then(|s| {
            s.strip_prefix("/cdk-bootstrap/").and_then(|r| r.strip_suffix("/version")).map(str::to_owned)
        });
        ssm.or_else(|| {
            p.get("assumeRoleArn").and_then(Value::as_str).and_then(|arn| {
                let name = arn.rsplit_once(":role/")?.1;
                let rest = name.strip_prefix("cdk-")?;
                rest.split_once("-deploy-role-").map(|(q, _)| q.to_owned())
            })
        })
    })
}

/// The qualifier of the app in `app_dir`: reads `cdk.json` and, if synthesized, `cdk.out/manifest.json`
/// there (an unreadable or invalid file counts as absent: synth reports it with its own error).
pub fn resolve_in(config: &Config, app_dir: &Path) -> Qualifier {
    let read = |p: &Path| std::fs::read(p).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let cdk_json = read(&app_dir.join("cdk.json"));
    let output = cdk_json
        .as_ref()
        .and_then(|j| j.get("output"))
        .and_then(Value::as_str)
        .unwrap_or("cdk.out")
        .to_owned();
    let manifest = read(&app_dir.join(output).join("manifest.json"));
    resolve(config, cdk_json.as_ref(), manifest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(context: &[(&str, &str)]) -> Config {
        let mut yaml = String::from(
            "version: \"1.0\"\nbuild: {commands: [\"true\"]}\nenvironments:\n  - {name: dev, account: \"111111111111\", region: us-east-1, stacks: [{name: A}]}\n",
        );
        if !context.is_empty() {
            yaml.push_str("synth:\n  context:\n");
            for (k, v) in context {
                yaml.push_str(&format!("    \"{k}\": \"{v}\"\n"));
            }
        }
        crate::config::parse("aphex-config.yaml", &yaml).expect("valid config")
    }

    fn manifest_with(properties: Value) -> Value {
        json!({"version": "55.0.0", "artifacts": {
            "App.assets": {"type": "cdk:asset-manifest", "properties": {"file": "App.assets.json"}},
            "App": {"type": "aws:cloudformation:stack", "properties": properties}}})
    }

    #[track_caller]
    fn check(
        context: &[(&str, &str)],
        cdk_json: Option<Value>,
        manifest: Option<Value>,
        expect: (&str, Source),
    ) {
        let got = resolve(&config(context), cdk_json.as_ref(), manifest.as_ref());
        assert_eq!((got.value.as_str(), got.source), expect);
    }

    #[test]
    fn qualifier_resolution_order() {
        let cdk_json = json!({"app": "node app.js", "context": {QUALIFIER_CONTEXT_KEY: "fromjson1"}});
        let by_ssm =
            manifest_with(json!({"bootstrapStackVersionSsmParameter": "/cdk-bootstrap/fromasm1/version"}));
        let by_role = manifest_with(json!({"assumeRoleArn":
            "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-fromasm2-deploy-role-${AWS::AccountId}-${AWS::Region}"}));
        let legacy = manifest_with(json!({"templateFile": "App.template.json"}));
        let in_config = [(QUALIFIER_CONTEXT_KEY, "fromcfg")];
        check(&in_config, Some(cdk_json.clone()), Some(by_ssm.clone()), ("fromcfg", Source::Config));
        check(
            &[("other", "x")],
            Some(cdk_json.clone()),
            Some(by_ssm.clone()),
            ("fromjson1", Source::CdkJson),
        );
        check(&[], Some(json!({"app": "x"})), Some(by_ssm.clone()), ("fromasm1", Source::Assembly));
        check(&[], None, Some(by_role), ("fromasm2", Source::Assembly));
        check(
            &[],
            Some(json!({"context": {QUALIFIER_CONTEXT_KEY: 7}})),
            None,
            (DEFAULT_QUALIFIER, Source::Default),
        );
        check(&[], None, Some(legacy), (DEFAULT_QUALIFIER, Source::Default));
        check(&[], None, None, (DEFAULT_QUALIFIER, Source::Default));
    }

    #[test]
    fn roles_and_parameter_carry_the_qualifier_and_partition() {
        let q = Qualifier { value: "abc123".into(), source: Source::Config };
        assert_eq!(
            q.deploy_role("111111111111", "us-east-1"),
            "arn:aws:iam::111111111111:role/cdk-abc123-deploy-role-111111111111-us-east-1"
        );
        assert_eq!(
            q.deploy_role("111111111111", "cn-north-1"),
            "arn:aws-cn:iam::111111111111:role/cdk-abc123-deploy-role-111111111111-cn-north-1"
        );
        assert_eq!(q.version_parameter(), "/cdk-bootstrap/abc123/version");
        assert_eq!(
            bootstrap_command("1", "r", "/cdk-bootstrap/abc123/version"),
            "cdk bootstrap aws://1/r --qualifier abc123"
        );
        assert_eq!(
            bootstrap_command("1", "r", "/cdk-bootstrap/hnb659fds/version"),
            "cdk bootstrap aws://1/r"
        );
    }

    #[test]
    fn reads_cdk_json_and_its_output_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let c = config(&[]);
        assert_eq!(resolve_in(&c, tmp.path()).source, Source::Default);
        std::fs::write(tmp.path().join("cdk.json"), r#"{"app": "x", "output": "out"}"#).unwrap();
        std::fs::create_dir(tmp.path().join("out")).unwrap();
        let manifest =
            manifest_with(json!({"bootstrapStackVersionSsmParameter": "/cdk-bootstrap/zz9/version"}));
        std::fs::write(tmp.path().join("out/manifest.json"), manifest.to_string()).unwrap();
        assert_eq!(resolve_in(&c, tmp.path()), Qualifier { value: "zz9".into(), source: Source::Assembly });
    }
}
