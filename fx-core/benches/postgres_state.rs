//! Benchmark of the PostgreSQL state store: execution-state writes per second, and the latency
//! of the executions list query at 1,000,000 rows. Prints its figures.
//!
//! ```text
//! eval "$(bash infra/scripts/start-postgres.sh)"
//! cargo bench -p fx-core --bench postgres_state
//! ```
//!
//! `FX_TEST_POSTGRES` names the database (without it the benchmark says so and exits); it works
//! in a fresh schema, dropped at the end. Optional: `FX_BENCH_EXECUTIONS` (20,000 executions
//! written through the store), `FX_BENCH_CONCURRENCY` (32 writers), `FX_BENCH_ROWS` (1,000,000
//! rows for the list query), `FX_BENCH_QUERIES` (500 runs of each list query).

use std::error::Error;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{self, TryStreamExt};

use fx_core::event::new_json_event;
use fx_core::execution::{Execution, ExecutionId, ExecutionQuery, ExecutionStatus, StateEvent};
use fx_core::store::postgres::{PostgresSettings, PostgresStateStore};
use fx_core::store::StateStore;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

fn env_number(name: &str, default: usize) -> BenchResult<usize> {
    match std::env::var(name) {
        Ok(text) => Ok(text.parse()?),
        Err(_) => Ok(default),
    }
}

fn execution(n: usize, created_at: DateTime<Utc>) -> BenchResult<Execution> {
    let handler = format!("bench-{}", n % 8);
    let event = new_json_event(
        n.to_string(),
        "/bench",
        "com.example.bench",
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let Ok(url) = std::env::var("FX_TEST_POSTGRES") else {
        println!("postgres_state: skipped (set FX_TEST_POSTGRES: eval \"$(bash infra/scripts/start-postgres.sh)\")");
        return Ok(());
    };
    let executions = env_number("FX_BENCH_EXECUTIONS", 20_000)?;
    let concurrency = env_number("FX_BENCH_CONCURRENCY", 32)?;
    let rows = env_number("FX_BENCH_ROWS", 1_000_000)?;
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

    // The list query at `rows` rows, loaded in bulk by SQL.
    let schema = &settings.schema;
    let started = Instant::now();
    client
        .execute(
            &format!(
                "INSERT INTO \"{schema}\".executions (id, handler, status, attempts, event_id,
                    event_source, event_type, event, package, output, created_at, duration_us)
                 SELECT md5('bench-row-' || i), 'handler-' || (i % 20),
                    (ARRAY['queued', 'running', 'succeeded', 'failed'])[1 + i % 4], 1,
                    'row-' || i, '/bench', 'com.example.bench', '{{}}', NULL, '[]',
                    timestamptz '2024-01-01 00:00:00+00' + i * interval '1 millisecond', 100
                 FROM generate_series(1, $1::bigint) AS i
                 ON CONFLICT (id) DO NOTHING"
            ),
            &[&(rows as i64)],
        )
        .await?;
    client
        .batch_execute(&format!("VACUUM ANALYZE \"{schema}\".executions"))
        .await?;
    let total: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM \"{schema}\".executions"),
            &[],
        )
        .await?
        .get(0);
    println!(
        "bulk load: {rows} rows in {:.1} s (generate_series), {total} rows in the table",
        started.elapsed().as_secs_f64()
    );

    // A cursor from the middle of the table: a deep page.
    let middle = store
        .list_executions(&ExecutionQuery {
            limit: Some(1),
            ..ExecutionQuery::default()
        })
        .await?;
    let mut deep = ExecutionQuery {
        cursor: middle.next_cursor,
        ..ExecutionQuery::default()
    };
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
                handler: Some("handler-7".into()),
                ..ExecutionQuery::default()
            },
        ),
        (
            "first page, handler + status",
            ExecutionQuery {
                handler: Some("handler-7".into()),
                status: Some(ExecutionStatus::Failed),
                ..ExecutionQuery::default()
            },
        ),
        (
            "first page, status",
            ExecutionQuery {
                status: Some(ExecutionStatus::Succeeded),
                ..ExecutionQuery::default()
            },
        ),
        ("page at the middle (cursor)", deep),
    ];
    for (name, query) in cases {
        let mut times = Vec::with_capacity(queries);
        let mut items = 0;
        for _ in 0..queries {
            let started = Instant::now();
            let page = store.list_executions(&query).await?;
            times.push(started.elapsed());
            items = page.items.len();
        }
        times.sort_unstable();
        println!(
            "list executions at {total} rows, {name} ({items} items): p50 {:.3} ms, p99 {:.3} ms",
            ms(percentile(&times, 0.50)),
            ms(percentile(&times, 0.99))
        );
    }
    Ok(())
}
