//! The identity store in the PostgreSQL state schema (migration 4).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::rows::{from_json, get, to_json};
use super::PostgresStateStore;
use crate::error::{Error, Result};
use crate::execution::Page;
use crate::identity::rules::Subject;
use crate::identity::store::{
    clip_detail, Account, AuditOutcome, AuditQuery, AuditRecord, IdentityStore, StoredRule,
    TokenRecord,
};
use crate::store::encoding::{
    decode_rule, kind_name, parse_kind, ACCOUNT_COLUMNS, AUDIT_COLUMNS, RULE_COLUMNS, TOKEN_COLUMNS,
};

fn account(row: &Row) -> Result<Account> {
    let name: String = get(row, 0)?;
    Ok(Account {
        kind: parse_kind(&get::<String>(row, 1)?)?,
        display_name: get(row, 2)?,
        password_hash: get(row, 3)?,
        groups: from_json(
            &format!("groups of account {name}"),
            &get::<String>(row, 4)?,
        )?,
        disabled: get(row, 5)?,
        created_at: get(row, 6)?,
        updated_at: get(row, 7)?,
        name,
    })
}

fn token(row: &Row) -> Result<TokenRecord> {
    let id: String = get(row, 0)?;
    Ok(TokenRecord {
        owner: get(row, 1)?,
        name: get(row, 2)?,
        secret_hash: get(row, 3)?,
        scope: from_json(&format!("scope of token {id}"), &get::<String>(row, 4)?)?,
        created_at: get(row, 5)?,
        expires_at: get(row, 6)?,
        last_used_at: get(row, 7)?,
        revoked_at: get(row, 8)?,
        id,
    })
}

fn rule(row: &Row) -> Result<StoredRule> {
    let id: i64 = get(row, 0)?;
    Ok(StoredRule {
        rule: decode_rule(
            id,
            &get::<String>(row, 1)?,
            &get::<String>(row, 2)?,
            &get::<String>(row, 3)?,
        )?,
        created_by: get(row, 4)?,
        created_at: get(row, 5)?,
        id,
    })
}

fn audit(row: &Row) -> Result<AuditRecord> {
    let id: i64 = get(row, 0)?;
    Ok(AuditRecord {
        at: get(row, 1)?,
        principal: get(row, 2)?,
        action: get(row, 3)?,
        resource: get(row, 4)?,
        source: get(row, 5)?,
        outcome: AuditOutcome::parse(&get::<String>(row, 6)?).map_err(|e| {
            Error::internal(format!("stored outcome of audit entry {id}")).with_source(e)
        })?,
        detail: get(row, 7)?,
        id,
    })
}

impl PostgresStateStore {
    /// Runs one statement (prepared once per connection) and returns its rows.
    pub(super) async fn rows(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let client = self.db.client().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(self.db.error(what))?;
        client
            .query(&stmt, params)
            .await
            .map_err(self.db.error(what))
    }
}

#[async_trait]
impl IdentityStore for PostgresStateStore {
    async fn create_account(&self, account: &Account) -> Result<()> {
        account.validate()?;
        let a = account;
        let groups = to_json("groups", &a.groups)?;
        let inserted = self
            .rows(
                &format!("creating account {}", a.name),
                &format!(
                    "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (name) DO NOTHING RETURNING 1"
                ),
                &[
                    &a.name,
                    &kind_name(a.kind),
                    &a.display_name,
                    &a.password_hash,
                    &groups,
                    &a.disabled,
                    &a.created_at,
                    &a.updated_at,
                ],
            )
            .await?;
        if inserted.is_empty() {
            return Err(Error::conflict(format!(
                "account {} already exists",
                a.name
            )));
        }
        Ok(())
    }

    async fn account(&self, name: &str) -> Result<Option<Account>> {
        let rows = self
            .rows(
                &format!("reading account {name}"),
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1"),
                &[&name],
            )
            .await?;
        rows.first().map(account).transpose()
    }

    async fn accounts(&self) -> Result<Vec<Account>> {
        let rows = self
            .rows(
                "listing accounts",
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY name"),
                &[],
            )
            .await?;
        rows.iter().map(account).collect()
    }

    async fn update_account(&self, account: &Account) -> Result<()> {
        account.validate()?;
        let a = account;
        let groups = to_json("groups", &a.groups)?;
        let changed = self
            .rows(
                &format!("updating account {}", a.name),
                "UPDATE accounts SET display_name = $2, password_hash = $3, groups_json = $4,
                    disabled = $5, updated_at = $6 WHERE name = $1 RETURNING 1",
                &[
                    &a.name,
                    &a.display_name,
                    &a.password_hash,
                    &groups,
                    &a.disabled,
                    &a.updated_at,
                ],
            )
            .await?;
        if changed.is_empty() {
            return Err(Error::not_found(format!("account {} not found", a.name)));
        }
        Ok(())
    }

    async fn delete_account(&self, name: &str) -> Result<bool> {
        let deleted = self
            .rows(
                &format!("deleting account {name}"),
                "DELETE FROM accounts WHERE name = $1 RETURNING 1",
                &[&name],
            )
            .await?;
        Ok(!deleted.is_empty())
    }

    async fn has_accounts(&self) -> Result<bool> {
        let rows = self
            .rows(
                "counting accounts",
                "SELECT EXISTS (SELECT 1 FROM accounts)",
                &[],
            )
            .await?;
        match rows.first() {
            Some(row) => get(row, 0),
            None => Ok(false),
        }
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<()> {
        let t = token;
        let scope = to_json("token scope", &t.scope)?;
        let what = format!("creating token {} of {}", t.name, t.owner);
        let inserted = self
            .rows(
                &what,
                &format!(
                    "INSERT INTO api_tokens ({TOKEN_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (id) DO NOTHING RETURNING 1"
                ),
                &[
                    &t.id,
                    &t.owner,
                    &t.name,
                    &t.secret_hash,
                    &scope,
                    &t.created_at,
                    &t.expires_at,
                    &t.last_used_at,
                    &t.revoked_at,
                ],
            )
            .await
            .map_err(|e| match e.kind() {
                crate::ErrorKind::NotFound => {
                    Error::not_found(format!("account {} not found", t.owner))
                }
                _ => e,
            })?;
        if inserted.is_empty() {
            return Err(Error::conflict(format!("token id {} is taken", t.id)));
        }
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let rows = self
            .rows(
                &format!("reading token {id}"),
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
                &[&id],
            )
            .await?;
        rows.first().map(token).transpose()
    }

    async fn tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>> {
        let rows = self
            .rows(
                "listing tokens",
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens
                     WHERE $1::text IS NULL OR owner = $1 ORDER BY created_at DESC, id"
                ),
                &[&owner],
            )
            .await?;
        rows.iter().map(token).collect()
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let changed = self
            .rows(
                &format!("revoking token {id}"),
                "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL
                 RETURNING 1",
                &[&id, &at],
            )
            .await?;
        Ok(!changed.is_empty())
    }

    async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        self.rows(
            &format!("recording a use of token {id}"),
            "UPDATE api_tokens SET last_used_at = $2
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
            &[&id, &at],
        )
        .await?;
        Ok(())
    }

    async fn purge_tokens(&self, before: DateTime<Utc>) -> Result<u64> {
        let deleted = self
            .rows(
                "purging expired tokens",
                "DELETE FROM api_tokens WHERE expires_at < $1 OR revoked_at < $1 RETURNING 1",
                &[&before],
            )
            .await?;
        Ok(deleted.len() as u64)
    }

    async fn rules(&self) -> Result<Vec<StoredRule>> {
        let rows = self
            .rows(
                "listing rules",
                &format!("SELECT {RULE_COLUMNS} FROM access_rules ORDER BY id"),
                &[],
            )
            .await?;
        rows.iter().map(rule).collect()
    }

    async fn add_rule(
        &self,
        rule: &crate::identity::Rule,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredRule> {
        let grant = to_json("rule grant", &rule.grant)?;
        let rows = self
            .rows(
                "adding a rule",
                "INSERT INTO access_rules (subject, grant_json, pattern, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (subject, grant_json, pattern) DO NOTHING RETURNING id",
                &[
                    &rule.subject.to_string(),
                    &grant,
                    &rule.pattern.as_str(),
                    &by,
                    &at,
                ],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Err(Error::conflict(format!(
                "the rule {} {} on {} exists already",
                rule.subject, grant, rule.pattern
            )));
        };
        Ok(StoredRule {
            id: get(row, 0)?,
            rule: rule.clone(),
            created_by: by.to_string(),
            created_at: at,
        })
    }

    async fn delete_rule(&self, id: i64) -> Result<bool> {
        let deleted = self
            .rows(
                &format!("deleting rule {id}"),
                "DELETE FROM access_rules WHERE id = $1 RETURNING 1",
                &[&id],
            )
            .await?;
        Ok(!deleted.is_empty())
    }

    async fn claim_package(&self, name: &str, owner: &Subject) -> Result<Subject> {
        // The insert and the read in one statement: a concurrent claim's row is seen by the
        // read when the insert found it (ON CONFLICT waits for the other transaction).
        let rows = self
            .rows(
                &format!("claiming package {name}"),
                "WITH claimed AS (
                    INSERT INTO package_owners (name, owner) VALUES ($1, $2)
                    ON CONFLICT (name) DO NOTHING RETURNING owner)
                 SELECT owner FROM claimed
                 UNION ALL SELECT owner FROM package_owners WHERE name = $1
                 LIMIT 1",
                &[&name, &owner.to_string()],
            )
            .await?;
        let row = rows.first().ok_or_else(|| {
            Error::internal(format!("claiming package {name}: no owner was recorded"))
        })?;
        Subject::parse(&get::<String>(row, 0)?)
    }

    async fn package_owner(&self, name: &str) -> Result<Option<Subject>> {
        let rows = self
            .rows(
                &format!("reading the owner of package {name}"),
                "SELECT owner FROM package_owners WHERE name = $1",
                &[&name],
            )
            .await?;
        rows.first()
            .map(|row| Subject::parse(&get::<String>(row, 0)?))
            .transpose()
    }

    async fn set_package_owner(&self, name: &str, owner: &Subject) -> Result<()> {
        self.rows(
            &format!("setting the owner of package {name}"),
            "INSERT INTO package_owners (name, owner) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner",
            &[&name, &owner.to_string()],
        )
        .await?;
        Ok(())
    }

    async fn append_audit(&self, record: &AuditRecord) -> Result<i64> {
        let r = record;
        let rows = self
            .rows(
                &format!("recording {} by {} in the audit log", r.action, r.principal),
                "INSERT INTO audit_log (at, principal, action, resource, source, outcome, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    &r.at,
                    &r.principal,
                    &r.action,
                    &r.resource,
                    &r.source,
                    &r.outcome.name(),
                    &clip_detail(&r.detail),
                ],
            )
            .await?;
        match rows.first() {
            Some(row) => get(row, 0),
            None => Err(Error::internal("the audit log returned no id")),
        }
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditRecord>> {
        let before = query.before_id()?;
        let limit = query.page_size();
        let outcome = query.outcome.map(AuditOutcome::name);
        let rows = self
            .rows(
                "listing the audit log",
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log
                     WHERE ($1::bigint IS NULL OR id < $1)
                       AND ($2::text IS NULL OR principal = $2)
                       AND ($3::text IS NULL OR starts_with(action, $3))
                       AND ($4::text IS NULL OR starts_with(resource, $4))
                       AND ($5::text IS NULL OR outcome = $5)
                       AND ($6::timestamptz IS NULL OR at >= $6)
                     ORDER BY id DESC LIMIT $7"
                ),
                &[
                    &before,
                    &query.principal,
                    &query.action,
                    &query.resource,
                    &outcome,
                    &query.since,
                    &(i64::from(limit) + 1),
                ],
            )
            .await?;
        let mut items = rows.iter().map(audit).collect::<Result<Vec<_>>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|r| r.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{drop_schema, fresh_settings};
    use super::PostgresStateStore;

    #[tokio::test]
    async fn postgres_identity_store_passes_the_conformance_suite() {
        let Some(settings) = fresh_settings("postgres_identity_store_passes_the_conformance_suite")
        else {
            return;
        };
        let store = PostgresStateStore::open(&settings).await.unwrap();
        crate::identity::testsuite::run(&store).await;
        drop(store);
        drop_schema(&settings).await;
    }
}
