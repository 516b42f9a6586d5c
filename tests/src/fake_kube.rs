//! A fake Kubernetes API server for tests, on 127.0.0.1 (no real API server can be installed on these
//! machines). It keeps namespaced objects in memory and answers the calls AphexPipeline makes the way a
//! real API server does: GET 200/404, POST 201 and 409 `AlreadyExists` on an existing name (the webhook's
//! idempotency rests on it), PUT with resourceVersion conflicts, merge and JSON patches, server-side apply
//! (`application/apply-patch+yaml`, a required `fieldManager`, per-manager field sets and 409 conflicts
//! unless `force=true`), DELETE, list with `labelSelector`, and 422 `Invalid` for objects that fail
//! validation (name rules, label rules, or a validator a test registers, e.g. Argo's schema).
//! It records every request so tests can assert what was (not) sent.
//!
//! What it does not do: watches, admission webhooks, strategic merge on custom resources (415, as
//! the real server answers), garbage collection, field ownership inside lists.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// A check run on every object before it is stored; `Err` becomes a 422 `Invalid` with that message.
pub type Validator = Arc<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub status: u16,
    pub body: Option<Value>,
}

#[derive(Default)]
struct Store {
    /// (group/version path prefix, namespace, plural) -> name -> stored object.
    objects: BTreeMap<(String, String, String), BTreeMap<String, Stored>>,
    resource_version: u64,
    requests: Vec<RecordedRequest>,
    validators: BTreeMap<String, Validator>,
}

#[derive(Clone)]
struct Stored {
    object: Value,
    /// What each field manager last applied (server-side apply's notion of ownership).
    applied: BTreeMap<String, Value>,
}

type Shared = Arc<Mutex<Store>>;

/// The running server; stops when dropped.
pub struct FakeKube {
    addr: SocketAddr,
    store: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FakeKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKube").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl FakeKube {
    /// Starts the server on a free loopback port, on its own thread and runtime, so it serves sync and
    /// async tests (and other processes, through a kubeconfig) alike.
    pub fn start() -> Self {
        let store: Shared = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app_store = store.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime for the fake API server");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let app = axum::Router::new().fallback(handle).with_state(app_store);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .expect("fake API server");
            });
        });
        Self { addr, store, shutdown: Some(tx), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context points at this server, with a bearer token.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: argo\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n",
            url = self.url()
        )
    }

    /// Writes the kubeconfig into `dir` and returns its path (for `KUBECONFIG`).
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml()).expect("write kubeconfig");
        path
    }

    /// A client for this server, for tests that call shared code directly.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url().parse().expect("server URL"));
        config.default_namespace = "argo".into();
        kube::Client::try_from(config).expect("client for the fake API server")
    }

    /// Registers a validator for a resource plural (e.g. `workflowtemplates`).
    pub fn set_validator(&self, plural: &str, validator: Validator) {
        self.store.lock().unwrap().validators.insert(plural.to_owned(), validator);
    }

    /// The stored object, if any. `api_version` is `v1` or `group/version`.
    pub fn get(&self, api_version: &str, namespace: &str, plural: &str, name: &str) -> Option<Value> {
        let store = self.store.lock().unwrap();
        store
            .objects
            .get(&(api_version.to_owned(), namespace.to_owned(), plural.to_owned()))
            .and_then(|objects| objects.get(name))
            .map(|s| s.object.clone())
    }

    /// Every stored object of a kind in a namespace, by name.
    pub fn list(&self, api_version: &str, namespace: &str, plural: &str) -> Vec<Value> {
        let store = self.store.lock().unwrap();
        store
            .objects
            .get(&(api_version.to_owned(), namespace.to_owned(), plural.to_owned()))
            .map(|objects| objects.values().map(|s| s.object.clone()).collect())
            .unwrap_or_default()
    }

    /// Stores an object directly, as if someone else had created it.
    pub fn insert(&self, api_version: &str, namespace: &str, plural: &str, mut object: Value) {
        let mut store = self.store.lock().unwrap();
        let rv = store.next_resource_version();
        let name = object["metadata"]["name"].as_str().expect("object has a name").to_owned();
        stamp_new(&mut object, namespace, rv);
        store
            .objects
            .entry((api_version.to_owned(), namespace.to_owned(), plural.to_owned()))
            .or_default()
            .insert(name, Stored { object, applied: BTreeMap::new() });
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.store.lock().unwrap().requests.clone()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store {
    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }
}

/// A parsed request path.
struct Target {
    api_version: String,
    namespace: String,
    plural: String,
    name: Option<String>,
    /// For messages: `workflows.argoproj.io` or `configmaps`.
    qualified: String,
    group: String,
    core: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, group, core, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ((*version).to_owned(), String::new(), true, rest),
        ["apis", group, version, rest @ ..] => {
            (format!("{group}/{version}"), (*group).to_owned(), false, rest)
        }
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (ns, plural, None),
        ["namespaces", ns, plural, name] => (ns, plural, Some((*name).to_owned())),
        _ => return None,
    };
    let qualified = if core { (*plural).to_owned() } else { format!("{plural}.{group}") };
    Some(Target {
        api_version,
        namespace: (*namespace).to_owned(),
        plural: (*plural).to_owned(),
        name,
        qualified,
        group,
        core,
    })
}

async fn handle(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
    let mut store = store.lock().unwrap();
    let (status, response_body, recorded_body) =
        route(&mut store, &method, uri.path(), &query, content_type.as_deref(), &body);
    store.requests.push(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query,
        content_type,
        status: status.as_u16(),
        body: recorded_body,
    });
    (status, axum::Json(response_body)).into_response()
}

type Outcome = (StatusCode, Value, Option<Value>);

fn route(
    store: &mut Store,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    content_type: Option<&str>,
    body: &[u8],
) -> Outcome {
    if path == "/version" {
        return (StatusCode::OK, json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0-fake"}), None);
    }
    let Some(target) = parse_path(path) else {
        return (
            StatusCode::NOT_FOUND,
            status_body(404, "NotFound", "the server could not find the requested resource", None),
            None,
        );
    };
    let parsed: Option<Value> = if body.is_empty() {
        None
    } else if content_type == Some("application/apply-patch+yaml") {
        serde_json::from_slice(body).ok().or_else(|| serde_yaml_ng::from_slice(body).ok())
    } else {
        serde_json::from_slice(body).ok()
    };
    if !body.is_empty() && parsed.is_none() {
        let outcome = bad_request("the request body is not valid JSON or YAML");
        return (outcome.0, outcome.1, None);
    }
    let (status, response) = match (method.as_str(), target.name.clone()) {
        ("GET", None) => list(store, &target, query),
        ("POST", None) => create(store, &target, parsed.clone()),
        ("GET", Some(name)) => get(store, &target, &name),
        ("PUT", Some(name)) => replace(store, &target, &name, parsed.clone()),
        ("PATCH", Some(name)) => patch(store, &target, &name, query, content_type, parsed.clone()),
        ("DELETE", Some(name)) => delete(store, &target, &name),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            status_body(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            ),
        ),
    };
    (status, response, parsed)
}

fn status_body(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

fn bad_request(message: &str) -> (StatusCode, Value) {
    (StatusCode::BAD_REQUEST, status_body(400, "BadRequest", message, None))
}

fn not_found(target: &Target, name: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        status_body(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", target.qualified),
            Some(json!({"name": name, "group": target.group, "kind": target.plural})),
        ),
    )
}

fn invalid(target: &Target, name: &str, causes: &str) -> (StatusCode, Value) {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        status_body(
            422,
            "Invalid",
            &format!("{} \"{name}\" is invalid: {causes}", target.qualified),
            Some(json!({"name": name, "group": target.group, "kind": target.plural})),
        ),
    )
}

fn conflict(target: &Target, name: &str, message: String) -> (StatusCode, Value) {
    (
        StatusCode::CONFLICT,
        status_body(
            409,
            "Conflict",
            &message,
            Some(json!({"name": name, "group": target.group, "kind": target.plural})),
        ),
    )
}

fn key(target: &Target) -> (String, String, String) {
    (target.api_version.clone(), target.namespace.clone(), target.plural.clone())
}

fn list(store: &Store, target: &Target, query: &BTreeMap<String, String>) -> (StatusCode, Value) {
    let selector = match query.get("labelSelector").map(|s| parse_selector(s)).transpose() {
        Ok(selector) => selector.unwrap_or_default(),
        Err(message) => return bad_request(&message),
    };
    let items: Vec<Value> = store
        .objects
        .get(&key(target))
        .map(|objects| {
            objects
                .values()
                .filter(|s| selector.iter().all(|r| r.matches(&s.object)))
                .map(|s| s.object.clone())
                .collect()
        })
        .unwrap_or_default();
    let kind = items
        .first()
        .and_then(|o| o["kind"].as_str())
        .map(|k| format!("{k}List"))
        .unwrap_or_else(|| "List".into());
    (
        StatusCode::OK,
        json!({
            "apiVersion": target.api_version, "kind": kind,
            "metadata": {"resourceVersion": store.resource_version.to_string()},
            "items": items,
        }),
    )
}

fn get(store: &Store, target: &Target, name: &str) -> (StatusCode, Value) {
    match store.objects.get(&key(target)).and_then(|objects| objects.get(name)) {
        Some(stored) => (StatusCode::OK, stored.object.clone()),
        None => not_found(target, name),
    }
}

fn create(store: &mut Store, target: &Target, body: Option<Value>) -> (StatusCode, Value) {
    let Some(mut object) = body.filter(Value::is_object) else {
        return bad_request("the body of the request was not an object");
    };
    if let Err(message) = check_type(target, &object) {
        return bad_request(&message);
    }
    let name = match object["metadata"]["name"].as_str() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => match object["metadata"]["generateName"].as_str() {
            Some(prefix) => {
                let suffix: String = uuid::Uuid::new_v4().simple().to_string().chars().take(5).collect();
                let name = format!("{prefix}{suffix}");
                object["metadata"]["name"] = Value::String(name.clone());
                name
            }
            None => {
                return invalid(
                    target,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                );
            }
        },
    };
    if store.objects.get(&key(target)).is_some_and(|objects| objects.contains_key(&name)) {
        return (
            StatusCode::CONFLICT,
            status_body(
                409,
                "AlreadyExists",
                &format!("{} \"{name}\" already exists", target.qualified),
                Some(json!({"name": name, "group": target.group, "kind": target.plural})),
            ),
        );
    }
    if let Err(causes) = validate(store, target, &object) {
        return invalid(target, &name, &causes);
    }
    let rv = store.next_resource_version();
    stamp_new(&mut object, &target.namespace, rv);
    store
        .objects
        .entry(key(target))
        .or_default()
        .insert(name, Stored { object: object.clone(), applied: BTreeMap::new() });
    (StatusCode::CREATED, object)
}

fn replace(store: &mut Store, target: &Target, name: &str, body: Option<Value>) -> (StatusCode, Value) {
    let Some(mut object) = body.filter(Value::is_object) else {
        return bad_request("the body of the request was not an object");
    };
    if let Err(message) = check_type(target, &object) {
        return bad_request(&message);
    }
    let Some(current) = store.objects.get(&key(target)).and_then(|o| o.get(name)).cloned() else {
        return not_found(target, name);
    };
    let sent_rv = object["metadata"]["resourceVersion"].as_str().map(str::to_owned);
    let live_rv = current.object["metadata"]["resourceVersion"].as_str().map(str::to_owned);
    if sent_rv.is_some() && sent_rv != live_rv {
        return conflict(
            target,
            name,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                target.qualified
            ),
        );
    }
    object["metadata"]["name"] = Value::String(name.to_owned());
    store_update(store, target, name, current, object, None)
}

fn patch(
    store: &mut Store,
    target: &Target,
    name: &str,
    query: &BTreeMap<String, String>,
    content_type: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let Some(patch) = body else {
        return bad_request("the body of the request was empty");
    };
    let current = store.objects.get(&key(target)).and_then(|o| o.get(name)).cloned();
    match content_type {
        Some("application/apply-patch+yaml") => {
            let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
                return invalid(target, name, "fieldManager: Required value: is required for apply patch");
            };
            if !patch.is_object() {
                return bad_request("the apply patch was not an object");
            }
            if let Err(message) = check_type(target, &patch) {
                return bad_request(&message);
            }
            if patch["metadata"]["name"].as_str().is_some_and(|n| n != name) {
                return bad_request("the name of the object does not match the name on the URL");
            }
            let force = query.get("force").is_some_and(|f| f == "true");
            match current {
                None => {
                    let mut object = patch.clone();
                    object["metadata"]["name"] = Value::String(name.to_owned());
                    if let Err(causes) = validate(store, target, &object) {
                        return invalid(target, name, &causes);
                    }
                    let rv = store.next_resource_version();
                    stamp_new(&mut object, &target.namespace, rv);
                    set_managed_fields(&mut object, &BTreeMap::from([(manager.clone(), ())]));
                    let applied = BTreeMap::from([(manager.clone(), patch)]);
                    store
                        .objects
                        .entry(key(target))
                        .or_default()
                        .insert(name.to_owned(), Stored { object: object.clone(), applied });
                    (StatusCode::CREATED, object)
                }
                Some(current) => {
                    if !force {
                        let conflicts: Vec<String> = current
                            .applied
                            .iter()
                            .filter(|(other, _)| *other != manager)
                            .flat_map(|(other, theirs)| {
                                conflicting_leaves(theirs, &patch, "")
                                    .into_iter()
                                    .map(move |p| format!("conflict with \"{other}\": {p}"))
                            })
                            .collect();
                        if !conflicts.is_empty() {
                            return conflict(
                                target,
                                name,
                                format!(
                                    "Apply failed with {} conflict(s): {}",
                                    conflicts.len(),
                                    conflicts.join("; ")
                                ),
                            );
                        }
                    }
                    let mut object = current.object.clone();
                    if let Some(previous) = current.applied.get(manager) {
                        remove_dropped_fields(&mut object, previous, &patch);
                    }
                    merge_patch(&mut object, &patch);
                    store_update(store, target, name, current, object, Some((manager.clone(), patch)))
                }
            }
        }
        Some("application/merge-patch+json") | Some("application/strategic-merge-patch+json") => {
            if content_type == Some("application/strategic-merge-patch+json") && !target.core {
                return (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    status_body(
                        415,
                        "UnsupportedMediaType",
                        "strategic merge patch is not supported for custom resources",
                        None,
                    ),
                );
            }
            let Some(current) = current else { return not_found(target, name) };
            let mut object = current.object.clone();
            merge_patch(&mut object, &patch);
            store_update(store, target, name, current, object, None)
        }
        Some("application/json-patch+json") => {
            let Some(current) = current else { return not_found(target, name) };
            let mut object = current.object.clone();
            if let Err(message) = json_patch(&mut object, &patch) {
                return (StatusCode::UNPROCESSABLE_ENTITY, status_body(422, "Invalid", &message, None));
            }
            store_update(store, target, name, current, object, None)
        }
        other => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            status_body(
                415,
                "UnsupportedMediaType",
                &format!("the body of the request was in an unknown format ({other:?})"),
                None,
            ),
        ),
    }
}

fn delete(store: &mut Store, target: &Target, name: &str) -> (StatusCode, Value) {
    match store.objects.get_mut(&key(target)).and_then(|o| o.remove(name)) {
        Some(stored) => (StatusCode::OK, stored.object),
        None => not_found(target, name),
    }
}

fn store_update(
    store: &mut Store,
    target: &Target,
    name: &str,
    current: Stored,
    mut object: Value,
    applied_by: Option<(String, Value)>,
) -> (StatusCode, Value) {
    // Identity fields are the server's, whatever the client sent.
    for field in ["uid", "creationTimestamp", "namespace", "name"] {
        object["metadata"][field] = current.object["metadata"][field].clone();
    }
    if let Err(causes) = validate(store, target, &object) {
        return invalid(target, name, &causes);
    }
    let changed_spec = object.get("spec") != current.object.get("spec");
    let generation = current.object["metadata"]["generation"].as_u64().unwrap_or(1) + u64::from(changed_spec);
    object["metadata"]["generation"] = json!(generation);
    if object != current.object || applied_by.is_some() {
        let rv = store.next_resource_version();
        object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
    }
    let mut applied = current.applied;
    if let Some((manager, patch)) = applied_by {
        applied.insert(manager, patch);
    }
    set_managed_fields(&mut object, &applied.keys().map(|m| (m.clone(), ())).collect());
    store
        .objects
        .entry(key(target))
        .or_default()
        .insert(name.to_owned(), Stored { object: object.clone(), applied });
    (StatusCode::OK, object)
}

fn check_type(target: &Target, object: &Value) -> Result<(), String> {
    match object["apiVersion"].as_str() {
        Some(v) if v == target.api_version => Ok(()),
        Some(v) => Err(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            target.api_version
        )),
        None => Err("Object 'apiVersion' is missing".into()),
    }
    .and_then(|()| match object["kind"].as_str() {
        Some(_) => Ok(()),
        None => Err("Object 'Kind' is missing".into()),
    })
}

fn validate(store: &Store, target: &Target, object: &Value) -> Result<(), String> {
    let mut causes = Vec::new();
    if let Some(name) = object["metadata"]["name"].as_str()
        && !is_dns1123_subdomain(name)
    {
        causes.push(format!(
            "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ));
    }
    if let Some(labels) = object["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            match v.as_str() {
                Some(v) if is_label_value(v) => {}
                _ => causes.push(format!("metadata.labels: Invalid value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (key {k})")),
            }
        }
    }
    if let Some(validator) = store.validators.get(&target.plural)
        && let Err(message) = validator(object)
    {
        causes.push(message);
    }
    if causes.is_empty() { Ok(()) } else { Err(causes.join(", ")) }
}

fn is_dns1123_subdomain(name: &str) -> bool {
    let bytes = name.as_bytes();
    !name.is_empty()
        && name.len() <= 253
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.is_empty()
        || (value.len() <= 63
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric))
}

fn stamp_new(object: &mut Value, namespace: &str, resource_version: u64) {
    let metadata = object["metadata"].as_object_mut().expect("metadata object");
    metadata.insert("namespace".into(), Value::String(namespace.to_owned()));
    metadata.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    metadata.insert("resourceVersion".into(), Value::String(resource_version.to_string()));
    metadata.insert("generation".into(), json!(1));
    metadata.insert("creationTimestamp".into(), Value::String("2026-01-01T00:00:00Z".into()));
    metadata.remove("generateName");
}

fn set_managed_fields(object: &mut Value, managers: &BTreeMap<String, ()>) {
    let entries: Vec<Value> = managers
        .keys()
        .map(|m| json!({"manager": m, "operation": "Apply", "apiVersion": object["apiVersion"].clone(), "fieldsType": "FieldsV1"}))
        .collect();
    if entries.is_empty() {
        return;
    }
    object["metadata"]["managedFields"] = Value::Array(entries);
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let map = target.as_object_mut().expect("object");
            for (k, v) in fields {
                if v.is_null() {
                    map.remove(k);
                } else {
                    merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Server-side apply drops the fields a manager applied before and no longer applies.
fn remove_dropped_fields(object: &mut Value, previous: &Value, now: &Value) {
    let (Some(previous), Some(live)) = (previous.as_object(), object.as_object_mut()) else { return };
    for (k, prev) in previous {
        match now.get(k) {
            None => {
                live.remove(k);
            }
            Some(next) if prev.is_object() && next.is_object() => {
                if let Some(child) = live.get_mut(k) {
                    remove_dropped_fields(child, prev, next);
                }
            }
            Some(_) => {}
        }
    }
}

/// Leaves both managers set to different values (what makes a non-forced apply conflict).
fn conflicting_leaves(theirs: &Value, ours: &Value, at: &str) -> Vec<String> {
    match (theirs, ours) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .filter(|(k, _)| !at.is_empty() || !matches!(k.as_str(), "apiVersion" | "kind"))
            .filter_map(|(k, v)| b.get(k).map(|w| (k, v, w)))
            .flat_map(|(k, v, w)| {
                let path = if at.is_empty() { format!(".{k}") } else { format!("{at}.{k}") };
                if at.is_empty() && k == "metadata" {
                    // name/namespace identify the object; only labels and annotations can conflict.
                    let pick = |m: &Value| json!({"labels": m["labels"].clone(), "annotations": m["annotations"].clone()});
                    conflicting_leaves(&pick(v), &pick(w), &path)
                } else {
                    conflicting_leaves(v, w, &path)
                }
            })
            .collect(),
        (Value::Null, _) | (_, Value::Null) => Vec::new(),
        (a, b) if a != b => vec![at.to_owned()],
        _ => Vec::new(),
    }
}

/// RFC 6902 JSON patch: add, replace, remove, test.
fn json_patch(object: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch.as_array().ok_or("a JSON patch is an array of operations")?;
    for op in ops {
        let path = op["path"].as_str().ok_or("JSON patch operation without a path")?;
        let (parent_path, last) =
            path.rsplit_once('/').ok_or_else(|| format!("invalid JSON pointer {path}"))?;
        let last = last.replace("~1", "/").replace("~0", "~");
        match op["op"].as_str() {
            Some("test") => {
                if object.pointer(path) != Some(&op["value"]) {
                    return Err(format!("the test of {path} failed"));
                }
            }
            Some(kind @ ("add" | "replace" | "remove")) => {
                let parent =
                    object.pointer_mut(parent_path).ok_or_else(|| format!("missing parent of {path}"))?;
                match parent {
                    Value::Object(map) => {
                        if kind != "add" && !map.contains_key(&last) {
                            return Err(format!("{kind} of missing path {path}"));
                        }
                        if kind == "remove" {
                            map.remove(&last);
                        } else {
                            map.insert(last, op["value"].clone());
                        }
                    }
                    Value::Array(items) => {
                        let index = if last == "-" {
                            items.len()
                        } else {
                            last.parse().map_err(|_| format!("bad index in {path}"))?
                        };
                        match kind {
                            "add" if index <= items.len() => items.insert(index, op["value"].clone()),
                            "replace" if index < items.len() => items[index] = op["value"].clone(),
                            "remove" if index < items.len() => {
                                items.remove(index);
                            }
                            _ => return Err(format!("index out of range in {path}")),
                        }
                    }
                    _ => return Err(format!("parent of {path} is not a container")),
                }
            }
            other => return Err(format!("unsupported JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

/// One `labelSelector` requirement.
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

impl Requirement {
    fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        match self {
            Requirement::Equals(k, v) => labels[k].as_str() == Some(v),
            Requirement::NotEquals(k, v) => labels[k].as_str() != Some(v),
            Requirement::Exists(k) => labels.get(k).is_some(),
            Requirement::NotExists(k) => labels.get(k).is_none(),
        }
    }
}

fn parse_selector(selector: &str) -> Result<Vec<Requirement>, String> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Ok(Requirement::Equals(k.trim().into(), v.trim().into()))
            } else if let Some(k) = term.strip_prefix('!') {
                Ok(Requirement::NotExists(k.trim().into()))
            } else if term.contains(' ') {
                Err(format!(
                    "unable to parse requirement: {term} (set-based selectors are not supported by the fake)"
                ))
            } else {
                Ok(Requirement::Exists(term.into()))
            }
        })
        .collect()
}
