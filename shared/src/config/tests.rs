//! Properties of config checking: generated valid configs validate and round-trip; one injected fault
//! yields exactly its diagnostic at the right path and line; nothing panics on arbitrary input.

use indexmap::IndexMap;
use proptest::prelude::*;
use serde_json::{Value as Json, json};

use super::*;

// ---- a strategy for valid configs -------------------------------------------------------------

/// Strings that YAML would read as something else unless quoted, mixed with ordinary ones.
fn tricky_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9 ./=-]{0,24}",
        Just("true".to_owned()),
        Just("123".to_owned()),
        Just("0o17".to_owned()),
        Just("1.0".to_owned()),
        Just("null".to_owned()),
        Just("~".to_owned()),
        Just("- item".to_owned()),
        Just("key: value".to_owned()),
        Just("#not a comment".to_owned()),
        Just("'quoted'".to_owned()),
        Just("\"double\"".to_owned()),
        Just("multi\nline".to_owned()),
        Just("npm run build -- --env=prod".to_owned()),
        Just("tab\there".to_owned()),
    ]
}

fn command() -> impl Strategy<Value = String> {
    tricky_text().prop_map(|t| if t.trim().is_empty() { "true".into() } else { t })
}

fn env_map() -> impl Strategy<Value = IndexMap<String, String>> {
    prop::collection::vec(("[A-Z_][A-Z0-9_]{0,10}", tricky_text()), 0..4)
        .prop_map(|pairs| pairs.into_iter().collect())
}

fn account() -> impl Strategy<Value = String> {
    "[0-9]{12}"
}

fn stacks() -> impl Strategy<Value = Vec<StackRef>> {
    // Unique names; each stack may depend on any earlier one, so there is never a cycle.
    prop::collection::btree_set("[A-Z][A-Za-z0-9]{0,8}(-[a-z0-9]{1,4})?", 1..6).prop_flat_map(|names| {
        let names: Vec<String> = names.into_iter().collect();
        let n = names.len();
        let deps = prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 0..3), n);
        let paths = prop::collection::vec(prop::option::of("lib/[a-z-]{1,10}\\.ts"), n);
        (Just(names), deps, paths).prop_map(|(names, deps, paths)| {
            names
                .iter()
                .enumerate()
                .zip(deps.into_iter().zip(paths))
                .map(|((j, name), (picks, path))| {
                    let mut depends_on: Vec<String> = Vec::new();
                    if j > 0 {
                        for pick in picks {
                            let dep = names[pick.index(j)].clone();
                            if !depends_on.contains(&dep) {
                                depends_on.push(dep);
                            }
                        }
                    }
                    StackRef { name: name.clone(), path, depends_on, parameters: Default::default() }
                })
                .collect()
        })
    })
}

fn environment(name: String) -> impl Strategy<Value = Environment> {
    let region = prop::sample::select(regions::REGIONS);
    (
        Just(name),
        region,
        account(),
        any::<bool>(),
        prop_oneof![Just(Approval::None), Just(Approval::Manual)],
        stacks(),
        prop::option::of((prop::collection::vec(command(), 1..3), 1u32..=1440)),
        env_map(),
    )
        .prop_map(|(name, region, account, with_role, approval, stacks, tests, env)| Environment {
            role: with_role.then(|| format!("arn:{}:iam::{account}:role/aphex-deploy", region.partition)),
            name,
            region: region.name.to_owned(),
            account,
            approval,
            stacks,
            tests: tests.map(|(commands, timeout_minutes)| TestSettings { commands, timeout_minutes }),
            env,
            deploy_timeout_minutes: crate::config::defaults::deploy_timeout(),
        })
}

fn pipeline() -> impl Strategy<Value = PipelineSettings> {
    (
        prop::option::of("[a-z][a-z0-9]{0,8}/[a-z][a-z0-9-]{0,8}"),
        prop::collection::vec(
            prop::sample::select(vec!["main", "release/*", "feature/**", "v{1,2}.x"]),
            1..3,
        ),
        prop_oneof![Just(Concurrency::Queue), Just(Concurrency::Supersede)],
        1u32..=10080,
        prop::option::of("[a-z][a-z0-9-]{2,20}[a-z0-9]"),
    )
        .prop_map(|(repository, branches, concurrency, timeout_minutes, artifact_bucket)| {
            PipelineSettings {
                repository,
                branches: branches.into_iter().map(str::to_owned).collect(),
                concurrency,
                timeout_minutes,
                artifact_bucket,
                ..PipelineSettings::default()
            }
        })
}

fn notifications() -> impl Strategy<Value = Notifications> {
    (
        any::<bool>(),
        prop::collection::vec("[a-z]{1,8}@[a-z]{1,8}\\.example", 1..3),
        prop::sample::subsequence(vec![NotifyOn::Success, NotifyOn::Failure, NotifyOn::Approval], 0..=3),
    )
        .prop_map(|(slack, email, on)| Notifications {
            slack: slack.then(|| SlackSettings { webhook_secret: "aphex/slack-webhook".into() }),
            email,
            sns_topic_arn: None,
            on,
        })
}

fn valid_config() -> impl Strategy<Value = Config> {
    let names = prop::collection::btree_set("[a-z][a-z0-9-]{0,10}[a-z0-9]", 1..5);
    (
        names.prop_flat_map(|names| names.into_iter().map(environment).collect::<Vec<_>>()),
        pipeline(),
        prop::collection::vec(command(), 1..4),
        env_map(),
        1u32..=1440,
        prop::option::of(notifications()),
    )
        .prop_map(|(environments, pipeline, commands, env, timeout_minutes, notifications)| Config {
            version: ConfigVersion::V1_0,
            pipeline,
            build: BuildSettings { commands, env, timeout_minutes, artifacts: vec![] },
            synth: SynthSettings::default(),
            environments,
            notifications,
        })
}

fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    serde_saphyr::to_string(value).expect("serializes to YAML")
}

// ---- faults -----------------------------------------------------------------------------------

/// A fault to inject, with the path and message fragment of the one diagnostic it must produce.
#[derive(Debug, Clone)]
enum Fault {
    DuplicateEnvironment,
    BadAccount(prop::sample::Index),
    AccountAsNumber(prop::sample::Index),
    UnknownDependsOn(prop::sample::Index, prop::sample::Index),
    Cycle(prop::sample::Index),
    UnknownKey(prop::sample::Index),
}

fn fault() -> impl Strategy<Value = Fault> {
    let i = any::<prop::sample::Index>;
    prop_oneof![
        Just(Fault::DuplicateEnvironment),
        i().prop_map(Fault::BadAccount),
        i().prop_map(Fault::AccountAsNumber),
        (i(), i()).prop_map(|(a, b)| Fault::UnknownDependsOn(a, b)),
        i().prop_map(Fault::Cycle),
        i().prop_map(Fault::UnknownKey),
    ]
}

/// Applies `fault` to the JSON form of `cfg`; returns the expected path, message fragment, and the
/// text the reported line must contain.
fn inject(cfg: &Config, fault: &Fault, doc: &mut Json) -> (String, String, String) {
    let envs = cfg.environments.len();
    match fault {
        Fault::DuplicateEnvironment => {
            let copy = doc["environments"][0].clone();
            doc["environments"].as_array_mut().unwrap().push(copy);
            let name = &cfg.environments[0].name;
            (
                format!("environments[{envs}].name"),
                format!("duplicate environment name `{name}`"),
                name.clone(),
            )
        }
        Fault::BadAccount(i) => {
            let i = i.index(envs);
            doc["environments"][i]["account"] = json!("12345");
            (format!("environments[{i}].account"), "is not a 12-digit AWS account id".into(), "12345".into())
        }
        Fault::AccountAsNumber(i) => {
            let i = i.index(envs);
            let digits = format!("9{}", &cfg.environments[i].account[1..]);
            doc["environments"][i]["account"] = json!(digits.parse::<u64>().unwrap());
            (format!("environments[{i}].account"), format!("YAML reads `{digits}` as a number"), digits)
        }
        Fault::UnknownDependsOn(i, j) => {
            let i = i.index(envs);
            let j = j.index(cfg.environments[i].stacks.len());
            let deps = &mut doc["environments"][i]["stacks"][j]["dependsOn"];
            if deps.is_null() {
                *deps = json!([]);
            }
            deps.as_array_mut().unwrap().push(json!("ZzMissingStack"));
            let k = cfg.environments[i].stacks[j].depends_on.len();
            (
                format!("environments[{i}].stacks[{j}].dependsOn[{k}]"),
                "dependsOn names `ZzMissingStack`, which is not a stack".into(),
                "ZzMissingStack".into(),
            )
        }
        Fault::Cycle(i) => {
            let i = i.index(envs);
            let stacks = &cfg.environments[i].stacks;
            let a = &stacks[0].name;
            if stacks.len() == 1 {
                doc["environments"][i]["stacks"][0]["dependsOn"] = json!([a]);
                return (
                    format!("environments[{i}].stacks[0].dependsOn[0]"),
                    format!("{a} -> {a}"),
                    a.clone(),
                );
            }
            // The last stack may only depend on earlier ones; make the first depend on it: one cycle,
            // closed by the first stack's new dependsOn entry. Its shortest form depends on the graph,
            // so only the start of the cycle is asserted.
            let last = &stacks[stacks.len() - 1].name;
            let reaches_first = reaches(stacks, stacks.len() - 1, 0);
            doc["environments"][i]["stacks"][0]["dependsOn"] = json!([last]);
            if !reaches_first {
                // No way back to the first stack: add one so there is exactly one cycle.
                let deps = &mut doc["environments"][i]["stacks"][stacks.len() - 1]["dependsOn"];
                if deps.is_null() {
                    *deps = json!([]);
                }
                deps.as_array_mut().unwrap().push(json!(a));
            }
            (format!("environments[{i}].stacks[0].dependsOn[0]"), format!(": {a} -> {last}"), last.clone())
        }
        Fault::UnknownKey(i) => {
            let i = i.index(envs);
            doc["environments"][i].as_object_mut().unwrap().insert("aproval".into(), json!("manual"));
            (format!("environments[{i}].aproval"), "unknown field `aproval`".into(), "aproval".into())
        }
    }
}

/// Whether stack `from` reaches stack `to` through dependsOn.
fn reaches(stacks: &[StackRef], from: usize, to: usize) -> bool {
    let mut todo = vec![from];
    let mut seen = vec![false; stacks.len()];
    while let Some(s) = todo.pop() {
        if s == to {
            return true;
        }
        if std::mem::replace(&mut seen[s], true) {
            continue;
        }
        for dep in &stacks[s].depends_on {
            todo.extend(stacks.iter().position(|x| &x.name == dep));
        }
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_valid_config_validates_and_round_trips(cfg in valid_config()) {
        let text = to_yaml(&cfg);
        let report = check("gen.yaml", &text);
        prop_assert_eq!(&report.diagnostics, &vec![], "{}", text);
        prop_assert_eq!(report.config.as_ref(), Some(&cfg), "{}", text);
    }

    #[test]
    fn one_injected_fault_yields_exactly_its_diagnostic(cfg in valid_config(), fault in fault()) {
        let mut doc = serde_json::to_value(&cfg).unwrap();
        let (path, fragment, on_line) = inject(&cfg, &fault, &mut doc);
        let text = to_yaml(&doc);
        let report = check("gen.yaml", &text);
        prop_assert!(report.config.is_none());
        prop_assert_eq!(report.diagnostics.len(), 1, "{:#?}\n{}", report.diagnostics, text);
        let d = &report.diagnostics[0];
        prop_assert_eq!(&d.path, &path, "{}", text);
        prop_assert!(d.message.contains(&fragment), "{:?} lacks {:?}", d.message, fragment);
        let line = text.lines().nth(d.line as usize - 1).unwrap_or_default();
        let at: String = line.chars().skip(d.column as usize - 1).collect();
        prop_assert!(at.contains(&on_line), "line {} col {}: {:?} lacks {:?}\n{}", d.line, d.column, line, on_line, text);
    }

    #[test]
    fn checking_never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = check("any.yaml", &text);
    }

    #[test]
    fn checking_never_panics_on_yaml_like_text(text in "([a-z]{1,3}|[ \\n\\t:\\-\\[\\]{},#&*!|>'\"%@`?0-9]){0,120}") {
        let _ = check("yamlish.yaml", &text);
    }

    #[test]
    fn checking_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = check_bytes("bytes.yaml", &bytes);
    }

    #[test]
    fn checking_never_panics_on_damaged_valid_configs(
        cfg in valid_config(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..3, "[ \\n:\\-\\[\\]{}#'\"a0]"), 1..6),
    ) {
        let mut text: Vec<char> = to_yaml(&cfg).chars().collect();
        for (at, op, c) in edits {
            if text.is_empty() { break; }
            let at = at.index(text.len());
            match op {
                0 => { text.remove(at); }
                1 => text.insert(at, c.chars().next().unwrap()),
                _ => text[at] = c.chars().next().unwrap(),
            }
        }
        let text: String = text.into_iter().collect();
        let report = check("damaged.yaml", &text);
        // Whatever happened, a report without a config explains why.
        prop_assert!(report.config.is_some() || report.count(Severity::Error) > 0);
    }
}

// ---- examples of behaviour ---------------------------------------------------------------------

const MINIMAL: &str = "version: \"1.0\"\nbuild:\n  commands: [npm ci]\nenvironments:\n  - name: dev\n    region: us-east-1\n    account: \"123456789012\"\n    stacks:\n      - name: App\n";

#[test]
fn warnings_do_not_make_a_config_invalid() {
    let text = MINIMAL.replace("    stacks:", "    role: arn:aws:iam::999999999999:role/deploy\n    stacks:");
    let report = check("w.yaml", &text);
    assert_eq!(report.count(Severity::Warning), 1);
    assert!(report.config.is_some());
    assert!(parse("w.yaml", &text).is_ok());
}

#[test]
fn parse_returns_only_errors() {
    let text = MINIMAL
        .replace("us-east-1", "us-east-9")
        .replace("    stacks:", "    role: arn:aws:iam::999999999999:role/deploy\n    stacks:");
    let errors = parse("e.yaml", &text).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "environments[0].region");
}

#[test]
fn non_utf8_input_points_at_the_bad_byte() {
    let report = check_bytes("b.yaml", b"version: \"1.0\"\nbuild: \xff\n");
    assert_eq!(report.diagnostics.len(), 1);
    let d = &report.diagnostics[0];
    assert_eq!((d.line, d.column), (2, 8));
    assert!(d.message.contains("UTF-8"));
}

#[test]
fn integral_floats_count_as_integers_like_json_schema_says() {
    let text = MINIMAL.replace("  commands: [npm ci]", "  commands: [npm ci]\n  timeoutMinutes: 45.0");
    let cfg = parse("f.yaml", &text).unwrap();
    assert_eq!(cfg.build.timeout_minutes, 45);
}

#[test]
fn anchors_and_merge_keys_work_in_configs() {
    let text = "version: \"1.0\"\nbuild:\n  commands: [npm ci]\nenvironments:\n  - &dev\n    name: dev\n    region: us-east-1\n    account: \"123456789012\"\n    stacks: [{name: App}]\n  - <<: *dev\n    name: prod\n    approval: manual\n";
    let cfg = parse("a.yaml", text).unwrap();
    assert_eq!(cfg.environments[1].name, "prod");
    assert_eq!(cfg.environments[1].account, "123456789012");
    assert_eq!(cfg.environments[1].approval, Approval::Manual);
}

#[test]
fn did_you_mean_prefers_close_candidates_and_case_matches() {
    assert_eq!(did_you_mean("stackz", ["name", "stacks", "tests"]), Some("stacks"));
    assert_eq!(did_you_mean("MANUAL", ["none", "manual"]), Some("manual"));
    assert_eq!(did_you_mean("zzzzzz", ["name", "stacks"]), None);
}

#[test]
fn diagnostics_come_in_source_order() {
    let text = MINIMAL.replace("us-east-1", "mars-1").replace("version: \"1.0\"", "version: \"2.0\"");
    let report = check("o.yaml", &text);
    let lines: Vec<u64> = report.diagnostics.iter().map(|d| d.line).collect();
    assert_eq!(lines, [1, 6]);
}

#[test]
fn a_large_file_reports_schema_and_rule_problems_like_a_small_one() {
    // Large files check the rules on a second thread; the outcome must not depend on that.
    let stack = |e: usize, s: usize| {
        let dep = if s > 0 { format!("\n        dependsOn: [S{}]", s - 1) } else { String::new() };
        format!("      - name: S{s}\n        path: lib/e{e}-s{s}.ts{dep}\n")
    };
    let env = |e: usize, stacks: usize| {
        let all: String = (0..stacks).map(|s| stack(e, s)).collect();
        format!("  - name: e{e}\n    region: us-east-1\n    account: \"{:012}\"\n    stacks:\n{all}", e + 1)
    };
    let head = "version: \"1.0\"\nbuild:\n  commands: [make]\nenvironments:\n";
    let broken = |envs: usize, stacks: usize| {
        let body: String = (0..envs).map(|e| env(e, stacks)).collect();
        let text = format!("{head}{body}").replacen("region: us-east-1", "region: mars-1", 1).replacen(
            "dependsOn: [S0]",
            "dependsOn: [S9]",
            1,
        );
        (text.len(), check("big.yaml", &text).diagnostics)
    };
    let (small_len, small) = broken(1, 3);
    let (large_len, large) = broken(40, 20);
    assert!(small_len < 32 * 1024 && large_len > 32 * 1024, "{small_len} {large_len}");
    let summary =
        |d: &[Diagnostic]| -> Vec<(u64, String)> { d.iter().map(|d| (d.line, d.path.clone())).collect() };
    assert_eq!(summary(&small), summary(&large));
    assert_eq!(
        summary(&large),
        [(6, "environments[0].region".to_owned()), (13, "environments[0].stacks[1].dependsOn[0]".to_owned())]
    );
}
