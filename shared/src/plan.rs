//! The pipeline plan: a pure function from a validated config to ordered stages (no Argo in it).
//!
//! Both executors run the same [`Plan`]: the Argo renderer ([`crate::argo`]) turns it into a
//! WorkflowTemplate, the local runner executes it in process. A stage's command line is data
//! ([`Arg`]); each executor resolves the run-specific placeholders (commit, branch, run id, ...).
//!
//! Design choice: **one deploy stage per environment.** One pod deploys every stack of the environment
//! and the deploy engine runs independent stacks in parallel itself. One synth per environment (synth
//! runs the whole CDK app anyway), one artifact download, one set of credentials; a stack DAG made of
//! pods would synthesize the app once per stack. The plan still carries the stack DAG
//! ([`PlannedStack`]: dependencies and wave) so graphs show it and tests can check it.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;

use crate::config::{Approval, Concurrency, Config, Environment, NotifyOn};

/// Where a deploy step writes its stack outputs (JSON) inside its pod, and where a test step reads them.
pub const OUTPUTS_FILE: &str = "/tmp/aphex/outputs.json";

/// The pod that runs `validate`, `build` and `pipeline` one after another.
///
/// Why one pod: each pod costs a scheduling round (Argo requeues a workflow at most once per
/// `DEFAULT_REQUEUE_TIME`, at least 1 s, after each pod event) plus, on EKS, a pod start and a clone.
/// The three stages always run in sequence on the same commit, so splitting them buys nothing but
/// that latency. Likewise an environment's tests run in its deploy pod (`deploy-<env>`): they read the
/// stack outputs from the file the deploy wrote, with no hand-over through Argo parameters.
pub const PREPARE_POD: &str = "prepare";

/// Time limit of the validate stage (a clone, the config checks, one STS call per environment).
const VALIDATE_SECONDS: u64 = 600;
/// Room a stage that deploys gets on top of its CloudFormation waits: checkout, synth, asset publishing.
const SYNTH_SECONDS: u64 = 1800;
/// The most waits of `deployTimeoutMinutes` one stack deploy can make: an operation already running,
/// the deletion of a failed creation, the change set's creation, its execution (`deploy::stack`).
const WAITS_PER_STACK: u64 = 4;
/// Stacks the deploy step deploys at once.
const DEPLOY_CONCURRENCY: usize = crate::deploy::DEFAULT_CONCURRENCY;

/// The whole pipeline, in execution order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// `pipeline.name`: the WorkflowTemplate's name and the prefix of the mutexes.
    pub pipeline: String,
    /// Kubernetes namespace of the pipeline.
    pub namespace: String,
    /// Runner image of every stage.
    pub image: String,
    /// Service account of the pipeline's pods.
    pub service_account: String,
    /// Upper bound of a whole run.
    pub timeout_seconds: u64,
    /// What a new push does while a run is in progress.
    pub concurrency: Concurrency,
    /// `pipeline.branches`: branch globs whose pushes start a run.
    pub branches: Vec<String>,
    /// `pipeline.tags`: tag globs whose pushes start a run.
    pub tags: Vec<String>,
    /// Artifact bucket (`pipeline.artifactBucket`), when the config names one.
    pub artifact_bucket: Option<String>,
    /// The environment names in deploy order.
    pub environments: Vec<String>,
    /// Every stage except finalize, in a valid execution order (each after its dependencies).
    pub stages: Vec<Stage>,
    /// Runs after everything else, whatever the outcome (Argo `onExit`).
    pub finalize: Stage,
}

/// One unit of work: a pod in Argo, a step call in the local runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// Stable id, unique in the plan, usable as an Argo task and template name: `validate`, `build`,
    /// `pipeline`, `approve-<env>`, `deploy-<env>`, `test-<env>`, `finalize`.
    pub id: String,
    pub kind: StageKind,
    /// Ids of the stages that must succeed first.
    pub depends_on: Vec<String>,
    /// The command line (`aphex step ...`); empty for an approval gate, which runs nothing.
    pub args: Vec<Arg>,
    /// Environment variables the stage needs besides the arguments (region and account of an env).
    pub env: Vec<(String, String)>,
    /// Time limit of the stage, when the config bounds it (build and tests).
    pub timeout_seconds: Option<u64>,
    /// The pod this stage runs in (Argo): stages sharing a pod run one after another in one process,
    /// in plan order, and stop at the first failure. The local runner runs every stage in one process
    /// anyway and ignores it. An approval gate runs no pod: this is its suspend node's name. See
    /// [`PREPARE_POD`] and [`Plan::pods`].
    pub pod: String,
}

/// What a stage does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum StageKind {
    Validate,
    Build,
    /// Self-update: deploy the pipeline's own stack when it changed, then regenerate and apply the
    /// WorkflowTemplate.
    Pipeline,
    /// Announces that the run reached the manual approval gate `gate` before `env` (runs just before the
    /// gate, when `notifications.on` has `approval`): `aphex step notify --event approval-requested`.
    ApprovalRequested {
        env: String,
        gate: String,
        /// The config's `notifications` the event carries (Slack secret, extra topic, `on`).
        settings: crate::notify::NotificationSettings,
    },
    /// Manual approval gate before an environment.
    Approval {
        env: String,
    },
    /// Deploys every stack of an environment; `stacks` is in a valid deploy order.
    Deploy {
        env: String,
        region: String,
        account: String,
        stacks: Vec<PlannedStack>,
    },
    /// Post-deploy tests of an environment; they read the deploy stage's outputs.
    Test {
        env: String,
    },
    /// Run record, metrics, notification event. Always runs.
    Finalize,
}

/// A stack inside a deploy stage: the stack DAG of one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedStack {
    pub name: String,
    /// Stacks of the same environment deployed before this one (from `dependsOn`).
    pub depends_on: Vec<String>,
    /// 0 for stacks without dependencies; otherwise 1 + the highest wave of its dependencies. Stacks of
    /// one wave can deploy in parallel.
    pub wave: usize,
    /// `stacks[].path`: the source file that defines the stack (shown on the deploy pod).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// One command-line word: a literal, or a value only the executor knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "value")]
pub enum Arg {
    Literal(String),
    Param(Param),
}

/// Values that differ per run, resolved by the executor (Argo: workflow parameters and variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Param {
    /// Clone URL of the repository (`repo-url`).
    RepoUrl,
    /// The pushed commit (`commit-sha`).
    CommitSha,
    /// The pushed branch (`branch`).
    Branch,
    /// GitHub delivery id of the triggering webhook (`delivery-id`).
    DeliveryId,
    /// Who pushed (`pusher`).
    Pusher,
    /// Unique id of this run (Argo: the workflow name).
    RunId,
    /// Final status of the run, for finalize (Argo: `workflow.status`).
    RunStatus,
}

impl Param {
    /// Every parameter a run is started with (the Argo workflow arguments), in a stable order.
    pub const WORKFLOW_ARGUMENTS: [Param; 5] =
        [Param::RepoUrl, Param::CommitSha, Param::Branch, Param::DeliveryId, Param::Pusher];

    /// The name of the workflow argument, or `None` for values the executor makes up itself.
    pub fn argument_name(self) -> Option<&'static str> {
        match self {
            Param::RepoUrl => Some("repo-url"),
            Param::CommitSha => Some("commit-sha"),
            Param::Branch => Some("branch"),
            Param::DeliveryId => Some("delivery-id"),
            Param::Pusher => Some("pusher"),
            Param::RunId | Param::RunStatus => None,
        }
    }
}

/// Why a config cannot be planned. `config` validation reports these with positions first; the plan
/// checks again so that nothing ever renders from a config that skipped validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the config has no environment; add one under `environments`")]
    NoEnvironment,
    #[error("environment name `{0}` appears more than once; environment names must be unique")]
    DuplicateEnvironment(String),
    #[error(
        "environment name `{0}` is not a valid name: use lower-case letters, digits and '-' (at most 32)"
    )]
    InvalidEnvironmentName(String),
    #[error("environment `{env}` has no stacks; list at least one under `stacks`")]
    NoStacks { env: String },
    #[error("stack `{stack}` appears more than once in environment `{env}`")]
    DuplicateStack { env: String, stack: String },
    #[error("stack `{stack}` in environment `{env}` depends on `{missing}`, which is not a stack of `{env}`")]
    UnknownDependency { env: String, stack: String, missing: String },
    #[error("the stacks of environment `{env}` depend on each other in a cycle: {cycle}")]
    DependencyCycle { env: String, cycle: String },
    #[error("pipeline name `{0}` is not a valid name: use lower-case letters, digits and '-' (at most 52)")]
    InvalidPipelineName(String),
}

/// Builds the plan. The config must be valid (see [`check`]); for an invalid one this still returns a
/// plan without panicking: unknown dependencies are ignored and cycles are broken in listed order.
pub fn build(config: &Config) -> Plan {
    let p = &config.pipeline;
    let common = |out: &mut Vec<Arg>| {
        for (flag, param) in [
            ("--repo-url", Param::RepoUrl),
            ("--commit-sha", Param::CommitSha),
            ("--branch", Param::Branch),
            ("--run-id", Param::RunId),
        ] {
            out.push(Arg::Literal(flag.into()));
            out.push(Arg::Param(param));
        }
    };
    let step = |words: &[&str]| {
        let mut args: Vec<Arg> =
            ["aphex", "step"].iter().chain(words).map(|w| Arg::Literal((*w).into())).collect();
        common(&mut args);
        args
    };

    let mut stages = Vec::with_capacity(3 + 3 * config.environments.len());
    stages.push(Stage {
        id: "validate".into(),
        kind: StageKind::Validate,
        depends_on: vec![],
        args: step(&["validate"]),
        env: vec![],
        // A clone and a few API calls.
        timeout_seconds: Some(VALIDATE_SECONDS),
        pod: PREPARE_POD.into(),
    });
    let build_commands = config.build.commands.len().max(1) as u64;
    stages.push(Stage {
        id: "build".into(),
        kind: StageKind::Build,
        depends_on: vec!["validate".into()],
        args: step(&["build"]),
        env: vec![],
        // Each command has its own limit (enforced by the step); the stage adds room for clone + upload.
        timeout_seconds: Some(u64::from(config.build.timeout_minutes) * 60 * build_commands + 600),
        pod: PREPARE_POD.into(),
    });
    stages.push(Stage {
        id: "pipeline".into(),
        kind: StageKind::Pipeline,
        depends_on: vec!["build".into()],
        args: step(&["pipeline"]),
        env: vec![],
        // The pipeline's own stack: up to WAITS_PER_STACK waits of the default deploy deadline;
        // rendering and applying the template take seconds.
        timeout_seconds: Some(
            WAITS_PER_STACK * u64::from(crate::config::defaults::deploy_timeout()) * 60 + SYNTH_SECONDS,
        ),
        pod: PREPARE_POD.into(),
    });

    let settings =
        config.notifications.as_ref().map(crate::notify::NotificationSettings::from).unwrap_or_default();
    let mut previous = "pipeline".to_owned();
    for env in &config.environments {
        let region_env = region_vars(env);
        let mut deploy_deps = vec![previous.clone()];
        if env.approval == Approval::Manual {
            let id = format!("approve-{}", env.name);
            let mut gate_deps = vec![previous.clone()];
            if settings.on.contains(&NotifyOn::Approval) {
                let notify_id = format!("{}{}", crate::steps::notify::APPROVAL_STAGE_PREFIX, env.name);
                let mut args = step(&[
                    "notify",
                    "--event",
                    crate::steps::notify::EVENT_APPROVAL_REQUESTED,
                    "--env",
                    &env.name,
                    "--gate",
                    &id,
                    "--namespace",
                    &p.namespace,
                ]);
                for (flag, value) in [
                    ("--slack-webhook-secret", settings.slack_webhook_secret.as_ref()),
                    ("--sns-topic-arn", settings.sns_topic_arn.as_ref()),
                ] {
                    if let Some(value) = value {
                        args.extend([Arg::Literal(flag.into()), Arg::Literal(value.clone())]);
                    }
                }
                let on: Vec<&str> = settings.on.iter().map(|o| crate::notify::outcome_word(*o)).collect();
                args.extend([Arg::Literal("--notify-on".into()), Arg::Literal(on.join(","))]);
                stages.push(Stage {
                    id: notify_id.clone(),
                    kind: StageKind::ApprovalRequested {
                        env: env.name.clone(),
                        gate: id.clone(),
                        settings: settings.clone(),
                    },
                    depends_on: vec![previous.clone()],
                    args,
                    env: vec![],
                    timeout_seconds: Some(300),
                    pod: notify_id.clone(),
                });
                gate_deps = vec![notify_id];
            }
            stages.push(Stage {
                id: id.clone(),
                kind: StageKind::Approval { env: env.name.clone() },
                depends_on: gate_deps,
                args: vec![],
                env: vec![],
                timeout_seconds: None,
                pod: id.clone(),
            });
            deploy_deps = vec![id];
        }
        let deploy_id = format!("deploy-{}", env.name);
        let stacks = stack_dag(env).unwrap_or_else(|_| stack_dag_lenient(env));
        // Rounds of stack deploys: a wave's stacks run DEPLOY_CONCURRENCY at a time.
        let wave_count = stacks.iter().map(|s| s.wave + 1).max().unwrap_or(1);
        let rounds: u64 = (0..wave_count)
            .map(|w| stacks.iter().filter(|s| s.wave == w).count().div_ceil(DEPLOY_CONCURRENCY).max(1) as u64)
            .sum();
        let mut args = step(&["deploy", "--env", &env.name]);
        args.extend([Arg::Literal("--outputs-file".into()), Arg::Literal(OUTPUTS_FILE.into())]);
        stages.push(Stage {
            id: deploy_id.clone(),
            kind: StageKind::Deploy {
                env: env.name.clone(),
                region: env.region.clone(),
                account: env.account.clone(),
                stacks,
            },
            depends_on: deploy_deps,
            args,
            env: region_env.clone(),
            // Every round's stacks may each wait WAITS_PER_STACK times `deployTimeoutMinutes`; plus
            // synth and asset publishing. Never shorter than the engine's own deadlines, so they
            // report (naming the stack and its newest event) before Argo stops the pod.
            timeout_seconds: Some(
                rounds * WAITS_PER_STACK * u64::from(env.deploy_timeout_minutes) * 60 + SYNTH_SECONDS,
            ),
            pod: deploy_id.clone(),
        });
        previous = deploy_id.clone();
        if let Some(tests) = &env.tests {
            let id = format!("test-{}", env.name);
            let mut args = step(&["test", "--env", &env.name]);
            args.extend([Arg::Literal("--outputs-file".into()), Arg::Literal(OUTPUTS_FILE.into())]);
            let commands = tests.commands.len().max(1) as u64;
            stages.push(Stage {
                id: id.clone(),
                kind: StageKind::Test { env: env.name.clone() },
                depends_on: vec![deploy_id.clone()],
                args,
                env: region_env,
                timeout_seconds: Some(u64::from(tests.timeout_minutes) * 60 * commands + 300),
                pod: deploy_id,
            });
            previous = id;
        }
    }

    let mut finalize_args = step(&["finalize"]);
    for (flag, param) in
        [("--delivery-id", Param::DeliveryId), ("--pusher", Param::Pusher), ("--status", Param::RunStatus)]
    {
        finalize_args.push(Arg::Literal(flag.into()));
        finalize_args.push(Arg::Param(param));
    }
    let finalize = Stage {
        id: "finalize".into(),
        kind: StageKind::Finalize,
        depends_on: vec![],
        args: finalize_args,
        env: vec![],
        timeout_seconds: Some(600),
        pod: "finalize".into(),
    };

    Plan {
        pipeline: p.name.clone(),
        namespace: p.namespace.clone(),
        image: p.image.clone(),
        service_account: p.service_account.clone(),
        timeout_seconds: u64::from(p.timeout_minutes) * 60,
        concurrency: p.concurrency,
        branches: p.branches.clone(),
        tags: p.tags.clone(),
        artifact_bucket: p.artifact_bucket.clone(),
        environments: config.environments.iter().map(|e| e.name.clone()).collect(),
        stages,
        finalize,
    }
}

fn region_vars(env: &Environment) -> Vec<(String, String)> {
    vec![
        ("APHEX_ENVIRONMENT".into(), env.name.clone()),
        ("AWS_REGION".into(), env.region.clone()),
        ("AWS_DEFAULT_REGION".into(), env.region.clone()),
        ("CDK_DEFAULT_REGION".into(), env.region.clone()),
        ("CDK_DEFAULT_ACCOUNT".into(), env.account.clone()),
    ]
}

/// The checks the plan relies on. Config validation reports the same faults with source positions.
pub fn check(config: &Config) -> Result<(), PlanError> {
    if !valid_name(&config.pipeline.name, 52) {
        return Err(PlanError::InvalidPipelineName(config.pipeline.name.clone()));
    }
    if config.environments.is_empty() {
        return Err(PlanError::NoEnvironment);
    }
    let mut seen = BTreeSet::new();
    for env in &config.environments {
        if !valid_name(&env.name, 32) {
            return Err(PlanError::InvalidEnvironmentName(env.name.clone()));
        }
        if !seen.insert(env.name.as_str()) {
            return Err(PlanError::DuplicateEnvironment(env.name.clone()));
        }
        stack_dag(env)?;
    }
    Ok(())
}

/// Lower-case letters, digits and '-', starting and ending alphanumeric (DNS-1123 label).
fn valid_name(name: &str, max: usize) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// The stack DAG of an environment in deploy order: Kahn's algorithm where, among the stacks whose
/// dependencies are done, the one listed first goes first.
pub fn stack_dag(env: &Environment) -> Result<Vec<PlannedStack>, PlanError> {
    if env.stacks.is_empty() {
        return Err(PlanError::NoStacks { env: env.name.clone() });
    }
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(env.stacks.len());
    for (i, s) in env.stacks.iter().enumerate() {
        if index.insert(s.name.as_str(), i).is_some() {
            return Err(PlanError::DuplicateStack { env: env.name.clone(), stack: s.name.clone() });
        }
    }
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(env.stacks.len());
    for s in &env.stacks {
        let mut d = Vec::with_capacity(s.depends_on.len());
        for dep in &s.depends_on {
            match index.get(dep.as_str()) {
                Some(&j) => d.push(j),
                None => {
                    return Err(PlanError::UnknownDependency {
                        env: env.name.clone(),
                        stack: s.name.clone(),
                        missing: dep.clone(),
                    });
                }
            }
        }
        deps.push(d);
    }
    topo(env, &deps).map_err(|cycle| PlanError::DependencyCycle {
        env: env.name.clone(),
        cycle: cycle.iter().map(|&i| env.stacks[i].name.as_str()).collect::<Vec<_>>().join(" -> "),
    })
}

/// For an unvalidated config: unknown dependencies dropped, a cycle broken by listed order.
fn stack_dag_lenient(env: &Environment) -> Vec<PlannedStack> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, s) in env.stacks.iter().enumerate() {
        index.entry(s.name.as_str()).or_insert(i);
    }
    // Keeping only dependencies on stacks listed earlier makes the graph acyclic.
    let deps: Vec<Vec<usize>> = env
        .stacks
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.depends_on.iter().filter_map(|d| index.get(d.as_str()).copied()).filter(|&j| j < i).collect()
        })
        .collect();
    topo(env, &deps).unwrap_or_default()
}

/// Kahn's algorithm with listed order breaking ties; on a cycle returns one cycle as stack indices.
fn topo(env: &Environment, deps: &[Vec<usize>]) -> Result<Vec<PlannedStack>, Vec<usize>> {
    let n = deps.len();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut missing: Vec<usize> = vec![0; n];
    for (i, d) in deps.iter().enumerate() {
        let mut uniq: Vec<usize> = d.clone();
        uniq.sort_unstable();
        uniq.dedup();
        missing[i] = uniq.len();
        for j in uniq {
            dependents[j].push(i);
        }
    }
    // A min-heap on the listed index keeps the order deterministic and close to what the user wrote.
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> =
        (0..n).filter(|&i| missing[i] == 0).map(std::cmp::Reverse).collect();
    let mut wave = vec![0usize; n];
    let mut out = Vec::with_capacity(n);
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        let s = &env.stacks[i];
        let names: Vec<String> = deps[i].iter().map(|&j| env.stacks[j].name.clone()).collect();
        out.push(PlannedStack {
            name: s.name.clone(),
            depends_on: dedup_keep_order(&names),
            wave: wave[i],
            path: s.path.clone(),
        });
        for &k in &dependents[i] {
            wave[k] = wave[k].max(wave[i] + 1);
            missing[k] -= 1;
            if missing[k] == 0 {
                ready.push(std::cmp::Reverse(k));
            }
        }
    }
    if out.len() == n {
        return Ok(out);
    }
    // Walk dependencies from a stuck node until a node repeats: that loop is a cycle.
    let start = (0..n).find(|&i| missing[i] > 0).unwrap_or(0);
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = deps[cur].iter().copied().find(|&j| missing[j] > 0).unwrap_or(start);
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(next);
            return Err(cycle);
        }
        path.push(next);
        cur = next;
    }
}

fn dedup_keep_order(v: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    v.iter().filter(|s| seen.insert(s.as_str())).cloned().collect()
}

impl Plan {
    /// The stage with this id (finalize included).
    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().chain(std::iter::once(&self.finalize)).find(|s| s.id == id)
    }

    /// The stages grouped by the pod they run in, pods in execution order (the order of their first
    /// stage), stages of a pod in plan order. Finalize is last, alone.
    pub fn pods(&self) -> Vec<(&str, Vec<&Stage>)> {
        let mut pods: Vec<(&str, Vec<&Stage>)> = Vec::new();
        for stage in self.stages.iter().chain(std::iter::once(&self.finalize)) {
            match pods.iter_mut().find(|(pod, _)| *pod == stage.pod) {
                Some((_, members)) => members.push(stage),
                None => pods.push((stage.pod.as_str(), vec![stage])),
            }
        }
        pods
    }

    /// The mutex serializing deploys of one environment across runs: `aphex-<pipeline>-<env>`.
    pub fn mutex_name(&self, env: &str) -> String {
        format!("aphex-{}-{}", self.pipeline, env)
    }
}

impl Stage {
    /// The environment this stage belongs to, if any.
    pub fn env_name(&self) -> Option<&str> {
        match &self.kind {
            StageKind::ApprovalRequested { env, .. }
            | StageKind::Approval { env }
            | StageKind::Deploy { env, .. }
            | StageKind::Test { env } => Some(env),
            _ => None,
        }
    }

    /// The command line with every placeholder resolved by `resolve`.
    pub fn argv(&self, mut resolve: impl FnMut(Param) -> String) -> Vec<String> {
        self.args
            .iter()
            .map(|a| match a {
                Arg::Literal(s) => s.clone(),
                Arg::Param(p) => resolve(*p),
            })
            .collect()
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageKind::Validate => f.write_str("validate"),
            StageKind::Build => f.write_str("build"),
            StageKind::Pipeline => f.write_str("pipeline self-update"),
            StageKind::ApprovalRequested { env, .. } => write!(f, "notify: approval requested for {env}"),
            StageKind::Approval { env } => write!(f, "manual approval before {env}"),
            StageKind::Deploy { env, region, account, .. } => write!(f, "deploy {env} ({account}, {region})"),
            StageKind::Test { env } => write!(f, "post-deploy tests of {env}"),
            StageKind::Finalize => f.write_str("finalize (always runs)"),
        }
    }
}

impl fmt::Display for Plan {
    /// A readable listing: one line per stage with its dependencies, the stack waves of each deploy and
    /// the command line with placeholders shown as `<name>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pipeline {} (namespace {}, image {}, service account {}, timeout {} min, concurrency {:?})",
            self.pipeline,
            self.namespace,
            self.image,
            self.service_account,
            self.timeout_seconds / 60,
            self.concurrency
        )?;
        for (n, stage) in self.stages.iter().chain(std::iter::once(&self.finalize)).enumerate() {
            let after = if stage.depends_on.is_empty() {
                String::new()
            } else {
                format!("  (after {})", stage.depends_on.join(", "))
            };
            // Name the pod where it holds more than this stage.
            let shared = self.stages.iter().filter(|s| s.pod == stage.pod).count() > 1;
            let pod = if shared { format!("  [pod {}]", stage.pod) } else { String::new() };
            writeln!(f, "{:>3}. {:<20} {}{}{}", n + 1, stage.id, stage.kind, after, pod)?;
            if let StageKind::Deploy { stacks, env, .. } = &stage.kind {
                let waves = stacks.iter().map(|s| s.wave).max().unwrap_or(0);
                for w in 0..=waves {
                    let names: Vec<String> = stacks
                        .iter()
                        .filter(|s| s.wave == w)
                        .map(|s| {
                            if s.depends_on.is_empty() {
                                s.name.clone()
                            } else {
                                format!("{} (after {})", s.name, s.depends_on.join(", "))
                            }
                        })
                        .collect();
                    writeln!(f, "       wave {}: {}", w + 1, names.join(", "))?;
                }
                writeln!(f, "       lock: {}", self.mutex_name(env))?;
            }
            if !stage.args.is_empty() {
                let argv = stage.argv(|p| format!("<{}>", param_label(p)));
                writeln!(f, "       $ {}", argv.join(" "))?;
            }
        }
        Ok(())
    }
}

fn param_label(p: Param) -> &'static str {
    p.argument_name().unwrap_or(match p {
        Param::RunId => "run-id",
        _ => "status",
    })
}

#[cfg(test)]
mod tests;
