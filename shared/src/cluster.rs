//! Cluster access: one resolution order for every cluster client (the pipeline step, `aphex template`, the
//! webhook and generate-template Lambdas), built from what the process really has:
//!
//! 1. `KUBECONFIG` (any cluster; `:`-separated files, current context): a laptop, the tests;
//! 2. `APHEX_CLUSTER`: an EKS cluster by name, with a bearer token made from a presigned STS
//!    `GetCallerIdentity` request exactly as aws-iam-authenticator does (the Lambdas);
//! 3. the pod's service account: `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT` and the token at
//!    `/var/run/secrets/kubernetes.io/serviceaccount/token` (Kubernetes documentation, "Accessing the
//!    Kubernetes API from a Pod"): every Argo pod, the pipeline step's self-modification among them;
//! 4. `~/.kube/config` when it exists (kubectl's default).
//!
//! Clients are cached; EKS clients are rebuilt before their token expires, so a warm Lambda reuses one.
//! In-cluster clients re-read the projected token file themselves (kube's in-cluster config).

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use base64::Engine as _;
use secrecy::SecretString;
use tokio::sync::Mutex;

/// Tokens are valid for 15 minutes; rebuild well before that.
const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(10 * 60);
/// The presigned URL's own validity (what aws-iam-authenticator uses).
const PRESIGN_EXPIRES: Duration = Duration::from_secs(60);

/// Where the Kubernetes API server is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterTarget {
    /// Kubeconfig file(s), as `KUBECONFIG` lists them (`:`-separated); the current context is used.
    Kubeconfig { paths: String },
    /// An EKS cluster by name, in the SDK config's region.
    Eks { cluster_name: String },
    /// The pod's own service account (kube's in-cluster config).
    InCluster,
}

/// Where a pod's service account token is mounted (Kubernetes documentation).
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no cluster configured: set KUBECONFIG (any cluster) or APHEX_CLUSTER (an EKS cluster name), or run in a pod with a service account token mounted"
    )]
    NotConfigured,
    #[error("cannot use the pod's service account (in-cluster config)")]
    InCluster(#[source] kube::config::InClusterError),
    #[error("cannot read the kubeconfig named by KUBECONFIG")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    #[error("cannot build a Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("eks:DescribeCluster {cluster} failed")]
    DescribeCluster {
        cluster: String,
        #[source]
        source:
            Box<aws_sdk_eks::error::SdkError<aws_sdk_eks::operation::describe_cluster::DescribeClusterError>>,
    },
    #[error("EKS cluster {cluster} has no {what} yet (is it still being created?)")]
    ClusterIncomplete { cluster: String, what: &'static str },
    #[error("EKS cluster {cluster}: endpoint or certificate authority data is malformed: {reason}")]
    ClusterMalformed { cluster: String, reason: String },
    #[error("no AWS credentials to sign the EKS token")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    #[error("no AWS region configured for the EKS cluster")]
    NoRegion,
    #[error("cannot presign the STS request for the EKS token: {0}")]
    Presign(String),
}

impl ClusterTarget {
    /// The module's resolution order over this process's environment and files.
    pub fn from_env() -> Result<Self, ClusterError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let home_config = std::env::var_os("HOME")
            .map(|h| std::path::Path::new(&h).join(".kube").join("config"))
            .filter(|p| p.is_file());
        Self::resolve(Found {
            kubeconfig: var("KUBECONFIG"),
            eks_cluster: var("APHEX_CLUSTER"),
            in_cluster: var("KUBERNETES_SERVICE_HOST").is_some()
                && var("KUBERNETES_SERVICE_PORT").is_some()
                && std::path::Path::new(SERVICE_ACCOUNT_TOKEN).is_file(),
            home_kubeconfig: home_config.map(|p| p.display().to_string()),
        })
    }

    /// The resolution order, pure: what was found → the target.
    pub fn resolve(found: Found) -> Result<Self, ClusterError> {
        if let Some(paths) = found.kubeconfig {
            Ok(Self::Kubeconfig { paths })
        } else if let Some(cluster_name) = found.eks_cluster {
            Ok(Self::Eks { cluster_name })
        } else if found.in_cluster {
            Ok(Self::InCluster)
        } else if let Some(paths) = found.home_kubeconfig {
            Ok(Self::Kubeconfig { paths })
        } else {
            Err(ClusterError::NotConfigured)
        }
    }

    /// Whether building a client needs AWS (credentials and a region).
    pub fn needs_aws(&self) -> bool {
        matches!(self, Self::Eks { .. })
    }
}

/// What a process has that can reach a cluster (the inputs of [`ClusterTarget::resolve`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// `KUBECONFIG`, when set and not empty.
    pub kubeconfig: Option<String>,
    /// `APHEX_CLUSTER`, when set and not empty.
    pub eks_cluster: Option<String>,
    /// `KUBERNETES_SERVICE_HOST` and `_PORT` set and the service account token file present.
    pub in_cluster: bool,
    /// `~/.kube/config`, when it is a file.
    pub home_kubeconfig: Option<String>,
}

/// A cached client for one target; `client()` hands out a clone, rebuilding it when its token ages.
pub struct ClusterAccess {
    target: ClusterTarget,
    sdk: aws_types::SdkConfig,
    cached: Mutex<Option<(kube::Client, Instant)>>,
}

impl std::fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess").field("target", &self.target).finish_non_exhaustive()
    }
}

impl ClusterAccess {
    pub fn new(target: ClusterTarget, sdk: aws_types::SdkConfig) -> Self {
        Self { target, sdk, cached: Mutex::new(None) }
    }

    pub fn target(&self) -> &ClusterTarget {
        &self.target
    }

    /// A client that is valid now.
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        let mut cached = self.cached.lock().await;
        if let Some((client, built)) = cached.as_ref() {
            // Kubeconfig and in-cluster clients refresh their own credentials; only EKS tokens age out.
            if !matches!(self.target, ClusterTarget::Eks { .. }) || built.elapsed() < TOKEN_REFRESH_AFTER {
                return Ok(client.clone());
            }
        }
        let client = match &self.target {
            ClusterTarget::Kubeconfig { paths } => kubeconfig_client(paths).await?,
            ClusterTarget::Eks { cluster_name } => eks_client(&self.sdk, cluster_name).await?,
            ClusterTarget::InCluster => {
                let config = kube::Config::incluster().map_err(ClusterError::InCluster)?;
                kube::Client::try_from(config).map_err(ClusterError::Client)?
            }
        };
        *cached = Some((client.clone(), Instant::now()));
        Ok(client)
    }
}

async fn kubeconfig_client(paths: &str) -> Result<kube::Client, ClusterError> {
    let mut merged: Option<kube::config::Kubeconfig> = None;
    for path in paths.split(':').filter(|p| !p.is_empty()) {
        let file = kube::config::Kubeconfig::read_from(path).map_err(ClusterError::Kubeconfig)?;
        merged = Some(match merged {
            Some(m) => m.merge(file).map_err(ClusterError::Kubeconfig)?,
            None => file,
        });
    }
    let kubeconfig = merged.ok_or(ClusterError::NotConfigured)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(ClusterError::Kubeconfig)?;
    kube::Client::try_from(config).map_err(ClusterError::Client)
}

async fn eks_client(sdk: &aws_types::SdkConfig, cluster_name: &str) -> Result<kube::Client, ClusterError> {
    let eks = aws_sdk_eks::Client::new(sdk);
    let described = eks.describe_cluster().name(cluster_name).send().await.map_err(|source| {
        ClusterError::DescribeCluster { cluster: cluster_name.to_owned(), source: Box::new(source) }
    })?;
    let cluster = described.cluster.ok_or_else(|| ClusterError::ClusterIncomplete {
        cluster: cluster_name.to_owned(),
        what: "description",
    })?;
    let endpoint = cluster.endpoint.ok_or_else(|| ClusterError::ClusterIncomplete {
        cluster: cluster_name.to_owned(),
        what: "endpoint",
    })?;
    let ca_b64 = cluster.certificate_authority.and_then(|ca| ca.data).ok_or_else(|| {
        ClusterError::ClusterIncomplete { cluster: cluster_name.to_owned(), what: "certificate authority" }
    })?;
    let malformed =
        |reason: String| ClusterError::ClusterMalformed { cluster: cluster_name.to_owned(), reason };
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(ca_b64.trim())
        .map_err(|e| malformed(format!("certificate authority is not base64: {e}")))?;
    let ca_der = pem_certificates_to_der(&ca_pem).map_err(malformed)?;
    let uri: http::Uri = endpoint.parse().map_err(|e| malformed(format!("endpoint {endpoint}: {e}")))?;

    let token = eks_token(sdk, cluster_name, SystemTime::now()).await?;
    let mut config = kube::Config::new(uri);
    config.root_cert = Some(ca_der);
    config.auth_info.token = Some(SecretString::from(token));
    kube::Client::try_from(config).map_err(ClusterError::Client)
}

/// Decodes the PEM blocks of a CA bundle into DER certificates.
fn pem_certificates_to_der(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "certificate authority is not PEM text".to_owned())?;
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match line {
            "-----BEGIN CERTIFICATE-----" => body = Some(String::new()),
            "-----END CERTIFICATE-----" => {
                let b64 = body.take().ok_or("END CERTIFICATE without BEGIN")?;
                let der = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("certificate body is not base64: {e}"))?;
                certs.push(der);
            }
            _ => {
                if let Some(b) = body.as_mut() {
                    b.push_str(line);
                }
            }
        }
    }
    if certs.is_empty() {
        return Err("certificate authority holds no PEM certificate".into());
    }
    Ok(certs)
}

/// The `k8s-aws-v1.` bearer token: a presigned STS GetCallerIdentity URL bound to the cluster name by the
/// signed `x-k8s-aws-id` header, base64url without padding.
pub async fn eks_token(
    sdk: &aws_types::SdkConfig,
    cluster_name: &str,
    now: SystemTime,
) -> Result<String, ClusterError> {
    let region = sdk.region().ok_or(ClusterError::NoRegion)?.to_string();
    let provider = sdk.credentials_provider().ok_or_else(|| {
        ClusterError::Credentials(aws_credential_types::provider::error::CredentialsError::not_loaded(
            "no credentials provider in the SDK config",
        ))
    })?;
    let credentials = provider.provide_credentials().await.map_err(ClusterError::Credentials)?;
    presigned_token(credentials, &region, cluster_name, now)
}

fn presigned_token(
    credentials: aws_credential_types::Credentials,
    region: &str,
    cluster_name: &str,
    now: SystemTime,
) -> Result<String, ClusterError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings};

    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(PRESIGN_EXPIRES);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| ClusterError::Presign(e.to_string()))?;
    let endpoint = crate::aws::sts_url(region)
        .ok_or_else(|| ClusterError::Presign(format!("no STS endpoint is known for region {region}")))?;
    let url = format!("{endpoint}/?Action=GetCallerIdentity&Version=2011-06-15");
    let host = endpoint.trim_start_matches("https://").to_owned();
    let headers = [("host", host), ("x-k8s-aws-id", cluster_name.to_owned())];
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        headers.iter().map(|(k, v)| (*k, v.as_str())),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| ClusterError::Presign(e.to_string()))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params.into())
        .map_err(|e| ClusterError::Presign(e.to_string()))?
        .into_parts();
    let mut request =
        http::Request::builder().uri(&url).body(()).map_err(|e| ClusterError::Presign(e.to_string()))?;
    instructions.apply_to_request_http1x(&mut request);
    let presigned = request.uri().to_string();
    Ok(format!("k8s-aws-v1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_resolution_order() {
        let check = |found: Found, expect: Option<ClusterTarget>| {
            let got = ClusterTarget::resolve(found.clone()).ok();
            assert_eq!(got, expect, "{found:?}");
        };
        let kubeconfig = |p: &str| Some(ClusterTarget::Kubeconfig { paths: p.into() });
        let eks = Some(ClusterTarget::Eks { cluster_name: "prod".into() });
        let all = Found {
            kubeconfig: Some("/k".into()),
            eks_cluster: Some("prod".into()),
            in_cluster: true,
            home_kubeconfig: Some("/root/.kube/config".into()),
        };
        check(all.clone(), kubeconfig("/k"));
        check(Found { kubeconfig: None, ..all.clone() }, eks.clone());
        // A pod: the service account beats a kubeconfig left in the image's home.
        check(Found { kubeconfig: None, eks_cluster: None, ..all.clone() }, Some(ClusterTarget::InCluster));
        check(Found { in_cluster: true, ..Found::default() }, Some(ClusterTarget::InCluster));
        check(Found { home_kubeconfig: Some("/h".into()), ..Found::default() }, kubeconfig("/h"));
        check(Found { eks_cluster: Some("prod".into()), ..Found::default() }, eks);
        check(Found::default(), None);
    }

    #[test]
    fn eks_token_is_a_presigned_sts_url_bound_to_the_cluster() {
        let creds = aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = presigned_token(creds, "eu-west-1", "prod-cluster", now).unwrap();
        let b64 = token.strip_prefix("k8s-aws-v1.").expect("token prefix");
        assert!(!b64.contains('='), "no padding");
        let url =
            String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap();
        assert!(url.starts_with(
            "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
        ));
        assert!(url.contains("X-Amz-Expires=60"), "{url}");
        assert!(url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"), "{url}");
        assert!(
            url.contains("X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Feu-west-1%2Fsts%2Faws4_request"),
            "{url}"
        );
        assert!(!url.contains("secret"), "the secret key never appears in the token");
        // Deterministic for the same inputs: the signature depends only on them.
        let again = presigned_token(
            aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"),
            "eu-west-1",
            "prod-cluster",
            now,
        )
        .unwrap();
        assert_eq!(token, again);
        let other_cluster = presigned_token(
            aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test"),
            "eu-west-1",
            "dev-cluster",
            now,
        )
        .unwrap();
        assert_ne!(token, other_cluster, "the cluster name is signed");
    }

    #[test]
    fn pem_bundle_decodes_every_certificate() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nBQY=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificates_to_der(pem.as_bytes()).unwrap(), vec![vec![0, 1, 2, 3, 4], vec![5, 6]]);
        assert!(pem_certificates_to_der(b"random bytes").is_err());
    }
}
