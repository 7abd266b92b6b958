//! Distributed traces: W3C trace context carried by events (the CloudEvents distributed-tracing
//! extension, `traceparent` and `tracestate`), invocations and state messages, and the spans each
//! part opens as a child of it.
//!
//! The parts hold a [`Tracer`]: disabled by default (spans are not recorded, but the context
//! passes through unchanged, so a trace started upstream goes on downstream), or an OpenTelemetry
//! tracer that `ferrisfx` builds from [`TelemetrySettings`] and exports over OTLP. Spans are
//! opened with an explicit parent rather than from a task-local current span: the context
//! crosses the bus between parts, and each platform in one process keeps its own tracer.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use cloudevents::event::ExtensionValue;
use opentelemetry::global::BoxedTracer;
pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue, Value};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::event::Event;

/// The W3C `traceparent` header and CloudEvents extension attribute.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header and CloudEvents extension attribute.
pub const TRACESTATE: &str = "tracestate";

/// A W3C trace context: where in which trace something happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// `00-<trace id>-<parent span id>-<flags>`, validated.
    pub traceparent: String,
    /// Vendor entries, passed on as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// A context from a `traceparent` (and `tracestate`) value; `None` when it is not a valid
    /// version-00 traceparent (a malformed one is ignored, as the W3C spec says).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        parse_span_context(traceparent.trim(), None)?;
        Some(TraceContext {
            traceparent: traceparent.trim().to_ascii_lowercase(),
            tracestate: tracestate
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        })
    }

    /// The context an event carries in its distributed-tracing extension.
    pub fn of_event(event: &Event) -> Option<TraceContext> {
        let text = |name| match event.extension(name) {
            Some(ExtensionValue::String(s)) => Some(s.as_str()),
            _ => None,
        };
        TraceContext::parse(text(TRACEPARENT)?, text(TRACESTATE))
    }

    /// Sets `event`'s distributed-tracing extension to this context.
    pub fn apply_to(&self, event: &mut Event) {
        event.set_extension(TRACEPARENT, self.traceparent.clone());
        match &self.tracestate {
            Some(state) => event.set_extension(TRACESTATE, state.clone()),
            None => {
                event.remove_extension(TRACESTATE);
            }
        }
    }

    /// `event` with its distributed-tracing extension set to this context.
    pub fn applied(&self, event: Event) -> Event {
        let mut event = event;
        self.apply_to(&mut event);
        event
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or_default()
    }

    /// The OpenTelemetry span context of the parent this names.
    fn span_context(&self) -> Option<SpanContext> {
        parse_span_context(&self.traceparent, self.tracestate.as_deref())
    }

    fn from_span_context(context: &SpanContext) -> Option<TraceContext> {
        if !context.is_valid() {
            return None;
        }
        let state = context.trace_state().header();
        Some(TraceContext {
            traceparent: format!(
                "00-{}-{}-{:02x}",
                context.trace_id(),
                context.span_id(),
                context.trace_flags().to_u8()
            ),
            tracestate: (!state.is_empty()).then_some(state),
        })
    }
}

fn parse_span_context(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let mut parts = traceparent.split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    // Version 00 has exactly four fields; a later version may add some (read the first four).
    if !hex(version, 2) || version.eq_ignore_ascii_case("ff") || !hex(trace, 32) || !hex(span, 16) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace)
        .ok()
        .filter(|t| *t != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span)
        .ok()
        .filter(|s| *s != SpanId::INVALID)?;
    let flags = if hex(flags, 2) {
        u8::from_str_radix(flags, 16).ok()?
    } else {
        return None;
    };
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        state,
    ))
}

/// Opens the spans of one part. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<BoxedTracer>>,
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            Some(_) => "Tracer(exporting)",
            None => "Tracer(disabled)",
        })
    }
}

impl Tracer {
    /// A tracer that records nothing and passes trace context on unchanged.
    pub fn disabled() -> Tracer {
        Tracer::default()
    }

    /// A tracer recording through `tracer` (an OpenTelemetry SDK tracer, boxed).
    pub fn new(tracer: BoxedTracer) -> Tracer {
        Tracer {
            inner: Some(Arc::new(tracer)),
        }
    }

    /// Whether spans are recorded.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Opens span `name` as a child of `parent` (a new trace without one), starting now.
    pub fn start(&self, name: &'static str, kind: SpanKind, parent: Option<&TraceContext>) -> Span {
        self.start_at(name, kind, parent, SystemTime::now())
    }

    /// Opens span `name` as a child of `parent`, started at `start` (for a phase measured
    /// before its span could be opened, such as the wait in a queue).
    pub fn start_at(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Option<&TraceContext>,
        start: SystemTime,
    ) -> Span {
        let Some(tracer) = &self.inner else {
            return Span {
                inner: None,
                context: parent.cloned(),
            };
        };
        let parent_context = match parent.and_then(TraceContext::span_context) {
            Some(remote) => Context::new().with_remote_span_context(remote),
            None => Context::new(),
        };
        let span = tracer.build_with_context(
            tracer
                .span_builder(name)
                .with_kind(kind)
                .with_start_time(start),
            &parent_context,
        );
        let context = TraceContext::from_span_context(span.span_context());
        Span {
            inner: Some(span),
            context,
        }
    }
}

/// An open span; ends when [`Span::end`] is called or it is dropped.
pub struct Span {
    inner: Option<opentelemetry::global::BoxedSpan>,
    /// The context children of this span continue: its own, or with a disabled tracer the
    /// parent's.
    context: Option<TraceContext>,
}

impl Span {
    /// The trace context to hand on (to an invocation, a state message, an output event).
    pub fn context(&self) -> Option<&TraceContext> {
        self.context.as_ref()
    }

    /// Opens a child span of this one, starting now.
    pub fn child(&self, tracer: &Tracer, name: &'static str) -> Span {
        tracer.start(name, SpanKind::Internal, self.context())
    }

    /// Opens a child span of this one that started at `start`.
    pub fn child_at(&self, tracer: &Tracer, name: &'static str, start: SystemTime) -> Span {
        tracer.start_at(name, SpanKind::Internal, self.context(), start)
    }

    /// Records attribute `key`.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = &mut self.inner {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Marks the span failed with `message`.
    pub fn fail(&mut self, message: impl Into<String>) {
        if let Some(span) = &mut self.inner {
            span.set_status(Status::error(message.into()));
        }
    }

    /// Ends the span now.
    pub fn end(self) {
        if let Some(mut span) = self.inner {
            span.end();
        }
    }

    /// Ends the span at `end` (a phase measured elsewhere, as a start and an end).
    pub fn end_at(self, end: SystemTime) {
        if let Some(mut span) = self.inner {
            span.end_with_timestamp(end);
        }
    }
}

/// Traces of the platform: where to export them, and where operators look at them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Export spans over OTLP/HTTP (protobuf) to an OpenTelemetry collector, Jaeger or Tempo.
    /// Without this table, spans are exported when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set (with these settings' defaults), and otherwise not
    /// recorded (trace context still passes through from event to event).
    #[serde(default)]
    pub otlp: Option<OtlpSettings>,
    /// The link from an execution's page to its trace: a URL with `{trace_id}` in it, e.g.
    /// `https://jaeger.example.com/trace/{trace_id}` or a Grafana Explore link. Without it the
    /// page shows the trace id as text.
    #[serde(default)]
    pub trace_url: Option<String>,
}

impl TelemetrySettings {
    /// Checks the values: a ratio within 0..=1, an endpoint with a scheme, a `{trace_id}` in
    /// the trace URL.
    pub fn validate(&self) -> crate::Result<()> {
        if let Some(otlp) = &self.otlp {
            otlp.validate()?;
        }
        if let Some(url) = &self.trace_url {
            if !url.contains("{trace_id}") {
                return Err(crate::Error::invalid(format!(
                    "telemetry.trace_url {url:?} has no {{trace_id}} placeholder"
                )));
            }
        }
        Ok(())
    }

    /// The link to the trace `trace_id`, when `trace_url` is set.
    pub fn trace_link(&self, trace_id: &str) -> Option<String> {
        self.trace_url
            .as_ref()
            .map(|url| url.replace("{trace_id}", trace_id))
    }
}

/// The OTLP/HTTP exporter of spans.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpSettings {
    /// The collector's OTLP/HTTP base URL, e.g. `http://otel-collector:4318` (`/v1/traces` is
    /// appended unless the URL already ends with it). Empty: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// then `OTEL_EXPORTER_OTLP_ENDPOINT`, then `http://localhost:4318`.
    #[serde(default)]
    pub endpoint: String,
    /// Headers sent with every export (an API key of a hosted backend, say); values are
    /// redacted in logs.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `service.name` of the spans. Empty: `OTEL_SERVICE_NAME` when set, else
    /// `ferrisfx-gateway`, `ferrisfx-executor` or `ferrisfx-server` after the part (`ferrisfx`
    /// for `ferrisfx dev`). Spans also carry the part as `fx.part`.
    #[serde(default)]
    #[schemars(extend("x-default-doc" = "`ferrisfx-<part>`"))]
    pub service_name: String,
    /// Share of new traces recorded, 0 to 1 (default 1: all). A trace that arrives with a
    /// parent keeps the parent's decision.
    #[serde(default = "default_ratio")]
    pub sampling_ratio: f64,
    /// How long spans are batched before they are sent, in milliseconds (default 5000).
    #[serde(default = "default_batch_delay_ms")]
    pub batch_delay_ms: u64,
    /// Timeout of one export request, in milliseconds (default 10000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_ratio() -> f64 {
    1.0
}
fn default_batch_delay_ms() -> u64 {
    5_000
}
fn default_timeout_ms() -> u64 {
    10_000
}

impl Default for OtlpSettings {
    fn default() -> Self {
        OtlpSettings {
            endpoint: String::new(),
            headers: BTreeMap::new(),
            service_name: String::new(),
            sampling_ratio: default_ratio(),
            batch_delay_ms: default_batch_delay_ms(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

impl fmt::Debug for OtlpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("OtlpSettings")
            .field("endpoint", &self.endpoint)
            .field("headers", &headers)
            .field("service_name", &self.service_name)
            .field("sampling_ratio", &self.sampling_ratio)
            .field("batch_delay_ms", &self.batch_delay_ms)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl OtlpSettings {
    fn validate(&self) -> crate::Result<()> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(crate::Error::invalid(format!(
                "telemetry.otlp.sampling_ratio {} is not between 0 and 1",
                self.sampling_ratio
            )));
        }
        let scheme = ["http://", "https://"]
            .iter()
            .any(|scheme| self.endpoint.starts_with(scheme));
        if !self.endpoint.is_empty() && !scheme {
            return Err(crate::Error::invalid(format!(
                "telemetry.otlp.endpoint {:?} is not an http:// or https:// URL",
                self.endpoint
            )));
        }
        Ok(())
    }

    /// The URL spans are posted to: the endpoint (or the standard variables) with
    /// `/v1/traces`.
    pub fn traces_url(&self, env: impl Fn(&str) -> Option<String>) -> String {
        let base = if !self.endpoint.is_empty() {
            self.endpoint.clone()
        } else if let Some(url) =
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").filter(|u| !u.is_empty())
        {
            return url;
        } else {
            env("OTEL_EXPORTER_OTLP_ENDPOINT")
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "http://localhost:4318".into())
        };
        if base.trim_end_matches('/').ends_with("/v1/traces") {
            base
        } else {
            format!("{}/v1/traces", base.trim_end_matches('/'))
        }
    }
}

#[cfg(test)]
mod tests;
