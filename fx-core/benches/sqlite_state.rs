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
//! `FX_BENCH_EXECUTIONS` (20,000 executions then written through the store one at a time, as
//! many again in batches of 100).
//!
//! The rows are written in one transaction by a second connection to the store's file (the
//! store creates executions as queued only): 8 handlers, 2 % failed, 0.5 % queued, 0.5 %
//! running, 0.05 % retrying, the rest succeeded, created over the week before the run.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::params;

use fx_core::event::new_json_event;
use fx_core::execution::{Execution, ExecutionId, StateEvent};
use fx_core::store::embedded::SqliteStateStore;
use fx_core::store::StateStore;

mod common;
use common::*;

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
    // The gateway's way: a batch of executions in one transaction.
    let batched = (executions..executions * 2)
        .map(|n| execution(n, base + chrono::Duration::microseconds(n as i64)))
        .collect::<BenchResult<Vec<_>>>()?;
    let started = Instant::now();
    for batch in batched.chunks(CREATE_BATCH) {
        store.create_executions(batch).await?;
    }
    let took = started.elapsed();
    println!(
        "create_executions at {rows} rows, one writer, batches of {CREATE_BATCH}: {executions} in {:.2} s = {:.0} executions/s",
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

/// Executions created by one `create_executions` call.
const CREATE_BATCH: usize = 100;

fn execution(n: usize, created_at: DateTime<Utc>) -> BenchResult<Execution> {
    let handler = format!("handler-{}", n % 8);
    let event = new_json_event(
        format!("write-{n}"),
        EVENT_SOURCE,
        EVENT_TYPE,
        serde_json::json!({ "n": n }),
    )?;
    Ok(queued(handler, event, created_at))
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
