//! What the state store benches (`sqlite_state`, `postgres_state`) share: the generated
//! executions (the same rows in both) and the executions list queries they time (the same
//! cases, printed in the same lines), so that their figures compare.

// Each bench uses its own part of this module.
#![allow(dead_code)]

use std::error::Error;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use fx_core::event::new_json_event;
use fx_core::event::Event;
use fx_core::execution::{Execution, ExecutionId, ExecutionQuery, ExecutionStatus};
use fx_core::store::StateStore;

pub type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// How long a list query is run at most (after its first 5 runs).
pub const QUERY_BUDGET: Duration = Duration::from_secs(10);

pub fn env_number(name: &str, default: usize) -> BenchResult<usize> {
    match std::env::var(name) {
        Ok(text) => Ok(text.parse()?),
        Err(_) => Ok(default),
    }
}

/// One generated execution, as stored (times in microseconds since the epoch).
pub struct BenchRow {
    pub id: String,
    pub handler: String,
    pub status: &'static str,
    pub attempts: i64,
    pub event_id: String,
    pub event: String,
    pub error: Option<&'static str>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_us: Option<i64>,
}

pub const EVENT_SOURCE: &str = "/shop/orders";

pub const EVENT_TYPE: &str = "com.example.order.placed";

pub const WEEK_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;

/// Execution `n` of `rows`, the last one created at `now`: the same rows in both
/// benches.
pub fn bench_row(n: usize, rows: usize, now: i64, event_template: &str) -> BenchRow {
    // The high bits of a multiplicative hash: a status independent of the handler (`n % 8`).
    let spread = (((n as u64).wrapping_mul(2_654_435_761) % (1 << 32)) * 10_000) >> 32;
    let status = match spread {
        0..=199 => "failed",
        200..=249 => "queued",
        250..=299 => "running",
        300..=304 => "retrying",
        _ => "succeeded",
    };
    let handler = format!("handler-{}", n % 8);
    let event_id = format!("order-{n}");
    let created_at = now - WEEK_MICROS * (rows - 1 - n) as i64 / rows as i64;
    let duration = 1_000 + (spread as i64 * 47) % 49_000;
    let started_at = (status != "queued").then_some(created_at + 2_000);
    let finished = matches!(status, "succeeded" | "failed");
    BenchRow {
        id: ExecutionId::derive(EVENT_SOURCE, &event_id, &handler)
            .as_str()
            .to_string(),
        event: event_template.replace("__ID__", &event_id),
        handler,
        status,
        attempts: match status {
            "queued" => 0,
            "failed" => 3,
            "retrying" => 2,
            _ => 1,
        },
        event_id,
        error: (status == "failed").then_some("wasm trap: unreachable"),
        created_at,
        started_at,
        finished_at: started_at.filter(|_| finished).map(|s| s + duration),
        duration_us: finished.then_some(duration),
    }
}

/// The stored JSON of the rows' events, `__ID__` standing for the event id.
pub fn event_template() -> BenchResult<String> {
    let event = new_json_event(
        "__ID__",
        EVENT_SOURCE,
        EVENT_TYPE,
        serde_json::json!({
            "order": "__ID__",
            "customer": "c-1042",
            "items": [{ "sku": "ferris-plush", "quantity": 2 }],
            "total": { "amount": 3998, "currency": "EUR" },
        }),
    )?;
    Ok(serde_json::to_string(&event)?)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times the executions list queries: the same cases, in the same lines, in both benches.
pub async fn list_queries(
    store: &dyn StateStore,
    rows: usize,
    now: DateTime<Utc>,
    queries: usize,
) -> BenchResult<()> {
    let failed_of_handler = ExecutionQuery {
        handler: Some("handler-3".into()),
        status: Some(ExecutionStatus::Failed),
        ..ExecutionQuery::default()
    };
    let second_page = ExecutionQuery {
        cursor: store
            .list_executions(&ExecutionQuery::default())
            .await?
            .next_cursor,
        ..ExecutionQuery::default()
    };
    let second_failed_page = ExecutionQuery {
        cursor: store.list_executions(&failed_of_handler).await?.next_cursor,
        ..failed_of_handler.clone()
    };
    // A cursor halfway down the list: a deep page.
    let mut deep = ExecutionQuery::default();
    for _ in 0..(rows / 2 / 500) {
        let page = store
            .list_executions(&ExecutionQuery {
                limit: Some(500),
                ..deep.clone()
            })
            .await?;
        if page.next_cursor.is_none() {
            break;
        }
        deep.cursor = page.next_cursor;
    }
    let cases = [
        ("first page, no filter", ExecutionQuery::default()),
        (
            "first page, handler",
            ExecutionQuery {
                handler: Some("handler-3".into()),
                ..ExecutionQuery::default()
            },
        ),
        (
            "first page, status failed (2 %)",
            ExecutionQuery {
                status: Some(ExecutionStatus::Failed),
                ..ExecutionQuery::default()
            },
        ),
        (
            "first page, status succeeded (97 %)",
            ExecutionQuery {
                status: Some(ExecutionStatus::Succeeded),
                ..ExecutionQuery::default()
            },
        ),
        (
            "first page, status retrying (0.05 %)",
            ExecutionQuery {
                status: Some(ExecutionStatus::Retrying),
                ..ExecutionQuery::default()
            },
        ),
        ("first page, handler + status failed", failed_of_handler),
        (
            "first page, since an hour ago",
            ExecutionQuery {
                since: Some(now - chrono::Duration::hours(1)),
                ..ExecutionQuery::default()
            },
        ),
        ("second page (cursor), no filter", second_page),
        (
            "second page (cursor), handler + status failed",
            second_failed_page,
        ),
        ("page at the middle (cursor)", deep),
        (
            "first page, text (substring, one match)",
            ExecutionQuery {
                text: Some("order-424242".into()),
                ..ExecutionQuery::default()
            },
        ),
        // Every execution's source: the page is in the newest executions.
        (
            "first page, text (every row's source)",
            ExecutionQuery {
                text: Some(EVENT_SOURCE.into()),
                ..ExecutionQuery::default()
            },
        ),
        // `order-4…`: one execution in 9, none of them among the newest (the ids count up).
        (
            "first page, text (11 %, none recent)",
            ExecutionQuery {
                text: Some("order-4".into()),
                ..ExecutionQuery::default()
            },
        ),
    ];
    for (name, query) in cases {
        // One untimed run first: the statement prepared, the pages it reads cached.
        let mut items = store.list_executions(&query).await?.items.len();
        let mut times = Vec::with_capacity(queries);
        let started = Instant::now();
        while times.len() < queries && (times.len() < 5 || started.elapsed() < QUERY_BUDGET) {
            let started = Instant::now();
            let page = store.list_executions(&query).await?;
            times.push(started.elapsed());
            items = page.items.len();
        }
        times.sort_unstable();
        println!(
            "list executions at {rows} rows, {name} ({items} items, {} runs): p50 {:.3} ms, p99 {:.3} ms",
            times.len(),
            ms(percentile(&times, 0.50)),
            ms(percentile(&times, 0.99))
        );
    }
    Ok(())
}

/// A queued execution of `event` by `handler`, created at `created_at`, as the gateway
/// records it before dispatching.
pub fn queued(handler: String, event: Event, created_at: DateTime<Utc>) -> Execution {
    Execution {
        id: ExecutionId::for_event(&event, &handler),
        handler,
        package: None,
        event,
        status: ExecutionStatus::Queued,
        attempts: 0,
        output: vec![],
        error: None,
        created_at,
        started_at: None,
        finished_at: None,
        duration_us: None,
        attempt_history: vec![],
    }
}
