//! `aphex plan`: prints the pipeline plan readably (stages, gates, stack waves, command lines), or as
//! JSON for tools.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use aphex::config::DEFAULT_CONFIG_FILE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = match crate::render::load_plan(&args.config) {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    let text = match args.format {
        Format::Text => plan.to_string(),
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&plan)?),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
