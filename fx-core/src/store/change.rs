//! The execution state machine, once for every state store: what a state event changes in a
//! stored execution. The stores bind these values into their SQL dialect; which change wins
//! (a later attempt over an earlier one, never a replay over a finished attempt) is the guard
//! each store's statement applies atomically, described on [`StateChange`].

use chrono::{DateTime, Utc};

use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::execution::{AttemptRecord, ExecutionId, ExecutionStatus, StateEvent};

/// What one state event changes in its execution.
#[derive(Debug, Clone, PartialEq)]
pub enum StateChange {
    /// An attempt started: the execution becomes `running` at `attempt`, its start is `at` and
    /// its end is cleared. Applied when the stored attempt is earlier, or is this one and the
    /// execution is still `queued` (a replayed start changes nothing).
    Start {
        /// The execution.
        id: ExecutionId,
        /// The attempt that started.
        attempt: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// An attempt ended.
    Finish(Finish),
}

/// The end of an attempt: applied when the stored attempt is earlier, or is this one and has
/// not ended yet. Its [`Finish::record`] is kept in the attempt history the first time an end
/// of that attempt is reported, even when the execution has moved on.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// The execution.
    pub id: ExecutionId,
    /// The attempt that ended.
    pub attempt: u32,
    /// The execution's new status: `succeeded`, `failed`, or `retrying` when another attempt
    /// is scheduled.
    pub status: ExecutionStatus,
    /// When the attempt ended.
    pub finished_at: DateTime<Utc>,
    /// Its run time in microseconds (saturated to the stores' signed integers).
    pub duration_us: i64,
    /// The start to record when none was recorded for this attempt: the reported start when
    /// it came in the same batch ([`StateChange::of_batch`]), else the end minus the run time
    /// (a start that was never reported).
    pub inferred_start: DateTime<Utc>,
    /// The output events as JSON (`[]` for a failure).
    pub output: String,
    /// The failure as JSON, for a failure.
    pub error: Option<String>,
    /// The attempt's record ([`AttemptRecord`]) as JSON.
    pub record: String,
}

impl StateChange {
    /// The change `event` makes; `None` for one that changes no execution (a log line).
    pub fn of(event: &StateEvent) -> Result<Option<StateChange>> {
        let change = match event {
            StateEvent::Log(_) => return Ok(None),
            StateEvent::Started {
                execution_id,
                attempt,
                at,
                ..
            } => StateChange::Start {
                id: execution_id.clone(),
                attempt: *attempt,
                at: *at,
            },
            StateEvent::Succeeded { output, .. } => StateChange::Finish(Finish::new(
                event,
                to_json("execution output", output)?,
                None,
            )?),
            StateEvent::Failed { failure, .. } => StateChange::Finish(Finish::new(
                event,
                "[]".to_string(),
                Some(to_json("execution error", failure)?),
            )?),
        };
        Ok(Some(change))
    }

    /// The changes `events` make, in their order, with each start followed in the batch by
    /// the end of the same attempt (with no other change of its execution in between) folded
    /// into that end, which then records the start's time. Applying them gives what applying
    /// every event's change one by one gives (a start then its end leave the execution ended,
    /// with that start, whatever it was before), with one write fewer per such pair: the usual
    /// batch of the state router holds many `started`/`succeeded` pairs.
    pub fn of_batch(events: &[StateEvent]) -> Result<Vec<StateChange>> {
        let mut changes: Vec<Option<StateChange>> = Vec::with_capacity(events.len());
        let mut last = std::collections::HashMap::new();
        for event in events {
            let Some(mut change) = StateChange::of(event)? else {
                continue;
            };
            if let StateChange::Finish(finish) = &mut change {
                if let Some(&i) = last.get(&finish.id) {
                    if let Some(StateChange::Start { attempt, at, .. }) = &changes[i] {
                        if *attempt == finish.attempt {
                            finish.inferred_start = *at;
                            changes[i] = None;
                        }
                    }
                }
            }
            last.insert(change.id().clone(), changes.len());
            changes.push(Some(change));
        }
        Ok(changes.into_iter().flatten().collect())
    }

    /// The state it records: `started`, or the status an end leaves.
    pub fn name(&self) -> &'static str {
        match self {
            StateChange::Start { .. } => "started",
            StateChange::Finish(finish) => finish.status.as_str(),
        }
    }

    /// The execution it changes.
    pub fn id(&self) -> &ExecutionId {
        match self {
            StateChange::Start { id, .. } => id,
            StateChange::Finish(finish) => &finish.id,
        }
    }
}

impl Finish {
    /// The end `event` reports; its status, attempt, time and run time are those of its
    /// [`AttemptRecord`], so the execution and its history never disagree.
    fn new(event: &StateEvent, output: String, error: Option<String>) -> Result<Finish> {
        let record = AttemptRecord::from_state(event)
            .ok_or_else(|| Error::internal("an attempt record of a state that ends no attempt"))?;
        let duration_us = i64::try_from(record.duration_us).unwrap_or(i64::MAX);
        let inferred_start = record
            .finished_at
            .checked_sub_signed(chrono::Duration::microseconds(duration_us))
            .unwrap_or(record.finished_at);
        Ok(Finish {
            id: event.execution_id().clone(),
            attempt: record.attempt,
            status: record.status,
            finished_at: record.finished_at,
            duration_us,
            inferred_start,
            output,
            error,
            record: to_json("attempt record", &record)?,
        })
    }
}

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).kind_context(ErrorKind::Internal, || format!("encoding {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::{Failure, FailureKind, LogLine};

    fn failed(retry: bool) -> StateEvent {
        StateEvent::Failed {
            execution_id: ExecutionId::derive("h", "e", "s"),
            attempt: 2,
            at: DateTime::from_timestamp_micros(10_000_000).unwrap(),
            duration_us: 2_500_000,
            failure: Failure {
                kind: FailureKind::Trap,
                message: "boom".into(),
            },
            retry_at: retry.then(Utc::now),
            measurements: None,
            dead_letter: None,
        }
    }

    #[test]
    fn an_end_carries_the_status_its_attempt_record_has() {
        for (retry, status) in [
            (true, ExecutionStatus::Retrying),
            (false, ExecutionStatus::Failed),
        ] {
            let Some(StateChange::Finish(f)) = StateChange::of(&failed(retry)).unwrap() else {
                panic!("not a finish");
            };
            assert_eq!(f.status, status);
            assert_eq!(f.attempt, 2);
            assert_eq!(f.output, "[]");
            assert!(f.error.as_deref().unwrap().contains("boom"));
            assert_eq!(f.inferred_start.timestamp_micros(), 7_500_000);
            let record: AttemptRecord = serde_json::from_str(&f.record).unwrap();
            assert_eq!(record.status, status);
        }
    }

    #[test]
    fn a_log_line_changes_no_execution() {
        let line = LogLine {
            execution_id: ExecutionId::derive("h", "e", "s"),
            handler: "h".into(),
            attempt: 1,
            seq: 0,
            at: Utc::now(),
            level: crate::execution::LogLevel::Info,
            message: "hi".into(),
            fields: Default::default(),
        };
        assert_eq!(StateChange::of(&StateEvent::Log(line)).unwrap(), None);
    }
}
