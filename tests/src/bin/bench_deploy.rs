//! Side-by-side deploy benchmark against one moto server: a pre-synthesized 20-stack assembly (a
//! dependency DAG four deep), deployed by `aphex deploy --method direct` and by the CDK CLI
//! (`cdk deploy --app <assembly> --all --method=direct ...`), for create, update and no-op.
//! Prints wall times and ratios. Run with `scripts/bench-deploy [--release] [--runs N] [--verbose]`.
//!
//! moto imports each service's code on its first request (the first CloudFormation call of a fresh
//! server takes most of a second), so one untimed deploy warms the server before anything is timed;
//! otherwise whichever tool goes first pays for it. With `--runs N` each tool deploys N times
//! (create, update, no-op on a reset server each time) and the medians are reported.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aphex_tests::deploy_support::{GenStack, aphex_bin_path, write_assembly, write_config};
use aphex_tests::moto::Moto;

const ACCOUNT: &str = "123456789012"; // moto's default: the CDK CLI deploys env-agnostic stacks there
const REGION: &str = "us-east-1";
const LEVELS: usize = 4;
const WIDTH: usize = 5;

fn stacks(version: &str) -> Vec<GenStack> {
    let mut out = Vec::new();
    for level in 0..LEVELS {
        for i in 0..WIDTH {
            let id = format!("Bench{level}x{i}");
            let deps: Vec<String> = if level == 0 { vec![] } else { vec![format!("Bench{}x{i}", level - 1)] };
            let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
            let mut s = GenStack::parameter(&id, &deps, &format!("{id}-{version}"));
            s.tags = vec![("bench".into(), "aphex".into())];
            out.push(s);
        }
    }
    out
}

fn run(cmd: &mut Command, what: &str) -> Duration {
    let started = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let took = started.elapsed();
    if std::env::args().any(|a| a == "--verbose") {
        eprintln!(
            "==> {what} ({:.0} ms)\n{}",
            took.as_secs_f64() * 1000.0,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if !out.status.success() {
        eprintln!(
            "{what} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    took
}

fn aphex(moto: &Moto, dir: &Path, assembly: &Path) -> Command {
    let mut c = Command::new(aphex_bin_path());
    c.current_dir(dir).envs(moto.env()).args([
        "deploy",
        "--env",
        "bench",
        "--assembly",
        assembly.to_str().unwrap_or_default(),
        "--method",
        "direct",
        "--concurrency",
        "4",
        "--outputs",
        "aphex-outputs.json",
    ]);
    c
}

fn cdk(moto: &Moto, dir: &Path, assembly: &Path, cdk_bin: &Path) -> Command {
    let mut c = Command::new(cdk_bin);
    c.current_dir(dir)
        .envs(moto.env())
        .env("CDK_HOME", dir.join("cdk-home"))
        .env("CDK_DISABLE_CLI_TELEMETRY", "true")
        .env("CDK_DISABLE_VERSION_CHECK", "true")
        .args(["deploy", "--app", assembly.to_str().unwrap_or_default(), "--all", "--method=direct"])
        .args([
            "--previous-parameters=false",
            "--require-approval",
            "never",
            "--concurrency",
            "4",
            "--no-notices",
        ])
        .args(["--progress", "events"]);
    c
}

#[tokio::main]
async fn main() {
    let demo = aphex_tests::deploy_support::demo_app();
    let cdk_bin = demo.join("node_modules/.bin/cdk");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let v1 = dir.join("v1.out");
    let v2 = dir.join("v2.out");
    write_assembly(&v1, "aws://unknown-account/unknown-region", &stacks("v1"));
    write_assembly(&v2, "aws://unknown-account/unknown-region", &stacks("v2"));
    let names: Vec<String> = stacks("v1").iter().map(|s| s.id.clone()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    write_config(&dir.join("aphex-config.yaml"), "bench", ACCOUNT, REGION, &names);

    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1);
    let moto = Moto::start();
    // Untimed warm-up (see the module doc).
    moto.bootstrap(ACCOUNT, REGION).await;
    run(&mut aphex(&moto, dir, &v1), "warm-up aphex deploy");
    let phases = ["create", "update", "no-op"];
    let mut aphex_times: Vec<Vec<Duration>> = vec![Vec::new(); phases.len()];
    let mut cdk_times: Vec<Vec<Duration>> = vec![Vec::new(); phases.len()];
    for _ in 0..runs {
        moto.reset();
        moto.bootstrap(ACCOUNT, REGION).await;
        for (i, assembly) in [&v1, &v2, &v2].into_iter().enumerate() {
            aphex_times[i].push(run(&mut aphex(&moto, dir, assembly), "aphex deploy"));
        }
        moto.reset();
        moto.bootstrap(ACCOUNT, REGION).await;
        for (i, assembly) in [&v1, &v2, &v2].into_iter().enumerate() {
            cdk_times[i].push(run(&mut cdk(&moto, dir, assembly, &cdk_bin), "cdk deploy"));
        }
    }

    let build =
        if aphex_bin_path().components().any(|c| c.as_os_str() == "release") { "release" } else { "debug" };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "20 stacks, DAG {LEVELS} deep, concurrency 4, --method direct, one moto server, median of {runs} run(s)\naphex {build} build: {}; load average: {}",
        aphex_bin_path().display(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("{:<8} {:>12} {:>12} {:>14}", "phase", "aphex", "cdk", "aphex/cdk");
    for (i, phase) in phases.iter().enumerate() {
        let (a, c) = (median(&mut aphex_times[i]), median(&mut cdk_times[i]));
        println!(
            "{:<8} {:>10.0}ms {:>10.0}ms {:>13.3}",
            phase,
            a.as_secs_f64() * 1000.0,
            c.as_secs_f64() * 1000.0,
            a.as_secs_f64() / c.as_secs_f64()
        );
    }
    if runs > 1 {
        for (i, phase) in phases.iter().enumerate() {
            let ms = |v: &[Duration]| {
                v.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0)).collect::<Vec<_>>().join(" ")
            };
            println!(
                "{phase:<8} aphex runs (ms): {}; cdk runs (ms): {}",
                ms(&aphex_times[i]),
                ms(&cdk_times[i])
            );
        }
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}
