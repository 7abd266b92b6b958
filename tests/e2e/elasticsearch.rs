//! The state router feeds Elasticsearch: a platform (`ferrisfx dev` in-process) whose sink is
//! the Elasticsearch-API server the test command starts (`FX_TEST_ELASTICSEARCH`) runs
//! functions that succeed and trap; their log lines, one metric per finished attempt and the
//! latest state of each execution arrive in the `fx-logs-*`, `fx-metrics-*` and
//! `fx-executions-*` indices, counted right per handler and status.

use std::collections::BTreeSet;
use std::time::Duration;

use ferrisfx::settings::Settings;
use fx_core::backends::{BackendSettings, SinkSettings};
use fx_core::sink::elasticsearch::ElasticsearchSettings;
use fx_core::sink::routing::{Destination, StateRouting};
use fx_core::testsupport::{poll_until, unique};
use fx_tests::{example_package, TestPlatform};
use serde_json::{json, Value};

/// Documents of the index pattern `pattern` that match `query`.
async fn count(url: &str, pattern: &str, query: Value) -> u64 {
    let response = reqwest::Client::new()
        .post(format!("{url}/{pattern}/_search?allow_no_indices=true"))
        .json(&json!({ "size": 0, "track_total_hits": true, "query": query }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["hits"]["total"]["value"].as_u64().unwrap_or(0)
}

fn terms(handler: &str, status: &str) -> Value {
    json!({ "bool": { "filter": [
        { "term": { "handler": handler } },
        { "term": { "status": status } },
    ] } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_metrics_and_execution_documents_reach_elasticsearch_through_the_router() {
    let Some(url) = fx_core::testenv::backend("FX_TEST_ELASTICSEARCH", "e2e elasticsearch") else {
        return;
    };
    let prefix = unique("fxe2e");
    let mut es = ElasticsearchSettings::new(url.clone());
    es.index_prefix = prefix.clone();
    es.flush_interval_ms = 50;
    // Finished executions also go to the sink as documents; `started` only to the state store.
    let both = BTreeSet::from([Destination::StateStore, Destination::Sink]);
    let routing = StateRouting {
        succeeded: both.clone(),
        failed: both,
        ..StateRouting::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start_with(Settings {
        data_dir: dir.path().to_path_buf(),
        example: false,
        backends: BackendSettings {
            sink: SinkSettings::Elasticsearch(es),
            routing,
            ..BackendSettings::default()
        },
        ..fx_tests::open_settings()
    })
    .await;
    assert_eq!(fx.upload(example_package("hello")).await.0, 201);
    assert_eq!(fx.upload(example_package("misbehave")).await.0, 201);
    let limits = json!({"timeout_ms": 5000, "memory_mb": 32});
    fx.handler("greet", "hello", "fx.test.es.greet", limits.clone())
        .await;
    fx.handler("trap", "misbehave", "fx.test.trap", limits)
        .await;
    for i in 0..3 {
        fx.emit(
            &format!("greet-{i}"),
            "fx.test.es.greet",
            json!({"name": "es"}),
        )
        .await;
    }
    for i in 0..2 {
        fx.emit(&format!("trap-{i}"), "fx.test.trap", json!({}))
            .await;
    }
    let greeted = fx.wait_finished("greet", 3, Duration::from_secs(60)).await;
    let trapped = fx.wait_finished("trap", 2, Duration::from_secs(60)).await;
    // The API reads log lines back from the sink: Elasticsearch holds exactly these.
    let log_lines: usize = greeted
        .iter()
        .chain(&trapped)
        .map(|e| e["logs"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(
        greeted
            .iter()
            .all(|e| !e["logs"].as_array().unwrap().is_empty()),
        "every greeting logs: {greeted:?}"
    );

    let logs = format!("{prefix}-logs-*");
    let metrics = format!("{prefix}-metrics-*");
    let executions = format!("{prefix}-executions-*");
    let expected = [
        (metrics.as_str(), terms("greet", "succeeded"), 3),
        (metrics.as_str(), terms("trap", "failed"), 2),
        (metrics.as_str(), terms("greet", "failed"), 0),
        (executions.as_str(), terms("greet", "succeeded"), 3),
        (executions.as_str(), terms("trap", "failed"), 2),
        (logs.as_str(), json!({ "match_all": {} }), log_lines as u64),
    ];
    let wanted: Vec<u64> = expected.iter().map(|(_, _, n)| *n).collect();
    poll_until(
        "Elasticsearch has the expected documents",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let mut counts = Vec::new();
            for (pattern, query, _) in &expected {
                counts.push(count(&url, pattern, query.clone()).await);
            }
            if counts == wanted {
                Ok(())
            } else {
                Err(format!("counts {counts:?}, expected {wanted:?} (metrics greet/succeeded, trap/failed, greet/failed; executions greet/succeeded, trap/failed; log lines)"))
            }
        },
    )
    .await;
    fx.stop().await;
}
