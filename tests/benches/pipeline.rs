//! The pipeline benchmark: events per second and latency through the whole platform, hop by
//! hop, with the load sent by clients that are not the platform's own (reqwest posting
//! binary-mode CloudEvents over HTTP; a plain rdkafka producer writing the Kafka binding's
//! `ce_` headers). Prints its figures.
//!
//! ```text
//! cargo build --release --bin ferrisfx && bash infra/scripts/build-examples.sh
//! FX_BENCH_PROFILE=release cargo bench -p fx-tests --bench pipeline -- dev
//! eval "$(bash infra/scripts/start-kafka.sh)"; eval "$(bash infra/scripts/start-postgres.sh)"
//! FX_BENCH_PROFILE=release cargo bench -p fx-tests --bench pipeline -- kafka
//! ```
//!
//! - `dev`: one `ferrisfx dev` process (embedded bus, SQLite), events posted to `POST /events`
//!   by `FX_BENCH_CONCURRENCY` (32) connections at once.
//! - `kafka`: `ferrisfx server`, `gateway` and two `executor` processes on the broker of
//!   `FX_TEST_KAFKA`, with the state in the PostgreSQL of `FX_TEST_POSTGRES` (SQLite without it),
//!   events produced straight onto `fx.events`.
//!
//! Each path runs three times: a burst of `FX_BENCH_EVENTS` (10,000) events sent as fast as the
//! client can, a steady `FX_BENCH_RATE` (1,000) events per second for `FX_BENCH_SECONDS` (5), and
//! an overload: `FX_BENCH_OVERLOAD` (5 × the burst; 0 skips it) events from
//! `FX_BENCH_OVERLOAD_CONCURRENCY` (1,024) senders at once, more than the platform takes in: the
//! HTTP ingress answers `503` beyond its bound, and the sender retries as a client should. After
//! each run the bench prints every process's peak resident memory (`VmHWM`), so a backlog that
//! grew in memory instead of pushing back would show. The
//! function is `misbehave`'s `fx.test.ok` (it returns at once), so what is measured is the
//! platform. Every event carries the time it was sent (`time`); the hops come from the
//! execution's own timestamps:
//!
//! - sent → created: ingress (or the producer), the bus, matching, recording the execution;
//! - created → started: the invocation on the bus, the executor's queue;
//! - started → finished: the invocation itself (instantiate, run, outcome);
//! - finished → recorded: the state router's lag, from its `fx_router_record_lag_seconds`
//!   histogram (bucket bounds, so "≤").

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use fx_core::testsupport::HandlerBuilder;
use fx_tests::processes::Deployment;
use fx_tests::Api;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::Value;

const EVENT_TYPE: &str = "fx.test.ok";
const HANDLER: &str = "bench";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} is not a number: {v}"))
        })
        .unwrap_or(default)
}

/// How events reach the platform.
enum Sender {
    Http {
        http: reqwest::Client,
        url: String,
        /// Answers `503` or `429` (the ingress pushing back), each retried.
        refused: AtomicU64,
    },
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
}

impl Sender {
    /// Sends event `id`, stamped with the time it is sent; returns how long the send took
    /// (HTTP: until the 202; Kafka: until the broker acknowledged it).
    async fn send(&self, run: &str, n: usize) -> Duration {
        let id = format!("{run}-{n}");
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let body = format!("{{\"n\":{n}}}");
        let started = Instant::now();
        match self {
            Sender::Http { http, url, refused } => loop {
                let response = http
                    .post(url)
                    .header("ce-specversion", "1.0")
                    .header("ce-id", &id)
                    .header("ce-source", "/bench")
                    .header("ce-type", EVENT_TYPE)
                    .header("ce-time", &now)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("posting an event");
                let status = response.status().as_u16();
                if status == 503 || status == 429 {
                    // The platform is full: back off and send the same event again.
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                assert_eq!(status, 202, "{}", response.text().await.unwrap());
                break;
            },
            Sender::Kafka { producer, topic } => {
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "ce_specversion",
                        value: Some("1.0"),
                    })
                    .insert(Header {
                        key: "ce_id",
                        value: Some(id.as_str()),
                    })
                    .insert(Header {
                        key: "ce_source",
                        value: Some("/bench"),
                    })
                    .insert(Header {
                        key: "ce_type",
                        value: Some(EVENT_TYPE),
                    })
                    .insert(Header {
                        key: "ce_time",
                        value: Some(now.as_str()),
                    })
                    .insert(Header {
                        key: "content-type",
                        value: Some("application/json"),
                    });
                let record = FutureRecord::to(topic)
                    .key(&id)
                    .payload(&body)
                    .headers(headers);
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("producing an event");
            }
        }
        started.elapsed()
    }
}

impl Sender {
    /// The sends the platform refused so far (and the sender retried).
    fn refused(&self) -> u64 {
        match self {
            Sender::Http { refused, .. } => refused.load(Ordering::Relaxed),
            Sender::Kafka { .. } => 0,
        }
    }
}

/// A running platform and how to reach it.
struct Platform {
    _dir: tempfile::TempDir,
    deployment: Deployment,
    api: Api,
    sender: Arc<Sender>,
    /// Where the process that runs the state router serves its metrics.
    metrics_url: String,
    label: String,
}

impl Platform {
    async fn dev() -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let mut deployment = Deployment::new(dir.path(), "");
        deployment.start("dev", &[]);
        deployment.wait_ready().await;
        let url = format!("{}/events", deployment.base);
        let sender = Sender::Http {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(1024)
                .build()
                .unwrap(),
            url,
            refused: AtomicU64::new(0),
        };
        let metrics_url = format!("{}/metrics", deployment.base);
        let label = "ferrisfx dev (embedded bus, SQLite)";
        Platform::ready(dir, deployment, sender, metrics_url, label).await
    }

    async fn kafka(kafka: &str) -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let run = format!("pipe{}", Utc::now().timestamp_micros());
        let mut toml = format!(
            "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\npartitions = 4\n\n"
        );
        let store = match std::env::var("FX_TEST_POSTGRES") {
            Ok(url) => {
                toml.push_str(&format!(
                    "[backends.state]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{run}\"\n\n"
                ));
                "PostgreSQL"
            }
            Err(_) => "SQLite (FX_TEST_POSTGRES unset)",
        };
        // `FX_BENCH_KAFKA_EXTRA="fetch.wait.max.ms=10,linger.ms=1"`: librdkafka properties for
        // every client of the platform (the bus's `extra`), to compare tunings.
        if let Ok(extra) = std::env::var("FX_BENCH_KAFKA_EXTRA") {
            toml.push_str("[backends.bus.extra]\n");
            for pair in extra.split(',').filter(|p| !p.is_empty()) {
                let (key, value) = pair
                    .split_once('=')
                    .expect("FX_BENCH_KAFKA_EXTRA: key=value");
                toml.push_str(&format!("{key:?} = {value:?}\n"));
            }
            toml.push('\n');
        }
        let mut deployment = Deployment::new(dir.path(), &toml);
        deployment.start("server", &[]);
        deployment.wait_ready().await;
        let (_, ops) = deployment.start_with_ops("gateway", &[]);
        deployment.start("executor", &[]);
        deployment.start("executor", &[]);
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka)
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("a Kafka producer");
        let sender = Sender::Kafka {
            producer,
            topic: format!("{run}.fx.events"),
        };
        let label = format!("server + gateway + 2 executors on Kafka ({kafka}), state in {store}");
        Platform::ready(dir, deployment, sender, format!("{ops}/metrics"), &label).await
    }

    /// Installs the handler and sends one event through, so that the component is compiled
    /// and every consumer has joined before anything is measured.
    async fn ready(
        dir: tempfile::TempDir,
        deployment: Deployment,
        sender: Sender,
        metrics_url: String,
        label: &str,
    ) -> Platform {
        let api = Api::new(deployment.base.clone());
        api.upload_example("misbehave").await;
        let handler = HandlerBuilder::new(HANDLER)
            .event_type(EVENT_TYPE)
            .package("misbehave")
            .build();
        api.create_handler(&handler).await;
        let platform = Platform {
            _dir: dir,
            deployment,
            api,
            sender: Arc::new(sender),
            metrics_url,
            label: label.to_string(),
        };
        let before = platform.succeeded_count().await;
        platform.sender.send("warm", 0).await;
        platform
            .wait_succeeded(before + 1, Duration::from_secs(120))
            .await;
        platform
    }

    /// The `succeeded` state events the state router has applied (its metric).
    async fn succeeded_count(&self) -> u64 {
        let metrics = self.metrics().await;
        metrics
            .lines()
            .filter(|l| l.starts_with("fx_router_state_events_total{") && l.contains("succeeded"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    async fn metrics(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match reqwest::get(&self.metrics_url).await {
                Ok(response) if response.status().is_success() => {
                    return response.text().await.unwrap()
                }
                // The gateway's listener may not be up yet.
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                other => panic!("reading {}: {other:?}", self.metrics_url),
            }
        }
    }

    /// Waits until the router has applied `count` `succeeded` events; returns when it saw it.
    async fn wait_succeeded(&self, count: u64, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.succeeded_count().await;
            if seen >= count {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "only {seen} of {count} succeeded\n{}",
                self.deployment.all_logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Prints each process's peak resident memory so far.
    fn print_memory(&self) {
        let peaks: Vec<String> = self
            .deployment
            .processes
            .iter()
            .map(|p| match p.peak_rss_kib() {
                Some(kib) => format!("{} {:.0} MiB", p.name, kib as f64 / 1024.0),
                None => format!("{} ?", p.name),
            })
            .collect();
        println!("    peak memory (VmHWM)  {}", peaks.join(", "));
    }

    fn stop(mut self) {
        for process in self.deployment.processes.iter_mut() {
            process.terminate();
        }
    }
}

/// The timestamps of one finished execution, in microseconds since the event was sent.
struct Hops {
    created: i64,
    started: i64,
    finished: i64,
}

fn micros(v: &Value, key: &str) -> DateTime<Utc> {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .parse()
        .unwrap()
}

/// Reads the executions of the events `run`-0 … `run`-(n-1), 32 at a time.
async fn hops(platform: &Platform, run: &str, n: usize) -> Vec<Hops> {
    let all = platform
        .api
        .list_executions(&[("handler", HANDLER), ("text", run)])
        .await;
    assert_eq!(all.len(), n, "executions of run {run}");
    let http = reqwest::Client::new();
    let base = platform.deployment.base.clone();
    stream::iter(all)
        .map(|summary| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let v: Value = http
                    .get(format!(
                        "{base}/api/v1/executions/{}",
                        summary["id"].as_str().unwrap()
                    ))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let e = &v["execution"];
                assert_eq!(e["status"], "succeeded", "{e}");
                let sent = micros(&e["event"], "time");
                let since = |key: &str| (micros(e, key) - sent).num_microseconds().unwrap();
                Hops {
                    created: since("created_at"),
                    started: since("started_at"),
                    finished: since("finished_at"),
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

fn quantile(values: &mut [i64], q: f64) -> f64 {
    values.sort_unstable();
    values[((values.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0
}

fn print_hops(hops: &[Hops]) {
    let mut rows: Vec<(&str, Vec<i64>)> = vec![
        ("sent → created", hops.iter().map(|h| h.created).collect()),
        (
            "created → started",
            hops.iter().map(|h| h.started - h.created).collect(),
        ),
        (
            "started → finished",
            hops.iter().map(|h| h.finished - h.started).collect(),
        ),
        ("sent → finished", hops.iter().map(|h| h.finished).collect()),
    ];
    for (name, values) in rows.iter_mut() {
        let mean = values.iter().sum::<i64>() as f64 / values.len() as f64 / 1000.0;
        println!(
            "    {name:<20} p50 {:>8.2} ms  p99 {:>8.2} ms  mean {mean:>8.2} ms",
            quantile(values, 0.5),
            quantile(values, 0.99)
        );
    }
}

/// The record lag's quantiles from the router's histogram, between two readings: the upper
/// bound of the bucket the quantile falls in.
fn print_record_lag(before: &str, after: &str) {
    let buckets = |text: &str| -> Vec<(f64, f64)> {
        let mut sums: std::collections::BTreeMap<u64, (f64, f64)> = Default::default();
        for line in text
            .lines()
            .filter(|l| l.starts_with("fx_router_record_lag_seconds_bucket{"))
            .filter(|l| l.contains("state=\"succeeded\"") || l.contains("state=\"failed\""))
        {
            let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
                continue;
            };
            let bound: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            let entry = sums.entry(bound.to_bits()).or_insert((bound, 0.0));
            entry.1 += count;
        }
        let mut all: Vec<(f64, f64)> = sums.into_values().collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        all
    };
    let (b, a) = (buckets(before), buckets(after));
    if a.is_empty() {
        println!("    finished → recorded  (the router's histogram is not readable here)");
        return;
    }
    let delta: Vec<(f64, f64)> = a
        .iter()
        .map(|(bound, count)| {
            let old = b.iter().find(|(x, _)| x == bound).map_or(0.0, |(_, c)| *c);
            (*bound, count - old)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, c)| *c);
    let at = |q: f64| {
        delta
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map_or(f64::INFINITY, |(bound, _)| *bound * 1000.0)
    };
    println!(
        "    finished → recorded  p50 ≤ {:>6.1} ms  p99 ≤ {:>6.1} ms  ({} terminal states)",
        at(0.5),
        at(0.99),
        total
    );
}

/// Sends `n` events as fast as `concurrency` senders can; prints what it measured under
/// `name`.
async fn burst(platform: &Platform, name: &str, n: usize, concurrency: usize) {
    let run = format!("{name}{}", Utc::now().timestamp_micros());
    let before = platform.succeeded_count().await;
    let refused_before = platform.sender.refused();
    let metrics_before = platform.metrics().await;
    let start = Instant::now();
    let mut sends: Vec<Duration> = stream::iter(0..n)
        .map(|i| {
            let (sender, run) = (platform.sender.clone(), run.clone());
            async move { sender.send(&run, i).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let sent = start.elapsed();
    let done = platform
        .wait_succeeded(before + n as u64, Duration::from_secs(900))
        .await
        .duration_since(start);
    sends.sort();
    let q = |q: f64| sends[((sends.len() as f64 - 1.0) * q).round() as usize];
    println!("  {name}: {n} events, {concurrency} senders at once");
    println!(
        "    sent (accepted)      {:>8.0} events/s over {:.2?}; one send p50 {:.2?} p99 {:.2?}",
        n as f64 / sent.as_secs_f64(),
        sent,
        q(0.5),
        q(0.99)
    );
    println!(
        "    all recorded         {:>8.0} events/s over {:.2?} (first send → last succeeded); {:.0?} after the last send",
        n as f64 / done.as_secs_f64(),
        done,
        done.saturating_sub(sent)
    );
    let refused = platform.sender.refused() - refused_before;
    if refused > 0 {
        println!("    refused (503/429)    {refused} sends, each sent again; none lost");
    }
    print_hops(&hops(platform, &run, n).await);
    print_record_lag(&metrics_before, &platform.metrics().await);
    platform.print_memory();
}

/// Sends `rate` events per second for `seconds`; prints the latencies.
async fn steady(platform: &Platform, rate: usize, seconds: usize) {
    let run = format!("steady{}", Utc::now().timestamp_micros());
    let n = rate * seconds;
    let before = platform.succeeded_count().await;
    let metrics_before = platform.metrics().await;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for i in 0..n {
        tick.tick().await;
        let (sender, run) = (platform.sender.clone(), run.clone());
        tasks.push(tokio::spawn(async move { sender.send(&run, i).await }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let offered = n as f64 / start.elapsed().as_secs_f64();
    platform
        .wait_succeeded(before + n as u64, Duration::from_secs(900))
        .await;
    println!("  steady: {n} events at {rate}/s (offered {offered:.0}/s)");
    print_hops(&hops(platform, &run, n).await);
    print_record_lag(&metrics_before, &platform.metrics().await);
    platform.print_memory();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "dev".into());
    let n = env_number("FX_BENCH_EVENTS", 10_000);
    let concurrency = env_number("FX_BENCH_CONCURRENCY", 32);
    let rate = env_number("FX_BENCH_RATE", 1_000);
    let seconds = env_number("FX_BENCH_SECONDS", 5);
    let overload = env_number("FX_BENCH_OVERLOAD", 5 * n);
    let overload_concurrency = env_number("FX_BENCH_OVERLOAD_CONCURRENCY", 1_024);
    let platform = match path.as_str() {
        "dev" => Platform::dev().await,
        "kafka" => {
            let Ok(kafka) = std::env::var("FX_TEST_KAFKA") else {
                println!("pipeline kafka: skipped (set FX_TEST_KAFKA: eval \"$(bash infra/scripts/start-kafka.sh)\")");
                return;
            };
            Platform::kafka(&kafka).await
        }
        other => panic!("unknown path {other}: dev or kafka"),
    };
    println!("pipeline: {}", platform.label);
    burst(&platform, "burst", n, concurrency).await;
    steady(&platform, rate, seconds).await;
    if overload > 0 {
        burst(&platform, "overload", overload, overload_concurrency).await;
    }
    if let Sender::Kafka { producer, .. } = platform.sender.as_ref() {
        producer.flush(Duration::from_secs(5)).ok();
    }
    platform.stop();
}
