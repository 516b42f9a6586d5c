//! The real adapters of the step traits: STS for [`Identity`], the renderer for the local
//! [`PipelineUpdater`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Identity, OutputSink, PipelineUpdater};
use crate::config::{Config, Environment};

/// The role a check assumes for `env`: its custom `role`, else the CDK bootstrap deploy role.
pub fn role_for(env: &Environment) -> String {
    env.role.clone().unwrap_or_else(|| {
        format!("arn:aws:iam::{0}:role/cdk-hnb659fds-deploy-role-{0}-{1}", env.account, env.region)
    })
}

/// STS: AssumeRole into the environment's role, then GetCallerIdentity with those credentials.
#[derive(Debug, Clone)]
pub struct StsIdentity {
    pub base: aws_types::SdkConfig,
}

impl StsIdentity {
    /// From the default credential chain; honours `AWS_ENDPOINT_URL`.
    pub async fn from_env() -> Self {
        Self { base: aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await }
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

/// A role session name carrying the run id (STS allows 64 characters of `[\w+=,.@-]`).
pub fn session_name(run_id: &str) -> String {
    let clean: String = run_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) { c } else { '-' })
        .collect();
    format!("aphex-{clean}").chars().take(64).collect()
}

#[async_trait]
impl Identity for StsIdentity {
    async fn account_for(&self, env: &Environment, run_id: &str) -> Result<String, String> {
        let region = aws_types::region::Region::new(env.region.clone());
        let sts_conf = aws_sdk_sts::config::Builder::from(&self.base).region(region.clone()).build();
        let sts = aws_sdk_sts::Client::from_conf(sts_conf);
        let role = role_for(env);
        let assumed = sts
            .assume_role()
            .role_arn(&role)
            .role_session_name(session_name(run_id))
            .send()
            .await
            .map_err(|e| format!("AssumeRole {role}: {}", chain(&e)))?;
        let creds =
            assumed.credentials().ok_or_else(|| format!("AssumeRole {role} returned no credentials"))?;
        let provider = aws_credential_types::Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            None,
            "aphex-assumed-role",
        );
        let conf = aws_sdk_sts::config::Builder::from(&self.base)
            .region(region)
            .credentials_provider(provider)
            .build();
        let who = aws_sdk_sts::Client::from_conf(conf)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| format!("GetCallerIdentity as {role}: {}", chain(&e)))?;
        who.account().map(str::to_owned).ok_or_else(|| "GetCallerIdentity returned no account".to_owned())
    }
}

/// The local self-update: renders the WorkflowTemplate from the config at this commit, checks it against
/// Argo's schema and writes it to a file (there is no cluster to apply it to in a local run).
#[derive(Debug, Clone)]
pub struct RenderToFile {
    pub path: PathBuf,
}

#[async_trait]
impl PipelineUpdater for RenderToFile {
    async fn update(
        &self,
        config: &Config,
        _work_dir: &Path,
        commit_sha: &str,
        _sink: Arc<dyn OutputSink>,
    ) -> Result<(String, Duration), String> {
        let clock = Instant::now();
        let plan = crate::plan::build(config);
        // A local work tree may have no commit yet; the template then says `unknown`.
        let is_sha = (7..=40).contains(&commit_sha.len())
            && commit_sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let opts = crate::argo::RenderOptions::for_config(config, is_sha.then(|| commit_sha.to_owned()));
        let template = crate::argo::render(&plan, &opts).map_err(|e| e.to_string())?;
        let json: serde_json::Value =
            serde_json::from_str(&crate::argo::to_json(&template)).map_err(|e| e.to_string())?;
        crate::argo::validate_workflow_template(&json).map_err(|violations| {
            format!(
                "the rendered WorkflowTemplate is not valid: {}",
                violations.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ")
            )
        })?;
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&self.path, crate::argo::to_yaml(&template))
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        Ok((
            format!(
                "WorkflowTemplate {} rendered and valid ({} stages, {:.0?}); written to {} (local run: no cluster to apply it to)",
                plan.pipeline,
                plan.stages.len() + 1,
                clock.elapsed(),
                self.path.display()
            ),
            Duration::ZERO,
        ))
    }
}

/// The pipeline pod's self-update: renders the WorkflowTemplate from the config at this commit, checks it
/// against Argo's schema and server-side applies it to the cluster (skipped when the live one already
/// comes from this config; the previous version goes to the history ConfigMap). The next run has the
/// new shape. Nothing is applied when any check fails.
pub struct ApplyToCluster {
    pub store: Arc<dyn crate::template::TemplateStore>,
}

impl std::fmt::Debug for ApplyToCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyToCluster").finish_non_exhaustive()
    }
}

#[async_trait]
impl PipelineUpdater for ApplyToCluster {
    async fn update(
        &self,
        config: &Config,
        _work_dir: &Path,
        commit_sha: &str,
        _sink: Arc<dyn OutputSink>,
    ) -> Result<(String, Duration), String> {
        let clock = Instant::now();
        let rendered = crate::template::render_config(config, Some(commit_sha)).map_err(|e| e.to_string())?;
        let outcome = crate::template::apply_rendered(
            self.store.as_ref(),
            &rendered,
            crate::template::ApplyOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let summary = match outcome {
            crate::template::ApplyOutcome::Unchanged { namespace, name, version, .. } => {
                format!("WorkflowTemplate {namespace}/{name} unchanged (version {version}, same config)")
            }
            crate::template::ApplyOutcome::Applied { namespace, name, version, changes, .. } => format!(
                "WorkflowTemplate {namespace}/{name} applied as version {version}: {}",
                if changes.is_empty() { "no spec changes".to_owned() } else { changes.join("; ") }
            ),
        };
        // The API server's time is infrastructure wait, like AWS's.
        Ok((summary, clock.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_valid_for_sts() {
        assert_eq!(session_name("aphex-pipeline-x7k2p"), "aphex-aphex-pipeline-x7k2p");
        assert_eq!(session_name("local 2026/11"), "aphex-local-2026-11");
        assert_eq!(session_name(&"a".repeat(100)).len(), 64);
    }

    #[tokio::test]
    async fn the_pipeline_step_applies_its_next_template_once_per_config() {
        let store = Arc::new(crate::template::MemoryTemplateStore::new());
        let updater = ApplyToCluster { store: store.clone() };
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/multi-env/aphex-config.yaml"
        ))
        .unwrap();
        let config = crate::config::parse("aphex-config.yaml", &text).unwrap();
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let sink: Arc<dyn OutputSink> = Arc::new(super::super::StderrSink);
        let (first, _) = updater.update(&config, Path::new("."), sha, sink.clone()).await.unwrap();
        assert!(first.contains("applied as version 1"), "{first}");
        let (again, _) = updater.update(&config, Path::new("."), sha, sink.clone()).await.unwrap();
        assert!(again.contains("unchanged (version 1"), "{again}");
        assert_eq!(store.template_applies(), 1, "the same config is applied once");

        // A new environment changes the shape of the next run.
        let mut grown = config.clone();
        let mut extra = grown.environments[0].clone();
        extra.name = "qa".into();
        extra.approval = crate::config::Approval::None;
        grown.environments.insert(1, extra);
        let (changed, _) = updater.update(&grown, Path::new("."), sha, sink).await.unwrap();
        assert!(changed.contains("applied as version 2"), "{changed}");
        let live = store.template(&config.pipeline.namespace, &config.pipeline.name).unwrap();
        assert!(live.to_string().contains("deploy-qa"), "the applied template deploys the new environment");
    }
}
