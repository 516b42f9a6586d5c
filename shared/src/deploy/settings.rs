//! Stack-level settings: the template's parameters and whether a deployed stack already has what
//! this deploy would give it.

use std::collections::BTreeMap;

use super::*;
/// Template parameters: name -> (default, whether it is SSM-typed).
pub(super) fn template_parameters(template: &serde_json::Value) -> BTreeMap<String, (Option<String>, bool)> {
    template
        .get("Parameters")
        .and_then(|p| p.as_object())
        .map(|p| {
            p.iter()
                .map(|(k, v)| {
                    let default = v.get("Default").map(|d| match d {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    let ssm = v
                        .get("Type")
                        .and_then(|t| t.as_str())
                        .is_some_and(|t| t.starts_with("AWS::SSM::Parameter::"));
                    (k.clone(), (default, ssm))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// True when the deployed stack already has this template, parameters and tags.
pub(super) fn unchanged(
    deployed: &DeployedStack,
    deployed_template: &str,
    template: &serde_json::Value,
    input: &StackInput,
) -> bool {
    same_settings(deployed, template, input) && same_template(deployed_template, template, input)
}

pub(super) fn same_template(
    deployed_template: &str,
    template: &serde_json::Value,
    input: &StackInput,
) -> bool {
    let Ok(deployed_json) = parse_template(deployed_template) else { return false };
    if &deployed_json != template {
        tracing::debug!(stack = %input.stack_name, "template differs from the deployed one");
        return false;
    }
    true
}

/// True when the deployed stack's parameters and tags are the ones this deploy would give it.
pub(super) fn same_settings(
    deployed: &DeployedStack,
    template: &serde_json::Value,
    input: &StackInput,
) -> bool {
    if deployed.tags != input.tags {
        tracing::debug!(stack = %input.stack_name, deployed = ?deployed.tags, wanted = ?input.tags, "tags differ");
        return false;
    }
    // Every parameter must hold the value this deploy would give it (explicit, else the default).
    template_parameters(template).into_iter().all(|(key, (default, ssm))| {
        // An SSM-typed parameter left at its default (CDK's BootstrapVersion) names a parameter that
        // CloudFormation resolves itself; some implementations report the resolved value instead of the
        // name, so only an explicitly passed value is compared.
        if ssm && !input.parameters.contains_key(&key) {
            return true;
        }
        let want = input.parameters.get(&key).cloned().or(default);
        let same = match (deployed.parameters.get(&key), &want) {
            (Some(have), Some(want)) => have == want,
            (None, None) => true,
            _ => false,
        };
        if !same {
            tracing::debug!(stack = %input.stack_name, %key, deployed = ?deployed.parameters.get(&key), ?want, "parameter differs");
        }
        same
    })
}

pub(super) fn parse_template(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text)
        .or_else(|_| serde_yaml_ng::from_str::<serde_json::Value>(text))
        .map_err(|e| e.to_string())
}
