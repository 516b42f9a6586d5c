//! Rendering every example config: Argo schema (strict), golden YAML snapshots, the committed
//! `argo/workflow-template.yaml`, and property tests of the plan and template over generated configs.
//! Refresh snapshots with `APHEX_BLESS=1 cargo test -p aphex-shared --test render_examples`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aphex::argo::{self, keys};
use aphex::config::{Approval, Config};
use aphex::plan::{self, StageKind};
use aphex::template;
use proptest::prelude::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `examples/*/aphex-config.yaml` (other examples are added over time; all must render).
fn example_configs() -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(repo().join("examples")).unwrap_or_else(|e| panic!("examples/: {e}")) {
        let dir = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let file = dir.join("aphex-config.yaml");
        if file.is_file() {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            found.push((name, file));
        }
    }
    found.sort();
    assert!(found.len() >= 2, "expected the minimal and multi-env examples, found {found:?}");
    found
}

fn rendered_yaml(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let r = template::render_text(&path.display().to_string(), &text, None)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    argo::to_yaml(&r.template)
}

fn bless() -> bool {
    std::env::var_os("APHEX_BLESS").is_some()
}

/// Compares `actual` with the committed file, or rewrites it under APHEX_BLESS.
fn check_snapshot(file: &Path, actual: &str) {
    if bless() {
        std::fs::write(file, actual).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        return;
    }
    let expected = std::fs::read_to_string(file).unwrap_or_default();
    if expected != actual {
        let diff = template::diff::unified("committed", "rendered", &expected, actual, 2);
        panic!(
            "{} is stale:\n{diff}\nrefresh with `APHEX_BLESS=1 cargo test -p aphex-shared --test render_examples`",
            file.display()
        );
    }
}

#[test]
fn every_example_renders_a_schema_valid_template() {
    for (name, path) in example_configs() {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // render_text checks the strict schema itself; check again here so the test states it.
        let r = template::render_text(
            "aphex-config.yaml",
            &text,
            Some("0123456789abcdef0123456789abcdef01234567"),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let result = argo::validate_workflow_template(&r.document);
        assert!(result.is_ok(), "{name}: {result:?}");
    }
}

#[test]
fn golden_snapshots_of_every_example() {
    for (name, path) in example_configs() {
        check_snapshot(
            &repo().join("shared/tests/golden").join(format!("{name}.yaml")),
            &rendered_yaml(&path),
        );
    }
}

#[test]
fn committed_argo_template_is_current() {
    let yaml = rendered_yaml(&repo().join("examples/multi-env/aphex-config.yaml"));
    check_snapshot(&repo().join("argo/workflow-template.yaml"), &yaml);
}

#[test]
fn static_manifests_are_kubernetes_objects() {
    for file in ["argo/namespace.yaml", "argo/rbac.yaml"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        for doc in text.split("\n---\n") {
            let v: serde_json::Value = serde_yaml_ng::from_str(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            for field in ["/apiVersion", "/kind", "/metadata/name"] {
                assert!(v.pointer(field).and_then(|s| s.as_str()).is_some(), "{file}: no {field} in {v}");
            }
        }
    }
}

// ---- property tests over generated configs ----

/// A valid config: 1-6 environments with 1-8 stacks each, dependencies only on earlier-listed stacks
/// (so acyclic) but listed in shuffled order, random gates and tests.
fn config_strategy() -> impl Strategy<Value = Config> {
    let env =
        (1usize..8, proptest::collection::vec(any::<u64>(), 8), any::<bool>(), any::<bool>(), any::<u64>());
    proptest::collection::vec(env, 1..6).prop_map(|envs| {
        let mut yaml = String::from(
            "version: \"1.0\"\npipeline: { name: prop }\nbuild: { commands: [make] }\nenvironments:\n",
        );
        for (i, (n, seeds, gate, tests, shuffle)) in envs.into_iter().enumerate() {
            yaml.push_str(&format!(
                "  - name: e{i}\n    region: us-east-1\n    account: \"{:012}\"\n",
                i + 1
            ));
            if gate {
                yaml.push_str("    approval: manual\n");
            }
            if tests {
                yaml.push_str("    tests: { commands: [make test] }\n");
            }
            yaml.push_str("    stacks:\n");
            let mut order: Vec<usize> = (0..n).collect();
            // A deterministic shuffle from the seed: listed order must not matter for correctness.
            order.sort_by_key(|k| (shuffle.rotate_left(*k as u32 * 7)) % 1000);
            for k in order {
                let deps: Vec<String> =
                    (0..k).filter(|j| seeds[k] >> j & 1 == 1).map(|j| format!("S{j}")).collect();
                yaml.push_str(&format!("      - {{ name: S{k}, dependsOn: [{}] }}\n", deps.join(", ")));
            }
        }
        aphex::config::parse("prop.yaml", &yaml).unwrap_or_else(|d| panic!("{yaml}\n{d:?}"))
    })
}

/// The stage words (`validate`, `deploy`, ...) a container runs: one for `aphex step X`, each chained
/// stage's for `aphex step chain N words.. M words..`.
fn chained_stage_words(args: &[String]) -> Vec<String> {
    if args.get(1).map(String::as_str) != Some("chain") {
        return args.get(1).cloned().into_iter().collect();
    }
    let mut out = Vec::new();
    let mut rest = &args[2..];
    while let Some((n, tail)) = rest.split_first() {
        let n: usize = n.parse().unwrap_or(usize::MAX);
        if n > tail.len() || n < 2 {
            return vec![format!("bad chain at {rest:?}")];
        }
        out.push(tail[1].clone());
        rest = &tail[n..];
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn plan_and_template_keep_the_config_invariants(config in config_strategy()) {
        let p = plan::build(&config);
        prop_assert_eq!(plan::check(&config), Ok(()));
        // Every stack appears exactly once per environment, after its dependencies.
        for env in &config.environments {
            let deploy = p.stage(&format!("deploy-{}", env.name));
            let Some(StageKind::Deploy { stacks, .. }) = deploy.map(|s| &s.kind) else {
                return Err(TestCaseError::fail(format!("no deploy stage for {}", env.name)));
            };
            let mut position = BTreeMap::new();
            for (i, s) in stacks.iter().enumerate() {
                prop_assert!(position.insert(s.name.clone(), i).is_none(), "{} twice", s.name);
            }
            prop_assert_eq!(position.len(), env.stacks.len());
            for s in &env.stacks {
                for d in &s.depends_on {
                    prop_assert!(position[d] < position[&s.name], "{} before its dependency {}", s.name, d);
                    let (ws, wd) = (stacks[position[&s.name]].wave, stacks[position[d]].wave);
                    prop_assert!(wd < ws, "wave of {} not after {}", s.name, d);
                }
            }
        }
        // Environments keep their order; each stage comes after its dependencies.
        let order: Vec<&str> = p.stages.iter().filter_map(|s| match &s.kind {
            StageKind::Deploy { env, .. } => Some(env.as_str()),
            _ => None,
        }).collect();
        let listed: Vec<&str> = config.environments.iter().map(|e| e.name.as_str()).collect();
        prop_assert_eq!(order, listed);
        for (i, s) in p.stages.iter().enumerate() {
            for d in &s.depends_on {
                let j = p.stages.iter().position(|o| &o.id == d);
                prop_assert!(j.is_some_and(|j| j < i), "{} depends on later or unknown {}", s.id, d);
            }
        }

        // The template: mutex per environment, gates exactly where asked, exit handler, schema-valid.
        let r = template::render_config(&config, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let t = &r.template;
        prop_assert_eq!(&t.spec.on_exit, "finalize");
        prop_assert!(t.spec.template("finalize").and_then(|f| f.container.as_ref()).is_some());
        for env in &config.environments {
            let group = t.spec.template(&format!("env-{}", env.name));
            let mutex = group.and_then(|g| g.synchronization.as_ref()).map(|s| s.mutexes[0].name.clone());
            prop_assert_eq!(mutex, Some(format!("aphex-prop-{}", env.name)));
            let gate = t.spec.template(&format!("approve-{}", env.name));
            prop_assert_eq!(gate.is_some_and(|g| g.suspend.is_some()), env.approval == Approval::Manual);
            // Tests run in the deploy's pod, after the deploy.
            let pod = t.spec.template(&format!("deploy-{}", env.name));
            let stages = pod.and_then(|p| p.metadata.as_ref()).and_then(|m| m.annotations.get(keys::STAGES));
            let want = env.tests.is_some().then(|| format!(r#"["deploy-{0}","test-{0}"]"#, env.name));
            prop_assert_eq!(stages, want.as_ref());
        }
        // Every stage but a gate runs exactly once: in the pod the plan gives it, in plan order.
        let mut ran = Vec::new();
        for tpl in &t.spec.templates {
            let Some(c) = &tpl.container else { continue };
            ran.extend(chained_stage_words(&c.args).into_iter().map(|w| (tpl.name.clone(), w)));
        }
        let want: Vec<(String, String)> = p.stages.iter().chain(std::iter::once(&p.finalize))
            .filter(|s| !s.args.is_empty())
            .map(|s| (s.pod.clone(), s.argv(|_| String::new())[2].clone()))
            .collect();
        let mut sorted_want = want.clone();
        sorted_want.sort_by_key(|(pod, _)| p.pods().iter().position(|(q, _)| q == pod));
        prop_assert_eq!(ran, sorted_want);
        prop_assert_eq!(t.metadata.annotations.get(keys::CONFIG_SHA256), Some(&r.config_sha256));
        // Deterministic: the same config renders byte-identical YAML.
        let again = template::render_config(&config, None).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(argo::to_yaml(&again.template), argo::to_yaml(t));
    }
}
