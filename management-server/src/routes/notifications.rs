//! `/api/v1/notifications`: create, read, change and delete notification rules, with
//! revisions for check-and-set (`If-Match: <revision>`); and the notifications sent about an
//! execution, with their attempts (`GET /api/v1/executions/{id}/notifications`). The
//! sender is [`crate::notifier`].

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fx_core::identity::{Action, Resource};
use fx_core::notify::Rule;
use fx_core::registry::Expect;
use fx_core::ErrorKind;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, JsonBody};
use crate::AppState;

/// `GET /api/v1/notifications`: every rule the caller may read, with its revision, and the invalid
/// entries among them.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let table = state.backends.notification_rules.table().await?;
    let rules: Vec<Value> = table
        .entries
        .iter()
        .filter(|h| caller.may(Action::NotificationRead, &h.entry.name))
        .map(|h| view(&h.entry, h.revision))
        .collect();
    let invalid: Vec<_> = table
        .invalid
        .iter()
        .filter(|i| caller.may(Action::NotificationRead, &i.name))
        .collect();
    Ok(Json(json!({
        "revision": table.revision,
        "rules": rules,
        "invalid": invalid,
    })))
}

/// The rules `caller` may read (for the web UI).
pub async fn visible(state: &AppState, caller: &Caller) -> Result<Vec<Rule>, ApiError> {
    let table = state.backends.notification_rules.table().await?;
    Ok(table
        .entries
        .into_iter()
        .filter(|h| caller.may(Action::NotificationRead, &h.entry.name))
        .map(|h| h.entry)
        .collect())
}

/// `POST /api/v1/notifications`: creates a rule; 409 if the name exists.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(rule): JsonBody<Rule>,
) -> Result<Response, ApiError> {
    let revision = create_checked(&state, &caller, &rule).await?;
    Ok(stored(StatusCode::CREATED, &rule, revision))
}

/// Creates `rule` once `caller` may (the API's and the web UI's checks); its revision.
pub async fn create_checked(
    state: &AppState,
    caller: &Caller,
    rule: &Rule,
) -> Result<u64, ApiError> {
    check(state, caller, rule).await?;
    let revision = write(state, rule, Expect::Absent)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::Conflict => {
                ApiError::conflict(format!("rule {:?} already exists", rule.name))
            }
            _ => e,
        })?;
    tracing::info!(rule = %rule.name, revision, "notification rule created");
    Ok(revision)
}

/// `GET /api/v1/notifications/{name}`; the revision is also the `ETag`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let Some(found) = state.backends.notification_rules.get(&name).await? else {
        return Err(no_such_rule(&name));
    };
    Ok(stored(StatusCode::OK, &found.entry, found.revision))
}

/// `PUT /api/v1/notifications/{name}`: creates or replaces a rule; with `If-Match: <revision>` only if
/// it is still at that revision (409 otherwise).
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    JsonBody(rule): JsonBody<Rule>,
) -> Result<Response, ApiError> {
    if rule.name != name {
        return Err(ApiError::invalid(format!(
            "rule name in the path ({name:?}) differs from the one in the body ({:?})",
            rule.name
        )));
    }
    let expect = super::handlers::if_match(&headers, "rule")?;
    check(&state, &caller, &rule).await?;
    let revision = write(&state, &rule, expect).await?;
    tracing::info!(rule = %name, revision, "notification rule written");
    Ok(stored(StatusCode::OK, &rule, revision))
}

/// `DELETE /api/v1/notifications/{name}`, with an optional `If-Match: <revision>`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let expect = super::handlers::if_match(&headers, "rule")?;
    remove_expecting(&state, &caller, &name, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes rule `name` once `caller` may (for the web UI).
pub async fn remove(state: &AppState, caller: &Caller, name: &str) -> Result<(), ApiError> {
    remove_expecting(state, caller, name, Expect::Any).await
}

async fn remove_expecting(
    state: &AppState,
    caller: &Caller,
    name: &str,
    expect: Expect,
) -> Result<(), ApiError> {
    caller.check(Action::NotificationWrite, Resource::Named(name))?;
    state
        .backends
        .notification_rules
        .delete(name, expect)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => no_such_rule(name),
            _ => explain_revision(e, name),
        })?;
    tracing::info!(rule = %name, "notification rule deleted");
    Ok(())
}

async fn write(state: &AppState, rule: &Rule, expect: Expect) -> Result<u64, ApiError> {
    let revision = state
        .backends
        .notification_rules
        .put(rule, expect)
        .await
        .map_err(|e| explain_revision(e, &rule.name))?;
    Ok(revision)
}

/// Validates a rule and checks that `caller` may write it, read the executions it reports
/// (every handler's for `*`: a rule sends their summaries out) and use its secret.
async fn check(state: &AppState, caller: &Caller, rule: &Rule) -> Result<(), ApiError> {
    rule.validate()?;
    caller.check(Action::NotificationWrite, Resource::Named(&rule.name))?;
    for handler in &rule.handlers {
        let resource = if handler == "*" {
            Resource::All
        } else {
            Resource::Named(handler)
        };
        caller
            .check(Action::ExecutionRead, resource)
            .map_err(|e| e.on_field("handlers"))?;
    }
    if let Some(secret) = rule.target.secret() {
        caller
            .check(Action::SecretGrant, Resource::Named(secret))
            .map_err(|e| e.on_field("target"))?;
        if state.vault.meta(secret).await?.is_none() {
            return Err(ApiError::invalid(format!(
                "rule {}: secret {secret:?} does not exist: create it first (`ferrisfx secret set {secret} < file`)",
                rule.name
            ))
            .on_field("target"));
        }
    }
    Ok(())
}

/// `GET /api/v1/executions/{id}/notifications`: what was sent about execution `id`, with
/// every attempt.
pub async fn of_execution(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let id = fx_core::execution::ExecutionId::parse(&id)?;
    let Some(execution) = state.backends.state.get_execution(&id).await? else {
        return Err(ApiError::not_found(format!(
            "execution {id} does not exist"
        )));
    };
    caller.check(Action::ExecutionRead, Resource::Named(&execution.handler))?;
    let notifications = state.backends.notifications.notifications_of(&id).await?;
    Ok(Json(json!({ "notifications": notifications })))
}

/// A rule as the API shows it.
fn view(rule: &Rule, revision: u64) -> Value {
    json!({
        "rule": rule,
        "revision": revision,
    })
}

fn stored(status: StatusCode, rule: &Rule, revision: u64) -> Response {
    let mut response = (status, Json(view(rule, revision))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn explain_revision(err: fx_core::Error, name: &str) -> ApiError {
    match err.kind() {
        ErrorKind::Conflict => ApiError::conflict(format!(
            "rule {name:?} changed since the revision in If-Match: reload it and retry ({})",
            err.chain()
        )),
        _ => err.into(),
    }
}

fn no_such_rule(name: &str) -> ApiError {
    ApiError::not_found(format!("rule {name:?} does not exist"))
}
