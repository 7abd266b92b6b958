//! Emit CloudEvents to FerrisFX from a service.
//!
//! - [`KafkaProducer`] writes to the `fx.events` topic in the CloudEvents Kafka binding's
//!   binary mode (attributes as `ce_` headers, data as the value), keyed by the event's
//!   `partitionkey` extension, else its `source` + `id`, so related events keep their order.
//! - [`HttpProducer`] posts to the management server's `POST /events` in structured mode.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferrisfx_producer::ProducerError> {
//! use cloudevents::{EventBuilder, EventBuilderV10};
//! let event = EventBuilderV10::new()
//!     .id("order-1")
//!     .source("/shop")
//!     .ty("com.example.order.created")
//!     .data("application/json", serde_json::json!({"order_id": "o-1"}))
//!     .build()
//!     .map_err(|e| ferrisfx_producer::ProducerError::Invalid(e.to_string()))?;
//! let producer = ferrisfx_producer::KafkaProducer::new("127.0.0.1:9092")?;
//! producer.emit(&event).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use cloudevents::event::{Data, ExtensionValue};
use cloudevents::{AttributesReader, Event};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

pub use cloudevents;

/// The topic FerrisFX consumes events from.
pub const EVENTS_TOPIC: &str = "fx.events";

/// Why an event was not emitted.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The event or the configuration is invalid.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Kafka or the server could not be reached, or did not acknowledge in time.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The server refused the event.
    #[error("refused by the server ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's reason.
        message: String,
    },
}

/// Emits events to Kafka; waits for the broker's acknowledgement (acks=all, idempotent).
pub struct KafkaProducer {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
}

impl KafkaProducer {
    /// A producer for the brokers `brokers` (`host:port,...`) writing to `fx.events`.
    pub fn new(brokers: &str) -> Result<Self, ProducerError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| ProducerError::Invalid(format!("kafka producer for {brokers}: {e}")))?;
        Ok(KafkaProducer {
            producer,
            topic: EVENTS_TOPIC.to_string(),
            timeout: Duration::from_secs(30),
        })
    }

    /// Writes to `topic` instead of `fx.events`.
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self
    }

    /// Emits one event; returns once the broker holds it.
    pub async fn emit(&self, event: &Event) -> Result<(), ProducerError> {
        let (headers, value) = binary_mode(event, "ce_");
        let mut kafka_headers = OwnedHeaders::new();
        for (key, value) in &headers {
            kafka_headers = kafka_headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let key = partition_key(event);
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(&value)
            .headers(kafka_headers);
        self.producer
            .send(record, self.timeout)
            .await
            .map(|_| ())
            .map_err(|(e, _)| {
                ProducerError::Unavailable(format!("producing to {}: {e}", self.topic))
            })
    }
}

/// Emits events to a management server's HTTP ingress in structured mode.
pub struct HttpProducer {
    url: String,
    http: reqwest::Client,
}

impl HttpProducer {
    /// A producer posting to `base` (e.g. `http://127.0.0.1:8080`) + `/events`.
    pub fn new(base: &str) -> Self {
        HttpProducer {
            url: format!("{}/events", base.trim_end_matches('/')),
            http: reqwest::Client::new(),
        }
    }

    /// Emits one event; returns once the server accepted it (202).
    pub async fn emit(&self, event: &Event) -> Result<(), ProducerError> {
        let body = serde_json::to_vec(event)
            .map_err(|e| ProducerError::Invalid(format!("encoding the event: {e}")))?;
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/cloudevents+json")
            .body(body)
            .send()
            .await
            .map_err(|e| ProducerError::Unavailable(format!("posting to {}: {e}", self.url)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = response.text().await.unwrap_or_default();
        Err(ProducerError::Refused {
            status: status.as_u16(),
            message,
        })
    }
}

/// The partitioning key: the `partitionkey` extension, else `source` + `id`.
pub fn partition_key(event: &Event) -> String {
    match event.extension("partitionkey") {
        Some(value) => extension_text(value),
        None => format!("{} {}", event.source(), event.id()),
    }
}

fn extension_text(value: &ExtensionValue) -> String {
    match value {
        ExtensionValue::String(s) => s.clone(),
        ExtensionValue::Boolean(b) => b.to_string(),
        ExtensionValue::Integer(i) => i.to_string(),
    }
}

/// The binary-mode headers (`prefix` + attribute name, plus `content-type`) and body.
pub fn binary_mode(event: &Event, prefix: &str) -> (Vec<(String, String)>, Vec<u8>) {
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
    let body = match event.data() {
        Some(Data::Binary(b)) => b.clone(),
        Some(Data::String(s)) => s.as_bytes().to_vec(),
        Some(Data::Json(v)) => serde_json::to_vec(v).unwrap_or_default(),
        None => Vec::new(),
    };
    let content_type = event.datacontenttype().map(str::to_string).or_else(|| {
        matches!(event.data(), Some(Data::Json(_))).then(|| "application/json".to_string())
    });
    if let Some(ct) = content_type {
        headers.push(("content-type".into(), ct));
    }
    (headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn binary_mode_carries_every_attribute_and_the_key_prefers_partitionkey() {
        let event = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .subject("sub")
            .extension("partitionkey", "customer-7")
            .data("application/json", serde_json::json!({"a": 1}))
            .build()
            .unwrap();
        let (headers, body) = binary_mode(&event, "ce_");
        let get = |k: &str| {
            headers
                .iter()
                .find(|(h, _)| h == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("ce_id"), Some("1"));
        assert_eq!(get("ce_subject"), Some("sub"));
        assert_eq!(get("ce_partitionkey"), Some("customer-7"));
        assert_eq!(get("content-type"), Some("application/json"));
        assert_eq!(body, br#"{"a":1}"#);
        assert_eq!(partition_key(&event), "customer-7");
    }
}
