//! Just-in-time synthesis: runs the config's synth command in the work tree for one environment, into
//! a fresh output directory, with the config's context, a private CDK_HOME and notices off, streaming
//! its output; checks required context first and explains failures.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::{Config, Environment};

/// How many trailing output lines a failure shows.
const TAIL_LINES: usize = 25;

/// Why synthesis failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("environment {0:?} is not in the config")]
    UnknownEnvironment(String),
    #[error(
        "required CDK context {missing:?} is not set; add it under synth.context in the config or to \"context\" in {cdk_json}"
    )]
    MissingContext { missing: Vec<String>, cdk_json: PathBuf },
    #[error("{path} is not valid JSON: {source}")]
    CdkJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot run the synth command `{command}` in {dir}: {source}")]
    Spawn {
        command: String,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the synth output directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "synth command `{command}` failed ({status}) for environment {environment}; last lines:\n{tail}\nhint: {hint}"
    )]
    Failed { command: String, environment: String, status: String, tail: String, hint: String },
    #[error(
        "synth command `{command}` succeeded but wrote no manifest.json to {dir}; does it honour --output?"
    )]
    NoAssembly { command: String, dir: PathBuf },
}

/// Options of one synthesis.
#[derive(Debug, Clone, Default)]
pub struct SynthOptions {
    /// Where the assembly goes; a fresh directory under `<work_dir>/.aphex/` when None.
    pub output_dir: Option<PathBuf>,
    /// Extra environment variables for the command (after the environment's own `env`).
    pub extra_env: Vec<(String, String)>,
    /// Forward the command's output lines to stderr as they come.
    pub stream: bool,
}

/// The result of a synthesis.
#[derive(Debug, Clone)]
pub struct Synthesized {
    pub assembly_dir: PathBuf,
    pub duration: Duration,
    pub command: String,
}

/// Quotes a word for `sh -c`.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The full command line: the configured command plus `--output`, `-c key=value` and, for the CDK CLI,
/// `--no-notices` and `--quiet` (so a single-stack synth does not print its template).
pub fn command_line(config: &Config, env: &Environment, output_dir: &Path) -> String {
    let base = config.synth.command.trim();
    let mut cmd = base.to_owned();
    let is_cdk = base.split_whitespace().any(|w| w == "cdk" || w.ends_with("/cdk"));
    cmd.push_str(" --output ");
    cmd.push_str(&shell_quote(&output_dir.display().to_string()));
    // The CDK CLI overwrites CDK_DEFAULT_ACCOUNT/REGION with the caller's own, so the target environment
    // also travels as context (and as APHEX_* variables) for apps to bind their stacks to.
    let target =
        [("aphex:environment", &env.name), ("aphex:account", &env.account), ("aphex:region", &env.region)];
    for (k, v) in target.into_iter().chain(config.synth.context.iter().map(|(k, v)| (k.as_str(), v))) {
        cmd.push_str(" -c ");
        cmd.push_str(&shell_quote(&format!("{k}={v}")));
    }
    if is_cdk {
        cmd.push_str(" --no-notices --quiet");
    }
    cmd
}

/// Required context keys found neither in the config nor in `cdk.json`'s `context`.
pub fn missing_context(config: &Config, work_dir: &Path) -> Result<Vec<String>, SynthError> {
    if config.synth.required_context.is_empty() {
        return Ok(Vec::new());
    }
    let cdk_json = work_dir.join("cdk.json");
    let file_context: serde_json::Map<String, serde_json::Value> = match std::fs::read(&cdk_json) {
        Ok(bytes) => {
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|source| SynthError::CdkJson { path: cdk_json.clone(), source })?;
            v.get("context").and_then(|c| c.as_object()).cloned().unwrap_or_default()
        }
        Err(_) => Default::default(),
    };
    Ok(config
        .synth
        .required_context
        .iter()
        .filter(|k| !config.synth.context.contains_key(*k) && !file_context.contains_key(*k))
        .cloned()
        .collect())
}

fn hint_for(tail: &str) -> String {
    let lower = tail.to_lowercase();
    if lower.contains("cannot find module")
        || lower.contains("command not found")
        || lower.contains("not found: cdk")
    {
        "a dependency is missing: run the build commands (e.g. `npm ci`) before synth".into()
    } else if lower.contains("context") {
        "the app needs CDK context: set it under synth.context in aphex-config.yaml".into()
    } else if lower.contains("credentials") || lower.contains("lookup") {
        "synth tried to reach AWS (a context lookup): commit cdk.context.json so synth runs offline".into()
    } else {
        "run the synth command locally in the repository to see the whole error".into()
    }
}

/// Synthesizes the app of `work_dir` for environment `env_name`.
pub async fn synthesize(
    config: &Config,
    env_name: &str,
    work_dir: &Path,
    options: &SynthOptions,
) -> Result<Synthesized, SynthError> {
    let env =
        config.environment(env_name).ok_or_else(|| SynthError::UnknownEnvironment(env_name.to_owned()))?;
    let missing = missing_context(config, work_dir)?;
    if !missing.is_empty() {
        return Err(SynthError::MissingContext { missing, cdk_json: work_dir.join("cdk.json") });
    }
    let output_dir = match &options.output_dir {
        Some(d) => d.clone(),
        None => {
            work_dir.join(".aphex").join(format!("assembly-{}-{}", env.name, uuid::Uuid::new_v4().simple()))
        }
    };
    // Never reuse an assembly: whatever was there (another stage's) goes.
    if output_dir.exists() {
        std::fs::remove_dir_all(&output_dir)
            .map_err(|source| SynthError::Io { path: output_dir.clone(), source })?;
    }
    std::fs::create_dir_all(&output_dir)
        .map_err(|source| SynthError::Io { path: output_dir.clone(), source })?;
    let cdk_home = work_dir.join(".aphex").join("cdk-home");
    std::fs::create_dir_all(&cdk_home).map_err(|source| SynthError::Io { path: cdk_home.clone(), source })?;

    let command = command_line(config, env, &output_dir);
    let started = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(work_dir)
        .envs(synth_env(env, &cdk_home))
        .envs(options.extra_env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SynthError::Spawn { command: command.clone(), dir: work_dir.to_owned(), source })?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for reader in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    while let Some(line) = rx.recv().await {
        if options.stream {
            eprintln!("  [synth {}] {line}", env.name);
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let status = child.wait().await.map_err(|source| SynthError::Spawn {
        command: command.clone(),
        dir: work_dir.to_owned(),
        source,
    })?;
    if !status.success() {
        let tail: String = tail.iter().map(|l| format!("  {l}\n")).collect();
        return Err(SynthError::Failed {
            command,
            environment: env.name.clone(),
            status: status.to_string(),
            hint: hint_for(&tail),
            tail,
        });
    }
    if !output_dir.join("manifest.json").is_file() {
        return Err(SynthError::NoAssembly { command, dir: output_dir });
    }
    Ok(Synthesized { assembly_dir: output_dir, duration: started.elapsed(), command })
}

/// Environment of the synth command: the target account/region for env-agnostic code, a private
/// CDK_HOME, telemetry off, then the environment's own variables.
/// The synth command's environment: the target as the CDK CLI and apps read it, a private `CDK_HOME`,
/// telemetry and version checks off, then the environment's own `env`.
pub fn synth_env(env: &Environment, cdk_home: &Path) -> Vec<(String, String)> {
    let mut vars = vec![
        ("CDK_DEFAULT_ACCOUNT".to_owned(), env.account.clone()),
        ("CDK_DEFAULT_REGION".to_owned(), env.region.clone()),
        ("APHEX_ENVIRONMENT".to_owned(), env.name.clone()),
        ("APHEX_ACCOUNT".to_owned(), env.account.clone()),
        ("APHEX_REGION".to_owned(), env.region.clone()),
        ("CDK_HOME".to_owned(), cdk_home.display().to_string()),
        ("CDK_DISABLE_CLI_TELEMETRY".to_owned(), "true".to_owned()),
        ("CDK_DISABLE_VERSION_CHECK".to_owned(), "true".to_owned()),
    ];
    vars.extend(env.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        crate::config::parse("t.yaml", yaml).unwrap()
    }

    const BASE: &str = "version: \"1.0\"\nbuild:\n  commands: [\"true\"]\nenvironments:\n  - name: dev\n    account: \"111111111111\"\n    region: us-east-1\n    stacks: [{name: A}]\n";

    #[test]
    fn command_line_adds_output_context_and_cdk_flags() {
        let mut c = config(BASE);
        c.synth.context.insert("stage".into(), "dev env".into());
        let env = c.environments[0].clone();
        let target = "-c aphex:environment=dev -c aphex:account=111111111111 -c aphex:region=us-east-1";
        assert_eq!(
            command_line(&c, &env, Path::new("/tmp/out dir")),
            format!("npx cdk synth --output '/tmp/out dir' {target} -c 'stage=dev env' --no-notices --quiet")
        );
        c.synth.command = "./synth.sh".into();
        assert_eq!(
            command_line(&c, &env, Path::new("/o")),
            format!("./synth.sh --output /o {target} -c 'stage=dev env'")
        );
    }

    #[test]
    fn required_context_checked_against_config_and_cdk_json() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cdk.json"), r#"{"app":"x","context":{"fromFile":1}}"#).unwrap();
        let mut c = config(BASE);
        c.synth.required_context = vec!["fromFile".into(), "fromConfig".into(), "absent".into()];
        c.synth.context.insert("fromConfig".into(), "v".into());
        assert_eq!(missing_context(&c, tmp.path()).unwrap(), ["absent"]);
    }

    #[tokio::test]
    async fn failure_shows_tail_and_hint_and_success_needs_a_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(BASE);
        c.synth.command =
            "echo line-one; echo \"Error: Cannot find module 'aws-cdk-lib'\" >&2; exit 3; true".into();
        let err = synthesize(&c, "dev", tmp.path(), &SynthOptions::default()).await.unwrap_err().to_string();
        assert!(
            err.contains("line-one") && err.contains("Cannot find module") && err.contains("npm ci"),
            "{err}"
        );

        // A command that honours --output (appended as `$1 $2`) and sees the target account.
        c.synth.command = r#"f() { echo "{\"version\":\"55.0.0\",\"account\":\"$CDK_DEFAULT_ACCOUNT\"}" > "$2/manifest.json"; }; f"#.into();
        let synth = synthesize(&c, "dev", tmp.path(), &SynthOptions::default()).await.unwrap();
        let manifest = std::fs::read_to_string(synth.assembly_dir.join("manifest.json")).unwrap();
        assert!(manifest.contains("111111111111"), "{manifest}");
        let again = synthesize(&c, "dev", tmp.path(), &SynthOptions::default()).await.unwrap();
        assert_ne!(again.assembly_dir, synth.assembly_dir, "every synth gets a fresh directory");
    }
}
