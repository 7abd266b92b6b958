//! `/api/v1/bundles`: create, read, change and delete chat command bundles, with revisions
//! for check-and-set (`If-Match: <revision>`). A bundle is shown with the path its Slack app
//! posts to; requests arrive at `POST /chat/slack/{bundle}` ([`crate::chat`]).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fx_core::chat::Bundle;
use fx_core::identity::{Action, Resource};
use fx_core::registry::Expect;
use fx_core::ErrorKind;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, JsonBody};
use crate::AppState;

/// `GET /api/v1/bundles`: every bundle the caller may read, with its revision and the path its Slack app posts to, and
/// the invalid entries among them.
pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let table = state.backends.bundles.table().await?;
    let bundles: Vec<Value> = table
        .entries
        .iter()
        .filter(|h| caller.may(Action::BundleRead, &h.entry.name))
        .map(|h| view(&h.entry, h.revision))
        .collect();
    let invalid: Vec<_> = table
        .invalid
        .iter()
        .filter(|i| caller.may(Action::BundleRead, &i.name))
        .collect();
    Ok(Json(json!({
        "revision": table.revision,
        "bundles": bundles,
        "invalid": invalid,
    })))
}

/// The bundles `caller` may read (for the web UI).
pub async fn visible(state: &AppState, caller: &Caller) -> Result<Vec<Bundle>, ApiError> {
    let table = state.backends.bundles.table().await?;
    Ok(table
        .entries
        .into_iter()
        .filter(|h| caller.may(Action::BundleRead, &h.entry.name))
        .map(|h| h.entry)
        .collect())
}

/// `POST /api/v1/bundles`: creates a bundle; 409 if the name exists.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(bundle): JsonBody<Bundle>,
) -> Result<Response, ApiError> {
    let revision = create_checked(&state, &caller, &bundle).await?;
    Ok(stored(StatusCode::CREATED, &bundle, revision))
}

/// Creates `bundle` once `caller` may (the API's and the web UI's checks); its revision.
pub async fn create_checked(
    state: &AppState,
    caller: &Caller,
    bundle: &Bundle,
) -> Result<u64, ApiError> {
    check(state, caller, bundle).await?;
    let revision = write(state, bundle, Expect::Absent)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::Conflict => {
                ApiError::conflict(format!("bundle {:?} already exists", bundle.name))
            }
            _ => e,
        })?;
    tracing::info!(bundle = %bundle.name, revision, commands = bundle.commands.len(), "command bundle created");
    Ok(revision)
}

/// `GET /api/v1/bundles/{name}`; the revision is also the `ETag`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let Some(found) = state.backends.bundles.get(&name).await? else {
        return Err(no_such_bundle(&name));
    };
    Ok(stored(StatusCode::OK, &found.entry, found.revision))
}

/// `PUT /api/v1/bundles/{name}`: creates or replaces a bundle; with `If-Match: <revision>` only if
/// it is still at that revision (409 otherwise).
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    JsonBody(bundle): JsonBody<Bundle>,
) -> Result<Response, ApiError> {
    if bundle.name != name {
        return Err(ApiError::invalid(format!(
            "bundle name in the path ({name:?}) differs from the one in the body ({:?})",
            bundle.name
        )));
    }
    let expect = super::handlers::if_match(&headers, "bundle")?;
    check(&state, &caller, &bundle).await?;
    let revision = write(&state, &bundle, expect).await?;
    tracing::info!(bundle = %name, revision, "command bundle written");
    Ok(stored(StatusCode::OK, &bundle, revision))
}

/// `DELETE /api/v1/bundles/{name}`, with an optional `If-Match: <revision>`.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let expect = super::handlers::if_match(&headers, "bundle")?;
    remove_expecting(&state, &caller, &name, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes bundle `name` once `caller` may (for the web UI).
pub async fn remove(state: &AppState, caller: &Caller, name: &str) -> Result<(), ApiError> {
    remove_expecting(state, caller, name, Expect::Any).await
}

async fn remove_expecting(
    state: &AppState,
    caller: &Caller,
    name: &str,
    expect: Expect,
) -> Result<(), ApiError> {
    caller.check(Action::BundleWrite, Resource::Named(name))?;
    state
        .backends
        .bundles
        .delete(name, expect)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => no_such_bundle(name),
            _ => explain_revision(e, name),
        })?;
    state.chat.forget().await;
    tracing::info!(bundle = %name, "command bundle deleted");
    Ok(())
}

async fn write(state: &AppState, bundle: &Bundle, expect: Expect) -> Result<u64, ApiError> {
    let revision = state
        .backends
        .bundles
        .put(bundle, expect)
        .await
        .map_err(|e| explain_revision(e, &bundle.name))?;
    state.chat.forget().await;
    Ok(revision)
}

/// Validates a bundle and checks that `caller` may write it and use its secrets (as granting
/// a secret to a handler), and that they exist.
async fn check(state: &AppState, caller: &Caller, bundle: &Bundle) -> Result<(), ApiError> {
    bundle.validate()?;
    caller.check(Action::BundleWrite, Resource::Named(&bundle.name))?;
    let secrets =
        std::iter::once(&bundle.slack.signing_secret).chain(bundle.slack.bot_token.as_ref());
    for secret in secrets {
        caller
            .check(Action::SecretGrant, Resource::Named(secret))
            .map_err(|e| e.on_field("slack"))?;
        if state.vault.meta(secret).await?.is_none() {
            return Err(ApiError::invalid(format!(
                "bundle {}: secret {secret:?} does not exist: create it first (`ferrisfx secret set {secret} < file`)",
                bundle.name
            ))
            .on_field("slack"));
        }
    }
    Ok(())
}

/// A bundle as the API shows it.
fn view(bundle: &Bundle, revision: u64) -> Value {
    json!({
        "bundle": bundle,
        "revision": revision,
        "path": format!("/chat/slack/{}", bundle.name),
    })
}

fn stored(status: StatusCode, bundle: &Bundle, revision: u64) -> Response {
    let mut response = (status, Json(view(bundle, revision))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn explain_revision(err: fx_core::Error, name: &str) -> ApiError {
    match err.kind() {
        ErrorKind::Conflict => ApiError::conflict(format!(
            "bundle {name:?} changed since the revision in If-Match: reload it and retry ({})",
            err.chain()
        )),
        _ => err.into(),
    }
}

fn no_such_bundle(name: &str) -> ApiError {
    ApiError::not_found(format!("bundle {name:?} does not exist"))
}
