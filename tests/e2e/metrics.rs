//! `GET /metrics`: after a known set of invocations, the Prometheus exposition counts them per
//! handler and status, has their duration histogram, the compile cache's lookups and the
//! sink's dropped documents. The recorder is process-wide, so handler names are unique to
//! this test.

use std::time::Duration;

use fx_tests::{example_package, TestPlatform};
use serde_json::json;

/// The value of the sample `name{labels}` (labels as rendered, in order), if present.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_invocations_by_handler_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    assert_eq!(fx.upload(example_package("misbehave")).await.0, 201);
    let limits = json!({"timeout_ms": 5000});
    fx.handler("metrics-ok", "misbehave", "fx.test.ok", limits.clone())
        .await;
    fx.handler("metrics-trap", "misbehave", "fx.test.trap", limits)
        .await;
    for i in 0..3 {
        fx.emit(&format!("m-ok-{i}"), "fx.test.ok", json!({})).await;
    }
    for i in 0..2 {
        fx.emit(&format!("m-bad-{i}"), "fx.test.trap", json!({}))
            .await;
    }
    fx.wait_finished("metrics-ok", 3, Duration::from_secs(60))
        .await;
    fx.wait_finished("metrics-trap", 2, Duration::from_secs(60))
        .await;

    let (status, text) = fx.get_text("/metrics").await;
    assert_eq!(status, 200);
    let failed = r#"fx_invocations_total{handler="metrics-trap",status="failed"}"#;
    let ok = r#"fx_invocations_total{handler="metrics-ok",status="succeeded"}"#;
    assert_eq!(sample(&text, failed), Some(2.0), "{text}");
    assert_eq!(sample(&text, ok), Some(3.0), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"fx_invocation_failures_total{handler="metrics-trap",kind="trap"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"fx_invocation_duration_seconds_count{handler="metrics-ok"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert!(
        text.contains(r#"fx_invocation_duration_seconds_bucket{handler="metrics-ok",le="0.001"}"#),
        "{text}"
    );
    assert!(
        text.contains("# TYPE fx_invocations_total counter"),
        "{text}"
    );
    assert!(
        text.contains("fx_compile_cache_lookups_total{result="),
        "{text}"
    );
    assert_eq!(sample(&text, "fx_sink_dropped_total"), Some(0.0), "{text}");
    fx.stop().await;
}
