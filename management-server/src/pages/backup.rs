//! `/backup`: download a backup of everything the platform holds, or restore one into this
//! deployment (for administrators: `user:admin` on `*`). The work is the API's
//! ([`crate::routes::backup`]); this page is its form and its report.

use askama::Template;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use chrono::{Duration, Utc};
use fx_core::backup::RestoreReport;
use serde::Deserialize;

use super::{show_time, HtmlTemplate, PageError};
use crate::error::ApiError;
use crate::routes::backup::{backup_response, receive, restore_file};
use crate::AppState;

/// The backup page.
#[derive(Template)]
#[template(path = "backup.html")]
struct BackupPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// What the last restore did, section by section: (section, restored, kept, and how many
    /// the deployment now holds, `—` for the sections not counted).
    report: Option<Vec<(String, u64, u64, String)>>,
    /// When the restored backup was taken and by which version.
    restored_from: Option<String>,
    /// Package archives read back with their digest after the restore.
    archives_verified: u64,
    /// Why the last restore was refused.
    error: Option<String>,
}

fn page(report: Option<RestoreReport>, error: Option<String>) -> BackupPage {
    let restored_from = report.as_ref().and_then(|r| r.manifest.as_ref()).map(|m| {
        format!(
            "the backup of {} (FerrisFX {})",
            show_time(&m.created_at),
            m.version
        )
    });
    let archives_verified = report.as_ref().map_or(0, |r| r.archives_verified);
    let report = report.map(|r| {
        let mut sections: Vec<String> = r
            .restored
            .keys()
            .chain(r.kept.keys())
            .chain(r.verified.keys())
            .cloned()
            .collect();
        sections.sort();
        sections.dedup();
        sections
            .into_iter()
            .map(|s| {
                let n =
                    |m: &std::collections::BTreeMap<String, u64>| m.get(&s).copied().unwrap_or(0);
                let now = r
                    .verified
                    .get(&s)
                    .map_or_else(|| "—".to_string(), u64::to_string);
                (s.clone(), n(&r.restored), n(&r.kept), now)
            })
            .collect()
    });
    BackupPage {
        active: "backup",
        report,
        restored_from,
        archives_verified,
        error,
    }
}

/// `GET /backup`.
pub async fn show() -> Result<Response, PageError> {
    Ok(HtmlTemplate(page(None, None)).into_response())
}

/// The download form.
#[derive(Debug, Default, Deserialize)]
pub struct DownloadForm {
    /// Also the executions of this many days back (empty: configuration only).
    #[serde(default)]
    pub days: String,
}

/// `POST /backup`: the archive as a download.
pub async fn download(
    State(state): State<AppState>,
    Form(form): Form<DownloadForm>,
) -> Result<Response, PageError> {
    let since = match form.days.trim() {
        "" => None,
        days => {
            let days: i64 = days
                .parse()
                .ok()
                .filter(|d| (1..=36_500).contains(d))
                .ok_or_else(|| {
                    PageError(ApiError::invalid(format!(
                        "days: {days:?} is not a number of days (1 or more)"
                    )))
                })?;
            Some(Utc::now() - Duration::days(days))
        }
    };
    Ok(backup_response(&state, since).await?)
}

/// `POST /backup/restore`: a multipart form with the archive (`file`) and `force`.
pub async fn restore(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, PageError> {
    let outcome = async {
        let mut form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::invalid(format!("reading the form: {}", e.body_text())))?;
        let (mut file, mut force) = (None, false);
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::invalid(format!("reading the form: {}", e.body_text())))?
        {
            match field.name() {
                Some("file") => file = Some(receive(Box::pin(field)).await?),
                Some("force") => force = true,
                _ => {}
            }
        }
        let file = file.ok_or_else(|| ApiError::invalid("choose the backup file to restore"))?;
        restore_file(&state, file.path(), force).await
    }
    .await;
    Ok(match outcome {
        Ok(report) => HtmlTemplate(page(Some(report), None)).into_response(),
        Err(e) => (e.status, HtmlTemplate(page(None, Some(e.message)))).into_response(),
    })
}
