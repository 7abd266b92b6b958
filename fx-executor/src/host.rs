//! The host side of the function contract (`sdk/wit/function.wit`): bindings, the per-store
//! state a function sees, and conversion between the WIT event and `cloudevents::Event`.

use cloudevents::AttributesReader;
use fx_core::event::{decode_binding, Event};
use fx_core::execution::LogLevel;
use fx_core::handler::Limits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bindings generated from `sdk/wit/function.wit`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "function",
        imports: { default: trappable },
    });
}

use bindings::ferrisfx;
pub use bindings::{Function, FunctionPre};
/// The WIT event record.
pub use ferrisfx::function::types::Event as WitEvent;
use ferrisfx::function::types::Level;

/// Bytes of stdout/stderr a function may write before further output is dropped.
const STDIO_CAPTURE_BYTES: usize = 64 * 1024;

/// Why the host stopped an invocation from inside an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// Output (returned + emitted event bytes) went over the cap.
    Output(u64),
    /// Log volume went over the cap.
    Log(u64),
    /// An emitted event is not a valid CloudEvent.
    BadEvent(String),
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Breach::Output(cap) => write!(f, "output exceeded {cap} bytes (max_output_bytes)"),
            Breach::Log(cap) => write!(f, "log volume exceeded {cap} bytes (max_log_bytes)"),
            Breach::BadEvent(reason) => write!(f, "emitted event is invalid: {reason}"),
        }
    }
}

impl std::error::Error for Breach {}

/// Memory and table caps of one store; remembers whether a growth was refused.
pub struct Limiter {
    memory_bytes: usize,
    /// Set when the function tried to grow memory past the cap.
    pub memory_refused: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A log line as the function wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLog {
    /// Severity.
    pub level: LogLevel,
    /// Text.
    pub message: String,
    /// Structured fields.
    pub fields: Vec<(String, String)>,
    /// When it was written.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// What one store holds: the (empty) WASI context, the caps, and what the function produced.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory and table caps.
    pub limiter: Limiter,
    limits: Limits,
    /// Log lines written so far.
    pub logs: Vec<RawLog>,
    log_bytes: u64,
    /// Events emitted so far.
    pub emitted: Vec<Event>,
    /// Bytes of output so far (emitted events; returned ones are added after the call).
    pub output_bytes: u64,
    /// Set when an import stopped the invocation.
    pub breach: Option<Breach>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl HostState {
    /// A state with nothing ambient: no files, environment, arguments or network; stdout and
    /// stderr captured into bounded buffers.
    pub fn new(limits: Limits) -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_bytes: (limits.memory_mb as usize).saturating_mul(1024 * 1024),
                memory_refused: false,
            },
            limits,
            logs: Vec::new(),
            log_bytes: 0,
            emitted: Vec::new(),
            output_bytes: 0,
            breach: None,
            stdout,
            stderr,
        }
    }

    /// What the function wrote to stdout and stderr, as text.
    pub fn stdio(&self) -> (String, String) {
        let text = |p: &MemoryOutputPipe| String::from_utf8_lossy(&p.contents()).into_owned();
        (text(&self.stdout), text(&self.stderr))
    }

    /// Counts `bytes` of output against the cap; records a breach when it is exceeded.
    pub fn add_output(&mut self, bytes: u64) -> Result<(), Breach> {
        self.output_bytes = self.output_bytes.saturating_add(bytes);
        if self.output_bytes > self.limits.max_output_bytes {
            let breach = Breach::Output(self.limits.max_output_bytes);
            self.breach = Some(breach.clone());
            return Err(breach);
        }
        Ok(())
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ferrisfx::function::types::Host for HostState {}

impl ferrisfx::function::host::Host for HostState {
    fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        self.log_bytes = self.log_bytes.saturating_add(size as u64);
        if self.log_bytes > self.limits.max_log_bytes {
            let breach = Breach::Log(self.limits.max_log_bytes);
            self.breach = Some(breach.clone());
            return Err(breach.into());
        }
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        self.logs.push(RawLog {
            level,
            message,
            fields,
            at: chrono::Utc::now(),
        });
        Ok(())
    }

    fn emit(&mut self, event: WitEvent) -> wasmtime::Result<()> {
        self.add_output(wit_event_size(&event))?;
        match from_wit(&event) {
            Ok(event) => {
                self.emitted.push(event);
                Ok(())
            }
            Err(e) => {
                let breach = Breach::BadEvent(e.chain());
                self.breach = Some(breach.clone());
                Err(breach.into())
            }
        }
    }
}

/// Bytes an event counts for against `max_output_bytes`.
pub fn wit_event_size(event: &WitEvent) -> u64 {
    let attrs = event.id.len()
        + event.source.len()
        + event.type_.len()
        + event.subject.as_ref().map_or(0, String::len)
        + event.datacontenttype.as_ref().map_or(0, String::len)
        + event
            .extensions
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    (attrs + event.data.as_ref().map_or(0, Vec::len)) as u64
}

/// A CloudEvent as the function sees it.
pub fn to_wit(event: &Event) -> WitEvent {
    WitEvent {
        id: event.id().to_string(),
        source: event.source().to_string(),
        type_: event.ty().to_string(),
        subject: event.subject().map(str::to_string),
        time: event.time().map(|t| t.to_rfc3339()),
        datacontenttype: event.datacontenttype().map(str::to_string).or_else(|| {
            matches!(event.data(), Some(cloudevents::Data::Json(_)))
                .then(|| "application/json".into())
        }),
        dataschema: event.dataschema().map(|u| u.to_string()),
        extensions: event
            .iter_extensions()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        data: fx_core::event::data_bytes(event),
    }
}

/// A function's event as a validated CloudEvent: same rules as events from producers.
pub fn from_wit(event: &WitEvent) -> fx_core::Result<Event> {
    let mut headers: Vec<(String, String)> = vec![
        ("ce_specversion".into(), "1.0".into()),
        ("ce_id".into(), event.id.clone()),
        ("ce_source".into(), event.source.clone()),
        ("ce_type".into(), event.type_.clone()),
    ];
    let optional = [
        ("ce_subject", &event.subject),
        ("ce_time", &event.time),
        ("ce_dataschema", &event.dataschema),
        ("content-type", &event.datacontenttype),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            headers.push((name.into(), value.clone()));
        }
    }
    for (name, value) in &event.extensions {
        headers.push((format!("ce_{name}"), value.clone()));
    }
    let body = event.data.clone().unwrap_or_default();
    decode_binding(
        "ce_",
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &body,
    )
}
