//! The Kibana saved objects (`infra/kibana/*.ndjson`) against what the sink installs and
//! writes: every field they use is mapped, and the dashboard's aggregations, run as the
//! Elasticsearch queries Kibana sends for them, count a known set of executions right.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;
use elasticsearch::SearchParts;
use serde_json::{json, Value};

use super::super::mappings::{properties, Family, KeyValueType};
use super::*;
use crate::execution::{CacheLookup, ExecutionStatus, FailureKind};

/// Every saved object of every file in `infra/kibana/`.
fn saved_objects() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/kibana");
    let mut objects = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "ndjson"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no saved objects in {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let object: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), n + 1));
            objects.push(object);
        }
    }
    objects
}

/// A JSON document stored as a string inside a saved object.
fn embedded(object: &Value, pointer: &str) -> Value {
    let text = object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{} has no {pointer}", object["id"]));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{} {pointer}: {e}", object["id"]))
}

/// The saved objects by id, and the index family of each data view.
struct Objects {
    by_id: HashMap<String, Value>,
    families: HashMap<String, Family>,
}

impl Objects {
    fn load() -> Self {
        let mut by_id = HashMap::new();
        let mut families = HashMap::new();
        for object in saved_objects() {
            let id = object["id"].as_str().unwrap().to_string();
            if object["type"] == "index-pattern" {
                let title = object["attributes"]["title"].as_str().unwrap();
                let family = Family::ALL
                    .into_iter()
                    .find(|f| f.pattern("fx") == title)
                    .unwrap_or_else(|| {
                        panic!("data view {id} reads {title}, which the sink never writes")
                    });
                assert_eq!(object["attributes"]["timeFieldName"], "@timestamp");
                families.insert(id.clone(), family);
            }
            assert!(
                by_id.insert(id.clone(), object).is_none(),
                "two objects {id}"
            );
        }
        Objects { by_id, families }
    }

    fn get(&self, id: &str) -> &Value {
        self.by_id
            .get(id)
            .unwrap_or_else(|| panic!("no saved object {id}"))
    }

    /// The family of the data view a visualization or saved search reads.
    fn family_of(&self, object: &Value) -> Family {
        let source = embedded(object, "/attributes/kibanaSavedObjectMeta/searchSourceJSON");
        let ref_name = source["indexRefName"]
            .as_str()
            .unwrap_or_else(|| panic!("{} names no data view", object["id"]));
        let reference = object["references"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == ref_name)
            .unwrap_or_else(|| panic!("{} has no reference {ref_name}", object["id"]));
        assert_eq!(reference["type"], "index-pattern");
        self.families[reference["id"].as_str().unwrap()]
    }

    /// The aggregations of a visualization.
    fn aggs(&self, id: &str) -> Vec<Value> {
        let vis_state = embedded(self.get(id), "/attributes/visState");
        vis_state["aggs"].as_array().unwrap().clone()
    }
}

/// The fields named by a KQL query (`status:failed and handler : "a"`).
fn kql_fields(query: &str) -> Vec<String> {
    let mut fields = Vec::new();
    for (i, _) in query.match_indices(':') {
        let before = query[..i].trim_end();
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '@')))
            .map_or(0, |p| p + 1);
        if start < before.len() {
            fields.push(before[start..].to_string());
        }
    }
    fields
}

#[test]
fn every_field_the_saved_objects_use_is_mapped() {
    let objects = Objects::load();
    let mut checked = 0;
    for object in objects.by_id.values() {
        let id = object["id"].as_str().unwrap();
        let mut fields: Vec<String> = Vec::new();
        match object["type"].as_str().unwrap() {
            "visualization" => {
                for agg in objects.aggs(id) {
                    if let Some(field) = agg["params"]["field"].as_str() {
                        fields.push(field.to_string());
                    }
                }
            }
            "search" => {
                for column in object["attributes"]["columns"].as_array().unwrap() {
                    fields.push(column.as_str().unwrap().to_string());
                }
                for sort in object["attributes"]["sort"].as_array().unwrap() {
                    fields.push(sort[0].as_str().unwrap().to_string());
                }
            }
            "dashboard" => {
                for reference in object["references"].as_array().unwrap() {
                    let target = objects.get(reference["id"].as_str().unwrap());
                    assert_eq!(
                        target["type"], reference["type"],
                        "dashboard panel {reference}"
                    );
                }
                let panels = embedded(object, "/attributes/panelsJSON");
                for panel in panels.as_array().unwrap() {
                    let name = &panel["panelRefName"];
                    assert!(
                        object["references"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|r| &r["name"] == name),
                        "dashboard {id}: panel {name} has no reference"
                    );
                }
                continue;
            }
            "index-pattern" => continue,
            other => panic!("saved object {id} is a {other}, which this test does not check"),
        }
        let family = objects.family_of(object);
        let source = embedded(object, "/attributes/kibanaSavedObjectMeta/searchSourceJSON");
        fields.extend(kql_fields(
            source["query"]["query"].as_str().unwrap_or_default(),
        ));
        for key_values in [KeyValueType::Flattened, KeyValueType::FlatObject] {
            let mapped = properties(family, key_values);
            for field in &fields {
                let top = field.split('.').next().unwrap();
                let ok = mapped.get(field.as_str()).is_some()
                    || (mapped[top]["type"] == "flattened" || mapped[top]["type"] == "flat_object");
                assert!(
                    ok,
                    "{id} uses {field}, which the {} mapping lacks",
                    family.name()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} fields checked");
}

#[test]
fn the_dashboard_shows_executions_durations_error_rate_and_logs() {
    let objects = Objects::load();
    let dashboard = objects.get("ferrisfx-dashboard");
    let panels: BTreeSet<&str> = dashboard["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for id in [
        "ferrisfx-executions-by-handler-and-status",
        "ferrisfx-attempts-by-handler-and-outcome",
        "ferrisfx-duration-percentiles",
        "ferrisfx-error-rate",
        "ferrisfx-log-search",
        "ferrisfx-compile-cache-by-handler",
        "ferrisfx-resources-by-handler",
    ] {
        assert!(panels.contains(id), "the dashboard lacks {id}");
    }
}

/// The Elasticsearch aggregation Kibana sends for a visualization's aggs: bucket aggs nested
/// in order, metric aggs (but `count`, which is each bucket's `doc_count`) in the innermost.
fn es_aggs(aggs: &[Value]) -> Value {
    let metrics: serde_json::Map<String, Value> = aggs
        .iter()
        .filter(|a| a["schema"] == "metric" && a["type"] != "count")
        .map(|a| {
            let body = match a["type"].as_str().unwrap() {
                "percentiles" => json!({ "percentiles": {
                    "field": a["params"]["field"], "percents": a["params"]["percents"] } }),
                other => panic!("metric agg {other} not translated"),
            };
            (a["id"].as_str().unwrap().to_string(), body)
        })
        .collect();
    let buckets: Vec<&Value> = aggs.iter().filter(|a| a["schema"] != "metric").collect();
    let mut inner = Value::Object(metrics);
    for bucket in buckets.iter().rev() {
        let mut body = match bucket["type"].as_str().unwrap() {
            "terms" => json!({ "terms": {
                "field": bucket["params"]["field"], "size": bucket["params"]["size"] } }),
            // Kibana picks the interval from the time range; a day holds the test's data.
            "date_histogram" => json!({ "date_histogram": {
                "field": bucket["params"]["field"], "fixed_interval": "1d", "min_doc_count": 1 } }),
            other => panic!("bucket agg {other} not translated"),
        };
        if inner.as_object().is_some_and(|o| !o.is_empty()) {
            body["aggs"] = inner;
        }
        inner = json!({ bucket["id"].as_str().unwrap(): body });
    }
    inner
}

/// Runs a visualization's aggregations over the sink's indices.
async fn run_visualization(sink: &ElasticsearchSink, objects: &Objects, id: &str) -> Value {
    let object = objects.get(id);
    let family = objects.family_of(object);
    let source = embedded(object, "/attributes/kibanaSavedObjectMeta/searchSourceJSON");
    let kql = source["query"]["query"].as_str().unwrap_or_default();
    // The one KQL form the saved objects use: `field:value`.
    let query = match kql.split_once(':') {
        Some((field, value)) => json!({ "term": { field.trim(): value.trim() } }),
        None => json!({ "match_all": {} }),
    };
    let pattern = family.pattern(sink.cluster.prefix());
    let response = sink
        .cluster
        .client()
        .search(SearchParts::Index(&[&pattern]))
        .body(json!({ "size": 0, "query": query, "aggs": es_aggs(&objects.aggs(id)) }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status_code().is_success(),
        "{id}: {}",
        response.status_code()
    );
    let body: Value = response.json().await.unwrap();
    body["aggregations"].clone()
}

/// `{outer key: {inner key: doc_count}}` of two nested terms aggregations `2` and `3`.
fn counts_by(aggs: &Value) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for outer in aggs["2"]["buckets"].as_array().unwrap() {
        let inner = outer["3"]["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["key"].as_str().unwrap().to_string(),
                    b["doc_count"].as_u64().unwrap(),
                )
            })
            .collect();
        counts.insert(outer["key"].as_str().unwrap().to_string(), inner);
    }
    counts
}

fn expected(rows: &[(&str, &[(&str, u64)])]) -> BTreeMap<String, BTreeMap<String, u64>> {
    rows.iter()
        .map(|(k, inner)| {
            (
                k.to_string(),
                inner.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            )
        })
        .collect()
}

/// A known set of executions, as the router writes them: alpha has three that succeeded at
/// once, one that succeeded on its second attempt and one that failed; beta one of each.
async fn write_known_executions(sink: &ElasticsearchSink) {
    let now = Utc::now();
    // (handler, name, attempts as (outcome, duration ms, failure))
    type Attempt = (ExecutionStatus, f64, Option<FailureKind>);
    let ok = |ms| (ExecutionStatus::Succeeded, ms, None);
    let failed = |ms, kind| (ExecutionStatus::Failed, ms, Some(kind));
    let executions: Vec<(&str, &str, Vec<Attempt>)> = vec![
        ("alpha", "a1", vec![ok(10.0)]),
        ("alpha", "a2", vec![ok(20.0)]),
        ("alpha", "a3", vec![ok(30.0)]),
        (
            "alpha",
            "a4",
            vec![failed(40.0, FailureKind::Timeout), ok(50.0)],
        ),
        ("alpha", "a5", vec![failed(60.0, FailureKind::Trap)]),
        ("beta", "b1", vec![failed(100.0, FailureKind::Trap)]),
        ("beta", "b2", vec![ok(200.0)]),
    ];
    let mut seen_handlers = BTreeSet::new();
    for (handler, name, attempts) in executions {
        let id = ExecutionId::derive("/dashboard", name, handler);
        let mut doc = ExecutionDoc {
            execution_id: id.clone(),
            handler: handler.into(),
            status: ExecutionStatus::Queued,
            attempts: 0,
            event_id: name.into(),
            event_source: "/dashboard".into(),
            event_type: "com.example.dashboard".into(),
            package: None,
            created_at: now,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            failure_kind: None,
            failure_message: None,
        };
        sink.write_executions(std::slice::from_ref(&doc))
            .await
            .unwrap();
        for (n, (status, duration_ms, failure_kind)) in attempts.into_iter().enumerate() {
            let attempt = n as u32 + 1;
            // The first attempt of a handler compiles its package; the others find it in
            // memory. Memory and queue wait grow with the run time.
            let compile_cache = if seen_handlers.insert(handler) {
                CacheLookup::Compiled
            } else {
                CacheLookup::Memory
            };
            doc.status = ExecutionStatus::Running;
            doc.attempts = attempt;
            doc.started_at = Some(now);
            sink.write_executions(std::slice::from_ref(&doc))
                .await
                .unwrap();
            let metric = MetricDoc {
                execution_id: id.clone(),
                handler: handler.into(),
                attempt,
                status,
                at: now,
                duration_ms,
                queue_wait_ms: Some(duration_ms / 10.0),
                failure_kind,
                compile_cache: Some(compile_cache),
                executor: Some("executor-1".into()),
                fuel_used: None,
                peak_memory_bytes: Some((duration_ms as u64) << 16),
            };
            // Redelivered: still one per attempt.
            sink.write_metrics(&[metric.clone(), metric]).await.unwrap();
            doc.status = status;
            doc.finished_at = Some(now);
            doc.duration_ms = Some(duration_ms);
            doc.failure_kind = failure_kind;
            sink.write_executions(std::slice::from_ref(&doc))
                .await
                .unwrap();
        }
    }
    tokio::time::timeout(std::time::Duration::from_secs(30), sink.flush())
        .await
        .unwrap()
        .unwrap();
}

/// Writes the known executions through `sink` and checks every dashboard panel's numbers.
pub async fn dashboard_counts_match(sink: &ElasticsearchSink) {
    let objects = Objects::load();
    write_known_executions(sink).await;

    let by_status =
        run_visualization(sink, &objects, "ferrisfx-executions-by-handler-and-status").await;
    assert_eq!(
        counts_by(&by_status),
        expected(&[
            ("alpha", &[("succeeded", 4), ("failed", 1)]),
            ("beta", &[("failed", 1), ("succeeded", 1)]),
        ])
    );

    let by_outcome =
        run_visualization(sink, &objects, "ferrisfx-attempts-by-handler-and-outcome").await;
    assert_eq!(
        counts_by(&by_outcome),
        expected(&[
            ("alpha", &[("succeeded", 4), ("failed", 2)]),
            ("beta", &[("failed", 1), ("succeeded", 1)]),
        ])
    );

    let durations = run_visualization(sink, &objects, "ferrisfx-duration-percentiles").await;
    let mut handlers = BTreeMap::new();
    for bucket in durations["2"]["buckets"].as_array().unwrap() {
        let values = &bucket["1"]["values"];
        let p = |k: &str| {
            values[k]
                .as_f64()
                .unwrap_or_else(|| panic!("no percentile {k} in {values}"))
        };
        let (p50, p95, p99) = (p("50.0"), p("95.0"), p("99.0"));
        assert!(p50 <= p95 && p95 <= p99, "{bucket}");
        handlers.insert(
            bucket["key"].as_str().unwrap().to_string(),
            (bucket["doc_count"].as_u64().unwrap(), p50, p99),
        );
    }
    // alpha's attempts took 10, 20, 30, 40, 50 and 60 ms; beta's 100 and 200.
    let (alpha_n, alpha_p50, alpha_p99) = handlers["alpha"];
    assert_eq!(alpha_n, 6);
    assert!((30.0..=40.0).contains(&alpha_p50), "alpha p50 {alpha_p50}");
    assert!((50.0..=60.0).contains(&alpha_p99), "alpha p99 {alpha_p99}");
    let (beta_n, beta_p50, beta_p99) = handlers["beta"];
    assert_eq!(beta_n, 2);
    assert!((100.0..=200.0).contains(&beta_p50), "beta p50 {beta_p50}");
    assert!((150.0..=200.0).contains(&beta_p99), "beta p99 {beta_p99}");

    let over_time = run_visualization(sink, &objects, "ferrisfx-duration-over-time").await;
    let days = over_time["2"]["buckets"].as_array().unwrap();
    assert_eq!(
        days.iter()
            .map(|d| d["doc_count"].as_u64().unwrap())
            .sum::<u64>(),
        8
    );

    // Error rate: the failed share of finished attempts, 3 of 8.
    let error_rate = run_visualization(sink, &objects, "ferrisfx-error-rate").await;
    let (mut failed, mut total) = (0, 0);
    for day in error_rate["2"]["buckets"].as_array().unwrap() {
        for outcome in day["3"]["buckets"].as_array().unwrap() {
            let n = outcome["doc_count"].as_u64().unwrap();
            total += n;
            if outcome["key"] == "failed" {
                failed += n;
            }
        }
    }
    assert_eq!((failed, total), (3, 8));

    let kinds = run_visualization(sink, &objects, "ferrisfx-failures-by-kind").await;
    let kinds: BTreeMap<String, u64> = kinds["2"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["key"].as_str().unwrap().to_string(),
                b["doc_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([("timeout".into(), 1), ("trap".into(), 2)])
    );

    let lookups = run_visualization(sink, &objects, "ferrisfx-compile-cache-by-handler").await;
    assert_eq!(
        counts_by(&lookups),
        expected(&[
            ("alpha", &[("compiled", 1), ("memory", 5)]),
            ("beta", &[("compiled", 1), ("memory", 1)]),
        ])
    );

    // alpha's peak memory is 10..60 × 64 KiB, its queue wait 1..6 ms.
    let resources = run_visualization(sink, &objects, "ferrisfx-resources-by-handler").await;
    let alpha = resources["2"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["key"] == "alpha")
        .unwrap_or_else(|| panic!("no alpha bucket: {resources}"));
    let p50 = |agg: &str| alpha[agg]["values"]["50.0"].as_f64().unwrap();
    assert!(
        (30.0 * 65536.0..=40.0 * 65536.0).contains(&p50("1")),
        "{alpha}"
    );
    assert!((3.0..=4.0).contains(&p50("3")), "{alpha}");
}

#[tokio::test]
async fn the_dashboard_counts_a_known_set_of_executions_right() {
    let Some(settings) =
        settings("elasticsearch::the_dashboard_counts_a_known_set_of_executions_right")
    else {
        return;
    };
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    dashboard_counts_match(&sink).await;
    assert_eq!(sink.rejected_total(), 0);
}

#[tokio::test]
async fn the_log_search_finds_lines_by_its_columns_newest_first() {
    let Some(settings) = settings("elasticsearch::the_log_search") else {
        return;
    };
    let objects = Objects::load();
    let search = objects.get("ferrisfx-log-search");
    assert_eq!(objects.family_of(search), Family::Logs);
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let id = execution("log-search");
    let mut lines: Vec<LogLine> = (0..3).map(|seq| line(&id, 1, seq)).collect();
    for (n, line) in lines.iter_mut().enumerate() {
        line.at += chrono::Duration::milliseconds(n as i64);
    }
    sink.write_logs(&lines).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), sink.flush())
        .await
        .unwrap()
        .unwrap();
    let sort: Vec<Value> = search["attributes"]["sort"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!({ s[0].as_str().unwrap(): s[1] }))
        .collect();
    let pattern = Family::Logs.pattern(sink.cluster.prefix());
    let response = sink
        .cluster
        .client()
        .search(SearchParts::Index(&[&pattern]))
        .body(json!({ "query": { "term": { "execution_id": id.as_str() } }, "sort": sort }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let hits = body["hits"]["hits"].as_array().unwrap();
    let seqs: Vec<u64> = hits
        .iter()
        .map(|h| h["_source"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 1, 0]);
    for column in search["attributes"]["columns"].as_array().unwrap() {
        let column = column.as_str().unwrap();
        assert!(
            !hits[0]["_source"][column].is_null(),
            "log documents lack column {column}"
        );
    }
}

#[tokio::test]
async fn the_workflow_searches_find_runs_and_steps_newest_first_with_their_columns() {
    use crate::workflow::run::{RunStatus, StepStatus};
    let Some(settings) = settings("elasticsearch::the_workflow_searches") else {
        return;
    };
    let objects = Objects::load();
    let runs_search = objects.get("ferrisfx-workflow-run-search");
    let steps_search = objects.get("ferrisfx-workflow-step-search");
    assert_eq!(objects.family_of(runs_search), Family::WorkflowRuns);
    assert_eq!(objects.family_of(steps_search), Family::WorkflowSteps);
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let now = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    let workflow = crate::testsupport::unique("kibana-flow");
    // Two runs a second apart; the first failed at its step b.
    let older = run_doc(
        &workflow,
        now - chrono::Duration::seconds(1),
        RunStatus::Failed,
    );
    let newer = run_doc(&workflow, now, RunStatus::Succeeded);
    let steps = [
        step_doc(&older, "a", 0, StepStatus::Succeeded, Some(0)),
        step_doc(&older, "b", 0, StepStatus::Failed, Some(100)),
        step_doc(&newer, "a", 0, StepStatus::Succeeded, Some(0)),
        step_doc(&newer, "b", 0, StepStatus::Succeeded, Some(100)),
    ];
    sink.write_workflow_docs(&[older.clone(), newer.clone()], &steps)
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), sink.flush())
        .await
        .unwrap()
        .unwrap();

    for (search, family, expected) in [
        (
            runs_search,
            Family::WorkflowRuns,
            vec![
                (newer.run_id.as_str(), "succeeded"),
                (older.run_id.as_str(), "failed"),
            ],
        ),
        (
            steps_search,
            Family::WorkflowSteps,
            vec![
                (newer.run_id.as_str(), "succeeded"),
                (newer.run_id.as_str(), "succeeded"),
                (older.run_id.as_str(), "failed"),
                (older.run_id.as_str(), "succeeded"),
            ],
        ),
    ] {
        let id = search["id"].as_str().unwrap();
        let sort: Vec<Value> = search["attributes"]["sort"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| json!({ s[0].as_str().unwrap(): s[1] }))
            .collect();
        let pattern = family.pattern(sink.cluster.prefix());
        let response = sink
            .cluster
            .client()
            .search(SearchParts::Index(&[&pattern]))
            .body(json!({
                "query": { "term": { "workflow": workflow.as_str() } },
                "sort": sort,
            }))
            .send()
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let hits = body["hits"]["hits"].as_array().unwrap();
        let found: Vec<(&str, &str)> = hits
            .iter()
            .map(|h| {
                (
                    h["_source"]["run_id"].as_str().unwrap(),
                    h["_source"]["status"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(found, expected, "{id}");
        // Every column shows something in some document (`reason` only for a failed step).
        for column in search["attributes"]["columns"].as_array().unwrap() {
            let column = column.as_str().unwrap();
            assert!(
                hits.iter().any(|h| !h["_source"][column].is_null()),
                "{id}: no document has column {column}"
            );
        }
    }
    assert_eq!(sink.rejected_total(), 0);
}
