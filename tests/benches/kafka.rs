//! Kafka end to end, with real processes (`ferrisfx server`, gateway, executors) on the
//! broker the test command starts: prints events per second with 1 and 2 executors (trivial
//! function), and produce → recorded-state latency (p50 / p99) at a fixed 1,000 events/s.
//!
//! Run: `eval "$(bash infra/scripts/start-kafka.sh)"; cargo build --release --bin ferrisfx;
//! FX_BENCH_PROFILE=release cargo bench -p fx-tests --bench kafka`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cloudevents::{EventBuilder, EventBuilderV10};
use fx_core::testsupport::{poll_until, HandlerBuilder};
use fx_tests::processes::Deployment;
use fx_tests::Api;
use serde_json::{json, Value};

async fn setup(
    kafka: &str,
    executors: usize,
    tag: &str,
) -> (tempfile::TempDir, Deployment, String) {
    let dir = tempfile::tempdir().unwrap();
    let run = format!("bench{tag}{}", Utc::now().timestamp_micros());
    let toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\npartitions = 4\n"
    );
    let mut d = Deployment::new(dir.path(), &toml);
    d.start("server", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    api.upload_example("misbehave").await;
    let handler = HandlerBuilder::new("echo")
        .event_type("fx.test.ok")
        .package("misbehave")
        .build();
    api.create_handler(&handler).await;
    d.start("gateway", &[]);
    for _ in 0..executors {
        d.start("executor", &[]);
    }
    (dir, d, run)
}

fn event(i: usize) -> cloudevents::Event {
    EventBuilderV10::new()
        .id(format!("b-{i}"))
        .source("/bench")
        .ty("fx.test.ok")
        .time(Utc::now())
        .data("application/json", json!({"i": i}))
        .build()
        .unwrap()
}

/// Waits until `n` executions of `echo` succeeded; returns them.
async fn wait_for(base: &str, n: usize, deadline: Duration) -> Vec<Value> {
    let api = &Api::new(base);
    let what = format!("{n} executions of echo succeed");
    poll_until(&what, deadline, Duration::from_millis(100), || async move {
        let all = api
            .list_executions(&[("handler", "echo"), ("status", "succeeded")])
            .await;
        if all.len() >= n {
            Ok(all)
        } else {
            Err(format!("{} succeeded", all.len()))
        }
    })
    .await
}

async fn throughput(kafka: &str, executors: usize) {
    let (_dir, mut d, run) = setup(kafka, executors, &format!("t{executors}")).await;
    let producer = ferrisfx_producer::KafkaProducer::new(kafka)
        .unwrap()
        .with_topic(format!("{run}.fx.events"));
    producer.emit(&event(usize::MAX)).await.unwrap();
    wait_for(&d.base, 1, Duration::from_secs(120)).await; // warm: compiled, groups joined
    let n = 2000;
    let start = Instant::now();
    let producer = std::sync::Arc::new(producer);
    for batch in (0..n).collect::<Vec<_>>().chunks(200) {
        let tasks: Vec<_> = batch
            .iter()
            .map(|&i| {
                let p = producer.clone();
                tokio::spawn(async move { p.emit(&event(i)).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
    wait_for(&d.base, n + 1, Duration::from_secs(600)).await;
    let secs = start.elapsed().as_secs_f64();
    println!("kafka end to end, {executors} executor(s), 1 gateway: {n} events in {secs:.2} s = {:.0} events/s", n as f64 / secs);
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

async fn latency_at_fixed_rate(kafka: &str) {
    let (_dir, mut d, run) = setup(kafka, 2, "l").await;
    let producer = ferrisfx_producer::KafkaProducer::new(kafka)
        .unwrap()
        .with_topic(format!("{run}.fx.events"));
    producer.emit(&event(usize::MAX)).await.unwrap();
    wait_for(&d.base, 1, Duration::from_secs(120)).await;
    let n = 3000;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let producer = std::sync::Arc::new(producer);
    let mut tasks = Vec::new();
    for i in 0..n {
        tick.tick().await;
        let p = producer.clone();
        tasks.push(tokio::spawn(
            async move { p.emit(&event(i)).await.unwrap() },
        ));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = wait_for(&d.base, n + 1, Duration::from_secs(600)).await;
    let http = reqwest::Client::new();
    let mut latencies = Vec::new();
    for e in all
        .iter()
        .filter(|e| e["event_id"] != format!("b-{}", usize::MAX))
    {
        let v: Value = http
            .get(format!(
                "{}/api/v1/executions/{}",
                d.base,
                e["id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let produced: DateTime<Utc> = v["execution"]["event"]["time"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let finished: DateTime<Utc> = v["execution"]["finished_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        latencies.push((finished - produced).num_microseconds().unwrap_or(0));
    }
    latencies.sort();
    let p =
        |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    println!("kafka end to end at 1,000 events/s, 2 executors: produce -> recorded latency p50 {:.1} ms, p99 {:.1} ms ({} events)", p(0.5), p(0.99), latencies.len());
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(kafka) = std::env::var("FX_TEST_KAFKA") else {
        eprintln!("skipped: set FX_TEST_KAFKA (eval \"$(bash infra/scripts/start-kafka.sh)\")");
        return;
    };
    throughput(&kafka, 1).await;
    throughput(&kafka, 2).await;
    latency_at_fixed_rate(&kafka).await;
}
