//! Shared fixtures of the end-to-end tests: a platform running in-process on a temporary data
//! directory, a client of its HTTP API with the waits on executions ([`Api`]), and the example
//! packages.

// Only for this package's tests and benches, which build it with the feature.
#![cfg(feature = "testsuite")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
pub mod processes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrisfx::dev::Platform;
use ferrisfx::settings::Settings;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use api::Api;

/// A platform (`ferrisfx dev`) running in this process; it dereferences to the client of its
/// API ([`Api`], whose `base` is its base URL).
pub struct TestPlatform {
    /// Its data directory.
    pub data_dir: PathBuf,
    api: Api,
    platform: Option<Platform>,
    shutdown: CancellationToken,
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

/// The default settings with authentication off (allowed: the tests listen on loopback), for
/// every test but those of authentication.
pub fn open_settings() -> Settings {
    let mut settings = Settings::default();
    settings.server.auth.enabled = false;
    settings
}

impl TestPlatform {
    /// Starts a platform on a fresh data directory (without the example unless `example`).
    pub async fn start(data_dir: &Path, example: bool) -> TestPlatform {
        TestPlatform::start_with(Settings {
            data_dir: data_dir.to_path_buf(),
            example,
            ..open_settings()
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
            api: Api::new(format!("http://{}", platform.addr)),
            data_dir,
            platform: Some(platform),
            shutdown,
        }
    }

    /// With authentication on: the local admin's API token `ferrisfx dev` made at start.
    pub fn admin_token(&self) -> Option<String> {
        self.platform.as_ref().and_then(|p| p.admin_token.clone())
    }

    /// The platform's backends (its bus, stores and registry).
    pub fn backends(&self) -> &fx_core::backends::Backends {
        &self.platform.as_ref().expect("platform running").backends
    }

    /// Waits until the gateway matches events against handler revision `revision` (as the
    /// handlers API reports it) or a later one; fails after 30 s.
    pub async fn until_gateway_sees(&self, revision: u64) {
        self.until_gateway_sees_within(revision, Duration::from_secs(30))
            .await;
    }

    /// [`TestPlatform::until_gateway_sees`], failing after `within`.
    pub async fn until_gateway_sees_within(&self, revision: u64, within: Duration) {
        let platform = self.platform.as_ref().expect("platform running");
        assert!(
            platform.gateway_sees(revision, within).await,
            "the gateway did not see handler revision {revision} within {within:?}"
        );
    }

    /// Sends the spans its parts have ended so far to the OTLP endpoint of its settings.
    pub async fn flush_traces(&self) {
        let platform = self.platform.as_ref().expect("platform running");
        platform.traces.flush().await;
    }

    /// Stops it and waits until every part has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(p) = self.platform.take() {
            p.wait().await.expect("platform stops cleanly");
        }
    }
}

impl std::ops::Deref for TestPlatform {
    type Target = Api;

    /// Its API client: `fx.get(…)`, `fx.executions(…)`, `fx.wait_finished(…)`.
    fn deref(&self) -> &Api {
        &self.api
    }
}
