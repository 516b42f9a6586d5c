//! Self-modification: render, check, apply (server-side apply) and roll back the live WorkflowTemplate.
//!
//! The pipeline stage and the `generate-template` Lambda call [`apply`] with the config text of the run's
//! commit. The order of checks guarantees that an invalid config or template is never applied: config
//! diagnostics, plan checks, render, Argo schema (strict) - only then is the cluster touched. The
//! Kubernetes calls sit behind [`TemplateStore`] (a kube adapter and an in-memory fake).

mod apply;
pub mod diff;
mod kube_store;
pub mod service;
mod store;

pub use apply::{
    ApplyOptions, ApplyOutcome, HISTORY_LIMIT, History, HistoryEntry, Rollback, apply, apply_rendered,
    diff_live, history, history_configmap_name, rollback,
};
pub use kube_store::KubeTemplateStore;
pub use store::{MemoryTemplateStore, StoreError, StoreErrorKind, TemplateStore};

use crate::argo::{self, RenderError, RenderOptions, SchemaViolation, WorkflowTemplate};
use crate::config::{Config, Diagnostic};
use crate::plan::{self, Plan, PlanError};

/// A rendered and checked template, ready to print or apply.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub plan: Plan,
    pub template: WorkflowTemplate,
    /// The template as JSON, as it is sent to the API server.
    pub document: serde_json::Value,
    pub config_sha256: String,
}

/// Why a template was not rendered or applied. Nothing is applied when any of these is returned.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{file} is not a valid AphexPipeline config:\n{}", render_diagnostics(.diagnostics))]
    InvalidConfig { file: String, diagnostics: Vec<Diagnostic> },
    #[error("the config cannot be planned: {0}")]
    Plan(#[from] PlanError),
    #[error("the template cannot be rendered: {0}")]
    Render(#[from] RenderError),
    #[error(
        "the rendered WorkflowTemplate breaks Argo's schema ({} problem(s)); this is a bug in aphex, please report it:\n{}",
        .violations.len(),
        .violations.iter().map(|v| format!("  {v}")).collect::<Vec<_>>().join("\n")
    )]
    Schema { violations: Vec<SchemaViolation> },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "there is no WorkflowTemplate `{name}` in namespace `{namespace}`; apply one first (`aphex template apply`)"
    )]
    NoLiveTemplate { namespace: String, name: String },
    #[error("version {wanted} is not in the history of `{name}`; available: {}", fmt_versions(.available))]
    NoSuchVersion { name: String, wanted: u64, available: Vec<u64> },
    #[error("the history of `{name}` has no earlier version to roll back to")]
    NothingToRollBack { name: String },
    #[error("history entry {version} of `{name}` is unreadable: {reason}; pick another with --to")]
    BadHistoryEntry { name: String, version: u64, reason: String },
}

impl TemplateError {
    /// Whether retrying the same call may succeed (cluster unavailable, throttled, conflict).
    pub fn is_retryable(&self) -> bool {
        matches!(self, TemplateError::Store(e) if e.is_retryable())
    }
}

fn fmt_versions(v: &[u64]) -> String {
    if v.is_empty() { "none".into() } else { v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ") }
}

fn render_diagnostics(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| {
            let mut s = format!("  {}:{}:{}: {}", d.file, d.line, d.column, d.message);
            if !d.path.is_empty() {
                s.push_str(&format!(" (at `{}`)", d.path));
            }
            if let Some(h) = &d.hint {
                s.push_str(&format!("\n    = hint: {h}"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Plans, renders and checks a parsed config.
pub fn render_config(config: &Config, commit: Option<&str>) -> Result<Rendered, TemplateError> {
    plan::check(config)?;
    let plan = plan::build(config);
    let opts = RenderOptions::for_config(config, commit.map(str::to_owned));
    let template = argo::render(&plan, &opts)?;
    let document = serde_json::to_value(&template).map_err(|e| TemplateError::Schema {
        violations: vec![SchemaViolation { path: String::new(), message: e.to_string() }],
    })?;
    argo::validate_workflow_template(&document).map_err(|violations| TemplateError::Schema { violations })?;
    Ok(Rendered { plan, template, document, config_sha256: opts.config_sha256 })
}

/// Parses config text (`file` labels diagnostics), then [`render_config`].
pub fn render_text(file: &str, text: &str, commit: Option<&str>) -> Result<Rendered, TemplateError> {
    let config = crate::config::parse(file, text)
        .map_err(|diagnostics| TemplateError::InvalidConfig { file: file.to_owned(), diagnostics })?;
    render_config(&config, commit)
}

/// A kube-backed store for the cluster the environment names (`KUBECONFIG`, else `APHEX_CLUSTER` on EKS).
/// Long-lived processes (Lambdas) should keep a [`crate::cluster::ClusterAccess`] instead and build a
/// store per call from its cached client.
pub async fn kube_store_from_env() -> Result<KubeTemplateStore, crate::cluster::ClusterError> {
    Ok(KubeTemplateStore::new(cluster_access_from_env().await?.client().await?))
}

/// Cluster access from the environment; AWS configuration is only loaded for EKS.
pub async fn cluster_access_from_env() -> Result<crate::cluster::ClusterAccess, crate::cluster::ClusterError>
{
    use crate::cluster::{ClusterAccess, ClusterTarget};
    let target = ClusterTarget::from_env()?;
    let sdk = match target {
        ClusterTarget::Eks { .. } => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
        ClusterTarget::Kubeconfig { .. } | ClusterTarget::InCluster => {
            aws_types::SdkConfig::builder().build()
        }
    };
    Ok(ClusterAccess::new(target, sdk))
}

#[cfg(test)]
mod tests;
