//! The server-rendered web UI: one module per page, askama templates in `templates/` (all
//! extending `base.html`), and the static files from `static/` (the stylesheet, htmx and the
//! UI's own small script), compiled into the binary: no CDN, no front-end build step.
//!
//! Every page works without JavaScript (plain forms and links); with it, htmx and
//! `static/app.js` add live updates (server-sent events from [`live`]), the handler form's
//! preview, and the upload's progress bar.

pub mod audit;
pub mod backup;
pub mod bundles;
pub mod catalogue;
pub mod dashboard;
pub mod executions;
pub mod handler_form;
pub mod handlers;
pub mod hooks;
pub mod live;
pub mod login;
pub mod notifications;
pub mod overview;
pub mod packages;
pub mod rows;
pub mod schedules;
pub mod secrets;
pub mod send;
pub mod workflows;

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};

use crate::error::ApiError;
use crate::AppState;

/// The stylesheet, served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = include_str!("../../static/style.css");
/// Where the stylesheet is served.
pub const STYLESHEET_PATH: &str = "/static/style.css";
/// htmx (0BSD licence, `static/vendor/htmx-LICENSE`), served at `/static/htmx.min.js`.
pub const HTMX: &[u8] = include_bytes!("../../static/vendor/htmx-2.0.4.min.js");
/// The UI's own script: live updates, upload progress, drag and drop, the filter rows.
pub const APP_SCRIPT: &str = include_str!("../../static/app.js");

/// The routes of the web UI.
pub fn routes(state: &AppState) -> Router<AppState> {
    let settings = &state.settings;
    let streams = || axum::middleware::from_fn_with_state(state.clone(), crate::limits::streams);
    Router::new()
        .route("/", get(overview::show))
        .route("/audit", get(audit::show))
        .route("/login", get(login::show).post(login::login))
        .route("/logout", axum::routing::post(login::logout))
        .route("/dashboard", get(dashboard::show))
        .route(
            "/packages",
            get(packages::show)
                .post(packages::upload)
                .layer(crate::routes::body_limit(settings.max_package_bytes))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::limits::uploads,
                )),
        )
        .route(
            "/packages/{name}/aliases",
            axum::routing::post(packages::move_alias),
        )
        .route("/handlers", get(handlers::show))
        .route(
            "/handlers/new",
            get(handler_form::new).post(handler_form::create),
        )
        .route(
            "/handlers/preview",
            axum::routing::post(handler_form::preview),
        )
        .route(
            "/handlers/{name}/edit",
            get(handler_form::edit).post(handler_form::update),
        )
        .route(
            "/handlers/{name}/toggle",
            axum::routing::post(handler_form::toggle),
        )
        .route(
            "/handlers/{name}/delete",
            axum::routing::post(handler_form::delete),
        )
        .route("/schedules", get(schedules::show).post(schedules::create))
        .route(
            "/schedules/{name}/pause",
            axum::routing::post(schedules::pause),
        )
        .route(
            "/schedules/{name}/resume",
            axum::routing::post(schedules::resume),
        )
        .route(
            "/schedules/{name}/delete",
            axum::routing::post(schedules::delete),
        )
        // Deliveries are `POST /hooks/{name}` (the main router's): the form posts to `/hooks`
        // and the delete buttons to `/hooks/{name}/delete`.
        .route("/hooks", get(hooks::show).post(hooks::create))
        .route("/hooks/{name}/delete", axum::routing::post(hooks::delete))
        // Bundles are created with the API or the CLI (their commands are structured); Slack
        // posts to `/chat/slack/{name}` (the main router's).
        .route("/bundles", get(bundles::show))
        .route(
            "/bundles/{name}/delete",
            axum::routing::post(bundles::delete),
        )
        .route(
            "/notifications",
            get(notifications::show).post(notifications::create),
        )
        .route(
            "/notifications/{name}/delete",
            axum::routing::post(notifications::delete),
        )
        .route("/workflows", get(workflows::list).post(workflows::create))
        .route("/workflows/{name}", get(workflows::show))
        .route(
            "/workflows/{name}/delete",
            axum::routing::post(workflows::delete),
        )
        .route(
            "/workflows/{name}/runs",
            axum::routing::post(workflows::start),
        )
        .route("/runs", get(workflows::runs))
        .route("/runs/{id}", get(workflows::run))
        .route("/runs/{id}/cancel", axum::routing::post(workflows::cancel))
        .route(
            "/runs/{id}/redrive",
            axum::routing::post(workflows::redrive),
        )
        .route("/secrets", get(secrets::show).post(secrets::set))
        .route("/backup", get(backup::show).post(backup::download))
        .route(
            "/backup/restore",
            axum::routing::post(backup::restore).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/secrets/{name}/delete",
            axum::routing::post(secrets::delete),
        )
        .route("/catalogue", get(catalogue::list))
        .route("/catalogue/entry", get(catalogue::entry))
        .route("/send", get(send::show).post(send::send))
        .route("/executions", get(executions::list))
        .route("/executions/{id}", get(executions::show))
        .route(
            "/executions/{id}/redrive",
            axum::routing::post(executions::redrive),
        )
        .route(
            "/executions/{id}/rerun",
            axum::routing::post(executions::rerun),
        )
        .route("/live/executions", get(live::executions).layer(streams()))
        .route(
            "/live/executions/{id}",
            get(live::execution).layer(streams()),
        )
        .route(STYLESHEET_PATH, get(stylesheet))
        .route("/static/htmx.min.js", get(htmx))
        .route("/static/app.js", get(app_script))
}

async fn htmx() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        HTMX,
    )
}

async fn app_script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        APP_SCRIPT,
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLESHEET,
    )
}

/// A page: renders its template, or answers 500 and logs why it could not.
pub struct HtmlTemplate<T>(pub T);

impl<T: Template> IntoResponse for HtmlTemplate<T> {
    fn into_response(self) -> Response {
        match self.0.render() {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(error = %e, template = std::any::type_name::<T>(), "rendering a page");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: the page could not be rendered",
                )
                    .into_response()
            }
        }
    }
}

/// A page that could not be shown: rendered as the error page with the error's status.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(err: E) -> Self {
        PageError(err.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let err = self.0;
        if err.status.is_server_error() {
            tracing::error!(status = %err.status, error = %err.message, "page failed");
        }
        error_page(err.status, err.message)
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    /// The highlighted navigation entry (none).
    active: &'static str,
    /// Status code and reason.
    status: String,
    /// What went wrong.
    message: String,
}

/// Renders the error page with `status`.
pub fn error_page(status: StatusCode, message: impl Into<String>) -> Response {
    let page = ErrorPage {
        active: "",
        status: status.to_string(),
        message: message.into(),
    };
    let mut response = HtmlTemplate(page).into_response();
    if response.status().is_success() {
        *response.status_mut() = status;
    }
    response
}

/// A time as shown in the UI.
pub fn show_time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration in microseconds as shown in the UI.
pub fn show_duration(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{:.1} ms", us as f64 / 1_000.0),
        _ => format!("{:.2} s", us as f64 / 1_000_000.0),
    }
}

/// A size in bytes as shown in the UI.
pub fn show_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if b < KIB {
        format!("{bytes} B")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else {
        format!("{:.1} MiB", b / (KIB * KIB))
    }
}

/// Where this server is reached, as the request says (`http://host`), for the URLs
/// shown to configure senders (webhooks, Slack); empty when the request names no host.
pub(crate) fn origin(headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        });
    let Some(host) = host else {
        return String::new();
    };
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(show_size(512), "512 B");
        assert_eq!(show_size(2048), "2.0 KiB");
        assert_eq!(show_size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(show_duration(12), "12 µs");
        assert_eq!(show_duration(1_500), "1.5 ms");
        assert_eq!(show_duration(2_500_000), "2.50 s");
    }
}
