//! Diagnostics for people (compiler style: `PATH:LINE:COL: error: ...`, the source line, a caret
//! under the problem labelled with the field path, and the hint) and for machines (a JSON array).

use super::{Diagnostic, Severity};

/// Renders diagnostics of one file the way compilers do. `source` is the file's text, used to show
/// the offending line.
pub fn render_human(diagnostics: &[Diagnostic], source: &str) -> String {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    for d in diagnostics {
        let severity = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!("{}:{}:{}: {severity}: {}\n", d.file, d.line, d.column, d.message));
        let number = d.line.to_string();
        let gutter = " ".repeat(number.len());
        match lines.get((d.line as usize).wrapping_sub(1)) {
            Some(text) => {
                let col = d.column.saturating_sub(1) as usize;
                // Keep tabs so the caret lines up with the source as the terminal shows it.
                let pad: String =
                    text.chars().take(col).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
                let width = caret_width(text, col);
                let label = if d.path.is_empty() { String::new() } else { format!(" {}", d.path) };
                out.push_str(&format!(
                    "{gutter} |\n{number} | {text}\n{gutter} | {pad}{}{label}\n",
                    "^".repeat(width)
                ));
            }
            None if !d.path.is_empty() => out.push_str(&format!("{gutter} = field: {}\n", d.path)),
            None => {}
        }
        if let Some(hint) = &d.hint {
            out.push_str(&format!("{gutter} = hint: {hint}\n"));
        }
        out.push('\n');
    }
    out
}

/// Renders diagnostics as a JSON array of `{file, line, column, path, severity, message, hint}`.
pub fn render_json(diagnostics: &[Diagnostic]) -> String {
    serde_json::to_string_pretty(diagnostics).expect("diagnostics always serialize")
}

/// How many characters the caret covers: the token starting at `col` (a quoted string, or a plain
/// value up to `: `, ` #` or a flow delimiter), at least one.
fn caret_width(line: &str, col: usize) -> usize {
    let rest: Vec<char> = line.chars().skip(col).collect();
    let Some(&first) = rest.first() else { return 1 };
    if first == '"' || first == '\'' {
        let mut i = 1;
        while i < rest.len() {
            if rest[i] == first && !(first == '"' && rest[i - 1] == '\\') {
                return i + 1;
            }
            i += 1;
        }
        return rest.len();
    }
    let in_flow = line.chars().take(col).any(|c| c == '[' || c == '{');
    let mut end = 0;
    while end < rest.len() {
        let c = rest[end];
        let next = rest.get(end + 1).copied();
        if (c == ':' && (next.is_none() || next == Some(' ')))
            || (c == ' ' && next == Some('#'))
            || (in_flow && matches!(c, ',' | ']' | '}'))
        {
            break;
        }
        end += 1;
    }
    while end > 0 && rest[end - 1] == ' ' {
        end -= 1;
    }
    end.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(line: u64, column: u64, path: &str) -> Diagnostic {
        Diagnostic {
            file: "aphex-config.yaml".into(),
            line,
            column,
            path: path.into(),
            severity: Severity::Error,
            message: "duplicate environment name `dev`".into(),
            hint: Some("keep one".into()),
        }
    }

    #[test]
    fn human_output_shows_position_line_caret_field_and_hint() {
        let source = "environments:\n  - name: dev\n  - name: dev\n";
        let out = render_human(&[diag(3, 11, "environments[1].name")], source);
        assert_eq!(
            out,
            "aphex-config.yaml:3:11: error: duplicate environment name `dev`\n  |\n3 |   - name: dev\n  |           ^^^ environments[1].name\n  = hint: keep one\n\n"
        );
    }

    #[test]
    fn carets_cover_the_token() {
        assert_eq!(caret_width("  account: \"12345\" # x", 11), 7);
        assert_eq!(caret_width("  stackz:", 2), 6);
        assert_eq!(caret_width("  on: [sucess, failure]", 7), 6);
        assert_eq!(caret_width("  region: us-est-1 # typo", 10), 8);
        assert_eq!(caret_width("", 0), 1);
    }

    #[test]
    fn json_output_has_the_contract_fields() {
        let out: serde_json::Value = serde_json::from_str(&render_json(&[diag(3, 11, "x")])).unwrap();
        let keys: Vec<&str> = out[0].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["file", "line", "column", "path", "severity", "message", "hint"]);
        assert_eq!(out[0]["severity"], "error");
    }
}
