//! Tests of the plan: stage order, dependencies, pods, stack waves, checks.

use super::*;

fn config(yaml: &str) -> Config {
    crate::config::parse("test.yaml", yaml).unwrap_or_else(|d| panic!("{d:?}"))
}

const TWO_ENVS: &str = r#"
version: "1.0"
build: { commands: [npm ci] }
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks: [{ name: Net }, { name: App, dependsOn: [Net, Db] }, { name: Db }, { name: Web }]
    tests: { commands: [npm test] }
  - name: prod
    region: eu-west-1
    account: "222222222222"
    approval: manual
    stacks: [{ name: App }]
"#;

fn ids(plan: &Plan) -> Vec<&str> {
    plan.stages.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn stages_in_order_with_gates_tests_and_finalize() {
    let plan = build(&config(TWO_ENVS));
    assert_eq!(
        ids(&plan),
        [
            "validate",
            "build",
            "pipeline",
            "deploy-dev",
            "test-dev",
            "notify-approve-prod",
            "approve-prod",
            "deploy-prod"
        ]
    );
    let deps = |id: &str| plan.stage(id).map(|s| s.depends_on.clone()).unwrap_or_default();
    assert_eq!(deps("deploy-dev"), ["pipeline"]);
    assert_eq!(deps("notify-approve-prod"), ["test-dev"]);
    assert_eq!(deps("approve-prod"), ["notify-approve-prod"]);
    assert_eq!(deps("deploy-prod"), ["approve-prod"]);
    assert_eq!(plan.finalize.kind, StageKind::Finalize);
    assert_eq!(plan.mutex_name("prod"), "aphex-aphex-pipeline-prod");
}

/// `notifications` decides whether a gate announces itself and what the announcement carries.
fn check_announcement(notifications: &str, expect: Option<&str>) {
    let plan = build(&config(&format!("{TWO_ENVS}{notifications}")));
    let stage = plan.stage("notify-approve-prod");
    let got = stage.map(|s| s.argv(|p| format!("<{p:?}>")).join(" "));
    match (got, expect) {
        (None, None) => assert_eq!(plan.stage("approve-prod").unwrap().depends_on, ["test-dev"]),
        (Some(got), Some(tail)) => assert!(got.ends_with(tail), "{got}\nshould end with {tail}"),
        (got, expect) => panic!("{notifications}: got {got:?}, expected {expect:?}"),
    }
}

#[test]
fn approval_announcements_follow_notifications() {
    check_announcement("", Some("--run-id <RunId> --notify-on failure,approval"));
    check_announcement("notifications: { on: [failure] }\n", None);
    check_announcement(
        "notifications: { on: [approval], slack: { webhookSecret: aphex/slack }, snsTopicArn: arn:aws:sns:us-east-1:111111111111:t }\n",
        Some(
            "--run-id <RunId> --slack-webhook-secret aphex/slack --sns-topic-arn arn:aws:sns:us-east-1:111111111111:t \
                 --notify-on approval",
        ),
    );
}

#[test]
fn stacks_ordered_by_dependencies_listed_order_breaking_ties() {
    let plan = build(&config(TWO_ENVS));
    let Some(StageKind::Deploy { stacks, .. }) = plan.stage("deploy-dev").map(|s| &s.kind) else {
        panic!("no deploy-dev")
    };
    let got: Vec<(&str, usize)> = stacks.iter().map(|s| (s.name.as_str(), s.wave)).collect();
    assert_eq!(got, [("Net", 0), ("Db", 0), ("App", 1), ("Web", 0)]);
}

#[test]
fn argv_resolves_placeholders() {
    let plan = build(&config(TWO_ENVS));
    let argv = plan.stage("deploy-dev").map(|s| s.argv(|p| format!("{p:?}"))).unwrap_or_default();
    assert_eq!(
        argv.join(" "),
        "aphex step deploy --env dev --repo-url RepoUrl --commit-sha CommitSha --branch Branch \
             --run-id RunId --outputs-file /tmp/aphex/outputs.json"
    );
    let fin = plan.finalize.argv(|p| format!("{p:?}")).join(" ");
    assert!(fin.ends_with("--delivery-id DeliveryId --pusher Pusher --status RunStatus"), "{fin}");
    assert!(plan.stage("approve-prod").is_some_and(|s| s.args.is_empty()));
}

/// A config that skipped validation (what `check` and the lenient plan guard against).
fn unvalidated(yaml: &str) -> Config {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
}

fn check_err(yaml: &str, expect: PlanError) {
    assert_eq!(check(&unvalidated(yaml)), Err(expect));
}

#[test]
fn faults_found_by_check() {
    let base = |stacks: &str| {
        format!(
            "version: \"1.0\"\nbuild: {{ commands: [x] }}\nenvironments:\n  - {{ name: dev, region: us-east-1, account: \"111111111111\", stacks: {stacks} }}\n"
        )
    };
    check_err(
        &base("[{name: A, dependsOn: [B]}, {name: B, dependsOn: [A]}]"),
        PlanError::DependencyCycle { env: "dev".into(), cycle: "A -> B -> A".into() },
    );
    check_err(
        &base("[{name: A, dependsOn: [Z]}]"),
        PlanError::UnknownDependency { env: "dev".into(), stack: "A".into(), missing: "Z".into() },
    );
    check_err(
        &base("[{name: A}, {name: A}]"),
        PlanError::DuplicateStack { env: "dev".into(), stack: "A".into() },
    );
    assert_eq!(check(&config(TWO_ENVS)), Ok(()));
}

#[test]
fn lenient_plan_for_a_cycle_keeps_every_stack_once() {
    let yaml = "version: \"1.0\"\nbuild: { commands: [x] }\nenvironments:\n  - { name: dev, region: us-east-1, account: \"111111111111\", stacks: [{name: A, dependsOn: [B]}, {name: B, dependsOn: [A, Q]}] }\n";
    let plan = build(&unvalidated(yaml));
    let Some(StageKind::Deploy { stacks, .. }) = plan.stage("deploy-dev").map(|s| &s.kind) else {
        panic!("no deploy-dev")
    };
    let names: Vec<&str> = stacks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
}
