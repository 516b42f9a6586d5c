//! The `aphex` command line: parses arguments (the only place that knows clap) and hands off to
//! `aphex-shared`. Each subcommand lives in its own module with its `Args` and `run`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Validation, planning and rendering allocate many small values; mimalloc is markedly faster at that
// than the system allocator (see shared/benches/validate.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod deploy;
mod graph;
mod plan;
mod render;
mod run;
mod step;
mod template;
mod validate;

#[derive(Debug, Parser)]
#[command(name = "aphex", version, about = "AphexPipeline: self-modifying deployments of AWS CDK apps")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// One variant per subcommand; each module owns its `Args` and `run`.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check an aphex-config.yaml and report every problem with its line, column and field.
    Validate(validate::Args),
    /// Print the Argo WorkflowTemplate the config produces.
    Render(render::Args),
    /// Draw the pipeline (stages, approval gates, stack DAG per environment) as Mermaid or DOT.
    Graph(graph::Args),
    /// Print the pipeline plan: stages in order, their dependencies, stack waves and commands.
    Plan(plan::Args),
    /// Apply, diff, list or roll back the live WorkflowTemplate (self-modification).
    Template(template::Args),
    /// Run one pipeline stage, as an Argo pod does (`aphex step build --repo-url ... --run-id ...`).
    Step(Box<step::Args>),
    /// Run the whole pipeline on this machine: `aphex run --local [--approve]`.
    Run(run::Args),
    /// Synthesize and deploy the CDK stacks of one environment through the CloudFormation API.
    Deploy(deploy::Args),
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Render(args) => render::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Template(args) => template::run(args),
        Command::Step(args) => step::run(*args),
        Command::Run(args) => run::run(args),
        Command::Deploy(args) => deploy::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `APHEX_LOG` (default `warn`), so stdout stays machine-readable.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("APHEX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
