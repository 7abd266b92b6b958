//! The host side of the function contract (`sdk/wit/function.wit`): bindings, and the state of
//! one store: a WASI context with nothing ambient, the memory cap, and what the function
//! produced (log lines, emitted events) with their byte counts.

use fx_core::event::Event;
use fx_core::execution::LogLevel;
use fx_core::limits::Limits;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::convert::{from_wit, wit_event_size};
use crate::secrets::FunctionGrants;
use crate::stdio::{CapturedOutput, LogBudget};

use crate::bindings::ferrisfx;
use crate::bindings::ferrisfx::function::types::Level;
use crate::bindings::WitEvent;
use crate::breach::Breach;

/// Table elements a function may grow its tables to.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The memory cap of one store: `StoreLimits` (per memory, tables, instances) plus a cap on
/// the total of all linear memories; remembers whether a growth was refused.
pub struct Limiter {
    limits: StoreLimits,
    cap_bytes: usize,
    used_bytes: usize,
    /// Set when the function tried to grow memory past the cap.
    pub memory_refused: bool,
}

impl Limiter {
    /// A cap of `memory_mb` MiB.
    pub fn new(memory_mb: u32) -> Self {
        let cap_bytes = (memory_mb as usize).saturating_mul(1024 * 1024);
        Limiter {
            limits: StoreLimitsBuilder::new()
                .memory_size(cap_bytes)
                .table_elements(MAX_TABLE_ELEMENTS)
                .build(),
            cap_bytes,
            used_bytes: 0,
            memory_refused: false,
        }
    }
}

impl Limiter {
    /// Linear memory granted so far, in bytes (memories never shrink: this is the peak).
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.used_bytes.saturating_add(growth);
        if total > self.cap_bytes || !self.limits.memory_growing(current, desired, maximum)? {
            self.memory_refused = true;
            return Ok(false);
        }
        self.used_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
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
    /// Memory cap.
    pub limiter: Limiter,
    limits: Limits,
    log_budget: LogBudget,
    /// Log lines written so far.
    pub logs: Vec<RawLog>,
    /// Events emitted so far.
    pub emitted: Vec<Event>,
    /// Bytes of output so far (emitted events; returned ones are added after the call).
    pub output_bytes: u64,
    /// Set when an import stopped the invocation.
    pub breach: Option<Breach>,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
    /// Configuration values and secrets the function may read.
    grants: Arc<FunctionGrants>,
    http: WasiHttpCtx,
    /// Decides which outgoing HTTP requests leave the sandbox.
    http_gate: HttpGate,
}

impl HostState {
    /// A state with nothing ambient: no files, environment, arguments, stdin or network;
    /// stdout and stderr captured in memory, counted against `max_log_bytes`.
    pub fn new(limits: Limits, outbound: Arc<crate::outbound::OutboundPolicy>) -> Self {
        let log_budget = LogBudget::new(limits.max_log_bytes);
        let stdout = CapturedOutput::new(log_budget.clone());
        let stderr = CapturedOutput::new(log_budget.clone());
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
            limiter: Limiter::new(limits.memory_mb),
            limits,
            log_budget,
            logs: Vec::new(),
            emitted: Vec::new(),
            output_bytes: 0,
            breach: None,
            stdout,
            stderr,
            grants: FunctionGrants::none(),
            http: WasiHttpCtx::new(),
            http_gate: HttpGate {
                grants: FunctionGrants::none(),
                deadline: None,
                outbound,
            },
        }
    }

    /// Hands the function `grants` for its next call.
    pub fn set_grants(&mut self, grants: Arc<FunctionGrants>) {
        self.http_gate.grants = grants.clone();
        self.grants = grants;
    }

    /// When the running call must end: outgoing HTTP requests wait no longer.
    pub fn set_deadline(&mut self, deadline: Instant) {
        self.http_gate.deadline = Some(deadline);
    }

    /// What is left of the running call's time, if it has a deadline.
    pub fn time_left(&self) -> Option<Duration> {
        self.http_gate
            .deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// The store's resource table (pollables and streams among them).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// Clears what the last invocation produced, so that a warm instance starts its next one
    /// with empty logs, output and budgets (its memory and globals are kept).
    pub fn reset_for_next_call(&mut self) {
        self.log_budget.reset();
        self.stdout.clear();
        self.stderr.clear();
        self.logs.clear();
        self.emitted.clear();
        self.output_bytes = 0;
        self.breach = None;
        self.limiter.memory_refused = false;
    }

    /// The limits the store was made with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What the function wrote to stdout and stderr, as text.
    pub fn stdio(&self) -> (String, String) {
        (self.stdout.text(), self.stderr.text())
    }

    /// Counts `bytes` of output against the cap; records a breach when it is exceeded.
    pub fn add_output(&mut self, bytes: u64) -> Result<(), Breach> {
        self.output_bytes = self.output_bytes.saturating_add(bytes);
        if self.output_bytes > self.limits.max_output_bytes {
            return Err(self.record(Breach::Output(self.limits.max_output_bytes)));
        }
        Ok(())
    }

    fn record(&mut self, breach: Breach) -> Breach {
        self.breach = Some(breach.clone());
        breach
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

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.http_gate,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// The outgoing-HTTP policy of one store: a request leaves only for a host the handler allows
/// (`http_allow`, given to packages that declare `wasi:http`), and waits no longer than the
/// invocation may run (host calls are not interrupted by the epoch, so the timeouts are).
struct HttpGate {
    grants: Arc<FunctionGrants>,
    deadline: Option<Instant>,
    /// Which addresses a request may connect to, checked at connect time.
    outbound: Arc<crate::outbound::OutboundPolicy>,
}

impl HttpGate {
    /// Whether the handler allows requests to `host` on `port`.
    fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.grants
            .http_allow
            .iter()
            .any(|entry| *entry == host || *entry == format!("{host}:{port}"))
    }
}

/// What `WasiHttpHooks::send_request` returns.
type SendFuture = Box<
    dyn std::future::Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<
                        dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>>
                            + Send,
                    >,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        let host = uri.host().unwrap_or_default().to_string();
        if !self.allows(&host, port) {
            tracing::debug!(%host, port, "outgoing http request denied");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let left = self
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        if left.is_zero() {
            return Box::new(async { Err(wasmtime_wasi_http::Error::ConnectionTimeout) });
        }
        let options = options.unwrap_or_default();
        let cap = |t: Option<Duration>| Some(t.map_or(left, |t| t.min(left)));
        let options = wasmtime_wasi_http::RequestOptions {
            connect_timeout: cap(options.connect_timeout),
            first_byte_timeout: cap(options.first_byte_timeout),
            between_bytes_timeout: cap(options.between_bytes_timeout),
        };
        tracing::debug!(%host, port, "outgoing http request");
        let _ = fut;
        let outbound = self.outbound.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = crate::outbound::send_request(outbound, request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}

impl ferrisfx::function::types::Host for HostState {}

impl ferrisfx::function::config::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.grants.config.get(&key).cloned())
    }

    fn get_all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .grants
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn secret(&mut self, name: String) -> wasmtime::Result<Result<String, String>> {
        Ok(self.grants.secret(&name))
    }
}

impl ferrisfx::function::host::Host for HostState {
    fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if let Err(breach) = self.log_budget.charge(size) {
            return Err(self.record(breach).into());
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
            Err(e) => Err(self.record(Breach::BadEvent(e.chain())).into()),
        }
    }
}
