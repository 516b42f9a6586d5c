//! The renderer: `Plan` -> Argo `WorkflowTemplate`, and its YAML/JSON serialization.
//!
//! Shape of the output:
//! - One template per pod of the plan ([`Plan::pods`]): stages sharing a pod run in it one after
//!   another through `aphex step chain`. `prepare` runs validate, build and pipeline; `deploy-<env>`
//!   deploys and then runs the environment's tests.
//! - `main` (entrypoint) is a DAG: `prepare` -> for each environment in order
//!   [`approve-<env>` (suspend)] -> `env-<env>`; `finalize` runs as the workflow's `onExit`.
//! - `env-<env>` is a DAG holding the environment's pod (`deploy-<env>`) under the mutex
//!   `aphex-<pipeline>-<env>`: two runs never deploy or test one environment at once, and queued runs
//!   take the lock in creation order. The approval gate sits before the lock, so a run waiting for a
//!   human does not block the environment.
//! - Container templates run `aphex step ...` in the runner image with resource requests, the env's
//!   region/account variables, and `retryStrategy` with `retryPolicy: OnError` (pod or node failures,
//!   never a step that exited non-zero).
//! - A pod that deploys exposes the stack outputs file as the output parameter `outputs`. Tests in the
//!   deploy's pod read the file directly; a test stage in another pod would get it as an input
//!   parameter written back to the same path by a raw input artifact, so the test step reads the file
//!   the same way in Argo and in the local runner.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{
    API_VERSION, Arguments, Artifact, Backoff, ConfigMapEnvSource, Container, DagTask, DagTemplate,
    EnvFromSource, EnvVar, Inputs, Metadata, Mutex, ObjectMeta, Outputs, PLATFORM_CONFIGMAP, Parameter,
    PodGc, RawArtifact, Resources, RetryStrategy, SuspendTemplate, Synchronization, Template, TtlStrategy,
    ValueFrom, WorkflowSpec, WorkflowTemplate, keys,
};
use crate::config::Config;
use crate::plan::{Arg, OUTPUTS_FILE, Param, Plan, Stage, StageKind};

/// Name of the DAG entrypoint template.
pub const ENTRYPOINT: &str = "main";
/// Name of the output parameter of a deploy template (and input parameter of a test template).
pub const OUTPUTS_PARAMETER: &str = "outputs";

/// Run-independent inputs of a render besides the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// SHA-256 (hex) of the canonical config, see [`config_sha256`].
    pub config_sha256: String,
    /// The commit the config came from; `None` renders `unknown`.
    pub commit: Option<String>,
    /// Default of the `repo-url` argument (from `pipeline.repository`).
    pub repo_url: Option<String>,
    /// Default of the `branch` argument (the first branch filter when it is not a glob).
    pub default_branch: Option<String>,
}

impl RenderOptions {
    /// Options for `config`: its hash, its repository URL and default branch.
    pub fn for_config(config: &Config, commit: Option<String>) -> Self {
        let default_branch =
            config.pipeline.branches.first().filter(|b| !b.contains(['*', '?', '[', '{'])).cloned();
        RenderOptions {
            config_sha256: config_sha256(config),
            commit,
            repo_url: config.pipeline.repository.as_ref().map(|r| format!("https://github.com/{r}.git")),
            default_branch,
        }
    }
}

/// Why a plan could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(
        "commit `{0}` is not a git commit SHA: pass 7 to 40 lower-case hex digits (e.g. `git rev-parse HEAD`)"
    )]
    InvalidCommit(String),
    #[error("config hash `{0}` is not a SHA-256 hex digest (64 lower-case hex digits)")]
    InvalidConfigHash(String),
}

/// SHA-256 of the config's canonical JSON form: formatting and comments of the YAML file do not change
/// it, any field that changes the pipeline does.
pub fn config_sha256(config: &Config) -> String {
    // Serializing a plain data model to a Vec cannot fail; an empty input would still hash.
    let canonical = serde_json::to_vec(config).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

/// Renders the plan as a WorkflowTemplate.
pub fn render(plan: &Plan, opts: &RenderOptions) -> Result<WorkflowTemplate, RenderError> {
    let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if opts.config_sha256.len() != 64 || !is_hex(&opts.config_sha256) {
        return Err(RenderError::InvalidConfigHash(opts.config_sha256.clone()));
    }
    let commit = match &opts.commit {
        Some(c) if (7..=40).contains(&c.len()) && is_hex(c) => c.clone(),
        Some(c) => return Err(RenderError::InvalidCommit(c.clone())),
        None => "unknown".to_owned(),
    };

    let pipeline_label = BTreeMap::from([(keys::PIPELINE.to_owned(), plan.pipeline.clone())]);
    let mut labels = pipeline_label.clone();
    labels.insert(keys::MANAGED_BY.into(), "aphex".into());
    labels.insert(keys::CONFIG_SHA256.into(), opts.config_sha256[..32].to_owned());
    labels.insert(keys::GENERATED_FROM_COMMIT.into(), commit.clone());
    // Lists of strings and a unit enum always serialize.
    let annotations = BTreeMap::from([
        (keys::TRIGGER_BRANCHES.to_owned(), serde_json::to_string(&plan.branches).unwrap_or_default()),
        (keys::TRIGGER_TAGS.to_owned(), serde_json::to_string(&plan.tags).unwrap_or_default()),
        (keys::TRIGGER_CONCURRENCY.to_owned(), serde_json::to_string(&plan.concurrency).unwrap_or_default()),
        (keys::CONFIG_SHA256.to_owned(), opts.config_sha256.clone()),
        (keys::GENERATED_FROM_COMMIT.to_owned(), commit),
        (keys::APHEX_VERSION.to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
        (
            "workflows.argoproj.io/description".to_owned(),
            format!(
                "AphexPipeline `{}`: validate, build, self-update, then deploy {}. Generated from \
                 aphex-config.yaml by aphex; do not edit by hand.",
                plan.pipeline,
                plan.environments.join(" -> ")
            ),
        ),
    ]);

    let mut templates = Vec::with_capacity(plan.stages.len() + plan.environments.len() + 2);
    templates.push(main_dag(plan));
    for env in &plan.environments {
        templates.push(env_dag(plan, env));
    }
    for (pod, members) in plan.pods() {
        templates.push(pod_template(plan, pod, &members));
    }

    Ok(WorkflowTemplate {
        api_version: API_VERSION.into(),
        kind: "WorkflowTemplate".into(),
        metadata: ObjectMeta {
            name: plan.pipeline.clone(),
            namespace: Some(plan.namespace.clone()),
            labels,
            annotations,
        },
        spec: WorkflowSpec {
            entrypoint: ENTRYPOINT.into(),
            arguments: Arguments { parameters: workflow_arguments(opts) },
            service_account_name: plan.service_account.clone(),
            active_deadline_seconds: plan.timeout_seconds,
            // Failed pods stay for their logs until the workflow's TTL removes them.
            pod_gc: PodGc { strategy: "OnPodSuccess".into() },
            ttl_strategy: TtlStrategy {
                seconds_after_success: 3 * 86_400,
                seconds_after_failure: 7 * 86_400,
            },
            on_exit: plan.finalize.id.clone(),
            workflow_metadata: Some(Metadata {
                labels: pipeline_label.clone(),
                annotations: BTreeMap::new(),
            }),
            pod_metadata: Some(Metadata { labels: pipeline_label, annotations: BTreeMap::new() }),
            templates,
        },
    })
}

fn workflow_arguments(opts: &RenderOptions) -> Vec<Parameter> {
    Param::WORKFLOW_ARGUMENTS
        .iter()
        .filter_map(|p| {
            let name = p.argument_name()?;
            let (value, description) = match p {
                Param::RepoUrl => (opts.repo_url.clone(), "Clone URL of the repository"),
                Param::CommitSha => (None, "The commit to build and deploy (full SHA)"),
                Param::Branch => (opts.default_branch.clone(), "The pushed branch"),
                Param::DeliveryId => (Some("manual".into()), "GitHub delivery id of the triggering webhook"),
                Param::Pusher => (Some("manual".into()), "Who pushed the commit"),
                Param::RunId | Param::RunStatus => return None,
            };
            Some(Parameter {
                name: name.into(),
                value,
                value_from: None,
                description: Some(description.into()),
            })
        })
        .collect()
}

/// The Argo expression for a run placeholder.
fn argo_expression(p: Param) -> String {
    match p.argument_name() {
        Some(name) => format!("{{{{workflow.parameters.{name}}}}}"),
        None if p == Param::RunId => "{{workflow.name}}".into(),
        None => "{{workflow.status}}".into(),
    }
}

/// The main DAG task (or env group) standing for a stage.
fn main_task_of(stage: &Stage) -> String {
    match &stage.kind {
        StageKind::Deploy { env, .. } | StageKind::Test { env } => env_group(env),
        _ => stage.pod.clone(),
    }
}

fn env_group(env: &str) -> String {
    format!("env-{env}")
}

fn depends_expr(names: Vec<String>) -> Option<String> {
    let mut uniq: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        if !uniq.contains(&n) {
            uniq.push(n);
        }
    }
    (!uniq.is_empty()).then(|| uniq.join(" && "))
}

fn main_dag(plan: &Plan) -> Template {
    let mut tasks: Vec<DagTask> = Vec::new();
    for stage in &plan.stages {
        let task = main_task_of(stage);
        if tasks.iter().any(|t| t.name == task) {
            continue;
        }
        // An env group waits for what its first stage (the deploy) waits for, outside the group.
        let deps = stage
            .depends_on
            .iter()
            .filter_map(|d| plan.stage(d))
            .map(main_task_of)
            .filter(|d| *d != task)
            .collect();
        tasks.push(DagTask {
            name: task.clone(),
            template: task,
            depends: depends_expr(deps),
            arguments: None,
        });
    }
    Template { name: ENTRYPOINT.into(), dag: Some(DagTemplate { tasks }), ..Default::default() }
}

fn env_dag(plan: &Plan, env: &str) -> Template {
    let group = env_group(env);
    let members: Vec<&Stage> =
        plan.stages.iter().filter(|s| main_task_of(s) == group && s.env_name() == Some(env)).collect();
    let in_group = |stage: &Stage| members.iter().any(|m| m.id == stage.id);
    let tasks = plan
        .pods()
        .into_iter()
        .filter(|(_, stages)| stages.iter().any(|s| in_group(s)))
        .map(|(pod, stages)| {
            // Dependencies on stages of other pods of this group; a dependency in the same pod is met
            // by the order inside the pod.
            let deps = stages
                .iter()
                .flat_map(|s| &s.depends_on)
                .filter_map(|d| members.iter().find(|m| &m.id == d))
                .map(|m| m.pod.clone())
                .filter(|d| d != pod)
                .collect();
            let arguments = stages.iter().find_map(|s| test_input_from(plan, s)).map(|deploy| Arguments {
                parameters: vec![Parameter {
                    name: OUTPUTS_PARAMETER.into(),
                    value: Some(format!(
                        "{{{{tasks.{}.outputs.parameters.{OUTPUTS_PARAMETER}}}}}",
                        deploy.pod
                    )),
                    ..Default::default()
                }],
            });
            DagTask { name: pod.to_owned(), template: pod.to_owned(), depends: depends_expr(deps), arguments }
        })
        .collect();
    Template {
        name: group,
        metadata: Some(env_metadata("environment", env)),
        synchronization: Some(Synchronization { mutexes: vec![Mutex { name: plan.mutex_name(env) }] }),
        dag: Some(DagTemplate { tasks }),
        ..Default::default()
    }
}

/// The deploy stage whose outputs a test stage reads, when it runs in another pod (then the outputs
/// travel as an Argo parameter); `None` when they share a pod or the stage is not a test.
fn test_input_from<'p>(plan: &'p Plan, stage: &Stage) -> Option<&'p Stage> {
    let StageKind::Test { .. } = stage.kind else { return None };
    stage
        .depends_on
        .iter()
        .filter_map(|d| plan.stage(d))
        .find(|d| matches!(d.kind, StageKind::Deploy { .. }) && d.pod != stage.pod)
}

fn env_metadata(stage: &str, env: &str) -> Metadata {
    Metadata {
        labels: BTreeMap::from([
            (keys::STAGE.to_owned(), stage.to_owned()),
            (keys::ENVIRONMENT.to_owned(), env.to_owned()),
        ]),
        annotations: BTreeMap::new(),
    }
}

/// (cpu request, memory request, memory limit) per stage kind. Build and deploy run user tooling
/// (npm, the CDK CLI's synth); the others only run `aphex`.
/// A pod running several stages gets the largest of their sizes (they run one at a time).
fn resources<'k>(kinds: impl IntoIterator<Item = &'k StageKind>) -> Resources {
    let size = |kind: &StageKind| match kind {
        StageKind::Build | StageKind::Deploy { .. } => 2,
        StageKind::Pipeline | StageKind::Test { .. } => 1,
        StageKind::Validate
        | StageKind::Finalize
        | StageKind::ApprovalRequested { .. }
        | StageKind::Approval { .. } => 0,
    };
    let (cpu, mem, limit) = match kinds.into_iter().map(size).max().unwrap_or(0) {
        2 => ("1", "2Gi", "4Gi"),
        1 => ("500m", "1Gi", "2Gi"),
        _ => ("100m", "256Mi", "512Mi"),
    };
    Resources {
        requests: BTreeMap::from([("cpu".to_owned(), cpu.to_owned()), ("memory".to_owned(), mem.to_owned())]),
        limits: BTreeMap::from([("memory".to_owned(), limit.to_owned())]),
    }
}

fn stage_label(kind: &StageKind) -> &'static str {
    match kind {
        StageKind::Validate => "validate",
        StageKind::Build => "build",
        StageKind::Pipeline => "pipeline",
        StageKind::ApprovalRequested { .. } => "notify",
        StageKind::Approval { .. } => "approval",
        StageKind::Deploy { .. } => "deploy",
        StageKind::Test { .. } => "test",
        StageKind::Finalize => "finalize",
    }
}

/// The template of one pod: its stages run in plan order (`aphex step chain` when there are several).
fn pod_template(plan: &Plan, pod: &str, members: &[&Stage]) -> Template {
    let Some(first) = members.first() else {
        return Template { name: pod.to_owned(), ..Default::default() };
    };
    // A pod named after its only (or first) stage carries that stage's kind; a shared pod its own name.
    let label = if first.id == pod { stage_label(&first.kind) } else { pod };
    let mut meta = match first.env_name() {
        Some(env) => env_metadata(label, env),
        None => Metadata {
            labels: BTreeMap::from([(keys::STAGE.to_owned(), label.to_owned())]),
            annotations: BTreeMap::new(),
        },
    };
    if members.len() > 1 {
        let ids: Vec<&str> = members.iter().map(|s| s.id.as_str()).collect();
        meta.annotations.insert(keys::STAGES.to_owned(), serde_json::to_string(&ids).unwrap_or_default());
    }
    for stage in members {
        if let StageKind::Deploy { stacks, .. } = &stage.kind {
            // The stack DAG as deploy waves, on the pod: visible in the Argo UI, and a reorder of
            // stacks changes the template.
            let waves = stacks.iter().map(|s| s.wave).max().map_or(0, |w| w + 1);
            let grouped: Vec<Vec<&str>> = (0..waves)
                .map(|w| stacks.iter().filter(|s| s.wave == w).map(|s| s.name.as_str()).collect())
                .collect();
            meta.annotations
                .insert(keys::STACKS.to_owned(), serde_json::to_string(&grouped).unwrap_or_default());
            let sources: BTreeMap<&str, &str> =
                stacks.iter().filter_map(|s| s.path.as_deref().map(|p| (s.name.as_str(), p))).collect();
            if !sources.is_empty() {
                meta.annotations.insert(
                    keys::STACK_SOURCES.to_owned(),
                    serde_json::to_string(&sources).unwrap_or_default(),
                );
            }
        }
    }
    let metadata = Some(meta);
    if let StageKind::Approval { .. } = first.kind {
        return Template {
            name: pod.to_owned(),
            metadata,
            suspend: Some(SuspendTemplate {}),
            ..Default::default()
        };
    }

    let words = |stage: &Stage| -> Vec<String> {
        stage
            .args
            .iter()
            .map(|a| match a {
                Arg::Literal(s) => s.clone(),
                Arg::Param(p) => argo_expression(*p),
            })
            .collect()
    };
    let (command, args) = match members {
        [only] => {
            let mut argv = words(only).into_iter();
            (argv.next().into_iter().collect::<Vec<_>>(), argv.collect::<Vec<_>>())
        }
        _ => {
            // `aphex step chain N w1..wN M w1..wM`: each stage's words after the program name, led by
            // their count, so no value (a branch name, a path) can be taken for a separator.
            let mut args = vec!["step".to_owned(), "chain".to_owned()];
            let mut program = Vec::new();
            for stage in members {
                let mut argv = words(stage).into_iter();
                if program.is_empty() {
                    program.extend(argv.next());
                } else {
                    argv.next();
                }
                let rest: Vec<String> = argv.collect();
                args.push(rest.len().to_string());
                args.extend(rest);
            }
            (program, args)
        }
    };

    let mut env = vec![EnvVar { name: "APHEX_PIPELINE".into(), value: plan.pipeline.clone() }];
    if let Some(bucket) = &plan.artifact_bucket {
        env.push(EnvVar { name: "APHEX_ARTIFACT_BUCKET".into(), value: bucket.clone() });
    }
    for (k, v) in members.iter().flat_map(|s| &s.env) {
        if !env.iter().any(|e| &e.name == k) {
            env.push(EnvVar { name: k.clone(), value: v.clone() });
        }
    }

    let outputs = members.iter().any(|s| matches!(s.kind, StageKind::Deploy { .. })).then(|| Outputs {
        parameters: vec![Parameter {
            name: OUTPUTS_PARAMETER.into(),
            value_from: Some(ValueFrom { path: OUTPUTS_FILE.into(), default: Some("{}".into()) }),
            description: Some("Stack outputs of this environment as JSON: {stack: {key: value}}".into()),
            ..Default::default()
        }],
    });
    let inputs = members.iter().any(|s| test_input_from(plan, s).is_some()).then(|| Inputs {
        parameters: vec![Parameter { name: OUTPUTS_PARAMETER.into(), ..Default::default() }],
        artifacts: vec![Artifact {
            name: OUTPUTS_PARAMETER.into(),
            path: OUTPUTS_FILE.into(),
            raw: RawArtifact { data: format!("{{{{inputs.parameters.{OUTPUTS_PARAMETER}}}}}") },
        }],
    });
    // The pod's deadline is the sum of its stages' limits (they run one after another), within the
    // run's; a stage without one leaves the pod to the run's deadline.
    let deadline: Option<u64> =
        members.iter().map(|s| s.timeout_seconds).sum::<Option<u64>>().map(|d| d.min(plan.timeout_seconds));

    Template {
        name: pod.to_owned(),
        metadata,
        inputs,
        outputs,
        synchronization: None,
        retry_strategy: Some(RetryStrategy {
            limit: "3".into(),
            retry_policy: "OnError".into(),
            backoff: Backoff { duration: "10s".into(), factor: "2".into(), max_duration: "5m".into() },
        }),
        active_deadline_seconds: deadline.map(|s| s.to_string()),
        dag: None,
        suspend: None,
        container: Some(Container {
            image: plan.image.clone(),
            command,
            args,
            env,
            env_from: vec![EnvFromSource {
                config_map_ref: ConfigMapEnvSource { name: PLATFORM_CONFIGMAP.into(), optional: true },
            }],
            resources: resources(members.iter().map(|s| &s.kind)),
        }),
    }
}

/// YAML, as `kubectl apply -f` takes it: every string that a YAML 1.1 or 1.2 reader would take for
/// another type is quoted (see [`crate::yaml_out`]), so it loads to exactly the values of [`to_json`].
pub fn to_yaml(template: &WorkflowTemplate) -> String {
    // Plain structs of strings, integers, maps and lists always serialize.
    crate::yaml_out::to_string(template).unwrap_or_default()
}

/// Pretty JSON with a trailing newline.
pub fn to_json(template: &WorkflowTemplate) -> String {
    let mut s = serde_json::to_string_pretty(template).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests;
