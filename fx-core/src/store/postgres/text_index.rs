//! The executions list's text index: `pg_trgm` GIN indexes on `event_id` and `event_source`,
//! made at open when the extension is there or may be created (see
//! [`crate::store::text_filter`] for how the list uses them).
//!
//! They are not a versioned migration: `pg_trgm` is an extension, one per database, which a
//! shared database may not let the store's role create. `pg_trgm` is trusted (PostgreSQL 13
//! and later), so a role with `CREATE` on the database may: the store creates it, when
//! missing, in its own schema (one the role may create in). When it cannot, the store logs a
//! warning and its text filter scans, as without the index; `CREATE EXTENSION pg_trgm` run by
//! a superuser lets the next open build the indexes.
//!
//! Every open checks the indexes, and builds those missing: dropping the schema the extension
//! lives in (`DROP SCHEMA … CASCADE`, as tests and benches do with theirs) drops it with every
//! index built on it, other stores' (other schemas') too. Those stores scan until their next
//! open, which creates the extension again and rebuilds. An extension created once by a
//! superuser in a schema nobody drops (`CREATE EXTENSION pg_trgm SCHEMA public`) avoids it.
//!
//! Building an index on an existing table holds its writes (about 6 s for both at 1,000,000
//! executions), once, at the first open that finds it missing.

use std::time::Instant;

use tokio_postgres::error::SqlState;

use super::connection::PgDatabase;
use super::migrations::schema_lock_key;
use crate::error::{Error, Result};

/// The indexes: name, column.
const INDEXES: [(&str, &str); 2] = [
    ("executions_event_id_trgm", "event_id"),
    ("executions_event_source_trgm", "event_source"),
];

/// Makes the indexes when missing; whether they exist. Never fails: without them the text
/// filter scans, and a warning says why.
pub(super) async fn ensure(db: &PgDatabase) -> bool {
    match build(db).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                database = %db.target(),
                schema = %db.schema(),
                error = %e.chain(),
                "the executions text filter has no trigram index and scans the table: pg_trgm \
                 cannot be used (a superuser can run CREATE EXTENSION pg_trgm in this database; \
                 the next open builds the indexes)"
            );
            false
        }
    }
}

async fn build(db: &PgDatabase) -> Result<()> {
    let extension = match extension_schema(db).await? {
        Some(schema) => schema,
        None => create_extension(db).await?,
    };
    let what = || {
        format!(
            "building the text filter's indexes in schema {}",
            db.schema()
        )
    };
    let mut client = db.client().await?;
    // The schema's migration lock: processes opening together build each index once.
    let tx = client.transaction().await.map_err(db.error(what()))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&schema_lock_key(db.schema())],
    )
    .await
    .map_err(db.error(what()))?;
    for (index, column) in INDEXES {
        let exists: bool = tx
            .query_one(
                "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
                &[&db.schema(), &index],
            )
            .await
            .map_err(db.error(what()))?
            .try_get(0)
            .map_err(db.error(what()))?;
        if exists {
            continue;
        }
        let started = Instant::now();
        tx.batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS {index} ON executions
             USING gin ({column} {}.gin_trgm_ops)",
            quote_identifier(&extension)
        ))
        .await
        .map_err(db.error(what()))?;
        tracing::info!(
            index,
            schema = %db.schema(),
            took_ms = started.elapsed().as_millis() as u64,
            "executions text filter index built"
        );
    }
    tx.commit().await.map_err(db.error(what()))
}

/// The schema `pg_trgm` is installed in, if it is.
async fn extension_schema(db: &PgDatabase) -> Result<Option<String>> {
    let what = || "looking up the pg_trgm extension".to_string();
    let client = db.client().await?;
    let row = client
        .query_opt(
            "SELECT n.nspname FROM pg_extension e
             JOIN pg_namespace n ON n.oid = e.extnamespace
             WHERE e.extname = 'pg_trgm'",
            &[],
        )
        .await
        .map_err(db.error(what()))?;
    row.map(|row| row.try_get(0).map_err(db.error(what())))
        .transpose()
}

/// Creates `pg_trgm` in the store's schema; the schema it is in (another's, when another
/// process created it meanwhile).
async fn create_extension(db: &PgDatabase) -> Result<String> {
    let client = db.client().await?;
    let created = client
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA {}",
            quote_identifier(db.schema())
        ))
        .await;
    match created {
        Ok(()) => tracing::info!(schema = %db.schema(), "pg_trgm extension created"),
        // Created by another process at the same time (the catalogue's unique name).
        Err(e)
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                || e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {}
        Err(e) => {
            return Err(db.error(format!(
                "creating the pg_trgm extension in schema {}",
                db.schema()
            ))(e))
        }
    }
    extension_schema(db)
        .await?
        .ok_or_else(|| Error::internal("the pg_trgm extension vanished once created"))
}

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("public"), "\"public\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
