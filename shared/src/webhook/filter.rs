//! Which pushes start a run: branch and tag globs (`APHEX_BRANCHES`, `APHEX_TAGS`), deletions, and the
//! skip markers of the head commit message (GitHub's own, see [`SKIP_MARKERS`], and `[aphex skip]`).

use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use thiserror::Error;

use super::event::Push;

/// Commit message markers that ask for no run, matched case-insensitively anywhere in the head commit's
/// message: the five GitHub Actions honours (GitHub documentation, "Skipping workflow runs") and
/// aphex's own `[aphex skip]`. As on GitHub, they apply to tag pushes too (the tagged commit's message).
pub const SKIP_MARKERS: [&str; 6] =
    ["[skip ci]", "[ci skip]", "[no ci]", "[skip actions]", "[actions skip]", "[aphex skip]"];

/// How [`IgnoreReason::SkipMarker`] names the `skip-checks: true` trailer.
pub const SKIP_TRAILER: &str = "the trailer `skip-checks: true`";

/// The marker in `message` that asks for no run, if any: one of [`SKIP_MARKERS`], or the git trailer
/// `skip-checks: true` (also `skip-checks:true`) in the message's last paragraph, which GitHub honours
/// when the message ends with a blank line followed by it. A one-paragraph message has no trailers.
pub fn skip_marker(message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    if let Some(marker) = SKIP_MARKERS.into_iter().find(|m| lower.contains(m)) {
        return Some(marker);
    }
    let lines: Vec<&str> = lower.trim_end().lines().map(str::trim_end).collect();
    let start = lines.iter().rposition(|l| l.trim().is_empty())?;
    let trailer = |l: &&str| {
        l.split_once(':').is_some_and(|(key, value)| key == "skip-checks" && value.trim() == "true")
    };
    lines[start + 1..].iter().any(trailer).then_some(SKIP_TRAILER)
}

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
    Deleted {
        git_ref: String,
    },
    /// `from` names the setting the globs came from (`pipeline.branches` or `APHEX_BRANCHES`).
    BranchNotMatched {
        branch: String,
        globs: String,
        from: &'static str,
    },
    TagNotMatched {
        tag: String,
        globs: String,
        from: &'static str,
    },
    UnsupportedRef {
        git_ref: String,
    },
    SkipMarker {
        marker: &'static str,
    },
    Event {
        name: String,
    },
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreReason::Deleted { git_ref } => write!(f, "{git_ref} was deleted"),
            IgnoreReason::BranchNotMatched { branch, globs, from } => {
                write!(f, "branch `{branch}` does not match {from} ({globs})")
            }
            IgnoreReason::TagNotMatched { tag, globs, from } if globs.is_empty() => {
                write!(f, "tag `{tag}`: tag pushes are ignored unless {from} lists tag globs")
            }
            IgnoreReason::TagNotMatched { tag, globs, from } => {
                write!(f, "tag `{tag}` does not match {from} ({globs})")
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
    branches_from: &'static str,
    tags: GlobSet,
    tag_globs: String,
    tags_from: &'static str,
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
    /// Globs given by `APHEX_BRANCHES` and `APHEX_TAGS`.
    pub fn new(branches: &[String], tags: &[String]) -> Result<Self, FilterError> {
        Self::from_sources(branches, "APHEX_BRANCHES", tags, "APHEX_TAGS")
    }

    /// Globs and the settings they came from (named in errors and ignore reasons).
    pub fn from_sources(
        branches: &[String],
        branches_from: &'static str,
        tags: &[String],
        tags_from: &'static str,
    ) -> Result<Self, FilterError> {
        Ok(Self {
            branches: compile(branches_from, branches)?,
            branch_globs: branches.join(","),
            branches_from,
            tags: compile(tags_from, tags)?,
            tag_globs: tags.join(","),
            tags_from,
        })
    }

    /// Decides whether `push` starts a run.
    pub fn decide(&self, push: &Push) -> Result<Target, IgnoreReason> {
        if push.is_deletion() {
            return Err(IgnoreReason::Deleted { git_ref: push.git_ref.clone() });
        }
        let target = self.decide_ref(&push.git_ref)?;
        if let Some(marker) = push.head_commit.as_ref().and_then(|c| skip_marker(&c.message)) {
            return Err(IgnoreReason::SkipMarker { marker });
        }
        Ok(target)
    }

    /// Decides whether a push of the full ref `git_ref` (`refs/heads/...`, `refs/tags/...`) matches the
    /// globs, whatever its commit.
    pub fn decide_ref(&self, git_ref: &str) -> Result<Target, IgnoreReason> {
        Ok(if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
            if !self.branches.is_match(branch) {
                return Err(IgnoreReason::BranchNotMatched {
                    branch: branch.to_owned(),
                    globs: self.branch_globs.clone(),
                    from: self.branches_from,
                });
            }
            Target { kind: RefKind::Branch, name: branch.to_owned() }
        } else if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
            if !self.tags.is_match(tag) {
                return Err(IgnoreReason::TagNotMatched {
                    tag: tag.to_owned(),
                    globs: self.tag_globs.clone(),
                    from: self.tags_from,
                });
            }
            Target { kind: RefKind::Tag, name: tag.to_owned() }
        } else {
            return Err(IgnoreReason::UnsupportedRef { git_ref: git_ref.to_owned() });
        })
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
            created: false,
            forced: false,
            repository: Repository {
                full_name: "o/r".into(),
                clone_url: "https://github.com/o/r.git".into(),
            },
            pusher: Pusher { name: "p".into() },
            head_commit: message.map(|m| HeadCommit {
                id: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
                message: m.into(),
            }),
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
            Err("tag pushes are ignored unless APHEX_TAGS lists tag globs"),
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

    /// Every marker GitHub documents for skipping workflow runs, in the places a release bot puts them,
    /// and the near misses that must still run.
    #[test]
    fn skip_markers_of_the_head_commit() {
        fn check(message: &str, expect: Option<&str>) {
            assert_eq!(skip_marker(message), expect, "{message:?}");
        }
        let cases: &[(&str, Option<&str>)] = &[
            ("docs only [skip ci]", Some("[skip ci]")),
            ("chore(release): 1.2.0 [ci skip]", Some("[ci skip]")),
            ("chore: bump version [no ci]", Some("[no ci]")),
            ("Bump to 2.0.0 [skip actions]", Some("[skip actions]")),
            ("[actions skip] regenerate docs", Some("[actions skip]")),
            ("Docs\n\n[Aphex Skip]", Some("[aphex skip]")),
            ("chore(release): 1.2.0 [SKIP CI]\n\n## Changelog", Some("[skip ci]")),
            ("Release 1.0\n\nskip-checks: true", Some(SKIP_TRAILER)),
            ("Release 1.0\n\n\nskip-checks:true\n", Some(SKIP_TRAILER)),
            ("Release 1.0\n\nSigned-off-by: bot <b@x>\nSkip-Checks: TRUE", Some(SKIP_TRAILER)),
            // Near misses run.
            ("skip ci please", None),
            ("[skip-ci] is not a marker", None),
            ("skip-checks: true", None),
            ("Release\n\nskip-checks: false", None),
            ("Release\n\nskip-checks: true\n\nmore text after", None),
            ("Release\n\nnot-skip-checks: true", None),
            ("", None),
        ];
        for (message, expect) in cases {
            check(message, *expect);
        }
    }

    #[test]
    fn every_marker_skips_branch_and_tag_pushes_alike() {
        for marker in SKIP_MARKERS {
            let upper = format!("release {}", marker.to_ascii_uppercase());
            for git_ref in ["refs/heads/main", "refs/tags/v1.0.0"] {
                check(
                    "main",
                    "v*",
                    push(git_ref, false, Some(&upper)),
                    Err(&format!("head commit message contains {marker}")),
                );
            }
        }
        check(
            "main",
            "",
            push("refs/heads/main", false, Some("v1\n\nskip-checks: true")),
            Err("head commit message contains the trailer `skip-checks: true`"),
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
