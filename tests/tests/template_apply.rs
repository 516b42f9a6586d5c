//! Self-modification against the fake Kubernetes API server (`aphex_tests::fake_kube`), through the
//! real kube adapter: create, skip when unchanged, a changed config as a new version with history, an
//! invalid config or a template the API server rejects leaves the live one untouched, rollback.
//! No real API server runs in CI; the fake answers the calls used the way one does.

use std::sync::Arc;

use aphex::template::{self, ApplyOptions, ApplyOutcome, KubeTemplateStore, StoreErrorKind, TemplateError};
use aphex_tests::fake_kube::FakeKube;
use serde_json::Value;

const WT: &str = "argoproj.io/v1alpha1";

fn multi_env() -> String {
    std::fs::read_to_string(aphex_tests::repo_root().join("examples/multi-env/aphex-config.yaml"))
        .unwrap_or_else(|e| panic!("multi-env example: {e}"))
}

fn live(fake: &FakeKube) -> Option<Value> {
    fake.get(WT, "argo", "workflowtemplates", "payments")
}

fn template_writes(fake: &FakeKube) -> usize {
    fake.requests().iter().filter(|r| r.method == "PATCH" && r.path.contains("/workflowtemplates/")).count()
}

async fn apply(store: &KubeTemplateStore, text: &str, commit: &str) -> Result<ApplyOutcome, TemplateError> {
    template::apply(store, "aphex-config.yaml", text, Some(commit), ApplyOptions::default()).await
}

fn version(doc: &Option<Value>) -> Option<String> {
    doc.as_ref()?.pointer("/metadata/annotations/aphex.dev~1template-version")?.as_str().map(str::to_owned)
}

#[tokio::test]
async fn apply_skip_change_reject_and_roll_back() {
    let fake = FakeKube::start();
    let store = KubeTemplateStore::new(fake.client());
    let text = multi_env();

    // Create: server-side apply with field manager `aphex`, forced.
    let outcome = apply(&store, &text, "1111111").await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(outcome, ApplyOutcome::Applied { version: 1, previous_version: None, .. }),
        "{outcome:?}"
    );
    let write =
        fake.requests().into_iter().find(|r| r.method == "PATCH").unwrap_or_else(|| panic!("no PATCH"));
    assert_eq!(write.query.get("fieldManager").map(String::as_str), Some("aphex"));
    assert_eq!(write.query.get("force").map(String::as_str), Some("true"));
    assert!(
        write.content_type.as_deref().is_some_and(|c| c.starts_with("application/apply-patch")),
        "{write:?}"
    );
    let doc = live(&fake);
    assert_eq!(version(&doc).as_deref(), Some("1"));
    assert_eq!(
        doc.as_ref()
            .and_then(|d| d.pointer("/metadata/labels/aphex.dev~1generated-from-commit"))
            .and_then(Value::as_str),
        Some("1111111")
    );

    // Unchanged config (another commit, same content): skipped, nothing written.
    let outcome = apply(&store, &text, "2222222").await.unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(outcome, ApplyOutcome::Unchanged { version: 1, .. }), "{outcome:?}");
    assert_eq!(template_writes(&fake), 1);

    // A new environment: version 2; version 1 kept in the history ConfigMap.
    let qa = text.replace(
        "  - name: staging\n",
        "  - name: qa\n    region: us-west-2\n    account: \"444444444444\"\n    stacks:\n      - name: PaymentsApi-qa\n  - name: staging\n",
    );
    let outcome = apply(&store, &qa, "3333333").await.unwrap_or_else(|e| panic!("{e}"));
    let ApplyOutcome::Applied { version: 2, previous_version: Some(1), changes, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(changes.contains(&"added template env-qa".to_owned()), "{changes:?}");
    let doc = live(&fake).unwrap_or_default();
    let main =
        doc.pointer("/spec/templates/0/dag/tasks").and_then(Value::as_array).cloned().unwrap_or_default();
    let names: Vec<&str> = main.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        ["prepare", "env-dev", "env-qa", "env-staging", "notify-approve-prod", "approve-prod", "env-prod"]
    );
    let history = fake.get("v1", "argo", "configmaps", "payments-history").unwrap_or_default();
    assert!(history.pointer("/data/v00000001").is_some(), "{history}");

    // An invalid config is never applied.
    let broken = qa.replace("dependsOn: [PaymentsNetwork-dev]", "dependsOn: [PaymentsMonitoring-dev]");
    let err = apply(&store, &broken, "4444444").await.err();
    assert!(matches!(err, Some(TemplateError::InvalidConfig { .. })), "{err:?}");
    assert_eq!(template_writes(&fake), 2);
    assert_eq!(version(&live(&fake)).as_deref(), Some("2"));

    // The API server rejects the object (422): not retryable, the live template stays.
    fake.set_validator(
        "workflowtemplates",
        Arc::new(|obj: &Value| {
            if obj.pointer("/spec/templates").and_then(Value::as_array).is_some_and(|t| t.len() > 14) {
                Err("spec.templates: Too many: must have at most 14 items".into())
            } else {
                Ok(())
            }
        }),
    );
    let bigger = qa.replace("  - name: qa\n", "  - name: qa2\n    region: us-west-2\n    account: \"555555555555\"\n    stacks:\n      - name: X\n  - name: qa\n");
    let err = apply(&store, &bigger, "5555555").await.err();
    match &err {
        Some(TemplateError::Store(e)) => {
            assert_eq!(e.kind, StoreErrorKind::Invalid, "{e}");
            assert!(!err.as_ref().is_some_and(TemplateError::is_retryable));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(version(&live(&fake)).as_deref(), Some("2"));

    // Roll back to version 1: applied as version 3, marked as a rollback, without the qa environment.
    let rb = template::rollback(&store, "argo", "payments", Some(1)).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((rb.version, rb.restored, rb.previous_version), (3, 1, 2));
    let doc = live(&fake);
    assert_eq!(version(&doc).as_deref(), Some("3"));
    let text_now = serde_json::to_string(&doc).unwrap_or_default();
    assert!(!text_now.contains("env-qa") && text_now.contains("aphex.dev/rollback-of"));
    let h = template::history(&store, "argo", "payments").await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.previous.iter().map(|e| e.version).collect::<Vec<_>>(), [2, 1]);
}
