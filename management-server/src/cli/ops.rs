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
//! Each check is bounded by [`CHECK_TIMEOUT`] and they run concurrently. Before the process has
//! connected to its backends `/readyz` answers 503 with `connecting`. The bus check for Kafka
//! opens a TCP connection to a bootstrap broker (the bus port has no side-effect-free call);
//! the stores answer a lookup of a key that does not exist.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fx_core::backends::{Backends, BusSettings};
use fx_core::execution::ExecutionId;
use fx_core::package::PackageDigest;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::process::Part;

/// The start of a failed soft check's outcome.
const DEGRADED: &str = "degraded: ";

/// How long one readiness check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The operations listener: the `[ops]` table of the settings file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSettings {
    /// Address of the operations listener (`/healthz`, `/readyz`) of `ferrisfx gateway`,
    /// `executor` and `server`, e.g. `0.0.0.0:9090`. Unset (the default): no listener. `ferrisfx
    /// dev` and the management server answer both paths on their own port in any case.
    pub listen: Option<SocketAddr>,
}

/// One readiness check: a cheap call to one backend.
type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = fx_core::Result<()>> + Send>> + Send + Sync>;

/// The readiness checks of one part of the platform, by backend name.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: BTreeMap<&'static str, Check>,
    /// Checks whose failure degrades the process without making it unready.
    soft: std::collections::BTreeSet<&'static str>,
    /// The part's operational sink, whose dropped-document count `/metrics` reports.
    sink: Option<Arc<dyn fx_core::sink::OperationalSink>>,
}

/// What `/readyz` answers: whether every check passed, and each check's outcome (`ok` or the
/// reason, which names the backend and never carries a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyReport {
    /// Every check passed.
    pub ready: bool,
    /// Outcome per backend.
    pub checks: BTreeMap<String, String>,
}

impl Readiness {
    /// The checks of `part` over `backends`; `bus` says how to reach the event bus (a Kafka
    /// bus is checked by connecting to a bootstrap broker; `None` skips the bus check, as the
    /// management server's own port does, which does not know the bus settings).
    pub fn for_part(part: Part, backends: &Backends, bus: Option<&BusSettings>) -> Readiness {
        let mut readiness = Readiness {
            sink: Some(backends.sink.clone()),
            ..Readiness::default()
        };
        if let Some(bus) = bus {
            readiness.add("bus", bus_check(bus));
        }
        let uses = |name: &str| match part {
            Part::Gateway => matches!(name, "registry" | "state" | "sink"),
            Part::Executor => matches!(name, "packages"),
            Part::Server => true,
        };
        if uses("registry") {
            let registry = backends.registry.clone();
            readiness.add(
                "registry",
                Arc::new(move || {
                    let registry = registry.clone();
                    Box::pin(async move { registry.table().await.map(|_| ()) })
                }),
            );
        }
        if uses("packages") {
            let packages = backends.packages.clone();
            readiness.add(
                "packages",
                Arc::new(move || {
                    let packages = packages.clone();
                    Box::pin(
                        async move { packages.exists(&PackageDigest::of(b"")).await.map(|_| ()) },
                    )
                }),
            );
        }
        if uses("state") {
            let state = backends.state.clone();
            readiness.add(
                "state",
                Arc::new(move || {
                    let state = state.clone();
                    Box::pin(async move { state.get_execution(&probe_id()).await.map(|_| ()) })
                }),
            );
        }
        if uses("sink") {
            let sink = backends.sink.clone();
            readiness.add(
                "sink",
                Arc::new(move || {
                    let sink = sink.clone();
                    Box::pin(async move { sink.execution_logs(&probe_id()).await.map(|_| ()) })
                }),
            );
            if part == Part::Gateway {
                readiness.soft.insert("sink");
            }
        }
        readiness
    }

    /// Adds (or replaces) the check named `name`.
    pub fn add(&mut self, name: &'static str, check: Check) {
        self.checks.insert(name, check);
    }

    /// Runs every check concurrently, each bounded by [`CHECK_TIMEOUT`].
    pub async fn report(&self) -> ReadyReport {
        let mut tasks = tokio::task::JoinSet::new();
        for (name, check) in &self.checks {
            let future = check();
            let (name, soft) = (*name, self.soft.contains(name));
            tasks.spawn(async move {
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, future).await {
                    Ok(Ok(())) => "ok".to_string(),
                    Ok(Err(e)) => e.chain(),
                    Err(_) => format!("no answer within {} ms", CHECK_TIMEOUT.as_millis()),
                };
                let outcome = if soft && outcome != "ok" {
                    format!("{DEGRADED}{outcome}")
                } else {
                    outcome
                };
                (name, outcome)
            });
        }
        let mut checks = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((name, outcome)) => {
                    checks.insert(name.to_string(), outcome);
                }
                Err(e) => {
                    checks.insert("internal".into(), format!("a readiness check failed: {e}"));
                }
            }
        }
        ReadyReport {
            ready: checks
                .values()
                .all(|outcome| outcome == "ok" || outcome.starts_with(DEGRADED)),
            checks,
        }
    }
}

/// An execution id no execution has: the stores answer "none" after a primary-key lookup.
fn probe_id() -> ExecutionId {
    ExecutionId::derive("ferrisfx-readyz", "probe", "probe")
}

/// The bus check: always ready in process; a Kafka bus when one bootstrap broker accepts a
/// TCP connection.
fn bus_check(bus: &BusSettings) -> Check {
    match bus {
        BusSettings::Embedded { .. } => Arc::new(|| Box::pin(async { Ok(()) })),
        BusSettings::Kafka(kafka) => {
            let brokers: Vec<String> = kafka
                .brokers
                .split(',')
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(str::to_string)
                .collect();
            Arc::new(move || {
                let brokers = brokers.clone();
                Box::pin(async move { any_broker_answers(&brokers).await })
            })
        }
    }
}

async fn any_broker_answers(brokers: &[String]) -> fx_core::Result<()> {
    for broker in brokers {
        if tokio::net::TcpStream::connect(broker.as_str())
            .await
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(fx_core::Error::unavailable(format!(
        "no kafka broker of {} accepts connections",
        brokers.join(",")
    )))
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
            None => ReadyReport {
                ready: false,
                checks: BTreeMap::from([(
                    "backends".to_string(),
                    "connecting to the backends".to_string(),
                )]),
            },
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
    let sink = ops.readiness.get().and_then(|r| r.sink.clone());
    crate::metrics::render(sink.as_deref())
}

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(ops): State<Ops>) -> Response {
    ready_response(ops.report().await)
}

/// 200 with the report when ready, else 503 with it.
pub fn ready_response(report: ReadyReport) -> Response {
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
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
    use bytes::Bytes;
    use fx_core::backends::BackendSettings;
    use fx_core::bus::kafka::KafkaSettings;
    use fx_core::objects::PackageStore;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

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

    /// A port nothing listens on.
    async fn closed_port() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
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
        ops.connected(Readiness::for_part(
            Part::Server,
            &backends,
            Some(&BusSettings::default()),
        ));
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
        let bus = BusSettings::default();
        let names = |part| {
            let readiness = Readiness::for_part(part, &backends, Some(&bus));
            readiness.checks.keys().copied().collect::<Vec<_>>()
        };
        assert_eq!(names(Part::Gateway), ["bus", "registry", "sink", "state"]);
        assert_eq!(names(Part::Executor), ["bus", "packages"]);
    }

    #[tokio::test]
    async fn not_ready_when_the_kafka_brokers_are_down() {
        let (backends, _dir) = embedded().await;
        let bus = BusSettings::Kafka(KafkaSettings::new(closed_port().await.to_string()));
        let ops = Ops::new();
        ops.connected(Readiness::for_part(Part::Gateway, &backends, Some(&bus)));
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
        ops.connected(Readiness::for_part(
            Part::Executor,
            &backends,
            Some(&BusSettings::default()),
        ));
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
    }

    #[tokio::test]
    async fn a_sink_outage_degrades_the_gateway_but_makes_the_server_unready() {
        let (mut backends, _dir) = embedded().await;
        backends.sink = Arc::new(DownSink);
        let bus = BusSettings::default();
        let gateway = Readiness::for_part(Part::Gateway, &backends, Some(&bus))
            .report()
            .await;
        assert!(gateway.ready, "{gateway:?}");
        assert!(
            gateway.checks["sink"].starts_with("degraded: ")
                && gateway.checks["sink"].contains("es:9200 is down"),
            "{gateway:?}"
        );
        let server = Readiness::for_part(Part::Server, &backends, Some(&bus))
            .report()
            .await;
        assert!(!server.ready, "{server:?}");
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_after_the_timeout() {
        let mut readiness = Readiness::default();
        readiness.add(
            "slow",
            Arc::new(|| Box::pin(std::future::pending::<fx_core::Result<()>>())),
        );
        let report = readiness.report().await;
        assert!(!report.ready);
        assert!(report.checks["slow"].contains("no answer"), "{:?}", report);
    }

    #[tokio::test]
    async fn the_management_server_answers_both_on_its_own_port() {
        let (mut backends, _dir) = embedded().await;
        let state =
            |backends: Backends| crate::AppState::new(backends, crate::ServerSettings::default());
        let (status, _) = get(crate::router(state(backends.clone())), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = get(crate::router(state(backends.clone())), "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        backends.packages = Arc::new(DownPackageStore);
        let (status, body) = get(crate::router(state(backends)), "/readyz").await;
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
