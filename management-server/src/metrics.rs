//! `GET /metrics`: the process's Prometheus metrics (names in [`fx_core::telemetry`]), served
//! by the management server and by the operations listener of `ferrisfx gateway|executor|server`.
//!
//! The recorder is process-wide: [`install`] sets it up once (later calls reuse it), and a
//! background thread trims histogram samples every few seconds so memory stays bounded.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use fx_core::sink::OperationalSink;
use fx_core::telemetry;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How often histogram samples are folded into their buckets.
const UPKEEP: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder for this process (once); `None` when another recorder was
/// installed first (the metrics then go there, and `/metrics` says so).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    telemetry::DURATION_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(telemetry::PEAK_MEMORY.into()),
                        telemetry::MEMORY_BUCKETS,
                    )
                });
            let handle = match builder.map(PrometheusBuilder::install_recorder) {
                Ok(Ok(handle)) => handle,
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics stays empty");
                    return None;
                }
            };
            telemetry::describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("fx-metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "metrics upkeep thread not started; histograms are folded at scrape time only");
            }
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text exposition of this process's metrics; gauges read at scrape time
/// (the sink's dropped documents, when the process has connected its sink) are refreshed first.
pub fn render(sink: Option<&dyn OperationalSink>) -> Response {
    let body = match install() {
        Some(handle) => {
            if let Some(sink) = sink {
                metrics::gauge!(telemetry::SINK_DROPPED).set(sink.dropped_total() as f64);
            }
            handle.run_upkeep();
            handle.render()
        }
        None => "# metrics recorder not installed in this process\n".to_string(),
    };
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
