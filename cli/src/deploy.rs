//! `aphex deploy`: synthesize (or take a given assembly) and deploy one environment's stacks, printing
//! progress with timings on stderr and the outputs on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use aphex::deploy::{self, DeployOptions, Method, StackOutcome};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MethodArg {
    /// CreateChangeSet + ExecuteChangeSet.
    ChangeSet,
    /// CreateStack / UpdateStack.
    Direct,
}

/// Deploy the CDK stacks of one environment through the CloudFormation API.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The environment to deploy (a name from the config's environments).
    #[arg(long)]
    env: String,
    /// The config file; its folder is the work tree synth runs in.
    #[arg(long, default_value = aphex::config::DEFAULT_CONFIG_FILE)]
    config: PathBuf,
    /// A pre-synthesized cloud assembly (cdk.out); without it the app is synthesized first.
    #[arg(long)]
    assembly: Option<PathBuf>,
    /// Only these stacks (names, display names or patterns such as `Prod/*`), among the environment's.
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    stacks: Vec<String>,
    /// A stack parameter's value: `STACK:NAME=VALUE` (stack name or display name) or `NAME=VALUE`
    /// for every stack; repeatable. Over the app's and the config's values.
    #[arg(long = "parameters", value_name = "[STACK:]NAME=VALUE", value_parser = parse_parameter)]
    parameters: Vec<deploy::CliParameter>,
    /// On an update, a parameter given no value keeps the stack's current value (CloudFormation's
    /// UsePreviousValue) instead of its template default.
    #[arg(long)]
    previous_parameters: bool,
    /// The longest wait on one CloudFormation operation of a stack, in minutes (default: the
    /// environment's deployTimeoutMinutes, 60).
    #[arg(long, value_name = "MINUTES", value_parser = clap::value_parser!(u32).range(1..=1440))]
    timeout: Option<u32>,
    /// How many stacks deploy at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How stacks are deployed.
    #[arg(long, value_enum, default_value = "change-set")]
    method: MethodArg,
    /// Create and describe change sets, execute nothing, print what would change.
    #[arg(long)]
    dry_run: bool,
    /// Where to write the stack outputs as JSON `{stack: {key: value}}`.
    #[arg(long, default_value = "outputs.json")]
    outputs: PathBuf,
    /// The run id, carried in STS session names and change set names.
    #[arg(long, env = "APHEX_RUN_ID")]
    run_id: Option<String>,
    /// Print the whole report as JSON on stdout instead of the outputs.
    #[arg(long)]
    json: bool,
}

fn parse_parameter(arg: &str) -> Result<deploy::CliParameter, String> {
    arg.parse()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = aphex::config::load(&args.config).map_err(|e| match e {
        aphex::config::LoadError::Invalid { file, diagnostics, .. } => {
            let lines: Vec<String> = diagnostics
                .iter()
                .map(|d| format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message))
                .collect();
            anyhow::anyhow!("{file} is not a valid config:\n{}", lines.join("\n"))
        }
        other => anyhow::Error::new(other),
    })?;
    let work_dir = match args.config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut options = DeployOptions {
        concurrency: args.concurrency.max(1),
        method: match args.method {
            MethodArg::ChangeSet => Method::ChangeSet,
            MethodArg::Direct => Method::Direct,
        },
        dry_run: args.dry_run,
        stacks: args.stacks,
        parameters: args.parameters,
        previous_parameters: args.previous_parameters,
        timeout: args.timeout.map(|m| std::time::Duration::from_secs(u64::from(m) * 60)),
        assembly: args.assembly,
        outputs_file: if args.dry_run { None } else { Some(args.outputs.clone()) },
        progress: true,
        ..DeployOptions::default()
    };
    if let Some(id) = args.run_id {
        options.run_id = id;
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let report = runtime.block_on(deploy::deploy_environment(&config, &args.env, &options, &work_dir))?;

    eprintln!(
        "\n{} stack(s) in environment {} ({:.2}s):",
        report.stacks.len(),
        report.environment,
        report.duration_ms as f64 / 1000.0
    );
    for s in &report.stacks {
        let what = match &s.outcome {
            StackOutcome::Deployed => "deployed".to_owned(),
            StackOutcome::Unchanged => "unchanged".to_owned(),
            StackOutcome::NoChanges => "no changes".to_owned(),
            StackOutcome::Planned { changes } => deploy::summarize_changes(changes),
            StackOutcome::Failed { .. } => "FAILED".to_owned(),
            StackOutcome::NotStarted { .. } => "not started".to_owned(),
        };
        eprintln!("  {:<40} {:>7.2}s  {what}", s.display_name, s.duration_ms as f64 / 1000.0);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !args.dry_run {
        println!("{}", serde_json::to_string_pretty(&report.outputs)?);
        eprintln!("outputs written to {}", args.outputs.display());
    }
    if report.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!();
        for f in report.failures() {
            eprintln!("error: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}
