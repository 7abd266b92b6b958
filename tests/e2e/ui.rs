//! The web UI in a real browser: each test starts the platform in this process and runs a
//! scenario of `tests/ui/*.mjs` in headless Chromium (driven by playwright-core), which
//! exits non-zero with the reason when a step fails. Screenshots go to
//! `target/ui-screenshots/<scenario>/`.
//!
//! Needs `FX_TEST_CHROMIUM` and `FX_TEST_PLAYWRIGHT` (`infra/scripts/start-browser.sh`
//! installs both and prints them; the test command runs it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferrisfx::settings::Settings;
use fx_core::testenv::backend;
use fx_core::testsupport::HandlerBuilder;
use fx_tests::{example_package, TestPlatform};
use serde_json::json;

/// How long one scenario may take (a cold compile of the component included).
const SCENARIO_DEADLINE: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `tests/ui/<scenario>.mjs <base> <screenshots> <args…>`, failing with its output.
async fn scenario(name: &str, chromium: &str, playwright: &str, base: &str, args: &[&Path]) {
    let shots = repo().join("target/ui-screenshots").join(name);
    let script = repo().join("tests/ui").join(format!("{name}.mjs"));
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .arg(base)
        .arg(&shots)
        .args(args)
        .env("FX_TEST_CHROMIUM", chromium)
        .env("FX_TEST_PLAYWRIGHT", playwright)
        .kill_on_drop(true);
    let output = tokio::time::timeout(SCENARIO_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("scenario {name} did not finish in {SCENARIO_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("running node {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scenario {name} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("scenario passed"), "{stdout}\n{stderr}");
}

fn browser(test: &str) -> Option<(String, String)> {
    let chromium = backend("FX_TEST_CHROMIUM", test)?;
    let playwright = backend("FX_TEST_PLAYWRIGHT", test)?;
    Some((chromium, playwright))
}

async fn platform(dir: &Path) -> TestPlatform {
    TestPlatform::start_with(Settings {
        data_dir: dir.join("data"),
        example: false,
        ..fx_tests::open_settings()
    })
    .await
}

/// `archive` (a package) with its manifest renamed to `name` at `version`.
fn repackage(archive: &[u8], name: &str, version: &str) -> Vec<u8> {
    let mut entries = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut out = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for entry in entries.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if path == Path::new("fx.toml") {
            let mut manifest: toml::Table = toml::from_str(std::str::from_utf8(&bytes).unwrap())
                .expect("example manifest parses");
            manifest.insert("name".into(), name.into());
            manifest.insert("version".into(), version.into());
            bytes = toml::to_string(&manifest).unwrap().into_bytes();
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.append_data(&mut header, &path, bytes.as_slice())
            .unwrap();
    }
    out.into_inner().unwrap().finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(bytes))
        .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_user_uploads_creates_a_handler_sends_an_event_and_reads_its_log_in_the_browser() {
    let Some((chromium, playwright)) = browser("ui new_user") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hello = write(dir.path(), "hello.fxpkg", &example_package("hello"));
    let bad = write(
        dir.path(),
        "not-a-package.fxpkg",
        b"this is a text file, not a package archive",
    );
    let fx = platform(dir.path()).await;
    scenario(
        "new_user",
        &chromium,
        &playwright,
        &fx.base,
        &[&hello, &bad],
    )
    .await;
    // What the browser did is what the platform holds.
    let (_, handler) = fx.get("/api/v1/handlers/hello-ui").await;
    assert_eq!(handler["handler"]["package"]["name"], "hello", "{handler}");
    let (_, packages) = fx.get("/api/v1/packages").await;
    assert_eq!(
        packages["packages"].as_array().unwrap().len(),
        1,
        "{packages}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_latest_back_in_the_browser_makes_the_next_event_run_the_earlier_version() {
    let Some((chromium, playwright)) = browser("ui rollback") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let v1 = repackage(&example_package("hello"), "greeter", "1.0.0");
    let v2 = repackage(&example_package("order-pricing"), "greeter", "2.0.0");
    let v1 = write(dir.path(), "greeter-1.0.0.fxpkg", &v1);
    let v2 = write(dir.path(), "greeter-2.0.0.fxpkg", &v2);
    let fx = platform(dir.path()).await;
    scenario("rollback", &chromium, &playwright, &fx.base, &[&v1, &v2]).await;
    let (_, package) = fx.get("/api/v1/packages/greeter").await;
    assert_eq!(package["aliases"]["latest"], "1.0.0", "{package}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_created_in_the_browser_fires_and_pauses() {
    let Some((chromium, playwright)) = browser("ui schedules") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hello = write(dir.path(), "hello.fxpkg", &example_package("hello"));
    let fx = platform(dir.path()).await;
    scenario("schedules", &chromium, &playwright, &fx.base, &[&hello]).await;
    // What the browser did is what the platform holds.
    let (_, schedule) = fx.get("/api/v1/schedules/tick").await;
    assert_eq!(schedule["schedule"]["data"]["from"], "the ui", "{schedule}");
    let (_, executions) = fx.get("/api/v1/executions?handler=on-tick").await;
    assert!(
        !executions["items"].as_array().unwrap().is_empty(),
        "{executions}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_created_in_the_browser_runs_a_handler_on_a_signed_github_push() {
    let Some((chromium, playwright)) = browser("ui hooks") else {
        return;
    };
    const SECRET: &str = "github-webhook-secret";
    const VALUE: &str = "It's a Secret to Everybody";
    let dir = tempfile::tempdir().unwrap();
    // `ferrisfx dev` with the example package it ships (`hello`).
    let fx = TestPlatform::start_with(Settings {
        data_dir: dir.path().join("data"),
        example: true,
        ..fx_tests::open_settings()
    })
    .await;
    // The signing secret, and a handler on pushes, through the API.
    let (status, v) = fx
        .put_json(
            &format!("/api/v1/secrets/{SECRET}"),
            &json!({"value": VALUE, "pools": ["default"]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = fx
        .post_json(
            "/api/v1/handlers",
            &json!({
                "name": "on-push",
                "filter": {"exact": {"attribute": "type", "value": "com.github.push"}},
                "package": {"name": "hello"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    fx.until_gateway_sees(v["revision"].as_u64().unwrap()).await;
    let name = write(dir.path(), "secret-name", SECRET.as_bytes());
    let value = write(dir.path(), "secret-value", VALUE.as_bytes());
    scenario("hooks", &chromium, &playwright, &fx.base, &[&name, &value]).await;
    // What the browser did is what the platform holds: one execution of the push (the
    // redelivery was the same event, the forged one was refused), and the hook deleted.
    let executions = fx.executions("on-push").await;
    assert_eq!(executions.len(), 1, "{executions:?}");
    let execution = &executions[0];
    assert_eq!(execution["event_type"], "com.github.push", "{execution}");
    assert_eq!(execution["event_source"], "/hooks/github", "{execution}");
    let (status, _) = fx.get("/api/v1/hooks/github").await;
    assert_eq!(status, 404, "deleted in the browser");
    fx.stop().await;
}

/// A request the notification receiver took.
#[derive(Debug, Clone)]
struct Delivered {
    path: String,
    /// Its `X-FerrisFX-Signature` header.
    signature: Option<String>,
    body: axum::body::Bytes,
}

type Deliveries = std::sync::Arc<std::sync::Mutex<Vec<Delivered>>>;

/// A local HTTP receiver of notifications: answers 200 to every POST and keeps each request.
async fn notification_receiver() -> (String, Deliveries) {
    async fn take(
        axum::extract::State(taken): axum::extract::State<Deliveries>,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::http::StatusCode {
        let signature = headers
            .get("x-ferrisfx-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        taken.lock().unwrap().push(Delivered {
            path: uri.path().to_string(),
            signature,
            body,
        });
        axum::http::StatusCode::OK
    }
    let taken = Deliveries::default();
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(take))
        .with_state(taken.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, taken)
}

/// Whether `signature` (`t=<unix>,v1=<hex>`) is the HMAC-SHA256 of `t.body` with `key`.
fn signed_with(key: &str, signature: &str, body: &[u8]) -> bool {
    let part = |name: &str| {
        signature
            .split(',')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
    };
    let (Some(t), Some(v1)) = (part("t"), part("v1")) else {
        return false;
    };
    let mac: Vec<u8> = (0..v1.len() / 2)
        .filter_map(|i| u8::from_str_radix(v1.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    ring::hmac::verify(&key, &signed, &mac).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_created_in_the_browser_notifies_a_failure_shown_on_the_executions_page() {
    let Some((chromium, playwright)) = browser("ui notifications") else {
        return;
    };
    const SECRET: &str = "alerts";
    const VALUE: &str = "shared with the on-call receiver";
    let (receiver, taken) = notification_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let fx = platform(dir.path()).await;
    // The signing secret, and a handler that fails, through the API.
    let (status, v) = fx
        .put_json(
            &format!("/api/v1/secrets/{SECRET}"),
            &json!({"value": VALUE}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    fx.upload_example("misbehave").await;
    let (status, v) = fx
        .post_json(
            "/api/v1/handlers",
            &json!({
                "name": "flaky",
                "filter": {"exact": {"attribute": "type", "value": "fx.test.error"}},
                "package": {"name": "misbehave"},
            }),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    fx.until_gateway_sees(v["revision"].as_u64().unwrap()).await;
    let name = write(dir.path(), "secret-name", SECRET.as_bytes());
    let url = write(dir.path(), "receiver-url", receiver.as_bytes());
    scenario(
        "notifications",
        &chromium,
        &playwright,
        &fx.base,
        &[&name, &url],
    )
    .await;
    // What the browser saw is what the receiver got: the failure, signed with the secret.
    let executions = fx.executions("flaky").await;
    assert_eq!(executions.len(), 1, "{executions:?}");
    let id = executions[0]["id"].as_str().unwrap();
    let taken = taken.lock().unwrap().clone();
    let failed = taken
        .iter()
        .find(|d| {
            let body: serde_json::Value = serde_json::from_slice(&d.body).unwrap_or_default();
            // One notification per rule: the more specific of the outcomes it watches.
            let outcome = body["outcome"].as_str().unwrap_or_default();
            d.path == "/alerts"
                && matches!(outcome, "failed" | "dead_lettered")
                && body["execution_id"] == id
        })
        .unwrap_or_else(|| panic!("no failure notification of {id} in {taken:?}"));
    let signature = failed.signature.as_deref().expect("a signed notification");
    assert!(signed_with(VALUE, signature, &failed.body), "{signature}");
    let (status, _) = fx.get("/api/v1/notifications/oncall").await;
    assert_eq!(status, 404, "deleted in the browser");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_written_in_the_browser_runs_and_its_graph_turns_green() {
    let Some((chromium, playwright)) = browser("ui workflows") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fx = platform(dir.path()).await;
    fx.upload_example("workflow-step").await;
    scenario("workflows", &chromium, &playwright, &fx.base, &[]).await;
    // What the browser did is what the platform holds: the diamond, one run that succeeded
    // with the input typed, its middle steps overlapping and its last one seeing both.
    let (status, workflow) = fx.get("/api/v1/workflows/diamond").await;
    assert_eq!(status, 200, "{workflow}");
    assert_eq!(
        workflow["workflow"]["steps"].as_array().unwrap().len(),
        4,
        "{workflow}"
    );
    let (status, _) = fx.get("/api/v1/workflows/loop").await;
    assert_eq!(status, 404, "the cycle was refused");
    let (_, runs) = fx.get("/api/v1/runs?workflow=diamond").await;
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "succeeded", "{runs:?}");
    let (_, run) = fx
        .get(&format!("/api/v1/runs/{}", runs[0]["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        run["run"]["trigger"]["data"],
        json!({"sleep_ms": {"b": 1500, "c": 1500}}),
        "{run:#}"
    );
    let out = &run["outputs"];
    let span = |step: &str| {
        (
            out[step]["started_ms"].as_u64().unwrap(),
            out[step]["finished_ms"].as_u64().unwrap(),
        )
    };
    let ((b0, b1), (c0, c1)) = (span("b"), span("c"));
    assert!(
        b0 < c1 && c0 < b1,
        "b [{b0}, {b1}] and c [{c0}, {c1}] did not overlap"
    );
    assert_eq!(out["d"]["received"], json!(["b", "c"]), "{out:#}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_downloaded_in_the_browser_restores_on_another_platform() {
    let Some((chromium, playwright)) = browser("ui backup") else {
        return;
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (source, target) = (platform(a.path()).await, platform(b.path()).await);
    source.upload_example("hello").await;
    source.upload_example("workflow-step").await;
    let revision = source
        .create_handler(
            &HandlerBuilder::new("kept")
                .event_type("com.example.kept")
                .package("hello")
                .build(),
        )
        .await["revision"]
        .as_u64()
        .unwrap();
    source.until_gateway_sees(revision).await;
    for i in 0..3 {
        source
            .emit(&format!("kept-{i}"), "com.example.kept", json!({"i": i}))
            .await;
    }
    source
        .wait_succeeded("kept", 3, Duration::from_secs(60), String::new)
        .await;
    scenario(
        "backup",
        &chromium,
        &playwright,
        &source.base,
        &[Path::new(&target.base)],
    )
    .await;
    // What the browser restored is what the source holds.
    let (_, theirs) = source.get("/api/v1/handlers/kept").await;
    let (_, ours) = target.get("/api/v1/handlers/kept").await;
    assert_eq!(theirs["handler"], ours["handler"], "{ours}");
    assert_eq!(target.executions("kept").await.len(), 3);
    target.stop().await;
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_live_streams_of_open_pages() {
    let dir = tempfile::tempdir().unwrap();
    let fx = platform(dir.path()).await;
    let mut live = reqwest::get(format!("{}/live/executions", fx.base))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let first = live.chunk().await.unwrap().expect("a first event");
    assert!(String::from_utf8_lossy(&first).contains("event: rows"));
    // A browser tab left open must not hold the graceful shutdown.
    tokio::time::timeout(Duration::from_secs(30), fx.stop())
        .await
        .expect("the platform stops with a live stream open");
    drop(live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_posts_forms_with_their_csrf_token_and_signs_out() {
    let Some((chromium, playwright)) = browser("ui signin") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hello = write(dir.path(), "hello.fxpkg", &example_package("hello"));
    let mut settings = Settings {
        data_dir: dir.path().join("data"),
        example: false,
        ..fx_tests::open_settings()
    };
    settings.server.auth.enabled = true;
    settings.server.auth.bootstrap_password = Some("correct horse battery staple".into());
    let fx = TestPlatform::start_with(settings).await;
    scenario("signin", &chromium, &playwright, &fx.base, &[&hello]).await;
    // The audit log saw it.
    let log = fx
        .backends()
        .identity
        .audit(&fx_core::identity::AuditQuery::default())
        .await
        .unwrap();
    let seen: Vec<(String, &str)> = log
        .items
        .iter()
        .map(|e| (format!("{} {}", e.principal, e.action), e.outcome.name()))
        .collect();
    for expected in [
        ("user:admin login".to_string(), "denied"),
        ("user:admin login".to_string(), "ok"),
        ("user:admin package:upload".to_string(), "ok"),
        ("user:admin handler:write".to_string(), "ok"),
        ("user:admin handler:write".to_string(), "denied"),
        ("user:admin logout".to_string(), "ok"),
    ] {
        assert!(
            seen.iter()
                .any(|(w, o)| *w == expected.0 && *o == expected.1),
            "{expected:?} not in {seen:?}"
        );
    }
    fx.stop().await;
}
