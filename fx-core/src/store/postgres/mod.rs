//! The PostgreSQL state store: packages, aliases and executions in one schema of a shared
//! database, for distributed deployments.
//!
//! Semantics are those of the embedded (SQLite) store, statement for statement: the schema
//! mirrors it ([`migrations::STATE`]), the list cursor is the same (`created_at` micros and id,
//! keyset paging, never `OFFSET`), and each write is one statement or one transaction, so
//! concurrent writers (several gateways, redelivered events) are safe. A state event is one
//! conditional `UPDATE`, so a replayed or superseded event changes nothing.
//!
//! - `connection`: settings, the pool and the error mapping (shared with the PostgreSQL log
//!   sink).
//! - [`migrations`]: the versioned schema, applied at open.
//! - `text_index`: the executions text filter's `pg_trgm` indexes, made at open when possible.
//! - `list`: the executions list.
//! - `rows`: the columns read back and the decoding of each row type.

use async_trait::async_trait;
use tokio_postgres::types::ToSql;

use super::change::StateChange;
use super::encoding::stored_revision;
use super::text_filter::TEXT_WINDOW;
use super::{Created, HandlerChange, StateStore};
use crate::error::{Error, Result};
use crate::execution::{
    Execution, ExecutionId, ExecutionQuery, ExecutionStatus, ExecutionSummary, Page, StateEvent,
};
use crate::handler::PackageRef;
use crate::package::{
    validate_alias, validate_version, version_order, PackageAlias, PackageVersion, LATEST_ALIAS,
};
use crate::validate::validate_name;

mod catalogue;
mod connection;
mod identity;
mod list;
pub(crate) mod migrations;
mod notifications;
mod rows;
mod runs;
mod secrets;
#[cfg(test)]
mod tests;
mod text_index;
mod ticks;
mod tls;

#[cfg(test)]
pub(crate) use connection::testing;
pub(crate) use connection::PgDatabase;
pub use connection::{PgTlsMode, PostgresSettings};
use list::TextSearch;
use rows::{
    execution, from_json, get, package_version, stored_status, to_json, EXECUTION_COLUMNS,
    PACKAGE_COLUMNS,
};

/// A query parameter.
type Param = Box<dyn ToSql + Sync + Send>;

/// The state store in a PostgreSQL schema.
pub struct PostgresStateStore {
    db: PgDatabase,
    /// How the executions list answers a text filter.
    text_search: TextSearch,
}

impl PostgresStateStore {
    /// Connects (failing as `Unavailable` within the connect timeout when the database cannot
    /// be reached), brings the schema up to date and builds the text filter's indexes if it
    /// can (see `text_index`).
    pub async fn open(settings: &PostgresSettings) -> Result<Self> {
        let db = PgDatabase::connect(settings).await?;
        migrations::migrate(&db, "state", migrations::STATE).await?;
        let indexed = text_index::ensure(&db).await;
        tracing::info!(database = %db.target(), schema = %db.schema(), text_index = indexed, "state store opened");
        Ok(PostgresStateStore {
            db,
            text_search: TextSearch {
                window: TEXT_WINDOW,
                indexed,
            },
        })
    }

    /// The store with the executions list's text filter window lowered to `rows`, so that
    /// tests reach its text index with a few executions.
    #[cfg(test)]
    pub(crate) fn with_text_window(self, rows: u32) -> Self {
        PostgresStateStore {
            text_search: TextSearch {
                window: rows,
                ..self.text_search
            },
            ..self
        }
    }
}

/// Moves a queued execution, or one on an earlier attempt, to `running`; never a replay. The
/// second column tells an unknown execution from a stale event.
/// Runs the statements of `writes` on `client` in their order, without waiting for each answer
/// before sending the next.
async fn pipelined<C: tokio_postgres::GenericClient + Sync>(
    client: &C,
    writes: &[StateWrite],
    start: &tokio_postgres::Statement,
    finish: &tokio_postgres::Statement,
) -> std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let queries = writes.iter().map(|write| {
        let stmt = if write.finish { finish } else { start };
        let params: Vec<&(dyn ToSql + Sync)> = write.args.iter().map(|a| a.as_ref() as _).collect();
        async move { client.query_one(stmt, &params).await }
    });
    futures::future::try_join_all(queries).await
}

/// One state event as the statement that applies it.
struct StateWrite {
    id: ExecutionId,
    state: &'static str,
    /// [`FINISH`] rather than [`START`].
    finish: bool,
    args: Vec<Param>,
}

impl StateWrite {
    /// The write of `change`.
    fn of(change: StateChange) -> StateWrite {
        let (id, state) = (change.id().clone(), change.name());
        let (finish, args): (bool, Vec<Param>) = match change {
            StateChange::Start { id, attempt, at } => (
                false,
                vec![
                    Box::new(id.as_str().to_string()),
                    Box::new(i64::from(attempt)),
                    Box::new(at),
                ],
            ),
            StateChange::Finish(f) => (
                true,
                vec![
                    Box::new(f.id.as_str().to_string()),
                    Box::new(f.status.as_str().to_string()),
                    Box::new(i64::from(f.attempt)),
                    Box::new(f.finished_at),
                    Box::new(f.duration_us),
                    Box::new(f.inferred_start),
                    Box::new(f.output),
                    Box::new(f.error),
                    Box::new(f.record),
                ],
            ),
        };
        StateWrite {
            id,
            state,
            finish,
            args,
        }
    }
}

/// Creates an execution `queued` unless one with its id exists (then inserts nothing).
const INSERT_EXECUTION: &str = "INSERT INTO executions (id, handler, status, attempts, event_id,
        event_source, event_type, event, package, output, created_at)
     VALUES ($1, $2, 'queued', 0, $3, $4, $5, $6, $7, '[]', $8)
     ON CONFLICT (id) DO NOTHING";

const START: &str = "WITH applied AS (
        UPDATE executions SET status = 'running', attempts = $2, started_at = $3,
            finished_at = NULL, duration_us = NULL
        WHERE id = $1 AND (attempts < $2 OR (attempts = $2 AND status = 'queued'))
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM applied), EXISTS (SELECT 1 FROM executions WHERE id = $1)";

/// Records the terminal state of an attempt: a later attempt than the stored one, or the end of
/// the stored attempt if it has not ended yet. A start that was never recorded is inferred from
/// the end and the run time.
const FINISH: &str = "WITH applied AS (
        UPDATE executions SET status = $2, attempts = $3, finished_at = $4, duration_us = $5,
            started_at = CASE WHEN attempts = $3 AND started_at IS NOT NULL
                THEN started_at ELSE $6 END,
            output = $7, error = $8
        WHERE id = $1
            AND (attempts < $3 OR (attempts = $3 AND status NOT IN ('succeeded', 'failed')))
        RETURNING 1),
    recorded AS (
        INSERT INTO execution_attempts (execution_id, attempt, record)
        SELECT $1, $3, $9 WHERE EXISTS (SELECT 1 FROM executions WHERE id = $1)
        ON CONFLICT (execution_id, attempt) DO NOTHING
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM applied), EXISTS (SELECT 1 FROM executions WHERE id = $1)";

#[async_trait]
impl StateStore for PostgresStateStore {
    async fn add_package_version(&self, version: &PackageVersion) -> Result<()> {
        validate_name("package name", &version.name)?;
        validate_version(&version.version)?;
        let manifest = to_json("package manifest", &version.manifest)?;
        let v = version;
        let what = || format!("adding package {} version {}", v.name, v.version);
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(self.db.error(what()))?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO package_versions
                    (name, version, digest, size, manifest, uploaded_at, uploaded_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO NOTHING",
            )
            .await
            .map_err(self.db.error(what()))?;
        let inserted = tx
            .execute(
                &insert,
                &[
                    &v.name,
                    &v.version,
                    &v.digest.as_str(),
                    &i64::try_from(v.size).unwrap_or(i64::MAX),
                    &manifest,
                    &v.uploaded_at,
                    &v.uploaded_by,
                ],
            )
            .await
            .map_err(self.db.error(what()))?;
        if inserted == 0 {
            return Err(Error::conflict(format!(
                "package {} version {} already exists",
                v.name, v.version
            )));
        }
        // `latest` moves up only: a lower version uploaded later (a fix of an old line) leaves
        // it where it is; moving it down is an explicit alias move. The row is locked, so of
        // two uploads at once the higher version wins whatever the order.
        let pointing = || format!("pointing package {} alias latest at {}", v.name, v.version);
        let created = tx
            .execute(
                "INSERT INTO package_aliases (name, alias, version) VALUES ($1, $2, $3)
                 ON CONFLICT (name, alias) DO NOTHING",
                &[&v.name, &LATEST_ALIAS, &v.version],
            )
            .await
            .map_err(self.db.error(pointing()))?;
        if created == 0 {
            let current = tx
                .query_one(
                    "SELECT version FROM package_aliases WHERE name = $1 AND alias = $2
                     FOR UPDATE",
                    &[&v.name, &LATEST_ALIAS],
                )
                .await
                .map_err(self.db.error(pointing()))?;
            let current: String = rows::get(&current, 0)?;
            if version_order(&v.version, &current).is_gt() {
                tx.execute(
                    "UPDATE package_aliases SET version = $3 WHERE name = $1 AND alias = $2",
                    &[&v.name, &LATEST_ALIAS, &v.version],
                )
                .await
                .map_err(self.db.error(pointing()))?;
            }
        }
        tx.commit().await.map_err(self.db.error(what()))?;
        tracing::info!(package = %v.name, version = %v.version, digest = %v.digest, "package version added");
        Ok(())
    }

    async fn list_package_versions(&self, name: Option<&str>) -> Result<Vec<PackageVersion>> {
        let what = || "listing package versions".to_string();
        let client = self.db.client().await?;
        let sql = format!(
            "SELECT {PACKAGE_COLUMNS} FROM package_versions
             WHERE $1::text IS NULL OR name = $1::text
             ORDER BY uploaded_at DESC, name, version DESC"
        );
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(self.db.error(what()))?;
        let rows = client
            .query(&stmt, &[&name])
            .await
            .map_err(self.db.error(what()))?;
        rows.iter().map(package_version).collect()
    }

    async fn get_package_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<PackageVersion>> {
        let what = || format!("reading package {name} version {version}");
        let client = self.db.client().await?;
        let sql = format!(
            "SELECT {PACKAGE_COLUMNS} FROM package_versions WHERE name = $1 AND version = $2"
        );
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(self.db.error(what()))?;
        let row = client
            .query_opt(&stmt, &[&name, &version])
            .await
            .map_err(self.db.error(what()))?;
        row.as_ref().map(package_version).transpose()
    }

    async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        validate_alias(alias)?;
        let what = || format!("pointing package {name} alias {alias} at {version}");
        let client = self.db.client().await?;
        // One statement: the alias is written only if the version exists.
        let stmt = client
            .prepare_cached(
                "INSERT INTO package_aliases (name, alias, version)
                 SELECT $1, $2, $3 WHERE EXISTS (
                     SELECT 1 FROM package_versions WHERE name = $1 AND version = $3)
                 ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
            )
            .await
            .map_err(self.db.error(what()))?;
        let written = client
            .execute(&stmt, &[&name, &alias, &version])
            .await
            .map_err(self.db.error(what()))?;
        if written == 0 {
            return Err(Error::not_found(format!(
                "package {name} version {version} not found"
            )));
        }
        tracing::info!(package = %name, alias = %alias, version = %version, "package alias set");
        Ok(())
    }

    async fn list_aliases(&self, name: &str) -> Result<Vec<PackageAlias>> {
        let what = || format!("listing aliases of package {name}");
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT name, alias, version FROM package_aliases WHERE name = $1 ORDER BY alias",
            )
            .await
            .map_err(self.db.error(what()))?;
        let rows = client
            .query(&stmt, &[&name])
            .await
            .map_err(self.db.error(what()))?;
        rows.iter()
            .map(|row| {
                Ok(PackageAlias {
                    package: get(row, 0)?,
                    alias: get(row, 1)?,
                    version: get(row, 2)?,
                })
            })
            .collect()
    }

    async fn resolve_package(&self, reference: &PackageRef) -> Result<PackageVersion> {
        let what = || format!("resolving package {reference}");
        let client = self.db.client().await?;
        let aliased = PACKAGE_COLUMNS
            .split(", ")
            .map(|c| format!("v.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // An exact version wins over an alias of the same name.
        let sql = format!(
            "SELECT {PACKAGE_COLUMNS} FROM (
                 SELECT 0 AS rank, {PACKAGE_COLUMNS} FROM package_versions
                 WHERE name = $1 AND version = $2
                 UNION ALL
                 SELECT 1, {aliased} FROM package_aliases a JOIN package_versions v
                     ON v.name = a.name AND v.version = a.version
                 WHERE a.name = $1 AND a.alias = $2
             ) found ORDER BY rank LIMIT 1"
        );
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(self.db.error(what()))?;
        let row = client
            .query_opt(&stmt, &[&reference.name, &reference.version])
            .await
            .map_err(self.db.error(what()))?;
        match row {
            Some(row) => package_version(&row),
            None => Err(Error::not_found(format!("package {reference} not found"))),
        }
    }

    async fn create_execution(&self, execution: &Execution) -> Result<Created> {
        let summary = ExecutionSummary::from(execution);
        let event = to_json("execution event", &execution.event)?;
        let package = execution
            .package
            .as_ref()
            .map(|p| to_json("execution package", p))
            .transpose()?;
        let id = summary.id.as_str();
        let what = || format!("creating execution {id}");
        let client = self.db.client().await?;
        let insert = client
            .prepare_cached(INSERT_EXECUTION)
            .await
            .map_err(self.db.error(what()))?;
        let inserted = client
            .execute(
                &insert,
                &[
                    &id,
                    &summary.handler,
                    &summary.event_id,
                    &summary.event_source,
                    &summary.event_type,
                    &event,
                    &package,
                    &execution.created_at,
                ],
            )
            .await
            .map_err(self.db.error(what()))?;
        if inserted == 1 {
            return Ok(Created::New);
        }
        // A concurrent insert of the same id has committed by now (the insert above waited for
        // it), and this statement's snapshot sees it.
        let select = client
            .prepare_cached("SELECT status FROM executions WHERE id = $1")
            .await
            .map_err(self.db.error(what()))?;
        let row = client
            .query_opt(&select, &[&id])
            .await
            .map_err(self.db.error(what()))?
            .ok_or_else(|| Error::internal(format!("execution {id} vanished while created")))?;
        Ok(Created::Existing(stored_status(&get::<String>(&row, 0)?)?))
    }

    async fn create_executions(&self, executions: &[Execution]) -> Result<Vec<Created>> {
        if executions.len() < 2 {
            let mut created = Vec::with_capacity(1);
            for execution in executions {
                created.push(self.create_execution(execution).await?);
            }
            return Ok(created);
        }
        let rows = executions
            .iter()
            .map(|execution| {
                let summary = ExecutionSummary::from(execution);
                let event = to_json("execution event", &execution.event)?;
                let package = execution
                    .package
                    .as_ref()
                    .map(|p| to_json("execution package", p))
                    .transpose()?;
                Ok((summary, event, package, execution.created_at))
            })
            .collect::<Result<Vec<_>>>()?;
        // Inserted in the order of their ids: two gateways creating overlapping batches (a
        // redelivery during a rebalance) take the rows' locks in one order and cannot deadlock.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by(|&a, &b| rows[a].0.id.as_str().cmp(rows[b].0.id.as_str()));
        let what = || format!("creating {} execution(s)", rows.len());
        let mut client = self.db.client().await?;
        let insert = client
            .prepare_cached(INSERT_EXECUTION)
            .await
            .map_err(self.db.error(what()))?;
        let tx = client.transaction().await.map_err(self.db.error(what()))?;
        // One transaction, its inserts pipelined on the connection.
        let inserts = order.iter().map(|&i| {
            let (summary, event, package, created_at) = &rows[i];
            let tx = &tx;
            let insert = &insert;
            async move {
                tx.execute(
                    insert,
                    &[
                        &summary.id.as_str(),
                        &summary.handler,
                        &summary.event_id,
                        &summary.event_source,
                        &summary.event_type,
                        event,
                        package,
                        created_at,
                    ],
                )
                .await
            }
        });
        let inserted = futures::future::try_join_all(inserts)
            .await
            .map_err(self.db.error(what()))?;
        let mut created = vec![Created::New; rows.len()];
        let existing: Vec<usize> = order
            .iter()
            .zip(&inserted)
            .filter(|(_, &n)| n == 0)
            .map(|(&i, _)| i)
            .collect();
        if !existing.is_empty() {
            // The inserts that found a row waited for any concurrent insert of it to commit,
            // and this statement's snapshot sees those rows (and this transaction's own).
            let ids: Vec<&str> = existing.iter().map(|&i| rows[i].0.id.as_str()).collect();
            let found = tx
                .query(
                    "SELECT id, status FROM executions WHERE id = ANY($1)",
                    &[&ids],
                )
                .await
                .map_err(self.db.error(what()))?;
            let mut statuses = std::collections::HashMap::with_capacity(found.len());
            for row in &found {
                statuses.insert(get::<String>(row, 0)?, get::<String>(row, 1)?);
            }
            for i in existing {
                let id = rows[i].0.id.as_str();
                let status = statuses.get(id).ok_or_else(|| {
                    Error::internal(format!("execution {id} vanished while created"))
                })?;
                created[i] = Created::Existing(stored_status(status)?);
            }
        }
        tx.commit().await.map_err(self.db.error(what()))?;
        Ok(created)
    }

    async fn apply_state(&self, event: &StateEvent) -> Result<()> {
        self.apply_states(std::slice::from_ref(event)).await
    }

    async fn apply_states(&self, events: &[StateEvent]) -> Result<()> {
        let writes: Vec<StateWrite> = StateChange::of_batch(events)?
            .into_iter()
            .map(StateWrite::of)
            .collect();
        if writes.is_empty() {
            return Ok(());
        }
        let what = || format!("applying {} state event(s)", writes.len());
        let mut client = self.db.client().await?;
        let start = client
            .prepare_cached(START)
            .await
            .map_err(self.db.error(what()))?;
        let finish = client
            .prepare_cached(FINISH)
            .await
            .map_err(self.db.error(what()))?;
        // One transaction, its statements pipelined on the connection (sent in order without
        // waiting for each answer): a few round trips for the batch instead of one per event.
        let rows = if writes.len() > 1 {
            let tx = client.transaction().await.map_err(self.db.error(what()))?;
            let rows = pipelined(&*tx, &writes, &start, &finish)
                .await
                .map_err(self.db.error(what()))?;
            tx.commit().await.map_err(self.db.error(what()))?;
            rows
        } else {
            pipelined(&**client, &writes, &start, &finish)
                .await
                .map_err(self.db.error(what()))?
        };
        for (write, row) in writes.iter().zip(&rows) {
            let (applied, known): (bool, bool) = (get(row, 0)?, get(row, 1)?);
            if !applied {
                if known {
                    tracing::debug!(execution_id = %write.id, state = write.state, "state already applied or superseded, ignored");
                } else {
                    tracing::warn!(execution_id = %write.id, state = write.state, "state of an unknown execution, ignored");
                }
            }
        }
        Ok(())
    }

    async fn transition(
        &self,
        id: &ExecutionId,
        attempts: u32,
        from: ExecutionStatus,
        to: ExecutionStatus,
    ) -> Result<bool> {
        let what = || format!("moving execution {id} from {from} to {to}");
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE executions SET status = $4 WHERE id = $1 AND attempts = $2 AND status = $3",
            )
            .await
            .map_err(self.db.error(what()))?;
        let changed = client
            .execute(
                &stmt,
                &[
                    &id.as_str(),
                    &i64::from(attempts),
                    &from.as_str(),
                    &to.as_str(),
                ],
            )
            .await
            .map_err(self.db.error(what()))?;
        Ok(changed == 1)
    }

    async fn expired_executions(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<ExecutionId>> {
        let what = "finding expired executions";
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT id FROM executions WHERE created_at < $1
                   AND status IN ('succeeded', 'failed')
                 ORDER BY created_at, id LIMIT $2",
            )
            .await
            .map_err(self.db.error(what))?;
        let rows = client
            .query(&stmt, &[&before, &i64::from(limit)])
            .await
            .map_err(self.db.error(what))?;
        rows.iter()
            .map(|row| {
                let id: String = get(row, 0)?;
                ExecutionId::parse(&id)
                    .map_err(|e| Error::internal(format!("stored execution id is malformed: {e}")))
            })
            .collect()
    }

    async fn delete_executions(&self, ids: &[ExecutionId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let what = || format!("deleting {} executions", ids.len());
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(self.db.error(what()))?;
        tx.execute(
            "DELETE FROM execution_attempts WHERE execution_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(self.db.error(what()))?;
        // Its notifications go with it (a pending one has nothing left to tell).
        tx.execute(
            "DELETE FROM notifications WHERE execution_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(self.db.error(what()))?;
        let deleted = tx
            .execute("DELETE FROM executions WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(self.db.error(what()))?;
        tx.commit().await.map_err(self.db.error(what()))?;
        Ok(deleted)
    }

    async fn get_execution(&self, id: &ExecutionId) -> Result<Option<Execution>> {
        let what = || format!("reading execution {id}");
        let client = self.db.client().await?;
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
        let stmt = client
            .prepare_cached(&sql)
            .await
            .map_err(self.db.error(what()))?;
        let row = client
            .query_opt(&stmt, &[&id.as_str()])
            .await
            .map_err(self.db.error(what()))?;
        row.as_ref().map(execution).transpose()
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Page<ExecutionSummary>> {
        list::executions(&self.db, query, self.text_search).await
    }

    async fn record_handler_change(&self, change: &HandlerChange) -> Result<()> {
        let revision = stored_revision(change)?;
        let handler = change
            .handler
            .as_ref()
            .map(|h| to_json("handler", h))
            .transpose()?;
        let what = || {
            format!(
                "recording change {} of handler {}",
                change.revision, change.name
            )
        };
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO handler_history (name, revision, handler, changed_at, changed_by)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, revision) DO NOTHING",
            )
            .await
            .map_err(self.db.error(what()))?;
        client
            .execute(
                &stmt,
                &[&change.name, &revision, &handler, &change.at, &change.by],
            )
            .await
            .map_err(self.db.error(what()))?;
        Ok(())
    }

    async fn handler_history(&self, name: &str) -> Result<Vec<HandlerChange>> {
        let what = || format!("reading the history of handler {name}");
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT revision, handler, changed_at, changed_by FROM handler_history
                 WHERE name = $1 ORDER BY revision DESC",
            )
            .await
            .map_err(self.db.error(what()))?;
        let rows = client
            .query(&stmt, &[&name])
            .await
            .map_err(self.db.error(what()))?;
        rows.iter()
            .map(|row| {
                let revision: i64 = get(row, 0)?;
                let handler: Option<String> = get(row, 1)?;
                Ok(HandlerChange {
                    name: name.to_string(),
                    revision: u64::try_from(revision).unwrap_or_default(),
                    handler: handler
                        .map(|text| {
                            from_json(&format!("handler {name} revision {revision}"), &text)
                        })
                        .transpose()?,
                    at: get(row, 2)?,
                    by: get(row, 3)?,
                })
            })
            .collect()
    }
}
