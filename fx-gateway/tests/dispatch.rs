//! The gateway over embedded backends: matching, dispatch, dedup and the dead-letter topic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::Utc;
use fx_core::backends::{BackendSettings, Backends};
use fx_core::bus::topics;
use fx_core::event::{encode_message, new_json_event, Message};
use fx_core::execution::{ExecutionQuery, ExecutionStatus, Invocation};
use fx_core::handler::Handler;
use fx_core::package::{Manifest, PackageDigest, PackageVersion};
use fx_core::registry::Expect;
use fx_core::testsupport::{eventually, eventually_async, HandlerBuilder};
use fx_gateway::dispatch::{Dispatched, Dispatcher};
use fx_gateway::table::LiveTable;
use tokio_util::sync::CancellationToken;

fn handler(name: &str, ty: &str, package: &str) -> Handler {
    HandlerBuilder::new(name)
        .event_type(ty)
        .package(package)
        .build()
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
    let mut table = fx_core::registry::HandlerTable::default();
    table.handlers.push(
        HandlerBuilder::new("pinned")
            .event_type("t.pin")
            .package("hello")
            .version("9.9.9")
            .stored(1),
    );
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

/// The dead-letter contract: an execution that exhausted its retries is `failed` in the state
/// store before its dead-letter message can be read, because the state router publishes the
/// dead-letter only once it has recorded the failure.
#[tokio::test]
async fn an_exhausted_execution_is_failed_in_the_store_before_its_dead_letter_can_be_read() {
    use fx_core::execution::{Failure, FailureKind, StateEvent};
    let dir = tempfile::tempdir().unwrap();
    let b = backends(dir.path()).await;
    b.registry
        .put(&handler("doomed", "t.doomed", "hello"), Expect::Absent)
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
    let event = new_json_event("e-dl", "/t", "t.doomed", serde_json::json!({})).unwrap();
    b.bus
        .publish(topics::EVENTS, encode_message(&event))
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), invocations.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let invocation: Invocation = delivery.message.decode_json().unwrap();
    let id = invocation.execution_id.clone();
    let state = |event: &StateEvent| Message::json(Some(id.to_string()), event).unwrap();
    let started = StateEvent::Started {
        execution_id: id.clone(),
        attempt: 1,
        at: Utc::now(),
        executor: "test".into(),
    };
    let failure = Failure {
        kind: FailureKind::Trap,
        message: "wasm trap: unreachable".into(),
    };
    let failed = StateEvent::Failed {
        execution_id: id.clone(),
        attempt: 1,
        at: Utc::now(),
        duration_us: 10,
        failure: failure.clone(),
        retry_at: None,
        measurements: None,
        dead_letter: Some(Box::new(invocation.clone())),
    };
    b.bus
        .publish_all(vec![
            (topics::STATE.to_string(), state(&started)),
            (topics::STATE.to_string(), state(&failed)),
        ])
        .await
        .unwrap();

    let d = tokio::time::timeout(Duration::from_secs(10), dead.next())
        .await
        .expect("a dead-letter message within 10 s")
        .unwrap()
        .unwrap();
    // Read right away: the failure is already recorded.
    let execution = b.state.get_execution(&id).await.unwrap().unwrap();
    assert_eq!(execution.status, ExecutionStatus::Failed, "{execution:?}");
    assert_eq!(
        d.message.header(topics::EXECUTION_ID_HEADER),
        Some(id.to_string().as_str())
    );
    assert_eq!(d.message.header(topics::ATTEMPTS_HEADER), Some("1"));
    assert_eq!(
        d.message.header(topics::ORIGINAL_TOPIC_HEADER),
        Some("fx.invocations.default")
    );
    assert!(d
        .message
        .header(topics::REASON_HEADER)
        .unwrap()
        .contains("unreachable"));
    let body: Invocation = d.message.decode_json().unwrap();
    assert_eq!(body.execution_id, id);
    assert_eq!(
        fx_core::event::attribute(&body.event, "id").as_deref(),
        Some("e-dl")
    );

    // A retried attempt (retry_at set, no dead-letter) is not dead-lettered: the next
    // dead-letter message is the one of the attempt after it, not of the retried one.
    let retried = StateEvent::Failed {
        execution_id: id.clone(),
        attempt: 2,
        at: Utc::now(),
        duration_us: 10,
        failure: failure.clone(),
        retry_at: Some(Utc::now()),
        measurements: None,
        dead_letter: None,
    };
    let last = StateEvent::Failed {
        execution_id: id.clone(),
        attempt: 3,
        at: Utc::now(),
        duration_us: 10,
        failure,
        retry_at: None,
        measurements: None,
        dead_letter: Some(Box::new(Invocation {
            attempt: 3,
            ..invocation
        })),
    };
    b.bus
        .publish_all(vec![
            (topics::STATE.to_string(), state(&retried)),
            (topics::STATE.to_string(), state(&last)),
        ])
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), dead.next())
        .await
        .expect("a dead-letter message within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(d.message.header(topics::ATTEMPTS_HEADER), Some("3"));
    shutdown.cancel();
    gateway.await.unwrap().unwrap();
}

/// An event arriving straight on `fx.events` with a value a store would refuse (a NUL in its
/// id) is dead-lettered with the reason, and the events after it still run.
#[tokio::test]
async fn an_event_with_a_nul_in_its_id_is_dead_lettered_and_the_next_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let b = backends(dir.path()).await;
    b.registry
        .put(&handler("greet", "t.nul", "hello"), Expect::Absent)
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
    let good = new_json_event("ok-1", "/t", "t.nul", serde_json::json!({})).unwrap();
    let mut poisoned = encode_message(&good);
    for (name, value) in poisoned.headers.iter_mut() {
        if name == "ce_id" {
            *value = "a\0b".into();
        }
    }
    b.bus
        .publish_all(vec![
            (topics::EVENTS.to_string(), poisoned.clone()),
            (topics::EVENTS.to_string(), encode_message(&good)),
        ])
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), dead.next())
        .await
        .expect("a dead-letter message within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(d.message.payload, poisoned.payload);
    let reason = d.message.header(topics::REASON_HEADER).unwrap();
    assert!(reason.contains("control character"), "{reason}");
    let i = tokio::time::timeout(Duration::from_secs(10), invocations.next())
        .await
        .expect("the next event is dispatched")
        .unwrap()
        .unwrap();
    let invocation: Invocation = i.message.decode_json().unwrap();
    assert_eq!(
        fx_core::event::attribute(&invocation.event, "id").as_deref(),
        Some("ok-1")
    );
    shutdown.cancel();
    gateway.await.unwrap().unwrap();
}

/// A batch handler that refuses one payload as a store refuses a value (`Invalid`), and
/// records everything it handled.
#[derive(Default)]
struct RefusesOne {
    handled: std::sync::Mutex<Vec<Vec<u8>>>,
    poisoned: std::sync::Mutex<Vec<Vec<u8>>>,
}

#[async_trait::async_trait]
impl fx_gateway::consume::BatchHandler for RefusesOne {
    async fn handle(
        &self,
        batch: &[fx_core::bus::Delivery],
        _shutdown: &CancellationToken,
    ) -> fx_core::Result<()> {
        if batch.iter().any(|d| d.message.payload == b"poison") {
            return Err(fx_core::Error::invalid(
                "invalid byte sequence for encoding \"UTF8\": 0x00",
            ));
        }
        let mut handled = self.handled.lock().unwrap();
        handled.extend(batch.iter().map(|d| d.message.payload.clone()));
        Ok(())
    }

    async fn poisoned(
        &self,
        delivery: &fx_core::bus::Delivery,
        _error: &fx_core::Error,
        _shutdown: &CancellationToken,
    ) {
        self.poisoned
            .lock()
            .unwrap()
            .push(delivery.message.payload.clone());
    }
}

/// One message a backend refuses never stops a consumer: the loop finds it, dead-letters it
/// with the reason, commits and goes on with the rest of its batch and the batches after it.
#[tokio::test]
async fn a_message_a_backend_refuses_is_dead_lettered_and_the_consumer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let b = backends(dir.path()).await;
    let mut dead = b.bus.subscribe(topics::DEADLETTER, "test").await.unwrap();
    let message = |payload: &[u8]| Message {
        key: Some("k".into()),
        headers: Vec::new(),
        payload: payload.to_vec(),
    };
    let batch: Vec<(String, Message)> = [&b"a"[..], b"poison", b"b"]
        .into_iter()
        .map(|p| ("test.topic".to_string(), message(p)))
        .collect();
    b.bus.publish_all(batch).await.unwrap();
    let handler = std::sync::Arc::new(RefusesOne::default());
    let shutdown = CancellationToken::new();
    let consumer = {
        let (bus, handler, shutdown) = (b.bus.clone(), handler.clone(), shutdown.clone());
        tokio::spawn(async move {
            fx_gateway::consume::batches(
                &bus,
                "test.topic",
                "test-group",
                "test consumer",
                16,
                &shutdown,
                handler.as_ref(),
            )
            .await
        })
    };
    let d = tokio::time::timeout(Duration::from_secs(10), dead.next())
        .await
        .expect("the refused message is dead-lettered")
        .unwrap()
        .unwrap();
    assert_eq!(d.message.payload, b"poison");
    assert!(d
        .message
        .header(topics::REASON_HEADER)
        .unwrap()
        .contains("0x00"));
    assert_eq!(
        d.message.header(topics::ORIGINAL_TOPIC_HEADER),
        Some("test.topic")
    );
    // A message after it still gets through, and the consumer is running.
    b.bus.publish("test.topic", message(b"c")).await.unwrap();
    eventually("c is handled", Duration::from_secs(10), || {
        let handled = handler.handled.lock().unwrap().contains(&b"c".to_vec());
        assert!(handled || !consumer.is_finished(), "the consumer stopped");
        handled
    })
    .await;
    let handled = handler.handled.lock().unwrap().clone();
    for payload in [&b"a"[..], b"b", b"c"] {
        assert!(handled.contains(&payload.to_vec()), "{handled:?}");
    }
    assert_eq!(*handler.poisoned.lock().unwrap(), vec![b"poison".to_vec()]);
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
}

/// An event the ingress stamped with the registry revision it saw is matched against a table at
/// least that new, even while a flood of unmatched events has used up the direct-read budget
/// and the watch lags: once the API has confirmed a handler, an event accepted afterwards runs.
#[tokio::test]
async fn a_stamped_event_after_its_handler_runs_under_a_flood_of_unmatched_events() {
    let dir = tempfile::tempdir().unwrap();
    let b = backends(dir.path()).await;
    let registry: std::sync::Arc<dyn fx_core::registry::HandlerRegistry> =
        std::sync::Arc::new(DeafWatch(b.registry.clone()));
    let shutdown = CancellationToken::new();
    let table = LiveTable::start(registry.clone(), shutdown.clone())
        .await
        .unwrap();
    let dispatcher = std::sync::Arc::new(Dispatcher::new(b.clone(), table));
    let running = {
        let (dispatcher, shutdown) = (dispatcher.clone(), shutdown.clone());
        tokio::spawn(async move { dispatcher.run("gateway", shutdown).await })
    };
    let stray = |n: usize| {
        let event = new_json_event(
            format!("e-flood-{n}"),
            "/t",
            "t.nobody",
            serde_json::json!({}),
        )
        .unwrap();
        (topics::EVENTS.to_string(), encode_message(&event))
    };
    // A handler for markers: a marker's execution shows the flood before it was consumed
    // (one partition key, so in order), and with it the unmatched-event read budget.
    registry
        .put(&handler("marker", "t.marker", "hello"), Expect::Absent)
        .await
        .unwrap();
    let flood_then_marker = |round: usize| {
        let mut messages: Vec<(String, Message)> =
            (1000 * round..1000 * round + 150).map(stray).collect();
        let marker = new_json_event(
            format!("marker-{round}"),
            "/t",
            "t.marker",
            serde_json::json!({}),
        )
        .unwrap();
        messages.push((topics::EVENTS.to_string(), encode_message(&marker)));
        (
            messages,
            fx_core::execution::ExecutionId::for_event(&marker, "marker"),
        )
    };
    let until_exists = |id: fx_core::execution::ExecutionId, what: String| {
        let (state, running) = (b.state.clone(), &running);
        async move {
            eventually_async(&what, Duration::from_secs(20), || {
                let (state, id) = (&state, &id);
                async move {
                    let exists = state.get_execution(id).await.unwrap().is_some();
                    assert!(exists || !running.is_finished(), "the dispatcher stopped");
                    exists
                }
            })
            .await
        }
    };
    let mut rounds = Vec::new();
    for round in 0..6 {
        let (flood, marker) = flood_then_marker(round);
        b.bus.publish_all(flood).await.unwrap();
        until_exists(marker, format!("marker {round} is dispatched")).await;
        let name = format!("late-{round}");
        let ty = format!("t.late.{round}");
        let revision = registry
            .put(&handler(&name, &ty, "hello"), Expect::Absent)
            .await
            .unwrap();
        let event = new_json_event(format!("e-{round}"), "/t", &ty, serde_json::json!({})).unwrap();
        let message = encode_message(&event)
            .with_header(topics::REGISTRY_REVISION_HEADER, revision.to_string());
        b.bus.publish(topics::EVENTS, message).await.unwrap();
        rounds.push(fx_core::execution::ExecutionId::for_event(&event, &name));
    }
    for (round, id) in rounds.into_iter().enumerate() {
        until_exists(
            id,
            format!(
                "the event of round {round} runs (not matched against a stale table and dropped)"
            ),
        )
        .await;
    }
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
