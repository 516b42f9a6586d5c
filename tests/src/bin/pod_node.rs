//! `aphex-pod-node`: the stand-in node of the test cluster (see `aphex_tests::pod_node`).
//!
//! ```text
//! aphex-pod-node --kubeconfig FILE --state-dir DIR --runner-bin-dir DIR --api-port PORT --ca-file FILE
//! aphex-pod-node exec-in-pod --bind SRC:DST... --workdir DIR -- COMMAND ARGS...   (internal)
//! ```

use std::path::PathBuf;

use anyhow::Context as _;
use aphex_tests::pod_node::{NodeSettings, PodNode};
use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    kubeconfig: PathBuf,
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long)]
    runner_bin_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1")]
    api_host: String,
    #[arg(long)]
    api_port: u16,
    #[arg(long)]
    ca_file: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("exec-in-pod") {
        // Only returns when the exec failed.
        let err = aphex_tests::pod_node::exec_in_pod(&argv[2..]);
        eprintln!("exec-in-pod: {err}");
        std::process::exit(127);
    }
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await?;
        let client = kube::Client::try_from(config)?;
        std::fs::create_dir_all(&args.state_dir).context("--state-dir")?;
        let exec_helper = args.state_dir.join(".aphex-pod-node-exec");
        std::fs::copy(std::env::current_exe()?, &exec_helper).context("copying the node's binary")?;
        let settings = NodeSettings {
            exec_helper,
            state_dir: args.state_dir,
            runner_bin_dir: std::fs::canonicalize(&args.runner_bin_dir).context("--runner-bin-dir")?,
            api_host: args.api_host,
            api_port: args.api_port,
            ca_pem: std::fs::read(&args.ca_file).context("--ca-file")?,
        };
        PodNode::new(client, settings).serve().await?;
        Ok(())
    })
}
