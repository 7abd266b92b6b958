//! Benchmark of the PostgreSQL state store: execution-state writes per second, and the latency
//! of the executions list query at 1,000,000 rows. Prints its figures; the list query lines are
//! those of `sqlite_state`, on the same rows and queries, so the two stores compare.
//!
//! ```text
//! eval "$(bash infra/scripts/start-postgres.sh)"
//! cargo bench -p fx-core --bench postgres_state
//! ```
//!
//! `FX_TEST_POSTGRES` names the database (without it the benchmark says so and exits); it works
//! in a fresh schema, dropped at the end. Optional: `FX_BENCH_EXECUTIONS` (20,000 executions
//! written through the store), `FX_BENCH_CONCURRENCY` (32 writers), `FX_BENCH_ROWS` (1,000,000
//! rows for the list query), `FX_BENCH_QUERIES` (500 runs of each list query; a query stops
//! early once its runs have taken 10 s, after at least 5 runs).
//!
//! The list query's rows replace the executions written before; they are loaded in batches by
//! `INSERT … SELECT FROM unnest(…)`: 8 handlers, 2 % failed, 0.5 % queued, 0.5 %
//! running, 0.05 % retrying, the rest succeeded, created over the week before the run.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{self, TryStreamExt};

use fx_core::event::new_json_event;
use fx_core::execution::{Execution, ExecutionId, StateEvent};
use fx_core::store::postgres::{PostgresSettings, PostgresStateStore};
use fx_core::store::StateStore;

mod common;
use common::*;

fn execution(n: usize, created_at: DateTime<Utc>) -> BenchResult<Execution> {
    let handler = format!("bench-{}", n % 8);
    let event = new_json_event(
        n.to_string(),
        "/bench",
        "com.example.bench",
        serde_json::json!({ "n": n }),
    )?;
    Ok(queued(handler, event, created_at))
}

/// The start and success of one attempt.
fn lifecycle(id: &ExecutionId, attempt: u32, at: DateTime<Utc>) -> Vec<StateEvent> {
    vec![
        StateEvent::Started {
            execution_id: id.clone(),
            attempt,
            at,
            executor: "bench".into(),
        },
        StateEvent::Succeeded {
            execution_id: id.clone(),
            attempt,
            at: at + chrono::Duration::milliseconds(3),
            duration_us: 3_000,
            output: vec![],
            measurements: None,
        },
    ]
}

/// Runs `events`, each a sequence applied in order, `concurrency` sequences at a time.
async fn apply_all(
    store: &PostgresStateStore,
    events: &[Vec<StateEvent>],
    concurrency: usize,
) -> BenchResult<Duration> {
    let started = Instant::now();
    stream::iter(events.iter().map(Ok::<_, fx_core::Error>))
        .try_for_each_concurrent(concurrency, |sequence| async move {
            for event in sequence {
                store.apply_state(event).await?;
            }
            Ok(())
        })
        .await?;
    Ok(started.elapsed())
}

fn per_second(count: usize, took: Duration) -> f64 {
    count as f64 / took.as_secs_f64()
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let Ok(url) = std::env::var("FX_TEST_POSTGRES") else {
        println!("postgres_state: skipped (set FX_TEST_POSTGRES: eval \"$(bash infra/scripts/start-postgres.sh)\")");
        return Ok(());
    };
    let executions = env_number("FX_BENCH_EXECUTIONS", 20_000)?;
    let concurrency = env_number("FX_BENCH_CONCURRENCY", 32)?;
    let rows = env_number("FX_BENCH_ROWS", 1_000_000)?.max(1);
    let queries = env_number("FX_BENCH_QUERIES", 500)?.max(1);
    let schema = format!(
        "fx_bench_{}_{}",
        std::process::id(),
        Utc::now().timestamp_micros()
    );
    let settings = PostgresSettings {
        schema: schema.clone(),
        pool_size: 16,
        ..PostgresSettings::new(url.clone())
    };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let result = run(&settings, &client, executions, concurrency, rows, queries).await;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .await?;
    result
}

async fn run(
    settings: &PostgresSettings,
    client: &tokio_postgres::Client,
    executions: usize,
    concurrency: usize,
    rows: usize,
    queries: usize,
) -> BenchResult<()> {
    let store = PostgresStateStore::open(settings).await?;
    let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    println!(
        "postgres_state: postgresql {version}, {executions} executions, {concurrency} concurrent writers, pool of {}",
        settings.pool_size
    );

    // Writes through the store.
    let base = Utc::now();
    let all = (0..executions)
        .map(|n| execution(n, base + chrono::Duration::microseconds(n as i64)))
        .collect::<BenchResult<Vec<_>>>()?;
    let started = Instant::now();
    let store_ref = &store;
    stream::iter(all.iter().map(Ok::<_, fx_core::Error>))
        .try_for_each_concurrent(concurrency, |e| async move {
            store_ref.create_execution(e).await.map(drop)
        })
        .await?;
    let took = started.elapsed();
    println!(
        "create_execution: {executions} in {:.2} s = {:.0} executions/s",
        took.as_secs_f64(),
        per_second(executions, took)
    );

    let at = Utc::now();
    let lifecycles: Vec<Vec<StateEvent>> = all.iter().map(|e| lifecycle(&e.id, 1, at)).collect();
    let writes = executions * 2;
    let took = apply_all(&store, &lifecycles, concurrency).await?;
    println!(
        "apply_state (started + succeeded): {writes} writes in {:.2} s = {:.0} state writes/s",
        took.as_secs_f64(),
        per_second(writes, took)
    );
    let took = apply_all(&store, &lifecycles, concurrency).await?;
    println!(
        "apply_state redelivered (no-ops): {writes} writes in {:.2} s = {:.0} state writes/s",
        took.as_secs_f64(),
        per_second(writes, took)
    );
    // A second attempt of some, one event at a time: the latency of one write.
    let fresh: Vec<Vec<StateEvent>> = all
        .iter()
        .take(2_000)
        .map(|e| lifecycle(&e.id, 2, at))
        .collect();
    let took = apply_all(&store, &fresh, 1).await?;
    println!(
        "apply_state one writer (latency-bound): {} writes in {:.2} s = {:.0} state writes/s, {:.3} ms each",
        fresh.len() * 2,
        took.as_secs_f64(),
        per_second(fresh.len() * 2, took),
        ms(took) / (fresh.len() * 2) as f64
    );

    // The list queries at `rows` rows (the executions written above removed first), the rows
    // of `sqlite_state`.
    let schema = &settings.schema;
    client
        .batch_execute(&format!(
            "TRUNCATE \"{schema}\".executions, \"{schema}\".execution_attempts"
        ))
        .await?;
    let started = Instant::now();
    let now = Utc::now();
    load(client, schema, rows, now.timestamp_micros()).await?;
    client
        .batch_execute(&format!("VACUUM ANALYZE \"{schema}\".executions"))
        .await?;
    let size: i64 = client
        .query_one(
            &format!("SELECT pg_total_relation_size('\"{schema}\".executions')"),
            &[],
        )
        .await?
        .get(0);
    println!(
        "bulk load: {rows} rows in {:.1} s (batches of {LOAD_BATCH}, then vacuum analyze), {:.0} MB",
        started.elapsed().as_secs_f64(),
        size as f64 / 1e6
    );
    list_queries(&store, rows, now, queries).await
}

/// Rows written by one statement of the bulk load.
const LOAD_BATCH: usize = 10_000;

/// Writes the rows in batches, each one `INSERT … SELECT FROM unnest(arrays)`.
async fn load(
    client: &tokio_postgres::Client,
    schema: &str,
    rows: usize,
    now: i64,
) -> BenchResult<()> {
    let template = event_template()?;
    let insert = client
        .prepare(&format!(
            "INSERT INTO \"{schema}\".executions (id, handler, status, attempts, event_id,
                event_source, event_type, event, package, output, error, created_at, started_at,
                finished_at, duration_us)
             SELECT id, handler, status, attempts, event_id, $12, $13, event, NULL, '[]', error,
                created_at, started_at, finished_at, duration_us
             FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
                $7::text[], $8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::int8[])
                AS r (id, handler, status, attempts, event_id, event, error, created_at,
                      started_at, finished_at, duration_us)"
        ))
        .await?;
    let time = |micros: i64| {
        DateTime::from_timestamp_micros(micros).ok_or_else(|| format!("time {micros} out of range"))
    };
    for first in (0..rows).step_by(LOAD_BATCH) {
        let batch: Vec<BenchRow> = (first..rows.min(first + LOAD_BATCH))
            .map(|n| bench_row(n, rows, now, &template))
            .collect();
        let column = |f: fn(&BenchRow) -> String| batch.iter().map(f).collect::<Vec<_>>();
        let ids = column(|r| r.id.clone());
        let handlers = column(|r| r.handler.clone());
        let statuses = column(|r| r.status.to_string());
        let event_ids = column(|r| r.event_id.clone());
        let events = column(|r| r.event.clone());
        let attempts: Vec<i64> = batch.iter().map(|r| r.attempts).collect();
        let errors: Vec<Option<&str>> = batch.iter().map(|r| r.error).collect();
        let durations: Vec<Option<i64>> = batch.iter().map(|r| r.duration_us).collect();
        let created = batch
            .iter()
            .map(|r| time(r.created_at))
            .collect::<Result<Vec<_>, _>>()?;
        let started = batch
            .iter()
            .map(|r| r.started_at.map(time).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let finished = batch
            .iter()
            .map(|r| r.finished_at.map(time).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        client
            .execute(
                &insert,
                &[
                    &ids,
                    &handlers,
                    &statuses,
                    &attempts,
                    &event_ids,
                    &events,
                    &errors,
                    &created,
                    &started,
                    &finished,
                    &durations,
                    &EVENT_SOURCE,
                    &EVENT_TYPE,
                ],
            )
            .await?;
    }
    Ok(())
}
