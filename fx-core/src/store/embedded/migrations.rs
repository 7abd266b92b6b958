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
    // 4: identity: accounts, API tokens, permission rules, package owners, the audit log.
    r#"
    CREATE TABLE accounts (
        name          TEXT PRIMARY KEY NOT NULL,
        kind          TEXT NOT NULL,
        display_name  TEXT NOT NULL,
        password_hash TEXT,
        groups_json   TEXT NOT NULL,
        disabled      INTEGER NOT NULL,
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE TABLE api_tokens (
        id           TEXT PRIMARY KEY NOT NULL,
        owner        TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        secret_hash  TEXT NOT NULL,
        scope        TEXT NOT NULL,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        last_used_at INTEGER,
        revoked_at   INTEGER
    );
    CREATE INDEX api_tokens_by_owner ON api_tokens (owner, created_at DESC);
    CREATE TABLE access_rules (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        subject    TEXT NOT NULL,
        grant_json TEXT NOT NULL,
        pattern    TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (subject, grant_json, pattern)
    );
    CREATE TABLE package_owners (
        name  TEXT PRIMARY KEY NOT NULL,
        owner TEXT NOT NULL
    );
    CREATE TABLE audit_log (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        INTEGER NOT NULL,
        principal TEXT NOT NULL,
        action    TEXT NOT NULL,
        resource  TEXT NOT NULL,
        source    TEXT NOT NULL,
        outcome   TEXT NOT NULL,
        detail    TEXT NOT NULL
    );
    CREATE INDEX audit_log_by_principal ON audit_log (principal, id DESC);
"#,
    // 5: platform secrets, sealed (AES-256-GCM; see `crate::secrets`).
    r#"
    CREATE TABLE secrets (
        name       TEXT PRIMARY KEY NOT NULL,
        pools_json TEXT NOT NULL,
        version    INTEGER NOT NULL,
        key_id     TEXT NOT NULL,
        sealed     BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        updated_by TEXT NOT NULL
    );
"#,
    // 6: the executions list filtered by status alone reads an index range, as in PostgreSQL.
    // Without it the list walks `executions_newest` until it has a page: at 1,000,000
    // executions, 50 ms for a status one in 2,000 has, the whole table for a status none has.
    r#"
    CREATE INDEX executions_by_status ON executions (status, created_at DESC, id DESC);
"#,
    // 7: the executions list's text filter (a substring of the event id or source) reads a
    // trigram index instead of the table (see `crate::store::text_filter`): an FTS5 table over
    // the two columns whose content is `executions` itself (it stores the index only), kept in
    // step by triggers, filled here for the executions there are (about 6 s and 90 MB at
    // 1,000,000). It maps executions by rowid, which SQLite keeps (the store never runs
    // `VACUUM`, which may renumber a table without an `INTEGER PRIMARY KEY`; after one,
    // `INSERT INTO executions_text (executions_text) VALUES ('rebuild')` rebuilds the index).
    r#"
    CREATE VIRTUAL TABLE executions_text USING fts5 (
        event_id, event_source,
        content = 'executions', content_rowid = 'rowid', tokenize = 'trigram'
    );
    CREATE TRIGGER executions_text_insert AFTER INSERT ON executions BEGIN
        INSERT INTO executions_text (rowid, event_id, event_source)
        VALUES (new.rowid, new.event_id, new.event_source);
    END;
    CREATE TRIGGER executions_text_delete AFTER DELETE ON executions BEGIN
        INSERT INTO executions_text (executions_text, rowid, event_id, event_source)
        VALUES ('delete', old.rowid, old.event_id, old.event_source);
    END;
    CREATE TRIGGER executions_text_update AFTER UPDATE OF event_id, event_source ON executions
    BEGIN
        INSERT INTO executions_text (executions_text, rowid, event_id, event_source)
        VALUES ('delete', old.rowid, old.event_id, old.event_source);
        INSERT INTO executions_text (rowid, event_id, event_source)
        VALUES (new.rowid, new.event_id, new.event_source);
    END;
    INSERT INTO executions_text (executions_text) VALUES ('rebuild');
"#,
    // 8: the last tick each schedule fired (`crate::schedule::TickLedger`), in microseconds.
    r#"
    CREATE TABLE schedule_ticks (
        name      TEXT PRIMARY KEY NOT NULL,
        last_tick INTEGER NOT NULL
    );
"#,
    // 9: the outbox of notifications (`crate::notify::NotificationLedger`): one row per (rule,
    // execution), its attempts a JSON array, times in microseconds. Senders find the due
    // pending ones by (status, next_at), the executions page its own by execution_id.
    r#"
    CREATE TABLE notifications (
        rule         TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        outcome      TEXT NOT NULL,
        status       TEXT NOT NULL,
        attempts     TEXT NOT NULL,
        next_at      INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        PRIMARY KEY (rule, execution_id)
    );
    CREATE INDEX notifications_due ON notifications (status, next_at);
    CREATE INDEX notifications_by_execution ON notifications (execution_id);
"#,
    // 10: workflow runs (`crate::workflow::ledger::RunLedger`): one row per run, its document
    // the JSON of the run, updated by compare-and-swap on `version`; the columns the list
    // filters and sorts on copied from it, times in microseconds. The list reads one index
    // range newest first whatever its filters; a conductor finds the unfinished ones oldest
    // first in a partial index. Each step execution points at its run.
    r#"
    CREATE TABLE workflow_runs (
        id          TEXT PRIMARY KEY NOT NULL,
        workflow    TEXT NOT NULL,
        status      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        finished_at INTEGER,
        version     INTEGER NOT NULL,
        doc         TEXT NOT NULL
    );
    CREATE INDEX workflow_runs_newest ON workflow_runs (created_at DESC, id DESC);
    CREATE INDEX workflow_runs_by_workflow_status
        ON workflow_runs (workflow, status, created_at DESC, id DESC);
    CREATE INDEX workflow_runs_by_workflow ON workflow_runs (workflow, created_at DESC, id DESC);
    CREATE INDEX workflow_runs_by_status ON workflow_runs (status, created_at DESC, id DESC);
    CREATE INDEX workflow_runs_unfinished ON workflow_runs (created_at, id)
        WHERE finished_at IS NULL;
    CREATE TABLE workflow_run_executions (
        execution_id TEXT PRIMARY KEY NOT NULL,
        run_id       TEXT NOT NULL
    );
"#,
    // 11: the event catalogue (`crate::catalogue::EventCatalogue`): one row per (source,
    // type), the hourly counts and the document (sample and schema) as JSON, times in
    // microseconds; forgetting reads the entries by last seen.
    r#"
    CREATE TABLE event_catalogue (
        source      TEXT NOT NULL,
        type        TEXT NOT NULL,
        first_seen  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL,
        count       INTEGER NOT NULL,
        last_change INTEGER,
        hours       TEXT NOT NULL,
        doc         TEXT NOT NULL,
        PRIMARY KEY (source, type)
    );
    CREATE INDEX event_catalogue_by_last_seen ON event_catalogue (last_seen);
"#,
];
