//! Configuration values and secrets, from the handler (and the manifest's defaults) to the
//! function, through the whole platform.

use std::time::Duration;

use ferrisfx::settings::Settings;
use fx_tests::{example_package, TestPlatform};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_config_and_granted_secrets_reach_the_function_and_undeclared_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("executor-secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("test-token"), "tok-e2e").unwrap();
    let mut settings = Settings {
        data_dir: dir.path().join("data"),
        example: false,
        ..fx_tests::open_settings()
    };
    settings.executor.secrets_dir = Some(secrets);
    let fx = TestPlatform::start_with(settings).await;
    assert_eq!(fx.upload(example_package("hello")).await.0, 201);
    assert_eq!(fx.upload(example_package("misbehave")).await.0, 201);

    // A configuration value overrides the manifest's default greeting.
    let greeter = json!({
        "name": "greeter",
        "filter": {"exact": {"attribute": "type", "value": "com.example.hello"}},
        "package": {"name": "hello"},
        "config": {"greeting": "Howdy"},
    });
    let (code, v) = fx.post_json("/api/v1/handlers", &greeter).await;
    assert_eq!(code, 201, "{v}");
    fx.emit("cfg-1", "com.example.hello", json!({})).await;
    let done = fx
        .wait_finished("greeter", 1, Duration::from_secs(120))
        .await;
    let output = &done[0]["execution"]["output"][0];
    assert_eq!(output["data"]["greeting"], "Howdy, world!", "{:#}", done[0]);

    // A secret the package does not declare cannot be granted.
    let mut vault = json!({
        "name": "vault",
        "filter": {"exact": {"attribute": "type", "value": "fx.test.grants"}},
        "package": {"name": "misbehave"},
        "config": {"mode": "strict"},
        "secrets": ["test-token", "db-password"],
    });
    let (code, v) = fx.post_json("/api/v1/handlers", &vault).await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v.to_string().contains("db-password") && v.to_string().contains("does not declare"),
        "{v}"
    );

    // Outbound HTTP only for packages that declare it: hello does not.
    let mut greeter_online = greeter.clone();
    greeter_online["name"] = json!("greeter-online");
    greeter_online["http_allow"] = json!(["api.example.com"]);
    let (code, v) = fx.post_json("/api/v1/handlers", &greeter_online).await;
    assert_eq!(code, 400, "{v}");
    assert!(v.to_string().contains("wasi:http"), "{v}");

    // A declared and granted one reaches the function; the handler shows its name only.
    vault["secrets"] = json!(["test-token"]);
    let (code, v) = fx.post_json("/api/v1/handlers", &vault).await;
    assert_eq!(code, 201, "{v}");
    let (_, stored) = fx.get("/api/v1/handlers/vault").await;
    assert_eq!(
        stored["handler"]["secrets"],
        json!(["test-token"]),
        "{stored}"
    );
    assert!(!stored.to_string().contains("tok-e2e"), "{stored}");
    let (code, v) = fx
        .post_raw(
            "/events",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "secret-1"),
                ("ce-source", "/tests"),
                ("ce-type", "fx.test.grants"),
                ("content-type", "text/plain"),
            ],
            b"test-token,test-missing".to_vec(),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    let done = fx.wait_finished("vault", 1, Duration::from_secs(120)).await;
    let execution = &done[0]["execution"];
    assert_eq!(execution["status"], "succeeded", "{:#}", done[0]);
    let text = execution["output"][0]["data"].as_str().unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "config=mode=strict;", "{text}");
    assert_eq!(lines[1], "secret test-token: ok tok-e2e", "{text}");
    // Declared by the package but not granted by this handler.
    assert!(lines[2].contains("not granted to this function"), "{text}");
    // The secret's value is in no log line.
    assert!(!done[0]["logs"].to_string().contains("tok-e2e"));
    fx.stop().await;
}
