//! The identity store in the SQLite state database (schema step 4).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::rows::{collect, from_json, micros, time, to_json};
use super::SqliteStateStore;
use crate::error::{Error, Result};
use crate::execution::Page;
use crate::identity::rules::{Rule, Subject};
use crate::identity::store::{
    clip_detail, Account, AuditOutcome, AuditQuery, AuditRecord, IdentityStore, StoredRule,
    TokenRecord,
};
use crate::sqlite::db;
use crate::store::encoding::{
    decode_rule, kind_name, parse_kind, ACCOUNT_COLUMNS, AUDIT_COLUMNS, RULE_COLUMNS, TOKEN_COLUMNS,
};

fn optional_time(us: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    us.map(time).transpose()
}

fn account(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Account>> {
    let name: String = row.get(0)?;
    let kind: String = row.get(1)?;
    let groups: String = row.get(4)?;
    let (created, updated): (i64, i64) = (row.get(6)?, row.get(7)?);
    let display_name = row.get(2)?;
    let password_hash = row.get(3)?;
    let disabled: bool = row.get(5)?;
    Ok((|| {
        Ok(Account {
            kind: parse_kind(&kind)?,
            groups: from_json(&format!("groups of account {name}"), &groups)?,
            created_at: time(created)?,
            updated_at: time(updated)?,
            display_name,
            password_hash,
            disabled,
            name,
        })
    })())
}

fn token(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<TokenRecord>> {
    let id: String = row.get(0)?;
    let scope: String = row.get(4)?;
    let created: i64 = row.get(5)?;
    let (expires, used, revoked): (Option<i64>, Option<i64>, Option<i64>) =
        (row.get(6)?, row.get(7)?, row.get(8)?);
    let owner = row.get(1)?;
    let name = row.get(2)?;
    let secret_hash = row.get(3)?;
    Ok((|| {
        Ok(TokenRecord {
            scope: from_json(&format!("scope of token {id}"), &scope)?,
            created_at: time(created)?,
            expires_at: optional_time(expires)?,
            last_used_at: optional_time(used)?,
            revoked_at: optional_time(revoked)?,
            owner,
            name,
            secret_hash,
            id,
        })
    })())
}

fn rule(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredRule>> {
    let id: i64 = row.get(0)?;
    let subject: String = row.get(1)?;
    let grant: String = row.get(2)?;
    let pattern: String = row.get(3)?;
    let created_by = row.get(4)?;
    let created: i64 = row.get(5)?;
    Ok((|| {
        Ok(StoredRule {
            rule: decode_rule(id, &subject, &grant, &pattern)?,
            created_by,
            created_at: time(created)?,
            id,
        })
    })())
}

fn audit(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AuditRecord>> {
    let at: i64 = row.get(1)?;
    let outcome: String = row.get(6)?;
    let record = (
        row.get(0)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(7)?,
    );
    Ok((|| {
        let (id, principal, action, resource, source, detail) = record;
        Ok(AuditRecord {
            id,
            at: time(at)?,
            outcome: AuditOutcome::parse(&outcome).map_err(|e| {
                Error::internal(format!("stored outcome of audit entry {id}")).with_source(e)
            })?,
            principal,
            action,
            resource,
            source,
            detail,
        })
    })())
}

#[async_trait]
impl IdentityStore for SqliteStateStore {
    async fn create_account(&self, account: &Account) -> Result<()> {
        account.validate()?;
        let a = account.clone();
        let groups = to_json("groups", &a.groups)?;
        self.call(move |conn| {
            let inserted = conn
                .execute(
                    &format!(
                        "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (name) DO NOTHING"
                    ),
                    params![
                        a.name,
                        kind_name(a.kind),
                        a.display_name,
                        a.password_hash,
                        groups,
                        a.disabled,
                        micros(a.created_at),
                        micros(a.updated_at)
                    ],
                )
                .map_err(db(format!("creating account {}", a.name)))?;
            if inserted == 0 {
                return Err(Error::conflict(format!("account {} already exists", a.name)));
            }
            Ok(())
        })
        .await
    }

    async fn account(&self, name: &str) -> Result<Option<Account>> {
        let name = name.to_string();
        self.call(move |conn| {
            conn.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?1"),
                params![name],
                account,
            )
            .optional()
            .map_err(db(format!("reading account {name}")))?
            .transpose()
        })
        .await
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        self.call(|conn| {
            let what = "listing accounts";
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY name"
                ))
                .map_err(db(what))?;
            let rows = stmt.query_map([], account).map_err(db(what))?;
            collect(rows, what)
        })
        .await
    }

    async fn update_account(&self, account: &Account) -> Result<()> {
        account.validate()?;
        let a = account.clone();
        let groups = to_json("groups", &a.groups)?;
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE accounts SET display_name = ?2, password_hash = ?3, groups_json = ?4,
                        disabled = ?5, updated_at = ?6 WHERE name = ?1",
                    params![
                        a.name,
                        a.display_name,
                        a.password_hash,
                        groups,
                        a.disabled,
                        micros(a.updated_at)
                    ],
                )
                .map_err(db(format!("updating account {}", a.name)))?;
            if changed == 0 {
                return Err(Error::not_found(format!("account {} not found", a.name)));
            }
            Ok(())
        })
        .await
    }

    async fn delete_account(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.call(move |conn| {
            let deleted = conn
                .execute("DELETE FROM accounts WHERE name = ?1", params![name])
                .map_err(db(format!("deleting account {name}")))?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn has_accounts(&self) -> Result<bool> {
        self.call(|conn| {
            conn.query_row("SELECT EXISTS (SELECT 1 FROM accounts)", [], |r| r.get(0))
                .map_err(db("counting accounts"))
        })
        .await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<()> {
        let t = token.clone();
        let scope = to_json("token scope", &t.scope)?;
        self.call(move |conn| {
            let owner_exists: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM accounts WHERE name = ?1)",
                    params![t.owner],
                    |r| r.get(0),
                )
                .map_err(db(format!("reading account {}", t.owner)))?;
            if !owner_exists {
                return Err(Error::not_found(format!("account {} not found", t.owner)));
            }
            let inserted = conn
                .execute(
                    &format!(
                        "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                         ON CONFLICT (id) DO NOTHING"
                    ),
                    params![
                        t.id,
                        t.owner,
                        t.name,
                        t.secret_hash,
                        scope,
                        micros(t.created_at),
                        t.expires_at.map(micros),
                        t.last_used_at.map(micros),
                        t.revoked_at.map(micros)
                    ],
                )
                .map_err(db(format!("creating token {} of {}", t.name, t.owner)))?;
            if inserted == 0 {
                return Err(Error::conflict(format!("token id {} is taken", t.id)));
            }
            Ok(())
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let id = id.to_string();
        self.call(move |conn| {
            conn.query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                params![id],
                token,
            )
            .optional()
            .map_err(db(format!("reading token {id}")))?
            .transpose()
        })
        .await
    }

    async fn tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>> {
        let owner = owner.map(str::to_string);
        self.call(move |conn| {
            let what = "listing tokens";
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ?1 IS NULL OR owner = ?1
                     ORDER BY created_at DESC, id"
                ))
                .map_err(db(what))?;
            let rows = stmt.query_map(params![owner], token).map_err(db(what))?;
            collect(rows, what)
        })
        .await
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let id = id.to_string();
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                    params![id, micros(at)],
                )
                .map_err(db(format!("revoking token {id}")))?;
            Ok(changed > 0)
        })
        .await
    }

    async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let id = id.to_string();
        self.call(move |conn| {
            conn.execute(
                "UPDATE api_tokens SET last_used_at = ?2
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
                params![id, micros(at)],
            )
            .map_err(db(format!("recording a use of token {id}")))?;
            Ok(())
        })
        .await
    }

    async fn purge_tokens(&self, before: DateTime<Utc>) -> Result<u64> {
        self.call(move |conn| {
            let deleted = conn
                .execute(
                    "DELETE FROM api_tokens WHERE expires_at < ?1 OR revoked_at < ?1",
                    params![micros(before)],
                )
                .map_err(db("purging expired tokens"))?;
            Ok(deleted as u64)
        })
        .await
    }

    async fn rules(&self) -> Result<Vec<StoredRule>> {
        self.call(|conn| {
            let what = "listing rules";
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {RULE_COLUMNS} FROM access_rules ORDER BY id"
                ))
                .map_err(db(what))?;
            let rows = stmt.query_map([], rule).map_err(db(what))?;
            collect(rows, what)
        })
        .await
    }

    async fn add_rule(&self, rule: &Rule, by: &str, at: DateTime<Utc>) -> Result<StoredRule> {
        let grant = to_json("rule grant", &rule.grant)?;
        let (r, by) = (rule.clone(), by.to_string());
        self.call(move |conn| {
            let id: Option<i64> = conn
                .query_row(
                    "INSERT INTO access_rules (subject, grant_json, pattern, created_by, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (subject, grant_json, pattern) DO NOTHING RETURNING id",
                    params![r.subject.to_string(), grant, r.pattern.as_str(), by, micros(at)],
                    |row| row.get(0),
                )
                .optional()
                .map_err(db("adding a rule"))?;
            let Some(id) = id else {
                return Err(Error::conflict(format!(
                    "the rule {} {} on {} exists already",
                    r.subject, grant, r.pattern
                )));
            };
            Ok(StoredRule {
                id,
                rule: r,
                created_by: by,
                created_at: time(micros(at))?,
            })
        })
        .await
    }

    async fn delete_rule(&self, id: i64) -> Result<bool> {
        self.call(move |conn| {
            let deleted = conn
                .execute("DELETE FROM access_rules WHERE id = ?1", params![id])
                .map_err(db(format!("deleting rule {id}")))?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn claim_package(&self, name: &str, owner: &Subject) -> Result<Subject> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO package_owners (name, owner) VALUES (?1, ?2)
                 ON CONFLICT (name) DO NOTHING",
                params![name, owner],
            )
            .map_err(db(format!("claiming package {name}")))?;
            let stored: String = conn
                .query_row(
                    "SELECT owner FROM package_owners WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .map_err(db(format!("reading the owner of package {name}")))?;
            Subject::parse(&stored)
        })
        .await
    }

    async fn package_owner(&self, name: &str) -> Result<Option<Subject>> {
        let name = name.to_string();
        self.call(move |conn| {
            let stored: Option<String> = conn
                .query_row(
                    "SELECT owner FROM package_owners WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db(format!("reading the owner of package {name}")))?;
            stored.as_deref().map(Subject::parse).transpose()
        })
        .await
    }

    async fn set_package_owner(&self, name: &str, owner: &Subject) -> Result<()> {
        let (name, owner) = (name.to_string(), owner.to_string());
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO package_owners (name, owner) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner",
                params![name, owner],
            )
            .map_err(db(format!("setting the owner of package {name}")))?;
            Ok(())
        })
        .await
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<i64> {
        let r = record.clone();
        self.call(move |conn| {
            conn.query_row(
                "INSERT INTO audit_log (at, principal, action, resource, source, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                params![
                    micros(r.at),
                    r.principal,
                    r.action,
                    r.resource,
                    r.source,
                    r.outcome.name(),
                    clip_detail(&r.detail)
                ],
                |row| row.get(0),
            )
            .map_err(db(format!(
                "recording {} by {} in the audit log",
                r.action, r.principal
            )))
        })
        .await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditRecord>> {
        let before = query.before_id()?;
        let limit = query.page_size();
        let q = query.clone();
        self.call(move |conn| {
            let what = "listing the audit log";
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log
                     WHERE (?1 IS NULL OR id < ?1)
                       AND (?2 IS NULL OR principal = ?2)
                       AND (?3 IS NULL OR substr(action, 1, length(?3)) = ?3)
                       AND (?4 IS NULL OR substr(resource, 1, length(?4)) = ?4)
                       AND (?5 IS NULL OR outcome = ?5)
                       AND (?6 IS NULL OR at >= ?6)
                     ORDER BY id DESC LIMIT ?7"
                ))
                .map_err(db(what))?;
            let rows = stmt
                .query_map(
                    params![
                        before,
                        q.principal,
                        q.action,
                        q.resource,
                        q.outcome.map(AuditOutcome::name),
                        q.since.map(micros),
                        i64::from(limit) + 1
                    ],
                    audit,
                )
                .map_err(db(what))?;
            let mut items = collect(rows, what)?;
            let next_cursor = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items.last().map(|r| r.id.to_string())
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqliteStateStore::open(&dir.path().join("state.sqlite"))
            .await
            .unwrap();
        crate::identity::testsuite::run(&store).await;
    }
}
