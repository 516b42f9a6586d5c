//! `aphex step build` then `aphex step deploy` with an artifact altered in between: the deploy stops
//! before synth naming the file, and finalize's run record says failed, at which stage, and why.

mod support;

use std::path::Path;

use support::{git, step_command, write_repo};

const CONFIG: &str = r#"version: "1.0"
build:
  commands: ["echo compiled > app.js"]
synth:
  command: "sh synth.sh"
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks: [{name: ProducerStack}]
"#;

fn step(store: &Path, pod: &Path, repo: &Path, sha: &str, args: &[&str]) -> std::process::Output {
    step_command(store, pod, repo, sha, "run-7", args)
        // No AWS is reachable: the deploy must stop before it needs any.
        .env("AWS_ENDPOINT_URL", "http://localhost:9")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap()
}

#[test]
fn an_artifact_whose_sha256_differs_stops_the_deploy_naming_the_file() {
    let repo = tempfile::tempdir().unwrap();
    write_repo(repo.path(), CONFIG, "synth-multi-stack-cross-refs");
    let sha = git(repo.path(), &["rev-parse", "HEAD"]);
    let store = tempfile::tempdir().unwrap();
    let pods = tempfile::tempdir().unwrap();

    let build = step(store.path(), &pods.path().join("build"), repo.path(), &sha, &["build"]);
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    // The clone was at exactly the commit, and the build output is in the artifacts.
    let manifests = walk(store.path(), "manifest.json");
    assert_eq!(manifests.len(), 1);
    let manifest_path = &manifests[0];
    assert!(manifest_path.to_str().unwrap().contains(&sha), "{}", manifest_path.display());
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    let entry = manifest["files"].as_array_mut().unwrap().iter_mut().find(|f| f["path"] == "app.js").unwrap();
    entry["sha256"] = serde_json::Value::String("0".repeat(64));
    std::fs::write(manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let outputs = pods.path().join("deploy/outputs.json");
    let deploy = step(
        store.path(),
        &pods.path().join("deploy"),
        repo.path(),
        &sha,
        &["deploy", "--env", "dev", "--outputs-file", outputs.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&deploy.stderr);
    assert!(!deploy.status.success());
    assert!(stderr.contains("artifact file app.js does not match its manifest"), "{stderr}");
    assert!(!outputs.exists(), "nothing may deploy from altered artifacts");
    assert!(!pods.path().join("deploy/work/.aphex").exists(), "synth must not have started");

    let fin = step(
        store.path(),
        &pods.path().join("fin"),
        repo.path(),
        &sha,
        &["finalize", "--status", "Failed", "--no-event", "--no-metrics"],
    );
    assert!(fin.status.success(), "{}", String::from_utf8_lossy(&fin.stderr));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.path().join("runs/run-7/record.json")).unwrap()).unwrap();
    assert_eq!(record["status"], "failed");
    assert_eq!(record["failedStage"], "deploy-dev");
    assert!(record["reason"].as_str().unwrap().contains("app.js"), "{record}");
    let emf = String::from_utf8_lossy(&fin.stdout);
    assert!(emf.lines().any(|l| l.contains("\"RunsFailed\":1")), "{emf}");
}

fn walk(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(walk(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            found.push(p);
        }
    }
    found
}
