//! Measures packaging + upload of a work tree to S3, then download + sha256 verification + unpack into a
//! fresh directory (`scripts/bench-artifacts` runs it under `/usr/bin/time -v` against moto to report
//! peak memory). Usage: bench_artifacts DIR BUCKET.

use std::time::Instant;

use aphex::artifacts::{ArtifactRef, ArtifactStore, S3Store, download, s3_client_from_env, upload};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(bucket)) = (args.next(), args.next()) else {
        return Err("usage: bench_artifacts DIR BUCKET".into());
    };
    let client = s3_client_from_env().await;
    // An existing bucket is fine: the bench only needs somewhere to write.
    let _ = client.create_bucket().bucket(&bucket).send().await;
    let store = S3Store::new(client, &bucket);
    let at = ArtifactRef::new(
        "bench/artifacts",
        "0000000000000000000000000000000000000000",
        time::OffsetDateTime::now_utc(),
    );
    let started = Instant::now();
    let manifest = upload(&store, std::path::Path::new(&dir), &[], &at).await?;
    let elapsed = started.elapsed();
    let keys = store.list(&at.prefix).await?;
    let mib = manifest.total_bytes as f64 / (1024.0 * 1024.0);
    println!(
        "packaged+uploaded {} files, {:.0} MiB -> {:.0} MiB archive in {:.2} s ({:.0} MiB/s) to {}",
        manifest.files.len(),
        mib,
        manifest.archive_bytes as f64 / (1024.0 * 1024.0),
        elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64(),
        keys.iter().map(|k| store.location(k)).collect::<Vec<_>>().join(", ")
    );
    let upload_peak = peak_rss_mib();
    let dest =
        tempfile::tempdir_in(std::path::Path::new(&dir).parent().unwrap_or(std::path::Path::new(".")))?;
    let started = Instant::now();
    let fetched = download(&store, &at, dest.path()).await?;
    let elapsed = started.elapsed();
    println!(
        "downloaded+verified+unpacked {} files ({:.0} MiB) in {:.2} s ({:.0} MiB/s)",
        fetched.files.len(),
        mib,
        elapsed.as_secs_f64(),
        mib / elapsed.as_secs_f64()
    );
    if let (Some(up), Some(all)) = (upload_peak, peak_rss_mib()) {
        println!("peak resident memory: {up} MiB after package+upload, {all} MiB at the end");
    }
    Ok(())
}

/// The process's peak resident set size so far (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
