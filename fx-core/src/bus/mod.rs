//! The event bus port: topics of messages, consumed by groups with explicit commits.
//!
//! Delivery is at-least-once: a consumer commits a delivery only after everything it owes for
//! it has been published onward; an uncommitted delivery may be seen again after a restart.

use async_trait::async_trait;
use futures::FutureExt;

use crate::error::Result;
use crate::event::Message;

pub mod embedded;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

/// Topic names.
pub mod topics {
    /// Inbound events and events functions emit.
    pub const EVENTS: &str = "fx.events";
    /// State events from executors: started, log, metric, succeeded, failed.
    pub const STATE: &str = "fx.state";
    /// Events that failed validation or exhausted their retries, with the reason in a header.
    pub const DEADLETTER: &str = "fx.deadletter";
    /// The header of a dead-lettered message that says why it is there.
    pub const REASON_HEADER: &str = "fx-deadletter-reason";
    /// The header of a dead-lettered message that names the topic it was taken from.
    pub const ORIGINAL_TOPIC_HEADER: &str = "fx-original-topic";
    /// The header of a dead-lettered execution that names it.
    pub const EXECUTION_ID_HEADER: &str = "fx-execution-id";
    /// The header of a dead-lettered execution that counts its attempts.
    pub const ATTEMPTS_HEADER: &str = "fx-attempts";

    /// The header of an event on [`EVENTS`] that gives the handler registry's revision the
    /// ingress saw when it accepted the event: the gateway matches the event against a table at
    /// least that new, so an event sent after its handler was created finds it.
    pub const REGISTRY_REVISION_HEADER: &str = "fx-registry-revision";

    /// The header of a message on [`STATE`] that names the state event's kind (`started`,
    /// `log`, `succeeded`, `failed`), so that a consumer of one kind skips the others
    /// undecoded.
    pub const STATE_KIND_HEADER: &str = "fx-state-kind";

    /// The longest dead-letter reason kept in [`REASON_HEADER`], in bytes.
    pub const REASON_MAX_BYTES: usize = 4096;

    /// `reason` cut to [`REASON_MAX_BYTES`] (on a character boundary), for [`REASON_HEADER`].
    pub fn reason(reason: impl Into<String>) -> String {
        let mut reason = reason.into();
        if reason.len() > REASON_MAX_BYTES {
            let mut end = REASON_MAX_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        reason
    }

    /// The invocations topic of an executor pool.
    pub fn invocations(pool: &str) -> String {
        format!("fx.invocations.{pool}")
    }
}

/// Room kept in a bus message for what travels with an event inside an invocation (the
/// handler with its configuration, grants, limits) or a state event.
pub const INVOCATION_ENVELOPE_BYTES: usize = 256 * 1024;

/// The largest event (its encoded size), or function output, that surely fits an invocation
/// or a state event on a bus whose messages hold at most `max_message_bytes`: the envelope
/// comes off, and binary data travels as base64 (4 bytes for 3).
pub fn max_payload_bytes(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_sub(INVOCATION_ENVELOPE_BYTES) / 4 * 3
}

/// A message handed to a consumer, with what it needs to commit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Its topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset within the partition.
    pub offset: i64,
}

impl Delivery {
    /// Where it is on the bus: what committing it names.
    pub fn position(&self) -> Position {
        Position {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// Where a message is on the bus: its topic, partition and offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The topic (as the bus names it, without a deployment's prefix).
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
}

/// The event bus.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `message` to `topic`; returns once the bus holds it durably (as durably as
    /// the backend can). Waits while the topic is full.
    async fn publish(&self, topic: &str, message: Message) -> Result<()>;

    /// Publishes `messages` (topic, message) in this order and returns once all are durable.
    /// Messages of one topic and key keep their order. A backend with a round trip per
    /// publish sends them all before waiting for any acknowledgement, so a batch costs about
    /// one round trip. On error, some of them may have been published (at-least-once).
    async fn publish_all(&self, messages: Vec<(String, Message)>) -> Result<()> {
        for (topic, message) in messages {
            self.publish(&topic, message).await?;
        }
        Ok(())
    }

    /// Joins consumer group `group` on `topic`. Every group sees every message; consumers of
    /// the same group share them.
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>>;

    /// The largest message the bus takes, in bytes (key, headers and payload, with some room
    /// for framing); a larger one is refused with `Invalid`. Producers size what they publish
    /// by it: an output or event that cannot fit is refused up front with a clear reason.
    fn max_message_bytes(&self) -> usize {
        usize::MAX
    }

    /// Answers when the bus can be reached (for readiness): a cheap call with no side effect.
    async fn ready(&self) -> Result<()> {
        Ok(())
    }

    /// Creates `topics` where the backend needs them created ahead of use (`ferrisfx setup`);
    /// a topic that exists already is fine.
    async fn ensure_topics(&self, topics: &[String]) -> Result<()> {
        let _ = topics;
        Ok(())
    }

    /// Whether other processes share this bus: `false` for one that only carries the
    /// messages of its own process (the embedded bus), where a gateway, an executor and a
    /// server in separate processes would never hear of each other.
    fn shared(&self) -> bool {
        true
    }
}

/// One consumer of a topic.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery; `None` once the bus has shut down.
    async fn next(&mut self) -> Result<Option<Delivery>>;

    /// Waits for the next delivery, then takes up to `max` in all of those already waiting,
    /// without waiting for more. Empty once the bus has shut down. An error after the first
    /// delivery ends the batch early (it shows again on the next call).
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Delivery>> {
        let Some(first) = self.next().await? else {
            return Ok(Vec::new());
        };
        let mut batch = vec![first];
        while batch.len() < max {
            // `next` of every backend is cancel-safe: a pending call that is dropped takes
            // nothing.
            match self.next().now_or_never() {
                Some(Ok(Some(delivery))) => batch.push(delivery),
                _ => break,
            }
        }
        Ok(batch)
    }

    /// Marks the message at `position` (and everything before it on its partition) as done.
    async fn commit(&mut self, position: &Position) -> Result<()>;

    /// Marks the messages at `positions` done, as [`Subscription::commit`] would one by one,
    /// in as few requests as the bus allows (Kafka: one commit for the batch, whatever its
    /// size, instead of one per message).
    async fn commit_all(&mut self, positions: &[Position]) -> Result<()> {
        for position in positions {
            self.commit(position).await?;
        }
        Ok(())
    }

    /// Keeps this consumer a member of its group while the caller takes no deliveries (every
    /// slot busy), for as long as the returned future is polled: a Kafka consumer pauses its
    /// partitions and goes on polling, so the broker's poll deadline
    /// (`max.poll.interval.ms`) never makes the group move its partitions. The next
    /// [`Subscription::next`] takes up again. Ends only with an error. By default (a bus
    /// without such a deadline) it waits forever.
    async fn hold(&mut self) -> Result<()> {
        futures::future::pending::<()>().await;
        Ok(())
    }
}
