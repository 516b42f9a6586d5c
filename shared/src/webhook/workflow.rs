//! The Argo `Workflow` a push starts: a `workflowTemplateRef` run with the push's arguments, labelled
//! for lookup, and named after the GitHub delivery so a redelivery collides (409) instead of running twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::Push;
use super::filter::Target;

pub const API_VERSION: &str = "argoproj.io/v1alpha1";
pub const KIND: &str = "Workflow";

pub const LABEL_PIPELINE: &str = "aphex.dev/pipeline";
pub const LABEL_BRANCH: &str = "aphex.dev/branch";
pub const LABEL_REF_KIND: &str = "aphex.dev/ref-kind";
pub const LABEL_COMMIT: &str = "aphex.dev/commit";
pub const LABEL_DELIVERY: &str = "aphex.dev/delivery";
/// Label values are limited to 63 characters of a small alphabet; the exact values live in annotations.
pub const ANNOTATION_BRANCH: &str = "aphex.dev/branch";
pub const ANNOTATION_DELIVERY: &str = "aphex.dev/delivery";
pub const ANNOTATION_REPOSITORY: &str = "aphex.dev/repository";

const NAME_PREFIX: &str = "aphex-";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: WorkflowSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowSpec {
    pub workflow_template_ref: TemplateRef,
    pub arguments: Arguments,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateRef {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arguments {
    pub parameters: Vec<Parameter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    pub value: String,
}

impl Workflow {
    /// The value of argument `name`, if set.
    pub fn argument(&self, name: &str) -> Option<&str> {
        self.spec.arguments.parameters.iter().find(|p| p.name == name).map(|p| p.value.as_str())
    }
}

/// Where and from which template runs are created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSettings {
    pub namespace: String,
    pub template: String,
}

fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..6])
}

/// The Workflow name for a delivery: `aphex-<delivery>`, a DNS-1123 label (max 63 characters). A
/// GitHub delivery GUID maps to itself; any other id is sanitised and suffixed with a hash of the
/// original so distinct ids never share a name. Deterministic, so every redelivery maps alike.
pub fn workflow_name(delivery: &str) -> String {
    const MAX: usize = 63;
    let clean: String = delivery
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' { c } else { '-' })
        .collect();
    let clean = clean.trim_matches('-');
    if !clean.is_empty() && clean == delivery && NAME_PREFIX.len() + clean.len() <= MAX {
        return format!("{NAME_PREFIX}{clean}");
    }
    let hash = short_hash(delivery);
    let room = MAX - NAME_PREFIX.len() - hash.len() - 1;
    let head: String = clean.chars().take(room).collect();
    let head = head.trim_end_matches('-');
    if head.is_empty() { format!("{NAME_PREFIX}{hash}") } else { format!("{NAME_PREFIX}{head}-{hash}") }
}

/// A Kubernetes label value for `value`: itself when valid, otherwise a sanitised prefix plus a hash of
/// the original (so `feature/a` and `feature-a` stay apart).
pub fn label_value(value: &str) -> String {
    const MAX: usize = 63;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let valid = value.len() <= MAX
        && value.chars().all(allowed)
        && value.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && value.chars().last().is_none_or(|c| c.is_ascii_alphanumeric());
    if valid {
        return value.to_owned();
    }
    let hash = short_hash(value);
    let clean: String =
        value.chars().map(|c| if allowed(c) { c } else { '-' }).take(MAX - hash.len() - 1).collect();
    let clean = clean.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if clean.is_empty() { hash } else { format!("{clean}-{hash}") }
}

/// The label selector of the runs of one pipeline on one branch (or tag).
pub fn branch_selector(template: &str, branch: &str) -> String {
    format!("{LABEL_PIPELINE}={},{LABEL_BRANCH}={}", label_value(template), label_value(branch))
}

/// Builds the Workflow for an accepted push. Its `commit-sha` is [`Push::commit`]: the commit itself,
/// also for an annotated tag (whose `after` is the tag object).
pub fn build(settings: &RunSettings, delivery: &str, push: &Push, target: &Target) -> Workflow {
    let commit = push.commit();
    let labels = BTreeMap::from([
        (LABEL_PIPELINE.to_owned(), label_value(&settings.template)),
        (LABEL_BRANCH.to_owned(), label_value(&target.name)),
        (LABEL_REF_KIND.to_owned(), target.kind.as_str().to_owned()),
        (LABEL_COMMIT.to_owned(), label_value(commit)),
        (LABEL_DELIVERY.to_owned(), label_value(delivery)),
    ]);
    let annotations = BTreeMap::from([
        (ANNOTATION_BRANCH.to_owned(), target.name.clone()),
        (ANNOTATION_DELIVERY.to_owned(), delivery.to_owned()),
        (ANNOTATION_REPOSITORY.to_owned(), push.repository.full_name.clone()),
    ]);
    let parameters = [
        ("repo-url", push.repository.clone_url.as_str()),
        ("commit-sha", commit),
        ("branch", target.name.as_str()),
        ("delivery-id", delivery),
        ("pusher", push.pusher.name.as_str()),
    ]
    .into_iter()
    .map(|(name, value)| Parameter { name: name.to_owned(), value: value.to_owned() })
    .collect();
    Workflow {
        api_version: API_VERSION.to_owned(),
        kind: KIND.to_owned(),
        metadata: Metadata {
            name: workflow_name(delivery),
            namespace: settings.namespace.clone(),
            labels,
            annotations,
        },
        spec: WorkflowSpec {
            workflow_template_ref: TemplateRef { name: settings.template.clone() },
            arguments: Arguments { parameters },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::event::{Event, parse};
    use crate::webhook::filter::RefKind;
    use proptest::prelude::*;

    fn is_dns1123_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    fn is_label_value(s: &str) -> bool {
        s.len() <= 63
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && (s.is_empty()
                || (s.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && s.ends_with(|c: char| c.is_ascii_alphanumeric())))
    }

    #[test]
    fn names_from_delivery_ids() {
        fn check(delivery: &str, expect: &str) {
            assert_eq!(workflow_name(delivery), expect, "{delivery}");
            assert!(is_dns1123_label(expect));
        }
        check("72d3162e-cc78-11e3-81ab-4c9367dc0958", "aphex-72d3162e-cc78-11e3-81ab-4c9367dc0958");
        check("ABC", &format!("aphex-{}", short_hash("ABC")));
        check("abc", "aphex-abc");
        check("a_b", &format!("aphex-a-b-{}", short_hash("a_b")));
        check("", &format!("aphex-{}", short_hash("")));
        let long = "a".repeat(100);
        assert_eq!(workflow_name(&long).len(), 63);
    }

    #[test]
    fn label_values() {
        assert_eq!(label_value("main"), "main");
        assert_eq!(label_value("v1.2_3"), "v1.2_3");
        assert_eq!(label_value("feature/a"), format!("feature-a-{}", short_hash("feature/a")));
        assert_ne!(label_value("feature/a"), label_value("feature-a"));
        assert!(is_label_value(&label_value("-x-")));
        assert!(is_label_value(&label_value("///")));
        assert!(is_label_value(&label_value(&"é".repeat(80))));
    }

    #[test]
    fn builds_the_workflow_from_a_real_push() {
        let path = format!(
            "{}/../../shared/fixtures/github/octokit_push_branch_created_with_commit.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let Event::Push(push) = parse("push", &std::fs::read(path).unwrap()).unwrap() else { panic!() };
        let settings = RunSettings { namespace: "argo".into(), template: "aphex-pipeline".into() };
        let target = Target { kind: RefKind::Branch, name: "master".into() };
        let wf = build(&settings, "72d3162e-cc78-11e3-81ab-4c9367dc0958", &push, &target);
        let json = serde_json::to_value(&wf).unwrap();
        pretty_assertions::assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Workflow",
                "metadata": {
                    "name": "aphex-72d3162e-cc78-11e3-81ab-4c9367dc0958",
                    "namespace": "argo",
                    "labels": {
                        "aphex.dev/branch": "master",
                        "aphex.dev/commit": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                        "aphex.dev/delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                        "aphex.dev/pipeline": "aphex-pipeline",
                        "aphex.dev/ref-kind": "branch"
                    },
                    "annotations": {
                        "aphex.dev/branch": "master",
                        "aphex.dev/delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                        "aphex.dev/repository": "Codertocat/Hello-World"
                    }
                },
                "spec": {
                    "workflowTemplateRef": {"name": "aphex-pipeline"},
                    "arguments": {"parameters": [
                        {"name": "repo-url", "value": "https://github.com/Codertocat/Hello-World.git"},
                        {"name": "commit-sha", "value": "6113728f27ae82c7b1a177c8d03f9e96e0adf246"},
                        {"name": "branch", "value": "master"},
                        {"name": "delivery-id", "value": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
                        {"name": "pusher", "value": "Codertocat"}
                    ]}
                }
            })
        );
    }

    /// The Workflow is valid under Argo's own schema, with unknown fields forbidden as
    /// `kubectl --validate=strict` would.
    #[test]
    fn workflow_matches_argos_json_schema() {
        let path = format!("{}/../../shared/fixtures/argo/schema.json", env!("CARGO_MANIFEST_DIR"));
        let mut schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        fn strict(v: &mut serde_json::Value) {
            match v {
                serde_json::Value::Object(map) => {
                    if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                        map.insert("additionalProperties".into(), false.into());
                    }
                    map.values_mut().for_each(strict);
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(strict),
                _ => {}
            }
        }
        strict(&mut schema);
        let defs_key = if schema.get("$defs").is_some() { "$defs" } else { "definitions" };
        schema["$ref"] = format!("#/{defs_key}/io.argoproj.workflow.v1alpha1.Workflow").into();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let push: Push = serde_json::from_value(serde_json::json!({
            "ref": "refs/heads/release/1.2", "after": "0123456789abcdef0123456789abcdef01234567",
            "repository": {"full_name": "acme/infra", "clone_url": "https://github.com/acme/infra.git"},
            "pusher": {"name": "octo"}
        }))
        .unwrap();
        let settings = RunSettings { namespace: "argo".into(), template: "aphex-pipeline".into() };
        let target = Target { kind: RefKind::Branch, name: "release/1.2".into() };
        let wf = serde_json::to_value(build(&settings, "d-1", &push, &target)).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&wf).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }

    proptest! {
        #[test]
        fn names_are_dns_labels_and_injective(a in "\\PC{0,80}", b in "\\PC{0,80}") {
            let (na, nb) = (workflow_name(&a), workflow_name(&b));
            prop_assert!(is_dns1123_label(&na), "{}", na);
            prop_assert_eq!(na == nb, a == b);
        }

        #[test]
        fn label_values_are_valid_and_injective(a in "\\PC{0,80}", b in "\\PC{0,80}") {
            let (la, lb) = (label_value(&a), label_value(&b));
            prop_assert!(is_label_value(&la), "{}", la);
            prop_assert_eq!(la == lb, a == b);
        }
    }
}
