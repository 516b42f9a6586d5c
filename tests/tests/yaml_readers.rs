//! Every YAML aphex writes loads, with a YAML 1.1 reader (PyYAML's `safe_load`, as kubectl's yaml.v2
//! reads 1.1) and with YAML 1.2 readers, to exactly the values of the JSON render. A generated batch of
//! configs whose environment names, variable names, values, stack names and commands are the scalars
//! YAML 1.1 resolves to booleans, nulls, numbers, dates and base-60 numbers (`no`, `on`, `y`, `~`, `012`,
//! `0x1F`, `1e3`, `1_000`, `2001-12-14`, `.inf`, `0o17`, `+1`, `1:20`, ...) is rendered, and the YAML of
//! each template (and a document of the scalars as keys and values, through the same emitter that writes
//! `aphex template diff`) is piped through PyYAML in one process.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

/// Environment names the config accepts (`^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$`).
const ENV_NAMES: &[&str] = &[
    "no",
    "on",
    "off",
    "yes",
    "y",
    "n",
    "null",
    "true",
    "false",
    "012",
    "0x1f",
    "1e3",
    "2001-12-14",
    "0o17",
    "0b1",
    "nan",
    "inf",
    "0",
    "10",
    "1-0",
    "dev",
];
/// Values of environment variables and test commands: anything.
const VALUES: &[&str] = &[
    "no",
    "No",
    "on",
    "OFF",
    "yes",
    "y",
    "n",
    "~",
    "null",
    "",
    "012",
    "0x1F",
    "1e3",
    "1_000",
    "2001-12-14",
    "2001-12-14 21:59:43.10 -5",
    ".inf",
    "-.Inf",
    ".nan",
    "0o17",
    "+1",
    "-1",
    "1:20",
    "190:20:30.15",
    "1.",
    "=",
    "<<",
    "true",
    "False",
    "#x",
    "- x",
    "x: y",
    "@x",
    "[x]",
    "{x}",
    "'q'",
    " lead",
    "trail ",
    "a\nb",
    "é",
];
/// Stack names the config accepts (`^[A-Za-z0-9*][A-Za-z0-9/*._-]*$`).
const STACKS: &[&str] = &["012", "1e3", "0x1F", "1_000", "2001-12-14", "Y", "No", "true", "1.5", "Prod/*"];
/// Variable names the config accepts (`^[A-Za-z_][A-Za-z0-9_]*$`).
const VARS: &[&str] = &["Y", "N", "NO", "ON", "yes", "Null", "TRUE", "_", "NaN", "APHEX_X"];

fn config_text(i: usize) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let pick = |list: &[&'static str], k: usize| list[k % list.len()];
    let command = pick(VALUES, i * 7 + 3);
    let command = if command.trim().is_empty() { "make" } else { command };
    let mut text = format!("version: \"1.0\"\nbuild: {{ commands: [{}] }}\nenvironments:\n", q(command));
    for e in 0..3 {
        let name = pick(ENV_NAMES, i * 3 + e);
        let value = pick(VALUES, i * 5 + e * 11);
        let test = pick(VALUES, i * 3 + e + 1);
        let test = if test.trim().is_empty() { "true" } else { test };
        text.push_str(&format!(
            "  - name: {}\n    region: us-east-1\n    account: \"11111111111{e}\"\n    env: {{ {}: {} }}\n    \
             stacks: [{{ name: {} }}]\n    tests: {{ commands: [{}] }}\n",
            q(name),
            q(pick(VARS, i + e)),
            q(value),
            q(pick(STACKS, i + e)),
            q(test),
        ));
    }
    text
}

#[test]
fn every_yaml_aphex_writes_loads_in_pyyaml_to_its_json_values() {
    // The batch: (name, yaml, json) for each rendered template and the scalars themselves as a document.
    let mut batch: Vec<Value> = Vec::new();
    for i in 0..ENV_NAMES.len() * 2 {
        let text = config_text(i);
        let config =
            aphex::config::parse("aphex-config.yaml", &text).unwrap_or_else(|d| panic!("{text}\n{d:?}"));
        let rendered = aphex::template::render_config(&config, None).unwrap();
        batch.push(json!({
            "name": format!("template {i}"),
            "yaml": aphex::argo::to_yaml(&rendered.template),
            "json": rendered.document,
        }));
    }
    let scalars: Vec<&str> = VALUES.iter().chain(ENV_NAMES).chain(STACKS).chain(VARS).copied().collect();
    let doc = json!({ "values": scalars, "keys": scalars.iter().map(|s| (s.to_string(), json!(s))).collect::<serde_json::Map<_, _>>() });
    batch.push(json!({ "name": "scalars", "yaml": aphex::yaml_out::to_string(&doc).unwrap(), "json": doc }));

    // Two 1.2 readers in process.
    for item in &batch {
        let yaml = item["yaml"].as_str().unwrap();
        let ng: Value = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(ng, item["json"], "{} (serde_yaml_ng)\n{yaml}", item["name"]);
    }

    // PyYAML (YAML 1.1) in one process for the whole batch.
    let python = aphex_tests::repo_root().join(".venv/bin/python");
    let python = if python.exists() { python } else { "python3".into() };
    let script = r#"
import json, sys, yaml
failures = []
batch = json.load(sys.stdin)
for item in batch:
    got = yaml.safe_load(item["yaml"])
    if got != item["json"]:
        failures.append({"name": item["name"], "got": repr(got)[:2000]})
print(json.dumps({"checked": len(batch), "failures": failures}))
"#;
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{} ({e}): run scripts/setup to create .venv with PyYAML", python.display())
        });
    child.stdin.take().unwrap().write_all(&serde_json::to_vec(&batch).unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyYAML: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["checked"], batch.len());
    assert_eq!(report["failures"], json!([]), "PyYAML reads other values than the JSON render");
}
