//! The event a function receives and returns: a CloudEvent 1.0.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bindings::ferrisfx::function::types::Event as WitEvent;
use crate::Error;

/// The content type [`Event::with_json`] sets.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// A CloudEvent (spec 1.0) as a function sees it.
///
/// Build one with [`Event::new`] and the `with_*` methods; `specversion` is always `1.0` and is
/// set by the host. To answer an event, either build a new one or change the received one with
/// [`Event::with_id`], [`Event::with_source`] and [`Event::with_type`], which keeps its other
/// attributes and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    id: String,
    source: String,
    ty: String,
    subject: Option<String>,
    time: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    extensions: Vec<(String, String)>,
    data: Option<Vec<u8>>,
}

impl Event {
    /// An event with the required attributes and nothing else.
    ///
    /// `id` should be unique per `source`; deriving it from the id of the event being handled
    /// (`format!("{}-priced", event.id())`) keeps a retried invocation from producing new ids.
    pub fn new(id: impl Into<String>, source: impl Into<String>, ty: impl Into<String>) -> Self {
        Event {
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: Vec::new(),
            data: None,
        }
    }

    /// Identifies the event; unique per source.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the event happened (a URI reference), e.g. `/functions/hello`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The kind of event, e.g. `com.example.order.created`.
    pub fn ty(&self) -> &str {
        &self.ty
    }

    /// The subject of the event within its source.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// When it happened, RFC 3339.
    pub fn time(&self) -> Option<&str> {
        self.time.as_deref()
    }

    /// Content type of the data, e.g. `application/json`.
    pub fn datacontenttype(&self) -> Option<&str> {
        self.datacontenttype.as_deref()
    }

    /// URI of the schema the data adheres to.
    pub fn dataschema(&self) -> Option<&str> {
        self.dataschema.as_deref()
    }

    /// Extension attributes, name and value, in order.
    pub fn extensions(&self) -> &[(String, String)] {
        &self.extensions
    }

    /// The value of extension attribute `name`.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The payload.
    pub fn data(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }

    /// The payload, by value.
    pub fn into_data(self) -> Option<Vec<u8>> {
        self.data
    }

    /// The payload as text, if there is one and it is UTF-8.
    pub fn data_text(&self) -> Option<&str> {
        self.data().and_then(|d| std::str::from_utf8(d).ok())
    }

    /// Whether the payload is JSON by its content type (`application/json`, `…+json`, or none:
    /// CloudEvents reads a missing content type as JSON).
    pub fn is_json(&self) -> bool {
        match self.datacontenttype() {
            None => true,
            Some(ct) => {
                let essence = ct.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case(JSON_CONTENT_TYPE)
                    || essence.to_ascii_lowercase().ends_with("+json")
            }
        }
    }

    /// The payload decoded from JSON into `T`.
    ///
    /// Fails when there is no payload or it is not valid JSON for `T`; the content type is not
    /// checked (see [`Event::is_json`]).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let data = self
            .data()
            .ok_or_else(|| Error::new(format!("event {} has no data", self.id)))?;
        serde_json::from_slice(data).map_err(|e| {
            Error::new(format!(
                "event {} data is not the expected json: {e}",
                self.id
            ))
        })
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the source.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets the type.
    pub fn with_type(mut self, ty: impl Into<String>) -> Self {
        self.ty = ty.into();
        self
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the time (RFC 3339, e.g. `2024-05-01T12:00:00Z`).
    pub fn with_time(mut self, time: impl Into<String>) -> Self {
        self.time = Some(time.into());
        self
    }

    /// Sets the data schema URI.
    pub fn with_dataschema(mut self, dataschema: impl Into<String>) -> Self {
        self.dataschema = Some(dataschema.into());
        self
    }

    /// Sets extension attribute `name` to `value`, replacing an earlier value.
    ///
    /// CloudEvents names are lowercase letters and digits; the host rejects other names.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        match self.extensions.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.extensions.push((name, value)),
        }
        self
    }

    /// Sets the payload and its content type.
    pub fn with_data(
        mut self,
        datacontenttype: impl Into<String>,
        data: impl Into<Vec<u8>>,
    ) -> Self {
        self.datacontenttype = Some(datacontenttype.into());
        self.data = Some(data.into());
        self
    }

    /// Sets the payload to `value` as JSON, and the content type to `application/json`.
    pub fn with_json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let data = serde_json::to_vec(value)
            .map_err(|e| Error::new(format!("encoding data of event {} as json: {e}", self.id)))?;
        Ok(self.with_data(JSON_CONTENT_TYPE, data))
    }

    /// Removes the payload and its content type.
    pub fn without_data(mut self) -> Self {
        self.datacontenttype = None;
        self.data = None;
        self
    }
}

impl From<WitEvent> for Event {
    fn from(e: WitEvent) -> Self {
        Event {
            id: e.id,
            source: e.source,
            ty: e.type_,
            subject: e.subject,
            time: e.time,
            datacontenttype: e.datacontenttype,
            dataschema: e.dataschema,
            extensions: e.extensions,
            data: e.data,
        }
    }
}

impl From<Event> for WitEvent {
    fn from(e: Event) -> Self {
        WitEvent {
            id: e.id,
            source: e.source,
            type_: e.ty,
            subject: e.subject,
            time: e.time,
            datacontenttype: e.datacontenttype,
            dataschema: e.dataschema,
            extensions: e.extensions,
            data: e.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::{json, Value};

    #[test]
    fn with_json_sets_data_and_content_type() {
        let event = Event::new("1", "/test", "com.example.greeted")
            .with_json(&json!({ "name": "Ada" }))
            .unwrap();
        assert_eq!(event.datacontenttype(), Some("application/json"));
        assert_eq!(event.data_text(), Some(r#"{"name":"Ada"}"#));
        assert!(event.is_json());
        assert_eq!(event.json::<Value>().unwrap(), json!({ "name": "Ada" }));
    }

    #[test]
    fn json_of_missing_or_invalid_data_is_an_error() {
        let empty = Event::new("1", "/test", "t");
        assert_eq!(
            empty.json::<Value>().unwrap_err().message(),
            "event 1 has no data"
        );
        let text = empty.with_data("text/plain", "hi");
        assert!(!text.is_json());
        let err = text.json::<Value>().unwrap_err();
        assert!(
            err.message()
                .starts_with("event 1 data is not the expected json"),
            "{err}"
        );
    }

    #[test]
    fn content_types_ending_in_json_are_json() {
        let event = Event::new("1", "/test", "t")
            .with_data("application/cloudevents+json; charset=utf-8", "{}");
        assert!(event.is_json());
    }

    #[test]
    fn with_extension_replaces_an_earlier_value() {
        let event = Event::new("1", "/test", "t")
            .with_extension("traceparent", "a")
            .with_extension("tenant", "x")
            .with_extension("traceparent", "b");
        assert_eq!(event.extension("traceparent"), Some("b"));
        assert_eq!(event.extensions().len(), 2);
        assert_eq!(event.extension("missing"), None);
    }

    #[test]
    fn converts_to_and_from_the_wit_record_without_loss() {
        let event = Event::new("1", "/test", "t")
            .with_subject("s")
            .with_time("2024-05-01T12:00:00Z")
            .with_dataschema("https://example.com/schema")
            .with_extension("tenant", "x")
            .with_data("application/octet-stream", vec![0, 1, 2]);
        let wit = WitEvent::from(event.clone());
        assert_eq!(wit.type_, "t");
        assert_eq!(Event::from(wit), event);
    }

    #[test]
    fn reply_keeps_attributes_and_data() {
        let event = Event::new("1", "/test", "t")
            .with_subject("s")
            .with_data("text/plain", "hi");
        let reply = event.with_id("1-echo").with_type("t.echoed");
        assert_eq!(
            (reply.id(), reply.source(), reply.ty()),
            ("1-echo", "/test", "t.echoed")
        );
        assert_eq!(
            (reply.subject(), reply.data_text()),
            (Some("s"), Some("hi"))
        );
        assert_eq!(reply.without_data().data(), None);
    }
}
