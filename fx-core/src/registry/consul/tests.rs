//! Tests of the Consul registry: the conformance suite against the double (always) and against
//! a real agent when `FX_TEST_CONSUL` gives its address, plus what only Consul has.

use std::time::{Duration, Instant};

use super::*;
use crate::registry::consul_double::ConsulDouble;
use crate::registry::testsuite;
use crate::registry::HandlerRegistry;
use crate::testenv;
use crate::testsupport::{unique, HandlerBuilder};

fn settings(address: &str) -> ConsulSettings {
    ConsulSettings {
        address: address.to_string(),
        ..ConsulSettings::default()
    }
}

fn handler(name: &str) -> Handler {
    HandlerBuilder::new(name)
        .event_type("com.example.hello")
        .package("hello")
        .version("1.0.0")
        .build()
}

async fn double_and_registry() -> (ConsulDouble, ConsulRegistry) {
    let double = ConsulDouble::start().await.unwrap();
    let registry = ConsulRegistry::new(&settings(&double.address())).unwrap();
    (double, registry)
}

/// Writes a raw value under a key of the double, as an operator with `consul kv put` would.
async fn put_raw(address: &str, key: &str, value: &str) {
    let response = reqwest::Client::new()
        .put(format!("{address}/v1/kv/{key}"))
        .body(value.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "true");
}

#[tokio::test]
async fn conformance_suite_passes_against_the_double() {
    let (_double, registry) = double_and_registry().await;
    testsuite::run(&registry).await;
}

#[tokio::test]
async fn schedule_conformance_passes_against_the_double_beside_the_handlers() {
    let (double, handlers) = double_and_registry().await;
    let schedules = ConsulRegistry::schedules(&settings(&double.address())).unwrap();
    testsuite::run_schedules(&schedules).await;
    testsuite::run_hooks(&ConsulRegistry::hooks(&settings(&double.address())).unwrap()).await;
    // The schedules' and hooks' keys are not read as handlers.
    let table = HandlerRegistry::table(&handlers).await.unwrap();
    assert!(table.invalid.is_empty(), "{:?}", table.invalid);
}

#[test]
fn overlapping_prefixes_are_refused() {
    let e = ConsulRegistry::new(&ConsulSettings {
        prefix: "ferrisfx/".into(),
        ..settings("http://127.0.0.1:8500")
    })
    .err()
    .unwrap();
    assert!(e.message().contains("overlap"), "{e}");
}

#[tokio::test]
async fn conformance_suite_passes_against_a_real_consul() {
    let Some(address) = testenv::optional_backend("FX_TEST_CONSUL", "consul conformance") else {
        return;
    };
    let run = format!("ferrisfx-test/{}/", unique("run"));
    let settings = ConsulSettings {
        prefix: format!("{run}handlers/"),
        schedules_prefix: format!("{run}schedules/"),
        hooks_prefix: format!("{run}hooks/"),
        bundles_prefix: format!("{run}bundles/"),
        workflows_prefix: format!("{run}workflows/"),
        notifications_prefix: format!("{run}notifications/"),
        token: std::env::var("FX_TEST_CONSUL_TOKEN").ok(),
        ..settings(&address)
    };
    let registry = ConsulRegistry::new(&settings).unwrap();
    testsuite::run(&registry).await;
    testsuite::run_schedules(&ConsulRegistry::schedules(&settings).unwrap()).await;
    testsuite::run_hooks(&ConsulRegistry::hooks(&settings).unwrap()).await;
    let mut cleanup = reqwest::Client::new().delete(format!("{address}/v1/kv/{run}?recurse"));
    if let Ok(token) = std::env::var("FX_TEST_CONSUL_TOKEN") {
        cleanup = cleanup.header("X-Consul-Token", token);
    }
    let _ = cleanup.send().await;
}

#[tokio::test]
async fn unreachable_consul_is_unavailable_naming_the_address() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("http://127.0.0.1:{port}");
    let registry = ConsulRegistry::new(&ConsulSettings {
        token: Some("s3cret-token".into()),
        timeout_ms: 1_000,
        ..settings(&address)
    })
    .unwrap();
    let err = registry.table().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains(&address), "{}", err.chain());
    assert!(!err.chain().contains("s3cret"), "{}", err.chain());
    let err = registry.put(&handler("a"), Expect::Any).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    let err = registry.watch(3, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
}

#[tokio::test]
async fn hand_written_invalid_entries_are_listed_as_invalid() {
    let (double, registry) = double_and_registry().await;
    let address = double.address();
    registry
        .put(&handler("good"), Expect::Absent)
        .await
        .unwrap();
    let prefix = "ferrisfx/handlers";
    put_raw(&address, &format!("{prefix}/not-json"), "{ half").await;
    put_raw(
        &address,
        &format!("{prefix}/mismatch"),
        &serde_json::to_string(&handler("other")).unwrap(),
    )
    .await;
    put_raw(
        &address,
        &format!("{prefix}/bad-limits"),
        r#"{"name": "bad-limits", "filter": {"all": []}, "package": {"name": "p"}, "limits": {"memory_mb": 999999}}"#,
    )
    .await;
    put_raw(&address, &format!("{prefix}/empty"), "").await;
    // A key outside the prefix is not a handler at all.
    put_raw(&address, "ferrisfx/handlers-old/x", "whatever").await;

    let table = registry.table().await.unwrap();
    let names: Vec<_> = table
        .handlers
        .iter()
        .map(|h| h.handler.name.as_str())
        .collect();
    assert_eq!(names, ["good"]);
    let reasons: BTreeMap<_, _> = table
        .invalid
        .iter()
        .map(|i| (i.name.as_str(), i.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons["not-json"].contains("not a valid handler"),
        "{reasons:?}"
    );
    assert!(
        reasons["mismatch"].contains("does not match"),
        "{reasons:?}"
    );
    assert!(reasons["bad-limits"].contains("memory_mb"), "{reasons:?}");
    assert!(reasons["empty"].contains("no value"), "{reasons:?}");

    // A broken entry is not a handler but still occupies its name, and can be deleted.
    assert_eq!(registry.get("mismatch").await.unwrap(), None);
    let err = registry
        .put(&handler("mismatch"), Expect::Absent)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    registry.delete("mismatch", Expect::Any).await.unwrap();
    registry
        .put(&handler("mismatch"), Expect::Absent)
        .await
        .unwrap();
}

#[tokio::test]
async fn watch_wakes_within_a_second_on_a_put_from_another_client() {
    let (double, watcher) = double_and_registry().await;
    let editor = ConsulRegistry::new(&settings(&double.address())).unwrap();
    let revision = watcher.table().await.unwrap().revision;
    let watching = tokio::spawn(async move {
        let table = watcher.watch(revision, Duration::from_secs(30)).await;
        (table, Instant::now())
    });
    // The blocking query is in place before the put.
    assert!(double.until_blocking(1, Duration::from_secs(10)).await);
    let written = editor.put(&handler("new"), Expect::Absent).await.unwrap();
    let put_at = Instant::now();
    let (table, woke_at) = watching.await.unwrap();
    let table = table.unwrap();
    assert!(
        woke_at.saturating_duration_since(put_at) < Duration::from_secs(1),
        "the watch woke {:?} after the put",
        woke_at.saturating_duration_since(put_at)
    );
    assert_eq!(table.revision, written);
    assert_eq!(table.handlers[0].handler.name, "new");
}

#[tokio::test]
async fn two_editors_cannot_overwrite_each_other_silently() {
    let (double, alice) = double_and_registry().await;
    let bob = ConsulRegistry::new(&settings(&double.address())).unwrap();
    let created = alice.put(&handler("shared"), Expect::Absent).await.unwrap();

    // Both open the handler at the same revision and edit it.
    let seen_by_alice = alice.get("shared").await.unwrap().unwrap();
    let seen_by_bob = bob.get("shared").await.unwrap().unwrap();
    assert_eq!(seen_by_alice.revision, created);
    assert_eq!(seen_by_bob.revision, created);
    let mut alices = seen_by_alice.handler.clone();
    alices.description = "alice's edit".into();
    let mut bobs = seen_by_bob.handler.clone();
    bobs.description = "bob's edit".into();

    let saved = alice
        .put(&alices, Expect::Revision(seen_by_alice.revision))
        .await
        .unwrap();
    let err = bob
        .put(&bobs, Expect::Revision(seen_by_bob.revision))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains(&saved.to_string()), "{err}");
    let err = bob
        .delete("shared", Expect::Revision(seen_by_bob.revision))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let stored = bob.get("shared").await.unwrap().unwrap();
    assert_eq!(stored.handler.description, "alice's edit");
    assert_eq!(stored.revision, saved);
}

#[tokio::test]
async fn an_index_going_backwards_resets_the_watch() {
    let (double, registry) = double_and_registry().await;
    let kept = registry
        .put(&handler("kept"), Expect::Absent)
        .await
        .unwrap();
    registry
        .put(&handler("gone"), Expect::Absent)
        .await
        .unwrap();
    registry.delete("gone", Expect::Any).await.unwrap();
    let before = registry.table().await.unwrap().revision;
    assert!(before > kept, "the tombstone holds the listing's index");

    double.reap_tombstones();
    let table = registry
        .watch(before, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        table.revision, kept,
        "the index went back to the live entry"
    );

    // Watching from the lower index sees the next write at once.
    let watching = registry.watch(table.revision, Duration::from_secs(30));
    let writing = async {
        assert!(double.until_blocking(1, Duration::from_secs(10)).await);
        registry
            .put(&handler("next"), Expect::Absent)
            .await
            .unwrap()
    };
    let started = Instant::now();
    let (table, written) = tokio::join!(watching, writing);
    assert_eq!(table.unwrap().revision, written);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_watch_fails_when_consul_goes_down_and_works_once_it_is_back() {
    let (mut double, registry) = double_and_registry().await;
    let revision = registry.put(&handler("a"), Expect::Absent).await.unwrap();
    let watching = tokio::spawn(async move {
        let result = registry.watch(revision, Duration::from_secs(30)).await;
        (registry, result)
    });
    assert!(double.until_blocking(1, Duration::from_secs(10)).await);
    let started = Instant::now();
    double.go_down();
    let (registry, result) = watching.await.unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains(&double.address()), "{}", err.chain());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the watch noticed late"
    );

    double.come_back().await.unwrap();
    let table = registry.table().await.unwrap();
    assert_eq!(table.revision, revision, "the keys survived the outage");
    assert_eq!(table.handlers.len(), 1);
}

#[tokio::test]
async fn the_acl_token_is_sent_and_never_shown() {
    let double = ConsulDouble::start_with_token("s3cret-token")
        .await
        .unwrap();
    let without = ConsulRegistry::new(&settings(&double.address())).unwrap();
    let err = without.table().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(err.message().contains("403"), "{}", err.chain());
    assert!(err.message().contains("acl token"), "{}", err.chain());

    let with = ConsulSettings {
        token: Some("s3cret-token".into()),
        ..settings(&double.address())
    };
    assert!(!format!("{with:?}").contains("s3cret"));
    let registry = ConsulRegistry::new(&with).unwrap();
    registry.put(&handler("a"), Expect::Absent).await.unwrap();
    assert_eq!(registry.table().await.unwrap().handlers.len(), 1);
}

#[tokio::test]
async fn the_datacenter_is_passed_on() {
    let double = ConsulDouble::start().await.unwrap();
    let registry = ConsulRegistry::new(&ConsulSettings {
        datacenter: Some("dc1".into()),
        ..settings(&double.address())
    })
    .unwrap();
    registry.put(&handler("a"), Expect::Absent).await.unwrap();
    let elsewhere = ConsulRegistry::new(&ConsulSettings {
        datacenter: Some("dc9".into()),
        ..settings(&double.address())
    })
    .unwrap();
    let err = elsewhere.table().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{}", err.chain());
    assert!(
        err.message().contains("No path to datacenter"),
        "{}",
        err.chain()
    );
}

#[tokio::test]
async fn a_prefix_without_a_slash_gets_one() {
    let double = ConsulDouble::start().await.unwrap();
    let registry = ConsulRegistry::new(&ConsulSettings {
        prefix: "team-a/fx".into(),
        ..settings(&double.address())
    })
    .unwrap();
    registry.put(&handler("a"), Expect::Absent).await.unwrap();
    put_raw(&double.address(), "team-a/fx-other/b", "{}").await;
    let table = registry.table().await.unwrap();
    assert_eq!(table.handlers.len(), 1);
    assert!(table.invalid.is_empty());
    let raw = reqwest::get(format!("{}/v1/kv/team-a/fx/a", double.address()))
        .await
        .unwrap();
    assert_eq!(raw.status(), 200);
}

#[test]
fn settings_have_defaults_and_refuse_unknown_keys() {
    let parsed: ConsulSettings = toml::from_str("").unwrap();
    assert_eq!(parsed, ConsulSettings::default());
    assert_eq!(parsed.address, "http://127.0.0.1:8500");
    assert_eq!(parsed.prefix, "ferrisfx/handlers/");
    let err = toml::from_str::<ConsulSettings>("adress = \"http://x\"").unwrap_err();
    assert!(err.to_string().contains("adress"), "{err}");

    for (bad, why) in [
        (settings("consul:8500"), "not an http"),
        (settings("ftp://consul"), "not an http"),
        (
            ConsulSettings {
                prefix: "/".into(),
                ..ConsulSettings::default()
            },
            "key path",
        ),
        (
            ConsulSettings {
                token: Some("a\nb".into()),
                ..ConsulSettings::default()
            },
            "token",
        ),
        (
            ConsulSettings {
                timeout_ms: 0,
                ..ConsulSettings::default()
            },
            "timeout_ms",
        ),
    ] {
        let err = bad.validate().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains(why), "{err} (expected {why:?})");
    }
}
