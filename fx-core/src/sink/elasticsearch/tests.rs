//! The Elasticsearch sink against the server the test command starts (`FX_TEST_ELASTICSEARCH`,
//! osmem-server), against servers the tests start and stop themselves (from
//! `FX_TEST_ELASTICSEARCH_BIN`) to take Elasticsearch away, and against a real cluster when
//! `FX_TEST_ELASTICSEARCH_REAL` gives one (optional, also under `CI=true`). Every test writes
//! under its own index prefix.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use elasticsearch::indices::{IndicesGetIndexTemplateParts, IndicesGetMappingParts};
use elasticsearch::SearchParts;
use serde_json::{json, Value};

use super::mappings::Family;
use super::requests::Cluster;
use super::*;
use crate::execution::{ExecutionStatus, LogLevel};
use crate::testsupport::{eventually, eventually_async, unique};

mod kibana;
mod tls;

/// A prefix no other test (or run) uses.
fn fresh_prefix() -> String {
    unique("fxt")
}

/// Settings for the test server, quick to flush, or `None` (skipped) without one.
fn settings(test: &str) -> Option<ElasticsearchSettings> {
    let url = crate::testenv::backend("FX_TEST_ELASTICSEARCH", test)?;
    Some(quick(ElasticsearchSettings::new(url)))
}

fn quick(mut settings: ElasticsearchSettings) -> ElasticsearchSettings {
    settings.index_prefix = fresh_prefix();
    settings.flush_interval_ms = 50;
    settings.retry_initial_backoff_ms = 50;
    settings.retry_max_backoff_ms = 200;
    settings.request_timeout_ms = 2_000;
    settings
}

/// Waits until the sink has counted `at_least` requests that could not reach the cluster.
async fn failed_requests(sink: &ElasticsearchSink, at_least: u64) {
    let what = format!("{at_least} requests failed");
    eventually(&what, Duration::from_secs(30), || {
        sink.unavailable_total() >= at_least
    })
    .await;
}

async fn flushed(sink: &ElasticsearchSink) {
    tokio::time::timeout(Duration::from_secs(30), sink.flush())
        .await
        .expect("flush did not finish within 30 s")
        .unwrap();
}

fn line(id: &ExecutionId, attempt: u32, seq: u32) -> LogLine {
    LogLine {
        execution_id: id.clone(),
        handler: "es-test".into(),
        attempt,
        seq,
        at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap(),
        level: LogLevel::Info,
        message: format!("line {seq}"),
        fields: [("k".to_string(), format!("v{seq}"))].into(),
    }
}

fn execution(name: &str) -> ExecutionId {
    ExecutionId::derive(&format!("/es-test/{}", fresh_prefix()), name, "es-test")
}

/// Documents of a family under `prefix` matching `query`, counted by a search.
async fn count(cluster: &Cluster, family: Family, query: Value) -> u64 {
    let pattern = family.pattern(cluster.prefix());
    let response = cluster
        .client()
        .search(SearchParts::Index(&[&pattern]))
        .allow_no_indices(true)
        .body(json!({ "size": 0, "track_total_hits": true, "query": query }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["hits"]["total"]["value"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let Some(settings) = settings("elasticsearch::passes_the_conformance_suite") else {
        return;
    };
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    crate::sink::testsuite::run_aging_out_by_itself(&sink).await;
    // The suite again, once everything is indexed: reads come from the cluster alone.
    flushed(&sink).await;
    crate::sink::testsuite::run_aging_out_by_itself(&sink).await;
    assert_eq!(sink.dropped_total(), 0);
    assert_eq!(sink.rejected_total(), 0);
}

#[tokio::test]
async fn passes_the_conformance_suite_on_a_real_cluster() {
    let test = "elasticsearch::passes_the_conformance_suite_on_a_real_cluster";
    let Some(url) = crate::testenv::optional_backend("FX_TEST_ELASTICSEARCH_REAL", test) else {
        return;
    };
    let mut settings = quick(ElasticsearchSettings::new(url));
    settings.username = std::env::var("FX_TEST_ELASTICSEARCH_REAL_USERNAME").ok();
    settings.password = std::env::var("FX_TEST_ELASTICSEARCH_REAL_PASSWORD").ok();
    settings.api_key = std::env::var("FX_TEST_ELASTICSEARCH_REAL_API_KEY").ok();
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    crate::sink::testsuite::run_aging_out_by_itself(&sink).await;
    flushed(&sink).await;
    crate::sink::testsuite::run_aging_out_by_itself(&sink).await;
    kibana::dashboard_counts_match(&sink).await;
    assert_eq!(sink.rejected_total(), 0);
}

#[tokio::test]
async fn templates_with_explicit_mappings_are_installed_on_start() {
    let Some(settings) = settings("elasticsearch::templates_are_installed_on_start") else {
        return;
    };
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let prefix = &settings.index_prefix;
    for family in Family::ALL {
        let name = family.template_name(prefix);
        let response = sink
            .cluster
            .client()
            .indices()
            .get_index_template(IndicesGetIndexTemplateParts::Name(&name))
            .send()
            .await
            .unwrap();
        assert!(
            response.status_code().is_success(),
            "template {name} missing"
        );
        let body: Value = response.json().await.unwrap();
        let template = &body["index_templates"][0]["index_template"];
        assert_eq!(template["index_patterns"][0], family.pattern(prefix));
        // Each family's key field is a keyword.
        let key = match family {
            Family::Audit => "principal",
            _ => "execution_id",
        };
        assert_eq!(
            template["template"]["mappings"]["properties"][key]["type"], "keyword",
            "{name}"
        );
    }
    // An index created by a write takes the template's mappings.
    let id = execution("mapped");
    let written = line(&id, 1, 0);
    sink.write_logs(std::slice::from_ref(&written))
        .await
        .unwrap();
    flushed(&sink).await;
    let index = Family::Logs.index(prefix, written.at);
    let response = sink
        .cluster
        .client()
        .indices()
        .get_mapping(IndicesGetMappingParts::Index(&[&index]))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let properties = &body[&index]["mappings"]["properties"];
    assert_eq!(properties["execution_id"]["type"], "keyword");
    assert_eq!(properties["seq"]["type"], "integer");
    assert_eq!(properties["@timestamp"]["type"], "date");
}

#[tokio::test]
async fn writes_are_sent_when_a_batch_is_full_or_has_waited_the_flush_interval() {
    let Some(mut settings) = settings("elasticsearch::writes_are_batched") else {
        return;
    };
    settings.batch_max_docs = 5;
    settings.flush_interval_ms = 3_600_000;
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let id = execution("batched");
    let lines: Vec<LogLine> = (0..5).map(|seq| line(&id, 1, seq)).collect();
    sink.write_logs(&lines[..4]).await.unwrap();
    // Neither full nor due: nothing is sent, and readers still see the lines.
    assert_eq!(sink.buffered(), 4);
    assert_eq!(sink.execution_logs(&id).await.unwrap(), lines[..4]);
    let query = json!({ "term": { "execution_id": id.as_str() } });
    assert_eq!(count(&sink.cluster, Family::Logs, query.clone()).await, 0);
    // The fifth fills the batch: it goes without a flush.
    sink.write_logs(&lines[4..]).await.unwrap();
    eventually_async("a full batch is sent", Duration::from_secs(10), || {
        let (cluster, query) = (&sink.cluster, query.clone());
        async move { count(cluster, Family::Logs, query).await >= 5 }
    })
    .await;
    assert_eq!(sink.buffered(), 0);
    drop(sink);

    // With a short interval, one line goes on its own, without a flush.
    settings.batch_max_docs = 1_000;
    settings.flush_interval_ms = 100;
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    // The flusher has gone idle on an empty buffer (no deadline to wait for).
    flushed(&sink).await;
    tokio::task::yield_now().await;
    let other = execution("timed");
    sink.write_logs(&[line(&other, 1, 0)]).await.unwrap();
    let query = json!({ "term": { "execution_id": other.as_str() } });
    eventually_async(
        "a line is sent after the flush interval",
        Duration::from_secs(10),
        || {
            let (cluster, query) = (&sink.cluster, query.clone());
            async move { count(cluster, Family::Logs, query).await >= 1 }
        },
    )
    .await;
}

#[tokio::test]
async fn metrics_are_counted_once_and_executions_keep_their_latest_state() {
    let Some(settings) = settings("elasticsearch::metrics_and_executions") else {
        return;
    };
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let id = execution("doc");
    let metric = MetricDoc {
        execution_id: id.clone(),
        handler: "es-test".into(),
        attempt: 1,
        status: ExecutionStatus::Succeeded,
        at: Utc::now(),
        duration_ms: 12.5,
        queue_wait_ms: Some(3.5),
        failure_kind: None,
        compile_cache: Some(crate::execution::CacheLookup::Disk),
        executor: Some("executor-es".into()),
        fuel_used: None,
        peak_memory_bytes: Some(1 << 20),
    };
    sink.write_metrics(&[metric.clone(), metric.clone()])
        .await
        .unwrap();
    sink.write_metrics(&[metric]).await.unwrap();
    let mut doc = ExecutionDoc {
        execution_id: id.clone(),
        handler: "es-test".into(),
        status: ExecutionStatus::Running,
        attempts: 1,
        event_id: "1".into(),
        event_source: "/es-test".into(),
        event_type: "com.example.test".into(),
        package: None,
        created_at: Utc::now(),
        started_at: Some(Utc::now()),
        finished_at: None,
        duration_ms: None,
        failure_kind: None,
        failure_message: None,
    };
    sink.write_executions(std::slice::from_ref(&doc))
        .await
        .unwrap();
    flushed(&sink).await;
    doc.status = ExecutionStatus::Succeeded;
    doc.finished_at = Some(Utc::now());
    doc.duration_ms = Some(12.5);
    sink.write_executions(&[doc]).await.unwrap();
    flushed(&sink).await;

    let by_id = json!({ "term": { "execution_id": id.as_str() } });
    assert_eq!(
        count(&sink.cluster, Family::Metrics, by_id.clone()).await,
        1
    );
    assert_eq!(
        count(&sink.cluster, Family::Executions, by_id.clone()).await,
        1
    );
    // The executor's measurements are searchable fields.
    let measured = json!({ "bool": { "filter": [
        by_id.clone(),
        { "term": { "compile_cache": "disk" } },
        { "term": { "executor": "executor-es" } },
        { "range": { "peak_memory_bytes": { "gte": 1048576 } } },
        { "range": { "queue_wait_ms": { "gt": 3.0 } } },
    ] } });
    assert_eq!(count(&sink.cluster, Family::Metrics, measured).await, 1);
    let succeeded = json!({ "bool": { "filter": [by_id, { "term": { "status": "succeeded" } }] } });
    assert_eq!(count(&sink.cluster, Family::Executions, succeeded).await, 1);
    assert_eq!(sink.rejected_total(), 0);
}

/// An osmem-server the test starts on a given port, killed when dropped.
struct OwnServer(Child);

impl OwnServer {
    /// Starts the server on `port` and waits until it answers.
    async fn start(test: &str, port: u16) -> Option<OwnServer> {
        let bin = crate::testenv::backend("FX_TEST_ELASTICSEARCH_BIN", test)?;
        let child = Command::new(&bin)
            .args([
                "-addr",
                &format!("127.0.0.1:{port}"),
                "-no-stdin-watch",
                "-parent-pid",
                &std::process::id().to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let server = OwnServer(child);
        let what = format!("{bin} listens on {port}");
        eventually_async(&what, Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Some(server)
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on (for now).
fn spare_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn logs_written_while_elasticsearch_is_down_arrive_once_it_is_back() {
    let test = "elasticsearch::logs_written_while_elasticsearch_is_down_arrive";
    if crate::testenv::backend("FX_TEST_ELASTICSEARCH_BIN", test).is_none() {
        return;
    }
    let port = spare_port();
    let mut settings = quick(ElasticsearchSettings::new(format!(
        "http://127.0.0.1:{port}"
    )));
    settings.batch_max_docs = 4;
    settings.request_timeout_ms = 500;
    // Elasticsearch is down: the sink starts anyway, and writes return at once.
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let id = execution("outage");
    let lines: Vec<LogLine> = (0..10).map(|seq| line(&id, 1, seq)).collect();
    let started = Instant::now();
    for chunk in lines.chunks(3) {
        sink.write_logs(chunk).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "writes waited for elasticsearch: {:?}",
        started.elapsed()
    );
    assert_eq!(
        sink.execution_logs(&id).await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    // The flusher fails a few times and drops nothing.
    failed_requests(&sink, 3).await;
    assert_eq!(sink.dropped_total(), 0);

    // It comes back (empty: no templates yet, which the sink installs before sending).
    let Some(_server) = OwnServer::start(test, port).await else {
        return;
    };
    flushed(&sink).await;
    assert_eq!(sink.buffered(), 0);
    assert_eq!(sink.execution_logs(&id).await.unwrap(), lines);
    // Exactly once each, although batches were retried.
    let query = json!({ "term": { "execution_id": id.as_str() } });
    assert_eq!(count(&sink.cluster, Family::Logs, query).await, 10);
    let template = sink
        .cluster
        .client()
        .indices()
        .get_index_template(IndicesGetIndexTemplateParts::Name(
            &Family::Logs.template_name(&settings.index_prefix),
        ))
        .send()
        .await
        .unwrap();
    assert!(template.status_code().is_success());
}

#[tokio::test]
async fn logs_written_during_an_outage_arrive_once_elasticsearch_is_back() {
    let test = "elasticsearch::logs_written_during_an_outage_arrive";
    if crate::testenv::backend("FX_TEST_ELASTICSEARCH_BIN", test).is_none() {
        return;
    }
    let port = spare_port();
    let Some(server) = OwnServer::start(test, port).await else {
        return;
    };
    let mut settings = quick(ElasticsearchSettings::new(format!(
        "http://127.0.0.1:{port}"
    )));
    settings.request_timeout_ms = 500;
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let id = execution("mid-run");
    let lines: Vec<LogLine> = (0..6).map(|seq| line(&id, 1, seq)).collect();
    sink.write_logs(&lines[..3]).await.unwrap();
    flushed(&sink).await;
    assert_eq!(sink.execution_logs(&id).await.unwrap(), lines[..3]);

    // Elasticsearch goes away; the next lines wait in the buffer.
    drop(server);
    let before = sink.unavailable_total();
    sink.write_logs(&lines[3..]).await.unwrap();
    failed_requests(&sink, before + 2).await;
    assert_eq!(sink.buffered(), 3);

    // It comes back empty (osmem-server keeps nothing): the sink puts its templates again,
    // then delivers what it buffered.
    let Some(_server) = OwnServer::start(test, port).await else {
        return;
    };
    flushed(&sink).await;
    assert_eq!(sink.execution_logs(&id).await.unwrap(), lines[3..]);
    let index = Family::Logs.index(&settings.index_prefix, lines[3].at);
    let response = sink
        .cluster
        .client()
        .indices()
        .get_mapping(IndicesGetMappingParts::Index(&[&index]))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body[&index]["mappings"]["properties"]["execution_id"]["type"],
        "keyword"
    );
    assert_eq!(sink.dropped_total(), 0);
}

#[tokio::test]
async fn a_full_buffer_drops_the_oldest_lines_and_counts_them() {
    let test = "elasticsearch::a_full_buffer_drops_the_oldest_lines";
    if crate::testenv::backend("FX_TEST_ELASTICSEARCH_BIN", test).is_none() {
        return;
    }
    let port = spare_port();
    let mut settings = quick(ElasticsearchSettings::new(format!(
        "http://127.0.0.1:{port}"
    )));
    settings.buffer_max_docs = 10;
    settings.batch_max_docs = 5;
    settings.request_timeout_ms = 500;
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let id = execution("overflow");
    let lines: Vec<LogLine> = (0..25).map(|seq| line(&id, 1, seq)).collect();
    for line in &lines {
        sink.write_logs(std::slice::from_ref(line)).await.unwrap();
    }
    // A batch in flight when the writes came goes back to the front when it fails, and is
    // dropped first: in the end the newest ten remain.
    eventually("15 lines are dropped", Duration::from_secs(10), || {
        sink.dropped_total() == 15
    })
    .await;

    let Some(_server) = OwnServer::start(test, port).await else {
        return;
    };
    flushed(&sink).await;
    assert_eq!(sink.execution_logs(&id).await.unwrap(), lines[15..]);
    assert_eq!(sink.dropped_total(), 15);
}

#[tokio::test]
async fn a_refused_document_is_dropped_counted_and_does_not_block_the_others() {
    let Some(settings) = settings("elasticsearch::a_refused_document_is_dropped") else {
        return;
    };
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    // A document the mapping refuses (a date that is not one), written straight to the buffer.
    let index = Family::Logs.index(&settings.index_prefix, Utc::now());
    sink.enqueue(vec![sink
        .op(
            Family::Logs,
            "create",
            index,
            "refused".into(),
            &json!({ "@timestamp": "not a date", "execution_id": "x" }),
            None,
        )
        .unwrap()]);
    let id = execution("after-refusal");
    sink.write_logs(&[line(&id, 1, 0)]).await.unwrap();
    flushed(&sink).await;
    assert_eq!(sink.rejected_total(), 1);
    let query = json!({ "term": { "execution_id": id.as_str() } });
    assert_eq!(count(&sink.cluster, Family::Logs, query).await, 1);
}

#[tokio::test]
async fn audit_entries_are_indexed_once_and_searchable_by_principal_and_outcome() {
    let Some(settings) = settings("elasticsearch::audit") else {
        return;
    };
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let who = format!("user:{}", crate::testsupport::unique("auditor"));
    let entry = |id: i64, outcome: crate::identity::AuditOutcome| crate::identity::AuditRecord {
        id,
        at: Utc::now(),
        principal: who.clone(),
        action: "package:upload".into(),
        resource: "payments".into(),
        source: "127.0.0.1".into(),
        outcome,
        detail: "POST /api/v1/packages → 201".into(),
    };
    let base =
        i64::from(std::process::id()) * 1_000_000 + Utc::now().timestamp_subsec_micros() as i64;
    let ok = entry(base, crate::identity::AuditOutcome::Ok);
    let denied = entry(base + 1, crate::identity::AuditOutcome::Denied);
    // The same entry twice (a retried write) is one document.
    sink.write_audit(&[ok.clone(), denied, ok]).await.unwrap();
    flushed(&sink).await;
    let mine = json!({ "term": { "principal": who.as_str() } });
    assert_eq!(count(&sink.cluster, Family::Audit, mine.clone()).await, 2);
    let refused = json!({ "bool": { "filter": [mine, { "term": { "outcome": "denied" } }] } });
    assert_eq!(count(&sink.cluster, Family::Audit, refused).await, 1);
    assert_eq!(sink.rejected_total(), 0);
}
