//! The stand-in node of the test cluster: what a kubelet, a container runtime and Argo's executor would do
//! for the pods the real Argo controller creates, done with local processes.
//!
//! No kubelet or container runtime can run on these machines. Everything else of the cluster is real
//! (etcd, kube-apiserver with RBAC, admission, server-side apply and CRD validation, the Argo
//! workflow-controller). This node:
//! - registers a `Node` and binds every unscheduled pod to it (the scheduler's job, through the real
//!   `pods/binding` subresource);
//! - runs the pod's main container command (behind Argo's `argoexec emissary --` wrapper) as a process in a
//!   private mount namespace: its own `/tmp` (as a container's writable layer) and, where the pod mounts
//!   one, a service account token from the real TokenRequest API at
//!   `/var/run/secrets/kubernetes.io/serviceaccount`, as the kubelet mounts it; the pod's environment,
//!   downward-API fields included; the `aphex` binary from this checkout stands in for the runner image;
//! - reports what Argo's executor (the `wait` container) reports: a `WorkflowTaskResult` named after the
//!   node id, created and finalized with the pod's own service account (so `argo/rbac.yaml` is exercised),
//!   with the output parameters read from the paths the template names;
//! - sets the pod's phase and container statuses as the kubelet does, and confirms deletions;
//! - stops a pod's process when its Workflow is shut down (Argo signals through `pods/exec`, which needs a
//!   kubelet; this node watches `spec.shutdown` instead).
//!
//! Node-level environment: a ConfigMap `aphex-pod-node-env` in the pod's namespace, when present, is added
//! to every pod's environment. It stands in for what EKS Pod Identity injects (AWS credentials) and for
//! the network path to AWS (here `AWS_ENDPOINT_URL` of the tests' moto server).

mod report;
mod run;

pub use run::exec_in_pod;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures::TryStreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use tokio::sync::Mutex;

/// The node's name in the cluster.
pub const NODE_NAME: &str = "aphex-local";
/// The ConfigMap whose data is added to every pod's environment (see the module docs).
pub const NODE_ENV_CONFIGMAP: &str = "aphex-pod-node-env";

/// How the node reaches the API server and where it keeps its pods.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    /// Per pod: `<state_dir>/<namespace>/<pod>/` with `tmp/`, `sa/`, `main.log`, `pid`.
    pub state_dir: PathBuf,
    /// Put first on every pod's PATH: the runner image's binaries (`aphex`).
    pub runner_bin_dir: PathBuf,
    /// What pods get as `KUBERNETES_SERVICE_HOST` / `_PORT` (the API server's real address here).
    pub api_host: String,
    pub api_port: u16,
    /// The cluster CA, PEM: written as the pod's `ca.crt`.
    pub ca_pem: Vec<u8>,
    /// A copy of this binary that pods start through (`exec-in-pod`): a rebuild of the original while the
    /// node runs must not break the pods started after it.
    pub exec_helper: PathBuf,
}

/// Errors of the node; each names the pod.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("pod {pod}: {reason}")]
    Pod { pod: String, reason: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The running node.
pub struct PodNode {
    client: kube::Client,
    settings: NodeSettings,
    /// Pods started (by uid): each is run once.
    started: Mutex<HashSet<String>>,
    /// Process group ids of running pods, by uid.
    running: Arc<Mutex<HashMap<String, RunningPod>>>,
}

#[derive(Debug, Clone)]
struct RunningPod {
    pgid: i32,
    namespace: String,
    workflow: Option<String>,
    on_exit: bool,
}

impl PodNode {
    pub fn new(client: kube::Client, settings: NodeSettings) -> Arc<Self> {
        Arc::new(PodNode {
            client,
            settings,
            started: Mutex::new(HashSet::new()),
            running: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Registers the node, then serves pods and watches workflows until the watches end.
    pub async fn serve(self: Arc<Self>) -> Result<(), NodeError> {
        self.register().await?;
        tokio::fs::create_dir_all(&self.settings.state_dir)
            .await
            .map_err(|source| NodeError::Io { path: self.settings.state_dir.clone(), source })?;
        let ready = self.settings.state_dir.join("ready");
        tokio::fs::write(&ready, b"ready\n").await.map_err(|source| NodeError::Io { path: ready, source })?;
        let shutdowns = tokio::spawn(self.clone().watch_shutdowns());
        let pods: Api<Pod> = Api::all(self.client.clone());
        let stream = watcher(pods, watcher::Config::default());
        futures::pin_mut!(stream);
        while let Some(event) = stream
            .try_next()
            .await
            .map_err(|e| NodeError::Pod { pod: "*".into(), reason: format!("pod watch failed: {e}") })?
        {
            match event {
                watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                    let node = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = node.handle(pod).await {
                            eprintln!("[pod-node] {e}");
                        }
                    });
                }
                watcher::Event::Delete(pod) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    self.kill(&uid).await;
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
        }
        shutdowns.abort();
        Ok(())
    }

    async fn register(&self) -> Result<(), NodeError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {
                "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                "aphex.dev/stand-in": "true"}},
        }))
        .expect("static node");
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        let now = now_rfc3339();
        let status = serde_json::json!({"status": {
            "capacity": {"cpu": "16", "memory": "64Gi", "pods": "250"},
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "250"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "aphex stand-in node is ready", "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE_NAME}],
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "stand-in",
                "kubeProxyVersion": "", "containerRuntimeVersion": "local-process://aphex-pod-node",
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": ""}
        }});
        nodes.patch_status(NODE_NAME, &PatchParams::default(), &Patch::Merge(&status)).await?;
        Ok(())
    }

    async fn handle(self: Arc<Self>, pod: Pod) -> Result<(), NodeError> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into());
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);

        if pod.metadata.deletion_timestamp.is_some() {
            self.kill(&uid).await;
            // Confirm the deletion as a kubelet does once the containers are gone; finalizers stay the
            // API server's business (it deletes when the last one is removed).
            if node_name.as_deref() == Some(NODE_NAME) || node_name.is_none() {
                match pods
                    .delete(&name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
                    .await
                {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(());
        }
        match node_name.as_deref() {
            None if phase == "Pending" => {
                let binding = serde_json::json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": namespace},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}
                });
                match pods
                    .create_subresource::<_, serde_json::Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                {
                    Ok(_) => {}
                    // Already bound (a second event of the same pod) or gone.
                    Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(())
            }
            Some(NODE_NAME) if phase == "Pending" => {
                if !self.started.lock().await.insert(uid.clone()) {
                    return Ok(());
                }
                let labels = pod.metadata.labels.clone().unwrap_or_default();
                let workflow = labels.get("workflows.argoproj.io/workflow").cloned();
                let on_exit = labels.contains_key("workflows.argoproj.io/on-exit");
                let running = self.running.clone();
                let result = run::run_pod(&self.client, &self.settings, &pod, |pgid| {
                    let running = running.clone();
                    let namespace = namespace.clone();
                    let uid = uid.clone();
                    async move {
                        running.lock().await.insert(uid, RunningPod { pgid, namespace, workflow, on_exit });
                    }
                })
                .await;
                self.running.lock().await.remove(&uid);
                if let Err(e) = &result {
                    // The pod could not even start (bad spec, token refused): fail it as a kubelet would.
                    let _ = report::fail_pod(&pods, &name, &e.to_string()).await;
                }
                result
            }
            _ => Ok(()),
        }
    }

    async fn kill(&self, uid: &str) {
        if let Some(pod) = self.running.lock().await.remove(uid) {
            run::signal_group(pod.pgid, true);
        }
    }

    /// Argo stops the pods of a Workflow that is shut down (`spec.shutdown: Stop|Terminate`) by signalling
    /// their containers through `pods/exec`. Without a kubelet there is no exec: watch for it here.
    async fn watch_shutdowns(self: Arc<Self>) {
        let workflows: Api<kube::api::DynamicObject> =
            Api::all_with(self.client.clone(), &report::workflow_resource());
        let stream = watcher(workflows, watcher::Config::default());
        futures::pin_mut!(stream);
        loop {
            let event = match stream.try_next().await {
                Ok(Some(event)) => event,
                Ok(None) => return,
                Err(e) => {
                    eprintln!("[pod-node] workflow watch: {e}; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            let wf = match event {
                watcher::Event::Apply(wf) | watcher::Event::InitApply(wf) => wf,
                _ => continue,
            };
            let shutdown = wf.data.pointer("/spec/shutdown").and_then(|v| v.as_str()).map(str::to_owned);
            let Some(strategy) = shutdown else { continue };
            let name = wf.metadata.name.clone().unwrap_or_default();
            let namespace = wf.metadata.namespace.clone().unwrap_or_default();
            let mut running = self.running.lock().await;
            // `Stop` lets exit handlers run; `Terminate` stops everything (Argo's ShouldExecute).
            let doomed: Vec<String> = running
                .iter()
                .filter(|(_, p)| {
                    p.namespace == namespace
                        && p.workflow.as_deref() == Some(name.as_str())
                        && (strategy == "Terminate" || !p.on_exit)
                })
                .map(|(uid, _)| uid.clone())
                .collect();
            for uid in doomed {
                if let Some(pod) = running.remove(&uid) {
                    eprintln!(
                        "[pod-node] workflow {namespace}/{name} shut down ({strategy}): stopping a pod"
                    );
                    run::signal_group(pod.pgid, false);
                }
            }
        }
    }
}

/// Pods bound to this node (for tests that look at what ran).
pub async fn bound_pods(client: &kube::Client, namespace: &str) -> Result<Vec<Pod>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    Ok(pods.list(&ListParams::default().fields(&format!("spec.nodeName={NODE_NAME}"))).await?.items)
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("0 is a valid nanosecond")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}
