//! What a function is handed besides its event: configuration values, and the secrets its
//! handler grants, from the platform secrets of the executor's pool, then its secrets
//! directory.

use cloudevents::AttributesReader;
use fx_core::grants::Grants;
use serde_json::Value;

use crate::support::{invocation, Fixture};

/// A vault over a SQLite store in the fixture's directory, with a fresh keyring.
async fn vault(fx: &Fixture) -> fx_core::secrets::Vault {
    use fx_core::secrets::{Keyring, Vault};
    let store =
        fx_core::store::embedded::SqliteStateStore::open(&fx.dir.path().join("state.sqlite"))
            .await
            .unwrap();
    let keyring = Keyring::parse(&Keyring::generate_line("k1").unwrap()).unwrap();
    Vault::new(std::sync::Arc::new(store), Some(keyring))
}

/// Writes platform secret `name` for executors of `pools`.
async fn set(vault: &fx_core::secrets::Vault, name: &str, value: &str, pools: &[&str]) {
    let value = fx_core::secrets::SecretValue::new(value).unwrap();
    let pools = pools.iter().map(|p| p.to_string()).collect();
    vault.set(name, &value, pools, "test").await.unwrap();
}

fn grants(config: &[(&str, &str)], secrets: &[&str]) -> Grants {
    Grants {
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        secrets: secrets.iter().map(|s| s.to_string()).collect(),
        http_allow: Default::default(),
    }
}

/// The single output event's data as text.
fn output_text(outcome: &fx_executor::InvocationOutcome) -> String {
    let events = outcome.result.as_ref().expect("the invocation succeeds");
    assert_eq!(events.len(), 1, "{events:?}");
    match events[0].data() {
        Some(cloudevents::Data::String(s)) => s.clone(),
        Some(cloudevents::Data::Binary(b)) => String::from_utf8(b.clone()).unwrap(),
        Some(cloudevents::Data::Json(v)) => v.to_string(),
        None => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_values_reach_the_function() {
    let fx = Fixture::new();
    let digest = fx.add_example("hello");
    let executor = fx.executor();
    let mut inv = invocation(&digest, "com.example.hello", "1", Default::default());
    let plain = executor.invoke(&inv).await;
    let greeting: Value = serde_json::from_str(&output_text(&plain)).unwrap();
    assert_eq!(greeting["greeting"], "Hello, test!");

    inv.grants = grants(&[("greeting", "Howdy")], &[]);
    let configured = executor.invoke(&inv).await;
    let greeting: Value = serde_json::from_str(&output_text(&configured)).unwrap();
    assert_eq!(greeting["greeting"], "Howdy, test!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_reads_only_the_secrets_granted_to_it_and_learns_why_not_otherwise() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.secrets_dir()).unwrap();
    std::fs::write(fx.secrets_dir().join("test-token"), "tok-123").unwrap();
    std::fs::write(fx.secrets_dir().join("other-token"), "never seen").unwrap();
    let digest = fx.add_example("misbehave");
    let executor = fx.executor();
    let mut inv = invocation(&digest, "fx.test.grants", "1", Default::default());
    inv.event.set_data(
        "text/plain",
        "test-token,test-missing,other-token".to_string(),
    );
    inv.grants = grants(
        &[("mode", "strict"), ("region", "eu")],
        &["test-token", "test-missing"],
    );
    let outcome = executor.invoke(&inv).await;
    let text = output_text(&outcome);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "config=mode=strict;region=eu;", "{text}");
    assert_eq!(lines[1], "secret test-token: ok tok-123", "{text}");
    assert!(
        lines[2].starts_with("secret test-missing: error")
            && lines[2].contains("no file \"test-missing\" in its secrets directory"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("secret other-token: error")
            && lines[3].contains("not granted to this function"),
        "{text}"
    );
    // The values never reach the logs.
    assert!(
        outcome.logs.iter().all(|l| !l.message.contains("tok-123")),
        "{:?}",
        outcome.logs
    );
    assert_eq!(outcome.result.as_ref().unwrap()[0].ty(), "fx.test.granted");

    // Without grants, nothing.
    inv.grants = Grants::default();
    let text = output_text(&executor.invoke(&inv).await);
    assert!(text.starts_with("config=\n"), "{text}");
    assert!(
        text.lines()
            .skip(1)
            .all(|l| l.contains("not granted to this function")),
        "{text}"
    );
}

/// The executor does not trust the invocation message: a grant of a secret the package does
/// not declare, outbound HTTP for a package without the capability, or limits beyond the
/// pool's ceilings fail the invocation as `refused`, naming what it asked for, before the
/// function runs; also when the compiled component comes from the disk cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_asking_for_more_than_its_package_declares_or_its_pool_allows_is_refused() {
    use fx_core::execution::FailureKind;
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.secrets_dir()).unwrap();
    std::fs::write(fx.secrets_dir().join("root-password"), "hunter2").unwrap();
    let misbehave = fx.add_example("misbehave");
    let hello = fx.add_example("hello");
    let executor = fx.executor_with(|s| {
        s.ceilings.memory_mb = 128;
        s.ceilings.timeout_ms = 10_000;
    });
    let refused = |outcome: &fx_executor::InvocationOutcome| {
        let failure = outcome.result.clone().unwrap_err();
        assert_eq!(failure.kind, FailureKind::Refused, "{failure:?}");
        assert_eq!(outcome.duration, std::time::Duration::ZERO, "it never ran");
        failure.message
    };

    let mut inv = invocation(&misbehave, "fx.test.grants", "1", Default::default());
    inv.event
        .set_data("text/plain", "root-password".to_string());
    inv.grants = grants(&[], &["test-token", "root-password"]);
    let message = refused(&executor.invoke(&inv).await);
    assert!(message.contains("root-password"), "{message}");
    assert!(!message.contains("test-token"), "declared: {message}");

    let mut inv = invocation(&hello, "com.example.hello", "2", Default::default());
    inv.grants.http_allow.insert("169.254.169.254".into());
    let message = refused(&executor.invoke(&inv).await);
    assert!(message.contains("wasi:http"), "{message}");

    for (change, named) in [
        (
            Box::new(|l: &mut fx_core::limits::Limits| l.memory_mb = 4096)
                as Box<dyn Fn(&mut fx_core::limits::Limits)>,
            "memory_mb = 4096",
        ),
        (Box::new(|l| l.timeout_ms = 900_000), "timeout_ms = 900000"),
        (Box::new(|l| l.memory_mb = 0), "zero limit"),
    ] {
        let mut inv = invocation(&hello, "com.example.hello", "3", Default::default());
        change(&mut inv.limits);
        let message = refused(&executor.invoke(&inv).await);
        assert!(message.contains(named), "{message}");
    }

    // Within the ceilings and the manifest, it runs; a fresh executor (compiled component
    // from disk, manifest beside it) refuses the same way.
    let inv = invocation(&hello, "com.example.hello", "4", Default::default());
    executor.invoke(&inv).await.result.unwrap();
    let again = fx.executor_with(|s| s.ceilings.memory_mb = 128);
    let mut inv = invocation(&misbehave, "fx.test.grants", "5", Default::default());
    inv.grants = grants(&[], &["root-password"]);
    let outcome = again.invoke(&inv).await;
    assert_eq!(
        outcome.compile_cache,
        Some(fx_core::execution::CacheLookup::Disk)
    );
    refused(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_secret_reaches_the_function_before_the_secrets_directory() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.secrets_dir()).unwrap();
    std::fs::write(fx.secrets_dir().join("test-token"), "tok-from-dir").unwrap();
    let vault = vault(&fx).await;
    set(&vault, "test-token", "tok-from-platform", &["default"]).await;
    let digest = fx.add_example("misbehave");
    let executor = fx
        .executor()
        .with_secret_delivery(std::sync::Arc::new(vault));
    let mut inv = invocation(&digest, "fx.test.grants", "1", Default::default());
    inv.event
        .set_data("text/plain", "test-token,test-missing".to_string());
    inv.grants = grants(&[], &["test-token", "test-missing"]);
    let outcome = executor.invoke(&inv).await;
    let text = output_text(&outcome);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[1], "secret test-token: ok tok-from-platform",
        "{text}"
    );
    assert!(
        lines[2].starts_with("secret test-missing: error")
            && lines[2].contains("neither the platform secrets of pool default")
            && lines[2].contains("nor the secrets directory"),
        "{text}"
    );
    assert!(
        outcome.logs.iter().all(|l| !l.message.contains("tok-from")),
        "{:?}",
        outcome.logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_secret_reaches_only_the_pools_it_is_delivered_to() {
    let fx = Fixture::new();
    let vault = vault(&fx).await;
    set(&vault, "test-token", "tok-gpu", &["gpu"]).await;
    let digest = fx.add_example("misbehave");
    let mut inv = invocation(&digest, "fx.test.grants", "1", Default::default());
    inv.event.set_data("text/plain", "test-token".to_string());
    inv.grants = grants(&[], &["test-token"]);

    let default = fx
        .executor()
        .with_secret_delivery(std::sync::Arc::new(vault.clone()));
    let text = output_text(&default.invoke(&inv).await);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[1].starts_with("secret test-token: error")
            && lines[1].contains("neither the platform secrets of pool default")
            && !lines[1].contains("tok-gpu"),
        "{text}"
    );

    let gpu = fx
        .executor_with(|s| s.pool = "gpu".into())
        .with_secret_delivery(std::sync::Arc::new(vault));
    let text = output_text(&gpu.invoke(&inv).await);
    assert_eq!(
        text.lines().nth(1),
        Some("secret test-token: ok tok-gpu"),
        "{text}"
    );
}

#[test]
fn an_executor_told_to_fetch_platform_secrets_without_a_token_does_not_start() {
    let fx = Fixture::new();
    let settings = fx_core::secrets::delivery::PlatformSecretsSettings {
        url: "http://127.0.0.1:9/".parse().unwrap(),
        token_file: None,
        token_env: "FX_TEST_NO_SUCH_TOKEN_VARIABLE".into(),
        ca_file: None,
    };
    let started = fx_executor::Executor::new(
        fx_executor::ExecutorSettings {
            cache_dir: fx.cache_dir(),
            platform_secrets: Some(settings),
            ..Default::default()
        },
        fx.packages.clone(),
        std::sync::Arc::new(fx.bus.clone()),
    );
    let Err(e) = started else {
        panic!("the executor started without a token");
    };
    assert_eq!(e.kind(), fx_core::ErrorKind::Invalid);
    let why = e.chain();
    assert!(
        why.contains("executor.platform_secrets") && why.contains("FX_TEST_NO_SUCH_TOKEN_VARIABLE"),
        "{why}"
    );
}
