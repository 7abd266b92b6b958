//! The CloudEvent model (from `cloudevents-sdk`) and its protocol bindings: the Kafka-style
//! message binding of the event bus (`ce_` headers) and the HTTP binding (`ce-` headers), each in
//! binary mode (attributes in headers, data as the body) or structured mode
//! (`application/cloudevents+json`).

use std::borrow::Cow;

use cloudevents::event::{Data, ExtensionValue};
use cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};

use crate::error::{Error, Result};

pub use cloudevents::Event;

/// The content type of a structured-mode CloudEvent.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// One message of the event bus: what a Kafka record carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Partitioning key: messages with the same key keep their order.
    pub key: Option<String>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub payload: Vec<u8>,
}

impl Message {
    /// A message with a JSON body and no headers.
    pub fn json<T: serde::Serialize>(key: Option<String>, value: &T) -> Result<Self> {
        let payload = serde_json::to_vec(value)
            .map_err(|e| Error::internal("encoding message body as json").with_source(e))?;
        Ok(Message {
            key,
            headers: vec![("content-type".into(), "application/json".into())],
            payload,
        })
    }

    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Decodes the JSON body.
    pub fn decode_json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| Error::invalid("decoding message body as json").with_source(e))
    }
}

/// The value of an event attribute by its CloudEvents name (`type`, `source`, `subject`, `id`,
/// `datacontenttype`, `dataschema`, `time`, `specversion`) or, failing that, of the extension of
/// that name.
pub fn attribute(event: &Event, name: &str) -> Option<String> {
    attribute_text(event, name).map(Cow::into_owned)
}

/// The value of an event attribute as [`attribute`] gives it, borrowed where the event holds it
/// as text (`id`, `source`, `type`, `subject`, `datacontenttype`, string extensions): filters
/// read attributes of every event, without allocating.
pub fn attribute_text<'e>(event: &'e Event, name: &str) -> Option<Cow<'e, str>> {
    match name {
        "id" => Some(Cow::Borrowed(event.id())),
        "source" => Some(Cow::Borrowed(event.source().as_str())),
        "type" => Some(Cow::Borrowed(event.ty())),
        "specversion" => Some(Cow::Owned(event.specversion().to_string())),
        "subject" => event.subject().map(Cow::Borrowed),
        "datacontenttype" => event.datacontenttype().map(Cow::Borrowed),
        "dataschema" => event.dataschema().map(|u| Cow::Owned(u.to_string())),
        "time" => event.time().map(|t| Cow::Owned(t.to_rfc3339())),
        other => event.extension(other).map(|value| match value {
            ExtensionValue::String(s) => Cow::Borrowed(s.as_str()),
            value => Cow::Owned(extension_text(value)),
        }),
    }
}

fn extension_text(value: &ExtensionValue) -> String {
    match value {
        ExtensionValue::String(s) => s.clone(),
        ExtensionValue::Boolean(b) => b.to_string(),
        ExtensionValue::Integer(i) => i.to_string(),
    }
}

/// The bus key of an event: its `partitionkey` extension when present, else `source` + `id`,
/// so related events keep their order.
pub fn partition_key(event: &Event) -> String {
    match event.extension("partitionkey") {
        Some(v) => extension_text(v),
        None => format!("{} {}", event.source(), event.id()),
    }
}

/// The data of an event as bytes, however it is held.
pub fn data_bytes(event: &Event) -> Option<Vec<u8>> {
    match event.data()? {
        Data::Binary(b) => Some(b.clone()),
        Data::String(s) => Some(s.as_bytes().to_vec()),
        Data::Json(v) => Some(serde_json::to_vec(v).unwrap_or_default()),
    }
}

/// The data of an event as JSON when it is JSON (or text that parses as JSON).
pub fn data_json(event: &Event) -> Option<serde_json::Value> {
    match event.data()? {
        Data::Json(v) => Some(v.clone()),
        Data::String(s) => serde_json::from_str(s).ok(),
        Data::Binary(b) => serde_json::from_slice(b).ok(),
    }
}

/// Whether a content type denotes JSON (`application/json`, `text/json`, `*+json`).
pub fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Encodes an event as a bus message in binary mode: attributes as `ce_` headers, the data as
/// the payload, the content type in `content-type`.
pub fn encode_message(event: &Event) -> Message {
    let (headers, payload) = encode_binary(event, "ce_");
    Message {
        key: Some(partition_key(event)),
        headers,
        payload,
    }
}

/// Encodes an event in binary mode with the given header prefix (`ce_` for Kafka, `ce-` for
/// HTTP); returns the headers and the body.
pub fn encode_binary(event: &Event, prefix: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let mut headers = vec![
        (
            format!("{prefix}specversion"),
            event.specversion().to_string(),
        ),
        (format!("{prefix}id"), event.id().to_string()),
        (format!("{prefix}source"), event.source().to_string()),
        (format!("{prefix}type"), event.ty().to_string()),
    ];
    if let Some(subject) = event.subject() {
        headers.push((format!("{prefix}subject"), subject.to_string()));
    }
    if let Some(time) = event.time() {
        headers.push((format!("{prefix}time"), time.to_rfc3339()));
    }
    if let Some(schema) = event.dataschema() {
        headers.push((format!("{prefix}dataschema"), schema.to_string()));
    }
    for (name, value) in event.iter_extensions() {
        headers.push((format!("{prefix}{name}"), extension_text(value)));
    }
    let content_type = event.datacontenttype().map(str::to_string).or_else(|| {
        matches!(event.data(), Some(Data::Json(_))).then(|| "application/json".to_string())
    });
    if let Some(ct) = content_type {
        headers.push(("content-type".into(), ct));
    }
    (headers, data_bytes(event).unwrap_or_default())
}

/// The binary-mode header prefix of the Kafka binding (`ce_`).
pub const KAFKA_PREFIX: &str = "ce_";

/// Whether `body` is a JSON object with a `specversion` member (checked without decoding
/// the rest, so a binary-mode body is not parsed twice).
fn looks_structured(body: &[u8]) -> bool {
    let text = body.trim_ascii_start();
    text.first() == Some(&b'{')
        && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
            .is_ok_and(|object| object.contains_key("specversion"))
}

/// Decodes a bus message (binary mode with `ce_` headers, or structured mode: with
/// `content-type: application/cloudevents+json`, or without `ce_` headers and a JSON
/// CloudEvent as the value).
pub fn decode_message(message: &Message) -> Result<Event> {
    decode_binding(
        KAFKA_PREFIX,
        message
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
        &message.payload,
    )
}

/// Decodes a CloudEvent from protocol headers and a body. `prefix` is the binary-mode header
/// prefix (`ce_` or `ce-`). Structured mode is recognised by its content type. Required
/// attributes (`id`, `source`, `specversion`, `type`) are enforced; a JSON content type whose
/// body is not JSON is refused.
pub fn decode_binding<'a>(
    prefix: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: &[u8],
) -> Result<Event> {
    let headers: Vec<(String, &str)> = headers
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| *v);
    if let Some(ct) = content_type {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case(STRUCTURED_CONTENT_TYPE) {
            return decode_structured(body);
        }
        if essence
            .to_ascii_lowercase()
            .starts_with("application/cloudevents")
        {
            return Err(Error::invalid(format!(
                "unsupported structured content type {essence:?}: only {STRUCTURED_CONTENT_TYPE} is accepted"
            )));
        }
    }
    let attr = |name: &str| {
        let key = format!("{prefix}{name}");
        headers.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    };
    let no_attributes =
        attr("specversion").is_none() && attr("id").is_none() && attr("type").is_none();
    // Structured mode as the CloudEvents SDKs write it to Kafka: the Python SDK (1.x) sets
    // `content-type` to the data's content type or leaves it out, so a message without `ce_`
    // headers whose value is a JSON CloudEvent (it has `specversion`) is one.
    if no_attributes && prefix == KAFKA_PREFIX && looks_structured(body) {
        return decode_structured(body);
    }
    if no_attributes {
        return Err(Error::invalid(format!(
            "not a cloudevent: no {prefix}specversion/{prefix}id/{prefix}type headers and content type is not {STRUCTURED_CONTENT_TYPE}"
        )));
    }
    let required = |name: &str| {
        attr(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::invalid(format!("missing required attribute {name:?}")))
    };
    let specversion = required("specversion")?;
    if specversion != "1.0" {
        return Err(Error::invalid(format!(
            "unsupported specversion {specversion:?}: only \"1.0\" is accepted"
        )));
    }
    let mut builder = EventBuilderV10::new()
        .id(required("id")?)
        .source(required("source")?)
        .ty(required("type")?);
    if let Some(subject) = attr("subject") {
        builder = builder.subject(subject);
    }
    if let Some(time) = attr("time") {
        let parsed = chrono::DateTime::parse_from_rfc3339(time)
            .map_err(|e| Error::invalid(format!("attribute \"time\" is not RFC 3339: {e}")))?;
        builder = builder.time(parsed.with_timezone(&chrono::Utc));
    }
    for (name, value) in &headers {
        let Some(ext) = name.strip_prefix(prefix) else {
            continue;
        };
        // `datacontenttype` is the `content-type` header in binary mode; the JavaScript SDK
        // also writes it as `ce_datacontenttype`.
        if matches!(
            ext,
            "specversion"
                | "id"
                | "source"
                | "type"
                | "subject"
                | "time"
                | "dataschema"
                | "datacontenttype"
        ) {
            continue;
        }
        if !valid_extension_name(ext) {
            return Err(Error::invalid(format!(
                "invalid extension attribute name {ext:?}: only lowercase letters and digits"
            )));
        }
        builder = builder.extension(ext, value.to_string());
    }
    let data = if !body.is_empty() || content_type.is_some() {
        let ct = content_type.unwrap_or("application/octet-stream");
        let data = if is_json_content_type(ct) {
            let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                Error::invalid(format!(
                    "undecodable data: content type {ct:?} but the body is not json: {e}"
                ))
            })?;
            Data::Json(value)
        } else if ct.starts_with("text/") {
            Data::String(String::from_utf8(body.to_vec()).map_err(|e| {
                Error::invalid(format!(
                    "undecodable data: content type {ct:?} but the body is not utf-8: {e}"
                ))
            })?)
        } else {
            Data::Binary(body.to_vec())
        };
        Some((ct.to_string(), data))
    } else {
        None
    };
    builder = match (data, attr("dataschema")) {
        (Some((ct, data)), Some(schema)) => {
            let url = url::Url::parse(schema).map_err(|e| {
                Error::invalid(format!("attribute \"dataschema\" is not a URI: {e}"))
            })?;
            builder.data_with_schema(ct, url, data)
        }
        (Some((ct, data)), None) => builder.data(ct, data),
        (None, _) => builder,
    };
    let event = builder
        .build()
        .map_err(|e| Error::invalid(format!("invalid cloudevent: {e}")))?;
    validate(&event)?;
    Ok(event)
}

/// Decodes a structured-mode (JSON) CloudEvent.
pub fn decode_structured(body: &[u8]) -> Result<Event> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("malformed json in structured cloudevent: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Error::invalid(
            "structured cloudevent must be a json object",
        ));
    };
    // An attribute given as `null` (the Python SDK's pydantic events write `"dataschema":
    // null`) is absent.
    let value = serde_json::Value::Object(
        object
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    let Some(object) = value.as_object() else {
        return Err(Error::invalid(
            "structured cloudevent must be a json object",
        ));
    };
    for name in ["specversion", "id", "source", "type"] {
        match object.get(name) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => {}
            Some(_) => {
                return Err(Error::invalid(format!(
                    "attribute {name:?} must be a non-empty string"
                )))
            }
            None => {
                return Err(Error::invalid(format!(
                    "missing required attribute {name:?}"
                )))
            }
        }
    }
    if object.get("specversion").and_then(|v| v.as_str()) != Some("1.0") {
        return Err(Error::invalid(
            "unsupported specversion: only \"1.0\" is accepted",
        ));
    }
    let event: Event = serde_json::from_value(value)
        .map_err(|e| Error::invalid(format!("invalid cloudevent: {e}")))?;
    validate(&event)?;
    Ok(event)
}

/// The longest attribute value an event may carry, in bytes.
pub const MAX_ATTRIBUTE_BYTES: usize = 2048;
/// The longest extension attribute name (CloudEvents recommends at most 20 characters).
pub const MAX_EXTENSION_NAME: usize = 64;
/// The most extension attributes an event may carry.
pub const MAX_EXTENSIONS: usize = 64;
/// The deepest JSON data an event may carry, in nested arrays and objects. The platform wraps
/// data in a few levels of its own (an invocation, a state event, a workflow step's input), and
/// every JSON decoder on the way stops at 128 levels: refused where it enters, such data would
/// otherwise pass the gateway and then fail an executor or the state router.
pub const MAX_DATA_DEPTH: usize = 64;

/// How deep `value` nests: `0` for a scalar, `1` for `[1]` or `{"a": 1}`, and so on. Walks
/// without recursion, and stops counting past `limit` (returning `limit + 1`).
pub fn json_depth(value: &serde_json::Value, limit: usize) -> usize {
    use serde_json::Value;
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        let depth = depth + 1;
        if depth > limit {
            return limit + 1;
        }
        deepest = deepest.max(depth);
        stack.extend(children.map(|child| (child, depth)));
    }
    deepest
}

/// Refuses JSON data that nests deeper than [`MAX_DATA_DEPTH`].
pub fn check_data_depth(data: &serde_json::Value) -> Result<()> {
    let depth = json_depth(data, MAX_DATA_DEPTH);
    if depth > MAX_DATA_DEPTH {
        return Err(Error::invalid(format!(
            "data nests more than {MAX_DATA_DEPTH} levels of arrays and objects: not accepted"
        )));
    }
    Ok(())
}

/// Checks what every backend an event passes through can take, so that an event is refused
/// where it enters (`400` at the HTTP ingress, the dead-letter topic on `fx.events`) rather than
/// by a store later: attribute values without control characters (PostgreSQL refuses NUL in
/// text; Kafka headers and Elasticsearch keywords are no place for the others) and at most
/// [`MAX_ATTRIBUTE_BYTES`] long; extension names of lowercase letters and digits, at most
/// [`MAX_EXTENSION_NAME`] long, and at most [`MAX_EXTENSIONS`] of them. Both decoders
/// ([`decode_binding`], [`decode_structured`]) call it: one validation for every entry point.
pub fn validate(event: &Event) -> Result<()> {
    let check = |name: &str, value: &str| -> Result<()> {
        if value.len() > MAX_ATTRIBUTE_BYTES {
            return Err(Error::invalid(format!(
                "attribute {name:?} is {} bytes long: at most {MAX_ATTRIBUTE_BYTES} are accepted",
                value.len()
            )));
        }
        if let Some(at) = value.chars().position(char::is_control) {
            return Err(Error::invalid(format!(
                "attribute {name:?} contains a control character at position {at}: not accepted"
            )));
        }
        Ok(())
    };
    check("id", event.id())?;
    check("source", &event.source().to_string())?;
    check("type", event.ty())?;
    if let Some(subject) = event.subject() {
        check("subject", subject)?;
    }
    if let Some(content_type) = event.datacontenttype() {
        check("datacontenttype", content_type)?;
    }
    if let Some(schema) = event.dataschema() {
        check("dataschema", schema.as_ref())?;
    }
    let mut extensions = 0;
    for (name, value) in event.iter_extensions() {
        extensions += 1;
        if extensions > MAX_EXTENSIONS {
            return Err(Error::invalid(format!(
                "more than {MAX_EXTENSIONS} extension attributes: not accepted"
            )));
        }
        if !valid_extension_name(name) {
            return Err(Error::invalid(format!(
                "invalid extension attribute name {:?}: only lowercase letters and digits, at most {MAX_EXTENSION_NAME}",
                name.chars().take(80).collect::<String>()
            )));
        }
        check(name, &extension_text(value))?;
    }
    if let Some(Data::Json(data)) = event.data() {
        check_data_depth(data)?;
    }
    Ok(())
}

fn valid_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_EXTENSION_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Builds a new event; `data` is JSON.
pub fn new_json_event(
    id: impl Into<String>,
    source: impl Into<String>,
    ty: impl Into<String>,
    data: serde_json::Value,
) -> Result<Event> {
    check_data_depth(&data)?;
    let mut event = EventBuilderV10::new()
        .id(id.into())
        .source(source.into())
        .ty(ty.into())
        .build()
        .map_err(|e| Error::invalid(format!("invalid cloudevent: {e}")))?;
    event.set_data("application/json", data);
    Ok(event)
}

#[cfg(test)]
mod tests;
