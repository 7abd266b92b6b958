//! The conformance suite of the operational sink port, run by every backend's tests.
//!
//! Execution ids are derived from a unique source, so the suite also runs against a shared
//! sink.

// Test code that lives in the library so that every backend (in any crate) can run it; a
// failed check panics, as in any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{LogCursor, LogQuery, OperationalSink};
use crate::execution::{ExecutionId, LogLevel, LogLine};
use crate::testsupport::unique;

/// Runs every check against `sink`, a sink that deletes log lines for retention (SQLite,
/// PostgreSQL).
pub async fn run(sink: &dyn OperationalSink) {
    run_common(sink).await;
    retention_deletes_the_lines_of_the_given_executions_only(sink, true).await;
}

/// Runs every check against `sink`, a sink that ages its data out by itself (Elasticsearch:
/// index lifecycle) and deletes nothing for retention.
pub async fn run_aging_out_by_itself(sink: &dyn OperationalSink) {
    run_common(sink).await;
    retention_deletes_the_lines_of_the_given_executions_only(sink, false).await;
}

async fn run_common(sink: &dyn OperationalSink) {
    lines_come_back_in_attempt_then_seq_order(sink).await;
    written_lines_are_never_duplicated(sink).await;
    executions_do_not_see_each_others_lines(sink).await;
    concurrent_writers_of_overlapping_batches_store_each_line_once(sink).await;
    handler_logs_come_in_time_then_position_order_paged_by_cursor(sink).await;
}

/// Retention: the lines of the given executions go, the others stay; a sink that ages its data
/// out by itself (`deletes` false) deletes nothing and answers 0.
async fn retention_deletes_the_lines_of_the_given_executions_only(
    sink: &dyn OperationalSink,
    deletes: bool,
) {
    let a = unique_execution("old");
    let b = unique_execution("kept");
    sink.write_logs(&[line(&a, 1, 0), line(&a, 2, 0), line(&b, 1, 0)])
        .await
        .unwrap();
    let deleted = sink.delete_logs(std::slice::from_ref(&a)).await.unwrap();
    let left = sink.execution_logs(&a).await.unwrap().len();
    let expected = if deletes { (2, 0) } else { (0, 2) };
    assert_eq!((deleted, left), expected, "(deleted, left)");
    assert_eq!(sink.execution_logs(&b).await.unwrap().len(), 1);
    assert_eq!(sink.delete_logs(&[]).await.unwrap(), 0);
}

/// An execution id no other test (or run) uses.
fn unique_execution(prefix: &str) -> ExecutionId {
    let source = format!("/conformance/{}", unique(prefix));
    ExecutionId::derive(&source, "1", "conformance")
}

/// Now, to the microsecond (what every sink keeps).
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap()
}

fn line(id: &ExecutionId, attempt: u32, seq: u32) -> LogLine {
    let mut fields = BTreeMap::new();
    if seq.is_multiple_of(2) {
        fields.insert("seq".to_string(), seq.to_string());
        fields.insert(
            "note".to_string(),
            "with \"quotes\" and ünïcode".to_string(),
        );
    }
    LogLine {
        execution_id: id.clone(),
        handler: "conformance".into(),
        attempt,
        seq,
        at: now(),
        level: if seq.is_multiple_of(3) {
            LogLevel::Error
        } else {
            LogLevel::Info
        },
        message: format!("attempt {attempt} line {seq}"),
        fields,
    }
}

async fn lines_come_back_in_attempt_then_seq_order(sink: &dyn OperationalSink) {
    let id = unique_execution("order");
    let written = vec![
        line(&id, 2, 1),
        line(&id, 1, 10),
        line(&id, 2, 0),
        line(&id, 1, 2),
        line(&id, 1, 0),
    ];
    sink.write_logs(&written).await.unwrap();
    sink.write_logs(&[]).await.unwrap();
    let mut expected = written;
    expected.sort_by_key(|l| (l.attempt, l.seq));
    assert_eq!(sink.execution_logs(&id).await.unwrap(), expected);
}

async fn written_lines_are_never_duplicated(sink: &dyn OperationalSink) {
    let id = unique_execution("dup");
    let first = vec![line(&id, 1, 0), line(&id, 1, 1)];
    sink.write_logs(&first).await.unwrap();
    // A redelivered batch, overlapping the next one.
    let second = vec![line(&id, 1, 1), line(&id, 1, 2)];
    sink.write_logs(&second).await.unwrap();
    sink.write_logs(&first).await.unwrap();
    let stored = sink.execution_logs(&id).await.unwrap();
    let keys: Vec<_> = stored.iter().map(|l| (l.attempt, l.seq)).collect();
    assert_eq!(keys, vec![(1, 0), (1, 1), (1, 2)]);
    assert_eq!(stored[0], first[0]);
}

async fn executions_do_not_see_each_others_lines(sink: &dyn OperationalSink) {
    let a = unique_execution("a");
    let b = unique_execution("b");
    sink.write_logs(&[line(&a, 1, 0), line(&b, 1, 0), line(&b, 1, 1)])
        .await
        .unwrap();
    assert_eq!(sink.execution_logs(&a).await.unwrap().len(), 1);
    assert_eq!(sink.execution_logs(&b).await.unwrap().len(), 2);
    assert!(sink
        .execution_logs(&unique_execution("none"))
        .await
        .unwrap()
        .is_empty());
}

async fn concurrent_writers_of_overlapping_batches_store_each_line_once(
    sink: &dyn OperationalSink,
) {
    let id = unique_execution("race");
    let lines: Vec<LogLine> = (0..40).map(|seq| line(&id, 1, seq)).collect();
    let results = futures::future::join_all((0..8).map(|w| {
        // Each writer writes a window of 20 lines; windows overlap.
        let start = (w * 5) % 21;
        sink.write_logs(&lines[start..start + 20])
    }))
    .await;
    for result in results {
        result.unwrap();
    }
    let stored = sink.execution_logs(&id).await.unwrap();
    let seqs: Vec<u32> = stored.iter().map(|l| l.seq).collect();
    let mut expected: Vec<u32> = (0..8)
        .flat_map(|w| {
            let start = (w * 5) % 21;
            start as u32..start as u32 + 20
        })
        .collect();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(seqs, expected);
}

/// A handler's log lines: in (time, execution, attempt, seq) order, to the microsecond, also
/// within one millisecond (Elasticsearch indexes milliseconds) and among lines sharing one
/// time stamp; from `since`; paged by cursor without a line lost or repeated; at most `limit`;
/// no other handler's lines. Asked while the lines may still be buffered, then once they are
/// stored.
async fn handler_logs_come_in_time_then_position_order_paged_by_cursor(sink: &dyn OperationalSink) {
    let handler = unique("logs-of");
    let other = unique("logs-other");
    let (lo, hi) = {
        let (a, b) = (unique_execution("h1"), unique_execution("h2"));
        if a < b {
            (a, b)
        } else {
            (b, a)
        }
    };
    let t0 = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap();
    let at = |micros: i64| t0 + chrono::Duration::microseconds(micros);
    let of = |handler: &str, id: &ExecutionId, attempt: u32, seq: u32, micros: i64| LogLine {
        handler: handler.to_string(),
        at: at(micros),
        ..line(id, attempt, seq)
    };
    let written = vec![
        of(&handler, &lo, 3, 0, 1_005),
        of(&handler, &lo, 1, 1, 300),
        of(&handler, &hi, 1, 0, 300),
        of(&handler, &lo, 2, 0, 300),
        of(&handler, &hi, 1, 1, 300),
        // In one millisecond: `hi` before `lo` by the microsecond.
        of(&handler, &lo, 1, 2, 600),
        of(&handler, &hi, 1, 2, 100),
        of(&handler, &lo, 1, 0, 0),
        of(&handler, &hi, 2, 0, 2_000_000),
        of(&other, &unique_execution("o"), 1, 0, 300),
        of(&other, &unique_execution("o"), 1, 0, 2_000_000),
    ];
    sink.write_logs(&written).await.unwrap();
    let mut expected: Vec<LogLine> = written
        .iter()
        .filter(|l| l.handler == handler)
        .cloned()
        .collect();
    expected.sort_by_key(LogCursor::of);
    let query = |since: Option<i64>, after: Option<&LogLine>, limit: usize| LogQuery {
        handler: handler.clone(),
        since: since.map(at),
        after: after.map(LogCursor::of),
        limit,
    };
    for round in ["buffered", "stored"] {
        if round == "stored" {
            sink.flush().await.unwrap();
        }
        let all = sink.handler_logs(&query(None, None, 1_000)).await.unwrap();
        assert_eq!(all, expected, "{round}: every line, in order");

        for (since, from) in [(300, 2), (301, 6), (2_000_000, 8), (2_000_001, 9)] {
            let found = sink
                .handler_logs(&query(Some(since), None, 1_000))
                .await
                .unwrap();
            assert_eq!(found, expected[from..], "{round}: since +{since}us");
        }

        for limit in [1, 2, 3, 4] {
            let mut read: Vec<LogLine> = Vec::new();
            loop {
                let page = sink
                    .handler_logs(&query(None, read.last(), limit))
                    .await
                    .unwrap();
                assert!(page.len() <= limit, "{round}: a page of {limit}");
                read.extend(page.iter().cloned());
                if page.len() < limit {
                    break;
                }
                assert!(read.len() <= expected.len(), "{round}: paging goes on");
            }
            assert_eq!(read, expected, "{round}: paged by {limit}");
        }
        // A cursor among lines sharing its time stamp, with `since` after it: `since` wins.
        let page = sink
            .handler_logs(&query(Some(600), Some(&expected[3]), 2))
            .await
            .unwrap();
        assert_eq!(page, expected[6..8], "{round}: since after the cursor");

        let limited = sink.handler_logs(&query(None, None, 3)).await.unwrap();
        assert_eq!(limited, expected[..3], "{round}: limit");
        let one = sink.handler_logs(&query(None, None, 0)).await.unwrap();
        assert_eq!(one, expected[..1], "{round}: a limit of 0 reads one line");

        let others = sink
            .handler_logs(&LogQuery::new(other.clone()))
            .await
            .unwrap();
        assert_eq!(others.len(), 2, "{round}: the other handler's own lines");
        assert!(others.iter().all(|l| l.handler == other));
        assert!(sink
            .handler_logs(&LogQuery::new(unique("logs-none")))
            .await
            .unwrap()
            .is_empty());
    }
}
