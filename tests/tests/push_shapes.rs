//! Every shape of a GitHub `push` delivery against the real `git`: a throwaway origin repository made
//! here (commits, a lightweight tag, real annotated tags, a branch created at an old commit, a forced
//! push, deletions), a payload for each built from GitHub's own example payloads with this origin's ids,
//! through the webhook intake (signature, filter, Workflow), then `clone_at` with the Workflow's
//! arguments: each shape starts a run whose clone ends at the commit the ref points to, or is ignored
//! with a reason.

use std::path::Path;
use std::process::Command;

use aphex::steps::source::clone_at;
use aphex::webhook::{
    Intake, MemorySubmitter, Secret, SecretSource, WebhookConfig, WebhookRequest, config as whconfig,
};
use http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

const SECRET: &str = "push shapes secret";
const NULL: &str = "0000000000000000000000000000000000000000";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "tag.gpgSign=false"])
        .args(["-c", "commit.gpgSign=false", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn github(name: &str) -> Value {
    let path = aphex_tests::fixtures_dir().join("github").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The origin: `c1` -> `c2` on main; `v1.0.0` lightweight at c2; `v1.1.0` annotated at c1; `v2.0.0`
/// an annotated tag of the annotated tag v1.1.0; `tree-tag` an annotated tag of c1's tree; then main
/// is amended (a forced push) to `c2b`.
struct Origin {
    dir: tempfile::TempDir,
    c1: String,
    c2: String,
    c2b: String,
    annotated: String,
    nested: String,
    tree_tag: String,
}

impl Origin {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let o = dir.path();
        git(o, &["init", "-q"]);
        std::fs::write(o.join("f.txt"), "one").unwrap();
        git(o, &["add", "."]);
        git(o, &["commit", "-qm", "one"]);
        let c1 = git(o, &["rev-parse", "HEAD"]);
        std::fs::write(o.join("f.txt"), "two").unwrap();
        git(o, &["commit", "-qam", "two"]);
        let c2 = git(o, &["rev-parse", "HEAD"]);
        git(o, &["tag", "v1.0.0", &c2]);
        git(o, &["tag", "-a", "v1.1.0", "-m", "release 1.1.0", &c1]);
        let annotated = git(o, &["rev-parse", "refs/tags/v1.1.0"]);
        git(o, &["tag", "-a", "v2.0.0", "-m", "a tag of a tag", "v1.1.0"]);
        let nested = git(o, &["rev-parse", "refs/tags/v2.0.0"]);
        git(o, &["tag", "-a", "tree-tag", "-m", "a tag of a tree", &format!("{c1}^{{tree}}")]);
        let tree_tag = git(o, &["rev-parse", "refs/tags/tree-tag"]);
        git(o, &["branch", "release/1.0", &c1]);
        std::fs::write(o.join("f.txt"), "two, amended").unwrap();
        git(o, &["commit", "-qa", "--amend", "-m", "two (amended)"]);
        let c2b = git(o, &["rev-parse", "HEAD"]);
        assert_ne!(annotated, c1, "an annotated tag is its own object");
        Origin { dir, c1, c2, c2b, annotated, nested, tree_tag }
    }

    fn url(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

/// A payload from GitHub's example for `base` with this push's fields.
fn payload(base: &str, origin: &Origin, fields: Value) -> Value {
    let mut p = github(base);
    p["repository"]["clone_url"] = origin.url().into();
    p["commits"] = json!([]);
    for (k, v) in fields.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

fn head(id: &str, message: &str) -> Value {
    let mut h = github("octokit_push_branch_created_with_commit.json")["head_commit"].clone();
    h["id"] = id.into();
    h["message"] = message.into();
    h
}

fn request(delivery: &str, body: &Value) -> WebhookRequest {
    let body = serde_json::to_vec(body).unwrap();
    let mut h = HeaderMap::new();
    h.insert("X-GitHub-Event", HeaderValue::from_static("push"));
    h.insert("X-GitHub-Delivery", HeaderValue::from_str(delivery).unwrap());
    h.insert("Content-Type", HeaderValue::from_static("application/json"));
    let sig = Secret::new(SECRET).unwrap().sign(&body);
    h.insert("X-Hub-Signature-256", HeaderValue::from_str(&sig).unwrap());
    WebhookRequest::new(h, body)
}

fn intake() -> Intake {
    let vars = [
        (whconfig::ENV_SECRET, SECRET),
        (whconfig::ENV_BRANCHES, "main,release/*"),
        (whconfig::ENV_TAGS, "v*,tree-*"),
    ];
    let config =
        WebhookConfig::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
            .unwrap();
    let SecretSource::Env(secrets) = config.secret.clone() else { panic!("env secret") };
    Intake::new(&config, secrets).unwrap()
}

/// What a shape must do.
enum Expect<'a> {
    /// A run whose Workflow carries `carried` and whose clone ends at `commit`.
    Run { carried: &'a str, commit: &'a str },
    /// A run whose clone fails with this message.
    CloneFails(&'a str),
    /// No run; the reason has this text.
    Ignored(&'a str),
}

async fn check(shape: &str, body: Value, expect: Expect<'_>) {
    let intake = intake();
    let submitter = MemorySubmitter::new();
    let delivery = format!("shape-{}", shape.replace(' ', "-"));
    let response = intake.handle(&request(&delivery, &body), &submitter).await;
    match expect {
        Expect::Ignored(reason) => {
            assert_eq!(response.status, 200, "{shape}: {}", response.body);
            assert_eq!(response.body["status"], "ignored", "{shape}: {}", response.body);
            let got = response.body["reason"].as_str().unwrap();
            assert!(got.contains(reason), "{shape}: {got:?} lacks {reason:?}");
            assert!(submitter.created().is_empty(), "{shape}");
        }
        Expect::Run { .. } | Expect::CloneFails(_) => {
            assert_eq!(response.status, 202, "{shape}: {}", response.body);
            let name = response.body["workflow"].as_str().unwrap();
            let wf = submitter.get("argo", name).unwrap();
            let carried = wf.argument("commit-sha").unwrap();
            assert_eq!(wf.metadata.labels["aphex.dev/commit"], carried, "{shape}: the label is the argument");
            let dest = tempfile::tempdir().unwrap();
            let cloned = clone_at(wf.argument("repo-url").unwrap(), carried, &dest.path().join("w")).await;
            match expect {
                Expect::Run { carried: want_carried, commit } => {
                    assert_eq!(carried, want_carried, "{shape}: the Workflow's commit-sha");
                    assert_eq!(cloned.as_deref(), Ok(commit), "{shape}: where the clone ends");
                    assert_eq!(git(&dest.path().join("w"), &["rev-parse", "HEAD"]), commit, "{shape}");
                }
                Expect::CloneFails(message) => {
                    let err = cloned.unwrap_err();
                    assert!(err.contains(message), "{shape}: {err}");
                }
                Expect::Ignored(_) => unreachable!(),
            }
        }
    }
}

#[tokio::test]
async fn every_push_shape_starts_the_right_run_on_the_right_commit_or_is_ignored() {
    let o = Origin::new();
    let branch = "octokit_push_branch_created_with_commit.json";
    let tag = "octokit_push_tag_created.json";
    let (c1, c2, c2b) = (o.c1.as_str(), o.c2.as_str(), o.c2b.as_str());
    let run = |carried, commit| Expect::Run { carried, commit };

    let shapes: Vec<(&str, Value, Expect)> = vec![
        (
            "branch push",
            payload(
                branch,
                &o,
                json!({"ref": "refs/heads/main", "before": c1, "after": c2, "created": false,
                "head_commit": head(c2, "two")}),
            ),
            run(c2, c2),
        ),
        (
            "lightweight tag",
            payload(tag, &o, json!({"ref": "refs/tags/v1.0.0", "after": c2, "head_commit": head(c2, "two")})),
            run(c2, c2),
        ),
        (
            // GitHub: `after` is the tag object, `head_commit` the commit it points to.
            "annotated tag",
            payload(
                tag,
                &o,
                json!({"ref": "refs/tags/v1.1.0", "after": o.annotated,
                "head_commit": head(c1, "one")}),
            ),
            run(c1, c1),
        ),
        (
            "annotated tag of an annotated tag",
            payload(
                tag,
                &o,
                json!({"ref": "refs/tags/v2.0.0", "after": o.nested,
                "head_commit": head(c1, "one")}),
            ),
            run(c1, c1),
        ),
        (
            // Without `head_commit` the run carries `after`, and the clone peels the tag to its commit.
            "annotated tag without head_commit",
            payload(tag, &o, json!({"ref": "refs/tags/v1.1.0", "after": o.annotated, "head_commit": null})),
            run(&o.annotated, c1),
        ),
        (
            "branch created with no new commits",
            payload(
                branch,
                &o,
                json!({"ref": "refs/heads/release/1.0", "before": NULL, "after": c1,
                "created": true, "head_commit": head(c1, "one")}),
            ),
            run(c1, c1),
        ),
        (
            "branch push without head_commit",
            payload(
                branch,
                &o,
                json!({"ref": "refs/heads/main", "before": c1, "after": c2, "created": false,
                "head_commit": null}),
            ),
            run(c2, c2),
        ),
        (
            "forced push",
            payload(
                branch,
                &o,
                json!({"ref": "refs/heads/main", "before": c2, "after": c2b, "created": false,
                "forced": true, "head_commit": head(c2b, "two (amended)")}),
            ),
            run(c2b, c2b),
        ),
        (
            "tag of a tree",
            payload(tag, &o, json!({"ref": "refs/tags/tree-tag", "after": o.tree_tag, "head_commit": null})),
            Expect::CloneFails("is neither a commit nor a tag pointing to one"),
        ),
        (
            "branch deletion",
            payload("octokit_push_tag_deleted.json", &o, json!({"ref": "refs/heads/main", "before": c2b})),
            Expect::Ignored("refs/heads/main was deleted"),
        ),
        (
            "tag deletion",
            payload("octokit_push_tag_deleted.json", &o, json!({"ref": "refs/tags/v1.0.0", "before": c2})),
            Expect::Ignored("refs/tags/v1.0.0 was deleted"),
        ),
        (
            // A deletion whose `deleted` flag is missing is still a deletion: `after` is the null id.
            "deletion by null after",
            payload(
                branch,
                &o,
                json!({"ref": "refs/heads/main", "after": NULL, "deleted": false,
                "head_commit": null}),
            ),
            Expect::Ignored("refs/heads/main was deleted"),
        ),
        (
            "annotated tag not matched",
            payload(
                tag,
                &o,
                json!({"ref": "refs/tags/nightly", "after": o.annotated,
                "head_commit": head(c1, "one")}),
            ),
            Expect::Ignored("tag `nightly` does not match"),
        ),
        (
            "annotated tag of a skipped commit",
            payload(
                tag,
                &o,
                json!({"ref": "refs/tags/v1.1.0", "after": o.annotated,
                "head_commit": head(c1, "chore(release): 1.1.0 [skip ci]")}),
            ),
            Expect::Ignored("contains [skip ci]"),
        ),
    ];
    for (shape, body, expect) in shapes {
        check(shape, body, expect).await;
    }
}

/// A manual run (`argo submit ... -p commit-sha=...`) may be given a tag object id or a commit.
#[tokio::test]
async fn clone_at_peels_a_tag_object_to_its_commit() {
    let o = Origin::new();
    let cases = [(&o.annotated, &o.c1), (&o.nested, &o.c1), (&o.c2, &o.c2), (&o.c2b, &o.c2b)];
    for (i, (given, commit)) in cases.into_iter().enumerate() {
        let dest = tempfile::tempdir().unwrap();
        let got = clone_at(o.url(), given, &dest.path().join(i.to_string())).await;
        assert_eq!(got.as_deref(), Ok(commit.as_str()), "{given}");
    }
    let dest = tempfile::tempdir().unwrap();
    let err = clone_at(o.url(), &o.tree_tag, &dest.path().join("t")).await.unwrap_err();
    assert!(err.contains(&format!("{} is neither a commit nor a tag pointing to one", o.tree_tag)), "{err}");
}
