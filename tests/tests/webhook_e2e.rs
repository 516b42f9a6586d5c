//! End to end: the `webhook` Lambda under `cargo lambda watch`, its function URL fed signed real GitHub
//! payloads over HTTP, a fake Kubernetes API server (through a generated KUBECONFIG) recording what was
//! created. One Workflow per delivery even when a delivery is posted 5 times at once; none for a bad
//! signature, an ignored branch, a tag, or a deletion; the arguments match the payload.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aphex::webhook::Secret;
use aphex_tests::fake_kube::FakeKube;
use serde_json::{Value, json};

const SECRET: &str = "e2e webhook secret";

/// `cargo-lambda` from PATH or `$REPO/.venv/bin`.
fn cargo_lambda() -> PathBuf {
    let venv = aphex_tests::repo_root().join(".venv/bin/cargo-lambda");
    if venv.exists() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("cargo-lambda")).find(|p| p.exists()))
        .expect(
            "cargo-lambda not found on PATH or in .venv/bin: pip install cargo-lambda into the repo's .venv",
        )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `cargo lambda watch` and the function it runs, stopped as a process group when dropped.
struct Watch {
    child: Child,
    log: PathBuf,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        std::thread::sleep(Duration::from_millis(500));
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn start_watch(port: u16, kubeconfig: &std::path::Path, log: PathBuf) -> Watch {
    use std::os::unix::process::CommandExt as _;
    let root = aphex_tests::repo_root();
    let out = std::fs::File::create(&log).expect("log file");
    let child = Command::new(cargo_lambda())
        .args([
            "lambda",
            "watch",
            "-p",
            "webhook",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "--ignore-changes",
        ])
        .current_dir(&root)
        // `cargo test` holds the workspace target dir's lock while tests run: build elsewhere.
        .env("CARGO_TARGET_DIR", root.join("target/lambda-e2e"))
        .env("KUBECONFIG", kubeconfig)
        .env("APHEX_WEBHOOK_SECRET", SECRET)
        .env("APHEX_BRANCHES", "master,release/*")
        .env("APHEX_NAMESPACE", "argo")
        .env("APHEX_TEMPLATE", "aphex-pipeline")
        .env("APHEX_ARGO_URL", "https://argo.example.com")
        .env_remove("APHEX_WEBHOOK_SECRET_ARN")
        .env_remove("APHEX_TAGS")
        .env("RUST_LOG", "info")
        // A region up front spares the SDK a metadata-service lookup (there is none here).
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .process_group(0)
        .spawn()
        .expect("start cargo lambda watch");
    Watch { child, log }
}

fn github(name: &str) -> Value {
    let path = aphex_tests::fixtures_dir().join("github").join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

struct Post {
    event: &'static str,
    delivery: String,
    body: Vec<u8>,
    content_type: &'static str,
    secret: &'static str,
}

impl Post {
    fn json(event: &'static str, delivery: &str, payload: &Value) -> Self {
        Self {
            event,
            delivery: delivery.to_owned(),
            body: serde_json::to_vec(payload).unwrap(),
            content_type: "application/json",
            secret: SECRET,
        }
    }
}

async fn send(client: &reqwest::Client, url: &str, post: &Post) -> reqwest::Result<(u16, Value)> {
    let signature = Secret::new(post.secret).unwrap().sign(&post.body);
    let resp = client
        .post(url)
        .header("X-GitHub-Event", post.event)
        .header("X-GitHub-Delivery", &post.delivery)
        .header("X-Hub-Signature-256", signature)
        .header("Content-Type", post.content_type)
        .header("User-Agent", "GitHub-Hookshot/e2e")
        .body(post.body.clone())
        .send()
        .await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_under_cargo_lambda_watch_starts_exactly_one_workflow_per_delivery() {
    let kube = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.write_kubeconfig(dir.path());
    let port = free_port();
    let started = Instant::now();
    let watch = start_watch(port, &kubeconfig, dir.path().join("watch.log"));
    let url = format!("http://127.0.0.1:{port}/lambda-url/webhook/");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(900)).build().unwrap();

    // The first request waits while cargo lambda compiles and starts the function.
    let ping = Post::json("ping", "e2e-ping", &github("octokit_ping_repository.json"));
    let deadline = Instant::now() + Duration::from_secs(1500);
    let (status, body) = loop {
        match send(&client, &url, &ping).await {
            Ok(r) => break r,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!(
                "no answer from cargo lambda watch: {e}\n{}",
                std::fs::read_to_string(&watch.log).unwrap_or_default()
            ),
        }
    };
    eprintln!(
        "cold start under cargo lambda watch (watch start, compile included, to first response): {:?}",
        started.elapsed()
    );
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("pong")),
        "{body}\n{}",
        std::fs::read_to_string(&watch.log).unwrap_or_default()
    );

    // One delivery posted 5 times concurrently: one 202, four "already started".
    let push = github("octokit_push_branch_created_with_commit.json");
    let delivery = "9a7e2c40-8f2b-11ef-9d1c-3f6b1a0e2d11";
    let posts: Vec<Post> = (0..5).map(|_| Post::json("push", delivery, &push)).collect();
    let answers = futures::future::join_all(posts.iter().map(|p| send(&client, &url, p))).await;
    let mut statuses: Vec<(u16, String)> = answers
        .into_iter()
        .map(|r| r.unwrap())
        .map(|(s, b)| (s, b["status"].as_str().unwrap_or("").to_owned()))
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            (200, "already started".to_owned()),
            (200, "already started".to_owned()),
            (200, "already started".to_owned()),
            (200, "already started".to_owned()),
            (202, "started".to_owned())
        ]
    );

    // Nothing for a bad signature, an ignored branch, a tag, a branch or tag deletion.
    let mut forged = Post::json("push", "e2e-forged", &push);
    forged.secret = "not the secret";
    let mut feature = push.clone();
    feature["ref"] = "refs/heads/feature/x".into();
    let mut branch_deleted = github("octokit_push_tag_deleted.json");
    branch_deleted["ref"] = "refs/heads/master".into();
    let cases = [
        (forged, 401, "rejected"),
        (Post::json("push", "e2e-feature", &feature), 200, "ignored"),
        (Post::json("push", "e2e-tag", &github("octokit_push_tag_created.json")), 200, "ignored"),
        (Post::json("push", "e2e-tag-deleted", &github("octokit_push_tag_deleted.json")), 200, "ignored"),
        (Post::json("push", "e2e-branch-deleted", &branch_deleted), 200, "ignored"),
        (Post::json("pull_request", "e2e-pr", &github("octokit_pull_request_opened.json")), 200, "ignored"),
    ];
    for (post, status, word) in &cases {
        let (got, body) = send(&client, &url, post).await.unwrap();
        assert_eq!((got, body["status"].as_str()), (*status, Some(*word)), "{}: {body}", post.delivery);
    }

    // A form-encoded delivery of another push is its own run.
    let form = url_form(&serde_json::to_string(&push).unwrap());
    let form_post = Post {
        event: "push",
        delivery: "e2e-form".into(),
        body: form.into_bytes(),
        content_type: "application/x-www-form-urlencoded",
        secret: SECRET,
    };
    let (status, body) = send(&client, &url, &form_post).await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["url"], "https://argo.example.com/workflows/argo/aphex-e2e-form");

    // What the API server holds: exactly the two runs, with the payload's arguments.
    let workflows = kube.list("argoproj.io/v1alpha1", "argo", "workflows");
    let mut names: Vec<&str> = workflows.iter().map(|w| w["metadata"]["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, [format!("aphex-{delivery}").as_str(), "aphex-e2e-form"]);
    let wf = kube.get("argoproj.io/v1alpha1", "argo", "workflows", &format!("aphex-{delivery}")).unwrap();
    assert_eq!(wf["spec"]["workflowTemplateRef"]["name"], "aphex-pipeline");
    let args: Vec<(String, String)> = wf["spec"]["arguments"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["value"].as_str().unwrap().to_owned()))
        .collect();
    let expect = [
        ("repo-url", push["repository"]["clone_url"].as_str().unwrap()),
        ("commit-sha", push["after"].as_str().unwrap()),
        ("branch", "master"),
        ("delivery-id", delivery),
        ("pusher", push["pusher"]["name"].as_str().unwrap()),
    ];
    assert_eq!(args, expect.map(|(k, v)| (k.to_owned(), v.to_owned())));
    assert_eq!(wf["metadata"]["labels"]["aphex.dev/commit"], push["after"]);
    assert_eq!(wf["metadata"]["labels"]["aphex.dev/delivery"], delivery);
    assert_eq!(wf["metadata"]["labels"]["aphex.dev/branch"], "master");

    // The API server saw exactly the six creates (5 concurrent + form), no other writes.
    let writes: Vec<String> = kube
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect();
    assert_eq!(writes.len(), 6, "{writes:#?}");
    assert_eq!(writes.iter().filter(|w| w.ends_with(" 201")).count(), 2, "{writes:#?}");
    assert_eq!(writes.iter().filter(|w| w.ends_with(" 409")).count(), 4, "{writes:#?}");
    drop(watch);
}

fn url_form(payload: &str) -> String {
    let mut out = String::from("payload=");
    for b in payload.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
