//! The embedded event bus: in-process topics for `ferrisfx dev` and tests.
//!
//! Each (topic, group) pair is a bounded MPMC queue: consumers of one group share its
//! messages, and every group receives every message published after it joined. Messages
//! published before any group joined wait in a per-topic backlog, which the first group to
//! subscribe adopts as its queue. Publishers wait while a queue is full. Nothing survives a
//! restart, so commits have nothing to record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_channel::{Receiver, Sender};
use async_trait::async_trait;

use super::{Delivery, EventBus, Position, Subscription};
use crate::error::{Error, Result};
use crate::event::Message;

/// In-process event bus; clones share the same topics.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

struct Inner {
    /// Messages each queue (and each topic's backlog) holds before publishers wait.
    capacity: usize,
    /// Set by [`EmbeddedBus::close`]; consumers then see the end of their stream.
    closed: AtomicBool,
    /// Topics by name, created on first use.
    topics: Mutex<HashMap<String, Arc<Topic>>>,
}

struct Topic {
    /// The topic's name.
    name: String,
    /// Serialises publishers so that every queue receives the topic's messages in offset
    /// order. Subscribers never take it, so a publisher waiting on a full queue does not stop
    /// a new consumer from joining and draining it.
    publish_order: tokio::sync::Mutex<()>,
    /// Offsets and queues, held only briefly.
    queues: Mutex<Queues>,
}

struct Queues {
    /// The offset of the next message (partition 0).
    next_offset: i64,
    /// Messages published while no group existed; the first group adopts this queue.
    backlog: Option<Queue>,
    /// One queue per consumer group.
    groups: HashMap<String, Queue>,
}

/// Both ends of one bounded queue; holding the receiver keeps the queue alive (and filling)
/// while a group has no consumer, as a Kafka group keeps its lag.
#[derive(Clone)]
struct Queue {
    tx: Sender<Delivery>,
    rx: Receiver<Delivery>,
}

impl Queue {
    fn new(capacity: usize) -> Self {
        let (tx, rx) = async_channel::bounded(capacity);
        Queue { tx, rx }
    }
}

impl EmbeddedBus {
    /// A bus whose queues hold `capacity` messages each (at least one).
    pub fn new(capacity: usize) -> Self {
        EmbeddedBus {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                closed: AtomicBool::new(false),
                topics: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Shuts the bus down: every consumer's `next` returns `None` (waiting ones wake up),
    /// and publishing or subscribing fails with `Unavailable`.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let topics = self
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for topic in topics.values() {
            let queues = topic.queues.lock().unwrap_or_else(PoisonError::into_inner);
            for queue in queues.groups.values().chain(queues.backlog.iter()) {
                queue.tx.close();
            }
        }
        tracing::debug!(topics = topics.len(), "embedded event bus closed");
    }

    fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    fn ensure_open(&self, what: &str, topic: &str) -> Result<()> {
        if self.is_closed() {
            return Err(Error::unavailable(format!(
                "{what} topic {topic}: the event bus is closed"
            )));
        }
        Ok(())
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let topic = topics.entry(name.to_string()).or_insert_with(|| {
            Arc::new(Topic {
                name: name.to_string(),
                publish_order: tokio::sync::Mutex::new(()),
                queues: Mutex::new(Queues {
                    next_offset: 0,
                    backlog: None,
                    groups: HashMap::new(),
                }),
            })
        });
        Arc::clone(topic)
    }
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{what} name must not be empty")));
    }
    Ok(())
}

#[async_trait]
impl EventBus for EmbeddedBus {
    /// Only the messages of this process.
    fn shared(&self) -> bool {
        false
    }

    async fn publish(&self, topic: &str, message: Message) -> Result<()> {
        check_name("topic", topic)?;
        self.ensure_open("publishing to", topic)?;
        let topic = self.topic(topic);
        let _order = topic.publish_order.lock().await;
        let (delivery, senders) = {
            let mut queues = topic.queues.lock().unwrap_or_else(PoisonError::into_inner);
            let offset = queues.next_offset;
            queues.next_offset += 1;
            let senders: Vec<Sender<Delivery>> = if queues.groups.is_empty() {
                let capacity = self.inner.capacity;
                let backlog = queues.backlog.get_or_insert_with(|| Queue::new(capacity));
                vec![backlog.tx.clone()]
            } else {
                queues.groups.values().map(|q| q.tx.clone()).collect()
            };
            let delivery = Delivery {
                message,
                topic: topic.name.clone(),
                partition: 0,
                offset,
            };
            (delivery, senders)
        };
        for tx in senders {
            tx.send(delivery.clone()).await.map_err(|_| {
                Error::unavailable(format!(
                    "publishing to topic {}: the event bus is closed",
                    topic.name
                ))
            })?;
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>> {
        check_name("topic", topic)?;
        check_name("consumer group", group)?;
        self.ensure_open("subscribing to", topic)?;
        let topic = self.topic(topic);
        let rx = {
            let mut queues = topic.queues.lock().unwrap_or_else(PoisonError::into_inner);
            match queues.groups.get(group) {
                Some(queue) => queue.rx.clone(),
                None => {
                    let capacity = self.inner.capacity;
                    let queue = queues
                        .backlog
                        .take()
                        .unwrap_or_else(|| Queue::new(capacity));
                    let rx = queue.rx.clone();
                    queues.groups.insert(group.to_string(), queue);
                    tracing::debug!(topic = %topic.name, group, "consumer group created");
                    rx
                }
            }
        };
        Ok(Box::new(EmbeddedSubscription {
            topic: topic.name.clone(),
            rx,
            bus: self.clone(),
        }))
    }
}

/// One consumer of an embedded topic.
struct EmbeddedSubscription {
    /// The topic it consumes.
    topic: String,
    /// Its group's queue.
    rx: Receiver<Delivery>,
    /// The bus, to see whether it was closed.
    bus: EmbeddedBus,
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn next(&mut self) -> Result<Option<Delivery>> {
        if self.bus.is_closed() {
            return Ok(None);
        }
        match self.rx.recv().await {
            Ok(delivery) if !self.bus.is_closed() => Ok(Some(delivery)),
            _ => Ok(None),
        }
    }

    async fn commit(&mut self, position: &Position) -> Result<()> {
        if position.topic != self.topic {
            return Err(Error::invalid(format!(
                "cannot commit a message of topic {} on a subscription to topic {}",
                position.topic, self.topic
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn message(n: u32) -> Message {
        Message {
            key: None,
            headers: vec![],
            payload: n.to_string().into_bytes(),
        }
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let bus = EmbeddedBus::new(16);
        crate::bus::testsuite::run(&bus).await;
    }

    #[tokio::test]
    async fn publish_waits_while_a_group_queue_is_full() {
        let bus = EmbeddedBus::new(2);
        let mut sub = bus.subscribe("t", "g").await.unwrap();
        bus.publish("t", message(0)).await.unwrap();
        bus.publish("t", message(1)).await.unwrap();
        let mut third = Box::pin(bus.publish("t", message(2)));
        let waited = tokio::time::timeout(Duration::from_millis(50), &mut third).await;
        assert!(waited.is_err(), "publish to a full queue must wait");
        assert_eq!(sub.next().await.unwrap().unwrap().offset, 0);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("publish resumes once the queue has room")
            .unwrap();
    }

    #[tokio::test]
    async fn the_backlog_is_bounded_and_goes_to_the_first_group_only() {
        let bus = EmbeddedBus::new(1);
        bus.publish("t", message(0)).await.unwrap();
        let mut second = Box::pin(bus.publish("t", message(1)));
        let waited = tokio::time::timeout(Duration::from_millis(50), &mut second).await;
        assert!(waited.is_err(), "a full backlog makes publishers wait");
        // Joining does not wait for the blocked publisher, and drains the backlog.
        let mut first = bus.subscribe("t", "first").await.unwrap();
        assert_eq!(first.next().await.unwrap().unwrap().offset, 0);
        second.await.unwrap();
        assert_eq!(first.next().await.unwrap().unwrap().offset, 1);
        let mut later = bus.subscribe("t", "later").await.unwrap();
        bus.publish("t", message(2)).await.unwrap();
        assert_eq!(later.next().await.unwrap().unwrap().offset, 2);
    }

    #[tokio::test]
    async fn close_ends_every_stream_and_refuses_new_work() {
        let bus = EmbeddedBus::new(1);
        let mut waiting = bus.subscribe("t", "g").await.unwrap();
        let mut idle = bus.subscribe("u", "g").await.unwrap();
        let consumer = tokio::spawn(async move { waiting.next().await });
        bus.publish("u", message(0)).await.unwrap();
        let mut blocked = Box::pin(bus.publish("u", message(1)));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), &mut blocked)
                .await
                .is_err()
        );

        bus.close();
        let next = tokio::time::timeout(Duration::from_secs(5), consumer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            next.unwrap(),
            None,
            "a waiting consumer wakes with the end of stream"
        );
        assert_eq!(
            idle.next().await.unwrap(),
            None,
            "buffered messages are not handed out"
        );
        let err = blocked.await.unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Unavailable);
        let err = bus.publish("t", message(2)).await.unwrap_err();
        assert!(err.message().contains("closed"), "{err}");
        assert!(bus.subscribe("t", "h").await.is_err());
    }

    #[tokio::test]
    async fn commit_refuses_a_delivery_of_another_topic() {
        let bus = EmbeddedBus::new(4);
        let mut sub = bus.subscribe("t", "g").await.unwrap();
        bus.publish("t", message(0)).await.unwrap();
        let mut delivery = sub.next().await.unwrap().unwrap();
        sub.commit(&delivery.position()).await.unwrap();
        delivery.topic = "other".into();
        assert_eq!(
            sub.commit(&delivery.position()).await.unwrap_err().kind(),
            crate::ErrorKind::Invalid
        );
    }
}
