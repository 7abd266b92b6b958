//! Platform secrets through a distributed deployment: written with the API, sealed by the
//! server, fetched over HTTP by each pool's executors with their own service account token, and
//! read by functions; a pool receives only its own secrets, and no value reaches a log.

use std::time::Duration;

use fx_core::testenv;
use fx_core::testsupport::unique;
use fx_tests::processes::Deployment;
use fx_tests::Api;
use serde_json::json;

const PASSWORD: &str = "e2e-admin-password-1";
const VALUE: &str = "tok-platform-5b0e2c";

/// The `[backends.*]` tables: Kafka, and PostgreSQL and S3 when the test command started them.
fn backends_toml(kafka: &str, run: &str) -> String {
    let mut toml = format!(
        "[backends.bus]\nkind = \"kafka\"\nbrokers = \"{kafka}\"\ntopic_prefix = \"{run}.\"\npartitions = 1\nsession_timeout_ms = 6000\n\n"
    );
    if let Ok(url) = std::env::var("FX_TEST_POSTGRES") {
        toml.push_str(&format!(
            "[backends.state]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{run}\"\n\n[backends.sink]\nkind = \"postgres\"\nurl = \"{url}\"\nschema = \"{run}\"\n\n"
        ));
    }
    toml
}

/// Makes service account `name`, allowed `secret:deliver` on `pool`; answers a token of it.
async fn executor_account(admin: &Api, name: &str, pool: &str) -> String {
    let (code, v) = admin
        .post_json(
            "/api/v1/accounts",
            &json!({"name": name, "kind": "service_account"}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = admin
        .post_json(
            "/api/v1/rules",
            &json!({"subject": format!("service:{name}"), "grant": {"action": "secret:deliver"}, "pattern": pool}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = admin
        .post_json(
            &format!("/api/v1/accounts/{name}/tokens"),
            &json!({"name": "executor"}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// The one line of the `vault` function's output about secret `test-token`.
async fn secret_line(api: &Api, handler: &str, d: &Deployment) -> String {
    let done = api
        .wait_finished(handler, 1, Duration::from_secs(120))
        .await;
    let execution = &done[0]["execution"];
    assert_eq!(
        execution["status"],
        "succeeded",
        "{:#}\n{}",
        done[0],
        d.all_logs()
    );
    let text = execution["output"][0]["data"].as_str().unwrap().to_string();
    text.lines()
        .find(|l| l.starts_with("secret test-token"))
        .unwrap_or_else(|| panic!("no line about test-token in {text}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_secrets_reach_only_the_executors_of_their_pools_over_http() {
    let Some(kafka) = testenv::backend("FX_TEST_KAFKA", "platform secrets over HTTP") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let run = unique("fxsec").replace('-', "");
    let mut d = Deployment::new(dir.path(), &backends_toml(&kafka, &run));
    let keyring = fx_core::secrets::Keyring::generate_line("e2e1").unwrap();
    d.start_with_env(
        "server",
        &[],
        &[
            ("FX_SERVER__AUTH__ENABLED", "true"),
            ("FX_SERVER__AUTH__BOOTSTRAP_PASSWORD", PASSWORD),
            ("FX_SECRETS_KEY", &keyring),
        ],
    );
    d.wait_ready().await;
    let (code, v) = Api::new(d.base.clone())
        .post_json(
            "/api/v1/login",
            &json!({"name": "admin", "password": PASSWORD}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let admin = Api::with_token(d.base.clone(), v["token"].as_str().unwrap());

    // The secret, delivered to the default pool only.
    let (code, v) = admin
        .put_json(
            "/api/v1/secrets/test-token",
            &json!({"value": VALUE, "pools": ["default"]}),
        )
        .await;
    assert_eq!(code, 201, "{v}");
    let default_token = executor_account(&admin, "executor-default", "default").await;
    let gpu_token = executor_account(&admin, "executor-gpu", "gpu").await;
    // The gpu pool's token cannot fetch the default pool's secrets.
    let (code, _) = Api::with_token(d.base.clone(), &gpu_token)
        .get("/api/v1/pools/default/secrets")
        .await;
    assert_eq!(code, 403);

    admin.upload_example("misbehave").await;
    for (name, pool) in [("vault", "default"), ("vault-gpu", "gpu")] {
        let (code, v) = admin
            .post_json(
                "/api/v1/handlers",
                &json!({
                    "name": name,
                    "filter": {"exact": {"attribute": "source", "value": format!("/{name}")}},
                    "package": {"name": "misbehave"},
                    "config": {"mode": "strict"},
                    "secrets": ["test-token"],
                    "pool": pool,
                }),
            )
            .await;
        assert_eq!(code, 201, "{v}");
    }
    d.start_with_env(
        "executor",
        &["--pool", "default"],
        &[
            ("FX_EXECUTOR__PLATFORM_SECRETS__URL", &d.base.clone()),
            ("FX_EXECUTOR_TOKEN", &default_token),
        ],
    );
    d.start_with_env(
        "executor",
        &["--pool", "gpu"],
        &[
            ("FX_EXECUTOR__PLATFORM_SECRETS__URL", &d.base.clone()),
            ("FX_EXECUTOR_TOKEN", &gpu_token),
        ],
    );
    d.start("gateway", &[]);

    for name in ["vault", "vault-gpu"] {
        let (code, v) = admin
            .post_raw(
                "/events",
                &[
                    ("ce-specversion", "1.0"),
                    ("ce-id", &format!("{name}-1")),
                    ("ce-source", &format!("/{name}")),
                    ("ce-type", "fx.test.grants"),
                    ("content-type", "text/plain"),
                ],
                b"test-token".to_vec(),
            )
            .await;
        assert_eq!(code, 202, "{v}");
    }
    let line = secret_line(&admin, "vault", &d).await;
    assert_eq!(line, format!("secret test-token: ok {VALUE}"));
    let line = secret_line(&admin, "vault-gpu", &d).await;
    assert!(
        line.contains("error") && line.contains("pool gpu") && !line.contains(VALUE),
        "{line}"
    );

    // No value in any process's log, nor in the executions' logs.
    for i in 0..d.processes.len() {
        let log = d.log_of(i);
        assert!(!log.contains(VALUE), "{}: {log}", d.processes[i].name);
    }
    let (_, listed) = admin.get("/api/v1/secrets").await;
    assert!(!listed.to_string().contains(VALUE), "{listed}");
    for p in d.processes.iter_mut() {
        p.terminate();
    }
}
