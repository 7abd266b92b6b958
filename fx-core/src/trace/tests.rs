use cloudevents::{EventBuilder, EventBuilderV10};

use super::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn event() -> Event {
    EventBuilderV10::new()
        .id("1")
        .source("urn:test")
        .ty("com.example.test")
        .build()
        .unwrap()
}

#[test]
fn a_valid_traceparent_parses_and_names_its_trace() {
    let context = TraceContext::parse(PARENT, Some("vendor=1")).unwrap();
    assert_eq!(context.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(context.tracestate.as_deref(), Some("vendor=1"));
}

#[test]
fn malformed_traceparents_are_ignored() {
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        assert_eq!(TraceContext::parse(bad, None), None, "{bad:?}");
    }
}

#[test]
fn the_context_round_trips_through_an_event_extension() {
    let context = TraceContext::parse(PARENT, None).unwrap();
    let mut event = event();
    assert_eq!(TraceContext::of_event(&event), None);
    context.apply_to(&mut event);
    assert_eq!(TraceContext::of_event(&event), Some(context));
}

#[test]
fn a_disabled_tracer_passes_the_parent_on() {
    let parent = TraceContext::parse(PARENT, None).unwrap();
    let span = Tracer::disabled().start("x", SpanKind::Internal, Some(&parent));
    assert_eq!(span.context(), Some(&parent));
    let root = Tracer::disabled().start("x", SpanKind::Internal, None);
    assert_eq!(root.context(), None);
}

#[test]
fn the_traces_url_comes_from_the_endpoint_or_the_standard_variables() {
    let none = |_: &str| None;
    let mut otlp = OtlpSettings::default();
    assert_eq!(otlp.traces_url(none), "http://localhost:4318/v1/traces");
    let env = |name: &str| (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://c:4318/".into());
    assert_eq!(otlp.traces_url(env), "http://c:4318/v1/traces");
    otlp.endpoint = "https://tempo:4318/v1/traces".into();
    assert_eq!(otlp.traces_url(env), "https://tempo:4318/v1/traces");
}

#[test]
fn settings_are_validated_and_headers_redacted() {
    let mut settings = TelemetrySettings {
        otlp: Some(OtlpSettings {
            sampling_ratio: 2.0,
            headers: [("authorization".to_string(), "Bearer s3cret".to_string())].into(),
            ..OtlpSettings::default()
        }),
        trace_url: Some("https://jaeger/trace/{trace_id}".into()),
    };
    assert!(settings.validate().is_err());
    assert!(!format!("{settings:?}").contains("s3cret"));
    settings.otlp.as_mut().unwrap().sampling_ratio = 0.5;
    settings.validate().unwrap();
    assert_eq!(
        settings.trace_link("abc").as_deref(),
        Some("https://jaeger/trace/abc")
    );
    settings.trace_url = Some("https://jaeger/".into());
    assert!(settings.validate().is_err());
}
