//! A position-indexed YAML tree built from the events of a YAML 1.2 parser (rlsp-yaml-parser): every node and every mapping key
//! keeps its line and column, so later checks can point at the exact place of a problem. Scalars are
//! typed with the YAML 1.2 core schema (what `check-jsonschema` and editors use), aliases and `<<`
//! merge keys are expanded, and duplicate keys, multiple documents and syntax errors become problems.

use std::borrow::Cow;
use std::collections::HashMap;

use rlsp_yaml_parser::{Event, ScalarStyle, Span};

/// A 1-based source position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

/// Turns the parser's byte offsets into lines and columns. Events arrive in source order, so the
/// line of the previous lookup is tried first and a lookup is usually O(1).
struct Lines<'a> {
    text: &'a str,
    /// Byte offset where each line starts; line breaks are `\n`, `\r\n` or a lone `\r`.
    starts: Vec<usize>,
    last: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let mut starts = Vec::with_capacity(bytes.len() / 32 + 1);
        starts.push(0);
        for (i, b) in bytes.iter().enumerate() {
            let ends_line = *b == b'\n' || (*b == b'\r' && bytes.get(i + 1) != Some(&b'\n'));
            if ends_line {
                starts.push(i + 1);
            }
        }
        Lines { text, starts, last: 0 }
    }

    fn pos(&mut self, offset: usize) -> Pos {
        let in_line =
            |i: usize| self.starts[i] <= offset && self.starts.get(i + 1).is_none_or(|next| offset < *next);
        let last = self.last;
        let index = if in_line(last) {
            last
        } else if last + 1 < self.starts.len() && in_line(last + 1) {
            last + 1
        } else {
            self.starts.partition_point(|start| *start <= offset) - 1
        };
        self.last = index;
        let prefix = self.text.get(self.starts[index]..offset).unwrap_or("");
        let column = if prefix.is_ascii() { prefix.len() } else { prefix.chars().count() };
        Pos { line: index as u64 + 1, column: column as u64 + 1 }
    }

    fn of(&mut self, span: &Span) -> Pos {
        self.pos(span.start as usize)
    }
}

/// A YAML node with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub pos: Pos,
    pub value: Value<'a>,
}

/// A scalar's type under the YAML 1.2 core schema, or a collection.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    /// A string; `plain` is false when it was quoted or a block scalar.
    /// Borrowed from the source text unless escapes or folding changed it.
    String {
        text: Cow<'a, str>,
        plain: bool,
    },
    Seq(Vec<Node<'a>>),
    Map(Vec<Entry<'a>>),
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    pub key: Cow<'a, str>,
    pub key_pos: Pos,
    pub value: Node<'a>,
}

/// A problem found while reading the YAML itself (not the config it describes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlProblem {
    pub pos: Pos,
    /// Field path of the place, as segments (keys and indices).
    pub path: Vec<Segment>,
    pub message: String,
    pub hint: Option<String>,
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Upper bound on nodes after alias expansion: real configs have a few thousand; a "billion laughs"
/// document must fail fast instead of eating memory.
const MAX_NODES: usize = 1_000_000;

impl<'a> Node<'a> {
    /// The entry `key` of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.entry(key).map(|e| &e.value)
    }

    /// The entry `key` of a mapping node, with its key position. The last one wins, like serde.
    pub fn entry(&self, key: &str) -> Option<&Entry<'a>> {
        match &self.value {
            Value::Map(entries) => entries.iter().rev().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> &[Node<'a>] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String { text, .. } => Some(text),
            _ => None,
        }
    }

    /// How the value reads in a message: `number 123`, `an empty value`, `a mapping`.
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "an empty value (null)".into(),
            Value::Bool(b) => format!("the boolean `{b}`"),
            Value::Int(i) => format!("the number `{i}`"),
            Value::Float(f) => format!("the number `{f}`"),
            Value::String { text, .. } => format!("the string `{}`", shorten(text)),
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a mapping".into(),
        }
    }

    /// The node at `path`, following mapping keys and list indices.
    pub fn at(&self, path: &[Segment]) -> Option<&Node<'a>> {
        let mut node = self;
        for seg in path {
            node = match (seg, &node.value) {
                (Segment::Key(k), Value::Map(_)) => node.get(k)?,
                (Segment::Index(i), Value::Seq(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The tree as JSON, for the JSON Schema check and for deserializing the model. Values JSON cannot
    /// hold (NaN, infinities, integers beyond 64 bits) become strings, which the schema then rejects.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    J::from(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    J::from(v)
                } else {
                    J::String(i.to_string())
                }
            }
            // 30.0 is an integer to JSON Schema; make it one to serde as well.
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => J::from(*f as i64),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::String(f.to_string()))
            }
            Value::String { text, .. } => J::String(text.to_string()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => {
                let mut map = serde_json::Map::with_capacity(entries.len());
                for e in entries {
                    map.insert(e.key.to_string(), e.value.to_json());
                }
                J::Object(map)
            }
        }
    }

    fn size(&self) -> usize {
        match &self.value {
            Value::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Value::Map(entries) => 1 + entries.iter().map(|e| 1 + e.value.size()).sum::<usize>(),
            _ => 1,
        }
    }
}

/// Renders a field path the way users write it: `environments[1].stacks[0].name`.
pub fn path_string(path: &[Segment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
            Segment::Key(k) => {
                let simple =
                    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if simple {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                } else {
                    out.push_str(&format!("[{}]", serde_json::Value::String(k.clone())));
                }
            }
        }
    }
    out
}

fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
fn resolve_plain(text: Cow<'_, str>) -> Value<'_> {
    match text.as_ref() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let bytes = text.as_bytes();
    let digits = |s: &[u8], ok: fn(u8) -> bool| !s.is_empty() && s.iter().all(|b| ok(*b));
    if let Some(rest) = text.strip_prefix("0x")
        && digits(rest.as_bytes(), |b| b.is_ascii_hexdigit())
        && let Ok(v) = i128::from_str_radix(rest, 16)
    {
        return Value::Int(v);
    }
    if let Some(rest) = text.strip_prefix("0o")
        && digits(rest.as_bytes(), |b| (b'0'..=b'7').contains(&b))
        && let Ok(v) = i128::from_str_radix(rest, 8)
    {
        return Value::Int(v);
    }
    let unsigned = match bytes.first() {
        Some(b'-' | b'+') => &bytes[1..],
        _ => bytes,
    };
    if digits(unsigned, |b| b.is_ascii_digit()) {
        return text.parse::<i128>().map(Value::Int).unwrap_or_else(|_| {
            // Too long for i128: still a number to YAML.
            Value::Float(text.parse::<f64>().unwrap_or(f64::INFINITY))
        });
    }
    if is_core_float(unsigned)
        && let Ok(f) = text.parse::<f64>()
    {
        return Value::Float(f);
    }
    Value::String { text, plain: true }
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without the sign.
fn is_core_float(s: &[u8]) -> bool {
    let mut i = 0;
    let int_digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == s.len()
}

enum Frame<'a> {
    Seq { pos: Pos, anchor: Option<&'a str>, items: Vec<Node<'a>> },
    Map { pos: Pos, anchor: Option<&'a str>, entries: Vec<Entry<'a>>, key: Option<(Cow<'a, str>, Pos)> },
}

/// The core schema's tag for strings, as the parser resolves `!!str`.
const STR_TAG: &str = "tag:yaml.org,2002:str";

/// Parses YAML text into a tree. `Ok(None)` is an empty document. On a syntax error, returns the
/// problems found (the syntax error last); a tree is only returned for a well-formed document.
pub fn parse(text: &str) -> Result<Option<Node<'_>>, Vec<YamlProblem>> {
    let mut problems = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<&str, Node<'_>> = HashMap::new();
    let mut root: Option<Node<'_>> = None;
    let mut documents = 0usize;
    let mut nodes = 0usize;
    let mut lines = Lines::new(text);

    for event in rlsp_yaml_parser::parse_events(text) {
        let (event, span) = match event {
            Ok(ev) => ev,
            Err(err) => {
                let line = err.pos.line.max(1) as u64;
                let hint = match unclosed_bracket(text, line) {
                    Some((bracket, opened)) => {
                        format!("the `{bracket}` opened on line {opened} is not closed")
                    }
                    None => {
                        "check the indentation and quoting here (a `: ` or ` #` inside a value needs quotes)"
                            .into()
                    }
                };
                problems.push(YamlProblem {
                    pos: Pos { line, column: err.pos.column as u64 + 1 },
                    path: Vec::new(),
                    message: format!("YAML syntax error: {}", err.message),
                    hint: Some(hint),
                });
                return Err(problems);
            }
        };
        let pos = lines.of(&span);
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd { .. } | Event::Comment { .. } => {
                continue;
            }
            Event::DocumentStart { .. } => {
                documents += 1;
                if documents > 1 {
                    problems.push(YamlProblem {
                        pos,
                        path: Vec::new(),
                        message: "the file holds more than one YAML document".into(),
                        hint: Some("keep one document: remove this `---` and what follows it".into()),
                    });
                    return Err(problems);
                }
                continue;
            }
            Event::Alias { name } => match anchors.get(name) {
                Some(target) => {
                    nodes += target.size();
                    let mut copy = target.clone();
                    copy.pos = pos;
                    copy
                }
                None => {
                    problems.push(YamlProblem {
                        pos,
                        path: Vec::new(),
                        message: format!("alias `*{name}` refers to an unknown anchor"),
                        hint: Some(format!("define the anchor (`&{name}`) before its alias (`*{name}`)")),
                    });
                    return Err(problems);
                }
            },
            Event::Scalar { value, style, meta } => {
                nodes += 1;
                let forced_string = meta.as_ref().and_then(|m| m.tag.as_deref()) == Some(STR_TAG);
                let value = if style == ScalarStyle::Plain && !forced_string {
                    resolve_plain(value)
                } else {
                    Value::String { text: value, plain: style == ScalarStyle::Plain }
                };
                let node = Node { pos, value };
                if let Some(anchor) = meta.and_then(|m| m.anchor) {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::SequenceStart { meta, .. } => {
                let anchor = meta.and_then(|m| m.anchor);
                stack.push(Frame::Seq { pos, anchor, items: Vec::new() });
                continue;
            }
            Event::MappingStart { meta, .. } => {
                let anchor = meta.and_then(|m| m.anchor);
                stack.push(Frame::Map { pos, anchor, entries: Vec::new(), key: None });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { pos, anchor, items }) => {
                    nodes += 1;
                    let node = Node { pos, value: Value::Seq(items) };
                    if let Some(anchor) = anchor {
                        anchors.insert(anchor, node.clone());
                    }
                    node
                }
                _ => continue,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { pos, anchor, entries, .. }) => {
                    nodes += 1;
                    let entries = merge_and_check(entries, &mut problems, &stack);
                    let node = Node { pos, value: Value::Map(entries) };
                    if let Some(anchor) = anchor {
                        anchors.insert(anchor, node.clone());
                    }
                    node
                }
                _ => continue,
            },
        };
        if nodes > MAX_NODES {
            problems.push(YamlProblem {
                pos,
                path: Vec::new(),
                message: format!("the document expands to more than {MAX_NODES} nodes"),
                hint: Some("aliases (`*name`) copy whole subtrees; use fewer of them".into()),
            });
            return Err(problems);
        }
        let awaiting_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
        if awaiting_key {
            let key_pos = node.pos;
            let text = match node.value {
                Value::Null => Cow::Borrowed("null"),
                Value::Bool(b) => Cow::Owned(b.to_string()),
                Value::Int(i) => Cow::Owned(i.to_string()),
                Value::Float(f) => Cow::Owned(f.to_string()),
                Value::String { text, .. } => text,
                Value::Seq(_) | Value::Map(_) => {
                    problems.push(YamlProblem {
                        pos: key_pos,
                        path: path_of(&stack),
                        message: "a mapping key must be a plain value, not a list or mapping".into(),
                        hint: Some("use a simple name as the key".into()),
                    });
                    Cow::Borrowed("?")
                }
            };
            if let Some(Frame::Map { key, .. }) = stack.last_mut() {
                *key = Some((text, key_pos));
            }
            continue;
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => {
                if let Some((k, key_pos)) = key.take() {
                    entries.push(Entry { key: k, key_pos, value: node });
                }
            }
        }
    }
    if problems.is_empty() { Ok(root) } else { Err(problems) }
}

/// A flow bracket (`[` or `{`) opened before `line` and still open where that line starts, with the
/// line it was opened on: the usual cause of a syntax error reported further down.
fn unclosed_bracket(text: &str, line: u64) -> Option<(char, u64)> {
    let mut open: Vec<(char, u64)> = Vec::new();
    for (n, src) in text.lines().enumerate().take(line.saturating_sub(1) as usize) {
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for c in src.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None => match c {
                    '"' | '\'' if prev == ' ' || prev == '[' || prev == '{' || prev == ',' => quote = Some(c),
                    '#' if prev == ' ' => break,
                    '[' | '{' => open.push((c, n as u64 + 1)),
                    ']' | '}' => {
                        open.pop();
                    }
                    _ => {}
                },
            }
            prev = c;
        }
    }
    open.first().copied()
}

/// The field path of the node being built at the top of `stack`.
fn path_of(stack: &[Frame]) -> Vec<Segment> {
    stack
        .iter()
        .skip(1)
        .zip(stack.iter())
        .map(|(_, parent)| match parent {
            Frame::Seq { items, .. } => Segment::Index(items.len()),
            Frame::Map { key, .. } => Segment::Key(key.as_ref().map(|k| k.0.to_string()).unwrap_or_default()),
        })
        .collect()
}

/// Expands `<<` merge keys (explicit keys win over merged ones) and reports duplicate keys.
fn merge_and_check<'a>(
    entries: Vec<Entry<'a>>,
    problems: &mut Vec<YamlProblem>,
    stack: &[Frame<'a>],
) -> Vec<Entry<'a>> {
    // The usual mapping has a handful of distinct keys and no merge key: keep it as it is.
    let plain = entries.len() <= 16
        && entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.key != "<<" && entries[..i].iter().all(|f| f.key != e.key));
    if plain {
        return entries;
    }
    let mut out: Vec<Entry<'a>> = Vec::with_capacity(entries.len());
    let mut merged: Vec<Entry<'a>> = Vec::new();
    let mut seen = Seen::with_capacity(entries.len());
    for entry in entries {
        if entry.key == "<<" {
            let sources: Vec<Node<'a>> = match entry.value.value {
                Value::Map(_) => vec![entry.value],
                Value::Seq(items) => items,
                _ => vec![entry.value],
            };
            for source in sources {
                match source.value {
                    Value::Map(src) => {
                        for e in src {
                            if !merged.iter().any(|m| m.key == e.key) {
                                merged.push(e);
                            }
                        }
                    }
                    _ => problems.push(YamlProblem {
                        pos: source.pos,
                        path: with_key(stack, "<<"),
                        message: "a merge key (`<<`) needs a mapping or a list of mappings".into(),
                        hint: Some("write `<<: *anchor` where `&anchor` names a mapping".into()),
                    }),
                }
            }
            continue;
        }
        if let Some(first) = seen.get(&entry.key, &out) {
            problems.push(YamlProblem {
                pos: entry.key_pos,
                path: with_key(stack, &entry.key),
                message: format!("duplicate key `{}`", entry.key),
                hint: Some(format!(
                    "`{}` is already set on line {}; keep one of them",
                    entry.key, first.line
                )),
            });
            continue;
        }
        seen.insert(&entry.key, out.len());
        out.push(entry);
    }
    for e in merged {
        if seen.get(&e.key, &out).is_none() {
            seen.insert(&e.key, out.len());
            out.push(e);
        }
    }
    out
}

/// The keys already kept in a mapping: a linear scan for the usual handful of keys, a hash map for
/// big mappings (e.g. `env`), so neither case allocates more than it must.
enum Seen {
    Few,
    Many(HashMap<String, usize>),
}

impl Seen {
    fn with_capacity(n: usize) -> Self {
        if n <= 16 { Seen::Few } else { Seen::Many(HashMap::with_capacity(n)) }
    }

    /// Where `key` was first defined, if it was.
    fn get(&self, key: &str, kept: &[Entry]) -> Option<Pos> {
        match self {
            Seen::Few => kept.iter().find(|e| e.key == key).map(|e| e.key_pos),
            Seen::Many(map) => map.get(key).map(|&i| kept[i].key_pos),
        }
    }

    fn insert(&mut self, key: &str, index: usize) {
        if let Seen::Many(map) = self {
            map.insert(key.to_owned(), index);
        }
    }
}

fn with_key(stack: &[Frame], key: &str) -> Vec<Segment> {
    // `stack` no longer holds the mapping being closed, so its path is the path of the next child of
    // the new top frame.
    let mut path = path_of(stack);
    if let Some(top) = stack.last() {
        path.push(match top {
            Frame::Seq { items, .. } => Segment::Index(items.len()),
            Frame::Map { key, .. } => Segment::Key(key.as_ref().map(|k| k.0.to_string()).unwrap_or_default()),
        });
    }
    path.push(Segment::Key(key.to_owned()));
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node<'_> {
        parse(text).expect("valid YAML").expect("a document")
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let check = |text: &str, expect: Value| {
            assert_eq!(tree(&format!("v: {text}\n")).get("v").unwrap().value, expect, "{text}");
        };
        check("123456789012", Value::Int(123456789012));
        check("\"123456789012\"", Value::String { text: "123456789012".into(), plain: false });
        check("1.0", Value::Float(1.0));
        check("0x1F", Value::Int(31));
        check("0o17", Value::Int(15));
        check("true", Value::Bool(true));
        check("yes", Value::String { text: "yes".into(), plain: true });
        check("~", Value::Null);
        check("", Value::Null);
        check("1e3", Value::Float(1000.0));
        check("1.2.3", Value::String { text: "1.2.3".into(), plain: true });
        check("!!str 42", Value::String { text: "42".into(), plain: true });
        check("us-east-1", Value::String { text: "us-east-1".into(), plain: true });
    }

    #[test]
    fn positions_are_one_based_for_keys_and_values() {
        let t = tree("a:\n  bb: x\n  list:\n    - one\n    - two\n");
        let a = t.entry("a").unwrap();
        assert_eq!(a.key_pos, Pos { line: 1, column: 1 });
        let bb = a.value.entry("bb").unwrap();
        assert_eq!(bb.key_pos, Pos { line: 2, column: 3 });
        assert_eq!(bb.value.pos, Pos { line: 2, column: 7 });
        let two = t.at(&[Segment::Key("a".into()), Segment::Key("list".into()), Segment::Index(1)]).unwrap();
        assert_eq!(two.pos, Pos { line: 5, column: 7 });
    }

    #[test]
    fn lines_count_every_line_break_and_columns_in_characters() {
        let text = "a: 1\r\nb: 2\rc: 3\nd: \"é\" x\n";
        let mut lines = Lines::new(text);
        let check = |lines: &mut Lines, needle: &str, expect: (u64, u64)| {
            let offset = text.find(needle).unwrap();
            assert_eq!(lines.pos(offset), Pos { line: expect.0, column: expect.1 }, "{needle:?}");
        };
        check(&mut lines, "b", (2, 1));
        check(&mut lines, "x", (4, 8));
        // Out of order lookups still find their line.
        check(&mut lines, "1", (1, 4));
        check(&mut lines, "c", (3, 1));
        check(&mut lines, "3", (3, 4));
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_second_key() {
        let problems = parse("a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].pos, Pos { line: 4, column: 3 });
        assert_eq!(path_string(&problems[0].path), "b.c");
        assert!(problems[0].hint.as_deref().unwrap().contains("line 3"));
    }

    #[test]
    fn aliases_and_merge_keys_expand() {
        let t = tree("base: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  y: 3\ncopy: *b\n");
        let mine = t.get("mine").unwrap();
        assert_eq!(mine.get("x").unwrap().value, Value::Int(1));
        assert_eq!(mine.get("y").unwrap().value, Value::Int(3));
        assert_eq!(t.get("copy").unwrap().get("y").unwrap().value, Value::Int(2));
        assert_eq!(t.get("copy").unwrap().pos.line, 5);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let problems = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.starts_with("YAML syntax error"));
        assert!(problems[0].pos.line >= 1);
    }

    #[test]
    fn billion_laughs_is_cut_off() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 { "a".to_owned() } else { format!("l{}", i - 1) };
            text.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let problems = parse(&text).unwrap_err();
        assert!(problems[0].message.contains("more than"));
    }

    #[test]
    fn empty_and_comment_only_documents_have_no_root() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# nothing\n").unwrap(), None);
    }

    #[test]
    fn paths_render_like_field_accessors() {
        let path = [
            Segment::Key("environments".into()),
            Segment::Index(1),
            Segment::Key("env".into()),
            Segment::Key("my key".into()),
        ];
        assert_eq!(path_string(&path), "environments[1].env[\"my key\"]");
    }
}
