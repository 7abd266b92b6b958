//! Functions written in Python and JavaScript run end to end like the Rust `hello`: the same
//! event gives the same greeting and the same log line. So do the projects `ferrisfx new`
//! scaffolds in each language.
//!
//! Their packages are built by `bash infra/scripts/build-examples.sh` (which installs
//! componentize-py and componentize-js when missing, and scaffolds `scaffold-<lang>`); without
//! them the tests say they skipped, and under `CI=true` they fail with the command to run.

use std::path::Path;
use std::time::{Duration, Instant};

use fx_tests::TestPlatform;
use serde_json::json;
use tokio::sync::Mutex;

/// Held by each test of this file while it runs, so that one interpreter component (12–18 MB)
/// compiles at a time: each compile takes 20–50 s of both cores of a 2-core machine in a debug
/// build, and the first execution's deadline should measure one of them, not a queue.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The package `examples/dist/<name>.fxpkg`, or `None` (a skip) when it is missing outside CI.
fn guest_package(name: &str) -> Option<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/dist")
        .join(format!("{name}.fxpkg"));
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{}: {e}; build it with `bash infra/scripts/build-examples.sh`",
            path.display()
        ),
        Err(e) => {
            eprintln!(
                "skipped: {}: {e}; build it with `bash infra/scripts/build-examples.sh`",
                path.display()
            );
            None
        }
    }
}

/// Uploads `package`, runs one event through a handler of it, and checks what `hello` does:
/// the greeting event (from `source`, of type `greeted`) and the log line, and the world greeted
/// when the data has no name; when `configurable`, also the greeting word the handler's
/// `greeting` configuration value sets.
async fn greets(package: &str, source: &str, greeted: &str, configurable: bool) {
    let Some(bytes) = guest_package(package) else {
        return;
    };
    let _turn = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    let (status, v) = fx.upload(bytes).await;
    assert_eq!(status, 201, "{v}");
    fx.handler(package, package, "com.example.hello", json!({}))
        .await;

    let start = Instant::now();
    fx.emit("greet-1", "com.example.hello", json!({"name": "Ferris"}))
        .await;
    let details = fx.wait_finished(package, 1, Duration::from_secs(240)).await;
    let first = start.elapsed();
    let execution = &details[0]["execution"];
    assert_eq!(execution["status"], "succeeded", "{:#}", details[0]);
    let output = execution["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{execution:#}");
    assert_eq!(output[0]["id"], "greet-1-greeting");
    assert_eq!(output[0]["source"], source);
    assert_eq!(output[0]["type"], greeted);
    assert_eq!(output[0]["data"]["greeting"], "Hello, Ferris!");
    let logs = details[0]["logs"].as_array().unwrap();
    let line = logs
        .iter()
        .find(|l| l["message"] == "hello from FerrisFX")
        .unwrap_or_else(|| panic!("no log line \"hello from FerrisFX\": {logs:#?}"));
    assert_eq!(line["level"], "info", "{line:#}");
    assert_eq!(line["fields"]["event_id"], "greet-1", "{line:#}");

    // Data that is not JSON with a name: the world is greeted.
    fx.emit("greet-2", "com.example.hello", json!([1, 2])).await;
    let details = fx.wait_finished(package, 2, Duration::from_secs(60)).await;
    let second = details
        .iter()
        .map(|d| &d["execution"])
        .find(|e| e["event"]["id"] == "greet-2")
        .unwrap();
    assert_eq!(second["status"], "succeeded", "{second:#}");
    assert_eq!(second["output"][0]["data"]["greeting"], "Hello, world!");
    if configurable {
        let handler = json!({
            "name": package,
            "filter": {"exact": {"attribute": "type", "value": "com.example.hello"}},
            "package": {"name": package},
            "config": {"greeting": "Howdy"},
        });
        let (status, v) = fx
            .put_json(&format!("/api/v1/handlers/{package}"), &handler)
            .await;
        assert_eq!(status, 200, "{v}");
        fx.until_gateway_sees(v["revision"].as_u64().unwrap()).await;
        fx.emit("greet-3", "com.example.hello", json!({"name": "Ferris"}))
            .await;
        let details = fx.wait_finished(package, 3, Duration::from_secs(60)).await;
        let third = details
            .iter()
            .map(|d| &d["execution"])
            .find(|e| e["event"]["id"] == "greet-3")
            .unwrap();
        assert_eq!(
            third["output"][0]["data"]["greeting"], "Howdy, Ferris!",
            "{third:#}"
        );
    }
    eprintln!(
        "{package}: first event done in {first:?} (fetch, compile, run); runs took {} us and {} us",
        execution["duration_us"], second["duration_us"]
    );
    fx.stop().await;
}

/// What `examples/hello` answers with.
async fn greets_like_hello(package: &str) {
    greets(
        package,
        "/functions/hello",
        "com.ferrisfx.hello.greeted",
        true,
    )
    .await;
}

/// What a project scaffolded by `ferrisfx new` as `name` answers with.
async fn greets_as_scaffolded(name: &str) {
    let greeted = format!("com.example.{name}.greeted");
    greets(name, &format!("/functions/{name}"), &greeted, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_hello_greets_like_the_rust_one() {
    greets_like_hello("hello-python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_hello_greets_like_the_rust_one() {
    greets_like_hello("hello-js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaffolded_functions_of_every_language_build_and_run() {
    for lang in ["rust", "python", "js"] {
        greets_as_scaffolded(&format!("scaffold-{lang}")).await;
    }
}
