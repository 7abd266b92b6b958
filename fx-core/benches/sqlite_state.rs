//! Benchmark of the embedded (SQLite) state store: the latency of the executions list query at
//! 1,000,000 executions, then writes per second at that size. Prints its figures; the list
//! query lines are those of `postgres_state`, on the same rows and queries, so the two stores
//! compare line for line.
//!
//! ```text
//! cargo bench -p fx-core --bench sqlite_state
//! ```
//!
//! The database is a file in a temporary directory, removed at the end. Optional:
//! `FX_BENCH_ROWS` (1,000,000 executions), `FX_BENCH_QUERIES` (500 runs of each list query; a
//! query stops early once its runs have taken 10 s, after at least 5 runs),
//! `FX_BENCH_EXECUTIONS` (20,000 executions then written through the store, one at a time).
//!
//! The rows are written in one transaction by a second connection to the store's file (the
//! store creates executions as queued only): 8 handlers, 2 % failed, 0.5 % queued, 0.5 %
//! running, 0.05 % retrying, the rest succeeded, created over the week before the run.

use std::error::Error;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::params;

use fx_core::event::new_json_event;
use fx_core::execution::{Execution, ExecutionId, ExecutionQuery, ExecutionStatus, StateEvent};
use fx_core::store::embedded::SqliteStateStore;
use fx_core::store::StateStore;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// How long a list query is run at most (after its first 5 runs).
const QUERY_BUDGET: Duration = Duration::from_secs(10);

fn env_number(name: &str, default: usize) -> BenchResult<usize> {
    match std::env::var(name) {
        Ok(text) => Ok(text.parse()?),
        Err(_) => Ok(default),
    }
}

/// One generated execution, as stored (times in microseconds since the epoch).
struct BenchRow {
    id: String,
    handler: String,
    status: &'static str,
    attempts: i64,
    event_id: String,
    event: String,
    error: Option<&'static str>,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    duration_us: Option<i64>,
}

const EVENT_SOURCE: &str = "/shop/orders";
const EVENT_TYPE: &str = "com.example.order.placed";
const WEEK_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;

/// Execution `n` of `rows`, the last one created at `now`: the same rows as in
/// `postgres_state`.
fn bench_row(n: usize, rows: usize, now: i64, event_template: &str) -> BenchRow {
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
fn event_template() -> BenchResult<String> {
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let rows = env_number("FX_BENCH_ROWS", 1_000_000)?.max(1);
    let queries = env_number("FX_BENCH_QUERIES", 500)?.max(1);
    let executions = env_number("FX_BENCH_EXECUTIONS", 20_000)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.sqlite");
    let store = SqliteStateStore::open(&path).await?;
    println!(
        "sqlite_state: sqlite {}, {rows} executions, {queries} runs of each list query",
        rusqlite::version()
    );

    let started = Instant::now();
    let now = Utc::now();
    load(&path, rows, now.timestamp_micros())?;
    let size = std::fs::metadata(&path)?.len() + wal_size(&path);
    println!(
        "bulk load: {rows} rows in {:.1} s (one transaction, then a checkpoint), {:.0} MB",
        started.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );
    list_queries(&store, rows, now, queries).await?;
    writes(&store, rows, executions).await
}

/// Executions and their state written through the store, one at a time, after the list queries
/// (the new executions are the newest): what each index on the table costs a write.
async fn writes(store: &SqliteStateStore, rows: usize, executions: usize) -> BenchResult<()> {
    let base = Utc::now();
    let all = (0..executions)
        .map(|n| execution(n, base + chrono::Duration::microseconds(n as i64)))
        .collect::<BenchResult<Vec<_>>>()?;
    let started = Instant::now();
    for e in &all {
        store.create_execution(e).await?;
    }
    let took = started.elapsed();
    println!(
        "create_execution at {rows} rows, one writer: {executions} in {:.2} s = {:.0} executions/s",
        took.as_secs_f64(),
        executions as f64 / took.as_secs_f64()
    );
    let at = Utc::now();
    let started = Instant::now();
    for e in &all {
        for event in lifecycle(&e.id, at) {
            store.apply_state(&event).await?;
        }
    }
    let took = started.elapsed();
    println!(
        "apply_state (started + succeeded) at {rows} rows, one writer: {} writes in {:.2} s = {:.0} state writes/s",
        executions * 2,
        took.as_secs_f64(),
        (executions * 2) as f64 / took.as_secs_f64()
    );
    Ok(())
}

fn execution(n: usize, created_at: DateTime<Utc>) -> BenchResult<Execution> {
    let handler = format!("handler-{}", n % 8);
    let event = new_json_event(
        format!("write-{n}"),
        EVENT_SOURCE,
        EVENT_TYPE,
        serde_json::json!({ "n": n }),
    )?;
    Ok(Execution {
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
    })
}

/// The start and success of a first attempt.
fn lifecycle(id: &ExecutionId, at: DateTime<Utc>) -> [StateEvent; 2] {
    [
        StateEvent::Started {
            execution_id: id.clone(),
            attempt: 1,
            at,
            executor: "bench".into(),
        },
        StateEvent::Succeeded {
            execution_id: id.clone(),
            attempt: 1,
            at: at + chrono::Duration::milliseconds(3),
            duration_us: 3_000,
            output: vec![],
            measurements: None,
        },
    ]
}

fn wal_size(path: &std::path::Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or_default()
}

/// Writes the rows through a second connection, in one transaction.
fn load(path: &std::path::Path, rows: usize, now: i64) -> BenchResult<()> {
    let template = event_template()?;
    let mut conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO executions (id, handler, status, attempts, event_id, event_source,
                event_type, event, package, output, error, created_at, started_at, finished_at,
                duration_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, '[]', ?9, ?10, ?11, ?12, ?13)",
        )?;
        for n in 0..rows {
            let r = bench_row(n, rows, now, &template);
            insert.execute(params![
                r.id,
                r.handler,
                r.status,
                r.attempts,
                r.event_id,
                EVENT_SOURCE,
                EVENT_TYPE,
                r.event,
                r.error,
                r.created_at,
                r.started_at,
                r.finished_at,
                r.duration_us
            ])?;
        }
    }
    tx.commit()?;
    // The write-ahead log folded into the database, as the store's automatic checkpoints do.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Times the executions list queries: the same cases, in the same lines, as `postgres_state`.
async fn list_queries(
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
