//! Replay, bit for bit (`ferrisfx replay`): a recorded execution runs again in this process
//! with the exact package digest it ran and its handler's configuration as it was, and
//! matches its recorded output and log lines; moving `latest` to another package changes
//! neither the replay nor a pinned re-run, while an unpinned re-run runs the new package.

use std::time::Duration;

use ferrisfx::replay::{replay, Replay, ReplayArgs};
use fx_core::package::{PackageArchive, PackageDigest};
use fx_core::testsupport::{poll_until, HandlerBuilder};
use fx_tests::{example_package, TestPlatform};
use serde_json::{json, Value};

const TYPE: &str = "com.example.replay";

/// `hello` again as version 2.0.0, greeting `Howdy` by default: another digest, another output.
fn hello_v2() -> Vec<u8> {
    let original = PackageArchive::parse(&example_package("hello"), u64::MAX).unwrap();
    let mut manifest = original.manifest;
    manifest.version = "2.0.0".into();
    manifest.config.insert("greeting".into(), "Howdy".into());
    PackageArchive::build(&manifest, &original.component).unwrap()
}

/// The execution `id` once it has finished `attempts` attempts, with its log lines of the last
/// one (the sink may record them a moment after the state).
async fn finished(fx: &TestPlatform, id: &str, attempts: u64, logs: usize) -> Value {
    poll_until(
        &format!("execution {id} finishes attempt {attempts}"),
        Duration::from_secs(120),
        Duration::from_millis(50),
        || async move {
            let detail = fx.execution(id).await;
            let e = &detail["execution"];
            let done = matches!(e["status"].as_str(), Some("succeeded" | "failed"))
                && e["attempts"] == attempts;
            let lines = detail["logs"]
                .as_array()
                .map_or(0, |l| l.iter().filter(|l| l["attempt"] == attempts).count());
            if done && lines >= logs {
                Ok(detail)
            } else {
                Err(format!("{detail:#}"))
            }
        },
    )
    .await
}

fn greeting(detail: &Value) -> &str {
    detail["execution"]["output"][0]["data"]["greeting"]
        .as_str()
        .unwrap_or_else(|| panic!("no greeting: {detail:#}"))
}

async fn replayed(fx: &TestPlatform, args: ReplayArgs) -> Replay {
    replay(&ferrisfx::client::Api::new(&fx.base), &args)
        .await
        .unwrap_or_else(|e| panic!("replay of {}: {e:#}", args.execution_id))
}

fn args(id: &str) -> ReplayArgs {
    ReplayArgs {
        execution_id: id.into(),
        ..ReplayArgs::default()
    }
}

/// Replaces handler `greeter` with `config`; waits until the gateway runs it.
async fn configure(fx: &TestPlatform, config: Value) {
    let mut handler = serde_json::to_value(
        HandlerBuilder::new("greeter")
            .event_type(TYPE)
            .package("hello")
            .build(),
    )
    .unwrap();
    handler["config"] = config;
    let (code, v) = fx.put_json("/api/v1/handlers/greeter", &handler).await;
    assert_eq!(code, 200, "{v}");
    fx.until_gateway_sees(v["revision"].as_u64().unwrap()).await;
}

/// Re-runs execution `id`, pinned or not; answers the server's `Redriven`.
async fn rerun(fx: &TestPlatform, id: &str, pin: bool) -> Value {
    let path = format!("/api/v1/executions/{id}/rerun");
    let (code, v) = if pin {
        fx.post_json(&path, &json!({"pin": true})).await
    } else {
        fx.post_raw(&path, &[], Vec::new()).await
    };
    assert_eq!(code, 202, "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_matches_its_recording_and_keeps_the_digest_it_ran_when_latest_moves() {
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    let (code, v1) = fx.upload(example_package("hello")).await;
    assert_eq!(code, 201, "{v1}");
    let v1_digest = PackageDigest::parse(v1["digest"].as_str().unwrap()).unwrap();
    let created = fx
        .create_handler(
            &HandlerBuilder::new("greeter")
                .event_type(TYPE)
                .package("hello")
                .build(),
        )
        .await;
    fx.until_gateway_sees(created["revision"].as_u64().unwrap())
        .await;
    fx.emit("replay-1", TYPE, json!({"name": "replay"})).await;
    let done = fx
        .wait_finished("greeter", 1, Duration::from_secs(120))
        .await;
    let id = done[0]["execution"]["id"].as_str().unwrap().to_string();
    let detail = finished(&fx, &id, 1, 1).await;
    assert_eq!(detail["execution"]["status"], "succeeded", "{detail:#}");
    assert_eq!(greeting(&detail), "Hello, replay!");

    // The replay runs the recorded digest with the handler as it was, and matches.
    let first = replayed(&fx, args(&id)).await;
    assert!(first.matches(), "{first}");
    assert_eq!(first.package.digest, v1_digest);
    assert_eq!(first.package.version, "1.0.0");
    assert!(first.notes.is_empty(), "{first}");
    assert_eq!(first.replayed.logs.len(), 1, "{first}");
    assert!(first
        .to_string()
        .contains("replay matches: 1 output event(s), 1 log line(s)"));

    // The archive of a version is downloadable, byte for byte, with its digest.
    let response = fx
        .http
        .get(format!(
            "{}/api/v1/packages/hello/versions/1.0.0/archive",
            fx.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-fx-digest"], v1_digest.as_str());
    let bytes = response.bytes().await.unwrap();
    assert_eq!(PackageDigest::of(&bytes), v1_digest);
    assert_eq!(bytes.as_ref(), example_package("hello").as_slice());
    let (code, v) = fx
        .get("/api/v1/packages/hello/versions/9.9.9/archive")
        .await;
    assert_eq!(code, 404, "{v}");

    // `latest` moves to another package: the replay still runs (and matches with) 1.0.0.
    let v2_bytes = hello_v2();
    let (code, v2) = fx.upload(v2_bytes.clone()).await;
    assert_eq!(code, 201, "{v2}");
    let v2_digest = PackageDigest::parse(v2["digest"].as_str().unwrap()).unwrap();
    assert_ne!(v1_digest, v2_digest);
    let (_, package) = fx.get("/api/v1/packages/hello").await;
    assert_eq!(package["aliases"]["latest"], "2.0.0", "{package}");
    let again = replayed(&fx, args(&id)).await;
    assert!(again.matches(), "{again}");
    assert_eq!(again.package.digest, v1_digest);

    // The handler changes: the replay uses it as it was; with --current-handler as it is,
    // and the diff shows what that changes.
    configure(&fx, json!({"greeting": "Hi"})).await;
    let as_it_was = replayed(&fx, args(&id)).await;
    assert!(as_it_was.matches(), "{as_it_was}");
    assert!(as_it_was.grants.config.get("greeting") == Some(&"Hello".to_string()));
    let as_it_is = replayed(
        &fx,
        ReplayArgs {
            current_handler: true,
            ..args(&id)
        },
    )
    .await;
    assert!(!as_it_is.matches(), "{as_it_is}");
    let report = as_it_is.to_string();
    assert!(report.contains("replay differs:"), "{report}");
    assert!(
        report.contains("/data/greeting: recorded \"Hello, replay!\", replayed \"Hi, replay!\""),
        "{report}"
    );
    // The CLI's entry point fails (exit status 1) on a difference.
    let cli = ferrisfx::replay::run(
        &ferrisfx::client::Api::new(&fx.base),
        ReplayArgs {
            current_handler: true,
            ..args(&id)
        },
    )
    .await;
    assert!(cli.unwrap_err().to_string().contains("differs"));

    // A pinned re-run runs the recorded digest (with the handler as it is now).
    let pinned = rerun(&fx, &id, true).await;
    assert_eq!(pinned["pinned"], true, "{pinned}");
    assert_eq!(pinned["package"]["digest"], v1_digest.as_str(), "{pinned}");
    assert_eq!(pinned["package"]["version"], "1.0.0", "{pinned}");
    let detail = finished(&fx, &id, 2, 1).await;
    assert_eq!(detail["execution"]["status"], "succeeded", "{detail:#}");
    assert_eq!(greeting(&detail), "Hi, replay!");
    // Its replay uses the handler of the re-run, and matches.
    let after_pinned = replayed(&fx, args(&id)).await;
    assert!(after_pinned.matches(), "{after_pinned}");
    assert_eq!(after_pinned.package.digest, v1_digest);

    // An unpinned re-run runs the handler's current package: 2.0.0, greeting Howdy.
    configure(&fx, json!({})).await;
    let unpinned = rerun(&fx, &id, false).await;
    assert!(unpinned.get("pinned").is_none(), "{unpinned}");
    assert_eq!(
        unpinned["package"]["digest"],
        v2_digest.as_str(),
        "{unpinned}"
    );
    let detail = finished(&fx, &id, 3, 1).await;
    assert_eq!(greeting(&detail), "Howdy, replay!", "{detail:#}");
    // The execution still records the package resolved at its creation, so its replay runs
    // 1.0.0 and says why it differs; the archive that ran, given as a file, matches.
    let recorded_v1 = replayed(&fx, args(&id)).await;
    assert!(!recorded_v1.matches(), "{recorded_v1}");
    assert!(
        recorded_v1.to_string().contains("was run again"),
        "{recorded_v1}"
    );
    let file = dir.path().join("hello-2.0.0.fxpkg");
    std::fs::write(&file, &v2_bytes).unwrap();
    let with_file = replayed(
        &fx,
        ReplayArgs {
            package: Some(file),
            ..args(&id)
        },
    )
    .await;
    assert!(with_file.matches(), "{with_file}");
    assert_eq!(with_file.package.digest, v2_digest);

    // When the recorded digest is gone, a pinned re-run is refused and a replay says so.
    fx.backends().packages.delete(&v1_digest).await.unwrap();
    let (code, v) = fx
        .post_json(
            &format!("/api/v1/executions/{id}/rerun?pin=true"),
            &json!({}),
        )
        .await;
    assert_eq!(code, 409, "{v}");
    assert!(v.to_string().contains("no longer stored"), "{v}");
    let gone = replay(&ferrisfx::client::Api::new(&fx.base), &args(&id))
        .await
        .unwrap_err();
    let message = format!("{gone:#}");
    assert!(
        message.contains("no longer in the package store"),
        "{message}"
    );
    assert!(message.contains("--package FILE"), "{message}");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_reads_granted_secrets_from_the_directory_given() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("executor-secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("test-token"), "tok-replay").unwrap();
    let mut settings = ferrisfx::settings::Settings {
        data_dir: dir.path().join("data"),
        example: false,
        ..fx_tests::open_settings()
    };
    settings.executor.secrets_dir = Some(secrets.clone());
    let fx = TestPlatform::start_with(settings).await;
    assert_eq!(fx.upload(example_package("misbehave")).await.0, 201);
    let vault = json!({
        "name": "vault",
        "filter": {"exact": {"attribute": "type", "value": "fx.test.grants"}},
        "package": {"name": "misbehave"},
        "config": {"mode": "strict"},
        "secrets": ["test-token"],
    });
    let (code, v) = fx.post_json("/api/v1/handlers", &vault).await;
    assert_eq!(code, 201, "{v}");
    fx.until_gateway_sees(v["revision"].as_u64().unwrap()).await;
    let (code, v) = fx
        .post_raw(
            "/events",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "replay-secret-1"),
                ("ce-source", "/tests"),
                ("ce-type", "fx.test.grants"),
                ("content-type", "text/plain"),
            ],
            b"test-token".to_vec(),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let done = fx.wait_finished("vault", 1, Duration::from_secs(120)).await;
    let execution = &done[0]["execution"];
    assert_eq!(execution["status"], "succeeded", "{:#}", done[0]);
    let id = execution["id"].as_str().unwrap();

    let with_secrets = replayed(
        &fx,
        ReplayArgs {
            secrets_dir: Some(secrets),
            ..args(id)
        },
    )
    .await;
    assert!(with_secrets.matches(), "{with_secrets}");
    // Without the directory the function is told the secret is unavailable: another output,
    // and a note saying why.
    let without = replayed(&fx, args(id)).await;
    assert!(!without.matches(), "{without}");
    let report = without.to_string();
    assert!(report.contains("no --secrets-dir"), "{report}");
    assert!(report.contains("/data: recorded"), "{report}");
    fx.stop().await;
}
