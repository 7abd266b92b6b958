//! The state router feeds Elasticsearch: a platform (`ferrisfx dev` in-process) whose sink is
//! the Elasticsearch-API server the test command starts (`FX_TEST_ELASTICSEARCH`) runs
//! functions that succeed and trap; their log lines, one metric per finished attempt and the
//! latest state of each execution arrive in the `fx-logs-*`, `fx-metrics-*` and
//! `fx-executions-*` indices, counted right per handler and status; and a workflow run's
//! latest state and its steps' results arrive in `fx-workflow-runs-*` and
//! `fx-workflow-steps-*`.

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

/// The hits of the index pattern `pattern` that match `query` (at most 100).
async fn hits(url: &str, pattern: &str, query: Value) -> Vec<Value> {
    let response = reqwest::Client::new()
        .post(format!("{url}/{pattern}/_search?allow_no_indices=true"))
        .json(&json!({ "size": 100, "query": query }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["hits"]["hits"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_run_and_its_steps_reach_elasticsearch_in_their_final_state() {
    let Some(url) =
        fx_core::testenv::backend("FX_TEST_ELASTICSEARCH", "e2e elasticsearch workflows")
    else {
        return;
    };
    let prefix = unique("fxe2e");
    let mut es = ElasticsearchSettings::new(url.clone());
    es.index_prefix = prefix.clone();
    es.flush_interval_ms = 50;
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start_with(Settings {
        data_dir: dir.path().to_path_buf(),
        example: false,
        backends: BackendSettings {
            sink: SinkSettings::Elasticsearch(es),
            ..BackendSettings::default()
        },
        ..fx_tests::open_settings()
    })
    .await;
    fx.upload_example("workflow-step").await;
    let workflow = unique("es-flow");
    let body = json!({"name": workflow, "steps": [
        {"name": "a", "package": {"name": "workflow-step"}},
        {"name": "b", "package": {"name": "workflow-step"}, "after": [{"step": "a"}]},
    ]});
    let (status, v) = fx.post_json("/api/v1/workflows", &body).await;
    assert_eq!(status, 201, "creating workflow {body}: {v}");
    let (status, v) = fx
        .post_json(
            &format!("/api/v1/workflows/{workflow}/runs"),
            &json!({"input": {}}),
        )
        .await;
    assert_eq!(status, 201, "starting {workflow}: {v}");
    let run = v["run"].as_str().unwrap().to_string();
    let finished = poll_until(
        &format!("run {run} finishes"),
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async {
            let (status, v) = fx.get(&format!("/api/v1/runs/{run}")).await;
            assert_eq!(status, 200, "{v}");
            if v["run"]["finished_at"].is_string() {
                Ok(v)
            } else {
                Err(format!("{:#}", v["run"]))
            }
        },
    )
    .await;
    assert_eq!(finished["run"]["status"], "succeeded", "{finished:#}");

    let runs = format!("{prefix}-workflow-runs-*");
    let steps = format!("{prefix}-workflow-steps-*");
    let mine = json!({ "term": { "run_id": run.as_str() } });
    let (run_doc, step_docs) = poll_until(
        "Elasticsearch has the run and its two steps, succeeded",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let run_docs = hits(&url, &runs, mine.clone()).await;
            let step_docs = hits(&url, &steps, mine.clone()).await;
            let run_status: Vec<&Value> =
                run_docs.iter().map(|h| &h["_source"]["status"]).collect();
            let step_status: Vec<(&Value, &Value)> = step_docs
                .iter()
                .map(|h| (&h["_source"]["step"], &h["_source"]["status"]))
                .collect();
            let done = run_status == [&json!("succeeded")]
                && step_docs.len() == 2
                && step_docs
                    .iter()
                    .all(|h| h["_source"]["status"] == "succeeded");
            if done {
                Ok((run_docs[0].clone(), step_docs.clone()))
            } else {
                Err(format!(
                    "run documents {run_status:?}, step documents {step_status:?}"
                ))
            }
        },
    )
    .await;
    // The run's document: its id, in the index of the day it started, with its step counts.
    assert_eq!(run_doc["_id"], run.as_str());
    assert_eq!(run_doc["_source"]["workflow"], workflow.as_str());
    assert_eq!(run_doc["_source"]["steps"], 2);
    assert_eq!(run_doc["_source"]["steps_by_status"]["succeeded"], 2);
    assert_eq!(
        run_doc["_source"]["finished_at"],
        finished["run"]["finished_at"]
    );
    assert!(
        run_doc["_source"]["duration_ms"].as_f64().unwrap() > 0.0,
        "{run_doc:#}"
    );
    let created_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(finished["run"]["created_at"].clone()).unwrap();
    assert_eq!(
        run_doc["_index"],
        format!("{prefix}-workflow-runs-{}", created_at.format("%Y.%m.%d"))
    );
    // One document per step, `<run>/<step>/<generation>`, naming the execution it ran.
    let mut ids: Vec<&str> = step_docs
        .iter()
        .map(|h| h["_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [format!("{run}/a/0"), format!("{run}/b/0")]);
    for doc in &step_docs {
        let source = &doc["_source"];
        let name = source["step"].as_str().unwrap();
        let recorded = finished["run"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no step {name} in {finished:#}"));
        assert_eq!(source["executions"], recorded["executions"], "{doc:#}");
        assert_eq!(source["started_at"], recorded["started_at"], "{doc:#}");
        assert_eq!(source["workflow"], workflow.as_str());
    }
    fx.stop().await;
}
