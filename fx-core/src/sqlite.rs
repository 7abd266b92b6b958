//! What the embedded SQLite backends (state store, log sink) share: opening a database file
//! in WAL mode with versioned migrations, running statements off the async workers, and
//! mapping SQLite errors to error kinds.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, ErrorKind, Result, ResultExt};

/// One SQLite database file behind a mutex, used from the blocking thread pool.
pub(crate) struct Database {
    conn: Arc<Mutex<Connection>>,
    name: &'static str,
}

impl Database {
    /// Opens (creating it if needed) the database at `path`, named `name` in messages
    /// (`state database`), and applies the `migrations` it has not seen: entry `i` takes it to
    /// `user_version` `i + 1`.
    pub(crate) async fn open(
        path: &Path,
        name: &'static str,
        migrations: &'static [&'static str],
    ) -> Result<Self> {
        let path = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || open_connection(&path, name, migrations))
            .await
            .kind_context(ErrorKind::Internal, || format!("opening the {name} failed"))??;
        Ok(Database {
            conn: Arc::new(Mutex::new(conn)),
            name,
        })
    }

    /// Runs `f` with the connection on the blocking thread pool.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = Arc::clone(&self.conn);
        let name = self.name;
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .kind_context(ErrorKind::Internal, || format!("{name} task failed"))?
    }
}

fn open_connection(path: &Path, name: &str, migrations: &[&str]) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::unavailable(format!("creating the directory of {}", path.display()))
                .with_source(e)
        })?;
    }
    let what = || format!("opening {name} {}", path.display());
    let mut conn = Connection::open(path).map_err(db(what()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(db(what()))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(db(what()))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "{name} is not in wal mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db(what()))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(db(what()))?;
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(db(what()))?;
    let known = migrations.len() as i64;
    if current > known {
        return Err(Error::invalid(format!(
            "{name} {} has schema version {current}, newer than this build knows ({known}): upgrade ferrisfx",
            path.display()
        )));
    }
    for (step, sql) in migrations.iter().enumerate().skip(current.max(0) as usize) {
        let version = step as i64 + 1;
        let migrating = format!("migrating {name} {} to version {version}", path.display());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(db(migrating.clone()))?;
        tx.execute_batch(sql).map_err(db(migrating.clone()))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(db(migrating.clone()))?;
        tx.commit().map_err(db(migrating))?;
        tracing::info!(version, "{name} schema migrated");
    }
    tracing::info!(path = %path.display(), schema = known, "{name} opened");
    Ok(conn)
}

/// Wraps a SQLite error with `what`: busy, locked and I/O errors are `Unavailable` (retrying
/// may work), everything else `Internal`.
pub(crate) fn db(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| {
        use rusqlite::ErrorCode as Code;
        let kind = match e.sqlite_error_code() {
            Some(
                Code::DatabaseBusy
                | Code::DatabaseLocked
                | Code::DiskFull
                | Code::SystemIoFailure
                | Code::CannotOpen
                | Code::ReadOnly,
            ) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, what).with_source(e)
    }
}
