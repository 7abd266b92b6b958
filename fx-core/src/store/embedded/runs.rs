//! Workflow runs in the SQLite state database (schema step 10).
//!
//! A run is one row: its document (the JSON of the [`Run`]) and the columns the list filters
//! and sorts on, copied from it. An update is one `UPDATE … WHERE version = ?`, so of two
//! updates from one version only the first changes the row (the connection runs one statement
//! at a time, and two processes sharing the file serialize their writes). Execution ids travel
//! to SQLite as one JSON array (`json_each`), so a batch of any size is one statement.

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::micros;
use super::SqliteStateStore;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::execution::{ExecutionId, Page};
use crate::sqlite::db;
use crate::store::encoding::{
    decode_run, decode_run_cursor, encode_run, run_page_of, stored_run_version,
};
use crate::workflow::ledger::{RunLedger, RunQuery};
use crate::workflow::run::{Run, RunId, RunSummary};

const NEWEST_FIRST: &str = "ORDER BY created_at DESC, id DESC";

/// The values a run's row is written with: its id, document and copied columns.
struct RunRow {
    id: String,
    workflow: String,
    status: &'static str,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
    doc: String,
}

impl RunRow {
    fn of(run: &Run) -> Result<RunRow> {
        Ok(RunRow {
            id: run.id.as_str().to_string(),
            workflow: run.workflow.clone(),
            status: run.status.as_str(),
            created_at: micros(run.created_at),
            updated_at: micros(run.updated_at),
            finished_at: run.finished_at.map(micros),
            doc: encode_run(run)?,
        })
    }
}

/// The ids as a JSON array of strings, for `json_each`.
fn json_ids(ids: &[ExecutionId]) -> Result<String> {
    let ids: Vec<&str> = ids.iter().map(ExecutionId::as_str).collect();
    serde_json::to_string(&ids).kind_context(ErrorKind::Internal, || {
        format!("encoding {} execution ids", ids.len())
    })
}

/// The filters of a runs query, as `WHERE` clauses and their values.
struct Filter {
    clauses: Vec<&'static str>,
    args: Vec<SqlValue>,
}

impl Filter {
    fn of(query: &RunQuery) -> Result<Filter> {
        let mut filter = Filter {
            clauses: Vec::new(),
            args: Vec::new(),
        };
        if let Some(workflow) = &query.workflow {
            filter.clauses.push("workflow = ?");
            filter.args.push(workflow.clone().into());
        }
        if let Some(status) = query.status {
            filter.clauses.push("status = ?");
            filter.args.push(status.as_str().to_string().into());
        }
        if let Some(since) = query.since {
            filter.clauses.push("created_at >= ?");
            filter.args.push(micros(since).into());
        }
        if let Some(until) = query.until {
            filter.clauses.push("created_at < ?");
            filter.args.push(micros(until).into());
        }
        if let Some(cursor) = &query.cursor {
            let (at, id) = decode_run_cursor(cursor)?;
            filter.clauses.push("(created_at, id) < (?, ?)");
            filter.args.extend([at.into(), id.into()]);
        }
        Ok(filter)
    }

    /// The newest runs passing the filter, one index range. Values: the filter's, the page size
    /// plus one.
    fn sql(&self) -> String {
        let filter = if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        };
        format!("SELECT id, created_at, version, doc FROM workflow_runs {filter} {NEWEST_FIRST} LIMIT ?")
    }
}

/// The runs (with their stored `created_at`) that `sql` selects with `args`: id, created_at,
/// version and doc.
fn runs(conn: &Connection, sql: &str, args: Vec<SqlValue>) -> Result<Vec<(i64, Run)>> {
    let what = "listing workflow runs";
    let mut stmt = conn.prepare_cached(sql).map_err(db(what))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
            ))
        })
        .map_err(db(what))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db(what))?;
    rows.into_iter()
        .map(|(id, at, version, doc)| Ok((at, decode_run(&id, &doc, version)?)))
        .collect()
}

#[async_trait]
impl RunLedger for SqliteStateStore {
    async fn create_run(&self, run: &Run) -> Result<bool> {
        let row = RunRow::of(run)?;
        self.call(move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO workflow_runs
                         (id, workflow, status, created_at, updated_at, finished_at, version, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)
                     ON CONFLICT (id) DO NOTHING",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        row.id,
                        row.workflow,
                        row.status,
                        row.created_at,
                        row.updated_at,
                        row.finished_at,
                        row.doc
                    ])
                })
                .map_err(db(format!(
                    "creating run {} of workflow {}",
                    row.id, row.workflow
                )))?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<Run>> {
        let id = id.as_str().to_string();
        let row = self
            .call(move |conn| {
                let what = || format!("reading run {id}");
                let row = conn
                    .prepare_cached("SELECT version, doc FROM workflow_runs WHERE id = ?1")
                    .and_then(|mut stmt| {
                        stmt.query_row(params![id], |row| {
                            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                        })
                        .optional()
                    })
                    .map_err(db(what()))?;
                Ok(row.map(|row| (id, row)))
            })
            .await?;
        row.map(|(id, (version, doc))| decode_run(&id, &doc, version))
            .transpose()
    }

    async fn update_run(&self, run: &Run) -> Result<bool> {
        let Some(version) = stored_run_version(run) else {
            return Ok(false);
        };
        let row = RunRow::of(run)?;
        self.call(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE workflow_runs SET doc = ?2, status = ?3, updated_at = ?4,
                         finished_at = ?5, version = version + 1
                     WHERE id = ?1 AND version = ?6",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        row.id,
                        row.doc,
                        row.status,
                        row.updated_at,
                        row.finished_at,
                        version
                    ])
                })
                .map_err(db(format!("updating run {} at version {version}", row.id)))?;
            Ok(changed == 1)
        })
        .await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<RunSummary>> {
        let filter = Filter::of(query)?;
        let limit = query.page_size();
        let rows = self
            .call(move |conn| {
                let mut args = filter.args.clone();
                args.push(i64::from(limit + 1).into());
                runs(conn, &filter.sql(), args)
            })
            .await?;
        Ok(run_page_of(rows, limit))
    }

    async fn unfinished_runs(&self, limit: u32) -> Result<Vec<RunId>> {
        let ids = self
            .call(move |conn| {
                let what = || format!("finding up to {limit} unfinished runs");
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id FROM workflow_runs WHERE finished_at IS NULL
                         ORDER BY created_at, id LIMIT ?1",
                    )
                    .map_err(db(what()))?;
                let ids = stmt
                    .query_map(params![i64::from(limit)], |row| row.get::<_, String>(0))
                    .map_err(db(what()))?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(db(what()));
                ids
            })
            .await?;
        ids.iter().map(|id| stored_run_id(id)).collect()
    }

    async fn index_step_executions(&self, run: &RunId, executions: &[ExecutionId]) -> Result<()> {
        if executions.is_empty() {
            return Ok(());
        }
        let (ids, count, run) = (json_ids(executions)?, executions.len(), run.clone());
        self.call(move |conn| {
            // `WHERE true`: an upsert's SELECT needs a WHERE clause (else `ON` would read as a
            // join's).
            conn.prepare_cached(
                "INSERT INTO workflow_run_executions (execution_id, run_id)
                 SELECT value, ?2 FROM json_each(?1) WHERE true
                 ON CONFLICT (execution_id) DO NOTHING",
            )
            .and_then(|mut stmt| stmt.execute(params![ids, run.as_str()]))
            .map_err(db(format!("indexing {count} step executions of run {run}")))?;
            Ok(())
        })
        .await
    }

    async fn runs_of(&self, executions: &[ExecutionId]) -> Result<Vec<RunId>> {
        if executions.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, count) = (json_ids(executions)?, executions.len());
        let runs = self
            .call(move |conn| {
                let what = || format!("finding the runs of {count} executions");
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT DISTINCT run_id FROM workflow_run_executions
                         WHERE execution_id IN (SELECT value FROM json_each(?1))
                         ORDER BY run_id",
                    )
                    .map_err(db(what()))?;
                let runs = stmt
                    .query_map(params![ids], |row| row.get::<_, String>(0))
                    .map_err(db(what()))?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(db(what()));
                runs
            })
            .await?;
        runs.iter().map(|id| stored_run_id(id)).collect()
    }
}

fn stored_run_id(text: &str) -> Result<RunId> {
    RunId::parse(text)
        .map_err(|e| Error::internal(format!("stored run id {text:?}")).with_source(e))
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::store::embedded::migrations::MIGRATIONS;
    use crate::workflow::run::RunStatus;

    /// The plan SQLite makes of `sql` (`EXPLAIN QUERY PLAN`, every value NULL), one step a line.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![SqlValue::Null; stmt.parameter_count()];
        let steps = stmt
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        steps.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    async fn store() -> (tempfile::TempDir, SqliteStateStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::open(&dir.path().join("state.sqlite"))
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn every_runs_statement_reads_an_index_in_order() {
        let (_dir, store) = store().await;
        store
            .call(|conn| {
                let cursor = crate::store::encoding::encode_run_cursor(
                    1,
                    &RunId::for_trigger("flow", "/s", "1"),
                );
                let at = DateTime::from_timestamp_micros(1_700_000_000_000_000);
                for (query, index) in [
                    (RunQuery::default(), "workflow_runs_newest"),
                    (
                        RunQuery {
                            workflow: Some("flow".into()),
                            ..RunQuery::default()
                        },
                        "workflow_runs_by_workflow",
                    ),
                    (
                        RunQuery {
                            status: Some(RunStatus::Failed),
                            since: at,
                            ..RunQuery::default()
                        },
                        "workflow_runs_by_status",
                    ),
                    (
                        RunQuery {
                            workflow: Some("flow".into()),
                            status: Some(RunStatus::Failed),
                            since: at,
                            until: at,
                            cursor: Some(cursor),
                            ..RunQuery::default()
                        },
                        "workflow_runs_by_workflow_status",
                    ),
                ] {
                    let sql = Filter::of(&query)?.sql();
                    let plan = plan(conn, &sql);
                    assert!(
                        plan.split_whitespace().any(|word| word == index)
                            && !plan.contains("TEMP B-TREE"),
                        "{query:?}:\n{plan}"
                    );
                }
                let unfinished = plan(
                    conn,
                    "SELECT id FROM workflow_runs WHERE finished_at IS NULL
                     ORDER BY created_at, id LIMIT ?1",
                );
                assert!(
                    unfinished.contains("INDEX workflow_runs_unfinished")
                        && !unfinished.contains("TEMP B-TREE"),
                    "{unfinished}"
                );
                let runs_of = plan(
                    conn,
                    "SELECT DISTINCT run_id FROM workflow_run_executions
                     WHERE execution_id IN (SELECT value FROM json_each(?1))",
                );
                assert!(
                    runs_of.contains("sqlite_autoindex_workflow_run_executions_1"),
                    "{runs_of}"
                );
                Ok(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_run_whose_document_does_not_decode_is_an_internal_error_naming_it() {
        let (_dir, store) = store().await;
        let id = RunId::for_trigger("flow", "/s", "broken");
        let stored = id.as_str().to_string();
        store
            .call(move |conn| {
                conn.execute(
                    "INSERT INTO workflow_runs
                         (id, workflow, status, created_at, updated_at, version, doc)
                     VALUES (?1, 'flow', 'running', 0, 0, 1, '{\"id\": 7}')",
                    params![stored],
                )
                .map_err(db("inserting a broken run"))?;
                Ok(())
            })
            .await
            .unwrap();
        let err = store.get_run(&id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{}", err.chain());
        assert!(err.message().contains(id.as_str()), "{}", err.chain());
        let err = store.list_runs(&RunQuery::default()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{}", err.chain());
        assert!(err.message().contains(id.as_str()), "{}", err.chain());
    }

    #[tokio::test]
    async fn a_malformed_runs_cursor_is_invalid() {
        let (_dir, store) = store().await;
        for cursor in ["", "12", "x:y", "12:nothex", "12:0123"] {
            let err = store
                .list_runs(&RunQuery {
                    cursor: Some(cursor.into()),
                    ..RunQuery::default()
                })
                .await
                .unwrap_err();
            assert_eq!(
                err.kind(),
                ErrorKind::Invalid,
                "{cursor:?}: {}",
                err.chain()
            );
        }
    }

    #[tokio::test]
    async fn a_file_from_before_workflow_runs_gets_their_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..9] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 9).unwrap();
        drop(conn);
        let store = SqliteStateStore::open(&path).await.unwrap();
        crate::workflow::testsuite::run(&store).await;
    }
}
