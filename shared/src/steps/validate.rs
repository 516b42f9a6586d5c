//! `aphex step validate`: the config, each environment's credentials (STS after assuming its role),
//! `requiredContext`, and every tool the build and synth commands start. All problems at once.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{Identity, StageFailure, StageRecord, StageReport, StepContext, StepError};
use crate::config::Config;

/// Stage id.
pub const STAGE: &str = "validate";

/// What the run started with, written by the first stage so finalize knows the start time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStart {
    #[serde(flatten)]
    pub run: super::RunInfo,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: time::OffsetDateTime,
}

/// Key of the run start record.
pub fn start_key(run_id: &str) -> String {
    format!("runs/{run_id}/run.json")
}

/// Runs the validate stage (the source must already be in `ctx.work_dir`, see [`super::build::ensure_source`]).
pub async fn run(ctx: &StepContext, identity: &dyn Identity) -> Result<StageRecord, StepError> {
    let start = RunStart { run: ctx.run.clone(), started_at: time::OffsetDateTime::now_utc() };
    let json = serde_json::to_vec_pretty(&start).map_err(|e| StepError::Config(e.to_string()))?;
    ctx.store.put_bytes(&start_key(&ctx.run.run_id), json).await?;
    ctx.record(STAGE, None, async {
        let clock = Instant::now();
        let config = ctx.load_config()?;
        let mut problems = Vec::new();
        problems.extend(check_context(&config, &ctx.work_dir));
        problems.extend(check_tools(&config, &ctx.work_dir, std::env::var_os("PATH").as_deref()));
        let sts = Instant::now();
        // The bootstrap roles are the app's: its qualifier from the config, cdk.json or an assembly.
        let qualifier = crate::bootstrap::resolve_in(&config, &ctx.work_dir);
        let qualifier = &qualifier;
        // Environments are checked concurrently: each is an AssumeRole plus a GetCallerIdentity.
        let checks = config.environments.iter().map(|env| async move {
            let role = super::adapters::role_for(env, qualifier);
            match identity.account_for(env, &role, &ctx.run.run_id).await {
                Ok(account) if account == env.account => None,
                Ok(account) => Some(format!(
                    "environment {}: the credentials are for account {account}, the config says {}; fix `account` or the role/credentials",
                    env.name, env.account
                )),
                Err(reason) => Some(format!("environment {}: cannot get credentials as {role}: {reason}", env.name)),
            }
        });
        problems.extend(futures::future::join_all(checks).await.into_iter().flatten());
        let aws = sts.elapsed();
        ctx.say(STAGE, &format!("checked config, context, tools and {} environment(s) in {:.0?}", config.environments.len(), clock.elapsed()));
        if problems.is_empty() {
            Ok(StageReport { external: aws, ..Default::default() })
        } else {
            Err(StageFailure { error: StepError::Invalid(problems), partial: StageReport { external: aws, ..Default::default() } })
        }
    })
    .await
}

/// `requiredContext` keys missing from both `synth.context` and `cdk.json`'s `context`.
pub fn check_context(config: &Config, work_dir: &Path) -> Vec<String> {
    if config.synth.required_context.is_empty() {
        return Vec::new();
    }
    let cdk_json = work_dir.join("cdk.json");
    let from_file: Vec<String> = std::fs::read(&cdk_json)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("context").and_then(|c| c.as_object()).map(|o| o.keys().cloned().collect()))
        .unwrap_or_default();
    config
        .synth
        .required_context
        .iter()
        .filter(|k| !config.synth.context.contains_key(*k) && !from_file.contains(k))
        .map(|k| {
            format!(
                "required context key {k:?} is in neither synth.context nor {}; add it to one of them",
                cdk_json.display()
            )
        })
        .collect()
}

/// Tools the build, synth and test commands start that are not on `PATH`.
pub fn check_tools(config: &Config, work_dir: &Path, path: Option<&std::ffi::OsStr>) -> Vec<String> {
    let mut commands: Vec<(String, &str)> =
        config.build.commands.iter().map(|c| ("build command".to_owned(), c.as_str())).collect();
    commands.push(("synth command".to_owned(), config.synth.command.as_str()));
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (what, command) in commands {
        for tool in tools_in(command) {
            if seen.contains(&tool) || found(&tool, work_dir, path) {
                continue;
            }
            problems.push(format!("{what} `{command}` starts `{tool}`, which is not on PATH; install it in the runner image (or locally)"));
            seen.insert(tool);
        }
    }
    problems
}

fn found(tool: &str, work_dir: &Path, path: Option<&std::ffi::OsStr>) -> bool {
    if tool.contains('/') {
        return work_dir.join(tool).exists() || Path::new(tool).exists();
    }
    path.map(std::env::split_paths).into_iter().flatten().any(|dir| is_executable(&dir.join(tool)))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

const BUILTINS: &[&str] = &[
    "cd", "echo", "export", "set", "unset", "test", "[", "[[", "true", "false", "exit", "return", "source",
    ".", "eval", "if", "then", "else", "elif", "fi", "for", "do", "done", "while", "until", "case", "esac",
    "printf", "read", "shift", "trap", "wait", "local", "alias", "{", "}", ":", "!", "pwd", "umask",
    "ulimit", "command", "type", "exec", "time", "in",
];

/// The programs a shell command line starts: the first word of each simple command, after variable
/// assignments and `env`, leaving out shell builtins and words built from variables or substitutions.
pub fn tools_in(command: &str) -> Vec<String> {
    let mut tools = Vec::new();
    // Quoted text is data, never a command separator: keep each quoted string as one placeholder word.
    let mut unquoted = String::with_capacity(command.len());
    let mut quote = None;
    for c in command.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                unquoted.push_str("QUOTED");
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, c) => unquoted.push(c),
        }
    }
    // Redirections such as `>&2` and `&>` are not background separators.
    let unquoted = unquoted.replace(">&", ">").replace("<&", "<").replace("&>", ">");
    let normalized =
        unquoted.replace("&&", "\n").replace("||", "\n").replace(['|', ';', '(', ')', '&', '`'], "\n");
    for segment in normalized.lines() {
        let mut words = segment.split_whitespace().map(|w| w.trim_matches(|c| c == '"' || c == '\''));
        let mut next = words.next();
        while let Some(word) = next {
            let assignment = word.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            if assignment
                || matches!(
                    word,
                    "env" | "exec" | "time" | "nohup" | "command" | "then" | "do" | "else" | "!"
                )
            {
                next = words.next();
                continue;
            }
            break;
        }
        let Some(word) = next else { continue };
        if word.is_empty()
            || word.starts_with(['$', '-', '#'])
            || word.contains(['<', '>'])
            || word.starts_with("QUOTED")
            || BUILTINS.contains(&word)
        {
            continue;
        }
        if !tools.iter().any(|t| t == word) {
            tools.push(word.to_owned());
        }
    }
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(command: &str, expect: &[&str]) {
        assert_eq!(tools_in(command), expect, "{command}");
    }

    #[test]
    fn tools_of_command_lines() {
        check("npm ci", &["npm"]);
        check("npm ci && npm run build", &["npm"]);
        check("NODE_ENV=production npx cdk synth", &["npx"]);
        check("cd app; make -j2 | tee log.txt", &["make", "tee"]);
        check("env FOO=1 ./scripts/build.sh --fast", &["./scripts/build.sh"]);
        check("if test -f x; then terraform fmt; fi", &["terraform"]);
        check("echo $(date) > out", &["date"]);
        check("$CUSTOM_TOOL run", &[]);
        check("(cd lib && cargo build) || true", &["cargo"]);
        check("echo 'a(3,1): x; y' >&2; exit 7", &[]);
        check("make 2>&1 | grep -v \"warn; ing\" && \"./run me.sh\"", &["make", "grep"]);
    }

    fn config(yaml: &str) -> Config {
        crate::config::parse("aphex-config.yaml", yaml).unwrap()
    }

    #[test]
    fn missing_tools_and_context_are_all_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cdk.json"), r#"{"app":"x","context":{"fromFile":"1"}}"#).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let c = config(
            "version: \"1.0\"\nbuild:\n  commands: [\"sh -c true\", \"no-such-tool-aphex --x\", \"sh x && other-missing\"]\nsynth:\n  command: \"sh synth.sh\"\n  context: {inConfig: \"1\"}\n  requiredContext: [fromFile, inConfig, absent]\nenvironments:\n  - name: dev\n    region: us-east-1\n    account: \"111111111111\"\n    stacks: [{name: A}]\n",
        );
        let path = std::env::var_os("PATH");
        let tools = check_tools(&c, dir.path(), path.as_deref());
        assert_eq!(tools.len(), 2, "{tools:?}");
        assert!(tools[0].contains("`no-such-tool-aphex`"), "{tools:?}");
        assert!(tools[1].contains("`other-missing`"), "{tools:?}");
        let context = check_context(&c, dir.path());
        assert_eq!(context.len(), 1);
        assert!(context[0].contains("\"absent\""), "{context:?}");
    }
}
