//! The JSON Schema of `aphex-config.yaml`, generated from the model with schemars (draft 2020-12),
//! and the schema check: the YAML tree, as JSON, is validated against that same schema with the
//! `jsonschema` crate, and every error becomes a positioned problem with a message written for people.
//! Types, required fields, enums, patterns, ranges and unknown keys are encoded once, in the schema.

use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{JsonType, ValidationError};
use schemars::Schema;
use schemars::generate::SchemaSettings;
use schemars::transform::{Transform, transform_subschemas};
use serde_json::Value as Json;

use super::model::Config;
use super::yaml::{Node, Pos, Segment, Value, path_string};
use super::{Problem, Severity, did_you_mean};

/// Where the committed schema lives, relative to the repository root.
pub const SCHEMA_FILE: &str = "schema/aphex-config.schema.json";

/// Where editors fetch the schema from (`# yaml-language-server: $schema=...`).
pub const SCHEMA_ID: &str =
    "https://raw.githubusercontent.com/aphexpipeline/aphex/main/schema/aphex-config.schema.json";

/// The JSON Schema of the config, as generated from the Rust types.
pub fn json_schema() -> Json {
    let generator = SchemaSettings::draft2020_12().with_transform(NoNull).into_generator();
    let generated = generator.into_root_schema_for::<Config>().to_value();
    // Identity first, then the rest in generation order, so the committed file reads well.
    let mut out = serde_json::Map::new();
    out.insert("$schema".into(), generated["$schema"].clone());
    out.insert("$id".into(), SCHEMA_ID.into());
    for key in ["title", "description"] {
        out.insert(key.into(), generated[key].clone());
    }
    if let Json::Object(rest) = generated {
        for (k, v) in rest {
            out.entry(k).or_insert(v);
        }
    }
    Json::Object(out)
}

/// The schema as committed: pretty JSON with a trailing newline.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// Optional fields are omitted, never written as `null`: the schema says so, which keeps types simple
/// for editors and error messages free of `anyOf` noise.
#[derive(Debug, Clone)]
struct NoNull;

impl Transform for NoNull {
    fn transform(&mut self, schema: &mut Schema) {
        transform_subschemas(self, schema);
        let Some(obj) = schema.as_object_mut() else { return };
        if let Some(Json::Array(types)) = obj.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types.remove(0);
                obj.insert("type".into(), only);
            }
        }
        let any_of = obj.get("anyOf").and_then(|v| v.as_array()).cloned();
        if let Some(mut branches) = any_of {
            branches.retain(|b| b.get("type").and_then(|t| t.as_str()) != Some("null"));
            if branches.len() == 1 {
                obj.remove("anyOf");
                if let Some(Json::Object(inner)) = branches.pop() {
                    for (k, v) in inner {
                        obj.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
}

struct Compiled {
    schema: Json,
    validator: jsonschema::Validator,
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| {
    let schema = json_schema();
    let validator = jsonschema::draft202012::new(&schema).expect("the generated schema compiles");
    Compiled { schema, validator }
});

/// Validates `json` (the tree `root` as JSON) against the schema and appends a problem per error.
pub(crate) fn check(root: &Node, json: &Json, source: &str, out: &mut Vec<Problem>) {
    let compiled = &*COMPILED;
    // Most files are valid: the short-circuiting check is several times cheaper than collecting.
    if compiled.validator.is_valid(json) {
        return;
    }
    let before = out.len();
    for error in compiled.validator.iter_errors(json) {
        let path: Vec<Segment> = error
            .instance_path()
            .segments()
            .map(|s| match s {
                LocationSegment::Property(p) => Segment::Key(p.into_owned()),
                LocationSegment::Index(i) => Segment::Index(i),
            })
            .collect();
        let ctx = Ctx { root, schema: &compiled.schema, source, path };
        for problem in ctx.explain(&error) {
            let duplicate = out[before..]
                .iter()
                .any(|p| p.pos == problem.pos && p.path == problem.path && p.message == problem.message);
            if !duplicate {
                out.push(problem);
            }
        }
    }
}

struct Ctx<'a> {
    root: &'a Node<'a>,
    schema: &'a Json,
    source: &'a str,
    path: Vec<Segment>,
}

impl Ctx<'_> {
    fn node(&self) -> Option<&Node<'_>> {
        self.root.at(&self.path)
    }

    fn pos(&self) -> Pos {
        self.node().map(|n| n.pos).unwrap_or(Pos { line: 1, column: 1 })
    }

    fn path_str(&self) -> String {
        path_string(&self.path)
    }

    /// The field as users call it in messages: `environments[0].account`, or "the file" at the top.
    fn field(&self) -> String {
        if self.path.is_empty() { "the file".into() } else { format!("`{}`", self.path_str()) }
    }

    /// The path with indices and free-form map keys erased, to look up field-specific wording:
    /// `environments[].stacks[].name`, `build.env.*`.
    fn shape(&self) -> String {
        let mut out = String::new();
        let mut in_map = false;
        for seg in &self.path {
            match seg {
                Segment::Index(_) => out.push_str("[]"),
                Segment::Key(_) if in_map => {
                    out.push_str(".*");
                    in_map = false;
                    continue;
                }
                Segment::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                    in_map = matches!(k.as_str(), "env" | "context");
                    continue;
                }
            }
            in_map = false;
        }
        out
    }

    fn problem(&self, message: String, hint: Option<String>) -> Problem {
        Problem { pos: self.pos(), path: self.path_str(), severity: Severity::Error, message, hint }
    }

    /// The schema that applies at `path`, following `$ref`, `properties`, `items` and map values.
    fn schema_at(&self, path: &[Segment]) -> Option<&Json> {
        let mut s = self.resolve(self.schema)?;
        for seg in path {
            s = match seg {
                Segment::Index(_) => s.get("items")?,
                Segment::Key(k) => match s.get("properties").and_then(|p| p.get(k)) {
                    Some(p) => p,
                    None => s.get("additionalProperties").filter(|a| a.is_object())?,
                },
            };
            s = self.resolve(s)?;
        }
        Some(s)
    }

    fn resolve<'s>(&'s self, mut s: &'s Json) -> Option<&'s Json> {
        for _ in 0..8 {
            match s.get("$ref").and_then(Json::as_str) {
                Some(r) => s = self.schema.pointer(r.strip_prefix('#')?)?,
                None => return Some(s),
            }
        }
        Some(s)
    }

    fn explain(&self, error: &ValidationError<'_>) -> Vec<Problem> {
        let node = self.node();
        let field = self.field();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed: Vec<String> = self
                    .schema_at(&self.path)
                    .and_then(|s| s.get("properties"))
                    .and_then(Json::as_object)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                unexpected
                    .iter()
                    .map(|key| {
                        let mut path = self.path.clone();
                        path.push(Segment::Key(key.clone()));
                        let pos = node.and_then(|n| n.entry(key)).map(|e| e.key_pos).unwrap_or(self.pos());
                        let hint = match did_you_mean(key, allowed.iter().map(String::as_str)) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("the fields allowed here are: {}", allowed.join(", ")),
                        };
                        let place = if self.path.is_empty() {
                            "at the top level".to_owned()
                        } else {
                            format!("in `{}`", self.path_str())
                        };
                        Problem {
                            pos,
                            path: path_string(&path),
                            severity: Severity::Error,
                            message: format!("unknown field `{key}` {place}"),
                            hint: Some(hint),
                        }
                    })
                    .collect()
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default().to_owned();
                let mut path = self.path.clone();
                path.push(Segment::Key(name.clone()));
                let about = self
                    .schema_at(&path)
                    .and_then(|s| s.get("description"))
                    .and_then(Json::as_str)
                    .map(first_sentence)
                    .unwrap_or_default();
                let place =
                    if self.path.is_empty() { String::new() } else { format!(" in `{}`", self.path_str()) };
                vec![Problem {
                    pos: self.pos(),
                    path: path_string(&path),
                    severity: Severity::Error,
                    message: format!("missing required field `{name}`{place}"),
                    hint: Some(if about.is_empty() {
                        format!("add `{name}:`")
                    } else {
                        format!("add `{name}:` ({})", about.trim_end_matches('.'))
                    }),
                }]
            }
            ValidationErrorKind::Type { kind } => vec![self.type_problem(kind)],
            ValidationErrorKind::Enum { options } => {
                let options: Vec<&str> = options
                    .as_array()
                    .map(|o| o.iter().filter_map(Json::as_str).collect())
                    .unwrap_or_default();
                vec![self.choice_problem(&options)]
            }
            ValidationErrorKind::Constant { expected_value } => {
                let options: Vec<&str> = expected_value.as_str().into_iter().collect();
                vec![self.choice_problem(&options)]
            }
            ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
                // Our oneOfs are documented string enums: one `const` per branch.
                let consts: Vec<&str> = self
                    .schema_at(&self.path)
                    .and_then(|s| s.get("oneOf").or_else(|| s.get("anyOf")))
                    .and_then(Json::as_array)
                    .map(|b| b.iter().filter_map(|b| b.get("const").and_then(Json::as_str)).collect())
                    .unwrap_or_default();
                if !consts.is_empty() {
                    return vec![self.choice_problem(&consts)];
                }
                // Otherwise explain the branch that got furthest (fewest errors).
                match context.iter().min_by_key(|errors| errors.len()) {
                    Some(errors) => errors
                        .iter()
                        .flat_map(|e| {
                            let ctx = Ctx {
                                root: self.root,
                                schema: self.schema,
                                source: self.source,
                                path: e
                                    .instance_path()
                                    .segments()
                                    .map(|s| match s {
                                        LocationSegment::Property(p) => Segment::Key(p.into_owned()),
                                        LocationSegment::Index(i) => Segment::Index(i),
                                    })
                                    .collect(),
                            };
                            ctx.explain(e)
                        })
                        .collect(),
                    None => vec![self.problem(format!("{field}: {error}"), None)],
                }
            }
            ValidationErrorKind::Pattern { pattern } => {
                let text = error.instance().as_str().unwrap_or_default();
                vec![self.pattern_problem(text, pattern)]
            }
            ValidationErrorKind::PropertyNames { error: inner } => {
                let key = inner.instance().as_str().unwrap_or_default().to_owned();
                let mut path = self.path.clone();
                path.push(Segment::Key(key.clone()));
                let pos = node.and_then(|n| n.entry(&key)).map(|e| e.key_pos).unwrap_or(self.pos());
                let (message, hint) = if key.is_empty() {
                    (format!("empty key in `{}`", self.path_str()), "give the entry a name".to_owned())
                } else {
                    (
                        format!("`{key}` is not a valid environment variable name"),
                        "use letters, digits and `_`, not starting with a digit (e.g. `NODE_ENV`)".to_owned(),
                    )
                };
                vec![Problem {
                    pos,
                    path: path_string(&path),
                    severity: Severity::Error,
                    message,
                    hint: Some(hint),
                }]
            }
            ValidationErrorKind::MinItems { limit } => vec![self.min_items_problem(*limit)],
            ValidationErrorKind::MaxItems { limit } => {
                vec![self.problem(format!("{field} has more than {limit} entries"), None)]
            }
            ValidationErrorKind::MinLength { .. } => vec![self.problem(
                format!("{field} must not be empty"),
                Some("write a value, or remove the entry".into()),
            )],
            ValidationErrorKind::MaxLength { limit } => vec![self.problem(
                format!("{field} is longer than {limit} characters"),
                Some(format!("shorten it to at most {limit} characters")),
            )],
            ValidationErrorKind::Minimum { limit } | ValidationErrorKind::ExclusiveMinimum { limit } => {
                vec![self.problem(
                    format!("{field} must be at least {limit}, found {}", error.instance()),
                    self.default_hint(),
                )]
            }
            ValidationErrorKind::Maximum { limit } | ValidationErrorKind::ExclusiveMaximum { limit } => {
                vec![self.problem(
                    format!("{field} must be at most {limit}, found {}", error.instance()),
                    self.default_hint(),
                )]
            }
            ValidationErrorKind::UniqueItems => vec![self.unique_items_problem()],
            _ => vec![self.problem(format!("{field}: {error}"), None)],
        }
    }

    /// How the value is introduced in the source: `key: ` for a mapping value, `- ` for a list item.
    fn key_prefix(&self) -> String {
        match self.path.last() {
            // A key a plain YAML scalar cannot spell (`@aws-cdk/...`, `a: b`) is written quoted.
            Some(Segment::Key(k)) => {
                let key = crate::yaml_out::to_string(k)
                    .map(|y| y.trim_end().to_owned())
                    .unwrap_or_else(|_| k.clone());
                format!("{key}: ")
            }
            _ => "- ".into(),
        }
    }

    fn default_hint(&self) -> Option<String> {
        let schema = self.schema_at(&self.path)?;
        let default = schema.get("default")?;
        Some(format!("remove the field to use the default, {default}"))
    }

    fn type_problem(&self, kind: &TypeKind) -> Problem {
        let expected: Vec<JsonType> = match kind {
            TypeKind::Single(t) => vec![*t],
            TypeKind::Multiple(set) => set.iter().collect(),
        };
        let wanted = expected.iter().map(|t| type_name(*t)).collect::<Vec<_>>().join(" or ");
        let Some(node) = self.node() else {
            return self.problem(format!("{} must be {wanted}", self.field()), None);
        };
        let field = self.field();
        if self.path.is_empty() {
            return self.problem(
                format!("the file must be a mapping of settings, found {}", node.describe()),
                Some("start from the example in examples/minimal/aphex-config.yaml".into()),
            );
        }
        let raw = token_at(self.source, node.pos);
        let wants_string = expected.contains(&JsonType::String);
        match &node.value {
            Value::Null => {
                let hint = match expected.first() {
                    Some(JsonType::Array) => {
                        "write a list (`[a, b]` or one `- item` per line), or remove the key"
                    }
                    Some(JsonType::Object) => "write the settings indented under the key, or remove the key",
                    _ => "write a value, or remove the key",
                };
                self.problem(format!("{field} has no value; it must be {wanted}"), Some(hint.into()))
            }
            Value::Int(_) | Value::Float(_) | Value::Bool(_) if wants_string => {
                let what = if matches!(node.value, Value::Bool(_)) { "a boolean" } else { "a number" };
                let mut message = format!("{field} must be a string, but YAML reads `{raw}` as {what}");
                if self.shape() == "environments[].account" {
                    message.push_str(" (AWS account ids are 12-digit strings; a number loses leading zeros)");
                }
                self.problem(message, Some(format!("quote it: `{}\"{raw}\"`", self.key_prefix())))
            }
            Value::String { text, .. } if expected.first() == Some(&JsonType::Array) => self.problem(
                format!("{field} must be a list, found {}", node.describe()),
                Some(format!("write a list: `[{text}]`, or one `- item` per line")),
            ),
            _ => self.problem(format!("{field} must be {wanted}, found {}", node.describe()), None),
        }
    }

    fn choice_problem(&self, options: &[&str]) -> Problem {
        let field = self.field();
        let Some(node) = self.node() else {
            return self.problem(format!("{field} must be one of {}", quote_list(options)), None);
        };
        let shape = self.shape();
        let raw = token_at(self.source, node.pos);
        let text = match &node.value {
            Value::String { text, .. } => text.to_string(),
            _ => raw.to_owned(),
        };
        if !matches!(node.value, Value::String { .. }) && options.contains(&raw) {
            let what = if matches!(node.value, Value::Bool(_)) { "a boolean" } else { "a number" };
            return self.problem(
                format!("{field} must be the string \"{raw}\", but YAML reads `{raw}` as {what}"),
                Some(format!("quote it: `{}\"{raw}\"`", self.key_prefix())),
            );
        }
        let suggestion = did_you_mean(&text, options.iter().copied());
        if shape == "environments[].region" {
            let hint = match suggestion {
                Some(s) => format!("did you mean `{s}`?"),
                None => "use a region code such as us-east-1 or eu-west-1 (the schema lists them all)".into(),
            };
            return self.problem(format!("unknown AWS region `{text}` in {field}"), Some(hint));
        }
        if shape == "version" {
            return self.problem(
                format!("unsupported config version `{text}`"),
                Some("this AphexPipeline reads version \"1.0\": write `version: \"1.0\"`".into()),
            );
        }
        let hint = match suggestion {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("use one of {}", quote_list(options)),
        };
        self.problem(format!("{field} must be one of {}, found `{text}`", quote_list(options)), Some(hint))
    }

    fn pattern_problem(&self, text: &str, pattern: &str) -> Problem {
        let field = self.field();
        let (message, hint) = match self.shape().as_str() {
            "pipeline.name" => (
                format!("pipeline name `{text}` is not valid"),
                "use 1 to 52 lower-case letters, digits and '-', starting and ending with a letter or digit".into(),
            ),
            "pipeline.repository" => (
                format!("`{text}` is not a GitHub repository"),
                "write it as `owner/name`, e.g. `acme/payments-infra`".into(),
            ),
            "pipeline.namespace" => (
                format!("`{text}` is not a valid Kubernetes namespace"),
                "use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit".into(),
            ),
            "pipeline.serviceAccount" => (
                format!("`{text}` is not a valid Kubernetes service account name"),
                "use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit".into(),
            ),
            "pipeline.artifactBucket" => (
                format!("`{text}` is not a valid S3 bucket name"),
                "use 3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit"
                    .into(),
            ),
            "environments[].name" => (
                format!("environment name `{text}` is not valid"),
                format!(
                    "use 1 to 32 lower-case letters, digits and '-', starting and ending with a letter or digit{}",
                    suggest_slug(text).map(|s| format!(", e.g. `{s}`")).unwrap_or_default()
                ),
            ),
            "environments[].account" => (
                format!("account `{text}` is not a 12-digit AWS account id"),
                "an AWS account id is exactly 12 digits, leading zeros included, quoted: \"123456789012\"".into(),
            ),
            "environments[].role" => (
                format!("`{text}` is not an IAM role ARN"),
                "write `arn:<partition>:iam::<12-digit account>:role/<role name>` with the region's partition (aws, aws-cn, aws-us-gov, ...), e.g. arn:aws:iam::123456789012:role/aphex-deploy".into(),
            ),
            "environments[].stacks[].name" | "environments[].stacks[].dependsOn[]" => (
                format!("`{text}` is not a valid stack name"),
                "use the stack's name or construct path: letters, digits and - _ . / * (no spaces)".into(),
            ),
            "build.commands[]" | "environments[].tests.commands[]" | "synth.command" => (
                format!("{field} is blank"),
                "write a shell command, or remove the entry".into(),
            ),
            "notifications.email[]" => (
                format!("`{text}` is not an email address"),
                "write an address such as platform-team@example.com".into(),
            ),
            "notifications.snsTopicArn" => (
                format!("`{text}` is not an SNS topic ARN"),
                "write `arn:<partition>:sns:<region>:<account>:<topic>`, e.g. arn:aws:sns:us-east-1:123456789012:deployments"
                    .into(),
            ),
            "notifications.slack.webhookSecret" if text.contains("://") => (
                "the Slack webhook URL must not be written in the config file".into(),
                "store the URL in AWS Secrets Manager and put the secret's name or ARN here, e.g. `aphex/slack-webhook`"
                    .into(),
            ),
            "notifications.slack.webhookSecret" => (
                format!("`{text}` is not a Secrets Manager secret name or ARN"),
                "use the secret's name (letters, digits and /_+=.@-) or its full ARN".into(),
            ),
            _ => (format!("{field} `{text}` does not match `{pattern}`"), "see the schema for the format".into()),
        };
        self.problem(message, Some(hint))
    }

    fn min_items_problem(&self, limit: u64) -> Problem {
        let field = self.field();
        let (message, hint) = match self.shape().as_str() {
            "environments" => (
                "no environments are defined".to_owned(),
                "add at least one environment with `name`, `region`, `account` and `stacks`".to_owned(),
            ),
            "build.commands" => (
                "`build.commands` is empty".to_owned(),
                "add at least one build command, e.g. `npm ci`".to_owned(),
            ),
            "environments[].stacks" => (
                format!("{field} is empty: the environment deploys nothing"),
                "list at least one stack with its `name`".to_owned(),
            ),
            "environments[].tests.commands" => {
                (format!("{field} is empty"), "add a test command, or remove `tests`".to_owned())
            }
            _ => (format!("{field} needs at least {limit} entries"), "add an entry".to_owned()),
        };
        self.problem(message, Some(hint))
    }

    fn unique_items_problem(&self) -> Problem {
        let items = self.node().map(Node::as_seq).unwrap_or_default();
        for (i, item) in items.iter().enumerate() {
            if items[..i].iter().any(|earlier| earlier.value == item.value) {
                let mut path = self.path.clone();
                path.push(Segment::Index(i));
                return Problem {
                    pos: item.pos,
                    path: path_string(&path),
                    severity: Severity::Error,
                    message: format!("{} lists {} twice", self.field(), item.describe()),
                    hint: Some("remove the repeated entry".into()),
                };
            }
        }
        self.problem(
            format!("{} has repeated entries", self.field()),
            Some("remove the repeated entry".into()),
        )
    }
}

fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::Array => "a list",
        JsonType::Boolean => "true or false",
        JsonType::Integer => "a whole number",
        JsonType::Null => "empty",
        JsonType::Number => "a number",
        JsonType::Object => "a mapping",
        JsonType::String => "a string",
    }
}

fn quote_list(options: &[&str]) -> String {
    options.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
}

/// The first sentence of a description (abbreviations like "e.g." do not end it).
fn first_sentence(text: &str) -> String {
    let flat = text.replace('\n', " ");
    let mut from = 0;
    while let Some(i) = flat[from..].find(". ").map(|i| i + from) {
        let word = flat[..i].rsplit(' ').next().unwrap_or_default();
        if !matches!(word, "e.g" | "i.e" | "etc") {
            return flat[..=i].to_owned();
        }
        from = i + 2;
    }
    flat
}

/// A lower-case, dash-separated version of `text`, when that is a valid environment name.
fn suggest_slug(text: &str) -> Option<String> {
    let slug: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    (!slug.is_empty() && slug.len() <= 32 && slug != text).then_some(slug)
}

/// The source token starting at `pos`: a quoted string up to its closing quote, otherwise up to the
/// end of the plain scalar. Used to quote the user's own spelling back (`0123` stays `0123`).
pub(crate) fn token_at(source: &str, pos: Pos) -> &str {
    let Some(line) = source.lines().nth(pos.line.saturating_sub(1) as usize) else { return "" };
    let start = line.char_indices().nth(pos.column.saturating_sub(1) as usize).map(|(i, _)| i);
    let Some(start) = start else { return "" };
    let rest = &line[start..];
    match rest.chars().next() {
        Some(q @ ('"' | '\'')) => match rest[1..].find(q) {
            Some(end) => &rest[..end + 2],
            None => rest,
        },
        _ => {
            let end = rest.find(" #").unwrap_or(rest.len());
            let rest = &rest[..end];
            let end = rest.find([',', ']', '}']).unwrap_or(rest.len());
            let rest = &rest[..end];
            // A key's token ends at its `: `.
            let end = rest.find(": ").unwrap_or(rest.len());
            rest[..end].trim_end()
        }
    }
}
