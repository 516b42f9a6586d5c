//! Running user commands (`sh -c`): output streamed line by line with a stage prefix, a time limit, and
//! the last lines kept for the error message.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Where step output goes: the terminal (local runner, above the progress bars) or the pod log.
pub trait OutputSink: Send + Sync {
    /// One line of output, of a command or of aphex itself, from stage `stage`.
    fn line(&self, stage: &str, line: &str);

    /// A stack of stage `stage` moved on while the deploy runs. A plain line unless the sink draws it
    /// (the local runner's per-stack spinners).
    fn stack(&self, stage: &str, stack: &str, update: &StackUpdate) {
        self.line(stage, &update.line(stack));
    }
}

/// Live progress of one stack during a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackUpdate {
    /// The create or update was sent.
    Started,
    /// A CloudFormation event of one of its resources (or of the stack itself).
    Event { logical_id: String, resource_type: String, status: String, reason: Option<String> },
    /// CloudFormation reached a final status (`CREATE_COMPLETE`, `ROLLBACK_COMPLETE`, ...).
    Done { status: String, elapsed_ms: u64 },
}

impl StackUpdate {
    /// The update as one log line about `stack`.
    pub fn line(&self, stack: &str) -> String {
        match self {
            StackUpdate::Started => format!("{stack}: started"),
            StackUpdate::Event { logical_id, resource_type, status, reason } => {
                let why = reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                format!("{stack}: {logical_id} {resource_type} {status}{why}")
            }
            StackUpdate::Done { status, elapsed_ms } => {
                format!("{stack}: {status} in {elapsed_ms} ms")
            }
        }
    }
}

/// Writes `[stage] line` to stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct StderrSink;

impl OutputSink for StderrSink {
    fn line(&self, stage: &str, line: &str) {
        eprintln!("[{stage}] {line}");
    }
}

/// Collects lines in memory (tests).
#[derive(Debug, Default)]
pub struct MemorySink {
    pub lines: std::sync::Mutex<Vec<String>>,
}

impl OutputSink for MemorySink {
    fn line(&self, stage: &str, line: &str) {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).push(format!("[{stage}] {line}"));
    }
}

impl MemorySink {
    pub fn text(&self) -> String {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }
}

/// How many trailing lines a failure shows.
pub const TAIL_LINES: usize = 20;

/// A command that did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandFailure {
    #[error("`{command}` exited with {code}{}", tail_text(.tail))]
    Exit { command: String, code: String, tail: Vec<String> },
    #[error("`{command}` ran longer than its limit of {limit_minutes} minute(s) and was stopped{}", tail_text(.tail))]
    Timeout { command: String, limit_minutes: f64, tail: Vec<String> },
    #[error("`{command}` could not start: {reason}")]
    Spawn { command: String, reason: String },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() { String::new() } else { format!("; last lines:\n  {}", tail.join("\n  ")) }
}

/// A configured command with what it runs with (pure: what a step will start, before it starts it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCommand {
    /// The command line, run by `sh -c`.
    pub command: String,
    /// Variables added to the process environment, in order (later ones win).
    pub env: Vec<(String, String)>,
    /// The command's own limit.
    pub timeout: Duration,
}

impl PlannedCommand {
    /// The [`ShellCommand`] that runs it in `cwd`, its lines prefixed with `stage`.
    pub fn shell<'a>(&'a self, cwd: &'a Path, stage: &'a str) -> ShellCommand<'a> {
        ShellCommand { command: &self.command, cwd, env: self.env.clone(), timeout: self.timeout, stage }
    }
}

/// A shell command to run.
#[derive(Debug, Clone)]
pub struct ShellCommand<'a> {
    pub command: &'a str,
    pub cwd: &'a Path,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// The stage prefix of streamed lines.
    pub stage: &'a str,
}

/// Runs `sh -c COMMAND`, streaming stdout and stderr to `sink`. Returns the time it took.
pub async fn run(cmd: &ShellCommand<'_>, sink: Arc<dyn OutputSink>) -> Result<Duration, CommandFailure> {
    let started = Instant::now();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd.command)
        .current_dir(cmd.cwd)
        .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0); // so a timeout stops the command's children too
    let mut child = command
        .spawn()
        .map_err(|e| CommandFailure::Spawn { command: cmd.command.to_owned(), reason: e.to_string() })?;
    let tail = Arc::new(std::sync::Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let mut readers = tokio::task::JoinSet::new();
    let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
    let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let sink = sink.clone();
        let tail = tail.clone();
        let stage = cmd.stage.to_owned();
        readers.spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.line(&stage, &line);
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
    }
    let waited = tokio::time::timeout(cmd.timeout, child.wait()).await;
    let tail_now = |tail: &std::sync::Mutex<VecDeque<String>>| {
        tail.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect::<Vec<_>>()
    };
    match waited {
        Ok(Ok(status)) => {
            while readers.join_next().await.is_some() {}
            if status.success() {
                Ok(started.elapsed())
            } else {
                let code = status.code().map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
                Err(CommandFailure::Exit { command: cmd.command.to_owned(), code, tail: tail_now(&tail) })
            }
        }
        Ok(Err(e)) => Err(CommandFailure::Spawn { command: cmd.command.to_owned(), reason: e.to_string() }),
        Err(_) => {
            kill_group(&mut child).await;
            readers.abort_all();
            Err(CommandFailure::Timeout {
                command: cmd.command.to_owned(),
                limit_minutes: cmd.timeout.as_secs_f64() / 60.0,
                tail: tail_now(&tail),
            })
        }
    }
}

async fn kill_group(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        // The negative pid addresses the whole process group started above.
        let _ = Command::new("kill").arg("-KILL").arg("--").arg(format!("-{pid}")).status().await;
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(command: &str, timeout_ms: u64) -> (Result<Duration, CommandFailure>, String) {
        let sink = Arc::new(MemorySink::default());
        let dir = tempfile::tempdir().unwrap();
        let cmd = ShellCommand {
            command,
            cwd: dir.path(),
            env: vec![("GREETING".into(), "hi".into())],
            timeout: Duration::from_millis(timeout_ms),
            stage: "build",
        };
        let result = run(&cmd, sink.clone()).await;
        (result, sink.text())
    }

    #[tokio::test]
    async fn output_is_streamed_with_the_stage_prefix() {
        let (result, text) = check("echo $GREETING; echo oops >&2", 10_000).await;
        assert!(result.is_ok());
        assert!(text.contains("[build] hi"), "{text}");
        assert!(text.contains("[build] oops"), "{text}");
    }

    #[tokio::test]
    async fn a_failure_names_the_command_and_shows_its_last_lines() {
        let (result, _) = check("for i in $(seq 1 30); do echo line$i; done; exit 3", 10_000).await;
        let err = result.unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("`for i in $(seq 1 30); do echo line$i; done; exit 3` exited with code 3"),
            "{text}"
        );
        assert!(text.contains("line30") && text.contains("line11") && !text.contains("line10\n"), "{text}");
    }

    #[tokio::test]
    async fn a_command_over_its_limit_is_stopped() {
        let started = Instant::now();
        let (result, _) = check("echo started; sleep 30", 300).await;
        assert!(matches!(result, Err(CommandFailure::Timeout { .. })), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
