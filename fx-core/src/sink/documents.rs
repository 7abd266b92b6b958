//! What the operational sink receives besides log lines: execution documents (the state store's
//! record of an execution, projected for dashboards) and per-attempt metrics.
//!
//! Both are built by the state router from what it already has: an [`ExecutionDoc`] from the
//! execution the state store holds after applying a state event, a [`MetricDoc`] from a
//! `succeeded` or `failed` state event and the execution's handler.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::execution::{
    CacheLookup, Execution, ExecutionId, ExecutionStatus, FailureKind, ResolvedPackage, StateEvent,
};

/// One execution as the operational sink indexes it: its latest state. Writing a newer
/// document for the same execution replaces the older one, so the router writes the state
/// store's record after each state event it applied (a redelivered old event re-reads the
/// store and writes the newest state again, never an older one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionDoc {
    /// The execution.
    pub execution_id: ExecutionId,
    /// Handler name.
    pub handler: String,
    /// Latest status.
    pub status: ExecutionStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// The triggering event's `id`.
    pub event_id: String,
    /// The triggering event's `source`.
    pub event_source: String,
    /// The triggering event's `type`.
    pub event_type: String,
    /// The package that ran, once resolved.
    pub package: Option<ResolvedPackage>,
    /// When the gateway created it.
    pub created_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
    /// Run time of the latest attempt in milliseconds.
    pub duration_ms: Option<f64>,
    /// Why the latest attempt failed.
    pub failure_kind: Option<FailureKind>,
    /// The failure's message.
    pub failure_message: Option<String>,
}

impl From<&Execution> for ExecutionDoc {
    fn from(e: &Execution) -> Self {
        use cloudevents::AttributesReader;
        ExecutionDoc {
            execution_id: e.id.clone(),
            handler: e.handler.clone(),
            status: e.status,
            attempts: e.attempts,
            event_id: e.event.id().to_string(),
            event_source: e.event.source().to_string(),
            event_type: e.event.ty().to_string(),
            package: e.package.clone(),
            created_at: e.created_at,
            started_at: e.started_at,
            finished_at: e.finished_at,
            duration_ms: e.duration_us.map(micros_to_millis),
            failure_kind: e.error.as_ref().map(|f| f.kind),
            failure_message: e.error.as_ref().map(|f| f.message.clone()),
        }
    }
}

/// The measurements of one finished attempt. Its identity is (execution, attempt): writing it
/// again (a redelivered state event) does not count the attempt twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDoc {
    /// The execution.
    pub execution_id: ExecutionId,
    /// Handler name.
    pub handler: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// How the attempt ended: `succeeded` or `failed`.
    pub status: ExecutionStatus,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// Run time in milliseconds.
    pub duration_ms: f64,
    /// Time between dispatch by the gateway and the start of the attempt, in milliseconds,
    /// when the executor reports it.
    pub queue_wait_ms: Option<f64>,
    /// Why it failed.
    pub failure_kind: Option<FailureKind>,
    /// Where the compiled function came from, when the executor reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compile_cache: Option<CacheLookup>,
    /// Linear memory the function grew to, in bytes, when the executor reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// Fuel used, when the handler set a fuel budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// The executor that ran it, when it reports itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
}

impl MetricDoc {
    /// The metric of a `succeeded` or `failed` state event of an execution of `handler`;
    /// `None` for other events.
    pub fn from_state(event: &StateEvent, handler: &str) -> Option<MetricDoc> {
        let (execution_id, attempt, at, duration_us, status, failure_kind, measured) = match event {
            StateEvent::Succeeded {
                execution_id,
                attempt,
                at,
                duration_us,
                measurements,
                ..
            } => (
                execution_id,
                attempt,
                at,
                duration_us,
                ExecutionStatus::Succeeded,
                None,
                measurements,
            ),
            StateEvent::Failed {
                execution_id,
                attempt,
                at,
                duration_us,
                failure,
                measurements,
                ..
            } => (
                execution_id,
                attempt,
                at,
                duration_us,
                ExecutionStatus::Failed,
                Some(failure.kind),
                measurements,
            ),
            StateEvent::Started { .. } | StateEvent::Log(_) => return None,
        };
        Some(MetricDoc {
            execution_id: execution_id.clone(),
            handler: handler.to_string(),
            attempt: *attempt,
            status,
            at: *at,
            duration_ms: micros_to_millis(*duration_us),
            queue_wait_ms: measured.as_ref().map(|m| micros_to_millis(m.queue_wait_us)),
            failure_kind,
            compile_cache: measured.as_ref().and_then(|m| m.compile_cache),
            peak_memory_bytes: measured.as_ref().map(|m| m.peak_memory_bytes),
            fuel_used: measured.as_ref().and_then(|m| m.fuel_used),
            executor: measured
                .as_ref()
                .map(|m| m.executor.clone())
                .filter(|e| !e.is_empty()),
        })
    }
}

fn micros_to_millis(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::Failure;

    #[test]
    fn metrics_come_from_finished_attempts_only() {
        let id = ExecutionId::derive("/s", "1", "h");
        let at = Utc::now();
        let failed = StateEvent::Failed {
            execution_id: id.clone(),
            attempt: 2,
            at,
            duration_us: 1_500,
            failure: Failure {
                kind: FailureKind::Timeout,
                message: "timed out after 1 ms".into(),
            },
            retry_at: None,
            measurements: None,
            dead_letter: None,
        };
        let metric = MetricDoc::from_state(&failed, "h").unwrap();
        assert_eq!(metric.attempt, 2);
        assert_eq!(metric.status, ExecutionStatus::Failed);
        assert_eq!(metric.duration_ms, 1.5);
        assert_eq!(metric.failure_kind, Some(FailureKind::Timeout));
        let started = StateEvent::Started {
            execution_id: id,
            attempt: 1,
            at,
            executor: "x".into(),
        };
        assert!(MetricDoc::from_state(&started, "h").is_none());
    }
}

/// A workflow run as the operational sink indexes it: its latest state (Kibana: runs by
/// workflow and status, how long they take).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDoc {
    /// The run.
    pub run_id: crate::workflow::run::RunId,
    /// The workflow.
    pub workflow: String,
    /// The definition's registry revision.
    pub revision: u64,
    /// Latest status.
    pub status: crate::workflow::run::RunStatus,
    /// Re-drives so far.
    pub generation: u32,
    /// Steps in all.
    pub steps: usize,
    /// Steps by status.
    pub steps_by_status: std::collections::BTreeMap<String, usize>,
    /// The trigger event's `type`.
    pub trigger_type: String,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Start to finish in milliseconds, once finished.
    pub duration_ms: Option<f64>,
}

impl RunDoc {
    /// The document of `run` as it is now.
    pub fn of(run: &crate::workflow::run::Run) -> RunDoc {
        use cloudevents::AttributesReader;
        let summary = crate::workflow::run::RunSummary::from(run);
        RunDoc {
            run_id: run.id.clone(),
            workflow: run.workflow.clone(),
            revision: run.revision,
            status: run.status,
            generation: run.generation,
            steps: run.steps.len(),
            steps_by_status: summary.steps,
            trigger_type: run.trigger.ty().to_string(),
            created_at: run.created_at,
            finished_at: run.finished_at,
            duration_ms: run
                .finished_at
                .map(|f| (f - run.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0),
        }
    }
}

/// A workflow step's recorded result as the operational sink indexes it: one document per
/// step and run generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDoc {
    /// The run.
    pub run_id: crate::workflow::run::RunId,
    /// The workflow.
    pub workflow: String,
    /// The step.
    pub step: String,
    /// The run generation it ran in.
    pub generation: u32,
    /// Its status.
    pub status: crate::workflow::run::StepStatus,
    /// Its executions (one per map item).
    pub executions: Vec<ExecutionId>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Start to end in milliseconds.
    pub duration_ms: Option<f64>,
    /// Why it failed, was skipped or cancelled.
    pub reason: Option<String>,
}

impl StepDoc {
    /// The document of `step` of `run`.
    pub fn of(run: &crate::workflow::run::Run, step: &crate::workflow::run::StepRun) -> StepDoc {
        StepDoc {
            run_id: run.id.clone(),
            workflow: run.workflow.clone(),
            step: step.name.clone(),
            generation: step.generation,
            status: step.status,
            executions: step.executions.clone(),
            started_at: step.started_at,
            finished_at: step.finished_at,
            duration_ms: match (step.started_at, step.finished_at) {
                (Some(s), Some(f)) => Some((f - s).num_microseconds().unwrap_or(0) as f64 / 1000.0),
                _ => None,
            },
            reason: step.reason.clone(),
        }
    }
}
