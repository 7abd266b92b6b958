//! Authentication and permissions: every route against the table, every route with no
//! credential and with tokens of several roles, and the hijacks ownership closes.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use chrono::Utc;
use fx_core::identity::credentials::Token;
use fx_core::identity::{
    Account, Action, Grant, Pattern, PrincipalKind, Role, Rule, Scope, Subject, TokenRecord,
};
use serde_json::json;

use super::*;
use crate::auth::table::{Requirement, Target, ROUTES};
use crate::auth::AuthSettings;
use crate::openapi::OPERATIONS;

pub(super) fn secure_settings() -> ServerSettings {
    ServerSettings {
        auth: AuthSettings {
            enabled: true,
            ..AuthSettings::default()
        },
        ..ServerSettings::default()
    }
}

/// An application that requires credentials.
pub(super) async fn secured() -> TestApp {
    TestApp::with_settings(secure_settings()).await
}

/// Creates user `name` with `grants` (each on a pattern) and returns a token of theirs.
pub(super) async fn user(app: &TestApp, name: &str, grants: &[(Grant, &str)]) -> String {
    token_of(app, name, grants, Scope::default()).await
}

async fn token_of(app: &TestApp, name: &str, grants: &[(Grant, &str)], scope: Scope) -> String {
    account_token(app, PrincipalKind::User, name, grants, scope).await
}

/// Creates account `name` of `kind` with `grants` (unless it exists) and returns a new token
/// of it with `scope`.
pub(super) async fn account_token(
    app: &TestApp,
    kind: PrincipalKind,
    name: &str,
    grants: &[(Grant, &str)],
    scope: Scope,
) -> String {
    let store = &app.backends.identity;
    let now = Utc::now();
    if store.account(name).await.unwrap().is_none() {
        store
            .create_account(&Account {
                name: name.into(),
                kind,
                display_name: String::new(),
                password_hash: None,
                groups: Vec::new(),
                disabled: false,
                created_at: now,
                updated_at: now,
            })
            .await
            .unwrap();
        for (grant, pattern) in grants {
            let rule = Rule {
                subject: match kind {
                    PrincipalKind::User => Subject::User(name.into()),
                    PrincipalKind::ServiceAccount => Subject::Service(name.into()),
                },
                grant: *grant,
                pattern: Pattern::parse(pattern).unwrap(),
            };
            store.add_rule(&rule, "test", now).await.unwrap();
        }
        // As the rules API will: this server forgets the rules it cached.
        app.state_auth_invalidate();
    }
    let token = Token::generate().unwrap();
    store
        .create_token(&TokenRecord {
            id: token.id().into(),
            owner: name.into(),
            name: "test".into(),
            secret_hash: token.secret_hash(),
            scope,
            created_at: now,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        })
        .await
        .unwrap();
    token.reveal()
}

/// `method uri` with `body` (JSON), as the holder of `token` (none: anonymous).
pub(super) async fn call(
    app: &TestApp,
    token: Option<&str>,
    method: &Method,
    uri: &str,
    body: &Value,
) -> TestResponse {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Body::from(body.to_string())).unwrap();
    if !uri.starts_with("/live/") {
        return app.call(request).await;
    }
    // A live stream never ends: its status and headers, and the body of a refusal only.
    let response = app.router_call_streaming(request).await;
    let (status, headers) = (response.status(), response.headers().clone());
    let body = if status.is_success() {
        bytes::Bytes::new()
    } else {
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes()
    };
    TestResponse {
        status,
        headers,
        body,
    }
}

/// A route template with its parameters filled in.
fn concrete(template: &str) -> String {
    template
        .replace("{name}", "payments")
        .replace("{alias}", "latest")
        .replace("{id}", "00000000000000000000000000000000")
}

/// The paths every `.route("…")` of `source` serves, under `prefix`.
fn routed(source: &str, prefix: &str) -> Vec<String> {
    source
        .split(".route(")
        .skip(1)
        .map(|piece| {
            let piece = piece.trim_start();
            if let Some(rest) = piece.strip_prefix('"') {
                format!("{prefix}{}", rest.split('"').next().unwrap())
            } else {
                assert!(piece.starts_with("STYLESHEET_PATH"), "{piece:.40}");
                crate::pages::STYLESHEET_PATH.to_string()
            }
        })
        .collect()
}

#[tokio::test]
async fn every_route_is_in_the_auth_table_and_every_entry_is_routed() {
    let mut paths = routed(include_str!("../lib.rs"), "");
    paths.extend(routed(include_str!("../routes/mod.rs"), "/api/v1"));
    paths.extend(routed(include_str!("../pages/mod.rs"), ""));
    assert!(paths.len() > 30, "{paths:?}");
    let listed: BTreeSet<&str> = ROUTES.iter().map(|(_, path, _)| *path).collect();
    for path in &paths {
        assert!(
            listed.contains(path.as_str()),
            "route {path} has no line in auth::table::ROUTES"
        );
    }
    for (method, path) in OPERATIONS {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        assert!(
            crate::auth::table::requirement(&method, path).is_some(),
            "{method} {path} is documented but has no line in auth::table::ROUTES"
        );
    }
    // Every line names a route the router serves with that method.
    let app = secured().await;
    let admin = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    for (method, template, _) in ROUTES {
        let uri = concrete(template);
        let response = call(&app, Some(&admin), method, &uri, &json!({})).await;
        assert_ne!(
            response.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        assert!(
            !response.text().contains("no such path"),
            "{method} {template} is in the table but not routed"
        );
    }
}

#[tokio::test]
async fn a_route_missing_from_the_table_is_refused() {
    let app = TestApp::new().await;
    let state = AppState::new(app.backends.clone(), open());
    let router: axum::Router = axum::Router::new()
        .route("/unlisted", axum::routing::get(|| async { "secret" }))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::guard,
        ))
        .with_state(state);
    let response = tower::ServiceExt::oneshot(
        router,
        Request::get("/unlisted").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_route_answers_each_role_by_the_rules() {
    let app = secured().await;
    let admin = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let viewer = user(&app, "vera", &[(Grant::Role(Role::Viewer), "*")]).await;
    // A developer of other packages and handlers than the ones the routes name.
    let other = user(&app, "otto", &[(Grant::Role(Role::Developer), "other-*")]).await;
    let refused = [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN];
    for (method, template, requirement) in ROUTES {
        let uri = concrete(template);
        let what = format!("{method} {template}");

        let anonymous = call(&app, None, method, &uri, &json!({})).await;
        match requirement {
            Requirement::Public => {
                assert!(
                    !refused.contains(&anonymous.status),
                    "{what}: {}",
                    anonymous.text()
                )
            }
            // A page asks a browser to sign in.
            _ if crate::auth::is_page(&uri) && *method == Method::GET => {
                anonymous.assert_status(StatusCode::SEE_OTHER);
                let to = anonymous.headers[header::LOCATION].to_str().unwrap();
                assert!(to.starts_with("/login?next=%2F"), "{what}: {to}");
            }
            _ if crate::auth::is_page(&uri) => {
                anonymous.assert_status(StatusCode::UNAUTHORIZED);
            }
            _ => {
                anonymous.assert_status(StatusCode::UNAUTHORIZED);
                assert_eq!(
                    anonymous.headers[header::WWW_AUTHENTICATE],
                    "Bearer realm=\"ferrisfx\"",
                    "{what}"
                );
            }
        }

        let root = call(&app, Some(&admin), method, &uri, &json!({})).await;
        if matches!(requirement, Requirement::Allowed(action, _) if !Role::Admin.actions().contains(action))
        {
            // Receiving secret values: an executor pool's service account only.
            assert_eq!(root.status, StatusCode::FORBIDDEN, "{what} as admin");
        } else {
            assert!(
                !refused.contains(&root.status),
                "{what} as admin: {}",
                root.text()
            );
        }

        let as_viewer = call(&app, Some(&viewer), method, &uri, &json!({})).await;
        match requirement {
            Requirement::Allowed(action, _) if !Role::Viewer.actions().contains(action) => {
                assert_eq!(as_viewer.status, StatusCode::FORBIDDEN, "{what} as viewer");
                assert!(as_viewer.text().contains("user:vera may not"), "{what}");
            }
            _ => assert!(
                !refused.contains(&as_viewer.status),
                "{what} as viewer: {}",
                as_viewer.text()
            ),
        }

        let as_other = call(&app, Some(&other), method, &uri, &json!({})).await;
        match requirement {
            Requirement::Public => assert!(!refused.contains(&as_other.status), "{what}"),
            Requirement::Allowed(_, Target::Path(_) | Target::All) => {
                assert_eq!(as_other.status, StatusCode::FORBIDDEN, "{what} as otto")
            }
            Requirement::Allowed(action, Target::Later)
                if !Role::Developer.actions().contains(action) =>
            {
                assert_eq!(as_other.status, StatusCode::FORBIDDEN, "{what} as otto")
            }
            // The resource is in the body or behind an id: the handler checks it (see the
            // tests below); the guard lets the request through.
            _ => assert_ne!(as_other.status, StatusCode::UNAUTHORIZED, "{what} as otto"),
        }
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401() {
    let app = secured().await;
    let good = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let get = |token: Option<String>| {
        let app = &app;
        async move {
            call(
                app,
                token.as_deref(),
                &Method::GET,
                "/api/v1/handlers",
                &json!({}),
            )
            .await
        }
    };
    get(Some(good.clone())).await.assert_status(StatusCode::OK);
    let unknown = Token::generate().unwrap().reveal();
    // The last hex digit changed (to another one, whatever it was).
    let last = if good.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{last}", &good[..good.len() - 1]);
    assert_ne!(tampered, good);
    for bad in [unknown, tampered, "fxt_nonsense".into(), "".into()] {
        get(Some(bad.clone()))
            .await
            .assert_status(StatusCode::UNAUTHORIZED);
    }
    let basic = app
        .call(
            Request::get("/api/v1/handlers")
                .header(header::AUTHORIZATION, "Basic cm9vdDpyb290")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    basic.assert_status(StatusCode::UNAUTHORIZED);

    // Revoked: refused once the cache has forgotten it (a new server sees it at once).
    let id = Token::parse(&good).unwrap().id().to_string();
    assert!(app
        .backends
        .identity
        .revoke_token(&id, Utc::now())
        .await
        .unwrap());
    let fresh = app.another_server(secure_settings());
    call(
        &fresh,
        Some(&good),
        &Method::GET,
        "/api/v1/handlers",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::UNAUTHORIZED);

    // A disabled account's tokens stop working.
    let other = user(&fresh, "otto", &[(Grant::Role(Role::Admin), "*")]).await;
    call(
        &fresh,
        Some(&other),
        &Method::GET,
        "/api/v1/handlers",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::OK);
    let mut account = fresh
        .backends
        .identity
        .account("otto")
        .await
        .unwrap()
        .unwrap();
    account.disabled = true;
    fresh
        .backends
        .identity
        .update_account(&account)
        .await
        .unwrap();
    let later = app.another_server(secure_settings());
    call(
        &later,
        Some(&other),
        &Method::GET,
        "/api/v1/handlers",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_scope_narrows_what_its_owner_may_do() {
    let app = secured().await;
    let scoped = token_of(
        &app,
        "root",
        &[(Grant::Role(Role::Admin), "*")],
        Scope {
            actions: Some(BTreeSet::from([Action::PackageRead])),
            pattern: None,
        },
    )
    .await;
    call(
        &app,
        Some(&scoped),
        &Method::GET,
        "/api/v1/packages",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::OK);
    let refused = call(
        &app,
        Some(&scoped),
        &Method::POST,
        "/api/v1/handlers",
        &handler_json("h", "hello", "com.example.hello"),
    )
    .await;
    refused.assert_status(StatusCode::FORBIDDEN);
    assert!(refused
        .error_message()
        .contains("outside the token's scope"));
}

/// Uploads `name@version` as the holder of `token`.
async fn upload_as(app: &TestApp, token: &str, name: &str, version: &str) -> TestResponse {
    app.call(
        Request::post("/api/v1/packages")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header("x-fx-user", "someone-else")
            .body(Body::from(package(name, version)))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_second_user_cannot_replace_someone_elses_package() {
    let app = secured().await;
    let alice = user(&app, "alice", &[(Grant::Role(Role::Developer), "*")]).await;
    let mallory = user(&app, "mallory", &[(Grant::Role(Role::Developer), "*")]).await;

    let first = upload_as(&app, &alice, "payments", "1.0.0").await;
    first.assert_status(StatusCode::CREATED);
    assert_eq!(
        first.json()["uploaded_by"],
        "user:alice",
        "the author is the token's owner, not the x-fx-user header"
    );
    assert_eq!(
        app.backends
            .identity
            .package_owner("payments")
            .await
            .unwrap(),
        Some(Subject::User("alice".into()))
    );

    let hijack = upload_as(&app, &mallory, "payments", "9.0.0").await;
    hijack.assert_status(StatusCode::FORBIDDEN);
    assert!(
        hijack.error_message().contains("belongs to user:alice"),
        "{}",
        hijack.error_message()
    );
    let moved = call(
        &app,
        Some(&mallory),
        &Method::PUT,
        "/api/v1/packages/payments/aliases/latest",
        &json!({"version": "1.0.0"}),
    )
    .await;
    moved.assert_status(StatusCode::FORBIDDEN);
    let latest = app
        .backends
        .state
        .resolve_package(&fx_core::handler::PackageRef {
            name: "payments".into(),
            version: "latest".into(),
        })
        .await
        .unwrap();
    assert_eq!(latest.version, "1.0.0");
    assert_eq!(latest.uploaded_by.as_deref(), Some("user:alice"));

    // The owner shares it with an explicit rule; then mallory may.
    app.backends
        .identity
        .add_rule(
            &Rule {
                subject: Subject::User("mallory".into()),
                grant: Grant::Action(Action::PackageUpload),
                pattern: Pattern::parse("payments").unwrap(),
            },
            "user:alice",
            Utc::now(),
        )
        .await
        .unwrap();
    app.state_auth_invalidate();
    upload_as(&app, &mallory, "payments", "1.1.0")
        .await
        .assert_status(StatusCode::CREATED);

    // Her own new package is hers.
    upload_as(&app, &mallory, "mallory-tools", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    upload_as(&app, &alice, "mallory-tools", "2.0.0")
        .await
        .assert_status(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_handler_names_only_pools_and_secrets_its_author_may_use() {
    let app = secured().await;
    let root = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    upload_as(&app, &root, "team-tools", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    let dev = user(
        &app,
        "dev",
        &[
            (Grant::Role(Role::Developer), "team-*"),
            (Grant::Action(Action::PoolUse), "default"),
        ],
    )
    .await;
    let mut handler = handler_json("team-orders", "team-tools", "com.example.order");
    let create = |body: Value| {
        let (app, dev) = (&app, &dev);
        async move { call(app, Some(dev), &Method::POST, "/api/v1/handlers", &body).await }
    };

    handler["pool"] = json!("gpu");
    let refused = create(handler.clone()).await;
    refused.assert_status(StatusCode::FORBIDDEN);
    assert!(
        refused.error_message().contains("pool:use"),
        "{}",
        refused.error_message()
    );

    handler["pool"] = json!("default");
    handler["secrets"] = json!(["payments-db-password"]);
    let refused = create(handler.clone()).await;
    refused.assert_status(StatusCode::FORBIDDEN);
    assert!(
        refused.error_message().contains("secret:grant"),
        "{}",
        refused.error_message()
    );

    // Outside the developer's handler prefix.
    let mut elsewhere = handler_json("billing", "team-tools", "com.example.order");
    elsewhere["pool"] = json!("default");
    create(elsewhere).await.assert_status(StatusCode::FORBIDDEN);

    handler["secrets"] = json!([]);
    let created = create(handler.clone()).await;
    assert_ne!(created.status, StatusCode::FORBIDDEN, "{}", created.text());

    // A change is checked again: moving it to a pool the writer may not use is refused.
    handler["pool"] = json!("gpu");
    let moved = call(
        &app,
        Some(&dev),
        &Method::PUT,
        "/api/v1/handlers/team-orders",
        &handler,
    )
    .await;
    moved.assert_status(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn lists_show_only_what_the_caller_may_read() {
    let app = secured().await;
    let root = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    for name in ["team-a-orders", "team-b-orders"] {
        upload_as(&app, &root, name, "1.0.0")
            .await
            .assert_status(StatusCode::CREATED);
        call(
            &app,
            Some(&root),
            &Method::POST,
            "/api/v1/handlers",
            &handler_json(name, name, "com.example.order"),
        )
        .await;
    }
    let a = user(&app, "anna", &[(Grant::Role(Role::Viewer), "team-a-*")]).await;
    let packages = call(&app, Some(&a), &Method::GET, "/api/v1/packages", &json!({})).await;
    let packages = packages.json();
    let names: Vec<&str> = packages["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["team-a-orders"]);
    let handlers = call(&app, Some(&a), &Method::GET, "/api/v1/handlers", &json!({})).await;
    let handlers = handlers.json();
    let names: Vec<&str> = handlers["handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["handler"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["team-a-orders"]);
    // Executions: of a handler she may read, not of every handler.
    call(
        &app,
        Some(&a),
        &Method::GET,
        "/api/v1/executions?handler=team-a-orders",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::OK);
    let all = call(
        &app,
        Some(&a),
        &Method::GET,
        "/api/v1/executions",
        &json!({}),
    )
    .await;
    all.assert_status(StatusCode::FORBIDDEN);
    assert!(all.error_message().contains("filter by a handler"));
    call(
        &app,
        Some(&a),
        &Method::GET,
        "/api/v1/executions?handler=team-b-orders",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn readiness_details_need_ops_read() {
    let app = secured().await;
    let anonymous = app.get("/readyz").await;
    anonymous.assert_status(StatusCode::OK);
    assert_eq!(anonymous.json(), json!({"ready": true}));
    let root = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let detailed = call(&app, Some(&root), &Method::GET, "/readyz", &json!({})).await;
    detailed.assert_status(StatusCode::OK);
    assert!(detailed.json()["checks"].is_object(), "{}", detailed.text());
}

#[tokio::test]
async fn without_authentication_the_user_header_names_the_author() {
    let app = TestApp::new().await;
    let response = app
        .call(
            Request::post("/api/v1/packages")
                .header("x-fx-user", "ci-bot")
                .body(Body::from(package("hello", "1.0.0")))
                .unwrap(),
        )
        .await;
    response.assert_status(StatusCode::CREATED);
    assert_eq!(response.json()["uploaded_by"], "ci-bot");
}

#[tokio::test]
async fn accounts_tokens_and_rules_are_managed_over_the_api_and_audited() {
    let app = secured().await;
    let root = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let post = |uri: &'static str, body: Value| {
        let (app, root) = (&app, &root);
        async move { call(app, Some(root), &Method::POST, uri, &body).await }
    };

    // A service account for a producer, its rule and its token.
    post(
        "/api/v1/accounts",
        json!({"name": "shop", "kind": "service_account", "display_name": "the shop"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    post(
        "/api/v1/accounts",
        json!({"name": "shop", "kind": "service_account"}),
    )
    .await
    .assert_status(StatusCode::CONFLICT);
    post(
        "/api/v1/rules",
        json!({"subject": "service:shop", "grant": {"role": "producer"}, "pattern": "com.shop.*"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let made = post(
        "/api/v1/accounts/shop/tokens",
        json!({"name": "prod", "expires_in_days": 30}),
    )
    .await;
    made.assert_status(StatusCode::CREATED);
    let shop = made.json()["token"].as_str().unwrap().to_string();
    assert!(
        made.json()["record"].get("secret_hash").is_none(),
        "{}",
        made.text()
    );

    // The producer may emit its own events and nothing else.
    let event = |ty: &str| {
        Request::post("/events")
            .header(header::AUTHORIZATION, format!("Bearer {shop}"))
            .header("ce-specversion", "1.0")
            .header("ce-id", "e-1")
            .header("ce-source", "/shop")
            .header("ce-type", ty)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap()
    };
    app.call(event("com.shop.order"))
        .await
        .assert_status(StatusCode::ACCEPTED);
    app.call(event("com.bank.transfer"))
        .await
        .assert_status(StatusCode::FORBIDDEN);
    call(
        &app,
        Some(&shop),
        &Method::GET,
        "/api/v1/handlers",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    let me = call(&app, Some(&shop), &Method::GET, "/api/v1/me", &json!({})).await;
    me.assert_status(StatusCode::OK);
    assert_eq!(me.json()["principal"], "service:shop");
    assert_eq!(me.json()["rules"].as_array().unwrap().len(), 1);

    // A user with a password (never answered) makes and revokes her own tokens.
    let alice = post(
        "/api/v1/accounts",
        json!({"name": "alice", "password": "correct horse battery", "groups": ["ops"]}),
    )
    .await;
    alice.assert_status(StatusCode::CREATED);
    assert!(!alice.text().contains("argon2"), "{}", alice.text());
    post(
        "/api/v1/accounts",
        json!({"name": "bob", "password": "short"}),
    )
    .await
    .assert_status(StatusCode::BAD_REQUEST);
    post(
        "/api/v1/rules",
        json!({"subject": "group:ops", "grant": {"role": "operator"}, "pattern": "*"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    let alice_token = post("/api/v1/accounts/alice/tokens", json!({"name": "laptop"}))
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let own = call(
        &app,
        Some(&alice_token),
        &Method::POST,
        "/api/v1/tokens",
        &json!({"name": "ci", "scope": {"actions": ["execution:read"]}}),
    )
    .await;
    own.assert_status(StatusCode::CREATED);
    let ci_id = own.json()["record"]["id"].as_str().unwrap().to_string();
    let listed = call(
        &app,
        Some(&alice_token),
        &Method::GET,
        "/api/v1/tokens",
        &json!({}),
    )
    .await;
    assert_eq!(listed.json().as_array().unwrap().len(), 2);
    assert!(!listed.text().contains("secret_hash"));
    // Not her token: shop's.
    let shop_id = Token::parse(&shop).unwrap().id().to_string();
    call(
        &app,
        Some(&alice_token),
        &Method::DELETE,
        &format!("/api/v1/tokens/{shop_id}"),
        &json!({}),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    call(
        &app,
        Some(&alice_token),
        &Method::DELETE,
        &format!("/api/v1/tokens/{ci_id}"),
        &json!({}),
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    // The operator reads the audit log; a producer may not.
    call(&app, Some(&shop), &Method::GET, "/api/v1/audit", &json!({}))
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let log = call(
        &app,
        Some(&alice_token),
        &Method::GET,
        "/api/v1/audit?limit=500",
        &json!({}),
    )
    .await;
    log.assert_status(StatusCode::OK);
    let entries = log.json()["items"].as_array().unwrap().clone();
    let find = |principal: &str, action: &str, outcome: &str| {
        entries.iter().any(|e| {
            e["principal"] == principal && e["action"] == action && e["outcome"] == outcome
        })
    };
    assert!(find("user:root", "user:admin", "ok"), "{entries:#?}");
    // Accepted events are traffic, not changes: only the refused one is recorded.
    assert!(!find("service:shop", "event:emit", "ok"));
    assert!(find("service:shop", "event:emit", "denied"));
    assert!(find("user:alice", "POST /api/v1/tokens", "ok"));
    assert!(find("user:alice", "DELETE /api/v1/tokens/{id}", "denied"));
    assert!(entries
        .iter()
        .any(|e| e["resource"].as_str().unwrap().starts_with("rule ")));
    // No secret in the log: neither a token nor a password.
    let text = log.text();
    assert!(!text.contains(&shop) && !text.contains(&alice_token[4..]));
    assert!(!text.contains("correct horse"));
    // Reads are not audited.
    assert!(!entries.iter().any(|e| e["action"] == "handler:read"));
}

#[tokio::test]
async fn a_flood_of_bad_tokens_does_not_grow_the_audit_log_without_bound() {
    let app = secured().await;
    let bogus = Token::generate().unwrap().reveal();
    for _ in 0..100 {
        call(
            &app,
            Some(&bogus),
            &Method::POST,
            "/api/v1/handlers",
            &json!({}),
        )
        .await
        .assert_status(StatusCode::UNAUTHORIZED);
    }
    let page = app
        .backends
        .identity
        .audit(&fx_core::identity::AuditQuery {
            principal: Some("anonymous".into()),
            limit: Some(500),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.items.len() as u64,
        crate::auth::audit::MAX_UNAUTHENTICATED_PER_MINUTE
    );
}

#[tokio::test]
async fn the_first_admin_comes_from_the_bootstrap_password_and_signs_in() {
    let app = secured().await;
    let store = app.backends.identity.clone();
    let mut settings = AuthSettings {
        enabled: true,
        ..AuthSettings::default()
    };
    let err = crate::auth::bootstrap(&settings, store.as_ref())
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("bootstrap_password_file"),
        "{err:#}"
    );
    assert!(!format!("{settings:?}").contains("hunter"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "correct horse battery staple\n").unwrap();
    settings.bootstrap_password_file = Some(file);
    crate::auth::bootstrap(&settings, store.as_ref())
        .await
        .unwrap();
    // Once an account exists, nothing more is made.
    settings.bootstrap_password = Some("another password entirely".into());
    assert!(!format!("{settings:?}").contains("another password"));
    crate::auth::bootstrap(&settings, store.as_ref())
        .await
        .unwrap();
    assert_eq!(store.accounts().await.unwrap().len(), 1);
    app.state_auth_invalidate();

    let sign_in = |name: &str, password: &str| {
        let app = &app;
        let body = json!({"name": name, "password": password});
        async move { call(app, None, &Method::POST, "/api/v1/login", &body).await }
    };
    for (name, password) in [
        ("admin", "another password entirely"),
        ("admin", ""),
        ("nobody", "correct horse battery staple"),
    ] {
        let refused = sign_in(name, password).await;
        refused.assert_status(StatusCode::UNAUTHORIZED);
        assert_eq!(refused.error_message(), "wrong account name or password");
    }
    let signed_in = sign_in("admin", "correct horse battery staple").await;
    signed_in.assert_status(StatusCode::CREATED);
    let token = signed_in.json()["token"].as_str().unwrap().to_string();
    let accounts = call(
        &app,
        Some(&token),
        &Method::GET,
        "/api/v1/accounts",
        &json!({}),
    )
    .await;
    accounts.assert_status(StatusCode::OK);
    assert_eq!(accounts.json()[0]["name"], "admin");
    assert!(!accounts.text().contains("argon2"));

    // A disabled account and a service account cannot sign in.
    call(
        &app,
        Some(&token),
        &Method::POST,
        "/api/v1/accounts",
        &json!({"name": "ci", "kind": "service_account"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    sign_in("ci", "")
        .await
        .assert_status(StatusCode::UNAUTHORIZED);

    let log = store
        .audit(&fx_core::identity::AuditQuery {
            action: Some("login".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let outcomes: Vec<(&str, &str)> = log
        .items
        .iter()
        .map(|e| (e.principal.as_str(), e.outcome.name()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("user:ci", "denied"),
            ("user:admin", "ok"),
            ("user:nobody", "denied"),
            ("user:admin", "denied"),
            ("user:admin", "denied"),
        ]
    );
    assert!(!format!("{:?}", log.items).contains("correct horse"));
}

/// The session cookies a sign-in set, as a `Cookie` header, and the CSRF token.
fn session_of(response: &TestResponse) -> (String, String) {
    let mut cookies = Vec::new();
    let mut csrf = String::new();
    for value in response.headers.get_all(header::SET_COOKIE) {
        let text = value.to_str().unwrap();
        let pair = text.split(';').next().unwrap().to_string();
        if let Some(token) = pair.strip_prefix("fx_csrf=") {
            csrf = token.to_string();
        }
        cookies.push(pair);
    }
    (cookies.join("; "), csrf)
}

/// A browser's request: with the session cookie, from `origin`, a form body.
fn browser(
    method: Method,
    uri: &str,
    cookie: &str,
    origin: Option<&str>,
    form: &str,
) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "fx.example.com")
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    request.body(Body::from(form.to_string())).unwrap()
}

#[tokio::test]
async fn the_web_ui_signs_in_with_a_session_cookie_and_refuses_forged_forms() {
    let app = secured().await;
    let store = app.backends.identity.clone();
    let settings = AuthSettings {
        enabled: true,
        bootstrap_password: Some("correct horse battery staple".into()),
        ..AuthSettings::default()
    };
    crate::auth::bootstrap(&settings, store.as_ref())
        .await
        .unwrap();
    app.state_auth_invalidate();
    let site = Some("https://fx.example.com");

    // The sign-in page; a wrong password shows it again.
    let page = app.get("/login?next=/handlers").await;
    page.assert_status(StatusCode::OK);
    assert!(page.text().contains("name=\"password\""));
    assert!(page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");
    let wrong = app
        .call(browser(
            Method::POST,
            "/login",
            "",
            site,
            "name=admin&password=nope&next=%2Fhandlers",
        ))
        .await;
    wrong.assert_status(StatusCode::UNAUTHORIZED);
    assert!(wrong.text().contains("Wrong account name or password"));
    // A sign-in form posted from another site is refused.
    let forged = app
        .call(browser(
            Method::POST,
            "/login",
            "",
            Some("https://evil.example"),
            "name=admin&password=correct+horse+battery+staple",
        ))
        .await;
    forged.assert_status(StatusCode::FORBIDDEN);

    // Signing in sets the cookies and goes on to `next` (never to another site).
    let signed_in = app
        .call(browser(
            Method::POST,
            "/login",
            "",
            site,
            "name=admin&password=correct+horse+battery+staple&next=%2F%2Fevil.example",
        ))
        .await;
    signed_in.assert_status(StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers[header::LOCATION], "/");
    let set: Vec<&str> = signed_in
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        set.iter().any(|c| c.starts_with("fx_session=fxt_")
            && c.contains("HttpOnly")
            && c.contains("SameSite=Lax")),
        "{set:?}"
    );
    let (cookie, csrf) = session_of(&signed_in);
    assert_eq!(csrf.len(), 32);

    let handlers = app
        .call(browser(Method::GET, "/handlers", &cookie, None, ""))
        .await;
    handlers.assert_status(StatusCode::OK);

    // A change without the CSRF token, or from another site, is refused.
    let toggle = "/handlers/nosuch/toggle";
    let missing = app
        .call(browser(Method::POST, toggle, &cookie, site, "x=1"))
        .await;
    missing.assert_status(StatusCode::FORBIDDEN);
    assert!(missing.text().contains("CSRF"), "{}", missing.text());
    let wrong_token = app
        .call(browser(
            Method::POST,
            toggle,
            &cookie,
            site,
            "_csrf=00000000000000000000000000000000",
        ))
        .await;
    wrong_token.assert_status(StatusCode::FORBIDDEN);
    let cross_site = app
        .call(browser(
            Method::POST,
            toggle,
            &cookie,
            Some("https://evil.example"),
            &format!("_csrf={csrf}"),
        ))
        .await;
    cross_site.assert_status(StatusCode::FORBIDDEN);
    let no_origin = app
        .call(browser(
            Method::POST,
            toggle,
            &cookie,
            None,
            &format!("_csrf={csrf}"),
        ))
        .await;
    no_origin.assert_status(StatusCode::FORBIDDEN);
    // With both, the handler runs (and finds no such handler).
    let allowed = app
        .call(browser(
            Method::POST,
            toggle,
            &cookie,
            site,
            &format!("_csrf={csrf}"),
        ))
        .await;
    allowed.assert_status(StatusCode::NOT_FOUND);
    let mut by_header = browser(Method::POST, toggle, &cookie, site, "");
    by_header
        .headers_mut()
        .insert("x-csrf-token", csrf.parse().unwrap());
    app.call(by_header)
        .await
        .assert_status(StatusCode::NOT_FOUND);
    // A form the handler parses strictly gets its body without the token.
    let signed = call(
        &app,
        None,
        &Method::POST,
        "/api/v1/login",
        &json!({"name": "admin", "password": "correct horse battery staple"}),
    )
    .await;
    let admin = signed.json()["token"].as_str().unwrap().to_string();
    upload_as(&app, &admin, "hello", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    let moved = app
        .call(browser(
            Method::POST,
            "/packages/hello/aliases",
            &cookie,
            site,
            &format!("alias=latest&version=1.0.0&_csrf={csrf}"),
        ))
        .await;
    moved.assert_status(StatusCode::SEE_OTHER);

    // Signing out revokes the session: the cookie no longer opens a page.
    let out = app
        .call(browser(
            Method::POST,
            "/logout",
            &cookie,
            site,
            &format!("_csrf={csrf}"),
        ))
        .await;
    out.assert_status(StatusCode::SEE_OTHER);
    assert!(out
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("fx_session=;")));
    let after = app
        .call(browser(Method::GET, "/handlers", &cookie, None, ""))
        .await;
    after.assert_status(StatusCode::SEE_OTHER);
    let log = store
        .audit(&fx_core::identity::AuditQuery::default())
        .await
        .unwrap();
    let actions: Vec<(&str, &str)> = log
        .items
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.name()))
        .collect();
    assert!(actions.contains(&("logout", "ok")), "{actions:?}");
    assert!(actions.contains(&("login", "denied")), "{actions:?}");
    assert!(
        actions.contains(&("handler:write", "denied")),
        "{actions:?}"
    );
}

#[tokio::test]
async fn without_authentication_the_server_listens_on_loopback_only() {
    let app = TestApp::new().await;
    let state = AppState::new(app.backends.clone(), open());
    let outside = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = crate::serve(outside, state.clone(), Default::default())
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("listens beyond this machine"),
        "{err:#}"
    );
    // On loopback it serves (until told to stop).
    let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    crate::serve(local, state, stop).await.unwrap();
}

#[tokio::test]
async fn the_audit_page_lists_changes_for_those_allowed_to_read_it() {
    let app = TestApp::with_settings(ServerSettings {
        page_size: 2,
        ..secure_settings()
    })
    .await;
    let root = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let viewer = user(&app, "vera", &[(Grant::Role(Role::Viewer), "*")]).await;
    upload_as(&app, &root, "payments", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    upload_as(&app, &viewer, "payments", "2.0.0")
        .await
        .assert_status(StatusCode::FORBIDDEN);
    call(
        &app,
        Some(&root),
        &Method::POST,
        "/api/v1/handlers",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::BAD_REQUEST);

    let page = call(&app, Some(&root), &Method::GET, "/audit", &json!({})).await;
    page.assert_status(StatusCode::OK);
    let text = page.text();
    assert_eq!(text.matches("<tr data-outcome=").count(), 2, "a page of 2");
    assert!(text.contains("older »"), "{text}");
    let denied = call(
        &app,
        Some(&root),
        &Method::GET,
        "/audit?outcome=denied&principal=user%3Avera",
        &json!({}),
    )
    .await;
    let text = denied.text();
    assert_eq!(
        text.matches("<tr data-outcome=\"denied\"").count(),
        1,
        "{text}"
    );
    assert!(text.contains("package:upload") && text.contains("/api/v1/packages"));
    call(&app, Some(&viewer), &Method::GET, "/audit", &json!({}))
        .await
        .assert_status(StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_stale_token_does_not_fail_public_routes() {
    let app = secured().await;
    let stale = Token::generate().unwrap().reveal();
    for uri in ["/healthz", "/readyz", "/login"] {
        call(&app, Some(&stale), &Method::GET, uri, &json!({}))
            .await
            .assert_status(StatusCode::OK);
    }
    // Signing in with a stale token still in the client's headers works.
    crate::auth::bootstrap(
        &AuthSettings {
            bootstrap_password: Some("correct horse battery staple".into()),
            ..AuthSettings::default()
        },
        app.backends.identity.as_ref(),
    )
    .await
    .unwrap();
    call(
        &app,
        Some(&stale),
        &Method::POST,
        "/api/v1/login",
        &json!({"name": "admin", "password": "correct horse battery staple"}),
    )
    .await
    .assert_status(StatusCode::CREATED);
    // Elsewhere it is refused.
    call(
        &app,
        Some(&stale),
        &Method::GET,
        "/api/v1/handlers",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_admin_gives_a_package_to_a_group_whose_members_may_then_upload() {
    let app = secured().await;
    let root = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let alice = user(&app, "alice", &[(Grant::Role(Role::Developer), "*")]).await;
    upload_as(&app, &alice, "payments", "1.0.0")
        .await
        .assert_status(StatusCode::CREATED);
    // Bob, in group payments, may not yet.
    let bob = user(&app, "bob", &[(Grant::Role(Role::Developer), "*")]).await;
    let mut account = app.backends.identity.account("bob").await.unwrap().unwrap();
    account.groups = vec!["payments".into()];
    app.backends
        .identity
        .update_account(&account)
        .await
        .unwrap();
    app.state_auth_invalidate();
    upload_as(&app, &bob, "payments", "1.1.0")
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let owner = call(
        &app,
        Some(&bob),
        &Method::GET,
        "/api/v1/packages/payments/owner",
        &json!({}),
    )
    .await;
    assert_eq!(owner.json()["owner"], "user:alice");
    // Only an admin gives it away.
    call(
        &app,
        Some(&alice),
        &Method::PUT,
        "/api/v1/packages/payments/owner",
        &json!({"owner": "group:payments"}),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    call(
        &app,
        Some(&root),
        &Method::PUT,
        "/api/v1/packages/payments/owner",
        &json!({"owner": "group:payments"}),
    )
    .await
    .assert_status(StatusCode::OK);
    upload_as(&app, &bob, "payments", "1.1.0")
        .await
        .assert_status(StatusCode::CREATED);
    // Alice, no longer the owner nor in the group, may not.
    upload_as(&app, &alice, "payments", "1.2.0")
        .await
        .assert_status(StatusCode::FORBIDDEN);
    call(
        &app,
        Some(&root),
        &Method::PUT,
        "/api/v1/packages/payments/owner",
        &json!({"owner": "nobody"}),
    )
    .await
    .assert_status(StatusCode::BAD_REQUEST);
}
