//! The worker loop on the bus: what it publishes for each invocation, in which order, and when
//! it commits.

use std::time::{Duration, Instant};

use cloudevents::AttributesReader;
use fx_core::bus::{topics, EventBus, Subscription};
use fx_core::event::{decode_message, Message};
use fx_core::execution::{CacheLookup, FailureKind, StateEvent};
use fx_core::limits::LimitOverrides;
use fx_core::testsupport::eventually;
use tokio_util::sync::CancellationToken;

use crate::support::{invocation, Fixture};

const WAIT: Duration = Duration::from_secs(20);

async fn subscribe(fx: &Fixture, topic: &str) -> Box<dyn Subscription> {
    fx.bus
        .inner
        .subscribe(topic, "test-observer")
        .await
        .unwrap()
}

async fn next(sub: &mut Box<dyn Subscription>) -> Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no message in time")
        .unwrap()
        .expect("bus closed")
        .message
}

async fn next_state(sub: &mut Box<dyn Subscription>) -> StateEvent {
    next(sub).await.decode_json().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_publishes_started_logs_output_and_succeeded_then_commits() {
    let fx = Fixture::new();
    let digest = fx.add_example("hello");
    let mut state = subscribe(&fx, topics::STATE).await;
    let mut events = subscribe(&fx, topics::EVENTS).await;
    let inv = invocation(&digest, "com.example.hello", "1", Default::default());
    let invocations = topics::invocations("default");
    fx.bus
        .publish(&invocations, Message::json(None, &inv).unwrap())
        .await
        .unwrap();

    let executor = fx.executor();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { executor.run(shutdown).await }
    });

    let started = next(&mut state).await;
    assert_eq!(started.key.as_deref(), Some(inv.execution_id.as_str()));
    match started.decode_json().unwrap() {
        StateEvent::Started {
            execution_id,
            attempt,
            executor,
            ..
        } => {
            assert_eq!(execution_id, inv.execution_id);
            assert_eq!((attempt, executor.as_str()), (1, "test-executor"));
        }
        other => panic!("expected started, got {other:?}"),
    }
    match next_state(&mut state).await {
        StateEvent::Log(line) => assert!(line.message.contains("hello from FerrisFX")),
        other => panic!("expected a log line, got {other:?}"),
    }
    match next_state(&mut state).await {
        StateEvent::Succeeded {
            output,
            measurements,
            ..
        } => {
            assert_eq!(output.len(), 1);
            assert_eq!(output[0].ty(), "com.ferrisfx.hello.greeted");
            // The first invocation of a package compiles it; no fuel budget, none counted.
            let m = measurements.expect("the executor reports its measurements");
            assert_eq!(m.executor, "test-executor");
            assert_eq!(m.compile_cache, Some(CacheLookup::Compiled));
            assert!(m.peak_memory_bytes >= 64 * 1024, "{m:?}");
            assert_eq!(m.fuel_used, None);
        }
        other => panic!("expected succeeded, got {other:?}"),
    }
    let greeting = decode_message(&next(&mut events).await).unwrap();
    assert_eq!(greeting.id(), "1-greeting");
    eventually("the invocation is committed", WAIT, || {
        fx.bus.committed(&invocations) == vec![0]
    })
    .await;

    // The next one finds the function in memory, and counts its fuel when it has a budget.
    let metered = LimitOverrides {
        fuel: Some(1_000_000_000),
        ..Default::default()
    };
    let mut second = invocation(&digest, "com.example.hello", "2", metered);
    second.dispatched_at = chrono::Utc::now() - chrono::Duration::milliseconds(250);
    fx.bus
        .publish(&invocations, Message::json(None, &second).unwrap())
        .await
        .unwrap();
    let measured = loop {
        match next_state(&mut state).await {
            StateEvent::Succeeded { measurements, .. } => break measurements.unwrap(),
            StateEvent::Started { .. } | StateEvent::Log(_) => {}
            other => panic!("expected succeeded, got {other:?}"),
        }
    };
    assert_eq!(measured.compile_cache, Some(CacheLookup::Memory));
    assert!(measured.fuel_used.is_some_and(|f| f > 0), "{measured:?}");
    assert!(measured.queue_wait_us >= 250_000, "{measured:?}");

    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("run did not stop")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_invocation_is_dead_lettered_and_committed() {
    let fx = Fixture::new();
    let mut deadletter = subscribe(&fx, topics::DEADLETTER).await;
    let invocations = topics::invocations("default");
    let garbage = Message {
        key: Some("k".into()),
        headers: vec![("x-trace".into(), "abc".into())],
        payload: b"{not json".to_vec(),
    };
    fx.bus.publish(&invocations, garbage.clone()).await.unwrap();

    let executor = fx.executor();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { executor.run(shutdown).await }
    });

    let dead = next(&mut deadletter).await;
    assert_eq!(dead.payload, garbage.payload);
    assert_eq!(dead.key, garbage.key);
    assert_eq!(dead.header("x-trace"), Some("abc"));
    let reason = dead.header(topics::REASON_HEADER).unwrap_or_default();
    assert!(reason.contains("undecodable invocation"), "{reason}");
    eventually("the invocation is committed", WAIT, || {
        fx.bus.committed(&invocations) == vec![0]
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_running_invocation_and_commits_it() {
    let fx = Fixture::new();
    let digest = fx.add_example("misbehave");
    let mut state = subscribe(&fx, topics::STATE).await;
    let mut events = subscribe(&fx, topics::EVENTS).await;
    let invocations = topics::invocations("default");
    let limits = LimitOverrides {
        timeout_ms: Some(500),
        ..Default::default()
    };
    let looping = invocation(&digest, "fx.test.loop", "1", limits);
    fx.bus
        .publish(&invocations, Message::json(None, &looping).unwrap())
        .await
        .unwrap();

    let executor = fx.executor();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { executor.run(shutdown).await }
    });
    assert!(matches!(
        next_state(&mut state).await,
        StateEvent::Started { .. }
    ));
    shutdown.cancel();
    // Published after shutdown: not taken.
    let later = invocation(&digest, "fx.test.ok", "2", Default::default());
    fx.bus
        .publish(&invocations, Message::json(None, &later).unwrap())
        .await
        .unwrap();

    match next_state(&mut state).await {
        StateEvent::Failed { failure, .. } => {
            assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
        }
        other => panic!("expected failed, got {other:?}"),
    }
    tokio::time::timeout(WAIT, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(fx.bus.committed(&invocations), vec![0]);
    // Nothing else ran.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), state.next())
            .await
            .is_err()
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(50), events.next())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_with_concurrency_one_runs_its_invocations_one_after_another() {
    let fx = Fixture::new();
    let digest = fx.add_example("misbehave");
    let mut state = subscribe(&fx, topics::STATE).await;
    let invocations = topics::invocations("default");
    let limits = LimitOverrides {
        timeout_ms: Some(200),
        concurrency: Some(1),
        ..Default::default()
    };
    let (first, second) = (
        invocation(&digest, "fx.test.loop", "1", limits.clone()),
        invocation(&digest, "fx.test.loop", "2", limits),
    );
    for inv in [&first, &second] {
        fx.bus
            .publish(&invocations, Message::json(None, inv).unwrap())
            .await
            .unwrap();
    }
    let executor = fx.executor();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { executor.run(shutdown).await }
    });
    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = next_state(&mut state).await;
        seen.push((event.name(), event.execution_id().clone()));
    }
    let (a, b) = (first.execution_id.clone(), second.execution_id.clone());
    assert!(
        seen == vec![
            ("started", a.clone()),
            ("failed", a.clone()),
            ("started", b.clone()),
            ("failed", b.clone())
        ] || seen
            == vec![
                ("started", b.clone()),
                ("failed", b),
                ("started", a.clone()),
                ("failed", a)
            ],
        "{seen:?}"
    );
    eventually("both invocations are committed", WAIT, || {
        fx.bus.committed(&invocations).last() == Some(&1)
    })
    .await;
    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// An executor asked to stop while a function sleeps in a host call stops once the function's
/// timeout ends it, after publishing its `failed` state: a blocked host call holds neither its
/// slot nor the shutdown for longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_by_a_function_sleeping_in_a_host_call() {
    let fx = Fixture::new();
    let digest = fx.add_example("misbehave");
    let mut state = subscribe(&fx, topics::STATE).await;
    let limits = LimitOverrides {
        timeout_ms: Some(1_000),
        ..Default::default()
    };
    let inv = invocation(&digest, "fx.test.sleep", "asleep", limits);
    fx.bus
        .publish(
            &topics::invocations("default"),
            Message::json(None, &inv).unwrap(),
        )
        .await
        .unwrap();
    let executor = fx.executor();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { executor.run(shutdown).await }
    });
    assert!(matches!(
        next_state(&mut state).await,
        StateEvent::Started { .. }
    ));
    let asked = std::time::Instant::now();
    shutdown.cancel();
    tokio::time::timeout(WAIT, running)
        .await
        .expect("the executor stopped")
        .unwrap()
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    match next_state(&mut state).await {
        StateEvent::Failed { failure, .. } => {
            assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}")
        }
        other => panic!("expected failed, got {other:?}"),
    }
}

/// An output too large for the bus (a handler may raise `max_output_bytes` to 64 MiB, the bus
/// carries 1 MB here as Kafka's default does) fails the attempt as `output_limit` with the
/// sizes, publishes none of it, and is committed: the partition goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_too_large_for_the_bus_fails_as_output_limit_and_the_partition_goes_on() {
    let fx = Fixture::new();
    fx.bus.limit_messages_to(1_000_000);
    let digest = fx.add_example("misbehave");
    let mut state = subscribe(&fx, topics::STATE).await;
    let mut events = subscribe(&fx, topics::EVENTS).await;
    let limits = LimitOverrides {
        max_output_bytes: Some(64 * 1024 * 1024),
        ..Default::default()
    };
    let invocations = topics::invocations("default");
    let flood = invocation(&digest, "fx.test.output-flood", "flood", limits);
    let ok = invocation(&digest, "fx.test.ok", "after", Default::default());
    for inv in [&flood, &ok] {
        fx.bus
            .publish(&invocations, Message::json(None, inv).unwrap())
            .await
            .unwrap();
    }
    let executor = fx.executor();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { executor.run(shutdown).await }
    });
    let mut flood_failure = None;
    let mut ok_succeeded = false;
    while flood_failure.is_none() || !ok_succeeded {
        match next_state(&mut state).await {
            StateEvent::Failed {
                execution_id,
                failure,
                ..
            } if execution_id == flood.execution_id => flood_failure = Some(failure),
            StateEvent::Succeeded { execution_id, .. } if execution_id == ok.execution_id => {
                ok_succeeded = true
            }
            _ => {}
        }
    }
    let failure = flood_failure.unwrap();
    assert_eq!(failure.kind, FailureKind::OutputLimit, "{failure:?}");
    assert!(
        failure.message.contains("at most 1000000 bytes"),
        "{failure:?}"
    );
    // None of the flood's events went out; the echo of the next invocation did.
    let first = decode_message(&next(&mut events).await).unwrap();
    assert_eq!(first.id(), "after-echo");
    eventually("both invocations are committed", WAIT, || {
        fx.bus.committed(&invocations).last() == Some(&1)
    })
    .await;
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// Retries waiting out their backoff give up their delivery slot only up to
/// `max_waiting_retries` at once: beyond, they wait in their slots, and an executor whose
/// slots all hold waiting retries takes nothing more until their backoff ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_retries_beyond_the_bound_wait_in_their_slots() {
    for (bound, held_back) in [(0, true), (10, false)] {
        let fx = Fixture::new();
        let digest = fx.add_example("misbehave");
        let mut state = subscribe(&fx, topics::STATE).await;
        let invocations = topics::invocations("default");
        let backoff = Duration::from_secs(6);
        // Two retries not due yet fill the two delivery slots of a one-slot executor …
        for n in 0..2 {
            let mut retry = invocation(
                &digest,
                "fx.test.ok",
                &format!("retry-{n}"),
                Default::default(),
            );
            retry.attempt = 2;
            retry.not_before = Some(chrono::Utc::now() + backoff);
            fx.bus
                .publish(&invocations, Message::json(None, &retry).unwrap())
                .await
                .unwrap();
        }
        // … and a fresh invocation comes after them.
        let fresh = invocation(&digest, "fx.test.ok", "fresh", Default::default());
        fx.bus
            .publish(&invocations, Message::json(None, &fresh).unwrap())
            .await
            .unwrap();
        let executor = fx.executor_with(|s| {
            s.max_concurrency = 1;
            s.max_in_flight = 2;
            s.max_waiting_retries = bound;
        });
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let running = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { executor.run(shutdown).await }
        });
        loop {
            let event = next_state(&mut state).await;
            if event.execution_id() == &fresh.execution_id {
                break;
            }
        }
        let waited = started.elapsed();
        if held_back {
            assert!(
                waited >= backoff - Duration::from_millis(500),
                "bound {bound}: the fresh invocation ran after {waited:?}"
            );
        } else {
            assert!(
                waited < backoff - Duration::from_millis(500),
                "bound {bound}: the fresh invocation waited {waited:?} behind the retries"
            );
        }
        shutdown.cancel();
        tokio::time::timeout(WAIT, running)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
