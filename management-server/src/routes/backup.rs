//! `POST /api/v1/backup` answers an archive of everything the platform holds, and
//! `POST /api/v1/restore` writes one into this deployment ([`fx_core::backup`]). Both are for
//! administrators only (`user:admin` on `*`): a backup holds the accounts' password hashes and
//! the sealed secrets. The archive passes through a temporary file (`TMPDIR`), so that neither
//! side holds it in memory and a restore checks it whole before writing anything.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use fx_core::backup::{BackupOptions, RestoreOptions, RestoreReport};
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

use crate::error::ApiError;
use crate::AppState;

/// The largest archive a restore takes.
pub const MAX_RESTORE_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// The query of `POST /api/v1/backup`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupQuery {
    /// Also the finished executions created since this time (RFC 3339), their log lines, the
    /// workflow runs and the audit log since then.
    #[serde(default)]
    pub executions_since: Option<DateTime<Utc>>,
}

/// The query of `POST /api/v1/restore`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreQuery {
    /// Restore into a deployment that holds configuration (entries of the same name are
    /// replaced).
    #[serde(default)]
    pub force: bool,
}

fn temp_file(what: &str) -> Result<tempfile::NamedTempFile, ApiError> {
    tempfile::Builder::new()
        .prefix("ferrisfx-backup-")
        .suffix(".tar.gz")
        .tempfile()
        .map_err(|e| {
            ApiError::from(fx_core::Error::unavailable(format!(
                "{what}: cannot create a temporary file (TMPDIR): {e}"
            )))
        })
}

/// `POST /api/v1/backup`: the archive, as `application/gzip`.
pub async fn backup(
    State(state): State<AppState>,
    Query(query): Query<BackupQuery>,
) -> Result<Response, ApiError> {
    backup_response(&state, query.executions_since).await
}

/// A backup of `state`'s platform as a download (the API's answer and the web UI's).
pub async fn backup_response(
    state: &AppState,
    executions_since: Option<DateTime<Utc>>,
) -> Result<Response, ApiError> {
    let file = temp_file("writing the backup")?;
    let out = file.reopen().map_err(|e| {
        ApiError::from(fx_core::Error::unavailable(format!(
            "writing the backup: {e}"
        )))
    })?;
    let options = BackupOptions { executions_since };
    let manifest = fx_core::backup::write_backup(&state.backends, &options, Box::new(out)).await?;
    // Opened before the temporary file is removed (when `file` drops): the stream keeps it.
    let reader = tokio::fs::File::open(file.path()).await.map_err(|e| {
        ApiError::from(fx_core::Error::internal(format!(
            "reading the backup back: {e}"
        )))
    })?;
    let length = reader.metadata().await.map(|m| m.len()).ok();
    let name = format!(
        "attachment; filename=\"ferrisfx-backup-{}.tar.gz\"",
        manifest.created_at.format("%Y%m%dT%H%M%SZ")
    );
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(reader)),
    )
        .into_response();
    if let Some(length) = length {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, length.into());
    }
    Ok(response)
}

/// Writes the archive arriving in `chunks` to a temporary file (refused past
/// [`MAX_RESTORE_BYTES`], or when empty).
pub async fn receive<S, B, E>(mut chunks: S) -> Result<tempfile::NamedTempFile, ApiError>
where
    S: futures::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: std::fmt::Display,
{
    let file = temp_file("receiving the backup")?;
    let failed = |e: std::io::Error| {
        ApiError::from(fx_core::Error::unavailable(format!(
            "receiving the backup: {e}"
        )))
    };
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(failed)?);
    let mut received: u64 = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| ApiError::invalid(format!("reading the archive: {e}")))?;
        let chunk = chunk.as_ref();
        received += chunk.len() as u64;
        if received > MAX_RESTORE_BYTES {
            return Err(ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..ApiError::invalid(format!(
                    "the archive is larger than {MAX_RESTORE_BYTES} bytes"
                ))
            });
        }
        out.write_all(chunk).await.map_err(failed)?;
    }
    out.flush().await.map_err(failed)?;
    if received == 0 {
        return Err(ApiError::invalid(
            "no archive: send the file `ferrisfx backup` wrote",
        ));
    }
    Ok(file)
}

/// Restores the archive at `path` into `state`'s platform.
pub async fn restore_file(
    state: &AppState,
    path: &std::path::Path,
    force: bool,
) -> Result<RestoreReport, ApiError> {
    let report = fx_core::backup::restore(&state.backends, path, RestoreOptions { force }).await?;
    // Accounts, tokens and rules may have changed under the cached view.
    state.auth.invalidate();
    Ok(report)
}

/// `POST /api/v1/restore`: writes the archive in the body into this deployment; the report.
pub async fn restore(
    State(state): State<AppState>,
    Query(query): Query<RestoreQuery>,
    body: Body,
) -> Result<Json<RestoreReport>, ApiError> {
    let file = receive(body.into_data_stream()).await?;
    Ok(Json(restore_file(&state, file.path(), query.force).await?))
}
