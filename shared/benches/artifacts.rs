//! Packaging and unpacking a CDK-app-like work tree through the local store, as `aphex run --local`
//! does: 2,000 JavaScript-like files of 2-64 KiB (about 64 MiB, like a slice of `node_modules`).
//! Measures select + tar + zstd + sha256 + store (upload), and store read + unzstd + untar + sha256
//! verification (download). Target: the demo's 234 MiB tree packs and unpacks in well under 1 s.

use std::hint::black_box;

use aphex::artifacts::{ArtifactRef, LocalStore, download, upload};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Deterministic, compressible text (identifiers and punctuation, like minified JavaScript).
fn tree(root: &std::path::Path, files: usize) -> u64 {
    let words = ["function", "return", "const", "exports", "require", "this", "null", "=>", "{", "}", ";"];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut total = 0u64;
    for i in 0..files {
        let size = 2048 + (i * 7919) % (62 * 1024);
        let mut text = String::with_capacity(size + 16);
        while text.len() < size {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push_str(words[(state % words.len() as u64) as usize]);
            text.push(if state.is_multiple_of(5) { '\n' } else { ' ' });
        }
        let path = root.join(format!("node_modules/pkg-{}/lib/file-{i}.js", i % 97));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
        total += text.len() as u64;
    }
    total
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let src = tempfile::tempdir().unwrap();
    let bytes = tree(src.path(), 2000);
    let state = tempfile::tempdir().unwrap();
    let store = LocalStore::new(state.path().join("store"));
    let at = ArtifactRef::new("bench/app", "0000000", time::OffsetDateTime::UNIX_EPOCH);
    let mut group = c.benchmark_group("artifacts");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("package_and_store", |b| {
        b.iter(|| rt.block_on(upload(&store, black_box(src.path()), &[], &at)).unwrap())
    });
    group.bench_function("fetch_verify_unpack", |b| {
        b.iter(|| {
            let dest = tempfile::tempdir_in(state.path()).unwrap();
            rt.block_on(download(&store, &at, dest.path())).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
