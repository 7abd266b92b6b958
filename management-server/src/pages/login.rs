//! `/login` and `/logout`: the web UI's sign-in. A name and password become a session: an API
//! token (named `session`) in an `HttpOnly` cookie, with its CSRF token beside it
//! ([`crate::auth::session`]).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::HtmlTemplate;
use crate::auth::audit::{AuditResource, AuditWho};
use crate::auth::session;
use crate::AppState;

/// The sign-in page.
#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    /// The highlighted navigation entry (none).
    active: &'static str,
    /// Where to go once signed in.
    next: String,
    /// The account name tried.
    name: String,
    /// Why the last attempt failed.
    error: Option<String>,
}

/// Query parameters of `GET /login`.
#[derive(Debug, Default, Deserialize)]
pub struct LoginParams {
    /// Where to go once signed in (a path of this site).
    #[serde(default)]
    pub next: Option<String>,
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    /// Account name.
    pub name: String,
    /// Password.
    pub password: String,
    /// Where to go once signed in.
    #[serde(default)]
    pub next: String,
}

/// `next` if it is a path of this site, else the overview: never another site.
fn local_path(next: &str) -> String {
    let ok = next.starts_with('/') && !next.starts_with("//") && !next.contains('\\');
    if ok {
        next.to_string()
    } else {
        "/".to_string()
    }
}

/// `GET /login`.
pub async fn show(Query(params): Query<LoginParams>) -> impl IntoResponse {
    HtmlTemplate(LoginPage {
        active: "login",
        next: local_path(params.next.as_deref().unwrap_or("/")),
        name: String::new(),
        error: None,
    })
}

/// `POST /login`: signs in and goes on to `next`, or shows the form again with the reason.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let who = AuditWho(format!("user:{}", form.name));
    let resource = AuditResource(format!("account {}", form.name));
    let next = local_path(&form.next);
    let again = |status: StatusCode, error: String| {
        let page = LoginPage {
            active: "login",
            next: next.clone(),
            name: form.name.clone(),
            error: Some(error),
        };
        let mut response = (status, HtmlTemplate(page)).into_response();
        response.extensions_mut().insert(who.clone());
        response.extensions_mut().insert(resource.clone());
        response
    };
    // A sign-in form posted from another site would sign the victim in as the attacker.
    if let Err(e) = session::check_origin(&headers) {
        return again(StatusCode::FORBIDDEN, e.message);
    }
    let hours = state.settings.auth.session_hours;
    let signed_in =
        crate::routes::identity::sign_in(&state, &form.name, &form.password, "session", hours)
            .await;
    match signed_in {
        Ok(Some((token, record))) => {
            tracing::info!(account = %record.owner, "signed in to the web ui");
            let mut response = Redirect::to(&next).into_response();
            let secure = session::is_secure(&headers, state.settings.auth.secure_cookies);
            session::set_cookies(
                &mut response,
                &token.reveal(),
                i64::from(hours) * 3600,
                secure,
            );
            response.extensions_mut().insert(who);
            response.extensions_mut().insert(resource);
            response
        }
        Ok(None) => again(
            StatusCode::UNAUTHORIZED,
            "Wrong account name or password.".into(),
        ),
        Err(e) => again(e.status, e.message),
    }
}

/// `POST /logout`: revokes the session's token and clears its cookies.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session::cookie(&headers, session::SESSION_COOKIE)
        .as_deref()
        .and_then(fx_core::identity::credentials::Token::parse)
    {
        match state
            .backends
            .identity
            .revoke_token(token.id(), chrono::Utc::now())
            .await
        {
            Ok(_) => state.auth.invalidate(),
            Err(e) => {
                tracing::warn!(error = %e.chain(), "revoking a session at sign-out failed")
            }
        }
    }
    let mut response = Redirect::to("/login").into_response();
    session::clear_cookies(&mut response);
    response
}
