//! One Kafka consumer of a topic, committing with out-of-order completion.
//!
//! The executor finishes deliveries out of order, but a Kafka commit covers everything before
//! its offset. So each partition keeps the offsets `next` handed out and not yet committed; a
//! commit marks one done, and the partition is committed up to its lowest offset still
//! outstanding (the highest contiguous completed offset + 1). When a rebalance takes a
//! partition away, its tracking is dropped: what was not committed goes to the new owner.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use super::{client_error, log_line};
use crate::bus::{Delivery, Position, Subscription};
use crate::error::{Error, Result};
use crate::event::Message;

/// Offsets of one partition handed out by `next` and not yet committed.
#[derive(Debug, Default)]
pub(super) struct PartitionOffsets {
    /// Offset → whether its delivery was committed by the consumer.
    pending: BTreeMap<i64, bool>,
}

impl PartitionOffsets {
    /// Records that `offset` was handed out.
    pub(super) fn handed_out(&mut self, offset: i64) {
        self.pending.entry(offset).or_insert(false);
    }

    /// Marks `offset` done; returns the offset to commit when the committable position moved
    /// (one past the highest offset with every earlier handed-out offset done). Offsets never
    /// handed out, or already committed, change nothing.
    pub(super) fn complete(&mut self, offset: i64) -> Option<i64> {
        *self.pending.get_mut(&offset)? = true;
        let mut commit = None;
        while let Some(entry) = self.pending.first_entry() {
            if !*entry.get() {
                break;
            }
            commit = Some(entry.key() + 1);
            entry.remove();
        }
        commit
    }

    /// The offsets handed out and not yet committable.
    #[cfg(test)]
    pub(super) fn outstanding(&self) -> usize {
        self.pending.len()
    }
}

/// Tracking of every partition this consumer holds, by partition.
pub(super) type Offsets = Arc<Mutex<HashMap<i32, PartitionOffsets>>>;

fn lock(offsets: &Offsets) -> MutexGuard<'_, HashMap<i32, PartitionOffsets>> {
    offsets.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The consumer's context: logs, rebalances and commit results. Its callbacks run inside
/// `next`, while librdkafka's queue is polled.
pub(super) struct SubscriptionContext {
    /// The Kafka topic consumed.
    topic: String,
    /// Shared with the subscription.
    offsets: Offsets,
    /// Whether the subscription is held (its partitions paused): partitions assigned
    /// meanwhile are paused as they come. Shared with the subscription.
    held: Arc<AtomicBool>,
}

impl SubscriptionContext {
    pub(super) fn new(topic: &str) -> Self {
        SubscriptionContext {
            topic: topic.to_string(),
            offsets: Offsets::default(),
            held: Arc::default(),
        }
    }

    pub(super) fn offsets(&self) -> Offsets {
        Arc::clone(&self.offsets)
    }

    pub(super) fn held(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.held)
    }

    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for SubscriptionContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        log_line(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

impl ConsumerContext for SubscriptionContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = self.partitions(tpl);
                tracing::info!(topic = %self.topic, ?partitions, "kafka partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                let partitions = self.partitions(tpl);
                let mut offsets = lock(&self.offsets);
                let dropped: usize = partitions
                    .iter()
                    .filter_map(|p| offsets.remove(p))
                    .map(|p| p.pending.len())
                    .sum();
                tracing::info!(
                    topic = %self.topic,
                    ?partitions,
                    uncommitted = dropped,
                    "kafka partitions revoked; their uncommitted deliveries go to the new owner"
                );
            }
            Rebalance::Error(e) => {
                tracing::warn!(topic = %self.topic, error = %e, "kafka rebalance failed");
            }
        }
    }

    /// Sets the pause state of newly assigned partitions from `held`, both ways: librdkafka
    /// keeps a partition's pause flag across a revoke and a later assignment of the same
    /// partition, so a partition paused by an earlier hold and resumed while it was not
    /// assigned (a hold released in the middle of a rebalance, e.g. while the broker was
    /// restarting) would otherwise come back paused and never be consumed again.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let (result, what) = if self.held.load(Ordering::SeqCst) {
                (
                    consumer.pause(tpl),
                    "pausing partitions assigned while the consumer is held",
                )
            } else {
                (consumer.resume(tpl), "resuming newly assigned partitions")
            };
            if let Err(e) = result {
                tracing::warn!(topic = %self.topic, error = %e, "{what} failed");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::trace!(topic = %self.topic, ?offsets, "kafka offsets committed"),
            Err(e) => tracing::warn!(
                topic = %self.topic,
                error = %e,
                "committing kafka offsets failed; a later commit or the next owner covers them"
            ),
        }
    }
}

/// One consumer of a Kafka consumer group, subscribed to one topic.
pub(super) struct KafkaSubscription {
    /// The bus topic, as deliveries name it.
    topic: String,
    /// The Kafka topic.
    kafka_topic: String,
    /// The consumer; taken only when the subscription is dropped.
    consumer: Option<rdkafka::consumer::StreamConsumer<SubscriptionContext>>,
    /// Offsets handed out and not yet committed, by partition.
    offsets: Offsets,
    /// Whether the partitions are paused by [`Subscription::hold`].
    held: Arc<AtomicBool>,
    /// How long `hold` waits before it pauses.
    hold_grace: Duration,
    /// Messages a held consumer received anyway (from a partition assigned in the instant
    /// before it was paused): handed out first by `next`.
    stash: VecDeque<Delivery>,
}

impl KafkaSubscription {
    pub(super) fn new(
        topic: &str,
        kafka_topic: String,
        consumer: rdkafka::consumer::StreamConsumer<SubscriptionContext>,
        hold_grace: Duration,
    ) -> Self {
        let (offsets, held) = (consumer.context().offsets(), consumer.context().held());
        KafkaSubscription {
            topic: topic.to_string(),
            kafka_topic,
            consumer: Some(consumer),
            offsets,
            held,
            hold_grace,
            stash: VecDeque::new(),
        }
    }

    /// Pauses or resumes every partition assigned now (and, through the context, those
    /// assigned later while held).
    fn set_held(&self, held: bool) -> Result<()> {
        let consumer = self.consumer.as_ref().ok_or_else(|| self.closed())?;
        self.held.store(held, Ordering::SeqCst);
        let what = if held { "pausing" } else { "resuming" };
        let failed = |e: KafkaError| {
            Error::unavailable(format!(
                "{what} the partitions of topic {}",
                self.kafka_topic
            ))
            .with_source(e)
        };
        let assignment = consumer.assignment().map_err(failed)?;
        if held {
            consumer.pause(&assignment).map_err(failed)?;
        } else {
            consumer.resume(&assignment).map_err(failed)?;
        }
        tracing::debug!(topic = %self.kafka_topic, partitions = assignment.count(), held, "kafka consumer held or resumed");
        Ok(())
    }

    /// The next message as a delivery, recording its offset as handed out; `Ok(None)` for a
    /// poll that brought no message (end of partition, metadata lag).
    async fn receive(&self) -> Result<Option<Delivery>> {
        let consumer = self.consumer.as_ref().ok_or_else(|| self.closed())?;
        match consumer.recv().await {
            Ok(message) => {
                let delivery = delivery(&self.topic, &message);
                lock(&self.offsets)
                    .entry(delivery.partition)
                    .or_default()
                    .handed_out(delivery.offset);
                Ok(Some(delivery))
            }
            Err(KafkaError::PartitionEOF(_)) => Ok(None),
            // Right after a topic is created the consumer's metadata may lag behind.
            Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
            )) => {
                tracing::debug!(topic = %self.kafka_topic, "kafka topic not in the consumer's metadata yet");
                Ok(None)
            }
            // The caller took nothing for longer than `max.poll.interval.ms` without holding:
            // librdkafka left the group, and the next poll joins it again.
            Err(KafkaError::MessageConsumption(RDKafkaErrorCode::PollExceeded)) => {
                tracing::warn!(topic = %self.kafka_topic, "the consumer was not polled within max.poll.interval.ms and left its group; rejoining (uncommitted deliveries may come again)");
                Ok(None)
            }
            Err(e) => Err(
                Error::unavailable(format!("consuming topic {}", self.kafka_topic)).with_source(e),
            ),
        }
    }

    fn closed(&self) -> Error {
        Error::internal(format!(
            "the consumer of topic {} is closed",
            self.kafka_topic
        ))
    }
}

/// A delivery from a Kafka message: headers and key as UTF-8 (lossily where they are not).
fn delivery(topic: &str, message: &BorrowedMessage<'_>) -> Delivery {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                    (h.key.to_string(), value.into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    Delivery {
        message: Message {
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        },
        topic: topic.to_string(),
        partition: message.partition(),
        offset: message.offset(),
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    /// Never ends: a Kafka topic has no end. Cancel-safe: a message is taken from the consumer
    /// only in the poll that returns it.
    async fn next(&mut self) -> Result<Option<Delivery>> {
        if let Some(delivery) = self.stash.pop_front() {
            return Ok(Some(delivery));
        }
        if self.held.load(Ordering::SeqCst) {
            self.set_held(false)?;
        }
        loop {
            if let Some(delivery) = self.receive().await? {
                return Ok(Some(delivery));
            }
        }
    }

    /// Waits [`KafkaSettings::hold_grace`](super::KafkaSettings) (a slot freeing up meanwhile
    /// drops this future, and nothing was paused), then pauses every assigned partition and
    /// goes on polling: the consumer stays in its group however long the caller is busy, and
    /// pausing drops what librdkafka had prefetched, which it fetches again on resume.
    /// Cancel-safe: a message that arrives anyway is kept for `next`.
    async fn hold(&mut self) -> Result<()> {
        if !self.held.load(Ordering::SeqCst) {
            tokio::time::sleep(self.hold_grace).await;
            self.set_held(true)?;
            tracing::info!(topic = %self.kafka_topic, "every slot is busy: partitions paused, the consumer keeps its group membership");
        }
        loop {
            if let Some(delivery) = self.receive().await? {
                self.stash.push_back(delivery);
            }
        }
    }

    async fn commit(&mut self, position: &Position) -> Result<()> {
        self.commit_all(std::slice::from_ref(position)).await
    }

    async fn commit_all(&mut self, positions: &[Position]) -> Result<()> {
        if let Some(other) = positions.iter().find(|p| p.topic != self.topic) {
            return Err(Error::invalid(format!(
                "cannot commit a message of topic {} on a subscription to topic {}",
                other.topic, self.topic
            )));
        }
        // The committable offset of each partition the batch moved.
        let mut commits = std::collections::BTreeMap::new();
        {
            let mut offsets = lock(&self.offsets);
            for position in positions {
                match offsets.get_mut(&position.partition) {
                    Some(partition) => {
                        if let Some(offset) = partition.complete(position.offset) {
                            commits.insert(position.partition, offset);
                        }
                    }
                    None => tracing::debug!(
                        topic = %self.kafka_topic,
                        partition = position.partition,
                        offset = position.offset,
                        "commit of a partition no longer assigned: left to its new owner"
                    ),
                }
            }
        }
        if commits.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer.as_ref().ok_or_else(|| self.closed())?;
        let mut tpl = TopicPartitionList::new();
        for (&partition, &offset) in &commits {
            tpl.add_partition_offset(&self.kafka_topic, partition, Offset::Offset(offset))
                .map_err(|e| {
                    Error::internal(format!("committing topic {}", self.kafka_topic)).with_source(e)
                })?;
        }
        consumer.commit(&tpl, CommitMode::Async).map_err(|e| {
            Error::unavailable(format!(
                "committing topic {} at {commits:?} (partition: offset)",
                self.kafka_topic
            ))
            .with_source(e)
        })
    }
}

impl Drop for KafkaSubscription {
    /// Closing a consumer leaves its group and waits for its commits, which blocks: off the
    /// async workers when there is a runtime.
    fn drop(&mut self) {
        let Some(consumer) = self.consumer.take() else {
            return;
        };
        let topic = self.kafka_topic.clone();
        let close = move || {
            drop(consumer);
            tracing::debug!(topic, "kafka consumer closed");
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(close);
            }
            Err(_) => close(),
        }
    }
}
