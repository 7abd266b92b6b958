//! `/api/v1/handlers`: create, read, update and delete handlers, with revisions for
//! check-and-set (`If-Match: <revision>`), and each handler's history of changes.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fx_core::handler::Handler;
use fx_core::registry::{Expect, HandlerTable, StoredHandler};
use fx_core::store::HandlerChange;
use fx_core::ErrorKind;

use fx_core::identity::{Action, Resource};

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, JsonBody};
use crate::routes::packages::author;
use crate::AppState;

/// `GET /api/v1/handlers`: every handler the caller may read with its revision, and the
/// invalid entries among them.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<HandlerTable>, ApiError> {
    let mut table = state.backends.registry.table().await?;
    table
        .handlers
        .retain(|h| caller.may(Action::HandlerRead, &h.handler.name));
    table
        .invalid
        .retain(|h| caller.may(Action::HandlerRead, &h.name));
    Ok(Json(table))
}

/// `POST /api/v1/handlers`: creates a handler; 409 if the name exists.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(handler): JsonBody<Handler>,
) -> Result<Response, ApiError> {
    let by = author(&caller, &headers)?;
    check(&state, &caller, &handler).await?;
    let revision = state
        .backends
        .registry
        .put(&handler, Expect::Absent)
        .await?;
    tracing::info!(handler = %handler.name, revision, "handler created");
    record(&state, &handler.name, revision, Some(&handler), by).await;
    Ok(stored(StatusCode::CREATED, handler, revision))
}

/// `GET /api/v1/handlers/{name}`; the revision is also the `ETag`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let Some(found) = state.backends.registry.get(&name).await? else {
        return Err(no_such_handler(&name));
    };
    Ok(stored(StatusCode::OK, found.handler, found.revision))
}

/// `PUT /api/v1/handlers/{name}`: creates or replaces a handler; with `If-Match: <revision>`
/// only if it is still at that revision (409 otherwise).
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    JsonBody(handler): JsonBody<Handler>,
) -> Result<Response, ApiError> {
    if handler.name != name {
        return Err(ApiError::invalid(format!(
            "handler name in the path ({name:?}) differs from the one in the body ({:?})",
            handler.name
        )));
    }
    let expect = expectation(&headers)?;
    let by = author(&caller, &headers)?;
    check(&state, &caller, &handler).await?;
    let revision = state
        .backends
        .registry
        .put(&handler, expect)
        .await
        .map_err(|e| explain_revision(e, &name))?;
    tracing::info!(handler = %handler.name, revision, "handler written");
    record(&state, &name, revision, Some(&handler), by).await;
    Ok(stored(StatusCode::OK, handler, revision))
}

/// `DELETE /api/v1/handlers/{name}`, with an optional `If-Match: <revision>`.
///
/// The registry does not answer a delete with a revision, so the history records it at the
/// revision of the handler deleted plus one: after every write of it, before any later one. To
/// know that revision exactly, a delete without `If-Match` reads the handler and deletes it at
/// the revision read, reading again (a few times) if it changed in between.
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let expect = expectation(&headers)?;
    let by = author(&caller, &headers)?;
    let registry = &state.backends.registry;
    let explain = |e: fx_core::Error| match e.kind() {
        ErrorKind::NotFound => no_such_handler(&name),
        _ => explain_revision(e, &name),
    };
    let deleted = match expect {
        Expect::Revision(revision) => {
            registry.delete(&name, expect).await.map_err(explain)?;
            revision
        }
        Expect::Any | Expect::Absent => {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let Some(found) = registry.get(&name).await? else {
                    return Err(no_such_handler(&name));
                };
                match registry
                    .delete(&name, Expect::Revision(found.revision))
                    .await
                {
                    Ok(()) => break found.revision,
                    // Changed since read: read again, or give up being exact and delete it.
                    Err(e) if e.kind() == ErrorKind::Conflict && attempt < DELETE_ATTEMPTS => {}
                    Err(e) if e.kind() == ErrorKind::Conflict => {
                        let last = registry.get(&name).await?.map(|h| h.revision);
                        registry.delete(&name, Expect::Any).await.map_err(explain)?;
                        break last.unwrap_or(found.revision);
                    }
                    Err(e) => return Err(explain(e)),
                }
            }
        }
    };
    tracing::info!(handler = %name, "handler deleted");
    record(&state, &name, deleted.saturating_add(1), None, by).await;
    Ok(StatusCode::NO_CONTENT)
}

/// How many times a delete without `If-Match` reads the handler before deleting it whatever
/// its revision.
const DELETE_ATTEMPTS: u32 = 3;

/// `GET /api/v1/handlers/{name}/history`: the recorded changes of a handler, newest first
/// (an empty list for a name never seen).
pub async fn history(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Vec<HandlerChange>>, ApiError> {
    Ok(Json(state.backends.state.handler_history(&name).await?))
}

/// Records a change in the handler's history. The change itself is done: a failure to record
/// it is logged, never returned.
pub(crate) async fn record(
    state: &AppState,
    name: &str,
    revision: u64,
    handler: Option<&Handler>,
    by: Option<String>,
) {
    let change = HandlerChange {
        name: name.to_string(),
        revision,
        handler: handler.cloned(),
        at: chrono::Utc::now(),
        by,
    };
    if let Err(e) = state.backends.state.record_handler_change(&change).await {
        tracing::warn!(handler = %name, revision, error = %e.chain(), "recording the handler change in its history failed");
    }
}

/// Whether `caller` may write `handler` as it is: `handler:write` on its name, `pool:use` on
/// its pool and `secret:grant` on every secret it grants. Checked on every write, so a
/// handler cannot be moved to a pool or given a secret its writer may not use.
pub fn permit(caller: &Caller, handler: &Handler) -> Result<(), ApiError> {
    caller.check(Action::HandlerWrite, Resource::Named(&handler.name))?;
    caller
        .check(Action::PoolUse, Resource::Named(&handler.pool))
        .map_err(|e| e.on_field("pool"))?;
    for secret in &handler.secrets {
        caller
            .check(Action::SecretGrant, Resource::Named(secret))
            .map_err(|e| e.on_field("secrets"))?;
    }
    Ok(())
}

/// Validates a handler, checks that `caller` may write it ([`permit`]), that its package
/// reference resolves, and that the package declares every secret and capability the handler
/// grants.
pub async fn check(state: &AppState, caller: &Caller, handler: &Handler) -> Result<(), ApiError> {
    handler.validate()?;
    permit(caller, handler)?;
    match state.backends.state.resolve_package(&handler.package).await {
        Ok(version) => {
            if let Some(refusal) = fx_core::grants::Grants::refusal(&version.manifest, handler) {
                return Err(ApiError::invalid(refusal.message).on_field(refusal.field));
            }
            // An output limit raised beyond what the bus can carry is refused here rather
            // than failing every large output later.
            let asked = handler
                .limits
                .max_output_bytes
                .or(version.manifest.limits.max_output_bytes);
            let bus_max = state.backends.bus.max_message_bytes();
            let room = fx_core::bus::max_payload_bytes(bus_max);
            match asked {
                Some(asked) if usize::try_from(asked).map_or(true, |a| a > room) => {
                    Err(ApiError::invalid(format!(
                        "limit max_output_bytes = {asked} cannot be met: the event bus carries messages of at most {bus_max} bytes, so an output may hold at most {room} bytes (raise the bus's message_max_bytes, or lower the limit)"
                    )).on_field("limits"))
                }
                _ => Ok(()),
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Err(ApiError::invalid(format!(
            "package {} does not exist: upload it first",
            handler.package
        ))
        .on_field("package")),
        Err(e) => Err(e.into()),
    }
}

/// The write expectation from `If-Match`: a revision, bare or quoted as an entity tag.
fn expectation(headers: &HeaderMap) -> Result<Expect, ApiError> {
    if_match(headers, "handler")
}

/// The write expectation from `If-Match` for a registry entry of `kind`: a revision, bare or
/// quoted as an entity tag; none means any revision.
pub(crate) fn if_match(headers: &HeaderMap, kind: &str) -> Result<Expect, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(Expect::Any);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<u64>().map(Expect::Revision).map_err(|_| {
        ApiError::invalid(format!(
            "If-Match must be a {kind} revision (a number), got {text:?}"
        ))
    })
}

fn explain_revision(err: fx_core::Error, name: &str) -> ApiError {
    match err.kind() {
        ErrorKind::Conflict => ApiError::conflict(format!(
            "handler {name:?} changed since the revision in If-Match: reload it and retry ({})",
            err.chain()
        )),
        _ => err.into(),
    }
}

fn no_such_handler(name: &str) -> ApiError {
    ApiError::not_found(format!("handler {name:?} does not exist"))
}

fn stored(status: StatusCode, handler: Handler, revision: u64) -> Response {
    let mut response = (status, Json(StoredHandler { handler, revision })).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}
