//! A moto server for tests: found in `$REPO/.venv/bin` or PATH, started on a free port, reset on
//! request and killed on drop; plus helpers that bootstrap an account/region as `cdk bootstrap` would
//! for what aphex reads (the SSM version parameter and the assets bucket).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

/// The bootstrap qualifier the CDK uses by default.
pub const QUALIFIER: &str = "hnb659fds";
/// The bootstrap version written by [`Moto::bootstrap`] (the current `cdk bootstrap` template's).
pub const BOOTSTRAP_VERSION: u32 = 30;

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
}

/// `moto_server` from the repository's venv, else from PATH.
pub fn moto_server_bin() -> PathBuf {
    let local = crate::repo_root().join(".venv/bin/moto_server");
    if local.exists() { local } else { PathBuf::from("moto_server") }
}

impl Moto {
    /// Starts moto on a free port and waits until `/moto-api/` answers.
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free local port");
        let child = Command::new(moto_server_bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); run scripts/setup to install moto[server] into .venv",
                    moto_server_bin().display()
                )
            });
        let moto = Moto { child, port };
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{port}/moto-api/");
        loop {
            if ureq_get(&url).unwrap_or(false) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "moto did not answer on {url} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://localhost:PORT` (moto reads path-style template URLs only with `localhost`).
    pub fn endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// The role ARNs moto's STS has been asked to assume so far, in order (moto's `/moto-api/data.json`
    /// lists every `AssumedRole`; only the ARNs are kept, never the session credentials).
    pub async fn assumed_roles(&self) -> Vec<String> {
        let url = format!("http://127.0.0.1:{}/moto-api/data.json", self.port);
        let data: serde_json::Value =
            reqwest::get(&url).await.expect("moto data.json").json().await.expect("moto data.json is JSON");
        data.pointer("/sts/AssumedRole")
            .and_then(|v| v.as_array())
            .map(|roles| roles.iter().filter_map(|r| r["role_arn"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Forgets every resource (POST /moto-api/reset).
    pub fn reset(&self) {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("moto is up");
        use std::io::{Read, Write};
        write!(stream, "POST /moto-api/reset HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .expect("write reset");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
            "moto reset: {answer}"
        );
    }

    /// The environment of a process that must talk to this moto only: fake credentials, the endpoint,
    /// few retries (a moto 500 should not stall the test), no profile.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_SESSION_TOKEN", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("APHEX_AWS_MAX_ATTEMPTS", "3".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// An SDK config for moto's default account in `region`.
    pub async fn sdk_config(&self, region: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                Some("testing".into()),
                None,
                "moto",
            ))
            .load()
            .await
    }

    /// An SDK config acting in `account` (moto keeps each account's resources apart), through
    /// AssumeRole of the CDK deploy role as aphex does.
    pub async fn account_config(&self, account: &str, region: &str) -> SdkConfig {
        let base = self.sdk_config(region).await;
        let sts = aws_sdk_sts::Client::new(&base);
        let role = format!("arn:aws:iam::{account}:role/cdk-{QUALIFIER}-deploy-role-{account}-{region}");
        let out = sts
            .assume_role()
            .role_arn(role)
            .role_session_name("test-bootstrap")
            .send()
            .await
            .expect("moto AssumeRole");
        let c = out.credentials.expect("credentials");
        base.to_builder()
            .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                Credentials::new(
                    c.access_key_id,
                    c.secret_access_key,
                    Some(c.session_token),
                    None,
                    "moto-assumed",
                ),
            ))
            .build()
    }

    /// What aphex needs of `cdk bootstrap aws://ACCOUNT/REGION`: the version parameter and the assets
    /// bucket.
    pub async fn bootstrap(&self, account: &str, region: &str) {
        let config = self.account_config(account, region).await;
        aws_sdk_ssm::Client::new(&config)
            .put_parameter()
            .name(format!("/cdk-bootstrap/{QUALIFIER}/version"))
            .value(BOOTSTRAP_VERSION.to_string())
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .expect("put bootstrap version");
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
        );
        let mut create = s3.create_bucket().bucket(assets_bucket(account, region));
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        create.send().await.expect("create assets bucket");
    }
}

/// `cdk-hnb659fds-assets-ACCOUNT-REGION`.
pub fn assets_bucket(account: &str, region: &str) -> String {
    format!("cdk-{QUALIFIER}-assets-{account}-{region}")
}

/// A bare HTTP GET (no client crate needed): true on a 2xx answer.
fn ureq_get(url: &str) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.1 2") || head.starts_with(b"HTTP/1.0 2"))
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
