//! `/packages`: every package with its versions, aliases and the handlers using it, an upload
//! form (file picker or drag and drop, with progress when JavaScript runs), and one-click alias
//! moves (`POST /packages/{name}/aliases`): pointing `latest` at an earlier version is a rollback.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{show_size, show_time, HtmlTemplate, PageError};
use crate::auth::Caller;
use crate::routes::packages::{
    author, package_summaries, read_upload, store_package, PackageSummary, FILE_FIELD,
};
use crate::AppState;

/// The packages page.
#[derive(Template)]
#[template(path = "packages.html")]
struct PackagesPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// Every package, by name.
    packages: Vec<PackageView>,
    /// The upload limit, readable.
    max_size: String,
    /// The form field holding the archive.
    file_field: &'static str,
    /// What just happened (an upload).
    notice: Option<String>,
    /// Why the last upload was refused.
    error: Option<String>,
}

/// A package as shown.
struct PackageView {
    /// Package name.
    name: String,
    /// The newest version's description.
    description: String,
    /// Alias to version.
    aliases: Vec<(String, String)>,
    /// Versions, newest first.
    versions: Vec<VersionView>,
    /// Handlers referring to it: name and the version or alias they name.
    used_by: Vec<(String, String)>,
}

/// A version as shown.
struct VersionView {
    /// Version.
    version: String,
    /// Full digest.
    digest: String,
    /// The first 12 hex digits of the digest.
    digest_short: String,
    /// Archive size, readable.
    size: String,
    /// Upload time.
    uploaded_at: String,
    /// Uploader, or empty.
    uploaded_by: String,
    /// The aliases pointing at it.
    aliases: String,
    /// Whether `latest` points at it.
    is_latest: bool,
}

impl From<PackageSummary> for PackageView {
    fn from(p: PackageSummary) -> Self {
        let versions = p
            .versions
            .iter()
            .map(|v| VersionView {
                version: v.version.clone(),
                digest: v.digest.to_string(),
                digest_short: v.digest.short().to_string(),
                size: show_size(v.size),
                uploaded_at: show_time(&v.uploaded_at),
                uploaded_by: v.uploaded_by.clone().unwrap_or_default(),
                aliases: p
                    .aliases
                    .iter()
                    .filter(|(_, version)| **version == v.version)
                    .map(|(alias, _)| alias.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                is_latest: p.aliases.get(fx_core::package::LATEST_ALIAS) == Some(&v.version),
            })
            .collect();
        PackageView {
            description: p
                .versions
                .first()
                .map(|v| v.manifest.description.clone())
                .unwrap_or_default(),
            aliases: p.aliases.into_iter().collect(),
            name: p.name,
            versions,
            used_by: Vec::new(),
        }
    }
}

/// Query parameters of the packages page.
#[derive(Debug, Default, Deserialize)]
pub struct PackagesParams {
    /// `name@version` just uploaded, shown as a notice.
    #[serde(default)]
    pub uploaded: Option<String>,
    /// `name alias → version` just moved, shown as a notice.
    #[serde(default)]
    pub moved: Option<String>,
}

/// The alias form of the packages page.
#[derive(Debug, Deserialize)]
pub struct AliasForm {
    /// The alias to move (`latest` from the one-click buttons).
    pub alias: String,
    /// The version it points at from now on.
    pub version: String,
}

async fn page(
    state: &AppState,
    caller: &Caller,
    notice: Option<String>,
    error: Option<String>,
) -> Result<PackagesPage, PageError> {
    let packages = package_summaries(state, caller).await?;
    let table = state.backends.registry.table().await?;
    let packages = packages
        .into_iter()
        .map(|p| {
            let mut view = PackageView::from(p);
            view.used_by = table
                .handlers
                .iter()
                .filter(|h| h.handler.package.name == view.name)
                .map(|h| (h.handler.name.clone(), h.handler.package.version.clone()))
                .collect();
            view
        })
        .collect();
    Ok(PackagesPage {
        active: "packages",
        packages,
        max_size: show_size(state.settings.max_package_bytes),
        file_field: FILE_FIELD,
        notice,
        error,
    })
}

/// `GET /packages`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<PackagesParams>, QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let notice = params.ok().and_then(|Query(p)| {
        p.uploaded
            .map(|what| format!("uploaded {what}"))
            .or(p.moved.map(|what| format!("moved {what}")))
    });
    Ok(HtmlTemplate(page(&state, &caller, notice, None).await?))
}

/// `POST /packages/{name}/aliases`: moves an alias, then back to the list with a notice (or
/// the list with the reason and the error's status).
pub async fn move_alias(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Form(form): Form<AliasForm>,
) -> Result<Response, PageError> {
    let alias = form.alias.trim();
    match crate::routes::packages::move_alias(&state, &caller, &name, alias, form.version.trim())
        .await
    {
        Ok(moved) => {
            let query = serde_urlencoded::to_string([(
                "moved",
                format!("{} {} → {}", moved.package, moved.alias, moved.version),
            )])
            .unwrap_or_default();
            Ok(Redirect::to(&format!("/packages?{query}#package-{name}")).into_response())
        }
        Err(e) => {
            let status = e.status;
            let page = page(
                &state,
                &caller,
                None,
                Some(format!("Alias not moved: {}", e.message)),
            )
            .await?;
            Ok((status, HtmlTemplate(page)).into_response())
        }
    }
}

/// `POST /packages`: the upload form; back to the list on success, the list with the
/// reason (and the error's status) otherwise.
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, PageError> {
    let stored = match author(&caller, &headers) {
        Ok(user) => match read_upload(&state, request).await {
            Ok(bytes) => store_package(&state, &caller, bytes, user).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match stored {
        Ok(version) => {
            let query = serde_urlencoded::to_string([(
                "uploaded",
                format!("{}@{}", version.name, version.version),
            )])
            .unwrap_or_default();
            Ok(Redirect::to(&format!("/packages?{query}")).into_response())
        }
        Err(e) => {
            let status = e.status;
            let page = page(
                &state,
                &caller,
                None,
                Some(format!("Upload refused: {}", e.message)),
            )
            .await?;
            Ok((status, HtmlTemplate(page)).into_response())
        }
    }
}
