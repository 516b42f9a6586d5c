//! Which stacks of the assembly an environment deploys, and in what order: matched by stack name,
//! display name or a stage path pattern (`Prod/*`), ordered by the manifest's dependencies, the config's
//! `dependsOn` and the listed order.

use std::collections::{BTreeSet, HashMap};

use globset::{GlobBuilder, GlobMatcher};

use crate::assembly::{CloudAssembly, Stack};
use crate::config::{ParameterSource, StackRef};
use indexmap::IndexMap;

/// Why a stack selection is impossible.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectError {
    #[error("stack {name:?} (environment {environment}) is not in the cloud assembly; it has: {}", available.join(", "))]
    MissingStack { environment: String, name: String, available: Vec<String> },
    #[error("stack pattern {0:?} is not a valid glob: {1}")]
    BadPattern(String, String),
    #[error(
        "stack {stack:?} dependsOn {depends_on:?}, which environment {environment} does not deploy; add it to its stacks"
    )]
    UnknownDependency { environment: String, stack: String, depends_on: String },
    #[error("the stacks of environment {environment} depend on each other in a cycle: {}", cycle.join(" -> "))]
    Cycle { environment: String, cycle: Vec<String> },
}

/// A stack to deploy with the indices (into the plan) of the stacks it waits for.
#[derive(Debug, Clone)]
pub struct PlannedStack {
    pub stack: Stack,
    pub depends_on: Vec<usize>,
    /// The config's parameter values for it: of every `stacks[]` entry that selects it, later
    /// entries overriding earlier ones.
    pub parameters: IndexMap<String, ParameterSource>,
}

enum Matcher {
    Exact(String),
    Glob(GlobMatcher),
}

impl Matcher {
    /// A glob matches as the CDK CLI's `minimatch(hierarchicalId, pattern)` does: `*` and `?` stay
    /// within one path segment (`Outer/*` is the stacks directly in Stage `Outer`), `**` crosses
    /// segments (`Outer/**` is every stack under it, at any depth).
    fn new(pattern: &str) -> Result<Self, SelectError> {
        if pattern.contains(['*', '?', '[', '{']) {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| SelectError::BadPattern(pattern.to_owned(), e.to_string()))?;
            Ok(Matcher::Glob(glob.compile_matcher()))
        } else {
            Ok(Matcher::Exact(pattern.to_owned()))
        }
    }

    /// An exact name is a stack name, a display name (the construct path `cdk ls` prints) or an
    /// artifact id; a glob is matched against the display name only, as the CDK CLI does
    /// (`minimatch(hierarchicalId, pattern)`): a stack name has no `/`, so `*` would match every
    /// stack of every Stage by its stack name.
    fn matches(&self, s: &Stack) -> bool {
        match self {
            Matcher::Exact(n) => [&s.stack_name, &s.display_name, &s.id].contains(&n),
            Matcher::Glob(g) => g.is_match(&s.display_name),
        }
    }
}

fn matching(assembly: &CloudAssembly, environment: &str, pattern: &str) -> Result<Vec<usize>, SelectError> {
    let m = Matcher::new(pattern)?;
    let found: Vec<usize> = (0..assembly.stacks.len()).filter(|i| m.matches(&assembly.stacks[*i])).collect();
    if found.is_empty() {
        return Err(SelectError::MissingStack {
            environment: environment.to_owned(),
            name: pattern.to_owned(),
            available: assembly.stacks.iter().map(|s| s.display_name.clone()).collect(),
        });
    }
    Ok(found)
}

/// Selects the environment's stacks (optionally narrowed to `only`, the CLI's `--stacks`) in deploy
/// order: a stack comes after everything it depends on, otherwise in listed order.
pub fn plan(
    assembly: &CloudAssembly,
    environment: &str,
    refs: &[StackRef],
    only: &[String],
) -> Result<Vec<PlannedStack>, SelectError> {
    // Assembly index of every selected stack, in listed order, and the config edges between them.
    let mut selected: Vec<usize> = Vec::new();
    let mut per_ref: Vec<Vec<usize>> = Vec::new();
    for r in refs {
        let found = matching(assembly, environment, &r.name)?;
        for i in &found {
            if !selected.contains(i) {
                selected.push(*i);
            }
        }
        per_ref.push(found);
    }
    if !only.is_empty() {
        let mut keep = BTreeSet::new();
        for pattern in only {
            let found = matching(assembly, environment, pattern)?;
            let picked: Vec<usize> = found.into_iter().filter(|i| selected.contains(i)).collect();
            if picked.is_empty() {
                return Err(SelectError::MissingStack {
                    environment: environment.to_owned(),
                    name: pattern.clone(),
                    available: selected.iter().map(|i| assembly.stacks[*i].display_name.clone()).collect(),
                });
            }
            keep.extend(picked);
        }
        selected.retain(|i| keep.contains(i));
    }

    let mut edges: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    // Manifest dependencies, followed through stacks that are not selected.
    let by_id: HashMap<&str, usize> =
        assembly.stacks.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    for &i in &selected {
        let mut stack = vec![i];
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            for dep in &assembly.stacks[n].dependencies {
                let Some(&d) = by_id.get(dep.as_str()) else { continue };
                if !seen.insert(d) {
                    continue;
                }
                if selected.contains(&d) {
                    edges.entry(i).or_default().insert(d);
                } else {
                    stack.push(d);
                }
            }
        }
    }
    for (r, found) in refs.iter().zip(&per_ref) {
        for dep_name in &r.depends_on {
            let deps =
                matching(assembly, environment, dep_name).map_err(|_| SelectError::UnknownDependency {
                    environment: environment.to_owned(),
                    stack: r.name.clone(),
                    depends_on: dep_name.clone(),
                })?;
            for &i in found.iter().filter(|i| selected.contains(i)) {
                for &d in deps.iter().filter(|d| selected.contains(d) && **d != i) {
                    edges.entry(i).or_default().insert(d);
                }
            }
        }
    }

    // Kahn's algorithm, always taking the earliest listed ready stack: listed order breaks ties.
    let mut order: Vec<usize> = Vec::new();
    let mut remaining: Vec<usize> = selected.clone();
    while !remaining.is_empty() {
        let pos = remaining
            .iter()
            .position(|i| edges.get(i).is_none_or(|deps| deps.iter().all(|d| order.contains(d))));
        match pos {
            Some(p) => order.push(remaining.remove(p)),
            None => {
                return Err(SelectError::Cycle {
                    environment: environment.to_owned(),
                    cycle: find_cycle(&remaining, &edges)
                        .iter()
                        .map(|i| assembly.stacks[*i].display_name.clone())
                        .collect(),
                });
            }
        }
    }
    let position: HashMap<usize, usize> = order.iter().enumerate().map(|(p, i)| (*i, p)).collect();
    Ok(order
        .iter()
        .map(|i| {
            let mut parameters = IndexMap::new();
            for (r, found) in refs.iter().zip(&per_ref) {
                if found.contains(i) {
                    parameters.extend(r.parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            PlannedStack {
                stack: assembly.stacks[*i].clone(),
                depends_on: edges.get(i).map(|d| d.iter().map(|d| position[d]).collect()).unwrap_or_default(),
                parameters,
            }
        })
        .collect())
}

fn find_cycle(remaining: &[usize], edges: &HashMap<usize, BTreeSet<usize>>) -> Vec<usize> {
    // Every remaining node has an unmet dependency among the remaining ones: walk until a repeat.
    let mut path = vec![remaining[0]];
    loop {
        let last = *path.last().unwrap_or(&remaining[0]);
        let next = edges.get(&last).and_then(|d| d.iter().find(|d| remaining.contains(d)).copied());
        let Some(next) = next else { return path };
        if let Some(start) = path.iter().position(|n| *n == next) {
            let mut cycle = path[start..].to_vec();
            cycle.push(next);
            return cycle;
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn stack(id: &str, display: &str, deps: &[&str]) -> Stack {
        Stack {
            id: id.into(),
            stack_name: id.replace('/', "-"),
            display_name: display.into(),
            environment: "aws://unknown-account/unknown-region".into(),
            template_path: PathBuf::new(),
            properties: Default::default(),
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
            file_assets: vec![],
            docker_assets: vec![],
            assets_bootstrap: None,
        }
    }

    fn assembly() -> CloudAssembly {
        CloudAssembly {
            dir: PathBuf::new(),
            version: "55.0.0".into(),
            stacks: vec![
                stack("Net", "Net", &[]),
                stack("Data", "Data", &["Net"]),
                stack("Api", "Api", &["Data"]),
                stack("Prod/Web", "Prod/Web", &[]),
                stack("Prod/Db", "Prod/Db", &[]),
            ],
        }
    }

    fn refs(spec: &[(&str, &[&str])]) -> Vec<StackRef> {
        spec.iter()
            .map(|(n, d)| StackRef {
                name: n.to_string(),
                path: None,
                depends_on: d.iter().map(|s| s.to_string()).collect(),
                parameters: Default::default(),
            })
            .collect()
    }

    /// `expect`: (display name, names it waits for) in order.
    fn check(spec: &[(&str, &[&str])], only: &[&str], expect: &[(&str, &[&str])]) {
        let only: Vec<String> = only.iter().map(|s| s.to_string()).collect();
        let plan = plan(&assembly(), "dev", &refs(spec), &only).unwrap();
        let got: Vec<(String, Vec<String>)> = plan
            .iter()
            .map(|p| {
                (
                    p.stack.display_name.clone(),
                    p.depends_on.iter().map(|d| plan[*d].stack.display_name.clone()).collect(),
                )
            })
            .collect();
        let want: Vec<(String, Vec<String>)> =
            expect.iter().map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn orders_by_manifest_dependencies_then_listed_order() {
        check(
            &[("Api", &[]), ("Net", &[]), ("Data", &[])],
            &[],
            &[("Net", &[]), ("Data", &["Net"]), ("Api", &["Data"])],
        );
        // Data not selected: Api still waits for Net through it.
        check(&[("Api", &[]), ("Net", &[])], &[], &[("Net", &[]), ("Api", &["Net"])]);
    }

    #[test]
    fn stage_patterns_and_config_depends_on() {
        check(
            &[("Prod/*", &["Net"]), ("Net", &[])],
            &[],
            &[("Net", &[]), ("Prod/Web", &["Net"]), ("Prod/Db", &["Net"])],
        );
        check(
            &[("Prod/Db", &["Prod/Web"]), ("Prod/Web", &[])],
            &[],
            &[("Prod/Web", &[]), ("Prod/Db", &["Prod/Web"])],
        );
        check(&[("Prod/*", &[]), ("Net", &[])], &["Prod-Db"], &[("Prod/Db", &[])]);
    }

    #[test]
    fn globs_match_display_names_segment_by_segment_as_cdk_ls_does() {
        // `*` stays within a path segment: `*` is the app's own stacks, `Prod/*` the Stage's.
        check(&[("*", &[])], &[], &[("Net", &[]), ("Data", &["Net"]), ("Api", &["Data"])]);
        check(&[("Prod/*", &[])], &[], &[("Prod/Web", &[]), ("Prod/Db", &[])]);
        check(&[("**/Db", &[])], &[], &[("Prod/Db", &[])]);
        // A stack name (`Prod-Db`) is matched exactly, never by a glob.
        let err = plan(&assembly(), "dev", &refs(&[("Prod-*", &[])]), &[]).unwrap_err();
        assert!(matches!(err, SelectError::MissingStack { .. }), "{err}");
    }

    #[test]
    fn missing_stack_lists_available_ones() {
        let err = plan(&assembly(), "dev", &refs(&[("Nope", &[])]), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "stack \"Nope\" (environment dev) is not in the cloud assembly; it has: Net, Data, Api, Prod/Web, Prod/Db"
        );
    }

    #[test]
    fn cycles_are_named() {
        let err = plan(&assembly(), "dev", &refs(&[("Net", &["Api"]), ("Api", &[])]), &[]).unwrap_err();
        assert!(matches!(err, SelectError::Cycle { .. }), "{err}");
        assert!(err.to_string().contains("Net") && err.to_string().contains("Api"), "{err}");
    }
}
