//! Identity over the API: who am I (`/me`), my API tokens (`/tokens`), accounts and their
//! tokens (`/accounts`, `user:admin`), permission rules (`/rules`, `user:admin`) and the audit
//! log (`/audit`, `audit:read`). A token's secret is answered once, when it is made; never a
//! password or a token's hash.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use fx_core::execution::Page;
use fx_core::identity::credentials::{hash_password, Token};
use fx_core::identity::{
    Account, AuditOutcome, AuditQuery, AuditRecord, Principal, PrincipalKind, Rule, Scope,
    StoredRule, TokenRecord,
};
use serde::{Deserialize, Serialize};

use crate::auth::audit::AuditResource;
use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiQuery, JsonBody};
use crate::AppState;

/// The longest a token may live, in days.
pub const MAX_TOKEN_DAYS: u32 = 3650;
/// A new token's life when none is asked for, in days.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;

/// The body of `POST /api/v1/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account's name.
    pub name: String,
    /// Its password.
    pub password: String,
    /// Hours until the token expires (1 to 720; default 12).
    #[serde(default)]
    pub expires_in_hours: Option<u32>,
}

/// The hash a sign-in to an unknown or unusable account is checked against, so that it takes
/// the same work as one to a real account (made once, of a random password).
fn no_account_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let random = Token::generate().map(|t| t.reveal()).unwrap_or_default();
        fx_core::identity::credentials::hash_password(&format!("{random}-no-account"))
            .unwrap_or_default()
    })
    .clone()
}

/// `POST /api/v1/login`: a user's name and password for a token of theirs (named `login`,
/// 12 hours by default), answered once. Every failure is the same 401, after the same work.
pub async fn login(
    State(state): State<AppState>,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let who = format!("user:{}", login.name);
    let refused = || {
        let mut response = ApiError::new(
            fx_core::ErrorKind::Unauthenticated,
            "wrong account name or password",
        )
        .into_response();
        response
            .extensions_mut()
            .insert(crate::auth::audit::AuditWho(who.clone()));
        response
            .extensions_mut()
            .insert(AuditResource(format!("account {}", login.name)));
        response
    };
    let hours = login.expires_in_hours.unwrap_or(12);
    if !(1..=720).contains(&hours) {
        return Err(ApiError::invalid(format!(
            "expires_in_hours must be 1 to 720, got {hours}"
        )));
    }
    let Some((token, record)) =
        sign_in(&state, &login.name, &login.password, "login", hours).await?
    else {
        return Ok(refused());
    };
    let account = record.owner.clone();
    tracing::info!(%account, token = %record.id, "signed in");
    let mut response = (
        StatusCode::CREATED,
        Json(MadeToken {
            token: token.reveal(),
            record,
        }),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(crate::auth::audit::AuditWho(who.clone()));
    response
        .extensions_mut()
        .insert(AuditResource(format!("account {account}")));
    Ok(response)
}

/// Checks a user's name and password and makes a token of theirs named `name`, valid `hours`;
/// `None` for any failure (unknown, disabled, a service account, a wrong password), after the
/// same Argon2 work.
pub async fn sign_in(
    state: &AppState,
    user: &str,
    password: &str,
    name: &str,
    hours: u32,
) -> Result<Option<(Token, TokenRecord)>, ApiError> {
    let account = state.backends.identity.account(user).await?;
    let usable = account
        .as_ref()
        .filter(|a| !a.disabled && a.kind == PrincipalKind::User);
    let hash = usable
        .and_then(|a| a.password_hash.clone())
        .unwrap_or_else(no_account_hash);
    let password = password.to_string();
    let verified = tokio::task::spawn_blocking(move || {
        fx_core::identity::credentials::verify_password(&password, &hash)
    })
    .await
    .map_err(|e| ApiError::from(fx_core::Error::internal("checking a password").with_source(e)))?;
    let Some(account) = usable.filter(|_| verified) else {
        tracing::info!(account = %user, "sign-in refused");
        return Ok(None);
    };
    let token = Token::generate()?;
    let now = Utc::now();
    let record = TokenRecord {
        id: token.id().to_string(),
        owner: account.name.clone(),
        name: name.into(),
        secret_hash: token.secret_hash(),
        scope: Scope::default(),
        created_at: now,
        expires_at: Some(now + chrono::TimeDelta::hours(i64::from(hours))),
        last_used_at: None,
        revoked_at: None,
    };
    state.backends.identity.create_token(&record).await?;
    Ok(Some((token, record)))
}

/// The answer of `GET /api/v1/me`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Me {
    /// `user:alice`, `service:ci`, or `local` when authentication is off.
    pub principal: String,
    /// The principal as authenticated (absent when authentication is off).
    pub details: Option<Principal>,
    /// The rules that apply to it.
    pub rules: Vec<StoredRule>,
}

/// `GET /api/v1/me`: who the credential is, and the rules that apply to it.
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let Some(principal) = caller.principal().cloned() else {
        return Ok(Json(Me {
            principal: caller.audit_name(),
            details: None,
            rules: Vec::new(),
        }));
    };
    let rules = state
        .backends
        .identity
        .rules()
        .await?
        .into_iter()
        .filter(|r| r.rule.subject.includes(&principal))
        .collect();
    Ok(Json(Me {
        principal: principal.to_string(),
        details: Some(principal),
        rules,
    }))
}

/// The body of `POST /api/v1/tokens` and `POST /api/v1/accounts/{name}/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// A name for it, e.g. `ci` or `laptop`.
    pub name: String,
    /// Days until it expires (1 to 3650; default 90).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    /// What it is limited to, beyond its owner's rules.
    #[serde(default)]
    pub scope: Scope,
}

/// The answer to a new token: the token itself, shown this once.
#[derive(Debug, Serialize, Deserialize)]
pub struct MadeToken {
    /// Send it as `Authorization: Bearer <token>`. Shown once; only its hash is kept.
    pub token: String,
    /// The stored record.
    pub record: TokenRecord,
}

/// Makes a token of `owner`.
async fn make_token(state: &AppState, owner: &str, new: NewToken) -> Result<Response, ApiError> {
    if new.name.trim().is_empty() || new.name.len() > 64 {
        return Err(ApiError::invalid(
            "a token needs a name of 1 to 64 characters",
        ));
    }
    let days = new.expires_in_days.unwrap_or(DEFAULT_TOKEN_DAYS);
    if !(1..=MAX_TOKEN_DAYS).contains(&days) {
        return Err(ApiError::invalid(format!(
            "expires_in_days must be 1 to {MAX_TOKEN_DAYS}, got {days}"
        )));
    }
    let token = Token::generate()?;
    let now = Utc::now();
    let record = TokenRecord {
        id: token.id().to_string(),
        owner: owner.to_string(),
        name: new.name.trim().to_string(),
        secret_hash: token.secret_hash(),
        scope: new.scope,
        created_at: now,
        expires_at: Some(now + chrono::TimeDelta::days(i64::from(days))),
        last_used_at: None,
        revoked_at: None,
    };
    state.backends.identity.create_token(&record).await?;
    tracing::info!(owner, token = %record.id, name = %record.name, "api token made");
    let mut response = (
        StatusCode::CREATED,
        Json(MadeToken {
            token: token.reveal(),
            record: record.clone(),
        }),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(AuditResource(format!("token {} of {owner}", record.id)));
    Ok(response)
}

/// `POST /api/v1/tokens`: a token of the caller's own account.
pub async fn create_own_token(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(new): JsonBody<NewToken>,
) -> Result<Response, ApiError> {
    let Some(principal) = caller.principal() else {
        return Err(ApiError::invalid(
            "authentication is off: there is no account to give a token to (create an account with POST /api/v1/accounts, then a token for it with POST /api/v1/accounts/{name}/tokens)",
        ));
    };
    let owner = principal.name.clone();
    make_token(&state, &owner, new).await
}

/// `GET /api/v1/tokens`: the caller's tokens (never their secrets).
pub async fn own_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenRecord>>, ApiError> {
    let Some(principal) = caller.principal() else {
        return Ok(Json(state.backends.identity.tokens(None).await?));
    };
    Ok(Json(
        state
            .backends
            .identity
            .tokens(Some(&principal.name))
            .await?,
    ))
}

/// `DELETE /api/v1/tokens/{id}`: revokes a token of the caller's (or any, with `user:admin`).
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let store = &state.backends.identity;
    let Some(token) = store.token(&id).await? else {
        return Err(ApiError::not_found(format!("token {id} does not exist")));
    };
    let own = caller.principal().is_some_and(|p| p.name == token.owner);
    if !own {
        caller.check(
            fx_core::identity::Action::UserAdmin,
            fx_core::identity::Resource::Any,
        )?;
    }
    store.revoke_token(&id, Utc::now()).await?;
    state.auth.invalidate();
    tracing::info!(token = %id, owner = %token.owner, "api token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST /api/v1/accounts` and `PUT /api/v1/accounts/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    /// The account's name (on create; must match the path on update).
    pub name: String,
    /// `user` (the default) or `service_account`.
    #[serde(default = "user_kind")]
    pub kind: PrincipalKind,
    /// A name to show.
    #[serde(default)]
    pub display_name: String,
    /// A new password (at least 12 characters); absent keeps the current one.
    #[serde(default)]
    pub password: Option<String>,
    /// Its groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// A disabled account cannot log in and its tokens are refused.
    #[serde(default)]
    pub disabled: bool,
}

fn user_kind() -> PrincipalKind {
    PrincipalKind::User
}

/// `GET /api/v1/accounts`.
pub async fn accounts(State(state): State<AppState>) -> Result<Json<Vec<Account>>, ApiError> {
    Ok(Json(state.backends.identity.accounts().await?))
}

/// `POST /api/v1/accounts`: 201 with the account; 409 if the name is taken.
pub async fn create_account(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<AccountBody>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    if body.kind == PrincipalKind::ServiceAccount && body.password.is_some() {
        return Err(ApiError::invalid(
            "a service account has no password: give it tokens",
        ));
    }
    let now = Utc::now();
    let account = Account {
        password_hash: body.password.as_deref().map(hash_password).transpose()?,
        name: body.name,
        kind: body.kind,
        display_name: body.display_name,
        groups: body.groups,
        disabled: body.disabled,
        created_at: now,
        updated_at: now,
    };
    state.backends.identity.create_account(&account).await?;
    state.auth.invalidate();
    tracing::info!(account = %account.name, kind = ?account.kind, "account created");
    Ok((StatusCode::CREATED, Json(account)))
}

/// `GET /api/v1/accounts/{name}`.
pub async fn account(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Account>, ApiError> {
    state
        .backends
        .identity
        .account(&name)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("account {name} does not exist")))
}

/// `PUT /api/v1/accounts/{name}`: replaces the display name, groups, disabled flag and (when
/// given) the password. The kind never changes.
pub async fn update_account(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    JsonBody(body): JsonBody<AccountBody>,
) -> Result<Json<Account>, ApiError> {
    if body.name != name {
        return Err(ApiError::invalid(format!(
            "account name in the path ({name:?}) differs from the one in the body ({:?})",
            body.name
        )));
    }
    let store = &state.backends.identity;
    let Some(mut account) = store.account(&name).await? else {
        return Err(ApiError::not_found(format!(
            "account {name} does not exist"
        )));
    };
    if let Some(password) = body.password.as_deref() {
        if account.kind == PrincipalKind::ServiceAccount {
            return Err(ApiError::invalid(
                "a service account has no password: give it tokens",
            ));
        }
        account.password_hash = Some(hash_password(password)?);
    }
    account.display_name = body.display_name;
    account.groups = body.groups;
    account.disabled = body.disabled;
    account.updated_at = Utc::now();
    store.update_account(&account).await?;
    state.auth.invalidate();
    tracing::info!(account = %name, disabled = account.disabled, "account updated");
    Ok(Json(account))
}

/// `DELETE /api/v1/accounts/{name}`: the account and its tokens.
pub async fn delete_account(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if !state.backends.identity.delete_account(&name).await? {
        return Err(ApiError::not_found(format!(
            "account {name} does not exist"
        )));
    }
    state.auth.invalidate();
    tracing::info!(account = %name, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/accounts/{name}/tokens`: a token of another account (a service account's).
pub async fn create_account_token(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    JsonBody(new): JsonBody<NewToken>,
) -> Result<Response, ApiError> {
    if state.backends.identity.account(&name).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "account {name} does not exist"
        )));
    }
    make_token(&state, &name, new).await
}

/// `GET /api/v1/rules`.
pub async fn rules(State(state): State<AppState>) -> Result<Json<Vec<StoredRule>>, ApiError> {
    Ok(Json(state.backends.identity.rules().await?))
}

/// `POST /api/v1/rules`: 201 with the rule and its id; 409 if it exists.
pub async fn add_rule(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(rule): JsonBody<Rule>,
) -> Result<Response, ApiError> {
    let stored = state
        .backends
        .identity
        .add_rule(&rule, &caller.audit_name(), Utc::now())
        .await?;
    state.auth.invalidate();
    tracing::info!(rule = stored.id, subject = %rule.subject, pattern = %rule.pattern, "rule added");
    let mut response = (StatusCode::CREATED, Json(&stored)).into_response();
    response.extensions_mut().insert(AuditResource(format!(
        "rule {}: {} {:?} on {}",
        stored.id, rule.subject, rule.grant, rule.pattern
    )));
    Ok(response)
}

/// `DELETE /api/v1/rules/{id}`.
pub async fn delete_rule(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    if !state.backends.identity.delete_rule(id).await? {
        return Err(ApiError::not_found(format!("rule {id} does not exist")));
    }
    state.auth.invalidate();
    tracing::info!(rule = id, "rule deleted");
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .extensions_mut()
        .insert(AuditResource(format!("rule {id}")));
    Ok(response)
}

/// Query parameters of `GET /api/v1/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only this principal's (`user:alice`).
    pub principal: Option<String>,
    /// Only actions starting with this (`package:`).
    pub action: Option<String>,
    /// Only resources starting with this.
    pub resource: Option<String>,
    /// Only `ok`, `denied` or `failed`.
    pub outcome: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 500.
    pub limit: Option<u32>,
}

/// `GET /api/v1/audit`: the audit log, newest first.
pub async fn audit(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<Page<AuditRecord>>, ApiError> {
    let query = AuditQuery {
        principal: params.principal,
        action: params.action,
        resource: params.resource,
        outcome: params
            .outcome
            .as_deref()
            .map(AuditOutcome::parse)
            .transpose()?,
        since: params.since,
        cursor: params.cursor,
        limit: params.limit,
    };
    Ok(Json(state.backends.identity.audit(&query).await?))
}

/// The body and answer of `/api/v1/packages/{name}/owner`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    /// `user:<name>`, `group:<name>` or `service:<name>`; `null` for a package nobody owns yet.
    pub owner: Option<fx_core::identity::Subject>,
}

/// `GET /api/v1/packages/{name}/owner`: who owns the package (its first uploader, or whom an
/// admin gave it to).
pub async fn package_owner(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Owner>, ApiError> {
    Ok(Json(Owner {
        owner: state.backends.identity.package_owner(&name).await?,
    }))
}

/// `PUT /api/v1/packages/{name}/owner` with `{"owner": "group:payments"}` (`user:admin`): gives
/// the package to a user, a group or a service account; its members may then upload versions.
pub async fn set_package_owner(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    JsonBody(body): JsonBody<Owner>,
) -> Result<Response, ApiError> {
    fx_core::validate::validate_name("package name", &name)?;
    let Some(owner) = body.owner else {
        return Err(ApiError::invalid(
            "owner must name a user, a group or a service account (user:<name>, group:<name>, service:<name>)",
        ));
    };
    state
        .backends
        .identity
        .set_package_owner(&name, &owner)
        .await?;
    tracing::info!(package = %name, %owner, "package given to a new owner");
    let mut response = Json(Owner {
        owner: Some(owner.clone()),
    })
    .into_response();
    response
        .extensions_mut()
        .insert(AuditResource(format!("package {name} to {owner}")));
    Ok(response)
}
