//! The PostgreSQL operational sink: function log lines in a table, for distributed deployments
//! where no Elasticsearch is configured.
//!
//! A line's identity is (execution, attempt, seq), so writing it again is ignored. A batch is
//! one `INSERT … SELECT FROM unnest(…)` statement, its rows sorted by identity so that
//! concurrent overlapping batches take their row locks in one order and cannot deadlock. It
//! shares the settings, pool and migration scheme of the PostgreSQL state store (the log schema
//! is the `logs` component of `fx_schema_migrations`), and may share its database and schema.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{LogQuery, OperationalSink};
use crate::error::{ErrorKind, Result, ResultExt};
use crate::execution::{ExecutionId, LogLevel, LogLine};
use crate::store::postgres::migrations::{migrate, Migration};
use crate::store::postgres::{PgDatabase, PostgresSettings};

/// The log schema; entries as in the state store's.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "log lines",
    sql: r#"
    CREATE TABLE log_lines (
        execution_id text COLLATE "C" NOT NULL,
        attempt      bigint NOT NULL,
        seq          bigint NOT NULL,
        handler      text COLLATE "C" NOT NULL,
        at           timestamptz NOT NULL,
        level        text NOT NULL,
        message      text NOT NULL,
        fields       text NOT NULL,
        PRIMARY KEY (execution_id, attempt, seq)
    );
    CREATE INDEX log_lines_by_handler ON log_lines (handler, at DESC);
"#,
}];

/// Log lines in a PostgreSQL table.
pub struct PostgresSink {
    db: PgDatabase,
}

impl PostgresSink {
    /// Connects (failing as `Unavailable` within the connect timeout when the database cannot
    /// be reached) and brings the log schema up to date.
    pub async fn open(settings: &PostgresSettings) -> Result<Self> {
        let db = PgDatabase::connect(settings).await?;
        migrate(&db, "logs", MIGRATIONS).await?;
        tracing::info!(database = %db.target(), schema = %db.schema(), "log sink opened");
        Ok(PostgresSink { db })
    }
}

/// PostgreSQL text cannot hold NUL characters: they are stored as U+FFFD.
fn storable(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

#[async_trait]
impl OperationalSink for PostgresSink {
    async fn write_logs(&self, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&LogLine> = lines.iter().collect();
        sorted.sort_by(|a, b| {
            (a.execution_id.as_str(), a.attempt, a.seq).cmp(&(
                b.execution_id.as_str(),
                b.attempt,
                b.seq,
            ))
        });
        sorted.dedup_by(|a, b| {
            (a.execution_id.as_str(), a.attempt, a.seq)
                == (b.execution_id.as_str(), b.attempt, b.seq)
        });
        let n = sorted.len();
        let mut ids = Vec::with_capacity(n);
        let mut attempts = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(n);
        let mut handlers = Vec::with_capacity(n);
        let mut ats: Vec<DateTime<Utc>> = Vec::with_capacity(n);
        let mut levels = Vec::with_capacity(n);
        let mut messages = Vec::with_capacity(n);
        let mut fields = Vec::with_capacity(n);
        for line in sorted {
            ids.push(line.execution_id.as_str().to_string());
            attempts.push(i64::from(line.attempt));
            seqs.push(i64::from(line.seq));
            handlers.push(storable(&line.handler));
            ats.push(line.at);
            levels.push(line.level.as_str().to_string());
            messages.push(storable(&line.message));
            fields.push(
                serde_json::to_string(&line.fields).kind_context(ErrorKind::Internal, || {
                    format!("encoding log fields of execution {}", line.execution_id)
                })?,
            );
        }
        let what = || format!("writing {n} log lines");
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO log_lines
                    (execution_id, attempt, seq, handler, at, level, message, fields)
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[],
                     $5::timestamptz[], $6::text[], $7::text[], $8::text[])
                 ORDER BY 1, 2, 3
                 ON CONFLICT (execution_id, attempt, seq) DO NOTHING",
            )
            .await
            .map_err(self.db.error(what()))?;
        client
            .execute(
                &stmt,
                &[
                    &ids, &attempts, &seqs, &handlers, &ats, &levels, &messages, &fields,
                ],
            )
            .await
            .map_err(self.db.error(what()))?;
        Ok(())
    }

    async fn delete_logs(&self, ids: &[ExecutionId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let what = format!("deleting the log lines of {} executions", ids.len());
        let client = self.db.client().await?;
        client
            .execute(
                "DELETE FROM log_lines WHERE execution_id = ANY($1)",
                &[&ids],
            )
            .await
            .map_err(self.db.error(what))
    }

    async fn handler_logs(&self, query: &LogQuery) -> Result<Vec<LogLine>> {
        let what = || format!("reading log lines of handler {}", query.handler);
        let after = query.after.as_ref();
        let after_at = after.map(|a| a.at);
        let after_id = after.map_or("", |a| a.execution_id.as_str());
        let after_attempt = after.map_or(0, |a| i64::from(a.attempt));
        let after_seq = after.map_or(0, |a| i64::from(a.seq));
        let limit = query.page_size() as i64;
        let client = self.db.client().await?;
        // The index on (handler, at) finds the lines from the lower bound on; the cursor
        // then skips those of its own time up to it.
        let stmt = client
            .prepare_cached(
                "SELECT execution_id, handler, attempt, seq, at, level, message, fields FROM log_lines
                 WHERE handler = $1
                   AND ($2::timestamptz IS NULL OR at >= $2)
                   AND ($3::timestamptz IS NULL
                        OR (at, execution_id, attempt, seq) > ($3, $4::text, $5::int8, $6::int8))
                 ORDER BY at, execution_id, attempt, seq
                 LIMIT $7",
            )
            .await
            .map_err(self.db.error(what()))?;
        let rows = client
            .query(
                &stmt,
                &[
                    &storable(&query.handler),
                    &query.lower_bound(),
                    &after_at,
                    &after_id,
                    &after_attempt,
                    &after_seq,
                    &limit,
                ],
            )
            .await
            .map_err(self.db.error(what()))?;
        rows.iter().map(|row| log_line(row, what)).collect()
    }

    async fn execution_logs(&self, id: &ExecutionId) -> Result<Vec<LogLine>> {
        let what = || format!("reading log lines of execution {id}");
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT execution_id, handler, attempt, seq, at, level, message, fields FROM log_lines
                 WHERE execution_id = $1 ORDER BY attempt, seq",
            )
            .await
            .map_err(self.db.error(what()))?;
        let rows = client
            .query(&stmt, &[&id.as_str()])
            .await
            .map_err(self.db.error(what()))?;
        rows.iter().map(|row| log_line(row, what)).collect()
    }
}

/// The log line of a `log_lines` row as both readers select it: execution_id, handler,
/// attempt, seq, at, level, message, fields. `what` names the read for errors.
fn log_line(row: &tokio_postgres::Row, what: impl Fn() -> String + Copy) -> Result<LogLine> {
    let get_err = |e| crate::Error::internal(what()).with_source(e);
    let id: String = row.try_get(0).map_err(get_err)?;
    let attempt: i64 = row.try_get(2).map_err(get_err)?;
    let seq: i64 = row.try_get(3).map_err(get_err)?;
    let level: String = row.try_get(5).map_err(get_err)?;
    let fields: String = row.try_get(7).map_err(get_err)?;
    Ok(LogLine {
        execution_id: ExecutionId::parse(&id).kind_context(ErrorKind::Internal, what)?,
        handler: row.try_get(1).map_err(get_err)?,
        attempt: u32::try_from(attempt).unwrap_or_default(),
        seq: u32::try_from(seq).unwrap_or_default(),
        at: row.try_get(4).map_err(get_err)?,
        level: LogLevel::parse(&level).kind_context(ErrorKind::Internal, what)?,
        message: row.try_get(6).map_err(get_err)?,
        fields: serde_json::from_str(&fields).kind_context(ErrorKind::Internal, what)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::postgres::testing::{drop_schema, fresh_settings};

    fn line(id: &ExecutionId, seq: u32, message: &str) -> LogLine {
        LogLine {
            execution_id: id.clone(),
            handler: "h".into(),
            attempt: 1,
            seq,
            at: DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap(),
            level: LogLevel::Warn,
            message: message.into(),
            fields: [("k".to_string(), "v\0w".to_string())].into(),
        }
    }

    #[tokio::test]
    async fn postgres_sink_passes_the_conformance_suite() {
        let Some(settings) = fresh_settings("postgres_sink_passes_the_conformance_suite") else {
            return;
        };
        let sink = PostgresSink::open(&settings).await.unwrap();
        crate::sink::testsuite::run(&sink).await;
        drop(sink);
        drop_schema(&settings).await;
    }

    #[tokio::test]
    async fn postgres_log_lines_survive_a_restart_and_nul_is_stored_as_replacement() {
        let Some(settings) =
            fresh_settings("postgres_log_lines_survive_a_restart_and_nul_is_stored_as_replacement")
        else {
            return;
        };
        let sink = PostgresSink::open(&settings).await.unwrap();
        let id = ExecutionId::derive("/s", "1", "h");
        let kept = line(&id, 0, "kept");
        sink.write_logs(&[kept.clone(), line(&id, 1, "a\0b")])
            .await
            .unwrap();
        drop(sink);
        let sink = PostgresSink::open(&settings).await.unwrap();
        let stored = sink.execution_logs(&id).await.unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0], kept, "fields are json text: a nul survives");
        assert_eq!(stored[1].message, "a\u{fffd}b");
        drop(sink);
        drop_schema(&settings).await;
    }

    #[tokio::test]
    async fn postgres_sink_and_state_store_share_a_schema() {
        let Some(settings) = fresh_settings("postgres_sink_and_state_store_share_a_schema") else {
            return;
        };
        let (sink, store) = tokio::join!(
            PostgresSink::open(&settings),
            crate::store::postgres::PostgresStateStore::open(&settings)
        );
        let (sink, store) = (sink.unwrap(), store.unwrap());
        sink.write_logs(&[line(&ExecutionId::derive("/s", "2", "h"), 0, "x")])
            .await
            .unwrap();
        drop((sink, store));
        drop_schema(&settings).await;
    }
}
