//! Webhooks end to end: `POST /hooks/<name>` deliveries signed as GitHub and Stripe sign them
//! become events that run handlers, once per delivery however often the vendor redelivers;
//! forged, stale, oversized, malformed and too frequent deliveries are refused with their
//! status, counted on `/metrics` and (the forged ones) audited. On `ferrisfx dev` with
//! authentication on, and on a distributed deployment over Kafka and PostgreSQL.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fx_core::testenv;
use fx_core::testsupport::{unique, HandlerBuilder};
use fx_tests::processes::Deployment;
use fx_tests::Api;
use ring::hmac;
use serde_json::{json, Value};

/// The GitHub webhook's secret, as set on GitHub and in the platform secret `github-webhook`.
const GH_SECRET: &str = "gh-e2e-s3cr3t-5f1d9a";

/// The Stripe endpoint's signing secret, in the platform secret `stripe-webhook`.
const STRIPE_SECRET: &str = "whsec_e2e3c9a7b21f";

/// The GitHub hook's body limit: the oversized delivery is above it.
const MAX_BODY: usize = 4096;

/// Hex of HMAC-SHA256 with `key` over `parts`, concatenated.
fn hmac_hex(key: &str, parts: &[&[u8]]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    for part in parts {
        context.update(part);
    }
    hex(context.sign().as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random UUID (version 4), as GitHub's `X-GitHub-Delivery`.
fn delivery_id() -> String {
    let a = fastrand::u32(..);
    let b = fastrand::u16(..);
    let c = fastrand::u16(..0x1000) | 0x4000;
    let d = (fastrand::u16(..0x4000)) | 0x8000;
    let e = fastrand::u64(..1 << 48);
    format!("{a:08x}-{b:04x}-{c:04x}-{d:04x}-{e:012x}")
}

/// A push payload as GitHub sends it: pretty-printed, its keys not in alphabetical order and a
/// final newline, so that a body re-serialized anywhere on the way would differ from it.
fn push_body(repository: &str, after: &str) -> Vec<u8> {
    format!(
        "{{\n  \"ref\": \"refs/heads/main\",\n  \"after\": \"{after}\",\n  \"repository\": {{\n    \"id\": 1296269,\n    \"full_name\": \"{repository}\"\n  }},\n  \"pusher\": {{ \"name\": \"octocat\" }}\n}}\n"
    )
    .into_bytes()
}

/// The headers of a GitHub delivery of `event` signed with `secret`.
fn github_headers(secret: &str, event: &str, delivery: &str, body: &[u8]) -> Vec<(String, String)> {
    [
        ("X-GitHub-Event", event.to_string()),
        ("X-GitHub-Delivery", delivery.to_string()),
        (
            "X-Hub-Signature-256",
            format!("sha256={}", hmac_hex(secret, &[body])),
        ),
        ("Content-Type", "application/json".to_string()),
        ("User-Agent", "GitHub-Hookshot/e2e".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A delivery's answer: status, `Retry-After` and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

/// Posts a delivery to `/hooks/<hook>` as a vendor would: no bearer token.
async fn deliver(base: &str, hook: &str, headers: &[(String, String)], body: &[u8]) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/hooks/{hook}"))
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        retry_after,
        body,
    }
}

/// Posts `body_file` to `url` with curl, a client that is not ours; (status, answer).
async fn curl_deliver(url: &str, headers: &[(String, String)], body_file: &Path) -> (u16, Value) {
    let out = body_file.with_extension("answer");
    let mut command = Command::new("curl");
    command
        .args(["-sS", "-X", "POST", "-o"])
        .arg(&out)
        .args(["-w", "%{http_code}", url]);
    for (name, value) in headers {
        command.arg("-H").arg(format!("{name}: {value}"));
    }
    command
        .arg("--data-binary")
        .arg(format!("@{}", body_file.display()));
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("curl runs (install curl)");
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The signature of `file` as docs/webhooks.md computes it:
/// `openssl dgst -sha256 -hmac "$SECRET" file | awk '{print $NF}'`.
fn openssl_hmac_hex(secret: &str, file: &Path) -> String {
    let output = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .arg(file)
        .output()
        .expect("openssl runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap()
        .to_string()
}

/// Standard base64 (with padding) decoded.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {text:?}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= u32::from(*d) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// The data of an event as the executions API shows it, as bytes. Binary data comes as
/// `data_base64`, byte for byte; JSON data as a JSON value, which is written back here
/// (compact, so a pretty-printed body would not match it).
fn event_data(event: &Value) -> Vec<u8> {
    match (&event["data_base64"], &event["data"]) {
        (Value::String(b64), _) => base64_decode(b64),
        (_, Value::String(text)) => text.as_bytes().to_vec(),
        (_, data) => serde_json::to_vec(data).unwrap(),
    }
}

/// The count of `fx_webhook_deliveries_total{hook, outcome}` in a `/metrics` text (0 when
/// absent).
fn delivery_count(metrics: &str, hook: &str, outcome: &str) -> f64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("fx_webhook_deliveries_total{")
                && l.contains(&format!("hook=\"{hook}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .unwrap_or(0.0)
}

/// Waits for the token `ferrisfx dev` keeps for the CLI in `config_dir/tokens.json` (as
/// `ferrisfx login` would), as docs/webhooks.md reads it.
async fn dev_admin_token(config_dir: &Path, d: &Deployment) -> String {
    let file = config_dir.join("tokens.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Some(token) = serde_json::from_str::<Value>(&text).unwrap()[&d.base].as_str() {
                return token.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no token for {} in {}\n{}",
            d.base,
            file.display(),
            d.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sets platform secret `name` to `value` (in the default pool), asserting it was created.
async fn set_secret(api: &Api, name: &str, value: &str) {
    let (status, v) = api
        .put_json(
            &format!("/api/v1/secrets/{name}"),
            &json!({ "value": value }),
        )
        .await;
    assert_eq!(status, 201, "setting secret {name}: {v}");
    assert!(
        !v.to_string().contains(value),
        "the answer shows the value: {v}"
    );
}

/// The GitHub hook of these tests: one delivery a second, three at once.
fn github_hook(name: &str) -> Value {
    json!({
        "name": name,
        "description": "pushes to acme/site",
        "verify": {"kind": "github", "secret": "github-webhook"},
        "transform": {"kind": "github"},
        "keep_headers": ["User-Agent"],
        "rate": {"per_second": 1.0, "burst": 3},
        "max_body_bytes": MAX_BODY,
    })
}

/// Lets the hook's bucket (one token a second) gain a token, so that the next delivery is not
/// refused for the rate.
async fn one_token_later() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

/// Waits `settle`, then asserts `handler` still has exactly `count` executions.
async fn still_runs(api: &Api, handler: &str, count: usize, settle: Duration) -> Vec<Value> {
    tokio::time::sleep(settle).await;
    let all = api.executions(handler).await;
    assert_eq!(all.len(), count, "{handler} ran again: {all:#?}");
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_deliveries_run_their_handler_once_and_forged_stale_big_or_too_many_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cli = dir.path().join("cli");
    let mut d = Deployment::new(dir.path(), "");
    // Authentication on, as `ferrisfx dev` runs by default: the API wants the token it keeps
    // for the CLI, a hook's endpoint only the delivery's signature.
    d.start_with_env(
        "dev",
        &[],
        &[
            ("FX_SERVER__AUTH__ENABLED", "true"),
            ("FX_CONFIG_DIR", cli.to_str().unwrap()),
        ],
    );
    d.wait_ready().await;
    let token = dev_admin_token(&cli, &d).await;
    let api = Api::with_token(d.base.clone(), &token);
    let base = d.base.clone();

    let hook = github_hook("gh");
    let (status, _) = Api::new(base.clone())
        .post_json("/api/v1/hooks", &hook)
        .await;
    assert_eq!(status, 401, "the hooks API wants a token");
    // A hook naming a secret that does not exist is refused, saying what to do.
    let (status, v) = api.post_json("/api/v1/hooks", &hook).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("does not exist"), "{v}");
    set_secret(&api, "github-webhook", GH_SECRET).await;
    let (status, created) = api.post_json("/api/v1/hooks", &hook).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["path"], "/hooks/gh", "{created}");
    assert_eq!(
        created["hook"]["rate"],
        json!({"per_second": 1.0, "burst": 3})
    );
    assert!(!created.to_string().contains(GH_SECRET), "{created}");
    let (status, _) = api.post_json("/api/v1/hooks", &hook).await;
    assert_eq!(status, 409, "a second hook of one name");

    api.upload_example("hello").await;
    api.create_handler(
        &HandlerBuilder::new("on-push")
            .event_type("com.github.push")
            .package("hello")
            .build(),
    )
    .await;

    // A push, signed as the docs sign it (openssl) and posted with curl.
    let body = push_body("acme/site", "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    let body_file = dir.path().join("push.json");
    std::fs::write(&body_file, &body).unwrap();
    let signature = openssl_hmac_hex(GH_SECRET, &body_file);
    assert_eq!(signature, hmac_hex(GH_SECRET, &[&body]), "openssl and ring");
    let delivery = delivery_id();
    let headers = github_headers(GH_SECRET, "push", &delivery, &body);
    let (status, accepted) = curl_deliver(&format!("{base}/hooks/gh"), &headers, &body_file).await;
    assert_eq!(status, 202, "{accepted}\n{}", d.all_logs());
    assert_eq!(
        accepted,
        json!({"id": delivery, "source": "/hooks/gh", "type": "com.github.push"})
    );
    let all = api
        .wait_succeeded("on-push", 1, Duration::from_secs(60), || d.all_logs())
        .await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["event_id"], delivery.as_str());
    assert_eq!(all[0]["event_source"], "/hooks/gh");
    let detail = api.execution(all[0]["id"].as_str().unwrap()).await;
    let event = &detail["execution"]["event"];
    assert_eq!(event["type"], "com.github.push", "{event:#}");
    assert_eq!(event["subject"], "acme/site", "{event:#}");
    assert_eq!(event["webhook"], "gh", "{event:#}");
    assert_eq!(event["datacontenttype"], "application/json", "{event:#}");
    let kept: Value = serde_json::from_str(event["webhookheaders"].as_str().unwrap()).unwrap();
    assert_eq!(kept["x-github-event"], "push", "{kept}");
    assert_eq!(kept["x-github-delivery"], delivery.as_str(), "{kept}");
    assert_eq!(kept["user-agent"], "GitHub-Hookshot/e2e", "{kept}");
    assert!(kept.get("x-hub-signature-256").is_none(), "{kept}");
    // Checked at the end (so that a failure does not hide the rest): the data is the body.
    let recorded = (event_data(event), event.clone());

    // GitHub redelivers: the same delivery id, the same event, nothing runs again.
    one_token_later().await;
    let again = deliver(&base, "gh", &headers, &body).await;
    assert_eq!(again.status, 202, "{again:?}");
    assert_eq!(again.body, accepted);
    still_runs(&api, "on-push", 1, Duration::from_secs(3)).await;

    // Forged: signed with another secret; then unsigned. Refused, and nothing runs.
    one_token_later().await;
    let forged_body = push_body("acme/site", "0000000000000000000000000000000000000000");
    let forged = github_headers("not-the-secret", "push", &delivery_id(), &forged_body);
    let refused = deliver(&base, "gh", &forged, &forged_body).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        refused.body.to_string().contains("does not match"),
        "{refused:?}"
    );
    one_token_later().await;
    let unsigned: Vec<_> = forged
        .iter()
        .filter(|(n, _)| n != "X-Hub-Signature-256")
        .cloned()
        .collect();
    let refused = deliver(&base, "gh", &unsigned, &forged_body).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(refused.body.to_string().contains("missing"), "{refused:?}");
    still_runs(&api, "on-push", 1, Duration::from_secs(2)).await;
    let (status, audit) = api
        .get("/api/v1/audit?action=hook:deliver&outcome=denied")
        .await;
    assert_eq!(status, 200, "{audit}");
    let denied = audit["items"].as_array().unwrap();
    assert_eq!(denied.len(), 2, "{audit:#}");
    for entry in denied {
        assert_eq!(entry["action"], "hook:deliver", "{entry}");
        assert_eq!(entry["outcome"], "denied", "{entry}");
        assert_eq!(entry["principal"], "anonymous", "{entry}");
        assert_eq!(entry["resource"], "/hooks/gh", "{entry}");
        assert!(!entry.to_string().contains(GH_SECRET), "{entry}");
    }
    // Accepted deliveries are traffic, not changes: not audited.
    let (_, audit) = api.get("/api/v1/audit?action=hook:deliver").await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit:#}");

    // A signed delivery that makes no event (no X-GitHub-Event): 400.
    one_token_later().await;
    let id = delivery_id();
    let no_event: Vec<_> = github_headers(GH_SECRET, "push", &id, &body)
        .into_iter()
        .filter(|(n, _)| n != "X-GitHub-Event")
        .collect();
    let malformed = deliver(&base, "gh", &no_event, &body).await;
    assert_eq!(malformed.status, 400, "{malformed:?}");
    assert!(
        malformed.body.to_string().contains("X-GitHub-Event"),
        "{malformed:?}"
    );

    // Above the hook's max_body_bytes: 413, signed or not.
    one_token_later().await;
    let big = format!("{{\"padding\": \"{}\"}}", "x".repeat(MAX_BODY)).into_bytes();
    let too_large = deliver(
        &base,
        "gh",
        &github_headers(GH_SECRET, "push", &delivery_id(), &big),
        &big,
    )
    .await;
    assert_eq!(too_large.status, 413, "{too_large:?}");

    // A burst beyond the bucket (three, refilled at one a second): the first three pass (the
    // same delivery again, so nothing new runs), then 429 with Retry-After.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(deliver(&base, "gh", &headers, &body).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses[..3], [202, 202, 202], "{answers:#?}");
    let limited = answers
        .iter()
        .find(|a| a.status == 429)
        .unwrap_or_else(|| panic!("no 429 in a burst of 6: {answers:#?}"));
    let retry_after: u64 = limited
        .retry_after
        .as_deref()
        .unwrap_or_else(|| panic!("429 without Retry-After: {limited:?}"))
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{limited:?}");
    assert!(answers.iter().all(|a| matches!(a.status, 202 | 429)));
    still_runs(&api, "on-push", 1, Duration::from_secs(2)).await;

    // No such hook: 404.
    let unknown = deliver(&base, "nope", &headers, &body).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    let (status, metrics) = api.get_text("/metrics").await;
    assert_eq!(status, 200);
    for (outcome, at_least) in [
        ("accepted", 5.0),
        ("unauthorized", 2.0),
        ("malformed", 1.0),
        ("too_large", 1.0),
        ("rate_limited", 1.0),
    ] {
        let counted = delivery_count(&metrics, "gh", outcome);
        assert!(
            counted >= at_least,
            "fx_webhook_deliveries_total{{hook=\"gh\",outcome=\"{outcome}\"}} is {counted}, expected at least {at_least}:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("fx_webhook"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(delivery_count(&metrics, "gh", "unauthorized"), 2.0);
    assert!(delivery_count(&metrics, "-", "not_found") >= 1.0);

    // Stripe: `t=<now>,v1=<HMAC of "t.body">`, type com.stripe.<type>, id the event's id.
    set_secret(&api, "stripe-webhook", STRIPE_SECRET).await;
    let (status, v) = api
        .post_json(
            "/api/v1/hooks",
            &json!({
                "name": "stripe",
                "verify": {"kind": "stripe", "secret": "stripe-webhook"},
                "transform": {"kind": "stripe"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    api.create_handler(
        &HandlerBuilder::new("on-payment")
            .event_type("com.stripe.payment_intent.succeeded")
            .package("hello")
            .build(),
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let stripe_id = format!("evt_{}", unique("e2e").replace('-', ""));
    let stripe_body = format!(
        "{{\"id\": \"{stripe_id}\", \"object\": \"event\", \"type\": \"payment_intent.succeeded\", \"created\": {now}, \"data\": {{\"object\": {{\"id\": \"pi_3MtwBw\", \"object\": \"payment_intent\", \"amount\": 2000}}}}}}"
    )
    .into_bytes();
    let stripe_headers = |t: i64| {
        let t = t.to_string();
        vec![
            (
                "Stripe-Signature".to_string(),
                format!(
                    "t={t},v1={}",
                    hmac_hex(STRIPE_SECRET, &[t.as_bytes(), b".", &stripe_body])
                ),
            ),
            ("Content-Type".to_string(), "application/json".to_string()),
        ]
    };
    let accepted = deliver(&base, "stripe", &stripe_headers(now), &stripe_body).await;
    assert_eq!(accepted.status, 202, "{accepted:?}");
    assert_eq!(
        accepted.body,
        json!({"id": stripe_id, "source": "/hooks/stripe", "type": "com.stripe.payment_intent.succeeded"})
    );
    let all = api
        .wait_succeeded("on-payment", 1, Duration::from_secs(60), || d.all_logs())
        .await;
    assert_eq!(all[0]["event_id"], stripe_id.as_str());
    let detail = api.execution(all[0]["id"].as_str().unwrap()).await;
    let event = &detail["execution"]["event"];
    assert_eq!(event["subject"], "pi_3MtwBw", "{event:#}");
    assert_eq!(
        event["time"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
            .timestamp(),
        now,
        "the event's time is the Stripe event's created: {event:#}"
    );
    // Signed correctly ten minutes ago: a replay, refused (the tolerance is 300 s).
    let stale = deliver(&base, "stripe", &stripe_headers(now - 600), &stripe_body).await;
    assert_eq!(stale.status, 401, "{stale:?}");
    assert!(stale.body.to_string().contains("timestamp"), "{stale:?}");
    still_runs(&api, "on-payment", 1, Duration::from_secs(2)).await;

    // A disabled hook answers as if it did not exist.
    let mut disabled = created["hook"].clone();
    disabled["enabled"] = json!(false);
    let (status, v) = api.put_json("/api/v1/hooks/gh", &disabled).await;
    assert_eq!(status, 200, "{v}");
    let gone = deliver(&base, "gh", &headers, &body).await;
    assert_eq!(gone.status, 404, "{gone:?}");
    d.processes[0].terminate();

    // The event's data is the body's JSON value. The bus decodes JSON data, so a function sees
    // it written again (compact, keys sorted), not the signed bytes: docs/webhooks.md says so.
    let (data, event) = recorded;
    assert_eq!(
        serde_json::from_slice::<Value>(&data).unwrap(),
        serde_json::from_slice::<Value>(&body).unwrap(),
        "the event's data is not the delivery's JSON: {event:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_kafka_and_postgres_a_delivery_runs_once_and_its_redeliveries_run_nothing() {
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "webhooks over Kafka") else {
        return;
    };
    let Some(postgres) = testenv::backend("FX_TEST_POSTGRES", "webhooks over Kafka") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = unique("fxhook").replace('-', "");
    let toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\npartitions = 3\nsession_timeout_ms = 6000\n\n[backends.state]\nkind = \"postgres\"\nurl = \"{postgres}\"\nschema = \"{run}\"\n\n"
    );
    let mut d = Deployment::new(dir.path(), &toml);
    // The server seals platform secrets (the hook's signing secret) with its keyring.
    let keyring = fx_core::secrets::Keyring::generate_line("e2e1").unwrap();
    d.start_with_env("server", &[], &[("FX_SECRETS_KEY", &keyring)]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    set_secret(&api, "github-webhook", GH_SECRET).await;
    let (status, v) = api.post_json("/api/v1/hooks", &github_hook("gh")).await;
    assert_eq!(status, 201, "{v}");
    api.upload_example("hello").await;
    api.create_handler(
        &HandlerBuilder::new("on-push")
            .event_type("com.github.push")
            .package("hello")
            .build(),
    )
    .await;
    d.start("gateway", &[]);
    d.start("executor", &[]);

    let body = push_body("acme/site", "a10867b14bb761a232cd80139fbd4c0d33264240");
    let delivery = delivery_id();
    let headers = github_headers(GH_SECRET, "push", &delivery, &body);
    let accepted = deliver(&d.base, "gh", &headers, &body).await;
    assert_eq!(accepted.status, 202, "{accepted:?}\n{}", d.all_logs());
    let all = api
        .wait_succeeded("on-push", 1, Duration::from_secs(120), || d.all_logs())
        .await;
    assert_eq!(all[0]["event_id"], delivery.as_str());
    // GitHub redelivers twice (a timeout on its side, then by hand): still one execution.
    for _ in 0..2 {
        one_token_later().await;
        let again = deliver(&d.base, "gh", &headers, &body).await;
        assert_eq!(again.status, 202, "{again:?}");
        assert_eq!(again.body, accepted.body);
    }
    let all = still_runs(&api, "on-push", 1, Duration::from_secs(5)).await;
    assert_eq!(all[0]["status"], "succeeded", "{all:#?}\n{}", d.all_logs());
    // A forged one is refused before the bus.
    one_token_later().await;
    let forged = github_headers("not-the-secret", "push", &delivery_id(), &body);
    let refused = deliver(&d.base, "gh", &forged, &body).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    still_runs(&api, "on-push", 1, Duration::from_secs(2)).await;
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}

/// A custom transformer: a `raw` hook passes the delivery on as
/// `com.ferrisfx.webhook.received`; a handler on it runs a function in the sandbox whose
/// returned events are the transformed ones, and those run the handlers that want them. Here
/// the "transformer" is the `hello` example (it returns `com.ferrisfx.hello.greeted` with a
/// greeting made of the delivery's `name`), and a second handler runs on what it returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_hook_and_a_transformer_function_turn_a_delivery_into_the_events_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Deployment::new(dir.path(), "");
    d.start("dev", &[]);
    d.wait_ready().await;
    let api = Api::new(d.base.clone());
    let (status, v) = api
        .post_json(
            "/api/v1/hooks",
            &json!({
                "name": "partner",
                "verify": {"kind": "none"},
                "transform": {"kind": "raw", "id_header": "X-Request-Id"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    api.upload_example("hello").await;
    let (status, v) = api
        .post_json(
            "/api/v1/handlers",
            &json!({
                "name": "partner-transform",
                "filter": {"all": [
                    {"exact": {"attribute": "type", "value": "com.ferrisfx.webhook.received"}},
                    {"exact": {"attribute": "source", "value": "/hooks/partner"}},
                ]},
                "package": {"name": "hello"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    // `hello` answers a greeting with a greeting: only the transformer's own output (id
    // `<delivery>-greeting`) runs it, not what it returns in turn.
    let (status, v) = api
        .post_json(
            "/api/v1/handlers",
            &json!({
                "name": "on-transformed",
                "filter": {"all": [
                    {"exact": {"attribute": "type", "value": "com.ferrisfx.hello.greeted"}},
                    {"not": {"suffix": {"attribute": "id", "value": "-greeting-greeting"}}},
                ]},
                "package": {"name": "hello"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{v}");

    let headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        ("X-Request-Id".to_string(), "req-7".to_string()),
    ];
    let answer = deliver(&d.base, "partner", &headers, br#"{"name": "acme"}"#).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.body["type"], "com.ferrisfx.webhook.received");
    assert_eq!(answer.body["id"], "req-7");
    let transformed = api
        .wait_succeeded("partner-transform", 1, Duration::from_secs(60), || {
            d.all_logs()
        })
        .await;
    assert_eq!(transformed[0]["event_id"], "req-7");
    let after = api
        .wait_succeeded("on-transformed", 1, Duration::from_secs(60), || {
            d.all_logs()
        })
        .await;
    let detail = api.execution(after[0]["id"].as_str().unwrap()).await;
    let event = &detail["execution"]["event"];
    assert_eq!(event["type"], "com.ferrisfx.hello.greeted", "{event:#}");
    assert_eq!(event["id"], "req-7-greeting", "{event:#}");
    assert_eq!(event["data"]["greeting"], "Hello, acme!", "{event:#}");
    still_runs(&api, "on-transformed", 1, Duration::from_secs(2)).await;
    // Without the id header the delivery is refused, saying which header.
    let refused = deliver(&d.base, "partner", &headers[..1], b"{}").await;
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(
        refused.body.to_string().contains("X-Request-Id"),
        "{refused:?}"
    );
    d.processes[0].terminate();
}
