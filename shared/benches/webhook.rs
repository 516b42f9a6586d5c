//! Webhook intake cost: decode + verify + parse + filter + build the Workflow (`Intake::prepare`) on a
//! realistic ~7 KB push and a 1 MB push, both derived from GitHub's real push payload. Besides
//! criterion's figures, prints the per-delivery latency distribution (p50/p99) and writes the payloads
//! with their signatures to `$CARGO_TARGET_TMPDIR/webhook-bench/` for the @octokit/webhooks side
//! (`scripts/bench-webhook` runs both and prints the ratio).

use std::hint::black_box;
use std::time::{Duration, Instant};

use aphex::webhook::{Intake, Prepared, Secret, SecretSource, WebhookConfig, WebhookRequest};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

const SECRET: &str = "bench-secret-0123456789";

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/github/octokit_push_branch_created_with_commit.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("push fixture")).expect("push fixture is JSON")
}

/// A push to `main` with commits cloned from the real one (ids, messages and file lists varied),
/// serialised compactly as GitHub sends it, grown until it reaches `min_bytes`.
fn push_payload(min_bytes: usize, files_per_commit: usize) -> Vec<u8> {
    let mut push = fixture();
    push["ref"] = "refs/heads/main".into();
    push["created"] = false.into();
    push["before"] = "a10867b14bb761a232cd80139fbd4c0d33264240".into();
    let template = push["commits"][0].clone();
    let mut commits = Vec::new();
    loop {
        let i = commits.len();
        let mut c = template.clone();
        let id = format!("{:040x}", 0x6113728f27ae82c7_u64 as u128 * (i as u128 + 1));
        c["id"] = id.clone().into();
        c["url"] = format!("https://github.com/Codertocat/Hello-World/commit/{id}").into();
        c["message"] = format!(
            "Change {i}: adjust the staging stack's alarms\n\nKeeps the thresholds in line with prod."
        )
        .into();
        let files: Vec<Value> =
            (0..files_per_commit).map(|f| json!(format!("lib/stacks/service-{i}-{f}.ts"))).collect();
        c["modified"] = files.into();
        commits.push(c);
        push["commits"] = Value::Array(commits.clone());
        push["head_commit"] = commits.last().cloned().unwrap_or(Value::Null);
        let bytes = serde_json::to_vec(&push).expect("serialise");
        if bytes.len() >= min_bytes {
            return bytes;
        }
    }
}

fn request(body: &[u8]) -> WebhookRequest {
    let mut h = HeaderMap::new();
    h.insert("x-github-event", HeaderValue::from_static("push"));
    h.insert("x-github-delivery", HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    let sig = Secret::new(SECRET).expect("secret").sign(body);
    h.insert("x-hub-signature-256", HeaderValue::from_str(&sig).expect("header"));
    WebhookRequest::new(h, body.to_vec())
}

fn intake() -> Intake {
    let config = WebhookConfig::from_lookup(|k| match k {
        "APHEX_WEBHOOK_SECRET" => Some(SECRET.to_owned()),
        "APHEX_BRANCHES" => Some("main,release/*".to_owned()),
        _ => None,
    })
    .expect("config");
    let SecretSource::Env(secrets) = config.secret.clone() else { unreachable!("env secret") };
    Intake::new(&config, secrets).expect("intake")
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
}

fn cases() -> Vec<Case> {
    vec![
        Case { name: "push-7k", body: push_payload(7 * 1024, 3) },
        Case { name: "push-1m", body: push_payload(1024 * 1024, 400) },
    ]
}

fn bench(c: &mut Criterion) {
    let intake = intake();
    let mut group = c.benchmark_group("webhook_prepare");
    for case in cases() {
        let req = request(&case.body);
        assert!(matches!(intake.prepare(&req), Ok(Prepared::Start { .. })), "{} must start a run", case.name);
        group.throughput(Throughput::Bytes(case.body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(case.name), &req, |b, req| {
            b.iter(|| intake.prepare(black_box(req)))
        });
    }
    group.finish();
}

/// One timed call per delivery, so p99 is the p99 of a single delivery (criterion reports means of
/// batches). Also writes what the Node side needs.
fn latency_and_octokit_inputs() {
    let intake = intake();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("webhook-bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut manifest = Vec::new();
    let mut results = Vec::new();
    for case in cases() {
        let req = request(&case.body);
        let file = format!("{}.json", case.name);
        std::fs::write(dir.join(&file), &case.body).expect("write payload");
        let signature = Secret::new(SECRET).expect("secret").sign(&case.body);
        manifest.push(json!({"name": case.name, "file": file, "signature": signature}));

        let budget = Duration::from_secs(3);
        let warm_end = Instant::now() + budget / 3;
        while Instant::now() < warm_end {
            black_box(intake.prepare(black_box(&req)).is_ok());
        }
        let mut times = Vec::new();
        let end = Instant::now() + budget;
        while Instant::now() < end {
            let t0 = Instant::now();
            black_box(intake.prepare(black_box(&req)).is_ok());
            times.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        times.sort_by(f64::total_cmp);
        let q = |f: f64| times[((f * times.len() as f64) as usize).min(times.len() - 1)];
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let line = json!({
            "name": case.name, "bytes": case.body.len(), "iterations": times.len(),
            "mean_us": mean, "p50_us": q(0.5), "p99_us": q(0.99),
        });
        println!("webhook latency {line}");
        results.push(line);
    }
    let manifest = json!({"secret": SECRET, "seconds": 3, "payloads": manifest});
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("write manifest");
    let rust: String = results.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(dir.join("rust.jsonl"), rust).expect("write results");
    println!("webhook bench inputs in {}", dir.display());
}

criterion_group!(benches, bench);

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: keep that quick.
    let full = std::env::args().any(|a| a == "--bench");
    benches();
    if full {
        latency_and_octokit_inputs();
    }
    Criterion::default().configure_from_args().final_summary();
}
