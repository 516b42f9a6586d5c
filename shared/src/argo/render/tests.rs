//! Tests of the renderer: the DAG shape, pods and their stages, labels, arguments, deadlines.

use super::*;
use crate::plan;

const CONFIG: &str = r#"
version: "1.0"
pipeline: { name: shop, repository: acme/shop, artifactBucket: acme-artifacts }
build: { commands: [npm ci, npm run build] }
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks: [{ name: Net }, { name: App, dependsOn: [Net] }]
    tests: { commands: [npm test] }
  - name: prod
    region: eu-west-1
    account: "222222222222"
    approval: manual
    stacks: [{ name: App }]
"#;

fn rendered(commit: Option<&str>) -> Result<WorkflowTemplate, RenderError> {
    let config = crate::config::parse("c.yaml", CONFIG).unwrap_or_else(|d| panic!("{d:?}"));
    let opts = RenderOptions::for_config(&config, commit.map(str::to_owned));
    render(&plan::build(&config), &opts)
}

fn tpl(commit: Option<&str>) -> WorkflowTemplate {
    rendered(commit).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn main_dag_chains_stages_and_env_groups() {
    let t = tpl(None);
    let main = t.spec.template(ENTRYPOINT).and_then(|t| t.dag.clone()).unwrap_or_default();
    let got: Vec<(String, Option<String>)> = main.tasks.into_iter().map(|t| (t.name, t.depends)).collect();
    let want = [
        ("prepare", None),
        ("env-dev", Some("prepare")),
        ("notify-approve-prod", Some("env-dev")),
        ("approve-prod", Some("notify-approve-prod")),
        ("env-prod", Some("approve-prod")),
    ];
    let want: Vec<(String, Option<String>)> =
        want.iter().map(|(a, b)| (a.to_string(), b.map(str::to_owned))).collect();
    assert_eq!(got, want);
    assert_eq!(t.spec.on_exit, "finalize");
    // The announcement is a pod like any step; the gate stays a suspend node; every pod reads the
    // platform settings.
    let notify = t.spec.template("notify-approve-prod").and_then(|t| t.container.clone()).unwrap_or_default();
    assert_eq!(
        &notify.args[..10],
        [
            "step",
            "notify",
            "--event",
            "approval-requested",
            "--env",
            "prod",
            "--gate",
            "approve-prod",
            "--namespace",
            "argo"
        ]
    );
    assert_eq!(notify.env_from[0].config_map_ref.name, PLATFORM_CONFIGMAP);
    assert!(t.spec.template("approve-prod").is_some_and(|t| t.suspend.is_some() && t.container.is_none()));
}

#[test]
fn env_group_holds_the_mutex_and_its_pod_deploys_then_tests() {
    let t = tpl(None);
    let dev = t.spec.template("env-dev").cloned().unwrap_or_default();
    assert_eq!(dev.synchronization.map(|s| s.mutexes[0].name.clone()).as_deref(), Some("aphex-shop-dev"));
    let tasks = dev.dag.unwrap_or_default().tasks;
    let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["deploy-dev"]);
    assert!(tasks[0].arguments.is_none() && tasks[0].depends.is_none());
    let deploy = t.spec.template("deploy-dev").cloned().unwrap_or_default();
    assert_eq!(
        deploy.metadata.as_ref().map(|m| m.annotations[keys::STAGES].as_str()),
        Some(r#"["deploy-dev","test-dev"]"#)
    );
    assert!(deploy.outputs.is_some() && deploy.inputs.is_none());
    let c = deploy.container.unwrap_or_default();
    assert_eq!(c.command, ["aphex"]);
    assert_eq!(&c.args[..2], ["step", "chain"]);
    let n: usize = c.args[2].parse().unwrap_or_default();
    assert_eq!(&c.args[3..7], ["step", "deploy", "--env", "dev"]);
    assert_eq!(&c.args[4 + n..7 + n], ["step", "test", "--env"]);
    assert!(c.args.contains(&"{{workflow.parameters.commit-sha}}".to_owned()));
    assert!(c.env.contains(&EnvVar { name: "AWS_REGION".into(), value: "us-east-1".into() }));
    assert!(c.env.contains(&EnvVar { name: "APHEX_ARTIFACT_BUCKET".into(), value: "acme-artifacts".into() }));
    assert_eq!(deploy.retry_strategy.map(|r| r.retry_policy).as_deref(), Some("OnError"));
    // Without tests an environment's pod runs the deploy alone, no chain.
    let prod = t.spec.template("deploy-prod").cloned().unwrap_or_default().container.unwrap_or_default();
    assert_eq!(&prod.args[..2], ["step", "deploy"]);
    assert!(t.spec.template("approve-prod").is_some_and(|a| a.suspend.is_some() && a.container.is_none()));
    for gone in ["validate", "build", "pipeline", "test-dev"] {
        assert!(t.spec.template(gone).is_none(), "{gone} has its own template");
    }
}

#[test]
fn prepare_runs_validate_build_pipeline_in_one_pod() {
    let t = tpl(None);
    let prepare = t.spec.template("prepare").cloned().unwrap_or_default();
    let meta = prepare.metadata.clone().unwrap_or_default();
    assert_eq!(meta.labels[keys::STAGE], "prepare");
    assert_eq!(meta.annotations[keys::STAGES], r#"["validate","build","pipeline"]"#);
    // The stages' limits add up: validate 600 s, build 30 min per command + 600 s (two commands),
    // pipeline 4 waits of 60 min + 1800 s: 600 + 4200 + 16200, within the run's 21600.
    assert_eq!(prepare.active_deadline_seconds.as_deref(), Some("21000"));
    let c = prepare.container.unwrap_or_default();
    let stages: Vec<&str> = c
        .args
        .iter()
        .enumerate()
        .filter(|(i, w)| *i > 0 && c.args[i - 1] == "step" && *w != "chain")
        .map(|(_, w)| w.as_str())
        .collect();
    assert_eq!(stages, ["validate", "build", "pipeline"]);
    assert_eq!(c.resources.requests["cpu"], "1", "the largest stage's size");
}

#[test]
fn labels_and_arguments() {
    let t = tpl(Some("0123456789abcdef0123456789abcdef01234567"));
    let l = &t.metadata.labels;
    assert_eq!(l[keys::GENERATED_FROM_COMMIT], "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(l[keys::CONFIG_SHA256].len(), 32);
    assert_eq!(t.metadata.annotations[keys::CONFIG_SHA256].len(), 64);
    let names: Vec<&str> = t.spec.arguments.parameters.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["repo-url", "commit-sha", "branch", "delivery-id", "pusher"]);
    assert_eq!(t.spec.arguments.parameters[0].value.as_deref(), Some("https://github.com/acme/shop.git"));
    assert_eq!(t.spec.arguments.parameters[2].value.as_deref(), Some("main"));
}

#[test]
fn bad_commit_is_refused() {
    assert_eq!(rendered(Some("HEAD; rm -rf")), Err(RenderError::InvalidCommit("HEAD; rm -rf".into())));
}

#[test]
fn deterministic_yaml_and_json() {
    assert_eq!(to_yaml(&tpl(None)), to_yaml(&tpl(None)));
    let back: WorkflowTemplate = serde_json::from_str(&to_json(&tpl(None))).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, tpl(None));
}

#[test]
fn rendered_template_satisfies_the_strict_argo_schema() {
    let value = serde_json::to_value(tpl(Some("abcdef1"))).unwrap_or_default();
    let result = crate::argo::validate_workflow_template(&value);
    assert!(result.is_ok(), "{result:?}");
}
