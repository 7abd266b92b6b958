//! Retention deletes old finished executions with their log lines, and nothing else.

use chrono::{Duration, Utc};
use fx_core::event::new_json_event;
use fx_core::execution::{LogLevel, LogLine, StateEvent};
use fx_core::testsupport::queued_execution;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::retention::{pass, RetentionSettings};

fn log(e: &fx_core::execution::Execution) -> LogLine {
    LogLine {
        execution_id: e.id.clone(),
        handler: e.handler.clone(),
        attempt: 1,
        seq: 0,
        at: Utc::now(),
        level: LogLevel::Info,
        message: "a line".into(),
        fields: Default::default(),
    }
}

#[tokio::test]
async fn old_finished_executions_and_their_logs_are_deleted_in_batches() {
    let app = TestApp::new().await;
    let state = &app.backends.state;
    let mut old = Vec::new();
    for n in 0..5 {
        let event = new_json_event(format!("old-{n}"), "/t", "t", serde_json::json!({})).unwrap();
        old.push(queued_execution(
            "h",
            event,
            Utc::now() - Duration::days(10),
        ));
    }
    let event = new_json_event("recent", "/t", "t", serde_json::json!({})).unwrap();
    let recent = queued_execution("h", event, Utc::now());
    let event = new_json_event("stuck", "/t", "t", serde_json::json!({})).unwrap();
    let stuck = queued_execution("h", event, Utc::now() - Duration::days(10));
    for e in old.iter().chain([&recent, &stuck]) {
        state.create_execution(e).await.unwrap();
    }
    let finished: Vec<StateEvent> = old
        .iter()
        .chain([&recent])
        .map(|e| StateEvent::Succeeded {
            execution_id: e.id.clone(),
            attempt: 1,
            at: Utc::now(),
            duration_us: 1,
            output: vec![],
            measurements: None,
        })
        .collect();
    state.apply_states(&finished).await.unwrap();
    let lines: Vec<LogLine> = old.iter().chain([&recent, &stuck]).map(log).collect();
    app.backends.sink.store_logs(&lines).await.unwrap();

    let settings = RetentionSettings {
        executions_days: 1,
        batch: 2,
        ..RetentionSettings::default()
    };
    let deleted = pass(&app.backends, &settings, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(deleted, 5, "five old finished executions, two at a time");
    for e in &old {
        assert_eq!(state.get_execution(&e.id).await.unwrap(), None);
        assert!(app
            .backends
            .sink
            .execution_logs(&e.id)
            .await
            .unwrap()
            .is_empty());
    }
    // The recent one, and the old one that never finished, stay with their lines.
    for e in [&recent, &stuck] {
        assert!(state.get_execution(&e.id).await.unwrap().is_some());
        assert_eq!(
            app.backends.sink.execution_logs(&e.id).await.unwrap().len(),
            1
        );
    }
    // Nothing left: a second pass deletes nothing.
    let again = pass(&app.backends, &settings, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(again, 0);
}

#[tokio::test]
async fn retention_off_returns_at_once() {
    let app = TestApp::new().await;
    // executions_days = 0: `run` returns without waiting for a shutdown.
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        crate::retention::run(
            app.backends.clone(),
            RetentionSettings::default(),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("retention off must not loop");
}
