//! Checks a rendered WorkflowTemplate against Argo's official JSON Schema (embedded, strict).
//!
//! The schema (v4.1.2, `argo/schema/schema.json`) is compiled into the binary: Lambdas and pods have no
//! checkout to read it from. Strict mode adds `additionalProperties: false` to every object definition
//! that lists `properties`, so a misspelled field is an error, as with `kubectl --validate=strict`.

use std::sync::OnceLock;

use serde_json::Value;

/// The vendored Argo schema, byte-identical to `shared/fixtures/argo/schema.json`.
pub const ARGO_SCHEMA: &str = include_str!("../../../argo/schema/schema.json");
/// The definition a WorkflowTemplate must satisfy.
pub const WORKFLOW_TEMPLATE_DEFINITION: &str = "io.argoproj.workflow.v1alpha1.WorkflowTemplate";

/// One place where a document breaks the schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaViolation {
    /// JSON pointer into the document, e.g. `/spec/templates/3/retryStrategy/limit`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.is_empty() { "/" } else { &self.path };
        write!(f, "{path}: {}", self.message)
    }
}

/// The Argo schema rooted at `definition`, with `additionalProperties: false` added where the schema
/// lists `properties` and says nothing about others.
pub fn strict_schema(definition: &str) -> Result<Value, String> {
    let mut schema: Value =
        serde_json::from_str(ARGO_SCHEMA).map_err(|e| format!("embedded Argo schema is not JSON: {e}"))?;
    let root = schema.as_object_mut().ok_or("embedded Argo schema is not an object")?;
    let defs = root
        .get_mut("definitions")
        .and_then(Value::as_object_mut)
        .ok_or("embedded Argo schema has no definitions")?;
    if !defs.contains_key(definition) {
        return Err(format!("embedded Argo schema has no definition `{definition}`"));
    }
    for def in defs.values_mut() {
        if let Some(obj) = def.as_object_mut()
            && obj.contains_key("properties")
            && !obj.contains_key("additionalProperties")
        {
            obj.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
    root.remove("oneOf");
    root.insert("$ref".into(), Value::String(format!("#/definitions/{definition}")));
    Ok(schema)
}

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema = strict_schema(WORKFLOW_TEMPLATE_DEFINITION)?;
            jsonschema::draft202012::new(&schema)
                .map_err(|e| format!("embedded Argo schema does not compile: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Checks `document` (a WorkflowTemplate as JSON) and returns every violation.
pub fn validate_workflow_template(document: &Value) -> Result<(), Vec<SchemaViolation>> {
    let validator = validator().map_err(|message| vec![SchemaViolation { path: String::new(), message }])?;
    let violations: Vec<SchemaViolation> = validator
        .iter_errors(document)
        .map(|e| SchemaViolation { path: e.instance_path().to_string(), message: e.to_string() })
        .collect();
    if violations.is_empty() { Ok(()) } else { Err(violations) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vendored_copy_equals_fixture() {
        let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/argo/schema.json");
        let text = std::fs::read_to_string(fixture).unwrap_or_else(|e| panic!("read {fixture}: {e}"));
        assert!(text == ARGO_SCHEMA, "argo/schema/schema.json differs from {fixture}: copy it again");
    }

    fn minimal() -> Value {
        json!({
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "WorkflowTemplate",
            "metadata": { "name": "x" },
            "spec": {
                "entrypoint": "main",
                "templates": [{ "name": "main", "container": { "image": "busybox", "command": ["true"] } }]
            }
        })
    }

    #[test]
    fn accepts_a_valid_template() {
        assert_eq!(validate_workflow_template(&minimal()), Ok(()));
    }

    #[test]
    fn rejects_a_misspelled_field_wrong_type_and_kind() {
        let mut doc = minimal();
        doc["spec"]["templates"][0]["retryStrategy"] = json!({ "limit": 3, "retryPolcy": "OnError" });
        doc["kind"] = json!("Workflow");
        let errors = validate_workflow_template(&doc).err().unwrap_or_default();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"/kind"), "{errors:?}");
        assert!(paths.contains(&"/spec/templates/0/retryStrategy"), "{errors:?}");
        assert!(paths.contains(&"/spec/templates/0/retryStrategy/limit"), "{errors:?}");
    }
}
