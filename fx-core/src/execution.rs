//! Executions (one per event and handler), the invocations that carry them to executors, and
//! the state events executors report back.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bus::topics;
use crate::error::{Error, Result};
use crate::event::{Event, Message};
pub use crate::failure::{Failure, FailureKind};
use crate::grants::Grants;
use crate::handler::Handler;
use crate::limits::Limits;
use crate::package::PackageDigest;

/// Identity of an execution, derived from the event (`source` + `id`) and the handler, so that
/// a redelivered or reposted event maps to the same execution.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(String);

impl ExecutionId {
    /// An id no execution has: readiness checks look it up (a primary-key lookup that finds
    /// nothing).
    pub fn readiness_probe() -> ExecutionId {
        ExecutionId::derive("ferrisfx-readyz", "probe", "probe")
    }

    /// The execution of `handler` for the event identified by `source` and `id`.
    pub fn derive(source: &str, id: &str, handler: &str) -> Self {
        let mut hash = Sha256::new();
        for part in [source, id, handler] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        ExecutionId(hex::encode(&hash.finalize()[..16]))
    }

    /// The execution of `handler` for `event`.
    pub fn for_event(event: &Event, handler: &str) -> Self {
        use cloudevents::AttributesReader;
        ExecutionId::derive(&event.source().to_string(), event.id(), handler)
    }

    /// Parses an id as shown in URLs (32 lowercase hex digits).
    pub fn parse(text: &str) -> Result<Self> {
        if text.len() != 32 || !text.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(Error::invalid(format!(
                "execution id {text:?} is not 32 lowercase hex digits"
            )));
        }
        Ok(ExecutionId(text.to_string()))
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Matched and dispatched; no executor has started it.
    Queued,
    /// An executor is running an attempt.
    Running,
    /// An attempt failed and another is scheduled by the retry policy; `error` says why the
    /// last one failed.
    Retrying,
    /// The function returned its output.
    Succeeded,
    /// The last attempt failed; `error` says why.
    Failed,
}

impl ExecutionStatus {
    /// Every status, in the order of an execution's life.
    pub const ALL: [ExecutionStatus; 5] = [
        ExecutionStatus::Queued,
        ExecutionStatus::Running,
        ExecutionStatus::Retrying,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
    ];

    /// The lowercase name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Retrying => "retrying",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "queued" => Ok(ExecutionStatus::Queued),
            "running" => Ok(ExecutionStatus::Running),
            "retrying" => Ok(ExecutionStatus::Retrying),
            "succeeded" => Ok(ExecutionStatus::Succeeded),
            "failed" => Ok(ExecutionStatus::Failed),
            other => Err(Error::invalid(format!(
                "unknown execution status {other:?}: use queued, running, retrying, succeeded or failed"
            ))),
        }
    }

    /// Whether no further state change is expected.
    pub fn is_terminal(self) -> bool {
        matches!(self, ExecutionStatus::Succeeded | ExecutionStatus::Failed)
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an attempt found its compiled function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheLookup {
    /// Linked and ready in the executor's memory: a hit.
    Memory,
    /// Compiled earlier, loaded from the executor's disk cache.
    Disk,
    /// Fetched and compiled for this attempt (or for one running beside it): a miss.
    Compiled,
}

impl CacheLookup {
    /// The snake_case name used in JSON, metrics and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheLookup::Memory => "memory",
            CacheLookup::Disk => "disk",
            CacheLookup::Compiled => "compiled",
        }
    }
}

/// What the executor measured of one attempt (the run time is `duration_us` beside it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurements {
    /// Which executor ran it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub executor: String,
    /// From the gateway's dispatch (or the end of a retry's backoff) to the start of the run,
    /// in microseconds.
    pub queue_wait_us: u64,
    /// Where the compiled function came from; `None` when the package could not be loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile_cache: Option<CacheLookup>,
    /// Linear memory the function grew to, in bytes.
    pub peak_memory_bytes: u64,
    /// Fuel used, when the handler set a fuel budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
}

/// One finished attempt of an execution, as kept in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// `succeeded`, `retrying` (failed, another attempt scheduled) or `failed`.
    pub status: ExecutionStatus,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Run time in microseconds.
    pub duration_us: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// When the next attempt was scheduled, for one that is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// What the executor measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurements: Option<Measurements>,
}

impl AttemptRecord {
    /// The record of a `succeeded` or `failed` state event; `None` for other events.
    pub fn from_state(event: &StateEvent) -> Option<AttemptRecord> {
        match event {
            StateEvent::Succeeded {
                attempt,
                at,
                duration_us,
                measurements,
                ..
            } => Some(AttemptRecord {
                attempt: *attempt,
                status: ExecutionStatus::Succeeded,
                finished_at: *at,
                duration_us: *duration_us,
                failure: None,
                retry_at: None,
                measurements: measurements.clone(),
            }),
            StateEvent::Failed {
                attempt,
                at,
                duration_us,
                failure,
                retry_at,
                measurements,
                ..
            } => Some(AttemptRecord {
                attempt: *attempt,
                status: if retry_at.is_some() {
                    ExecutionStatus::Retrying
                } else {
                    ExecutionStatus::Failed
                },
                finished_at: *at,
                duration_us: *duration_us,
                failure: Some(failure.clone()),
                retry_at: *retry_at,
                measurements: measurements.clone(),
            }),
            StateEvent::Started { .. } | StateEvent::Log(_) => None,
        }
    }
}

/// One execution: an event run by a handler, with its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// Derived from the event and the handler.
    pub id: ExecutionId,
    /// The handler's name.
    pub handler: String,
    /// The package that ran (name, version, digest) once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<ResolvedPackage>,
    /// The triggering event.
    pub event: Event,
    /// Current status.
    pub status: ExecutionStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Events the function returned or emitted (on success).
    #[serde(default)]
    pub output: Vec<Event>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// When the gateway created it.
    pub created_at: DateTime<Utc>,
    /// When the latest attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Run time of the latest attempt in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// The finished attempts, oldest first, with what the executor measured of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempt_history: Vec<AttemptRecord>,
}

/// The list view of an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    /// Execution id.
    pub id: ExecutionId,
    /// Handler name.
    pub handler: String,
    /// Status.
    pub status: ExecutionStatus,
    /// The event's `id`.
    pub event_id: String,
    /// The event's `source`.
    pub event_source: String,
    /// The event's `type`.
    pub event_type: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Run time of the latest attempt in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
}

impl From<&Execution> for ExecutionSummary {
    fn from(e: &Execution) -> Self {
        use cloudevents::AttributesReader;
        ExecutionSummary {
            id: e.id.clone(),
            handler: e.handler.clone(),
            status: e.status,
            event_id: e.event.id().to_string(),
            event_source: e.event.source().to_string(),
            event_type: e.event.ty().to_string(),
            attempts: e.attempts,
            created_at: e.created_at,
            duration_us: e.duration_us,
        }
    }
}

/// A query over executions: newest first, paged by an opaque cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionQuery {
    /// Only this handler's.
    #[serde(default)]
    pub handler: Option<String>,
    /// Only this status.
    #[serde(default)]
    pub status: Option<ExecutionStatus>,
    /// Continue after this cursor (from [`Page::next_cursor`]).
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size; the store caps it at 500 and defaults to 50.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only those created at or after this time.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Only those created before this time.
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// Only those whose event id or event source contains this text (ASCII case ignored).
    #[serde(default)]
    pub text: Option<String>,
}

impl ExecutionQuery {
    /// `text` as a `LIKE` pattern: `%`, `_` and `\` escaped (with `ESCAPE '\'`), wrapped in `%`.
    pub fn text_pattern(&self) -> Option<String> {
        self.text.as_ref().map(|text| {
            let mut pattern = String::with_capacity(text.len() + 2);
            pattern.push('%');
            for c in text.chars() {
                if matches!(c, '%' | '_' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('%');
            pattern
        })
    }

    /// The page size to use.
    pub fn page_size(&self) -> u32 {
        self.limit.unwrap_or(50).clamp(1, 500)
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A package resolved to one exact version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Digest of the archive.
    pub digest: PackageDigest,
}

/// What the gateway sends to an executor pool: run this handler on this event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invocation {
    /// The execution this attempt belongs to.
    pub execution_id: ExecutionId,
    /// The handler as it was when the event matched.
    pub handler: Handler,
    /// The package version to run.
    pub package: ResolvedPackage,
    /// The event.
    pub event: Event,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Effective limits (defaults, manifest, handler).
    pub limits: Limits,
    /// When the gateway dispatched it (for queue-wait metrics).
    pub dispatched_at: DateTime<Utc>,
    /// Do not start before this time: a retry waiting out its backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// Attempts made before this drive of the execution (0, or the attempts before a
    /// re-drive): the retry policy counts `attempt - attempt_base`.
    #[serde(default)]
    pub attempt_base: u32,
    /// Configuration values and the names of the secrets the function may read.
    #[serde(default, skip_serializing_if = "Grants::is_empty")]
    pub grants: Grants,
    /// Whether the events the function returns go to `fx.events` (true), or are only its
    /// execution's output (false: a workflow step, whose output feeds the steps after it).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub publish_output: bool,
    /// The trace context the executor's spans continue: the gateway's dispatch span (absent
    /// in invocations from before traces, and for events that carried none with traces off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::trace::TraceContext>,
}

fn yes() -> bool {
    true
}

fn is_yes(value: &bool) -> bool {
    *value
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Very detailed.
    Trace,
    /// Detailed.
    Debug,
    /// Normal.
    Info,
    /// Something odd.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            other => Err(Error::invalid(format!("unknown log level {other:?}"))),
        }
    }
}

/// One log line written by a function (or by the executor about it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The execution it belongs to.
    pub execution_id: ExecutionId,
    /// Handler name (so that logs are searchable by handler without a join).
    pub handler: String,
    /// Attempt number.
    pub attempt: u32,
    /// Position within the attempt, from 0: with the two above, the line's identity.
    pub seq: u32,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
    /// Structured fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// A state change of an execution, published by executors on `fx.state` and applied by the
/// state router. Applying the same state event twice changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StateEvent {
    /// An attempt started.
    Started {
        /// Execution.
        execution_id: ExecutionId,
        /// Attempt number.
        attempt: u32,
        /// When.
        at: DateTime<Utc>,
        /// Which executor runs it.
        executor: String,
    },
    /// A log line.
    Log(LogLine),
    /// The attempt succeeded with these output events.
    Succeeded {
        /// Execution.
        execution_id: ExecutionId,
        /// Attempt number.
        attempt: u32,
        /// When.
        at: DateTime<Utc>,
        /// Run time in microseconds.
        duration_us: u64,
        /// Returned and emitted events.
        output: Vec<Event>,
        /// What the executor measured (absent in events of older executors).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        measurements: Option<Measurements>,
    },
    /// The attempt failed.
    Failed {
        /// Execution.
        execution_id: ExecutionId,
        /// Attempt number.
        attempt: u32,
        /// When.
        at: DateTime<Utc>,
        /// Run time in microseconds.
        duration_us: u64,
        /// Why.
        failure: Failure,
        /// When the retry policy schedules the next attempt: the execution is `retrying`
        /// until then; `None` when this was the last attempt (the execution is `failed`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<DateTime<Utc>>,
        /// What the executor measured (absent in events of older executors).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        measurements: Option<Measurements>,
        /// The invocation to dead-letter once this failure is recorded: set on the last
        /// attempt of an execution that the retry policy hands to `fx.deadletter`. The state
        /// router publishes it only after the state store holds the failure, so a dead-letter
        /// reader always finds the execution `failed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dead_letter: Option<Box<Invocation>>,
    },
}

/// The dead-letter message of an execution whose last attempt failed: the invocation as
/// JSON, keyed by the execution, with the reason, the attempts and where it came from in
/// headers.
pub fn dead_letter_message(invocation: &Invocation, failure: &Failure) -> Result<Message> {
    Ok(
        Message::json(Some(invocation.execution_id.to_string()), invocation)?
            .with_header(
                topics::REASON_HEADER,
                format!("{:?}: {}", failure.kind, failure.message),
            )
            .with_header(
                topics::ORIGINAL_TOPIC_HEADER,
                topics::invocations(&invocation.handler.pool),
            )
            .with_header(
                topics::EXECUTION_ID_HEADER,
                invocation.execution_id.to_string(),
            )
            .with_header(topics::ATTEMPTS_HEADER, invocation.attempt.to_string()),
    )
}

impl StateEvent {
    /// The execution this event is about.
    pub fn execution_id(&self) -> &ExecutionId {
        match self {
            StateEvent::Started { execution_id, .. }
            | StateEvent::Succeeded { execution_id, .. }
            | StateEvent::Failed { execution_id, .. } => execution_id,
            StateEvent::Log(line) => &line.execution_id,
        }
    }

    /// When the executor stated it.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            StateEvent::Started { at, .. }
            | StateEvent::Succeeded { at, .. }
            | StateEvent::Failed { at, .. } => *at,
            StateEvent::Log(line) => line.at,
        }
    }

    /// The name of the state (`started`, `log`, `succeeded`, `failed`).
    pub fn name(&self) -> &'static str {
        match self {
            StateEvent::Started { .. } => "started",
            StateEvent::Log(_) => "log",
            StateEvent::Succeeded { .. } => "succeeded",
            StateEvent::Failed { .. } => "failed",
        }
    }
}

#[cfg(test)]
mod tests;
