//! The Kubernetes groups that infra/ maps the Lambdas' IAM roles to are the ones argo/rbac.yaml binds,
//! each to the least it needs: a mismatch would leave a deployed Lambda with no cluster permissions.

use std::collections::BTreeMap;

use aphex_tests::repo_root;
use serde::Deserialize;
use serde_json::Value;

fn rbac_documents() -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join("argo/rbac.yaml")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text).map(|doc| Value::deserialize(doc).unwrap()).collect()
}

/// `export const NAME = 'value';` from the infra stack's source.
fn infra_constant(name: &str) -> String {
    let source = std::fs::read_to_string(repo_root().join("infra/lib/aphex-pipeline-stack.ts")).unwrap();
    let prefix = format!("export const {name} = '");
    let line = source
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{name} in infra"));
    line.split('\'').next().unwrap().to_owned()
}

/// Group -> the rules of the Role bound to it.
fn rules_by_group(docs: &[Value]) -> BTreeMap<String, Value> {
    let roles: BTreeMap<&str, &Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Role")
        .map(|d| (d["metadata"]["name"].as_str().unwrap(), &d["rules"]))
        .collect();
    docs.iter()
        .filter(|d| d["kind"] == "RoleBinding")
        .flat_map(|b| {
            let rules = roles[b["roleRef"]["name"].as_str().unwrap()].clone();
            b["subjects"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["kind"] == "Group")
                .map(move |s| (s["name"].as_str().unwrap().to_owned(), rules.clone()))
        })
        .collect()
}

#[test]
fn every_lambda_group_of_infra_is_bound_with_least_privilege() {
    let by_group = rules_by_group(&rbac_documents());
    let webhook = infra_constant("WEBHOOK_K8S_GROUP");
    let templates = infra_constant("TEMPLATE_MANAGER_K8S_GROUP");
    assert_eq!(
        by_group.get(&webhook),
        Some(&serde_json::json!([
            {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create", "list", "patch"]},
            {"apiGroups": ["argoproj.io"], "resources": ["workflowtemplates"], "verbs": ["get"]}
        ])),
        "the webhook group {webhook} may create, list and stop Workflows and read the WorkflowTemplate, nothing more"
    );
    let template_rules =
        by_group.get(&templates).unwrap_or_else(|| panic!("{templates} is not bound in argo/rbac.yaml"));
    let resources: Vec<&str> = template_rules
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()))
        .collect();
    assert_eq!(resources, ["workflowtemplates", "configmaps"]);
    for rule in template_rules.as_array().unwrap() {
        assert_eq!(
            rule["verbs"],
            serde_json::json!(["get", "create", "patch"]),
            "no delete, no list, no wildcard"
        );
    }
}
