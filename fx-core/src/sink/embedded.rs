//! The embedded operational sink: function log lines in a SQLite file (`logs.sqlite`).
//!
//! A line's identity is (execution, attempt, seq), so writing it again is ignored. Each batch
//! is one transaction. The schema is versioned by `PRAGMA user_version`, as in the state store.

use std::path::Path;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, TransactionBehavior};

use super::{LogQuery, OperationalSink};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::execution::{ExecutionId, LogLevel, LogLine};
use crate::sqlite::{db, Database};

/// The schema, one step per entry; entry `i` takes the database to `user_version` `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
    CREATE TABLE log_lines (
        execution_id TEXT NOT NULL,
        attempt      INTEGER NOT NULL,
        seq          INTEGER NOT NULL,
        handler      TEXT NOT NULL,
        at           INTEGER NOT NULL,
        level        TEXT NOT NULL,
        message      TEXT NOT NULL,
        fields       TEXT NOT NULL,
        PRIMARY KEY (execution_id, attempt, seq)
    ) WITHOUT ROWID;
    CREATE INDEX log_lines_by_handler ON log_lines (handler, at DESC);
"#];

/// Log lines in a SQLite file.
pub struct SqliteSink {
    db: Database,
}

impl SqliteSink {
    /// Opens (creating it if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        Ok(SqliteSink {
            db: Database::open(path, "log database", MIGRATIONS).await?,
        })
    }

    /// Runs `f` with the connection on the blocking thread pool.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.db.call(f).await
    }
}

#[async_trait]
impl OperationalSink for SqliteSink {
    async fn write_logs(&self, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let rows = lines
            .iter()
            .map(|line| {
                let fields = serde_json::to_string(&line.fields)
                    .kind_context(ErrorKind::Internal, || {
                        format!("encoding log fields of execution {}", line.execution_id)
                    })?;
                Ok((line.clone(), fields))
            })
            .collect::<Result<Vec<_>>>()?;
        self.call(move |conn| {
            let what = || format!("writing {} log lines", rows.len());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(what()))?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO log_lines
                            (execution_id, attempt, seq, handler, at, level, message, fields)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .map_err(db(what()))?;
                for (line, fields) in &rows {
                    insert
                        .execute(params![
                            line.execution_id.as_str(),
                            line.attempt,
                            line.seq,
                            line.handler,
                            line.at.timestamp_micros(),
                            line.level.as_str(),
                            line.message,
                            fields
                        ])
                        .map_err(db(what()))?;
                }
            }
            tx.commit().map_err(db(what()))?;
            Ok(())
        })
        .await
    }

    async fn delete_logs(&self, ids: &[ExecutionId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_string()).collect();
        self.call(move |conn| {
            let what = || format!("deleting the log lines of {} executions", ids.len());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(what()))?;
            let mut deleted = 0;
            for id in &ids {
                deleted += tx
                    .prepare_cached("DELETE FROM log_lines WHERE execution_id = ?1")
                    .and_then(|mut stmt| stmt.execute(params![id]))
                    .map_err(db(what()))? as u64;
            }
            tx.commit().map_err(db(what()))?;
            Ok(deleted)
        })
        .await
    }

    async fn handler_logs(&self, query: &LogQuery) -> Result<Vec<LogLine>> {
        let handler = query.handler.clone();
        let from = query
            .lower_bound()
            .map_or(i64::MIN, |at| at.timestamp_micros());
        let after = query.after.as_ref().map(|a| {
            (
                a.at.timestamp_micros(),
                a.execution_id.as_str().to_string(),
                a.attempt,
                a.seq,
            )
        });
        let limit = query.page_size() as i64;
        self.call(move |conn| {
            let what = || format!("reading log lines of handler {handler}");
            let (after_at, after_id, after_attempt, after_seq) = match after {
                Some((at, id, attempt, seq)) => (Some(at), id, attempt, seq),
                None => (None, String::new(), 0, 0),
            };
            let mut stmt = conn
                .prepare_cached(
                    "SELECT execution_id, handler, attempt, seq, at, level, message, fields FROM log_lines
                     WHERE handler = ?1 AND at >= ?2
                       AND (?3 IS NULL OR (at, execution_id, attempt, seq) > (?3, ?4, ?5, ?6))
                     ORDER BY at, execution_id, attempt, seq
                     LIMIT ?7",
                )
                .map_err(db(what()))?;
            let rows = stmt
                .query_map(
                    params![
                        handler,
                        from,
                        after_at,
                        after_id,
                        after_attempt,
                        after_seq,
                        limit
                    ],
                    stored_line,
                )
                .map_err(db(what()))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db(what()))?;
            rows.into_iter().map(|row| log_line(row, what)).collect()
        })
        .await
    }

    async fn execution_logs(&self, id: &ExecutionId) -> Result<Vec<LogLine>> {
        let id = id.clone();
        self.call(move |conn| {
            let what = || format!("reading log lines of execution {id}");
            let mut stmt = conn
                .prepare_cached(
                    "SELECT execution_id, handler, attempt, seq, at, level, message, fields FROM log_lines
                     WHERE execution_id = ?1 ORDER BY attempt, seq",
                )
                .map_err(db(what()))?;
            let rows = stmt
                .query_map(params![id.as_str()], stored_line)
                .map_err(db(what()))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db(what()))?;
            rows.into_iter().map(|row| log_line(row, what)).collect()
        })
        .await
    }
}

/// A row of `log_lines` as selected by both readers: execution_id, handler, attempt, seq,
/// at, level, message, fields.
type StoredLine = (String, String, u32, u32, i64, String, String, String);

fn stored_line(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredLine> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

/// The log line of a stored row; `what` names the read for errors.
fn log_line(row: StoredLine, what: impl Fn() -> String + Copy) -> Result<LogLine> {
    let (id, handler, attempt, seq, at, level, message, fields) = row;
    Ok(LogLine {
        execution_id: ExecutionId::parse(&id).kind_context(ErrorKind::Internal, what)?,
        handler,
        attempt,
        seq,
        at: stored_time(at)?,
        level: LogLevel::parse(&level).kind_context(ErrorKind::Internal, what)?,
        message,
        fields: serde_json::from_str(&fields).kind_context(ErrorKind::Internal, what)?,
    })
}

/// A stored time (microseconds since the epoch).
fn stored_time(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Error::internal(format!("stored log time {micros} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let sink = SqliteSink::open(&dir.path().join("logs.sqlite"))
            .await
            .unwrap();
        crate::sink::testsuite::run(&sink).await;
    }

    #[tokio::test]
    async fn log_lines_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.sqlite");
        let sink = SqliteSink::open(&path).await.unwrap();
        let line = LogLine {
            execution_id: ExecutionId::derive("/s", "1", "h"),
            handler: "h".into(),
            attempt: 1,
            seq: 0,
            at: DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap(),
            level: LogLevel::Warn,
            message: "kept".into(),
            fields: [("k".to_string(), "v".to_string())].into(),
        };
        sink.write_logs(std::slice::from_ref(&line)).await.unwrap();
        drop(sink);
        let sink = SqliteSink::open(&path).await.unwrap();
        assert_eq!(
            sink.execution_logs(&line.execution_id).await.unwrap(),
            vec![line]
        );
    }
}
