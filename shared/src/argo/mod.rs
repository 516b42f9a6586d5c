//! Argo Workflows types and the renderer from a `Plan` to a `WorkflowTemplate`.
//!
//! Only the fields AphexPipeline writes are modelled, with Argo's JSON names. Argo's schema types
//! `IntOrString` and `Quantity` as strings, so those fields are `String` here (`limit: "3"`,
//! `cpu: "500m"`): valid for the schema and for the API server alike. Maps are `BTreeMap`s and lists keep
//! plan order, so rendering is deterministic.

pub mod render;
pub mod schema;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use render::{RenderError, RenderOptions, config_sha256, render, to_json, to_yaml};
pub use schema::{SchemaViolation, validate_workflow_template};

/// `argoproj.io/v1alpha1`.
pub const API_VERSION: &str = "argoproj.io/v1alpha1";

/// Label and annotation keys AphexPipeline puts on the objects it owns.
pub mod keys {
    /// SHA-256 of the canonical config the template was rendered from. The annotation holds all 64 hex
    /// digits; the label (values are limited to 63 characters) the first 32.
    pub const CONFIG_SHA256: &str = "aphex.dev/config-sha256";
    /// The commit whose `aphex-config.yaml` produced the template (`unknown` when rendered locally).
    pub const GENERATED_FROM_COMMIT: &str = "aphex.dev/generated-from-commit";
    /// The version of `aphex` that rendered the template: a new renderer re-applies an unchanged config.
    pub const APHEX_VERSION: &str = "aphex.dev/aphex-version";
    /// Sequence number of the applied template, set when applied (history and rollback refer to it).
    pub const TEMPLATE_VERSION: &str = "aphex.dev/template-version";
    /// On a template applied by a rollback: the version it restored.
    pub const ROLLBACK_OF: &str = "aphex.dev/rollback-of";
    /// The pipeline name, on the template, its Workflows and their pods.
    pub const PIPELINE: &str = "aphex.dev/pipeline";
    /// The stage kind of a pod (`prepare`, `deploy`, `finalize`; `validate`, `build`, `pipeline`, `test`
    /// for a stage alone in its pod).
    pub const STAGE: &str = "aphex.dev/stage";
    /// On a template that runs several stages in one pod: their ids in run order, JSON
    /// (`["validate","build","pipeline"]`).
    pub const STAGES: &str = "aphex.dev/stages";
    /// The environment of a pod, for deploy and test stages.
    pub const ENVIRONMENT: &str = "aphex.dev/environment";
    /// On a deploy template: its stacks as deploy waves, JSON (`[["Net","Db"],["App"]]`).
    pub const STACKS: &str = "aphex.dev/stacks";
    /// On a deploy template whose stacks name their source (`stacks[].path`): JSON `{"App": "lib/app.ts"}`.
    pub const STACK_SOURCES: &str = "aphex.dev/stack-sources";
    /// `app.kubernetes.io/managed-by`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// On the template: `pipeline.branches`, a JSON array of globs (`["main","release/*"]`), read by the
    /// webhook to decide which pushes start a run.
    pub const TRIGGER_BRANCHES: &str = "aphex.dev/branches";
    /// On the template: `pipeline.tags`, a JSON array of globs (`[]` when tag pushes start nothing).
    pub const TRIGGER_TAGS: &str = "aphex.dev/tags";
    /// On the template: `pipeline.concurrency`, a JSON string (`"queue"` or `"supersede"`).
    pub const TRIGGER_CONCURRENCY: &str = "aphex.dev/concurrency";
}

/// An Argo `WorkflowTemplate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowTemplate {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: WorkflowSpec,
}

/// Kubernetes object metadata (the part we set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `WorkflowSpec` as used by a WorkflowTemplate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowSpec {
    pub entrypoint: String,
    pub arguments: Arguments,
    pub service_account_name: String,
    /// Upper bound of a whole run, in seconds.
    pub active_deadline_seconds: u64,
    #[serde(rename = "podGC")]
    pub pod_gc: PodGc,
    pub ttl_strategy: TtlStrategy,
    /// Template that runs when the workflow ends, whatever the outcome.
    pub on_exit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_metadata: Option<Metadata>,
    pub templates: Vec<Template>,
}

/// Labels and annotations for Workflows or pods.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arguments {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
}

/// A parameter: a workflow argument, a template input or output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    /// File in the container to read the value from.
    pub path: String,
    /// Value used when the file is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodGc {
    pub strategy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TtlStrategy {
    pub seconds_after_success: u64,
    pub seconds_after_failure: u64,
}

/// One Argo template: exactly one of `dag`, `container`, `suspend` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Inputs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronization: Option<Synchronization>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_strategy: Option<RetryStrategy>,
    /// IntOrString in Argo's schema: seconds as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dag: Option<DagTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<SuspendTemplate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inputs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outputs {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
}

/// An input artifact; AphexPipeline only uses `raw` ones (a parameter's value written to a file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub name: String,
    pub path: String,
    pub raw: RawArtifact,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawArtifact {
    pub data: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Synchronization {
    pub mutexes: Vec<Mutex>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mutex {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryStrategy {
    /// IntOrString: retries after the first attempt.
    pub limit: String,
    /// `OnError` retries infrastructure errors (pod evicted or deleted, node lost, image pull) and never
    /// a container that exited non-zero (`Failed`), such as a deploy CloudFormation rejected.
    pub retry_policy: String,
    pub backoff: Backoff,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    pub duration: String,
    /// IntOrString.
    pub factor: String,
    pub max_duration: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DagTemplate {
    pub tasks: Vec<DagTask>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DagTask {
    pub name: String,
    pub template: String,
    /// Enhanced depends logic: `a && b` (each succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Arguments>,
}

/// `suspend: {}`: waits until resumed (`argo resume` or the UI).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SuspendTemplate {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Variables from ConfigMaps: the platform's settings ([`PLATFORM_CONFIGMAP`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    pub resources: Resources,
}

/// The ConfigMap the infra writes in the pipeline's namespace with the platform's settings every pod
/// reads as environment variables: `APHEX_SNS_TOPIC_ARN` (email subscriptions), `APHEX_LOG_GROUP`
/// (step logs), `APHEX_ARGO_URL`. Optional: a cluster without it runs with none of them.
pub const PLATFORM_CONFIGMAP: &str = "aphex-platform";

/// `envFrom` entry (Kubernetes `EnvFromSource`, ConfigMap only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource {
    pub config_map_ref: ConfigMapEnvSource,
}

/// Kubernetes `ConfigMapEnvSource`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapEnvSource {
    pub name: String,
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// Quantities as strings (`"500m"`, `"1Gi"`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    pub requests: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

impl WorkflowSpec {
    /// The template called `name`.
    pub fn template(&self, name: &str) -> Option<&Template> {
        self.templates.iter().find(|t| t.name == name)
    }
}
