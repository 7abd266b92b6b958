//! Traces end to end: one event through two chained functions is one trace, received by an
//! OTLP/HTTP receiver running in the test, with the spans of every part and the phases of a
//! cold start.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use fx_core::testsupport::poll_until;
use fx_core::trace::{OtlpSettings, TelemetrySettings};
use fx_tests::{example_package, open_settings, TestPlatform};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;

/// The trace the producer started: its id and the span that sent the event.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PRODUCER_SPAN: &str = "b7ad6b7169203331";

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    duration_ns: u64,
    attributes: HashMap<String, String>,
    service: String,
}

impl Received {
    fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// `POST /v1/traces`: OTLP/HTTP with protobuf bodies, as a collector takes them.
async fn receive(State(spans): State<Spans>, body: Bytes) -> impl axum::response::IntoResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let mut received = spans.lock().unwrap();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.push(Received {
                trace_id: hex::encode(&span.trace_id),
                span_id: hex::encode(&span.span_id),
                parent: hex::encode(&span.parent_span_id),
                name: span.name,
                duration_ns: span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano),
                attributes: span
                    .attributes
                    .iter()
                    .map(|kv| {
                        let value = text(kv.value.as_ref().and_then(|v| v.value.as_ref()));
                        (kv.key.clone(), value)
                    })
                    .collect(),
                service: service.clone(),
            });
        }
    }
    (
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn text(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

/// Starts the receiver on a free port: its base URL and what it received.
async fn otlp_receiver() -> (String, Spans) {
    let spans = Spans::default();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

/// The names the spans of one trace must include, with how many of each at least: the
/// ingress, and for each of the two executions its dispatch, its run and its phases (both
/// packages are compiled on their first event: the executor's cache was emptied), and the
/// state router's records of `started` and `succeeded`.
const EXPECTED: &[(&str, usize)] = &[
    ("fx.ingress", 1),
    ("fx.dispatch", 2),
    ("fx.execute", 2),
    ("fx.queue_wait", 2),
    ("fx.cold_start", 2),
    ("fx.fetch", 2),
    ("fx.compile", 2),
    ("fx.instantiate", 2),
    ("fx.call", 2),
    ("fx.record", 4),
];

fn missing(spans: &[Received]) -> Vec<String> {
    EXPECTED
        .iter()
        .filter_map(|(name, at_least)| {
            let n = spans.iter().filter(|s| s.name == *name).count();
            (n < *at_least).then(|| format!("{name}: {n} of {at_least}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_through_two_chained_functions_is_one_trace_with_the_spans_of_every_part() {
    let dir = tempfile::tempdir().unwrap();
    // Install the chain with traces off, then empty the executor's cache, so that the traced
    // platform starts cold: its first event compiles both packages.
    let fx = TestPlatform::start(dir.path(), false).await;
    assert_eq!(fx.upload(example_package("order-pricing")).await.0, 201);
    assert_eq!(fx.upload(example_package("hello")).await.0, 201);
    fx.handler(
        "pricing",
        "order-pricing",
        "com.example.order.created",
        json!({}),
    )
    .await;
    fx.handler(
        "priced-greeter",
        "hello",
        "com.example.order.priced",
        json!({}),
    )
    .await;
    fx.stop().await;
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();

    let (endpoint, received) = otlp_receiver().await;
    let mut settings = open_settings();
    settings.data_dir = dir.path().to_path_buf();
    settings.example = false;
    settings.telemetry = TelemetrySettings {
        otlp: Some(OtlpSettings {
            endpoint,
            service_name: "fx-trace-test".into(),
            batch_delay_ms: 100,
            ..OtlpSettings::default()
        }),
        trace_url: Some("https://jaeger.example.com/trace/{trace_id}".into()),
    };
    let fx = TestPlatform::start_with(settings).await;

    let order = json!({
        "specversion": "1.0", "id": "order-7", "source": "/tests/shop",
        "type": "com.example.order.created", "datacontenttype": "application/json",
        "data": {"order_id": "o-7", "currency": "EUR",
            "items": [{"sku": "a", "qty": 1, "unit_price": 12.5}]},
    });
    let traceparent = format!("00-{TRACE_ID}-{PRODUCER_SPAN}-01");
    let (status, body) = fx
        .post_raw(
            "/events",
            &[
                ("content-type", "application/cloudevents+json"),
                ("traceparent", &traceparent),
            ],
            order.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let greeted = fx
        .wait_finished("priced-greeter", 1, Duration::from_secs(60))
        .await;
    assert_eq!(
        greeted[0]["execution"]["status"], "succeeded",
        "{greeted:#?}"
    );
    let priced = fx
        .wait_finished("pricing", 1, Duration::from_secs(60))
        .await;
    assert_eq!(priced[0]["execution"]["status"], "succeeded", "{priced:#?}");

    let spans = poll_until(
        "the receiver has every span of the trace",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            fx.flush_traces().await;
            let spans = received.lock().unwrap().clone();
            match missing(&spans) {
                m if m.is_empty() => Ok(spans),
                m => Err(m.join(", ")),
            }
        },
    )
    .await;

    // One trace: the producer's, continued by every part and across the chain.
    let traces: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(traces, HashSet::from([TRACE_ID]), "{spans:#?}");
    assert!(spans.iter().all(|s| s.service == "fx-trace-test"));
    let by_id: HashMap<&str, &Received> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let parent_of = |span: &Received| by_id.get(span.parent.as_str()).copied();
    let one = |name: &str, handler: &str| -> &Received {
        let found: Vec<&Received> = spans
            .iter()
            .filter(|s| s.name == name && s.attribute("fx.handler") == handler)
            .collect();
        assert_eq!(found.len(), 1, "one {name} of {handler}: {spans:#?}");
        found[0]
    };

    // ingress ← producer; dispatch ← ingress; execute ← dispatch.
    let ingress = spans.iter().find(|s| s.name == "fx.ingress").unwrap();
    assert_eq!(ingress.parent, PRODUCER_SPAN);
    let dispatch = one("fx.dispatch", "pricing");
    assert_eq!(dispatch.parent, ingress.span_id);
    let execute = one("fx.execute", "pricing");
    assert_eq!(execute.parent, dispatch.span_id);
    // The chained function's dispatch continues the first execution's span, through the
    // `traceparent` of the event it emitted.
    let chained_dispatch = one("fx.dispatch", "priced-greeter");
    assert_eq!(chained_dispatch.parent, execute.span_id, "{spans:#?}");
    let chained = one("fx.execute", "priced-greeter");
    assert_eq!(chained.parent, chained_dispatch.span_id);

    // The phases of each execution are its children; the cold start's with its compile, each
    // with a duration.
    for run in [execute, chained] {
        for phase in [
            "fx.queue_wait",
            "fx.cold_start",
            "fx.instantiate",
            "fx.call",
        ] {
            let children: Vec<&Received> = spans
                .iter()
                .filter(|s| s.name == phase && s.parent == run.span_id)
                .collect();
            assert_eq!(
                children.len(),
                1,
                "{phase} of {}",
                run.attribute("fx.handler")
            );
            if phase != "fx.queue_wait" {
                assert!(children[0].duration_ns > 0, "{phase}: {:?}", children[0]);
            }
        }
        let cold = spans
            .iter()
            .find(|s| s.name == "fx.cold_start" && s.parent == run.span_id)
            .unwrap();
        assert_eq!(cold.attribute("fx.compile_cache"), "compiled");
        let compile = spans
            .iter()
            .find(|s| s.name == "fx.compile" && s.parent == cold.span_id)
            .expect("a compile span inside the cold start");
        assert!(compile.duration_ns > 0);
        // The state router recorded started and succeeded as children of the run.
        let records: HashSet<&str> = spans
            .iter()
            .filter(|s| {
                s.name == "fx.record"
                    && parent_of(s).map(|p| p.span_id.as_str()) == Some(run.span_id.as_str())
            })
            .map(|s| s.attribute("fx.state"))
            .collect();
        assert!(
            records.contains("started") && records.contains("succeeded"),
            "{records:?}"
        );
    }

    // The execution page shows the trace id, linked as telemetry.trace_url says.
    let id = greeted[0]["execution"]["id"].as_str().unwrap();
    let (status, page) = fx.get_text(&format!("/executions/{id}")).await;
    assert_eq!(status, 200);
    assert!(
        page.contains(&format!(
            "href=\"https://jaeger.example.com/trace/{TRACE_ID}\""
        )),
        "{page}"
    );
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_run_started_by_a_traced_event_continues_its_trace_in_every_step() {
    const RUN_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const RUN_PRODUCER: &str = "00f067aa0ba902b7";
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, received) = otlp_receiver().await;
    let mut settings = open_settings();
    settings.data_dir = dir.path().to_path_buf();
    settings.example = false;
    settings.telemetry = TelemetrySettings {
        otlp: Some(OtlpSettings {
            endpoint,
            service_name: "fx-trace-workflow".into(),
            batch_delay_ms: 100,
            ..OtlpSettings::default()
        }),
        trace_url: None,
    };
    let fx = TestPlatform::start_with(settings).await;
    assert_eq!(fx.upload(example_package("workflow-step")).await.0, 201);
    let step = |name: &str, after: &[&str]| {
        json!({"name": name, "package": {"name": "workflow-step"},
               "after": after.iter().map(|s| json!({"step": s})).collect::<Vec<_>>()})
    };
    let (status, v) = fx
        .post_json(
            "/api/v1/workflows",
            &json!({"name": "traced",
                    "trigger": {"event": {"exact": {"attribute": "type", "value": "com.example.traced"}}},
                    "steps": [step("a", &[]), step("b", &["a"])]}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let event = json!({
        "specversion": "1.0", "id": "traced-1", "source": "/tests/traces",
        "type": "com.example.traced", "datacontenttype": "application/json", "data": {},
    });
    let (status, body) = fx
        .post_raw(
            "/events",
            &[
                ("content-type", "application/cloudevents+json"),
                ("traceparent", &format!("00-{RUN_TRACE}-{RUN_PRODUCER}-01")),
            ],
            event.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let spans = poll_until(
        "both steps' executions are in the trace",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            fx.flush_traces().await;
            let spans = received.lock().unwrap().clone();
            let steps: HashSet<String> = spans
                .iter()
                .filter(|s| s.name == "fx.execute")
                .map(|s| s.attribute("fx.handler").to_string())
                .collect();
            if steps.contains("workflow.traced.a") && steps.contains("workflow.traced.b") {
                Ok(spans)
            } else {
                Err(format!("{steps:?}"))
            }
        },
    )
    .await;
    for handler in ["workflow.traced.a", "workflow.traced.b"] {
        let execute = spans
            .iter()
            .find(|s| s.name == "fx.execute" && s.attribute("fx.handler") == handler)
            .unwrap();
        assert_eq!(execute.trace_id, RUN_TRACE, "{handler}: {execute:?}");
    }
    fx.stop().await;
}
