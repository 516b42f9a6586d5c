//! `aphex validate` as users run it: exit codes, compiler-style stderr, JSON on stdout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ sits in the repository").to_owned()
}

/// Runs `aphex validate ARGS` from the repository root.
fn validate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aphex"))
        .arg("validate")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("aphex runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_product_description_example_is_valid() {
    let out = validate(&["--config", "examples/minimal/aphex-config.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "examples/minimal/aphex-config.yaml: valid (1 environment, 1 stack)\n");
    assert!(out.stdout.is_empty());
}

#[test]
fn the_multi_env_example_is_valid() {
    let out = validate(&["--config", "examples/multi-env/aphex-config.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("valid (3 environments, 12 stacks)"));
}

#[test]
fn the_default_config_path_is_the_current_directory() {
    let out = Command::new(env!("CARGO_BIN_EXE_aphex"))
        .arg("validate")
        .current_dir(repo().join("examples/minimal"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("aphex-config.yaml: valid"));
}

#[test]
fn every_invalid_example_exits_1_naming_position_and_field() {
    let dir = repo().join("examples/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let rel = format!("examples/invalid/{}", path.file_name().unwrap().to_string_lossy());
        let expect = std::fs::read_to_string(path.with_extension("expect")).unwrap();
        // The first diagnostic line of the .expect file: `SEVERITY LINE:COL PATH | FRAGMENT`.
        let first = expect
            .lines()
            .find(|l| l.starts_with("error ") || l.starts_with("warning "))
            .expect("a diagnostic");
        let mut parts = first.split(' ');
        let severity = parts.next().unwrap();
        let position = parts.next().unwrap();
        let field = parts.next().unwrap();

        let out = validate(&["--config", &rel]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{rel}: {err}");
        assert!(
            err.contains(&format!("{rel}:{position}: {severity}: ")),
            "{rel}: no `{rel}:{position}` in\n{err}"
        );
        if field != "-" {
            // The caret under the offending token is labelled with the field path.
            assert!(err.contains(&format!("^ {field}\n")), "{rel}: field {field} missing in\n{err}");
        }
        assert!(err.contains("= hint: "), "{rel}: no hint in\n{err}");
        assert!(err.contains(&format!("error: {rel} is invalid: ")), "{rel}: no summary in\n{err}");
        seen += 1;
    }
    assert!(seen >= 20);
}

#[test]
fn human_output_looks_like_a_compiler() {
    let out = validate(&["--config", "examples/invalid/duplicate-environment.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "examples/invalid/duplicate-environment.yaml:10:11: error: duplicate environment name `dev`\n   |\n10 |   - name: dev\n   |           ^^^ environments[1].name\n   = hint: environment names must be unique; `dev` is already environments[0] (line 5)\n\nerror: examples/invalid/duplicate-environment.yaml is invalid: 1 error\n"
    );
}

#[test]
fn json_format_prints_an_array_on_stdout() {
    let out = validate(&["--config", "examples/invalid/many-problems.yaml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let diags: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let diags = diags.as_array().expect("an array");
    assert_eq!(diags.len(), 7);
    for d in diags {
        let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["file", "line", "column", "path", "severity", "message", "hint"]);
        assert_eq!(d["file"], "examples/invalid/many-problems.yaml");
    }
    assert_eq!(diags[0]["path"], "environments[0].account");
    assert_eq!((diags[0]["line"].as_u64(), diags[0]["column"].as_u64()), (Some(8), Some(14)));
    assert_eq!(diags[4]["severity"], "warning");
}

#[test]
fn json_format_of_a_valid_config_is_an_empty_array() {
    let out = validate(&["--config", "examples/minimal/aphex-config.yaml", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(diags, serde_json::json!([]));
}

#[test]
fn a_missing_file_exits_2() {
    let out = validate(&["--config", "no/such/aphex-config.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read config file no/such/aphex-config.yaml"));
}

#[test]
fn a_usage_error_exits_2() {
    let out = validate(&["--format", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--format"));
}
