//! Notifications out, end to end: a failing function's execution is told to a local HTTP
//! receiver with a valid signature (checked here with our own HMAC, not the platform's code),
//! retried after the receiver's first `500`, every attempt visible through the API; a
//! succeeded one goes to a CloudEvents sink. On `ferrisfx dev`, and on Kafka + PostgreSQL
//! with the sender in the server and the outbox written by the gateway's state router.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use fx_core::testenv;
use fx_core::testsupport::{poll_until, unique};
use fx_tests::processes::Deployment;
use fx_tests::Api;
use ring::hmac;
use serde_json::{json, Value};

/// The receiver's signing secret, in platform secret `alerts`.
const SECRET: &str = "notify-e2e-5e3c1a";

/// One request the receiver took: its path, headers (lowercase names) and JSON body, and
/// whether its signature checked out.
#[derive(Debug, Clone)]
struct Taken {
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
    signed: bool,
}

#[derive(Clone, Default)]
struct Receiver {
    taken: Arc<Mutex<Vec<Taken>>>,
    /// Requests to answer 500 before answering 200.
    fail_first: Arc<Mutex<usize>>,
}

/// Checks `X-FerrisFX-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`.
fn signature_ok(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(value) = headers
        .get("x-ferrisfx-signature")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in value.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_string()),
            Some(("v1", x)) => v1 = Some(x.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let fresh = t
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
    let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
    let mac: Vec<u8> = (0..v1.len() / 2)
        .filter_map(|i| u8::from_str_radix(v1.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let mut signed = t.clone().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(body);
    fresh && hmac::verify(&key, &signed, &mac).is_ok()
}

async fn receiver() -> (String, Receiver) {
    let state = Receiver::default();
    async fn take(
        State(state): State<Receiver>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        let signed = signature_ok(&headers, &body);
        let taken = Taken {
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                .collect(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            signed,
        };
        state.taken.lock().unwrap().push(taken);
        let mut fail = state.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }
    let app = axum::Router::new()
        .route("/{*path}", post(take))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

impl Receiver {
    /// Waits until `count` requests came on `path`; answers them.
    async fn wait(&self, path: &str, count: usize) -> Vec<Taken> {
        poll_until(
            &format!("the receiver takes {count} requests on {path}"),
            Duration::from_secs(90),
            Duration::from_millis(50),
            || async {
                let on: Vec<Taken> = self
                    .taken
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|t| t.path == path)
                    .cloned()
                    .collect();
                if on.len() >= count {
                    Ok(on)
                } else {
                    Err(format!("{} so far: {on:?}", on.len()))
                }
            },
        )
        .await
    }
}

fn header<'a>(taken: &'a Taken, name: &str) -> Option<&'a str> {
    taken
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Sets secret `alerts`, uploads `misbehave` and `hello`, creates handler `flaky` (fails every
/// time) and `greeter`, and the two rules: `oncall` (flaky's failures, signed, to
/// `<receiver>/hook`) and `audit` (every success, as a CloudEvent to `<receiver>/sink`).
async fn setup(api: &Api, receiver: &str) {
    let (status, v) = api
        .put_json("/api/v1/secrets/alerts", &json!({ "value": SECRET }))
        .await;
    assert_eq!(status, 201, "{v}");
    api.upload_example("misbehave").await;
    api.upload_example("hello").await;
    for (name, package, ty) in [
        ("flaky", "misbehave", "fx.test.error"),
        ("greeter", "hello", "com.example.hello"),
    ] {
        api.handler(name, package, ty, json!({})).await;
    }
    let oncall = json!({
        "name": "oncall",
        "description": "page someone",
        "handlers": ["flaky"],
        "on": ["failed", "dead_lettered"],
        "target": {"kind": "webhook", "url": format!("{receiver}/hook"), "secret": "alerts"},
        "max_attempts": 3,
    });
    // Refused with the reason: a secret that does not exist, an outcome that is not one.
    let mut bad = oncall.clone();
    bad["target"]["secret"] = json!("nope");
    let (status, v) = api.post_json("/api/v1/notifications", &bad).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("does not exist"), "{v}");
    let mut bad = oncall.clone();
    bad["on"] = json!(["exploded"]);
    let (status, v) = api.post_json("/api/v1/notifications", &bad).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = api.post_json("/api/v1/notifications", &oncall).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = api
        .post_json(
            "/api/v1/notifications",
            &json!({
                "name": "audit",
                "handlers": ["*"],
                "on": ["succeeded"],
                "target": {"kind": "cloudevent", "url": format!("{receiver}/sink")},
            }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_function_is_told_signed_retried_after_a_500_and_a_success_goes_to_a_sink() {
    let (base, receiver) = receiver().await;
    *receiver.fail_first.lock().unwrap() = 1;
    let dir = tempfile::tempdir().unwrap();
    let mut d = Deployment::new(dir.path(), "");
    d.start("dev", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    setup(&api, &base).await;

    api.emit("boom-1", "fx.test.error", json!({})).await;
    let failed = api.wait_finished("flaky", 1, Duration::from_secs(60)).await;
    let execution_id = failed[0]["execution"]["id"].as_str().unwrap().to_string();
    // One notification per rule and execution, with the most specific outcome the rule
    // wants (dead-lettered says failed too); the first request got a 500 and was retried.
    let taken = receiver.wait("/hook", 2).await;
    assert!(
        taken.iter().all(|t| t.signed),
        "a bad signature: {taken:#?}"
    );
    assert!(
        taken.iter().all(|t| t.body["outcome"] == "dead_lettered"),
        "{taken:#?}"
    );
    for t in &taken {
        assert_eq!(t.body["execution_id"], execution_id.as_str(), "{t:?}");
        assert_eq!(t.body["handler"], "flaky");
        assert_eq!(t.body["rule"], "oncall");
        assert_eq!(t.body["event"]["id"], "boom-1");
        assert!(
            t.body["error"]
                .as_str()
                .unwrap()
                .contains("requested failure"),
            "{t:?}"
        );
        assert!(
            t.body["url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/executions/{execution_id}")),
            "{t:?}"
        );
    }
    // Every attempt is visible, with the 500 of the first.
    let seen = poll_until(
        "the notification is delivered",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let (status, v) = api
                .get(&format!("/api/v1/executions/{execution_id}/notifications"))
                .await;
            assert_eq!(status, 200, "{v}");
            let all = v["notifications"].as_array().unwrap().clone();
            if all.len() == 1 && all[0]["status"] == "delivered" {
                Ok(all)
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
    let retried = &seen[0];
    assert_eq!(
        retried["attempts"].as_array().unwrap().len(),
        2,
        "{seen:#?}"
    );
    assert_eq!(retried["outcome"], "dead_lettered", "{retried}");
    assert!(
        retried["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{retried}"
    );
    assert_eq!(retried["attempts"][1]["status_code"], 200, "{retried}");

    // A success goes to the sink as a CloudEvent; the failure did not.
    api.emit("hi-1", "com.example.hello", json!({"name": "ops"}))
        .await;
    let sink = receiver.wait("/sink", 1).await;
    assert_eq!(
        header(&sink[0], "ce-type"),
        Some("com.ferrisfx.execution.succeeded"),
        "{sink:?}"
    );
    assert_eq!(header(&sink[0], "ce-specversion"), Some("1.0"));
    assert_eq!(header(&sink[0], "ce-subject"), Some("greeter"));
    assert_eq!(sink[0].body["handler"], "greeter");
    // Nothing more arrives: each notification was sent once it was delivered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.wait("/hook", 2).await.len(), 2);
    assert_eq!(receiver.wait("/sink", 1).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_kafka_and_postgres_the_gateway_records_and_the_server_sends() {
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "notifications over Kafka") else {
        return;
    };
    let Some(postgres) = testenv::backend("FX_TEST_POSTGRES", "notifications over Kafka") else {
        return;
    };
    let (base, receiver) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let run = unique("fxnotify").replace('-', "");
    let toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\npartitions = 1\nsession_timeout_ms = 6000\n\n[backends.state]\nkind = \"postgres\"\nurl = \"{postgres}\"\nschema = \"{run}\"\n\n"
    );
    let mut d = Deployment::new(dir.path(), &toml);
    let keyring = fx_core::secrets::Keyring::generate_line("e2e1").unwrap();
    d.start_with_env("server", &[], &[("FX_SECRETS_KEY", &keyring)]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    setup(&api, &base).await;
    d.start("gateway", &[]);
    d.start("executor", &[]);

    api.emit("boom-k", "fx.test.error", json!({})).await;
    let taken = receiver.wait("/hook", 1).await;
    assert!(taken.iter().all(|t| t.signed), "{taken:#?}");
    assert!(
        taken.iter().all(|t| t.body["event"]["id"] == "boom-k"),
        "{taken:#?}\n{}",
        d.all_logs()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.wait("/hook", 1).await.len(), 1, "sent twice");
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}
