//! Benchmark of routing: events matched per second on one thread against tables of 10, 1,000
//! and 10,000 handlers, through the index ([`RoutingTable::matching`]) and by trying every
//! handler ([`HandlerTable::scan_matching`], the way before the index). Prints its figures.
//!
//! ```text
//! cargo bench -p fx-core --bench routing
//! ```
//!
//! A table is mostly handlers on one exact `type` each (94%), some on a `source` prefix (4%),
//! some whose filter the index cannot use and tries on every event (`any` with a `suffix`, `not`:
//! 1%), and 1% disabled. The events: half match one handler by type, a tenth one by source
//! prefix, the rest none (a function's output nobody handles, as the `hello` example's).
//! Optional: `FX_BENCH_SECONDS` (1: how long each indexed run lasts; the scan of the largest
//! table runs a fifth of it).

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cloudevents::AttributesReader;
use fx_core::event::{new_json_event, Event};
use fx_core::handler::{AttributeMatch, Filter, Handler};
use fx_core::registry::{HandlerTable, RoutingTable, StoredHandler};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Distinct events in a stream; matched round after round.
const EVENTS: usize = 4_096;

/// What handler `i` of a table is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// On one exact type.
    Type,
    /// On a source prefix.
    SourcePrefix,
    /// Tried on every event.
    Scanned,
    /// On one exact type, disabled.
    Disabled,
}

fn shape(i: usize) -> Shape {
    match i % 100 {
        0 => Shape::Disabled,
        1 => Shape::Scanned,
        2..=5 => Shape::SourcePrefix,
        _ => Shape::Type,
    }
}

fn on(attribute: &str, value: impl Into<String>) -> AttributeMatch {
    AttributeMatch {
        attribute: attribute.into(),
        value: value.into(),
    }
}

fn event_type(i: usize) -> String {
    format!("com.example.t{i}.created")
}

fn source_prefix(i: usize) -> String {
    format!("/svc/{i}/")
}

/// Filters the index cannot use, that the events of the stream never match.
fn scanned_filter(i: usize) -> Filter {
    match (i / 100) % 3 {
        0 => Filter::Any(vec![
            Filter::Exact(on("type", format!("{}.v2", event_type(i)))),
            Filter::Suffix(on("source", format!("/legacy{i}"))),
        ]),
        1 => Filter::All(vec![
            Filter::Suffix(on("type", format!(".audit{i}"))),
            Filter::Not(Box::new(Filter::Exact(on("source", "/internal")))),
        ]),
        _ => Filter::Not(Box::new(Filter::Any(vec![
            Filter::Prefix(on("type", "com.")),
            Filter::Prefix(on("type", "org.")),
        ]))),
    }
}

fn table(size: usize) -> BenchResult<HandlerTable> {
    let template: Handler = serde_json::from_value(serde_json::json!({
        "name": "h", "filter": {"all": []}, "package": {"name": "hello"},
    }))?;
    let handlers = (0..size)
        .map(|i| {
            let filter = match shape(i) {
                Shape::Type | Shape::Disabled => Filter::type_is(event_type(i)),
                Shape::SourcePrefix => Filter::Prefix(on("source", source_prefix(i))),
                Shape::Scanned => scanned_filter(i),
            };
            let handler = Handler {
                name: format!("h{i:05}"),
                filter,
                enabled: shape(i) != Shape::Disabled,
                ..template.clone()
            };
            StoredHandler {
                handler,
                revision: 1,
            }
        })
        .collect();
    Ok(HandlerTable {
        revision: 1,
        handlers,
        invalid: vec![],
    })
}

/// The kinds of event of a stream.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ByType,
    BySourcePrefix,
    Unmatched,
}

impl Kind {
    fn of(j: usize) -> Kind {
        match j % 10 {
            0..=4 => Kind::ByType,
            5 => Kind::BySourcePrefix,
            _ => Kind::Unmatched,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::ByType => "one by type",
            Kind::BySourcePrefix => "one by prefix",
            Kind::Unmatched => "none",
        }
    }
}

/// `EVENTS` events for a table of `size` handlers, of `kind` (or the mix when `None`).
fn events(size: usize, kind: Option<Kind>) -> BenchResult<Vec<Event>> {
    let of = |wanted: Shape| -> Vec<usize> { (0..size).filter(|&i| shape(i) == wanted).collect() };
    let (types, prefixes) = (of(Shape::Type), of(Shape::SourcePrefix));
    // Spread over the table, the same every run.
    let pick =
        |list: &[usize], j: usize| list.get(j.wrapping_mul(7_919) % list.len().max(1)).copied();
    (0..EVENTS)
        .map(|j| {
            let (source, ty) = match (
                kind.unwrap_or(Kind::of(j)),
                pick(&types, j),
                pick(&prefixes, j),
            ) {
                (Kind::ByType, Some(t), _) => ("/producer".to_string(), event_type(t)),
                (Kind::BySourcePrefix, _, Some(p)) => (
                    format!("{}orders/{j}", source_prefix(p)),
                    "com.example.order.created".to_string(),
                ),
                _ => (
                    "/functions/hello".to_string(),
                    "com.example.hello.output".to_string(),
                ),
            };
            Ok(new_json_event(
                j.to_string(),
                source,
                ty,
                serde_json::json!({ "n": j }),
            )?)
        })
        .collect()
}

/// Matches `events` round after round for about `budget`; returns the matches made, the
/// handlers they found and the time taken.
fn run(
    events: &[Event],
    budget: Duration,
    matching: impl Fn(&Event) -> usize,
) -> (usize, usize, Duration) {
    let started = Instant::now();
    let mut done = 0;
    let mut hits = 0;
    for event in events.iter().cycle() {
        hits += matching(black_box(event));
        done += 1;
        if done % 64 == 0 && started.elapsed() >= budget {
            break;
        }
    }
    (done, black_box(hits), started.elapsed())
}

fn figures(label: &str, (done, hits, took): (usize, usize, Duration)) {
    let per_second = done as f64 / took.as_secs_f64();
    let ns = took.as_nanos() as f64 / done as f64;
    let found = hits as f64 / done as f64;
    println!(
        "  {label:<28} {per_second:>12.0} matches/s {ns:>10.0} ns/match  {found:.2} handlers/event"
    );
}

fn main() -> BenchResult<()> {
    let seconds: f64 = match std::env::var("FX_BENCH_SECONDS") {
        Ok(text) => text.parse()?,
        Err(_) => 1.0,
    };
    let budget = Duration::from_secs_f64(seconds);
    println!(
        "routing: one thread, {EVENTS} distinct events (half match one handler by type, a tenth one by source prefix, the rest none)"
    );
    for size in [10, 1_000, 10_000] {
        let table = table(size)?;
        // The fastest of a few builds: what a table change costs the gateway.
        let mut build = Duration::MAX;
        for _ in 0..5 {
            let copy = table.clone();
            let started = Instant::now();
            black_box(RoutingTable::new(copy));
            build = build.min(started.elapsed());
        }
        let routing = RoutingTable::new(table);
        let scanned = (0..size).filter(|&i| shape(i) == Shape::Scanned).count();
        println!(
            "{size} handlers: index built in {:.2} ms, {scanned} tried on every event",
            build.as_secs_f64() * 1000.0
        );
        let mixed = events(size, None)?;
        // The index answers what trying every handler answers.
        for event in mixed.iter().take(500) {
            let indexed: Vec<&str> = routing
                .matching(event)
                .map(|s| s.handler.name.as_str())
                .collect();
            let scanned: Vec<&str> = routing
                .scan_matching(event)
                .map(|s| s.handler.name.as_str())
                .collect();
            if indexed != scanned {
                return Err(format!(
                    "index and scan differ on event {}: {indexed:?} vs {scanned:?}",
                    event.id()
                )
                .into());
            }
        }
        figures(
            "indexed, the mix",
            run(&mixed, budget, |e| routing.matching(e).count()),
        );
        for kind in [Kind::ByType, Kind::BySourcePrefix, Kind::Unmatched] {
            let stream = events(size, Some(kind))?;
            figures(
                &format!("indexed, {}", kind.name()),
                run(&stream, budget / 2, |e| routing.matching(e).count()),
            );
        }
        let scan_budget = if size >= 10_000 { budget / 5 } else { budget };
        figures(
            "scan, the mix",
            run(&mixed, scan_budget, |e| {
                routing.table().scan_matching(e).count()
            }),
        );
    }
    Ok(())
}
