//! Unit tests of the notify module: event parsing on real EventBridge shapes, the pure message builders
//! (data-driven), the delivery plan, and retries through the in-memory notifier.

use std::time::Duration;

use pretty_assertions::assert_eq;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::*;
use crate::config::NotifyOn;

const SHARED_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures");
const OWN_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/notify");

fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

/// A failed run's status event as finalize publishes it (shared with the moto test in aphex-tests).
fn failed_run() -> PipelineStatusEvent {
    serde_json::from_value(fixture(&format!("{OWN_FIXTURES}/failed-run.json")))
        .expect("a PipelineStatusEvent")
}

#[test]
fn the_failed_run_fixture_is_what_the_type_writes() {
    let written = serde_json::to_value(failed_run()).unwrap();
    assert_eq!(written, fixture(&format!("{OWN_FIXTURES}/failed-run.json")));
}

/// Our event inside the envelope of a real EventBridge fixture (same `version`, `id`, `time`, ...).
fn in_real_envelope(run: &PipelineStatusEvent) -> Value {
    let mut event = fixture(&format!("{SHARED_FIXTURES}/lambda/example-eventbridge-schedule.json"));
    event["source"] = json!(run.source());
    event["detail-type"] = json!(run.detail_type());
    event["detail"] = serde_json::to_value(run).unwrap();
    event
}

// ---------------------------------------------------------------------------------------------- parse

#[test]
fn parses_our_event_in_a_real_envelope_for_every_status() {
    for status in RunStatus::ALL {
        let mut run = failed_run();
        run.status = status;
        let parsed = parse_event(&in_real_envelope(&run)).unwrap();
        assert_eq!(parsed, IncomingEvent::Pipeline(Box::new(run)));
    }
}

#[test]
fn the_envelope_built_from_the_type_parses_back() {
    let run = failed_run();
    let envelope = run.to_eventbridge_envelope("123456789012", "eu-west-1", time::OffsetDateTime::UNIX_EPOCH);
    assert_eq!(envelope["detail-type"], "Pipeline Run Failed");
    assert_eq!(envelope["source"], "aphex.pipeline");
    assert_eq!(envelope["time"], "1970-01-01T00:00:00Z");
    assert_eq!(parse_event(&envelope).unwrap(), IncomingEvent::Pipeline(Box::new(run)));
}

#[test]
fn detail_json_uses_camel_case_and_omits_absent_fields() {
    let run = PipelineStatusEvent::new("r", "p", "acme/app", "main", "abc", RunStatus::Started);
    let detail: Value = serde_json::from_str(&run.detail_json().unwrap()).unwrap();
    assert_eq!(
        detail,
        json!({
            "runId": "r", "pipeline": "p", "repository": "acme/app", "branch": "main", "commitSha": "abc",
            "status": "started", "notifications": {"on": ["failure", "approval"]}
        })
    );
}

#[test]
fn notification_settings_come_from_the_config() {
    let config: crate::config::Notifications = serde_json::from_value(json!({
        "slack": {"webhookSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:aphex/slack"},
        "email": ["team@example.com"],
        "snsTopicArn": "arn:aws:sns:us-east-1:123456789012:alerts",
        "on": ["success", "failure"]
    }))
    .unwrap();
    assert_eq!(
        NotificationSettings::from(&config),
        NotificationSettings {
            slack_webhook_secret: Some(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:aphex/slack".into()
            ),
            sns_topic_arn: Some("arn:aws:sns:us-east-1:123456789012:alerts".into()),
            on: vec![NotifyOn::Success, NotifyOn::Failure],
        }
    );
}

#[test]
fn parses_cloudformation_stack_status_changes() {
    let check =
        |file: &str, name: &str, status: &str, outcome: Option<NotifyOn>, account: &str, region: &str| {
            let event = fixture(&format!("{OWN_FIXTURES}/{file}"));
            let IncomingEvent::Stack(change) = parse_event(&event).unwrap() else {
                panic!("{file}: not a stack event")
            };
            assert_eq!(change.stack_name(), name, "{file}");
            assert_eq!(change.status_details.status, status, "{file}");
            assert_eq!(change.outcome(), outcome, "{file}");
            assert_eq!((change.account.as_str(), change.region.as_str()), (account, region), "{file}");
        };
    check(
        "cloudformation-stack-status-change-create-complete.json",
        "teststack",
        "CREATE_COMPLETE",
        Some(NotifyOn::Success),
        "111122223333",
        "us-west-1",
    );
    check(
        "cloudformation-stack-status-change-update-rollback-complete.json",
        "PaymentsStack",
        "UPDATE_ROLLBACK_COMPLETE",
        Some(NotifyOn::Failure),
        "123456789012",
        "eu-west-1",
    );
}

#[test]
fn stack_statuses_map_to_outcomes() {
    let cases: &[(&str, Option<NotifyOn>)] = &[
        ("CREATE_COMPLETE", Some(NotifyOn::Success)),
        ("UPDATE_COMPLETE", Some(NotifyOn::Success)),
        ("DELETE_COMPLETE", Some(NotifyOn::Success)),
        ("CREATE_FAILED", Some(NotifyOn::Failure)),
        ("ROLLBACK_COMPLETE", Some(NotifyOn::Failure)),
        ("ROLLBACK_FAILED", Some(NotifyOn::Failure)),
        ("UPDATE_ROLLBACK_COMPLETE", Some(NotifyOn::Failure)),
        ("UPDATE_ROLLBACK_FAILED", Some(NotifyOn::Failure)),
        ("DELETE_FAILED", Some(NotifyOn::Failure)),
        ("CREATE_IN_PROGRESS", None),
        ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", None),
        ("UPDATE_ROLLBACK_IN_PROGRESS", None),
        ("REVIEW_IN_PROGRESS", None),
    ];
    for (status, expect) in cases {
        let change = StackStatusChange {
            stack_id: "arn:aws:cloudformation:us-east-1:123456789012:stack/S/1".into(),
            status_details: StackStatusDetails { status: (*status).into(), status_reason: None },
            client_request_token: None,
            account: "123456789012".into(),
            region: "us-east-1".into(),
        };
        assert_eq!(change.outcome(), *expect, "{status}");
    }
}

#[test]
fn malformed_events_are_rejected_with_a_clear_non_retryable_error() {
    let ec2 = fixture(&format!("{SHARED_FIXTURES}/lambda/example-eventbridge-event-obj.json"));
    let schedule = fixture(&format!("{SHARED_FIXTURES}/lambda/example-eventbridge-schedule.json"));
    let mut wrong_status = in_real_envelope(&failed_run());
    wrong_status["detail-type"] = json!("Pipeline Run Succeeded");
    let mut missing_run_id = in_real_envelope(&failed_run());
    missing_run_id["detail"].as_object_mut().unwrap().remove("runId");
    let mut unknown_type = in_real_envelope(&failed_run());
    unknown_type["detail-type"] = json!("Pipeline Run Exploded");
    let mut cfn_without_stack =
        fixture(&format!("{OWN_FIXTURES}/cloudformation-stack-status-change-create-complete.json"));
    cfn_without_stack["detail"].as_object_mut().unwrap().remove("stack-id");

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "EC2 fixture",
            ec2,
            "unsupported event: source `aws.ec2`, detail-type `EC2 Instance State-change Notification`",
        ),
        (
            "schedule fixture",
            schedule,
            "unsupported event: source `aws.events`, detail-type `Scheduled Event`",
        ),
        ("not an object", json!([1, 2]), "expected an EventBridge event object, got an array"),
        (
            "no detail-type",
            json!({"source": "aphex.pipeline", "detail": {}}),
            "no string field `detail-type`",
        ),
        (
            "no detail",
            json!({"source": "aphex.pipeline", "detail-type": "Pipeline Run Failed"}),
            "has no `detail` object",
        ),
        (
            "status mismatch",
            wrong_status,
            "detail-type `Pipeline Run Succeeded` disagrees with detail.status `failed`",
        ),
        ("missing runId", missing_run_id, "missing field `runId`"),
        (
            "unknown detail-type",
            unknown_type,
            "unknown detail-type `Pipeline Run Exploded` from `aphex.pipeline`",
        ),
        ("stack event without stack-id", cfn_without_stack, "missing field `stack-id`"),
    ];
    for (name, event, expect) in cases {
        let error = parse_event(&event).expect_err(name);
        assert!(matches!(error, NotifyError::Malformed(_)), "{name}: {error:?}");
        assert!(!error.is_retryable(), "{name}");
        assert_eq!(error.error_type(), "Aphex.Notify.MalformedEvent");
        assert!(error.to_string().contains(expect), "{name}: `{error}` should contain `{expect}`");
    }
}

// ------------------------------------------------------------------------------------------- messages

/// The SNS message of a failed run, whole: the format email subscribers read.
#[test]
fn sns_message_of_a_failed_run() {
    let message = sns_message(&Notification::from_run(&failed_run()));
    assert_eq!(message.subject, "[aphex] FAILED: acme/payments-infra@main (deploy prod)");
    assert_eq!(
        message.body,
        "Pipeline run failed

Repository:             acme/payments-infra
Branch:                 main
Commit:                 9f86d08
Author:                 octocat
Stage:                  deploy prod
Status:                 failed
Duration:               4m 12s
Failed stack:           PaymentsStack (123456789012 / eu-west-1, UPDATE_ROLLBACK_COMPLETE)

Reason:
  Resource handler returned message: \"Bucket already exists\" (PaymentsBucket)

Argo UI:                https://argo.example.com/workflows/argo/aphex-pipeline-7q2xk
CloudFormation console: https://eu-west-1.console.aws.amazon.com/cloudformation/home?region=eu-west-1#/stacks/stackinfo?stackId=arn%3Aaws%3Acloudformation%3Aeu-west-1%3A123456789012%3Astack%2FPaymentsStack%2F5f1c7a40
Commit:                 https://github.com/acme/payments-infra/commit/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b

Pipeline aphex-pipeline · run aphex-pipeline-7q2xk · commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b
"
    );
}

/// The Slack message of a failed run, whole: header, facts, reason, buttons, context.
#[test]
fn slack_message_of_a_failed_run() {
    let message = slack_message(&Notification::from_run(&failed_run()));
    let field = |label: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{label}*\n{value}")});
    assert_eq!(
        message,
        json!({
            "text": "Pipeline run failed: acme/payments-infra@main (deploy prod)",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": ":x: Pipeline run failed", "emoji": true}},
                {"type": "section", "fields": [
                    field("Repository", "acme/payments-infra"),
                    field("Branch", "main"),
                    field("Commit", "<https://github.com/acme/payments-infra/commit/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b|`9f86d08`>"),
                    field("Author", "octocat"),
                    field("Stage", "deploy prod"),
                    field("Status", "failed"),
                    field("Duration", "4m 12s"),
                    field("Failed stack", "PaymentsStack (123456789012 / eu-west-1, UPDATE_ROLLBACK_COMPLETE)"),
                ]},
                {"type": "section", "text": {"type": "mrkdwn", "text": "*Reason*\n```Resource handler returned message: \"Bucket already exists\" (PaymentsBucket)```"}},
                {"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Argo UI"}, "url": "https://argo.example.com/workflows/argo/aphex-pipeline-7q2xk", "action_id": "aphex-link-0"},
                    {"type": "button", "text": {"type": "plain_text", "text": "CloudFormation console"}, "url": "https://eu-west-1.console.aws.amazon.com/cloudformation/home?region=eu-west-1#/stacks/stackinfo?stackId=arn%3Aaws%3Acloudformation%3Aeu-west-1%3A123456789012%3Astack%2FPaymentsStack%2F5f1c7a40", "action_id": "aphex-link-1"},
                    {"type": "button", "text": {"type": "plain_text", "text": "Commit"}, "url": "https://github.com/acme/payments-infra/commit/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", "action_id": "aphex-link-2"},
                ]},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "Pipeline aphex-pipeline · run aphex-pipeline-7q2xk · commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"}]},
            ]
        })
    );
}

/// Data-driven: one change to the failed run → the subject and header it must produce.
#[test]
fn subjects_and_headers_per_status() {
    struct Case {
        name: &'static str,
        edit: fn(&mut PipelineStatusEvent),
        subject: &'static str,
        header: &'static str,
    }
    let cases = [
        Case {
            name: "succeeded",
            edit: |r| {
                r.status = RunStatus::Succeeded;
                r.stage = None;
                r.environment = None;
                r.failed_stack = None;
                r.failure_reason = None;
            },
            subject: "[aphex] OK: acme/payments-infra@main",
            header: ":white_check_mark: Pipeline run succeeded",
        },
        Case {
            name: "waiting",
            edit: |r| {
                r.status = RunStatus::WaitingForApproval;
                r.stage = Some("approval".into());
                r.failed_stack = None;
                r.failure_reason = None;
            },
            subject: "[aphex] APPROVAL NEEDED: acme/payments-infra@main (approval prod)",
            header: ":raised_hand: Pipeline run waiting for approval",
        },
        Case {
            name: "started",
            edit: |r| r.status = RunStatus::Started,
            subject: "[aphex] INFO: acme/payments-infra@main",
            header: ":arrow_forward: Pipeline run started",
        },
        Case {
            name: "repository as a clone URL",
            edit: |r| r.repository = "https://github.com/acme/payments-infra.git".into(),
            subject: "[aphex] FAILED: acme/payments-infra@main (deploy prod)",
            header: ":x: Pipeline run failed",
        },
        Case {
            name: "long branch name is cut at 99 characters",
            edit: |r| r.branch = format!("feature/{}", "x".repeat(200)),
            subject: "[aphex] FAILED: acme/payments-infra@feature/xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...",
            header: ":x: Pipeline run failed",
        },
        Case {
            name: "control characters leave the subject",
            edit: |r| r.branch = "fix\nnewline\tbranch".into(),
            subject: "[aphex] FAILED: acme/payments-infra@fix newline branch (deploy prod)",
            header: ":x: Pipeline run failed",
        },
    ];
    for case in cases {
        let mut run = failed_run();
        (case.edit)(&mut run);
        let notification = Notification::from_run(&run);
        let sns = sns_message(&notification);
        assert_eq!(sns.subject, case.subject, "{}", case.name);
        assert!(sns.subject.chars().count() < 100, "{}", case.name);
        assert_eq!(slack_message(&notification)["blocks"][0]["text"]["text"], case.header, "{}", case.name);
    }
}

#[test]
fn slack_text_is_escaped_and_long_reasons_are_cut() {
    let mut run = failed_run();
    run.author = Some("<!channel> & co".into());
    run.failure_reason = Some(format!("<script>```{}", "e".repeat(5000)));
    let notification = Notification::from_run(&run);
    let slack = slack_message(&notification);
    let author = &slack["blocks"][1]["fields"][3]["text"];
    assert_eq!(author, "*Author*\n&lt;!channel&gt; &amp; co");
    let reason = slack["blocks"][2]["text"]["text"].as_str().unwrap();
    assert!(reason.starts_with("*Reason*\n```&lt;script&gt;'''eee"), "{reason}");
    assert!(reason.chars().count() <= 3000, "Slack's section limit");
    assert_eq!(notification.reason.as_ref().unwrap().chars().count(), message::REASON_MAX_CHARS);
    assert!(notification.reason.as_ref().unwrap().ends_with('…'));
}

#[test]
fn stack_event_messages_link_the_console() {
    let event =
        fixture(&format!("{OWN_FIXTURES}/cloudformation-stack-status-change-update-rollback-complete.json"));
    let IncomingEvent::Stack(change) = parse_event(&event).unwrap() else { panic!("stack event") };
    let n = Notification::from_stack(&change, Some("https://argo.example.com"));
    let sns = sns_message(&n);
    assert_eq!(sns.subject, "[aphex] FAILED: PaymentsStack UPDATE_ROLLBACK_COMPLETE");
    assert!(
        sns.body.starts_with("CloudFormation stack failed\n\nStack:                  PaymentsStack\n"),
        "{}",
        sns.body
    );
    assert_eq!(
        n.links.iter().map(|l| l.url.as_str()).collect::<Vec<_>>(),
        [
            "https://argo.example.com",
            "https://eu-west-1.console.aws.amazon.com/cloudformation/home?region=eu-west-1#/stacks/stackinfo?stackId=arn%3Aaws%3Acloudformation%3Aeu-west-1%3A123456789012%3Astack%2FPaymentsStack%2F5f1c7a40-cb7a-11f0-9a51-0a1b2c3d4e5f",
        ]
    );
    assert_eq!(n.reason, None, "an empty status-reason is no reason");
}

#[test]
fn durations_read_naturally() {
    for (seconds, expect) in
        [(0, "0s"), (59, "59s"), (60, "1m 00s"), (252, "4m 12s"), (3600, "1h 00m"), (7_384, "2h 03m")]
    {
        assert_eq!(message::format_duration(seconds), expect);
    }
}

// ----------------------------------------------------------------------------------------------- plan

fn targets(p: &DeliveryPlan) -> Vec<String> {
    match p {
        DeliveryPlan::Send { deliveries, .. } => deliveries.iter().map(Delivery::target).collect(),
        DeliveryPlan::Skip { reason } => vec![format!("skip: {reason}")],
    }
}

#[test]
fn plan_follows_notifications_on_and_merges_targets() {
    let topic = "arn:aws:sns:eu-west-1:123456789012:aphex-notifications";
    let extra = "arn:aws:sns:eu-west-1:123456789012:team-alerts";
    let defaults = Defaults {
        sns_topic_arn: Some(topic.into()),
        slack_webhook_secret: Some("default-slack".into()),
        ..Defaults::default()
    };
    let with = |edit: fn(&mut PipelineStatusEvent)| {
        let mut run = failed_run();
        edit(&mut run);
        IncomingEvent::Pipeline(Box::new(run))
    };
    let cases: Vec<(&str, IncomingEvent, Defaults, Vec<String>)> = vec![
        (
            "failure: the event's Slack secret and the pipeline topic",
            with(|_| {}),
            defaults.clone(),
            vec![format!("Slack (webhook from secret aphex/slack-webhook)"), format!("SNS topic {topic}")],
        ),
        (
            "the config's extra topic is added, a duplicate is not",
            with(|r| r.notifications.sns_topic_arn = Some("arn:aws:sns:eu-west-1:123456789012:team-alerts".into())),
            defaults.clone(),
            vec!["Slack (webhook from secret aphex/slack-webhook)".into(), format!("SNS topic {topic}"), format!("SNS topic {extra}")],
        ),
        (
            "same topic twice is sent once",
            with(|r| r.notifications.sns_topic_arn = Some("arn:aws:sns:eu-west-1:123456789012:aphex-notifications".into())),
            defaults.clone(),
            vec!["Slack (webhook from secret aphex/slack-webhook)".into(), format!("SNS topic {topic}")],
        ),
        (
            "no Slack secret in the event: the function's default",
            with(|r| r.notifications.slack_webhook_secret = None),
            defaults.clone(),
            vec!["Slack (webhook from secret default-slack)".into(), format!("SNS topic {topic}")],
        ),
        (
            "success is not in `on`",
            with(|r| r.status = RunStatus::Succeeded),
            defaults.clone(),
            vec!["skip: Pipeline run succeeded: acme/payments-infra@main: `success` is not in notifications.on".into()],
        ),
        (
            "started never notifies",
            with(|r| r.status = RunStatus::Started),
            defaults.clone(),
            vec!["skip: Pipeline run started: acme/payments-infra@main: not an outcome that notifies".into()],
        ),
        (
            "nowhere to send",
            with(|r| r.notifications.slack_webhook_secret = None),
            Defaults::default(),
            vec!["skip: Pipeline run failed: acme/payments-infra@main (deploy prod): no Slack webhook secret or SNS topic configured (event notifications, APHEX_SLACK_WEBHOOK_SECRET, APHEX_SNS_TOPIC_ARN)".into()],
        ),
    ];
    for (name, event, defaults, expect) in cases {
        assert_eq!(targets(&plan(&event, &defaults)), expect, "{name}");
    }
}

#[test]
fn stack_events_use_the_function_defaults() {
    let failed = parse_event(&fixture(&format!(
        "{OWN_FIXTURES}/cloudformation-stack-status-change-update-rollback-complete.json"
    )))
    .unwrap();
    let created = parse_event(&fixture(&format!(
        "{OWN_FIXTURES}/cloudformation-stack-status-change-create-complete.json"
    )))
    .unwrap();
    let topic = "arn:aws:sns:eu-west-1:123456789012:aphex-notifications";
    let defaults = Defaults { sns_topic_arn: Some(topic.into()), ..Defaults::default() };
    assert_eq!(targets(&plan(&failed, &defaults)), [format!("SNS topic {topic}")]);
    assert_eq!(
        targets(&plan(&created, &defaults)),
        [
            "skip: CloudFormation stack updated: teststack CREATE_COMPLETE: `success` is not in notifications.on"
        ]
    );
    let all = Defaults { stack_notify_on: vec![NotifyOn::Success, NotifyOn::Failure], ..defaults };
    assert_eq!(targets(&plan(&created, &all)), [format!("SNS topic {topic}")]);
}

#[test]
fn defaults_from_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| pairs.iter().find(|(name, _)| *name == k).map(|(_, v)| (*v).to_owned())
    };
    assert_eq!(Defaults::from_lookup(env(&[])).unwrap(), Defaults::default());
    assert_eq!(
        Defaults::from_lookup(env(&[
            ("APHEX_SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:t"),
            ("APHEX_SLACK_WEBHOOK_SECRET", " "),
            ("APHEX_STACK_NOTIFY_ON", "success, failure"),
            ("APHEX_ARGO_URL", "https://argo.example.com"),
        ]))
        .unwrap(),
        Defaults {
            sns_topic_arn: Some("arn:aws:sns:us-east-1:123456789012:t".into()),
            slack_webhook_secret: None,
            stack_notify_on: vec![NotifyOn::Success, NotifyOn::Failure],
            argo_url: Some("https://argo.example.com".into()),
        }
    );
    let error = Defaults::from_lookup(env(&[("APHEX_STACK_NOTIFY_ON", "failure,approval")])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid setting APHEX_STACK_NOTIFY_ON: unknown outcome `approval`; use a comma-separated list of `success`, `failure`"
    );
}

// -------------------------------------------------------------------------------------------- deliver

const FAST: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    initial_backoff: Duration::from_millis(1),
    max_backoff: Duration::from_millis(2),
};

fn one_sns_delivery() -> Vec<Delivery> {
    vec![Delivery::Sns {
        topic_arn: "arn:aws:sns:us-east-1:123456789012:t".into(),
        message: SnsMessage { subject: "s".into(), body: "b".into() },
    }]
}

fn http(status: u16) -> DeliveryError {
    DeliveryError::Http { service: "Slack", status, body: "boom".into() }
}

#[tokio::test]
async fn a_transient_failure_is_retried() {
    let notifier = RecordingNotifier::failing_with([http(500), http(429)]);
    let report = deliver_all(&notifier, &one_sns_delivery(), FAST).await.unwrap();
    assert_eq!(report.delivered[0].attempts, 3);
    assert_eq!(notifier.attempts().len(), 3);
}

#[tokio::test]
async fn persistent_transient_failures_end_in_a_retryable_error() {
    let notifier = RecordingNotifier::failing_with([http(503), http(503), http(503), http(503)]);
    let error = deliver_all(&notifier, &one_sns_delivery(), FAST).await.unwrap_err();
    assert_eq!(notifier.attempts().len(), 3);
    assert!(error.is_retryable());
    assert_eq!(error.error_type(), "Aphex.Notify.DeliveryFailed.Retryable");
    assert_eq!(
        error.to_string(),
        "1 notification(s) failed after retries: SNS topic arn:aws:sns:us-east-1:123456789012:t (3 attempt(s)): Slack answered HTTP 503: boom"
    );
}

#[tokio::test]
async fn a_permanent_failure_is_not_retried() {
    let notifier = RecordingNotifier::failing_with([http(404)]);
    let error = deliver_all(&notifier, &one_sns_delivery(), FAST).await.unwrap_err();
    assert_eq!(notifier.attempts().len(), 1);
    assert!(!error.is_retryable());
    assert_eq!(error.error_type(), "Aphex.Notify.DeliveryFailed.Permanent");
}

#[tokio::test]
async fn every_delivery_is_attempted_when_one_fails() {
    let mut deliveries = one_sns_delivery();
    deliveries.push(Delivery::Slack { webhook_secret: "s".into(), payload: json!({}) });
    let notifier = RecordingNotifier::failing_with([http(400)]);
    let error = deliver_all(&notifier, &deliveries, FAST).await.unwrap_err();
    assert_eq!(notifier.attempts().len(), 2);
    let NotifyError::Delivery { failures } = error else { panic!("delivery error") };
    assert_eq!(failures.len(), 1);
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let policy = RetryPolicy::default();
    let waits: Vec<u128> = (1..=6).map(|a| policy.backoff(a).as_millis()).collect();
    assert_eq!(waits, [250, 500, 1000, 2000, 4000, 4000]);
}

// ------------------------------------------------------------------------------------- Slack secrets

#[test]
fn webhook_urls_from_secret_values() {
    let ok = |value: &str| slack_webhook_url("s", &SecretString::from(value)).map(|u| u.to_string());
    let fake = "https://hooks.slack.example/services/T000/B000/XXXX";
    assert_eq!(ok(fake).unwrap(), fake);
    assert_eq!(ok(&format!("  {fake}\n")).unwrap(), fake);
    assert_eq!(ok(&format!(r#"{{"url": "{fake}"}}"#)).unwrap(), fake);
    assert_eq!(ok(&format!(r#"{{"webhookUrl": "{fake}"}}"#)).unwrap(), fake);
    assert_eq!(ok("http://127.0.0.1:8080/hook").unwrap(), "http://127.0.0.1:8080/hook");

    for (value, expect) in [
        ("http://hooks.slack.example/services/T000/B000/XXXX", "the webhook URL must use https"),
        ("not a url at all", "the value is not a URL"),
        (r#"{"token": "T000/B000/XXXX"}"#, "no `url`, `webhookUrl` or `webhook_url`"),
        (r#"{"url": "#, "looks like JSON but does not parse"),
    ] {
        let error = ok(value).unwrap_err().to_string();
        assert!(error.contains(expect), "{value}: {error}");
        assert!(error.starts_with("Slack webhook secret `s`: "), "{error}");
        assert!(!error.contains("XXXX"), "the secret value must never appear in an error: {error}");
    }
}
