//! AWS SDK configuration shared by every adapter: region, the `AWS_ENDPOINT_URL` override (moto in
//! tests), path-style S3 when an endpoint is set, retries, and a cache of assumed-role configurations
//! whose session names carry the run id.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use tokio::sync::{Mutex, OnceCell};

/// Why an AWS identity could not be obtained.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AwsError {
    #[error("cannot find who the AWS caller is (sts:GetCallerIdentity): {0}")]
    CallerIdentity(String),
    #[error(
        "cannot assume role {role}: {message}; check that the role exists and trusts the caller {caller}"
    )]
    AssumeRole { role: String, caller: String, message: String },
}

/// Retry attempts of every SDK call (throttling and transient errors), overridable with
/// `APHEX_AWS_MAX_ATTEMPTS` (tests against moto lower it so a moto 500 does not stall).
pub fn max_attempts() -> u32 {
    std::env::var("APHEX_AWS_MAX_ATTEMPTS").ok().and_then(|v| v.parse().ok()).filter(|n| *n >= 1).unwrap_or(8)
}

/// The base SDK configuration for `region`: default credential chain, `AWS_ENDPOINT_URL` honoured
/// (aws-config reads it), standard retries with adaptive back-off.
pub async fn sdk_config(region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .retry_config(RetryConfig::standard().with_max_attempts(max_attempts()))
        .load()
        .await
}

/// The ARN partition of `region` (`aws`, `aws-cn`, `aws-us-gov`, `aws-iso-e`, ...), from the one
/// region table (`config::regions`, botocore's `partitions.json`); None for a region it lacks.
pub fn partition(region: &str) -> Option<&'static str> {
    crate::config::regions::find(region).map(|r| r.partition)
}

/// The URL of an S3 object in `region` as the SDK's own endpoint rules write it (the partition's
/// DNS suffix: `amazonaws.com`, `amazonaws.com.cn`, `c2s.ic.gov`, ...); None when the rules have no
/// endpoint for it.
pub fn s3_object_url(bucket: &str, key: &str, region: &str) -> Option<String> {
    use aws_sdk_s3::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
    use futures::FutureExt;
    let params = Params::builder().region(region).bucket(bucket).build().ok()?;
    let endpoint = DefaultResolver::new().resolve_endpoint(&params).now_or_never()?.ok()?;
    Some(format!("{}/{key}", endpoint.url().trim_end_matches('/')))
}

/// The regional STS endpoint of `region` (`https://sts.REGION.DNS-SUFFIX`), from the SDK's endpoint
/// rules; None when they have none.
pub fn sts_url(region: &str) -> Option<String> {
    use aws_sdk_sts::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};
    use futures::FutureExt;
    let params = Params::builder().region(region).use_global_endpoint(false).build().ok()?;
    let endpoint = DefaultResolver::new().resolve_endpoint(&params).now_or_never()?.ok()?;
    Some(endpoint.url().trim_end_matches('/').to_owned())
}

/// An S3 client; path-style addressing when a custom endpoint is set (`bucket.localhost` does not
/// resolve, and moto only reads path-style URLs).
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::config::Builder::from(config);
    if config.endpoint_url().is_some() {
        builder = builder.force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// An STS session name (2–64 chars of `[\w+=,.@-]`) carrying the run id.
pub fn session_name(run_id: &str) -> String {
    let cleaned: String = run_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) { c } else { '-' })
        .collect();
    let mut name = format!("aphex-{cleaned}");
    name.truncate(64);
    name
}

/// True when `caller_arn` (from GetCallerIdentity) is a session of, or is, `role_arn`.
pub fn caller_is_role(caller_arn: &str, role_arn: &str) -> bool {
    let (Some(caller), Some(role)) = (split_arn(caller_arn), split_arn(role_arn)) else { return false };
    if caller.0 != role.0 {
        return false;
    }
    let role_name = role.1.strip_prefix("role/").map(|p| p.rsplit('/').next().unwrap_or(p));
    let caller_role = caller
        .1
        .strip_prefix("assumed-role/")
        .and_then(|r| r.split('/').next())
        .or_else(|| caller.1.strip_prefix("role/").map(|p| p.rsplit('/').next().unwrap_or(p)));
    role_name.is_some() && role_name == caller_role
}

/// `(account, resource)` of an IAM or STS ARN.
fn split_arn(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (_, _, _, _, account, resource) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some((account, resource))
}

/// One (role, region)'s configuration, or why the role could not be assumed; filled once.
type RoleCell = Arc<OnceCell<Result<SdkConfig, AwsError>>>;

/// Assumed-role SDK configurations, one per (role, region), built once and shared: concurrent first
/// users wait for the one AssumeRole in flight instead of each calling STS, and a refusal is kept for
/// the run (it names the role and will not change within seconds). Credentials are refreshed by the
/// SDK's own caching provider.
#[derive(Clone)]
pub struct RoleCache {
    run_id: String,
    base: Arc<Mutex<HashMap<String, SdkConfig>>>,
    caller: Arc<Mutex<HashMap<String, String>>>,
    roles: Arc<Mutex<HashMap<(String, String), RoleCell>>>,
}

impl std::fmt::Debug for RoleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCache").field("run_id", &self.run_id).finish_non_exhaustive()
    }
}

impl RoleCache {
    pub fn new(run_id: &str) -> Self {
        Self {
            run_id: run_id.to_owned(),
            base: Default::default(),
            caller: Default::default(),
            roles: Default::default(),
        }
    }

    /// The caller's own configuration for `region`.
    pub async fn base(&self, region: &str) -> SdkConfig {
        let mut base = self.base.lock().await;
        if let Some(c) = base.get(region) {
            return c.clone();
        }
        let c = sdk_config(region).await;
        base.insert(region.to_owned(), c.clone());
        c
    }

    async fn caller_arn(&self, region: &str) -> Result<String, AwsError> {
        let mut caller = self.caller.lock().await;
        if let Some(arn) = caller.get(region) {
            return Ok(arn.clone());
        }
        let sts = aws_sdk_sts::Client::new(&self.base(region).await);
        let out = sts.get_caller_identity().send().await.map_err(|e| {
            AwsError::CallerIdentity(aws_smithy_types::error::display::DisplayErrorContext(e).to_string())
        })?;
        let arn = out.arn.unwrap_or_default();
        caller.insert(region.to_owned(), arn.clone());
        Ok(arn)
    }

    /// The configuration acting as `role` in `region` (the caller's own when `role` is None or the
    /// caller already is that role).
    pub async fn config_for(&self, role: Option<&str>, region: &str) -> Result<SdkConfig, AwsError> {
        let Some(role) = role else { return Ok(self.base(region).await) };
        let cell = self.roles.lock().await.entry((role.to_owned(), region.to_owned())).or_default().clone();
        cell.get_or_init(|| self.assume(role, region)).await.clone()
    }

    async fn assume(&self, role: &str, region: &str) -> Result<SdkConfig, AwsError> {
        let caller = self.caller_arn(region).await?;
        let base = self.base(region).await;
        let config = if caller_is_role(&caller, role) {
            base
        } else {
            // The SDK's provider refreshes the session before it expires (deploys can outlast an hour);
            // asking it once now turns a bad trust policy into an error here, naming the role.
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name(session_name(&self.run_id))
                .region(Region::new(region.to_owned()))
                .configure(&base)
                .build()
                .await;
            provider.provide_credentials().await.map_err(|e| AwsError::AssumeRole {
                role: role.to_owned(),
                caller: caller.clone(),
                message: aws_smithy_types::error::display::DisplayErrorContext(e).to_string(),
            })?;
            let credentials = provider;
            base.to_builder().credentials_provider(SharedCredentialsProvider::new(credentials)).build()
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_caller_as_the_role() {
        let role = "arn:aws:iam::111111111111:role/cdk-hnb659fds-deploy-role-111111111111-us-east-1";
        assert!(caller_is_role(
            "arn:aws:sts::111111111111:assumed-role/cdk-hnb659fds-deploy-role-111111111111-us-east-1/aphex-r1",
            role
        ));
        assert!(caller_is_role(role, role));
        assert!(!caller_is_role(
            "arn:aws:sts::222222222222:assumed-role/cdk-hnb659fds-deploy-role-111111111111-us-east-1/x",
            role
        ));
        assert!(!caller_is_role("arn:aws:iam::111111111111:user/alice", role));
        assert!(caller_is_role(
            "arn:aws:sts::1:assumed-role/deployer/s",
            "arn:aws:iam::1:role/path/deployer"
        ));
    }

    /// Every region the config accepts: its partition from the table, and S3 and STS URLs from the
    /// SDK's endpoint rules ending in that partition's DNS suffix (botocore `partitions.json`).
    #[test]
    fn every_accepted_region_gets_its_partition_and_hosts() {
        let suffix = |partition: &str| match partition {
            "aws" | "aws-us-gov" => "amazonaws.com",
            "aws-cn" => "amazonaws.com.cn",
            "aws-iso" => "c2s.ic.gov",
            "aws-iso-b" => "sc2s.sgov.gov",
            "aws-iso-e" => "cloud.adc-e.uk",
            "aws-iso-f" => "csp.hci.ic.gov",
            "aws-eusc" => "amazonaws.eu",
            other => panic!("no DNS suffix known for partition {other}: add it to this test"),
        };
        for r in crate::config::regions::REGIONS {
            assert_eq!(partition(r.name), Some(r.partition));
            let s3 = s3_object_url("cdk-hnb659fds-assets-1-x", "k.json", r.name).expect(r.name);
            assert_eq!(
                s3,
                format!("https://cdk-hnb659fds-assets-1-x.s3.{}.{}/k.json", r.name, suffix(r.partition))
            );
            let sts = sts_url(r.name).expect(r.name);
            assert_eq!(sts, format!("https://sts.{}.{}", r.name, suffix(r.partition)), "{}", r.name);
        }
        // The regions the issue names.
        for (region, p) in [
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-isof-east-1", "aws-iso-f"),
            ("eu-isoe-west-1", "aws-iso-e"),
        ] {
            assert_eq!(partition(region), Some(p));
        }
    }

    #[test]
    fn session_names_are_valid() {
        assert_eq!(session_name("run 42/x"), "aphex-run-42-x");
        assert_eq!(session_name(&"a".repeat(100)).len(), 64);
    }
}
