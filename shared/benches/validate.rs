//! How long `aphex validate` takes on a large config: 50 environments x 20 stacks (1,000 stacks with
//! dependsOn chains), parsed, checked against the schema and the rules, and deserialized. Target: < 2 ms.

use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

// The allocator of the `aphex` binary, so the figures are what `aphex validate` spends.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A valid config with `envs` environments of `stacks` stacks each.
fn large_config(envs: usize, stacks: usize) -> String {
    let regions = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"];
    let mut out = String::from(
        "version: \"1.0\"\npipeline:\n  repository: acme/platform\n  branches: [main, \"release/*\"]\nbuild:\n  commands: [npm ci, npm run build]\n  env:\n    NODE_OPTIONS: --max-old-space-size=4096\nenvironments:\n",
    );
    for e in 0..envs {
        let account = format!("{:012}", 100_000_000_000u64 + e as u64);
        writeln!(out, "  - name: env-{e}").unwrap();
        writeln!(out, "    region: {}", regions[e % regions.len()]).unwrap();
        writeln!(out, "    account: \"{account}\"").unwrap();
        writeln!(out, "    role: arn:aws:iam::{account}:role/aphex-deploy").unwrap();
        if e % 10 == 9 {
            out.push_str("    approval: manual\n");
        }
        out.push_str("    env:\n      STAGE: env\n    stacks:\n");
        for s in 0..stacks {
            writeln!(out, "      - name: Stack{s}-env-{e}").unwrap();
            writeln!(out, "        path: lib/stack-{s}.ts").unwrap();
            if s > 0 {
                let also = if s > 2 { format!(", Stack{}-env-{e}", s / 2) } else { String::new() };
                writeln!(out, "        dependsOn: [Stack{}-env-{e}{also}]", s - 1).unwrap();
            }
        }
        out.push_str("    tests:\n      commands: [npm run integ]\n");
    }
    out.push_str(
        "notifications:\n  slack:\n    webhookSecret: aphex/slack-webhook\n  on: [failure, approval]\n",
    );
    out
}

fn bench(c: &mut Criterion) {
    let text = large_config(50, 20);
    // Sanity: the benchmark measures the success path, on a config that is valid.
    let report = aphex::config::check("bench.yaml", &text);
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics.first());
    assert_eq!(report.config.map(|c| c.environments.len()), Some(50));
    println!("config: 50 environments x 20 stacks, {} lines, {} bytes", text.lines().count(), text.len());

    c.bench_function("validate 50 environments x 20 stacks", |b| {
        b.iter(|| aphex::config::check("bench.yaml", black_box(&text)))
    });

    // The same config with one error per environment: diagnostics and messages on the hot path.
    let broken = text.replace("region: us-west-2", "region: us-wset-2");
    assert!(!aphex::config::check("bench.yaml", &broken).diagnostics.is_empty());
    c.bench_function("validate 50 x 20 with 10 errors", |b| {
        b.iter(|| aphex::config::check("bench.yaml", black_box(&broken)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
