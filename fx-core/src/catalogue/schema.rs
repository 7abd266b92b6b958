//! The schema of an event type's `data`, inferred from traffic.
//!
//! A schema is flat: one [`Field`] per path, in JSONPath notation (`$` is the data itself,
//! `$.order.id` a member, `$.items[*]` the items of an array, `$["a.b"]` a member whose name is
//! not a plain word), each with the JSON types seen there and when each was first seen. Merging
//! two schemas is a union that keeps the earliest times, so it does not matter which gateway
//! flushes first. The changes are derived, never stored: a field first seen after the data
//! itself was is a new field, a type first seen after its field was is a type change.
//!
//! Bounded: at most [`MAX_FIELDS`] paths, [`MAX_DEPTH`] levels below `$`, the first
//! [`MAX_ITEMS`] items of an array and [`MAX_NODES`] values of one event are looked at; a schema
//! that left something out says so ([`Schema::truncated`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// The most paths a schema holds.
pub const MAX_FIELDS: usize = 200;
/// The deepest level (below `$`) a schema describes; deeper values are left out.
pub const MAX_DEPTH: usize = 8;
/// The items of an array looked at.
pub const MAX_ITEMS: usize = 16;
/// The values of one event looked at.
pub const MAX_NODES: usize = 2_000;
/// The longest path kept, in bytes.
pub const MAX_PATH_BYTES: usize = 256;
/// The most changes [`Schema::changes`] returns (the newest).
pub const MAX_CHANGES: usize = 100;
/// The path of the data itself.
pub const ROOT: &str = "$";

/// A JSON type (with `integer` apart from `number`, as JSON Schema has it), or `binary` for data
/// that is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JsonType {
    /// `null`.
    Null,
    /// `true` or `false`.
    Boolean,
    /// A number without a fraction.
    Integer,
    /// Any other number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
    /// Bytes that are not JSON.
    Binary,
}

impl JsonType {
    /// The type of `value`.
    pub fn of(value: &Value) -> Self {
        match value {
            Value::Null => JsonType::Null,
            Value::Bool(_) => JsonType::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => JsonType::Integer,
            Value::Number(_) => JsonType::Number,
            Value::String(_) => JsonType::String,
            Value::Array(_) => JsonType::Array,
            Value::Object(_) => JsonType::Object,
        }
    }

    /// Its name, as in JSON Schema.
    pub fn name(self) -> &'static str {
        match self {
            JsonType::Null => "null",
            JsonType::Boolean => "boolean",
            JsonType::Integer => "integer",
            JsonType::Number => "number",
            JsonType::String => "string",
            JsonType::Array => "array",
            JsonType::Object => "object",
            JsonType::Binary => "binary",
        }
    }
}

/// One path of a schema.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The types seen at the path, each with when it was first seen.
    pub types: BTreeMap<JsonType, DateTime<Utc>>,
    /// How many of the events looked at had the path.
    pub seen: u64,
}

impl Field {
    /// When the path was first seen.
    pub fn first_seen(&self) -> Option<DateTime<Utc>> {
        self.types.values().min().copied()
    }
}

/// The inferred schema of the data of one (source, type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The fields, by path.
    #[serde(default)]
    pub fields: BTreeMap<String, Field>,
    /// Whether something was left out (more fields, deeper levels or larger events than the
    /// bounds allow).
    #[serde(default)]
    pub truncated: bool,
}

/// What a change is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A path first seen after the data itself was.
    NewField,
    /// A type first seen at a path after the path was.
    TypeChange,
}

/// A change of a schema, derived from its fields' times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The path.
    pub path: String,
    /// New field or type change.
    pub kind: ChangeKind,
    /// When it was first seen.
    pub at: DateTime<Utc>,
    /// The field's types (a new field) or the type that appeared (a type change).
    pub types: Vec<JsonType>,
    /// For a type change: the types seen at the path before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<JsonType>,
}

impl Schema {
    /// The schema of one event's data, seen at `at`.
    pub fn of(data: &Value, at: DateTime<Utc>) -> Schema {
        let mut schema = Schema::default();
        let mut budget = MAX_NODES;
        schema.walk(ROOT, data, 0, at, &mut budget);
        schema
    }

    /// The schema of data that is not JSON, seen at `at`.
    pub fn binary(at: DateTime<Utc>) -> Schema {
        let mut schema = Schema::default();
        schema.note(ROOT, JsonType::Binary, at);
        schema
    }

    fn walk(
        &mut self,
        path: &str,
        value: &Value,
        depth: usize,
        at: DateTime<Utc>,
        budget: &mut usize,
    ) {
        if *budget == 0 {
            self.truncated = true;
            return;
        }
        *budget -= 1;
        if !self.note(path, JsonType::of(value), at) {
            return;
        }
        let nested = match value {
            Value::Object(map) => !map.is_empty(),
            Value::Array(items) => !items.is_empty(),
            _ => false,
        };
        if !nested {
            return;
        }
        if depth >= MAX_DEPTH {
            self.truncated = true;
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, member) in map {
                    let child = member_path(path, key);
                    if child.len() > MAX_PATH_BYTES {
                        self.truncated = true;
                        continue;
                    }
                    self.walk(&child, member, depth + 1, at, budget);
                }
            }
            Value::Array(items) => {
                let child = format!("{path}[*]");
                for item in items.iter().take(MAX_ITEMS) {
                    self.walk(&child, item, depth + 1, at, budget);
                }
            }
            _ => {}
        }
    }

    /// Records type `ty` at `path` for one event; false when the path is new and the schema is
    /// full.
    fn note(&mut self, path: &str, ty: JsonType, at: DateTime<Utc>) -> bool {
        if let Some(field) = self.fields.get_mut(path) {
            let first = field.types.entry(ty).or_insert(at);
            *first = (*first).min(at);
            return true;
        }
        if self.fields.len() >= MAX_FIELDS {
            self.truncated = true;
            return false;
        }
        self.fields.insert(
            path.to_string(),
            Field {
                types: BTreeMap::from([(ty, at)]),
                seen: 1,
            },
        );
        true
    }

    /// Adds `other`: paths and types unite, each with the earlier time; counts add up. Paths
    /// beyond [`MAX_FIELDS`] are left out (and the schema says it is truncated).
    pub fn merge(&mut self, other: &Schema) {
        self.truncated |= other.truncated;
        for (path, theirs) in &other.fields {
            let room = self.fields.len() < MAX_FIELDS;
            match self.fields.get_mut(path) {
                Some(ours) => {
                    ours.seen = ours.seen.saturating_add(theirs.seen);
                    for (ty, at) in &theirs.types {
                        let first = ours.types.entry(*ty).or_insert(*at);
                        *first = (*first).min(*at);
                    }
                }
                None if room => {
                    self.fields.insert(path.clone(), theirs.clone());
                }
                None => self.truncated = true,
            }
        }
    }

    /// When the data was first seen: what is older is the baseline, what is newer a change.
    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.fields.get(ROOT).and_then(Field::first_seen)
    }

    /// The new fields and type changes, newest first, at most [`MAX_CHANGES`]. A new field
    /// inside another that appeared with it (`$.customer.name` with `$.customer`) is not
    /// listed apart.
    pub fn changes(&self) -> Vec<Change> {
        let Some(since) = self.since() else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        for (path, field) in &self.fields {
            let Some(first) = field.first_seen() else {
                continue;
            };
            if path != ROOT && first > since {
                changes.push(Change {
                    path: path.clone(),
                    kind: ChangeKind::NewField,
                    at: first,
                    types: field
                        .types
                        .iter()
                        .filter(|(_, at)| **at == first)
                        .map(|(ty, _)| *ty)
                        .collect(),
                    before: Vec::new(),
                });
            }
            for (ty, at) in &field.types {
                if *at > first {
                    changes.push(Change {
                        path: path.clone(),
                        kind: ChangeKind::TypeChange,
                        at: *at,
                        types: vec![*ty],
                        before: field
                            .types
                            .iter()
                            .filter(|(_, other)| *other < at)
                            .map(|(ty, _)| *ty)
                            .collect(),
                    });
                }
            }
        }
        let new_fields: Vec<(String, DateTime<Utc>)> = changes
            .iter()
            .filter(|c| c.kind == ChangeKind::NewField)
            .map(|c| (c.path.clone(), c.at))
            .collect();
        changes.retain(|c| {
            c.kind != ChangeKind::NewField
                || !new_fields
                    .iter()
                    .any(|(parent, at)| *at == c.at && is_inside(&c.path, parent))
        });
        changes.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.path.cmp(&b.path)));
        changes.truncate(MAX_CHANGES);
        changes
    }

    /// When the schema last changed, if it did.
    pub fn last_change(&self) -> Option<DateTime<Utc>> {
        self.changes().first().map(|c| c.at)
    }

    /// The schema as a JSON Schema document: `type`, `properties` and `items`, each node with
    /// `x-first-seen` and `x-seen` (events that had it); `{}` when nothing was seen.
    pub fn json_schema(&self) -> Value {
        let mut root = Node::default();
        for (path, field) in &self.fields {
            let Some(segments) = segments(path) else {
                continue;
            };
            let mut node = &mut root;
            for segment in segments {
                node = match segment {
                    Segment::Key(key) => node.properties.entry(key).or_default(),
                    Segment::Items => node.items.get_or_insert_with(Box::default),
                };
            }
            node.field = Some(field);
        }
        let mut document = root.render();
        if let Value::Object(map) = &mut document {
            map.insert(
                "$schema".into(),
                "https://json-schema.org/draft/2020-12/schema".into(),
            );
            if self.truncated {
                map.insert("x-truncated".into(), true.into());
            }
        }
        document
    }
}

/// Whether `path` is strictly inside `parent`.
fn is_inside(path: &str, parent: &str) -> bool {
    path.len() > parent.len()
        && path.starts_with(parent)
        && matches!(path.as_bytes()[parent.len()], b'.' | b'[')
}

/// The path of member `key` of the object at `path`.
pub fn member_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{path}.{key}")
    } else {
        let quoted = serde_json::to_string(key).unwrap_or_else(|_| "\"?\"".into());
        format!("{path}[{quoted}]")
    }
}

enum Segment {
    Key(String),
    Items,
}

/// The segments of a path, or `None` when it is not one this module writes.
fn segments(path: &str) -> Option<Vec<Segment>> {
    let mut rest = path.strip_prefix(ROOT)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[*]") {
            out.push(Segment::Items);
            rest = after;
        } else if let Some(after) = rest.strip_prefix("[\"") {
            let bytes = after.as_bytes();
            let (mut i, mut escaped) = (0, false);
            loop {
                let b = *bytes.get(i)?;
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    break;
                }
                i += 1;
            }
            // `rest` is `["…"]…`: the quoted key is `"…"`.
            let key: String = serde_json::from_str(rest.get(1..i + 3)?).ok()?;
            out.push(Segment::Key(key));
            rest = after.get(i + 1..)?.strip_prefix(']')?;
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            out.push(Segment::Key(after[..end].to_string()));
            rest = &after[end..];
        } else {
            return None;
        }
    }
    Some(out)
}

#[derive(Default)]
struct Node<'a> {
    field: Option<&'a Field>,
    properties: BTreeMap<String, Node<'a>>,
    items: Option<Box<Node<'a>>>,
}

impl Node<'_> {
    fn render(&self) -> Value {
        let mut out = Map::new();
        if let Some(field) = self.field {
            let names: Vec<&str> = field
                .types
                .keys()
                .filter(|t| **t != JsonType::Binary)
                .map(|t| t.name())
                .collect();
            if field.types.contains_key(&JsonType::Binary) {
                out.insert("contentEncoding".into(), "base64".into());
            }
            match names.as_slice() {
                [] => {}
                [one] => {
                    out.insert("type".into(), (*one).into());
                }
                many => {
                    out.insert("type".into(), json!(many));
                }
            }
            if let Some(first) = field.first_seen() {
                out.insert("x-first-seen".into(), json!(first));
            }
            out.insert("x-seen".into(), field.seen.into());
        }
        if !self.properties.is_empty() {
            let properties: Map<String, Value> = self
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.render()))
                .collect();
            out.insert("properties".into(), Value::Object(properties));
        }
        if let Some(items) = &self.items {
            out.insert("items".into(), items.render());
        }
        Value::Object(out)
    }
}
