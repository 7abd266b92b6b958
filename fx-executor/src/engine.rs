//! The Wasmtime engine of one executor: one `Engine` with epoch interruption and fuel, one
//! epoch ticker thread ([`crate::ticker`]), a linker with WASI p2 (nothing ambient) and the host imports, the
//! compile cache, and running one invocation in a fresh store or a warm one ([`crate::warm`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fx_core::event::Event;
use fx_core::execution::{Failure, FailureKind, LogLevel};
use fx_core::limits::Limits;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use crate::bindings::{Function, FunctionPre, WitEvent};
use crate::convert::to_wit;
use crate::host::{HostState, RawLog};
use crate::outcome::{classify, collect_output, stdio_lines};
use crate::phases::Phase;
use crate::secrets::FunctionGrants;
use crate::ticker::Ticker;
pub use crate::warm::WarmKey;
use crate::warm::{Warm, WarmPool};

/// The result of running a function once.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The returned and emitted events, or why the run failed.
    pub outcome: Result<Vec<Event>, Failure>,
    /// Log lines the function wrote (and its stdout/stderr, as lines).
    pub logs: Vec<RawLog>,
    /// Wall time of instantiate + call.
    pub duration: Duration,
    /// Linear memory the function grew to, in bytes.
    pub peak_memory_bytes: u64,
    /// Fuel used, when the invocation had a fuel budget.
    pub fuel_used: Option<u64>,
    /// When the instance was made (none for a warm instance reused) and the function called.
    pub instantiate: Option<Phase>,
    /// When the function was called.
    pub call: Option<Phase>,
}

/// How to build the engine (from [`crate::ExecutorSettings::engine`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// The epoch tick.
    pub tick: Duration,
    /// Pooling or on-demand allocation.
    pub allocator: crate::Allocator,
    /// Component instances the pool holds at once.
    pub pool_instances: u32,
    /// The largest linear memory of a pool slot, in MiB.
    pub pool_max_memory_mb: u32,
    /// Where functions' outbound HTTP may connect.
    pub outbound: std::sync::Arc<crate::outbound::OutboundPolicy>,
}

/// One Wasmtime engine and what every invocation shares.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    tick: Duration,
    /// Held for its `Drop`: stops the epoch ticker with the runtime.
    _ticker: Ticker,
    warm: WarmPool,
    /// Instances running a call now (armed with their deadline).
    running: AtomicUsize,
    /// Where functions' outbound HTTP may connect.
    outbound: std::sync::Arc<crate::outbound::OutboundPolicy>,
}

/// Counts an instance as running while it lives.
struct Running<'a>(&'a AtomicUsize);

impl<'a> Running<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Running(counter)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Runtime {
    /// An engine with the component model, epoch interruption and fuel metering, and a ticker
    /// thread advancing the epoch every `tick` (stopped when the runtime is dropped).
    ///
    /// Fuel metering is always on and unmetered invocations get `u64::MAX` fuel: one engine
    /// and one compiled artifact per package. Measured on a tight integer loop, metering cost
    /// about 3.5% (188 ms vs 195 ms, best of 12); the instantiate-and-call time of `hello`
    /// showed no difference within the noise.
    pub fn new(tick: Duration) -> fx_core::Result<Self> {
        Runtime::with_settings(&EngineSettings {
            tick,
            allocator: crate::Allocator::OnDemand,
            pool_instances: 0,
            pool_max_memory_mb: 0,
            outbound: Default::default(),
        })
    }

    /// As [`Runtime::new`], with the allocator `settings` ask for. When the pooling allocator
    /// cannot reserve its slots (a virtual-memory limit), the engine falls back to on-demand
    /// allocation with a warning.
    pub fn with_settings(settings: &EngineSettings) -> fx_core::Result<Self> {
        let tick = settings.tick;
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(true);
        let engine = match settings.allocator {
            crate::Allocator::Pooling => {
                let mut pooled = config.clone();
                pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(settings)));
                match Engine::new(&pooled) {
                    Ok(engine) => {
                        tracing::info!(
                            instances = settings.pool_instances,
                            max_memory_mb = settings.pool_max_memory_mb,
                            pagemap_scan = PoolingAllocationConfig::is_pagemap_scan_available(),
                            "wasmtime pooling allocator ready"
                        );
                        Some(engine)
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "the pooling allocator cannot reserve its slots; allocating instances on demand (set executor.pool_instances lower, or executor.allocator = \"on_demand\")");
                        None
                    }
                }
            }
            crate::Allocator::OnDemand => None,
        };
        let engine = match engine {
            Some(engine) => engine,
            None => Engine::new(&config).map_err(|e| {
                fx_core::Error::internal(format!("creating the wasmtime engine: {e:#}"))
            })?,
        };
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker))
            .and_then(|()| Function::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s))
            .and_then(|()| crate::waits::bound_blocking_waits(&mut linker))
            .map_err(|e| fx_core::Error::internal(format!("linking host imports: {e:#}")))?;
        let ticker = Ticker::start(&engine, tick)?;
        Ok(Runtime {
            engine,
            linker,
            tick,
            _ticker: ticker,
            warm: Default::default(),
            running: AtomicUsize::new(0),
            outbound: settings.outbound.clone(),
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

    /// Runs `event` through a fresh store and instance with `limits`, handing the function
    /// `grants`. Blocking: call it off the async workers.
    pub fn run(
        &self,
        pre: &FunctionPre<HostState>,
        event: &Event,
        limits: &Limits,
        grants: &Arc<FunctionGrants>,
    ) -> RunResult {
        let (clock, start) = (SystemTime::now(), Instant::now());
        let mut store = self.store(limits);
        store.data_mut().set_grants(grants.clone());
        let mut instantiated = None;
        let called = self.arm(&mut store, limits, start).and_then(|()| {
            let _running = Running::enter(&self.running);
            let begun = Instant::now();
            pre.instantiate(&mut store).and_then(|function| {
                instantiated = Some((begun, Instant::now()));
                function.call_handle(&mut store, &to_wit(event))
            })
        });
        let (end, duration) = (Instant::now(), start.elapsed());
        let mut result = self.finish(&mut store, called, duration, limits);
        if let Some((begun, made)) = instantiated {
            result.instantiate = Some(Phase::between(clock, start, begun, made));
            result.call = Some(Phase::between(clock, start, made, end));
        }
        result
    }

    /// Instances running a call now, their deadline armed.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Runs `event` in a warm instance of `key` (the handler's name and package digest) kept
    /// from an earlier invocation with the same limits, or in a new one that is kept
    /// afterwards. Memory and globals survive from one event to the next: only for handlers
    /// that opt in (`reuse_instances`). An instance that trapped or broke a limit is dropped,
    /// never reused. Blocking: call it off the async workers.
    pub fn run_warm(
        &self,
        key: &WarmKey,
        pre: &FunctionPre<HostState>,
        event: &Event,
        limits: &Limits,
        grants: &Arc<FunctionGrants>,
    ) -> RunResult {
        let (clock, start) = (SystemTime::now(), Instant::now());
        let warm = self.warm.take(key, limits);
        let mut instantiated = None;
        let (mut store, function) = match warm {
            Some(warm) => (warm.store, Ok(warm.function)),
            None => {
                let mut store = self.store(limits);
                let function = self
                    .arm(&mut store, limits, start)
                    .and_then(|()| pre.instantiate(&mut store));
                instantiated = Some(Phase::between(clock, start, start, Instant::now()));
                (store, function)
            }
        };
        let calling = Instant::now();
        store.data_mut().reset_for_next_call();
        store.data_mut().set_grants(grants.clone());
        let called = match function {
            Ok(function) => self
                .arm(&mut store, limits, start)
                .and_then(|()| {
                    let _running = Running::enter(&self.running);
                    function.call_handle(&mut store, &to_wit(event))
                })
                .map(|result| (result, function)),
            Err(e) => Err(e),
        };
        let duration = start.elapsed();
        let (called, function) = match called {
            Ok((result, function)) => (Ok(result), Some(function)),
            Err(e) => (Err(e), None),
        };
        let mut result = self.finish(&mut store, called, duration, limits);
        result.instantiate = instantiated;
        result.call = function
            .is_some()
            .then(|| Phase::between(clock, start, calling, start + duration));
        let reusable = store.data().breach.is_none()
            && !store.data().limiter.memory_refused
            && !matches!(&result.outcome, Err(f) if f.kind != FailureKind::FunctionError);
        if let (true, Some(function)) = (reusable, function) {
            self.warm.put(key.clone(), Warm { store, function });
        }
        result
    }

    /// Idle warm instances in all.
    pub fn warm_instances(&self) -> usize {
        self.warm.len()
    }

    /// A new store for one invocation (or one warm instance) with `limits`.
    fn store(&self, limits: &Limits) -> Store<HostState> {
        let mut store = Store::new(&self.engine, HostState::new(*limits, self.outbound.clone()));
        store.limiter(|state| &mut state.limiter);
        store
    }

    /// Sets the fuel budget and the timeout of a call starting at `start`.
    fn arm(
        &self,
        store: &mut Store<HostState>,
        limits: &Limits,
        start: Instant,
    ) -> wasmtime::Result<()> {
        store.set_epoch_deadline(self.deadline_ticks(limits.timeout_ms));
        store
            .data_mut()
            .set_deadline(start + Duration::from_millis(limits.timeout_ms));
        // The ticker catches up after a stall (several ticks at once), so a deadline in ticks
        // can come early: the wall clock decides, and an early deadline is pushed back.
        let (timeout, tick) = (Duration::from_millis(limits.timeout_ms), self.tick);
        store.epoch_deadline_callback(move |_| {
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return Err(Trap::Interrupt.into());
            }
            let left_us = (timeout - elapsed).as_micros();
            let ticks = left_us.div_ceil(tick.as_micros().max(1));
            Ok(UpdateDeadline::Continue(
                u64::try_from(ticks).unwrap_or(u64::MAX).max(1),
            ))
        });
        store.set_fuel(limits.fuel.unwrap_or(u64::MAX))
    }

    /// What a call produced: its outcome, logs (with stdout and stderr) and measurements.
    fn finish(
        &self,
        store: &mut Store<HostState>,
        called: wasmtime::Result<Result<Vec<WitEvent>, String>>,
        duration: Duration,
        limits: &Limits,
    ) -> RunResult {
        let outcome = match called {
            Ok(Ok(events)) => collect_output(store.data_mut(), &events),
            Ok(Err(message)) => Err(Failure {
                kind: FailureKind::FunctionError,
                message: format!("function returned an error: {message}"),
            }),
            Err(error) => Err(classify(&error, store.data(), limits)),
        };
        let fuel_used = limits.fuel.and_then(|budget| {
            store
                .get_fuel()
                .ok()
                .map(|left| budget.saturating_sub(left))
        });
        let state = store.data_mut();
        let peak_memory_bytes = state.limiter.used_bytes() as u64;
        let (stdout, stderr) = state.stdio();
        let mut logs = std::mem::take(&mut state.logs);
        logs.extend(stdio_lines(&stdout, "stdout", LogLevel::Info));
        logs.extend(stdio_lines(&stderr, "stderr", LogLevel::Warn));
        RunResult {
            outcome,
            logs,
            duration,
            peak_memory_bytes,
            fuel_used,
            instantiate: None,
            call: None,
        }
    }

    /// Epoch ticks for `timeout_ms`, rounded up, plus one: the first tick may come at once. The
    /// deadline callback checks the wall clock, so this is a first estimate, never a verdict.
    fn deadline_ticks(&self, timeout_ms: u64) -> u64 {
        let tick_us = self.tick.as_micros().max(1) as u64;
        timeout_ms.saturating_mul(1000).div_ceil(tick_us) + 1
    }
}

/// Bytes of what an instance wrote to a memory or table slot that are reset by hand and stay
/// mapped for the next instance; pages written past this are decommitted.
const KEEP_RESIDENT_BYTES: usize = 1024 * 1024;

/// The pool for `settings`: `pool_instances` component instances, each with room for a few
/// core instances, memories and tables (a Rust component has about five core instances,
/// one memory and two tables).
fn pooling(settings: &EngineSettings) -> PoolingAllocationConfig {
    let instances = settings.pool_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(16))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .max_memory_size((settings.pool_max_memory_mb as usize).saturating_mul(1024 * 1024))
        .table_elements(crate::host::MAX_TABLE_ELEMENTS)
        // A reused slot keeps up to this much of what the last instance wrote mapped (reset
        // by hand) instead of being decommitted and faulted in again: most functions touch
        // little memory.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES)
        // With Linux's PAGEMAP_SCAN (6.7 and later) only the pages the last instance wrote are
        // reset (copied back from the image or zeroed), not the whole first MiB of memory and
        // table: a slot is ready again in microseconds and evicts no cache. Everything written
        // is still reset, by hand or by decommit; older kernels fall back to memset.
        .pagemap_scan(Enabled::Auto);
    pool
}

#[cfg(test)]
mod tests {
    use cloudevents::{AttributesReader, Data};
    use fx_core::event::new_json_event;
    use fx_core::package::PackageArchive;
    use serde_json::json;
    use wasmtime::component::Component;

    use super::*;

    /// `misbehave` (`examples/dist`, built by `infra/scripts/build-examples.sh`), linked.
    fn misbehave(runtime: &Runtime) -> FunctionPre<HostState> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/dist/misbehave.fxpkg"
        );
        let archive = std::fs::read(path)
            .unwrap_or_else(|e| panic!("{path}: {e}; run infra/scripts/build-examples.sh first"));
        let (_, wasm) = PackageArchive::component_of(&archive).unwrap();
        runtime
            .prepare(&Component::new(runtime.engine(), &wasm).unwrap())
            .unwrap()
    }

    /// The calls the instance that ran `fx.test.count` had handled.
    fn count(runtime: &Runtime, pre: &FunctionPre<HostState>) -> u64 {
        let event = new_json_event("c-1", "/test", "fx.test.count", json!({})).unwrap();
        let output = runtime
            .run(pre, &event, &Limits::DEFAULT, &FunctionGrants::none())
            .outcome
            .unwrap();
        match output[0].data() {
            Some(Data::Json(value)) => value["count"].as_u64().unwrap(),
            other => panic!("no JSON data: {other:?} ({})", output[0].ty()),
        }
    }

    #[test]
    fn a_reused_pool_slot_starts_from_the_image_again_whatever_the_last_instance_wrote() {
        // One slot, so that every instance reuses the memory and tables of the one before.
        let runtime = Runtime::with_settings(&EngineSettings {
            tick: Duration::from_millis(5),
            allocator: crate::Allocator::Pooling,
            pool_instances: 1,
            pool_max_memory_mb: 64,
            outbound: Default::default(),
        })
        .unwrap();
        let pre = misbehave(&runtime);
        for _ in 0..3 {
            assert_eq!(count(&runtime, &pre), 1, "a fresh instance per event");
        }
        // Writes a page in every MiB up to the memory cap: far more than a slot keeps resident.
        let bomb = new_json_event("b-1", "/test", "fx.test.membomb", json!({})).unwrap();
        let limits = Limits {
            memory_mb: 16,
            ..Limits::DEFAULT
        };
        let failure = runtime
            .run(&pre, &bomb, &limits, &FunctionGrants::none())
            .outcome
            .unwrap_err();
        assert_eq!(failure.kind, FailureKind::MemoryLimit, "{failure:?}");
        for _ in 0..3 {
            assert_eq!(count(&runtime, &pre), 1, "a fresh instance after the bomb");
        }
    }
}
