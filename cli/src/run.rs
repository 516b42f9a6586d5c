//! `aphex run --local`: the whole pipeline on this machine, the same plan and step code as the Argo
//! template, with live progress (indicatif, stderr) and a summary table with the pipeline's overhead.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use aphex::config::Environment;
use aphex::runner::{self, Adapters, Approver, LocalRun, Progress};
use aphex::steps::{self, OutputSink, RunInfo, StackUpdate, StageRecord, Status};
use clap::Args as ClapArgs;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, ClapArgs)]
pub struct Args {
    /// Run on this machine (the only mode so far; runs in the cluster start from the webhook).
    #[arg(long, required = true)]
    local: bool,
    /// The repository's work tree; the build runs here, in place.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The config file (default: aphex-config.yaml at the repository root).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Deploy only these environments (repeatable); default: all, in config order.
    #[arg(long = "env")]
    envs: Vec<String>,
    /// Grant every manual approval gate without asking.
    #[arg(long)]
    approve: bool,
    /// Where the run's artifacts, records and work tree go (default: <repo>/.aphex/runs/<run-id>).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    let repo = std::path::absolute(&args.repo).with_context(|| format!("{}", args.repo.display()))?;
    let config_path = match &args.config {
        Some(p) => std::path::absolute(p)?,
        None => repo.join(aphex::config::DEFAULT_CONFIG_FILE),
    };
    let config_file =
        config_path.strip_prefix(&repo).map(|p| p.to_string_lossy().into_owned()).map_err(|_| {
            anyhow::anyhow!(
                "the config {} must be inside the repository {}",
                config_path.display(),
                repo.display()
            )
        })?;
    let config = steps::load_config(&config_path)?;
    aphex::plan::check(&config).map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    for env in &args.envs {
        steps::environment(&config, env)?;
    }
    let plan = aphex::plan::build(&config);
    let approver: Arc<dyn Approver> =
        if args.approve { Arc::new(runner::AutoApprove) } else { Arc::new(TerminalApprover) };
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
        .unwrap_or_default();
    let run_id = format!("local-{stamp}-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let commit = steps::source::head_commit(&repo).await.unwrap_or_else(|_| "uncommitted".into());
    let head_branch = steps::source::head_branch(&repo).await.ok();
    // The same trigger settings as the webhook: say so when a push of this ref would start no run.
    let tags_at_head = steps::source::tags_at_head(&repo).await.unwrap_or_default();
    if let Some(warning) =
        aphex::webhook::triggers::local_run_warning(&config.pipeline, head_branch.as_deref(), &tags_at_head)
    {
        eprintln!("warning: {}: {warning}", config_path.display());
    }
    let branch = head_branch.unwrap_or_else(|| "local".into());
    let state_dir = args.state_dir.clone().unwrap_or_else(|| repo.join(".aphex").join("runs").join(&run_id));
    std::fs::create_dir_all(&state_dir).with_context(|| format!("{}", state_dir.display()))?;

    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let ui = Arc::new(Ui { multi: multi.clone(), bars: Mutex::new(HashMap::new()) });
    let deployer = Arc::new(steps::engine::EngineDeployer {
        method: steps::engine::EngineDeployer::method_from_env().map_err(anyhow::Error::msg)?,
        progress: false,
    });
    let adapters = Adapters {
        identity: Arc::new(steps::adapters::StsIdentity::from_env().await),
        deployer: deployer.clone(),
        updater: Arc::new(steps::adapters::OwnStackFirst {
            deployer,
            inner: Arc::new(steps::adapters::RenderToFile { path: state_dir.join("workflow-template.yaml") }),
            run_id: run_id.clone(),
        }),
        approver,
        progress: ui.clone(),
        sink: ui.clone(),
        // The record of the email subscriptions this tool made outlives the run: beside the runs.
        notify: steps::notify::NotifyAdapters::from_env(Arc::new(aphex::artifacts::LocalStore::new(
            repo.join(".aphex").join("state"),
        )))
        .await?,
    };
    let local = LocalRun {
        repo_dir: repo.clone(),
        config_file,
        only_envs: args.envs.clone(),
        state_dir: state_dir.clone(),
        run: RunInfo {
            run_id: run_id.clone(),
            pipeline: plan.pipeline.clone(),
            repo_url: repo.display().to_string(),
            commit_sha: commit,
            branch,
            delivery_id: Some("local".into()),
            pusher: std::env::var("USER").ok(),
        },
    };
    eprintln!("aphex run --local: {} ({} stages), run {run_id}", plan.pipeline, plan.stages.len() + 1);
    let summary = runner::run_local(&plan, &config, &local, &adapters).await?;
    multi.clear().ok();
    println!("outputs ({}):", summary.outputs_file.display());
    println!("{}", serde_json::to_string_pretty(&summary.record.outputs)?);
    println!();
    print!("{}", runner::summary_table(&summary));
    println!("run record: {}", summary.record_file.display());
    std::io::stdout().flush().ok();
    Ok(if summary.record.status == Status::Failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Live progress: one spinner per running stage, a line per finished stage and stack.
struct Ui {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Ui {
    fn print(&self, line: &str) {
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }
}

impl OutputSink for Ui {
    fn line(&self, stage: &str, line: &str) {
        self.print(&format!("  [{stage}] {line}"));
    }

    /// On a terminal, one spinner per deploying stack showing its latest event, and a line when it is
    /// done (or an event failed); otherwise (CI logs) every update as a plain line.
    fn stack(&self, stage: &str, stack: &str, update: &StackUpdate) {
        if self.multi.is_hidden() {
            self.line(stage, &update.line(stack));
            return;
        }
        let key = format!("{stage}/{stack}");
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        match update {
            StackUpdate::Started => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix:<22} {msg} {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(stack.to_owned());
                bar.set_message("started");
                bar.enable_steady_tick(Duration::from_millis(100));
                bars.insert(key, bar);
            }
            StackUpdate::Event { logical_id, status, reason, .. } => {
                if let Some(bar) = bars.get(&key) {
                    bar.set_message(format!("{logical_id} {status}"));
                }
                if status.contains("FAILED") {
                    let why = reason.as_deref().unwrap_or("");
                    let _ = self.multi.println(format!("  [{stage}] {stack}: {logical_id} {status} {why}"));
                }
            }
            StackUpdate::Done { .. } => {
                if let Some(bar) = bars.remove(&key) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                let _ = self.multi.println(format!("  [{stage}] {}", update.line(stack)));
            }
        }
    }
}

impl Progress for Ui {
    fn stage_started(&self, id: &str, title: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix:<14} {msg} {elapsed_precise}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(id.to_owned());
        bar.set_message(title.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        if self.multi.is_hidden() {
            eprintln!("> {id}: {title}");
        }
        self.bars.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), bar);
    }

    fn stage_finished(&self, record: &StageRecord) {
        {
            // The stage's bar and any stack bar of it still spinning (a stack that failed to start).
            let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
            let prefix = format!("{}/", record.id);
            let keys: Vec<String> =
                bars.keys().filter(|k| **k == record.id || k.starts_with(&prefix)).cloned().collect();
            for key in keys {
                if let Some(bar) = bars.remove(&key) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
            }
        }
        let mark = match record.status {
            Status::Succeeded => "ok  ",
            Status::Failed => "FAIL",
            Status::Skipped => "skip",
        };
        let secs = record.duration_ms as f64 / 1000.0;
        self.print(&format!("{mark} {:<16} {secs:>7.2}s", record.id));
        for stack in &record.stacks {
            let action = stack.action.clone().unwrap_or_else(|| format!("{:?}", stack.status).to_lowercase());
            self.print(&format!(
                "       {:<22} {:<10} {:>7.2}s (AWS {:.2}s)",
                stack.name,
                action,
                stack.duration_ms as f64 / 1000.0,
                stack.aws_wait_ms as f64 / 1000.0
            ));
        }
        if let Some(error) = &record.error {
            self.print(&format!("     {error}"));
        }
    }
}

/// Asks on the terminal; refuses when stdin is not one (a CI job cannot answer).
struct TerminalApprover;

impl Approver for TerminalApprover {
    fn approve(&self, env: &Environment) -> Result<bool, String> {
        if !std::io::stdin().is_terminal() {
            return Err(
                "stdin is not a terminal, so nobody can approve; pass --approve to grant every gate".into()
            );
        }
        eprint!("Deploy to {} (account {}, {})? [y/N] ", env.name, env.account, env.region);
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).map_err(|e| format!("reading the answer: {e}"))?;
        Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
    }
}
