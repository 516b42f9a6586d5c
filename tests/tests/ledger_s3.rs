//! The delivery ledger's S3 adapter against moto: moto honours `If-None-Match: *` on PutObject (412 on
//! an existing key), one of many concurrent claims of a delivery wins, records read back as written,
//! and the webhook intake with this ledger answers a redelivery "already started" after its Workflow is
//! gone (a fresh API server) without calling the cluster.

use aphex::webhook::{
    Claim, Entry, EntryState, Intake, Ledger, LedgerError, MemorySubmitter, NoLiveTriggers, Peers, S3Ledger,
    Secret, SecretSource, WebhookConfig, WebhookRequest, config as whconfig,
};
use aphex_tests::moto::Moto;
use http::{HeaderMap, HeaderValue};

const BUCKET: &str = "aphex-ledger-test";
const SECRET: &str = "ledger test secret";

async fn s3(moto: &Moto) -> aws_sdk_s3::Client {
    let client = aphex::aws::s3_client(&moto.sdk_config("us-east-1").await);
    client.create_bucket().bucket(BUCKET).send().await.expect("create bucket");
    client
}

fn entry(delivery: &str, state: EntryState) -> Entry {
    Entry {
        delivery: delivery.into(),
        state,
        workflow: format!("aphex-{delivery}"),
        namespace: "argo".into(),
        template: "aphex-pipeline".into(),
        commit: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
    }
}

#[tokio::test]
async fn moto_honours_if_none_match_on_put_object() {
    let moto = Moto::start();
    let s3 = s3(&moto).await;
    let put = || s3.put_object().bucket(BUCKET).key("k").if_none_match("*").body(b"x".to_vec().into()).send();
    put().await.expect("the first conditional put writes");
    let err = put().await.expect_err("the second conditional put is refused");
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(412), "{err:?}");
}

#[tokio::test]
async fn the_s3_ledger_claims_once_and_reads_back_its_records() {
    let moto = Moto::start();
    let ledger = S3Ledger::new(s3(&moto).await, BUCKET);
    let pending = entry("d-1", EntryState::Pending);
    assert_eq!(ledger.claim(&pending).await.unwrap(), Claim::New);
    assert_eq!(ledger.claim(&pending).await.unwrap(), Claim::Exists(pending.clone()));
    let started =
        Entry { state: EntryState::Started, updated_at: "2026-01-01T00:00:05Z".into(), ..pending.clone() };
    ledger.record(&started).await.unwrap();
    assert_eq!(ledger.claim(&pending).await.unwrap(), Claim::Exists(started));

    // Sixteen concurrent claims of one new delivery: exactly one wins.
    let contested = entry("d-2", EntryState::Pending);
    let claims = futures::future::join_all((0..16).map(|_| ledger.claim(&contested))).await;
    let new = claims.iter().filter(|c| matches!(c, Ok(Claim::New))).count();
    let exists = claims.iter().filter(|c| matches!(c, Ok(Claim::Exists(e)) if *e == contested)).count();
    assert_eq!((new, exists), (1, 15), "{claims:?}");
}

#[tokio::test]
async fn a_foreign_object_at_a_records_key_is_a_clear_error() {
    let moto = Moto::start();
    let s3 = s3(&moto).await;
    let e = entry("d-3", EntryState::Pending);
    s3.put_object().bucket(BUCKET).key(e.key()).body(b"not json".to_vec().into()).send().await.unwrap();
    let err = S3Ledger::new(s3, BUCKET).claim(&e).await.unwrap_err();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&format!("s3://{BUCKET}/{}", e.key())), "{err}");

    let missing = S3Ledger::new(aphex::aws::s3_client(&moto.sdk_config("us-east-1").await), "no-such-bucket");
    let err = missing.claim(&e).await.unwrap_err().to_string();
    assert!(err.contains("could not write the delivery record s3://no-such-bucket/"), "{err}");
    assert!(err.contains("NoSuchBucket"), "{err}");
}

fn signed_push(delivery: &str) -> WebhookRequest {
    let path = aphex_tests::fixtures_dir().join("github/octokit_push_branch_created_with_commit.json");
    let body = std::fs::read(path).unwrap();
    let mut h = HeaderMap::new();
    h.insert("X-GitHub-Event", HeaderValue::from_static("push"));
    h.insert("X-GitHub-Delivery", HeaderValue::from_str(delivery).unwrap());
    h.insert("Content-Type", HeaderValue::from_static("application/json"));
    h.insert(
        "X-Hub-Signature-256",
        HeaderValue::from_str(&Secret::new(SECRET).unwrap().sign(&body)).unwrap(),
    );
    WebhookRequest::new(h, body)
}

#[tokio::test]
async fn a_redelivery_after_the_workflow_is_gone_is_already_started() {
    let moto = Moto::start();
    let ledger = S3Ledger::new(s3(&moto).await, BUCKET);
    let vars = [(whconfig::ENV_SECRET, SECRET), (whconfig::ENV_BRANCHES, "master")];
    let config =
        WebhookConfig::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
            .unwrap();
    let SecretSource::Env(secrets) = config.secret.clone() else { panic!("env secret") };
    let intake = Intake::new(&config, secrets).unwrap();
    let delivery = "5c1e7a52-0b7e-11f0-8e2a-9d1f6b2c3a41";
    let req = signed_push(delivery);

    let cluster = MemorySubmitter::new();
    let first = intake
        .handle_with(&req, Peers { submitter: &cluster, ledger: &ledger, triggers: &NoLiveTriggers })
        .await;
    assert_eq!((first.status, first.body["status"].as_str()), (202, Some("started")), "{}", first.body);

    // Argo's TTL has deleted the Workflow: a new, empty API server that must not be called.
    let later = MemorySubmitter::new();
    later.fail_with("the cluster must not be called for a started delivery");
    let again = intake
        .handle_with(&req, Peers { submitter: &later, ledger: &ledger, triggers: &NoLiveTriggers })
        .await;
    assert_eq!(
        (again.status, again.body["status"].as_str()),
        (200, Some("already started")),
        "{}",
        again.body
    );
    assert!(later.created().is_empty());
}
