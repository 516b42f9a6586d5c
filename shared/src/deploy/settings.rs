//! Stack-level settings: the template's parameters, what a deploy sends to CloudFormation, and
//! whether a deployed stack already has all of it (the unchanged check).
//!
//! The rules follow the CDK CLI's `canSkipDeploy` (aws-cdk, `toolkit-lib/lib/api/deployments/
//! deploy-stack.ts`) and `ParameterValues.hasChanges` (`cfn-api.ts`), with one deliberate
//! difference: a setting the app does not set (no `tags`, no `notificationArns`, no
//! `terminationProtection`, no execution role in the manifest) is not sent, so CloudFormation keeps
//! what the stack has (CloudFormation's UpdateStack: "If you don't specify this parameter, AWS
//! CloudFormation doesn't modify the stack's tags" / "To remove all associated notification topics,
//! specify an empty list"), and it is not compared either: what is not sent cannot change. Stack
//! policies are not in the cloud assembly (schema 55 has no such property), so aphex never sends one
//! and a stack keeps the policy it has.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// The description marker that exempts an SSM-typed parameter from "its value may have changed"
/// (CDK's `SSMPARAM_NO_INVALIDATE`; the `BootstrapVersion` parameter carries it).
pub const SSM_NO_INVALIDATE: &str = "[cdk:skip]";

/// One parameter of a template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateParameter {
    /// `Default`, as CloudFormation reads it (numbers and lists as their JSON text).
    pub default: Option<String>,
    /// `Type` is `AWS::SSM::Parameter::Value<...>`: CloudFormation reads the value from SSM itself.
    pub ssm: bool,
    /// The description holds [`SSM_NO_INVALIDATE`].
    pub no_invalidate: bool,
    /// `NoEcho: true`: DescribeStacks shows `****`, and aphex never prints the value.
    pub no_echo: bool,
}

/// A template's `Parameters`, by name.
pub fn template_parameters(template: &serde_json::Value) -> BTreeMap<String, TemplateParameter> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    template
        .get("Parameters")
        .and_then(|p| p.as_object())
        .map(|p| {
            p.iter()
                .map(|(k, v)| {
                    let parameter = TemplateParameter {
                        default: v.get("Default").map(text),
                        ssm: v
                            .get("Type")
                            .and_then(|t| t.as_str())
                            .is_some_and(|t| t.starts_with("AWS::SSM::Parameter::")),
                        no_invalidate: v
                            .get("Description")
                            .and_then(|d| d.as_str())
                            .is_some_and(|d| d.contains(SSM_NO_INVALIDATE)),
                        no_echo: v.get("NoEcho").is_some_and(|n| n == true || n == "true"),
                    };
                    (k.clone(), parameter)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Why a deployed stack needs a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The stack does not exist yet.
    NotDeployed,
    /// The stack is in a state the unchanged check does not trust (in progress, failed, rolled back).
    Status(String),
    Template,
    Tags,
    NotificationArns,
    TerminationProtection,
    ExecutionRole,
    /// A parameter's value differs, or a parameter was added or removed.
    Parameter(String),
    /// An SSM-typed parameter without [`SSM_NO_INVALIDATE`]: its value may have changed in SSM.
    SsmParameter(String),
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::NotDeployed => write!(f, "the stack does not exist"),
            Change::Status(s) => write!(f, "the stack is {s}"),
            Change::Template => write!(f, "the template changed"),
            Change::Tags => write!(f, "the tags changed"),
            Change::NotificationArns => write!(f, "the notification ARNs changed"),
            Change::TerminationProtection => write!(f, "termination protection changed"),
            Change::ExecutionRole => write!(f, "the execution role changed"),
            Change::Parameter(k) => write!(f, "parameter {k} changed"),
            Change::SsmParameter(k) => write!(f, "parameter {k} is read from SSM and may have changed"),
        }
    }
}

/// Statuses from which an unchanged stack can be skipped.
pub const STABLE_OK: [&str; 4] =
    ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"];

/// The first stack-level setting (status, tags, notification ARNs, termination protection, execution
/// role, parameters) in which the deployed stack differs from what `input` would give it; None when
/// it has all of them. The template is compared apart ([`template_change`]): it needs a GetTemplate.
pub fn settings_change(
    deployed: &DeployedStack,
    parameters: &BTreeMap<String, TemplateParameter>,
    input: &StackInput,
) -> Option<Change> {
    if !STABLE_OK.contains(&deployed.status.as_str()) {
        return Some(Change::Status(deployed.status.clone()));
    }
    if input.tags.as_ref().is_some_and(|t| *t != deployed.tags) {
        return Some(Change::Tags);
    }
    if input.notification_arns.as_ref().is_some_and(|n| {
        n.iter().collect::<BTreeSet<_>>() != deployed.notification_arns.iter().collect::<BTreeSet<_>>()
    }) {
        return Some(Change::NotificationArns);
    }
    if input.termination_protection.is_some_and(|t| t != deployed.termination_protection) {
        return Some(Change::TerminationProtection);
    }
    if input.role_arn.is_some() && input.role_arn != deployed.role_arn {
        return Some(Change::ExecutionRole);
    }
    parameter_change(deployed, parameters, input)
}

/// CDK's `ParameterValues.hasChanges`: an SSM-typed parameter (unless marked [`SSM_NO_INVALIDATE`])
/// may always have changed; otherwise the value each parameter would have (given, else previous,
/// else its default) must be the deployed one, and no parameter may be added or removed.
fn parameter_change(
    deployed: &DeployedStack,
    parameters: &BTreeMap<String, TemplateParameter>,
    input: &StackInput,
) -> Option<Change> {
    if let Some((k, _)) = parameters.iter().find(|(_, p)| p.ssm && !p.no_invalidate) {
        return Some(Change::SsmParameter(k.clone()));
    }
    let mut wanted: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for (key, p) in parameters {
        let value = match input.parameters.get(key) {
            Some(ParameterValue::Value { value, .. }) => Some(value.as_str()),
            Some(ParameterValue::Previous) => deployed.parameters.get(key).map(String::as_str),
            // An SSM-typed parameter left at its default names a parameter CloudFormation resolves
            // itself; some implementations report the resolved value instead of the name.
            None if p.ssm => deployed.parameters.get(key).map(String::as_str),
            None => p.default.as_deref(),
        };
        wanted.insert(key, value);
    }
    // Values given for parameters the template does not have are sent too (CloudFormation refuses
    // them, which names the typo).
    for (key, v) in &input.parameters {
        if let ParameterValue::Value { value, .. } = v {
            wanted.entry(key).or_insert(Some(value));
        }
    }
    if let Some(k) = deployed.parameters.keys().find(|k| !wanted.contains_key(k.as_str())) {
        return Some(Change::Parameter(k.clone()));
    }
    wanted
        .into_iter()
        .find(|(k, want)| deployed.parameters.get(*k).map(String::as_str) != *want)
        .map(|(k, _)| Change::Parameter(k.to_owned()))
}

/// [`Change::Template`] unless the deployed template (JSON or YAML text) is `template`.
pub fn template_change(deployed_template: &str, template: &serde_json::Value) -> Option<Change> {
    match parse_template(deployed_template) {
        Ok(deployed) if &deployed == template => None,
        _ => Some(Change::Template),
    }
}

fn parse_template(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text)
        .or_else(|_| serde_yaml_ng::from_str::<serde_json::Value>(text))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const TOPIC: &str = "arn:aws:sns:us-east-1:111111111111:ops";
    const ROLE: &str = "arn:aws:iam::111111111111:role/cfn-exec";

    fn template() -> serde_json::Value {
        json!({"Parameters": {
            "BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/cdk-bootstrap/hnb659fds/version",
                "Description": "Version of the CDK Bootstrap resources [cdk:skip]"},
            "Email": {"Type": "String"},
            "Size": {"Type": "Number", "Default": 3},
        }})
    }

    fn deployed() -> DeployedStack {
        DeployedStack {
            status: "UPDATE_COMPLETE".into(),
            parameters: BTreeMap::from([
                ("BootstrapVersion".into(), "/cdk-bootstrap/hnb659fds/version".into()),
                ("Email".into(), "ops@example.com".into()),
                ("Size".into(), "3".into()),
            ]),
            tags: BTreeMap::from([("team".into(), "a".into())]),
            termination_protection: false,
            notification_arns: vec![TOPIC.into()],
            role_arn: Some(ROLE.into()),
            ..Default::default()
        }
    }

    /// The input that gives the deployed stack exactly what it has, every setting sent.
    fn input() -> StackInput {
        StackInput {
            parameters: BTreeMap::from([("Email".into(), ParameterValue::plain("ops@example.com"))]),
            tags: Some(BTreeMap::from([("team".into(), "a".into())])),
            role_arn: Some(ROLE.into()),
            notification_arns: Some(vec![TOPIC.into()]),
            termination_protection: Some(false),
            ..Default::default()
        }
    }

    /// Applies `edit` to the deployed stack and the input, then checks the decision.
    fn check(edit: impl FnOnce(&mut DeployedStack, &mut StackInput), expect: Option<Change>) {
        let (mut d, mut i) = (deployed(), input());
        edit(&mut d, &mut i);
        assert_eq!(settings_change(&d, &template_parameters(&template()), &i), expect, "{d:?}\n{i:?}");
    }

    #[test]
    fn every_stack_setting_the_app_sets_is_compared() {
        check(|_, _| {}, None);
        // Not set by the app: not sent, so whatever the stack has is kept and nothing changes.
        check(|_, i| i.tags = None, None);
        check(|_, i| i.notification_arns = None, None);
        check(|d, i| (i.termination_protection, d.termination_protection) = (None, true), None);
        check(|_, i| i.role_arn = None, None);
        // Set by the app and different.
        check(|_, i| i.tags = Some(BTreeMap::new()), Some(Change::Tags));
        check(
            |d, _| d.tags.insert("extra".into(), "outside".into()).map(drop).unwrap_or(()),
            Some(Change::Tags),
        );
        check(|_, i| i.notification_arns = Some(vec![]), Some(Change::NotificationArns));
        check(|d, _| d.notification_arns.clear(), Some(Change::NotificationArns));
        check(|_, i| i.termination_protection = Some(true), Some(Change::TerminationProtection));
        check(
            |_, i| i.role_arn = Some("arn:aws:iam::111111111111:role/other".into()),
            Some(Change::ExecutionRole),
        );
        check(|d, _| d.role_arn = None, Some(Change::ExecutionRole));
        // Order of notification ARNs does not matter (the CDK CLI's arrayEquals).
        check(
            |d, i| {
                d.notification_arns = vec!["b".into(), "a".into()];
                i.notification_arns = Some(vec!["a".into(), "b".into()]);
            },
            None,
        );
    }

    #[test]
    fn parameters_are_compared_as_the_cdk_cli_does() {
        let email = || Some(Change::Parameter("Email".into()));
        check(
            |_, i| {
                i.parameters
                    .insert("Email".into(), ParameterValue::plain("new@example.com"))
                    .map(drop)
                    .unwrap_or(())
            },
            email(),
        );
        // Previous value: what the stack has.
        check(
            |_, i| i.parameters.insert("Email".into(), ParameterValue::Previous).map(drop).unwrap_or(()),
            None,
        );
        // Not given and no default: it would be missing.
        check(|_, i| i.parameters.clear(), email());
        // A default that differs from the deployed value.
        check(
            |d, _| d.parameters.insert("Size".into(), "5".into()).map(drop).unwrap_or(()),
            Some(Change::Parameter("Size".into())),
        );
        // A parameter the template no longer has.
        check(
            |d, _| d.parameters.insert("Gone".into(), "x".into()).map(drop).unwrap_or(()),
            Some(Change::Parameter("Gone".into())),
        );
        // A value for a parameter the template does not have is sent (CloudFormation names the typo).
        check(
            |_, i| i.parameters.insert("Typo".into(), ParameterValue::plain("x")).map(drop).unwrap_or(()),
            Some(Change::Parameter("Typo".into())),
        );
        // The SSM-typed BootstrapVersion (marked [cdk:skip]) may be reported resolved.
        check(
            |d, _| d.parameters.insert("BootstrapVersion".into(), "30".into()).map(drop).unwrap_or(()),
            None,
        );
        // An SSM-typed parameter without the marker may always have changed.
        let mut t = template();
        t["Parameters"]["Ami"] =
            json!({"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "Default": "/ami"});
        assert_eq!(
            settings_change(&deployed(), &template_parameters(&t), &input()),
            Some(Change::SsmParameter("Ami".into()))
        );
    }

    #[test]
    fn unstable_states_are_never_skipped() {
        for status in
            ["UPDATE_ROLLBACK_FAILED", "ROLLBACK_COMPLETE", "UPDATE_IN_PROGRESS", "REVIEW_IN_PROGRESS"]
        {
            check(|d, _| d.status = status.into(), Some(Change::Status(status.into())));
        }
    }

    #[test]
    fn templates_compare_as_json_whatever_the_deployed_format() {
        let t = json!({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}});
        assert_eq!(template_change(r#"{"Resources":{"Q":{"Type":"AWS::SQS::Queue"}}}"#, &t), None);
        assert_eq!(template_change("Resources:\n  Q:\n    Type: AWS::SQS::Queue\n", &t), None);
        assert_eq!(template_change("{}", &t), Some(Change::Template));
    }

    #[test]
    fn secret_values_are_not_printed() {
        let v = ParameterValue::Value { value: "hunter2".into(), secret: true };
        assert_eq!(format!("{v:?}"), "****");
        let i = StackInput { parameters: BTreeMap::from([("P".into(), v)]), ..Default::default() };
        assert!(!format!("{i:?}").contains("hunter2"));
    }

    /// Which setting of the input to change, and how.
    #[derive(Debug, Clone, Copy)]
    enum Edit {
        Tags,
        Topics,
        Protection,
        Role,
        Email,
    }

    proptest! {
        /// From a stack that has everything the app sets, changing any one setting the app sends is
        /// a reason to deploy, named; leaving any subset unsent changes nothing.
        #[test]
        fn one_changed_setting_is_one_reason(
            edit in prop_oneof![Just(Edit::Tags), Just(Edit::Topics), Just(Edit::Protection), Just(Edit::Role), Just(Edit::Email)],
            value in "[a-z]{1,8}",
            unsent in proptest::collection::vec(any::<bool>(), 4),
        ) {
            let params = template_parameters(&template());
            let mut i = input();
            let expect = match edit {
                Edit::Tags => { i.tags = Some(BTreeMap::from([("team".into(), format!("{value}!"))])); Change::Tags }
                Edit::Topics => { i.notification_arns = Some(vec![format!("arn:aws:sns:us-east-1:1:{value}")]); Change::NotificationArns }
                Edit::Protection => { i.termination_protection = Some(true); Change::TerminationProtection }
                Edit::Role => { i.role_arn = Some(format!("arn:aws:iam::1:role/{value}")); Change::ExecutionRole }
                Edit::Email => { i.parameters.insert("Email".into(), ParameterValue::plain(format!("{value}@x.io"))); Change::Parameter("Email".into()) }
            };
            prop_assert_eq!(settings_change(&deployed(), &params, &i), Some(expect));
            let mut same = input();
            if unsent[0] { same.tags = None; }
            if unsent[1] { same.notification_arns = None; }
            if unsent[2] { same.termination_protection = None; }
            if unsent[3] { same.role_arn = None; }
            prop_assert_eq!(settings_change(&deployed(), &params, &same), None);
        }
    }
}
