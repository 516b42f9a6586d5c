//! GitHub webhook events, reduced to the fields AphexPipeline acts on: `ping`, `push`, and the name of
//! anything else. Unknown fields are skipped, so GitHub adding fields never breaks intake.
//!
//! The shapes of a `push` (GitHub's "push" webhook documentation): `after` is the new value of the ref
//! (all zeros when `deleted`); for an annotated tag it is the id of the *tag object*, and `head_commit`
//! is the commit that tag points to. `head_commit` is `null` for a deletion, and can be for a ref that
//! points to something GitHub does not expand; a branch created at an existing commit has no `commits`
//! but still a `head_commit`. [`Push::commit`] is the commit a run builds.

use serde::Deserialize;
use thiserror::Error;

/// A parsed delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Ping(Ping),
    Push(Box<Push>),
    /// An event AphexPipeline does not act on (pull_request, issues, ...), by its `X-GitHub-Event` name.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Ping {
    #[serde(default)]
    pub hook_id: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Push {
    /// The full ref, `refs/heads/<branch>` or `refs/tags/<tag>`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The object the ref points to after the push: a commit, or the tag object of an annotated tag
    /// (all zeros for a deletion).
    pub after: String,
    #[serde(default)]
    pub deleted: bool,
    /// The ref did not exist before the push.
    #[serde(default)]
    pub created: bool,
    /// The push was forced (the old value is not an ancestor of the new one).
    #[serde(default)]
    pub forced: bool,
    pub repository: Repository,
    pub pusher: Pusher,
    #[serde(default)]
    pub head_commit: Option<HeadCommit>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Repository {
    pub full_name: String,
    pub clone_url: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Pusher {
    pub name: String,
}

/// The commit at the tip of the pushed ref (for an annotated tag: the commit the tag points to).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HeadCommit {
    pub id: String,
    #[serde(default)]
    pub message: String,
}

/// The id GitHub sends in `after` for a deletion.
pub const NULL_OBJECT: &str = "0000000000000000000000000000000000000000";

impl Push {
    /// The ref was deleted: `deleted`, or `after` is the null object id.
    pub fn is_deletion(&self) -> bool {
        self.deleted || self.after.bytes().all(|b| b == b'0')
    }

    /// The object a run checks out: `head_commit.id` when GitHub sent one (the commit itself, also for
    /// an annotated tag, whose `after` is the tag object), else `after` (which `clone_at` peels to its
    /// commit, `git rev-parse <after>^{commit}`).
    pub fn commit(&self) -> &str {
        self.head_commit.as_ref().map_or(self.after.as_str(), |c| c.id.as_str())
    }
}

/// An id git accepts as a full or abbreviated object name: 7 to 64 hex digits (SHA-1 or SHA-256).
pub fn is_object_id(s: &str) -> bool {
    (7..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a payload is not a valid event. Only positions and field names are reported: serde's own
/// messages can quote payload values.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EventError {
    #[error("`{event}` payload is not valid JSON (line {line}, column {column})")]
    Syntax { event: String, line: usize, column: usize },
    #[error("`{event}` payload lacks {field} (line {line}, column {column})")]
    MissingField { event: String, field: String, line: usize, column: usize },
    #[error("`{event}` payload has a field of the wrong type or value (line {line}, column {column})")]
    Shape { event: String, line: usize, column: usize },
    #[error("`push` payload has an empty or non-hex `{field}` object id (expected 7 to 64 hex digits)")]
    BadCommit { field: &'static str },
}

fn event_error(event: &str, e: &serde_json::Error) -> EventError {
    let (event, line, column) = (event.to_owned(), e.line(), e.column());
    if e.is_data() {
        // "missing field `x`" names only the field, never a value: safe to keep.
        let text = e.to_string();
        if let Some(rest) = text.strip_prefix("missing field ") {
            let field = rest.split(" at line").next().unwrap_or(rest).to_owned();
            return EventError::MissingField { event, field, line, column };
        }
        EventError::Shape { event, line, column }
    } else {
        EventError::Syntax { event, line, column }
    }
}

/// Parses `payload` as the event named by the `X-GitHub-Event` header.
pub fn parse(event: &str, payload: &[u8]) -> Result<Event, EventError> {
    match event {
        "ping" => serde_json::from_slice(payload).map(Event::Ping).map_err(|e| event_error(event, &e)),
        "push" => {
            let push: Push = serde_json::from_slice(payload).map_err(|e| event_error(event, &e))?;
            // `after` and `head_commit.id` name what the run builds and go into a label and a git
            // command line: insist on git object ids.
            if !is_object_id(&push.after) {
                return Err(EventError::BadCommit { field: "after" });
            }
            if push.head_commit.as_ref().is_some_and(|c| !is_object_id(&c.id)) {
                return Err(EventError::BadCommit { field: "head_commit.id" });
            }
            Ok(Event::Push(Box::new(push)))
        }
        other => {
            // Still insist on JSON so a garbled delivery of any kind is a 400, not a silent 200.
            serde_json::from_slice::<serde::de::IgnoredAny>(payload).map_err(|e| event_error(event, &e))?;
            Ok(Event::Other(other.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../../shared/fixtures/github/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn real_push_payloads() {
        let Event::Push(p) = parse("push", &fixture("octokit_push_branch_created_with_commit.json")).unwrap()
        else {
            panic!("not a push")
        };
        assert_eq!(p.git_ref, "refs/heads/master");
        assert_eq!(p.after, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
        assert!(!p.deleted);
        assert_eq!(p.repository.clone_url, "https://github.com/Codertocat/Hello-World.git");
        assert_eq!(p.repository.full_name, "Codertocat/Hello-World");
        assert_eq!(p.pusher.name, "Codertocat");
        assert_eq!(p.head_commit.as_ref().unwrap().message, "Initial commit");

        let Event::Push(t) = parse("push", &fixture("octokit_push_tag_deleted.json")).unwrap() else {
            panic!()
        };
        assert_eq!(t.git_ref, "refs/tags/simple-tag");
        assert!(t.deleted);
        assert_eq!(t.head_commit, None);
    }

    #[test]
    fn real_ping_and_other_payloads() {
        for f in ["octokit_ping_repository.json", "octokit_ping_organization.json"] {
            assert_eq!(
                parse("ping", &fixture(f)).unwrap(),
                Event::Ping(Ping { hook_id: Some(109948940) }),
                "{f}"
            );
        }
        for f in ["octokit_pull_request_opened.json", "octokit_pull_request_closed.json"] {
            assert_eq!(parse("pull_request", &fixture(f)).unwrap(), Event::Other("pull_request".into()));
        }
    }

    #[test]
    fn errors_name_positions_and_fields_but_never_values() {
        fn check(event: &str, payload: &str, expect: &str) {
            let err = parse(event, payload.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
            assert!(!err.contains("SECRETVALUE"), "{err}");
        }
        check("push", "{not json", "not valid JSON (line 1, column 2)");
        check("push", r#"{"ref":"refs/heads/main"}"#, "lacks `after`");
        check("push", r#"{"ref":42,"after":"SECRETVALUE"}"#, "wrong type or value (line 1, column 9)");
        check(
            "push",
            r#"{"ref":"SECRETVALUE","after":"SECRETVALUE","repository":{"full_name":"a/b","clone_url":"u"},"pusher":{"name":"n"}}"#,
            "non-hex `after`",
        );
        check("ping", "[", "not valid JSON");
        check("issues", "", "not valid JSON");
    }
}
