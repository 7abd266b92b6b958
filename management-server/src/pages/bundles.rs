//! `/bundles`: the chat command bundles the viewer may read, each with the URL its Slack app
//! posts to, its secrets, its allow-list and its commands; for a viewer allowed
//! `bundle:write` on one, a delete button (`POST /bundles/{name}/delete`). Bundles are
//! created with the API or `ferrisfx bundle create --file` (commands are structured); the
//! checks and the writing are the API's ([`crate::routes::bundles`]).

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use fx_core::chat::Bundle;
use fx_core::identity::Action;
use serde::Deserialize;

use super::{HtmlTemplate, PageError};
use crate::auth::Caller;
use crate::routes::entries::{remove, visible};
use crate::AppState;

/// The chat bundles page.
#[derive(Template)]
#[template(path = "bundles.html")]
struct BundlesPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// The bundles the viewer may read, by name.
    bundles: Vec<BundleView>,
    /// This server as the request names it (`http://host`), for the curl line.
    origin: String,
    /// What just happened.
    notice: Option<String>,
}

/// A bundle as shown.
struct BundleView {
    name: String,
    description: String,
    /// The URL (or, with no host known, the path) the Slack app posts to.
    url: String,
    signing_secret: String,
    bot_token: Option<String>,
    /// `*`, or the Slack user ids; empty: nobody.
    allow: Vec<String>,
    /// `name syntax → handler`, one per command.
    commands: Vec<String>,
    writable: bool,
}

/// Query parameters of the bundles page.
#[derive(Debug, Default, Deserialize)]
pub struct BundlesParams {
    /// What just happened (`deleted bundle ops`).
    #[serde(default)]
    pub done: Option<String>,
}

/// `name syntax → handler`.
fn command_line(c: &fx_core::chat::Command) -> String {
    if c.syntax.is_empty() {
        format!("{} → {}", c.name, c.handler)
    } else {
        format!("{} {} → {}", c.name, c.syntax, c.handler)
    }
}

/// `GET /bundles`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Result<Query<BundlesParams>, QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let notice = params.ok().and_then(|Query(p)| p.done);
    let origin = super::origin(&headers);
    let bundles = visible::<Bundle>(&state, &caller)
        .await?
        .into_iter()
        .map(|b| BundleView {
            url: format!("{origin}{}", b.source()),
            signing_secret: b.slack.signing_secret.clone(),
            bot_token: b.slack.bot_token.clone(),
            commands: b.commands.iter().map(command_line).collect(),
            writable: caller.may(Action::BundleWrite, &b.name),
            allow: b.allow,
            description: b.description,
            name: b.name,
        })
        .collect();
    Ok(HtmlTemplate(BundlesPage {
        active: "bundles",
        bundles,
        origin: if origin.is_empty() {
            "http://localhost:8080".into()
        } else {
            origin
        },
        notice,
    }))
}

/// `POST /bundles/{name}/delete` (the page asks for confirmation).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    match remove::<Bundle>(&state, &caller, &name).await {
        Ok(()) => {
            let query = serde_urlencoded::to_string([("done", format!("deleted bundle {name}"))])
                .unwrap_or_default();
            Redirect::to(&format!("/bundles?{query}")).into_response()
        }
        Err(e) => PageError(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use fx_core::registry::Expect;

    use crate::tests::TestApp;

    fn bundle() -> fx_core::chat::Bundle {
        serde_json::from_value(serde_json::json!({
            "name": "ops",
            "description": "deploys & <status>",
            "slack": {"signing_secret": "slack-signing", "bot_token": "slack-bot"},
            "allow": ["U024BE7LH"],
            "commands": [
                {"name": "deploy", "handler": "deployer", "syntax": "<service> [env]"},
                {"name": "status", "handler": "status-check"},
            ],
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn the_list_shows_bundles_and_delete_removes_one() {
        let app = TestApp::new().await;
        let html = app.get("/bundles").await.text();
        assert!(html.contains("No chat command bundles"), "{html}");
        assert!(html.contains("ferrisfx bundle create --file"), "{html}");

        app.backends
            .bundles
            .put(&bundle(), Expect::Absent)
            .await
            .unwrap();
        let response = app.get("/bundles").await;
        response.assert_status(StatusCode::OK);
        let html = response.text();
        assert!(html.contains(r#"data-bundle="ops""#), "{html}");
        assert!(
            html.contains("deploys &#38; &#60;status&#62;"),
            "escaped: {html}"
        );
        assert!(html.contains("/chat/slack/ops"), "{html}");
        assert!(html.contains("slack-signing") && html.contains("slack-bot"));
        assert!(html.contains("U024BE7LH"), "{html}");
        assert!(
            html.contains("deploy &#60;service&#62; [env] → deployer"),
            "{html}"
        );
        assert!(html.contains("status → status-check"), "{html}");
        assert!(html.contains(r#"action="/bundles/ops/delete""#), "{html}");
        assert!(
            html.contains(r#"href="/bundles""#),
            "the nav links the page"
        );

        let response = app
            .call(
                Request::builder()
                    .method(Method::POST)
                    .uri("/bundles/ops/delete")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        response.assert_status(StatusCode::SEE_OTHER);
        assert!(app.backends.bundles.get("ops").await.unwrap().is_none());
        let html = app.get("/bundles?done=deleted+bundle+ops").await.text();
        assert!(html.contains("deleted bundle ops"), "{html}");
        assert!(!html.contains(r#"data-bundle="ops""#), "{html}");

        let response = app
            .call(
                Request::builder()
                    .method(Method::POST)
                    .uri("/bundles/ops/delete")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        response.assert_status(StatusCode::NOT_FOUND);
    }
}
