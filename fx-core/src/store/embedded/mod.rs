//! The embedded state store: one SQLite file (`state.sqlite`) in WAL mode.
//!
//! The schema is versioned by `PRAGMA user_version`: [`MIGRATIONS`] are applied in order at
//! open, each in its own transaction. Times are stored as integer microseconds since the epoch
//! (so they round-trip to the microsecond). The connection sits behind a mutex and every query
//! runs on the blocking thread pool, never on an async worker.

use std::path::Path;

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

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
use crate::sqlite::{db, Database};
use crate::validate::validate_name;

mod catalogue;
mod identity;
mod list;
mod migrations;
mod notifications;
mod rows;
mod runs;
mod secrets;
#[cfg(test)]
mod tests;
mod ticks;

use migrations::MIGRATIONS;
use rows::*;

/// The state store in a SQLite file.
pub struct SqliteStateStore {
    db: Database,
    /// The executions list's text filter window: [`TEXT_WINDOW`], lowered by tests.
    text_window: u32,
}

impl SqliteStateStore {
    /// Opens (creating it if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        Ok(SqliteStateStore {
            db: Database::open(path, "state database", MIGRATIONS).await?,
            text_window: TEXT_WINDOW,
        })
    }

    /// The store with the executions list's text filter window lowered to `rows`, so that
    /// tests reach its text index with a few executions.
    #[cfg(test)]
    pub(crate) fn with_text_window(self, rows: u32) -> Self {
        SqliteStateStore {
            text_window: rows,
            ..self
        }
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
impl StateStore for SqliteStateStore {
    async fn add_package_version(&self, version: &PackageVersion) -> Result<()> {
        validate_name("package name", &version.name)?;
        validate_version(&version.version)?;
        let manifest = to_json("package manifest", &version.manifest)?;
        let v = version.clone();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("starting a transaction"))?;
            let inserted = tx
                .execute(
                    "INSERT INTO package_versions (name, version, digest, size, manifest, uploaded_at, uploaded_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name, version) DO NOTHING",
                    params![
                        v.name,
                        v.version,
                        v.digest.as_str(),
                        i64::try_from(v.size).unwrap_or(i64::MAX),
                        manifest,
                        micros(v.uploaded_at),
                        v.uploaded_by
                    ],
                )
                .map_err(db(format!("adding package {} version {}", v.name, v.version)))?;
            if inserted == 0 {
                return Err(Error::conflict(format!(
                    "package {} version {} already exists",
                    v.name, v.version
                )));
            }
            // `latest` moves up only: a lower version uploaded later (a fix of an old line)
            // leaves it where it is; moving it down is an explicit alias move.
            let latest: Option<String> = tx
                .query_row(
                    "SELECT version FROM package_aliases WHERE name = ?1 AND alias = ?2",
                    params![v.name, LATEST_ALIAS],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db(format!("reading package {} alias latest", v.name)))?;
            let newer = latest
                .as_deref()
                .is_none_or(|current| version_order(&v.version, current).is_gt());
            if newer {
                tx.execute(
                    "INSERT INTO package_aliases (name, alias, version) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                    params![v.name, LATEST_ALIAS, v.version],
                )
                .map_err(db(format!("pointing package {} alias latest at {}", v.name, v.version)))?;
            }
            tx.commit().map_err(db(format!("adding package {} version {}", v.name, v.version)))?;
            tracing::info!(package = %v.name, version = %v.version, digest = %v.digest, "package version added");
            Ok(())
        })
        .await
    }

    async fn list_package_versions(&self, name: Option<&str>) -> Result<Vec<PackageVersion>> {
        let name = name.map(str::to_string);
        self.call(move |conn| {
            let sql = format!(
                "SELECT {PACKAGE_COLUMNS} FROM package_versions WHERE ?1 IS NULL OR name = ?1
                 ORDER BY uploaded_at DESC, name, version DESC"
            );
            let what = || "listing package versions".to_string();
            let mut stmt = conn.prepare_cached(&sql).map_err(db(what()))?;
            let rows = stmt
                .query_map(params![name], PackageRow::read)
                .map_err(db(what()))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db(what()))?;
            rows.into_iter().map(PackageRow::decode).collect()
        })
        .await
    }

    async fn get_package_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<PackageVersion>> {
        let (name, version) = (name.to_string(), version.to_string());
        self.call(move |conn| exact_version(conn, &name, &version))
            .await
    }

    async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()> {
        validate_alias(alias)?;
        let (name, alias, version) = (name.to_string(), alias.to_string(), version.to_string());
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db("starting a transaction"))?;
            if exact_version(&tx, &name, &version)?.is_none() {
                return Err(Error::not_found(format!(
                    "package {name} version {version} not found"
                )));
            }
            tx.execute(
                "INSERT INTO package_aliases (name, alias, version) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
                params![name, alias, version],
            )
            .map_err(db(format!("pointing package {name} alias {alias} at {version}")))?;
            tx.commit().map_err(db(format!("setting package {name} alias {alias}")))?;
            tracing::info!(package = %name, alias = %alias, version = %version, "package alias set");
            Ok(())
        })
        .await
    }

    async fn list_aliases(&self, name: &str) -> Result<Vec<PackageAlias>> {
        let name = name.to_string();
        self.call(move |conn| {
            let what = || format!("listing aliases of package {name}");
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name, alias, version FROM package_aliases WHERE name = ?1 ORDER BY alias",
                )
                .map_err(db(what()))?;
            let aliases = stmt
                .query_map(params![name], |row| {
                    Ok(PackageAlias {
                        package: row.get(0)?,
                        alias: row.get(1)?,
                        version: row.get(2)?,
                    })
                })
                .map_err(db(what()))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db(what()))?;
            Ok(aliases)
        })
        .await
    }

    async fn resolve_package(&self, reference: &PackageRef) -> Result<PackageVersion> {
        let reference = reference.clone();
        self.call(move |conn| {
            if let Some(found) = exact_version(conn, &reference.name, &reference.version)? {
                return Ok(found);
            }
            let sql = format!(
                "SELECT {} FROM package_aliases a JOIN package_versions v
                   ON v.name = a.name AND v.version = a.version
                 WHERE a.name = ?1 AND a.alias = ?2",
                PACKAGE_COLUMNS
                    .split(", ")
                    .map(|c| format!("v.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let row = conn
                .query_row(
                    &sql,
                    params![reference.name, reference.version],
                    PackageRow::read,
                )
                .optional()
                .map_err(db(format!("resolving package {reference}")))?;
            match row {
                Some(row) => row.decode(),
                None => Err(Error::not_found(format!("package {reference} not found"))),
            }
        })
        .await
    }

    async fn create_execution(&self, execution: &Execution) -> Result<Created> {
        let row = NewExecution::of(execution)?;
        self.call(move |conn| row.insert(conn)).await
    }

    async fn create_executions(&self, executions: &[Execution]) -> Result<Vec<Created>> {
        if executions.is_empty() {
            return Ok(Vec::new());
        }
        let rows = executions
            .iter()
            .map(NewExecution::of)
            .collect::<Result<Vec<_>>>()?;
        self.call(move |conn| {
            let what = || format!("creating {} execution(s)", rows.len());
            // One transaction for the batch: one commit instead of one per execution.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(what()))?;
            let created = rows
                .iter()
                .map(|row| row.insert(&tx))
                .collect::<Result<Vec<_>>>()?;
            tx.commit().map_err(db(what()))?;
            Ok(created)
        })
        .await
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
        self.call(move |conn| {
            let what = || format!("applying {} state event(s)", writes.len());
            // One transaction for the batch: one fsync-free commit instead of one per event.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(what()))?;
            let mut ignored = Vec::new();
            for write in &writes {
                if write.apply(&tx)? == 0 {
                    ignored.push(write);
                }
            }
            tx.commit().map_err(db(what()))?;
            for write in ignored {
                write.explain_ignored(conn)?;
            }
            Ok(())
        })
        .await
    }

    async fn transition(
        &self,
        id: &ExecutionId,
        attempts: u32,
        from: ExecutionStatus,
        to: ExecutionStatus,
    ) -> Result<bool> {
        let id = id.clone();
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE executions SET status = ?4 WHERE id = ?1 AND attempts = ?2 AND status = ?3",
                    params![id.as_str(), i64::from(attempts), from.as_str(), to.as_str()],
                )
                .map_err(db(format!("moving execution {id} from {from} to {to}")))?;
            Ok(changed == 1)
        })
        .await
    }

    async fn expired_executions(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<ExecutionId>> {
        self.call(move |conn| {
            let what = "finding expired executions";
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id FROM executions WHERE created_at < ?1
                       AND status IN ('succeeded', 'failed')
                     ORDER BY created_at, id LIMIT ?2",
                )
                .map_err(db(what))?;
            let ids = stmt
                .query_map(params![micros(before), i64::from(limit)], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db(what))?;
            let mut out = Vec::new();
            for id in ids {
                out.push(ExecutionId::parse(&id.map_err(db(what))?).map_err(|e| {
                    Error::internal(format!("stored execution id is malformed: {e}"))
                })?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_executions(&self, ids: &[ExecutionId]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = ids.iter().map(|id| id.as_str().to_string()).collect();
        self.call(move |conn| {
            let what = || format!("deleting {} executions", ids.len());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(what()))?;
            let mut deleted = 0;
            for id in &ids {
                tx.prepare_cached("DELETE FROM execution_attempts WHERE execution_id = ?1")
                    .and_then(|mut stmt| stmt.execute(params![id]))
                    .map_err(db(what()))?;
                // Its notifications go with it (a pending one has nothing left to tell).
                tx.prepare_cached("DELETE FROM notifications WHERE execution_id = ?1")
                    .and_then(|mut stmt| stmt.execute(params![id]))
                    .map_err(db(what()))?;
                deleted += tx
                    .prepare_cached("DELETE FROM executions WHERE id = ?1")
                    .and_then(|mut stmt| stmt.execute(params![id]))
                    .map_err(db(what()))? as u64;
            }
            tx.commit().map_err(db(what()))?;
            Ok(deleted)
        })
        .await
    }

    async fn get_execution(&self, id: &ExecutionId) -> Result<Option<Execution>> {
        let id = id.clone();
        self.call(move |conn| {
            let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?1");
            let row = conn
                .query_row(&sql, params![id.as_str()], ExecutionRow::read)
                .optional()
                .map_err(db(format!("reading execution {id}")))?;
            let Some(mut execution) = row.map(ExecutionRow::decode).transpose()? else {
                return Ok(None);
            };
            let mut attempts = conn
                .prepare_cached(
                    "SELECT record FROM execution_attempts WHERE execution_id = ?1 ORDER BY attempt",
                )
                .map_err(db(format!("reading the attempts of execution {id}")))?;
            let records = attempts
                .query_map(params![id.as_str()], |r| r.get::<_, String>(0))
                .and_then(Iterator::collect::<rusqlite::Result<Vec<String>>>)
                .map_err(db(format!("reading the attempts of execution {id}")))?;
            execution.attempt_history = records
                .iter()
                .map(|text| from_json(&format!("attempt record of execution {id}"), text))
                .collect::<Result<_>>()?;
            Ok(Some(execution))
        })
        .await
    }

    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Page<ExecutionSummary>> {
        let (query, window) = (query.clone(), self.text_window);
        self.call(move |conn| list::executions(conn, &query, window))
            .await
    }

    async fn record_handler_change(&self, change: &HandlerChange) -> Result<()> {
        let revision = stored_revision(change)?;
        let handler = change
            .handler
            .as_ref()
            .map(|h| to_json("handler", h))
            .transpose()?;
        let c = change.clone();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO handler_history (name, revision, handler, changed_at, changed_by)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name, revision) DO NOTHING",
                params![c.name, revision, handler, micros(c.at), c.by],
            )
            .map_err(db(format!(
                "recording change {} of handler {}",
                c.revision, c.name
            )))?;
            Ok(())
        })
        .await
    }

    async fn handler_history(&self, name: &str) -> Result<Vec<HandlerChange>> {
        let name = name.to_string();
        self.call(move |conn| {
            let what = || format!("reading the history of handler {name}");
            let mut stmt = conn
                .prepare_cached(
                    "SELECT revision, handler, changed_at, changed_by FROM handler_history
                     WHERE name = ?1 ORDER BY revision DESC",
                )
                .map_err(db(what()))?;
            let rows = stmt
                .query_map(params![name], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Option<String>>(3)?,
                    ))
                })
                .map_err(db(what()))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db(what()))?;
            rows.into_iter()
                .map(|(revision, handler, at, by)| {
                    Ok(HandlerChange {
                        revision: u64::try_from(revision).unwrap_or_default(),
                        handler: handler
                            .map(|text| {
                                from_json(&format!("handler {name} revision {revision}"), &text)
                            })
                            .transpose()?,
                        at: time(at)?,
                        by,
                        name: name.clone(),
                    })
                })
                .collect()
        })
        .await
    }
}

/// Records the terminal state of an attempt: a later attempt than the stored one, or the end of
/// the stored attempt if it has not ended yet. A start that was never recorded is inferred from
/// the end and the run time.
/// [`StateChange::Start`] in SQLite.
/// One state event as the statements that apply it.
struct StateWrite {
    id: ExecutionId,
    state: &'static str,
    sql: &'static str,
    args: Vec<SqlValue>,
    /// The attempt's record, for a finish: its number and JSON.
    record: Option<(u32, String)>,
}

impl StateWrite {
    /// The write of `change`.
    fn of(change: StateChange) -> StateWrite {
        let (id, state) = (change.id().clone(), change.name());
        let (sql, args, record) = match change {
            StateChange::Start {
                ref id,
                attempt,
                at,
            } => (
                START,
                vec![
                    id.as_str().to_string().into(),
                    i64::from(attempt).into(),
                    micros(at).into(),
                ],
                None,
            ),
            StateChange::Finish(ref f) => (
                FINISH,
                vec![
                    f.id.as_str().to_string().into(),
                    f.status.as_str().to_string().into(),
                    i64::from(f.attempt).into(),
                    micros(f.finished_at).into(),
                    f.duration_us.into(),
                    micros(f.inferred_start).into(),
                    f.output.clone().into(),
                    f.error.clone().map_or(SqlValue::Null, SqlValue::from),
                ],
                Some((f.attempt, f.record.clone())),
            ),
        };
        StateWrite {
            id,
            state,
            sql,
            args,
            record,
        }
    }

    fn what(&self) -> String {
        format!("applying state {} to execution {}", self.state, self.id)
    }

    /// Runs the write in `tx`; answers the executions it changed (0: applied already,
    /// superseded, or unknown).
    fn apply(&self, tx: &rusqlite::Transaction<'_>) -> Result<usize> {
        let changed = tx
            .prepare_cached(self.sql)
            .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(self.args.iter())))
            .map_err(db(self.what()))?;
        // The first report of an attempt's end is its record, kept even when the execution
        // has moved on (a late report of an earlier attempt); a replay changes nothing.
        if let Some((attempt, json)) = &self.record {
            tx.prepare_cached(
                "INSERT INTO execution_attempts (execution_id, attempt, record)
                 SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM executions WHERE id = ?1)
                 ON CONFLICT (execution_id, attempt) DO NOTHING",
            )
            .and_then(|mut stmt| stmt.execute(params![self.id.as_str(), i64::from(*attempt), json]))
            .map_err(db(self.what()))?;
        }
        Ok(changed)
    }

    /// Logs why the write changed nothing: applied already or superseded, or an unknown
    /// execution.
    fn explain_ignored(&self, conn: &Connection) -> Result<()> {
        let known: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM executions WHERE id = ?1)",
                params![self.id.as_str()],
                |r| r.get(0),
            )
            .map_err(db(self.what()))?;
        if known {
            tracing::debug!(execution_id = %self.id, state = self.state, "state already applied or superseded, ignored");
        } else {
            tracing::warn!(execution_id = %self.id, state = self.state, "state of an unknown execution, ignored");
        }
        Ok(())
    }
}

const START: &str = "UPDATE executions SET status = 'running', attempts = ?2, started_at = ?3,
        finished_at = NULL, duration_us = NULL
     WHERE id = ?1 AND (attempts < ?2 OR (attempts = ?2 AND status = 'queued'))";

/// [`StateChange::Finish`] in SQLite (the attempt record is inserted in the same transaction).
const FINISH: &str = "UPDATE executions SET status = ?2, attempts = ?3, finished_at = ?4,
        duration_us = ?5,
        started_at = CASE WHEN attempts = ?3 AND started_at IS NOT NULL THEN started_at ELSE ?6 END,
        output = ?7, error = ?8
     WHERE id = ?1 AND (attempts < ?3 OR (attempts = ?3 AND status NOT IN ('succeeded', 'failed')))";

fn exact_version(conn: &Connection, name: &str, version: &str) -> Result<Option<PackageVersion>> {
    let sql =
        format!("SELECT {PACKAGE_COLUMNS} FROM package_versions WHERE name = ?1 AND version = ?2");
    conn.query_row(&sql, params![name, version], PackageRow::read)
        .optional()
        .map_err(db(format!("reading package {name} version {version}")))?
        .map(PackageRow::decode)
        .transpose()
}

/// An execution as the row that creates it.
struct NewExecution {
    summary: ExecutionSummary,
    event: String,
    package: Option<String>,
    created_at: i64,
}

impl NewExecution {
    fn of(execution: &Execution) -> Result<Self> {
        Ok(NewExecution {
            summary: ExecutionSummary::from(execution),
            event: to_json("execution event", &execution.event)?,
            package: execution
                .package
                .as_ref()
                .map(|p| to_json("execution package", p))
                .transpose()?,
            created_at: micros(execution.created_at),
        })
    }

    /// Inserts the row unless an execution with its id exists; what it found.
    fn insert(&self, conn: &Connection) -> Result<Created> {
        let id = self.summary.id.as_str();
        let what = || format!("creating execution {id}");
        let inserted = conn
            .prepare_cached(
                "INSERT INTO executions (id, handler, status, attempts, event_id, event_source,
                    event_type, event, package, output, created_at)
                 VALUES (?1, ?2, 'queued', 0, ?3, ?4, ?5, ?6, ?7, '[]', ?8)
                 ON CONFLICT (id) DO NOTHING",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    id,
                    self.summary.handler,
                    self.summary.event_id,
                    self.summary.event_source,
                    self.summary.event_type,
                    self.event,
                    self.package,
                    self.created_at
                ])
            })
            .map_err(db(what()))?;
        if inserted == 1 {
            return Ok(Created::New);
        }
        let status: String = conn
            .query_row(
                "SELECT status FROM executions WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(db(what()))?;
        Ok(Created::Existing(stored_status(&status)?))
    }
}
