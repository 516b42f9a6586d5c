//! `aphex validate`: checks an `aphex-config.yaml` and prints every problem, compiler style on stderr
//! or as JSON on stdout. Exit 0 when valid, 1 when invalid, 2 when the file cannot be read.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use aphex::config::{self, DEFAULT_CONFIG_FILE, Severity};

/// Output format of the diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Compiler-style text on stderr.
    Human,
    /// A JSON array of {file, line, column, path, severity, message, hint} on stdout.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config file to check.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,

    /// How to print the diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// Exit code for an invalid config (clap uses 2 for usage errors; we use it for I/O errors too).
const INVALID: u8 = 1;
const IO_ERROR: u8 = 2;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = args.config.display().to_string();
    let bytes = match std::fs::read(&args.config) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("error: cannot read config file {file}: {err}");
            if err.kind() == std::io::ErrorKind::NotFound {
                eprintln!("  = hint: run in the repository root, or pass --config PATH");
            }
            return Ok(ExitCode::from(IO_ERROR));
        }
    };
    let report = config::check_bytes(&file, &bytes);
    let source = String::from_utf8_lossy(&bytes);
    let errors = report.count(Severity::Error);
    let warnings = report.count(Severity::Warning);

    match args.format {
        Format::Json => {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", config::render_json(&report.diagnostics))?;
        }
        Format::Human => eprint!("{}", config::render_human(&report.diagnostics, &source)),
    }

    match &report.config {
        Some(cfg) => {
            let stacks: usize = cfg.environments.iter().map(|e| e.stacks.len()).sum();
            eprintln!(
                "{file}: valid ({} environment{}, {stacks} stack{}{})",
                cfg.environments.len(),
                plural(cfg.environments.len()),
                plural(stacks),
                if warnings > 0 {
                    format!(", {warnings} warning{}", plural(warnings))
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "error: {file} is invalid: {errors} error{}{}",
                plural(errors),
                if warnings > 0 {
                    format!(", {warnings} warning{}", plural(warnings))
                } else {
                    String::new()
                }
            );
            Ok(ExitCode::from(INVALID))
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
