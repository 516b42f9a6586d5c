//! Creating, listing and stopping Argo Workflows, behind `WorkflowSubmitter`: the Kubernetes adapter
//! (`kube::Api<DynamicObject>` for `argoproj.io/v1alpha1 Workflow`) and an in-memory fake for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use thiserror::Error;

use super::workflow::{ANNOTATION_BRANCH, Workflow};
use crate::cluster::{ClusterAccess, ClusterError};

/// What `create` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New,
    /// A Workflow of that name exists: this delivery was already started.
    AlreadyExists,
}

/// A listed Workflow, reduced to what superseding needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub name: String,
    /// The exact branch from the annotation (labels may be hashed).
    pub branch: Option<String>,
    /// `status.phase`: absent until the controller picks the Workflow up.
    pub phase: Option<String>,
    /// Argo's `workflows.argoproj.io/completed=true` label.
    pub completed: bool,
    /// `spec.shutdown`, set when someone already stopped or terminated it.
    pub shutdown: Option<String>,
}

impl RunSummary {
    /// Still pending or running, and not already being shut down.
    pub fn is_active(&self) -> bool {
        !self.completed
            && self.shutdown.is_none()
            && matches!(self.phase.as_deref(), None | Some("") | Some("Pending") | Some("Running"))
    }
}

#[derive(Debug, Error)]
pub enum SubmitError {
    #[error("could not {action} Workflow {target} in namespace `{namespace}`: {source}")]
    Kube {
        action: &'static str,
        target: String,
        namespace: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("could not encode Workflow `{name}`: {source}")]
    Encode {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("could not reach the cluster to {action} Workflows in namespace `{namespace}`: {source}")]
    Cluster {
        action: &'static str,
        namespace: String,
        #[source]
        source: ClusterError,
    },
    #[error("{0}")]
    Injected(String),
}

#[async_trait]
pub trait WorkflowSubmitter: Send + Sync {
    /// Creates `workflow`; an existing name is `Created::AlreadyExists`, not an error.
    async fn create(&self, workflow: &Workflow) -> Result<Created, SubmitError>;
    /// Workflows in `namespace` matching the label selector.
    async fn list(&self, namespace: &str, label_selector: &str) -> Result<Vec<RunSummary>, SubmitError>;
    /// Asks Argo to stop a Workflow (`spec.shutdown: Stop`: running steps finish, exit handlers run).
    async fn stop(&self, namespace: &str, name: &str) -> Result<(), SubmitError>;
}

/// The Kubernetes adapter.
pub struct KubeSubmitter {
    clients: Clients,
    resource: ApiResource,
}

enum Clients {
    Fixed(kube::Client),
    /// Asks `ClusterAccess` on every call so an EKS token is renewed before it expires in a warm Lambda.
    Access(Box<ClusterAccess>),
}

impl KubeSubmitter {
    fn with(clients: Clients) -> Self {
        let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow");
        Self { clients, resource: ApiResource::from_gvk_with_plural(&gvk, "workflows") }
    }

    /// Uses `client` for every call.
    pub fn new(client: kube::Client) -> Self {
        Self::with(Clients::Fixed(client))
    }

    /// Uses the cluster access (KUBECONFIG or EKS), which caches and refreshes its client.
    pub fn from_access(access: ClusterAccess) -> Self {
        Self::with(Clients::Access(Box::new(access)))
    }

    async fn api(
        &self,
        action: &'static str,
        namespace: &str,
    ) -> Result<kube::Api<DynamicObject>, SubmitError> {
        let client = match &self.clients {
            Clients::Fixed(c) => c.clone(),
            Clients::Access(access) => access.client().await.map_err(|source| SubmitError::Cluster {
                action,
                namespace: namespace.to_owned(),
                source,
            })?,
        };
        Ok(kube::Api::namespaced_with(client, namespace, &self.resource))
    }
}

fn summary(obj: &DynamicObject) -> RunSummary {
    let labels = obj.metadata.labels.as_ref();
    RunSummary {
        name: obj.metadata.name.clone().unwrap_or_default(),
        branch: obj.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_BRANCH)).cloned(),
        phase: obj.data.pointer("/status/phase").and_then(|v| v.as_str()).map(str::to_owned),
        completed: labels.and_then(|l| l.get("workflows.argoproj.io/completed")).is_some_and(|v| v == "true"),
        shutdown: obj.data.pointer("/spec/shutdown").and_then(|v| v.as_str()).map(str::to_owned),
    }
}

#[async_trait]
impl WorkflowSubmitter for KubeSubmitter {
    async fn create(&self, workflow: &Workflow) -> Result<Created, SubmitError> {
        let md = &workflow.metadata;
        let obj: DynamicObject = serde_json::to_value(workflow)
            .and_then(serde_json::from_value)
            .map_err(|source| SubmitError::Encode { name: md.name.clone(), source })?;
        match self.api("create", &md.namespace).await?.create(&PostParams::default(), &obj).await {
            Ok(_) => Ok(Created::New),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Created::AlreadyExists),
            Err(source) => Err(SubmitError::Kube {
                action: "create",
                target: format!("`{}`", md.name),
                namespace: md.namespace.clone(),
                source: Box::new(source),
            }),
        }
    }

    async fn list(&self, namespace: &str, label_selector: &str) -> Result<Vec<RunSummary>, SubmitError> {
        let list = self
            .api("list", namespace)
            .await?
            .list(&ListParams::default().labels(label_selector))
            .await
            .map_err(|source| SubmitError::Kube {
                action: "list",
                target: format!("with labels `{label_selector}`"),
                namespace: namespace.to_owned(),
                source: Box::new(source),
            })?;
        Ok(list.items.iter().map(summary).collect())
    }

    async fn stop(&self, namespace: &str, name: &str) -> Result<(), SubmitError> {
        let patch = serde_json::json!({"spec": {"shutdown": "Stop"}});
        self.api("stop", namespace)
            .await?
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| SubmitError::Kube {
                action: "stop",
                target: format!("`{name}`"),
                namespace: namespace.to_owned(),
                source: Box::new(source),
            })
    }
}

/// An in-memory `WorkflowSubmitter` that behaves like the API server for the calls the webhook makes
/// (409 on a duplicate name, equality label selectors, merge of `spec.shutdown`).
#[derive(Debug, Default)]
pub struct MemorySubmitter {
    state: Mutex<MemoryState>,
}

/// A stored Workflow with the fields the controller and `stop` change: phase and `spec.shutdown`.
#[derive(Debug)]
struct Stored {
    workflow: Workflow,
    phase: Option<String>,
    shutdown: Option<String>,
}

#[derive(Debug, Default)]
struct MemoryState {
    /// By (namespace, name).
    workflows: BTreeMap<(String, String), Stored>,
    order: Vec<String>,
    stopped: Vec<String>,
    fail: Option<String>,
}

impl MemorySubmitter {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panicking test thread must not hide the state from the assertions of another.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Names of created Workflows, in creation order.
    pub fn created(&self) -> Vec<String> {
        self.state().order.clone()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Workflow> {
        self.state().workflows.get(&(namespace.to_owned(), name.to_owned())).map(|s| s.workflow.clone())
    }

    /// Names passed to `stop`, in order.
    pub fn stopped(&self) -> Vec<String> {
        self.state().stopped.clone()
    }

    /// Sets `status.phase` as the Argo controller would.
    pub fn set_phase(&self, namespace: &str, name: &str, phase: &str) {
        if let Some(entry) = self.state().workflows.get_mut(&(namespace.to_owned(), name.to_owned())) {
            entry.phase = Some(phase.to_owned());
        }
    }

    /// Makes every later call fail with `message` (an unreachable API server).
    pub fn fail_with(&self, message: &str) {
        self.state().fail = Some(message.to_owned());
    }

    fn check(&self) -> Result<(), SubmitError> {
        match &self.state().fail {
            Some(m) => Err(SubmitError::Injected(m.clone())),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl WorkflowSubmitter for MemorySubmitter {
    async fn create(&self, workflow: &Workflow) -> Result<Created, SubmitError> {
        self.check()?;
        let key = (workflow.metadata.namespace.clone(), workflow.metadata.name.clone());
        let mut state = self.state();
        if state.workflows.contains_key(&key) {
            return Ok(Created::AlreadyExists);
        }
        state.order.push(key.1.clone());
        state.workflows.insert(key, Stored { workflow: workflow.clone(), phase: None, shutdown: None });
        Ok(Created::New)
    }

    async fn list(&self, namespace: &str, label_selector: &str) -> Result<Vec<RunSummary>, SubmitError> {
        self.check()?;
        let wanted: Vec<(&str, &str)> =
            label_selector.split(',').filter(|s| !s.is_empty()).filter_map(|s| s.split_once('=')).collect();
        let state = self.state();
        Ok(state
            .workflows
            .iter()
            .filter(|((ns, _), s)| {
                ns == namespace
                    && wanted
                        .iter()
                        .all(|(k, v)| s.workflow.metadata.labels.get(*k).is_some_and(|have| have == v))
            })
            .map(|((_, name), s)| RunSummary {
                name: name.clone(),
                branch: s.workflow.metadata.annotations.get(ANNOTATION_BRANCH).cloned(),
                phase: s.phase.clone(),
                completed: matches!(s.phase.as_deref(), Some("Succeeded" | "Failed" | "Error")),
                shutdown: s.shutdown.clone(),
            })
            .collect())
    }

    async fn stop(&self, namespace: &str, name: &str) -> Result<(), SubmitError> {
        self.check()?;
        let mut state = self.state();
        state.stopped.push(name.to_owned());
        if let Some(entry) = state.workflows.get_mut(&(namespace.to_owned(), name.to_owned())) {
            entry.shutdown = Some("Stop".to_owned());
        }
        Ok(())
    }
}
