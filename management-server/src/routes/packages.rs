//! `/api/v1/packages`: upload archives, list versions, move aliases.

use std::collections::BTreeMap;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::Utc;
use fx_core::package::{
    validate_alias, PackageAlias, PackageArchive, PackageDigest, PackageVersion,
};
use serde::{Deserialize, Serialize};

use fx_core::identity::Action;

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, JsonBody};
use crate::AppState;

/// The header naming who uploads a package.
pub const USER_HEADER: &str = "x-fx-user";
/// The multipart field holding the archive in a browser upload.
pub const FILE_FIELD: &str = "file";

/// A package with its versions (newest first) and aliases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageSummary {
    /// Package name.
    pub name: String,
    /// Every version, newest first.
    pub versions: Vec<PackageVersion>,
    /// Alias name to the version it points at.
    pub aliases: BTreeMap<String, String>,
}

/// The answer of `GET /api/v1/packages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageList {
    /// Every package, by name.
    pub packages: Vec<PackageSummary>,
}

/// The body of `PUT /api/v1/packages/{name}/aliases/{alias}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    /// The version the alias points at.
    pub version: String,
}

/// `POST /api/v1/packages`: the raw archive, or a multipart form with a `file` field.
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let user = author(&caller, &headers)?;
    let bytes = read_upload(&state, request).await?;
    let version = store_package(&state, &caller, bytes, user).await?;
    let mut response = (StatusCode::CREATED, Json(&version)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/packages/{}", version.name)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /api/v1/packages`: every package the caller may read, with its versions and aliases.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<PackageList>, ApiError> {
    Ok(Json(PackageList {
        packages: package_summaries(&state, &caller).await?,
    }))
}

/// `GET /api/v1/packages/{name}`.
pub async fn get(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PackageSummary>, ApiError> {
    let versions = state
        .backends
        .state
        .list_package_versions(Some(&name))
        .await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "package {name:?} does not exist"
        )));
    }
    let aliases = aliases_of(&state, &name).await?;
    Ok(Json(PackageSummary {
        name,
        versions,
        aliases,
    }))
}

/// `PUT /api/v1/packages/{name}/aliases/{alias}` with `{"version": "1.0.0"}`.
pub async fn set_alias(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((name, alias)): ApiPath<(String, String)>,
    JsonBody(target): JsonBody<AliasTarget>,
) -> Result<Json<PackageAlias>, ApiError> {
    Ok(Json(
        move_alias(&state, &caller, &name, &alias, &target.version).await?,
    ))
}

/// Points `alias` of package `name` at `version` (which must exist): the next invocation of
/// a handler referring to the alias runs that version. Used by the API and the packages page.
/// Moving an alias of someone else's package needs what uploading to it needs.
pub async fn move_alias(
    state: &AppState,
    caller: &Caller,
    name: &str,
    alias: &str,
    version: &str,
) -> Result<PackageAlias, ApiError> {
    validate_alias(alias)?;
    caller
        .check_upload(state.backends.identity.as_ref(), name)
        .await?;
    let store = &state.backends.state;
    if store.get_package_version(name, version).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "package {name}@{version} does not exist: upload it first"
        )));
    }
    store.set_alias(name, alias, version).await?;
    tracing::info!(package = %name, %alias, %version, "alias moved");
    Ok(PackageAlias {
        package: name.to_string(),
        alias: alias.to_string(),
        version: version.to_string(),
    })
}

/// Every package `caller` may read, by name, with its versions and aliases.
pub async fn package_summaries(
    state: &AppState,
    caller: &Caller,
) -> Result<Vec<PackageSummary>, ApiError> {
    let mut versions = state.backends.state.list_package_versions(None).await?;
    versions.retain(|v| caller.may(Action::PackageRead, &v.name));
    let mut by_name: BTreeMap<String, Vec<PackageVersion>> = BTreeMap::new();
    for version in versions {
        by_name
            .entry(version.name.clone())
            .or_default()
            .push(version);
    }
    let mut packages = Vec::with_capacity(by_name.len());
    for (name, versions) in by_name {
        let aliases = aliases_of(state, &name).await?;
        packages.push(PackageSummary {
            name,
            versions,
            aliases,
        });
    }
    Ok(packages)
}

async fn aliases_of(state: &AppState, name: &str) -> Result<BTreeMap<String, String>, ApiError> {
    Ok(state
        .backends
        .state
        .list_aliases(name)
        .await?
        .into_iter()
        .map(|a| (a.alias, a.version))
        .collect())
}

/// Who to record as the author of a change: the authenticated principal (`user:alice`); when
/// authentication is off, whoever the `x-fx-user` header names, if anyone.
pub fn author(caller: &Caller, headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(principal) = caller.author() {
        return Ok(Some(principal));
    }
    uploaded_by(headers)
}

/// The uploader named by the `x-fx-user` header, if any.
fn uploaded_by(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(USER_HEADER) else {
        return Ok(None);
    };
    let user = value
        .to_str()
        .map_err(|_| ApiError::invalid(format!("header {USER_HEADER} is not visible ascii")))?
        .trim();
    if user.len() > 128 {
        return Err(ApiError::invalid(format!(
            "header {USER_HEADER} is longer than 128 characters"
        )));
    }
    Ok((!user.is_empty()).then(|| user.to_string()))
}

/// The archive of an upload: the body itself, or the `file` field of a multipart form.
pub async fn read_upload(state: &AppState, request: Request) -> Result<Bytes, ApiError> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    if !is_multipart {
        return Ok(Bytes::from_request(request, state).await?);
    }
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::invalid(format!("reading the multipart form: {}", e.body_text())))?;
    loop {
        let field = form.next_field().await.map_err(multipart_error)?;
        let Some(field) = field else {
            return Err(ApiError::invalid(format!(
                "the multipart form has no {FILE_FIELD:?} field holding the package"
            )));
        };
        if field.name() == Some(FILE_FIELD) {
            return field.bytes().await.map_err(multipart_error);
        }
    }
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> ApiError {
    let status = err.status();
    let mut error = ApiError::invalid(format!("reading the multipart form: {}", err.body_text()));
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        error.status = status;
        error.message = "request body is over the size limit".into();
    }
    error
}

/// Validates an archive and stores it: bytes first, then the metadata. A version that exists
/// is refused with 409 and nothing is stored; if recording the metadata fails, the bytes are
/// removed again, so nothing is left half-stored.
pub async fn store_package(
    state: &AppState,
    caller: &Caller,
    bytes: Bytes,
    uploaded_by: Option<String>,
) -> Result<PackageVersion, ApiError> {
    let max_bytes = state.settings.max_package_bytes;
    let parsed = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || PackageArchive::parse(&bytes, max_bytes))
            .await
            .map_err(|e| {
                ApiError::from(fx_core::Error::internal("validating package").with_source(e))
            })??
    };
    let manifest = parsed.manifest;
    caller
        .check_upload(state.backends.identity.as_ref(), &manifest.name)
        .await?;
    let store = &state.backends.state;
    if let Some(check) = &state.check {
        let started = std::time::Instant::now();
        check
            .check(&parsed.digest, bytes.clone())
            .await
            .map_err(|e| {
                if e.kind() == fx_core::ErrorKind::Invalid {
                    ApiError::invalid(format!(
                        "package {}@{} cannot run on the executors: {}",
                        manifest.name,
                        manifest.version,
                        e.chain()
                    ))
                } else {
                    e.into()
                }
            })?;
        tracing::info!(package = %manifest.name, version = %manifest.version, took_ms = started.elapsed().as_millis() as u64, "package compiled and linked with the executors' engine");
    }
    if store
        .get_package_version(&manifest.name, &manifest.version)
        .await?
        .is_some()
    {
        return Err(version_exists(&manifest.name, &manifest.version));
    }
    let version = PackageVersion {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        digest: parsed.digest.clone(),
        size: parsed.size,
        manifest,
        uploaded_at: Utc::now(),
        uploaded_by,
    };
    state.backends.packages.put(&version.digest, bytes).await?;
    if let Err(err) = store.add_package_version(&version).await {
        forget_bytes(state, &version).await;
        if err.kind() == fx_core::ErrorKind::Conflict {
            return Err(version_exists(&version.name, &version.version));
        }
        return Err(err.into());
    }
    caller
        .claim(state.backends.identity.as_ref(), &version.name)
        .await?;
    tracing::info!(
        package = %version.name,
        version = %version.version,
        digest = %version.digest,
        size = version.size,
        "package uploaded"
    );
    Ok(version)
}

fn version_exists(name: &str, version: &str) -> ApiError {
    ApiError::conflict(format!(
        "package {name}@{version} exists: versions are immutable, upload a new version"
    ))
}

/// Removes the bytes of a version whose metadata could not be recorded, unless a stored
/// version uses them. The digest covers the manifest, so only the same name and version can
/// share it: a concurrent upload of the same archive that won the race.
async fn forget_bytes(state: &AppState, version: &PackageVersion) {
    let digest: &PackageDigest = &version.digest;
    match state
        .backends
        .state
        .get_package_version(&version.name, &version.version)
        .await
    {
        Ok(Some(stored)) if &stored.digest == digest => {
            tracing::debug!(%digest, "keeping package bytes: a stored version uses them");
        }
        Ok(_) => {
            if let Err(e) = state.backends.packages.delete(digest).await {
                tracing::warn!(%digest, error = %e.chain(), "removing the bytes of a failed upload");
            }
        }
        Err(e) => {
            tracing::warn!(
                %digest,
                error = %e.chain(),
                "keeping the bytes of a failed upload: cannot tell whether a version uses them"
            );
        }
    }
}

/// `GET /api/v1/packages/{name}/versions/{version}/archive`: the `.fxpkg` bytes of one version
/// (an exact version, or an alias resolved now), exactly as uploaded; the `x-fx-digest` header
/// (and the `ETag`) holds their SHA-256, which the reader should check. 404 when the version
/// does not exist, or when its bytes are no longer in the package store. What `ferrisfx
/// replay` runs.
pub async fn archive(
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let reference = fx_core::handler::PackageRef {
        name: name.clone(),
        version: version.clone(),
    };
    let found = match state.backends.state.resolve_package(&reference).await {
        Ok(found) => found,
        Err(e) if e.kind() == fx_core::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!(
                "package {name}@{version} does not exist"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let bytes = match state.backends.packages.get(&found.digest).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == fx_core::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!(
                "the archive of package {}@{} (sha256 {}) is no longer in the package store",
                found.name, found.version, found.digest
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response();
    let headers = response.headers_mut();
    let file = format!(
        "attachment; filename=\"{}-{}.fxpkg\"",
        found.name, found.version
    );
    for (name, value) in [
        (header::CONTENT_DISPOSITION, file),
        (header::ETAG, format!("\"{}\"", found.digest)),
        (
            header::HeaderName::from_static(DIGEST_HEADER),
            found.digest.to_string(),
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    Ok(response)
}

/// The header of an archive download holding the SHA-256 of its bytes (64 hex digits).
pub const DIGEST_HEADER: &str = "x-fx-digest";
