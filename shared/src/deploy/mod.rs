//! The deploy engine: deploys the selected stacks of a cloud assembly to one environment through the
//! CloudFormation API (change sets or direct), in parallel along the dependency graph, with asset
//! publishing, bootstrap checks, skip-if-unchanged, event streaming and exact failure reports.

pub mod assets;
pub mod cloud;
pub mod select;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use indexmap::IndexMap;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::assembly::{self, AssemblyError, CloudAssembly, Stack};
use crate::config::{Config, Environment};
use crate::synth::{SynthError, SynthOptions};

pub use cloud::{
    AssetStore, ChangeSetInfo, ChangeSetKind, Cloud, CloudError, DeployedStack, ResourceChange, SdkCloud,
    StackDeployer, StackEvent, StackInput, UpdateStarted,
};
pub use select::{PlannedStack, SelectError};

/// CloudFormation's limit for an inline TemplateBody; bigger templates go through S3.
pub const MAX_TEMPLATE_BODY: usize = 51_200;

/// How stacks are deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// CreateChangeSet + ExecuteChangeSet (the CDK CLI's default).
    #[default]
    ChangeSet,
    /// CreateStack / UpdateStack.
    Direct,
}

/// Options of one environment deploy.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub concurrency: usize,
    pub method: Method,
    /// Create and describe change sets, execute nothing.
    pub dry_run: bool,
    /// Identifies the run in STS session names and change set names.
    pub run_id: String,
    /// Narrow the environment's stacks to these names/patterns (empty: all).
    pub stacks: Vec<String>,
    /// A pre-synthesized assembly; synthesized just in time when None.
    pub assembly: Option<PathBuf>,
    /// Where to write `{stack: {key: value}}`.
    pub outputs_file: Option<PathBuf>,
    /// Print progress lines to stderr.
    pub progress: bool,
    /// Smallest and largest polling interval.
    pub poll_min: Duration,
    pub poll_max: Duration,
}

impl Default for DeployOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            method: Method::ChangeSet,
            dry_run: false,
            run_id: format!("local-{}", uuid::Uuid::new_v4().simple()),
            stacks: Vec::new(),
            assembly: None,
            outputs_file: None,
            progress: true,
            poll_min: Duration::from_millis(100),
            poll_max: Duration::from_secs(5),
        }
    }
}

/// Why an environment deploy could not run (stack failures are in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("environment {0:?} is not in the config")]
    UnknownEnvironment(String),
    #[error(transparent)]
    Synth(#[from] SynthError),
    #[error(transparent)]
    Assembly(#[from] AssemblyError),
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error("cannot write outputs to {path}: {source}")]
    Outputs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The first failed resource of a stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedResource {
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: String,
}

/// What happened to one stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum StackOutcome {
    /// Created or updated.
    Deployed,
    /// Template, parameters and tags equal the deployed ones: nothing was written.
    Unchanged,
    /// CloudFormation found nothing to change.
    NoChanges,
    /// `--dry-run`: the change set's resource changes.
    Planned { changes: Vec<ResourceChange> },
    Failed {
        message: String,
        resource: Option<FailedResource>,
        /// The final stack status, e.g. ROLLBACK_COMPLETE or UPDATE_ROLLBACK_COMPLETE.
        final_status: Option<String>,
    },
    /// Not started because of a failure.
    NotStarted { reason: String },
}

/// The report of one stack.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackReport {
    pub stack_name: String,
    pub display_name: String,
    pub outcome: StackOutcome,
    pub duration_ms: u128,
    /// Time spent waiting on AWS (polling CloudFormation).
    pub aws_wait_ms: u128,
    pub outputs: BTreeMap<String, String>,
}

/// The report of an environment deploy.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployReport {
    pub environment: String,
    pub stacks: Vec<StackReport>,
    pub duration_ms: u128,
    pub synth_ms: Option<u128>,
    /// `{stack: {key: value}}`.
    pub outputs: IndexMap<String, BTreeMap<String, String>>,
}

impl DeployReport {
    pub fn success(&self) -> bool {
        self.stacks
            .iter()
            .all(|s| !matches!(s.outcome, StackOutcome::Failed { .. } | StackOutcome::NotStarted { .. }))
    }

    /// One line per failed or skipped stack.
    pub fn failures(&self) -> Vec<String> {
        self.stacks
            .iter()
            .filter_map(|s| match &s.outcome {
                StackOutcome::Failed { message, .. } => Some(message.clone()),
                StackOutcome::NotStarted { reason } => {
                    Some(format!("stack {} not started: {reason}", s.display_name))
                }
                _ => None,
            })
            .collect()
    }
}

/// Synthesizes (unless an assembly is given) and deploys environment `env_name` of `config`, whose
/// repository is `work_dir`, with the real AWS SDK adapters.
pub async fn deploy_environment(
    config: &Config,
    env_name: &str,
    options: &DeployOptions,
    work_dir: &Path,
) -> Result<DeployReport, DeployError> {
    let env =
        config.environment(env_name).ok_or_else(|| DeployError::UnknownEnvironment(env_name.to_owned()))?;
    let (plan, synth) = prepare(config, env, options, work_dir).await?;
    let cloud = SdkCloud::new(&options.run_id);
    let mut report = deploy_plan(Arc::new(cloud), env, plan, options).await;
    report.synth_ms = synth.map(|d| d.as_millis());
    if let Some(path) = &options.outputs_file {
        write_outputs(path, &report.outputs)?;
    }
    Ok(report)
}

/// `env`'s stacks ready to deploy, in order: synthesized just in time in `work_dir` (unless
/// `options.assembly` names an assembly), read, selected and ordered; with the synth's duration.
pub async fn prepare(
    config: &Config,
    env: &Environment,
    options: &DeployOptions,
    work_dir: &Path,
) -> Result<(Vec<PlannedStack>, Option<Duration>), DeployError> {
    let (assembly_dir, synth) = match &options.assembly {
        Some(dir) => (dir.clone(), None),
        None => {
            let s = crate::synth::synthesize(
                config,
                &env.name,
                work_dir,
                &SynthOptions { stream: options.progress, ..Default::default() },
            )
            .await?;
            if options.progress {
                eprintln!(
                    "[{}] synthesized in {:.1}s -> {}",
                    env.name,
                    s.duration.as_secs_f64(),
                    s.assembly_dir.display()
                );
            }
            (s.assembly_dir, Some(s.duration))
        }
    };
    let assembly = CloudAssembly::load(&assembly_dir)?;
    let plan = select::plan(&assembly, &env.name, &env.stacks, &options.stacks)?;
    Ok((plan, synth))
}

/// Writes `{stack: {key: value}}` as pretty JSON.
pub fn write_outputs(
    path: &Path,
    outputs: &IndexMap<String, BTreeMap<String, String>>,
) -> Result<(), DeployError> {
    let text = serde_json::to_string_pretty(outputs).unwrap_or_else(|_| "{}".into());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| DeployError::Outputs { path: path.to_owned(), source })?;
    }
    std::fs::write(path, text + "\n").map_err(|source| DeployError::Outputs { path: path.to_owned(), source })
}

/// (role, region, SSM parameter) of a bootstrap check.
type BootstrapKey = (Option<String>, String, String);

/// Shared state of one environment deploy.
struct Ctx {
    cloud: Arc<dyn Cloud>,
    env: Environment,
    options: DeployOptions,
    /// Bootstrap checks done, by (role, region, parameter): the version found.
    bootstrap: Mutex<HashMap<BootstrapKey, Result<u32, String>>>,
    started: Instant,
}

/// Deploys an ordered plan: a stack starts when everything it depends on succeeded, up to
/// `concurrency` at once; after a failure nothing new starts and running stacks finish.
pub async fn deploy_plan(
    cloud: Arc<dyn Cloud>,
    env: &Environment,
    plan: Vec<PlannedStack>,
    options: &DeployOptions,
) -> DeployReport {
    let ctx = Arc::new(Ctx {
        cloud,
        env: env.clone(),
        options: options.clone(),
        bootstrap: Mutex::new(HashMap::new()),
        started: Instant::now(),
    });
    let n = plan.len();
    let mut reports: Vec<Option<StackReport>> = vec![None; n];
    // What the up-front check saw of each stack that needs a deploy, handed to its deploy.
    let mut seen: Vec<Option<Seen>> = vec![None; n];
    let mut running: HashSet<usize> = HashSet::new();
    let mut first_failure: Option<String> = None;
    let mut set = tokio::task::JoinSet::new();
    let concurrency = options.concurrency.max(1);
    let plan = Arc::new(plan);

    // Whether a stack is unchanged does not depend on its dependencies (its template is fixed text),
    // so all stacks are checked at once up front: a no-op deploy costs one round of reads.
    if !options.dry_run {
        // Owned inputs: a closure over borrowed plan items makes the future not `Send` for every
        // lifetime, which callers that spawn the deploy need.
        let inputs: Vec<_> = plan.iter().enumerate().map(|(i, p)| (i, p.stack.clone())).collect();
        let checks = inputs.into_iter().map(|(i, stack)| {
            let ctx = ctx.clone();
            async move {
                let started = Instant::now();
                (i, precheck(&ctx, &stack).await, started)
            }
        });
        let found: Vec<_> =
            futures::stream::iter(checks).buffer_unordered(PRECHECK_CONCURRENCY).collect().await;
        for (i, check, started) in found {
            // A failed check is not fatal here: the deploy repeats the call and reports it.
            let outputs = match check {
                Ok(Precheck::Unchanged(outputs)) => outputs,
                Ok(Precheck::Changed(s)) => {
                    seen[i] = Some(s);
                    continue;
                }
                Err(_) => continue,
            };
            let stack = &plan[i].stack;
            progress(&ctx, stack, &format!("unchanged (skipped) in {:.2}s", started.elapsed().as_secs_f64()));
            reports[i] = Some(StackReport {
                stack_name: stack.stack_name.clone(),
                display_name: stack.display_name.clone(),
                outcome: StackOutcome::Unchanged,
                duration_ms: started.elapsed().as_millis(),
                aws_wait_ms: 0,
                outputs,
            });
        }
    }

    let heights = chain_heights(&plan);
    loop {
        // Mark stacks whose dependencies failed, then start what is ready, longest chain of
        // dependents first (it bounds the total time), then in plan order.
        let mut ready: Vec<usize> = Vec::new();
        for i in 0..n {
            if reports[i].is_some() || running.contains(&i) {
                continue;
            }
            let failed_dep = plan[i].depends_on.iter().find(|d| {
                reports[**d].as_ref().is_some_and(|r| {
                    matches!(r.outcome, StackOutcome::Failed { .. } | StackOutcome::NotStarted { .. })
                })
            });
            if let Some(d) = failed_dep {
                reports[i] = Some(not_started(
                    &plan[i].stack,
                    format!("it depends on {}, which did not deploy", plan[*d].stack.display_name),
                ));
                continue;
            }
            if let Some(f) = &first_failure {
                if running.is_empty() || plan[i].depends_on.iter().all(|d| reports[*d].is_some()) {
                    reports[i] =
                        Some(not_started(&plan[i].stack, format!("the deploy stopped after {f} failed")));
                }
                continue;
            }
            if plan[i].depends_on.iter().all(|d| reports[*d].is_some()) {
                ready.push(i);
            }
        }
        ready.sort_by_key(|i| (std::cmp::Reverse(heights[*i]), *i));
        for i in ready.into_iter().take(concurrency.saturating_sub(running.len())) {
            running.insert(i);
            let ctx = ctx.clone();
            let plan = plan.clone();
            let seen = seen[i].take();
            set.spawn(async move { (i, deploy_stack(&ctx, &plan[i].stack, seen).await) });
        }
        let Some(joined) = set.join_next().await else { break };
        let (i, report) = match joined {
            Ok(r) => r,
            Err(e) => {
                // A panicking stack task is a bug; report it on the stack that was running rather than abort.
                let i = *running.iter().next().unwrap_or(&0);
                (
                    i,
                    failed_report(
                        &plan[i].stack,
                        format!("internal error: {e}"),
                        None,
                        None,
                        Instant::now(),
                        Duration::ZERO,
                    ),
                )
            }
        };
        running.remove(&i);
        if matches!(report.outcome, StackOutcome::Failed { .. }) && first_failure.is_none() {
            first_failure = Some(report.display_name.clone());
        }
        reports[i] = Some(report);
    }

    let stacks: Vec<StackReport> = reports
        .into_iter()
        .zip(plan.iter())
        .map(|(r, p)| r.unwrap_or_else(|| not_started(&p.stack, "the deploy stopped".into())))
        .collect();
    let outputs = stacks
        .iter()
        .filter(|s| {
            matches!(s.outcome, StackOutcome::Deployed | StackOutcome::Unchanged | StackOutcome::NoChanges)
        })
        .map(|s| (s.stack_name.clone(), s.outputs.clone()))
        .collect();
    DeployReport {
        environment: env.name.clone(),
        stacks,
        duration_ms: ctx.started.elapsed().as_millis(),
        synth_ms: None,
        outputs,
    }
}

/// How many stacks the up-front unchanged check reads at once (two calls each).
const PRECHECK_CONCURRENCY: usize = 16;

/// How long a description from the up-front check stands in for a fresh DescribeStacks when the
/// stack's deploy starts: long enough for the first stacks and a fast run, short enough that a
/// stack starting after its dependencies' real deploys (minutes) is described again.
const SEEN_FRESH_FOR: Duration = Duration::from_secs(10);

/// A stack as the up-front check saw it, when it needs a deploy.
#[derive(Debug, Clone)]
struct Seen {
    deployed: Option<DeployedStack>,
    /// The deployed template, parameters and tags were compared and differ.
    compared: bool,
    at: Instant,
}

/// The up-front check's verdict.
enum Precheck {
    Unchanged(BTreeMap<String, String>),
    Changed(Seen),
}

/// Per stack, the length of the longest chain of stacks that depend on it (0 for a leaf).
fn chain_heights(plan: &[PlannedStack]) -> Vec<usize> {
    let mut heights = vec![0usize; plan.len()];
    // The plan is in dependency order (dependencies first), so walking it backwards settles every
    // dependent before its dependencies.
    for i in (0..plan.len()).rev() {
        for &d in &plan[i].depends_on {
            heights[d] = heights[d].max(heights[i] + 1);
        }
    }
    heights
}

fn not_started(stack: &Stack, reason: String) -> StackReport {
    StackReport {
        stack_name: stack.stack_name.clone(),
        display_name: stack.display_name.clone(),
        outcome: StackOutcome::NotStarted { reason },
        duration_ms: 0,
        aws_wait_ms: 0,
        outputs: BTreeMap::new(),
    }
}

fn failed_report(
    stack: &Stack,
    message: String,
    resource: Option<FailedResource>,
    final_status: Option<String>,
    started: Instant,
    waited: Duration,
) -> StackReport {
    StackReport {
        stack_name: stack.stack_name.clone(),
        display_name: stack.display_name.clone(),
        outcome: StackOutcome::Failed { message, resource, final_status },
        duration_ms: started.elapsed().as_millis(),
        aws_wait_ms: waited.as_millis(),
        outputs: BTreeMap::new(),
    }
}

/// A failure inside one stack's deploy (boxed parts keep `Result`s small).
struct StackFailure {
    message: String,
    resource: Option<Box<FailedResource>>,
    final_status: Option<String>,
}

impl From<CloudError> for StackFailure {
    fn from(e: CloudError) -> Self {
        StackFailure { message: e.to_string(), resource: None, final_status: None }
    }
}

fn fail(message: impl Into<String>) -> StackFailure {
    StackFailure { message: message.into(), resource: None, final_status: None }
}

/// Where and as whom one stack deploys.
struct Target {
    account: String,
    region: String,
    deploy_role: Option<String>,
    exec_role: Option<String>,
}

fn resolve_target(env: &Environment, stack: &Stack) -> Result<Target, StackFailure> {
    let (acct, region) = assembly::parse_environment(&stack.environment).ok_or_else(|| {
        fail(format!("stack {} has an invalid environment {:?}", stack.display_name, stack.environment))
    })?;
    let account = if acct == "unknown-account" { env.account.as_str() } else { acct };
    let region = if region == "unknown-region" { env.region.as_str() } else { region };
    if account != env.account || region != env.region {
        return Err(fail(format!(
            "stack {} is bound to aws://{account}/{region} but environment {} is {}; make the app take its account and region from CDK_DEFAULT_ACCOUNT/CDK_DEFAULT_REGION or select the stack in the matching environment",
            stack.display_name,
            env.name,
            env.cdk_environment()
        )));
    }
    let sub = |s: &Option<String>| s.as_ref().map(|s| assembly::substitute(s, account, region));
    // The environment's custom role replaces the bootstrap roles (and its own permissions apply).
    let (deploy_role, exec_role) = match &env.role {
        Some(role) => (Some(role.clone()), None),
        None => (
            sub(&stack.properties.assume_role_arn),
            sub(&stack.properties.cloud_formation_execution_role_arn),
        ),
    };
    Ok(Target { account: account.to_owned(), region: region.to_owned(), deploy_role, exec_role })
}

fn progress(ctx: &Ctx, stack: &Stack, message: &str) {
    if ctx.options.progress {
        eprintln!(
            "[{} {:>6.1}s] {}: {message}",
            ctx.env.name,
            ctx.started.elapsed().as_secs_f64(),
            stack.display_name
        );
    }
}

async fn deploy_stack(ctx: &Ctx, stack: &Stack, seen: Option<Seen>) -> StackReport {
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    progress(ctx, stack, "starting");
    let seen = seen.filter(|s| s.at.elapsed() < SEEN_FRESH_FOR);
    let result = deploy_stack_inner(ctx, stack, seen, &mut waited).await;
    let elapsed = started.elapsed();
    match result {
        Ok((outcome, outputs)) => {
            let word = match &outcome {
                StackOutcome::Deployed => "deployed".to_owned(),
                StackOutcome::Unchanged => "unchanged (skipped)".to_owned(),
                StackOutcome::NoChanges => "no changes".to_owned(),
                StackOutcome::Planned { changes } => format!("{} change(s) planned", changes.len()),
                _ => String::new(),
            };
            progress(
                ctx,
                stack,
                &format!(
                    "{word} in {:.2}s (waiting on AWS {:.2}s)",
                    elapsed.as_secs_f64(),
                    waited.as_secs_f64()
                ),
            );
            StackReport {
                stack_name: stack.stack_name.clone(),
                display_name: stack.display_name.clone(),
                outcome,
                duration_ms: elapsed.as_millis(),
                aws_wait_ms: waited.as_millis(),
                outputs,
            }
        }
        Err(f) => {
            progress(ctx, stack, &format!("FAILED after {:.2}s", elapsed.as_secs_f64()));
            let message = if f.message.starts_with("stack ") || f.message.starts_with("aws://") {
                f.message
            } else {
                format!("stack {} failed: {}", stack.display_name, f.message)
            };
            failed_report(stack, message, f.resource.map(|r| *r), f.final_status, started, waited)
        }
    }
}

/// Template parameters: name -> (default, whether it is SSM-typed).
fn template_parameters(template: &serde_json::Value) -> BTreeMap<String, (Option<String>, bool)> {
    template
        .get("Parameters")
        .and_then(|p| p.as_object())
        .map(|p| {
            p.iter()
                .map(|(k, v)| {
                    let default = v.get("Default").map(|d| match d {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                    let ssm = v
                        .get("Type")
                        .and_then(|t| t.as_str())
                        .is_some_and(|t| t.starts_with("AWS::SSM::Parameter::"));
                    (k.clone(), (default, ssm))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// True when the deployed stack already has this template, parameters and tags.
fn unchanged(
    deployed: &DeployedStack,
    deployed_template: &str,
    template: &serde_json::Value,
    input: &StackInput,
) -> bool {
    same_settings(deployed, template, input) && same_template(deployed_template, template, input)
}

fn same_template(deployed_template: &str, template: &serde_json::Value, input: &StackInput) -> bool {
    let Ok(deployed_json) = parse_template(deployed_template) else { return false };
    if &deployed_json != template {
        tracing::debug!(stack = %input.stack_name, "template differs from the deployed one");
        return false;
    }
    true
}

/// True when the deployed stack's parameters and tags are the ones this deploy would give it.
fn same_settings(deployed: &DeployedStack, template: &serde_json::Value, input: &StackInput) -> bool {
    if deployed.tags != input.tags {
        tracing::debug!(stack = %input.stack_name, deployed = ?deployed.tags, wanted = ?input.tags, "tags differ");
        return false;
    }
    // Every parameter must hold the value this deploy would give it (explicit, else the default).
    template_parameters(template).into_iter().all(|(key, (default, ssm))| {
        // An SSM-typed parameter left at its default (CDK's BootstrapVersion) names a parameter that
        // CloudFormation resolves itself; some implementations report the resolved value instead of the
        // name, so only an explicitly passed value is compared.
        if ssm && !input.parameters.contains_key(&key) {
            return true;
        }
        let want = input.parameters.get(&key).cloned().or(default);
        let same = match (deployed.parameters.get(&key), &want) {
            (Some(have), Some(want)) => have == want,
            (None, None) => true,
            _ => false,
        };
        if !same {
            tracing::debug!(stack = %input.stack_name, %key, deployed = ?deployed.parameters.get(&key), ?want, "parameter differs");
        }
        same
    })
}

fn parse_template(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text)
        .or_else(|_| serde_yaml_ng::from_str::<serde_json::Value>(text))
        .map_err(|e| e.to_string())
}

/// Whether the stack is deployed, stable, and has this template, parameters, tags and termination
/// protection (then its outputs are the deploy's result, with no write), with one DescribeStacks and,
/// only when everything else matches, one GetTemplate.
async fn precheck(ctx: &Ctx, stack: &Stack) -> Result<Precheck, StackFailure> {
    let at = Instant::now();
    let changed = |deployed, compared| Ok(Precheck::Changed(Seen { deployed, compared, at }));
    if !stack.docker_assets.is_empty() {
        // Not checked: the stack's deploy refuses it with the error that names the image.
        return Err(fail("docker image assets are not supported yet"));
    }
    let target = resolve_target(&ctx.env, stack)?;
    let cf = ctx.cloud.deployer(target.deploy_role.as_deref(), &target.region).await?;
    let Some(d) = cf.describe_stack(&stack.stack_name).await? else { return changed(None, false) };
    if !STABLE_OK.contains(&d.status.as_str())
        || d.termination_protection != stack.properties.termination_protection.unwrap_or(false)
    {
        return changed(Some(d), false);
    }
    let text = std::fs::read_to_string(&stack.template_path).map_err(|e| fail(e.to_string()))?;
    let template: serde_json::Value = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let input = StackInput {
        stack_name: stack.stack_name.clone(),
        parameters: stack.properties.parameters.clone(),
        tags: stack.properties.tags.clone(),
        ..Default::default()
    };
    if !same_settings(&d, &template, &input) {
        return changed(Some(d), true);
    }
    let body = cf.template_body(&stack.stack_name).await?;
    if same_template(&body, &template, &input) {
        Ok(Precheck::Unchanged(d.outputs))
    } else {
        changed(Some(d), true)
    }
}

const STABLE_OK: [&str; 4] =
    ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"];

async fn deploy_stack_inner(
    ctx: &Ctx,
    stack: &Stack,
    seen: Option<Seen>,
    waited: &mut Duration,
) -> Result<(StackOutcome, BTreeMap<String, String>), StackFailure> {
    if let Some(d) = stack.docker_assets.first() {
        return Err(fail(format!(
            "stack {} has a docker image asset {:?} ({}): docker image assets are not supported yet by aphex deploy; deploy this stack with the CDK CLI or move the image build out of the app",
            stack.display_name, d.display_name, d.id
        )));
    }
    let target = resolve_target(&ctx.env, stack)?;
    let cf = ctx.cloud.deployer(target.deploy_role.as_deref(), &target.region).await?;

    // Bootstrap version: the stack's own requirement and its assets'.
    for (required, param) in [
        stack
            .properties
            .requires_bootstrap_stack_version
            .zip(stack.properties.bootstrap_stack_version_ssm_parameter.clone()),
        stack.assets_bootstrap.clone(),
    ]
    .into_iter()
    .flatten()
    {
        check_bootstrap(ctx, &target, stack, required, &param).await?;
    }

    let template_text = std::fs::read_to_string(&stack.template_path).map_err(|e| {
        fail(format!(
            "cannot read template {} of stack {}: {e}",
            stack.template_path.display(),
            stack.display_name
        ))
    })?;
    let template: serde_json::Value = serde_json::from_str(&template_text)
        .map_err(|e| fail(format!("template {} is not valid JSON: {e}", stack.template_path.display())))?;

    let mut input = StackInput {
        stack_name: stack.stack_name.clone(),
        template_body: None,
        template_url: None,
        parameters: stack.properties.parameters.clone(),
        tags: stack.properties.tags.clone(),
        role_arn: target.exec_role.clone(),
        notification_arns: stack.properties.notification_arns.clone(),
        termination_protection: stack.properties.termination_protection.unwrap_or(false),
    };

    // A description the up-front check just made stands in for DescribeStacks (and its template
    // comparison for GetTemplate); a stack that starts later is described again.
    let (mut deployed, mut compared) = match seen {
        Some(seen) => (seen.deployed, seen.compared),
        None => (cf.describe_stack(&stack.stack_name).await?, false),
    };
    if let Some(d) = &deployed
        && d.status.ends_with("_IN_PROGRESS")
        && d.status != "REVIEW_IN_PROGRESS"
    {
        progress(ctx, stack, &format!("waiting for the running operation ({}) first", d.status));
        deployed = Some(wait_stack(ctx, &*cf, stack, None, waited).await?.0);
        compared = false;
    }
    if let Some(d) = &deployed
        && (d.status == "ROLLBACK_COMPLETE"
            || d.status == "ROLLBACK_FAILED"
            || d.status == "REVIEW_IN_PROGRESS")
    {
        // A stack whose creation failed (or never executed) cannot be updated: delete and create again.
        progress(ctx, stack, &format!("deleting the stack left in {} by an earlier failed create", d.status));
        if !ctx.options.dry_run {
            cf.delete_stack(&d.stack_id).await?;
            wait_deleted(ctx, &*cf, &d.stack_id, waited).await?;
            deployed = None;
        }
    }

    if let Some(d) = &deployed
        && STABLE_OK.contains(&d.status.as_str())
        && !compared
    {
        let body = cf.template_body(&stack.stack_name).await?;
        if unchanged(d, &body, &template, &input) {
            if d.termination_protection != input.termination_protection && !ctx.options.dry_run {
                cf.set_termination_protection(&stack.stack_name, input.termination_protection).await?;
            }
            return Ok((StackOutcome::Unchanged, d.outputs.clone()));
        }
    }

    let template_by_url = template_text.len() > MAX_TEMPLATE_BODY
        || ctx.options.method == Method::ChangeSet
            && stack.properties.stack_template_asset_object_url.is_some();
    // The stack's own template is only needed in S3 when CloudFormation reads it from there.
    publish_assets(ctx, stack, &target, template_by_url).await?;

    if template_by_url {
        match stack
            .properties
            .stack_template_asset_object_url
            .as_deref()
            .and_then(|u| u.strip_prefix("s3://"))
        {
            Some(loc) => {
                let loc = assembly::substitute(loc, &target.account, &target.region);
                let (bucket, key) = loc.split_once('/').unwrap_or((loc.as_str(), ""));
                input.template_url = Some(ctx.cloud.template_url(bucket, key, &target.region));
            }
            None if template_text.len() > MAX_TEMPLATE_BODY => {
                return Err(fail(format!(
                    "template of stack {} is {} bytes (over CloudFormation's {MAX_TEMPLATE_BODY}) and the assembly names no uploaded template (stackTemplateAssetObjectUrl); use the default synthesizer",
                    stack.display_name,
                    template_text.len()
                )));
            }
            None => input.template_body = Some(template_text.clone()),
        }
    } else {
        input.template_body = Some(template_text.clone());
    }

    let exists = deployed.is_some();
    if ctx.options.dry_run || ctx.options.method == Method::ChangeSet {
        let kind = if exists { ChangeSetKind::Update } else { ChangeSetKind::Create };
        let name = change_set_name(&ctx.options.run_id, &stack.stack_name);
        progress(ctx, stack, &format!("creating change set {name}"));
        let arn = cf.create_change_set(&input, &name, kind).await?;
        let info = wait_change_set(ctx, &*cf, &arn, waited).await?;
        if info.status == "FAILED" {
            let reason = info.status_reason.unwrap_or_default();
            // The set is useless either way; a failed delete leaves only clutter.
            let _ = cf.delete_change_set(&arn).await;
            if cloud::is_no_changes(&reason) {
                let outputs = deployed.map(|d| d.outputs).unwrap_or_default();
                return Ok((
                    if ctx.options.dry_run {
                        StackOutcome::Planned { changes: vec![] }
                    } else {
                        StackOutcome::NoChanges
                    },
                    outputs,
                ));
            }
            return Err(fail(format!("change set for stack {} failed: {reason}", stack.display_name)));
        }
        if ctx.options.dry_run {
            let _ = cf.delete_change_set(&arn).await;
            if !exists {
                // CreateChangeSet of a new stack leaves it in REVIEW_IN_PROGRESS: remove that shell.
                let _ = cf.delete_stack(&stack.stack_name).await;
            }
            return Ok((StackOutcome::Planned { changes: info.changes }, BTreeMap::new()));
        }
        let since = now_ms();
        cf.execute_change_set(&arn).await?;
        let (done, _) = wait_stack(ctx, &*cf, stack, Some(since), waited).await?;
        finish(ctx, &*cf, stack, &input, done).await
    } else {
        let since = now_ms();
        if exists {
            if cf.update_stack(&input).await? == UpdateStarted::NoChanges {
                return Ok((StackOutcome::NoChanges, deployed.map(|d| d.outputs).unwrap_or_default()));
            }
        } else {
            cf.create_stack(&input).await?;
        }
        let (done, _) = wait_stack(ctx, &*cf, stack, Some(since), waited).await?;
        finish(ctx, &*cf, stack, &input, done).await
    }
}

async fn finish(
    ctx: &Ctx,
    cf: &dyn StackDeployer,
    stack: &Stack,
    input: &StackInput,
    done: DeployedStack,
) -> Result<(StackOutcome, BTreeMap<String, String>), StackFailure> {
    if done.termination_protection != input.termination_protection && !ctx.options.dry_run {
        cf.set_termination_protection(&stack.stack_name, input.termination_protection).await?;
    }
    Ok((StackOutcome::Deployed, done.outputs))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A change set name unique per run and stack: `[a-zA-Z][-a-zA-Z0-9]*`, at most 128 chars.
pub fn change_set_name(run_id: &str, stack_name: &str) -> String {
    let clean =
        |s: &str| s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect::<String>();
    let mut name = format!(
        "aphex-{}-{}-{}",
        clean(run_id),
        clean(stack_name),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    if name.len() > 128 {
        name = format!("aphex-{}", uuid::Uuid::new_v4().simple());
    }
    name
}

async fn check_bootstrap(
    ctx: &Ctx,
    target: &Target,
    stack: &Stack,
    required: u32,
    param: &str,
) -> Result<(), StackFailure> {
    let key = (target.deploy_role.clone(), target.region.clone(), param.to_owned());
    let mut cache = ctx.bootstrap.lock().await;
    let found = match cache.get(&key) {
        Some(v) => v.clone(),
        None => {
            let v = match ctx.cloud.ssm_parameter(target.deploy_role.as_deref(), &target.region, param).await
            {
                Ok(Some(value)) => {
                    value.trim().parse::<u32>().map_err(|_| format!("holds {value:?}, not a version number"))
                }
                Ok(None) => Err("does not exist".to_owned()),
                Err(e) => Err(format!("cannot be read ({e})")),
            };
            cache.insert(key, v.clone());
            v
        }
    };
    let hint = format!("run `cdk bootstrap aws://{}/{}`", target.account, target.region);
    match found {
        Ok(v) if v >= required => Ok(()),
        Ok(v) => Err(fail(format!(
            "stack {} needs bootstrap version {required} or newer in aws://{}/{}, but {param} says {v}; {hint} to upgrade it",
            stack.display_name, target.account, target.region
        ))),
        Err(why) => Err(fail(format!(
            "aws://{}/{} is not bootstrapped for stack {} (SSM parameter {param} {why}); {hint}",
            target.account, target.region, stack.display_name
        ))),
    }
}

async fn publish_assets(
    ctx: &Ctx,
    stack: &Stack,
    target: &Target,
    with_template: bool,
) -> Result<(), StackFailure> {
    let mut jobs = Vec::new();
    for asset in &stack.file_assets {
        if !with_template && asset.path == stack.template_path {
            continue;
        }
        if asset.path.as_os_str().is_empty() {
            return Err(fail(format!(
                "file asset {:?} of stack {} is built by a command, which aphex does not run yet",
                asset.display_name, stack.display_name
            )));
        }
        for dest in &asset.destinations {
            let role = match &ctx.env.role {
                Some(r) => Some(r.clone()),
                None => dest
                    .assume_role_arn
                    .as_ref()
                    .map(|r| assembly::substitute(r, &target.account, &target.region)),
            };
            let region = dest
                .region
                .as_ref()
                .map(|r| assembly::substitute(r, &target.account, &target.region))
                .unwrap_or_else(|| target.region.clone());
            let bucket = assembly::substitute(&dest.bucket_name, &target.account, &region);
            let key = assembly::substitute(&dest.object_key, &target.account, &region);
            let asset = asset.clone();
            let cloud = ctx.cloud.clone();
            jobs.push(async move {
                let store = cloud.asset_store(role.as_deref(), &region).await?;
                if store.exists(&bucket, &key).await? {
                    return Ok::<bool, StackFailure>(false);
                }
                let bytes = tokio::task::spawn_blocking(move || assets::package(&asset))
                    .await
                    .map_err(|e| fail(format!("packaging task failed: {e}")))?
                    .map_err(|e| fail(e.to_string()))?;
                store.put(&bucket, &key, bytes).await.map_err(|e| {
                    fail(format!("{e}; is bucket {bucket} there (cdk bootstrap creates it) and writable by the publishing role?"))
                })?;
                Ok(true)
            });
        }
    }
    let total = jobs.len();
    let results = futures::future::join_all(jobs).await;
    let mut uploaded = 0;
    for r in results {
        if r? {
            uploaded += 1;
        }
    }
    if uploaded > 0 {
        progress(
            ctx,
            stack,
            &format!("published {uploaded} of {total} asset(s), the rest were already there"),
        );
    }
    Ok(())
}

/// Adaptive polling: starts at `poll_min`, grows by half each time, capped at `poll_max`.
fn next_delay(current: Duration, max: Duration) -> Duration {
    (current + current / 2).min(max)
}

async fn wait_change_set(
    ctx: &Ctx,
    cf: &dyn StackDeployer,
    arn: &str,
    waited: &mut Duration,
) -> Result<ChangeSetInfo, StackFailure> {
    let mut delay = ctx.options.poll_min;
    loop {
        let t = Instant::now();
        let info = cf.describe_change_set(arn).await?;
        *waited += t.elapsed();
        if info.status == "CREATE_COMPLETE" || info.status == "FAILED" {
            return Ok(info);
        }
        tokio::time::sleep(delay).await;
        *waited += delay;
        delay = next_delay(delay, ctx.options.poll_max);
    }
}

async fn wait_deleted(
    ctx: &Ctx,
    cf: &dyn StackDeployer,
    stack_id: &str,
    waited: &mut Duration,
) -> Result<(), StackFailure> {
    let mut delay = ctx.options.poll_min;
    loop {
        let t = Instant::now();
        let d = cf.describe_stack(stack_id).await?;
        *waited += t.elapsed();
        match d {
            None => return Ok(()),
            Some(d) if d.status == "DELETE_FAILED" => {
                return Err(fail(format!(
                    "deleting stack {stack_id} failed: {}",
                    d.status_reason.unwrap_or_default()
                )));
            }
            Some(_) => {}
        }
        tokio::time::sleep(delay).await;
        *waited += delay;
        delay = next_delay(delay, ctx.options.poll_max);
    }
}

/// Waits until the stack leaves `*_IN_PROGRESS`, streaming events newer than `since_ms`. Returns the
/// final description, or a failure naming the first failed resource and what rolled back.
async fn wait_stack(
    ctx: &Ctx,
    cf: &dyn StackDeployer,
    stack: &Stack,
    since_ms: Option<i64>,
    waited: &mut Duration,
) -> Result<(DeployedStack, Vec<StackEvent>), StackFailure> {
    let mut delay = ctx.options.poll_min;
    let mut seen: HashSet<String> = HashSet::new();
    let mut events: Vec<StackEvent> = Vec::new(); // oldest first
    // Events of earlier operations are not ours: without `since`, take the current ones as seen.
    let since = since_ms.unwrap_or_else(now_ms).saturating_sub(1000);
    loop {
        let t = Instant::now();
        // Both at once: a poll costs one round trip.
        let (d, fresh) =
            tokio::join!(cf.describe_stack(&stack.stack_name), cf.stack_events(&stack.stack_name, since));
        let d = d?;
        *waited += t.elapsed();
        record_events(ctx, stack, fresh.unwrap_or_default(), &mut seen, &mut events);
        let Some(d) = d else {
            return Err(fail(format!("stack {} disappeared while deploying", stack.display_name)));
        };
        if !d.status.ends_with("_IN_PROGRESS") {
            if matches!(d.status.as_str(), "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE") {
                return Ok((d, events));
            }
            // The events were read alongside the status, so the failure that led to it may have come
            // just after them: read them once more before naming the failed resource.
            let more = cf.stack_events(&stack.stack_name, since).await.unwrap_or_default();
            record_events(ctx, stack, more, &mut seen, &mut events);
            return Err(stack_failure(stack, &d, &events));
        }
        tokio::time::sleep(delay).await;
        *waited += delay;
        delay = next_delay(delay, ctx.options.poll_max);
    }
}

/// Adds the events not seen yet (`fresh` is newest first) to `events` (oldest first), printing each.
fn record_events(
    ctx: &Ctx,
    stack: &Stack,
    fresh: Vec<StackEvent>,
    seen: &mut HashSet<String>,
    events: &mut Vec<StackEvent>,
) {
    for e in fresh.into_iter().rev() {
        if seen.insert(e.event_id.clone()) {
            progress(
                ctx,
                stack,
                &format!(
                    "{} {} {}{}",
                    e.logical_id,
                    e.resource_type,
                    e.status,
                    e.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
                ),
            );
            events.push(e);
        }
    }
}

fn stack_failure(stack: &Stack, d: &DeployedStack, events: &[StackEvent]) -> StackFailure {
    // The first failed resource other than the stack itself, else the stack's own failure event.
    let failed: Vec<&StackEvent> = events.iter().filter(|e| e.status.ends_with("_FAILED")).collect();
    let first = failed
        .iter()
        .find(|e| e.resource_type != "AWS::CloudFormation::Stack" || e.logical_id != stack.stack_name)
        .or_else(|| failed.first())
        .copied();
    let resource = first.map(|e| {
        Box::new(FailedResource {
            logical_id: e.logical_id.clone(),
            resource_type: e.resource_type.clone(),
            status: e.status.clone(),
            reason: e.reason.clone().unwrap_or_default(),
        })
    });
    let rolled_back = if d.status.contains("ROLLBACK") {
        let mut undone: Vec<String> = events
            .iter()
            .filter(|e| {
                e.logical_id != stack.stack_name
                    && (e.status == "DELETE_COMPLETE" || e.status == "UPDATE_COMPLETE")
                    && events
                        .iter()
                        .any(|f| f.status.contains("ROLLBACK") && f.timestamp_ms <= e.timestamp_ms)
            })
            .map(|e| e.logical_id.clone())
            .collect();
        undone.dedup();
        if undone.is_empty() {
            format!("; the stack rolled back ({})", d.status)
        } else {
            format!("; the stack rolled back ({}), undoing {}", d.status, undone.join(", "))
        }
    } else {
        format!("; final status {}", d.status)
    };
    let what = match &resource {
        Some(r) => format!("resource {} ({}) {}: {}", r.logical_id, r.resource_type, r.status, r.reason),
        None => d.status_reason.clone().unwrap_or_else(|| d.status.clone()),
    };
    StackFailure {
        message: format!("stack {} failed: {what}{rolled_back}", stack.display_name),
        resource,
        final_status: Some(d.status.clone()),
    }
}

/// Human summary of a dry run's changes: additions, modifications, replacements, deletions, and the
/// IAM / security-group changes worth a second look.
pub fn summarize_changes(changes: &[ResourceChange]) -> String {
    let count = |f: &dyn Fn(&ResourceChange) -> bool| changes.iter().filter(|c| f(c)).count();
    let add = count(&|c| c.action == "Add");
    let modify = count(&|c| c.action == "Modify" && c.replacement != "True");
    let replace = count(&|c| c.action == "Modify" && c.replacement == "True");
    let remove = count(&|c| c.action == "Remove");
    let mut text = format!("{add} to add, {modify} to modify, {replace} to replace, {remove} to delete");
    for c in changes {
        let sensitive = c.resource_type.starts_with("AWS::IAM::")
            || c.resource_type.starts_with("AWS::EC2::SecurityGroup")
            || c.resource_type.ends_with("Policy");
        let sign = match (c.action.as_str(), c.replacement.as_str()) {
            ("Add", _) => "+",
            ("Remove", _) => "-",
            (_, "True") => "±",
            _ => "~",
        };
        text.push_str(&format!(
            "\n    {sign} {} {}{}",
            c.logical_id,
            c.resource_type,
            if sensitive { "  [IAM/security change]" } else { "" }
        ));
    }
    text
}

#[cfg(test)]
mod tests;
