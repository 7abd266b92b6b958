//! The Wasmtime engine of one executor: one `Engine` with epoch interruption and fuel, one
//! epoch ticker thread, a linker with WASI p2 (nothing ambient) and the host imports, the
//! compile cache, and running one invocation in a fresh store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fx_core::event::Event;
use fx_core::execution::{Failure, FailureKind};
use fx_core::handler::Limits;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, Store, Trap};

use crate::host::{self, Function, FunctionPre, HostState, RawLog};

/// The result of running a function once.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The returned and emitted events, or why the run failed.
    pub outcome: Result<Vec<Event>, Failure>,
    /// Log lines the function wrote (and its stdout/stderr, as lines).
    pub logs: Vec<RawLog>,
    /// Wall time of instantiate + call.
    pub duration: Duration,
}

/// One Wasmtime engine and what every invocation shares.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    tick: Duration,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// An engine with the component model, epoch interruption and fuel metering, and a ticker
    /// thread advancing the epoch every `tick`.
    pub fn new(tick: Duration) -> fx_core::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(true);
        let engine = Engine::new(&config).map_err(|e| {
            fx_core::Error::internal(format!("creating the wasmtime engine: {e:#}"))
        })?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| Function::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .map_err(|e| fx_core::Error::internal(format!("linking host imports: {e:#}")))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let (engine, stop) = (engine.clone(), ticker_stop.clone());
            std::thread::Builder::new()
                .name("fx-epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| {
                    fx_core::Error::internal("starting the epoch ticker").with_source(e)
                })?;
        }
        Ok(Runtime {
            engine,
            linker,
            tick,
            ticker_stop,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A hash of the engine's compilation settings: compiled artifacts are only valid for an
    /// engine with the same hash.
    pub fn compatibility_hash(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Links a compiled component against the host.
    pub fn prepare(
        &self,
        component: &wasmtime::component::Component,
    ) -> fx_core::Result<FunctionPre<HostState>> {
        let pre = self.linker.instantiate_pre(component).map_err(|e| {
            fx_core::Error::invalid(format!("component does not fit the function world: {e:#}"))
        })?;
        FunctionPre::new(pre).map_err(|e| {
            fx_core::Error::invalid(format!(
                "component does not export the function world: {e:#}"
            ))
        })
    }

    /// Runs `event` through a fresh instance with `limits`. Blocking: call it off the async
    /// workers.
    pub fn run(&self, pre: &FunctionPre<HostState>, event: &Event, limits: &Limits) -> RunResult {
        let start = Instant::now();
        let mut store = Store::new(&self.engine, HostState::new(*limits));
        store.limiter(|state| &mut state.limiter);
        let ticks = limits
            .timeout_ms
            .div_ceil(self.tick.as_millis().max(1) as u64)
            + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let fuel = limits.fuel.unwrap_or(u64::MAX);
        let called = store
            .set_fuel(fuel)
            .and_then(|()| pre.instantiate(&mut store))
            .and_then(|function| function.call_handle(&mut store, &host::to_wit(event)));
        let duration = start.elapsed();
        let outcome = match called {
            Ok(Ok(events)) => collect_output(store.data_mut(), &events),
            Ok(Err(message)) => Err(Failure {
                kind: FailureKind::FunctionError,
                message: format!("function returned an error: {message}"),
            }),
            Err(error) => Err(classify(&error, store.data(), limits)),
        };
        let state = store.into_data();
        let (stdout, stderr) = state.stdio();
        let mut logs = state.logs;
        for (text, level) in [
            (stdout, fx_core::execution::LogLevel::Info),
            (stderr, fx_core::execution::LogLevel::Warn),
        ] {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                logs.push(RawLog {
                    level,
                    message: line.to_string(),
                    fields: vec![(
                        "stream".into(),
                        if level == fx_core::execution::LogLevel::Info {
                            "stdout"
                        } else {
                            "stderr"
                        }
                        .into(),
                    )],
                    at: chrono::Utc::now(),
                });
            }
        }
        RunResult {
            outcome,
            logs,
            duration,
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn collect_output(
    state: &mut HostState,
    returned: &[host::WitEvent],
) -> Result<Vec<Event>, Failure> {
    let mut output = std::mem::take(&mut state.emitted);
    for event in returned {
        if let Err(breach) = state.add_output(host::wit_event_size(event)) {
            return Err(Failure {
                kind: FailureKind::OutputLimit,
                message: breach.to_string(),
            });
        }
        match host::from_wit(event) {
            Ok(event) => output.push(event),
            Err(e) => {
                return Err(Failure {
                    kind: FailureKind::FunctionError,
                    message: format!("returned event is invalid: {}", e.chain()),
                })
            }
        }
    }
    Ok(output)
}

/// Names the cause of a failed call: the limit it hit, or the trap.
fn classify(error: &wasmtime::Error, state: &HostState, limits: &Limits) -> Failure {
    if let Some(breach) = &state.breach {
        let kind = match breach {
            host::Breach::BadEvent(_) => FailureKind::FunctionError,
            _ => FailureKind::OutputLimit,
        };
        return Failure {
            kind,
            message: breach.to_string(),
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => {
            return Failure {
                kind: FailureKind::Timeout,
                message: format!("timed out after {} ms", limits.timeout_ms),
            }
        }
        Some(Trap::OutOfFuel) => {
            return Failure {
                kind: FailureKind::FuelLimit,
                message: format!("fuel budget of {} exhausted", limits.fuel.unwrap_or(0)),
            }
        }
        Some(Trap::StackOverflow) => {
            return Failure {
                kind: FailureKind::Trap,
                message: "stack overflow (wasm trap: call stack exhausted)".into(),
            }
        }
        _ => {}
    }
    if state.limiter.memory_refused {
        return Failure {
            kind: FailureKind::MemoryLimit,
            message: format!("memory limit of {} MiB exceeded", limits.memory_mb),
        };
    }
    let (_, stderr) = state.stdio();
    let mut message = match error.downcast_ref::<Trap>() {
        Some(trap) => format!("wasm trap: {trap}"),
        None => format!("{error:#}"),
    };
    if let Some(last) = stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        message.push_str(&format!(" (stderr: {})", last.trim()));
    }
    Failure {
        kind: FailureKind::Trap,
        message,
    }
}
