//! Rendering a large pipeline: 100 environments x 30 stacks (3,000 stacks, fan-in dependencies).
//! Measures plan, render to typed structs, YAML serialization, and the whole `render_config`
//! (plan checks + render + strict Argo schema validation). Target: render < 10 ms.

use std::fmt::Write;
use std::hint::black_box;

use aphex::{argo, plan, template};
use criterion::{Criterion, criterion_group, criterion_main};

fn large_config(envs: usize, stacks: usize) -> aphex::config::Config {
    let mut y = String::from(
        "version: \"1.0\"\npipeline: { name: big, repository: acme/big }\nbuild: { commands: [npm ci, npm run build] }\nenvironments:\n",
    );
    for e in 0..envs {
        let _ = writeln!(
            y,
            "  - name: env-{e}\n    region: us-east-1\n    account: \"{:012}\"",
            100_000_000_000u64 + e as u64
        );
        if e % 10 == 9 {
            y.push_str("    approval: manual\n");
        }
        if e % 2 == 0 {
            y.push_str("    tests: { commands: [npm run integ] }\n");
        }
        y.push_str("    stacks:\n");
        for s in 0..stacks {
            // Waves of five: each stack depends on two stacks of the previous wave.
            let deps = if s >= 5 { format!("[S{}, S{}]", s - 5, (s / 5 - 1) * 5) } else { "[]".into() };
            let _ = writeln!(y, "      - {{ name: S{s}, dependsOn: {deps} }}");
        }
    }
    aphex::config::parse("bench.yaml", &y).unwrap_or_else(|d| panic!("{d:?}"))
}

fn bench(c: &mut Criterion) {
    let config = large_config(100, 30);
    let opts =
        argo::RenderOptions::for_config(&config, Some("0123456789abcdef0123456789abcdef01234567".into()));
    let p = plan::build(&config);
    let t = argo::render(&p, &opts).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "100 envs x 30 stacks: {} templates, {} bytes of YAML",
        t.spec.templates.len(),
        argo::to_yaml(&t).len()
    );

    c.bench_function("plan 100x30", |b| b.iter(|| plan::build(black_box(&config))));
    c.bench_function("render 100x30 (plan + WorkflowTemplate)", |b| {
        b.iter(|| argo::render(&plan::build(black_box(&config)), &opts))
    });
    c.bench_function("render 100x30 to YAML", |b| {
        b.iter(|| {
            argo::to_yaml(
                &argo::render(&plan::build(black_box(&config)), &opts).unwrap_or_else(|e| panic!("{e}")),
            )
        })
    });
    c.bench_function("render_config 100x30 (checks + render + strict Argo schema)", |b| {
        b.iter(|| template::render_config(black_box(&config), None))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
