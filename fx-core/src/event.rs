//! The CloudEvent model (from `cloudevents-sdk`) and its protocol bindings: the Kafka-style
//! message binding of the event bus (`ce_` headers) and the HTTP binding (`ce-` headers), each in
//! binary mode (attributes in headers, data as the body) or structured mode
//! (`application/cloudevents+json`).

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
    match name {
        "id" => Some(event.id().to_string()),
        "source" => Some(event.source().to_string()),
        "type" => Some(event.ty().to_string()),
        "specversion" => Some(event.specversion().to_string()),
        "subject" => event.subject().map(str::to_string),
        "datacontenttype" => event.datacontenttype().map(str::to_string),
        "dataschema" => event.dataschema().map(|u| u.to_string()),
        "time" => event.time().map(|t| t.to_rfc3339()),
        other => event.extension(other).map(extension_text),
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

/// Decodes a bus message (binary mode with `ce_` headers, or structured mode).
pub fn decode_message(message: &Message) -> Result<Event> {
    decode_binding(
        "ce_",
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
    if attr("specversion").is_none() && attr("id").is_none() && attr("type").is_none() {
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
        if matches!(
            ext,
            "specversion" | "id" | "source" | "type" | "subject" | "time" | "dataschema"
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
    serde_json::from_value(value).map_err(|e| Error::invalid(format!("invalid cloudevent: {e}")))
}

fn valid_extension_name(name: &str) -> bool {
    !name.is_empty()
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
mod tests {
    use super::*;
    use cloudevents::AttributesWriter;

    fn sample() -> Event {
        let mut e = new_json_event(
            "e-1",
            "/shop",
            "com.example.order",
            serde_json::json!({"n": 1}),
        )
        .unwrap();
        e.set_subject(Some("order-7"));
        e.set_extension("tenant", "acme");
        e
    }

    #[test]
    fn binary_message_round_trips() {
        let event = sample();
        let message = encode_message(&event);
        assert_eq!(message.header("ce_id"), Some("e-1"));
        assert_eq!(message.key.as_deref(), Some("/shop e-1"));
        let back = decode_message(&message).unwrap();
        assert_eq!(back.id(), "e-1");
        assert_eq!(attribute(&back, "tenant").as_deref(), Some("acme"));
        assert_eq!(attribute(&back, "subject").as_deref(), Some("order-7"));
        assert_eq!(data_json(&back), Some(serde_json::json!({"n": 1})));
    }

    #[test]
    fn structured_message_is_accepted() {
        let body = serde_json::to_vec(&sample()).unwrap();
        let message = Message {
            key: None,
            headers: vec![("content-type".into(), STRUCTURED_CONTENT_TYPE.into())],
            payload: body,
        };
        let back = decode_message(&message).unwrap();
        assert_eq!(back.ty(), "com.example.order");
    }

    #[test]
    fn partition_key_prefers_the_extension() {
        let mut event = sample();
        event.set_extension("partitionkey", "customer-9");
        assert_eq!(partition_key(&event), "customer-9");
    }

    #[test]
    fn missing_required_attributes_are_named() {
        let headers = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")];
        let err = decode_binding("ce-", headers, b"").unwrap_err();
        assert!(err.message().contains("\"source\""), "{err}");

        let err =
            decode_structured(br#"{"specversion":"1.0","source":"/s","type":"t"}"#).unwrap_err();
        assert!(err.message().contains("\"id\""), "{err}");
    }

    #[test]
    fn bad_json_and_non_events_are_refused() {
        let err = decode_structured(b"{not json").unwrap_err();
        assert!(err.message().contains("malformed json"), "{err}");

        let headers = [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("content-type", "application/json"),
        ];
        let err = decode_binding("ce-", headers, b"{oops").unwrap_err();
        assert!(err.message().contains("undecodable data"), "{err}");

        let err = decode_binding("ce-", [("content-type", "text/plain")], b"hi").unwrap_err();
        assert!(err.message().contains("not a cloudevent"), "{err}");
    }
}
