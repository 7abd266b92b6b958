//! Execution fixtures: what the gateway records for an event before it dispatches it.

use chrono::{DateTime, Utc};

use crate::event::{new_json_event, Event};
use crate::execution::{Execution, ExecutionId, ExecutionStatus};

/// A queued execution of `event` by `handler`, created at `created_at`, before any attempt
/// and with no package resolved (set `package` for one).
pub fn queued_execution(handler: &str, event: Event, created_at: DateTime<Utc>) -> Execution {
    Execution {
        id: ExecutionId::for_event(&event, handler),
        handler: handler.to_string(),
        package: None,
        event,
        status: ExecutionStatus::Queued,
        attempts: 0,
        output: vec![],
        error: None,
        created_at,
        started_at: None,
        finished_at: None,
        duration_us: None,
        attempt_history: vec![],
    }
}

/// A [`queued_execution`] of `handler` for event number `n`: id `n`, source `/test`, type
/// `com.example.t` and data `{"n": n}`.
// Test support: the event is valid by construction.
#[allow(clippy::expect_used)]
pub fn execution(n: u32, handler: &str, created_at: DateTime<Utc>) -> Execution {
    let event = new_json_event(
        n.to_string(),
        "/test",
        "com.example.t",
        serde_json::json!({"n": n}),
    )
    .expect("a valid event");
    queued_execution(handler, event, created_at)
}
