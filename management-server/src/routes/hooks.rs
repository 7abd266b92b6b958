//! `/api/v1/hooks`: create, read, change and delete webhooks, with revisions for
//! check-and-set (`If-Match: <revision>`). A hook is shown with the URL senders post to.
//! Deliveries arrive at `POST /hooks/{name}` ([`crate::hooks`]).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fx_core::hook::Hook;
use fx_core::identity::{Action, Resource};
use fx_core::registry::Expect;
use fx_core::ErrorKind;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, JsonBody};
use crate::AppState;

/// `GET /api/v1/hooks`: every hook the caller may read, with its revision and URL path, and
/// the invalid entries among them.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let table = state.backends.hooks.table().await?;
    let hooks: Vec<Value> = table
        .entries
        .iter()
        .filter(|h| caller.may(Action::HookRead, &h.entry.name))
        .map(|h| view(&h.entry, h.revision))
        .collect();
    let invalid: Vec<_> = table
        .invalid
        .iter()
        .filter(|i| caller.may(Action::HookRead, &i.name))
        .collect();
    Ok(Json(json!({
        "revision": table.revision,
        "hooks": hooks,
        "invalid": invalid,
    })))
}

/// The hooks `caller` may read (for the web UI).
pub async fn visible(state: &AppState, caller: &Caller) -> Result<Vec<Hook>, ApiError> {
    let table = state.backends.hooks.table().await?;
    Ok(table
        .entries
        .into_iter()
        .filter(|h| caller.may(Action::HookRead, &h.entry.name))
        .map(|h| h.entry)
        .collect())
}

/// `POST /api/v1/hooks`: creates a hook; 409 if the name exists.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(hook): JsonBody<Hook>,
) -> Result<Response, ApiError> {
    let revision = create_checked(&state, &caller, &hook).await?;
    Ok(stored(StatusCode::CREATED, &hook, revision))
}

/// Creates `hook` once `caller` may (the API's and the web UI's checks); its revision.
pub async fn create_checked(
    state: &AppState,
    caller: &Caller,
    hook: &Hook,
) -> Result<u64, ApiError> {
    check(state, caller, hook).await?;
    let revision = write(state, hook, Expect::Absent)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::Conflict => {
                ApiError::conflict(format!("hook {:?} already exists", hook.name))
            }
            _ => e,
        })?;
    tracing::info!(hook = %hook.name, revision, verify = hook.verify.kind(), transform = hook.transform.kind(), "webhook created");
    Ok(revision)
}

/// `GET /api/v1/hooks/{name}`; the revision is also the `ETag`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let Some(found) = state.backends.hooks.get(&name).await? else {
        return Err(no_such_hook(&name));
    };
    Ok(stored(StatusCode::OK, &found.entry, found.revision))
}

/// `PUT /api/v1/hooks/{name}`: creates or replaces a hook; with `If-Match: <revision>` only if
/// it is still at that revision (409 otherwise).
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    JsonBody(hook): JsonBody<Hook>,
) -> Result<Response, ApiError> {
    if hook.name != name {
        return Err(ApiError::invalid(format!(
            "hook name in the path ({name:?}) differs from the one in the body ({:?})",
            hook.name
        )));
    }
    let expect = super::handlers::if_match(&headers, "hook")?;
    check(&state, &caller, &hook).await?;
    let revision = write(&state, &hook, expect).await?;
    tracing::info!(hook = %name, revision, "webhook written");
    Ok(stored(StatusCode::OK, &hook, revision))
}

/// `DELETE /api/v1/hooks/{name}`, with an optional `If-Match: <revision>`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let expect = super::handlers::if_match(&headers, "hook")?;
    remove_expecting(&state, &caller, &name, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes hook `name` once `caller` may (for the web UI).
pub async fn remove(state: &AppState, caller: &Caller, name: &str) -> Result<(), ApiError> {
    remove_expecting(state, caller, name, Expect::Any).await
}

async fn remove_expecting(
    state: &AppState,
    caller: &Caller,
    name: &str,
    expect: Expect,
) -> Result<(), ApiError> {
    caller.check(Action::HookWrite, Resource::Named(name))?;
    state
        .backends
        .hooks
        .delete(name, expect)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => no_such_hook(name),
            _ => explain_revision(e, name),
        })?;
    state.hooks.forget().await;
    tracing::info!(hook = %name, "webhook deleted");
    Ok(())
}

async fn write(state: &AppState, hook: &Hook, expect: Expect) -> Result<u64, ApiError> {
    let revision = state
        .backends
        .hooks
        .put(hook, expect)
        .await
        .map_err(|e| explain_revision(e, &hook.name))?;
    state.hooks.forget().await;
    Ok(revision)
}

/// Validates a hook and checks that `caller` may write it and use its signing secret (as
/// granting a secret to a handler), and that the secret exists.
async fn check(state: &AppState, caller: &Caller, hook: &Hook) -> Result<(), ApiError> {
    hook.validate()?;
    caller.check(Action::HookWrite, Resource::Named(&hook.name))?;
    if let Some(secret) = hook.verify.secret() {
        caller
            .check(Action::SecretGrant, Resource::Named(secret))
            .map_err(|e| e.on_field("verify"))?;
        if state.vault.meta(secret).await?.is_none() {
            return Err(ApiError::invalid(format!(
                "hook {}: secret {secret:?} does not exist: create it first with the value the sender signs with (`ferrisfx secret set {secret} < file`)",
                hook.name
            ))
            .on_field("verify"));
        }
    }
    Ok(())
}

/// A hook as the API shows it.
fn view(hook: &Hook, revision: u64) -> Value {
    json!({
        "hook": hook,
        "revision": revision,
        "path": format!("/hooks/{}", hook.name),
    })
}

fn stored(status: StatusCode, hook: &Hook, revision: u64) -> Response {
    let mut response = (status, Json(view(hook, revision))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn explain_revision(err: fx_core::Error, name: &str) -> ApiError {
    match err.kind() {
        ErrorKind::Conflict => ApiError::conflict(format!(
            "hook {name:?} changed since the revision in If-Match: reload it and retry ({})",
            err.chain()
        )),
        _ => err.into(),
    }
}

fn no_such_hook(name: &str) -> ApiError {
    ApiError::not_found(format!("hook {name:?} does not exist"))
}
