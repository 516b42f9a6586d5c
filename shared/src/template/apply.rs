//! Applying a rendered template (skip when unchanged, history of previous versions, rollback).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Rendered, TemplateError, TemplateStore, diff, render_text};
use crate::argo::{self, keys};

/// How many previous versions the history ConfigMap keeps.
pub const HISTORY_LIMIT: usize = 10;
/// Bytes of history data kept below the API server's 1 MiB object limit (room for metadata).
const HISTORY_MAX_BYTES: usize = 900 * 1024;

/// Name of the ConfigMap holding the previous versions of a pipeline's template.
pub fn history_configmap_name(pipeline: &str) -> String {
    format!("{pipeline}-history")
}

fn history_key(version: u64) -> String {
    format!("v{version:08}")
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Apply even when the live template was rendered from the same config by the same aphex.
    pub force: bool,
    /// Compute the outcome without changing the cluster.
    pub dry_run: bool,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum ApplyOutcome {
    /// The live template already comes from this config (same hash, same aphex): nothing was written.
    #[serde(rename_all = "camelCase")]
    Unchanged { namespace: String, name: String, version: u64, config_sha256: String },
    /// A new version was applied (or would be, with `dry_run`).
    #[serde(rename_all = "camelCase")]
    Applied {
        namespace: String,
        name: String,
        version: u64,
        previous_version: Option<u64>,
        config_sha256: String,
        /// Readable summary: templates added, removed, changed; spec fields changed.
        changes: Vec<String>,
        dry_run: bool,
    },
}

/// What [`rollback`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    pub namespace: String,
    pub name: String,
    /// The new live version (a copy of `restored`).
    pub version: u64,
    pub restored: u64,
    pub previous_version: u64,
}

/// One version of the template, as kept in the history ConfigMap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aphex_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// The template without server-set fields.
    pub template: Value,
}

/// The live version and the kept previous ones (newest first).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub live: Option<HistoryEntry>,
    pub previous: Vec<HistoryEntry>,
}

fn annotation<'a>(doc: &'a Value, key: &str) -> Option<&'a str> {
    doc.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str)
}

fn set_annotation(doc: &mut Value, key: &str, value: String) {
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(key.to_owned(), Value::String(value));
        }
    }
}

fn remove_annotation(doc: &mut Value, key: &str) {
    if let Some(a) = doc.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        a.remove(key);
    }
}

fn version_of(doc: &Value) -> u64 {
    annotation(doc, keys::TEMPLATE_VERSION).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The object without what the API server adds (uid, resourceVersion, managedFields, status, ...).
fn clean(doc: &Value) -> Value {
    let mut out = Map::new();
    for key in ["apiVersion", "kind"] {
        if let Some(v) = doc.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    let mut meta = Map::new();
    for key in ["name", "namespace", "labels", "annotations"] {
        if let Some(v) = doc.get("metadata").and_then(|m| m.get(key)) {
            meta.insert(key.into(), v.clone());
        }
    }
    if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    out.insert("metadata".into(), Value::Object(meta));
    if let Some(spec) = doc.get("spec") {
        out.insert("spec".into(), spec.clone());
    }
    Value::Object(out)
}

fn entry_of(doc: &Value) -> HistoryEntry {
    let template = clean(doc);
    HistoryEntry {
        version: version_of(&template),
        config_sha256: annotation(&template, keys::CONFIG_SHA256).map(str::to_owned),
        commit: annotation(&template, keys::GENERATED_FROM_COMMIT).map(str::to_owned),
        aphex_version: annotation(&template, keys::APHEX_VERSION).map(str::to_owned),
        rollback_of: annotation(&template, keys::ROLLBACK_OF).and_then(|v| v.parse().ok()),
        template,
    }
}

/// Readable summary of what differs between the live template and the new one.
fn summarize(live: Option<&Value>, new: &Value) -> Vec<String> {
    let Some(live) = live else {
        return vec!["created the WorkflowTemplate".into()];
    };
    let templates = |doc: &Value| -> Vec<(String, Value)> {
        doc.pointer("/spec/templates")
            .and_then(Value::as_array)
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        (t.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(), t.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (old_t, new_t) = (templates(live), templates(new));
    let mut changes = Vec::new();
    for (name, t) in &new_t {
        match old_t.iter().find(|(n, _)| n == name) {
            None => changes.push(format!("added template {name}")),
            Some((_, old)) if old != t => changes.push(format!("changed template {name}")),
            Some(_) => {}
        }
    }
    for (name, _) in &old_t {
        if !new_t.iter().any(|(n, _)| n == name) {
            changes.push(format!("removed template {name}"));
        }
    }
    let spec_fields = |doc: &Value| doc.get("spec").and_then(Value::as_object).cloned().unwrap_or_default();
    let (old_s, new_s) = (spec_fields(live), spec_fields(new));
    let mut keys: Vec<&String> = old_s.keys().chain(new_s.keys()).filter(|k| *k != "templates").collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if old_s.get(k) != new_s.get(k) {
            changes.push(format!("changed spec.{k}"));
        }
    }
    if changes.is_empty() {
        changes.push("metadata only (labels or annotations)".into());
    }
    changes
}

async fn load_history<S: TemplateStore + ?Sized>(
    store: &S,
    namespace: &str,
    name: &str,
) -> Result<Vec<HistoryEntry>, TemplateError> {
    let data = store.get_config_map(namespace, &history_configmap_name(name)).await?.unwrap_or_default();
    let mut entries: Vec<HistoryEntry> = data
        .iter()
        .filter_map(|(key, text)| match serde_json::from_str::<HistoryEntry>(text) {
            Ok(e) => Some(e),
            Err(err) => {
                tracing::warn!(configmap = %history_configmap_name(name), %key, %err, "dropping unreadable history entry");
                None
            }
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.version));
    Ok(entries)
}

/// Adds `entry` to the history, keeping the newest [`HISTORY_LIMIT`] within the size budget.
async fn push_history<S: TemplateStore + ?Sized>(
    store: &S,
    namespace: &str,
    name: &str,
    mut entries: Vec<HistoryEntry>,
    entry: HistoryEntry,
) -> Result<(), TemplateError> {
    entries.retain(|e| e.version != entry.version);
    entries.push(entry);
    entries.sort_by_key(|e| std::cmp::Reverse(e.version));
    let mut data = BTreeMap::new();
    let mut bytes = 0;
    for e in entries.iter().take(HISTORY_LIMIT) {
        let text = serde_json::to_string(e).unwrap_or_default();
        if bytes + text.len() > HISTORY_MAX_BYTES {
            tracing::warn!(version = e.version, "history ConfigMap is full; older versions are not kept");
            break;
        }
        bytes += text.len();
        data.insert(history_key(e.version), text);
    }
    let labels = BTreeMap::from([
        (keys::PIPELINE.to_owned(), name.to_owned()),
        (keys::MANAGED_BY.to_owned(), "aphex".to_owned()),
    ]);
    store.apply_config_map(namespace, &history_configmap_name(name), &labels, &data).await?;
    Ok(())
}

/// Validates the config text, renders, checks the template against Argo's schema, then applies it
/// (see [`apply_rendered`]). Any error before the apply leaves the cluster untouched.
pub async fn apply<S: TemplateStore + ?Sized>(
    store: &S,
    file: &str,
    text: &str,
    commit: Option<&str>,
    opts: ApplyOptions,
) -> Result<ApplyOutcome, TemplateError> {
    let rendered = render_text(file, text, commit)?;
    apply_rendered(store, &rendered, opts).await
}

/// Applies a checked template: skips when the live one has the same config hash and aphex version;
/// otherwise saves the live one in the history ConfigMap and server-side applies the new one as the next
/// version.
pub async fn apply_rendered<S: TemplateStore + ?Sized>(
    store: &S,
    rendered: &Rendered,
    opts: ApplyOptions,
) -> Result<ApplyOutcome, TemplateError> {
    let (namespace, name) = (rendered.plan.namespace.clone(), rendered.plan.pipeline.clone());
    let live = store.get_template(&namespace, &name).await?;
    if let Some(live) = &live
        && !opts.force
        && annotation(live, keys::CONFIG_SHA256) == Some(rendered.config_sha256.as_str())
        && annotation(live, keys::APHEX_VERSION) == Some(env!("CARGO_PKG_VERSION"))
    {
        return Ok(ApplyOutcome::Unchanged {
            namespace,
            name,
            version: version_of(live),
            config_sha256: rendered.config_sha256.clone(),
        });
    }
    let history = if live.is_some() { load_history(store, &namespace, &name).await? } else { Vec::new() };
    let previous_version = live.as_ref().map(version_of);
    let version = 1 + previous_version.unwrap_or(0).max(history.first().map_or(0, |e| e.version));
    let mut document = rendered.document.clone();
    set_annotation(&mut document, keys::TEMPLATE_VERSION, version.to_string());
    let changes = summarize(live.as_ref().map(clean).as_ref(), &document);
    if !opts.dry_run {
        if let Some(live) = &live {
            push_history(store, &namespace, &name, history, entry_of(live)).await?;
        }
        store.apply_template(&namespace, &name, &document).await?;
        tracing::info!(%namespace, %name, version, ?changes, "applied WorkflowTemplate");
    }
    Ok(ApplyOutcome::Applied {
        namespace,
        name,
        version,
        previous_version,
        config_sha256: rendered.config_sha256.clone(),
        changes,
        dry_run: opts.dry_run,
    })
}

/// The live version and the kept previous versions.
pub async fn history<S: TemplateStore + ?Sized>(
    store: &S,
    namespace: &str,
    name: &str,
) -> Result<History, TemplateError> {
    let live = store.get_template(namespace, name).await?;
    let previous = load_history(store, namespace, name).await?;
    Ok(History { live: live.as_ref().map(entry_of), previous })
}

/// Re-applies a previous version (`to`, default: the newest one older than the live version) as a new
/// version; the live one goes into the history. The restored template is checked against Argo's schema
/// first.
pub async fn rollback<S: TemplateStore + ?Sized>(
    store: &S,
    namespace: &str,
    name: &str,
    to: Option<u64>,
) -> Result<Rollback, TemplateError> {
    let live = store
        .get_template(namespace, name)
        .await?
        .ok_or_else(|| TemplateError::NoLiveTemplate { namespace: namespace.into(), name: name.into() })?;
    let live_version = version_of(&live);
    let entries = load_history(store, namespace, name).await?;
    let target = match to {
        Some(wanted) => {
            entries.iter().find(|e| e.version == wanted).ok_or_else(|| TemplateError::NoSuchVersion {
                name: name.into(),
                wanted,
                available: entries.iter().map(|e| e.version).collect(),
            })?
        }
        None => entries
            .iter()
            .find(|e| live_version == 0 || e.version < live_version)
            .ok_or_else(|| TemplateError::NothingToRollBack { name: name.into() })?,
    }
    .clone();
    let mut document = target.template.clone();
    if document.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
        return Err(TemplateError::BadHistoryEntry {
            name: name.into(),
            version: target.version,
            reason: "it is not a template of this pipeline".into(),
        });
    }
    argo::validate_workflow_template(&document).map_err(|violations| TemplateError::Schema { violations })?;
    let version = 1 + live_version.max(entries.first().map_or(0, |e| e.version));
    set_annotation(&mut document, keys::TEMPLATE_VERSION, version.to_string());
    set_annotation(&mut document, keys::ROLLBACK_OF, target.version.to_string());
    push_history(store, namespace, name, entries, entry_of(&live)).await?;
    store.apply_template(namespace, name, &document).await?;
    tracing::info!(%namespace, %name, version, restored = target.version, "rolled back WorkflowTemplate");
    Ok(Rollback {
        namespace: namespace.into(),
        name: name.into(),
        version,
        restored: target.version,
        previous_version: live_version,
    })
}

/// Unified diff (YAML) from the live template to the rendered one; empty when they are the same apart
/// from the version bookkeeping.
pub async fn diff_live<S: TemplateStore + ?Sized>(
    store: &S,
    rendered: &Rendered,
) -> Result<String, TemplateError> {
    let (namespace, name) = (&rendered.plan.namespace, &rendered.plan.pipeline);
    let live = store.get_template(namespace, name).await?;
    let yaml = |doc: &Value| {
        let mut doc = clean(doc);
        remove_annotation(&mut doc, keys::TEMPLATE_VERSION);
        remove_annotation(&mut doc, keys::ROLLBACK_OF);
        crate::yaml_out::to_string(&doc).unwrap_or_default()
    };
    let old = live.as_ref().map(yaml).unwrap_or_default();
    let new = yaml(&rendered.document);
    let old_name = match &live {
        Some(l) => format!("live {namespace}/{name} (version {})", version_of(l)),
        None => format!("live {namespace}/{name} (none)"),
    };
    Ok(diff::unified(&old_name, "rendered", &old, &new, 3))
}
