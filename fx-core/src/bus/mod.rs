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

    /// The invocations topic of an executor pool.
    pub fn invocations(pool: &str) -> String {
        format!("fx.invocations.{pool}")
    }
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

    /// Marks `delivery` (and everything before it on its partition) as done.
    async fn commit(&mut self, delivery: &Delivery) -> Result<()>;
}
