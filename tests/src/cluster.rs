//! The real test cluster for tests: `scripts/cluster up` (idempotent: reused when it already runs), its
//! kubeconfigs per identity, the stand-in node's environment, and waits on Workflows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;

/// A running cluster (see `scripts/cluster`).
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `scripts/cluster`'s state directory.
    pub state: PathBuf,
    /// The built `argo` CLI.
    pub argo: PathBuf,
    /// The built `kubectl`.
    pub kubectl: PathBuf,
}

impl Cluster {
    /// Brings the cluster up once per test process (fast when it already runs) and returns it.
    pub fn up() -> &'static Cluster {
        static CLUSTER: OnceLock<Cluster> = OnceLock::new();
        CLUSTER.get_or_init(|| {
            let root = crate::repo_root();
            let started = Instant::now();
            let status = Command::new(root.join("scripts/cluster"))
                .arg("up")
                .current_dir(&root)
                // `cargo test` holds the target dir's lock: the binaries are already built by it.
                .env("APHEX_CLUSTER_SKIP_CARGO", "1")
                .status()
                .expect("run scripts/cluster up");
            assert!(status.success(), "scripts/cluster up failed (see target/aphex-cluster/logs/)");
            eprintln!("cluster ready in {:?}", started.elapsed());
            let state = std::env::var_os("APHEX_CLUSTER_STATE")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/aphex-cluster"));
            let env = std::fs::read_to_string(state.join("env")).expect("cluster env file");
            let var = |name: &str| {
                env.lines()
                    .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                    .map(PathBuf::from)
                    .unwrap_or_else(|| panic!("{name} missing from the cluster env file"))
            };
            Cluster { argo: var("ARGO"), kubectl: var("KUBECTL"), state }
        })
    }

    /// The kubeconfig of an identity `scripts/cluster` made: `admin` (system:masters), `webhook`
    /// (group aphex:webhook), `template-manager` (group aphex:template-manager).
    pub fn kubeconfig(&self, identity: &str) -> PathBuf {
        self.state.join(format!("{identity}.kubeconfig"))
    }

    /// A client as `identity`.
    pub async fn client(&self, identity: &str) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig(identity)).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
        kube::Client::try_from(config).expect("client")
    }

    /// Sets what the stand-in node adds to every pod's environment in `namespace` (AWS endpoint and
    /// credentials: what EKS Pod Identity and the VPC would give a real pod).
    pub async fn set_pod_environment(&self, namespace: &str, env: &BTreeMap<String, String>) {
        let client = self.client("admin").await;
        let cms: Api<ConfigMap> = Api::namespaced(client, namespace);
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": crate::pod_node::NODE_ENV_CONFIGMAP, "namespace": namespace}, "data": env});
        cms.patch(
            crate::pod_node::NODE_ENV_CONFIGMAP,
            &PatchParams::apply("aphex-tests").force(),
            &Patch::Apply(&cm),
        )
        .await
        .expect("apply the pod environment ConfigMap");
    }

    /// Where the stand-in node keeps a pod's files (`main.log`, `tmp/`).
    pub fn pod_dir(&self, namespace: &str, pod: &str) -> PathBuf {
        self.state.join("pods").join(namespace).join(pod)
    }

    /// Runs the built `argo` CLI as admin.
    pub fn argo(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.argo)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig("admin"))
            .env_remove("ARGO_SERVER")
            .output()
            .expect("run argo")
    }
}

/// `argoproj.io/v1alpha1` resources by kind.
pub fn argo_resource(kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", kind), &plural)
}

/// Waits until the Workflow's phase is one of `phases`; panics after `timeout` with its nodes.
pub async fn wait_for_phase(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    phases: &[&str],
    timeout: Duration,
) -> DynamicObject {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &argo_resource("Workflow"));
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(wf)) = api.get_opt(name).await {
            let phase = wf.data.pointer("/status/phase").and_then(|p| p.as_str()).unwrap_or("");
            if phases.contains(&phase) {
                return wf;
            }
            if Instant::now() > deadline {
                panic!("workflow {name} is {phase:?} after {timeout:?}, not {phases:?}:\n{}", describe(&wf));
            }
        } else if Instant::now() > deadline {
            panic!("workflow {name} does not exist after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A Workflow's nodes: `(display name, type, phase, message)` in start order.
pub fn nodes(wf: &DynamicObject) -> Vec<(String, String, String, String)> {
    let mut nodes: Vec<(String, String, String, String, String)> = wf
        .data
        .pointer("/status/nodes")
        .and_then(|n| n.as_object())
        .map(|m| {
            m.values()
                .map(|n| {
                    let s = |k: &str| n.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                    (s("startedAt"), s("displayName"), s("type"), s("phase"), s("message"))
                })
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes.into_iter().map(|(_, d, t, p, m)| (d, t, p, m)).collect()
}

/// Pod nodes' template names in start order (`deploy-dev`, `finalize`: display names carry retry
/// suffixes such as `deploy-dev(0)`).
pub fn pod_steps(wf: &DynamicObject) -> Vec<String> {
    let mut pods: Vec<(String, String)> = wf
        .data
        .pointer("/status/nodes")
        .and_then(|n| n.as_object())
        .map(|m| {
            m.values()
                .filter(|n| n["type"] == "Pod")
                .map(|n| {
                    let s = |k: &str| n.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                    (s("startedAt"), s("templateName"))
                })
                .collect()
        })
        .unwrap_or_default();
    pods.sort();
    pods.into_iter().map(|(_, t)| t).collect()
}

/// A readable account of a Workflow: phase, message, each node.
pub fn describe(wf: &DynamicObject) -> String {
    let phase = wf.data.pointer("/status/phase").and_then(|p| p.as_str()).unwrap_or("");
    let message = wf.data.pointer("/status/message").and_then(|p| p.as_str()).unwrap_or("");
    let mut out = format!("phase {phase} {message}\n");
    for (d, t, p, m) in nodes(wf) {
        out.push_str(&format!("  {d:<28} {t:<10} {p:<10} {m}\n"));
    }
    out
}

/// A throwaway git origin made from a directory's files (bare repository beside its work tree).
pub struct Origin {
    pub work: PathBuf,
    pub bare: PathBuf,
}

impl Origin {
    /// Copies `src` (without `node_modules`, `cdk.out`, `.aphex`) into `dir/work`, commits it on `main` and
    /// pushes to `dir/origin.git`.
    pub fn from_dir(src: &Path, dir: &Path) -> Origin {
        let work = dir.join("work");
        let bare = dir.join("origin.git");
        copy_tree(src, &work);
        git(&work, &["init", "--quiet", "--initial-branch", "main"]);
        git(&work, &["config", "user.email", "dev@example.com"]);
        git(&work, &["config", "user.name", "Dev"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "--quiet", "-m", "initial"]);
        git(dir, &["init", "--quiet", "--bare", "origin.git"]);
        git(&work, &["remote", "add", "origin", bare.to_str().expect("utf-8 path")]);
        git(&work, &["push", "--quiet", "origin", "main"]);
        Origin { work, bare }
    }

    /// Commits every change in the work tree and pushes; returns `(before, after)` commit ids.
    pub fn commit_and_push(&self, message: &str) -> (String, String) {
        let before = git(&self.work, &["rev-parse", "HEAD"]);
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "--quiet", "--allow-empty", "-m", message]);
        git(&self.work, &["push", "--quiet", "origin", "main"]);
        (before, git(&self.work, &["rev-parse", "HEAD"]))
    }

    /// The clone URL pods use.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }
}

/// Runs git in `dir`; its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if ["node_modules", "cdk.out", ".aphex", ".git"].iter().any(|n| name == *n) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&from, &to);
        } else {
            std::fs::copy(&from, &to).expect("copy");
        }
    }
}
