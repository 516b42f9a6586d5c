//! The deploy engine: deploys the selected stacks of a cloud assembly to one environment through the
//! CloudFormation API (change sets or direct), in parallel along the dependency graph, with asset
//! publishing, bootstrap checks, skip-if-unchanged, event streaming and exact failure reports.

pub mod assets;
pub mod cloud;
pub mod parameters;
pub mod select;
mod settings;
pub(crate) mod stack;
mod wait;

use stack::*;
use wait::*;

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
    AssetStore, ChangeSetInfo, ChangeSetKind, Cloud, CloudError, DeployedStack, ParameterValue,
    ResourceChange, SdkCloud, StackDeployer, StackEvent, StackInput, UpdateStarted,
};
pub use parameters::CliParameter;
pub use select::{PlannedStack, SelectError};
pub use settings::{Change, TemplateParameter, settings_change, template_change, template_parameters};

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
    /// `--parameters`: values over the app's and the config's.
    pub parameters: Vec<CliParameter>,
    /// `--previous-parameters`: on an update, a parameter given no value keeps the stack's own.
    pub previous_parameters: bool,
    /// Where to write `{stack: {key: value}}`.
    pub outputs_file: Option<PathBuf>,
    /// Print progress lines to stderr.
    pub progress: bool,
    /// The longest wait on one CloudFormation operation; None: the environment's
    /// `deployTimeoutMinutes`.
    pub timeout: Option<Duration>,
    /// How often a wait with no new stack event says it is still waiting.
    pub heartbeat: Duration,
    /// Smallest and largest polling interval.
    pub poll_min: Duration,
    pub poll_max: Duration,
}

/// Stacks deployed at once by default (`aphex deploy --concurrency`; the pipeline's deploy step).
pub const DEFAULT_CONCURRENCY: usize = 4;

impl Default for DeployOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            method: Method::ChangeSet,
            dry_run: false,
            run_id: format!("local-{}", uuid::Uuid::new_v4().simple()),
            stacks: Vec::new(),
            parameters: Vec::new(),
            previous_parameters: false,
            assembly: None,
            outputs_file: None,
            progress: true,
            timeout: None,
            heartbeat: Duration::from_secs(30),
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
    /// Every stack's parameter values, by stack name, resolved before anything is written.
    parameters: HashMap<String, BTreeMap<String, ParameterValue>>,
    started: Instant,
}

impl Ctx {
    /// The longest wait on one CloudFormation operation.
    fn wait_limit(&self) -> Duration {
        wait_limit(&self.env, &self.options)
    }
}

/// The longest wait on one CloudFormation operation of `env`: `--timeout`, else the environment's
/// `deployTimeoutMinutes`.
pub fn wait_limit(env: &Environment, options: &DeployOptions) -> Duration {
    options.timeout.unwrap_or(Duration::from_secs(u64::from(env.deploy_timeout_minutes) * 60))
}

/// Deploys an ordered plan: a stack starts when everything it depends on succeeded, up to
/// `concurrency` at once; after a failure nothing new starts and running stacks finish.
pub async fn deploy_plan(
    cloud: Arc<dyn Cloud>,
    env: &Environment,
    plan: Vec<PlannedStack>,
    options: &DeployOptions,
) -> DeployReport {
    let started = Instant::now();
    // Parameter values first: a stack that cannot have them stops the deploy before any write.
    let parameters = match parameters::resolve_all(&*cloud, env, options, &plan).await {
        Ok(p) => p,
        Err(refused) => {
            let mut stacks: Vec<StackReport> = plan
                .iter()
                .map(|p| not_started(&p.stack, "the deploy stopped: stack parameters are missing".into()))
                .collect();
            for (i, message) in refused {
                stacks[i] = failed_report(&plan[i].stack, message, None, None, started, Duration::ZERO);
            }
            return DeployReport {
                environment: env.name.clone(),
                stacks,
                duration_ms: started.elapsed().as_millis(),
                synth_ms: None,
                outputs: IndexMap::new(),
            };
        }
    };
    let ctx = Arc::new(Ctx {
        cloud,
        env: env.clone(),
        options: options.clone(),
        bootstrap: Mutex::new(HashMap::new()),
        parameters,
        started,
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
