//! When each phase of an invocation ran (cold start, fetch, compile, instantiate, call): the
//! spans of its trace, recorded after the fact from these times.

use std::time::{Duration, Instant, SystemTime};

use cloudevents::AttributesReader;
use fx_core::event::Event;
use fx_core::execution::Invocation;
use fx_core::trace::{Span, SpanKind, TraceContext, Tracer};

use crate::InvocationOutcome;

/// One phase: when it started and ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
}

impl Phase {
    /// A phase from `start` until now.
    pub fn since(start: SystemTime) -> Phase {
        Phase {
            start,
            end: SystemTime::now(),
        }
    }

    /// The phase between `from` and `to`, measured on a monotonic clock started at `origin`
    /// (the wall-clock time `clock`).
    pub fn between(clock: SystemTime, origin: Instant, from: Instant, to: Instant) -> Phase {
        let at = |i: Instant| clock + i.saturating_duration_since(origin);
        Phase {
            start: at(from),
            end: at(to),
        }
    }

    /// How long it took.
    pub fn duration(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }
}

/// What loading a package took when it was not in memory, as the compile cache measured it (a
/// load that waited for another invocation's shows none of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadPhases {
    /// Fetching the archive from the package store.
    pub fetch: Option<Phase>,
    /// Compiling and linking the component.
    pub compile: Option<Phase>,
    /// Loading the compiled component from the disk cache.
    pub deserialize: Option<Phase>,
}

/// The phases of one invocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InvocationPhases {
    /// Getting the compiled component when it was not in memory: the cold start.
    pub cold_start: Option<Phase>,
    /// Inside the cold start.
    pub load: LoadPhases,
    /// Making the instance (none for a warm instance that was reused).
    pub instantiate: Option<Phase>,
    /// Calling the function.
    pub call: Option<Phase>,
}

/// The span of one attempt, a child of the invocation's trace context (the gateway's dispatch
/// span), with its wait in the queue since `queued_since` as a first child.
pub fn execution_span(
    tracer: &Tracer,
    invocation: &Invocation,
    executor: &str,
    queued_since: SystemTime,
) -> Span {
    let mut span = tracer.start("fx.execute", SpanKind::Consumer, invocation.trace.as_ref());
    span.set("fx.handler", invocation.handler.name.clone());
    span.set("fx.execution_id", invocation.execution_id.to_string());
    span.set("fx.attempt", i64::from(invocation.attempt));
    span.set("fx.executor", executor.to_string());
    span.set("fx.package", invocation.package.name.clone());
    span.set("fx.package_digest", invocation.package.digest.to_string());
    span.set("cloudevents.event_id", invocation.event.id().to_string());
    span.set("cloudevents.event_type", invocation.event.ty().to_string());
    let queued_since = queued_since.min(SystemTime::now());
    span.child_at(tracer, "fx.queue_wait", queued_since).end();
    span
}

/// Records the phases of `outcome` as children of `parent`: `fx.cold_start` (with
/// `fx.fetch`, `fx.compile` or `fx.deserialize` inside), `fx.instantiate`, `fx.call`.
pub fn record(tracer: &Tracer, parent: &Span, outcome: &InvocationOutcome) {
    let phases = &outcome.phases;
    let phase = |name: &'static str, under: &Span, phase: Phase| -> Span {
        let mut span = under.child_at(tracer, name, phase.start);
        span.set("fx.duration_us", micros(phase.duration()));
        span
    };
    if let Some(cold) = phases.cold_start {
        let mut span = phase("fx.cold_start", parent, cold);
        if let Some(lookup) = outcome.compile_cache {
            span.set("fx.compile_cache", lookup.as_str());
        }
        for (name, inner) in [
            ("fx.fetch", phases.load.fetch),
            ("fx.compile", phases.load.compile),
            ("fx.deserialize", phases.load.deserialize),
        ] {
            if let Some(inner) = inner {
                phase(name, &span, inner).end_at(inner.end);
            }
        }
        span.end_at(cold.end);
    }
    if let Some(made) = phases.instantiate {
        phase("fx.instantiate", parent, made).end_at(made.end);
    }
    if let Some(call) = phases.call {
        let mut span = phase("fx.call", parent, call);
        span.set(
            "fx.peak_memory_bytes",
            saturating_i64(outcome.peak_memory_bytes),
        );
        if let Err(failure) = &outcome.result {
            span.fail(failure.message.clone());
        }
        span.end_at(call.end);
    }
}

/// `output` with each event's distributed-tracing extension set to `trace` (the platform owns
/// the extension: what a function set there is replaced).
pub fn traced(output: Vec<Event>, trace: Option<&TraceContext>) -> Vec<Event> {
    match trace {
        Some(trace) => output.into_iter().map(|e| trace.applied(e)).collect(),
        None => output,
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
