//! [`TemplateStore`] on a Kubernetes API server: WorkflowTemplates as dynamic objects, the history as a
//! ConfigMap, both written with server-side apply (field manager `aphex`, forced).

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::store::{StoreError, StoreErrorKind, TemplateStore};

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "aphex";

/// The kube adapter. Cheap to clone; build it once per process (or Lambda cold start).
#[derive(Clone)]
pub struct KubeTemplateStore {
    client: kube::Client,
    resource: ApiResource,
}

impl std::fmt::Debug for KubeTemplateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTemplateStore").finish_non_exhaustive()
    }
}

impl KubeTemplateStore {
    pub fn new(client: kube::Client) -> Self {
        let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "WorkflowTemplate");
        Self { client, resource: ApiResource::from_gvk_with_plural(&gvk, "workflowtemplates") }
    }

    fn templates(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &self.resource)
    }

    fn config_maps(&self, namespace: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), namespace)
    }
}

fn store_error(operation: &'static str, object: String, err: kube::Error) -> StoreError {
    let (kind, message) = match &err {
        kube::Error::Api(status) => {
            let kind = match status.code {
                400 | 404 | 422 => StoreErrorKind::Invalid,
                401 | 403 => StoreErrorKind::Forbidden,
                409 => StoreErrorKind::Conflict,
                429 | 500..=599 => StoreErrorKind::Unavailable,
                _ => StoreErrorKind::Other,
            };
            (kind, format!("HTTP {}: {} {}", status.code, status.reason, status.message))
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            (StoreErrorKind::Unavailable, err.to_string())
        }
        _ => (StoreErrorKind::Other, err.to_string()),
    };
    StoreError { kind, operation, object, message }
}

fn params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

#[async_trait]
impl TemplateStore for KubeTemplateStore {
    async fn get_template(&self, namespace: &str, name: &str) -> Result<Option<Value>, StoreError> {
        let object = format!("WorkflowTemplate {namespace}/{name}");
        let found = self
            .templates(namespace)
            .get_opt(name)
            .await
            .map_err(|e| store_error("get", object.clone(), e))?;
        found.map(serde_json::to_value).transpose().map_err(|e| StoreError {
            kind: StoreErrorKind::Other,
            operation: "get",
            object,
            message: e.to_string(),
        })
    }

    async fn apply_template(&self, namespace: &str, name: &str, document: &Value) -> Result<(), StoreError> {
        let object = format!("WorkflowTemplate {namespace}/{name}");
        self.templates(namespace)
            .patch(name, &params(), &Patch::Apply(document))
            .await
            .map_err(|e| store_error("apply", object, e))?;
        Ok(())
    }

    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StoreError> {
        let found = self
            .config_maps(namespace)
            .get_opt(name)
            .await
            .map_err(|e| store_error("get", format!("ConfigMap {namespace}/{name}"), e))?;
        Ok(found.map(|cm| cm.data.unwrap_or_default()))
    }

    async fn apply_config_map(
        &self,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let document = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": namespace, "labels": labels },
            "data": data,
        });
        self.config_maps(namespace)
            .patch(name, &params(), &Patch::Apply(&document))
            .await
            .map_err(|e| store_error("apply", format!("ConfigMap {namespace}/{name}"), e))?;
        Ok(())
    }
}
