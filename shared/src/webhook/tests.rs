//! Tests of the whole intake on real GitHub payloads, with the in-memory submitter.

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::*;

const SECRET: &str = "It's a Secret to Everybody";
const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../../shared/fixtures/github/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn intake(vars: &[(&str, &str)]) -> Intake {
    let mut all: Vec<(String, String)> = vec![(config::ENV_SECRET.into(), SECRET.into())];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config =
        WebhookConfig::from_lookup(|k| all.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let SecretSource::Env(secrets) = config.secret.clone() else { panic!() };
    Intake::new(&config, secrets).unwrap()
}

fn signed(event: &str, delivery: &str, content_type: &str, body: Vec<u8>, secret: &str) -> WebhookRequest {
    let mut h = HeaderMap::new();
    h.insert("X-GitHub-Event", HeaderValue::from_str(event).unwrap());
    h.insert("X-GitHub-Delivery", HeaderValue::from_str(delivery).unwrap());
    h.insert("Content-Type", HeaderValue::from_str(content_type).unwrap());
    let sig = Secret::new(secret).unwrap().sign(&body);
    h.insert("X-Hub-Signature-256", HeaderValue::from_str(&sig).unwrap());
    WebhookRequest::new(h, body)
}

fn push(fixture_name: &str) -> WebhookRequest {
    signed("push", DELIVERY, "application/json", fixture(fixture_name), SECRET)
}

/// A push payload derived from a real one with some fields replaced.
fn push_with(changes: serde_json::Value) -> WebhookRequest {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("octokit_push_branch_created_with_commit.json")).unwrap();
    for (k, val) in changes.as_object().unwrap() {
        v[k] = val.clone();
    }
    signed("push", DELIVERY, "application/json", serde_json::to_vec(&v).unwrap(), SECRET)
}

async fn check(
    intake: &Intake,
    req: &WebhookRequest,
    status: u16,
    body_has: serde_json::Value,
) -> MemorySubmitter {
    let sub = MemorySubmitter::new();
    let resp = intake.handle(req, &sub).await;
    assert_eq!(resp.status, status, "{}", resp.body);
    for (k, v) in body_has.as_object().unwrap() {
        match v {
            serde_json::Value::String(s) if k == "reason" || k == "error" => {
                let got = resp.body[k].as_str().unwrap_or_default();
                assert!(got.contains(s.as_str()), "{k}: {got:?} lacks {s:?}");
            }
            _ => assert_eq!(&resp.body[k], v, "{k} in {}", resp.body),
        }
    }
    sub
}

#[tokio::test]
async fn a_matching_push_starts_one_workflow_with_the_payloads_arguments() {
    let intake = intake(&[("APHEX_BRANCHES", "master"), ("APHEX_ARGO_URL", "https://argo.example.com")]);
    let name = format!("aphex-{DELIVERY}");
    let sub = check(
        &intake,
        &push("octokit_push_branch_created_with_commit.json"),
        202,
        json!({"status": "started", "workflow": name, "url": format!("https://argo.example.com/workflows/argo/{name}")}),
    )
    .await;
    assert_eq!(sub.created(), std::slice::from_ref(&name));
    let wf = sub.get("argo", &name).unwrap();
    assert_eq!(wf.spec.workflow_template_ref.name, "aphex-pipeline");
    for (arg, want) in [
        ("repo-url", "https://github.com/Codertocat/Hello-World.git"),
        ("commit-sha", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
        ("branch", "master"),
        ("delivery-id", DELIVERY),
        ("pusher", "Codertocat"),
    ] {
        assert_eq!(wf.argument(arg), Some(want), "{arg}");
    }
}

#[tokio::test]
async fn a_redelivery_is_already_started() {
    let intake = intake(&[("APHEX_BRANCHES", "master")]);
    let req = push("octokit_push_branch_created_with_commit.json");
    let sub = MemorySubmitter::new();
    assert_eq!(intake.handle(&req, &sub).await.status, 202);
    let again = intake.handle(&req, &sub).await;
    assert_eq!((again.status, again.body["status"].as_str()), (200, Some("already started")));
    assert_eq!(sub.created().len(), 1);
}

#[tokio::test]
async fn form_encoded_and_json_deliveries_are_equivalent() {
    let intake = intake(&[("APHEX_BRANCHES", "master")]);
    let json_body = fixture("octokit_push_branch_created_with_commit.json");
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json_body).unwrap())
        .finish();
    let req = signed("push", DELIVERY, "application/x-www-form-urlencoded", form.into_bytes(), SECRET);
    let sub = check(&intake, &req, 202, json!({"status": "started"})).await;
    assert_eq!(sub.get("argo", &format!("aphex-{DELIVERY}")).unwrap().argument("pusher"), Some("Codertocat"));
}

#[tokio::test]
async fn ignored_deliveries_start_nothing() {
    let i = intake(&[("APHEX_BRANCHES", "main")]);
    let cases = [
        (
            push("octokit_push_branch_created_with_commit.json"),
            "branch `master` does not match APHEX_BRANCHES (main)",
        ),
        (
            push("octokit_push_tag_created.json"),
            "tag `simple-tag`: tag pushes are ignored unless pipeline.tags lists tag globs",
        ),
        (push("octokit_push_tag_deleted.json"), "refs/tags/simple-tag was deleted"),
        (
            push_with(
                json!({"ref": "refs/heads/main", "deleted": true, "after": "0000000000000000000000000000000000000000", "head_commit": null}),
            ),
            "refs/heads/main was deleted",
        ),
        (
            push_with(
                json!({"ref": "refs/heads/main", "head_commit": {"id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "message": "Update docs [skip ci]"}}),
            ),
            "contains [skip ci]",
        ),
        (
            push_with(
                json!({"ref": "refs/heads/main", "head_commit": {"id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "message": "wip\n\n[aphex skip]"}}),
            ),
            "contains [aphex skip]",
        ),
        (
            signed(
                "pull_request",
                DELIVERY,
                "application/json",
                fixture("octokit_pull_request_opened.json"),
                SECRET,
            ),
            "`pull_request` events do not start runs",
        ),
    ];
    for (req, reason) in cases {
        let sub = check(&i, &req, 200, json!({"status": "ignored", "reason": reason})).await;
        assert!(sub.created().is_empty(), "{reason}");
    }
}

#[tokio::test]
async fn tags_start_runs_when_aphex_tags_match() {
    let i = intake(&[("APHEX_TAGS", "simple-*")]);
    let sub = check(&i, &push("octokit_push_tag_created.json"), 202, json!({"status": "started"})).await;
    let wf = sub.get("argo", &format!("aphex-{DELIVERY}")).unwrap();
    assert_eq!(wf.argument("branch"), Some("simple-tag"));
    assert_eq!(wf.metadata.labels["aphex.dev/ref-kind"], "tag");
}

#[tokio::test]
async fn pings_answer_pong() {
    for f in ["octokit_ping_repository.json", "octokit_ping_organization.json"] {
        let req = signed("ping", DELIVERY, "application/json", fixture(f), SECRET);
        check(&intake(&[]), &req, 200, json!({"status": "pong", "hook_id": 109948940})).await;
    }
}

#[tokio::test]
async fn bad_or_missing_signatures_are_401_and_start_nothing() {
    let i = intake(&[("APHEX_BRANCHES", "master")]);
    let body = fixture("octokit_push_branch_created_with_commit.json");
    let wrong = signed("push", DELIVERY, "application/json", body.clone(), "another secret");
    check(&i, &wrong, 401, json!({"error": "does not match"})).await;
    let mut missing = push("octokit_push_branch_created_with_commit.json");
    missing.headers.remove("x-hub-signature-256");
    check(&i, &missing, 401, json!({"error": "missing `X-Hub-Signature-256`"})).await;
    // A signed body altered on the way: one byte.
    let mut tampered = push("octokit_push_branch_created_with_commit.json");
    let mut bytes = tampered.body.to_vec();
    bytes[10] ^= 1;
    tampered.body = bytes.into();
    let sub = check(&i, &tampered, 401, json!({"status": "rejected"})).await;
    assert!(sub.created().is_empty());
}

#[tokio::test]
async fn malformed_requests_are_400_and_oversized_413() {
    let i = intake(&[("APHEX_BRANCHES", "master")]);
    let mut no_event = push("octokit_push_branch_created_with_commit.json");
    no_event.headers.remove("x-github-event");
    check(&i, &no_event, 400, json!({"error": "missing header `x-github-event`"})).await;
    let mut no_delivery = push("octokit_push_branch_created_with_commit.json");
    no_delivery.headers.remove("x-github-delivery");
    check(&i, &no_delivery, 400, json!({"error": "missing header `x-github-delivery`"})).await;
    let garbled = signed("push", DELIVERY, "application/json", b"{\"ref\": ".to_vec(), SECRET);
    check(&i, &garbled, 400, json!({"error": "not valid JSON"})).await;
    let incomplete =
        signed("push", DELIVERY, "application/json", br#"{"ref":"refs/heads/master"}"#.to_vec(), SECRET);
    check(&i, &incomplete, 400, json!({"error": "lacks `after`"})).await;
    let wrong_type = signed("push", DELIVERY, "text/xml", b"<push/>".to_vec(), SECRET);
    check(&i, &wrong_type, 400, json!({"error": "text/xml"})).await;
    let big = signed("push", DELIVERY, "application/json", vec![b' '; MAX_BODY_BYTES + 1], SECRET);
    check(&i, &big, 413, json!({"status": "rejected"})).await;
}

#[tokio::test]
async fn cluster_failures_are_500_with_a_correlation_id_and_no_details() {
    let i = intake(&[("APHEX_BRANCHES", "master")]);
    let sub = MemorySubmitter::new();
    sub.fail_with("connection refused to https://10.0.0.1");
    let resp = i.handle(&push("octokit_push_branch_created_with_commit.json"), &sub).await;
    assert_eq!(resp.status, 500);
    let id = resp.body["correlation_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert!(!resp.body_text().contains("10.0.0.1"));
}

#[tokio::test]
async fn supersede_stops_active_runs_of_the_same_branch_only() {
    let i = intake(&[("APHEX_BRANCHES", "master,dev"), ("APHEX_CONCURRENCY", "supersede")]);
    let sub = MemorySubmitter::new();
    let at = |delivery: &str, branch: &str| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&fixture("octokit_push_branch_created_with_commit.json")).unwrap();
        v["ref"] = format!("refs/heads/{branch}").into();
        signed("push", delivery, "application/json", serde_json::to_vec(&v).unwrap(), SECRET)
    };
    assert_eq!(i.handle(&at("d1", "master"), &sub).await.status, 202);
    assert_eq!(i.handle(&at("d2", "master"), &sub).await.status, 202);
    sub.set_phase("argo", "aphex-d2", "Succeeded");
    assert_eq!(i.handle(&at("d3", "dev"), &sub).await.status, 202);
    let resp = i.handle(&at("d4", "master"), &sub).await;
    assert_eq!(resp.status, 202);
    // d1 was stopped by d2; d2 finished; d3 is another branch.
    assert_eq!(resp.body["superseded"], json!([]));
    assert_eq!(sub.stopped(), ["aphex-d1"]);
    // Redelivering d1 stops nothing and starts nothing.
    let again = i.handle(&at("d1", "master"), &sub).await;
    assert_eq!((again.status, again.body["status"].as_str()), (200, Some("already started")));
    assert_eq!(sub.stopped(), ["aphex-d1"]);
    assert_eq!(sub.created(), ["aphex-d1", "aphex-d2", "aphex-d3", "aphex-d4"]);
}

#[tokio::test]
async fn queue_mode_never_stops_anything() {
    let i = intake(&[("APHEX_BRANCHES", "master")]);
    let sub = MemorySubmitter::new();
    for d in ["a", "b"] {
        let req = signed(
            "push",
            d,
            "application/json",
            fixture("octokit_push_branch_created_with_commit.json"),
            SECRET,
        );
        assert_eq!(i.handle(&req, &sub).await.status, 202);
    }
    assert!(sub.stopped().is_empty());
}

#[tokio::test]
async fn rotation_accepts_both_secrets() {
    let i = intake(&[("APHEX_BRANCHES", "master"), ("APHEX_WEBHOOK_SECRET_PREVIOUS", "old secret")]);
    let body = fixture("octokit_push_branch_created_with_commit.json");
    for (d, secret, status) in [("n", SECRET, 202), ("o", "old secret", 202), ("x", "other", 401)] {
        let req = signed("push", d, "application/json", body.clone(), secret);
        check(&i, &req, status, json!({})).await;
    }
}

#[test]
fn base64_event_bodies_verify_like_plain_ones() {
    let i = intake(&[("APHEX_BRANCHES", "master")]);
    let plain = push("octokit_push_branch_created_with_commit.json");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&plain.body);
    let decoded = WebhookRequest::from_event_body(plain.headers.clone(), Some(&b64), true).unwrap();
    assert!(matches!(i.prepare(&decoded).unwrap(), Prepared::Start { .. }));
}

/// The delivery ledger: a redelivery whose record says `started` is "already started" even when its
/// Workflow is long gone (Argo's TTL deleted it); a `pending` record left by a crash between the claim
/// and the create still gets its one Workflow; ledger failures are 500s that start nothing.
#[tokio::test]
async fn the_ledger_keeps_one_run_per_delivery_after_the_workflow_is_gone() {
    let intake = intake(&[("APHEX_BRANCHES", "master")]);
    let req = push("octokit_push_branch_created_with_commit.json");
    let name = format!("aphex-{DELIVERY}");
    let ledger = MemoryLedger::new();

    // First delivery: claimed, created, marked started.
    let sub = MemorySubmitter::new();
    let first = intake.handle_with(&req, peers(&sub, &ledger)).await;
    assert_eq!((first.status, first.body["status"].as_str()), (202, Some("started")), "{}", first.body);
    let entry = ledger.entry(DELIVERY).unwrap();
    assert_eq!((entry.state, entry.workflow.as_str()), (EntryState::Started, name.as_str()));
    assert_eq!(entry.commit, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert_eq!(entry.key(), format!("aphex/webhook-deliveries/aphex-pipeline/{name}.json"));

    // Weeks later the Workflow is gone (a fresh API server): the ledger still answers, and the cluster
    // is not called at all.
    let gone = MemorySubmitter::new();
    gone.fail_with("the cluster must not be called");
    let again = intake.handle_with(&req, peers(&gone, &ledger)).await;
    assert_eq!(
        (again.status, again.body["status"].as_str()),
        (200, Some("already started")),
        "{}",
        again.body
    );
    assert_eq!(again.body["workflow"], name.as_str());
    assert!(gone.created().is_empty());
}

#[tokio::test]
async fn a_pending_record_still_gets_its_one_workflow() {
    let intake = intake(&[("APHEX_BRANCHES", "master")]);
    let req = push("octokit_push_branch_created_with_commit.json");
    let name = format!("aphex-{DELIVERY}");
    let pending = |ledger: &MemoryLedger| {
        ledger.insert(Entry {
            delivery: DELIVERY.into(),
            state: EntryState::Pending,
            workflow: name.clone(),
            namespace: "argo".into(),
            template: "aphex-pipeline".into(),
            commit: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
        })
    };

    // Crash after the claim, before the create: the retry creates the Workflow.
    let ledger = MemoryLedger::new();
    pending(&ledger);
    let sub = MemorySubmitter::new();
    let retry = intake.handle_with(&req, peers(&sub, &ledger)).await;
    assert_eq!((retry.status, retry.body["status"].as_str()), (202, Some("started")), "{}", retry.body);
    assert_eq!(sub.created(), std::slice::from_ref(&name));
    assert_eq!(ledger.entry(DELIVERY).unwrap().state, EntryState::Started);

    // Crash after the create, before the record: the retry gets the 409, and marks it started.
    let ledger = MemoryLedger::new();
    pending(&ledger);
    let again = intake.handle_with(&req, peers(&sub, &ledger)).await;
    assert_eq!((again.status, again.body["status"].as_str()), (200, Some("already started")));
    assert_eq!(sub.created().len(), 1);
    assert_eq!(ledger.entry(DELIVERY).unwrap().state, EntryState::Started);
}

#[tokio::test]
async fn ledger_failures_start_nothing_and_a_failed_create_stays_pending() {
    let intake = intake(&[("APHEX_BRANCHES", "master")]);
    let req = push("octokit_push_branch_created_with_commit.json");

    let ledger = MemoryLedger::new();
    ledger.fail_with(Some("S3 is unreachable"));
    let sub = MemorySubmitter::new();
    let resp = intake.handle_with(&req, peers(&sub, &ledger)).await;
    assert_eq!(resp.status, 500, "{}", resp.body);
    assert!(!resp.body_text().contains("unreachable"), "details stay in the log: {}", resp.body);
    assert!(sub.created().is_empty());

    // The cluster fails: the record stays pending, so GitHub's retry creates the Workflow.
    let ledger = MemoryLedger::new();
    let down = MemorySubmitter::new();
    down.fail_with("connection refused");
    assert_eq!(intake.handle_with(&req, peers(&down, &ledger)).await.status, 500);
    assert_eq!(ledger.entry(DELIVERY).unwrap().state, EntryState::Pending);
    let up = MemorySubmitter::new();
    assert_eq!(intake.handle_with(&req, peers(&up, &ledger)).await.status, 202);
    assert_eq!(ledger.entry(DELIVERY).unwrap().state, EntryState::Started);

    // Ignored deliveries leave no record.
    let ledger = MemoryLedger::new();
    let tag = push("octokit_push_tag_created.json");
    assert_eq!(intake.handle_with(&tag, peers(&MemorySubmitter::new(), &ledger)).await.status, 200);
    assert_eq!(ledger.entry(DELIVERY), None);
}

fn peers<'a>(submitter: &'a MemorySubmitter, ledger: &'a MemoryLedger) -> Peers<'a> {
    Peers { submitter, ledger, triggers: &NoLiveTriggers }
}
