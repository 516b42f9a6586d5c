//! The Kubernetes calls self-modification needs, as a trait, and an in-memory fake for unit tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

/// The cluster as self-modification sees it: one WorkflowTemplate and one history ConfigMap per pipeline.
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// The live WorkflowTemplate, or `None` when there is none.
    async fn get_template(&self, namespace: &str, name: &str) -> Result<Option<Value>, StoreError>;
    /// Server-side apply of a whole WorkflowTemplate (field manager `aphex`, forced).
    async fn apply_template(&self, namespace: &str, name: &str, document: &Value) -> Result<(), StoreError>;
    /// The `data` of a ConfigMap, or `None` when there is none.
    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StoreError>;
    /// Server-side apply of a ConfigMap with exactly this data and these labels.
    async fn apply_config_map(
        &self,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &BTreeMap<String, String>,
    ) -> Result<(), StoreError>;
}

/// What kind of failure a cluster call had; decides whether a caller retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The API server rejected the object (HTTP 400/422): retrying the same object fails again.
    Invalid,
    /// Credentials lack a permission (401/403): fix RBAC, then retry.
    Forbidden,
    /// Someone else changed the object meanwhile (409).
    Conflict,
    /// The cluster could not be reached, timed out, throttled (429) or failed (5xx).
    Unavailable,
    /// Anything else (bad response, client error).
    Other,
}

/// A failed cluster call, naming the object and the operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} {object} failed ({kind:?}): {message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    /// e.g. `apply`, `get`.
    pub operation: &'static str,
    /// e.g. `WorkflowTemplate argo/shop`.
    pub object: String,
    pub message: String,
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, StoreErrorKind::Unavailable | StoreErrorKind::Conflict)
    }
}

/// In-memory [`TemplateStore`] for unit tests: keeps objects by namespace and name, counts applies, and
/// can be told to fail the next template apply.
#[derive(Debug, Default)]
pub struct MemoryTemplateStore {
    state: Mutex<MemoryState>,
}

type Labels = BTreeMap<String, String>;

#[derive(Debug, Default)]
struct MemoryState {
    templates: BTreeMap<(String, String), Value>,
    /// (labels, data) per (namespace, name).
    config_maps: BTreeMap<(String, String), (Labels, Labels)>,
    template_applies: usize,
    fail_next_apply: Option<StoreError>,
}

impl MemoryTemplateStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding the lock only happens in a failing test; keep serving the data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many times a template was applied.
    pub fn template_applies(&self) -> usize {
        self.state().template_applies
    }

    /// The stored template, if any.
    pub fn template(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state().templates.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    /// Puts a template in place without counting it as an apply (a template made by hand).
    pub fn insert_template(&self, namespace: &str, name: &str, document: Value) {
        self.state().templates.insert((namespace.to_owned(), name.to_owned()), document);
    }

    /// The next `apply_template` fails with `error` (and changes nothing).
    pub fn fail_next_apply(&self, error: StoreError) {
        self.state().fail_next_apply = Some(error);
    }
}

#[async_trait]
impl TemplateStore for MemoryTemplateStore {
    async fn get_template(&self, namespace: &str, name: &str) -> Result<Option<Value>, StoreError> {
        Ok(self.template(namespace, name))
    }

    async fn apply_template(&self, namespace: &str, name: &str, document: &Value) -> Result<(), StoreError> {
        let mut state = self.state();
        if let Some(error) = state.fail_next_apply.take() {
            return Err(error);
        }
        state.template_applies += 1;
        state.templates.insert((namespace.to_owned(), name.to_owned()), document.clone());
        Ok(())
    }

    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        Ok(self.state().config_maps.get(&(namespace.to_owned(), name.to_owned())).map(|(_, d)| d.clone()))
    }

    async fn apply_config_map(
        &self,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        self.state()
            .config_maps
            .insert((namespace.to_owned(), name.to_owned()), (labels.clone(), data.clone()));
        Ok(())
    }
}
