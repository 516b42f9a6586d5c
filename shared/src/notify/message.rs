//! Pure message builders: an incoming event becomes a channel-neutral [`Notification`], which becomes a
//! Slack Block Kit payload ([`slack_message`]) or an SNS subject and plain-text body ([`sns_message`]).

use serde_json::{Value, json};

use super::event::{PipelineStatusEvent, RunStatus, StackStatusChange};
use crate::config::NotifyOn;

/// SNS rejects subjects of 100 characters or more, and any line break or control character.
pub const SNS_SUBJECT_MAX_CHARS: usize = 99;
/// Longest failure reason carried into a message (CloudFormation reasons and command tails can be long;
/// Slack caps a section's text at 3000 characters).
pub const REASON_MAX_CHARS: usize = 2500;
/// Slack caps a header's text at 150 characters.
const SLACK_HEADER_MAX_CHARS: usize = 150;
/// Slack caps a section field's text at 2000 characters.
const SLACK_FIELD_MAX_CHARS: usize = 2000;

/// How a notification should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Nothing needs doing.
    Info,
    /// Something finished well.
    Success,
    /// Someone must act (an approval gate).
    Attention,
    /// Something broke.
    Failure,
}

impl Severity {
    fn emoji(self) -> &'static str {
        match self {
            Severity::Info => ":arrow_forward:",
            Severity::Success => ":white_check_mark:",
            Severity::Attention => ":raised_hand:",
            Severity::Failure => ":x:",
        }
    }
}

/// A labelled link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// What the link opens.
    pub label: String,
    /// Where.
    pub url: String,
}

/// A channel-neutral notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// How it should look.
    pub severity: Severity,
    /// The outcome it reports, matched against `notifications.on` (`None`: never sent).
    pub outcome: Option<NotifyOn>,
    /// One line: what happened ("Pipeline run failed").
    pub title: String,
    /// What it happened to, short ("acme/payments@main"), for subjects.
    pub subject: String,
    /// Labelled facts, in display order.
    pub facts: Vec<(String, String)>,
    /// The failure reason, if any (already truncated to [`REASON_MAX_CHARS`]).
    pub reason: Option<String>,
    /// Links to the Argo UI, the CloudFormation console, the commit.
    pub links: Vec<Link>,
    /// Small print (run id, pipeline).
    pub footer: String,
}

impl Notification {
    /// The notification of a pipeline run status event.
    pub fn from_run(run: &PipelineStatusEvent) -> Notification {
        let (severity, title) = match run.status {
            RunStatus::Started => (Severity::Info, "Pipeline run started"),
            RunStatus::Succeeded => (Severity::Success, "Pipeline run succeeded"),
            RunStatus::Failed => (Severity::Failure, "Pipeline run failed"),
            RunStatus::WaitingForApproval => (Severity::Attention, "Pipeline run waiting for approval"),
        };
        let mut facts = vec![
            ("Repository".to_owned(), run.repository.clone()),
            ("Branch".to_owned(), run.branch.clone()),
            ("Commit".to_owned(), short_sha(&run.commit_sha).to_owned()),
            ("Author".to_owned(), run.author.clone().unwrap_or_else(|| "unknown".to_owned())),
        ];
        if let Some(stage) = stage_label(run) {
            facts.push(("Stage".to_owned(), stage));
        }
        facts.push(("Status".to_owned(), status_word(run.status).to_owned()));
        if let Some(seconds) = run.duration_seconds {
            facts.push(("Duration".to_owned(), format_duration(seconds)));
        }
        if let Some(command) = &run.approve_command {
            facts.push(("To approve".to_owned(), command.clone()));
        }
        if let Some(stack) = &run.failed_stack {
            let status = stack.status.as_deref().map(|s| format!(", {s}")).unwrap_or_default();
            facts.push((
                "Failed stack".to_owned(),
                format!("{} ({} / {}{status})", stack.stack_name, stack.account, stack.region),
            ));
        }

        let mut links = Vec::new();
        if let Some(url) = &run.argo_url {
            links.push(Link { label: "Argo UI".to_owned(), url: url.clone() });
        }
        if let Some(stack) = &run.failed_stack {
            let id = stack.stack_id.as_deref().unwrap_or(&stack.stack_name);
            links.push(Link {
                label: "CloudFormation console".to_owned(),
                url: cloudformation_console_url(&stack.region, id),
            });
        }
        if let Some(url) = github_commit_url(&run.repository, &run.commit_sha) {
            links.push(Link { label: "Commit".to_owned(), url });
        }

        let subject = match (run.status, stage_label(run)) {
            (RunStatus::Failed | RunStatus::WaitingForApproval, Some(stage)) => {
                format!("{}@{} ({stage})", short_repo(&run.repository), run.branch)
            }
            _ => format!("{}@{}", short_repo(&run.repository), run.branch),
        };

        Notification {
            severity,
            outcome: run.status.outcome(),
            title: title.to_owned(),
            subject,
            facts,
            reason: run.failure_reason.as_deref().filter(|r| !r.trim().is_empty()).map(truncate_reason),
            links,
            footer: format!("Pipeline {} · run {} · commit {}", run.pipeline, run.run_id, run.commit_sha),
        }
    }

    /// The notification of a CloudFormation stack status event.
    pub fn from_stack(change: &StackStatusChange, argo_url: Option<&str>) -> Notification {
        let outcome = change.outcome();
        let status = change.status_details.status.as_str();
        let (severity, title) = match outcome {
            Some(NotifyOn::Failure) => (Severity::Failure, "CloudFormation stack failed"),
            Some(NotifyOn::Success) => (Severity::Success, "CloudFormation stack updated"),
            _ => (Severity::Info, "CloudFormation stack status changed"),
        };
        let mut links = Vec::new();
        if let Some(url) = argo_url {
            links.push(Link { label: "Argo UI".to_owned(), url: url.to_owned() });
        }
        links.push(Link {
            label: "CloudFormation console".to_owned(),
            url: cloudformation_console_url(&change.region, &change.stack_id),
        });
        Notification {
            severity,
            outcome,
            title: title.to_owned(),
            subject: format!("{} {status}", change.stack_name()),
            facts: vec![
                ("Stack".to_owned(), change.stack_name().to_owned()),
                ("Status".to_owned(), status.to_owned()),
                ("Account".to_owned(), change.account.clone()),
                ("Region".to_owned(), change.region.clone()),
            ],
            reason: change
                .status_details
                .status_reason
                .as_deref()
                .filter(|r| !r.trim().is_empty())
                .map(truncate_reason),
            links,
            footer: format!("Stack {}", change.stack_id),
        }
    }

    /// The one-line plain text of the notification (Slack's notification fallback, logs).
    pub fn summary(&self) -> String {
        format!("{}: {}", self.title, self.subject)
    }
}

/// The Slack Block Kit payload for an incoming webhook: a header, the facts as fields, the failure
/// reason as a code block, buttons for the links, and the footer as context. `text` is the fallback
/// shown in notifications.
pub fn slack_message(n: &Notification) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": truncate_chars(&format!("{} {}", n.severity.emoji(), n.title), SLACK_HEADER_MAX_CHARS),
            "emoji": true
        }
    })];
    // A section holds at most 10 fields.
    for chunk in n.facts.chunks(10) {
        let fields: Vec<Value> = chunk
            .iter()
            .map(|(label, value)| {
                json!({
                    "type": "mrkdwn",
                    "text": truncate_chars(&format!("*{}*\n{}", escape_mrkdwn(label), slack_value(n, label, value)), SLACK_FIELD_MAX_CHARS)
                })
            })
            .collect();
        blocks.push(json!({ "type": "section", "fields": fields }));
    }
    if let Some(reason) = &n.reason {
        // Inside a code block only `&`, `<`, `>` need escaping; backticks would end the block.
        let reason = escape_mrkdwn(reason).replace("```", "'''");
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!("*Reason*\n```{reason}```") }
        }));
    }
    if !n.links.is_empty() {
        let buttons: Vec<Value> = n
            .links
            .iter()
            .enumerate()
            .map(|(i, link)| {
                json!({
                    "type": "button",
                    "text": { "type": "plain_text", "text": link.label },
                    "url": link.url,
                    "action_id": format!("aphex-link-{i}")
                })
            })
            .collect();
        blocks.push(json!({ "type": "actions", "elements": buttons }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": escape_mrkdwn(&n.footer) }]
    }));
    json!({ "text": escape_mrkdwn(&n.summary()), "blocks": blocks })
}

/// An SNS message: subject for email subscribers, plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsMessage {
    /// At most [`SNS_SUBJECT_MAX_CHARS`] characters, no line breaks or control characters.
    pub subject: String,
    /// Plain text.
    pub body: String,
}

/// The SNS message of a notification.
pub fn sns_message(n: &Notification) -> SnsMessage {
    let status = match n.severity {
        Severity::Info => "INFO",
        Severity::Success => "OK",
        Severity::Attention => "APPROVAL NEEDED",
        Severity::Failure => "FAILED",
    };
    let subject = sanitize_subject(&format!("[aphex] {status}: {}", n.subject));

    let width =
        n.facts.iter().map(|(l, _)| l.len()).chain(n.links.iter().map(|l| l.label.len())).max().unwrap_or(0)
            + 1;
    let mut body = format!("{}\n\n", n.title);
    for (label, value) in &n.facts {
        body.push_str(&format!("{:<width$} {value}\n", format!("{label}:")));
    }
    if let Some(reason) = &n.reason {
        body.push_str("\nReason:\n");
        for line in reason.lines() {
            body.push_str("  ");
            body.push_str(line);
            body.push('\n');
        }
    }
    if !n.links.is_empty() {
        body.push('\n');
        for link in &n.links {
            body.push_str(&format!("{:<width$} {}\n", format!("{}:", link.label), link.url));
        }
    }
    body.push('\n');
    body.push_str(&n.footer);
    body.push('\n');
    SnsMessage { subject, body }
}

/// The CloudFormation console page of a stack (`stack` is its ARN or name).
pub fn cloudformation_console_url(region: &str, stack: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(stack.as_bytes()).collect();
    format!(
        "https://{region}.console.aws.amazon.com/cloudformation/home?region={region}#/stacks/stackinfo?stackId={encoded}"
    )
}

fn status_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Started => "started",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::WaitingForApproval => "waiting for approval",
    }
}

fn stage_label(run: &PipelineStatusEvent) -> Option<String> {
    match (&run.stage, &run.environment) {
        (Some(stage), Some(env)) => Some(format!("{stage} {env}")),
        (Some(stage), None) => Some(stage.clone()),
        (None, Some(env)) => Some(env.clone()),
        (None, None) => None,
    }
}

/// Field values get links where a fact has an obvious target (the commit).
fn slack_value(n: &Notification, label: &str, value: &str) -> String {
    match (label, n.links.iter().find(|l| l.label == "Commit")) {
        ("Commit", Some(link)) => format!("<{}|`{}`>", link.url, escape_mrkdwn(value)),
        _ => escape_mrkdwn(value),
    }
}

fn short_sha(sha: &str) -> &str {
    if sha.len() > 7 && sha.is_char_boundary(7) { &sha[..7] } else { sha }
}

/// `owner/name` of a GitHub URL; anything else unchanged.
fn short_repo(repository: &str) -> &str {
    github_owner_name(repository).unwrap_or(repository)
}

fn github_owner_name(repository: &str) -> Option<&str> {
    let trimmed = repository.trim_end_matches('/').trim_end_matches(".git");
    let rest = trimmed
        .strip_prefix("https://github.com/")
        .or_else(|| trimmed.strip_prefix("git@github.com:"))
        .unwrap_or(trimmed);
    let mut parts = rest.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(name), None) if !owner.is_empty() && !name.is_empty() && !owner.contains(':') => {
            Some(rest)
        }
        _ => None,
    }
}

fn github_commit_url(repository: &str, sha: &str) -> Option<String> {
    let valid_sha = !sha.is_empty() && sha.chars().all(|c| c.is_ascii_hexdigit());
    github_owner_name(repository)
        .filter(|_| valid_sha)
        .map(|repo| format!("https://github.com/{repo}/commit/{sha}"))
}

/// `12s`, `4m 12s`, `1h 02m`.
pub(crate) fn format_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Slack mrkdwn control characters (https://api.slack.com/reference/surfaces/formatting#escaping).
fn escape_mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn truncate_reason(reason: &str) -> String {
    truncate_chars(reason.trim(), REASON_MAX_CHARS)
}

fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn sanitize_subject(s: &str) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let flat = flat.trim();
    if flat.chars().count() <= SNS_SUBJECT_MAX_CHARS {
        return flat.to_owned();
    }
    // Plain ASCII dots: some email clients mangle a non-ASCII ellipsis in a subject.
    let mut out: String = flat.chars().take(SNS_SUBJECT_MAX_CHARS - 3).collect();
    out.push_str("...");
    out
}
