//! The operations endpoints every process serves: `GET /healthz` (the process is alive) and
//! `GET /readyz` (every backend this part of the platform uses answers a cheap call).
//!
//! The management server answers both on its own port too ([`crate::router`]). The gateway and
//! the executor have no HTTP port of their own, so `ferrisfx gateway|executor|server` start a
//! small listener on `ops.listen` when it is set (off by default; the Helm chart and the
//! compose file set it to `0.0.0.0:9090`). [`router`] is that listener's whole application,
//! with `GET /metrics` ([`crate::metrics`]).
//!
//! Readiness, per part:
//!
//! | part | checks |
//! | --- | --- |
//! | gateway | bus, registry, state, sink (soft) |
//! | executor | bus, packages |
//! | server | bus, registry, packages, state, sink |
//!
//! A soft check that fails leaves the process ready and reports `degraded: <reason>`: the
//! gateway's state router buffers log lines and metrics while the sink is down (and counts what
//! it has to drop in `fx_sink_dropped_total`), so an Elasticsearch outage must not take the
//! gateways out of their Service and stop event ingestion.
//!
//! Each port answers for itself (`ready()` of each port trait; [`fx_core::ready`] runs them
//! concurrently, each bounded by its timeout). Before the process has connected to its backends
//! `/readyz` answers 503 with `connecting`. The Kafka bus checks that a bootstrap broker accepts
//! a TCP connection; the stores answer a lookup of a key that does not exist.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
pub use fx_core::ready::{Readiness, ReadyReport};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The operations listener: the `[ops]` table of the settings file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSettings {
    /// Address of the operations listener (`/healthz`, `/readyz`) of `ferrisfx gateway`,
    /// `executor` and `server`, e.g. `0.0.0.0:9090`. Unset (the default): no listener. `ferrisfx
    /// dev` and the management server answer both paths on their own port in any case.
    pub listen: Option<SocketAddr>,
}

/// What the operations listener serves from: the part's readiness checks, once it has
/// connected to its backends.
#[derive(Clone, Default)]
pub struct Ops {
    readiness: Arc<OnceLock<Readiness>>,
}

impl Ops {
    /// Not connected yet: `/readyz` answers 503.
    pub fn new() -> Ops {
        Ops::default()
    }

    /// The backends are connected: `/readyz` runs `readiness` from now on.
    pub fn connected(&self, readiness: Readiness) {
        let _ = self.readiness.set(readiness);
    }

    /// The readiness of the process: a report, or `None` while connecting.
    pub async fn report(&self) -> ReadyReport {
        match self.readiness.get() {
            Some(readiness) => readiness.report().await,
            None => ReadyReport::not_yet("backends", "connecting to the backends"),
        }
    }
}

/// The operations listener's application.
pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

/// `GET /metrics`: this process's Prometheus metrics.
async fn metrics(State(ops): State<Ops>) -> Response {
    let sink = ops.readiness.get().map(|r| r.backends().sink.clone());
    management_server::metrics::render(sink.as_deref())
}

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(ops): State<Ops>) -> Response {
    management_server::ready_response(ops.report().await)
}

/// Binds `settings.listen` (when set) and serves [`router`] until `shutdown`.
pub async fn start(
    settings: &OpsSettings,
    ops: Ops,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<tokio::task::JoinHandle<anyhow::Result<()>>>> {
    let Some(addr) = settings.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on ops.listen {addr} (is the port in use?)"))?;
    tracing::info!(%addr, "operations listener on /healthz and /readyz");
    Ok(Some(tokio::spawn(serve(listener, ops, shutdown))))
}

/// Serves [`router`] on a bound listener until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    ops: Ops,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router(ops))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("serving the operations listener")
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use axum::body::Body;
    use axum::http::Request;
    use axum::http::StatusCode;
    use bytes::Bytes;
    use fx_core::backends::BackendSettings;
    use fx_core::execution::ExecutionId;
    use fx_core::objects::PackageStore;
    use fx_core::package::PackageDigest;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::process::{readiness, Part};
    use fx_core::backends::Backends;

    async fn get(app: Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn embedded() -> (Backends, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let backends = BackendSettings::default().build(dir.path()).await.unwrap();
        (backends, dir)
    }

    /// A package store whose server is down.
    struct DownPackageStore;

    #[async_trait]
    impl PackageStore for DownPackageStore {
        async fn put(&self, _: &PackageDigest, _: Bytes) -> fx_core::Result<()> {
            Err(fx_core::Error::unavailable(
                "s3 endpoint http://minio:9000 is down",
            ))
        }
        async fn get(&self, _: &PackageDigest) -> fx_core::Result<Bytes> {
            Err(fx_core::Error::unavailable(
                "s3 endpoint http://minio:9000 is down",
            ))
        }
        async fn exists(&self, _: &PackageDigest) -> fx_core::Result<bool> {
            Err(fx_core::Error::unavailable(
                "s3 endpoint http://minio:9000 is down",
            ))
        }
        async fn delete(&self, _: &PackageDigest) -> fx_core::Result<()> {
            Err(fx_core::Error::unavailable(
                "s3 endpoint http://minio:9000 is down",
            ))
        }
    }

    #[tokio::test]
    async fn alive_at_once_and_not_ready_while_connecting() {
        let ops = Ops::new();
        let (status, body) = get(router(ops.clone()), "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        let (status, body) = get(router(ops), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("connecting"), "{body}");
    }

    #[tokio::test]
    async fn ready_when_every_backend_of_the_part_answers() {
        let (backends, _dir) = embedded().await;
        let ops = Ops::new();
        ops.connected(readiness(Part::Server, &backends));
        let (status, body) = get(router(ops), "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let report: ReadyReport = serde_json::from_str(&body).unwrap();
        assert!(report.ready);
        let checked: Vec<_> = report.checks.keys().map(String::as_str).collect();
        assert_eq!(checked, ["bus", "packages", "registry", "sink", "state"]);
    }

    #[tokio::test]
    async fn each_part_checks_the_backends_it_uses() {
        let (backends, _dir) = embedded().await;
        let backends = &backends;
        let names = |part| async move {
            let report = readiness(part, backends).report().await;
            report.checks.into_keys().collect::<Vec<_>>()
        };
        assert_eq!(
            names(Part::Gateway).await,
            ["bus", "registry", "sink", "state"]
        );
        assert_eq!(names(Part::Executor).await, ["bus", "packages"]);
    }

    /// A bus whose brokers are down.
    struct DownBus;

    #[async_trait]
    impl fx_core::bus::EventBus for DownBus {
        async fn publish(&self, _: &str, _: fx_core::event::Message) -> fx_core::Result<()> {
            Err(fx_core::Error::unavailable(
                "no kafka broker of k:9092 accepts connections",
            ))
        }
        async fn subscribe(
            &self,
            _: &str,
            _: &str,
        ) -> fx_core::Result<Box<dyn fx_core::bus::Subscription>> {
            Err(fx_core::Error::unavailable(
                "no kafka broker of k:9092 accepts connections",
            ))
        }
        async fn ready(&self) -> fx_core::Result<()> {
            Err(fx_core::Error::unavailable(
                "no kafka broker of k:9092 accepts connections",
            ))
        }
    }

    #[tokio::test]
    async fn not_ready_when_the_bus_is_down() {
        let (mut backends, _dir) = embedded().await;
        backends.bus = Arc::new(DownBus);
        let ops = Ops::new();
        ops.connected(readiness(Part::Gateway, &backends));
        let (status, body) = get(router(ops), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let report: ReadyReport = serde_json::from_str(&body).unwrap();
        assert!(report.checks["bus"].contains("no kafka broker"), "{body}");
        assert_eq!(report.checks["state"], "ok");
    }

    #[tokio::test]
    async fn not_ready_when_the_package_store_is_down() {
        let (mut backends, _dir) = embedded().await;
        backends.packages = Arc::new(DownPackageStore);
        let ops = Ops::new();
        ops.connected(readiness(Part::Executor, &backends));
        let (status, body) = get(router(ops), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("minio:9000 is down"), "{body}");
    }

    /// A sink that is down, as Elasticsearch in an outage.
    struct DownSink;

    #[async_trait::async_trait]
    impl fx_core::sink::OperationalSink for DownSink {
        async fn write_logs(&self, _: &[fx_core::execution::LogLine]) -> fx_core::Result<()> {
            Err(fx_core::Error::unavailable(
                "elasticsearch at http://es:9200 is down",
            ))
        }
        async fn execution_logs(
            &self,
            _: &ExecutionId,
        ) -> fx_core::Result<Vec<fx_core::execution::LogLine>> {
            Err(fx_core::Error::unavailable(
                "elasticsearch at http://es:9200 is down",
            ))
        }
        async fn handler_logs(
            &self,
            _: &fx_core::sink::LogQuery,
        ) -> fx_core::Result<Vec<fx_core::execution::LogLine>> {
            Err(fx_core::Error::unavailable(
                "elasticsearch at http://es:9200 is down",
            ))
        }
    }

    #[tokio::test]
    async fn a_sink_outage_degrades_the_gateway_but_makes_the_server_unready() {
        let (mut backends, _dir) = embedded().await;
        backends.sink = Arc::new(DownSink);
        let gateway = readiness(Part::Gateway, &backends).report().await;
        assert!(gateway.ready, "{gateway:?}");
        assert!(
            gateway.checks["sink"].starts_with("degraded: ")
                && gateway.checks["sink"].contains("es:9200 is down"),
            "{gateway:?}"
        );
        let server = readiness(Part::Server, &backends).report().await;
        assert!(!server.ready, "{server:?}");
    }

    /// A package store that never answers.
    struct HangingPackageStore;

    #[async_trait]
    impl PackageStore for HangingPackageStore {
        async fn put(&self, _: &PackageDigest, _: Bytes) -> fx_core::Result<()> {
            std::future::pending().await
        }
        async fn get(&self, _: &PackageDigest) -> fx_core::Result<Bytes> {
            std::future::pending().await
        }
        async fn exists(&self, _: &PackageDigest) -> fx_core::Result<bool> {
            std::future::pending().await
        }
        async fn delete(&self, _: &PackageDigest) -> fx_core::Result<()> {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_after_the_timeout() {
        let (mut backends, _dir) = embedded().await;
        backends.packages = Arc::new(HangingPackageStore);
        let report = readiness(Part::Executor, &backends).report().await;
        assert!(!report.ready);
        assert!(
            report.checks["packages"].contains("no answer"),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn the_management_server_answers_both_on_its_own_port() {
        let (mut backends, _dir) = embedded().await;
        let state = |backends: Backends| {
            management_server::AppState::new(backends, management_server::ServerSettings::default())
        };
        let (status, _) = get(
            management_server::router(state(backends.clone())),
            "/healthz",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = get(
            management_server::router(state(backends.clone())),
            "/readyz",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        backends.packages = Arc::new(DownPackageStore);
        let (status, body) = get(management_server::router(state(backends)), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }

    #[test]
    fn the_ops_listener_is_off_unless_configured() {
        assert_eq!(OpsSettings::default().listen, None);
        let settings: OpsSettings = toml_from(r#"listen = "0.0.0.0:9090""#);
        assert_eq!(
            settings.listen,
            Some(SocketAddr::from(([0, 0, 0, 0], 9090)))
        );
    }

    fn toml_from(text: &str) -> OpsSettings {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .unwrap()
    }
}
