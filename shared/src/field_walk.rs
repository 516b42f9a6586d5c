//! The schema walk: every field of `aphex-config.yaml` changes what the pipeline does. [`FIELDS`] maps each
//! leaf path of the committed JSON Schema (`schema/aphex-config.schema.json`) to a valid change and to the
//! outputs of the pure layers that must differ after it (the rendered WorkflowTemplate, the webhook's
//! trigger decision, the build / synth / deploy / test inputs, the notification plan). The test fails for
//! a schema path without a row (a field added later is covered by adding its row) and for a row whose
//! change leaves its outputs as they were (an inert field). The same table is the README's "where it
//! acts" column: `readme_config_reference_lists_every_field` checks it
//! (`APHEX_BLESS=1 cargo test -p aphex-shared --lib field_walk` rewrites that column).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::config::Config;

/// An observable output of the pure layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Out {
    /// The config is refused (validate, and every step that loads it).
    Validation,
    /// The rendered WorkflowTemplate (what the pipeline stage applies; the local runner runs the same plan).
    Template,
    /// The webhook's trigger settings read from that template and its decision on sample pushes.
    Trigger,
    /// The build step's commands, their environment and limits, and the artifact globs.
    Build,
    /// Each environment's synth command line, environment and missing required context.
    Synth,
    /// Each environment's deploy inputs: the role validate and deploy assume, the selected stacks and
    /// their order, parameters and targets, the wait limit.
    Deploy,
    /// Each environment's test commands with their environment and limits.
    Tests,
    /// The pipeline's own stack as the pipeline stage deploys it.
    PipelineStack,
    /// The notification plan of a succeeded and of a failed run.
    Notify,
    /// The pipeline step's email subscriptions to the pipeline's topic (against an empty topic).
    Subscriptions,
}

/// One field: its schema path, a JSON pointer into [`BASE`] to change, the new (valid) value as JSON,
/// the outputs that must change, and where it acts (the README's column).
struct Field {
    path: &'static str,
    pointer: &'static str,
    value: &'static str,
    outputs: &'static [Out],
    acts: &'static str,
}

/// Fields being implemented on another branch: their effect is not observable on this one yet. Empty
/// on main: a branch that adds a field lists it here until its effect lands, then gives it a row.
const PENDING_OTHER_BRANCH: &[&str] = &[];

use Out::*;

const FIELDS: &[Field] = &[
    Field {
        path: "version",
        pointer: "/version",
        value: r#""2.0""#,
        outputs: &[Validation],
        acts: "every step that loads the config (validate first): any other value is refused",
    },
    Field {
        path: "pipeline.name",
        pointer: "/pipeline/name",
        value: r#""shop2""#,
        outputs: &[Template],
        acts: "render: the WorkflowTemplate's name, mutex names, `APHEX_PIPELINE` of every pod (run records, metrics)",
    },
    Field {
        path: "pipeline.repository",
        pointer: "/pipeline/repository",
        value: r#""acme/other""#,
        outputs: &[Template],
        acts: "render: the default `repo-url` argument of a run started by hand",
    },
    Field {
        path: "pipeline.branches[]",
        pointer: "/pipeline/branches/0",
        value: r#""release/*""#,
        outputs: &[Template, Trigger],
        acts: "render (annotation `aphex.dev/branches`) → webhook: which branch pushes start a run; `aphex run --local` warns",
    },
    Field {
        path: "pipeline.tags[]",
        pointer: "/pipeline/tags/0",
        value: r#""release-*""#,
        outputs: &[Template, Trigger],
        acts: "render (annotation `aphex.dev/tags`) → webhook: which tag pushes start a run",
    },
    Field {
        path: "pipeline.namespace",
        pointer: "/pipeline/namespace",
        value: r#""ci2""#,
        outputs: &[Template],
        acts: "render: the template's namespace (where runs are created)",
    },
    Field {
        path: "pipeline.serviceAccount",
        pointer: "/pipeline/serviceAccount",
        value: r#""other-runner""#,
        outputs: &[Template],
        acts: "render: `serviceAccountName` of every pod",
    },
    Field {
        path: "pipeline.image",
        pointer: "/pipeline/image",
        value: r#""registry.example.com/aphex-runner:2""#,
        outputs: &[Template],
        acts: "render: the image of every pod",
    },
    Field {
        path: "pipeline.artifactBucket",
        pointer: "/pipeline/artifactBucket",
        value: r#""other-artifacts""#,
        outputs: &[Template],
        acts: "render: `APHEX_ARTIFACT_BUCKET` of every pod (artifacts, stage and run records)",
    },
    Field {
        path: "pipeline.concurrency",
        pointer: "/pipeline/concurrency",
        value: r#""supersede""#,
        outputs: &[Template, Trigger],
        acts: "render (annotation `aphex.dev/concurrency`) → webhook: queue behind or stop running runs of the branch",
    },
    Field {
        path: "pipeline.timeoutMinutes",
        pointer: "/pipeline/timeoutMinutes",
        value: "240",
        outputs: &[Template],
        acts: "render: the run's `activeDeadlineSeconds`",
    },
    Field {
        path: "pipeline.stack.name",
        pointer: "/pipeline/stack/name",
        value: r#""OtherPipelineStack""#,
        outputs: &[PipelineStack],
        acts: "pipeline step: the stack it deploys before applying the template",
    },
    Field {
        path: "pipeline.stack.app",
        pointer: "/pipeline/stack/app",
        value: r#""platform""#,
        outputs: &[PipelineStack],
        acts: "pipeline step: the folder it synthesizes that stack from",
    },
    Field {
        path: "pipeline.stack.account",
        pointer: "/pipeline/stack/account",
        value: r#""888888888888""#,
        outputs: &[PipelineStack],
        acts: "pipeline step: the account that stack deploys to",
    },
    Field {
        path: "pipeline.stack.region",
        pointer: "/pipeline/stack/region",
        value: r#""eu-west-1""#,
        outputs: &[PipelineStack],
        acts: "pipeline step: the region that stack deploys to",
    },
    Field {
        path: "build.commands[]",
        pointer: "/build/commands/0",
        value: r#""make all""#,
        outputs: &[Build],
        acts: "build step: the commands it runs",
    },
    Field {
        path: "build.env.*",
        pointer: "/build/env/NODE_ENV",
        value: r#""test""#,
        outputs: &[Build],
        acts: "build step: the environment of its commands",
    },
    Field {
        path: "build.timeoutMinutes",
        pointer: "/build/timeoutMinutes",
        value: "45",
        outputs: &[Build],
        acts: "build step: each command's limit; render: adds to the `prepare` pod's deadline (within the run's)",
    },
    Field {
        path: "build.artifacts[]",
        pointer: "/build/artifacts/0",
        value: r#""dist/**""#,
        outputs: &[Build],
        acts: "build step: the files packaged for the deploy stages",
    },
    Field {
        path: "synth.command",
        pointer: "/synth/command",
        value: r#""npx cdk synth --strict""#,
        outputs: &[Synth],
        acts: "deploy step (and pipeline step): the synth command line",
    },
    Field {
        path: "synth.context.*",
        pointer: "/synth/context/stage",
        value: r#""staging""#,
        outputs: &[Synth],
        acts: "deploy step: `-c key=value` of synth; validate and deploy: the bootstrap qualifier (`@aws-cdk/core:bootstrapQualifier`)",
    },
    Field {
        path: "synth.requiredContext[]",
        pointer: "/synth/requiredContext/0",
        value: r#""absentKey""#,
        outputs: &[Synth],
        acts: "validate and deploy steps: refuse to start when a key is in neither `synth.context` nor `cdk.json`",
    },
    Field {
        path: "environments[].name",
        pointer: "/environments/0/name",
        value: r#""qa""#,
        outputs: &[Template, Synth, Tests],
        acts: "render: the environment's stages and mutex; every step's `--env`; synth and tests: `APHEX_ENVIRONMENT`",
    },
    Field {
        path: "environments[].region",
        pointer: "/environments/0/region",
        value: r#""eu-west-1""#,
        outputs: &[Template, Synth, Deploy, Tests],
        acts: "render and synth: `AWS_REGION`, `CDK_DEFAULT_REGION`; deploy: where stacks go, the bootstrap role",
    },
    Field {
        path: "environments[].account",
        pointer: "/environments/0/account",
        value: r#""222222222222""#,
        outputs: &[Template, Synth, Deploy],
        acts: "render and synth: `CDK_DEFAULT_ACCOUNT`; validate: the account STS must report; deploy: the bootstrap role",
    },
    Field {
        path: "environments[].role",
        pointer: "/environments/0/role",
        value: r#""arn:aws:iam::111111111111:role/other-deployer""#,
        outputs: &[Deploy],
        acts: "validate and deploy: the role assumed instead of the bootstrap roles (infra: the pods may assume it)",
    },
    Field {
        path: "environments[].approval",
        pointer: "/environments/0/approval",
        value: r#""manual""#,
        outputs: &[Template],
        acts: "render: a suspend gate before the environment's deploy",
    },
    Field {
        path: "environments[].stacks[].name",
        pointer: "/environments/0/stacks/2/name",
        value: r#""Monitoring*""#,
        outputs: &[Template],
        acts: "render: the deploy pod's stack waves; deploy: which stacks of the assembly are selected",
    },
    Field {
        path: "environments[].stacks[].path",
        pointer: "/environments/0/stacks/0/path",
        value: r#""lib/other.ts""#,
        outputs: &[Template],
        acts: "render: annotation `aphex.dev/stack-sources` of the deploy pod",
    },
    Field {
        path: "environments[].stacks[].dependsOn[]",
        pointer: "/environments/0/stacks/2/dependsOn/0",
        value: r#""ProducerStack""#,
        outputs: &[Template, Deploy],
        acts: "render: the stack waves; deploy: the order stacks deploy in",
    },
    Field {
        path: "environments[].stacks[].parameters.*",
        pointer: "/environments/0/stacks/0/parameters/Email",
        value: r#""dev@example.com""#,
        outputs: &[Deploy],
        acts: "deploy: the stack parameter's value",
    },
    Field {
        path: "environments[].stacks[].parameters.*.ssm",
        pointer: "/environments/0/stacks/0/parameters/Token/ssm",
        value: r#""/shop/other""#,
        outputs: &[Deploy],
        acts: "deploy: the SSM parameter the value is read from",
    },
    Field {
        path: "environments[].stacks[].parameters.*.secret",
        pointer: "/environments/0/stacks/0/parameters/Password/secret",
        value: r#""shop/other""#,
        outputs: &[Deploy],
        acts: "deploy: the Secrets Manager secret the value is read from",
    },
    Field {
        path: "environments[].deployTimeoutMinutes",
        pointer: "/environments/0/deployTimeoutMinutes",
        value: "45",
        outputs: &[Deploy],
        acts: "deploy: the deadline of each stack operation's wait; render: the `deploy-<env>` pod's deadline (within the run's)",
    },
    Field {
        path: "environments[].tests.commands[]",
        pointer: "/environments/0/tests/commands/0",
        value: r#""npm run e2e""#,
        outputs: &[Tests],
        acts: "test step: the commands it runs",
    },
    Field {
        path: "environments[].tests.timeoutMinutes",
        pointer: "/environments/0/tests/timeoutMinutes",
        value: "20",
        outputs: &[Tests],
        acts: "test step: each command's limit; render: adds to the `deploy-<env>` pod's deadline (within the run's)",
    },
    Field {
        path: "environments[].env.*",
        pointer: "/environments/0/env/LOG_LEVEL",
        value: r#""info""#,
        outputs: &[Synth, Tests],
        acts: "deploy step: the synth command's environment; test step: the tests' environment",
    },
    Field {
        path: "notifications.slack.webhookSecret",
        pointer: "/notifications/slack/webhookSecret",
        value: r#""shop/slack2""#,
        outputs: &[Notify],
        acts: "finalize → notify: the Slack webhook the run's outcome goes to",
    },
    Field {
        path: "notifications.snsTopicArn",
        pointer: "/notifications/snsTopicArn",
        value: r#""arn:aws:sns:us-east-1:111111111111:other""#,
        outputs: &[Notify],
        acts: "finalize → notify: an extra SNS topic the outcome is published to",
    },
    Field {
        path: "notifications.email[]",
        pointer: "/notifications/email/0",
        value: r#""oncall@example.com""#,
        outputs: &[Subscriptions],
        acts: "pipeline step: the addresses it subscribes to the pipeline's SNS topic (and unsubscribes when removed, if aphex subscribed them)",
    },
    Field {
        path: "notifications.on[]",
        pointer: "/notifications/on/0",
        value: r#""success""#,
        outputs: &[Notify],
        acts: "finalize → notify: which outcomes notify",
    },
];

/// Where-it-acts text of the fields in [`PENDING_OTHER_BRANCH`] (README column).
const PENDING_ACTS: &[(&str, &str)] = &[];

/// A config with every field set; each row changes one value of it.
const BASE: &str = r#"
version: "1.0"
pipeline:
  name: shop
  repository: acme/shop
  branches: [main]
  tags: ["v*"]
  namespace: ci
  serviceAccount: shop-runner
  image: registry.example.com/aphex-runner:1
  artifactBucket: shop-artifacts
  concurrency: queue
  timeoutMinutes: 120
  stack: {name: AphexPipelineStack, app: infra, account: "999999999999", region: us-east-1}
build:
  commands: [npm ci]
  env: {NODE_ENV: production}
  timeoutMinutes: 20
  artifacts: [cdk.json]
synth:
  command: npx cdk synth
  context: {stage: prod}
  requiredContext: [stage]
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    role: arn:aws:iam::111111111111:role/dev-deployer
    deployTimeoutMinutes: 30
    env: {LOG_LEVEL: debug}
    stacks:
      - name: ProducerStack
        path: lib/producer.ts
        parameters: {Email: ops@example.com, Token: {ssm: /shop/token}, Password: {secret: shop/db}}
      - name: ConsumerStack
        dependsOn: [ProducerStack]
      - name: MonitoringStack
        dependsOn: [ConsumerStack]
    tests:
      commands: [npm test]
      timeoutMinutes: 10
notifications:
  slack: {webhookSecret: shop/slack}
  email: [team@example.com]
  snsTopicArn: arn:aws:sns:us-east-1:111111111111:deploys
  on: [failure, approval]
"#;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn schema() -> Value {
    let text =
        std::fs::read_to_string(repo().join("schema/aphex-config.schema.json")).expect("committed schema");
    serde_json::from_str(&text).expect("schema is JSON")
}

/// Follows `$ref`s into `$defs`.
fn deref<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => deref(root, &root["$defs"][r.rsplit('/').next().unwrap_or_default()]),
        None => node,
    }
}

/// Every leaf path of the schema: `a.b` for properties, `a[]` for array items, `a.*` for map values;
/// each `anyOf`/`oneOf` branch walked at the same path.
fn leaf_paths(root: &Value, node: &Value, path: &str, out: &mut BTreeSet<String>) {
    let node = deref(root, node);
    let join = |k: &str| if path.is_empty() { k.to_owned() } else { format!("{path}.{k}") };
    let mut inner = false;
    for key in ["anyOf", "oneOf", "allOf"] {
        for branch in node.get(key).and_then(Value::as_array).into_iter().flatten() {
            leaf_paths(root, branch, path, out);
            inner = true;
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            leaf_paths(root, v, &join(k), out);
        }
        inner = true;
    }
    if let Some(items) = node.get("items") {
        leaf_paths(root, items, &format!("{path}[]"), out);
        inner = true;
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        leaf_paths(root, values, &join("*"), out);
        inner = true;
    }
    if !inner {
        out.insert(path.to_owned());
    }
}

/// The schema path a JSON pointer into a config names (so each row's pointer is checked to be its path).
fn schema_path_of(root: &Value, pointer: &str) -> String {
    let mut node = deref(root, root);
    let mut path = String::new();
    for seg in pointer.split('/').skip(1) {
        let branches: Vec<&Value> = std::iter::once(node)
            .chain(node.get("anyOf").and_then(Value::as_array).into_iter().flatten().map(|b| deref(root, b)))
            .collect();
        if let Some(next) = branches.iter().find_map(|b| b.get("properties").and_then(|p| p.get(seg))) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(seg);
            node = deref(root, next);
        } else if let (Some(items), true) = (node.get("items"), seg.parse::<usize>().is_ok()) {
            path.push_str("[]");
            node = deref(root, items);
        } else if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
            path.push_str(".*");
            node = deref(root, values);
        } else {
            panic!("pointer {pointer}: {seg:?} is not in the schema at {path:?}");
        }
    }
    path
}

fn parse(value: &Value) -> Result<Config, String> {
    crate::config::parse("aphex-config.yaml", &value.to_string())
        .map_err(|d| d.iter().map(|d| format!("{}: {}", d.path, d.message)).collect::<Vec<_>>().join("; "))
}

fn base() -> Value {
    let config = crate::config::parse("aphex-config.yaml", BASE).expect("BASE is a valid config");
    let mut value = serde_json::to_value(&config).expect("config serializes");
    // Defaults are left out when serialized: put back the ones rows change.
    value["pipeline"]["concurrency"] = "queue".into();
    value["environments"][0]["approval"] = "none".into();
    value
}

/// What each pure layer makes of `config`.
fn observe(config: &Config) -> BTreeMap<Out, String> {
    use crate::argo::render::{RenderOptions, render, to_json};
    let mut out = BTreeMap::new();
    let plan = crate::plan::build(config);
    let template = to_json(&render(&plan, &RenderOptions::for_config(config, None)).expect("renders"));
    out.insert(Template, template.clone());

    let document: Value = serde_json::from_str(&template).expect("template JSON");
    let live =
        crate::webhook::triggers::from_template(&config.pipeline.namespace, &config.pipeline.name, &document)
            .expect("the template carries trigger settings");
    let triggers = crate::webhook::triggers::TriggerSettings::default().resolve(&live);
    let filter = crate::webhook::RefFilter::new(&triggers.branches, &triggers.tags).expect("globs");
    let refs = ["refs/heads/main", "refs/heads/release/1", "refs/tags/v1.0.0", "refs/tags/release-1"];
    let decisions: Vec<String> = refs.iter().map(|r| format!("{r}: {:?}", filter.decide_ref(r))).collect();
    out.insert(Trigger, format!("{triggers:?} {decisions:?}"));

    out.insert(
        Build,
        format!(
            "{:?} {:?}",
            crate::steps::build::commands(config),
            crate::steps::build::artifact_patterns(config, "aphex-config.yaml")
        ),
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let qualifier = crate::bootstrap::resolve(config, None, None);
    let assembly = crate::assembly::CloudAssembly::load(
        &repo().join("../shared/fixtures/cdk/synth-multi-stack-cross-refs"),
    )
    .expect("fixture assembly");
    let (mut synth, mut deploy, mut tests) = (Vec::new(), Vec::new(), Vec::new());
    for env in &config.environments {
        synth.push(format!(
            "{} {:?} {:?}",
            crate::synth::command_line(config, env, Path::new("/out")),
            crate::synth::synth_env(env, Path::new("/cdk-home")),
            crate::synth::missing_context(config, empty.path()).map_err(|e| e.to_string()),
        ));
        let planned = crate::deploy::select::plan(&assembly, &env.name, &env.stacks, &[]).expect("selects");
        let stacks: Vec<String> = planned
            .iter()
            .map(|p| {
                let deps: Vec<&str> =
                    p.depends_on.iter().map(|&d| planned[d].stack.display_name.as_str()).collect();
                let target = crate::deploy::stack::resolve_target(env, &p.stack).map_err(|f| f.message);
                format!("{} after {deps:?} with {:?} as {target:?}", p.stack.display_name, p.parameters)
            })
            .collect();
        deploy.push(format!(
            "{} {stacks:?} wait {:?}",
            crate::steps::adapters::role_for(env, &qualifier),
            crate::deploy::wait_limit(env, &crate::deploy::DeployOptions::default())
        ));
        if let Some(t) = &env.tests {
            let outputs = crate::steps::Outputs::default();
            tests.push(format!(
                "{:?}",
                crate::steps::test::commands(env, t, Path::new("/outputs.json"), &outputs)
            ));
        }
    }
    out.insert(Synth, format!("{synth:?}"));
    out.insert(Deploy, format!("{deploy:?}"));
    out.insert(Tests, format!("{tests:?}"));
    out.insert(
        PipelineStack,
        format!(
            "{:?}",
            config
                .pipeline
                .stack
                .as_ref()
                .map(|own| (crate::steps::adapters::pipeline_stack_environment(own), &own.app))
        ),
    );

    let run = crate::steps::RunInfo {
        run_id: "r1".into(),
        pipeline: config.pipeline.name.clone(),
        repo_url: "https://github.com/acme/shop.git".into(),
        commit_sha: "a".repeat(40),
        branch: "main".into(),
        delivery_id: None,
        pusher: None,
    };
    let mut notify = Vec::new();
    for status in ["Succeeded", "Failed"] {
        let record = crate::steps::finalize::build_record(
            None,
            &run,
            Vec::new(),
            Some(status),
            &[],
            time::OffsetDateTime::UNIX_EPOCH,
        );
        let (_, detail) = crate::steps::finalize::status_event(&record, Some(config));
        let event: crate::notify::PipelineStatusEvent = serde_json::from_value(detail).expect("status event");
        let incoming = crate::notify::IncomingEvent::Pipeline(Box::new(event));
        notify.push(format!("{:?}", crate::notify::plan(&incoming, &crate::notify::Defaults::default())));
    }
    out.insert(Notify, format!("{notify:?}"));
    out.insert(
        Subscriptions,
        format!(
            "{:?}",
            crate::notify::subscriptions::plan_subscriptions(
                config.notifications.as_ref().map_or(&[][..], |n| &n.email[..]),
                &[],
                &[]
            )
        ),
    );
    out
}

#[test]
fn every_schema_field_has_a_row_and_each_row_names_its_field() {
    let root = schema();
    let mut paths = BTreeSet::new();
    leaf_paths(&root, &root, "", &mut paths);
    let rows: BTreeSet<String> = FIELDS.iter().map(|f| f.path.to_owned()).collect();
    let pending: BTreeSet<String> = PENDING_OTHER_BRANCH.iter().map(|p| (*p).to_owned()).collect();
    let uncovered: Vec<&String> =
        paths.iter().filter(|p| !rows.contains(*p) && !pending.contains(*p)).collect();
    assert!(
        uncovered.is_empty(),
        "schema fields without a row in FIELDS (add one: a change and what it changes): {uncovered:?}"
    );
    let stale: Vec<&String> = rows.union(&pending).filter(|p| !paths.contains(*p)).collect();
    assert!(stale.is_empty(), "rows for paths the schema does not have: {stale:?}");
    assert_eq!(rows.len(), FIELDS.len(), "one row per field");
    for f in FIELDS {
        assert_eq!(schema_path_of(&root, f.pointer), f.path, "the pointer of row {}", f.path);
        assert!(!f.outputs.is_empty(), "row {} names no output", f.path);
    }
}

#[test]
fn every_field_changes_what_the_pipeline_does() {
    let base_value = base();
    let base_config = parse(&base_value).expect("base");
    let before = observe(&base_config);
    let mut inert = Vec::new();
    for f in FIELDS {
        let mut changed = base_value.clone();
        let slot =
            changed.pointer_mut(f.pointer).unwrap_or_else(|| panic!("{}: BASE has no {}", f.path, f.pointer));
        let value: Value = serde_json::from_str(f.value).expect("row value is JSON");
        assert_ne!(*slot, value, "{}: the row's value is the one BASE has", f.path);
        *slot = value;
        let config = parse(&changed);
        if f.outputs == [Validation] {
            assert!(config.is_err(), "{}: the change was accepted", f.path);
            continue;
        }
        let config = config
            .unwrap_or_else(|e| panic!("{}: the change {} is not a valid config: {e}", f.path, f.value));
        let after = observe(&config);
        for out in f.outputs {
            if before[out] == after[out] {
                inert.push(format!("{} changes nothing in {out:?}", f.path));
            }
        }
    }
    assert!(inert.is_empty(), "fields that do not act where the table says:\n{}", inert.join("\n"));
}

// ------------------------------------------------------------------------------------------- README

const README_START: &str =
    "<!-- config-reference:start (where it acts: generated from shared/src/field_walk.rs) -->";
const README_END: &str = "<!-- config-reference:end -->";

/// The cells of a Markdown table row, split on `|` outside backticks.
fn cells(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut code = false;
    for c in line.trim().trim_matches('|').chars() {
        match c {
            '`' => {
                code = !code;
                out.last_mut().unwrap().push(c);
            }
            '|' if !code => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

#[test]
fn readme_config_reference_lists_every_field() {
    let path = repo().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (head, rest) = readme.split_once(README_START).expect("README has the config reference start marker");
    let (table, tail) = rest.split_once(README_END).expect("README has the config reference end marker");
    // Default and meaning are written by hand; the field list and "where it acts" come from the table.
    let mut written: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let c = cells(line);
        written
            .insert(c[0].trim_matches('`').to_owned(), (c[1].clone(), c.get(2).cloned().unwrap_or_default()));
    }
    let acts: Vec<(&str, &str)> =
        FIELDS.iter().map(|f| (f.path, f.acts)).chain(PENDING_ACTS.iter().copied()).collect();
    let mut expected = String::from("\n| field | default | meaning | where it acts |\n|---|---|---|---|\n");
    let mut missing = Vec::new();
    for (field, acts) in &acts {
        let (default, meaning) = written.get(*field).cloned().unwrap_or_else(|| {
            missing.push(*field);
            ("?".into(), "?".into())
        });
        expected.push_str(&format!("| `{field}` | {default} | {meaning} | {acts} |\n"));
    }
    if std::env::var_os("APHEX_BLESS").is_some() {
        std::fs::write(&path, format!("{head}{README_START}{expected}{README_END}{tail}"))
            .expect("write README");
        return;
    }
    assert!(
        missing.is_empty(),
        "README's config reference has no row for {missing:?}; run APHEX_BLESS=1 cargo test -p aphex-shared --lib field_walk, then write their default and meaning"
    );
    assert_eq!(
        table, expected,
        "README's config reference is stale; run APHEX_BLESS=1 cargo test -p aphex-shared --lib field_walk"
    );
}
