//! Config checking against the files in the repository: the examples (valid ones validate, each
//! invalid one yields exactly the diagnostics its `.expect` file states) and the committed schema.

use std::path::{Path, PathBuf};

use aphex::config::{self, Diagnostic, Severity};
use pretty_assertions::assert_eq;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("shared/ sits in the repository").to_owned()
}

/// One expected diagnostic: severity, position, path and a fragment of the message.
#[derive(Debug, PartialEq)]
struct Expected {
    severity: Severity,
    line: u64,
    column: u64,
    path: String,
    fragment: String,
}

/// Parses a `.expect` file (format in examples/invalid/README.md): whether the JSON Schema alone
/// rejects the file, and the diagnostics.
fn parse_expect(text: &str) -> (bool, Vec<Expected>) {
    let mut schema_invalid = None;
    let mut expected = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(v) = line.strip_prefix("schema: ") {
            schema_invalid = Some(v == "invalid");
            continue;
        }
        let (head, fragment) = line.split_once(" | ").expect("`SEVERITY LINE:COL PATH | FRAGMENT`");
        let mut parts = head.split(' ');
        let severity = match parts.next() {
            Some("error") => Severity::Error,
            Some("warning") => Severity::Warning,
            other => panic!("unknown severity {other:?} in `{line}`"),
        };
        let (l, c) = parts.next().and_then(|p| p.split_once(':')).expect("LINE:COL");
        let path = parts.next().expect("a path or `-`");
        expected.push(Expected {
            severity,
            line: l.parse().expect("line number"),
            column: c.parse().expect("column number"),
            path: if path == "-" { String::new() } else { path.to_owned() },
            fragment: fragment.to_owned(),
        });
    }
    (schema_invalid.expect("a `schema:` line"), expected)
}

/// Compares diagnostics with expectations; each message must contain its fragment.
fn check(name: &str, actual: &[Diagnostic], expected: &[Expected]) {
    let shown: Vec<Expected> = actual
        .iter()
        .zip(expected.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(d, e)| Expected {
            severity: d.severity,
            line: d.line,
            column: d.column,
            path: d.path.clone(),
            // Show the fragment when the message contains it, so the diff only shows real mismatches.
            fragment: match e {
                Some(e) if d.message.contains(&e.fragment) => e.fragment.clone(),
                _ => d.message.clone(),
            },
        })
        .collect();
    assert_eq!(shown, expected, "diagnostics of {name}");
}

fn invalid_examples() -> Vec<PathBuf> {
    let dir = repo().join("examples/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("examples/invalid exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_invalid_example_yields_exactly_its_expected_diagnostics() {
    let files = invalid_examples();
    assert!(files.len() >= 20, "only {} invalid examples found", files.len());
    for yaml in files {
        let name = yaml.file_name().unwrap().to_string_lossy().into_owned();
        let expect_file = yaml.with_extension("expect");
        let expect_text = std::fs::read_to_string(&expect_file)
            .unwrap_or_else(|e| panic!("{name} needs {}: {e}", expect_file.display()));
        let (_, expected) = parse_expect(&expect_text);
        let report = config::check(&name, &std::fs::read_to_string(&yaml).unwrap());
        assert!(report.config.is_none(), "{name} must be invalid");
        assert!(
            report.diagnostics.iter().all(|d| d.file == name && d.hint.is_some()),
            "{name}: file and hint"
        );
        check(&name, &report.diagnostics, &expected);
    }
}

#[test]
fn schema_marks_in_expect_files_agree_with_the_generated_schema() {
    // scripts/check-schema relies on these marks when it runs check-jsonschema; check them here with
    // the JSON Schema alone (YAML read by serde-saphyr, validated by the jsonschema crate).
    let validator = jsonschema::draft202012::new(&config::json_schema()).expect("schema compiles");
    for yaml in invalid_examples() {
        let (schema_invalid, _) =
            parse_expect(&std::fs::read_to_string(yaml.with_extension("expect")).unwrap());
        let text = std::fs::read_to_string(&yaml).unwrap();
        let passes = match serde_saphyr::from_str::<serde_json::Value>(&text) {
            Ok(json) => validator.is_valid(&json),
            Err(_) => false,
        };
        assert_eq!(
            passes,
            !schema_invalid,
            "{}: the schema alone {}",
            yaml.display(),
            if passes { "accepts it" } else { "rejects it" }
        );
    }
}

#[test]
fn valid_examples_validate_without_diagnostics() {
    for example in ["examples/minimal/aphex-config.yaml", "examples/multi-env/aphex-config.yaml"] {
        let path = repo().join(example);
        let report = config::check(example, &std::fs::read_to_string(&path).unwrap());
        assert_eq!(report.diagnostics, vec![], "{example}");
        assert!(report.config.is_some(), "{example}");
    }
}

#[test]
fn the_minimal_example_reads_as_the_product_description_says() {
    let cfg = config::load(&repo().join("examples/minimal/aphex-config.yaml")).expect("valid");
    assert_eq!(cfg.build.commands, ["npm install", "npm run build"]);
    let dev = cfg.environment("dev").expect("dev");
    assert_eq!(dev.cdk_environment(), "aws://123456789012/us-east-1");
    assert_eq!(dev.stacks[0].name, "MyAppStack");
    assert_eq!(dev.stacks[0].path.as_deref(), Some("lib/my-app-stack.ts"));
    // Documented defaults.
    assert_eq!(cfg.pipeline.branches, ["main"]);
    assert_eq!(cfg.pipeline.concurrency, config::Concurrency::Queue);
    assert_eq!(cfg.synth.command, "npx cdk synth");
    assert_eq!(dev.approval, config::Approval::None);
}

#[test]
fn the_multi_env_example_covers_what_other_parts_render() {
    let cfg = config::load(&repo().join("examples/multi-env/aphex-config.yaml")).expect("valid");
    let names: Vec<&str> = cfg.environments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["dev", "staging", "prod"]);
    let accounts: std::collections::BTreeSet<&str> =
        cfg.environments.iter().map(|e| e.account.as_str()).collect();
    assert_eq!(accounts.len(), 3);
    let regions: std::collections::BTreeSet<&str> =
        cfg.environments.iter().map(|e| e.region.as_str()).collect();
    assert_eq!(regions.len(), 2);
    let prod = cfg.environment("prod").unwrap();
    assert_eq!(prod.approval, config::Approval::Manual);
    assert!(prod.stacks.iter().any(|s| !s.depends_on.is_empty()));
    assert!(cfg.environments.iter().all(|e| e.tests.is_some()));
    assert!(cfg.notifications.as_ref().is_some_and(|n| n.slack.is_some() && !n.email.is_empty()));
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let err = config::load(Path::new("/nonexistent/aphex-config.yaml")).unwrap_err();
    assert!(matches!(err, config::LoadError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/aphex-config.yaml"));
}

/// The committed schema must be what the model generates. Refresh it with
/// `APHEX_BLESS=1 cargo test -p aphex-shared --test config committed_schema`.
#[test]
fn committed_schema_is_current() {
    let path = repo().join(config::SCHEMA_FILE);
    let generated = config::json_schema_text();
    if std::env::var_os("APHEX_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write the schema");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale (the model changed). Refresh it with\n    APHEX_BLESS=1 cargo test -p aphex-shared --test config committed_schema\nand commit the result.",
        config::SCHEMA_FILE
    );
}

#[test]
fn every_schema_field_has_a_description() {
    fn walk(value: &serde_json::Value, at: &str, missing: &mut Vec<String>) {
        if let Some(props) = value.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                if prop.get("description").is_none() {
                    missing.push(format!("{at}.{name}"));
                }
            }
        }
        match value {
            serde_json::Value::Object(map) => {
                map.iter().for_each(|(k, v)| walk(v, &format!("{at}/{k}"), missing))
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, at, missing)),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    walk(&config::json_schema(), "", &mut missing);
    assert_eq!(missing, Vec::<String>::new());
}
