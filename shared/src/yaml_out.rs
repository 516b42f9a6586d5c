//! Every YAML document aphex writes goes through [`to_string`]: the one place that decides how a scalar
//! is written, so that a YAML 1.1 reader (kubectl, PyYAML, Go's yaml.v2) and a YAML 1.2 reader load
//! exactly the values of the JSON form.
//!
//! A plain scalar such as `no`, `on`, `y`, `~`, `012`, `0x1F`, `1e3`, `1_000`, `1:20` (base 60 in
//! YAML 1.1), `2001-12-14`, `.inf` or `+1` is a string in one reader and a boolean, null, number or
//! date in another. The emitter is serde-saphyr's in its YAML 1.1-compatible mode (`yaml_12: false`),
//! which quotes every string that YAML 1.1 *or* 1.2 would resolve to another type (1.1's booleans,
//! base-60 numbers, timestamps, underscores in numbers, and the `=` and `<<` tokens, besides 1.2's
//! core schema), in keys and values alike. Block scalars (`|`, `>`) are off: a multi-line string is
//! written double-quoted with escapes, which every reader folds the same way.

use serde::Serialize;

/// Why a value could not be written as YAML (a map with a non-scalar key, a non-finite float in a
/// place that cannot hold one).
#[derive(Debug, thiserror::Error)]
#[error("could not write YAML: {0}")]
pub struct YamlOutError(#[from] serde_saphyr::SerializeError);

/// The emitter's settings (see the module documentation).
fn options() -> serde_saphyr::SerializerOptions {
    serde_saphyr::ser_options! {
        yaml_12: false,
        prefer_block_scalars: false,
        quote_all: false,
        indent_step: 2,
    }
}

/// `value` as one YAML document, safe for YAML 1.1 and 1.2 readers alike.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, YamlOutError> {
    Ok(serde_saphyr::to_string_with_options(value, options())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Loads `yaml` with both in-process readers (libyaml through serde_yaml_ng, and serde-saphyr's
    /// YAML 1.2 parser) and checks each gives `expect`.
    pub(crate) fn check_round_trip(yaml: &str, expect: &Value) {
        let ng: Value =
            serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("serde_yaml_ng: {e}\n{yaml}"));
        assert_eq!(&ng, expect, "serde_yaml_ng read\n{yaml}");
        let saphyr: Value =
            serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("serde-saphyr: {e}\n{yaml}"));
        assert_eq!(&saphyr, expect, "serde-saphyr read\n{yaml}");
    }

    /// The scalars the issue names (and their kin): each is quoted, as a value and as a key.
    pub(crate) const AMBIGUOUS: &[&str] = &[
        "no",
        "No",
        "NO",
        "on",
        "off",
        "yes",
        "y",
        "Y",
        "n",
        "N",
        "true",
        "False",
        "~",
        "null",
        "Null",
        "",
        "012",
        "0x1F",
        "0x1f",
        "1e3",
        "1E3",
        "1_000",
        "2001-12-14",
        "2001-12-14t21:59:43.10-05:00",
        ".inf",
        "-.inf",
        ".NaN",
        "0o17",
        "0b101",
        "+1",
        "-1",
        "1:20",
        "190:20:30",
        "1.5",
        ".5",
        "5.",
        "=",
        "<<",
        "#x",
        "- x",
        "-",
        "? x",
        ": x",
        "x: y",
        "x #y",
        "@x",
        "`x",
        "!x",
        "&x",
        "*x",
        "%x",
        "|",
        ">",
        "[x]",
        "{x}",
        "'x'",
        "\"x\"",
        " lead",
        "trail ",
        "a\nb",
        "tab\tx",
        "\u{feff}bom",
        "---",
        "...",
    ];

    #[test]
    fn ambiguous_scalars_are_quoted_as_values_and_keys() {
        for s in AMBIGUOUS {
            let mut map = serde_json::Map::new();
            map.insert((*s).to_owned(), json!(s));
            let doc = json!({ "value": s, "list": [s], "map": map });
            let yaml = to_string(&doc).unwrap();
            check_round_trip(&yaml, &doc);
            let line = yaml.lines().find(|l| l.starts_with("value:")).unwrap_or_default();
            assert!(
                s.contains('\n') || line.contains('"') || line.contains('\''),
                "{s:?} is written plain: {line}"
            );
        }
    }

    #[test]
    fn plain_strings_stay_plain() {
        for s in [
            "dev",
            "main",
            "aphex-pipeline",
            "us-east-1",
            "v1.2.3",
            "release/1.2",
            "{{workflow.parameters.x}}",
        ] {
            let yaml = to_string(&json!({ "k": s })).unwrap();
            let quoted = yaml.contains('"') || yaml.contains('\'');
            // Argo's `{{...}}` expressions start with a flow indicator and must be quoted; the rest not.
            assert_eq!(quoted, s.starts_with('{'), "{s:?}: {yaml}");
        }
    }

    #[test]
    fn numbers_booleans_and_nulls_keep_their_types() {
        let doc =
            json!({"i": 21600, "neg": -3, "f": 1.5, "t": true, "n": null, "s": "21600", "e": [], "m": {}});
        check_round_trip(&to_string(&doc).unwrap(), &doc);
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(AMBIGUOUS).prop_map(str::to_owned),
            "[-+.:_0-9a-zA-Z~#@ ]{0,12}",
            "[0-9][0-9_:.eExXoObB+-]{0,8}",
            "\\PC{0,16}",
        ]
    }

    /// Environment names the config accepts (`^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$`), the ambiguous ones
    /// first.
    fn env_name() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(
                &[
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
                    "1-0",
                    "0",
                    "10",
                    "1e-3",
                ][..]
            )
            .prop_map(str::to_owned),
            "[a-z0-9]([-a-z0-9]{0,6}[a-z0-9])?",
        ]
    }

    /// Variable names the config accepts (`^[A-Za-z_][A-Za-z0-9_]*$`).
    fn var_name() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(
                &["Y", "N", "NO", "ON", "OFF", "YES", "Null", "TRUE", "_", "NaN", "Inf"][..]
            )
            .prop_map(str::to_owned),
            "[A-Za-z_][A-Za-z0-9_]{0,6}",
        ]
    }

    /// A config with generated environment names, variable names and values, stack names and commands.
    pub(crate) fn config_text(envs: &[(String, String, String)], stack: &str, command: &str) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let mut text = format!("version: \"1.0\"\nbuild: {{ commands: [{}] }}\nenvironments:\n", q(command));
        for (i, (name, var, value)) in envs.iter().enumerate() {
            let test = if value.trim().is_empty() { "true" } else { value.as_str() };
            text.push_str(&format!(
                "  - name: {}\n    region: us-east-1\n    account: \"11111111111{}\"\n    env: {{ {}: {} }}\n    stacks: [{{ name: {} }}]\n    tests: {{ commands: [{}] }}\n",
                q(name), i % 10, q(var), q(value), q(stack), q(test)
            ));
        }
        text
    }

    fn stack_name() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(
                &["012", "1e3", "0x1F", "1_000", "2001-12-14", "Y", "No", "true", "1.5"][..]
            )
            .prop_map(str::to_owned),
            "[A-Za-z0-9*][A-Za-z0-9/*._-]{0,8}",
        ]
    }

    /// Strings a config file can hold (a byte order mark only starts a file).
    fn config_value() -> impl Strategy<Value = String> {
        scalar().prop_map(|s| s.replace('\u{feff}', ""))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A rendered WorkflowTemplate with generated names and values reads back, through both
        /// in-process readers, to exactly its JSON form.
        #[test]
        fn rendered_templates_round_trip(
            envs in proptest::collection::vec((env_name(), var_name(), config_value()), 1..4),
            stack in stack_name(),
            command in config_value().prop_filter("a command has a non-blank character", |c| c.chars().any(|ch| !ch.is_whitespace())),
        ) {
            let mut seen = std::collections::HashSet::new();
            let envs: Vec<_> = envs.into_iter().filter(|(n, _, _)| seen.insert(n.clone())).collect();
            let text = config_text(&envs, &stack, &command);
            let config = crate::config::parse("aphex-config.yaml", &text)
                .unwrap_or_else(|d| panic!("{text}\n{d:?}"));
            let rendered = crate::template::render_config(&config, None).unwrap();
            let yaml = crate::argo::to_yaml(&rendered.template);
            check_round_trip(&yaml, &rendered.document);
        }

        #[test]
        fn any_string_round_trips_through_both_readers(k in scalar(), v in scalar(), w in scalar()) {
            let mut nested = serde_json::Map::new();
            nested.insert(k.clone(), json!([v, w]));
            let doc = json!({ "a": v, "nested": nested, "list": [{ "name": k, "value": w }] });
            check_round_trip(&to_string(&doc).unwrap(), &doc);
        }
    }
}
