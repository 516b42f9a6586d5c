//! `aphex template apply|diff|history|rollback`: the self-modification commands, against the cluster
//! named by `KUBECONFIG` (or the EKS cluster `APHEX_CLUSTER`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use aphex::config::DEFAULT_CONFIG_FILE;
use aphex::template::{self, ApplyOptions, ApplyOutcome};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Validate the config, render, check against Argo's schema, and server-side apply the template
    /// (skipped when the live one comes from the same config).
    Apply(ApplyArgs),
    /// Show what `apply` would change in the live template (unified diff of the YAML).
    Diff(ConfigArgs),
    /// List the live version and the kept previous versions.
    History(TargetArgs),
    /// Re-apply a previous version (default: the one before the live version).
    Rollback(RollbackArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// The config file.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,
    /// The commit the config comes from.
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Apply even when the live template comes from the same config.
    #[arg(long)]
    pub force: bool,
    /// Show the outcome without changing the cluster.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which template: from the config (`pipeline.name`, `pipeline.namespace`) unless given.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The config file naming the pipeline and its namespace.
    #[arg(long, short, value_name = "PATH", default_value = DEFAULT_CONFIG_FILE)]
    pub config: PathBuf,
    /// WorkflowTemplate name (instead of the config's `pipeline.name`).
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace (instead of the config's `pipeline.namespace`).
    #[arg(long, short)]
    pub namespace: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The version to restore (see `aphex template history`).
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run_async(args))
}

async fn store() -> anyhow::Result<template::KubeTemplateStore> {
    template::kube_store_from_env().await.context("cannot reach the cluster")
}

fn target(args: &TargetArgs) -> Result<(String, String), ExitCode> {
    if let (Some(name), Some(ns)) = (&args.name, &args.namespace) {
        return Ok((ns.clone(), name.clone()));
    }
    let (cfg, _) = crate::render::load(&args.config)?;
    Ok((
        args.namespace.clone().unwrap_or(cfg.pipeline.namespace),
        args.name.clone().unwrap_or(cfg.pipeline.name),
    ))
}

async fn run_async(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Apply(a) => {
            let (cfg, _) = match crate::render::load(&a.config.config) {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            let rendered = match template::render_config(&cfg, a.config.commit.as_deref()) {
                Ok(r) => r,
                Err(err) => return Ok(crate::render::report(&err)),
            };
            let store = store().await?;
            let outcome = template::apply_rendered(
                &store,
                &rendered,
                ApplyOptions { force: a.force, dry_run: a.dry_run },
            )
            .await
            .context("applying the WorkflowTemplate failed; the live template is unchanged")?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                print_outcome(&outcome);
            }
        }
        Command::Diff(a) => {
            let (cfg, _) = match crate::render::load(&a.config) {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            let rendered = match template::render_config(&cfg, a.commit.as_deref()) {
                Ok(r) => r,
                Err(err) => return Ok(crate::render::report(&err)),
            };
            let diff = template::diff_live(&store().await?, &rendered).await?;
            if diff.is_empty() {
                eprintln!("no difference: the live template matches the config");
            } else {
                print!("{diff}");
            }
        }
        Command::History(t) => {
            let (ns, name) = match target(&t) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            let h = template::history(&store().await?, &ns, &name).await?;
            println!("{:<8} {:<8} {:<42} {:<18} note", "VERSION", "STATE", "COMMIT", "CONFIG-SHA256");
            let line = |e: &template::HistoryEntry, state: &str| {
                let sha = e.config_sha256.as_deref().map(|s| &s[..s.len().min(16)]).unwrap_or("-");
                let note = e.rollback_of.map(|v| format!("rollback of {v}")).unwrap_or_default();
                println!(
                    "{:<8} {:<8} {:<42} {:<18} {note}",
                    e.version,
                    state,
                    e.commit.as_deref().unwrap_or("-"),
                    sha
                );
            };
            match &h.live {
                Some(live) => line(live, "live"),
                None => eprintln!("no WorkflowTemplate {ns}/{name} is applied"),
            }
            for e in &h.previous {
                line(e, "kept");
            }
        }
        Command::Rollback(r) => {
            let (ns, name) = match target(&r.target) {
                Ok(t) => t,
                Err(code) => return Ok(code),
            };
            let rb = template::rollback(&store().await?, &ns, &name, r.to).await?;
            println!(
                "rolled back {}/{}: version {} restores version {} (was {})",
                rb.namespace, rb.name, rb.version, rb.restored, rb.previous_version
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(outcome: &ApplyOutcome) {
    match outcome {
        ApplyOutcome::Unchanged { namespace, name, version, .. } => {
            println!("unchanged: {namespace}/{name} version {version} already comes from this config");
        }
        ApplyOutcome::Applied { namespace, name, version, previous_version, changes, dry_run, .. } => {
            let verb = if *dry_run { "would apply" } else { "applied" };
            match previous_version {
                Some(p) => println!("{verb} {namespace}/{name} version {version} (was {p})"),
                None => println!("{verb} {namespace}/{name} version {version} (new)"),
            }
            for c in changes {
                println!("  - {c}");
            }
        }
    }
}
