//! Platform secrets over the API: written, never read back; delivered only to a pool's
//! executors; never in an answer, the audit log or a log line.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use fx_core::identity::{Action, Grant, PrincipalKind, Role, Scope};
use fx_core::secrets::Keyring;
use serde_json::json;

use super::auth::{account_token, call, secured, user};
use super::*;

const CANARY: &str = "canary-7f3a91c2-never-shown";

fn keyring() -> Keyring {
    Keyring::parse(&Keyring::generate_line("k1").unwrap()).unwrap()
}

/// Every log line this test binary writes, at every level. Installed as the global
/// subscriber once: a thread-scoped one misses events whose callsites another test thread
/// registered first (tracing caches their interest).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The capture, installed on first use.
    fn global() -> &'static Captured {
        static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
        CAPTURED.get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .try_init()
                .expect("no other global subscriber in this test binary");
            captured
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn secrets_are_written_listed_delivered_per_pool_and_never_shown() {
    let logs = Captured::global();

    let app = secured().await.with_keyring(keyring());
    let admin = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let mut answers = String::new();
    let put = |token: String, name: &'static str, body: serde_json::Value| {
        let app = &app;
        async move {
            call(
                app,
                Some(&token),
                &Method::PUT,
                &format!("/api/v1/secrets/{name}"),
                &body,
            )
            .await
        }
    };

    // Created, then changed: metadata only.
    let created = put(admin.clone(), "db-password", json!({"value": CANARY})).await;
    created.assert_status(StatusCode::CREATED);
    answers.push_str(&created.text());
    assert_eq!(created.json()["pools"], json!(["default"]));
    assert_eq!(created.json()["version"], 1);
    assert_eq!(created.json()["key_id"], "k1");
    assert!(created.json().get("value").is_none());
    let changed = put(
        admin.clone(),
        "db-password",
        json!({"value": format!("{CANARY}-2"), "pools": ["default", "gpu"]}),
    )
    .await;
    changed.assert_status(StatusCode::OK);
    assert_eq!(changed.json()["version"], 2);
    answers.push_str(&changed.text());
    put(
        admin.clone(),
        "gpu-token",
        json!({"value": CANARY, "pools": ["gpu"]}),
    )
    .await
    .assert_status(StatusCode::CREATED);

    // A malformed body is refused without quoting it.
    let bad = put(admin.clone(), "x", json!({"value": "v", "pools": CANARY})).await;
    bad.assert_status(StatusCode::BAD_REQUEST);
    answers.push_str(&bad.text());
    let bad = put(admin.clone(), "x", json!({"valeu": CANARY})).await;
    bad.assert_status(StatusCode::BAD_REQUEST);
    answers.push_str(&bad.text());

    let listed = call(
        &app,
        Some(&admin),
        &Method::GET,
        "/api/v1/secrets",
        &json!({}),
    )
    .await;
    listed.assert_status(StatusCode::OK);
    answers.push_str(&listed.text());
    let names: Vec<String> = listed.json()["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["db-password", "gpu-token"]);
    assert_eq!(listed.json()["keys"], json!(["k1"]));

    // A developer lists what it may grant, and writes nothing.
    let dev = user(&app, "dana", &[(Grant::Role(Role::Developer), "db-*")]).await;
    let seen = call(
        &app,
        Some(&dev),
        &Method::GET,
        "/api/v1/secrets",
        &json!({}),
    )
    .await;
    seen.assert_status(StatusCode::OK);
    let names: Vec<String> = seen.json()["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["db-password"]);
    put(dev.clone(), "db-password", json!({"value": "mine"}))
        .await
        .assert_status(StatusCode::FORBIDDEN);
    let viewer = user(&app, "vera", &[(Grant::Role(Role::Viewer), "*")]).await;
    call(
        &app,
        Some(&viewer),
        &Method::GET,
        "/api/v1/secrets",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);

    // Writing a secret for a pool needs pool:use on it.
    let writer = user(
        &app,
        "wade",
        &[
            (Grant::Action(Action::SecretWrite), "team-*"),
            (Grant::Action(Action::PoolUse), "default"),
        ],
    )
    .await;
    put(writer.clone(), "team-key", json!({"value": "v"}))
        .await
        .assert_status(StatusCode::CREATED);
    let refused = put(
        writer.clone(),
        "team-key",
        json!({"value": "v", "pools": ["gpu"]}),
    )
    .await;
    refused.assert_status(StatusCode::FORBIDDEN);
    assert!(refused.text().contains("pool:use"), "{}", refused.text());
    put(
        writer.clone(),
        "team-key",
        json!({"value": "v", "pools": ["*"]}),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);

    // Delivery: the gpu pool's service account gets the gpu pool's values, nothing else.
    let gpu = account_token(
        &app,
        PrincipalKind::ServiceAccount,
        "executor-gpu",
        &[(Grant::Action(Action::SecretDeliver), "gpu")],
        Scope::default(),
    )
    .await;
    let delivered = call(
        &app,
        Some(&gpu),
        &Method::GET,
        "/api/v1/pools/gpu/secrets",
        &json!({}),
    )
    .await;
    delivered.assert_status(StatusCode::OK);
    assert_eq!(delivered.headers["cache-control"], "no-store");
    assert_eq!(
        delivered.json(),
        json!({"pool": "gpu", "secrets": {"db-password": format!("{CANARY}-2"), "gpu-token": CANARY}})
    );
    call(
        &app,
        Some(&gpu),
        &Method::GET,
        "/api/v1/pools/default/secrets",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::FORBIDDEN);
    // An admin, and a user given the action by a rule, are refused: values are for executors.
    let nosy = user(&app, "nosy", &[(Grant::Action(Action::SecretDeliver), "*")]).await;
    for token in [&admin, &nosy, &dev] {
        let answer = call(
            &app,
            Some(token),
            &Method::GET,
            "/api/v1/pools/gpu/secrets",
            &json!({}),
        )
        .await;
        answer.assert_status(StatusCode::FORBIDDEN);
        answers.push_str(&answer.text());
    }
    call(
        &app,
        None,
        &Method::GET,
        "/api/v1/pools/gpu/secrets",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::UNAUTHORIZED);

    // Re-seal and delete.
    let rekeyed = call(
        &app,
        Some(&admin),
        &Method::POST,
        "/api/v1/secrets/rekey",
        &json!({}),
    )
    .await;
    rekeyed.assert_status(StatusCode::OK);
    assert_eq!(rekeyed.json(), json!({"resealed": 0, "key_id": "k1"}));
    call(
        &app,
        Some(&admin),
        &Method::DELETE,
        "/api/v1/secrets/gpu-token",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    call(
        &app,
        Some(&admin),
        &Method::DELETE,
        "/api/v1/secrets/gpu-token",
        &json!({}),
    )
    .await
    .assert_status(StatusCode::NOT_FOUND);

    // Every change is in the audit log, without its value.
    let audit = call(
        &app,
        Some(&admin),
        &Method::GET,
        "/api/v1/audit?action=secret:",
        &json!({}),
    )
    .await;
    audit.assert_status(StatusCode::OK);
    answers.push_str(&audit.text());
    let resources: Vec<String> = audit.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("{} {} {}", i["action"], i["resource"], i["outcome"]))
        .collect();
    assert!(
        resources
            .iter()
            .any(|r| r.contains("secret db-password v2")),
        "{resources:?}"
    );
    assert!(
        resources
            .iter()
            .any(|r| r.contains("secret:write") && r.contains("secret gpu-token")),
        "{resources:?}"
    );

    let logged = logs.text();
    assert!(
        logged.contains("secret written"),
        "the capture saw no log line: {logged}"
    );
    // The delivery answer is the one place a value goes out.
    assert!(
        !answers.contains(CANARY),
        "a value in an API answer: {answers}"
    );
    assert!(!logged.contains(CANARY), "a value in a log line: {logged}");
}

#[tokio::test]
async fn without_a_keyring_secrets_say_how_to_configure_them() {
    let app = secured().await;
    let admin = user(&app, "root", &[(Grant::Role(Role::Admin), "*")]).await;
    let answer = call(
        &app,
        Some(&admin),
        &Method::PUT,
        "/api/v1/secrets/db-password",
        &json!({"value": "v"}),
    )
    .await;
    answer.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.error_message().contains("server.secrets.key_file"));
    let listed = call(
        &app,
        Some(&admin),
        &Method::GET,
        "/api/v1/secrets",
        &json!({}),
    )
    .await;
    listed.assert_status(StatusCode::OK);
    assert_eq!(listed.json(), json!({"secrets": [], "keys": []}));
}

#[tokio::test]
async fn with_authentication_off_values_are_delivered_to_nobody() {
    let app = TestApp::new().await.with_keyring(keyring());
    app.state
        .vault
        .set(
            "db-password",
            &fx_core::secrets::SecretValue::new("v").unwrap(),
            vec!["default".into()],
            "local",
        )
        .await
        .unwrap();
    let answer = call(
        &app,
        None,
        &Method::GET,
        "/api/v1/pools/default/secrets",
        &json!({}),
    )
    .await;
    answer.assert_status(StatusCode::FORBIDDEN);
    assert!(answer.error_message().contains("server.auth.enabled"));
}
