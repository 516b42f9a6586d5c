//! Which pushes start a run, from one source of truth: `pipeline.branches`, `pipeline.tags` and
//! `pipeline.concurrency` of `aphex-config.yaml`, which the pipeline stage applies as annotations of the
//! WorkflowTemplate (`aphex.dev/branches`, `aphex.dev/tags`, `aphex.dev/concurrency`, JSON). The webhook
//! reads them from the live template (cached for [`CACHE_TTL`]), so a push that changes `branches`
//! changes what starts the next run. `APHEX_BRANCHES`, `APHEX_TAGS` and `APHEX_CONCURRENCY` override
//! them, setting by setting; without either, the config's defaults hold (`main`, no tags, `queue`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use thiserror::Error;

use super::config::Concurrency;
use crate::argo::keys;
use crate::cluster::ClusterAccess;
use crate::template::{KubeTemplateStore, StoreError, TemplateStore};

/// How long the webhook keeps the live template's settings before reading them again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// Trigger settings, each set or not (then the next source decides).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TriggerSettings {
    pub branches: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub concurrency: Option<Concurrency>,
}

/// The settings that decide a delivery, and where each came from (named in ignore reasons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Triggers {
    pub branches: Vec<String>,
    pub branches_from: &'static str,
    pub tags: Vec<String>,
    pub tags_from: &'static str,
    pub concurrency: Concurrency,
}

impl TriggerSettings {
    /// `self` (the `APHEX_*` overrides) over `live` (the template) over the config's defaults.
    pub fn resolve(&self, live: &TriggerSettings) -> Triggers {
        let pick =
            |over: &Option<Vec<String>>, live: &Option<Vec<String>>, var, field, default: &[&str]| match (
                over, live,
            ) {
                (Some(v), _) => (v.clone(), var),
                (None, Some(v)) => (v.clone(), field),
                (None, None) => (default.iter().map(|s| (*s).to_owned()).collect(), field),
            };
        let (branches, branches_from) =
            pick(&self.branches, &live.branches, "APHEX_BRANCHES", "pipeline.branches", &["main"]);
        let (tags, tags_from) = pick(&self.tags, &live.tags, "APHEX_TAGS", "pipeline.tags", &[]);
        Triggers {
            branches,
            branches_from,
            tags,
            tags_from,
            concurrency: self.concurrency.or(live.concurrency).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Error)]
pub enum TriggerError {
    #[error("could not read the WorkflowTemplate's trigger settings: {0}")]
    Store(#[from] StoreError),
    #[error("could not reach the cluster to read the WorkflowTemplate `{namespace}/{name}`: {message}")]
    Cluster { namespace: String, name: String, message: String },
    #[error(
        "annotation `{key}` of WorkflowTemplate `{namespace}/{name}` is `{value}`: expected {expected}; re-apply the template (`aphex template apply`)"
    )]
    Annotation { namespace: String, name: String, key: &'static str, value: String, expected: &'static str },
}

/// Reads the trigger annotations of a WorkflowTemplate document. An annotation that is absent (a
/// template rendered before they existed) leaves its setting unset.
pub fn from_template(namespace: &str, name: &str, document: &Value) -> Result<TriggerSettings, TriggerError> {
    let annotation = |key: &str| document.pointer("/metadata/annotations").and_then(|a| a.get(key)?.as_str());
    let bad = |key: &'static str, value: &str, expected: &'static str| TriggerError::Annotation {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        key,
        value: value.to_owned(),
        expected,
    };
    let globs = |key: &'static str| -> Result<Option<Vec<String>>, TriggerError> {
        annotation(key)
            .map(|v| serde_json::from_str(v).map_err(|_| bad(key, v, "a JSON array of glob strings")))
            .transpose()
    };
    let concurrency = annotation(keys::TRIGGER_CONCURRENCY)
        .map(|v| match serde_json::from_str::<String>(v).as_deref() {
            Ok("queue") => Ok(Concurrency::Queue),
            Ok("supersede") => Ok(Concurrency::Supersede),
            _ => Err(bad(keys::TRIGGER_CONCURRENCY, v, r#""queue" or "supersede" (JSON)"#)),
        })
        .transpose()?;
    Ok(TriggerSettings {
        branches: globs(keys::TRIGGER_BRANCHES)?,
        tags: globs(keys::TRIGGER_TAGS)?,
        concurrency,
    })
}

/// Where the live settings come from.
#[async_trait]
pub trait TriggerSource: Send + Sync {
    /// The settings on the live WorkflowTemplate `namespace/name`; all unset when it does not exist.
    async fn live(&self, namespace: &str, name: &str) -> Result<TriggerSettings, TriggerError>;
}

/// No live template (tests, or a webhook configured by its `APHEX_*` variables alone).
#[derive(Debug, Default, Clone)]
pub struct NoLiveTriggers;

#[async_trait]
impl TriggerSource for NoLiveTriggers {
    async fn live(&self, _namespace: &str, _name: &str) -> Result<TriggerSettings, TriggerError> {
        Ok(TriggerSettings::default())
    }
}

enum Stores {
    Fixed(Arc<dyn TemplateStore>),
    /// A store made from the cluster access on each refresh, so a renewed EKS token is used.
    Access(Box<ClusterAccess>),
}

/// Reads the settings from the live WorkflowTemplate through a [`TemplateStore`] (the Kubernetes
/// adapter in the Lambda, the in-memory one in tests), caching each template's settings for `ttl`.
pub struct TemplateTriggers {
    stores: Stores,
    ttl: Duration,
    cache: Mutex<HashMap<(String, String), (Instant, TriggerSettings)>>,
}

impl TemplateTriggers {
    /// Reads through `store`.
    pub fn new(store: Arc<dyn TemplateStore>, ttl: Duration) -> Self {
        Self { stores: Stores::Fixed(store), ttl, cache: Mutex::default() }
    }

    /// Reads through the cluster access (KUBECONFIG or EKS), as the webhook's submitter does.
    pub fn from_access(access: ClusterAccess, ttl: Duration) -> Self {
        Self { stores: Stores::Access(Box::new(access)), ttl, cache: Mutex::default() }
    }

    fn cached(&self, key: &(String, String)) -> Option<TriggerSettings> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, s)| s.clone())
    }
}

#[async_trait]
impl TriggerSource for TemplateTriggers {
    async fn live(&self, namespace: &str, name: &str) -> Result<TriggerSettings, TriggerError> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(settings) = self.cached(&key) {
            return Ok(settings);
        }
        let document = match &self.stores {
            Stores::Fixed(store) => store.get_template(namespace, name).await?,
            Stores::Access(access) => {
                let client = access.client().await.map_err(|e| TriggerError::Cluster {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    message: e.to_string(),
                })?;
                KubeTemplateStore::new(client).get_template(namespace, name).await?
            }
        };
        let settings = match &document {
            Some(doc) => from_template(namespace, name, doc)?,
            None => {
                tracing::warn!(%namespace, %name, "no WorkflowTemplate: trigger settings from APHEX_* and defaults");
                TriggerSettings::default()
            }
        };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (Instant::now(), settings.clone()));
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::MemoryTemplateStore;
    use serde_json::json;

    fn template(annotations: Value) -> Value {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
               "metadata": {"name": "p", "namespace": "argo", "annotations": annotations}})
    }

    #[test]
    fn annotations_to_settings() {
        fn check(annotations: Value, expect: Result<TriggerSettings, &str>) {
            let got = from_template("argo", "p", &template(annotations)).map_err(|e| e.to_string());
            match (&got, &expect) {
                (Err(g), Err(w)) => assert!(g.contains(w), "{g}"),
                _ => assert_eq!(got, expect.map_err(str::to_owned)),
            }
        }
        let all = |b: &[&str], t: &[&str], c| TriggerSettings {
            branches: Some(b.iter().map(|s| (*s).to_owned()).collect()),
            tags: Some(t.iter().map(|s| (*s).to_owned()).collect()),
            concurrency: Some(c),
        };
        check(
            json!({"aphex.dev/branches": r#"["main","release/*"]"#, "aphex.dev/tags": "[]", "aphex.dev/concurrency": r#""supersede""#}),
            Ok(all(&["main", "release/*"], &[], Concurrency::Supersede)),
        );
        check(json!({}), Ok(TriggerSettings::default()));
        check(
            json!({"aphex.dev/branches": "main"}),
            Err(
                "annotation `aphex.dev/branches` of WorkflowTemplate `argo/p` is `main`: expected a JSON array",
            ),
        );
        check(json!({"aphex.dev/concurrency": "\"parallel\""}), Err(r#"expected "queue" or "supersede""#));
    }

    #[test]
    fn overrides_beat_the_template_which_beats_the_defaults() {
        let live = TriggerSettings {
            branches: Some(vec!["develop".into()]),
            tags: Some(vec!["v*".into()]),
            concurrency: Some(Concurrency::Supersede),
        };
        let none = TriggerSettings::default();
        let t = none.resolve(&live);
        assert_eq!(
            (t.branches.as_slice(), t.branches_from),
            (&["develop".to_owned()][..], "pipeline.branches")
        );
        assert_eq!((t.tags.as_slice(), t.concurrency), (&["v*".to_owned()][..], Concurrency::Supersede));
        let d = none.resolve(&none);
        assert_eq!(
            (d.branches, d.tags, d.concurrency),
            (vec!["main".to_owned()], vec![], Concurrency::Queue)
        );
        let over = TriggerSettings {
            branches: Some(vec!["ops".into()]),
            tags: None,
            concurrency: Some(Concurrency::Queue),
        };
        let o = over.resolve(&live);
        assert_eq!(
            (o.branches, o.branches_from, o.tags_from),
            (vec!["ops".to_owned()], "APHEX_BRANCHES", "pipeline.tags")
        );
        assert_eq!(o.concurrency, Concurrency::Queue);
    }

    #[tokio::test]
    async fn the_live_template_is_read_once_per_ttl() {
        let store = Arc::new(MemoryTemplateStore::new());
        let doc = |b: &str| template(json!({"aphex.dev/branches": b}));
        store.apply_template("argo", "p", &doc(r#"["main"]"#)).await.unwrap();
        let cached = TemplateTriggers::new(store.clone(), Duration::from_secs(3600));
        let fresh = TemplateTriggers::new(store.clone(), Duration::ZERO);
        assert_eq!(cached.live("argo", "p").await.unwrap().branches, Some(vec!["main".to_owned()]));
        store.apply_template("argo", "p", &doc(r#"["develop"]"#)).await.unwrap();
        assert_eq!(cached.live("argo", "p").await.unwrap().branches, Some(vec!["main".to_owned()]));
        assert_eq!(fresh.live("argo", "p").await.unwrap().branches, Some(vec!["develop".to_owned()]));
        assert_eq!(fresh.live("argo", "missing").await.unwrap(), TriggerSettings::default());
    }
}

/// What `aphex run --local` says when the work tree is on a ref the config's triggers would not run:
/// `None` when the branch matches `pipeline.branches` or a tag at HEAD matches `pipeline.tags` (or the
/// tree is not in git), else a warning naming the ref, the globs and the setting. A local run goes on
/// (it is how a branch is tried before it is pushed); the warning says a push would start nothing.
pub fn local_run_warning(
    settings: &crate::config::PipelineSettings,
    branch: Option<&str>,
    tags_at_head: &[String],
) -> Option<String> {
    let filter = super::filter::RefFilter::from_sources(
        &settings.branches,
        "pipeline.branches",
        &settings.tags,
        "pipeline.tags",
    )
    .ok()?;
    let decide = |git_ref: String| filter.decide_ref(&git_ref);
    if tags_at_head.iter().any(|t| decide(format!("refs/tags/{t}")).is_ok()) {
        return None;
    }
    match branch {
        None => None,
        Some("HEAD") if tags_at_head.is_empty() => Some(format!(
            "HEAD is detached and no tag at it matches pipeline.tags ({}): a push of it would start no run",
            settings.tags.join(",")
        )),
        Some("HEAD") => Some(format!(
            "no tag at HEAD ({}) matches pipeline.tags ({}): a push of it would start no run",
            tags_at_head.join(","),
            settings.tags.join(",")
        )),
        Some(b) => decide(format!("refs/heads/{b}"))
            .err()
            .map(|reason| format!("{reason}: a push to it would start no run (this local run goes on)")),
    }
}

#[cfg(test)]
mod local_tests {
    use super::*;
    use crate::config::PipelineSettings;

    #[test]
    fn local_runs_warn_on_refs_the_config_would_not_run() {
        fn check(
            branches: &[&str],
            tags: &[&str],
            branch: Option<&str>,
            at_head: &[&str],
            expect: Option<&str>,
        ) {
            let settings = PipelineSettings {
                branches: branches.iter().map(|s| (*s).to_owned()).collect(),
                tags: tags.iter().map(|s| (*s).to_owned()).collect(),
                ..PipelineSettings::default()
            };
            let at_head: Vec<String> = at_head.iter().map(|s| (*s).to_owned()).collect();
            let got = local_run_warning(&settings, branch, &at_head);
            match (got.as_deref(), expect) {
                (Some(g), Some(w)) => assert!(g.contains(w), "{g}"),
                (g, w) => assert_eq!(g, w, "{branch:?} {at_head:?}"),
            }
        }
        check(&["main"], &[], Some("main"), &[], None);
        check(&["main", "release/*"], &[], Some("release/1.2"), &[], None);
        check(
            &["main"],
            &[],
            Some("feature/x"),
            &[],
            Some(
                "branch `feature/x` does not match pipeline.branches (main): a push to it would start no run",
            ),
        );
        check(&["main"], &["v*"], Some("HEAD"), &["v1.0.0"], None);
        check(&["main"], &["v*"], Some("feature"), &["v1.0.0"], None);
        check(
            &["main"],
            &["v*"],
            Some("HEAD"),
            &[],
            Some("HEAD is detached and no tag at it matches pipeline.tags (v*)"),
        );
        check(
            &["main"],
            &[],
            Some("HEAD"),
            &["nightly"],
            Some("no tag at HEAD (nightly) matches pipeline.tags ()"),
        );
        check(&["main"], &[], None, &[], None);
    }
}
