//! Redaction of the lines a step prints (and ships): credentials in URLs (`https://user:token@host`) and
//! the values of secret-looking environment variables of the process (`GITHUB_TOKEN`, `*_SECRET*`,
//! `*_PASSWORD`, `*_TOKEN`, `AWS_SECRET_ACCESS_KEY`, ...) become `***`.

/// What replaces a secret.
pub const MASK: &str = "***";
/// Values shorter than this are not masked (masking `1` or `true` everywhere would destroy the log).
pub const MIN_SECRET_LEN: usize = 6;

/// Masks a line. Build one per process with [`Redactor::from_env`].
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

/// Whether an environment variable's name says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSWD", "PRIVATE_KEY", "API_KEY", "CREDENTIAL"]
        .iter()
        .any(|part| upper.contains(part))
}

impl Redactor {
    /// Masks these values (and URL credentials).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= MIN_SECRET_LEN).collect();
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The values of this process's secret-looking variables ([`is_secret_name`]).
    pub fn from_env() -> Self {
        Self::new(std::env::vars().filter(|(k, _)| is_secret_name(k)).map(|(_, v)| v))
    }

    /// The line with every secret masked.
    pub fn apply(&self, line: &str) -> String {
        let mut out = mask_url_credentials(line);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

/// `scheme://userinfo@host` → `scheme://***@host`, for every URL in the line.
pub fn mask_url_credentials(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at the first '/', '?', '#' or whitespace; userinfo is what precedes its last '@'.
        let end =
            tail.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace()).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(user_end) if user_end > 0 => {
                out.push_str(MASK);
                rest = &tail[user_end..];
            }
            _ => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(secrets: &[&str], line: &str, expect: &str) {
        let r = Redactor::new(secrets.iter().map(|s| (*s).to_owned()));
        assert_eq!(r.apply(line), expect, "{line}");
    }

    #[test]
    fn secrets_are_masked() {
        check(
            &[],
            "cloning https://x-access-token:ghp_abc123@github.com/acme/app.git",
            "cloning https://***@github.com/acme/app.git",
        );
        check(&[], "git@github.com:acme/app.git stays", "git@github.com:acme/app.git stays");
        check(&[], "a http://u@h/x and https://u:p@h2?q=1", "a http://***@h/x and https://***@h2?q=1");
        check(
            &[],
            "mail ops@example.com, see https://example.com/a@b",
            "mail ops@example.com, see https://example.com/a@b",
        );
        check(
            &["hooks.slack.com/services/T0/B0/XYZSECRET"],
            "posting to https://hooks.slack.com/services/T0/B0/XYZSECRET",
            "posting to https://***",
        );
        check(&["s3cr3t-value", "s3cr3t"], "values s3cr3t-value and s3cr3t", "values *** and ***");
        check(&["true"], "short values like true stay", "short values like true stay");
    }

    #[test]
    fn secret_names() {
        for name in
            ["GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DB_PASSWORD", "npm_api_key"]
        {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["PATH", "AWS_REGION", "APHEX_PIPELINE", "HOME"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
