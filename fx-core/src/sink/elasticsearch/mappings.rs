//! The indices the Elasticsearch sink writes: their names, the index templates (with explicit
//! mappings) installed on start, and the JSON documents that go into them.
//!
//! Six families of daily indices, each under one composable index template:
//!
//! | index | one document per | `_id` | bulk op |
//! | --- | --- | --- | --- |
//! | `<prefix>-logs-YYYY.MM.DD` (day of the line) | log line | `<execution>-<attempt>-<seq>` | `create` |
//! | `<prefix>-metrics-YYYY.MM.DD` (day it ended) | finished attempt | `<execution>-<attempt>` | `create` |
//! | `<prefix>-executions-YYYY.MM.DD` (day created) | execution | `<execution>` | `index` |
//! | `<prefix>-audit-YYYY.MM.DD` (day of the request) | audited request | `audit-<id>` | `create` |
//! | `<prefix>-workflow-runs-YYYY.MM.DD` (day the run started) | workflow run | `<run>` | `index` |
//! | `<prefix>-workflow-steps-YYYY.MM.DD` (day the step started, else the day it ended) | step result per run generation | `<run>/<step>/<generation>` | `index` |
//!
//! Log lines and metrics never change, so they are created once and a repeated write is a
//! conflict the sink treats as done; an execution or workflow run document is replaced by its
//! newer state, and a step's document by the same result written again. A document's index
//! depends only on times it never changes (when a run or step started or a step ended), so a
//! rewrite lands on the document it replaces.
//! The mappings are `dynamic: false`: a field that is not mapped stays in `_source` but is
//! not indexed, so a newer writer cannot break an older day's index.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::execution::{CacheLookup, ExecutionId, ExecutionStatus, FailureKind, LogLevel, LogLine};
use crate::sink::documents::{ExecutionDoc, MetricDoc, RunDoc, StepDoc};
use crate::workflow::run::{RunId, RunStatus, StepStatus};

/// The index families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Function log lines.
    Logs,
    /// Per-attempt metrics.
    Metrics,
    /// Executions' latest state.
    Executions,
    /// The audit log: changes made through the API and the web UI.
    Audit,
    /// Workflow runs' latest state.
    WorkflowRuns,
    /// Workflow steps' recorded results, one per step and run generation.
    WorkflowSteps,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 6] = [
        Family::Logs,
        Family::Metrics,
        Family::Executions,
        Family::Audit,
        Family::WorkflowRuns,
        Family::WorkflowSteps,
    ];

    /// The name inside index names: `logs`, `metrics`, `executions`, `audit`,
    /// `workflow-runs`, `workflow-steps`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Logs => "logs",
            Family::Metrics => "metrics",
            Family::Executions => "executions",
            Family::Audit => "audit",
            Family::WorkflowRuns => "workflow-runs",
            Family::WorkflowSteps => "workflow-steps",
        }
    }

    /// The template's name, `<prefix>-<family>`.
    pub fn template_name(self, prefix: &str) -> String {
        format!("{prefix}-{}", self.name())
    }

    /// The pattern of every index of the family, `<prefix>-<family>-*`.
    pub fn pattern(self, prefix: &str) -> String {
        format!("{prefix}-{}-*", self.name())
    }

    /// The index for a document dated `at`.
    pub fn index(self, prefix: &str, at: DateTime<Utc>) -> String {
        format!("{prefix}-{}-{}", self.name(), at.format("%Y.%m.%d"))
    }
}

/// How the server indexes an object of arbitrary string keys (a log line's `fields`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyValueType {
    /// Elasticsearch's `flattened`.
    Flattened,
    /// OpenSearch's `flat_object`.
    FlatObject,
}

impl KeyValueType {
    /// The type for the server whose `GET /` answered `root`: `flat_object` on OpenSearch
    /// (and servers speaking its API), `flattened` otherwise.
    pub fn for_server(root: &Value) -> Self {
        if root["version"]["distribution"].as_str() == Some("opensearch") {
            KeyValueType::FlatObject
        } else {
            KeyValueType::Flattened
        }
    }

    fn mapping(self) -> Value {
        match self {
            KeyValueType::Flattened => json!({ "type": "flattened" }),
            KeyValueType::FlatObject => json!({ "type": "flat_object" }),
        }
    }
}

/// The field mappings of a family (the `properties` object).
pub fn properties(family: Family, key_values: KeyValueType) -> Value {
    let keyword = || json!({ "type": "keyword" });
    let date = || json!({ "type": "date" });
    let integer = || json!({ "type": "integer" });
    let double = || json!({ "type": "double" });
    let long = || json!({ "type": "long" });
    match family {
        Family::Logs => json!({
            "@timestamp": date(),
            "execution_id": keyword(),
            "handler": keyword(),
            "attempt": integer(),
            "seq": integer(),
            "level": keyword(),
            "message": { "type": "text" },
            "fields": key_values.mapping(),
        }),
        Family::Metrics => json!({
            "@timestamp": date(),
            "execution_id": keyword(),
            "handler": keyword(),
            "attempt": integer(),
            "status": keyword(),
            "duration_ms": double(),
            "queue_wait_ms": double(),
            "failure_kind": keyword(),
            "compile_cache": keyword(),
            "peak_memory_bytes": json!({ "type": "long" }),
            "fuel_used": json!({ "type": "long" }),
            "executor": keyword(),
        }),
        Family::Executions => json!({
            "@timestamp": date(),
            "execution_id": keyword(),
            "handler": keyword(),
            "status": keyword(),
            "attempts": integer(),
            "event_id": keyword(),
            "event_source": keyword(),
            "event_type": keyword(),
            "package_name": keyword(),
            "package_version": keyword(),
            "package_digest": keyword(),
            "started_at": date(),
            "finished_at": date(),
            "duration_ms": double(),
            "failure_kind": keyword(),
            "failure_message": { "type": "text" },
        }),
        Family::Audit => json!({
            "@timestamp": date(),
            "audit_id": json!({ "type": "long" }),
            "principal": keyword(),
            "action": keyword(),
            "resource": keyword(),
            "source": keyword(),
            "outcome": keyword(),
            "detail": { "type": "text" },
        }),
        Family::WorkflowRuns => json!({
            "@timestamp": date(),
            "run_id": keyword(),
            "workflow": keyword(),
            "revision": long(),
            "status": keyword(),
            "generation": long(),
            "steps": long(),
            "steps_by_status": {
                "properties": STEP_STATUSES
                    .iter()
                    .map(|s| (s.as_str().to_string(), long()))
                    .collect::<serde_json::Map<_, _>>(),
            },
            "trigger_type": keyword(),
            "finished_at": date(),
            "duration_ms": double(),
        }),
        Family::WorkflowSteps => json!({
            "@timestamp": date(),
            "run_id": keyword(),
            "workflow": keyword(),
            "step": keyword(),
            "generation": long(),
            "status": keyword(),
            "executions": keyword(),
            "started_at": date(),
            "finished_at": date(),
            "duration_ms": double(),
            "reason": { "type": "text" },
        }),
    }
}

/// Every step status, each a `long` under a run document's `steps_by_status`.
const STEP_STATUSES: [StepStatus; 6] = {
    // A new status fails to compile here until it is listed below.
    match StepStatus::Pending {
        StepStatus::Pending
        | StepStatus::Running
        | StepStatus::Succeeded
        | StepStatus::Failed
        | StepStatus::Skipped
        | StepStatus::Cancelled => {}
    }
    [
        StepStatus::Pending,
        StepStatus::Running,
        StepStatus::Succeeded,
        StepStatus::Failed,
        StepStatus::Skipped,
        StepStatus::Cancelled,
    ]
};

/// An audit entry as indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditSource {
    /// When the request was made.
    #[serde(rename = "@timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Its id in the state store.
    pub audit_id: i64,
    /// Who made it.
    pub principal: String,
    /// What it asked.
    pub action: String,
    /// On what.
    pub resource: String,
    /// The client's address.
    pub source: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    /// Method, path and status.
    pub detail: String,
}

impl From<&crate::identity::AuditRecord> for AuditSource {
    fn from(r: &crate::identity::AuditRecord) -> Self {
        AuditSource {
            timestamp: r.at,
            audit_id: r.id,
            principal: r.principal.clone(),
            action: r.action.clone(),
            resource: r.resource.clone(),
            source: r.source.clone(),
            outcome: r.outcome.name().to_string(),
            detail: r.detail.clone(),
        }
    }
}

/// The mappings of a family's indices.
pub fn mappings(family: Family, key_values: KeyValueType) -> Value {
    json!({
        "dynamic": false,
        "properties": properties(family, key_values),
    })
}

/// The body of `PUT _index_template/<prefix>-<family>`.
pub fn composable_template(family: Family, prefix: &str, key_values: KeyValueType) -> Value {
    json!({
        "index_patterns": [family.pattern(prefix)],
        // Above the built-in templates' 100, so that ours decides for our indices.
        "priority": 200,
        "template": { "mappings": mappings(family, key_values) },
        "_meta": { "managed_by": "ferrisfx", "description": format!("FerrisFX {} (see docs/configuration.md)", family.name()) },
    })
}

/// The body of the legacy `PUT _template/<prefix>-<family>`, for servers without composable
/// templates.
pub fn legacy_template(family: Family, prefix: &str, key_values: KeyValueType) -> Value {
    json!({
        "index_patterns": [family.pattern(prefix)],
        "order": 200,
        "mappings": mappings(family, key_values),
    })
}

/// A log line as indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSource {
    /// When it was written (microseconds kept in `_source`).
    #[serde(rename = "@timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Execution.
    pub execution_id: ExecutionId,
    /// Handler.
    pub handler: String,
    /// Attempt.
    pub attempt: u32,
    /// Position in the attempt.
    pub seq: u32,
    /// Severity.
    pub level: LogLevel,
    /// Text.
    pub message: String,
    /// Structured fields.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub fields: std::collections::BTreeMap<String, String>,
}

impl From<&LogLine> for LogSource {
    fn from(l: &LogLine) -> Self {
        LogSource {
            timestamp: l.at,
            execution_id: l.execution_id.clone(),
            handler: l.handler.clone(),
            attempt: l.attempt,
            seq: l.seq,
            level: l.level,
            message: l.message.clone(),
            fields: l.fields.clone(),
        }
    }
}

impl From<LogSource> for LogLine {
    fn from(s: LogSource) -> Self {
        LogLine {
            execution_id: s.execution_id,
            handler: s.handler,
            attempt: s.attempt,
            seq: s.seq,
            at: s.timestamp,
            level: s.level,
            message: s.message,
            fields: s.fields,
        }
    }
}

/// A finished attempt as indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSource {
    /// When the attempt ended.
    #[serde(rename = "@timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Execution.
    pub execution_id: ExecutionId,
    /// Handler.
    pub handler: String,
    /// Attempt.
    pub attempt: u32,
    /// `succeeded` or `failed`.
    pub status: ExecutionStatus,
    /// Run time.
    pub duration_ms: f64,
    /// Queue wait, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_wait_ms: Option<f64>,
    /// Failure kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<FailureKind>,
    /// `memory`, `disk` or `compiled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile_cache: Option<CacheLookup>,
    /// Peak linear memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// Fuel used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// Executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
}

impl From<&MetricDoc> for MetricSource {
    fn from(m: &MetricDoc) -> Self {
        MetricSource {
            timestamp: m.at,
            execution_id: m.execution_id.clone(),
            handler: m.handler.clone(),
            attempt: m.attempt,
            status: m.status,
            duration_ms: m.duration_ms,
            queue_wait_ms: m.queue_wait_ms,
            failure_kind: m.failure_kind,
            compile_cache: m.compile_cache,
            peak_memory_bytes: m.peak_memory_bytes,
            fuel_used: m.fuel_used,
            executor: m.executor.clone(),
        }
    }
}

/// An execution as indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSource {
    /// When it was created.
    #[serde(rename = "@timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Execution.
    pub execution_id: ExecutionId,
    /// Handler.
    pub handler: String,
    /// Latest status.
    pub status: ExecutionStatus,
    /// Attempts started.
    pub attempts: u32,
    /// Event `id`.
    pub event_id: String,
    /// Event `source`.
    pub event_source: String,
    /// Event `type`.
    pub event_type: String,
    /// Package name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_name: Option<String>,
    /// Package version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_version: Option<String>,
    /// Package digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_digest: Option<String>,
    /// Latest attempt's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Latest attempt's run time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Failure kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_kind: Option<FailureKind>,
    /// Failure message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

impl From<&ExecutionDoc> for ExecutionSource {
    fn from(e: &ExecutionDoc) -> Self {
        ExecutionSource {
            timestamp: e.created_at,
            execution_id: e.execution_id.clone(),
            handler: e.handler.clone(),
            status: e.status,
            attempts: e.attempts,
            event_id: e.event_id.clone(),
            event_source: e.event_source.clone(),
            event_type: e.event_type.clone(),
            package_name: e.package.as_ref().map(|p| p.name.clone()),
            package_version: e.package.as_ref().map(|p| p.version.clone()),
            package_digest: e.package.as_ref().map(|p| p.digest.to_string()),
            started_at: e.started_at,
            finished_at: e.finished_at,
            duration_ms: e.duration_ms,
            failure_kind: e.failure_kind,
            failure_message: e.failure_message.clone(),
        }
    }
}

/// The `_id` of a log line.
pub fn log_id(line: &LogLine) -> String {
    format!("{}-{}-{}", line.execution_id, line.attempt, line.seq)
}

/// The `_id` of a metric.
pub fn metric_id(metric: &MetricDoc) -> String {
    format!("{}-{}", metric.execution_id, metric.attempt)
}

/// The `_id` of an execution document.
pub fn execution_id(doc: &ExecutionDoc) -> String {
    doc.execution_id.to_string()
}

/// A workflow run as indexed: its latest state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSource {
    /// When the run started.
    #[serde(rename = "@timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Run.
    pub run_id: RunId,
    /// Workflow.
    pub workflow: String,
    /// The definition's registry revision.
    pub revision: u64,
    /// Latest status.
    pub status: RunStatus,
    /// Re-drives so far.
    pub generation: u32,
    /// Steps in all.
    pub steps: u64,
    /// Steps by status, only those with some.
    pub steps_by_status: std::collections::BTreeMap<String, u64>,
    /// The trigger event's `type`.
    pub trigger_type: String,
    /// End.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Start to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

impl From<&RunDoc> for RunSource {
    fn from(r: &RunDoc) -> Self {
        RunSource {
            timestamp: r.created_at,
            run_id: r.run_id.clone(),
            workflow: r.workflow.clone(),
            revision: r.revision,
            status: r.status,
            generation: r.generation,
            steps: r.steps as u64,
            steps_by_status: r
                .steps_by_status
                .iter()
                .map(|(status, n)| (status.clone(), *n as u64))
                .collect(),
            trigger_type: r.trigger_type.clone(),
            finished_at: r.finished_at,
            duration_ms: r.duration_ms,
        }
    }
}

/// A workflow step's recorded result as indexed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSource {
    /// When the step started; when it ended for a step that never started (skipped,
    /// cancelled). See [`step_time`].
    #[serde(rename = "@timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Run.
    pub run_id: RunId,
    /// Workflow.
    pub workflow: String,
    /// Step.
    pub step: String,
    /// The run generation it ran in.
    pub generation: u32,
    /// Its status.
    pub status: StepStatus,
    /// Its executions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executions: Vec<ExecutionId>,
    /// Start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Start to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Why it failed, was skipped or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl StepSource {
    /// The indexed form of `step`, dated `at` ([`step_time`]).
    pub fn new(step: &StepDoc, at: DateTime<Utc>) -> Self {
        StepSource {
            timestamp: at,
            run_id: step.run_id.clone(),
            workflow: step.workflow.clone(),
            step: step.step.clone(),
            generation: step.generation,
            status: step.status,
            executions: step.executions.clone(),
            started_at: step.started_at,
            finished_at: step.finished_at,
            duration_ms: step.duration_ms,
            reason: step.reason.clone(),
        }
    }
}

/// The time that dates a step document (its `@timestamp` and its daily index): when it
/// started; for a step that never started (skipped or cancelled), when it reached its status;
/// for one with neither (not a recorded result), when its run started, `run_created_at`, if
/// known, else now. Only the first two occur for the results the conductor records, and they
/// never change once recorded, so writing the same result again replaces the same document.
pub fn step_time(step: &StepDoc, run_created_at: Option<DateTime<Utc>>) -> DateTime<Utc> {
    step.started_at
        .or(step.finished_at)
        .or(run_created_at)
        .unwrap_or_else(Utc::now)
}

/// The `_id` of a workflow run document.
pub fn run_doc_id(doc: &RunDoc) -> String {
    doc.run_id.to_string()
}

/// The `_id` of a workflow step document: `<run>/<step>/<generation>`.
pub fn step_doc_id(doc: &StepDoc) -> String {
    format!("{}/{}/{}", doc.run_id, doc.step, doc.generation)
}
