//! The trace exporter of a process: an OpenTelemetry tracer provider sending spans over
//! OTLP/HTTP (protobuf) in batches from its own thread, built from `[telemetry]`
//! ([`TelemetrySettings`]). Each platform holds its own (none is installed globally), so two
//! platforms in one process export to their own collectors.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use fx_core::trace::{OtlpSettings, TelemetrySettings, Tracer};
use opentelemetry::global::BoxedTracer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

/// The traces of one process (or one in-process platform).
#[derive(Clone, Default)]
pub struct Traces {
    provider: Option<SdkTracerProvider>,
    tracer: Tracer,
}

impl Traces {
    /// Starts exporting when `settings.otlp` is set, or the standard `OTEL_EXPORTER_OTLP_*`
    /// variables are; otherwise traces are not recorded. `part` names the process's part
    /// (`dev`, `gateway`, `executor`, `server`) in the spans' resource.
    pub fn start(settings: &TelemetrySettings, part: &str) -> anyhow::Result<Traces> {
        settings.validate()?;
        let env = |name: &str| std::env::var(name).ok();
        let otlp = match &settings.otlp {
            Some(otlp) => otlp.clone(),
            None if env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
                || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() =>
            {
                OtlpSettings::default()
            }
            None => return Ok(Traces::default()),
        };
        let url = otlp.traces_url(env);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .with_timeout(Duration::from_millis(otlp.timeout_ms.max(1)))
            .with_headers(otlp.headers.clone().into_iter().collect::<HashMap<_, _>>())
            .build()
            .with_context(|| format!("setting up the OTLP exporter to {url}"))?;
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(Duration::from_millis(otlp.batch_delay_ms.max(1)))
                    .build(),
            )
            .build();
        let service = match otlp.service_name.as_str() {
            "" => env("OTEL_SERVICE_NAME").unwrap_or_else(|| match part {
                "dev" => "ferrisfx".into(),
                part => format!("ferrisfx-{part}"),
            }),
            name => name.to_string(),
        };
        let resource = Resource::builder()
            .with_service_name(service.clone())
            .with_attributes([
                KeyValue::new("fx.part", part.to_string()),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                otlp.sampling_ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = Tracer::new(BoxedTracer::new(Box::new(provider.tracer("ferrisfx"))));
        tracing::info!(endpoint = %url, service = %service, sampling_ratio = otlp.sampling_ratio, "exporting traces over OTLP");
        Ok(Traces {
            provider: Some(provider),
            tracer,
        })
    }

    /// The tracer the parts open their spans with.
    pub fn tracer(&self) -> Tracer {
        self.tracer.clone()
    }

    /// Sends the spans ended so far (blocking: off the async workers).
    pub async fn flush(&self) {
        if let Some(provider) = self.provider.clone() {
            let flushed = tokio::task::spawn_blocking(move || provider.force_flush()).await;
            if let Ok(Err(e)) = flushed {
                tracing::warn!(error = %e, "flushing traces failed");
            }
        }
    }

    /// Sends the spans not yet sent and stops the exporter.
    pub async fn shutdown(&self) {
        if let Some(provider) = self.provider.clone() {
            let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = stopped {
                tracing::warn!(error = %e, "stopping the trace exporter failed");
            }
        }
    }
}
