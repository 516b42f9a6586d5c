//! The rules a JSON Schema cannot express, checked on the position tree so they run even when other
//! parts of the file are broken: unique environment and stack names, `dependsOn` targets and cycles,
//! role ARNs that fit their environment, branch globs, and notifications that reach someone.

use std::collections::HashMap;

use super::regions;
use super::yaml::{Node, Segment, path_string};
use super::{Problem, Severity, did_you_mean};

/// Appends a problem for every rule the tree breaks.
pub(crate) fn check(root: &Node, out: &mut Vec<Problem>) {
    check_environments(root, out);
    check_globs(root, out);
    check_notifications(root, out);
    check_qualifier(root, out);
    check_repository_paths(root, out);
}

/// Paths the config names inside the repository (`build.artifacts[]`, `pipeline.stack.app`,
/// `environments[].stacks[].path`) stay inside it: not absolute, no `..`, not empty. The steps
/// resolve them against the clone; a path outside it would package or read files of the runner.
fn check_repository_paths(root: &Node, out: &mut Vec<Problem>) {
    let mut paths: Vec<(&Node, Vec<Segment>)> = Vec::new();
    if let Some(list) = root.get("build").and_then(|b| b.get("artifacts")) {
        for (k, item) in list.as_seq().iter().enumerate() {
            paths.push((item, vec![key("build"), key("artifacts"), Segment::Index(k)]));
        }
    }
    if let Some(app) = root.get("pipeline").and_then(|p| p.get("stack")).and_then(|s| s.get("app")) {
        paths.push((app, vec![key("pipeline"), key("stack"), key("app")]));
    }
    if let Some(envs) = root.get("environments") {
        for (i, env) in envs.as_seq().iter().enumerate() {
            let Some(stacks) = env.get("stacks") else { continue };
            for (j, stack) in stacks.as_seq().iter().enumerate() {
                if let Some(path) = stack.get("path") {
                    let rest = [key("stacks"), Segment::Index(j), key("path")];
                    paths.push((
                        path,
                        vec![key("environments"), Segment::Index(i)].into_iter().chain(rest).collect(),
                    ));
                }
            }
        }
    }
    for (node, path) in paths {
        let Some(p) = node.as_str() else { continue };
        let outside = p.trim().is_empty()
            || p.starts_with('/')
            || p.starts_with('\\')
            || p.as_bytes().get(1) == Some(&b':')
            || p.split(['/', '\\']).any(|part| part == "..");
        if outside {
            out.push(Problem {
                pos: node.pos,
                path: path_string(&path),
                severity: Severity::Error,
                message: format!("`{p}` is not a path inside the repository"),
                hint: Some(
                    "write it relative to the repository root, without `..` (e.g. `cdk.out`, `infra`)".into(),
                ),
            });
        }
    }
}

/// `synth.context["@aws-cdk/core:bootstrapQualifier"]`: the CDK bootstrap template's rule for
/// `--qualifier` (`[A-Za-z0-9_-]{1,10}`); the qualifier becomes part of role and bucket names.
fn check_qualifier(root: &Node, out: &mut Vec<Problem>) {
    let key_name = crate::bootstrap::QUALIFIER_CONTEXT_KEY;
    let Some(value) = root.get("synth").and_then(|s| s.get("context")).and_then(|c| c.get(key_name)) else {
        return;
    };
    let Some(q) = value.as_str() else { return };
    let valid =
        (1..=10).contains(&q.len()) && q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid && q.bytes().any(|b| b.is_ascii_uppercase()) {
        out.push(Problem {
            pos: value.pos,
            path: path_string(&[key("synth"), key("context"), key(key_name)]),
            severity: Severity::Error,
            message: format!(
                "`{q}` has upper-case letters: the bootstrap's asset bucket `cdk-{q}-assets-<account>-<region>` cannot exist (S3 bucket names are lower case)"
            ),
            hint: Some(format!("write it in lower case: `{}`", q.to_ascii_lowercase())),
        });
    }
    if !valid {
        out.push(Problem {
            pos: value.pos,
            path: path_string(&[key("synth"), key("context"), key(key_name)]),
            severity: Severity::Error,
            message: format!(
                "`{q}` is not a CDK bootstrap qualifier: 1 to 10 letters, digits, `_` or `-` (the rule of `cdk bootstrap --qualifier`)"
            ),
            hint: Some(
                "use the qualifier the target accounts were bootstrapped with (`cdk bootstrap --qualifier`), or remove the key for the default `hnb659fds`"
                    .into(),
            ),
        });
    }
}

fn env_path(i: usize, rest: &[Segment]) -> String {
    let mut path = vec![Segment::Key("environments".into()), Segment::Index(i)];
    path.extend_from_slice(rest);
    path_string(&path)
}

fn key(k: &str) -> Segment {
    Segment::Key(k.into())
}

fn check_environments(root: &Node, out: &mut Vec<Problem>) {
    let Some(envs) = root.get("environments") else { return };
    let mut names: HashMap<&str, (usize, u64)> = HashMap::new();
    for (i, env) in envs.as_seq().iter().enumerate() {
        let env_name = env.get("name").and_then(Node::as_str);
        if let (Some(name), Some(node)) = (env_name, env.get("name")) {
            match names.get(name) {
                Some(&(first, line)) => out.push(Problem {
                    pos: node.pos,
                    path: env_path(i, &[key("name")]),
                    severity: Severity::Error,
                    message: format!("duplicate environment name `{name}`"),
                    hint: Some(format!(
                        "environment names must be unique; `{name}` is already environments[{first}] (line {line})"
                    )),
                }),
                None => {
                    names.insert(name, (i, node.pos.line));
                }
            }
        }
        check_role(i, env, out);
        check_stacks(i, env_name.unwrap_or("?"), env, out);
    }
}

/// A role must live in the region's partition; one from another account is allowed but suspicious.
fn check_role(i: usize, env: &Node, out: &mut Vec<Problem>) {
    let Some(role_node) = env.get("role") else { return };
    let Some(role) = role_node.as_str() else { return };
    let mut parts = role.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(role_account)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return; // not an ARN at all: the schema's pattern reports it
    };
    let region = env.get("region").and_then(Node::as_str).and_then(regions::find);
    if let Some(region) = region
        && region.partition != partition
    {
        out.push(Problem {
            pos: role_node.pos,
            path: env_path(i, &[key("role")]),
            severity: Severity::Error,
            message: format!(
                "role is in partition `{partition}` but region {} is in partition `{}`",
                region.name, region.partition
            ),
            hint: Some(format!("write the ARN as `arn:{}:iam::...`", region.partition)),
        });
    }
    let account = env.get("account").and_then(Node::as_str);
    if let Some(account) = account {
        let is_id = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit());
        if is_id(account) && is_id(role_account) && account != role_account {
            out.push(Problem {
                pos: role_node.pos,
                path: env_path(i, &[key("role")]),
                severity: Severity::Warning,
                message: format!("role belongs to account {role_account}, not to this environment's account {account}"),
                hint: Some(format!(
                    "deploys assume this role; make sure it may deploy into {account}, or use a role of {account}"
                )),
            });
        }
    }
}

fn check_stacks(i: usize, env_name: &str, env: &Node, out: &mut Vec<Problem>) {
    let Some(stacks_node) = env.get("stacks") else { return };
    let stacks = stacks_node.as_seq();
    // name -> index of its first definition
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(stacks.len());
    for (j, stack) in stacks.iter().enumerate() {
        let Some(name_node) = stack.get("name") else { continue };
        let Some(name) = name_node.as_str() else { continue };
        match index.get(name) {
            Some(&first) => out.push(Problem {
                pos: name_node.pos,
                path: env_path(i, &[key("stacks"), Segment::Index(j), key("name")]),
                severity: Severity::Error,
                message: format!("duplicate stack name `{name}` in environment `{env_name}`"),
                hint: Some(format!(
                    "stack names must be unique within an environment; `{name}` is already stacks[{first}] (line {})",
                    stacks[first].pos.line
                )),
            }),
            None => {
                index.insert(name, j);
            }
        }
    }

    // Edges j -> k for "stack j depends on stack k", remembering which dependsOn entry made them.
    let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); stacks.len()];
    let known: Vec<&str> = {
        let mut v: Vec<(&str, usize)> = index.iter().map(|(n, j)| (*n, *j)).collect();
        v.sort_by_key(|(_, j)| *j);
        v.into_iter().map(|(n, _)| n).collect()
    };
    for (j, stack) in stacks.iter().enumerate() {
        let Some(deps) = stack.get("dependsOn") else { continue };
        let mut seen: Vec<&str> = Vec::new();
        for (k, dep_node) in deps.as_seq().iter().enumerate() {
            let Some(dep) = dep_node.as_str() else { continue };
            // Built only for a problem: most entries have none.
            let path =
                || env_path(i, &[key("stacks"), Segment::Index(j), key("dependsOn"), Segment::Index(k)]);
            if seen.contains(&dep) {
                out.push(Problem {
                    pos: dep_node.pos,
                    path: path(),
                    severity: Severity::Warning,
                    message: format!("`{dep}` is listed twice in dependsOn"),
                    hint: Some("remove the repeated entry".into()),
                });
                continue;
            }
            seen.push(dep);
            match index.get(dep) {
                Some(&target) => edges[j].push((target, k)),
                None => {
                    let hint = match did_you_mean(dep, known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if known.is_empty() => "name a stack listed in this environment".into(),
                        None => format!("the stacks of `{env_name}` are: {}", known.join(", ")),
                    };
                    out.push(Problem {
                        pos: dep_node.pos,
                        path: path(),
                        severity: Severity::Error,
                        message: format!(
                            "dependsOn names `{dep}`, which is not a stack of environment `{env_name}`"
                        ),
                        hint: Some(hint),
                    });
                }
            }
        }
    }

    for cycle in find_cycles(&edges) {
        let names: Vec<&str> =
            cycle.iter().map(|&(j, _)| stacks[j].get("name").and_then(Node::as_str).unwrap_or("?")).collect();
        let mut shown = names.join(" -> ");
        shown.push_str(" -> ");
        shown.push_str(names[0]);
        let (j, k) = cycle[0];
        let dep_node = &stacks[j].get("dependsOn").map(Node::as_seq).unwrap_or_default()[k];
        out.push(Problem {
            pos: dep_node.pos,
            path: env_path(i, &[key("stacks"), Segment::Index(j), key("dependsOn"), Segment::Index(k)]),
            severity: Severity::Error,
            message: format!("dependency cycle in environment `{env_name}`: {shown}"),
            hint: Some("a stack deploys after the stacks it depends on, so a cycle can never deploy; remove one of these dependsOn entries".into()),
        });
    }
}

/// One cycle per strongly connected component that has one (Tarjan, iterative), as a list of
/// `(stack, dependsOn index of the edge to the next stack)` starting at the component's first-listed stack.
fn find_cycles(edges: &[Vec<(usize, usize)>]) -> Vec<Vec<(usize, usize)>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut next = 0usize;
    let mut component = vec![usize::MAX; n];
    let mut components: Vec<Vec<usize>> = Vec::new();
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        // (node, next edge to look at)
        let mut work: Vec<(usize, usize)> = vec![(start, 0)];
        index[start] = next;
        low[start] = next;
        next += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (v, ref mut e)) = work.last_mut() {
            if let Some(&(w, _)) = edges[v].get(*e) {
                *e += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut members = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component[w] = components.len();
                    members.push(w);
                    if w == v {
                        break;
                    }
                }
                components.push(members);
            }
        }
    }

    let mut cycles = Vec::new();
    for (c, members) in components.iter().enumerate() {
        let first = *members.iter().min().expect("components are never empty");
        let self_loop = edges[first].iter().find(|(w, _)| *w == first);
        if members.len() == 1 {
            if let Some(&(_, k)) = self_loop {
                cycles.push(vec![(first, k)]);
            }
            continue;
        }
        // Shortest way back to `first` inside the component (BFS), for a readable cycle.
        let mut prev: HashMap<usize, (usize, usize)> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([first]);
        let mut closing: Option<(usize, usize)> = None;
        'bfs: while let Some(v) = queue.pop_front() {
            for &(w, k) in &edges[v] {
                if component[w] != c {
                    continue;
                }
                if w == first {
                    closing = Some((v, k));
                    break 'bfs;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = prev.entry(w) {
                    slot.insert((v, k));
                    queue.push_back(w);
                }
            }
        }
        let Some(mut at) = closing else { continue };
        let mut cycle = vec![at];
        while at.0 != first {
            at = prev[&at.0];
            cycle.push(at);
        }
        cycle.reverse();
        cycles.push(cycle);
    }
    cycles.sort_by_key(|c| c[0].0);
    cycles
}

fn check_globs(root: &Node, out: &mut Vec<Problem>) {
    let Some(pipeline) = root.get("pipeline") else { return };
    for field in ["branches", "tags"] {
        let Some(list) = pipeline.get(field) else { continue };
        for (k, item) in list.as_seq().iter().enumerate() {
            let Some(glob) = item.as_str() else { continue };
            if let Err(err) = globset::Glob::new(glob) {
                out.push(Problem {
                    pos: item.pos,
                    path: path_string(&[key("pipeline"), key(field), Segment::Index(k)]),
                    severity: Severity::Error,
                    message: format!("`{glob}` is not a valid glob: {}", err.kind()),
                    hint: Some(
                        "use `*` within a path segment, `**` across segments, `{a,b}` for alternatives"
                            .into(),
                    ),
                });
            }
        }
    }
}

fn check_notifications(root: &Node, out: &mut Vec<Problem>) {
    let Some(n) = root.get("notifications") else { return };
    if !matches!(n.value, super::yaml::Value::Map(_)) {
        return;
    }
    let has = |k: &str| {
        n.get(k).is_some_and(|v| {
            !v.as_seq().is_empty() || v.as_str().is_some() || v.get("webhookSecret").is_some()
        })
    };
    if !has("slack") && !has("email") && !has("snsTopicArn") {
        out.push(Problem {
            pos: n.pos,
            path: "notifications".into(),
            severity: Severity::Warning,
            message: "notifications has no destination, so nobody is notified".into(),
            hint: Some(
                "add `slack.webhookSecret`, `email` or `snsTopicArn`, or remove `notifications`".into(),
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::find_cycles;

    #[test]
    fn cycles_are_found_once_per_component_starting_at_the_first_stack() {
        // 0 -> 1 -> 2 -> 0, 3 -> 3, 4 -> 0
        let edges = vec![vec![(1, 0)], vec![(2, 0)], vec![(0, 1)], vec![(3, 0)], vec![(0, 0)]];
        let cycles = find_cycles(&edges);
        assert_eq!(cycles, vec![vec![(0, 0), (1, 0), (2, 1)], vec![(3, 0)]]);
    }

    #[test]
    fn a_dag_has_no_cycle() {
        let edges = vec![vec![], vec![(0, 0)], vec![(0, 0), (1, 1)]];
        assert!(find_cycles(&edges).is_empty());
    }
}
