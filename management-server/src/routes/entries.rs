//! The REST API of a registry collection, written once: list, create, read, replace (with
//! `If-Match: <revision>` for check-and-set) and delete, for every kind of entry that needs
//! nothing more ([`ApiEntry`]: webhooks, command bundles, notification rules). Each kind says
//! where its registry is, which actions guard it, what it checks before a write beyond its own
//! validation (the secrets it names, the handlers it reads) and what a write invalidates.
//!
//! Routes name the kind: `get(entries::list::<Hook>).post(entries::create::<Hook>)`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fx_core::backends::Backends;
use fx_core::identity::{Action, Resource};
use fx_core::registry::{Entry, Expect, Registry};
use fx_core::ErrorKind;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, JsonBody};
use crate::AppState;

/// A registry entry served by the generic API.
#[async_trait::async_trait]
pub trait ApiEntry: Entry {
    /// Reading entries of this kind.
    const READ: Action;
    /// Writing them.
    const WRITE: Action;

    /// The registry of this kind.
    fn registry(backends: &Backends) -> &Arc<dyn Registry<Self>>;

    /// A field shown beside the entry and its revision (`path` for a webhook), if any.
    fn extra(&self) -> Option<(&'static str, Value)> {
        None
    }

    /// What a write needs beyond the entry's validation and `WRITE` on its name.
    async fn check(&self, state: &AppState, caller: &Caller) -> Result<(), ApiError>;

    /// Called after a write or delete (to drop what a cache holds).
    async fn written(_state: &AppState) {}
}

/// `GET` the collection: every entry the caller may read, with its revision, and the invalid
/// entries among them, under the collection's name (`{"revision", "hooks": [...], "invalid"}`).
pub async fn list<T: ApiEntry>(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let table = T::registry(&state.backends).table().await?;
    let entries: Vec<Value> = table
        .entries
        .iter()
        .filter(|e| caller.may(T::READ, e.entry.name()))
        .map(|e| view(&e.entry, e.revision))
        .collect();
    let invalid: Vec<_> = table
        .invalid
        .iter()
        .filter(|i| caller.may(T::READ, &i.name))
        .collect();
    Ok(Json(json!({
        "revision": table.revision,
        T::COLLECTION: entries,
        "invalid": invalid,
    })))
}

/// The entries `caller` may read (for the web UI).
pub async fn visible<T: ApiEntry>(state: &AppState, caller: &Caller) -> Result<Vec<T>, ApiError> {
    let table = T::registry(&state.backends).table().await?;
    Ok(table
        .entries
        .into_iter()
        .filter(|e| caller.may(T::READ, e.entry.name()))
        .map(|e| e.entry)
        .collect())
}

/// `POST` the collection: creates an entry; 409 if the name exists.
pub async fn create<T: ApiEntry>(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(entry): JsonBody<T>,
) -> Result<Response, ApiError> {
    let revision = create_checked(&state, &caller, &entry).await?;
    Ok(stored(StatusCode::CREATED, &entry, revision))
}

/// Creates `entry` once `caller` may (the API's and the web UI's checks); its revision.
pub async fn create_checked<T: ApiEntry>(
    state: &AppState,
    caller: &Caller,
    entry: &T,
) -> Result<u64, ApiError> {
    check(state, caller, entry).await?;
    let revision = write(state, entry, Expect::Absent)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::Conflict => {
                ApiError::conflict(format!("{} {:?} already exists", T::KIND, entry.name()))
            }
            _ => e,
        })?;
    tracing::info!(kind = T::KIND, name = %entry.name(), revision, "registry entry created");
    Ok(revision)
}

/// `GET` one entry; the revision is also the `ETag`.
pub async fn get<T: ApiEntry>(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let Some(found) = T::registry(&state.backends).get(&name).await? else {
        return Err(no_such::<T>(&name));
    };
    Ok(stored(StatusCode::OK, &found.entry, found.revision))
}

/// `PUT` one entry: creates or replaces it; with `If-Match: <revision>` only if it is still at
/// that revision (409 otherwise).
pub async fn put<T: ApiEntry>(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    JsonBody(entry): JsonBody<T>,
) -> Result<Response, ApiError> {
    if entry.name() != name {
        return Err(ApiError::invalid(format!(
            "{} name in the path ({name:?}) differs from the one in the body ({:?})",
            T::KIND,
            entry.name()
        )));
    }
    let expect = super::handlers::if_match(&headers, T::KIND)?;
    check(&state, &caller, &entry).await?;
    let revision = write(&state, &entry, expect).await?;
    tracing::info!(kind = T::KIND, %name, revision, "registry entry written");
    Ok(stored(StatusCode::OK, &entry, revision))
}

/// `DELETE` one entry, with an optional `If-Match: <revision>`.
pub async fn delete<T: ApiEntry>(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let expect = super::handlers::if_match(&headers, T::KIND)?;
    remove_expecting::<T>(&state, &caller, &name, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes entry `name` once `caller` may (for the web UI).
pub async fn remove<T: ApiEntry>(
    state: &AppState,
    caller: &Caller,
    name: &str,
) -> Result<(), ApiError> {
    remove_expecting::<T>(state, caller, name, Expect::Any).await
}

async fn remove_expecting<T: ApiEntry>(
    state: &AppState,
    caller: &Caller,
    name: &str,
    expect: Expect,
) -> Result<(), ApiError> {
    caller.check(T::WRITE, Resource::Named(name))?;
    T::registry(&state.backends)
        .delete(name, expect)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => no_such::<T>(name),
            _ => explain_revision::<T>(e, name),
        })?;
    T::written(state).await;
    tracing::info!(kind = T::KIND, %name, "registry entry deleted");
    Ok(())
}

async fn write<T: ApiEntry>(state: &AppState, entry: &T, expect: Expect) -> Result<u64, ApiError> {
    let revision = T::registry(&state.backends)
        .put(entry, expect)
        .await
        .map_err(|e| explain_revision::<T>(e, entry.name()))?;
    T::written(state).await;
    Ok(revision)
}

async fn check<T: ApiEntry>(state: &AppState, caller: &Caller, entry: &T) -> Result<(), ApiError> {
    entry.validate()?;
    caller.check(T::WRITE, Resource::Named(entry.name()))?;
    entry.check(state, caller).await
}

/// Checks that `caller` may use platform secret `secret` (as granting it to a handler) and
/// that it exists; errors are about request field `field`.
pub async fn check_secret(
    state: &AppState,
    caller: &Caller,
    owner: &str,
    secret: &str,
    field: &'static str,
) -> Result<(), ApiError> {
    caller
        .check(Action::SecretGrant, Resource::Named(secret))
        .map_err(|e| e.on_field(field))?;
    if state.vault.meta(secret).await?.is_none() {
        return Err(ApiError::invalid(format!(
            "{owner}: secret {secret:?} does not exist: create it first (`ferrisfx secret set {secret} < file`)"
        ))
        .on_field(field));
    }
    Ok(())
}

/// An entry as the API shows it: `{"<kind>": entry, "revision": N}` and its extra field.
fn view<T: ApiEntry>(entry: &T, revision: u64) -> Value {
    let mut view = json!({ T::KIND: entry, "revision": revision });
    if let Some((key, value)) = entry.extra() {
        view[key] = value;
    }
    view
}

fn stored<T: ApiEntry>(status: StatusCode, entry: &T, revision: u64) -> Response {
    let mut response = (status, Json(view(entry, revision))).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn explain_revision<T: ApiEntry>(err: fx_core::Error, name: &str) -> ApiError {
    match err.kind() {
        ErrorKind::Conflict => ApiError::conflict(format!(
            "{} {name:?} changed since the revision in If-Match: reload it and retry ({})",
            T::KIND,
            err.chain()
        )),
        _ => err.into(),
    }
}

fn no_such<T: ApiEntry>(name: &str) -> ApiError {
    ApiError::not_found(format!("{} {name:?} does not exist", T::KIND))
}
