//! One invocation: output, logs, and every limit ending a misbehaving function with its cause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudevents::{AttributesReader, Data};
use fx_core::execution::FailureKind;
use fx_core::limits::LimitOverrides;
use fx_core::testsupport::eventually;
use fx_executor::secrets::FunctionGrants;
use serde_json::json;

use crate::support::{invocation, Fixture};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_returns_its_greeting_and_logs_a_line() {
    let fx = Fixture::new();
    let digest = fx.add_example("hello");
    let executor = fx.executor();
    let inv = invocation(&digest, "com.example.hello", "1", Default::default());
    let outcome = executor.invoke(&inv).await;
    let output = outcome.result.unwrap();
    assert_eq!(output.len(), 1);
    assert_eq!(output[0].ty(), "com.ferrisfx.hello.greeted");
    assert_eq!(output[0].id(), "1-greeting");
    assert_eq!(
        output[0].data(),
        Some(&Data::Json(json!({"greeting": "Hello, test!"})))
    );
    let line = outcome
        .logs
        .iter()
        .find(|l| l.message.contains("hello from FerrisFX"))
        .unwrap_or_else(|| panic!("no greeting log line in {:?}", outcome.logs));
    assert_eq!(line.execution_id, inv.execution_id);
    assert_eq!(line.handler, "h");
    assert_eq!(line.fields.get("event_id").map(String::as_str), Some("1"));
    assert!(outcome.duration > Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaviour_fails_with_its_kind_and_cause_while_others_succeed() {
    let fx = Fixture::new();
    let digest = fx.add_example("misbehave");
    let executor = Arc::new(fx.executor());
    let limits = LimitOverrides {
        timeout_ms: Some(2_000),
        memory_mb: Some(32),
        max_output_bytes: Some(256 * 1024),
        max_log_bytes: Some(64 * 1024),
        ..Default::default()
    };
    let cases = [
        (
            "fx.test.trap",
            FailureKind::Trap,
            "wasm trap: wasm `unreachable` instruction executed",
        ),
        (
            "fx.test.membomb",
            FailureKind::MemoryLimit,
            "memory limit of 32 MiB exceeded",
        ),
        ("fx.test.recurse", FailureKind::Trap, "stack overflow"),
        (
            "fx.test.loop",
            FailureKind::Timeout,
            "timed out after 2000 ms",
        ),
        (
            "fx.test.output-flood",
            FailureKind::OutputLimit,
            "output exceeded 262144 bytes",
        ),
        (
            "fx.test.log-flood",
            FailureKind::OutputLimit,
            "log volume exceeded 65536 bytes",
        ),
        (
            "fx.test.error",
            FailureKind::FunctionError,
            "requested failure",
        ),
    ];
    let mut tasks = Vec::new();
    for (i, (ty, kind, text)) in cases.into_iter().enumerate() {
        let mut limits = limits.clone();
        if ty == "fx.test.output-flood" {
            // It builds 64 MiB of events before returning them: let it (memory and time), so
            // that the output cap is what stops it.
            limits.memory_mb = Some(256);
            limits.timeout_ms = Some(20_000);
        }
        let (executor, inv) = (
            executor.clone(),
            invocation(&digest, ty, &format!("bad-{i}"), limits),
        );
        tasks.push(tokio::spawn(async move {
            let outcome = executor.invoke(&inv).await;
            let failure = outcome.result.unwrap_err();
            assert_eq!(failure.kind, kind, "{ty}: {failure:?}");
            assert!(
                failure.message.contains(text),
                "{ty}: {:?} should name {text:?}",
                failure.message
            );
        }));
    }
    for i in 0..100 {
        let (executor, inv) = (
            executor.clone(),
            invocation(&digest, "fx.test.ok", &format!("ok-{i}"), limits.clone()),
        );
        tasks.push(tokio::spawn(async move {
            let output = executor.invoke(&inv).await.result.unwrap();
            assert_eq!(output[0].ty(), "fx.test.echoed");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_names_the_panic_the_function_wrote_to_stderr() {
    let fx = Fixture::new();
    let digest = fx.add_example("misbehave");
    let outcome = fx
        .executor()
        .invoke(&invocation(
            &digest,
            "fx.test.trap",
            "1",
            Default::default(),
        ))
        .await;
    let failure = outcome.result.unwrap_err();
    assert!(failure.message.contains("requested trap"), "{failure:?}");
    assert!(
        outcome
            .logs
            .iter()
            .any(|l| l.fields.get("stream").map(String::as_str) == Some("stderr")),
        "{:?}",
        outcome.logs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_times_out_on_time_while_a_well_behaved_call_succeeds() {
    let fx = Fixture::new();
    let digest = fx.add_example("misbehave");
    let executor = Arc::new(fx.executor());
    let timeout = Duration::from_millis(3_000);
    let limits = LimitOverrides {
        timeout_ms: Some(3_000),
        ..Default::default()
    };
    // Compile first, so that the timing below is the run alone.
    let warm = invocation(&digest, "fx.test.ok", "warm", Default::default());
    executor.invoke(&warm).await.result.unwrap();

    let looping = {
        let (executor, inv) = (
            executor.clone(),
            invocation(&digest, "fx.test.loop", "loop", limits),
        );
        tokio::spawn(async move {
            let start = Instant::now();
            let outcome = executor.invoke(&inv).await;
            (outcome, start.elapsed())
        })
    };
    // The loop is running (its deadline armed) before the other call starts.
    eventually("the loop runs", Duration::from_secs(10), || {
        executor.running_instances() > 0
    })
    .await;
    let ok = invocation(&digest, "fx.test.ok", "ok", Default::default());
    executor.invoke(&ok).await.result.unwrap();
    // The loop occupies one thread; the other call is not held up behind it.
    assert!(
        !looping.is_finished(),
        "the well-behaved call waited for the loop"
    );

    let (outcome, elapsed) = looping.await.unwrap();
    let failure = outcome.result.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
    assert_eq!(failure.message, "timed out after 3000 ms");
    // Never early (the wall clock decides), and stopped by the timeout, not by anything later.
    assert!(outcome.duration >= timeout, "{:?}", outcome.duration);
    assert!(elapsed < timeout * 3, "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuel_budget_stops_an_endless_loop() {
    let fx = Fixture::new();
    let digest = fx.add_example("misbehave");
    let limits = LimitOverrides {
        fuel: Some(10_000_000),
        timeout_ms: Some(10_000),
        ..Default::default()
    };
    let start = Instant::now();
    let failure = fx
        .executor()
        .invoke(&invocation(&digest, "fx.test.loop", "1", limits))
        .await
        .result
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::FuelLimit, "{failure:?}");
    assert_eq!(failure.message, "fuel budget of 10000000 exhausted");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_cap_below_the_initial_memory_fails_as_memory_limit() {
    let fx = Fixture::new();
    let digest = fx.add_example("hello");
    let limits = LimitOverrides {
        memory_mb: Some(1),
        ..Default::default()
    };
    let failure = fx
        .executor()
        .invoke(&invocation(&digest, "com.example.hello", "1", limits))
        .await
        .result
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::MemoryLimit, "{failure:?}");
    assert_eq!(failure.message, "memory limit of 1 MiB exceeded");
}

/// After a stall the epoch ticker catches up with several ticks at once; a run that started
/// during the stall must still get its whole timeout, measured on the wall clock.
#[test]
fn a_burst_of_epoch_ticks_does_not_end_a_run_before_its_timeout() {
    use fx_core::limits::Limits;
    use fx_core::package::PackageArchive;
    use fx_executor::engine::Runtime;

    let runtime = Arc::new(Runtime::new(Duration::from_millis(10)).unwrap());
    let (_, bytes) = PackageArchive::component_of(&crate::support::example("misbehave")).unwrap();
    let component = wasmtime::component::Component::new(runtime.engine(), &bytes).unwrap();
    let pre = runtime.prepare(&component).unwrap();
    let limits = Limits {
        timeout_ms: 400,
        ..Limits::DEFAULT
    };
    let event =
        fx_core::event::new_json_event("burst", "/tests", "fx.test.loop", json!({})).unwrap();

    let running = std::thread::spawn({
        let runtime = Arc::clone(&runtime);
        move || runtime.run(&pre, &event, &limits, &FunctionGrants::none())
    });
    // The run has armed its deadline before the burst.
    let deadline = Instant::now() + Duration::from_secs(10);
    while runtime.running() == 0 {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Far more ticks than the deadline holds, all at once.
    for _ in 0..1_000 {
        runtime.engine().increment_epoch();
    }
    let result = running.join().unwrap();
    let failure = result.outcome.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
    assert!(
        result.duration >= Duration::from_millis(400),
        "ended after {:?}",
        result.duration
    );
}

/// A function blocked in a host call (a WASI clock sleep, `poll` on a pollable that never
/// fires) is not interrupted by the epoch: the bounded waits end it at its timeout all the
/// same, as `timeout`, and its instance is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_blocked_in_a_host_call_times_out_on_time_and_frees_its_instance() {
    let fx = Fixture::new();
    let digest = fx.add_example("misbehave");
    let executor = Arc::new(fx.executor());
    let timeout = Duration::from_millis(500);
    let limits = LimitOverrides {
        timeout_ms: Some(500),
        ..Default::default()
    };
    for kind in ["fx.test.sleep", "fx.test.poll-forever"] {
        let started = Instant::now();
        let outcome = executor
            .invoke(&invocation(&digest, kind, kind, limits.clone()))
            .await;
        let elapsed = started.elapsed();
        let failure = outcome.result.unwrap_err();
        assert_eq!(failure.kind, FailureKind::Timeout, "{kind}: {failure:?}");
        assert_eq!(failure.message, "timed out after 500 ms", "{kind}");
        assert!(
            outcome.duration >= timeout,
            "{kind}: {:?}",
            outcome.duration
        );
        // The timeout plus a tick, with room for a loaded machine (the first call compiles).
        assert!(
            elapsed < Duration::from_secs(10),
            "{kind}: took {elapsed:?}"
        );
        assert!(
            outcome.duration < timeout + Duration::from_millis(400),
            "{kind}: ran {:?}",
            outcome.duration
        );
        assert_eq!(executor.running_instances(), 0, "{kind}: instance freed");
    }
    // The executor still runs other functions.
    let ok = invocation(&digest, "fx.test.ok", "after", Default::default());
    executor.invoke(&ok).await.result.unwrap();
}

/// The executor's memory budget: the invocations running at once never ask for more memory
/// together than the budget (a second one waits for the first), and one asking for more than
/// the whole budget is refused, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_running_at_once_stay_within_the_memory_budget() {
    let fx = Fixture::new();
    let digest = fx.add_example("misbehave");
    let executor = Arc::new(fx.executor_with(|s| s.memory_budget_mb = 100));
    let warm = invocation(&digest, "fx.test.ok", "warm", Default::default());
    executor.invoke(&warm).await.result.unwrap();
    let limits = LimitOverrides {
        timeout_ms: Some(500),
        memory_mb: Some(64),
        ..Default::default()
    };
    let runs: Vec<_> = (0..2)
        .map(|n| {
            let (executor, inv) = (
                executor.clone(),
                invocation(
                    &digest,
                    "fx.test.loop",
                    &format!("loop-{n}"),
                    limits.clone(),
                ),
            );
            tokio::spawn(async move { executor.invoke(&inv).await })
        })
        .collect();
    let mut most = 0;
    while runs.iter().any(|r| !r.is_finished()) {
        most = most.max(executor.running_instances());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for run in runs {
        let failure = run.await.unwrap().result.unwrap_err();
        assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
    }
    assert_eq!(most, 1, "64 + 64 MiB do not fit a 100 MiB budget at once");

    let greedy = LimitOverrides {
        memory_mb: Some(128),
        ..Default::default()
    };
    let failure = executor
        .invoke(&invocation(&digest, "fx.test.ok", "greedy", greedy))
        .await
        .result
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Refused, "{failure:?}");
    assert!(
        failure.message.contains("memory_mb = 128"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("at most 100"),
        "{}",
        failure.message
    );
}
