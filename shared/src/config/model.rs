//! The `aphex-config.yaml` model (version "1.0"): serde types, their documented defaults, and the
//! JSON Schema generated from them. Field names here are a contract with users and every other part.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The file name AphexPipeline looks for at the root of a repository.
pub const DEFAULT_CONFIG_FILE: &str = "aphex-config.yaml";

/// The whole `aphex-config.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(
    title = "AphexPipeline configuration",
    description = "The aphex-config.yaml at the root of a repository: how AphexPipeline builds it and deploys its CDK stacks to each environment, in order. The pipeline regenerates its own Argo WorkflowTemplate from this file on every run."
)]
pub struct Config {
    /// Version of the configuration format. Only "1.0" exists.
    #[schemars(example = &"1.0")]
    pub version: ConfigVersion,

    /// Where the pipeline runs and what triggers it. Every field has a default.
    #[serde(default, skip_serializing_if = "PipelineSettings::is_default")]
    pub pipeline: PipelineSettings,

    /// How the repository is built before any environment deploys.
    pub build: BuildSettings,

    /// How the CDK app is synthesized, just in time, before each environment deploys.
    #[serde(default, skip_serializing_if = "SynthSettings::is_default")]
    pub synth: SynthSettings,

    /// The environments, deployed one after another in the order listed (e.g. dev, staging, prod).
    #[schemars(length(min = 1))]
    pub environments: Vec<Environment>,

    /// Who hears about runs, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<Notifications>,
}

/// The configuration format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConfigVersion {
    /// The first and current format.
    #[serde(rename = "1.0")]
    V1_0,
}

/// Pipeline-wide settings: identity, triggers, and where its pods run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSettings {
    /// Name of the pipeline: the Argo WorkflowTemplate's name and the prefix of its mutexes.
    /// Lower-case letters, digits and '-'.
    #[serde(default = "defaults::pipeline_name")]
    #[schemars(example = &"aphex-pipeline", regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$"))]
    pub name: String,

    /// The GitHub repository, as `owner/name`. Pushes to it trigger runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"acme/payments-infra", regex(pattern = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"))]
    pub repository: Option<String>,

    /// Branch globs whose pushes start a run (`*` matches within one path segment, `**` across them).
    #[serde(default = "defaults::branches")]
    #[schemars(example = &["main", "release/*"], inner(length(min = 1)))]
    pub branches: Vec<String>,

    /// Tag globs whose pushes start a run. None by default: tag pushes are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = &["v*"], inner(length(min = 1)))]
    pub tags: Vec<String>,

    /// Kubernetes namespace where Argo runs the pipeline.
    #[serde(default = "defaults::namespace")]
    #[schemars(example = &"argo", regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub namespace: String,

    /// Kubernetes service account of the pipeline's pods (bound to an IAM role by Pod Identity or IRSA).
    #[serde(default = "defaults::service_account")]
    #[schemars(example = &"aphex-workflow", regex(pattern = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"))]
    pub service_account: String,

    /// The runner image every pipeline pod runs (the `aphex` binary, git, Node.js, the CDK CLI).
    #[serde(default = "defaults::image")]
    #[schemars(example = &"123456789012.dkr.ecr.us-east-1.amazonaws.com/aphex-runner:0.1.0")]
    pub image: String,

    /// S3 bucket for build artifacts and run records. Defaults to the bucket created by AphexPipelineStack
    /// (passed to pods as APHEX_ARTIFACT_BUCKET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"acme-aphex-artifacts", regex(pattern = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub artifact_bucket: Option<String>,

    /// What a new push does while a run is in progress.
    #[serde(default)]
    pub concurrency: Concurrency,

    /// Upper bound for one whole run, in minutes (Argo activeDeadlineSeconds).
    #[serde(default = "defaults::pipeline_timeout")]
    #[schemars(range(min = 1, max = 10080))]
    pub timeout_minutes: u32,

    /// The pipeline's own CDK stack (e.g. AphexPipelineStack) when the repository carries it: the
    /// pipeline stage synthesizes it at every run and deploys it when it changed, before it applies the
    /// next WorkflowTemplate. Without it the pipeline's infrastructure is deployed by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<PipelineStack>,
}

/// Where the pipeline's own stack comes from and goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineStack {
    /// The stack's name in its CDK app.
    #[schemars(example = &"AphexPipelineStack", length(min = 1))]
    pub name: String,

    /// Folder of its CDK app (the one with cdk.json), relative to the repository root.
    #[serde(default = "defaults::pipeline_stack_app")]
    #[schemars(example = &"infra", length(min = 1))]
    pub app: String,

    /// AWS account the pipeline runs in: exactly 12 digits, quoted.
    #[schemars(example = &"123456789012", regex(pattern = r"^[0-9]{12}$"))]
    pub account: String,

    /// AWS region the pipeline runs in.
    #[schemars(schema_with = "super::regions::region_schema")]
    pub region: String,
}

/// What a new push does while a run is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Concurrency {
    /// The new run waits for the running one (per-environment mutexes keep the order). The default.
    #[default]
    Queue,
    /// Running runs of the same branch are stopped and the new one starts.
    Supersede,
}

/// The build stage: commands run once per run, in a clone of the repository at the pushed commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildSettings {
    /// Shell commands run in order with `sh -c` at the repository root. The first failure stops the run.
    #[schemars(length(min = 1), example = &["npm ci", "npm run build"], inner(regex(pattern = r"\S")))]
    pub commands: Vec<String>,

    /// Environment variables for the build commands.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": ENV_NAME_PATTERN }), example = &example_env())]
    pub env: IndexMap<String, String>,

    /// Time limit of each build command, in minutes.
    #[serde(default = "defaults::build_timeout")]
    #[schemars(range(min = 1, max = 1440))]
    pub timeout_minutes: u32,

    /// Paths (files, folders or globs, relative to the repository root) kept from the build for the
    /// deploy stages. Empty (the default) keeps the whole work tree except `.git`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = &["cdk.json", "package.json", "node_modules", "bin", "lib", "dist"])]
    pub artifacts: Vec<String>,
}

/// Just-in-time synthesis of the CDK app, before each environment deploys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SynthSettings {
    /// The synth command, run with `sh -c`; AphexPipeline adds `-c key=value` for each context entry and
    /// `--output` with a fresh directory.
    #[serde(default = "defaults::synth_command")]
    #[schemars(example = &"npx cdk synth", regex(pattern = r"\S"))]
    pub command: String,

    /// CDK context values passed as `-c key=value`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(example = &example_context(), extend("propertyNames" = { "minLength": 1 }))]
    pub context: IndexMap<String, String>,

    /// Context keys that must be present (here or in cdk.json) before synth starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = &["stage"], inner(length(min = 1)))]
    pub required_context: Vec<String>,
}

/// One deployment target: an AWS account and region, and the stacks deployed there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Environment {
    /// Unique name of the environment (lower-case letters, digits and '-').
    #[schemars(example = &"dev", regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"))]
    pub name: String,

    /// AWS region the stacks deploy to, e.g. us-east-1.
    #[schemars(schema_with = "super::regions::region_schema")]
    pub region: String,

    /// AWS account id: exactly 12 digits, quoted so YAML keeps it a string.
    #[schemars(example = &"123456789012", regex(pattern = r"^[0-9]{12}$"))]
    pub account: String,

    /// IAM role ARN to assume for every deploy to this environment, instead of the CDK bootstrap roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        example = &"arn:aws:iam::123456789012:role/aphex-deploy",
        regex(pattern = ROLE_ARN_PATTERN)
    )]
    pub role: Option<String>,

    /// A gate before this environment deploys.
    #[serde(default, skip_serializing_if = "Approval::is_none")]
    #[schemars(extend("default" = "none"))]
    pub approval: Approval,

    /// The CDK stacks deployed to this environment. Listed order is the deploy order unless `dependsOn`
    /// says more; stacks that depend on nothing between them deploy in parallel.
    #[schemars(length(min = 1))]
    pub stacks: Vec<StackRef>,

    /// The longest `aphex deploy` waits on one CloudFormation operation of a stack (a change set, an
    /// update, a deletion, or an operation already running when the deploy starts), in minutes.
    /// Past it the deploy stops with the stack, its status, its newest event and what to do;
    /// `aphex deploy --timeout` overrides it.
    #[serde(default = "defaults::deploy_timeout", skip_serializing_if = "defaults::is_deploy_timeout")]
    #[schemars(range(min = 1, max = 1440))]
    pub deploy_timeout_minutes: u32,

    /// Post-deploy tests, run after every stack of this environment deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestSettings>,

    /// Environment variables for synth, deploy and tests of this environment.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(extend("propertyNames" = { "pattern": ENV_NAME_PATTERN }))]
    pub env: IndexMap<String, String>,
}

/// A gate before an environment deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Approval {
    /// No gate. The default.
    #[default]
    None,
    /// The run waits until someone resumes it (Argo UI or `argo resume`), or `--approve` locally.
    Manual,
}

/// A CDK stack deployed to an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackRef {
    /// The stack's name in the cloud assembly: its stack name, its display name (the construct path
    /// `cdk ls` prints, e.g. `Outer/Inner/Api` for a stack in Stage `Inner` in Stage `Outer`), or a
    /// pattern matched against display names as the CDK CLI does: `*` within one path segment
    /// (`Prod/*`), `**` across segments (`Prod/**`).
    #[schemars(example = &"MyAppStack", length(min = 1, max = 256), regex(pattern = STACK_NAME_PATTERN))]
    pub name: String,

    /// Source file that defines the stack: shown on the environment's deploy pod (annotation
    /// `aphex.dev/stack-sources`, in the Argo UI); synth always runs the whole app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(example = &"lib/my-app-stack.ts")]
    pub path: Option<String>,

    /// Stacks of the same environment that must deploy before this one (their `name`s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = &["NetworkStack"], inner(regex(pattern = STACK_NAME_PATTERN)))]
    pub depends_on: Vec<String>,

    /// Values of the stack's CloudFormation parameters (`CfnParameter`), by parameter name: a
    /// literal, `{ssm: /parameter/name}` (an SSM parameter's value, read at deploy time) or
    /// `{secret: name-or-arn}` (a Secrets Manager secret's value, for `NoEcho` parameters; never
    /// printed). They override the app's own values; `aphex deploy --parameters` overrides them. A
    /// template parameter with no `Default` and no value is refused before anything is deployed.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    #[schemars(
        example = &example_parameters(),
        extend("propertyNames" = { "pattern": PARAMETER_NAME_PATTERN })
    )]
    pub parameters: IndexMap<String, ParameterSource>,
}

/// Where a stack parameter's value comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ParameterSource {
    /// The value itself (a string, number or boolean, passed as its text).
    Literal(Literal),
    /// The value of an SSM parameter of the environment's account and region (SecureString
    /// decrypted), read when the environment deploys.
    Ssm(SsmSource),
    /// The value of a Secrets Manager secret (`SecretString`), read when the environment deploys.
    Secret(SecretSource),
}

/// A literal parameter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Literal {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl std::fmt::Display for Literal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Literal::Text(s) => f.write_str(s),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `{ssm: /name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SsmSource {
    /// The SSM parameter's name (or ARN).
    #[schemars(example = &"/myapp/dev/alert-email", regex(pattern = SSM_PARAMETER_PATTERN))]
    pub ssm: String,
}

/// `{secret: name-or-arn}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The secret's name or ARN.
    #[schemars(example = &"myapp/dev/db-password", regex(pattern = SECRET_REF_PATTERN))]
    pub secret: String,
}

/// Post-deploy tests of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestSettings {
    /// Shell commands run in order with `sh -c`. Stack outputs are in the environment as
    /// APHEX_OUTPUT_<STACK>_<KEY> and in the JSON file named by APHEX_OUTPUTS_FILE.
    #[schemars(length(min = 1), example = &["npm run integ -- --env dev"], inner(regex(pattern = r"\S")))]
    pub commands: Vec<String>,

    /// Time limit of each test command, in minutes.
    #[serde(default = "defaults::test_timeout")]
    #[schemars(range(min = 1, max = 1440))]
    pub timeout_minutes: u32,
}

/// Notifications of run outcomes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notifications {
    /// Slack incoming webhook, referenced through a secret (the URL itself never goes in this file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackSettings>,

    /// Email addresses subscribed to the pipeline's SNS topic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(example = &["platform-team@example.com"], inner(regex(pattern = EMAIL_PATTERN)))]
    pub email: Vec<String>,

    /// An existing SNS topic to publish to as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        example = &"arn:aws:sns:us-east-1:123456789012:deployments",
        regex(pattern = r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+(\.fifo)?$")
    )]
    pub sns_topic_arn: Option<String>,

    /// Which outcomes notify. Default: failure and approval.
    #[serde(default = "defaults::notify_on")]
    #[schemars(example = &["failure", "approval"], extend("uniqueItems" = true))]
    pub on: Vec<NotifyOn>,
}

/// Where the Slack webhook URL is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackSettings {
    /// ARN or name of the AWS Secrets Manager secret whose value is the Slack incoming-webhook URL.
    #[schemars(
        example = &"arn:aws:secretsmanager:us-east-1:123456789012:secret:aphex/slack-webhook",
        regex(pattern = SECRET_REF_PATTERN)
    )]
    pub webhook_secret: String,
}

/// A run outcome that can notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NotifyOn {
    /// A run succeeded.
    Success,
    /// A run failed.
    Failure,
    /// A run waits for a manual approval.
    Approval,
}

/// An IAM role ARN, in any partition, with an optional path.
pub const ROLE_ARN_PATTERN: &str = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$";
/// Environment variable names (POSIX portable: letters, digits, `_`, not starting with a digit).
pub const ENV_NAME_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]*$";
/// Stack names: a CloudFormation stack name, a construct path like `Prod/Api`, or a pattern like `Prod/*`.
pub const STACK_NAME_PATTERN: &str = r"^[A-Za-z0-9*][A-Za-z0-9/*._-]*$";
/// A CloudFormation parameter name (alphanumeric, as CloudFormation requires of logical ids).
pub const PARAMETER_NAME_PATTERN: &str = r"^[A-Za-z0-9]{1,255}$";
/// An SSM parameter name (`/a/b`, `name`) or ARN.
pub const SSM_PARAMETER_PATTERN: &str = r"^(arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:parameter/[A-Za-z0-9_.\-/]+|/?[A-Za-z0-9_.\-][A-Za-z0-9_.\-/]*)$";
/// A plausible e-mail address (SNS confirms it anyway).
pub const EMAIL_PATTERN: &str = r"^[^@\s]+@[^@\s]+\.[^@\s]+$";
/// A Secrets Manager secret name or ARN; a URL does not match (`:` only appears in ARNs).
pub const SECRET_REF_PATTERN: &str =
    r"^(arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+|[A-Za-z0-9/_+=.@-]+)$";

fn example_parameters() -> IndexMap<String, ParameterSource> {
    IndexMap::from([
        ("AlertEmail".to_owned(), ParameterSource::Literal(Literal::Text("ops@example.com".into()))),
        (
            "DbPassword".to_owned(),
            ParameterSource::Secret(SecretSource { secret: "myapp/dev/db-password".into() }),
        ),
    ])
}

fn example_env() -> IndexMap<String, String> {
    IndexMap::from([("NODE_OPTIONS".to_owned(), "--max-old-space-size=4096".to_owned())])
}

fn example_context() -> IndexMap<String, String> {
    IndexMap::from([("stage".to_owned(), "prod".to_owned())])
}

/// Documented defaults, one place.
pub mod defaults {
    use super::NotifyOn;

    pub fn pipeline_name() -> String {
        "aphex-pipeline".into()
    }
    pub fn branches() -> Vec<String> {
        vec!["main".into()]
    }
    pub fn namespace() -> String {
        "argo".into()
    }
    pub fn service_account() -> String {
        "aphex-workflow".into()
    }
    pub fn image() -> String {
        "public.ecr.aws/aphex/runner:0.1.0".into()
    }
    pub fn pipeline_timeout() -> u32 {
        360
    }
    pub fn build_timeout() -> u32 {
        30
    }
    pub fn test_timeout() -> u32 {
        15
    }
    pub fn deploy_timeout() -> u32 {
        60
    }
    pub fn is_deploy_timeout(v: &u32) -> bool {
        *v == deploy_timeout()
    }
    pub fn synth_command() -> String {
        "npx cdk synth".into()
    }
    pub fn pipeline_stack_app() -> String {
        ".".into()
    }
    pub fn notify_on() -> Vec<NotifyOn> {
        vec![NotifyOn::Failure, NotifyOn::Approval]
    }
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            name: defaults::pipeline_name(),
            repository: None,
            branches: defaults::branches(),
            tags: Vec::new(),
            namespace: defaults::namespace(),
            service_account: defaults::service_account(),
            image: defaults::image(),
            artifact_bucket: None,
            concurrency: Concurrency::default(),
            timeout_minutes: defaults::pipeline_timeout(),
            stack: None,
        }
    }
}

impl PipelineSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for SynthSettings {
    fn default() -> Self {
        Self { command: defaults::synth_command(), context: IndexMap::new(), required_context: Vec::new() }
    }
}

impl SynthSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Approval {
    fn is_none(&self) -> bool {
        *self == Approval::None
    }
}

impl Config {
    /// The environment called `name`, if any.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }
}

impl Environment {
    /// The CDK environment string, `aws://ACCOUNT/REGION`.
    pub fn cdk_environment(&self) -> String {
        format!("aws://{}/{}", self.account, self.region)
    }
}
