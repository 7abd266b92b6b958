//! The conformance suite of the event bus port, run by every backend's tests.
//!
//! Topic and group names carry a unique suffix, so the suite also runs against a shared bus.
//! Consumers join before the messages they expect are published, except in the backlog check.
//! A topic may have several partitions: order is checked only among messages of one key, and a
//! delivery is identified by its partition and offset.

// Test code that lives in the library so that every backend (in any crate) can run it; a
// failed check panics, as in any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Delivery, EventBus, Subscription};
use crate::event::Message;
use crate::testsupport::unique;

/// How long a check waits for a message before it fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// Runs every check against `bus`.
pub async fn run(bus: &dyn EventBus) {
    messages_keep_key_headers_and_payload(bus).await;
    every_group_sees_every_message_in_offset_order(bus).await;
    consumers_of_one_group_share_its_messages(bus).await;
    messages_published_before_any_group_reach_the_first_group(bus).await;
    concurrent_publishers_lose_nothing(bus).await;
    a_published_batch_keeps_its_order_and_arrives_in_batches(bus).await;
    empty_names_are_refused(bus).await;
}

/// A consumer group of its own for each check, as a deployment has one group per topic and
/// role: a Kafka group id is global, not per topic.
fn group(topic: &str, name: &str) -> String {
    format!("{topic}.{name}")
}

fn message(text: &str) -> Message {
    Message {
        key: Some(format!("key-{text}")),
        headers: vec![("x-test".into(), text.into())],
        payload: text.as_bytes().to_vec(),
    }
}

/// A message with the key every ordered check uses, so that all of them share one partition.
fn ordered(text: &str) -> Message {
    Message {
        key: Some("ordered".into()),
        ..message(text)
    }
}

fn text(delivery: &Delivery) -> String {
    String::from_utf8(delivery.message.payload.clone()).unwrap()
}

async fn publish(bus: &dyn EventBus, topic: &str, message: Message) {
    tokio::time::timeout(DEADLINE, bus.publish(topic, message))
        .await
        .expect("publish did not complete before the deadline")
        .unwrap();
}

async fn next(sub: &mut Box<dyn Subscription>) -> Delivery {
    tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("no message arrived before the deadline")
        .unwrap()
        .expect("the bus ended the stream")
}

async fn messages_keep_key_headers_and_payload(bus: &dyn EventBus) {
    let topic = unique("fidelity");
    let mut sub = bus.subscribe(&topic, &group(&topic, "g")).await.unwrap();
    let sent = message("hello");
    publish(bus, &topic, sent.clone()).await;
    let delivery = next(&mut sub).await;
    assert_eq!(delivery.message, sent);
    assert_eq!(delivery.topic, topic);
    sub.commit(&delivery.position()).await.unwrap();
    // Committing again is harmless.
    sub.commit(&delivery.position()).await.unwrap();
}

async fn every_group_sees_every_message_in_offset_order(bus: &dyn EventBus) {
    let topic = unique("groups");
    let mut a = bus.subscribe(&topic, &group(&topic, "a")).await.unwrap();
    let mut b = bus.subscribe(&topic, &group(&topic, "b")).await.unwrap();
    for i in 0..5 {
        publish(bus, &topic, ordered(&i.to_string())).await;
    }
    for sub in [&mut a, &mut b] {
        let mut last: Option<Delivery> = None;
        for i in 0..5 {
            let delivery = next(sub).await;
            assert_eq!(
                text(&delivery),
                i.to_string(),
                "messages of one key keep order"
            );
            if let Some(last) = &last {
                assert_eq!(
                    delivery.partition, last.partition,
                    "messages of one key share a partition"
                );
                assert!(delivery.offset > last.offset, "offsets increase");
            }
            last = Some(delivery.clone());
            sub.commit(&delivery.position()).await.unwrap();
        }
    }
}

async fn a_published_batch_keeps_its_order_and_arrives_in_batches(bus: &dyn EventBus) {
    let topic = unique("batch");
    let mut sub = bus.subscribe(&topic, &group(&topic, "g")).await.unwrap();
    let batch: Vec<(String, Message)> = (0..50)
        .map(|i| (topic.clone(), ordered(&i.to_string())))
        .collect();
    // Published while consumed: a bounded bus makes a publisher wait for room.
    let publishing = bus.publish_all(batch);
    let mut seen = Vec::new();
    let consuming = async {
        while seen.len() < 50 {
            let deliveries = tokio::time::timeout(DEADLINE, sub.next_batch(16))
                .await
                .expect("no message arrived before the deadline")
                .unwrap();
            assert!(!deliveries.is_empty(), "the bus ended the stream");
            assert!(deliveries.len() <= 16, "a batch holds at most its maximum");
            for delivery in deliveries {
                sub.commit(&delivery.position()).await.unwrap();
                seen.push(text(&delivery));
            }
        }
    };
    let (published, ()) = tokio::join!(publishing, consuming);
    published.unwrap();
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(seen, expected, "a published batch keeps its order");
}

async fn consumers_of_one_group_share_its_messages(bus: &dyn EventBus) {
    let topic = unique("shared");
    let mut one = bus.subscribe(&topic, &group(&topic, "g")).await.unwrap();
    let mut two = bus.subscribe(&topic, &group(&topic, "g")).await.unwrap();
    let expected: BTreeSet<String> = (0..40).map(|i| i.to_string()).collect();
    let publish = async {
        for text in &expected {
            publish(bus, &topic, message(text)).await;
        }
    };
    let mut seen = BTreeSet::new();
    let collect = async {
        while seen.len() < expected.len() {
            let (delivery, by_one) = tokio::select! {
                d = one.next() => (d, true),
                d = two.next() => (d, false),
            };
            let delivery = delivery.unwrap().expect("the bus ended the stream");
            assert!(
                seen.insert(text(&delivery)),
                "a message was delivered twice in one group"
            );
            // Committed as soon as handled: when the group rebalances, the consumer that
            // takes a partition over starts after it.
            let consumer = if by_one { &mut one } else { &mut two };
            consumer.commit(&delivery.position()).await.unwrap();
        }
    };
    // Publishing and consuming run together: the bus may hold fewer messages than we send.
    tokio::time::timeout(DEADLINE, async { tokio::join!(publish, collect) })
        .await
        .expect("the group did not receive every message before the deadline");
    assert_eq!(seen, expected);
}

async fn messages_published_before_any_group_reach_the_first_group(bus: &dyn EventBus) {
    let topic = unique("backlog");
    for i in 0..3 {
        publish(bus, &topic, ordered(&i.to_string())).await;
    }
    let mut sub = bus
        .subscribe(&topic, &group(&topic, "first"))
        .await
        .unwrap();
    for i in 0..3 {
        assert_eq!(text(&next(&mut sub).await), i.to_string());
    }
}

async fn concurrent_publishers_lose_nothing(bus: &dyn EventBus) {
    let topic = unique("concurrent");
    let mut sub = bus.subscribe(&topic, &group(&topic, "g")).await.unwrap();
    let publishers = futures::future::join_all((0..8).map(|p| {
        let topic = &topic;
        async move {
            for i in 0..25 {
                publish(bus, topic, message(&format!("{p}-{i}"))).await;
            }
        }
    }));
    let consumer = async {
        let mut seen = BTreeSet::new();
        let mut offsets = BTreeSet::new();
        while seen.len() < 200 {
            let delivery = next(&mut sub).await;
            assert!(
                offsets.insert((delivery.partition, delivery.offset)),
                "two messages share a partition and offset"
            );
            assert!(
                seen.insert(text(&delivery)),
                "a message was delivered twice"
            );
            sub.commit(&delivery.position()).await.unwrap();
        }
        seen
    };
    // Publishing and consuming run together: a small bus applies backpressure meanwhile.
    let (_, seen) = tokio::join!(publishers, consumer);
    assert_eq!(seen.len(), 200);
}

async fn empty_names_are_refused(bus: &dyn EventBus) {
    assert!(bus.publish("", message("x")).await.is_err());
    assert!(bus.subscribe("", "g").await.is_err());
    assert!(bus.subscribe(&unique("names"), "").await.is_err());
}
