//! `aphex-config.yaml`: the model, parsing with source positions, and validation into diagnostics.

pub mod model;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use model::*;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// Parses and validates config text; `file` is only used to label diagnostics.
pub fn parse(file: &str, text: &str) -> Result<Config, Vec<Diagnostic>> {
    serde_saphyr::from_str::<Config>(text).map_err(|err| {
        let (line, column) = err.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
        vec![Diagnostic {
            file: file.to_owned(),
            line,
            column,
            path: String::new(),
            severity: Severity::Error,
            message: err.to_string(),
            hint: None,
        }]
    })
}

/// Reads, parses and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.to_owned(), source })?;
    let file = path.display().to_string();
    parse(&file, &text).map_err(|diagnostics| LoadError::Invalid { file, text, diagnostics })
}
