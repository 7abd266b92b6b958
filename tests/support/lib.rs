//! Shared fixtures of the end-to-end tests: a platform running in-process on a temporary data
//! directory, an HTTP client of its API, the example packages, and waiting with deadlines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod processes;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrisfx::dev::Platform;
use ferrisfx::settings::Settings;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// A platform (`ferrisfx dev`) running in this process.
pub struct TestPlatform {
    /// Base URL, e.g. `http://127.0.0.1:43117`.
    pub base: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    platform: Option<Platform>,
    shutdown: CancellationToken,
    http: reqwest::Client,
}

/// The (attempt, status) of each finished attempt of an execution as the API shows it.
pub fn attempt_statuses(execution: &Value) -> Vec<(u64, &str)> {
    execution["attempt_history"]
        .as_array()
        .expect("an attempt history")
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().expect("an attempt number"),
                a["status"].as_str().expect("a status"),
            )
        })
        .collect()
}

/// Where the examples are packaged by `infra/scripts/build-examples.sh`.
pub fn example_package(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/dist")
        .join(format!("{name}.fxpkg"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `bash infra/scripts/build-examples.sh` first (the test command does)",
            path.display()
        )
    })
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FX_TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

impl TestPlatform {
    /// Starts a platform on a fresh data directory (without the example unless `example`).
    pub async fn start(data_dir: &Path, example: bool) -> TestPlatform {
        TestPlatform::start_with(Settings {
            data_dir: data_dir.to_path_buf(),
            example,
            ..Settings::default()
        })
        .await
    }

    /// Starts a platform with `settings` (its listen address is replaced by a free port).
    pub async fn start_with(settings: Settings) -> TestPlatform {
        init_logs();
        // As `ferrisfx` does at start: one Prometheus recorder for the process.
        management_server::metrics::install();
        let data_dir = settings.data_dir.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let platform = Platform::start(settings, listener, shutdown.clone())
            .await
            .expect("platform starts");
        TestPlatform {
            base: format!("http://{}", platform.addr),
            data_dir,
            platform: Some(platform),
            shutdown,
            http: reqwest::Client::new(),
        }
    }

    /// The platform's backends (its bus, stores and registry).
    pub fn backends(&self) -> &fx_core::backends::Backends {
        &self.platform.as_ref().expect("platform running").backends
    }

    /// Waits until the gateway matches events against handler revision `revision` (as the
    /// handlers API reports it) or a later one; fails after 30 s.
    pub async fn until_gateway_sees(&self, revision: u64) {
        let platform = self.platform.as_ref().expect("platform running");
        assert!(
            platform
                .gateway_sees(revision, std::time::Duration::from_secs(30))
                .await,
            "the gateway did not see handler revision {revision} within 30 s"
        );
    }

    /// `PUT path` with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        decode(r).await
    }

    /// Stops it and waits until every part has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(p) = self.platform.take() {
            p.wait().await.expect("platform stops cleanly");
        }
    }

    /// `GET path` → (status, JSON or text as a JSON string).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        decode(r).await
    }

    /// `GET path` → (status, body text).
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        decode(r).await
    }

    /// `POST path` with raw bytes and headers.
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        decode(req.send().await.unwrap()).await
    }

    /// Uploads a package archive.
    pub async fn upload(&self, bytes: Vec<u8>) -> (u16, Value) {
        self.post_raw(
            "/api/v1/packages",
            &[("content-type", "application/octet-stream")],
            bytes,
        )
        .await
    }

    /// Creates a handler on events of `event_type`, asserting success.
    pub async fn handler(&self, name: &str, package: &str, event_type: &str, limits: Value) {
        let body = json!({
            "name": name,
            "filter": {"exact": {"attribute": "type", "value": event_type}},
            "package": {"name": package},
            "limits": limits,
        });
        let (status, v) = self.post_json("/api/v1/handlers", &body).await;
        assert_eq!(status, 201, "creating handler {name}: {v}");
    }

    /// Sends a structured-mode CloudEvent, asserting it was accepted.
    pub async fn emit(&self, id: &str, event_type: &str, data: Value) {
        let event = json!({
            "specversion": "1.0", "id": id, "source": "/tests", "type": event_type,
            "datacontenttype": "application/json", "data": data,
        });
        let (status, v) = self
            .post_raw(
                "/events",
                &[("content-type", "application/cloudevents+json")],
                event.to_string().into_bytes(),
            )
            .await;
        assert_eq!(status, 202, "event {id} refused: {v}");
    }

    /// Executions of `handler` (first page of up to 500).
    pub async fn executions(&self, handler: &str) -> Vec<Value> {
        let (status, v) = self
            .get(&format!("/api/v1/executions?handler={handler}&limit=500"))
            .await;
        assert_eq!(status, 200, "{v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `handler` has `count` executions in a terminal state; returns their details.
    pub async fn wait_finished(
        &self,
        handler: &str,
        count: usize,
        deadline: Duration,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let items = self.executions(handler).await;
            let done: Vec<&Value> = items
                .iter()
                .filter(|e| matches!(e["status"].as_str(), Some("succeeded") | Some("failed")))
                .collect();
            if done.len() >= count {
                let mut details = Vec::new();
                for e in done {
                    let (_, d) = self
                        .get(&format!("/api/v1/executions/{}", e["id"].as_str().unwrap()))
                        .await;
                    details.push(d);
                }
                return details;
            }
            assert!(
                start.elapsed() < deadline,
                "handler {handler}: {} of {count} executions finished after {deadline:?}: {items:#?}",
                done.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn decode(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}
