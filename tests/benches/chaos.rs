//! Chaos soak of the distributed deployment (issue 13): `ferrisfx server`, two gateways and two
//! executors as processes on Kafka (and PostgreSQL when the test command's one is there), fed
//! events at a steady rate with bad input of every kind mixed in, while gateways, executors,
//! and PostgreSQL are killed at random moments and restarted. At the end it checks:
//!
//! - every event the ingress accepted has exactly one execution, and it is terminal;
//! - every refused event got a reason (a 4xx with a message, or a dead-letter with its header);
//! - no process is stuck (each one answers `/healthz` and is still running);
//! - no process's peak RSS went over the Helm chart's memory limit for it;
//!
//! and prints the figures: events sent, accepted, refused, dead-lettered, kills per kind, and
//! the peak RSS of each process.
//!
//! Run (after `bash infra/scripts/test.sh` once, or with the servers it starts):
//!
//! ```sh
//! source infra/scripts/servers.sh && start_servers
//! cargo build --release --bin ferrisfx
//! FX_BENCH_PROFILE=release FX_SOAK_SECONDS=300 FX_SOAK_RATE=50 \
//!   cargo bench -p fx-tests --bench chaos
//! ```
//!
//! Settings: `FX_SOAK_SECONDS` (default 300), `FX_SOAK_RATE` (events per second, default 50),
//! `FX_SOAK_KILL_EVERY` (seconds between kills, default 20), `FX_SOAK_SEED`, `FX_SOAK_KILLS`
//! (what may be killed, a comma-separated subset of `gateway,executor,postgres,broker`; default
//! all of them), `FX_SOAK_DRAIN_SECONDS` (how long the accepted events may take to settle after
//! the sending stops, default 300).
//!
//! The broker is killed too when the soak can run its own: with `FX_TEST_KAFKA_BIN` (the tansu
//! binary) and `moto_server` on `PATH` (`pip install 'moto[server]'`) it starts tansu with its
//! `s3://` storage engine on a moto server of its own, so a restarted broker still has what it
//! acknowledged (the test command's tansu keeps its log in memory, and a restart of that one
//! would lose it, which no client can make up for). Without them it uses `FX_TEST_KAFKA` and
//! does not kill the broker. That broker is slow (every produce and every offset commit is an
//! object written to a Python S3 server): a few events per second is what it carries, so run
//! broker kills at a low rate with a longer drain, e.g. `FX_SOAK_RATE=3
//! FX_SOAK_DRAIN_SECONDS=900`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use fx_core::bus::{topics, EventBus};
use fx_core::event::Message;
use fx_core::limits::{LimitOverrides, RetryPolicy};
use fx_core::testsupport::{eventually_async, HandlerBuilder};
use fx_tests::processes::Deployment;
use fx_tests::Api;
use serde_json::{json, Value};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one sent event was, and what became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A good event a handler matches (some of them trap, loop or eat memory: they end failed).
    Good,
    /// A bad event over HTTP: the ingress must refuse it with a reason.
    RefusedOverHttp,
    /// A bad message straight on `fx.events`: it must be dead-lettered.
    RawOnKafka,
}

/// The event types the soak handlers match, with how often each is sent (of 20).
const TYPES: &[(&str, u32)] = &[
    ("fx.test.ok", 14),
    ("fx.test.trap", 2),
    ("fx.test.loop", 1),
    ("fx.test.membomb", 1),
    ("fx.test.output-flood", 1),
    ("fx.test.error", 1),
];

/// The memory limits of the Helm chart's containers (`charts/ferrisfx/values.yaml`), in MiB.
const CHART_MEMORY_LIMITS_MIB: &[(&str, u64)] =
    &[("server", 2048), ("gateway", 512), ("executor", 2048)];

struct Soak {
    d: Deployment,
    http: reqwest::Client,
    rng: fastrand::Rng,
    gateways: Vec<(usize, String)>,
    executors: Vec<(usize, String)>,
    peak_rss: BTreeMap<String, u64>,
    kills: BTreeMap<&'static str, u32>,
}

impl Soak {
    fn sample_rss(&mut self) {
        let samples: Vec<(String, Option<u64>)> = self
            .d
            .processes
            .iter()
            .map(|p| {
                let part = p.name.split('-').next().unwrap_or("?").to_string();
                (part, p.peak_rss_kib())
            })
            .collect();
        for (part, kib) in samples {
            self.note_rss(&part, kib);
        }
    }

    fn note_rss(&mut self, part: &str, kib: Option<u64>) {
        if let Some(kib) = kib {
            let peak = self.peak_rss.entry(part.to_string()).or_default();
            *peak = (*peak).max(kib);
        }
    }

    /// Kills one `part` (a gateway or an executor) with SIGKILL and starts another in its place.
    fn kill_a_process(&mut self, part: &'static str) {
        self.sample_rss();
        let gateway = part == "gateway";
        let list = if gateway {
            &mut self.gateways
        } else {
            &mut self.executors
        };
        let at = self.rng.usize(..list.len());
        let (index, _) = list.remove(at);
        self.d.processes[index].kill9();
        let started = self.d.start_with_ops(part, &[]);
        list.push(started);
        *self.kills.entry(part).or_default() += 1;
    }
}

/// A tansu broker of the soak's own, on S3 storage so that it survives SIGKILL.
struct Broker {
    bin: String,
    port: u16,
    bucket: String,
    s3: (String, String, String),
    log: std::path::PathBuf,
    child: Option<std::process::Child>,
    moto: Option<std::process::Child>,
}

impl Broker {
    /// Starts tansu on a spare port with its log in S3: a `moto_server` of its own (from PyPI's
    /// `moto[server]`, started on a spare port when it is on `PATH`). The test command's S3
    /// server (`s3s-fs`) is not used for this: it answers concurrent writes of one key with
    /// `500 InternalError`, and tansu's S3 engine, which rewrites its offset and watermark
    /// objects all the time, then fences its own producers (seen here: every producer of the
    /// deployment failing with `OutOfOrderSequenceNumber` for good).
    async fn start(dir: &std::path::Path, run: &str) -> Option<Broker> {
        let bin = std::env::var("FX_TEST_KAFKA_BIN").ok()?;
        let moto_port = fx_tests::processes::free_port();
        let moto = std::process::Command::new("moto_server")
            .args(["-p", &moto_port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("moto.log")).ok()?)
            .spawn()
            .ok()?;
        let endpoint = format!("http://127.0.0.1:{moto_port}");
        let (access, secret) = ("soak".to_string(), "soak-secret".to_string());
        let bucket = run.to_string();
        let settings = fx_core::objects::s3::S3Settings {
            endpoint: endpoint.clone(),
            region: "us-east-1".into(),
            bucket: bucket.clone(),
            access_key: access.clone(),
            secret_key: secret.clone(),
            prefix: "packages/".into(),
            create_bucket: true,
            ca_file: None,
        };
        // The project's own S3 store creates the bucket, once moto answers.
        let what = format!("moto_server answers (see {}/moto.log)", dir.display());
        eventually_async(&what, Duration::from_secs(30), || async {
            fx_core::objects::s3::S3PackageStore::open(&settings)
                .await
                .is_ok()
        })
        .await;
        let mut broker = Broker {
            bin,
            port: fx_tests::processes::free_port(),
            bucket,
            s3: (endpoint, access, secret),
            log: dir.join("tansu.log"),
            child: None,
            moto: Some(moto),
        };
        broker.spawn().await;
        Some(broker)
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let url = format!("tcp://{}", self.address());
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
            .args(["--storage-engine", &format!("s3://{}/", self.bucket)])
            .env("AWS_ENDPOINT", &self.s3.0)
            .env("AWS_ACCESS_KEY_ID", &self.s3.1)
            .env("AWS_SECRET_ACCESS_KEY", &self.s3.2)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let what = format!("tansu listens (see {})", self.log.display());
        let address = self.address();
        eventually_async(&what, Duration::from_secs(30), || {
            let address = address.clone();
            async move { tokio::net::TcpStream::connect(address).await.is_ok() }
        })
        .await;
    }

    /// SIGKILL, then the same broker again on the same port and storage.
    async fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn().await;
    }

    fn peak_rss_kib(&self) -> Option<u64> {
        fx_tests::processes::peak_rss_kib_of(self.child.as_ref()?.id())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        for mut child in [self.child.take(), self.moto.take()].into_iter().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Kills PostgreSQL the way a crash would (immediate shutdown, no checkpoint) and starts it
/// again with the options it ran with (`pg_ctl restart` reads them back); `pgdata` is what
/// `infra/scripts/start-postgres.sh` exports (the cluster is in its `data/`).
fn kill_postgres(pgdata: &str) -> bool {
    let pg_ctl = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin/pg_ctl"))
        .find(|p| p.exists());
    let Some(pg_ctl) = pg_ctl else {
        return false;
    };
    let data = format!("{pgdata}/data");
    std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(&pg_ctl)
        .args(["-D", &data, "restart", "-m", "immediate", "-w", "-t", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A bad event for the HTTP ingress, and what its refusal must say.
fn bad_http_event(n: usize, kind: usize) -> (String, Vec<u8>, &'static str) {
    let ok =
        |id: &str| json!({"specversion": "1.0", "id": id, "source": "/soak", "type": "fx.test.ok"});
    match kind % 4 {
        0 => {
            let body = ok(&format!("bad-{n}\u{0}nul")).to_string();
            (
                "application/cloudevents+json".into(),
                body.into_bytes(),
                "control",
            )
        }
        1 => (
            "application/cloudevents+json".into(),
            b"{ not json".to_vec(),
            "",
        ),
        2 => {
            let mut event = ok(&format!("bad-{n}"));
            event["Bad-Extension!"] = json!("x");
            (
                "application/cloudevents+json".into(),
                event.to_string().into_bytes(),
                "",
            )
        }
        _ => {
            let mut event = ok(&format!("bad-{n}"));
            event["data"] = json!("x".repeat(2 * 1024 * 1024));
            (
                "application/cloudevents+json".into(),
                event.to_string().into_bytes(),
                "",
            )
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Ok(kafka) = std::env::var("FX_TEST_KAFKA") else {
        println!("chaos soak skipped: FX_TEST_KAFKA is not set (source infra/scripts/servers.sh and run start_servers)");
        return;
    };
    let seconds = setting("FX_SOAK_SECONDS", 300);
    let rate = setting("FX_SOAK_RATE", 50).max(1);
    let kill_every = Duration::from_secs(setting("FX_SOAK_KILL_EVERY", 20).max(2));
    let seed = setting("FX_SOAK_SEED", 1);
    let kills = std::env::var("FX_SOAK_KILLS")
        .unwrap_or_else(|_| "gateway,executor,postgres,broker".into());
    let may_kill = |what: &str| kills.split(',').any(|k| k.trim() == what);
    let pgdata = std::env::var("FX_TEST_POSTGRES_PGDATA")
        .ok()
        .filter(|_| may_kill("postgres"));
    let processes: Vec<&'static str> = ["gateway", "executor"]
        .into_iter()
        .filter(|p| may_kill(p))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let run = format!("soak{}", chrono::Utc::now().timestamp_micros());
    let mut broker = if may_kill("broker") {
        Broker::start(dir.path(), &run).await
    } else {
        None
    };
    let kafka = broker.as_ref().map_or(kafka, Broker::address);
    match &broker {
        Some(b) => println!("broker: tansu on S3 storage at {} (killed too)", b.address()),
        None => println!(
            "broker: {kafka} (not killed: needs FX_TEST_KAFKA_BIN and moto_server on PATH for one the soak can kill)"
        ),
    }
    let mut toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\npartitions = 4\nsession_timeout_ms = 6000\n\n"
    );
    if let Ok(url) = std::env::var("FX_TEST_POSTGRES") {
        toml.push_str(&format!(
            "[backends.state]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{run}\"\n\n[backends.sink]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{run}\"\n\n"
        ));
    }
    let mut d = Deployment::new(dir.path(), &toml);
    d.start("server", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    api.upload_example("misbehave").await;
    for (ty, _) in TYPES {
        let name = format!("soak-{}", ty.trim_start_matches("fx.test."));
        let handler = HandlerBuilder::new(name)
            .event_type(*ty)
            .package("misbehave")
            .limits(LimitOverrides {
                timeout_ms: Some(1000),
                memory_mb: Some(64),
                ..LimitOverrides::default()
            })
            .retry(RetryPolicy {
                max_attempts: 2,
                backoff_ms: 200,
                ..RetryPolicy::default()
            })
            .build();
        api.create_handler(&handler).await;
    }
    let gateways = (0..2).map(|_| d.start_with_ops("gateway", &[])).collect();
    let executors = (0..2).map(|_| d.start_with_ops("executor", &[])).collect();
    let mut soak = Soak {
        d,
        http: api.http,
        rng: fastrand::Rng::with_seed(seed),
        gateways,
        executors,
        peak_rss: BTreeMap::new(),
        kills: BTreeMap::new(),
    };

    let mut settings = fx_core::bus::kafka::KafkaSettings::new(kafka.clone());
    settings.topic_prefix = format!("{run}.");
    let bus = fx_core::bus::kafka::KafkaBus::connect(settings)
        .await
        .unwrap();
    let mut dead = bus
        .subscribe(topics::DEADLETTER, "soak-reader")
        .await
        .unwrap();

    println!(
        "chaos soak: {seconds} s at {rate} events/s, a kill every {kill_every:?} (seed {seed})"
    );
    let started = Instant::now();
    let mut next_kill = started + kill_every;
    let mut sent: HashMap<String, (Kind, &'static str)> = HashMap::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut refusals_without_reason = Vec::new();
    let tick = Duration::from_secs_f64(1.0 / rate as f64);
    let mut n = 0usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        let roll = soak.rng.u32(..100);
        if roll < 3 {
            // Straight on fx.events: not a CloudEvent at all.
            let id = format!("raw-{n}");
            let published = bus
                .publish(
                    topics::EVENTS,
                    Message {
                        key: Some(id.clone()),
                        headers: vec![],
                        payload: format!("garbage {id} \u{0}").into_bytes(),
                    },
                )
                .await;
            match published {
                Ok(()) => {
                    sent.insert(id, (Kind::RawOnKafka, "raw"));
                    *counts.entry("raw on kafka").or_default() += 1;
                }
                // Not acknowledged (the broker was down past the producer's timeout): nothing
                // was accepted, so nothing is owed.
                Err(e) => {
                    eprintln!("publishing raw {id}: {}", e.chain());
                    *counts.entry("raw not acknowledged").or_default() += 1;
                }
            }
        } else if roll < 8 {
            let (content_type, body, _) = bad_http_event(n, soak.rng.usize(..4));
            let r = soak
                .http
                .post(format!("{}/events", soak.d.base))
                .header("content-type", content_type)
                .body(body)
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            match r {
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    if v["error"]["message"].as_str().is_none_or(str::is_empty) {
                        refusals_without_reason.push(format!("{status}: {text}"));
                    }
                    *counts.entry("refused over http").or_default() += 1;
                }
                Ok(r) => {
                    refusals_without_reason.push(format!("a bad event was answered {}", r.status()))
                }
                Err(e) => eprintln!("posting a bad event: {e}"),
            }
            sent.insert(format!("bad-{n}"), (Kind::RefusedOverHttp, "bad"));
        } else {
            let pick = soak.rng.u32(..20);
            let mut acc = 0;
            let ty = TYPES
                .iter()
                .find(|(_, w)| {
                    acc += w;
                    pick < acc
                })
                .map_or("fx.test.ok", |(t, _)| t);
            let id = format!("good-{n}");
            let event = json!({"specversion": "1.0", "id": id, "source": "/soak", "type": ty,
                "datacontenttype": "application/json", "data": {"n": n}});
            let r = soak
                .http
                .post(format!("{}/events", soak.d.base))
                .header("content-type", "application/cloudevents+json")
                .body(event.to_string())
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            match r {
                Ok(r) if r.status().as_u16() == 202 => {
                    sent.insert(id, (Kind::Good, ty));
                    *counts.entry("accepted").or_default() += 1;
                }
                Ok(r) => {
                    // Refused while a backend was down: it must say why.
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap_or_default();
                    if !text.contains("message") {
                        refusals_without_reason.push(format!("{status}: {text}"));
                    }
                    *counts.entry("good refused (backend down)").or_default() += 1;
                }
                Err(e) => {
                    eprintln!("posting {id}: {e}");
                    *counts.entry("good not answered").or_default() += 1;
                }
            }
        }
        n += 1;
        if Instant::now() >= next_kill {
            // A gateway or an executor twice as often as PostgreSQL or the broker.
            let mut choices: Vec<&'static str> = processes.repeat(2);
            choices.extend(pgdata.as_ref().map(|_| "postgres"));
            choices.extend(broker.as_ref().map(|_| "broker"));
            match choices.get(soak.rng.usize(..choices.len().max(1))).copied() {
                Some("broker") => {
                    if let Some(b) = broker.as_mut() {
                        soak.note_rss("broker", b.peak_rss_kib());
                        b.kill_and_restart().await;
                        *soak.kills.entry("broker").or_default() += 1;
                    }
                }
                Some("postgres") => {
                    let pgdata = pgdata.as_deref().unwrap_or_default();
                    if kill_postgres(pgdata) {
                        *soak.kills.entry("postgres").or_default() += 1;
                    } else {
                        eprintln!("killing and restarting PostgreSQL ({pgdata}) failed");
                        *soak.kills.entry("postgres (failed)").or_default() += 1;
                    }
                }
                Some(part) => soak.kill_a_process(part),
                None => {}
            }
            next_kill = Instant::now() + kill_every;
        }
        tokio::time::sleep(tick).await;
    }
    soak.sample_rss();
    println!("sending done after {:?}; draining", started.elapsed());

    // Every accepted event gets exactly one execution, terminal, within the drain.
    let handlers: Vec<String> = TYPES
        .iter()
        .map(|(ty, _)| format!("soak-{}", ty.trim_start_matches("fx.test.")))
        .collect();
    let accepted: Vec<&String> = sent
        .iter()
        .filter(|(_, (k, _))| *k == Kind::Good)
        .map(|(id, _)| id)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(setting("FX_SOAK_DRAIN_SECONDS", 300));
    let (terminal, duplicates, missing) = loop {
        let mut by_event: HashMap<String, Vec<String>> = HashMap::new();
        for handler in &handlers {
            let mut cursor: Option<String> = None;
            loop {
                let mut req = soak
                    .http
                    .get(format!("{}/api/v1/executions", soak.d.base))
                    .query(&[("handler", handler.as_str()), ("limit", "500")]);
                if let Some(c) = &cursor {
                    req = req.query(&[("cursor", c.as_str())]);
                }
                let v: Value = match req.send().await {
                    Ok(r) => r.json().await.unwrap_or(Value::Null),
                    Err(_) => Value::Null,
                };
                for e in v["items"].as_array().cloned().unwrap_or_default() {
                    by_event
                        .entry(e["event_id"].as_str().unwrap_or("").to_string())
                        .or_default()
                        .push(e["status"].as_str().unwrap_or("").to_string());
                }
                match v["next_cursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
        }
        let terminal = accepted
            .iter()
            .filter(|id| {
                by_event
                    .get(id.as_str())
                    .is_some_and(|s| s.len() == 1 && (s[0] == "succeeded" || s[0] == "failed"))
            })
            .count();
        let duplicates = by_event.values().filter(|s| s.len() > 1).count();
        // The first few accepted events not (yet) settled, with the statuses they have.
        let missing: Vec<String> = accepted
            .iter()
            .filter_map(|id| match by_event.get(id.as_str()) {
                None => Some(format!("{id}: no execution")),
                Some(s) if s.len() == 1 && (s[0] == "succeeded" || s[0] == "failed") => None,
                Some(s) => Some(format!("{id}: {s:?}")),
            })
            .take(5)
            .collect();
        if terminal == accepted.len() || Instant::now() > deadline {
            break (terminal, duplicates, missing);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };

    // Raw messages are dead-lettered with a reason.
    let raw = counts.get("raw on kafka").copied().unwrap_or(0);
    let mut dead_lettered = 0u64;
    let mut dead_without_reason = 0u64;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut dead_executions: HashMap<String, u64> = HashMap::new();
    let dead_deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < dead_deadline {
        match tokio::time::timeout(Duration::from_secs(2), dead.next()).await {
            Ok(Ok(Some(delivery))) => {
                dead_lettered += 1;
                match delivery.message.header(topics::REASON_HEADER) {
                    Some(reason) if !reason.is_empty() => {
                        let kind: String = reason.chars().take(48).collect();
                        *reasons.entry(kind).or_default() += 1;
                    }
                    _ => dead_without_reason += 1,
                }
                if let Some(id) = delivery.message.header(topics::EXECUTION_ID_HEADER) {
                    *dead_executions.entry(id.to_string()).or_default() += 1;
                }
            }
            _ => {
                if dead_lettered >= raw {
                    break;
                }
            }
        }
    }

    // No process is stuck: each one still runs and answers /healthz.
    let mut stuck = Vec::new();
    let ops: Vec<(usize, String)> = soak
        .gateways
        .iter()
        .chain(&soak.executors)
        .cloned()
        .collect();
    for (index, base) in ops {
        let alive = soak.d.processes[index].is_running();
        let healthy = soak
            .http
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if !(alive && healthy) {
            stuck.push(soak.d.processes[index].name.clone());
        }
    }
    soak.sample_rss();
    if let Some(b) = &broker {
        soak.note_rss("broker", b.peak_rss_kib());
    }

    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!("| duration | {} s at {rate} events/s |", seconds);
    for (what, count) in &counts {
        println!("| {what} | {count} |");
    }
    println!(
        "| accepted events with exactly one terminal execution | {terminal} of {} |",
        accepted.len()
    );
    println!("| events with more than one execution | {duplicates} |");
    println!("| dead-lettered (all reasons) | {dead_lettered} (raw sent: {raw}; without a reason: {dead_without_reason}) |");
    println!(
        "| executions dead-lettered | {} (more than once: {}) |",
        dead_executions.len(),
        dead_executions.values().filter(|n| **n > 1).count()
    );
    for (reason, count) in &reasons {
        println!(
            "| dead-letter reason `{}…` | {count} |",
            reason.replace('|', "/")
        );
    }
    println!(
        "| refusals without a reason | {} |",
        refusals_without_reason.len()
    );
    for (what, count) in &soak.kills {
        println!("| kills: {what} | {count} |");
    }
    if pgdata.is_none() {
        println!(
            "| kills: postgres | none (not in FX_SOAK_KILLS, or FX_TEST_POSTGRES_PGDATA not set) |"
        );
    }
    if broker.is_none() {
        println!("| kills: broker | skipped (the test command's tansu keeps its log in memory) |");
    }
    for (part, kib) in &soak.peak_rss {
        println!("| peak RSS {part} | {} MiB |", kib / 1024);
    }
    println!("| stuck processes | {} |", stuck.len());

    let mut failures = Vec::new();
    if terminal != accepted.len() {
        failures.push(format!(
            "{} accepted events without exactly one terminal execution (first ones: {missing:?})",
            accepted.len() - terminal
        ));
    }
    if duplicates > 0 {
        failures.push(format!("{duplicates} events ran more than once"));
    }
    if dead_lettered < raw || dead_without_reason > 0 {
        failures.push(format!(
            "{dead_lettered} dead-letters for {raw} raw messages, {dead_without_reason} without a reason"
        ));
    }
    if !refusals_without_reason.is_empty() {
        failures.push(format!(
            "refusals without a reason: {:?}",
            &refusals_without_reason[..refusals_without_reason.len().min(5)]
        ));
    }
    if !stuck.is_empty() {
        failures.push(format!("stuck: {stuck:?}"));
    }
    // Memory stayed under the Helm chart's container limits (what an operator's pods get).
    for (part, limit_mib) in CHART_MEMORY_LIMITS_MIB {
        if let Some(kib) = soak.peak_rss.get(*part) {
            if kib / 1024 > *limit_mib {
                failures.push(format!(
                    "peak RSS of {part} was {} MiB, over the chart's {limit_mib} MiB limit",
                    kib / 1024
                ));
            }
        }
    }
    for p in soak.d.processes.iter_mut() {
        p.terminate();
    }
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        // Left running to be looked into (the topics and offsets are in its moto server).
        if let Some(b) = broker.take() {
            eprintln!(
                "broker left running at {} (storage: {}; stop both with kill {} {})",
                b.address(),
                b.s3.0,
                b.child.as_ref().map_or(0, std::process::Child::id),
                b.moto.as_ref().map_or(0, std::process::Child::id),
            );
            std::mem::forget(b);
        }
        eprintln!("process logs kept in {}", dir.keep().display());
        std::process::exit(1);
    }
    println!("\nchaos soak passed");
}
