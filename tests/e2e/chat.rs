//! Chat commands end to end on `ferrisfx dev`: a Slack slash command and an app mention,
//! signed as Slack signs them, run the handler their bundle names and get the function's
//! output as the reply on a local double of Slack's endpoints (`response_url` and
//! `chat.postMessage`, built from Slack's documented formats); help, usage, refusals and
//! forged requests are answered at once and run nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use fx_core::testenv;
use fx_core::testsupport::{poll_until, unique};
use fx_tests::processes::Deployment;
use fx_tests::Api;
use ring::hmac;
use serde_json::{json, Value};

/// The Slack app's signing secret (Slack's documentation's example value).
const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// The app's bot token.
const BOT_TOKEN: &str = "xoxb-e2e-0123456789";

/// What the double received: path, `Authorization` header, JSON body.
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

/// Starts the Slack double: every POST is recorded and answered as Slack does (`ok` for the
/// Web API, `200` for a `response_url`). Answers its base URL.
async fn slack_double() -> (String, Received) {
    let received: Received = Arc::default();
    async fn take(
        State(received): State<Received>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: String,
    ) -> axum::Json<Value> {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
        received
            .lock()
            .unwrap()
            .push((uri.path().to_string(), auth, body));
        axum::Json(json!({"ok": true}))
    }
    let app = axum::Router::new()
        .route("/{*path}", post(take))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, received)
}

/// Slack's signature headers for `body` at `timestamp`.
fn signed(body: &[u8], timestamp: i64, secret: &str) -> Vec<(String, String)> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(format!("v0:{timestamp}:").as_bytes());
    ctx.update(body);
    let mac: String = ctx
        .sign()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    vec![
        ("X-Slack-Request-Timestamp".into(), timestamp.to_string()),
        ("X-Slack-Signature".into(), format!("v0={mac}")),
    ]
}

/// A slash command's form as Slack posts it.
fn slash_form(command: &str, text: &str, user: &str, response_url: &str, trigger: &str) -> String {
    serde_urlencoded::to_string([
        ("token", "deprecated-verification-token"),
        ("team_id", "T0001"),
        ("team_domain", "example"),
        ("channel_id", "C2147483705"),
        ("channel_name", "ops"),
        ("user_id", user),
        ("user_name", "steve"),
        ("command", command),
        ("text", text),
        ("api_app_id", "A123456"),
        ("response_url", response_url),
        ("trigger_id", trigger),
    ])
    .unwrap()
}

/// Posts `body` (signed with `secret`) to the bundle's endpoint; status, body and how long
/// the answer took.
async fn post_signed(
    base: &str,
    bundle: &str,
    content_type: &str,
    body: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> (u16, Value, Duration) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/chat/slack/{bundle}"))
        .header("content-type", content_type)
        .body(body.to_string());
    for (k, v) in signed(body.as_bytes(), chrono::Utc::now().timestamp(), secret) {
        request = request.header(k, v);
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let took = started.elapsed();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        took,
    )
}

/// Waits for the double to receive a POST on `path`; answers it.
async fn received_on(received: &Received, path: &str) -> (String, Value) {
    poll_until(
        &format!("the Slack double receives a POST on {path}"),
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let all = received.lock().unwrap().clone();
            all.iter()
                .find(|(p, _, _)| p == path)
                .map(|(_, auth, body)| (auth.clone(), body.clone()))
                .ok_or_else(|| format!("received so far: {all:?}"))
        },
    )
    .await
}

/// Sets the app's two secrets, uploads `hello`, creates handler `greeter` on command `greet`
/// of bundle `ops`; answers the bundle (not created) with the double's URLs.
async fn greet_setup(api: &Api, slack: &str) -> Value {
    for (name, value) in [("slack-signing", SIGNING_SECRET), ("slack-bot", BOT_TOKEN)] {
        let (status, v) = api
            .put_json(
                &format!("/api/v1/secrets/{name}"),
                &json!({ "value": value }),
            )
            .await;
        assert_eq!(status, 201, "{v}");
    }
    api.upload_example("hello").await;
    let (status, v) = api
        .post_json(
            "/api/v1/handlers",
            &json!({
                "name": "greeter",
                "filter": {"all": [
                    {"exact": {"attribute": "type", "value": "com.ferrisfx.chat.command"}},
                    {"exact": {"attribute": "subject", "value": "ops/greet"}},
                ]},
                "package": {"name": "hello"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    json!({
        "name": "ops",
        "description": "operations",
        "slack": {
            "signing_secret": "slack-signing",
            "bot_token": "slack-bot",
            "api_url": format!("{slack}/api"),
            "response_url_prefix": format!("{slack}/commands/"),
        },
        "allow": ["U1"],
        "commands": [
            {"name": "greet", "handler": "greeter", "syntax": "[who]", "help": "says hello"},
            {"name": "deploy", "handler": "deployer", "syntax": "<service> [version]", "allow": ["U2"]},
        ],
    })
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_command_and_a_mention_run_their_handler_and_get_the_output_as_reply() {
    let (slack, received) = slack_double().await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = Deployment::new(dir.path(), "");
    d.start("dev", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    let base = d.base.clone();

    let bundle = greet_setup(&api, &slack).await;
    // A bundle is refused with the reason: an unknown secret, a bad syntax.
    let mut bad = bundle.clone();
    bad["slack"]["bot_token"] = json!("no-such-secret");
    let (status, v) = api.post_json("/api/v1/bundles", &bad).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("does not exist"), "{v}");
    let mut bad = bundle.clone();
    bad["commands"][0]["syntax"] = json!("[who] <what>");
    let (status, v) = api.post_json("/api/v1/bundles", &bad).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("after an optional"), "{v}");
    let (status, v) = api.post_json("/api/v1/bundles", &bundle).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["path"], "/chat/slack/ops");

    // The slash command: answered within Slack's 3 seconds, the reply posted later.
    let form = slash_form(
        "/greet",
        "",
        "U1",
        &format!("{slack}/commands/T0001/1/abc"),
        "trigger-1",
    );
    let form_type = FORM;
    let (status, v, took) = post_signed(&base, "ops", form_type, &form, SIGNING_SECRET, &[]).await;
    assert_eq!(status, 200, "{v}");
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    assert_eq!(v["response_type"], "ephemeral", "{v}");
    assert!(
        v["text"].as_str().unwrap().contains("running `greet`"),
        "{v}"
    );
    let (_, reply) = received_on(&received, "/commands/T0001/1/abc").await;
    let text = reply["text"].as_str().unwrap();
    assert!(text.contains("Hello, world!"), "{reply}");
    let done = api
        .wait_finished("greeter", 1, Duration::from_secs(60))
        .await;
    let event = &done[0]["execution"]["event"];
    assert_eq!(event["subject"], "ops/greet", "{event}");
    assert_eq!(event["source"], "/chat/slack/ops", "{event}");
    assert_eq!(event["data"]["user"]["id"], "U1", "{event}");

    // Forged, stale, refused, unknown, usage and help: nothing runs.
    let (status, _, _) = post_signed(&base, "ops", form_type, &form, "wrong", &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = reqwest::Client::new()
        .post(format!("{base}/chat/slack/ops"))
        .header("content-type", form_type)
        .body(form.clone())
        .send()
        .await
        .map(|r| (r.status().as_u16(), (), ()))
        .unwrap();
    assert_eq!(status, 401, "unsigned");
    let stale = {
        let mut request = reqwest::Client::new()
            .post(format!("{base}/chat/slack/ops"))
            .header("content-type", form_type)
            .body(form.clone());
        for (k, v) in signed(
            form.as_bytes(),
            chrono::Utc::now().timestamp() - 600,
            SIGNING_SECRET,
        ) {
            request = request.header(k, v);
        }
        request.send().await.unwrap().status().as_u16()
    };
    assert_eq!(stale, 401, "a replayed request");
    let cases = [
        ("/greet", "", "U9", "may not run"),
        ("/ops", "deploy api", "U1", "may not run"),
        ("/ops", "launch", "U1", "no command `launch`"),
        ("/ops", "help", "U1", "says hello"),
        ("/greet", "a b", "U1", "unexpected"),
    ];
    for (i, (command, text, user, says)) in cases.into_iter().enumerate() {
        let form = slash_form(
            command,
            text,
            user,
            &format!("{slack}/commands/T0001/x/{i}"),
            &format!("trigger-x{i}"),
        );
        let (status, v, _) = post_signed(&base, "ops", form_type, &form, SIGNING_SECRET, &[]).await;
        assert_eq!(status, 200, "{command} {text}: {v}");
        assert!(
            v["text"].as_str().unwrap().contains(says),
            "{command} {text}: {v}"
        );
    }
    // A response_url elsewhere than the bundle's prefix: not run, nothing posted there.
    let form = slash_form("/greet", "", "U1", "http://127.0.0.1:9/steal", "trigger-y");
    let (status, v, _) = post_signed(&base, "ops", form_type, &form, SIGNING_SECRET, &[]).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["text"].as_str().unwrap().contains("answers only"), "{v}");
    let (_, audit) = api.get("/api/v1/audit?action=chat:command").await;
    assert!(
        audit.to_string().contains("slack:U9"),
        "the refusal is audited: {audit}"
    );

    // The Events API: the URL check, then a mention answered in its thread.
    let check = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let (status, v, _) = post_signed(
        &base,
        "ops",
        "application/json",
        &check,
        SIGNING_SECRET,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        v["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let mention = json!({
        "token": "x",
        "team_id": "T0001",
        "api_app_id": "A123456",
        "type": "event_callback",
        "event_id": "Ev0PV52K21",
        "event_time": 1_515_449_522,
        "event": {
            "type": "app_mention",
            "user": "U1",
            "text": "<@U0LAN0Z89> greet",
            "ts": "1515449522.000016",
            "channel": "C0LAN2Q65",
            "event_ts": "1515449522000016",
        },
    })
    .to_string();
    let (status, _, took) = post_signed(
        &base,
        "ops",
        "application/json",
        &mention,
        SIGNING_SECRET,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    let (auth, posted) = received_on(&received, "/api/chat.postMessage").await;
    assert_eq!(auth, format!("Bearer {BOT_TOKEN}"));
    assert_eq!(posted["channel"], "C0LAN2Q65", "{posted}");
    assert_eq!(posted["thread_ts"], "1515449522.000016", "{posted}");
    assert!(
        posted["text"].as_str().unwrap().contains("Hello, world!"),
        "{posted}"
    );
    // Slack retrying the same callback runs nothing new and replies once.
    let (status, _, _) = post_signed(
        &base,
        "ops",
        "application/json",
        &mention,
        SIGNING_SECRET,
        &[
            ("X-Slack-Retry-Num", "1"),
            ("X-Slack-Retry-Reason", "http_timeout"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(api.executions("greeter").await.len(), 2);
    let posts = received
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| p == "/api/chat.postMessage")
        .count();
    assert_eq!(posts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_kafka_and_postgres_a_slash_command_gets_its_reply_from_the_executors() {
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "chat commands over Kafka") else {
        return;
    };
    let Some(postgres) = testenv::backend("FX_TEST_POSTGRES", "chat commands over Kafka") else {
        return;
    };
    let (slack, received) = slack_double().await;
    let dir = tempfile::tempdir().unwrap();
    let run = unique("fxchat").replace('-', "");
    let toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\npartitions = 1\nsession_timeout_ms = 6000\n\n[backends.state]\nkind = \"postgres\"\nurl = \"{postgres}\"\nschema = \"{run}\"\n\n"
    );
    let mut d = Deployment::new(dir.path(), &toml);
    let keyring = fx_core::secrets::Keyring::generate_line("e2e1").unwrap();
    d.start_with_env("server", &[], &[("FX_SECRETS_KEY", &keyring)]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    let bundle = greet_setup(&api, &slack).await;
    let (status, v) = api.post_json("/api/v1/bundles", &bundle).await;
    assert_eq!(status, 201, "{v}");
    d.start("gateway", &[]);
    d.start("executor", &[]);

    let form = slash_form(
        "/ops",
        "greet",
        "U1",
        &format!("{slack}/commands/T0001/2/def"),
        "trigger-kafka-1",
    );
    let (status, v, took) = post_signed(&d.base, "ops", FORM, &form, SIGNING_SECRET, &[]).await;
    assert_eq!(status, 200, "{v}\n{}", d.all_logs());
    assert!(took < Duration::from_secs(3), "answered in {took:?}");
    let (_, reply) = received_on(&received, "/commands/T0001/2/def").await;
    assert!(
        reply["text"].as_str().unwrap().contains("Hello, world!"),
        "{reply}\n{}",
        d.all_logs()
    );
    assert_eq!(reply["response_type"], "ephemeral", "{reply}");
    assert_eq!(api.executions("greeter").await.len(), 1);
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}
