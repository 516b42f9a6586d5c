//! `aphex-config.yaml`: the model, parsing with source positions, and validation into diagnostics.
//!
//! Validation runs in one pass and reports every problem: the YAML is read into a position-indexed
//! tree ([`yaml`]), the tree is checked against the JSON Schema generated from the model ([`schema`])
//! and against the rules a schema cannot express ([`rules`]); only a file without errors is then
//! deserialized into [`Config`].

pub mod model;
pub mod regions;
mod render;
mod rules;
pub mod schema;
mod yaml;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use model::*;
pub use render::{render_human, render_json};
pub use schema::{SCHEMA_FILE, json_schema, json_schema_text};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a config file, placed at its source position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// The field path, e.g. `environments[1].name`; empty for the whole document.
    pub path: String,
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} is not a valid AphexPipeline config ({} problem(s))", diagnostics.len())]
    Invalid { file: String, text: String, diagnostics: Vec<Diagnostic> },
}

/// The outcome of checking a config: the model when there is no error, and every diagnostic (errors
/// and warnings) in source order.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub config: Option<Config>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// The number of diagnostics with `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == severity).count()
    }
}

/// A diagnostic before it is labelled with its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub pos: yaml::Pos,
    pub path: String,
    pub severity: Severity,
    pub message: String,
    pub hint: Option<String>,
}

/// Parses and validates config text; `file` is only used to label diagnostics. Warnings do not make
/// a config invalid; use [`check`] to see them.
pub fn parse(file: &str, text: &str) -> Result<Config, Vec<Diagnostic>> {
    let report = check(file, text);
    match report.config {
        Some(config) => Ok(config),
        None => Err(report.diagnostics.into_iter().filter(|d| d.severity == Severity::Error).collect()),
    }
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    let file = path.display().to_string();
    parse(&file, &text).map_err(|diagnostics| LoadError::Invalid { file, text, diagnostics })
}

/// Checks config text and returns every problem found, in source order, with the model when there
/// is no error.
pub fn check(file: &str, text: &str) -> Report {
    let mut problems = Vec::new();
    let config = check_problems(text, &mut problems);
    problems.sort_by_key(|p| (p.pos, p.severity));
    let diagnostics = problems
        .into_iter()
        .map(|p| Diagnostic {
            file: file.to_owned(),
            line: p.pos.line,
            column: p.pos.column,
            path: p.path,
            severity: p.severity,
            message: p.message,
            hint: p.hint,
        })
        .collect();
    Report { config, diagnostics }
}

/// Like [`check`], for raw bytes (a file that may not be UTF-8).
pub fn check_bytes(file: &str, bytes: &[u8]) -> Report {
    match std::str::from_utf8(bytes) {
        Ok(text) => check(file, text),
        Err(err) => {
            let valid = &bytes[..err.valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&valid[line_start..]).chars().count() as u64 + 1;
            Report {
                config: None,
                diagnostics: vec![Diagnostic {
                    file: file.to_owned(),
                    line,
                    column,
                    path: String::new(),
                    severity: Severity::Error,
                    message: "the file is not valid UTF-8".into(),
                    hint: Some("save the file as UTF-8".into()),
                }],
            }
        }
    }
}

fn check_problems(text: &str, out: &mut Vec<Problem>) -> Option<Config> {
    let root = match yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => {
            out.push(Problem {
                pos: yaml::Pos { line: 1, column: 1 },
                path: String::new(),
                severity: Severity::Error,
                message: "the file is empty".into(),
                hint: Some(
                    "`version`, `build.commands` and `environments` are required; see examples/minimal/aphex-config.yaml"
                        .into(),
                ),
            });
            return None;
        }
        Err(yaml_problems) => {
            out.extend(yaml_problems.into_iter().map(|p| Problem {
                pos: p.pos,
                path: yaml::path_string(&p.path),
                severity: Severity::Error,
                message: p.message,
                hint: p.hint,
            }));
            return None;
        }
    };
    let json = if worth_a_second_thread(text) {
        // On a large file, the rules run beside the JSON conversion and the schema check.
        std::thread::scope(|scope| {
            let rules = scope.spawn(|| {
                let mut found = Vec::new();
                rules::check(&root, &mut found);
                found
            });
            let json = root.to_json();
            schema::check(&root, &json, text, out);
            out.extend(rules.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
            json
        })
    } else {
        let json = root.to_json();
        schema::check(&root, &json, text, out);
        rules::check(&root, out);
        json
    };
    if out.iter().any(|p| p.severity == Severity::Error) {
        return None;
    }
    match serde_json::from_value::<Config>(json) {
        Ok(config) => Some(config),
        Err(err) => {
            // The schema is generated from the model, so this means the two drifted apart.
            out.push(Problem {
                pos: root.pos,
                path: String::new(),
                severity: Severity::Error,
                message: format!("the config passed the schema but does not fit the model: {err}"),
                hint: Some("this is a bug in AphexPipeline; please report it with the file".into()),
            });
            None
        }
    }
}

/// Whether a file is big enough for a second thread to pay for itself (about 20 µs to start).
fn worth_a_second_thread(text: &str) -> bool {
    text.len() > 32 * 1024
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate.to_lowercase() == lower {
            return Some(candidate);
        }
        let distance = strsim::damerau_levenshtein(&lower, &candidate.to_lowercase());
        let limit = (candidate.chars().count().max(word.chars().count()) / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, c)| c)
}
