//! Unit tests of render + apply + history + rollback against the in-memory store.

use pretty_assertions::assert_eq;
use serde_json::Value;

use super::*;
use crate::argo::keys;

const NS: &str = "argo";
const NAME: &str = "shop";

fn config(envs: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "version: \"1.0\"\npipeline: { name: shop }\nbuild: { commands: [npm ci] }\nenvironments:\n",
    );
    for (name, stacks) in envs {
        s.push_str(&format!(
            "  - {{ name: {name}, region: us-east-1, account: \"111111111111\", stacks: {stacks} }}\n"
        ));
    }
    s
}

fn base() -> String {
    config(&[("dev", "[{name: A}, {name: B, dependsOn: [A]}]")])
}

async fn apply_text(store: &MemoryTemplateStore, text: &str) -> Result<ApplyOutcome, TemplateError> {
    apply(store, "aphex-config.yaml", text, Some("abc1234"), ApplyOptions::default()).await
}

fn version(outcome: &ApplyOutcome) -> u64 {
    match outcome {
        ApplyOutcome::Unchanged { version, .. } | ApplyOutcome::Applied { version, .. } => *version,
    }
}

fn live(store: &MemoryTemplateStore) -> Value {
    store.template(NS, NAME).unwrap_or_default()
}

#[tokio::test]
async fn creates_then_skips_unchanged_config() {
    let store = MemoryTemplateStore::new();
    let first = apply_text(&store, &base()).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(&first, ApplyOutcome::Applied { version: 1, previous_version: None, .. }), "{first:?}");
    assert_eq!(live(&store).pointer("/metadata/annotations/aphex.dev~1template-version"), Some(&"1".into()));
    // The same config, reformatted and commented, hashes the same: nothing is written.
    let again =
        format!("# a comment\n{}", base().replace("{ commands: [npm ci] }", "\n  commands:\n    - npm ci"));
    let second = apply_text(&store, &again).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(second, ApplyOutcome::Unchanged { version: 1, .. }), "{second:?}");
    assert_eq!(store.template_applies(), 1);
}

#[tokio::test]
async fn a_new_environment_is_a_new_version_and_the_old_one_goes_to_history() {
    let store = MemoryTemplateStore::new();
    apply_text(&store, &base()).await.unwrap_or_else(|e| panic!("{e}"));
    let two = config(&[("dev", "[{name: A}, {name: B, dependsOn: [A]}]"), ("qa", "[{name: A}]")]);
    let outcome = apply_text(&store, &two).await.unwrap_or_else(|e| panic!("{e}"));
    let ApplyOutcome::Applied { version, previous_version, changes, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((version, previous_version), (2, Some(1)));
    for c in ["added template env-qa", "added template deploy-qa", "changed template main"] {
        assert!(changes.contains(&c.to_owned()), "{changes:?}");
    }
    let h = history(&store, NS, NAME).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.live.map(|l| l.version), Some(2));
    assert_eq!(h.previous.iter().map(|e| e.version).collect::<Vec<_>>(), [1]);
    assert_eq!(h.previous[0].commit.as_deref(), Some("abc1234"));
}

#[tokio::test]
async fn reordering_stacks_changes_the_deploy_template() {
    let store = MemoryTemplateStore::new();
    apply_text(&store, &base()).await.unwrap_or_else(|e| panic!("{e}"));
    let reordered = config(&[("dev", "[{name: B}, {name: A, dependsOn: [B]}]")]);
    let outcome = apply_text(&store, &reordered).await.unwrap_or_else(|e| panic!("{e}"));
    let ApplyOutcome::Applied { changes, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(changes, ["changed template deploy-dev"]);
    let stacks = live(&store).pointer("/spec/templates").and_then(Value::as_array).and_then(|ts| {
        ts.iter()
            .find(|t| t["name"] == "deploy-dev")
            .map(|t| t["metadata"]["annotations"]["aphex.dev/stacks"].clone())
    });
    assert_eq!(stacks, Some(Value::String(r#"[["B"],["A"]]"#.into())));
    let rendered = render_text("c.yaml", &reordered, None).unwrap_or_else(|e| panic!("{e}"));
    let Some(crate::plan::StageKind::Deploy { stacks, .. }) =
        rendered.plan.stage("deploy-dev").map(|s| &s.kind)
    else {
        panic!("no deploy-dev")
    };
    assert_eq!(stacks.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["B", "A"]);
}

#[tokio::test]
async fn invalid_config_or_plan_is_never_applied() {
    let store = MemoryTemplateStore::new();
    apply_text(&store, &base()).await.unwrap_or_else(|e| panic!("{e}"));
    let before = live(&store);
    let broken_yaml = "version: \"1.0\"\nbuild: { commands: [x] }\nenvironments: [ {";
    let cycle = config(&[("dev", "[{name: A, dependsOn: [B]}, {name: B, dependsOn: [A]}]")]);
    let unknown_key = base().replace("pipeline: { name: shop }", "pipeline: { name: shop, colour: red }");
    for text in [broken_yaml, cycle.as_str(), unknown_key.as_str()] {
        let err = apply_text(&store, text).await.err();
        assert!(
            matches!(err, Some(TemplateError::InvalidConfig { .. } | TemplateError::Plan(_))),
            "{text}: {err:?}"
        );
        assert!(!err.is_some_and(|e| e.is_retryable()));
    }
    assert_eq!(store.template_applies(), 1);
    assert_eq!(live(&store), before);
}

#[tokio::test]
async fn a_failed_apply_leaves_the_live_template_and_is_retryable() {
    let store = MemoryTemplateStore::new();
    apply_text(&store, &base()).await.unwrap_or_else(|e| panic!("{e}"));
    let before = live(&store);
    store.fail_next_apply(StoreError {
        kind: StoreErrorKind::Unavailable,
        operation: "apply",
        object: "WorkflowTemplate argo/shop".into(),
        message: "connection refused".into(),
    });
    let err = apply_text(&store, &config(&[("dev", "[{name: A}]")])).await.err();
    assert!(err.as_ref().is_some_and(TemplateError::is_retryable), "{err:?}");
    assert_eq!(live(&store), before);
}

#[tokio::test]
async fn history_keeps_the_last_ten_and_rollback_restores() {
    let store = MemoryTemplateStore::new();
    for i in 1..=15 {
        let stacks = format!("[{{name: S{i}}}]");
        let outcome =
            apply_text(&store, &config(&[("dev", &stacks)])).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(version(&outcome), i);
    }
    let h = history(&store, NS, NAME).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        h.previous.iter().map(|e| e.version).collect::<Vec<_>>(),
        (5..=14).rev().collect::<Vec<u64>>()
    );

    let rb = rollback(&store, NS, NAME, None).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((rb.version, rb.restored, rb.previous_version), (16, 14, 15));
    let now = live(&store);
    assert_eq!(now.pointer("/metadata/annotations/aphex.dev~1rollback-of"), Some(&"14".into()));
    let text = serde_json::to_string(&now).unwrap_or_default();
    assert!(text.contains("S14") && !text.contains("S15"));

    let rb = rollback(&store, NS, NAME, Some(7)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((rb.version, rb.restored), (17, 7));
    let err = rollback(&store, NS, NAME, Some(2)).await.err();
    assert!(matches!(err, Some(TemplateError::NoSuchVersion { wanted: 2, .. })), "{err:?}");
    // The next run with a config applies normally on top of the rollback.
    let outcome = apply_text(&store, &base()).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(version(&outcome), 18);
}

#[tokio::test]
async fn rollback_without_history_or_template_says_why() {
    let store = MemoryTemplateStore::new();
    let err = rollback(&store, NS, NAME, None).await.err();
    assert!(matches!(err, Some(TemplateError::NoLiveTemplate { .. })), "{err:?}");
    apply_text(&store, &base()).await.unwrap_or_else(|e| panic!("{e}"));
    let err = rollback(&store, NS, NAME, None).await.err();
    assert!(matches!(err, Some(TemplateError::NothingToRollBack { .. })), "{err:?}");
}

#[tokio::test]
async fn diff_shows_the_changed_lines_only() {
    let store = MemoryTemplateStore::new();
    apply_text(&store, &base()).await.unwrap_or_else(|e| panic!("{e}"));
    let same = render_text("c.yaml", &base(), Some("abc1234")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(diff_live(&store, &same).await.unwrap_or_else(|e| panic!("{e}")), "");
    let changed = base().replace("{ commands: [npm ci] }", "{ commands: [npm ci], timeoutMinutes: 45 }");
    let rendered = render_text("c.yaml", &changed, Some("abc1234")).unwrap_or_else(|e| panic!("{e}"));
    let d = diff_live(&store, &rendered).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(d.starts_with("--- live argo/shop (version 1)\n+++ rendered\n"), "{d}");
    assert!(d.lines().any(|l| l.starts_with('-') && l.contains("activeDeadlineSeconds")), "{d}");
    // validate 600 s + build 45 min + 600 s + pipeline 4 x 60 min + 1800 s.
    assert!(d.lines().any(|l| l == "+    activeDeadlineSeconds: \"20100\""), "{d}");
}

#[test]
fn dry_run_and_force_outcomes_serialize_for_the_lambda() {
    let outcome = ApplyOutcome::Applied {
        namespace: NS.into(),
        name: NAME.into(),
        version: 2,
        previous_version: Some(1),
        config_sha256: "x".into(),
        changes: vec!["added template env-qa".into()],
        dry_run: false,
    };
    let v = serde_json::to_value(&outcome).unwrap_or_default();
    assert_eq!(v["result"], "applied");
    assert_eq!(v["previousVersion"], 1);
    let _ = keys::CONFIG_SHA256;
}
