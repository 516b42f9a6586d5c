//! Which pushes start a run: branch and tag globs (`APHEX_BRANCHES`, `APHEX_TAGS`), deletions, and the
//! `[skip ci]` / `[aphex skip]` markers in the head commit message.

use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use thiserror::Error;

use super::event::Push;

/// Commit message markers that ask for no run (matched case-insensitively).
pub const SKIP_MARKERS: [&str; 2] = ["[skip ci]", "[aphex skip]"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Branch,
    Tag,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
        }
    }
}

/// A push that passed the filters: the branch or tag it updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: RefKind,
    /// The short name: `main`, `release/1.2`, `v1.0.0`.
    pub name: String,
}

/// Why a delivery starts nothing. Shown to GitHub in the 200 response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoreReason {
    Deleted { git_ref: String },
    BranchNotMatched { branch: String, globs: String },
    TagNotMatched { tag: String, globs: String },
    UnsupportedRef { git_ref: String },
    SkipMarker { marker: &'static str },
    Event { name: String },
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreReason::Deleted { git_ref } => write!(f, "{git_ref} was deleted"),
            IgnoreReason::BranchNotMatched { branch, globs } => {
                write!(f, "branch `{branch}` does not match APHEX_BRANCHES ({globs})")
            }
            IgnoreReason::TagNotMatched { tag, globs } if globs.is_empty() => {
                write!(f, "tag `{tag}`: tag pushes are ignored unless APHEX_TAGS is set")
            }
            IgnoreReason::TagNotMatched { tag, globs } => {
                write!(f, "tag `{tag}` does not match APHEX_TAGS ({globs})")
            }
            IgnoreReason::UnsupportedRef { git_ref } => write!(f, "{git_ref} is neither a branch nor a tag"),
            IgnoreReason::SkipMarker { marker } => write!(f, "head commit message contains {marker}"),
            IgnoreReason::Event { name } => write!(f, "`{name}` events do not start runs; only push does"),
        }
    }
}

#[derive(Debug, Error)]
pub enum FilterError {
    #[error("{var}: `{glob}` is not a valid glob: {source}")]
    Glob {
        var: &'static str,
        glob: String,
        #[source]
        source: globset::Error,
    },
}

/// Compiled branch and tag globs. `*` stays within one path segment (`release/*` matches
/// `release/1.2`, not `release/1/2`); `**` crosses segments.
#[derive(Debug, Clone)]
pub struct RefFilter {
    branches: GlobSet,
    branch_globs: String,
    tags: GlobSet,
    tag_globs: String,
}

fn compile(var: &'static str, globs: &[String]) -> Result<GlobSet, FilterError> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        let g = GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|source| FilterError::Glob { var, glob: glob.clone(), source })?;
        set.add(g);
    }
    set.build().map_err(|source| FilterError::Glob { var, glob: globs.join(","), source })
}

/// Splits a comma-separated env value into globs, dropping blanks.
pub fn split_globs(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl RefFilter {
    pub fn new(branches: &[String], tags: &[String]) -> Result<Self, FilterError> {
        Ok(Self {
            branches: compile("APHEX_BRANCHES", branches)?,
            branch_globs: branches.join(","),
            tags: compile("APHEX_TAGS", tags)?,
            tag_globs: tags.join(","),
        })
    }

    /// Decides whether `push` starts a run.
    pub fn decide(&self, push: &Push) -> Result<Target, IgnoreReason> {
        if push.deleted {
            return Err(IgnoreReason::Deleted { git_ref: push.git_ref.clone() });
        }
        let target = if let Some(branch) = push.git_ref.strip_prefix("refs/heads/") {
            if !self.branches.is_match(branch) {
                return Err(IgnoreReason::BranchNotMatched {
                    branch: branch.to_owned(),
                    globs: self.branch_globs.clone(),
                });
            }
            Target { kind: RefKind::Branch, name: branch.to_owned() }
        } else if let Some(tag) = push.git_ref.strip_prefix("refs/tags/") {
            if !self.tags.is_match(tag) {
                return Err(IgnoreReason::TagNotMatched {
                    tag: tag.to_owned(),
                    globs: self.tag_globs.clone(),
                });
            }
            Target { kind: RefKind::Tag, name: tag.to_owned() }
        } else {
            return Err(IgnoreReason::UnsupportedRef { git_ref: push.git_ref.clone() });
        };
        if let Some(commit) = &push.head_commit {
            let message = commit.message.to_ascii_lowercase();
            if let Some(marker) = SKIP_MARKERS.into_iter().find(|m| message.contains(m)) {
                return Err(IgnoreReason::SkipMarker { marker });
            }
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::event::{HeadCommit, Pusher, Repository};

    fn push(git_ref: &str, deleted: bool, message: Option<&str>) -> Push {
        Push {
            git_ref: git_ref.into(),
            after: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
            deleted,
            repository: Repository {
                full_name: "o/r".into(),
                clone_url: "https://github.com/o/r.git".into(),
            },
            pusher: Pusher { name: "p".into() },
            head_commit: message.map(|m| HeadCommit { id: "x".into(), message: m.into() }),
        }
    }

    fn check(branches: &str, tags: &str, p: Push, expect: Result<(RefKind, &str), &str>) {
        let filter = RefFilter::new(&split_globs(branches), &split_globs(tags)).unwrap();
        let got = filter.decide(&p).map(|t| (t.kind, t.name)).map_err(|r| r.to_string());
        let want = expect.map(|(k, n)| (k, n.to_owned())).map_err(str::to_owned);
        match (&got, &want) {
            (Err(g), Err(w)) => assert!(g.contains(w.as_str()), "{} {branches}: {g} !~ {w}", p.git_ref),
            _ => assert_eq!(got, want, "{} with {branches}/{tags}", p.git_ref),
        }
    }

    #[test]
    fn branch_and_tag_globs() {
        use RefKind::*;
        check("main", "", push("refs/heads/main", false, Some("fix")), Ok((Branch, "main")));
        check(
            "main",
            "",
            push("refs/heads/feature", false, None),
            Err("branch `feature` does not match APHEX_BRANCHES (main)"),
        );
        check(
            "main, release/*",
            "",
            push("refs/heads/release/1.2", false, None),
            Ok((Branch, "release/1.2")),
        );
        check("release/*", "", push("refs/heads/release/1/2", false, None), Err("does not match"));
        check("release/**", "", push("refs/heads/release/1/2", false, None), Ok((Branch, "release/1/2")));
        check(
            "main",
            "",
            push("refs/tags/v1.0.0", false, None),
            Err("tag pushes are ignored unless APHEX_TAGS is set"),
        );
        check("main", "v*", push("refs/tags/v1.0.0", false, None), Ok((Tag, "v1.0.0")));
        check(
            "main",
            "v*",
            push("refs/tags/nightly", false, None),
            Err("tag `nightly` does not match APHEX_TAGS (v*)"),
        );
        check("*", "*", push("refs/notes/commits", false, None), Err("neither a branch nor a tag"));
        // A tag glob never admits a branch of the same name and vice versa.
        check("", "main", push("refs/heads/main", false, None), Err("does not match"));
    }

    #[test]
    fn deletions_and_skip_markers() {
        check("main", "", push("refs/heads/main", true, None), Err("refs/heads/main was deleted"));
        check("main", "*", push("refs/tags/v1", true, None), Err("refs/tags/v1 was deleted"));
        check(
            "main",
            "",
            push("refs/heads/main", false, Some("docs only [skip ci]")),
            Err("contains [skip ci]"),
        );
        check(
            "main",
            "",
            push("refs/heads/main", false, Some("Docs\n\n[Aphex Skip]")),
            Err("contains [aphex skip]"),
        );
        check(
            "main",
            "",
            push("refs/heads/main", false, Some("skip ci please")),
            Ok((RefKind::Branch, "main")),
        );
    }

    #[test]
    fn real_fixtures() {
        use crate::webhook::event::{Event, parse};
        let load = |f: &str| {
            let path = format!("{}/../../shared/fixtures/github/{f}", env!("CARGO_MANIFEST_DIR"));
            match parse("push", &std::fs::read(path).unwrap()).unwrap() {
                Event::Push(p) => *p,
                other => panic!("{other:?}"),
            }
        };
        check("main", "", load("octokit_push_branch_created_with_commit.json"), Err("branch `master`"));
        check(
            "master",
            "",
            load("octokit_push_branch_created_with_commit.json"),
            Ok((RefKind::Branch, "master")),
        );
        check("master", "", load("octokit_push_tag_created.json"), Err("tag `simple-tag`"));
        check("master", "simple-*", load("octokit_push_tag_created.json"), Ok((RefKind::Tag, "simple-tag")));
        check("master", "*", load("octokit_push_tag_deleted.json"), Err("refs/tags/simple-tag was deleted"));
    }

    #[test]
    fn invalid_glob_names_the_variable() {
        let err = RefFilter::new(&["main[".into()], &[]).unwrap_err().to_string();
        assert!(err.starts_with("APHEX_BRANCHES: `main[`"), "{err}");
    }
}
