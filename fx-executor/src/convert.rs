//! Conversion between the WIT `event` record of `sdk/wit/function.wit` and `cloudevents::Event`.
//!
//! Events a function returns or emits are held to the same rules as events from producers:
//! `id`, `source` and `type` are required, `time` is RFC 3339, `dataschema` a URI, extension
//! names lowercase letters and digits. Data with a JSON content type becomes `Data::Json` when it
//! parses (else stays binary), UTF-8 `text/*` becomes `Data::String`, anything else is binary.

use cloudevents::event::Data;
use cloudevents::{AttributesReader, AttributesWriter, EventBuilder, EventBuilderV10};
use fx_core::event::{data_bytes, is_json_content_type, Event};
use fx_core::{Error, Result};

use crate::bindings::WitEvent;

/// The content type given to data that comes without one.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Context attributes that cannot be extensions.
const CONTEXT_ATTRIBUTES: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
];

/// A CloudEvent as the function sees it.
pub fn to_wit(event: &Event) -> WitEvent {
    WitEvent {
        id: event.id().to_string(),
        source: event.source().to_string(),
        type_: event.ty().to_string(),
        subject: event.subject().map(str::to_string),
        time: event.time().map(|t| t.to_rfc3339()),
        datacontenttype: event.datacontenttype().map(str::to_string).or_else(|| {
            matches!(event.data(), Some(Data::Json(_))).then(|| "application/json".into())
        }),
        dataschema: event.dataschema().map(|u| u.to_string()),
        extensions: event
            .iter_extensions()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        data: data_of(event),
    }
}

/// The data of `event` as bytes, as [`fx_core::event::data_bytes`] gives them; JSON data is
/// written by [`write_json`], byte for byte what `serde_json::to_vec` writes, faster.
fn data_of(event: &Event) -> Option<Vec<u8>> {
    match event.data()? {
        Data::Json(value) => {
            let mut out = Vec::with_capacity(JSON_CAPACITY);
            write_json(&mut out, value);
            Some(out)
        }
        Data::Binary(_) | Data::String(_) => data_bytes(event),
    }
}

/// Bytes reserved up front for the JSON data of an event.
const JSON_CAPACITY: usize = 1024;

/// Appends `value` as compact JSON, exactly as `serde_json::to_vec` writes it. Strings with
/// nothing to escape (the usual case) are copied whole instead of byte by byte.
fn write_json(out: &mut Vec<u8>, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(text) => write_json_string(out, text),
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_json(out, item);
            }
            out.push(b']');
        }
        Value::Object(fields) => {
            out.push(b'{');
            for (n, (name, item)) in fields.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_json_string(out, name);
                out.push(b':');
                write_json(out, item);
            }
            out.push(b'}');
        }
        // Writing null, a boolean or a number to a `Vec` cannot fail.
        Value::Null | Value::Bool(_) | Value::Number(_) => {
            let _ = serde_json::to_writer(out, value);
        }
    }
}

/// Appends `text` as a JSON string: copied as is between quotes when it holds nothing JSON
/// escapes (control characters, `"` and `\`), else escaped by serde_json.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // No early exit: the whole string is checked, which the compiler vectorises.
    let needs_escape = text.as_bytes().iter().fold(false, |found, &b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        // Writing a string to a `Vec` cannot fail.
        let _ = serde_json::to_writer(out, text);
        return;
    }
    out.reserve(text.len() + 2);
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// A function's event as a validated CloudEvent.
pub fn from_wit(event: &WitEvent) -> Result<Event> {
    let required = |name: &str, value: &str| {
        if value.is_empty() {
            Err(Error::invalid(format!(
                "missing required attribute {name:?}"
            )))
        } else {
            Ok(())
        }
    };
    required("id", &event.id)?;
    required("source", &event.source)?;
    required("type", &event.type_)?;
    let mut builder = EventBuilderV10::new()
        .id(event.id.as_str())
        .source(event.source.as_str())
        .ty(event.type_.as_str());
    if let Some(subject) = &event.subject {
        builder = builder.subject(subject.as_str());
    }
    if let Some(time) = &event.time {
        let parsed = chrono::DateTime::parse_from_rfc3339(time).map_err(|e| {
            Error::invalid(format!(
                "attribute \"time\" is not RFC 3339 ({time:?}): {e}"
            ))
        })?;
        builder = builder.time(parsed.with_timezone(&chrono::Utc));
    }
    for (name, value) in &event.extensions {
        if !valid_extension_name(name) {
            return Err(Error::invalid(format!(
                "invalid extension attribute name {name:?}: only lowercase letters and digits"
            )));
        }
        if CONTEXT_ATTRIBUTES.contains(&name.as_str()) {
            return Err(Error::invalid(format!(
                "extension attribute {name:?} clashes with a context attribute"
            )));
        }
        builder = builder.extension(name, value.as_str());
    }
    let mut built = builder
        .build()
        .map_err(|e| Error::invalid(format!("invalid cloudevent: {e}")))?;
    let schema = event
        .dataschema
        .as_deref()
        .map(|s| {
            url::Url::parse(s).map_err(|e| {
                Error::invalid(format!(
                    "attribute \"dataschema\" is not a URI ({s:?}): {e}"
                ))
            })
        })
        .transpose()?;
    match &event.data {
        Some(body) => {
            let content_type = event
                .datacontenttype
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into());
            let data = decode_data(&content_type, body);
            built.set_data(content_type, data);
        }
        None => {
            built.set_datacontenttype(event.datacontenttype.clone());
        }
    }
    built.set_dataschema(schema);
    Ok(built)
}

/// The data of an output event, by its content type. JSON nested deeper than the platform
/// carries as JSON ([`fx_core::event::MAX_DATA_DEPTH`]) stays bytes, like JSON that does not
/// parse: as a value it would not survive the state event that records it.
fn decode_data(content_type: &str, body: &[u8]) -> Data {
    if is_json_content_type(content_type) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            if fx_core::event::check_data_depth(&value).is_ok() {
                return Data::Json(value);
            }
        }
        return Data::Binary(body.to_vec());
    }
    let essence = content_type.trim_start().to_ascii_lowercase();
    if essence.starts_with("text/") {
        if let Ok(text) = std::str::from_utf8(body) {
            return Data::String(text.to_string());
        }
    }
    Data::Binary(body.to_vec())
}

fn valid_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Bytes an event counts for against `max_output_bytes`: its attributes and data.
pub fn wit_event_size(event: &WitEvent) -> u64 {
    let optional = [
        &event.subject,
        &event.time,
        &event.datacontenttype,
        &event.dataschema,
    ];
    let attrs = event.id.len()
        + event.source.len()
        + event.type_.len()
        + optional
            .iter()
            .map(|o| o.as_ref().map_or(0, String::len))
            .sum::<usize>()
        + event
            .extensions
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    (attrs + event.data.as_ref().map_or(0, Vec::len)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use fx_core::event::new_json_event;
    use serde_json::json;

    fn wit(id: &str, source: &str, ty: &str) -> WitEvent {
        WitEvent {
            id: id.into(),
            source: source.into(),
            type_: ty.into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: Vec::new(),
            data: None,
        }
    }

    #[test]
    fn an_event_round_trips_through_the_wit_record() {
        let mut event =
            new_json_event("e-1", "/shop", "com.example.order", json!({"n": 1})).unwrap();
        event.set_subject(Some("order-7"));
        event.set_extension("tenant", "acme");
        let back = from_wit(&to_wit(&event)).unwrap();
        assert_eq!(back.id(), "e-1");
        assert_eq!(back.subject(), Some("order-7"));
        assert_eq!(back.data(), Some(&Data::Json(json!({"n": 1}))));
        assert_eq!(
            fx_core::event::attribute(&back, "tenant").as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn json_data_is_written_as_serde_json_writes_it() {
        let values = [
            json!({"payload": "x".repeat(1000), "n": 1, "f": 1.5, "neg": -7, "big": u64::MAX}),
            json!({"quote": "say \"hi\"", "slash": "a\\b", "ctl": "tab\tnew\nline\u{1}", "del": "\u{7f}"}),
            json!([
                "ünïcödé",
                "日本語",
                "emoji 🦀",
                null,
                true,
                false,
                [],
                {},
                [[1, [2.25e-8]]]
            ]),
            json!({"nested": {"a": [{"b": {"c": "d"}}]}, "": ""}),
            json!("just a string"),
            json!(null),
        ];
        for value in values {
            let event = new_json_event("e-1", "/s", "t", value.clone()).unwrap();
            assert_eq!(
                to_wit(&event).data,
                Some(serde_json::to_vec(&value).unwrap()),
                "{value}"
            );
        }
    }

    #[test]
    fn an_output_event_without_id_source_or_type_is_refused() {
        for (event, missing) in [
            (wit("", "/s", "t"), "\"id\""),
            (wit("1", "", "t"), "\"source\""),
            (wit("1", "/s", ""), "\"type\""),
        ] {
            let err = from_wit(&event).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(
                    |m| m.contains("missing required attribute") && m.contains(missing)
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn json_data_nested_too_deep_stays_binary() {
        let depth = fx_core::event::MAX_DATA_DEPTH + 1;
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(
            decode_data("application/json", body.as_bytes()),
            Data::Binary(body.clone().into_bytes())
        );
        let ok = format!("{}{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
        assert!(matches!(
            decode_data("application/json", ok.as_bytes()),
            Data::Json(_)
        ));
    }

    #[test]
    fn json_data_that_does_not_parse_stays_binary() {
        let mut event = wit("1", "/s", "t");
        event.datacontenttype = Some("application/json".into());
        event.data = Some(b"{\"ok\":true}".to_vec());
        let parsed = from_wit(&event).unwrap();
        assert_eq!(parsed.data(), Some(&Data::Json(json!({"ok": true}))));
        event.data = Some(b"not json".to_vec());
        let raw = from_wit(&event).unwrap();
        assert_eq!(raw.data(), Some(&Data::Binary(b"not json".to_vec())));
        assert_eq!(raw.datacontenttype(), Some("application/json"));
    }

    #[test]
    fn bad_time_schema_or_extension_name_are_refused() {
        let mut bad_time = wit("1", "/s", "t");
        bad_time.time = Some("yesterday".into());
        let mut bad_schema = wit("1", "/s", "t");
        bad_schema.dataschema = Some("not a uri".into());
        let mut bad_ext = wit("1", "/s", "t");
        bad_ext.extensions = vec![("Tenant".into(), "x".into())];
        let mut clash = wit("1", "/s", "t");
        clash.extensions = vec![("id".into(), "x".into())];
        for event in [bad_time, bad_schema, bad_ext, clash] {
            assert!(from_wit(&event).is_err(), "{event:?}");
        }
    }
}
