//! `aphex graph`: draws the pipeline (stages, gates, each environment's stack DAG) as Mermaid or DOT.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use aphex::config::DEFAULT_CONFIG_FILE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Mermaid flowchart (Markdown ```mermaid blocks, mermaid.live).
    Mermaid,
    /// Graphviz DOT (`| dot -Tsvg > pipeline.svg`).
    Dot,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Mermaid)]
    pub format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = match crate::render::load_plan(&args.config) {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    let text = match args.format {
        Format::Mermaid => aphex::graph::mermaid(&plan),
        Format::Dot => aphex::graph::dot(&plan),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
