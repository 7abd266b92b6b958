//! The distributed deployment: `ferrisfx server`, two gateways and two executors as separate
//! processes on a real Kafka-compatible broker (tansu), with PostgreSQL as the state store and
//! the S3 server as the package store when the test command started them.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use cloudevents::{EventBuilder, EventBuilderV10};
use fx_core::handler::{AttributeMatch, Filter};
use fx_core::limits::RetryPolicy;
use fx_core::testenv;
use fx_core::testsupport::{eventually, poll_until, unique, HandlerBuilder};
use fx_tests::processes::Deployment;
use fx_tests::Api;
use serde_json::{json, Value};

/// The `[backends.*]` tables for this run; unique topic prefix, schema and bucket per test.
fn backends_toml(kafka: &str, run: &str) -> String {
    let mut toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\npartitions = 3\nsession_timeout_ms = 6000\n\n"
    );
    if let Ok(url) = std::env::var("FX_TEST_POSTGRES") {
        toml.push_str(&format!(
            "[backends.state]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{run}\"\n\n[backends.sink]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{run}\"\n\n"
        ));
    }
    if let (Ok(endpoint), Ok(key), Ok(secret)) = (
        std::env::var("FX_TEST_S3_ENDPOINT"),
        std::env::var("FX_TEST_S3_ACCESS_KEY"),
        std::env::var("FX_TEST_S3_SECRET_KEY"),
    ) {
        toml.push_str(&format!(
            "[backends.packages]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\nbucket = \"{run}\"\naccess_key = \"{key}\"\nsecret_key = \"{secret}\"\n\n"
        ));
    }
    toml
}

/// A name for this run's topic prefix, schema, bucket and index prefix: letters and digits
/// only, as a PostgreSQL schema and an S3 bucket both allow.
fn run_id(name: &str) -> String {
    unique(&format!("fx{name}")).replace('-', "")
}

/// Creates the `echo` handler (package `misbehave`, events of type `fx.test.ok`).
async fn setup_echo_handler(api: &Api) {
    api.upload_example("misbehave").await;
    api.create_handler(
        &HandlerBuilder::new("echo")
            .event_type("fx.test.ok")
            .package("misbehave")
            .build(),
    )
    .await;
}

/// A deployment on `kafka` with the management server up and the `echo` handler installed
/// (gateways and executors are started by each test).
async fn deployment_with_echo(dir: &std::path::Path, kafka: &str, run: &str) -> (Deployment, Api) {
    deployment_with_echo_on(dir, &backends_toml(kafka, run)).await
}

/// As [`deployment_with_echo`], with the `[backends.*]` tables `toml`.
async fn deployment_with_echo_on(dir: &std::path::Path, toml: &str) -> (Deployment, Api) {
    let mut d = Deployment::new(dir, toml);
    d.start("server", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    setup_echo_handler(&api).await;
    (d, api)
}

/// Waits until the log of process `index` contains `text`; a failure shows the log.
async fn log_says(d: &Deployment, index: usize, text: &str, timeout: Duration) {
    let what = format!("{} logs {text:?}", d.processes[index].name);
    poll_until(&what, timeout, Duration::from_millis(100), || {
        let log = d.log_of(index);
        std::future::ready(if log.contains(text) { Ok(()) } else { Err(log) })
    })
    .await
}

fn order_event(i: usize) -> cloudevents::Event {
    EventBuilderV10::new()
        .id(format!("ev-{i:05}"))
        .source("/tests/distributed")
        .ty("fx.test.ok")
        .extension("partitionkey", format!("key-{}", i % 10))
        .data("application/json", json!({"seq": i}))
        .build()
        .unwrap()
}

fn created_at(execution: &Value) -> chrono::DateTime<chrono::Utc> {
    let text = execution["created_at"]
        .as_str()
        .expect("created_at is a string");
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("created_at {text:?} is not RFC 3339: {e}"))
        .with_timezone(&chrono::Utc)
}

fn check_exactly_once(executions: &[Value], expected: usize) {
    let ids: HashSet<&str> = executions
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), expected, "one execution per event");
    assert_eq!(executions.len(), expected, "no event recorded twice");
    assert!(executions.iter().all(|e| e["status"] == "succeeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_through_kafka_run_exactly_once_with_two_gateways_and_two_executors() {
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "distributed e2e") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("a");
    let (mut d, api) = deployment_with_echo(dir.path(), &kafka, &run).await;
    for _ in 0..2 {
        d.start("gateway", &[]);
        d.start("executor", &["--pool", "default"]);
    }
    let producer = ferrisfx_producer::KafkaProducer::new(&kafka)
        .unwrap()
        .with_topic(format!("{run}.fx.events"));
    let n = 300;
    for i in 0..n {
        producer.emit(&order_event(i)).await.unwrap();
    }
    // Events posted over HTTP take the same path.
    let http = ferrisfx_producer::HttpProducer::new(&d.base);
    for i in n..n + 20 {
        http.emit(&order_event(i)).await.unwrap();
    }
    let all = api
        .wait_succeeded("echo", n + 20, Duration::from_secs(180), || d.all_logs())
        .await;
    check_exactly_once(&all, n + 20);

    // Order within a partition key: the gateways dispatched each key's events in produced order.
    // Timestamps are compared parsed: as text, RFC 3339 with a varying number of fraction digits
    // ("…:34.123Z" against "…:34.123456Z") sorts wrongly within one millisecond.
    let mut by_key: BTreeMap<usize, Vec<(chrono::DateTime<chrono::Utc>, usize)>> = BTreeMap::new();
    for e in &all {
        let seq: usize = e["event_id"].as_str().unwrap()[3..].parse().unwrap();
        if seq < n {
            by_key
                .entry(seq % 10)
                .or_default()
                .push((created_at(e), seq));
        }
    }
    for (key, mut list) in by_key {
        list.sort();
        let seqs: Vec<usize> = list.iter().map(|(_, s)| *s).collect();
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "key-{key} dispatched out of order");
    }
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_gateway_and_an_executor_mid_stream_loses_nothing_and_duplicates_nothing() {
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "distributed kill -9") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("k");
    let (mut d, api) = deployment_with_echo(dir.path(), &kafka, &run).await;
    let gateway = d.start("gateway", &[]);
    let executor = d.start("executor", &[]);
    d.start("gateway", &[]);
    d.start("executor", &[]);
    let producer = ferrisfx_producer::KafkaProducer::new(&kafka)
        .unwrap()
        .with_topic(format!("{run}.fx.events"));
    let n = 300;
    for i in 0..n {
        if i == n / 3 {
            d.processes[gateway].kill9();
            d.processes[executor].kill9();
        }
        if i == 2 * n / 3 {
            d.start("gateway", &[]);
            d.start("executor", &[]);
        }
        producer.emit(&order_event(i)).await.unwrap();
    }
    let all = api
        .wait_succeeded("echo", n, Duration::from_secs(240), || d.all_logs())
        .await;
    check_exactly_once(&all, n);
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_kafka_message_is_dead_lettered_and_does_not_stall_the_partition() {
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "distributed dead-letter") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("d");
    let (bus, mut dead) = bus_and_dead_letters(dir.path(), &kafka, &run).await;
    let (mut d, api) = deployment_with_echo(dir.path(), &kafka, &run).await;
    d.start("gateway", &[]);
    d.start("executor", &[]);
    let garbage = fx_core::event::Message {
        key: Some("key-1".into()),
        headers: vec![
            ("ce_specversion".into(), "1.0".into()),
            ("ce_type".into(), "fx.test.ok".into()),
        ],
        payload: b"{}".to_vec(),
    };
    bus.publish("fx.events", garbage).await.unwrap();
    let producer = ferrisfx_producer::KafkaProducer::new(&kafka)
        .unwrap()
        .with_topic(format!("{run}.fx.events"));
    for i in 0..10 {
        producer.emit(&order_event(i * 10 + 1)).await.unwrap();
    }
    let delivery = tokio::time::timeout(Duration::from_secs(60), dead.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reason = delivery
        .message
        .header("fx-deadletter-reason")
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("\"id\""),
        "reason names the missing attribute: {reason}"
    );
    let all = api
        .wait_succeeded("echo", 10, Duration::from_secs(120), || d.all_logs())
        .await;
    check_exactly_once(&all, 10);
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_function_is_retried_over_kafka_then_dead_lettered_while_its_partition_flows() {
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "distributed retries") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("r");
    let (_bus, mut dead) = bus_and_dead_letters(dir.path(), &kafka, &run).await;
    let (mut d, api) = deployment_with_echo(dir.path(), &kafka, &run).await;
    let flaky = HandlerBuilder::new("flaky")
        .event_type("fx.test.trap")
        .package("misbehave")
        .retry(RetryPolicy {
            max_attempts: 3,
            backoff_ms: 300,
            max_backoff_ms: 2000,
            ..RetryPolicy::default()
        })
        .build();
    api.create_handler(&flaky).await;
    d.start("gateway", &[]);
    d.start("executor", &[]);
    let producer = ferrisfx_producer::KafkaProducer::new(&kafka)
        .unwrap()
        .with_topic(format!("{run}.fx.events"));
    // The trap shares its partition key with echo events sent before and after it: waiting
    // retries must not hold them up.
    let trap = EventBuilderV10::new()
        .id("trap-1")
        .source("/tests/distributed")
        .ty("fx.test.trap")
        .extension("partitionkey", "key-1")
        .build()
        .unwrap();
    producer.emit(&order_event(1)).await.unwrap();
    producer.emit(&trap).await.unwrap();
    for i in 1..10 {
        producer.emit(&order_event(i * 10 + 1)).await.unwrap();
    }
    let all = api
        .wait_succeeded("echo", 10, Duration::from_secs(120), || d.all_logs())
        .await;
    check_exactly_once(&all, 10);

    let delivery = tokio::time::timeout(Duration::from_secs(90), dead.next())
        .await
        .unwrap_or_else(|_| panic!("no dead-letter message in 90 s\n{}", d.all_logs()))
        .unwrap()
        .unwrap();
    assert_eq!(delivery.message.header("fx-attempts"), Some("3"));
    let id = delivery
        .message
        .header("fx-execution-id")
        .unwrap()
        .to_string();
    let detail = api.execution(&id).await;
    let execution = &detail["execution"];
    assert_eq!(execution["status"], "failed", "{detail:#}");
    let history = fx_tests::attempt_statuses(execution);
    assert_eq!(
        history,
        [(1, "retrying"), (2, "retrying"), (3, "failed")],
        "{detail:#}"
    );
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

/// A client of this run's topics on `kafka`, and a reader of its dead-letter topic that
/// subscribed before anything was dead-lettered.
async fn bus_and_dead_letters(
    dir: &std::path::Path,
    kafka: &str,
    run: &str,
) -> (
    std::sync::Arc<dyn fx_core::bus::EventBus>,
    Box<dyn fx_core::bus::Subscription>,
) {
    let bus = fx_core::backends::BackendSettings {
        bus: toml_bus(kafka, run),
        ..Default::default()
    }
    .build(&dir.join("probe"))
    .await
    .unwrap()
    .bus;
    let dead = bus.subscribe("fx.deadletter", "test-reader").await.unwrap();
    (bus, dead)
}

fn toml_bus(kafka: &str, run: &str) -> fx_core::backends::BusSettings {
    toml::from_str(&format!(
        "kind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\n"
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_before_kafka_is_reachable_waits_and_retries_instead_of_exiting() {
    let dir = tempfile::tempdir().unwrap();
    let closed = fx_tests::processes::free_port();
    let toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:{closed}\"\nconnect_timeout_ms = 1000\n"
    );
    let mut d = Deployment::new(dir.path(), &toml);
    let gateway = d.start("gateway", &[]);
    let log = poll_until(
        "the gateway logs two retries",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let log = d.log_of(gateway);
            if log.matches("retrying").count() >= 2 {
                return std::future::ready(Ok(log));
            }
            assert!(
                d.processes[gateway].is_running(),
                "the gateway exited:\n{log}"
            );
            std::future::ready(Err(log))
        },
    )
    .await;
    assert!(
        log.contains(&format!("127.0.0.1:{closed}")),
        "the log names the broker:\n{log}"
    );
    assert!(d.processes[gateway].is_running(), "still waiting for Kafka");
    d.processes[gateway].terminate();
}

/// A tansu broker of the test's own on a fixed port, so that it can be stopped and started
/// again at the same address (in-memory storage: a restart loses topics and offsets).
struct OwnBroker {
    bin: String,
    port: u16,
    child: Option<std::process::Child>,
    log: std::path::PathBuf,
}

impl OwnBroker {
    async fn start(bin: &str, port: u16, dir: &std::path::Path) -> OwnBroker {
        let mut broker = OwnBroker {
            bin: bin.to_string(),
            port,
            child: None,
            log: dir.join("tansu.log"),
        };
        broker.restart().await;
        broker
    }

    async fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = std::process::Command::new(&self.bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting tansu");
        self.child = Some(child);
        let port = self.port;
        eventually(
            &format!("tansu listens on port {port}"),
            Duration::from_secs(20),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        )
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// POSTs one structured CloudEvent to the ingress; returns the status and body.
async fn post_event(base: &str, i: usize) -> (u16, String) {
    let event = json!({
        "specversion": "1.0", "id": format!("ev-{i:05}"), "source": "/tests/outage",
        "type": "fx.test.ok", "datacontenttype": "application/json", "data": {"seq": i},
    });
    let response = reqwest::Client::new()
        .post(format!("{base}/events"))
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_going_away_mid_run_refuses_new_events_and_the_platform_resumes_when_it_is_back() {
    let test = "distributed kafka outage";
    let Some(bin) = testenv::backend("FX_TEST_KAFKA_BIN", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = fx_tests::processes::free_port();
    let mut broker = OwnBroker::start(&bin, port, dir.path()).await;
    let kafka = format!("127.0.0.1:{port}");
    let run = run_id("o");
    // A short delivery timeout, so that an event the broker cannot take is refused quickly.
    let toml = backends_toml(&kafka, &run).replacen(
        "session_timeout_ms = 6000\n",
        "session_timeout_ms = 6000\ndelivery_timeout_ms = 3000\nconnect_timeout_ms = 2000\n",
        1,
    );
    let (mut d, api) = deployment_with_echo_on(dir.path(), &toml).await;
    let gateway = d.start("gateway", &[]);
    let executor = d.start("executor", &[]);
    for i in 0..10 {
        let (status, body) = post_event(&d.base, i).await;
        assert_eq!(status, 202, "event {i}: {body}");
    }
    api.wait_succeeded("echo", 10, Duration::from_secs(120), || d.all_logs())
        .await;

    let noticed = |d: &Deployment, index: usize| {
        d.log_of(index)
            .matches("kafka client error; librdkafka retries")
            .count()
    };
    let before = [noticed(&d, gateway), noticed(&d, executor)];
    broker.stop();
    // An event the broker cannot take is refused with the reason, not accepted and lost.
    let (status, body) = post_event(&d.base, 10).await;
    assert_eq!(status, 503, "while Kafka is down: {body}");
    assert!(
        body.to_lowercase().contains("kafka"),
        "the reason names Kafka: {body}"
    );
    // Gateway and executor notice the outage (their Kafka clients report it) and wait for
    // the broker instead of exiting.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (index, before) in [gateway, executor].into_iter().zip(before) {
        while noticed(&d, index) <= before {
            assert!(
                Instant::now() < deadline,
                "{} did not report the outage:\n{}",
                d.processes[index].name,
                d.log_of(index)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for index in [gateway, executor] {
        assert!(
            d.processes[index].is_running(),
            "{} exited while Kafka was down:\n{}",
            d.processes[index].name,
            d.log_of(index)
        );
    }

    broker.restart().await;
    // The in-memory broker came back empty: create the topics again, as `ferrisfx setup`
    // does on a fresh cluster (a real cluster keeps them across a restart).
    let setup = d.start("setup", &[]);
    poll_until(
        "setup finishes",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let done = !d.processes[setup].is_running();
            std::future::ready(if done { Ok(()) } else { Err(d.log_of(setup)) })
        },
    )
    .await;
    // Clients reconnect on their own; events are accepted again and run.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 10;
    while i < 20 {
        let (status, body) = post_event(&d.base, i).await;
        if status == 202 {
            i += 1;
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "event {i} still refused after Kafka came back: {status} {body}\n{}",
            d.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all = api
        .wait_succeeded("echo", 20, Duration::from_secs(180), || d.all_logs())
        .await;
    check_exactly_once(&all, 20);
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

/// Issue 13.12 as it was seen: server, gateway and executor as processes sharing the embedded
/// registry through the data directory, a flood of events no handler matches, and in each round
/// a handler created (201) and its event posted right after (202). Every such event runs, and
/// the unmatched ones are counted on the gateway's `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_posted_right_after_its_handler_is_created_runs_under_a_flood_of_unmatched_events()
{
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "distributed stale table") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("t");
    let (mut d, api) = deployment_with_echo(dir.path(), &kafka, &run).await;
    let (_, gateway_ops) = d.start_with_ops("gateway", &[]);
    d.start("executor", &["--pool", "default"]);
    let stop = tokio_util::sync::CancellationToken::new();
    let flood = {
        let (producer, stop) = (ferrisfx_producer::HttpProducer::new(&d.base), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.is_cancelled() {
                let event = EventBuilderV10::new()
                    .id(format!("stray-{sent}"))
                    .source("/tests/flood")
                    .ty("fx.test.nobody")
                    .build()
                    .unwrap();
                producer.emit(&event).await.unwrap();
                sent += 1;
                // About 250 events a second: flowing, not a backlog the late events queue behind.
                if sent.is_multiple_of(25) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            sent
        })
    };
    let rounds = 6;
    for round in 0..rounds {
        let handler = HandlerBuilder::new(format!("late-{round}"))
            .filter(Filter::All(vec![
                Filter::type_is("fx.test.ok"),
                Filter::Exact(AttributeMatch {
                    attribute: "subject".into(),
                    value: format!("late-{round}"),
                }),
            ]))
            .package("misbehave")
            .build();
        api.create_handler(&handler).await;
        let event = EventBuilderV10::new()
            .id(format!("late-{round}"))
            .source("/tests/late")
            .ty("fx.test.ok")
            .subject(format!("late-{round}"))
            .data("application/json", json!({"round": round}))
            .build()
            .unwrap();
        ferrisfx_producer::HttpProducer::new(&d.base)
            .emit(&event)
            .await
            .unwrap();
        // Let some of the flood pass between rounds.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for round in 0..rounds {
        api.wait_succeeded(&format!("late-{round}"), 1, Duration::from_secs(60), || {
            d.all_logs()
        })
        .await;
    }
    stop.cancel();
    let strays = flood.await.unwrap();
    assert!(strays >= 150, "the flood sent {strays} events");
    // The gateway counts what matched nothing.
    let metrics = reqwest::get(format!("{gateway_ops}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let unmatched = metrics
        .lines()
        .find(|l| l.starts_with("fx_gateway_events_total") && l.contains("outcome=\"unmatched\""))
        .unwrap_or_else(|| panic!("no unmatched count on /metrics:\n{metrics}"));
    let count: f64 = unmatched.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count > 0.0, "{unmatched}");
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

/// Issue 13.11: log lines are at least once with Elasticsearch too. A gateway whose
/// Elasticsearch is unreachable records execution state in PostgreSQL as usual but commits no
/// log line; killed with `kill -9` during the outage, it loses none: the next gateway (which
/// reaches Elasticsearch) stores every line Kafka acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_during_an_elasticsearch_outage_loses_no_log_line() {
    let test = "distributed log lines survive an elasticsearch outage";
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", test) else {
        return;
    };
    let Some(es) = testenv::backend("FX_TEST_ELASTICSEARCH", test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("l");
    let mut toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\npartitions = 3\nsession_timeout_ms = 6000\n\n"
    );
    if let Ok(url) = std::env::var("FX_TEST_POSTGRES") {
        toml.push_str(&format!(
            "[backends.state]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{run}\"\n\n"
        ));
    }
    toml.push_str(&format!(
        "[backends.sink]\nkind = \"elasticsearch\"\nurl = \"{es}\"\nindex_prefix = \"{run}\"\nflush_interval_ms = 50\nretry_max_backoff_ms = 500\n\n"
    ));
    let mut d = Deployment::new(dir.path(), &toml);
    d.start("server", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    api.upload_example("hello").await;
    let handler = HandlerBuilder::new("greet")
        .event_type("fx.test.greet")
        .package("hello")
        .build();
    api.create_handler(&handler).await;
    // This gateway's Elasticsearch is a port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gateway = d.start_with_env("gateway", &[], &[("FX_BACKENDS__SINK__URL", &dead)]);
    d.start("executor", &["--pool", "default"]);
    let n = 8;
    let http = ferrisfx_producer::HttpProducer::new(&d.base);
    for i in 0..n {
        let event = EventBuilderV10::new()
            .id(format!("greet-{i}"))
            .source("/tests/es-outage")
            .ty("fx.test.greet")
            .data("application/json", json!({"name": format!("n{i}")}))
            .build()
            .unwrap();
        http.emit(&event).await.unwrap();
    }
    // Execution state does not wait for the sink.
    let all = api
        .wait_succeeded("greet", n, Duration::from_secs(90), || d.all_logs())
        .await;
    let ids: Vec<String> = all
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    // The log router has the lines and waits for Elasticsearch, committing nothing.
    log_says(
        &d,
        gateway,
        "the sink has not stored these log lines yet",
        Duration::from_secs(30),
    )
    .await;
    d.processes[gateway].kill9();
    d.start("gateway", &[]);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    for id in &ids {
        loop {
            let response = client
                .post(format!("{es}/{run}-logs-*/_search?allow_no_indices=true"))
                .json(&json!({"size": 0, "track_total_hits": true,
                    "query": {"term": {"execution_id": id}}}))
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap();
            if body["hits"]["total"]["value"].as_u64().unwrap_or(0) > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the log lines of execution {id} were lost\n{}",
                d.all_logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

/// Issue 13.8 on the distributed deployment: an executor compiles the packages of its pool's
/// handlers in the background, so the first event of a handler loads the compiled component
/// from disk instead of paying the compile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_compiles_its_handlers_packages_before_their_first_event() {
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "distributed warm-up") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = run_id("w");
    let (mut d, api) = deployment_with_echo(dir.path(), &kafka, &run).await;
    let executor = d.start("executor", &["--pool", "default"]);
    log_says(
        &d,
        executor,
        "package compiled ahead of its first invocation",
        Duration::from_secs(120),
    )
    .await;
    d.start("gateway", &[]);
    ferrisfx_producer::HttpProducer::new(&d.base)
        .emit(&order_event(1))
        .await
        .unwrap();
    let all = api
        .wait_succeeded("echo", 1, Duration::from_secs(60), || d.all_logs())
        .await;
    let id = all[0]["id"].as_str().unwrap();
    let detail = api.execution(id).await;
    assert_eq!(
        detail["execution"]["attempt_history"][0]["measurements"]["compile_cache"], "disk",
        "{detail:#}"
    );
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}
