//! Drawing a `Plan` as Mermaid or DOT: stages, approval gates, and each environment's stack DAG.
//!
//! A deploy stage is drawn as a box per environment (a Mermaid subgraph, a DOT cluster) holding its
//! stacks with their dependency edges; edges into the environment go to its first stacks, edges out of
//! it leave from its last ones. Finalize hangs off the end with a dotted edge: it always runs.

use std::fmt::Write as _;

use crate::plan::{Plan, PlannedStack, Stage, StageKind};

/// A graph node: id and label.
struct Node {
    id: String,
    label: String,
    shape: Shape,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Box,
    Gate,
    Stack,
    Exit,
}

/// The drawable form of a plan, shared by both output formats.
struct Drawing {
    /// Nodes outside any environment box.
    nodes: Vec<Node>,
    /// (environment box id, title, stack nodes).
    clusters: Vec<(String, String, Vec<Node>)>,
    /// Solid edges.
    edges: Vec<(String, String)>,
    /// The dotted edge to finalize.
    exit_edge: Option<(String, String)>,
}

fn node_id(raw: &str) -> String {
    raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn stack_node_id(env: &str, index: usize) -> String {
    format!("{}__s{index}", node_id(env))
}

/// Entry and exit nodes of a stage: a deploy enters at its first stacks and leaves from its last ones.
fn ends(stage: &Stage) -> (Vec<String>, Vec<String>) {
    match &stage.kind {
        StageKind::Deploy { env, stacks, .. } => {
            let roots = stacks
                .iter()
                .enumerate()
                .filter(|(_, s)| s.depends_on.is_empty())
                .map(|(i, _)| stack_node_id(env, i))
                .collect();
            let sinks = stacks
                .iter()
                .enumerate()
                .filter(|(_, s)| !stacks.iter().any(|o| o.depends_on.contains(&s.name)))
                .map(|(i, _)| stack_node_id(env, i))
                .collect();
            (roots, sinks)
        }
        _ => (vec![node_id(&stage.id)], vec![node_id(&stage.id)]),
    }
}

fn stack_label(s: &PlannedStack) -> String {
    s.name.clone()
}

fn drawing(plan: &Plan) -> Drawing {
    let mut d = Drawing { nodes: Vec::new(), clusters: Vec::new(), edges: Vec::new(), exit_edge: None };
    for stage in &plan.stages {
        match &stage.kind {
            StageKind::Deploy { env, region, account, stacks } => {
                let title = format!("deploy {env} · {account} {region} · lock {}", plan.mutex_name(env));
                let nodes: Vec<Node> = stacks
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Node {
                        id: stack_node_id(env, i),
                        label: stack_label(s),
                        shape: Shape::Stack,
                    })
                    .collect();
                for (i, s) in stacks.iter().enumerate() {
                    for dep in &s.depends_on {
                        if let Some(j) = stacks.iter().position(|o| &o.name == dep) {
                            d.edges.push((stack_node_id(env, j), stack_node_id(env, i)));
                        }
                    }
                }
                d.clusters.push((format!("cluster_{}", node_id(&stage.id)), title, nodes));
            }
            StageKind::Approval { env } => d.nodes.push(Node {
                id: node_id(&stage.id),
                label: format!("approve {env}?"),
                shape: Shape::Gate,
            }),
            StageKind::Test { env } => {
                d.nodes.push(Node { id: node_id(&stage.id), label: format!("test {env}"), shape: Shape::Box })
            }
            other => {
                d.nodes.push(Node { id: node_id(&stage.id), label: other.to_string(), shape: Shape::Box })
            }
        }
        for dep in &stage.depends_on {
            if let Some(dep_stage) = plan.stage(dep) {
                let (_, from) = ends(dep_stage);
                let (to, _) = ends(stage);
                for f in &from {
                    for t in &to {
                        d.edges.push((f.clone(), t.clone()));
                    }
                }
            }
        }
    }
    d.nodes.push(Node {
        id: node_id(&plan.finalize.id),
        label: plan.finalize.kind.to_string(),
        shape: Shape::Exit,
    });
    if let Some(last) = plan.stages.last() {
        let (_, from) = ends(last);
        if let Some(f) = from.into_iter().next() {
            d.exit_edge = Some((f, node_id(&plan.finalize.id)));
        }
    }
    d
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// A Mermaid flowchart (paste into a Markdown ```mermaid block or mermaid.live).
pub fn mermaid(plan: &Plan) -> String {
    let d = drawing(plan);
    let mut out = String::from("flowchart TD\n");
    let shape = |n: &Node| {
        let l = mermaid_text(&n.label);
        match n.shape {
            Shape::Box => format!("{}[\"{l}\"]", n.id),
            Shape::Gate => format!("{}{{\"{l}\"}}", n.id),
            Shape::Stack => format!("{}([\"{l}\"])", n.id),
            Shape::Exit => format!("{}[[\"{l}\"]]", n.id),
        }
    };
    for n in &d.nodes {
        let _ = writeln!(out, "  {}", shape(n));
    }
    for (id, title, nodes) in &d.clusters {
        let _ = writeln!(out, "  subgraph {id}[\"{}\"]", mermaid_text(title));
        for n in nodes {
            let _ = writeln!(out, "    {}", shape(n));
        }
        out.push_str("  end\n");
    }
    for (a, b) in &d.edges {
        let _ = writeln!(out, "  {a} --> {b}");
    }
    if let Some((a, b)) = &d.exit_edge {
        let _ = writeln!(out, "  {a} -. onExit, always .-> {b}");
    }
    out
}

fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A Graphviz digraph (`aphex graph --format dot | dot -Tsvg > pipeline.svg`).
pub fn dot(plan: &Plan) -> String {
    let d = drawing(plan);
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [fontname=\"Helvetica\", shape=box, style=rounded];\n",
        dot_text(&plan.pipeline)
    );
    let attrs = |n: &Node| {
        let l = dot_text(&n.label);
        match n.shape {
            Shape::Box => format!("label=\"{l}\""),
            Shape::Gate => format!("label=\"{l}\", shape=diamond, style=filled, fillcolor=\"#fff3bf\""),
            Shape::Stack => {
                format!("label=\"{l}\", shape=box, style=\"rounded,filled\", fillcolor=\"#e7f5ff\"")
            }
            Shape::Exit => format!("label=\"{l}\", shape=box, style=\"rounded,dashed\""),
        }
    };
    for n in &d.nodes {
        let _ = writeln!(out, "  {} [{}];", n.id, attrs(n));
    }
    for (id, title, nodes) in &d.clusters {
        let _ = writeln!(out, "  subgraph {id} {{\n    label=\"{}\";\n    style=rounded;", dot_text(title));
        for n in nodes {
            let _ = writeln!(out, "    {} [{}];", n.id, attrs(n));
        }
        out.push_str("  }\n");
    }
    for (a, b) in &d.edges {
        let _ = writeln!(out, "  {a} -> {b};");
    }
    if let Some((a, b)) = &d.exit_edge {
        let _ = writeln!(out, "  {a} -> {b} [style=dotted, label=\"onExit (always)\"];");
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let yaml = r#"
version: "1.0"
build: { commands: [x] }
environments:
  - name: dev
    region: us-east-1
    account: "111111111111"
    stacks: [{ name: Net }, { name: "Prod/*", dependsOn: [Net] }, { name: Web }]
  - name: prod
    region: eu-west-1
    account: "222222222222"
    approval: manual
    stacks: [{ name: App }]
    tests: { commands: [t] }
"#;
        crate::plan::build(&crate::config::parse("c.yaml", yaml).unwrap_or_else(|d| panic!("{d:?}")))
    }

    #[test]
    fn mermaid_draws_stacks_gates_and_exit() {
        let m = mermaid(&plan());
        for line in [
            "flowchart TD",
            "  approve_prod{\"approve prod?\"}",
            "  subgraph cluster_deploy_dev[\"deploy dev · 111111111111 us-east-1 · lock aphex-aphex-pipeline-dev\"]",
            "    dev__s1([\"Prod/*\"])",
            "  pipeline --> dev__s0",
            "  pipeline --> dev__s2",
            "  dev__s0 --> dev__s1",
            "  dev__s1 --> notify_approve_prod",
            "  dev__s2 --> notify_approve_prod",
            "  notify_approve_prod --> approve_prod",
            "  approve_prod --> prod__s0",
            "  prod__s0 --> test_prod",
            "  test_prod -. onExit, always .-> finalize",
        ] {
            assert!(m.lines().any(|l| l == line), "missing `{line}` in\n{m}");
        }
    }

    #[test]
    fn dot_is_a_digraph_with_clusters() {
        let g = dot(&plan());
        assert!(g.starts_with("digraph \"aphex-pipeline\" {"), "{g}");
        assert!(g.contains("  subgraph cluster_deploy_prod {"), "{g}");
        assert!(g.contains("  dev__s0 -> dev__s1;"), "{g}");
        assert!(g.contains("  test_prod -> finalize [style=dotted"), "{g}");
        assert_eq!(g.matches('{').count(), g.matches('}').count());
    }
}
