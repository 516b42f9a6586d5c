//! Running one pod's main container as a local process: its command (unwrapped from Argo's emissary), its
//! environment (downward API included), its service account token and a private `/tmp`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use kube::api::{Api, PostParams};

use super::{NODE_ENV_CONFIGMAP, NODE_NAME, NodeError, NodeSettings, report};

/// Where a pod finds its service account (Kubernetes documentation, "Configure Service Accounts for Pods").
pub const SA_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Runs `pod` to completion and reports it. `on_start` gets the process group id.
pub async fn run_pod<F, Fut>(
    client: &kube::Client,
    settings: &NodeSettings,
    pod: &Pod,
    on_start: F,
) -> Result<(), NodeError>
where
    F: FnOnce(i32) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_err = |reason: String| NodeError::Pod { pod: format!("{namespace}/{name}"), reason };
    let spec = pod.spec.as_ref().ok_or_else(|| pod_err("no spec".into()))?;
    let main = spec
        .containers
        .iter()
        .find(|c| c.name == "main")
        .or_else(|| spec.containers.first())
        .ok_or_else(|| pod_err("no container".into()))?;

    let dir = settings.state_dir.join(&namespace).join(&name);
    let tmp = dir.join("tmp");
    let sa_dir = dir.join("sa");
    for d in [&tmp, &sa_dir] {
        std::fs::create_dir_all(d).map_err(|source| NodeError::Io { path: d.clone(), source })?;
    }

    // The token: from the real TokenRequest API, bound to this pod, as the kubelet asks for it.
    let service_account = spec.service_account_name.clone().unwrap_or_else(|| "default".into());
    let token = request_token(client, &namespace, &service_account, &name, pod.metadata.uid.as_deref())
        .await
        .map_err(|e| pod_err(format!("TokenRequest for service account {service_account}: {e}")))?;
    write(&sa_dir.join("token"), token.as_bytes())?;
    write(&sa_dir.join("ca.crt"), &settings.ca_pem)?;
    write(&sa_dir.join("namespace"), namespace.as_bytes())?;

    let mounts_token = main.volume_mounts.iter().flatten().any(|m| m.mount_path == SA_MOUNT);
    let env = pod_environment(client, settings, pod, main).await?;

    // The executor's side (Argo's `init` and `wait` containers: ARGO_TEMPLATE is on the first, the
    // workflow's name on the second): the task result exists, not yet complete, before main runs.
    let mut executor_env = BTreeMap::new();
    for name in ["init", "wait"] {
        let container =
            spec.init_containers.iter().flatten().chain(spec.containers.iter()).find(|c| c.name == name);
        if let Some(c) = container {
            executor_env.extend(pod_environment(client, settings, pod, c).await?);
        }
    }
    let executor = report::Executor::from_env(&namespace, &executor_env, settings, &token)?;
    if let Some(executor) = &executor {
        executor.initialize().await.map_err(|e| pod_err(format!("creating the task result: {e}")))?;
    }

    let argv = main_command(main).ok_or_else(|| pod_err("the main container has no command".into()))?;
    let log_path = dir.join("main.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|source| NodeError::Io { path: log_path.clone(), source })?;
    let mut binds = vec![(tmp.clone(), PathBuf::from("/tmp"))];
    if mounts_token {
        binds.push((sa_dir.clone(), PathBuf::from(SA_MOUNT)));
    }
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--"]);
    cmd.arg(&settings.exec_helper);
    cmd.arg("exec-in-pod");
    for (src, dst) in &binds {
        cmd.arg("--bind").arg(format!("{}:{}", src.display(), dst.display()));
    }
    let workdir = main.working_dir.clone().unwrap_or_else(|| "/tmp".into());
    cmd.arg("--workdir").arg(&workdir).arg("--").args(&argv);
    cmd.env_clear().envs(&env);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|source| NodeError::Io { path: log_path.clone(), source })?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(false);

    let started_at = super::now_rfc3339();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    report::set_running(&pods, &name, pod, &started_at).await.map_err(|e| pod_err(format!("status: {e}")))?;
    let spawned = std::time::SystemTime::now();
    let mut child = cmd.spawn().map_err(|e| pod_err(format!("cannot start {:?}: {e}", argv)))?;
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    write(&dir.join("pid"), pid.to_string().as_bytes())?;
    on_start(pid).await;
    let status = child.wait().await.map_err(|source| NodeError::Io { path: log_path.clone(), source })?;
    let exit_code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt as _;
        128 + status.signal().unwrap_or(9)
    });
    let _ = std::fs::remove_file(dir.join("pid"));
    // The process's own time, in ms (container statuses only have seconds): for overhead figures.
    let epoch_ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
    };
    let timing = serde_json::json!({"startedMs": epoch_ms(spawned), "finishedMs": epoch_ms(std::time::SystemTime::now()),
        "exitCode": exit_code, "argv": argv});
    write(&dir.join("timing.json"), timing.to_string().as_bytes())?;

    // The executor's side after the main container: output parameters, then "outputs completed".
    if let Some(executor) = &executor {
        let outputs = executor.outputs(|path| map_path(path, &binds));
        executor.report(outputs).await.map_err(|e| pod_err(format!("reporting outputs: {e}")))?;
    }
    let finished_at = super::now_rfc3339();
    report::set_terminated(&pods, &name, pod, exit_code, &started_at, &finished_at, &log_path)
        .await
        .map_err(|e| pod_err(format!("status: {e}")))?;
    eprintln!("[pod-node] {namespace}/{name}: {argv:?} exited {exit_code} (log {})", log_path.display());
    Ok(())
}

/// The main container's command. Argo wraps it: `/var/run/argo/argoexec emissary [flags] -- CMD ARGS...`;
/// the emissary's job (run the command, keep its exit code) is this node's, so only what follows `--` runs.
pub fn main_command(container: &Container) -> Option<Vec<String>> {
    let mut argv: Vec<String> = container.command.clone().unwrap_or_default();
    argv.extend(container.args.clone().unwrap_or_default());
    if argv.first().is_some_and(|c| c.ends_with("/argoexec")) {
        let at = argv.iter().position(|a| a == "--")?;
        argv.drain(..=at);
    }
    (!argv.is_empty()).then_some(argv)
}

/// Maps a path inside the pod to the host path behind its bind mounts.
pub fn map_path(path: &str, binds: &[(PathBuf, PathBuf)]) -> PathBuf {
    let p = Path::new(path);
    for (src, dst) in binds {
        if let Ok(rest) = p.strip_prefix(dst) {
            return src.join(rest);
        }
    }
    p.to_path_buf()
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    std::fs::write(path, bytes).map_err(|source| NodeError::Io { path: path.to_path_buf(), source })
}

async fn request_token(
    client: &kube::Client,
    namespace: &str,
    service_account: &str,
    pod: &str,
    pod_uid: Option<&str>,
) -> Result<String, kube::Error> {
    let api: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3607,
                 "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod, "uid": pod_uid}}
    });
    let answer: serde_json::Value =
        api.create_subresource("token", service_account, &PostParams::default(), &request).await?;
    Ok(answer.pointer("/status/token").and_then(|t| t.as_str()).unwrap_or_default().to_owned())
}

/// The container's environment as a kubelet builds it: the Kubernetes service variables, the node-level
/// additions, `envFrom`, then `env` (later wins), with downward-API, ConfigMap and Secret references
/// resolved. PATH has the runner's binaries first (the image's PATH).
async fn pod_environment(
    client: &kube::Client,
    settings: &NodeSettings,
    pod: &Pod,
    container: &Container,
) -> Result<BTreeMap<String, String>, NodeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pod_err = |reason: String| NodeError::Pod {
        pod: format!("{namespace}/{}", pod.metadata.name.as_deref().unwrap_or("")),
        reason,
    };
    let mut env = BTreeMap::new();
    let host_path = std::env::var("PATH").unwrap_or_default();
    env.insert("PATH".into(), format!("{}:{host_path}", settings.runner_bin_dir.display()));
    env.insert("HOME".into(), std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
    env.insert("HOSTNAME".into(), pod.metadata.name.clone().unwrap_or_default());
    env.insert("KUBERNETES_SERVICE_HOST".into(), settings.api_host.clone());
    env.insert("KUBERNETES_SERVICE_PORT".into(), settings.api_port.to_string());
    env.insert("KUBERNETES_SERVICE_PORT_HTTPS".into(), settings.api_port.to_string());

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    if let Some(cm) = configmaps.get_opt(NODE_ENV_CONFIGMAP).await? {
        env.extend(cm.data.unwrap_or_default());
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref
            && let Some(cm) = configmaps.get_opt(&r.name).await?
        {
            env.extend(cm.data.unwrap_or_default().into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
        }
        if let Some(r) = &from.secret_ref
            && let Some(s) = secrets.get_opt(&r.name).await?
        {
            for (k, v) in s.data.unwrap_or_default() {
                env.insert(format!("{prefix}{k}"), String::from_utf8_lossy(&v.0).into_owned());
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = env_value(&configmaps, &secrets, pod, var).await.map_err(pod_err)?;
        if let Some(value) = value {
            env.insert(var.name.clone(), expand(&value, &env));
        }
    }
    Ok(env)
}

async fn env_value(
    configmaps: &Api<ConfigMap>,
    secrets: &Api<Secret>,
    pod: &Pod,
    var: &EnvVar,
) -> Result<Option<String>, String> {
    let Some(from) = &var.value_from else { return Ok(Some(var.value.clone().unwrap_or_default())) };
    if let Some(field) = &from.field_ref {
        return downward(pod, &field.field_path).map(Some);
    }
    if let Some(r) = &from.config_map_key_ref {
        let cm = configmaps.get_opt(&r.name).await.map_err(|e| e.to_string())?;
        let v = cm.and_then(|c| c.data).and_then(|d| d.get(&r.key).cloned());
        return match (v, r.optional) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(true)) => Ok(None),
            (None, _) => Err(format!("env {}: configmap {} has no key {}", var.name, r.name, r.key)),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let s = secrets.get_opt(&r.name).await.map_err(|e| e.to_string())?;
        let v = s
            .and_then(|s| s.data)
            .and_then(|d| d.get(&r.key).map(|b| String::from_utf8_lossy(&b.0).into_owned()));
        return match (v, r.optional) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(true)) => Ok(None),
            (None, _) => Err(format!("env {}: secret {} has no key {}", var.name, r.name, r.key)),
        };
    }
    Ok(None)
}

/// Downward API `fieldRef` paths (Kubernetes documentation, "Downward API").
pub fn downward(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let map_key = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?.strip_prefix("['")?.strip_suffix("']").map(str::to_owned)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => NODE_NAME.to_owned(),
        "spec.serviceAccountName" => {
            pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default()
        }
        "status.hostIP" | "status.podIP" | "status.hostIPs" | "status.podIPs" => "127.0.0.1".to_owned(),
        _ => {
            if let Some(key) = map_key("metadata.labels") {
                meta.labels.as_ref().and_then(|l| l.get(&key).cloned()).unwrap_or_default()
            } else if let Some(key) = map_key("metadata.annotations") {
                meta.annotations.as_ref().and_then(|a| a.get(&key).cloned()).unwrap_or_default()
            } else {
                return Err(format!("unsupported downward API field {path}"));
            }
        }
    })
}

/// `$(VAR)` references to earlier variables, as the kubelet expands them; `$$` escapes.
pub fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) =
            after.strip_prefix('(').and_then(|a| a.find(')').map(|end| (&a[..end], &a[end + 1..])))
        {
            match env.get(inner.0) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(inner.0);
                    out.push(')');
                }
            }
            rest = inner.1;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// SIGTERM (or SIGKILL when `kill`) to a pod's whole process group.
pub fn signal_group(pgid: i32, kill: bool) {
    if pgid <= 0 {
        return;
    }
    let signal = if kill { "-KILL" } else { "-TERM" };
    let _ = std::process::Command::new("kill").args([signal, "--", &format!("-{pgid}")]).status();
}

/// `exec-in-pod`: runs inside the pod's fresh mount namespace (`unshare --mount`): makes the bind mounts,
/// changes to the working directory and replaces itself with the container's command. No shell.
pub fn exec_in_pod(args: &[String]) -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let mut binds = Vec::new();
    let mut workdir = "/".to_owned();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--bind" => {
                binds.push(args.get(i + 1).cloned().unwrap_or_default());
                i += 2;
            }
            "--workdir" => {
                workdir = args.get(i + 1).cloned().unwrap_or_default();
                i += 2;
            }
            "--" => {
                i += 1;
                break;
            }
            other => return std::io::Error::other(format!("exec-in-pod: unknown argument {other}")),
        }
    }
    for bind in binds {
        let Some((src, dst)) = bind.split_once(':') else {
            return std::io::Error::other(format!("exec-in-pod: bad --bind {bind}"));
        };
        if let Err(e) = std::fs::create_dir_all(dst) {
            return std::io::Error::other(format!("exec-in-pod: mkdir {dst}: {e}"));
        }
        match std::process::Command::new("mount").args(["--bind", src, dst]).status() {
            Ok(s) if s.success() => {}
            Ok(s) => return std::io::Error::other(format!("exec-in-pod: mount --bind {src} {dst}: {s}")),
            Err(e) => return e,
        }
    }
    let _ = std::fs::create_dir_all(&workdir);
    let Some((program, rest)) = args[i..].split_first() else {
        return std::io::Error::other("exec-in-pod: no command");
    };
    std::process::Command::new(program).args(rest).current_dir(&workdir).exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emissary_wrapper_is_unwrapped() {
        let check = |command: &[&str], args: &[&str], expect: Option<&[&str]>| {
            let c = Container {
                command: Some(command.iter().map(|s| s.to_string()).collect()),
                args: Some(args.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            };
            let got = main_command(&c);
            assert_eq!(got, expect.map(|e| e.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
        };
        check(
            &["/var/run/argo/argoexec", "emissary", "--loglevel", "info", "--"],
            &["aphex", "step", "validate"],
            Some(&["aphex", "step", "validate"]),
        );
        check(&["aphex"], &["step", "build"], Some(&["aphex", "step", "build"]));
        check(&["/var/run/argo/argoexec", "emissary"], &[], None);
    }

    #[test]
    fn variable_references_expand_like_the_kubelet() {
        let env: BTreeMap<String, String> = [("A".to_owned(), "x".to_owned())].into();
        let check = |input: &str, expect: &str| assert_eq!(expand(input, &env), expect, "{input}");
        check("$(A)/b", "x/b");
        check("$$(A)", "$(A)");
        check("$(MISSING)", "$(MISSING)");
        check("a$b", "a$b");
        check("{{workflow.name}}", "{{workflow.name}}");
    }

    #[test]
    fn paths_map_through_the_binds() {
        let binds = vec![(PathBuf::from("/state/p/tmp"), PathBuf::from("/tmp"))];
        assert_eq!(
            map_path("/tmp/aphex/outputs.json", &binds),
            PathBuf::from("/state/p/tmp/aphex/outputs.json")
        );
        assert_eq!(map_path("/etc/x", &binds), PathBuf::from("/etc/x"));
    }
}
