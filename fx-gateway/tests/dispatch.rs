//! The gateway over embedded backends: matching, dispatch, dedup and the dead-letter topic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::Utc;
use fx_core::backends::{BackendSettings, Backends};
use fx_core::bus::topics;
use fx_core::event::{encode_message, new_json_event, Message};
use fx_core::execution::{ExecutionQuery, ExecutionStatus, Invocation};
use fx_core::handler::{Filter, Handler, PackageRef};
use fx_core::package::{Manifest, PackageDigest, PackageVersion};
use fx_core::registry::Expect;
use fx_gateway::dispatch::{Dispatched, Dispatcher};
use fx_gateway::table::LiveTable;
use tokio_util::sync::CancellationToken;

fn handler(name: &str, ty: &str, package: &str) -> Handler {
    Handler {
        name: name.into(),
        description: String::new(),
        filter: Filter::type_is(ty),
        package: PackageRef {
            name: package.into(),
            version: "latest".into(),
        },
        pool: "default".into(),
        limits: Default::default(),
        retry: Default::default(),
        enabled: true,
        reuse_instances: false,
        config: Default::default(),
        secrets: Default::default(),
        http_allow: Default::default(),
    }
}

async fn backends(dir: &std::path::Path) -> Backends {
    let b = BackendSettings::default().build(dir).await.unwrap();
    let manifest = Manifest::parse("name = \"hello\"\nversion = \"1.0.0\"\n").unwrap();
    b.state
        .add_package_version(&PackageVersion {
            name: "hello".into(),
            version: "1.0.0".into(),
            digest: PackageDigest::of(b"x"),
            size: 1,
            manifest,
            uploaded_at: Utc::now(),
            uploaded_by: None,
        })
        .await
        .unwrap();
    b
}

#[tokio::test]
async fn a_malformed_message_is_dead_lettered_with_its_reason_and_the_next_event_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let b = backends(dir.path()).await;
    b.registry
        .put(
            &handler("greet", "com.example.hello", "hello"),
            Expect::Absent,
        )
        .await
        .unwrap();
    let mut dead = b.bus.subscribe(topics::DEADLETTER, "test").await.unwrap();
    let mut invocations = b
        .bus
        .subscribe(&topics::invocations("default"), "test")
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let gateway = tokio::spawn(fx_gateway::run(
        Default::default(),
        b.clone(),
        shutdown.clone(),
    ));

    let garbage = Message {
        key: None,
        headers: vec![("content-type".into(), "text/plain".into())],
        payload: b"nope".to_vec(),
    };
    b.bus.publish(topics::EVENTS, garbage).await.unwrap();
    let event = new_json_event("e-1", "/t", "com.example.hello", serde_json::json!({})).unwrap();
    b.bus
        .publish(topics::EVENTS, encode_message(&event))
        .await
        .unwrap();

    let d = tokio::time::timeout(Duration::from_secs(5), dead.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.message.payload, b"nope");
    let reason = d.message.header(topics::REASON_HEADER).unwrap();
    assert!(reason.contains("not a cloudevent"), "{reason}");

    let i = tokio::time::timeout(Duration::from_secs(5), invocations.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let invocation: Invocation = i.message.decode_json().unwrap();
    assert_eq!(invocation.handler.name, "greet");
    assert_eq!(invocation.package.version, "1.0.0");
    shutdown.cancel();
    gateway.await.unwrap().unwrap();
}

#[tokio::test]
async fn dispatch_creates_one_execution_per_match_and_skips_started_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let b = backends(dir.path()).await;
    b.registry
        .put(&handler("a", "t.one", "hello"), Expect::Absent)
        .await
        .unwrap();
    b.registry
        .put(&handler("b", "t.one", "hello"), Expect::Absent)
        .await
        .unwrap();
    b.registry
        .put(&handler("c", "t.other", "hello"), Expect::Absent)
        .await
        .unwrap();
    b.registry
        .put(&handler("ghost", "t.ghost", "missing"), Expect::Any)
        .await
        .ok();
    let table = b.registry.table().await.unwrap();
    let dispatcher = Dispatcher::new(b.clone(), LiveTable::fixed(table));
    let shutdown = CancellationToken::new();
    let event = new_json_event("e-1", "/t", "t.one", serde_json::json!({})).unwrap();

    let first = dispatcher.dispatch(&event, &shutdown).await.unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|d| matches!(d, Dispatched::New(_))));

    // Not started yet: dispatched again (covers a gateway that died before publishing).
    let again = dispatcher.dispatch(&event, &shutdown).await.unwrap();
    assert!(
        again
            .iter()
            .all(|d| matches!(d, Dispatched::Redispatched(_))),
        "{again:?}"
    );

    // Once started, a repost is a duplicate.
    if let Dispatched::Redispatched(id) = &again[0] {
        b.state
            .apply_state(&fx_core::execution::StateEvent::Started {
                execution_id: id.clone(),
                attempt: 1,
                at: Utc::now(),
                executor: "x".into(),
            })
            .await
            .unwrap();
    }
    let third = dispatcher.dispatch(&event, &shutdown).await.unwrap();
    assert!(
        third.iter().any(|d| matches!(d, Dispatched::Duplicate(_))),
        "{third:?}"
    );

    let page = b
        .state
        .list_executions(&ExecutionQuery::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2, "one execution per (event, handler)");
}

#[tokio::test]
async fn an_unresolvable_package_records_a_failed_execution_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = backends(dir.path()).await;
    let mut h = handler("pinned", "t.pin", "hello");
    h.package.version = "9.9.9".into();
    let mut table = fx_core::registry::HandlerTable::default();
    table.handlers.push(fx_core::registry::StoredHandler {
        handler: h,
        revision: 1,
    });
    let dispatcher = Dispatcher::new(b.clone(), LiveTable::fixed(table));
    let event = new_json_event("e-9", "/t", "t.pin", serde_json::json!({})).unwrap();
    let result = dispatcher
        .dispatch(&event, &CancellationToken::new())
        .await
        .unwrap();
    let Dispatched::PackageMissing(id) = &result[0] else {
        panic!("{result:?}")
    };
    let execution = b.state.get_execution(id).await.unwrap().unwrap();
    assert_eq!(execution.status, ExecutionStatus::Failed);
    assert!(execution.error.unwrap().message.contains("hello@9.9.9"));
}

/// A registry whose watch never reports a change (a lagging or slow watch): only direct reads
/// see new handlers.
struct DeafWatch(std::sync::Arc<dyn fx_core::registry::HandlerRegistry>);

#[async_trait::async_trait]
impl fx_core::registry::HandlerRegistry for DeafWatch {
    async fn table(&self) -> fx_core::Result<fx_core::registry::HandlerTable> {
        self.0.table().await
    }
    async fn get(&self, name: &str) -> fx_core::Result<Option<fx_core::registry::StoredHandler>> {
        self.0.get(name).await
    }
    async fn put(&self, handler: &Handler, expect: Expect) -> fx_core::Result<u64> {
        self.0.put(handler, expect).await
    }
    async fn delete(&self, name: &str, expect: Expect) -> fx_core::Result<()> {
        self.0.delete(name, expect).await
    }
    async fn watch(
        &self,
        _after_revision: u64,
        wait: Duration,
    ) -> fx_core::Result<fx_core::registry::HandlerTable> {
        tokio::time::sleep(wait).await;
        Err(fx_core::Error::unavailable("this watch never answers"))
    }
}

#[tokio::test]
async fn an_event_right_after_its_handler_was_created_runs_even_if_the_watch_lags() {
    let dir = tempfile::tempdir().unwrap();
    let b = backends(dir.path()).await;
    let registry: std::sync::Arc<dyn fx_core::registry::HandlerRegistry> =
        std::sync::Arc::new(DeafWatch(b.registry.clone()));
    let shutdown = CancellationToken::new();
    let table = LiveTable::start(registry.clone(), shutdown.clone())
        .await
        .unwrap();
    let dispatcher = Dispatcher::new(b.clone(), table.clone());
    registry
        .put(&handler("late", "t.late", "hello"), Expect::Absent)
        .await
        .unwrap();
    let event = new_json_event("e-late", "/t", "t.late", serde_json::json!({})).unwrap();
    let result = dispatcher.dispatch(&event, &shutdown).await.unwrap();
    assert!(
        matches!(result.as_slice(), [Dispatched::New(_)]),
        "{result:?}"
    );
    assert_eq!(
        table.current().handlers.len(),
        1,
        "the table took the new handler"
    );
    // Unmatched events that nothing new would match cost no more than one read each, and
    // another handler created right after (no pause) is still found.
    for n in 0..5 {
        let stray = new_json_event(
            format!("e-stray-{n}"),
            "/t",
            "t.none",
            serde_json::json!({}),
        )
        .unwrap();
        assert!(dispatcher
            .dispatch(&stray, &shutdown)
            .await
            .unwrap()
            .is_empty());
    }
    registry
        .put(&handler("later", "t.later", "hello"), Expect::Absent)
        .await
        .unwrap();
    let event = new_json_event("e-later", "/t", "t.later", serde_json::json!({})).unwrap();
    let result = dispatcher.dispatch(&event, &shutdown).await.unwrap();
    assert!(
        matches!(result.as_slice(), [Dispatched::New(_)]),
        "an event right after another unmatched one: {result:?}"
    );
    shutdown.cancel();
}
