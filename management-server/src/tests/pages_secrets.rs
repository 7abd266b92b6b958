//! The secrets page over the router, as a signed-in browser uses it: session cookie, CSRF
//! token and same-site origin on every form.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use fx_core::identity::{Action, AuditQuery, Grant, Role};
use fx_core::secrets::Keyring;

use super::auth::{secured, user};
use super::*;
use crate::auth::session::{csrf_token, SESSION_COOKIE};

const CANARY: &str = "canary-5d1e0b77-page-never-shows";
const SITE: &str = "https://fx.example.com";

fn keyring() -> Keyring {
    Keyring::parse(&Keyring::generate_line("k1").unwrap()).unwrap()
}

/// A browser signed in with `token` as its session.
struct Browser<'a> {
    app: &'a TestApp,
    token: String,
}

impl Browser<'_> {
    fn request(&self, method: Method, uri: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "fx.example.com")
            .header(header::COOKIE, format!("{SESSION_COOKIE}={}", self.token))
    }

    async fn get(&self, uri: &str) -> TestResponse {
        self.app
            .call(self.request(Method::GET, uri).body(Body::empty()).unwrap())
            .await
    }

    /// Posts `form` from this site, with the session's CSRF token.
    async fn post(&self, uri: &str, form: &[(&str, &str)]) -> TestResponse {
        let mut fields = form.to_vec();
        let csrf = csrf_token(&self.token);
        fields.push(("_csrf", &csrf));
        self.post_raw(uri, &fields).await
    }

    /// Posts `form` from this site as it is (no CSRF token added).
    async fn post_raw(&self, uri: &str, form: &[(&str, &str)]) -> TestResponse {
        let request = self
            .request(Method::POST, uri)
            .header(header::ORIGIN, SITE)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
            .unwrap();
        self.app.call(request).await
    }
}

/// A browser signed in as a new user `name` with `grants`.
async fn signed_in<'a>(app: &'a TestApp, name: &str, grants: &[(Grant, &str)]) -> Browser<'a> {
    Browser {
        app,
        token: user(app, name, grants).await,
    }
}

/// The audit log's entries about secrets: `action resource outcome` each, newest first.
async fn secret_audit(app: &TestApp) -> Vec<String> {
    app.backends
        .identity
        .audit(&AuditQuery {
            action: Some("secret:".into()),
            ..AuditQuery::default()
        })
        .await
        .unwrap()
        .items
        .iter()
        .map(|e| format!("{} {} {}", e.action, e.resource, e.outcome.name()))
        .collect()
}

#[tokio::test]
async fn the_secrets_form_sets_lists_and_deletes_a_secret_and_never_shows_its_value() {
    let app = secured().await.with_keyring(keyring());
    let root = signed_in(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let mut pages = String::new();

    let empty = root.get("/secrets").await;
    empty.assert_status(StatusCode::OK);
    let text = empty.text();
    assert!(text.contains("id=\"secret-form\""), "{text}");
    assert!(
        text.contains("<input type=\"password\" name=\"value\" autocomplete=\"off\""),
        "{text}"
    );
    assert!(text.contains("name=\"pools\" value=\"default\""), "{text}");
    assert!(
        text.contains("href=\"/secrets\" class=\"active\""),
        "{text}"
    );

    let set = root
        .post(
            "/secrets",
            &[
                ("name", "db-password"),
                ("value", CANARY),
                ("pools", "default"),
            ],
        )
        .await;
    set.assert_status(StatusCode::SEE_OTHER);
    let to = set.headers[header::LOCATION].to_str().unwrap().to_string();
    assert_eq!(to, "/secrets?saved=db-password+v1");
    let listed = root.get(&to).await;
    listed.assert_status(StatusCode::OK);
    let text = listed.text();
    pages.push_str(&text);
    assert!(text.contains("saved secret db-password v1"), "{text}");
    assert!(text.contains("data-secret=\"db-password\""), "{text}");
    assert!(
        text.contains(">k1<") && text.contains("user:root"),
        "{text}"
    );
    assert!(text.contains("action=\"/secrets/db-password/delete\""));
    assert!(text.contains("data-confirm=\"Delete secret db-password?"));

    // Changed: a new value and pools, one more version.
    let changed = root
        .post(
            "/secrets",
            &[
                ("name", "db-password"),
                ("value", &format!("{CANARY}-2")),
                ("pools", " default, gpu ,"),
            ],
        )
        .await;
    changed.assert_status(StatusCode::SEE_OTHER);
    let meta = app.state.vault.meta("db-password").await.unwrap().unwrap();
    assert_eq!(
        (meta.version, meta.pools.clone()),
        (2, vec!["default".to_string(), "gpu".to_string()])
    );
    let text = root.get("/secrets").await.text();
    pages.push_str(&text);
    assert!(text.contains("default, gpu"), "{text}");
    let values = app.state.vault.values_for("gpu").await.unwrap();
    assert_eq!(values["db-password"].expose(), format!("{CANARY}-2"));

    let deleted = root.post("/secrets/db-password/delete", &[]).await;
    deleted.assert_status(StatusCode::SEE_OTHER);
    assert_eq!(
        deleted.headers[header::LOCATION],
        "/secrets?deleted=db-password"
    );
    assert!(app.state.vault.list().await.unwrap().is_empty());
    let text = root.get("/secrets?deleted=db-password").await.text();
    pages.push_str(&text);
    assert!(text.contains("deleted secret db-password"), "{text}");
    assert!(!text.contains("data-secret="), "{text}");
    // Deleting it again: the error page says there is none.
    let again = root.post("/secrets/db-password/delete", &[]).await;
    again.assert_status(StatusCode::NOT_FOUND);
    assert!(again.text().contains("secret db-password does not exist"));

    let audit = secret_audit(&app).await;
    assert_eq!(
        audit,
        [
            "secret:write secret db-password failed",
            "secret:write secret db-password ok",
            "secret:write secret db-password v2 pools default,gpu ok",
            "secret:write secret db-password v1 pools default ok",
        ]
    );
    assert!(!pages.contains(CANARY), "a value in a page: {pages}");
    assert!(!audit.concat().contains(CANARY));
}

#[tokio::test]
async fn a_secret_form_without_the_csrf_token_is_refused() {
    let app = secured().await.with_keyring(keyring());
    let root = signed_in(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let form = [
        ("name", "db-password"),
        ("value", CANARY),
        ("pools", "default"),
    ];
    let forged = root.post_raw("/secrets", &form).await;
    forged.assert_status(StatusCode::FORBIDDEN);
    assert!(forged.text().contains("CSRF"), "{}", forged.text());
    assert!(!forged.text().contains(CANARY));
    let wrong = [
        ("name", "db-password"),
        ("value", CANARY),
        ("pools", "default"),
        ("_csrf", "00000000000000000000000000000000"),
    ];
    root.post_raw("/secrets", &wrong)
        .await
        .assert_status(StatusCode::FORBIDDEN);
    assert!(app.state.vault.list().await.unwrap().is_empty());
    // The same form with the token is taken.
    root.post("/secrets", &form)
        .await
        .assert_status(StatusCode::SEE_OTHER);
    let forged_delete = root.post_raw("/secrets/db-password/delete", &[]).await;
    forged_delete.assert_status(StatusCode::FORBIDDEN);
    assert_eq!(app.state.vault.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn who_may_only_grant_secrets_sees_them_without_the_form_and_viewers_are_refused() {
    let app = secured().await.with_keyring(keyring());
    let root = signed_in(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    root.post(
        "/secrets",
        &[
            ("name", "db-password"),
            ("value", CANARY),
            ("pools", "default"),
        ],
    )
    .await
    .assert_status(StatusCode::SEE_OTHER);

    // A viewer may neither see nor set secrets.
    let vera = signed_in(&app, "vera", &[(Grant::Role(Role::Viewer), "*")]).await;
    let page = vera.get("/secrets").await;
    page.assert_status(StatusCode::FORBIDDEN);
    assert!(!page.text().contains("id=\"secret-form\""));
    let refused = vera
        .post(
            "/secrets",
            &[
                ("name", "db-password"),
                ("value", "mine"),
                ("pools", "default"),
            ],
        )
        .await;
    refused.assert_status(StatusCode::FORBIDDEN);
    assert!(
        refused.text().contains("user:vera may not"),
        "{}",
        refused.text()
    );
    vera.post("/secrets/db-password/delete", &[])
        .await
        .assert_status(StatusCode::FORBIDDEN);

    // A developer lists the secrets it may grant, with neither form nor delete button.
    let dana = signed_in(&app, "dana", &[(Grant::Role(Role::Developer), "*")]).await;
    let page = dana.get("/secrets").await;
    page.assert_status(StatusCode::OK);
    let text = page.text();
    assert!(text.contains("data-secret=\"db-password\""), "{text}");
    assert!(!text.contains("id=\"secret-form\""), "{text}");
    assert!(!text.contains("/delete"), "{text}");
    assert!(!text.contains(CANARY));
    dana.post(
        "/secrets",
        &[
            ("name", "db-password"),
            ("value", "mine"),
            ("pools", "default"),
        ],
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    let meta = app.state.vault.meta("db-password").await.unwrap().unwrap();
    assert_eq!(meta.version, 1);
}

#[tokio::test]
async fn a_writer_without_pool_use_is_refused_with_the_reason_and_the_value_is_not_kept() {
    let app = secured().await.with_keyring(keyring());
    let wade = signed_in(
        &app,
        "wade",
        &[
            (Grant::Action(Action::SecretGrant), "team-*"),
            (Grant::Action(Action::SecretWrite), "team-*"),
            (Grant::Action(Action::PoolUse), "default"),
        ],
    )
    .await;
    let page = wade.get("/secrets").await;
    page.assert_status(StatusCode::OK);
    assert!(page.text().contains("id=\"secret-form\""));

    let refused = wade
        .post(
            "/secrets",
            &[
                ("name", "team-key"),
                ("value", CANARY),
                ("pools", "default, gpu"),
            ],
        )
        .await;
    refused.assert_status(StatusCode::FORBIDDEN);
    let text = refused.text();
    assert!(text.contains("id=\"secret-error\""), "{text}");
    assert!(text.contains("pool:use") && text.contains("gpu"), "{text}");
    // The form comes back with the name and pools, and without the value.
    assert!(text.contains("name=\"name\" value=\"team-key\""), "{text}");
    assert!(
        text.contains("name=\"pools\" value=\"default, gpu\" required spellcheck=\"false\" aria-invalid=\"true\""),
        "{text}"
    );
    assert!(!text.contains(CANARY), "{text}");
    let every = wade
        .post(
            "/secrets",
            &[("name", "team-key"), ("value", CANARY), ("pools", "*")],
        )
        .await;
    every.assert_status(StatusCode::FORBIDDEN);
    assert!(!every.text().contains(CANARY));
    // A name outside its rule, no pool, a value too large: refused, with the reason.
    let other = wade
        .post(
            "/secrets",
            &[
                ("name", "db-password"),
                ("value", CANARY),
                ("pools", "default"),
            ],
        )
        .await;
    other.assert_status(StatusCode::FORBIDDEN);
    assert!(other.text().contains("secret:write"), "{}", other.text());
    let no_pool = wade
        .post(
            "/secrets",
            &[("name", "team-key"), ("value", CANARY), ("pools", " , ")],
        )
        .await;
    no_pool.assert_status(StatusCode::BAD_REQUEST);
    assert!(
        no_pool.text().contains("at least one pool"),
        "{}",
        no_pool.text()
    );
    let huge = "x".repeat(fx_core::secrets::MAX_SECRET_BYTES + 1);
    let too_large = wade
        .post(
            "/secrets",
            &[("name", "team-key"), ("value", &huge), ("pools", "default")],
        )
        .await;
    too_large.assert_status(StatusCode::BAD_REQUEST);
    assert!(!too_large.text().contains(&huge[..64]));
    assert!(app.state.vault.list().await.unwrap().is_empty());

    // Within its rules, it is written.
    wade.post(
        "/secrets",
        &[
            ("name", "team-key"),
            ("value", CANARY),
            ("pools", "default"),
        ],
    )
    .await
    .assert_status(StatusCode::SEE_OTHER);
    let audit = secret_audit(&app).await;
    assert!(
        audit.contains(&"secret:write secret team-key denied".to_string()),
        "{audit:?}"
    );
    assert!(!audit.concat().contains(CANARY));
}

#[tokio::test]
async fn without_a_keyring_the_secrets_page_says_what_to_configure() {
    let app = secured().await;
    let root = signed_in(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let page = root.get("/secrets").await;
    page.assert_status(StatusCode::OK);
    let text = page.text();
    assert!(text.contains("id=\"secrets-unconfigured\""), "{text}");
    assert!(text.contains("server.secrets.key_file"), "{text}");
    assert!(text.contains("FX_SECRETS_KEY"), "{text}");
    assert!(!text.contains("id=\"secret-form\""), "{text}");
    // A form posted anyway (a stale page) is answered with the same advice.
    let refused = root
        .post(
            "/secrets",
            &[
                ("name", "db-password"),
                ("value", CANARY),
                ("pools", "default"),
            ],
        )
        .await;
    refused.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.text().contains("server.secrets.key_file"));
    assert!(!refused.text().contains(CANARY));
}
