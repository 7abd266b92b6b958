//! The Kafka event bus (feature `kafka`), on librdkafka through `rdkafka`.
//!
//! Bus topics are Kafka topics (named `topic_prefix` + name), created with the configured
//! partitions the first time the bus publishes to or subscribes to them. Messages carry their
//! key and headers as they are; CloudEvents arrive already encoded in binary mode (`ce_`
//! headers) by [`crate::event::encode_message`], and structured mode passes through untouched.
//!
//! - Publishing waits for the delivery report of an idempotent producer with `acks=all`, so it
//!   returns only once the message is durable. `publish_all` enqueues a whole batch before
//!   waiting, so a batch costs about one round trip (plus `linger.ms`) instead of one each.
//! - A subscription is one consumer of a Kafka consumer group with auto-commit off. Its
//!   deliveries complete out of order, so it commits a partition only up to its lowest
//!   delivery still outstanding ([`subscription`]). Dropping it leaves the group.
//! - Brokers that cannot be reached make connecting, topic creation and subscribing fail as
//!   unavailable after `connect_timeout_ms`, and publishing after `delivery_timeout_ms`.

mod settings;
mod subscription;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

pub use self::settings::{KafkaSettings, SaslMechanism, SecurityProtocol};
use self::subscription::{KafkaSubscription, SubscriptionContext};
use super::{EventBus, Subscription};
use crate::error::{Error, ErrorKind, Result};
use crate::event::Message;

/// The Kafka event bus; clones share one producer and one admin client.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

struct Inner {
    /// The validated settings.
    settings: KafkaSettings,
    /// The one producer of the process; replaced by a new one when librdkafka reports a fatal
    /// error (e.g. `ProducerFenced` after the cluster lost the idempotent producer's state),
    /// after which the old one can never deliver again.
    producer: std::sync::RwLock<FutureProducer<LogContext>>,
    /// Creates missing topics.
    admin: AdminClient<LogContext>,
    /// Kafka topics known to exist, so that each is looked up or created once.
    topics: Mutex<HashSet<String>>,
}

impl fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBus")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Validates `settings`, builds the clients and checks that the brokers answer: fails as
    /// unavailable when they do not within `connect_timeout_ms`, as invalid when the settings
    /// are wrong.
    pub async fn connect(settings: KafkaSettings) -> Result<Self> {
        let bus = Self::build(settings)?;
        let existing = bus.fetch_topics().await?;
        tracing::info!(
            brokers = %bus.inner.settings.brokers,
            topics = existing.len(),
            "connected to kafka"
        );
        bus.known_topics().extend(existing);
        Ok(bus)
    }

    /// Validates `settings` and builds the clients, without contacting the brokers.
    fn build(settings: KafkaSettings) -> Result<Self> {
        settings.validate()?;
        let producer = new_producer(&settings)?;
        let admin = AdminClient::from_config_and_context(&settings.admin_config(), LogContext)
            .map_err(|e| {
                Error::invalid(format!(
                    "creating the kafka admin client for brokers {}",
                    settings.brokers
                ))
                .with_source(e)
            })?;
        Ok(KafkaBus {
            inner: Arc::new(Inner {
                settings,
                producer: std::sync::RwLock::new(producer),
                admin,
                topics: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The current producer (a cheap clone of a shared handle).
    fn producer(&self) -> FutureProducer<LogContext> {
        self.inner
            .producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces `failed` with a new producer when it may not deliver again: librdkafka
    /// declared it dead (a fatal error), the cluster refused its producer id, or a message timed
    /// out (`stuck`: after a broker came back without the idempotent producer's state, the old
    /// producer can keep timing out without ever reporting why; a new one costs little).
    /// Another caller may have replaced it already.
    fn replace_if_dead(
        &self,
        failed: &FutureProducer<LogContext>,
        stuck: Option<RDKafkaErrorCode>,
    ) {
        let Some((code, reason)) = failed.client().fatal_error().or_else(|| {
            stuck.and_then(|code| producer_stuck(code).map(|why| (code, why.to_string())))
        }) else {
            return;
        };
        let mut current = self
            .inner
            .producer
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if current.client().native_ptr() != failed.client().native_ptr() {
            return;
        }
        match new_producer(&self.inner.settings) {
            Ok(fresh) => {
                tracing::warn!(
                    brokers = %self.inner.settings.brokers,
                    error = %code,
                    reason,
                    "the kafka producer may not deliver again; replaced it with a new one"
                );
                let old = std::mem::replace(&mut *current, fresh);
                drop(current);
                // Destroying a producer waits for its outstanding requests: not on this thread.
                std::thread::spawn(move || drop(old));
            }
            Err(e) => {
                tracing::error!(error = %e.chain(), "replacing the failed kafka producer failed; will try again on the next publish");
            }
        }
    }

    /// Enqueues every message on `producer`, then awaits every delivery report; the first
    /// error is returned, and `stuck` is set to a delivery error that calls for a new producer.
    async fn send_all(
        &self,
        producer: &FutureProducer<LogContext>,
        names: &[String],
        messages: &[(String, Message)],
        stuck: &mut Option<RDKafkaErrorCode>,
    ) -> Result<()> {
        let mut pending = Vec::with_capacity(messages.len());
        let enqueue_by = std::time::Instant::now() + self.inner.settings.delivery_timeout();
        for (name, (_, message)) in names.iter().zip(messages) {
            let mut record = record(name, message);
            let report = loop {
                match producer.send_result(record) {
                    Ok(report) => break report,
                    // The producer's local queue is full: let deliveries drain, then retry.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if std::time::Instant::now() < enqueue_by =>
                    {
                        record = back;
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(self.error(format!("publishing to topic {name}"), e)),
                }
            };
            pending.push((name, report));
        }
        let mut first_error = None;
        for (name, report) in pending {
            let error = match report.await {
                Ok(Ok(delivery)) => {
                    tracing::trace!(
                        topic = name,
                        partition = delivery.partition,
                        offset = delivery.offset,
                        "published"
                    );
                    continue;
                }
                Ok(Err((e, _))) => {
                    if let Some(code) = e
                        .rdkafka_error_code()
                        .filter(|c| producer_stuck(*c).is_some())
                    {
                        *stuck = Some(code);
                    }
                    self.error(format!("publishing to topic {name}"), e)
                }
                Err(_) => Error::unavailable(format!(
                    "publishing to topic {name}: the producer was closed before it reported delivery"
                )),
            };
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The settings the bus was built from.
    pub fn settings(&self) -> &KafkaSettings {
        &self.inner.settings
    }

    /// The names of the topics the cluster holds; fails as unavailable when the brokers do not
    /// answer within `connect_timeout_ms`.
    async fn fetch_topics(&self) -> Result<Vec<String>> {
        let producer = self.producer();
        let timeout = self.inner.settings.connect_timeout();
        let metadata =
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout))
                .await
                .map_err(|e| {
                    Error::internal("fetching kafka metadata: the task failed").with_source(e)
                })?
                .map_err(|e| {
                    Error::unavailable(format!(
                        "connecting to kafka brokers {} (waited at most {} ms)",
                        self.inner.settings.brokers, self.inner.settings.connect_timeout_ms
                    ))
                    .with_source(e)
                })?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| t.name().to_string())
            .collect())
    }

    fn known_topics(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates Kafka topic `name` unless it is known to exist; another client creating it at
    /// the same time is fine.
    async fn ensure_topic(&self, name: &str) -> Result<()> {
        if self.known_topics().contains(name) {
            return Ok(());
        }
        let settings = &self.inner.settings;
        let timeout = settings.connect_timeout();
        let topic = NewTopic::new(
            name,
            settings.partitions,
            TopicReplication::Fixed(settings.replication_factor),
        );
        let options = AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout));
        let created =
            tokio::time::timeout(timeout, self.inner.admin.create_topics([&topic], &options))
                .await
                .map_err(|_| {
                    Error::unavailable(format!(
                        "creating topic {name}: kafka brokers {} did not answer within {} ms",
                        settings.brokers, settings.connect_timeout_ms
                    ))
                })?
                .map_err(|e| self.error(format!("creating topic {name}"), e))?;
        for result in created {
            match result {
                Ok(_) => {
                    tracing::info!(
                        topic = name,
                        partitions = settings.partitions,
                        replication_factor = settings.replication_factor,
                        "kafka topic created"
                    );
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(topic = name, "kafka topic already exists");
                }
                Err((_, code)) => {
                    return Err(
                        self.error(format!("creating topic {name}"), KafkaError::AdminOp(code))
                    );
                }
            }
        }
        self.known_topics().insert(name.to_string());
        Ok(())
    }

    /// A core error for a failed Kafka operation: invalid when the request itself is at fault
    /// (too large, a bad topic), else unavailable; the message names the brokers.
    fn error(&self, what: String, e: KafkaError) -> Error {
        let kind = match e.rdkafka_error_code() {
            Some(code) if is_invalid_request(code) => ErrorKind::Invalid,
            _ => ErrorKind::Unavailable,
        };
        Error::new(
            kind,
            format!("{what} on kafka brokers {}", self.inner.settings.brokers),
        )
        .with_source(e)
    }
}

/// The process's producer for `settings`.
fn new_producer(settings: &KafkaSettings) -> Result<FutureProducer<LogContext>> {
    FutureProducer::from_config_and_context(&settings.producer_config(), LogContext).map_err(|e| {
        Error::invalid(format!(
            "creating the kafka producer for brokers {}",
            settings.brokers
        ))
        .with_source(e)
    })
}

/// Why a delivery error of `code` calls for a new producer, if it does: the cluster no longer
/// accepts the idempotent producer's id and sequence, or a message timed out (which the old
/// producer may keep doing after the cluster lost its state).
fn producer_stuck(code: RDKafkaErrorCode) -> Option<&'static str> {
    use RDKafkaErrorCode as C;
    match code {
        C::ProducerFenced
        | C::UnknownProducerId
        | C::InvalidProducerEpoch
        | C::OutOfOrderSequenceNumber
        | C::InvalidProducerIdMapping => Some("the cluster refused the producer's id"),
        C::MessageTimedOut => Some("a message timed out undelivered"),
        _ => None,
    }
}

/// Whether a Kafka error code means the request itself is wrong, so retrying cannot help.
fn is_invalid_request(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::InvalidMessage
            | C::InvalidMessageSize
            | C::MessageSizeTooLarge
            | C::MessageBatchTooLarge
            | C::InvalidRecord
            | C::InvalidTopic
            | C::InvalidPartitions
            | C::InvalidReplicationFactor
            | C::InvalidReplicaAssignment
            | C::InvalidConfig
            | C::InvalidGroupId
            | C::InvalidSessionTimeout
            | C::InvalidArgument
    )
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        self.publish_all(vec![(topic.to_string(), message)]).await
    }

    fn max_message_bytes(&self) -> usize {
        usize::try_from(self.inner.settings.message_max_bytes).unwrap_or(usize::MAX)
    }

    /// One bootstrap broker accepts a TCP connection (Kafka has no side-effect-free call that
    /// is cheaper; librdkafka's metadata request would wait out its own retries).
    async fn ready(&self) -> Result<()> {
        let brokers = &self.inner.settings.brokers;
        for broker in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            if tokio::net::TcpStream::connect(broker).await.is_ok() {
                return Ok(());
            }
        }
        Err(Error::unavailable(format!(
            "no kafka broker of {brokers} accepts connections"
        )))
    }

    async fn ensure_topics(&self, topics: &[String]) -> Result<()> {
        for topic in topics {
            let name = self.inner.settings.kafka_topic(topic)?;
            self.ensure_topic(&name).await?;
        }
        Ok(())
    }

    /// Hands every message to the producer first (librdkafka batches them per partition and
    /// keeps their order), then waits for all the delivery reports.
    async fn publish_all(&self, messages: Vec<(String, Message)>) -> Result<()> {
        let mut names = Vec::with_capacity(messages.len());
        for (topic, _) in &messages {
            let name = self.inner.settings.kafka_topic(topic)?;
            self.ensure_topic(&name).await?;
            names.push(name);
        }
        let producer = self.producer();
        let mut stuck = None;
        let result = self
            .send_all(&producer, &names, &messages, &mut stuck)
            .await;
        if result.is_err() {
            self.replace_if_dead(&producer, stuck);
        }
        result
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>> {
        let settings = &self.inner.settings;
        let name = settings.kafka_topic(topic)?;
        let group_id = settings.kafka_group(group)?;
        self.ensure_topic(&name).await?;
        let context = SubscriptionContext::new(&name);
        let consumer: StreamConsumer<SubscriptionContext> =
            StreamConsumer::from_config_and_context(&settings.consumer_config(&group_id), context)
                .map_err(|e| {
                    Error::invalid(format!(
                        "creating a kafka consumer of group {group_id} for brokers {}",
                        settings.brokers
                    ))
                    .with_source(e)
                })?;
        consumer
            .subscribe(&[name.as_str()])
            .map_err(|e| self.error(format!("subscribing group {group_id} to topic {name}"), e))?;
        tracing::info!(topic = name, group = group_id, "kafka consumer subscribed");
        Ok(Box::new(KafkaSubscription::new(
            topic,
            name,
            consumer,
            settings.hold_grace(),
        )))
    }
}

/// The Kafka record of `message` for topic `name`: its key, headers and payload as they are.
fn record<'a>(name: &'a str, message: &'a Message) -> FutureRecord<'a, str, [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
    for (key, value) in &message.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    let mut record = FutureRecord::<str, [u8]>::to(name)
        .payload(&message.payload)
        .headers(headers);
    if let Some(key) = &message.key {
        record = record.key(key.as_str());
    }
    record
}

/// Forwards librdkafka's log lines and client errors to `tracing`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        log_line(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

/// Logs one librdkafka log line at the matching level.
fn log_line(level: RDKafkaLogLevel, facility: &str, line: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {line}"),
        RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {line}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(facility, "librdkafka: {line}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {line}"),
    }
}

/// Logs an error librdkafka reports on a client; it keeps retrying on its own.
fn client_error(error: &KafkaError, reason: &str) {
    tracing::warn!(error = %error, reason, "kafka client error; librdkafka retries");
}
