//! The walking skeleton: an event over HTTP runs a function and is recorded, in one process.

use std::time::{Duration, Instant};

use fx_core::testsupport::poll_until;
use fx_tests::{example_package, TestPlatform};
use serde_json::{json, Value};

fn log_messages(detail: &Value) -> Vec<String> {
    detail["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_over_http_runs_the_example_and_is_visible_in_api_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), true).await;

    fx.emit("greet-1", "com.example.hello", json!({"name": "Ferris"}))
        .await;
    let details = fx.wait_finished("hello", 1, Duration::from_secs(60)).await;
    let detail = &details[0];
    let execution = &detail["execution"];
    assert_eq!(execution["status"], "succeeded", "{detail:#}");
    let output = execution["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{detail:#}");
    assert_eq!(output[0]["type"], "com.ferrisfx.hello.greeted");
    assert_eq!(output[0]["data"]["greeting"], "Hello, Ferris!");
    assert!(
        log_messages(detail)
            .iter()
            .any(|m| m.contains("hello from FerrisFX")),
        "{detail:#}"
    );
    assert!(execution["duration_us"].as_u64().is_some());

    let id = execution["id"].as_str().unwrap();
    let (status, page) = fx.get_text(&format!("/executions/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("succeeded") && page.contains("hello from FerrisFX"),
        "{page}"
    );
    assert!(page.contains("Hello, Ferris!"), "output shown on the page");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_handler_runs_on_the_event_a_function_emits() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    assert_eq!(fx.upload(example_package("order-pricing")).await.0, 201);
    assert_eq!(fx.upload(example_package("hello")).await.0, 201);
    fx.handler(
        "pricing",
        "order-pricing",
        "com.example.order.created",
        json!({}),
    )
    .await;
    fx.handler(
        "priced-greeter",
        "hello",
        "com.example.order.priced",
        json!({}),
    )
    .await;

    let order = json!({"order_id": "o-42", "currency": "EUR",
        "items": [{"sku": "a", "qty": 2, "unit_price": 10.0}, {"sku": "b", "qty": 1, "unit_price": 5.0}]});
    fx.emit("order-42", "com.example.order.created", order)
        .await;

    let pricing = fx
        .wait_finished("pricing", 1, Duration::from_secs(60))
        .await;
    let execution = &pricing[0]["execution"];
    assert_eq!(execution["status"], "succeeded", "{execution:#}");
    let priced = &execution["output"][0];
    assert_eq!(priced["type"], "com.example.order.priced");
    assert_eq!(priced["subject"], "o-42");
    assert_eq!(
        priced["data"]["subtotal"].as_f64(),
        Some(25.0),
        "{priced:#}"
    );
    assert_eq!(priced["data"]["total"].as_f64(), Some(30.0), "{priced:#}");

    let greeter = fx
        .wait_finished("priced-greeter", 1, Duration::from_secs(60))
        .await;
    let chained = &greeter[0]["execution"];
    assert_eq!(chained["status"], "succeeded", "{chained:#}");
    assert_eq!(chained["event"]["type"], "com.example.order.priced");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_loop_and_memory_bomb_fail_with_named_reasons_while_others_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    assert_eq!(fx.upload(example_package("misbehave")).await.0, 201);
    let limits = json!({"timeout_ms": 1000, "memory_mb": 32});
    for kind in ["trap", "loop", "membomb", "ok"] {
        fx.handler(
            kind,
            "misbehave",
            &format!("fx.test.{kind}"),
            limits.clone(),
        )
        .await;
    }
    let start = Instant::now();
    for kind in ["trap", "loop", "membomb"] {
        fx.emit(&format!("{kind}-1"), &format!("fx.test.{kind}"), json!({}))
            .await;
    }
    for i in 0..20 {
        fx.emit(&format!("ok-{i}"), "fx.test.ok", json!({"i": i}))
            .await;
    }
    let ok = fx.wait_finished("ok", 20, Duration::from_secs(60)).await;
    assert!(
        ok.iter().all(|d| d["execution"]["status"] == "succeeded"),
        "{ok:#?}"
    );

    for (kind, reason) in [
        ("trap", "unreachable"),
        ("loop", "timed out after 1000 ms"),
        ("membomb", "memory limit of 32 MiB"),
    ] {
        let d = fx.wait_finished(kind, 1, Duration::from_secs(60)).await;
        let e = &d[0]["execution"];
        assert_eq!(e["status"], "failed", "{kind}: {e:#}");
        let message = e["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(reason),
            "{kind}: reason {message:?} should name {reason:?}"
        );
        let run_us = e["duration_us"].as_u64().unwrap();
        assert!(
            run_us < 3_000_000,
            "{kind} ran {run_us} us: beyond timeout plus margin"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(30));
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    let structured = [("content-type", "application/cloudevents+json")];
    // (case, headers, body, what the error must mention)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "missing id",
            structured.to_vec(),
            r#"{"specversion":"1.0","source":"/s","type":"t"}"#,
            "\"id\"",
        ),
        (
            "missing source",
            structured.to_vec(),
            r#"{"specversion":"1.0","id":"1","type":"t"}"#,
            "\"source\"",
        ),
        (
            "missing type",
            structured.to_vec(),
            r#"{"specversion":"1.0","id":"1","source":"/s"}"#,
            "\"type\"",
        ),
        (
            "missing specversion",
            structured.to_vec(),
            r#"{"id":"1","source":"/s","type":"t"}"#,
            "\"specversion\"",
        ),
        (
            "bad json",
            structured.to_vec(),
            r#"{"specversion":"1.0","id":"#,
            "json",
        ),
        (
            "wrong content type",
            vec![("content-type", "text/plain")],
            "hello",
            "not a cloudevent",
        ),
        (
            "binary mode, body not json",
            vec![
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("content-type", "application/json"),
            ],
            "{oops",
            "undecodable data",
        ),
    ];
    for (name, headers, body, expected) in cases {
        let (status, v) = fx
            .post_raw("/events", &headers, body.as_bytes().to_vec())
            .await;
        assert_eq!(status, 400, "{name}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(expected),
            "{name}: {message:?} should mention {expected:?}"
        );
    }
    // Binary mode is accepted too.
    let (status, v) = fx
        .post_raw(
            "/events",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "b-1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("content-type", "application/json"),
            ],
            br#"{"x":1}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_packages_and_unknown_packages_get_clear_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    let (status, v) = fx.upload(b"definitely not an archive".to_vec()).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gzipped tar"),
        "{v}"
    );
    let (_, list) = fx.get("/api/v1/packages").await;
    assert_eq!(
        list.as_array().map(Vec::len).unwrap_or(0),
        0,
        "nothing stored: {list}"
    );

    let body = json!({"name": "ghost", "filter": {"exact": {"attribute": "type", "value": "x"}}, "package": {"name": "nope"}});
    let (status, v) = fx.post_json("/api/v1/handlers", &body).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope@latest"),
        "{v}"
    );
    let (status, _) = fx.get("/api/v1/handlers/ghost").await;
    assert_eq!(status, 404);

    // A handler whose package alias points at a version that later does not resolve: the
    // execution is recorded as failed and names the package.
    assert_eq!(fx.upload(example_package("hello")).await.0, 201);
    let body = json!({"name": "pinned", "filter": {"exact": {"attribute": "type", "value": "pin"}}, "package": {"name": "hello", "version": "latest"}});
    assert_eq!(fx.post_json("/api/v1/handlers", &body).await.0, 201);
    let mut handlers: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("handlers.json")).unwrap())
            .unwrap();
    handlers["handlers"]["pinned"]["handler"]["package"]["version"] = json!("9.9.9");
    std::fs::write(dir.path().join("handlers.json"), handlers.to_string()).unwrap();
    let revision = poll_until(
        "the hand edit of handlers.json is picked up",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let (_, h) = fx.get("/api/v1/handlers/pinned").await;
            if h.to_string().contains("9.9.9") {
                Ok(h["revision"].as_u64().unwrap())
            } else {
                Err(h.to_string())
            }
        },
    )
    .await;
    // The registry has it; the event must not race the gateway's copy.
    fx.until_gateway_sees(revision).await;
    fx.emit("pin-1", "pin", json!({})).await;
    let d = fx.wait_finished("pinned", 1, Duration::from_secs(30)).await;
    let e = &d[0]["execution"];
    assert_eq!(e["status"], "failed");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hello@9.9.9"),
        "{e:#}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_posted_twice_yields_one_execution() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), true).await;
    fx.emit("twice", "com.example.hello", json!({"name": "a"}))
        .await;
    fx.emit("twice", "com.example.hello", json!({"name": "a"}))
        .await;
    fx.wait_finished("hello", 1, Duration::from_secs(60)).await;
    // Give a wrongly duplicated execution time to appear, then check there is exactly one.
    fx.emit("after", "com.example.hello", json!({})).await;
    fx.wait_finished("hello", 2, Duration::from_secs(60)).await;
    let items = fx.executions("hello").await;
    let twice: Vec<_> = items.iter().filter(|e| e["event_id"] == "twice").collect();
    assert_eq!(twice.len(), 1, "{items:#?}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_handlers_and_executions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), true).await;
    fx.emit("before-restart", "com.example.hello", json!({"name": "r"}))
        .await;
    let before = fx.wait_finished("hello", 1, Duration::from_secs(60)).await;
    let id = before[0]["execution"]["id"].as_str().unwrap().to_string();
    fx.stop().await;

    let fx = TestPlatform::start(dir.path(), true).await;
    let (_, packages) = fx.get("/api/v1/packages").await;
    assert!(packages.to_string().contains("hello"), "{packages}");
    let (status, handler) = fx.get("/api/v1/handlers/hello").await;
    assert_eq!(status, 200, "{handler}");
    let (status, detail) = fx.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(detail["execution"]["status"], "succeeded");
    assert!(!detail["logs"].as_array().unwrap().is_empty());
    // And it still runs events.
    fx.emit("after-restart", "com.example.hello", json!({}))
        .await;
    fx.wait_finished("hello", 2, Duration::from_secs(60)).await;
    fx.stop().await;
}

/// A package in an archive of its own with `component` as its component.
fn package_with(name: &str, component: &[u8]) -> Vec<u8> {
    let manifest =
        fx_core::package::Manifest::parse(&format!("name = \"{name}\"\nversion = \"1.0.0\"\n"))
            .unwrap();
    fx_core::package::PackageArchive::build(&manifest, component).unwrap()
}

/// Issue 13.8: uploads are checked by the engine that will run them. A valid component that
/// imports what the host does not provide, or exports no function, is refused at upload with
/// the reason and nothing is stored; a good one is compiled at upload, so its first event
/// finds it in the executor's memory instead of paying the compile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_compiled_and_linked_by_the_executors_engine() {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;

    // An instance the host does not provide, with one function in it.
    let mut imports_unknown = Component::new();
    let mut instance = InstanceType::new();
    instance
        .ty()
        .function()
        .params(std::iter::empty::<(&str, wasm_encoder::ComponentValType)>())
        .result(None);
    instance.export("poke", ComponentTypeRef::Func(0));
    let mut types = ComponentTypeSection::new();
    types.instance(&instance);
    imports_unknown.section(&types);
    let mut imports = ComponentImportSection::new();
    imports.import("acme:nope/thing", ComponentTypeRef::Instance(0));
    imports_unknown.section(&imports);
    let cases = [
        (
            "imports-unknown",
            imports_unknown.finish(),
            "acme:nope/thing",
        ),
        ("exports-nothing", Component::new().finish(), "export"),
    ];
    for (name, component, reason) in cases {
        let (status, v) = fx.upload(package_with(name, &component)).await;
        assert_eq!(status, 400, "{name}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("cannot run on the executors"),
            "{name}: {message}"
        );
        assert!(message.contains(reason), "{name}: {message}");
        let (status, _) = fx.get(&format!("/api/v1/packages/{name}")).await;
        assert_eq!(status, 404, "{name} was not stored");
    }

    assert_eq!(fx.upload(example_package("hello")).await.0, 201);
    fx.handler("greet", "hello", "com.example.hello", json!({}))
        .await;
    fx.emit("first", "com.example.hello", json!({"name": "Ferris"}))
        .await;
    let details = fx.wait_finished("greet", 1, Duration::from_secs(60)).await;
    let attempt = &details[0]["execution"]["attempt_history"][0];
    assert_eq!(
        attempt["measurements"]["compile_cache"], "memory",
        "the first event found the component compiled at upload: {attempt:#}"
    );
    fx.stop().await;
}
