//! `aphex render`: prints the WorkflowTemplate the config produces (checked against Argo's schema).
//! Exit 0 on success, 1 when the config is invalid, 2 when it cannot be read.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aphex::config::{self, Config, DEFAULT_CONFIG_FILE};
use aphex::template::{self, TemplateError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,

    /// The commit the config comes from (recorded in `aphex.dev/generated-from-commit`).
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
}

pub(crate) const INVALID: u8 = 1;
pub(crate) const IO_ERROR: u8 = 2;

/// Reads and validates the config; on failure prints why (compiler style) and gives the exit code.
pub(crate) fn load(path: &Path) -> Result<(Config, String), ExitCode> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("error: cannot read config file {file}: {err}");
            if err.kind() == std::io::ErrorKind::NotFound {
                eprintln!("  = hint: run in the repository root, or pass --config PATH");
            }
            return Err(ExitCode::from(IO_ERROR));
        }
    };
    match config::parse(&file, &text) {
        Ok(cfg) => Ok((cfg, text)),
        Err(diagnostics) => {
            eprint!("{}", config::render_human(&diagnostics, &text));
            eprintln!("error: {file} is not a valid config; nothing was rendered");
            Err(ExitCode::from(INVALID))
        }
    }
}

/// Reads and validates the config and checks its plan; on failure prints why and gives the exit code.
pub(crate) fn load_plan(path: &Path) -> Result<aphex::plan::Plan, ExitCode> {
    let (cfg, _) = load(path)?;
    if let Err(err) = aphex::plan::check(&cfg) {
        eprintln!("error: {err}");
        return Err(ExitCode::from(INVALID));
    }
    Ok(aphex::plan::build(&cfg))
}

/// Prints a template error; config and plan problems are the user's (1), anything else is ours.
pub(crate) fn report(err: &TemplateError) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(INVALID)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (cfg, _) = match load(&args.config) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let rendered = match template::render_config(&cfg, args.commit.as_deref()) {
        Ok(r) => r,
        Err(err) => return Ok(report(&err)),
    };
    let text = match args.format {
        Format::Yaml => aphex::argo::to_yaml(&rendered.template),
        Format::Json => aphex::argo::to_json(&rendered.template),
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
