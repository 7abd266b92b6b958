//! Platform secrets over the API: list their names and metadata, write (create or rotate) and
//! delete them, re-seal them under the keyring's first key, and deliver a pool's values to its
//! executors. A value goes in and never comes back out, except to the service account of a
//! pool's executors (`secret:deliver`, which no built-in role holds).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use fx_core::identity::{Action, PrincipalKind, Resource};
use fx_core::secrets::{SecretMeta, SecretValue, ALL_POOLS};
use serde::{Deserialize, Serialize};

use crate::auth::audit::AuditResource;
use crate::auth::Caller;
use crate::error::{ApiError, ApiPath};
use crate::AppState;

/// The answer of `GET /api/v1/secrets`.
#[derive(Serialize)]
pub struct SecretList {
    /// The secrets the caller may grant or write, by name.
    pub secrets: Vec<SecretMeta>,
    /// The keyring's key ids, the sealing one first (empty when secrets are not configured).
    pub keys: Vec<String>,
}

/// `GET /api/v1/secrets`: the metadata of the secrets the caller may grant or write.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SecretList>, ApiError> {
    Ok(Json(SecretList {
        secrets: visible(&state, &caller).await?,
        keys: state.vault.key_ids(),
    }))
}

/// The metadata of the secrets `caller` may grant or write, by name (the API's list and the
/// web UI's page).
pub async fn visible(state: &AppState, caller: &Caller) -> Result<Vec<SecretMeta>, ApiError> {
    Ok(state
        .vault
        .list()
        .await?
        .into_iter()
        .filter(|s| {
            caller.may(Action::SecretGrant, &s.name) || caller.may(Action::SecretWrite, &s.name)
        })
        .collect())
}

/// The body of `PUT /api/v1/secrets/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSecret {
    value: String,
    #[serde(default)]
    pools: Option<Vec<String>>,
}

/// `PUT /api/v1/secrets/{name}` with `{"value", "pools"}`: creates the secret or gives it a
/// new value and pools (`pools` defaults to `["default"]`). Naming a pool needs `pool:use` on
/// it (`*` on every pool). Answers the metadata, never the value.
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Parsed here rather than by the JSON extractor, whose messages may quote the input.
    let parsed: SetSecret = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "the body must be {{\"value\": \"...\", \"pools\": [\"...\"]}} ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let value = SecretValue::new(parsed.value)?;
    let pools = parsed
        .pools
        .unwrap_or_else(|| vec![fx_core::handler::DEFAULT_POOL.to_string()]);
    let meta = write(&state, &caller, &name, &value, pools).await?;
    let status = if meta.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(&meta)).into_response();
    response.extensions_mut().insert(written(&meta));
    Ok(response)
}

/// Creates or changes secret `name` as `caller` (the API's `PUT` and the web UI's form):
/// needs `secret:write` on the name and `pool:use` on each of `pools` (on every pool for
/// `*`); a refusal of a pool is about the field `pools`.
pub async fn write(
    state: &AppState,
    caller: &Caller,
    name: &str,
    value: &SecretValue,
    pools: Vec<String>,
) -> Result<SecretMeta, ApiError> {
    caller
        .check(Action::SecretWrite, Resource::Named(name))
        .map_err(|e| e.on_field("name"))?;
    for pool in &pools {
        let resource = if pool == ALL_POOLS {
            Resource::All
        } else {
            Resource::Named(pool)
        };
        caller
            .check(Action::PoolUse, resource)
            .map_err(|e| e.on_field("pools"))?;
    }
    Ok(state
        .vault
        .set(name, value, pools, &caller.audit_name())
        .await?)
}

/// How the audit log names a secret just written: name, version and pools, never the value.
pub fn written(meta: &SecretMeta) -> AuditResource {
    AuditResource(format!(
        "secret {} v{} pools {}",
        meta.name,
        meta.version,
        meta.pools.join(",")
    ))
}

/// `DELETE /api/v1/secrets/{name}`: 204, or 404 when there is none.
pub async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    remove(&state, &name).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .extensions_mut()
        .insert(AuditResource(format!("secret {name}")));
    Ok(response)
}

/// Deletes secret `name` (the API's `DELETE` and the web UI's button; the guard checked
/// `secret:write` on it): 404 when there is none.
pub async fn remove(state: &AppState, name: &str) -> Result<(), ApiError> {
    if !state.vault.delete(name).await? {
        return Err(ApiError::not_found(format!("secret {name} does not exist")));
    }
    Ok(())
}

/// The answer of `POST /api/v1/secrets/rekey`.
#[derive(Serialize)]
pub struct Rekeyed {
    /// Secrets re-sealed.
    pub resealed: u64,
    /// The key they are sealed with now.
    pub key_id: String,
}

/// `POST /api/v1/secrets/rekey`: re-seals every secret with the keyring's first key.
pub async fn rekey(State(state): State<AppState>) -> Result<Response, ApiError> {
    let resealed = state.vault.rekey().await?;
    let key_id = state.vault.key_ids().into_iter().next().unwrap_or_default();
    let mut response = Json(Rekeyed {
        resealed,
        key_id: key_id.clone(),
    })
    .into_response();
    response
        .extensions_mut()
        .insert(AuditResource(format!("secrets (key {key_id})")));
    Ok(response)
}

/// The answer of `GET /api/v1/pools/{pool}/secrets`.
#[derive(Serialize)]
struct Delivered<'a> {
    pool: &'a str,
    secrets: BTreeMap<&'a str, &'a str>,
}

/// `GET /api/v1/pools/{pool}/secrets`: the values of the secrets delivered to `pool`, for the
/// service account of its executors (`secret:deliver` on the pool, checked by the guard). A
/// user is refused even with a rule, and so is everyone when authentication is off.
pub async fn deliver(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(pool): ApiPath<String>,
) -> Result<Response, ApiError> {
    match caller.principal() {
        Some(p) if p.kind == PrincipalKind::ServiceAccount => {}
        Some(_) => {
            return Err(ApiError::new(
                fx_core::ErrorKind::Forbidden,
                "secret values are delivered only to service accounts (an executor pool's); users write secrets but never read them back",
            ))
        }
        None => {
            return Err(ApiError::new(
                fx_core::ErrorKind::Forbidden,
                "secret values are delivered only to an authenticated service account: turn authentication on (server.auth.enabled)",
            ))
        }
    }
    fx_core::validate::validate_name("pool", &pool)?;
    let values = state.vault.values_for(&pool).await?;
    tracing::debug!(pool = %pool, secrets = values.len(), by = %caller.audit_name(), "secrets delivered");
    let delivered = Delivered {
        pool: &pool,
        secrets: values
            .iter()
            .map(|(name, value)| (name.as_str(), value.expose()))
            .collect(),
    };
    let body = serde_json::to_vec(&delivered)
        .map_err(|e| fx_core::Error::internal("encoding secrets").with_source(e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}
