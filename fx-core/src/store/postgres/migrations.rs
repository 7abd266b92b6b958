//! Versioned schema migrations, applied at open.
//!
//! Each component (the state store, the log sink) has an ordered list of [`Migration`]s; the
//! versions applied are rows of `fx_schema_migrations` in the configured schema. Every step runs
//! in its own transaction that first takes a transaction-level advisory lock on the schema, so
//! processes starting together apply each step exactly once. A database that has a newer
//! version than this build knows is refused.

use super::connection::PgDatabase;
use crate::error::{Error, Result};

/// One step of a component's schema. Never edit a released step: append a new one.
pub(crate) struct Migration {
    /// 1, 2, 3… in order, without gaps.
    pub version: i32,
    /// What it does, recorded alongside the version.
    pub description: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// The state store's schema. Times are `timestamptz` (microseconds, like the embedded store);
/// JSON documents are stored as text, exactly as encoded; keys and names compare bytewise
/// (`COLLATE "C"`), so ordering matches the embedded store whatever the database's locale.
pub(crate) const STATE: &[Migration] = &[
    Migration {
        version: 1,
        description: "packages, aliases and executions",
        sql: r#"
    CREATE TABLE package_versions (
        name        text COLLATE "C" NOT NULL,
        version     text COLLATE "C" NOT NULL,
        digest      text NOT NULL,
        size        bigint NOT NULL,
        manifest    text NOT NULL,
        uploaded_at timestamptz NOT NULL,
        uploaded_by text,
        PRIMARY KEY (name, version)
    );
    CREATE INDEX package_versions_newest ON package_versions (uploaded_at DESC);
    CREATE TABLE package_aliases (
        name    text COLLATE "C" NOT NULL,
        alias   text COLLATE "C" NOT NULL,
        version text COLLATE "C" NOT NULL,
        PRIMARY KEY (name, alias),
        FOREIGN KEY (name, version) REFERENCES package_versions (name, version)
    );
    CREATE TABLE executions (
        id           text COLLATE "C" PRIMARY KEY,
        handler      text COLLATE "C" NOT NULL,
        status       text COLLATE "C" NOT NULL,
        attempts     bigint NOT NULL,
        event_id     text NOT NULL,
        event_source text NOT NULL,
        event_type   text NOT NULL,
        event        text NOT NULL,
        package      text,
        output       text NOT NULL,
        error        text,
        created_at   timestamptz NOT NULL,
        started_at   timestamptz,
        finished_at  timestamptz,
        duration_us  bigint
    );
    CREATE INDEX executions_newest ON executions (created_at DESC, id DESC);
    CREATE INDEX executions_by_handler_status
        ON executions (handler, status, created_at DESC, id DESC);
    CREATE INDEX executions_by_handler ON executions (handler, created_at DESC, id DESC);
    CREATE INDEX executions_by_status ON executions (status, created_at DESC, id DESC);
"#,
    },
    Migration {
        version: 2,
        description: "handlers' history",
        sql: r#"
    CREATE TABLE handler_history (
        name       text COLLATE "C" NOT NULL,
        revision   bigint NOT NULL,
        handler    text,
        changed_at timestamptz NOT NULL,
        changed_by text,
        PRIMARY KEY (name, revision)
    );
"#,
    },
    Migration {
        version: 3,
        description: "every finished attempt of an execution, with its measurements",
        sql: r#"
    CREATE TABLE execution_attempts (
        execution_id text COLLATE "C" NOT NULL,
        attempt      bigint NOT NULL,
        record       text NOT NULL,
        PRIMARY KEY (execution_id, attempt)
    );
"#,
    },
    Migration {
        version: 4,
        description: "identity: accounts, api tokens, rules, package owners, the audit log",
        sql: r#"
    CREATE TABLE accounts (
        name          text COLLATE "C" PRIMARY KEY,
        kind          text NOT NULL,
        display_name  text NOT NULL,
        password_hash text,
        groups_json   text NOT NULL,
        disabled      boolean NOT NULL,
        created_at    timestamptz NOT NULL,
        updated_at    timestamptz NOT NULL
    );
    CREATE TABLE api_tokens (
        id           text COLLATE "C" PRIMARY KEY,
        owner        text COLLATE "C" NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
        name         text NOT NULL,
        secret_hash  text NOT NULL,
        scope        text NOT NULL,
        created_at   timestamptz NOT NULL,
        expires_at   timestamptz,
        last_used_at timestamptz,
        revoked_at   timestamptz
    );
    CREATE INDEX api_tokens_by_owner ON api_tokens (owner, created_at DESC);
    CREATE TABLE access_rules (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        subject    text COLLATE "C" NOT NULL,
        grant_json text COLLATE "C" NOT NULL,
        pattern    text COLLATE "C" NOT NULL,
        created_by text NOT NULL,
        created_at timestamptz NOT NULL,
        UNIQUE (subject, grant_json, pattern)
    );
    CREATE TABLE package_owners (
        name  text COLLATE "C" PRIMARY KEY,
        owner text NOT NULL
    );
    CREATE TABLE audit_log (
        id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at        timestamptz NOT NULL,
        principal text COLLATE "C" NOT NULL,
        action    text COLLATE "C" NOT NULL,
        resource  text COLLATE "C" NOT NULL,
        source    text NOT NULL,
        outcome   text NOT NULL,
        detail    text NOT NULL
    );
    CREATE INDEX audit_log_by_principal ON audit_log (principal, id DESC);
"#,
    },
    Migration {
        version: 5,
        description: "platform secrets, sealed",
        sql: r#"
    CREATE TABLE secrets (
        name       text COLLATE "C" PRIMARY KEY,
        pools_json text NOT NULL,
        version    bigint NOT NULL,
        key_id     text NOT NULL,
        sealed     bytea NOT NULL,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        updated_by text NOT NULL
    );
"#,
    },
    Migration {
        version: 6,
        description: "the last tick each schedule fired",
        sql: r#"
    CREATE TABLE schedule_ticks (
        name      text COLLATE "C" PRIMARY KEY,
        last_tick timestamptz NOT NULL
    );
"#,
    },
    Migration {
        version: 7,
        description: "the outbox of notifications",
        sql: r#"
    CREATE TABLE notifications (
        rule         text COLLATE "C" NOT NULL,
        execution_id text COLLATE "C" NOT NULL,
        outcome      text NOT NULL,
        status       text COLLATE "C" NOT NULL,
        attempts     text NOT NULL,
        next_at      timestamptz NOT NULL,
        created_at   timestamptz NOT NULL,
        PRIMARY KEY (rule, execution_id)
    );
    CREATE INDEX notifications_due ON notifications (status, next_at);
    CREATE INDEX notifications_by_execution ON notifications (execution_id);
"#,
    },
    Migration {
        version: 8,
        description: "workflow runs and the index of their step executions",
        sql: r#"
    CREATE TABLE workflow_runs (
        id          text COLLATE "C" PRIMARY KEY,
        workflow    text COLLATE "C" NOT NULL,
        status      text COLLATE "C" NOT NULL,
        created_at  timestamptz NOT NULL,
        updated_at  timestamptz NOT NULL,
        finished_at timestamptz,
        version     bigint NOT NULL,
        doc         text NOT NULL
    );
    CREATE INDEX workflow_runs_newest ON workflow_runs (created_at DESC, id DESC);
    CREATE INDEX workflow_runs_by_workflow_status
        ON workflow_runs (workflow, status, created_at DESC, id DESC);
    CREATE INDEX workflow_runs_by_workflow ON workflow_runs (workflow, created_at DESC, id DESC);
    CREATE INDEX workflow_runs_by_status ON workflow_runs (status, created_at DESC, id DESC);
    CREATE INDEX workflow_runs_unfinished ON workflow_runs (created_at, id)
        WHERE finished_at IS NULL;
    CREATE TABLE workflow_run_executions (
        execution_id text COLLATE "C" PRIMARY KEY,
        run_id       text COLLATE "C" NOT NULL
    );
"#,
    },
    Migration {
        version: 9,
        description: "the event catalogue",
        sql: r#"
    CREATE TABLE event_catalogue (
        source      text COLLATE "C" NOT NULL,
        type        text COLLATE "C" NOT NULL,
        first_seen  timestamptz NOT NULL,
        last_seen   timestamptz NOT NULL,
        count       bigint NOT NULL,
        last_change timestamptz,
        hours       text NOT NULL,
        doc         text NOT NULL,
        PRIMARY KEY (source, type)
    );
    CREATE INDEX event_catalogue_by_last_seen ON event_catalogue (last_seen);
"#,
    },
];

/// The key of the transaction-level advisory lock (`pg_advisory_xact_lock(hashtext(key))`)
/// that orders the processes changing `schema`'s tables and indexes.
pub(super) fn schema_lock_key(schema: &str) -> String {
    format!("ferrisfx schema {schema}")
}

/// Brings `component`'s schema up to date with `migrations`.
pub(crate) async fn migrate(
    db: &PgDatabase,
    component: &str,
    migrations: &[Migration],
) -> Result<()> {
    let known = migrations.len() as i32;
    let lock_key = schema_lock_key(db.schema());
    // Created only when missing (`IF NOT EXISTS` would still need the right to create), so a
    // role that may only use an up-to-date schema can open it.
    let create_schema = format!("CREATE SCHEMA \"{}\"", db.schema());
    let mut client = db.client().await?;
    for step in migrations {
        let version = step.version;
        let what = || format!("migrating the {component} schema to version {version}");
        let tx = client.transaction().await.map_err(db.error(what()))?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock_key])
            .await
            .map_err(db.error(what()))?;
        let found = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                        to_regclass(format('%I.fx_schema_migrations', $1)) IS NOT NULL",
                &[&db.schema()],
            )
            .await
            .map_err(db.error(what()))?;
        let schema_exists: bool = found.try_get(0).map_err(db.error(what()))?;
        let table_exists: bool = found.try_get(1).map_err(db.error(what()))?;
        if !schema_exists {
            tx.batch_execute(&create_schema)
                .await
                .map_err(db.error(what()))?;
        }
        if !table_exists {
            tx.batch_execute(
                "CREATE TABLE fx_schema_migrations (
                     component   text NOT NULL,
                     version     integer NOT NULL,
                     description text NOT NULL,
                     applied_at  timestamptz NOT NULL DEFAULT now(),
                     PRIMARY KEY (component, version)
                 )",
            )
            .await
            .map_err(db.error(what()))?;
        }
        let current: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM fx_schema_migrations WHERE component = $1",
                &[&component],
            )
            .await
            .map_err(db.error(what()))?
            .try_get(0)
            .map_err(db.error(what()))?;
        if current > known {
            return Err(Error::invalid(format!(
                "the {component} schema in postgresql at {} (schema {}) has version {current}, newer than this build knows ({known}): upgrade ferrisfx",
                db.target(),
                db.schema()
            )));
        }
        if current >= version {
            // Applied already (by us earlier, or by another process); the rollback releases the
            // lock.
            continue;
        }
        tx.batch_execute(step.sql).await.map_err(db.error(what()))?;
        tx.execute(
            "INSERT INTO fx_schema_migrations (component, version, description) VALUES ($1, $2, $3)",
            &[&component, &version, &step.description],
        )
        .await
        .map_err(db.error(what()))?;
        tx.commit().await.map_err(db.error(what()))?;
        tracing::info!(component, version, database = %db.target(), schema = %db.schema(), "postgresql schema migrated");
    }
    Ok(())
}
