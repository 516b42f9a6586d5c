//! Helpers of the steps and local-runner tests: a moto server (STS, S3, SSM, CloudFormation) with the
//! demo accounts bootstrapped through boto3 from the repository's `.venv`, test repositories, the binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    aphex_tests::repo_root()
}

/// The `aphex` binary cargo built beside this test.
pub fn aphex_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("aphex");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p aphex` (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

fn venv_bin(name: &str) -> PathBuf {
    let local = repo_root().join(".venv/bin").join(name);
    if local.exists() { local } else { PathBuf::from(name) }
}

/// A moto server on a free port, killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]' into .venv: scripts/setup)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// The environment every aphex process of a test gets: moto only, fake credentials.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_SESSION_TOKEN", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_MAX_ATTEMPTS", "2".into()),
            ("CDK_DISABLE_CLI_TELEMETRY", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Runs a Python script with boto3 against this moto; its stdout.
    pub fn python(&self, script: &str, args: &[&str]) -> Vec<u8> {
        let out = Command::new(venv_bin("python"))
            .arg("-c")
            .arg(script)
            .args(args)
            .envs(self.env())
            .output()
            .expect("python from .venv");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    /// What `cdk bootstrap` leaves that aphex needs: the version parameter and the assets bucket, made
    /// from inside `account` (AssumeRole), as the demo script does.
    pub fn bootstrap(&self, account: &str, region: &str) {
        self.python(
            r#"
import sys, boto3
account, region = sys.argv[1], sys.argv[2]
c = boto3.client("sts", region_name=region).assume_role(RoleArn=f"arn:aws:iam::{account}:role/cdk-hnb659fds-deploy-role-{account}-{region}", RoleSessionName="aphex-test")["Credentials"]
s = boto3.Session(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"], region_name=region)
s.client("ssm").put_parameter(Name="/cdk-bootstrap/hnb659fds/version", Value="30", Type="String", Overwrite=True)
b = f"cdk-hnb659fds-assets-{account}-{region}"
kw = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
s.client("s3").create_bucket(Bucket=b, **kw)
"#,
            &[account, region],
        );
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.python("import sys, boto3; boto3.client('s3').create_bucket(Bucket=sys.argv[1])", &[bucket]);
    }

    pub fn list_keys(&self, bucket: &str) -> Vec<String> {
        let out = self.python(
            "import sys, boto3\nfor p in boto3.client('s3').get_paginator('list_objects_v2').paginate(Bucket=sys.argv[1]):\n    [print(o['Key']) for o in p.get('Contents', [])]",
            &[bucket],
        );
        String::from_utf8_lossy(&out).lines().map(str::to_owned).collect()
    }

    pub fn get_object(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.python(
            "import sys, boto3; sys.stdout.buffer.write(boto3.client('s3').get_object(Bucket=sys.argv[1], Key=sys.argv[2])['Body'].read())",
            &[bucket, key],
        )
    }

    pub fn put_object(&self, bucket: &str, key: &str, body: &Path) {
        self.python(
            "import sys, boto3; boto3.client('s3').upload_file(sys.argv[3], sys.argv[1], sys.argv[2])",
            &[bucket, key, body.to_str().unwrap()],
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs git in `dir`, returning its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A shell "synth" that hands aphex a pre-synthesized assembly (copied to `--output`).
pub const SYNTH_SH: &str = r#"#!/bin/sh
# A pre-synthesized app: copy the assembly where aphex asks (--output DIR).
out=""
while [ $# -gt 0 ]; do case "$1" in --output) out="$2"; shift 2 ;; *) shift ;; esac; done
[ -n "$out" ] || { echo "synth.sh: no --output" >&2; exit 2; }
mkdir -p "$out" && cp -R assembly/. "$out"/
"#;

/// A git repository with the config, `synth.sh` and the fixture assembly `assembly` (from
/// `../shared/fixtures/cdk/`), committed on `main`.
pub fn write_repo(dir: &Path, config: &str, assembly: &str) {
    std::fs::write(dir.join("aphex-config.yaml"), config).unwrap();
    std::fs::write(dir.join("synth.sh"), SYNTH_SH).unwrap();
    copy_dir(&aphex_tests::fixtures_dir().join("cdk").join(assembly), &dir.join("assembly"));
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["-c", "user.email=t@example.com", "-c", "user.name=t", "add", "."]);
    git(dir, &["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "app"]);
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
