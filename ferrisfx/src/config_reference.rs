//! The configuration reference, `docs/configuration-reference.md`, generated from the settings
//! types themselves: the JSON Schema of [`Settings`] (schemars reads each field's `///` doc as
//! its description and follows the serde attributes: defaults, the `kind` tags, renames),
//! rendered as markdown: one section per table, one sub-section per `kind` of a backend, one
//! row per key with its type, default, environment variable and description.
//!
//! `ferrisfx config-reference` (a hidden command) prints it; a test fails while the committed
//! file differs, and another while `infra/config/dev.toml` does not list every key.
//!
//! Two schema keywords on a settings field change how it is shown:
//!
//! - `#[schemars(extend("writeOnly" = true))]`: a secret (token, password, secret key, a
//!   connection string with a password). Its default is never shown, only whether it is
//!   required or unset.
//! - `#[schemars(extend("x-default-doc" = "…"))]`: what the default is, in words, for a default
//!   computed at run time (`4 × CPU cores`) or an empty value that stands for one
//!   (`executor-<pid>`); the reference must not depend on the machine that generates it.

use std::fmt::Write as _;

use serde_json::Value;

use crate::settings::Settings;

/// Where the reference is committed, from the workspace root.
pub const PATH: &str = "docs/configuration-reference.md";

/// The command that regenerates the committed reference.
pub const REGENERATE: &str =
    "cargo run -q -p ferrisfx -- config-reference > docs/configuration-reference.md";

/// The JSON Schema of [`Settings`], every subschema inlined (no `$ref`s to follow).
pub fn schema() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<Settings>()
        .to_value()
}

/// One table of the settings file: `[executor]`, `[backends.bus]`, or the top level.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Its path: `["backends", "bus"]`; empty for the top level.
    pub path: Vec<String>,
    /// What it is for (the doc of the field holding it).
    pub description: String,
    /// Its keys, by name; empty when the table is chosen by `kind`.
    pub keys: Vec<Key>,
    /// The kinds of a table tagged by `kind` (a backend), in declaration order; else empty.
    pub kinds: Vec<Kind>,
}

/// One `kind` of a tagged table and the keys it takes besides `kind`.
#[derive(Debug, Clone, PartialEq)]
pub struct Kind {
    /// The value of `kind`.
    pub name: String,
    /// What it is (the doc of its enum variant).
    pub description: String,
    /// Whether it is the table's default.
    pub default: bool,
    /// Its keys, by name, `kind` left out.
    pub keys: Vec<Key>,
}

/// One key that holds a value (not a table).
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Its name in its table.
    pub name: String,
    /// Its type, in words (markdown).
    pub ty: String,
    /// Its default (markdown): a TOML value, `required`, `unset`, or words.
    pub default: String,
    /// Its doc, on one line.
    pub description: String,
    /// Whether it holds a secret.
    pub secret: bool,
}

impl Table {
    /// `backends.bus`; empty for the top level.
    pub fn name(&self) -> String {
        self.path.join(".")
    }

    /// The environment variable of `key` in this table: `FX_EXECUTOR__MAX_CONCURRENCY`.
    pub fn env_var(&self, key: &str) -> String {
        let mut parts: Vec<&str> = self.path.iter().map(String::as_str).collect();
        parts.push(key);
        format!("FX_{}", parts.join("__").to_ascii_uppercase())
    }

    /// The heading of its section.
    fn heading(&self) -> String {
        if self.path.is_empty() {
            "Top-level keys".to_string()
        } else {
            format!("`[{}]`", self.name())
        }
    }
}

/// The tables of `schema` (from [`schema`]), parents before their children, each level by name.
/// Tables holding only other tables (`[backends]`) are left out.
pub fn tables(schema: &Value) -> Vec<Table> {
    let mut tables = Vec::new();
    walk(Vec::new(), schema, String::new(), &mut tables);
    tables
}

/// The reference, as committed at [`PATH`].
pub fn render() -> String {
    render_tables(&tables(&schema()))
}

/// `ferrisfx config-reference`: prints the reference.
pub fn print() -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(render().as_bytes())?;
    out.flush()?;
    Ok(())
}

fn walk(path: Vec<String>, schema: &Value, description: String, tables: &mut Vec<Table>) {
    if let Some(variants) = tagged_variants(schema) {
        let default_kind = schema
            .get("default")
            .and_then(|d| d.get("kind"))
            .and_then(Value::as_str);
        let kinds = variants
            .into_iter()
            .map(|(name, variant)| Kind {
                default: default_kind == Some(name.as_str()),
                description: text(variant.get("description")),
                keys: keys_of(variant)
                    .into_iter()
                    .filter(|key| key.name != "kind")
                    .collect(),
                name,
            })
            .collect();
        tables.push(Table {
            path,
            description,
            keys: Vec::new(),
            kinds,
        });
        return;
    }
    let keys = keys_of(schema);
    if !keys.is_empty() || path.is_empty() {
        tables.push(Table {
            path: path.clone(),
            description,
            keys,
            kinds: Vec::new(),
        });
    }
    for (name, property) in sorted_properties(schema) {
        if is_table(property) {
            let mut child = path.clone();
            child.push(name.clone());
            walk(child, property, text(property.get("description")), tables);
        }
    }
}

/// The properties of an object schema, by name.
fn sorted_properties(schema: &Value) -> Vec<(&String, &Value)> {
    let mut properties: Vec<(&String, &Value)> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|map| map.iter().collect())
        .unwrap_or_default();
    properties.sort_by(|a, b| a.0.cmp(b.0));
    properties
}

/// The keys (non-table properties) of an object schema, by name.
fn keys_of(schema: &Value) -> Vec<Key> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    sorted_properties(schema)
        .into_iter()
        .filter(|(_, property)| !is_table(property))
        .map(|(name, property)| key(name, property, required.contains(&name.as_str())))
        .collect()
}

/// The variants of a table tagged by `kind`, with their `kind` value; `None` for other schemas.
fn tagged_variants(schema: &Value) -> Option<Vec<(String, &Value)>> {
    let variants = schema.get("oneOf")?.as_array()?;
    let tagged: Vec<(String, &Value)> = variants
        .iter()
        .filter_map(|variant| {
            let kind = variant
                .get("properties")?
                .get("kind")?
                .get("const")?
                .as_str()?;
            Some((kind.to_string(), variant))
        })
        .collect();
    (!tagged.is_empty() && tagged.len() == variants.len()).then_some(tagged)
}

/// Whether a property is a table of its own (a struct, or a backend chosen by `kind`) rather
/// than a value (a map of strings is a value).
fn is_table(schema: &Value) -> bool {
    schema.get("properties").is_some() || tagged_variants(schema).is_some()
}

fn key(name: &str, schema: &Value, required: bool) -> Key {
    let secret = schema.get("writeOnly").and_then(Value::as_bool) == Some(true);
    let default = if secret {
        // Never a secret's value, not even a default: only whether one must be given.
        if required { "required" } else { "unset" }.to_string()
    } else if let Some(words) = schema.get("x-default-doc").and_then(Value::as_str) {
        words.to_string()
    } else if required {
        "required".to_string()
    } else {
        match schema.get("default") {
            Some(Value::Null) | None if is_array(schema) => "`[]`".to_string(),
            Some(Value::Null) | None => "unset".to_string(),
            Some(value) => format!("`{}`{}", toml_literal(value), size_note(name, value)),
        }
    };
    let mut ty = type_name(schema);
    if secret {
        ty.push_str(", secret");
    }
    Key {
        name: name.to_string(),
        ty,
        default,
        description: text(schema.get("description")),
        secret,
    }
}

fn is_array(schema: &Value) -> bool {
    types(schema).contains(&"array")
}

/// The JSON types of a schema, `null` left out.
fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    }
}

/// A schema's type in words: `integer`, `array of string`, `"pooling" | "on_demand"`.
fn type_name(schema: &Value) -> String {
    let constants: Vec<String> = schema
        .get("oneOf")
        .and_then(Value::as_array)
        .map(|variants| {
            variants
                .iter()
                .filter_map(|v| v.get("const"))
                .map(|c| format!("`{}`", toml_literal(c)))
                .collect()
        })
        .or_else(|| {
            schema.get("enum").and_then(Value::as_array).map(|values| {
                values
                    .iter()
                    .map(|c| format!("`{}`", toml_literal(c)))
                    .collect()
            })
        })
        .unwrap_or_default();
    if !constants.is_empty() {
        return constants.join(" | ");
    }
    let names: Vec<String> = types(schema)
        .into_iter()
        .map(|t| match t {
            "array" => {
                let items = schema.get("items").map_or("value".into(), type_name);
                format!("array of {items}")
            }
            "object" => {
                let values = schema
                    .get("additionalProperties")
                    .filter(|v| v.is_object())
                    .map_or("value".into(), type_name);
                format!("table of {values}")
            }
            other => other.to_string(),
        })
        .collect();
    if names.is_empty() {
        "value".to_string()
    } else {
        names.join(" or ")
    }
}

/// A JSON value as TOML would write it.
fn toml_literal(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(_) => value.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_literal).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) if map.is_empty() => "{}".to_string(),
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k} = {}", toml_literal(v)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
    }
}

/// ` (32 MiB)` after a byte count that is a whole number of KiB, MiB or GiB.
fn size_note(name: &str, value: &Value) -> String {
    let Some(bytes) = value.as_u64() else {
        return String::new();
    };
    if !name.ends_with("_bytes") || bytes < 1024 {
        return String::new();
    }
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes % size == 0 {
            return format!(" ({} {unit})", bytes / size);
        }
    }
    String::new()
}

/// A doc comment on one line, its intra-doc links as plain code.
fn text(description: Option<&Value>) -> String {
    let raw = description.and_then(Value::as_str).unwrap_or_default();
    let one_line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    unlink(&one_line)
}

/// ``[`crate::bus::Subscription::hold`]`` (a rustdoc link) becomes `` `bus::Subscription::hold` ``.
fn unlink(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("`]") else {
            break;
        };
        let target = &after[..end];
        let tail = &after[end + 2..];
        out.push_str(&rest[..start]);
        if tail.starts_with('(') || tail.starts_with('[') {
            // A markdown link with its own target: left as it is.
            out.push_str(&rest[start..start + 2 + end + 2]);
        } else {
            let target = target
                .trim_start_matches("crate::")
                .trim_start_matches("super::");
            out.push('`');
            out.push_str(target);
            out.push('`');
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// A markdown table cell: pipes escaped (GitHub honours `\|` inside code spans too).
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// GitHub's anchor of a heading.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn render_keys(out: &mut String, table: &Table, keys: &[Key]) {
    if keys.is_empty() {
        out.push_str("No other keys.\n\n");
        return;
    }
    out.push_str("| key | type | default | environment variable | description |\n");
    out.push_str("| --- | --- | --- | --- | --- |\n");
    for key in keys {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | `{}` | {} |",
            key.name,
            cell(&key.ty),
            cell(&key.default),
            table.env_var(&key.name),
            cell(&key.description)
        );
    }
    out.push('\n');
}

/// The reference document for `tables`.
pub fn render_tables(tables: &[Table]) -> String {
    let mut out = String::new();
    out.push_str("# Configuration reference\n\n");
    let _ = writeln!(
        out,
        "> Generated from the doc comments of the settings types by `ferrisfx config-reference`: \
         do not edit by hand. Regenerate with `{REGENERATE}`; `cargo test -p ferrisfx` fails \
         while this file is stale.\n"
    );
    out.push_str(
        "Every key of the settings of `ferrisfx dev`, `gateway`, `executor`, `server` and `setup`. \
         The [configuration guide](configuration.md) explains how they fit together; \
         [`infra/config/dev.toml`](../infra/config/dev.toml) lists every key with its default, \
         and the other backends as commented examples.\n\n",
    );
    out.push_str(
        "- Settings come from a TOML file (`--config FILE`), then from environment variables, \
         then from the flags `--data-dir` and `--port`; later wins.\n\
         - A key's environment variable is `FX_` and its path in capitals, tables joined by `__` \
         (the last column): `FX_EXECUTOR__MAX_CONCURRENCY=16`.\n\
         - Unknown keys are refused, naming the key.\n\
         - Secrets (type *secret*) are never logged; give them through the environment rather \
         than in a file. Their defaults are not shown.\n\
         - A table with a `kind` chooses one backend; each kind takes its own keys and refuses \
         the others'. Its `kind` must be given wherever one of its keys is: \
         `FX_BACKENDS__BUS__CAPACITY=5` alone is refused unless the file sets the table's \
         `kind` or `FX_BACKENDS__BUS__KIND=embedded` goes with it. The kinds other than \
         `embedded` are cargo features of `fx-core` (`kafka`, `postgres`, `s3`, `consul`, \
         `elasticsearch`), all in the default build.\n\n",
    );
    out.push_str("## Contents\n\n");
    for table in tables {
        let heading = table.heading();
        let _ = writeln!(out, "- [{heading}](#{})", anchor(&heading));
    }
    out.push('\n');
    for table in tables {
        let _ = writeln!(out, "## {}\n", table.heading());
        if !table.description.is_empty() {
            let _ = writeln!(out, "{}\n", table.description);
        }
        if table.kinds.is_empty() {
            render_keys(&mut out, table, &table.keys);
            continue;
        }
        let choices: Vec<String> = table
            .kinds
            .iter()
            .map(|kind| {
                let default = if kind.default { " (default)" } else { "" };
                format!("`\"{}\"`{default}", kind.name)
            })
            .collect();
        let _ = writeln!(
            out,
            "`kind` (`{}`) chooses the backend: {}.\n",
            table.env_var("kind"),
            choices.join(", ")
        );
        for kind in &table.kinds {
            let default = if kind.default { " (default)" } else { "" };
            let _ = writeln!(out, "### `kind = \"{}\"`{default}\n", kind.name);
            if !kind.description.is_empty() {
                let _ = writeln!(out, "{}\n", kind.description);
            }
            render_keys(&mut out, table, &kind.keys);
        }
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests;
