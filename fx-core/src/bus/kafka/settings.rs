//! The settings of the Kafka event bus and the librdkafka configurations built from them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Kafka event bus: topics are Kafka topics, consumer groups are Kafka consumer groups.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap brokers as `host:port`, separated by commas (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// The client id the brokers see (in their logs, metrics and quotas).
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Partitions of each topic the bus creates (topics that already exist are left as they are).
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of each topic the bus creates.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Prefixed to every topic name and consumer group id, so that several deployments can
    /// share one cluster. Empty by default: topics are exactly `fx.events`, `fx.state`,
    /// `fx.deadletter` and `fx.invocations.<pool>`.
    #[serde(default)]
    pub topic_prefix: String,
    /// How long a consumer may go without heartbeats before the group hands its partitions to
    /// the other members (librdkafka's `session.timeout.ms`).
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u32,
    /// How long a consumer may go between polls before librdkafka makes it leave its group
    /// (`max.poll.interval.ms`; at least `session_timeout_ms`). A consumer whose caller takes
    /// no deliveries for a while (an executor with every slot busy with long invocations)
    /// keeps polling with its partitions paused ([`crate::bus::Subscription::hold`]), so a
    /// long invocation never makes its partition move and run again elsewhere.
    #[serde(default = "default_max_poll_interval_ms")]
    pub max_poll_interval_ms: u32,
    /// How long connecting, creating a topic and subscribing wait for the brokers before they
    /// fail as unavailable.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u32,
    /// How long a publish waits for the brokers to acknowledge a message before it fails as
    /// unavailable (librdkafka's `message.timeout.ms`).
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u32,
    /// The largest message the bus publishes, in bytes (librdkafka's `message.max.bytes`;
    /// Kafka's default is 1,000,000). Set it to the brokers' `message.max.bytes` (or the
    /// topics' `max.message.bytes`) when those are raised. The platform sizes what it
    /// publishes by it: a function output that cannot fit fails as `output_limit`, a handler
    /// whose `max_output_bytes` cannot fit is refused, and the HTTP ingress refuses events
    /// too large to travel inside an invocation.
    #[serde(default = "default_message_max_bytes")]
    pub message_max_bytes: u32,
    /// How the clients reach the brokers: `plaintext` (the default), `ssl` (TLS),
    /// `sasl_plaintext` or `sasl_ssl` (SASL authentication, over TLS for the latter).
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// The SASL mechanism, with a `sasl_*` protocol: `plain`, `scram-sha-256` or
    /// `scram-sha-512`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// The SASL user name, with a `sasl_*` protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_username: Option<String>,
    /// The SASL password, with a `sasl_*` protocol (or `FX_BACKENDS__BUS__SASL_PASSWORD`):
    /// never logged, redacted in `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("writeOnly" = true))]
    pub sasl_password: Option<String>,
    /// A PEM file of the CA that signed the brokers' certificates, with `ssl` or `sasl_ssl`
    /// (librdkafka's `ssl.ca.location`); unset: the system's CA store. Brokers' host names are
    /// verified against their certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Further librdkafka properties (e.g. `ssl.certificate.location` and
    /// `ssl.key.location` for client certificates), given to the producer, the consumers and
    /// the admin client alike. Properties the settings above or the bus's guarantees decide
    /// are refused. Values whose key contains `password` or `secret` are redacted in logs.
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
}

/// How Kafka clients reach the brokers (librdkafka's `security.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no authentication.
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL authentication without TLS.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// A SASL mechanism (librdkafka's `sasl.mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SaslMechanism {
    /// User name and password in the clear (use it over `sasl_ssl`).
    #[serde(rename = "plain")]
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// SCRAM with SHA-512.
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

fn default_client_id() -> String {
    "ferrisfx".into()
}

fn default_partitions() -> i32 {
    3
}

fn default_replication_factor() -> i32 {
    1
}

fn default_session_timeout_ms() -> u32 {
    10_000
}

fn default_max_poll_interval_ms() -> u32 {
    300_000
}

fn default_connect_timeout_ms() -> u32 {
    10_000
}

fn default_delivery_timeout_ms() -> u32 {
    30_000
}

fn default_message_max_bytes() -> u32 {
    1_000_000
}

/// librdkafka properties that dedicated settings or the bus's guarantees decide: `extra` may
/// not set them.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "group.id",
    "session.timeout.ms",
    "max.poll.interval.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "message.max.bytes",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
];

/// Whether a librdkafka property holds a secret.
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password") || key.contains("secret")
}

impl KafkaSettings {
    /// Settings for `brokers` with every other field at its default.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            client_id: default_client_id(),
            partitions: default_partitions(),
            replication_factor: default_replication_factor(),
            topic_prefix: String::new(),
            session_timeout_ms: default_session_timeout_ms(),
            max_poll_interval_ms: default_max_poll_interval_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            message_max_bytes: default_message_max_bytes(),
            security_protocol: SecurityProtocol::default(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ca_file: None,
            extra: BTreeMap::new(),
        }
    }

    /// Checks the settings before any client is built.
    pub fn validate(&self) -> Result<()> {
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err(Error::invalid("kafka settings: brokers must not be empty"));
        }
        if self.partitions < 1 {
            return Err(Error::invalid(format!(
                "kafka settings: partitions must be at least 1, not {}",
                self.partitions
            )));
        }
        if self.replication_factor < 1 {
            return Err(Error::invalid(format!(
                "kafka settings: replication_factor must be at least 1, not {}",
                self.replication_factor
            )));
        }
        if !(64 * 1024..=1_000_000_000).contains(&self.message_max_bytes) {
            return Err(Error::invalid(format!(
                "kafka settings: message_max_bytes must be between 65536 and 1000000000, not {}",
                self.message_max_bytes
            )));
        }
        if self.max_poll_interval_ms < self.session_timeout_ms {
            return Err(Error::invalid(format!(
                "kafka settings: max_poll_interval_ms ({}) must be at least session_timeout_ms ({})",
                self.max_poll_interval_ms, self.session_timeout_ms
            )));
        }
        if self.connect_timeout_ms == 0 || self.delivery_timeout_ms == 0 {
            return Err(Error::invalid(
                "kafka settings: connect_timeout_ms and delivery_timeout_ms must be positive",
            ));
        }
        if !self.topic_prefix.chars().all(valid_name_char) {
            return Err(Error::invalid(format!(
                "kafka settings: topic_prefix {:?} may hold only letters, digits, '.', '_' and '-'",
                self.topic_prefix
            )));
        }
        if let Some(key) = self
            .extra
            .keys()
            .find(|k| RESERVED.contains(&k.trim().to_ascii_lowercase().as_str()))
        {
            return Err(Error::invalid(format!(
                "kafka settings: extra property {key:?} is decided by the bus or by a dedicated setting (security_protocol, sasl_mechanism, sasl_username, sasl_password, ca_file)"
            )));
        }
        self.validate_security()
    }

    /// Checks that the SASL settings come with a SASL protocol, complete, and the CA file with
    /// a TLS one, readable.
    fn validate_security(&self) -> Result<()> {
        let protocol = self.security_protocol;
        let sasl_given = self.sasl_mechanism.is_some()
            || self.sasl_username.is_some()
            || self.sasl_password.is_some();
        if protocol.sasl() {
            if self.sasl_mechanism.is_none()
                || self.sasl_username.as_deref().unwrap_or_default().is_empty()
                || self.sasl_password.as_deref().unwrap_or_default().is_empty()
            {
                return Err(Error::invalid(format!(
                    "kafka settings: security_protocol = \"{}\" needs sasl_mechanism, sasl_username and sasl_password",
                    protocol.name()
                )));
            }
        } else if sasl_given {
            return Err(Error::invalid(format!(
                "kafka settings: sasl_* settings need security_protocol = \"sasl_ssl\" (or \"sasl_plaintext\"), not \"{}\"",
                protocol.name()
            )));
        }
        if let Some(ca) = &self.ca_file {
            if !protocol.tls() {
                return Err(Error::invalid(format!(
                    "kafka settings: ca_file needs security_protocol = \"ssl\" or \"sasl_ssl\", not \"{}\"",
                    protocol.name()
                )));
            }
            std::fs::File::open(ca).map_err(|e| {
                Error::invalid(format!(
                    "kafka settings: cannot read ca_file {}: {e}",
                    ca.display()
                ))
            })?;
        }
        Ok(())
    }

    /// How long connecting, topic creation and subscribing wait for the brokers.
    pub(super) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.connect_timeout_ms))
    }

    /// How long a publish waits for its acknowledgement.
    pub(super) fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.delivery_timeout_ms))
    }

    /// The configuration every client shares: brokers, client id and `extra`.
    fn common(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set_log_level(log_level())
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // librdkafka's floor for this property is one second.
            .set(
                "socket.connection.setup.timeout.ms",
                self.connect_timeout_ms.max(1_000).to_string(),
            );
        config.set("security.protocol", self.security_protocol.name());
        if let Some(mechanism) = self.sasl_mechanism {
            config.set("sasl.mechanism", mechanism.name());
        }
        if let Some(username) = &self.sasl_username {
            config.set("sasl.username", username);
        }
        if let Some(password) = &self.sasl_password {
            config.set("sasl.password", password);
        }
        if let Some(ca) = &self.ca_file {
            config.set("ssl.ca.location", ca.display().to_string());
        }
        for (key, value) in &self.extra {
            config.set(key, value);
        }
        config
    }

    /// The producer's configuration: acknowledged by every in-sync replica, idempotent.
    pub(super) fn producer_config(&self) -> ClientConfig {
        let mut config = self.common();
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", self.delivery_timeout_ms.to_string())
            .set("message.max.bytes", self.message_max_bytes.to_string());
        config
    }

    /// The admin client's configuration.
    pub(super) fn admin_config(&self) -> ClientConfig {
        self.common()
    }

    /// A consumer's configuration for Kafka group `group_id`: offsets are committed by the bus
    /// only, and a new group starts at the beginning of the topic.
    pub(super) fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut config = self.common();
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval_ms.to_string(),
            );
        config
    }

    /// How long a held consumer (see [`crate::bus::Subscription::hold`]) waits before pausing
    /// its partitions: well inside the poll interval, and long enough that an executor whose
    /// slots free up every moment does not pause and resume (dropping its prefetched messages)
    /// each time.
    pub(super) fn hold_grace(&self) -> Duration {
        Duration::from_millis(u64::from(self.max_poll_interval_ms / 4).min(5_000))
    }

    /// The Kafka name of bus topic `topic`.
    pub(super) fn kafka_topic(&self, topic: &str) -> Result<String> {
        check_name("topic", topic)?;
        let name = format!("{}{topic}", self.topic_prefix);
        if name.len() > 249 {
            return Err(Error::invalid(format!(
                "topic name {name:?} is longer than kafka's 249 characters"
            )));
        }
        if name == "." || name == ".." {
            return Err(Error::invalid(format!(
                "topic name {name:?} is not allowed"
            )));
        }
        Ok(name)
    }

    /// The Kafka group id of bus consumer group `group`.
    pub(super) fn kafka_group(&self, group: &str) -> Result<String> {
        if group.is_empty() {
            return Err(Error::invalid("consumer group name must not be empty"));
        }
        Ok(format!("{}{group}", self.topic_prefix))
    }
}

/// The most detailed librdkafka log level that `tracing` would record here: librdkafka drops
/// finer lines before they reach us.
fn log_level() -> RDKafkaLogLevel {
    if tracing::enabled!(tracing::Level::DEBUG) {
        RDKafkaLogLevel::Debug
    } else if tracing::enabled!(tracing::Level::INFO) {
        RDKafkaLogLevel::Info
    } else if tracing::enabled!(tracing::Level::WARN) {
        RDKafkaLogLevel::Warning
    } else {
        RDKafkaLogLevel::Error
    }
}

fn valid_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{what} name must not be empty")));
    }
    if !name.chars().all(valid_name_char) {
        return Err(Error::invalid(format!(
            "{what} name {name:?} may hold only letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: BTreeMap<&str, &str> = self
            .extra
            .iter()
            .map(|(k, v)| {
                let value = if is_secret(k) { "<redacted>" } else { v };
                (k.as_str(), value)
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("topic_prefix", &self.topic_prefix)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("max_poll_interval_ms", &self.max_poll_interval_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("delivery_timeout_ms", &self.delivery_timeout_ms)
            .field("message_max_bytes", &self.message_max_bytes)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field(
                "sasl_password",
                &self.sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_file", &self.ca_file)
            .field("extra", &extra)
            .finish()
    }
}
