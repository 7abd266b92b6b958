//! The SQLite state store's schema, versioned by `PRAGMA user_version`.

/// The schema, one step per entry; entry `i` takes the database to `user_version` `i + 1`.
/// Never edit a released step: append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE package_versions (
        name        TEXT NOT NULL,
        version     TEXT NOT NULL,
        digest      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        manifest    TEXT NOT NULL,
        uploaded_at INTEGER NOT NULL,
        uploaded_by TEXT,
        PRIMARY KEY (name, version)
    );
    CREATE INDEX package_versions_newest ON package_versions (uploaded_at DESC);
    CREATE TABLE package_aliases (
        name    TEXT NOT NULL,
        alias   TEXT NOT NULL,
        version TEXT NOT NULL,
        PRIMARY KEY (name, alias),
        FOREIGN KEY (name, version) REFERENCES package_versions (name, version)
    );
    CREATE TABLE executions (
        id           TEXT PRIMARY KEY NOT NULL,
        handler      TEXT NOT NULL,
        status       TEXT NOT NULL,
        attempts     INTEGER NOT NULL,
        event_id     TEXT NOT NULL,
        event_source TEXT NOT NULL,
        event_type   TEXT NOT NULL,
        event        TEXT NOT NULL,
        package      TEXT,
        output       TEXT NOT NULL,
        error        TEXT,
        created_at   INTEGER NOT NULL,
        started_at   INTEGER,
        finished_at  INTEGER,
        duration_us  INTEGER
    );
    CREATE INDEX executions_newest ON executions (created_at DESC, id DESC);
    CREATE INDEX executions_by_handler_status
        ON executions (handler, status, created_at DESC, id DESC);
    CREATE INDEX executions_by_handler ON executions (handler, created_at DESC, id DESC);
"#,
    // 2: handlers' history (a NULL handler is a delete).
    r#"
    CREATE TABLE handler_history (
        name       TEXT NOT NULL,
        revision   INTEGER NOT NULL,
        handler    TEXT,
        changed_at INTEGER NOT NULL,
        changed_by TEXT,
        PRIMARY KEY (name, revision)
    );
"#,
    // 3: every finished attempt of an execution, with what the executor measured.
    r#"
    CREATE TABLE execution_attempts (
        execution_id TEXT NOT NULL,
        attempt      INTEGER NOT NULL,
        record       TEXT NOT NULL,
        PRIMARY KEY (execution_id, attempt)
    );
"#,
];
