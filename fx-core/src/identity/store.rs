//! The identity store port: accounts (users and service accounts), API tokens, permission
//! rules, package ownership and the audit log. Both state stores implement it in the same
//! database as the executions (SQLite for `ferrisfx dev`, PostgreSQL when distributed).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::rules::{PrincipalKind, Rule, Scope, Subject};
use crate::error::{Error, Result};
use crate::execution::Page;

/// A user or a service account. One namespace for both: a service account cannot take a
/// user's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Unique name (`validate_name` rules).
    pub name: String,
    /// User or service account.
    pub kind: PrincipalKind,
    /// A name to show; may be empty.
    #[serde(default)]
    pub display_name: String,
    /// The Argon2id hash of the password (PHC string); `None` for service accounts and for
    /// users who log in only with tokens or OIDC. Never serialized into API answers.
    #[serde(default, skip_serializing)]
    pub password_hash: Option<String>,
    /// The groups the account belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// A disabled account cannot log in and its tokens are refused.
    #[serde(default)]
    pub disabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Account {
    /// Checks the name and the groups.
    pub fn validate(&self) -> Result<()> {
        crate::validate::validate_name("account name", &self.name)?;
        for group in &self.groups {
            crate::validate::validate_name("group name", group)?;
        }
        if self.display_name.len() > 256 {
            return Err(Error::invalid("display name is longer than 256 bytes"));
        }
        Ok(())
    }

    /// The account as the subject of rules.
    pub fn subject(&self) -> Subject {
        match self.kind {
            PrincipalKind::User => Subject::User(self.name.clone()),
            PrincipalKind::ServiceAccount => Subject::Service(self.name.clone()),
        }
    }
}

/// An API token as stored: never the secret, only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The public part of the token, which finds the record (`fxt_<id>_<secret>`).
    pub id: String,
    /// The account the token acts as.
    pub owner: String,
    /// A name the owner gave it, e.g. `ci`.
    pub name: String,
    /// SHA-256 of the secret part, hex. Never serialized into API answers.
    #[serde(default, skip_serializing)]
    pub secret_hash: String,
    /// What the token is limited to.
    #[serde(default)]
    pub scope: Scope,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last used (kept to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A rule as stored, with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRule {
    /// Its id, for deletion.
    pub id: i64,
    /// The rule.
    #[serde(flatten)]
    pub rule: Rule,
    /// Who added it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Whether an audited request did what it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// It was allowed and succeeded.
    Ok,
    /// It was refused: no credential, or no permission.
    Denied,
    /// It was allowed and failed (invalid input, a conflict, a backend down).
    Failed,
}

impl AuditOutcome {
    /// The stored name.
    pub fn name(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "ok" => Ok(AuditOutcome::Ok),
            "denied" => Ok(AuditOutcome::Denied),
            "failed" => Ok(AuditOutcome::Failed),
            other => Err(Error::invalid(format!(
                "audit outcome {other:?} is not ok, denied or failed"
            ))),
        }
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its id (assigned by the store, increasing); 0 before it is stored.
    #[serde(default)]
    pub id: i64,
    /// When the request was made.
    pub at: DateTime<Utc>,
    /// Who made it (`user:alice`, `service:ci`), or `anonymous`.
    pub principal: String,
    /// What was asked: an action name (`package:upload`) or `login`, `logout`.
    pub action: String,
    /// On what, e.g. `payments@1.2.0`, `handler orders`, `token 3f9a…`.
    pub resource: String,
    /// The client's address.
    pub source: String,
    /// What came of it.
    pub outcome: AuditOutcome,
    /// A short reason or summary; never a secret.
    #[serde(default)]
    pub detail: String,
}

/// Which audit entries to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only this principal's.
    pub principal: Option<String>,
    /// Only actions starting with this (e.g. `package:` or `login`).
    pub action: Option<String>,
    /// Only resources starting with this.
    pub resource: Option<String>,
    /// Only this outcome.
    pub outcome: Option<AuditOutcome>,
    /// Only entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (1 to 500; default 50).
    pub limit: Option<u32>,
}

impl AuditQuery {
    /// The page size asked for, within bounds.
    pub fn page_size(&self) -> u32 {
        self.limit.unwrap_or(50).clamp(1, 500)
    }

    /// The id before which the page starts, from the cursor.
    pub fn before_id(&self) -> Result<Option<i64>> {
        self.cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| Error::invalid(format!("audit cursor {c:?} is malformed")))
            })
            .transpose()
    }
}

/// Longest detail kept in an audit record, in bytes.
pub const MAX_AUDIT_DETAIL: usize = 1024;

/// Cuts `detail` to [`MAX_AUDIT_DETAIL`] bytes at a character boundary.
pub fn clip_detail(detail: &str) -> String {
    if detail.len() <= MAX_AUDIT_DETAIL {
        return detail.to_string();
    }
    let mut end = MAX_AUDIT_DETAIL;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &detail[..end])
}

/// Accounts, tokens, rules, package owners and the audit log.
#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// Creates an account; `Conflict` when the name is taken.
    async fn create_account(&self, account: &Account) -> Result<()>;

    /// The account called `name`.
    async fn account(&self, name: &str) -> Result<Option<Account>>;

    /// Every account, by name.
    async fn accounts(&self) -> Result<Vec<Account>>;

    /// Replaces an account's display name, password hash, groups and disabled flag;
    /// `NotFound` when there is none.
    async fn update_account(&self, account: &Account) -> Result<()>;

    /// Deletes an account and its tokens; whether it existed. Its rules stay (they name it).
    async fn delete_account(&self, name: &str) -> Result<bool>;

    /// Whether any account exists (the first admin is made only when none does).
    async fn has_accounts(&self) -> Result<bool>;

    /// Stores a new token; `Conflict` when the id is taken, `NotFound` without its owner.
    async fn create_token(&self, token: &TokenRecord) -> Result<()>;

    /// The token with this id, revoked or not.
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>>;

    /// The tokens of `owner`, or every token; newest first.
    async fn tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>>;

    /// Revokes a token at `at`; whether it existed and was not revoked before.
    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;

    /// Records a use of the token at `at`.
    async fn touch_token(&self, id: &str, at: DateTime<Utc>) -> Result<()>;

    /// Deletes the tokens that expired or were revoked before `before` (sign-ins make one
    /// each, so they would pile up); how many.
    async fn purge_tokens(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Every rule, by id.
    async fn rules(&self) -> Result<Vec<StoredRule>>;

    /// Adds a rule; `Conflict` when the same rule exists.
    async fn add_rule(&self, rule: &Rule, by: &str, at: DateTime<Utc>) -> Result<StoredRule>;

    /// Deletes a rule; whether it existed.
    async fn delete_rule(&self, id: i64) -> Result<bool>;

    /// Makes `owner` the owner of package `name` unless it has one; returns the owner.
    async fn claim_package(&self, name: &str, owner: &Subject) -> Result<Subject>;

    /// The owner of package `name`.
    async fn package_owner(&self, name: &str) -> Result<Option<Subject>>;

    /// Gives package `name` to `owner` (an admin's transfer).
    async fn set_package_owner(&self, name: &str, owner: &Subject) -> Result<()>;

    /// Appends an entry to the audit log; returns its id.
    async fn append_audit(&self, record: &AuditRecord) -> Result<i64>;

    /// A page of the audit log, newest first.
    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditRecord>>;
}
