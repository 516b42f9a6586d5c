//! The real adapters of the step traits: STS for [`Identity`], the renderers of the WorkflowTemplate
//! (to a file locally, applied to the cluster in a pod) as [`PipelineUpdater`]s, and the pipeline's own
//! stack deployed ahead of either.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{DeployRequest, EnvironmentDeployer, Identity, OutputSink, PipelineUpdater, Status};
use crate::config::{Config, Environment, StackRef};

/// The role a check assumes for `env`: its custom `role`, else the CDK bootstrap deploy role of its
/// account and region under the app's bootstrap `qualifier` ([`crate::bootstrap::resolve_in`]).
pub fn role_for(env: &Environment, qualifier: &crate::bootstrap::Qualifier) -> String {
    env.role.clone().unwrap_or_else(|| qualifier.deploy_role(&env.account, &env.region))
}

/// The pipeline's own stack (`pipeline.stack`) as the deploy engine sees it: an environment of one stack,
/// in the pipeline's own account and region, deployed from the app folder `own.app`.
pub fn pipeline_stack_environment(own: &crate::config::PipelineStack) -> Environment {
    Environment {
        name: PIPELINE_ENV.into(),
        region: own.region.clone(),
        account: own.account.clone(),
        role: None,
        approval: crate::config::Approval::None,
        stacks: vec![StackRef {
            name: own.name.clone(),
            path: None,
            depends_on: Vec::new(),
            parameters: Default::default(),
        }],
        tests: None,
        env: Default::default(),
        deploy_timeout_minutes: crate::config::defaults::deploy_timeout(),
    }
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
    async fn account_for(&self, env: &Environment, role: &str, run_id: &str) -> Result<String, String> {
        let region = aws_types::region::Region::new(env.region.clone());
        let sts_conf = aws_sdk_sts::config::Builder::from(&self.base).region(region.clone()).build();
        let sts = aws_sdk_sts::Client::from_conf(sts_conf);
        let assumed = sts
            .assume_role()
            .role_arn(role)
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
        // A local work tree may have no commit yet; the template then says `unknown`.
        let is_sha = (7..=40).contains(&commit_sha.len())
            && commit_sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let rendered = crate::template::render_config(config, is_sha.then_some(commit_sha))
            .map_err(|e| e.to_string())?;
        let (template, plan) = (&rendered.template, &rendered.plan);
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&self.path, crate::argo::to_yaml(template))
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

/// The self-update with the pipeline's own stack first: when the config names it (`pipeline.stack`),
/// its CDK app is synthesized and the stack deployed through the deploy engine, which leaves it alone
/// when its template, parameters and tags are the deployed ones; then `inner` updates the
/// WorkflowTemplate. A failed stack deploy stops the self-update before the template changes.
pub struct OwnStackFirst {
    pub deployer: Arc<dyn EnvironmentDeployer>,
    pub inner: Arc<dyn PipelineUpdater>,
    pub run_id: String,
}

impl std::fmt::Debug for OwnStackFirst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnStackFirst").field("run_id", &self.run_id).finish_non_exhaustive()
    }
}

/// Name of the pseudo-environment the pipeline's own stack deploys as (in messages and synth).
pub const PIPELINE_ENV: &str = "pipeline";

impl OwnStackFirst {
    async fn deploy_own_stack(
        &self,
        config: &Config,
        work_dir: &Path,
        sink: Arc<dyn OutputSink>,
    ) -> Result<Option<(String, Duration)>, String> {
        let Some(own) = &config.pipeline.stack else { return Ok(None) };
        let app = Path::new(&own.app);
        if app.is_absolute() || app.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(format!(
                "pipeline.stack.app {:?} must be a folder inside the repository (relative, without ..)",
                own.app
            ));
        }
        let env = pipeline_stack_environment(own);
        let mut scoped = config.clone();
        scoped.environments = vec![env];
        let request = DeployRequest {
            config: &scoped,
            env: &scoped.environments[0],
            work_dir: &work_dir.join(app),
            run_id: &self.run_id,
            stage: super::deploy::PIPELINE_STAGE,
        };
        let outcome = self.deployer.deploy(request, sink).await;
        if let Some(error) = outcome.error {
            return Err(format!("the pipeline's own stack {} did not deploy: {error}", own.name));
        }
        let action = outcome
            .stacks
            .iter()
            .find(|s| s.status == Status::Succeeded)
            .and_then(|s| s.action.clone())
            .unwrap_or_else(|| "deployed".into());
        Ok(Some((
            format!("stack {} {action} (aws://{}/{})", own.name, own.account, own.region),
            outcome.synth + outcome.aws_wait,
        )))
    }
}

#[async_trait]
impl PipelineUpdater for OwnStackFirst {
    async fn update(
        &self,
        config: &Config,
        work_dir: &Path,
        commit_sha: &str,
        sink: Arc<dyn OutputSink>,
    ) -> Result<(String, Duration), String> {
        let own = self.deploy_own_stack(config, work_dir, sink.clone()).await?;
        let (summary, external) = self.inner.update(config, work_dir, commit_sha, sink).await?;
        Ok(match own {
            Some((stack, waited)) => (format!("{stack}; {summary}"), waited + external),
            None => (summary, external),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::{DeployOutcome, StackRecord};

    /// One deploy request: environment, stacks, `account/region`, work tree.
    type Seen = (String, Vec<String>, String, std::path::PathBuf);

    /// Records the deploy requests; answers each with `action` (or fails with `error`).
    struct Recording {
        seen: std::sync::Mutex<Vec<Seen>>,
        action: &'static str,
        error: Option<&'static str>,
    }

    #[async_trait]
    impl EnvironmentDeployer for Recording {
        async fn deploy(&self, request: DeployRequest<'_>, _sink: Arc<dyn OutputSink>) -> DeployOutcome {
            self.seen.lock().unwrap().push((
                request.env.name.clone(),
                request.env.stacks.iter().map(|s| s.name.clone()).collect(),
                format!("{}/{}", request.env.account, request.env.region),
                request.work_dir.to_path_buf(),
            ));
            DeployOutcome {
                stacks: vec![StackRecord {
                    name: "AphexPipelineStack".into(),
                    status: if self.error.is_some() { Status::Failed } else { Status::Succeeded },
                    duration_ms: 5,
                    aws_wait_ms: 3,
                    action: Some(self.action.into()),
                    error: self.error.map(str::to_owned),
                }],
                synth: Duration::from_millis(40),
                aws_wait: Duration::from_millis(3),
                error: self.error.map(str::to_owned),
                ..Default::default()
            }
        }
    }

    fn own_stack_config(stack: Option<&str>) -> Config {
        let own = stack.map(|s| format!("  stack: {{name: AphexPipelineStack, app: {s}, account: \"999999999999\", region: eu-central-1}}\n")).unwrap_or_default();
        let text = format!(
            "version: \"1.0\"\npipeline:\n  name: demo\n{own}build: {{commands: [\"true\"]}}\nenvironments:\n  - {{name: dev, region: us-east-1, account: \"111111111111\", stacks: [{{name: Api}}]}}\n"
        );
        let mut config =
            crate::config::parse("aphex-config.yaml", &text.replace("app: ../elsewhere", "app: infra"))
                .unwrap_or_else(|d| panic!("{d:?}"));
        // Validation refuses an app outside the repository; the adapter refuses it again (defence in
        // depth for a config that skipped validation).
        if let (Some(s), Some(own)) = (stack, config.pipeline.stack.as_mut()) {
            own.app = s.to_owned();
        }
        config
    }

    async fn check_own_stack(
        stack: Option<&str>,
        action: &'static str,
        error: Option<&'static str>,
    ) -> (Result<(String, Duration), String>, Vec<(String, Vec<String>, String, std::path::PathBuf)>, bool)
    {
        let out = tempfile::tempdir().unwrap();
        let deployer = Arc::new(Recording { seen: Default::default(), action, error });
        let updater = OwnStackFirst {
            deployer: deployer.clone(),
            inner: Arc::new(RenderToFile { path: out.path().join("wt.yaml") }),
            run_id: "run-1".into(),
        };
        let sink: Arc<dyn OutputSink> = Arc::new(crate::steps::shell::MemorySink::default());
        let result = updater.update(&own_stack_config(stack), Path::new("/repo"), "abc1234", sink).await;
        let seen = deployer.seen.lock().unwrap().clone();
        (result, seen, out.path().join("wt.yaml").exists())
    }

    #[tokio::test]
    async fn the_pipelines_own_stack_deploys_before_the_template_when_the_config_names_it() {
        let (result, seen, rendered) = check_own_stack(Some("infra"), "deployed", None).await;
        let (summary, external) = result.unwrap();
        assert_eq!(
            seen,
            [(
                "pipeline".to_owned(),
                vec!["AphexPipelineStack".to_owned()],
                "999999999999/eu-central-1".to_owned(),
                std::path::PathBuf::from("/repo/infra")
            )]
        );
        assert!(
            summary.starts_with(
                "stack AphexPipelineStack deployed (aws://999999999999/eu-central-1); WorkflowTemplate demo"
            ),
            "{summary}"
        );
        assert_eq!(external, Duration::from_millis(43), "synth and AWS time are not aphex's");
        assert!(rendered);

        // Unchanged (the engine compared it with the deployed stack): said so, template still updated.
        let (result, _, rendered) = check_own_stack(Some("infra"), "unchanged", None).await;
        assert!(result.unwrap().0.starts_with("stack AphexPipelineStack unchanged"));
        assert!(rendered);
    }

    #[tokio::test]
    async fn a_failed_own_stack_deploy_leaves_the_template_alone() {
        let (result, _, rendered) = check_own_stack(
            Some("infra"),
            "failed",
            Some("resource Api (AWS::ApiGatewayV2::Api) CREATE_FAILED: quota"),
        )
        .await;
        let err = result.unwrap_err();
        assert!(
            err.contains("the pipeline's own stack AphexPipelineStack did not deploy")
                && err.contains("quota"),
            "{err}"
        );
        assert!(!rendered, "the template must not change when the pipeline's stack failed");
    }

    #[tokio::test]
    async fn without_an_own_stack_only_the_template_updates_and_escaping_apps_are_refused() {
        let (result, seen, rendered) = check_own_stack(None, "deployed", None).await;
        assert!(result.unwrap().0.starts_with("WorkflowTemplate demo"));
        assert!(seen.is_empty() && rendered);
        let (result, seen, _) = check_own_stack(Some("../elsewhere"), "deployed", None).await;
        assert!(result.unwrap_err().contains("must be a folder inside the repository"));
        assert!(seen.is_empty());
    }

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
