//! Tests of the Kafka bus. Those that need a broker read its address from `FX_TEST_KAFKA`
//! (`infra/scripts/start-kafka.sh` starts one) and skip without it; each uses a topic prefix of
//! its own, so runs against one broker do not collide.

use std::time::{Duration, Instant};

use cloudevents::AttributesReader;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::subscription::{PartitionOffsets, SubscriptionContext};
use super::*;
use crate::bus::{topics, Delivery, EventBus, Subscription};
use crate::event::{self, Message};
use crate::testsupport::{poll_until, unique};

/// How long a check waits for a message, a commit or a rebalance.
const DEADLINE: Duration = Duration::from_secs(60);

/// A topic prefix no other test (or run) uses.
fn unique_prefix() -> String {
    format!("{}-", unique("test"))
}

/// A bus on the test broker with a topic prefix of its own, or `None` when there is none.
async fn bus(test: &str) -> Option<KafkaBus> {
    let brokers = crate::testenv::backend("FX_TEST_KAFKA", test)?;
    let mut settings = KafkaSettings::new(brokers);
    settings.topic_prefix = unique_prefix();
    Some(KafkaBus::connect(settings).await.unwrap())
}

fn keyed(key: &str, text: &str) -> Message {
    Message {
        key: Some(key.to_string()),
        headers: vec![],
        payload: text.as_bytes().to_vec(),
    }
}

async fn next(sub: &mut Box<dyn Subscription>) -> Delivery {
    tokio::time::timeout(DEADLINE, sub.next())
        .await
        .expect("no message arrived before the deadline")
        .unwrap()
        .expect("the kafka bus never ends a stream")
}

/// The offset group `group` has committed on `partition` of bus topic `topic`, as a fresh
/// consumer of that group would see it (without joining the group).
async fn committed(bus: &KafkaBus, group: &str, topic: &str, partition: i32) -> Option<i64> {
    let settings = bus.settings();
    let config = settings.consumer_config(&settings.kafka_group(group).unwrap());
    let topic = settings.kafka_topic(topic).unwrap();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create().unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&topic, partition);
        let offsets = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        match offsets.find_partition(&topic, partition).unwrap().offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    })
    .await
    .unwrap()
}

/// Waits until group `group` has committed `expected` on the partition, or fails.
async fn wait_committed(bus: &KafkaBus, group: &str, topic: &str, partition: i32, expected: i64) {
    let what = format!("group {group} commits {expected}");
    poll_until(&what, DEADLINE, Duration::from_millis(100), || async move {
        match committed(bus, group, topic, partition).await {
            Some(now) if now == expected => Ok(()),
            now => Err(format!("it committed {now:?}")),
        }
    })
    .await
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let Some(bus) = bus("kafka passes_the_conformance_suite").await else {
        return;
    };
    crate::bus::testsuite::run(&bus).await;
}

#[tokio::test]
async fn binary_cloudevent_keeps_ce_headers_and_key() {
    let Some(bus) = bus("kafka binary_cloudevent_keeps_ce_headers_and_key").await else {
        return;
    };
    let mut sub = bus.subscribe(topics::EVENTS, "g").await.unwrap();
    let mut sent = event::new_json_event(
        "e-1",
        "/shop",
        "com.example.order",
        serde_json::json!({"n": 1}),
    )
    .unwrap();
    cloudevents::AttributesWriter::set_subject(&mut sent, Some("order-7"));
    sent.set_extension("partitionkey", "customer-9");
    let message = event::encode_message(&sent);
    bus.publish(topics::EVENTS, message.clone()).await.unwrap();

    let delivery = next(&mut sub).await;
    assert_eq!(delivery.topic, topics::EVENTS, "the prefix is not shown");
    assert_eq!(
        delivery.message, message,
        "key, ce_ headers and data unchanged"
    );
    assert_eq!(delivery.message.key.as_deref(), Some("customer-9"));
    assert_eq!(delivery.message.header("ce_id"), Some("e-1"));
    let back = event::decode_message(&delivery.message).unwrap();
    assert_eq!(back, sent);
    sub.commit(&delivery.position()).await.unwrap();
}

#[tokio::test]
async fn structured_cloudevent_is_decoded() {
    let Some(bus) = bus("kafka structured_cloudevent_is_decoded").await else {
        return;
    };
    let mut sub = bus.subscribe(topics::EVENTS, "g").await.unwrap();
    let sent =
        event::new_json_event("e-2", "/shop", "com.example.paid", serde_json::json!(7)).unwrap();
    let message = Message {
        key: Some("/shop e-2".into()),
        headers: vec![("content-type".into(), event::STRUCTURED_CONTENT_TYPE.into())],
        payload: serde_json::to_vec(&sent).unwrap(),
    };
    bus.publish(topics::EVENTS, message.clone()).await.unwrap();

    let delivery = next(&mut sub).await;
    assert_eq!(delivery.message, message);
    let back = event::decode_message(&delivery.message).unwrap();
    assert_eq!(back.id(), "e-2");
    assert_eq!(event::data_json(&back), Some(serde_json::json!(7)));
}

#[tokio::test]
async fn non_utf8_headers_and_keys_are_converted_lossily() {
    let Some(bus) = bus("kafka non_utf8_headers_and_keys_are_converted_lossily").await else {
        return;
    };
    let mut sub = bus.subscribe("raw", "g").await.unwrap();
    let topic = bus.settings().kafka_topic("raw").unwrap();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "bad",
            value: Some(&[b'o', b'k', 0xff][..]),
        })
        .insert(Header::<&[u8]> {
            key: "null",
            value: None,
        });
    let record = FutureRecord::to(&topic)
        .key(&[0xfe_u8, b'k'][..])
        .payload(&b"body"[..])
        .headers(headers);
    bus.producer()
        .send(record, Timeout::After(DEADLINE))
        .await
        .unwrap();

    let delivery = next(&mut sub).await;
    assert_eq!(delivery.message.key.as_deref(), Some("\u{fffd}k"));
    assert_eq!(
        delivery.message.headers,
        vec![
            ("bad".to_string(), "ok\u{fffd}".to_string()),
            ("null".to_string(), String::new()),
        ]
    );
    assert_eq!(delivery.message.payload, b"body");
}

#[tokio::test]
async fn commits_cover_only_contiguous_completed_offsets() {
    let Some(bus) = bus("kafka commits_cover_only_contiguous_completed_offsets").await else {
        return;
    };
    // One key: every message lands on one partition, at offsets 0..4.
    for i in 0..4 {
        bus.publish("ordered", keyed("k", &i.to_string()))
            .await
            .unwrap();
    }

    // Group g: 2 then 0 completes; the group resumes at 1. Then 1 completes: resumes at 3.
    let mut first = bus.subscribe("ordered", "g").await.unwrap();
    let taken = [
        next(&mut first).await,
        next(&mut first).await,
        next(&mut first).await,
    ];
    let partition = taken[0].partition;
    assert!(taken.iter().all(|d| d.partition == partition));
    assert_eq!(taken.each_ref().map(|d| d.offset), [0, 1, 2]);
    first.commit(&taken[2].position()).await.unwrap();
    first.commit(&taken[0].position()).await.unwrap();
    wait_committed(&bus, "g", "ordered", partition, 1).await;
    first.commit(&taken[1].position()).await.unwrap();
    wait_committed(&bus, "g", "ordered", partition, 3).await;
    drop(first);
    let mut fresh = bus.subscribe("ordered", "g").await.unwrap();
    let resumed = next(&mut fresh).await;
    assert_eq!((resumed.partition, resumed.offset), (partition, 3));
    assert_eq!(resumed.message.payload, b"3");

    // Group h: the same, but its consumer goes away before offset 1 completes.
    let mut first = bus.subscribe("ordered", "h").await.unwrap();
    let taken = [
        next(&mut first).await,
        next(&mut first).await,
        next(&mut first).await,
    ];
    first.commit(&taken[2].position()).await.unwrap();
    first.commit(&taken[0].position()).await.unwrap();
    wait_committed(&bus, "h", "ordered", partition, 1).await;
    drop(first);
    let mut fresh = bus.subscribe("ordered", "h").await.unwrap();
    let resumed = next(&mut fresh).await;
    assert_eq!(
        (resumed.partition, resumed.offset),
        (partition, 1),
        "the group resumes at its lowest uncommitted offset"
    );
}

/// A batch's commit is one request covering every partition it moved, and leaves out what an
/// earlier offset still holds back, as one commit per message would.
#[tokio::test]
async fn a_batch_commit_covers_each_partition_up_to_its_contiguous_end() {
    let Some(bus) =
        bus("kafka a_batch_commit_covers_each_partition_up_to_its_contiguous_end").await
    else {
        return;
    };
    for i in 0..4 {
        bus.publish("batched", keyed("k", &i.to_string()))
            .await
            .unwrap();
    }
    let mut first = bus.subscribe("batched", "g").await.unwrap();
    let taken = [
        next(&mut first).await,
        next(&mut first).await,
        next(&mut first).await,
        next(&mut first).await,
    ];
    let partition = taken[0].partition;
    // 0, 2 and 3 done: the group may resume at 1 only.
    first
        .commit_all(&[
            taken[3].position(),
            taken[0].position(),
            taken[2].position(),
        ])
        .await
        .unwrap();
    wait_committed(&bus, "g", "batched", partition, 1).await;
    // Then 1: everything.
    first.commit_all(&[taken[1].position()]).await.unwrap();
    wait_committed(&bus, "g", "batched", partition, 4).await;
    assert!(first
        .commit_all(&[position_in("other", partition, 0)])
        .await
        .is_err());
}

fn position_in(topic: &str, partition: i32, offset: i64) -> crate::bus::Position {
    crate::bus::Position {
        topic: topic.to_string(),
        partition,
        offset,
    }
}

#[tokio::test]
async fn a_second_consumer_of_a_group_gets_partitions() {
    let Some(bus) = bus("kafka a_second_consumer_of_a_group_gets_partitions").await else {
        return;
    };
    let mut first = bus.subscribe("shared", "g").await.unwrap();
    bus.publish("shared", keyed("k-0", "0")).await.unwrap();
    let delivery = next(&mut first).await;
    first.commit(&delivery.position()).await.unwrap();

    // The first consumer holds every partition; a second one joins and the group rebalances.
    let mut second = bus.subscribe("shared", "g").await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    let mut published = 1;
    let got = loop {
        assert!(
            Instant::now() < deadline,
            "the second consumer got no message before the deadline"
        );
        let text = published.to_string();
        bus.publish("shared", keyed(&format!("k-{text}"), &text))
            .await
            .unwrap();
        published += 1;
        tokio::select! {
            d = first.next() => {
                let d = d.unwrap().unwrap();
                first.commit(&d.position()).await.unwrap();
            }
            d = second.next() => break d.unwrap().unwrap(),
            // Publish at a steady pace while the group settles.
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    };
    assert_eq!(got.topic, "shared");
    second.commit(&got.position()).await.unwrap();
}

#[tokio::test]
async fn oversized_messages_are_invalid() {
    let Some(bus) = bus("kafka oversized_messages_are_invalid").await else {
        return;
    };
    let message = Message {
        key: None,
        headers: vec![],
        payload: vec![b'x'; 2_000_000],
    };
    let err = bus.publish("big", message).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{}", err.chain());
}

#[tokio::test]
async fn invalid_topic_names_are_refused() {
    let Some(bus) = bus("kafka invalid_topic_names_are_refused").await else {
        return;
    };
    let err = bus.publish("no spaces", keyed("k", "x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    let err = bus.subscribe("a/b", "g").await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

/// A port on which nothing listens.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn unreachable_brokers_are_unavailable_within_the_connect_timeout() {
    let brokers = format!("127.0.0.1:{}", closed_port());
    let mut settings = KafkaSettings::new(&brokers);
    settings.connect_timeout_ms = 2_000;
    settings.delivery_timeout_ms = 2_000;

    let started = Instant::now();
    let err = KafkaBus::connect(settings.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains(&brokers), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A bus whose brokers went away after it was built: subscribing and publishing fail too,
    // and it is not ready.
    let bus = KafkaBus::build(settings).unwrap();
    let err = bus.ready().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains("no kafka broker of"), "{err}");
    let started = Instant::now();
    let err = bus.subscribe(topics::EVENTS, "g").await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains(&brokers), "{err}");
    let err = bus
        .publish(topics::EVENTS, keyed("k", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains(&brokers), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn ensure_topics_creates_the_topics_and_the_bus_is_ready() {
    let Some(bus) = bus("ensure_topics_creates_the_topics_and_the_bus_is_ready").await else {
        return;
    };
    bus.ready().await.unwrap();
    assert!(bus.shared(), "other processes share a kafka bus");
    let wanted = [
        topics::EVENTS.to_string(),
        topics::invocations("setup-pool"),
    ];
    bus.ensure_topics(&wanted).await.unwrap();
    // Again: a topic that exists already is fine.
    bus.ensure_topics(&wanted).await.unwrap();
    let settings = bus.settings().clone();
    let metadata = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = settings.consumer_config("meta").create().unwrap();
        consumer
            .fetch_metadata(None, Timeout::After(Duration::from_secs(10)))
            .unwrap()
    })
    .await
    .unwrap();
    for topic in &wanted {
        let name = bus.settings().kafka_topic(topic).unwrap();
        let found = metadata.topics().iter().find(|t| t.name() == name);
        let found = found.unwrap_or_else(|| panic!("topic {name} was not created"));
        assert_eq!(found.partitions().len(), bus.settings().partitions as usize);
    }
}

#[test]
fn out_of_order_completion_commits_the_contiguous_prefix() {
    let mut partition = PartitionOffsets::default();
    for offset in [0, 1, 2, 5] {
        partition.handed_out(offset);
    }
    assert_eq!(partition.complete(2), None, "0 and 1 are still outstanding");
    assert_eq!(partition.complete(0), Some(1));
    assert_eq!(
        partition.complete(0),
        None,
        "committing twice changes nothing"
    );
    assert_eq!(partition.complete(7), None, "never handed out");
    assert_eq!(partition.complete(1), Some(3), "1 and the completed 2");
    assert_eq!(partition.outstanding(), 1);
    assert_eq!(
        partition.complete(5),
        Some(6),
        "gaps between offsets are fine"
    );
    assert_eq!(partition.outstanding(), 0);
}

#[test]
fn settings_default_and_refuse_unknown_fields() {
    let settings: crate::backends::BusSettings =
        toml::from_str("kind = \"kafka\"\nbrokers = \"k1:9092,k2:9092\"\n").unwrap();
    let crate::backends::BusSettings::Kafka(kafka) = settings else {
        panic!("not the kafka bus: {settings:?}");
    };
    assert_eq!(kafka, KafkaSettings::new("k1:9092,k2:9092"));
    assert_eq!(kafka.partitions, 3);
    assert_eq!(kafka.replication_factor, 1);
    assert_eq!(kafka.kafka_topic(topics::EVENTS).unwrap(), "fx.events");
    assert_eq!(
        kafka.kafka_topic(&topics::invocations("default")).unwrap(),
        "fx.invocations.default"
    );

    let unknown = toml::from_str::<crate::backends::BusSettings>(
        "kind = \"kafka\"\nbrokers = \"k:9092\"\npartition = 3\n",
    );
    assert!(unknown.is_err(), "a misspelt field is refused");
}

#[test]
fn settings_redact_secrets_and_refuse_reserved_properties() {
    let mut settings = KafkaSettings::new("k:9092");
    settings.security_protocol = SecurityProtocol::SaslPlaintext;
    settings.sasl_mechanism = Some(SaslMechanism::ScramSha512);
    settings.sasl_username = Some("fx-user".into());
    settings.sasl_password = Some("hunter2".into());
    settings
        .extra
        .insert("sasl.oauthbearer.client.secret".into(), "s3cr3t".into());
    let shown = format!("{settings:?}");
    assert!(shown.contains("fx-user"), "{shown}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cr3t"),
        "{shown}"
    );
    settings.validate().unwrap();

    settings
        .extra
        .insert("enable.auto.commit".into(), "true".into());
    assert_eq!(settings.validate().unwrap_err().kind(), ErrorKind::Invalid);

    let mut settings = KafkaSettings::new(" ");
    assert!(settings.validate().is_err(), "no brokers");
    settings.brokers = "k:9092".into();
    settings.partitions = 0;
    assert!(settings.validate().is_err(), "no partitions");
}

#[test]
fn security_settings_come_complete_and_with_their_protocol() {
    let base = || {
        let mut s = KafkaSettings::new("k:9092");
        s.security_protocol = SecurityProtocol::SaslSsl;
        s.sasl_mechanism = Some(SaslMechanism::Plain);
        s.sasl_username = Some("fx".into());
        s.sasl_password = Some("pw".into());
        s
    };
    base().validate().unwrap();
    let message = |s: KafkaSettings| s.validate().unwrap_err().message().to_string();
    let mut s = base();
    s.sasl_password = None;
    assert!(message(s).contains("needs sasl_mechanism, sasl_username and sasl_password"));
    let mut s = base();
    s.security_protocol = SecurityProtocol::Ssl;
    assert!(message(s).contains("sasl_* settings need"));
    let mut s = KafkaSettings::new("k:9092");
    s.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(message(s.clone()).contains("ca_file needs"));
    s.security_protocol = SecurityProtocol::Ssl;
    assert!(message(s).contains("cannot read ca_file /nonexistent/ca.pem"));
    // The librdkafka properties they stand for cannot be set through `extra`.
    for key in ["security.protocol", "sasl.password", "ssl.ca.location"] {
        let mut s = KafkaSettings::new("k:9092");
        s.extra.insert(key.into(), "x".into());
        assert!(message(s).contains("dedicated setting"), "{key}");
    }
    // Parsed as written in a settings file.
    let parsed: KafkaSettings = toml::from_str(
        "brokers = \"k:9092\"\nsecurity_protocol = \"sasl_ssl\"\nsasl_mechanism = \"scram-sha-256\"\nsasl_username = \"fx\"\nsasl_password = \"pw\"",
    )
    .unwrap();
    assert_eq!(parsed.sasl_mechanism, Some(SaslMechanism::ScramSha256));
}

/// librdkafka is built with TLS and SCRAM (OpenSSL, vendored): clients with those settings
/// are made (a build without them refuses the configuration).
#[test]
fn clients_with_tls_and_scram_can_be_made() {
    for (protocol, mechanism) in [
        (SecurityProtocol::Ssl, None),
        (SecurityProtocol::SaslSsl, Some(SaslMechanism::ScramSha512)),
        (SecurityProtocol::SaslSsl, Some(SaslMechanism::ScramSha256)),
        (SecurityProtocol::SaslPlaintext, Some(SaslMechanism::Plain)),
    ] {
        let mut settings = KafkaSettings::new("127.0.0.1:1");
        settings.security_protocol = protocol;
        if let Some(mechanism) = mechanism {
            settings.sasl_mechanism = Some(mechanism);
            settings.sasl_username = Some("fx".into());
            settings.sasl_password = Some("pw".into());
        }
        if let Err(e) = KafkaBus::build(settings) {
            panic!("{protocol:?} {mechanism:?}: {e}");
        }
    }
}

#[test]
fn unknown_librdkafka_properties_are_invalid() {
    let mut settings = KafkaSettings::new("k:9092");
    settings.extra.insert("no.such.property".into(), "1".into());
    let err = KafkaBus::build(settings).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

/// The bus reports the message size it is configured for, and a message above it is refused as
/// `Invalid` by the client itself (tansu does not enforce a size; librdkafka's
/// `message.max.bytes` does, as a broker at Kafka's default would), so that a producer can
/// tell a message it must not retry from an outage.
#[tokio::test]
async fn a_message_above_message_max_bytes_is_refused_as_invalid() {
    let Some(brokers) =
        crate::testenv::backend("FX_TEST_KAFKA", "kafka a_message_above_message_max_bytes")
    else {
        return;
    };
    let mut settings = KafkaSettings::new(brokers);
    settings.topic_prefix = unique_prefix();
    settings.message_max_bytes = 100_000;
    let bus = KafkaBus::connect(settings).await.unwrap();
    assert_eq!(bus.max_message_bytes(), 100_000);
    let err = bus
        .publish(topics::EVENTS, keyed("k", &"x".repeat(150_000)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{}", err.chain());
    bus.publish(topics::EVENTS, keyed("k", &"x".repeat(50_000)))
        .await
        .unwrap();
    // The default is Kafka's.
    assert_eq!(KafkaSettings::new("b:9092").message_max_bytes, 1_000_000);
    let mut bad = KafkaSettings::new("b:9092");
    bad.extra
        .insert("message.max.bytes".into(), "50000000".into());
    assert!(bad.validate().is_err(), "set through message_max_bytes");
}

/// A consumer whose caller takes nothing for longer than `max.poll.interval.ms` (every slot of
/// an executor busy with long invocations) keeps its group membership while held: its
/// partitions do not move, and what it handed out is not delivered again. The same wait
/// without `hold` makes librdkafka leave the group, and the uncommitted message comes again:
/// the test can tell the two apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_consumer_keeps_its_partitions_past_the_poll_interval() {
    let Some(brokers) =
        crate::testenv::backend("FX_TEST_KAFKA", "kafka held consumer keeps its partitions")
    else {
        return;
    };
    let mut settings = KafkaSettings::new(brokers);
    settings.topic_prefix = unique_prefix();
    settings.partitions = 1;
    settings.session_timeout_ms = 6_000;
    settings.max_poll_interval_ms = 6_000;
    let bus = KafkaBus::connect(settings).await.unwrap();
    let busy_for = Duration::from_secs(10);

    for (run, held) in [("held", true), ("unheld", false)] {
        let topic = format!("hold.{run}");
        let mut sub = bus.subscribe(&topic, run).await.unwrap();
        for n in 0..2 {
            bus.publish(&topic, keyed("k", &format!("{run}-{n}")))
                .await
                .unwrap();
        }
        let first = next(&mut sub).await;
        assert_eq!(first.message.payload, format!("{run}-0").as_bytes());
        // The first delivery is "running" (not committed) for longer than the interval.
        if held {
            match tokio::time::timeout(busy_for, sub.hold()).await {
                Err(_) => {}
                Ok(result) => panic!("hold ended: {result:?}"),
            }
        } else {
            tokio::time::sleep(busy_for).await;
        }
        let after = next(&mut sub).await;
        if held {
            assert_eq!(
                (after.offset, after.message.payload.as_slice()),
                (1, format!("{run}-1").as_bytes()),
                "a held consumer goes on where it was"
            );
        } else {
            assert_eq!(
                (after.offset, after.message.payload.as_slice()),
                (0, format!("{run}-0").as_bytes()),
                "without hold the consumer left its group and the message came again"
            );
        }
    }
}

/// librdkafka keeps a partition's pause flag across a revoke and a later assignment: a
/// partition paused by a hold and not resumed while it was assigned (a hold released in the
/// middle of a rebalance, as when the broker restarts under a busy executor) would come back
/// paused, and the consumer would never read it again. Newly assigned partitions of a consumer
/// that is not held are resumed; here a consumer's partitions are paused behind its back, a
/// second member joins (a rebalance), and the first must still get messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_paused_before_a_rebalance_are_consumed_after_it() {
    let Some(bus) = bus("partitions_paused_before_a_rebalance_are_consumed_after_it").await else {
        return;
    };
    let settings = bus.settings().clone();
    let topic = "paused.rebalance";
    let name = settings.kafka_topic(topic).unwrap();
    let group = settings.kafka_group("paused").unwrap();
    bus.ensure_topics(&[topic.to_string()]).await.unwrap();
    let first: StreamConsumer<SubscriptionContext> = StreamConsumer::from_config_and_context(
        &settings.consumer_config(&group),
        SubscriptionContext::new(&name),
    )
    .unwrap();
    first.subscribe(&[name.as_str()]).unwrap();
    // Poll until the group has assigned it every partition, then pause them all.
    let deadline = Instant::now() + DEADLINE;
    while first.assignment().unwrap().count() < settings.partitions as usize {
        assert!(Instant::now() < deadline, "no assignment");
        let _ = tokio::time::timeout(Duration::from_millis(200), first.recv()).await;
    }
    first.pause(&first.assignment().unwrap()).unwrap();

    // A second member joins: the partitions are revoked and assigned again.
    let mut second = bus.subscribe(topic, "paused").await.unwrap();
    let second_polls = tokio::spawn(async move {
        loop {
            if let Err(e) = second.next().await {
                panic!("{e}");
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let mut n = 0;
    let received = loop {
        assert!(
            Instant::now() < deadline,
            "the first consumer got nothing after the rebalance: its partitions stayed paused"
        );
        // Keep messages coming on every partition (keys spread them).
        bus.publish(topic, keyed(&format!("k{n}"), "x"))
            .await
            .unwrap();
        n += 1;
        match tokio::time::timeout(Duration::from_millis(300), first.recv()).await {
            Ok(Ok(message)) => break message.partition(),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => {}
        }
    };
    assert!(
        first
            .assignment()
            .unwrap()
            .elements()
            .iter()
            .any(|e| e.partition() == received),
        "received from partition {received}, which it holds"
    );
    second_polls.abort();
}
