//! What the kubelet and Argo's executor report: pod phases and container statuses, and the
//! `WorkflowTaskResult` (argoproj.io/v1alpha1) with the node's outputs, as `argoexec wait` writes it
//! (argo-workflows v4 `workflow/executor/taskresult.go`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use secrecy::SecretString;

use super::{NodeError, NodeSettings};

/// `argoproj.io/v1alpha1` Workflow.
pub fn workflow_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Workflow"),
        "workflows",
    )
}

fn task_result_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "WorkflowTaskResult"),
        "workflowtaskresults",
    )
}

const LABEL_WORKFLOW: &str = "workflows.argoproj.io/workflow";
const LABEL_COMPLETED: &str = "workflows.argoproj.io/report-outputs-completed";

/// The executor of one Argo pod: its identity is the pod's service account token.
pub struct Executor {
    api: Api<DynamicObject>,
    node_id: String,
    workflow: String,
    workflow_uid: String,
    template: serde_json::Value,
}

impl Executor {
    /// From the wait container's variables (`ARGO_NODE_ID`, `ARGO_WORKFLOW_NAME`, `ARGO_WORKFLOW_UID`,
    /// `ARGO_TEMPLATE`), which Argo also gives the main container. `None` for a pod Argo did not make.
    pub fn from_env(
        namespace: &str,
        env: &BTreeMap<String, String>,
        settings: &NodeSettings,
        token: &str,
    ) -> Result<Option<Self>, NodeError> {
        let (Some(node_id), Some(workflow)) = (env.get("ARGO_NODE_ID"), env.get("ARGO_WORKFLOW_NAME")) else {
            return Ok(None);
        };
        let err = |reason: String| NodeError::Pod { pod: node_id.clone(), reason };
        let template: serde_json::Value = match env.get("ARGO_TEMPLATE") {
            Some(t) => serde_json::from_str(t).map_err(|e| err(format!("ARGO_TEMPLATE is not JSON: {e}")))?,
            None => serde_json::Value::Null,
        };
        let namespace = namespace.to_owned();
        let uri: http::Uri = format!("https://{}:{}", settings.api_host, settings.api_port)
            .parse()
            .map_err(|e| err(format!("API address: {e}")))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = namespace.clone();
        config.root_cert = Some(pem_to_der(&settings.ca_pem));
        config.auth_info.token = Some(SecretString::from(token.to_owned()));
        let client = kube::Client::try_from(config).map_err(|e| err(format!("client: {e}")))?;
        Ok(Some(Executor {
            api: Api::namespaced_with(client, &namespace, &task_result_resource()),
            node_id: node_id.clone(),
            workflow: workflow.clone(),
            workflow_uid: env.get("ARGO_WORKFLOW_UID").cloned().unwrap_or_default(),
            template,
        }))
    }

    /// `InitializeOutput`: the task result exists, outputs not yet complete.
    pub async fn initialize(&self) -> Result<(), kube::Error> {
        let mut result = DynamicObject::new(&self.node_id, &task_result_resource());
        result.metadata.labels = Some(
            [
                (LABEL_WORKFLOW.to_owned(), self.workflow.clone()),
                (LABEL_COMPLETED.to_owned(), "false".to_owned()),
            ]
            .into(),
        );
        result.metadata.owner_references =
            Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "argoproj.io/v1alpha1".into(),
                kind: "Workflow".into(),
                name: self.workflow.clone(),
                uid: self.workflow_uid.clone(),
                ..Default::default()
            }]);
        match self.api.create(&PostParams::default(), &result).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `SaveParameters`: each output parameter with `valueFrom.path` gets the file's text (one trailing
    /// newline trimmed) or its `default`. `read_path` maps a path in the pod to the host.
    pub fn outputs(&self, read_path: impl Fn(&str) -> PathBuf) -> serde_json::Value {
        let mut outputs = self.template.get("outputs").cloned().unwrap_or_else(|| serde_json::json!({}));
        if let Some(params) = outputs.get_mut("parameters").and_then(|p| p.as_array_mut()) {
            for param in params {
                let Some(path) = param.pointer("/valueFrom/path").and_then(|p| p.as_str()).map(str::to_owned)
                else {
                    continue;
                };
                let value = std::fs::read_to_string(read_path(&path))
                    .ok()
                    .map(|v| v.strip_suffix('\n').map(str::to_owned).unwrap_or(v))
                    .or_else(|| {
                        param.pointer("/valueFrom/default").and_then(|d| d.as_str()).map(str::to_owned)
                    });
                if let Some(value) = value {
                    param["value"] = serde_json::Value::String(value);
                }
            }
        }
        outputs
    }

    /// `ReportOutputs` then `FinalizeOutput`: a merge patch of the outputs, then the completed label.
    pub async fn report(&self, outputs: serde_json::Value) -> Result<(), kube::Error> {
        let pp = PatchParams::default();
        self.api.patch(&self.node_id, &pp, &Patch::Merge(serde_json::json!({"outputs": outputs}))).await?;
        self.api
            .patch(
                &self.node_id,
                &pp,
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {LABEL_COMPLETED: "true"}}})),
            )
            .await?;
        Ok(())
    }
}

fn pem_to_der(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN") {
            body = Some(String::new());
        } else if line.starts_with("-----END") {
            if let Some(Ok(der)) = body.take().map(|b| base64::engine::general_purpose::STANDARD.decode(b)) {
                certs.push(der);
            }
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    certs
}

fn container_names(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let spec = pod.spec.as_ref();
    let names = |cs: Option<&Vec<k8s_openapi::api::core::v1::Container>>| {
        cs.map(|cs| cs.iter().map(|c| c.name.clone()).collect()).unwrap_or_default()
    };
    (names(spec.and_then(|s| s.init_containers.as_ref())), names(spec.map(|s| &s.containers)))
}

fn image_of(pod: &Pod, name: &str) -> String {
    let spec = pod.spec.as_ref();
    spec.into_iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .find(|c| c.name == name)
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn terminated(
    name: &str,
    image: &str,
    code: i32,
    reason: &str,
    started: &str,
    finished: &str,
    message: Option<&str>,
) -> serde_json::Value {
    let mut t =
        serde_json::json!({"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": finished});
    if let Some(m) = message {
        t["message"] = serde_json::Value::String(m.to_owned());
    }
    serde_json::json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
        "started": false, "state": {"terminated": t}})
}

/// Pod `Running`: init containers done, the others running.
pub async fn set_running(pods: &Api<Pod>, name: &str, pod: &Pod, started: &str) -> Result<(), kube::Error> {
    let (init, main) = container_names(pod);
    let init_statuses: Vec<_> = init
        .iter()
        .map(|n| terminated(n, &image_of(pod, n), 0, "Completed", started, started, None))
        .collect();
    let statuses: Vec<_> = main
        .iter()
        .map(|n| {
            serde_json::json!({"name": n, "image": image_of(pod, n), "imageID": "", "ready": true,
                "restartCount": 0, "started": true, "state": {"running": {"startedAt": started}}})
        })
        .collect();
    let status = serde_json::json!({"status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": started,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "Ready", "status": "True", "lastTransitionTime": started},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": started},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started}],
        "initContainerStatuses": init_statuses, "containerStatuses": statuses}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

/// Pod `Succeeded` (exit 0) or `Failed`: every container terminated, main with its exit code. As with
/// `terminationMessagePolicy: FallbackToLogsOnError`, a failed main container's message is its log's end.
pub async fn set_terminated(
    pods: &Api<Pod>,
    name: &str,
    pod: &Pod,
    exit_code: i32,
    started: &str,
    finished: &str,
    log: &Path,
) -> Result<(), kube::Error> {
    let (_, main) = container_names(pod);
    let message = (exit_code != 0).then(|| log_tail(log));
    let statuses: Vec<_> = main
        .iter()
        .map(|n| {
            if n == "main" || main.len() == 1 {
                let reason = if exit_code == 0 { "Completed" } else { "Error" };
                terminated(n, &image_of(pod, n), exit_code, reason, started, finished, message.as_deref())
            } else {
                terminated(n, &image_of(pod, n), 0, "Completed", started, finished, None)
            }
        })
        .collect();
    let phase = if exit_code == 0 { "Succeeded" } else { "Failed" };
    let status = serde_json::json!({"status": {
        "phase": phase,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished},
            {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": finished}],
        "containerStatuses": statuses}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

/// A pod that could not start: `Failed` with the reason.
pub async fn fail_pod(pods: &Api<Pod>, name: &str, reason: &str) -> Result<(), kube::Error> {
    let status =
        serde_json::json!({"status": {"phase": "Failed", "reason": "StartError", "message": reason}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

/// The last lines of a log, at most 4 KiB (the kubelet's termination message limit is 4096 bytes).
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(20).collect();
    let mut tail: String = lines.into_iter().rev().collect::<Vec<_>>().join("\n");
    if tail.len() > 4096 {
        let cut = tail.len() - 4096;
        let cut = (cut..tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(tail.len());
        tail = tail[cut..].to_owned();
    }
    tail
}
