//! Getting the repository at exactly the pushed commit (git), with a token for private repositories taken
//! from the environment and handed to git as a header, never in a URL, an argument or a log line.

use std::path::Path;
use std::process::Stdio;

use base64::Engine as _;
use tokio::process::Command;

/// Environment variables that may hold a token for HTTPS clones, first one set wins.
pub const TOKEN_VARS: [&str; 2] = ["APHEX_GIT_TOKEN", "GITHUB_TOKEN"];

/// Clone `repo_url` at `commit_sha` into `dest` (created; must be empty or missing) and return the
/// full id of the commit checked out. `commit_sha` is a full object id: a commit, or an annotated tag
/// object (what GitHub sends as `after` for a tag push, or what a manual run may be given), which is
/// peeled to the commit it points to (`git rev-parse <id>^{commit}`). Errors name the git command and
/// its message (a token is masked), or an object that is no commit (a tag of a tree or a blob).
pub async fn clone_at(repo_url: &str, commit_sha: &str, dest: &Path) -> Result<String, String> {
    tokio::fs::create_dir_all(dest).await.map_err(|e| format!("{}: {e}", dest.display()))?;
    let token = TOKEN_VARS.iter().find_map(|v| std::env::var(v).ok().filter(|t| !t.is_empty()));
    git(dest, &["init", "--quiet"], None).await?;
    git(dest, &["remote", "add", "origin", repo_url], None).await?;
    // A fetch by commit id gets exactly that commit, whatever the branch has become since the push.
    git(dest, &["fetch", "--quiet", "--depth", "1", "origin", commit_sha], token.as_deref()).await?;
    let peeled = format!("{commit_sha}^{{commit}}");
    let commit = git_output(dest, &["rev-parse", "--verify", "--quiet", &peeled]).await.map_err(|_| {
        format!("{commit_sha} is neither a commit nor a tag pointing to one: nothing to check out")
    })?;
    git(dest, &["checkout", "--quiet", "--detach", &commit], None).await?;
    let head = git_output(dest, &["rev-parse", "HEAD"]).await?;
    if head != commit {
        return Err(format!("the clone is at {head}, not at the requested commit {commit} ({commit_sha})"));
    }
    Ok(head)
}

/// The commit checked out in `dir` (local runs).
pub async fn head_commit(dir: &Path) -> Result<String, String> {
    git_output(dir, &["rev-parse", "HEAD"]).await
}

/// The branch checked out in `dir` (local runs); `HEAD` when detached.
pub async fn head_branch(dir: &Path) -> Result<String, String> {
    git_output(dir, &["rev-parse", "--abbrev-ref", "HEAD"]).await
}

/// The tags pointing at the commit checked out in `dir` (local runs).
pub async fn tags_at_head(dir: &Path) -> Result<Vec<String>, String> {
    let out = git_output(dir, &["tag", "--points-at", "HEAD"]).await?;
    Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

async fn git_output(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("git could not start ({e}); install git"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!("`git {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

async fn git(dir: &Path, args: &[&str], token: Option<&str>) -> Result<(), String> {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir).stdin(Stdio::null()).env("GIT_TERMINAL_PROMPT", "0");
    // Local repositories (tests, local runs) only serve a commit id on request when allowed.
    cmd.args(["-c", "uploadpack.allowAnySHA1InWant=true"]);
    if let Some(token) = token {
        // Passed through git's environment config, so it is in no argv (ps) and no remote URL (.git/config).
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {basic}"));
    }
    let out = cmd.args(args).output().await.map_err(|e| format!("git could not start ({e}); install git"))?;
    if out.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if let Some(token) = token {
        stderr = stderr.replace(token, "***");
    }
    let what = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
    Err(format!("`git {what}` failed: {}", stderr.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git").args(args).current_dir(dir).output().await.unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[tokio::test]
    async fn clones_exactly_the_requested_commit() {
        let origin = tempfile::tempdir().unwrap();
        let o = origin.path();
        run(o, &["init", "-q", "-b", "main"]).await;
        run(o, &["config", "user.email", "t@example.com"]).await;
        run(o, &["config", "user.name", "t"]).await;
        std::fs::write(o.join("f.txt"), "first").unwrap();
        run(o, &["add", "."]).await;
        run(o, &["commit", "-qm", "one"]).await;
        let first = run(o, &["rev-parse", "HEAD"]).await;
        std::fs::write(o.join("f.txt"), "second").unwrap();
        run(o, &["commit", "-qam", "two"]).await;
        let dest = tempfile::tempdir().unwrap();
        assert_eq!(clone_at(o.to_str().unwrap(), &first, &dest.path().join("w")).await.unwrap(), first);
        assert_eq!(std::fs::read_to_string(dest.path().join("w/f.txt")).unwrap(), "first");
        let err = clone_at(o.to_str().unwrap(), &"0".repeat(40), &dest.path().join("x")).await.unwrap_err();
        assert!(err.contains("git fetch"), "{err}");
    }
}
