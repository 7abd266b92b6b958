//! Retries and the dead-letter topic: a failing execution is retried as its handler's policy
//! says (count and spacing), then dead-lettered with its reason; once the handler is fixed,
//! `POST /api/v1/executions/{id}/redrive` runs it again.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fx_core::bus::topics;
use fx_core::testsupport::poll_until;
use fx_tests::{example_package, TestPlatform};
use serde_json::{json, Value};

const TRAP: &str = "fx.test.trap";
const BACKOFF_MS: i64 = 400;

fn handler(package: &str) -> Value {
    json!({
        "name": "flaky",
        "filter": {"exact": {"attribute": "type", "value": TRAP}},
        "package": {"name": package},
        "retry": {"max_attempts": 3, "backoff_ms": BACKOFF_MS, "max_backoff_ms": 10_000},
    })
}

/// Waits until execution `id` has `status`; returns its detail (execution and logs).
async fn wait_status(fx: &TestPlatform, id: &str, status: &str, seen: &mut Vec<String>) -> Value {
    let statuses = RefCell::new(std::mem::take(seen));
    let statuses = &statuses;
    let what = format!("execution {id} is {status}");
    let detail = poll_until(
        &what,
        Duration::from_secs(90),
        Duration::from_millis(25),
        || async move {
            let detail = fx.execution(id).await;
            let now = detail["execution"]["status"].as_str().unwrap().to_string();
            let mut seen = statuses.borrow_mut();
            if seen.last() != Some(&now) {
                seen.push(now.clone());
            }
            if now == status {
                Ok(detail)
            } else {
                Err(format!("statuses seen: {seen:?}; now: {detail}"))
            }
        },
    )
    .await;
    *seen = statuses.take();
    detail
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_backoff_then_dead_lettered_and_a_redrive_runs_the_fixed_handler()
{
    let dir = tempfile::tempdir().unwrap();
    let fx = TestPlatform::start(dir.path(), false).await;
    let mut dead = fx
        .backends()
        .bus
        .subscribe(topics::DEADLETTER, "test-deadletter")
        .await
        .unwrap();
    assert_eq!(fx.upload(example_package("misbehave")).await.0, 201);
    assert_eq!(fx.upload(example_package("hello")).await.0, 201);
    let (code, v) = fx
        .post_json("/api/v1/handlers", &handler("misbehave"))
        .await;
    assert_eq!(code, 201, "{v}");
    fx.emit("retry-1", TRAP, json!({})).await;
    let id = poll_until(
        "flaky has an execution of its event",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async {
            match fx.executions("flaky").await.first() {
                Some(e) => Ok(e["id"].as_str().unwrap().to_string()),
                None => Err(""),
            }
        },
    )
    .await;

    let mut seen = Vec::new();
    let detail = wait_status(&fx, &id, "failed", &mut seen).await;
    let execution = &detail["execution"];
    assert_eq!(execution["attempts"], 3, "{detail}");
    assert_eq!(execution["error"]["kind"], "trap", "{detail}");
    // Between attempts the execution was `retrying`: the attempt history below says so (a
    // poll of the status may miss that window when the router applies two events at once).
    // Each attempt logs its panic message as it traps; the next one starts no sooner than
    // half its backoff (equal jitter), which doubles per retry.
    let mut first_line: BTreeMap<u64, DateTime<Utc>> = BTreeMap::new();
    for line in detail["logs"].as_array().unwrap() {
        let at: DateTime<Utc> = line["at"].as_str().unwrap().parse().unwrap();
        first_line
            .entry(line["attempt"].as_u64().unwrap())
            .or_insert(at);
    }
    assert_eq!(
        first_line.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3],
        "{detail}"
    );
    let gap = |a: u64, b: u64| (first_line[&b] - first_line[&a]).num_milliseconds();
    assert!(
        gap(1, 2) >= BACKOFF_MS / 2,
        "attempt 2 came {} ms after 1",
        gap(1, 2)
    );
    assert!(
        gap(2, 3) >= BACKOFF_MS,
        "attempt 3 came {} ms after 2",
        gap(2, 3)
    );
    assert!(gap(1, 3) < 30_000, "retries took {} ms", gap(1, 3));
    // Every attempt is recorded on the execution with what the executor measured.
    let history = execution["attempt_history"].as_array().unwrap();
    let statuses = fx_tests::attempt_statuses(execution);
    assert_eq!(
        statuses,
        [(1, "retrying"), (2, "retrying"), (3, "failed")],
        "{detail}"
    );
    for attempt in history {
        assert_eq!(attempt["failure"]["kind"], "trap", "{attempt}");
        let measured = &attempt["measurements"];
        assert!(
            measured["peak_memory_bytes"].as_u64().unwrap() > 0,
            "{attempt}"
        );
        assert!(measured["queue_wait_us"].is_u64(), "{attempt}");
        assert!(measured["compile_cache"].is_string(), "{attempt}");
    }
    assert!(attempt_history_has_retry_times(history), "{detail}");

    // After the last attempt, the invocation is in the dead-letter topic with its reason.
    let delivery = tokio::time::timeout(Duration::from_secs(30), dead.next())
        .await
        .expect("a dead-letter message within 30 s")
        .unwrap()
        .unwrap();
    let header = |name: &str| {
        delivery
            .message
            .header(name)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("fx-execution-id"), id);
    assert_eq!(header("fx-attempts"), "3");
    assert!(
        header(topics::REASON_HEADER)
            .to_lowercase()
            .contains("trap"),
        "{:?}",
        delivery.message.headers
    );
    dead.commit(&delivery.position()).await.unwrap();

    // Re-driving a failed execution runs the handler as it is now: fixed, it succeeds.
    let (code, v) = fx
        .put_json("/api/v1/handlers/flaky", &handler("hello"))
        .await;
    assert!(code == 200 || code == 201, "{v}");
    // Two re-drives at once (a double click): one runs, the other is refused.
    let (redrive, empty) = (format!("/api/v1/executions/{id}/redrive"), json!({}));
    let (first, second) = tokio::join!(
        fx.post_json(&redrive, &empty),
        fx.post_json(&redrive, &empty)
    );
    let mut codes = [first.0, second.0];
    codes.sort_unstable();
    assert_eq!(codes, [202, 409], "{first:?} {second:?}");
    let (_, v) = if first.0 == 202 { first } else { second };
    assert_eq!(v["attempt"], 4, "{v}");
    assert_eq!(v["package"]["name"], "hello", "{v}");
    let detail = wait_status(&fx, &id, "succeeded", &mut seen).await;
    assert_eq!(detail["execution"]["attempts"], 4, "{detail}");
    let history = detail["execution"]["attempt_history"].as_array().unwrap();
    assert_eq!(history.len(), 4, "{detail}");
    assert_eq!(history[3]["status"], "succeeded", "{detail}");
    assert_eq!(
        history[3]["measurements"]["compile_cache"], "memory",
        "the fixed handler's package ran for the first time, compiled at its upload: {detail}"
    );
    // The execution page shows the attempts.
    let (code, page) = fx.get_text(&format!("/executions/{id}")).await;
    assert_eq!(code, 200);
    assert!(page.contains("<h2>Attempts</h2>"), "{page}");
    assert_eq!(
        page.matches("status-retrying\">retrying").count(),
        2,
        "{page}"
    );
    assert_eq!(
        detail["execution"]["output"][0]["data"]["greeting"], "Hello, world!",
        "{detail}"
    );

    // Only a failed execution can be re-driven; a succeeded one can be re-run.
    let (code, v) = fx
        .post_json(&format!("/api/v1/executions/{id}/redrive"), &json!({}))
        .await;
    assert_eq!(code, 409, "{v}");
    assert!(v.to_string().contains("only a failed execution"), "{v}");
    let (code, v) = fx
        .post_json(&format!("/api/v1/executions/{id}/rerun"), &json!({}))
        .await;
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["attempt"], 5, "{v}");
    poll_until(
        "the re-run succeeds as attempt 5",
        Duration::from_secs(60),
        Duration::from_millis(25),
        || async {
            let (_, detail) = fx.get(&format!("/api/v1/executions/{id}")).await;
            let e = &detail["execution"];
            if e["attempts"] == 5 && e["status"] == "succeeded" {
                Ok(())
            } else {
                Err(detail.to_string())
            }
        },
    )
    .await;
    // An unknown one is 404.
    let unknown = "0".repeat(32);
    let (code, _) = fx
        .post_json(&format!("/api/v1/executions/{unknown}/redrive"), &json!({}))
        .await;
    assert_eq!(code, 404);
    fx.stop().await;
}

/// Whether the retried attempts say when the next one was due, and the last one does not.
fn attempt_history_has_retry_times(history: &[Value]) -> bool {
    let (last, retried) = history.split_last().unwrap();
    retried.iter().all(|a| a["retry_at"].is_string()) && last["retry_at"].is_null()
}
