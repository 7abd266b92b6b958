//! The Elasticsearch sink against the server the test command starts (`FX_TEST_ELASTICSEARCH`,
//! osmem-server), against servers the tests start and stop themselves (from
//! `FX_TEST_ELASTICSEARCH_BIN`) to take Elasticsearch away, and against a real cluster when
//! `FX_TEST_ELASTICSEARCH_REAL` gives one (optional, also under `CI=true`). Every test writes
//! under its own index prefix.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use elasticsearch::indices::{IndicesGetIndexTemplateParts, IndicesGetMappingParts};
use elasticsearch::SearchParts;
use serde_json::{json, Value};

use super::mappings::{Family, RunSource, StepSource};
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
            Family::WorkflowRuns | Family::WorkflowSteps => "run_id",
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

/// A run of workflow `workflow` (two steps) started at `created_at`, as the conductor
/// documents it: `running`, or finished with `status`.
fn run_doc(
    workflow: &str,
    created_at: DateTime<Utc>,
    status: crate::workflow::run::RunStatus,
) -> RunDoc {
    use crate::workflow::run::RunStatus;
    let run_id = crate::workflow::run::RunId::for_trigger(workflow, "/es-test", &fresh_prefix());
    let finished = status != RunStatus::Running;
    let finished_at = finished.then(|| created_at + chrono::Duration::milliseconds(1_500));
    let steps_by_status = if finished {
        [(status.as_str().to_string(), 2)].into()
    } else {
        [("running".to_string(), 1), ("pending".to_string(), 1)].into()
    };
    RunDoc {
        run_id,
        workflow: workflow.into(),
        revision: 7,
        status,
        generation: 0,
        steps: 2,
        steps_by_status,
        trigger_type: "fx.workflow.start".into(),
        created_at,
        finished_at,
        duration_ms: finished.then_some(1_500.0),
    }
}

/// The result of step `name` of `run` in generation `generation`, started `started_ms` after
/// the run (never started: `None`).
fn step_doc(
    run: &RunDoc,
    name: &str,
    generation: u32,
    status: crate::workflow::run::StepStatus,
    started_ms: Option<i64>,
) -> StepDoc {
    let started_at = started_ms.map(|ms| run.created_at + chrono::Duration::milliseconds(ms));
    let finished_at = started_at.unwrap_or(run.created_at) + chrono::Duration::milliseconds(250);
    StepDoc {
        run_id: run.run_id.clone(),
        workflow: run.workflow.clone(),
        step: name.into(),
        generation,
        status,
        executions: started_at
            .map(|_| vec![execution(name)])
            .unwrap_or_default(),
        started_at,
        finished_at: Some(finished_at),
        duration_ms: started_at.map(|_| 250.0),
        reason: (status != crate::workflow::run::StepStatus::Succeeded)
            .then(|| format!("step {name} {status}")),
    }
}

/// The top-level keys of `source` (and those of its objects, as `outer.inner`).
fn source_fields(source: &Value) -> Vec<String> {
    let mut fields = Vec::new();
    for (key, value) in source.as_object().unwrap() {
        match value.as_object() {
            Some(inner) => fields.extend(inner.keys().map(|k| format!("{key}.{k}"))),
            None => fields.push(key.clone()),
        }
    }
    fields
}

#[test]
fn workflow_documents_have_deterministic_ids_dated_indices_and_mapped_fields() {
    use crate::workflow::run::{RunStatus, StepStatus};
    let created_at = DateTime::parse_from_rfc3339("2024-03-09T23:59:59.5Z")
        .unwrap()
        .with_timezone(&Utc);
    let run = run_doc("orders", created_at, RunStatus::Succeeded);
    assert_eq!(mappings::run_doc_id(&run), run.run_id.as_str());
    assert_eq!(
        Family::WorkflowRuns.index("fx", run.created_at),
        "fx-workflow-runs-2024.03.09"
    );
    assert_eq!(Family::WorkflowRuns.pattern("fx"), "fx-workflow-runs-*");
    assert_eq!(
        Family::WorkflowSteps.template_name("fx"),
        "fx-workflow-steps"
    );

    // A step that started is dated by its start, the next day here.
    let started = step_doc(&run, "charge", 2, StepStatus::Succeeded, Some(1_000));
    assert_eq!(
        mappings::step_doc_id(&started),
        format!("{}/charge/2", run.run_id)
    );
    let at = mappings::step_time(&started, Some(run.created_at));
    assert_eq!(Some(at), started.started_at);
    assert_eq!(
        Family::WorkflowSteps.index("fx", at),
        "fx-workflow-steps-2024.03.10"
    );
    // One that never started, by when it was skipped, whether or not its run's document comes
    // along: writing it again replaces the same document.
    let skipped = step_doc(&run, "ship", 0, StepStatus::Skipped, None);
    assert_eq!(
        mappings::step_time(&skipped, Some(run.created_at)),
        skipped.finished_at.unwrap()
    );
    assert_eq!(
        mappings::step_time(&skipped, None),
        skipped.finished_at.unwrap()
    );
    // Neither (not a recorded result): its run's start.
    let mut unrecorded = skipped.clone();
    unrecorded.finished_at = None;
    assert_eq!(
        mappings::step_time(&unrecorded, Some(run.created_at)),
        run.created_at
    );

    // Every field of the indexed documents is mapped, with the type dashboards need.
    let run_source = serde_json::to_value(RunSource::from(&run)).unwrap();
    assert_eq!(run_source["@timestamp"], json!("2024-03-09T23:59:59.500Z"));
    assert_eq!(run_source["status"], "succeeded");
    assert_eq!(run_source["steps_by_status"]["succeeded"], 2);
    let step_source = serde_json::to_value(StepSource::new(&started, at)).unwrap();
    assert_eq!(step_source["step"], "charge");
    assert_eq!(step_source["generation"], 2);
    assert_eq!(step_source["status"], "succeeded");
    assert_eq!(step_source["duration_ms"], 250.0);
    let skipped_source = serde_json::to_value(StepSource::new(
        &skipped,
        mappings::step_time(&skipped, None),
    ))
    .unwrap();
    assert!(skipped_source.get("started_at").is_none());
    assert_eq!(skipped_source["reason"], "step ship skipped");
    for (family, source) in [
        (Family::WorkflowRuns, &run_source),
        (Family::WorkflowSteps, &step_source),
        (Family::WorkflowSteps, &skipped_source),
    ] {
        let mapped = mappings::properties(family, mappings::KeyValueType::Flattened);
        for field in source_fields(source) {
            let pointer = format!("/{}", field.replace('.', "/properties/"));
            assert!(
                mapped.pointer(&pointer).is_some(),
                "{} documents have {field}, which is not mapped",
                family.name()
            );
        }
    }
    for family in [Family::WorkflowRuns, Family::WorkflowSteps] {
        let mapped = mappings::properties(family, mappings::KeyValueType::Flattened);
        let ty = |field: &str| {
            mapped[field]["type"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        for keyword in ["run_id", "workflow", "status"] {
            assert_eq!(ty(keyword), "keyword", "{} {keyword}", family.name());
        }
        for date in ["@timestamp", "finished_at"] {
            assert_eq!(ty(date), "date", "{} {date}", family.name());
        }
        assert_eq!(ty("duration_ms"), "double");
        assert_eq!(ty("generation"), "long");
    }
    let steps = mappings::properties(Family::WorkflowSteps, mappings::KeyValueType::Flattened);
    assert_eq!(steps["step"]["type"], "keyword");
    assert_eq!(steps["started_at"]["type"], "date");
    let runs = mappings::properties(Family::WorkflowRuns, mappings::KeyValueType::Flattened);
    assert_eq!(runs["steps"]["type"], "long");
    assert_eq!(
        runs["steps_by_status"]["properties"]["cancelled"]["type"],
        "long"
    );
}

#[tokio::test]
async fn workflow_runs_keep_their_latest_state_and_step_results_are_indexed_once() {
    use crate::workflow::run::{RunStatus, StepStatus};
    let Some(settings) = settings("elasticsearch::workflow_runs_and_steps") else {
        return;
    };
    let sink = ElasticsearchSink::open(&settings).await.unwrap();
    let prefix = &settings.index_prefix;
    // Started two days ago (at noon: its steps start the same day): its documents go to that
    // day's indices.
    let created_at = (Utc::now() - chrono::Duration::days(2))
        .date_naive()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc();
    let running = run_doc("es-orders", created_at, RunStatus::Running);
    let a = step_doc(&running, "a", 0, StepStatus::Succeeded, Some(10));
    sink.write_workflow_docs(std::slice::from_ref(&running), std::slice::from_ref(&a))
        .await
        .unwrap();
    flushed(&sink).await;
    // The run fails at b (c skipped), then a re-drive runs b again and the run succeeds; every
    // write comes twice (a conductor retrying after a lost answer).
    let mut failed = run_doc("es-orders", created_at, RunStatus::Failed);
    failed.run_id = running.run_id.clone();
    let b0 = step_doc(&running, "b", 0, StepStatus::Failed, Some(20));
    let c0 = step_doc(&running, "c", 0, StepStatus::Skipped, None);
    let first = [b0.clone(), c0.clone()];
    sink.write_workflow_docs(std::slice::from_ref(&failed), &first)
        .await
        .unwrap();
    sink.write_workflow_docs(&[], &first).await.unwrap();
    let mut succeeded = run_doc("es-orders", created_at, RunStatus::Succeeded);
    succeeded.run_id = running.run_id.clone();
    succeeded.generation = 1;
    let b1 = step_doc(&running, "b", 1, StepStatus::Succeeded, Some(5_000));
    let c1 = step_doc(&running, "c", 1, StepStatus::Succeeded, Some(6_000));
    let second = [b1, c1];
    sink.write_workflow_docs(std::slice::from_ref(&succeeded), &second)
        .await
        .unwrap();
    sink.write_workflow_docs(std::slice::from_ref(&succeeded), &second)
        .await
        .unwrap();
    flushed(&sink).await;

    let mine = json!({ "term": { "run_id": running.run_id.as_str() } });
    let with = |status: &str| json!({ "bool": { "filter": [mine.clone(), { "term": { "status": status } }] } });
    // One run document, in its latest state.
    assert_eq!(
        count(&sink.cluster, Family::WorkflowRuns, mine.clone()).await,
        1
    );
    assert_eq!(
        count(&sink.cluster, Family::WorkflowRuns, with("succeeded")).await,
        1
    );
    let done = json!({ "bool": { "filter": [
        mine.clone(),
        { "term": { "generation": 1 } },
        { "range": { "steps_by_status.succeeded": { "gte": 2 } } },
        { "range": { "duration_ms": { "gt": 1000.0 } } },
        { "term": { "workflow": "es-orders" } },
    ] } });
    assert_eq!(count(&sink.cluster, Family::WorkflowRuns, done).await, 1);
    // One step document per step and generation.
    assert_eq!(
        count(&sink.cluster, Family::WorkflowSteps, mine.clone()).await,
        5
    );
    assert_eq!(
        count(&sink.cluster, Family::WorkflowSteps, with("succeeded")).await,
        3
    );
    assert_eq!(
        count(&sink.cluster, Family::WorkflowSteps, with("failed")).await,
        1
    );
    assert_eq!(
        count(&sink.cluster, Family::WorkflowSteps, with("skipped")).await,
        1
    );
    let b_runs = json!({ "bool": { "filter": [mine.clone(), { "term": { "step": "b" } }] } });
    assert_eq!(count(&sink.cluster, Family::WorkflowSteps, b_runs).await, 2);

    // The documents are in the day the run started, under the templates' mappings.
    for family in [Family::WorkflowRuns, Family::WorkflowSteps] {
        let index = family.index(prefix, created_at);
        let response = sink
            .cluster
            .client()
            .search(SearchParts::Index(&[&index]))
            .body(json!({ "query": mine.clone(), "size": 10 }))
            .send()
            .await
            .unwrap();
        assert!(response.status_code().is_success(), "{index}");
        let body: Value = response.json().await.unwrap();
        let hits = body["hits"]["hits"].as_array().unwrap();
        assert!(!hits.is_empty(), "nothing in {index}: {body}");
        if family == Family::WorkflowRuns {
            assert_eq!(hits[0]["_id"], running.run_id.as_str());
            assert_eq!(hits[0]["_source"]["status"], "succeeded");
        } else {
            let ids: BTreeSet<&str> = hits.iter().map(|h| h["_id"].as_str().unwrap()).collect();
            assert!(
                ids.contains(format!("{}/b/0", running.run_id).as_str()),
                "{ids:?}"
            );
        }
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
        assert_eq!(properties["run_id"]["type"], "keyword", "{index}");
        assert_eq!(properties["status"]["type"], "keyword", "{index}");
        assert_eq!(properties["generation"]["type"], "long", "{index}");
        assert_eq!(properties["duration_ms"]["type"], "double", "{index}");
        assert_eq!(properties["@timestamp"]["type"], "date", "{index}");
    }
    assert_eq!(sink.rejected_total(), 0);
    assert_eq!(sink.dropped_total(), 0);
}
