//! Workflow runs in the PostgreSQL state schema (migration 8).
//!
//! A run is one row: its document (the JSON of the [`Run`], as text like every document of the
//! schema) and the columns the list filters and sorts on, copied from it. An update is one
//! `UPDATE … WHERE version = $6`: of two updates from one version, the second waits for the
//! first's row lock, then finds the version moved on and changes nothing. Batches of execution
//! ids are one array parameter.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::list::FIRST_TIMESTAMP_MICROS;
use super::rows::{get, time};
use super::{Param, PostgresStateStore};
use crate::error::{Error, Result};
use crate::execution::{ExecutionId, Page};
use crate::store::encoding::{
    decode_run, decode_run_cursor, encode_run, run_page_of, stored_run_version,
};
use crate::workflow::ledger::{RunLedger, RunQuery};
use crate::workflow::run::{Run, RunId, RunSummary};

const NEWEST_FIRST: &str = "ORDER BY created_at DESC, id DESC";

/// The filters of a runs query, as `WHERE` clauses (placeholders `$1`…) and their values.
struct Filter {
    clauses: Vec<String>,
    args: Vec<Param>,
}

impl Filter {
    fn of(query: &RunQuery) -> Result<Filter> {
        let mut clauses = Vec::new();
        let mut args: Vec<Param> = Vec::new();
        if let Some(workflow) = &query.workflow {
            args.push(Box::new(workflow.clone()));
            clauses.push(format!("workflow = ${}", args.len()));
        }
        if let Some(status) = query.status {
            args.push(Box::new(status.as_str().to_string()));
            clauses.push(format!("status = ${}", args.len()));
        }
        if let Some(since) = query.since {
            args.push(Box::new(since));
            clauses.push(format!("created_at >= ${}", args.len()));
        }
        if let Some(until) = query.until {
            args.push(Box::new(until));
            clauses.push(format!("created_at < ${}", args.len()));
        }
        if let Some(cursor) = &query.cursor {
            let (at, id) = decode_run_cursor(cursor)?;
            let at = time(at)
                .ok()
                .filter(|_| at >= FIRST_TIMESTAMP_MICROS)
                .ok_or_else(|| Error::invalid(format!("runs cursor {cursor:?} is malformed")))?;
            args.push(Box::new(at));
            args.push(Box::new(id));
            // A row comparison: one index range, newest first.
            clauses.push(format!(
                "(created_at, id) < (${}, ${})",
                args.len() - 1,
                args.len()
            ));
        }
        Ok(Filter { clauses, args })
    }

    /// The newest runs passing the filter, one index range. Values: the filter's, the page size
    /// plus one.
    fn sql(&self) -> String {
        let filter = if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        };
        format!(
            "SELECT id, created_at, version, doc FROM workflow_runs {filter} {NEWEST_FIRST} LIMIT ${}",
            self.args.len() + 1
        )
    }
}

/// A row of id, created_at, version and doc: the run, with its stored `created_at` in
/// microseconds.
fn listed(row: &Row) -> Result<(i64, Run)> {
    let id: String = get(row, 0)?;
    let at: chrono::DateTime<chrono::Utc> = get(row, 1)?;
    let version: i64 = get(row, 2)?;
    let doc: String = get(row, 3)?;
    Ok((at.timestamp_micros(), decode_run(&id, &doc, version)?))
}

fn stored_run_id(row: &Row) -> Result<RunId> {
    let text: String = get(row, 0)?;
    RunId::parse(&text)
        .map_err(|e| Error::internal(format!("stored run id {text:?}")).with_source(e))
}

#[async_trait]
impl RunLedger for PostgresStateStore {
    async fn create_run(&self, run: &Run) -> Result<bool> {
        let doc = encode_run(run)?;
        let rows = self
            .rows(
                &format!("creating run {} of workflow {}", run.id, run.workflow),
                "INSERT INTO workflow_runs
                     (id, workflow, status, created_at, updated_at, finished_at, version, doc)
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7)
                 ON CONFLICT (id) DO NOTHING
                 RETURNING 1",
                &[
                    &run.id.as_str(),
                    &run.workflow,
                    &run.status.as_str(),
                    &run.created_at,
                    &run.updated_at,
                    &run.finished_at,
                    &doc,
                ],
            )
            .await?;
        Ok(rows.len() == 1)
    }

    async fn get_run(&self, id: &RunId) -> Result<Option<Run>> {
        let rows = self
            .rows(
                &format!("reading run {id}"),
                "SELECT version, doc FROM workflow_runs WHERE id = $1",
                &[&id.as_str()],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let version: i64 = get(row, 0)?;
        let doc: String = get(row, 1)?;
        decode_run(id.as_str(), &doc, version).map(Some)
    }

    async fn update_run(&self, run: &Run) -> Result<bool> {
        let Some(version) = stored_run_version(run) else {
            return Ok(false);
        };
        let doc = encode_run(run)?;
        let rows = self
            .rows(
                &format!("updating run {} at version {version}", run.id),
                "UPDATE workflow_runs SET doc = $2, status = $3, updated_at = $4,
                     finished_at = $5, version = version + 1
                 WHERE id = $1 AND version = $6
                 RETURNING 1",
                &[
                    &run.id.as_str(),
                    &doc,
                    &run.status.as_str(),
                    &run.updated_at,
                    &run.finished_at,
                    &version,
                ],
            )
            .await?;
        Ok(rows.len() == 1)
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<RunSummary>> {
        let filter = Filter::of(query)?;
        let limit = query.page_size();
        let more = i64::from(limit + 1);
        let params: Vec<&(dyn ToSql + Sync)> = filter
            .args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .chain([&more as &(dyn ToSql + Sync)])
            .collect();
        let rows = self
            .rows("listing workflow runs", &filter.sql(), &params)
            .await?;
        let rows = rows.iter().map(listed).collect::<Result<Vec<_>>>()?;
        Ok(run_page_of(rows, limit))
    }

    async fn unfinished_runs(&self, limit: u32) -> Result<Vec<RunId>> {
        let rows = self
            .rows(
                &format!("finding up to {limit} unfinished runs"),
                "SELECT id FROM workflow_runs WHERE finished_at IS NULL
                 ORDER BY created_at, id LIMIT $1",
                &[&i64::from(limit)],
            )
            .await?;
        rows.iter().map(stored_run_id).collect()
    }

    async fn index_step_executions(&self, run: &RunId, executions: &[ExecutionId]) -> Result<()> {
        if executions.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = executions.iter().map(ExecutionId::as_str).collect();
        self.rows(
            &format!("indexing {} step executions of run {run}", ids.len()),
            "INSERT INTO workflow_run_executions (execution_id, run_id)
             SELECT DISTINCT unnest($1::text[]), $2::text
             ON CONFLICT (execution_id) DO NOTHING",
            &[&ids, &run.as_str()],
        )
        .await?;
        Ok(())
    }

    async fn runs_of(&self, executions: &[ExecutionId]) -> Result<Vec<RunId>> {
        if executions.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = executions.iter().map(ExecutionId::as_str).collect();
        let rows = self
            .rows(
                &format!("finding the runs of {} executions", ids.len()),
                "SELECT DISTINCT run_id FROM workflow_run_executions
                 WHERE execution_id = ANY($1) ORDER BY run_id",
                &[&ids],
            )
            .await?;
        rows.iter().map(stored_run_id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::migrations;
    use super::super::testing::{drop_schema, fresh_settings, raw_client};
    use super::super::PgDatabase;
    use super::*;
    use crate::error::ErrorKind;

    #[tokio::test]
    async fn postgres_run_whose_document_does_not_decode_is_an_internal_error_naming_it() {
        let Some(settings) = fresh_settings(
            "postgres_run_whose_document_does_not_decode_is_an_internal_error_naming_it",
        ) else {
            return;
        };
        let store = PostgresStateStore::open(&settings).await.unwrap();
        let id = RunId::for_trigger("flow", "/s", "broken");
        raw_client(&settings)
            .await
            .execute(
                &format!(
                    "INSERT INTO \"{}\".workflow_runs
                         (id, workflow, status, created_at, updated_at, version, doc)
                     VALUES ($1, 'flow', 'running', now(), now(), 1, '{{\"id\": 7}}')",
                    settings.schema
                ),
                &[&id.as_str()],
            )
            .await
            .unwrap();
        let err = store.get_run(&id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{}", err.chain());
        assert!(err.message().contains(id.as_str()), "{}", err.chain());
        let err = store.list_runs(&RunQuery::default()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{}", err.chain());
        assert!(err.message().contains(id.as_str()), "{}", err.chain());
        // A cursor out of PostgreSQL's range is malformed, not a database error.
        let err = store
            .list_runs(&RunQuery {
                cursor: Some(format!("{}:{id}", i64::MIN)),
                ..RunQuery::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{}", err.chain());
        drop(store);
        drop_schema(&settings).await;
    }

    #[tokio::test]
    async fn postgres_schema_from_before_workflow_runs_gets_their_tables() {
        let Some(settings) =
            fresh_settings("postgres_schema_from_before_workflow_runs_gets_their_tables")
        else {
            return;
        };
        let db = PgDatabase::connect(&settings).await.unwrap();
        migrations::migrate(&db, "state", &migrations::STATE[..7])
            .await
            .unwrap();
        drop(db);
        let store = PostgresStateStore::open(&settings).await.unwrap();
        crate::workflow::testsuite::run(&store).await;
        drop(store);
        drop_schema(&settings).await;
    }
}
