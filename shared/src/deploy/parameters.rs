//! Stack parameter values: the app's own (the manifest), the config's (`stacks[].parameters`) and the
//! command line's (`--parameters Stack:Name=value`, `Name=value` for every stack), merged in that
//! order as the CDK CLI merges `--parameters` (aws-cdk `buildParameterMap`: the `*` map, then the
//! stack's own); values read from SSM and Secrets Manager; and the template's parameters assigned as
//! the CDK CLI's `ParameterValues` does: a given value, else the previous value (only with
//! `--previous-parameters`, on an update), else the template's `Default`, else missing. Missing
//! values are refused before any AWS write, naming the stack, the parameter and how to give it.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;

use super::*;
use crate::config::ParameterSource;

/// One `--parameters` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliParameter {
    /// The stack (stack name or display name); None for every stack.
    pub stack: Option<String>,
    pub name: String,
    pub value: String,
}

impl std::str::FromStr for CliParameter {
    type Err = String;

    /// `Stack:Name=value` or `Name=value`; the value may hold `=` and `:`.
    fn from_str(arg: &str) -> Result<Self, String> {
        let (key, value) = arg.split_once('=').ok_or_else(|| {
            format!("--parameters {arg:?} has no `=`; write NAME=VALUE (every stack) or STACK:NAME=VALUE")
        })?;
        let (stack, name) = match key.rsplit_once(':') {
            Some((stack, name)) => (Some(stack.to_owned()), name),
            None => (None, key),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "--parameters {arg:?}: {name:?} is not a CloudFormation parameter name (letters and digits)"
            ));
        }
        Ok(CliParameter { stack, name: name.to_owned(), value: value.to_owned() })
    }
}

/// Where one parameter's value comes from, after merging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    Literal(String),
    Ssm(String),
    Secret(String),
}

/// The merged sources of `stack`'s parameters: the manifest's, then the config's, then the command
/// line's for every stack, then the command line's for this stack (by stack or display name).
pub fn merged(
    stack: &Stack,
    config: &IndexMap<String, ParameterSource>,
    cli: &[CliParameter],
) -> BTreeMap<String, Wanted> {
    let mut out: BTreeMap<String, Wanted> =
        stack.properties.parameters.iter().map(|(k, v)| (k.clone(), Wanted::Literal(v.clone()))).collect();
    for (k, v) in config {
        let wanted = match v {
            ParameterSource::Literal(l) => Wanted::Literal(l.to_string()),
            ParameterSource::Ssm(s) => Wanted::Ssm(s.ssm.clone()),
            ParameterSource::Secret(s) => Wanted::Secret(s.secret.clone()),
        };
        out.insert(k.clone(), wanted);
    }
    let this = |p: &&CliParameter| {
        p.stack.as_deref().is_some_and(|s| s == stack.stack_name || s == stack.display_name)
    };
    for p in cli.iter().filter(|p| p.stack.is_none()).chain(cli.iter().filter(this)) {
        out.insert(p.name.clone(), Wanted::Literal(p.value.clone()));
    }
    out
}

/// Assigns every template parameter a value as the CDK CLI's `ParameterValues` does. `given` holds
/// the resolved values (value, secret); `previous` the parameters the deployed stack has when
/// previous values may be kept (`--previous-parameters` on an update), else None. Values for
/// parameters the template does not have are passed on (CloudFormation names the typo). Returns the
/// names of the parameters left without a value.
pub fn assign(
    template: &BTreeMap<String, TemplateParameter>,
    given: &BTreeMap<String, (String, bool)>,
    previous: Option<&BTreeSet<String>>,
) -> Result<BTreeMap<String, ParameterValue>, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut missing = Vec::new();
    for (key, p) in template {
        if let Some((value, secret)) = given.get(key) {
            out.insert(
                key.clone(),
                ParameterValue::Value { value: value.clone(), secret: *secret || p.no_echo },
            );
        } else if previous.is_some_and(|prev| prev.contains(key)) {
            out.insert(key.clone(), ParameterValue::Previous);
        } else if p.default.is_none() {
            missing.push(key.clone());
        }
    }
    for (key, (value, secret)) in given {
        if !template.contains_key(key) {
            out.insert(key.clone(), ParameterValue::Value { value: value.clone(), secret: *secret });
        }
    }
    if missing.is_empty() { Ok(out) } else { Err(missing) }
}

/// How to give a missing parameter, for the error.
fn how_to_give(env: &Environment, stack: &Stack, name: &str) -> String {
    format!(
        "stack {} needs a value for template parameter {name} (it has no Default): set it under the stack in aphex-config.yaml (environments[{}].stacks[].parameters: {{{name}: VALUE}}, or {{{name}: {{ssm: /parameter/name}}}} / {{{name}: {{secret: SECRET}}}} for a NoEcho one), or pass `aphex deploy --parameters {}:{name}=VALUE`",
        stack.display_name, env.name, stack.stack_name
    )
}

/// Every planned stack's parameter values (by stack name), SSM parameters and secrets read with
/// the environment's custom role (else the caller's own identity) in its region; or, per stack that
/// cannot have them, why. Reads only: nothing is written before every stack has its values.
pub(super) async fn resolve_all(
    cloud: &dyn Cloud,
    env: &Environment,
    options: &DeployOptions,
    plan: &[PlannedStack],
) -> Result<HashMap<String, BTreeMap<String, ParameterValue>>, Vec<(usize, String)>> {
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    for (i, planned) in plan.iter().enumerate() {
        match resolve_stack(cloud, env, options, planned).await {
            Ok(values) => {
                out.insert(planned.stack.stack_name.clone(), values);
            }
            Err(message) => errors.push((i, message)),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

async fn resolve_stack(
    cloud: &dyn Cloud,
    env: &Environment,
    options: &DeployOptions,
    planned: &PlannedStack,
) -> Result<BTreeMap<String, ParameterValue>, String> {
    let stack = &planned.stack;
    let template = read_template(stack).map_err(|f| f.message)?;
    let role = env.role.as_deref();
    let mut given = BTreeMap::new();
    for (key, wanted) in merged(stack, &planned.parameters, &options.parameters) {
        let value = match &wanted {
            Wanted::Literal(v) => (v.clone(), false),
            Wanted::Ssm(name) => {
                let value = cloud.ssm_parameter(role, &env.region, name).await.map_err(|e| {
                    format!("stack {}: parameter {key} from SSM parameter {name}: {e}", stack.display_name)
                })?;
                let value = value.ok_or_else(|| {
                    format!(
                        "stack {}: parameter {key} names SSM parameter {name}, which does not exist in aws://{}/{}",
                        stack.display_name, env.account, env.region
                    )
                })?;
                (value, template.parameters.get(&key).is_some_and(|p| p.no_echo))
            }
            Wanted::Secret(id) => {
                let value = cloud.secret_value(role, &env.region, id).await.map_err(|e| {
                    format!("stack {}: parameter {key} from secret {id}: {e}", stack.display_name)
                })?;
                let value = value.ok_or_else(|| {
                    format!(
                        "stack {}: parameter {key} names secret {id}, which does not exist in aws://{}/{}",
                        stack.display_name, env.account, env.region
                    )
                })?;
                (value, true)
            }
        };
        given.insert(key, value);
    }
    let previous = if options.previous_parameters {
        let needs = template.parameters.keys().any(|k| !given.contains_key(k));
        if needs {
            let target = resolve_target(env, stack).map_err(|f| f.message)?;
            let cf = cloud
                .deployer(target.deploy_role.as_deref(), &target.region)
                .await
                .map_err(|e| e.to_string())?;
            cf.describe_stack(&stack.stack_name)
                .await
                .map_err(|e| e.to_string())?
                .map(|d| d.parameters.keys().cloned().collect::<BTreeSet<_>>())
        } else {
            None
        }
    } else {
        None
    };
    assign(&template.parameters, &given, previous.as_ref()).map_err(|missing| {
        missing.iter().map(|name| how_to_give(env, stack, name)).collect::<Vec<_>>().join("\n")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_arguments() {
        fn check(arg: &str, expect: Result<(Option<&str>, &str, &str), &str>) {
            let got = arg.parse::<CliParameter>();
            match expect {
                Ok((stack, name, value)) => assert_eq!(
                    got,
                    Ok(CliParameter { stack: stack.map(Into::into), name: name.into(), value: value.into() }),
                    "{arg}"
                ),
                Err(part) => assert!(got.as_ref().is_err_and(|e| e.contains(part)), "{arg}: {got:?}"),
            }
        }
        check("Email=a@b.c", Ok((None, "Email", "a@b.c")));
        check("Api:Email=a@b.c", Ok((Some("Api"), "Email", "a@b.c")));
        check("Outer/Inner/Api:Email=x=y:z", Ok((Some("Outer/Inner/Api"), "Email", "x=y:z")));
        check("Email=", Ok((None, "Email", "")));
        check("Email", Err("no `=`"));
        check("Api:E-mail=x", Err("not a CloudFormation parameter name"));
    }

    fn template(spec: &[(&str, Option<&str>, bool)]) -> BTreeMap<String, TemplateParameter> {
        spec.iter()
            .map(|(k, d, no_echo)| {
                (
                    k.to_string(),
                    TemplateParameter { default: d.map(Into::into), no_echo: *no_echo, ..Default::default() },
                )
            })
            .collect()
    }

    #[test]
    fn assignment_follows_the_cdk_cli() {
        let t = template(&[("Email", None, false), ("Size", Some("3"), false), ("Password", None, true)]);
        let given = |pairs: &[(&str, &str)]| -> BTreeMap<String, (String, bool)> {
            pairs.iter().map(|(k, v)| (k.to_string(), (v.to_string(), false))).collect()
        };
        // Everything given; the NoEcho one is secret whatever its source.
        let all = assign(&t, &given(&[("Email", "a@b.c"), ("Password", "pw")]), None).unwrap();
        assert_eq!(all["Email"], ParameterValue::plain("a@b.c"));
        assert_eq!(all["Password"], ParameterValue::Value { value: "pw".into(), secret: true });
        assert!(!all.contains_key("Size"), "a default is CloudFormation's to apply");
        // Missing: named, in template order.
        assert_eq!(assign(&t, &given(&[]), None), Err(vec!["Email".into(), "Password".into()]));
        // Previous values only when asked and only for what the stack has.
        let prev = BTreeSet::from(["Email".to_owned(), "Password".to_owned()]);
        let kept = assign(&t, &given(&[("Email", "new@b.c")]), Some(&prev)).unwrap();
        assert_eq!(kept["Email"], ParameterValue::plain("new@b.c"));
        assert_eq!(kept["Password"], ParameterValue::Previous);
        assert_eq!(
            assign(&t, &given(&[]), Some(&BTreeSet::new())),
            Err(vec!["Email".into(), "Password".into()])
        );
        // A value for a parameter the template lacks is passed on.
        let typo = assign(&t, &given(&[("Email", "a"), ("Password", "b"), ("Emial", "c")]), None).unwrap();
        assert_eq!(typo["Emial"], ParameterValue::plain("c"));
    }

    #[test]
    fn sources_merge_manifest_config_then_command_line() {
        use crate::config::{Literal, SecretSource, SsmSource};
        let mut stack = crate::deploy::tests::bare_stack("Outer/Api", "Outer-Api");
        stack.properties.parameters =
            BTreeMap::from([("A".into(), "app".into()), ("B".into(), "app".into())]);
        let config = IndexMap::from([
            ("B".to_owned(), ParameterSource::Literal(Literal::Text("config".into()))),
            ("C".to_owned(), ParameterSource::Ssm(SsmSource { ssm: "/c".into() })),
            ("D".to_owned(), ParameterSource::Secret(SecretSource { secret: "d".into() })),
            ("N".to_owned(), ParameterSource::Literal(Literal::Number(serde_json::Number::from(8080)))),
        ]);
        let cli: Vec<CliParameter> = ["Outer-Api:C=stack-cli", "C=all-cli", "D=all-cli", "Other:D=no"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let got = merged(&stack, &config, &cli);
        let lit = |s: &str| Wanted::Literal(s.into());
        assert_eq!(
            got,
            BTreeMap::from([
                ("A".into(), lit("app")),
                ("B".into(), lit("config")),
                ("C".into(), lit("stack-cli")),
                ("D".into(), lit("all-cli")),
                ("N".into(), lit("8080")),
            ])
        );
        // By display name too.
        let by_display = merged(&stack, &IndexMap::new(), &["Outer/Api:A=x".parse().unwrap()]);
        assert_eq!(by_display["A"], lit("x"));
    }
}
