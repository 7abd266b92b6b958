//! FerrisFX executor: consumes the invocations of one executor pool and runs each function, a
//! WebAssembly component, in a fresh Wasmtime sandbox with hard limits; reports `started`,
//! `log`, `succeeded` / `failed` on `fx.state` and publishes output events on `fx.events`.
//!
//! - [`host`]: the host side of `sdk/wit/function.wit` (bindings, per-store state, limits).
//! - [`convert`]: the WIT `event` record to and from `cloudevents::Event`.
//! - [`stdio`]: captured stdout/stderr, counted against the log budget.
//! - [`engine`]: the engine, epoch ticker, linker, and one run in a fresh store.
//! - [`cache`]: fetch once, compile once per package digest, compiled artifacts on disk.
//! - [`secrets`]: configuration values and the secrets a handler grants its function (the
//!   platform secrets of its pool first, then the secrets directory).
//! - [`worker`]: the consumer loop with its concurrency limits and at-least-once commits.

pub mod admission;
pub mod bindings;
pub mod breach;
pub mod cache;
pub mod commits;
pub mod convert;
pub mod engine;
pub mod host;
pub mod outbound;
mod outcome;
pub mod phases;
pub mod secrets;
pub mod stdio;
mod ticker;
pub mod waits;
mod warm;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fx_core::bus::EventBus;
use fx_core::event::Event;
use fx_core::execution::{CacheLookup, Failure, FailureKind, Invocation, LogLine};
use fx_core::objects::PackageStore;
use fx_core::secrets::delivery::HttpDelivery;
use fx_core::secrets::SecretDelivery;
use fx_core::telemetry;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use cache::CacheCounts;

/// Executor settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSettings {
    /// The executor pool this executor serves (`fx.invocations.<pool>`).
    #[serde(default = "default_pool")]
    pub pool: String,
    /// This executor's name in state events and logs (default: `executor-<pid>`).
    #[serde(default)]
    #[schemars(extend("x-default-doc" = "`executor-<pid>`"))]
    pub executor_id: String,
    /// Where fetched packages and compiled components are cached (`ferrisfx dev` and
    /// `ferrisfx executor` default it to `<data_dir>/cache`).
    #[serde(default)]
    #[schemars(extend("x-default-doc" = "`<data_dir>/cache`"))]
    pub cache_dir: PathBuf,
    /// Compiled components kept linked in memory, in MiB of compiled code (default 1024); the
    /// least recently used beyond it are dropped
    /// (`fx_compile_cache_evictions_total{tier="memory"}`).
    #[serde(default = "default_cache_memory_mb")]
    pub cache_memory_mb: u64,
    /// Archives and compiled components kept under `cache_dir`, in MiB (default 4096); the
    /// least recently used files beyond it are deleted (`tier="disk"`). Keep it below the
    /// volume's size.
    #[serde(default = "default_cache_disk_mb")]
    pub cache_disk_mb: u64,
    /// Invocations running at once on this executor (default: four per CPU core).
    #[serde(default = "default_concurrency")]
    #[schemars(extend("x-default-doc" = "4 × CPU cores"))]
    pub max_concurrency: usize,
    /// Granularity of timeouts (epoch interruption tick), in milliseconds: an invocation ends
    /// at most one tick after its timeout.
    #[serde(default = "default_tick")]
    pub epoch_tick_ms: u64,
    /// How instances get their memory: `pooling` (default: slots reserved at start and
    /// reused, so an instantiation costs microseconds) or `on_demand` (mmap per instance;
    /// for machines that limit virtual memory). Pooling falls back to on-demand, with a
    /// warning, when its slots cannot be reserved.
    #[serde(default)]
    pub allocator: Allocator,
    /// Instances the pool holds at once (default: four per `max_concurrency`, at least 256).
    /// An instantiation beyond fails the attempt as an internal error, which is retried.
    #[serde(default)]
    pub pool_instances: u32,
    /// The largest linear memory a pool slot holds, in MiB (default 4096, the largest
    /// `memory_mb` a handler may ask for). Slots are virtual address space, not RAM.
    #[serde(default = "default_pool_memory")]
    pub pool_max_memory_mb: u32,
    /// A directory of secrets, one file per secret named like it (a Kubernetes Secret mounted
    /// as a volume). A function reads a secret only when its package declares it and its
    /// handler grants it; a secret in `platform_secrets` wins over its file here. Read again
    /// at most every 5 s. None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-default-doc" = "unset (`<data_dir>/secrets` in `ferrisfx dev`)"))]
    pub secrets_dir: Option<PathBuf>,
    /// Where this executor fetches the platform secrets of its pool (secrets written with
    /// `ferrisfx secret set`): the management server's URL and a service account token granted
    /// `secret:deliver` on the pool. Unset: only `secrets_dir`. `ferrisfx dev` delivers them in
    /// process. A granted secret is looked up here first, then in `secrets_dir`; fetched again
    /// at most every 5 s, and when a fetch fails the values of the last one that succeeded are
    /// kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_secrets: Option<fx_core::secrets::delivery::PlatformSecretsSettings>,
    /// The most one invocation may ask for (`memory_mb`, `timeout_ms`, `max_output_bytes`,
    /// `max_log_bytes`; default: the largest a handler may set). The executor checks every
    /// invocation against these and against its package's manifest (declared secrets and
    /// capabilities): one that asks for more fails as `refused`, naming what it asked for, and
    /// is not retried.
    #[serde(default)]
    pub ceilings: admission::PoolCeilings,
    /// Networks (CIDRs, e.g. `10.20.0.0/16`) that functions' outbound HTTP may reach although
    /// they are loopback, private, link-local or otherwise internal. Empty by default: a host
    /// in `http_allow` that resolves to such an address is refused (see [`outbound`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub http_allow_networks: Vec<ipnet::IpNet>,
    /// The most linear memory the invocations running at once may ask for together, in MiB
    /// (the sum of their `memory_mb`): an invocation waits until its share is free, and one
    /// asking for more than the whole budget is refused. 0 (the default): three quarters of
    /// the memory the process may use (its cgroup's limit, else the machine's).
    #[serde(default)]
    pub memory_budget_mb: u32,
    /// Retries waiting out their backoff on this executor at once (they hold no slot while
    /// waiting); beyond it a retry waits in a slot, so the executor takes no more invocations
    /// until one ends (`fx_executor_waiting_retries_full_total`). Default 1000.
    #[serde(default = "default_max_waiting_retries")]
    pub max_waiting_retries: usize,
    /// Invocations taken off the bus at once: running, waiting for their handler's slot, or
    /// publishing what they owe (states, output events, log lines). Only `max_concurrency` of
    /// them run; the rest bound what waits on the bus, so that its round trips do not idle
    /// the executor (each holds its invocation and outputs in memory meanwhile). 0 (the
    /// default): four per `max_concurrency`, at least 64.
    #[serde(default)]
    pub max_in_flight: usize,
}

/// How the engine allocates instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Allocator {
    /// Wasmtime's pooling allocator.
    #[default]
    Pooling,
    /// A fresh mapping per instance.
    OnDemand,
}

fn default_pool_memory() -> u32 {
    fx_core::limits::Limits::MAX.memory_mb
}

fn default_pool() -> String {
    fx_core::handler::DEFAULT_POOL.into()
}
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 4
}
fn default_cache_memory_mb() -> u64 {
    1024
}
fn default_cache_disk_mb() -> u64 {
    4096
}
fn default_max_waiting_retries() -> usize {
    1_000
}
fn default_tick() -> u64 {
    5
}

impl ExecutorSettings {
    /// Invocations taken off the bus at once (see [`ExecutorSettings::max_in_flight`]): never
    /// fewer than `max_concurrency`.
    pub fn max_in_flight(&self) -> usize {
        let max = self.max_concurrency.max(1);
        match self.max_in_flight {
            0 => max.saturating_mul(4).max(64),
            n => n.max(max),
        }
    }

    /// The engine settings these executor settings ask for.
    pub fn engine(&self) -> engine::EngineSettings {
        let instances = if self.pool_instances == 0 {
            u32::try_from(self.max_concurrency.saturating_mul(4))
                .unwrap_or(u32::MAX)
                .max(256)
        } else {
            self.pool_instances
        };
        engine::EngineSettings {
            tick: self.epoch_tick(),
            allocator: self.allocator,
            pool_instances: instances,
            pool_max_memory_mb: self.pool_max_memory_mb.max(1),
            outbound: std::sync::Arc::new(outbound::OutboundPolicy::allowing(
                self.http_allow_networks.clone(),
            )),
        }
    }

    /// The memory budget in MiB: `memory_budget_mb`, or three quarters of what the process
    /// may use when it is 0.
    pub fn memory_budget(&self) -> u32 {
        if self.memory_budget_mb > 0 {
            return self.memory_budget_mb;
        }
        let bytes = available_memory_bytes().unwrap_or(4 << 30);
        u32::try_from(bytes / 4 * 3 / (1 << 20))
            .unwrap_or(u32::MAX)
            .max(64)
    }

    /// The epoch tick as a duration (at least 1 ms).
    pub fn epoch_tick(&self) -> Duration {
        Duration::from_millis(self.epoch_tick_ms.max(1))
    }
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        ExecutorSettings {
            pool: default_pool(),
            executor_id: String::new(),
            cache_dir: PathBuf::new(),
            cache_memory_mb: default_cache_memory_mb(),
            cache_disk_mb: default_cache_disk_mb(),
            max_concurrency: default_concurrency(),
            epoch_tick_ms: default_tick(),
            allocator: Allocator::default(),
            pool_instances: 0,
            pool_max_memory_mb: default_pool_memory(),
            secrets_dir: None,
            platform_secrets: None,
            ceilings: Default::default(),
            http_allow_networks: Vec::new(),
            memory_budget_mb: 0,
            max_waiting_retries: default_max_waiting_retries(),
            max_in_flight: 0,
        }
    }
}

/// What one invocation produced.
#[derive(Debug, Clone)]
pub struct InvocationOutcome {
    /// Output events, or why it failed.
    pub result: Result<Vec<Event>, Failure>,
    /// Log lines, numbered.
    pub logs: Vec<LogLine>,
    /// Run time (instantiate + call), zero when it never ran.
    pub duration: Duration,
    /// Where the compiled function came from; `None` when the package could not be loaded.
    pub compile_cache: Option<CacheLookup>,
    /// Linear memory the function grew to, in bytes.
    pub peak_memory_bytes: u64,
    /// Fuel used, when the invocation had a fuel budget.
    pub fuel_used: Option<u64>,
    /// When its phases ran: the spans of its trace.
    pub phases: phases::InvocationPhases,
}

impl InvocationOutcome {
    /// An invocation that failed before its function ran.
    fn not_run(failure: Failure, compile_cache: Option<CacheLookup>) -> Self {
        InvocationOutcome {
            result: Err(failure),
            logs: Vec::new(),
            duration: Duration::ZERO,
            compile_cache,
            peak_memory_bytes: 0,
            fuel_used: None,
            phases: phases::InvocationPhases::default(),
        }
    }
}

/// An executor: the engine, the compile cache and the worker loop of one pool. Cheap to
/// clone (shared parts).
#[derive(Clone)]
pub struct Executor {
    settings: ExecutorSettings,
    /// The memory budget, one permit per MiB.
    memory: Arc<tokio::sync::Semaphore>,
    /// Its size in MiB.
    memory_budget_mb: u32,
    /// Room for retries waiting out their backoff.
    waiting: Arc<tokio::sync::Semaphore>,
    runtime: Arc<engine::Runtime>,
    cache: Arc<cache::CompileCache>,
    secrets: Arc<secrets::SecretStore>,
    packages: Arc<dyn PackageStore>,
    bus: Arc<dyn EventBus>,
    /// Opens the spans of invocations (disabled unless [`Executor::with_tracer`]).
    tracer: fx_core::trace::Tracer,
}

impl Executor {
    /// An executor for `settings.pool`, fetching packages from `packages` and talking on `bus`.
    pub fn new(
        mut settings: ExecutorSettings,
        packages: Arc<dyn PackageStore>,
        bus: Arc<dyn EventBus>,
    ) -> fx_core::Result<Executor> {
        fx_core::validate::validate_name("executor pool", &settings.pool)?;
        if settings.cache_dir.as_os_str().is_empty() {
            return Err(fx_core::Error::invalid("executor cache_dir must be set"));
        }
        if settings.executor_id.is_empty() {
            settings.executor_id = format!("executor-{}", std::process::id());
        }
        settings.max_concurrency = settings.max_concurrency.max(1);
        let runtime = Arc::new(engine::Runtime::with_settings(&settings.engine())?);
        let cache = Arc::new(cache::CompileCache::new(
            &settings.cache_dir,
            &runtime,
            cache::CacheBounds {
                memory_bytes: settings.cache_memory_mb.saturating_mul(1 << 20),
                disk_bytes: settings.cache_disk_mb.saturating_mul(1 << 20),
            },
        )?);
        let mut secrets = secrets::SecretStore::new(settings.secrets_dir.clone());
        if let Some(platform) = &settings.platform_secrets {
            let delivery = HttpDelivery::new(platform).map_err(|e| {
                fx_core::Error::new(
                    e.kind(),
                    "setting up the platform secrets delivery (executor.platform_secrets)",
                )
                .with_source(e)
            })?;
            secrets = secrets.with_delivery(&settings.pool, Arc::new(delivery));
        }
        let budget = settings.memory_budget();
        tracing::info!(
            memory_budget_mb = budget,
            max_concurrency = settings.max_concurrency,
            "executor memory budget"
        );
        Ok(Executor {
            memory: Arc::new(tokio::sync::Semaphore::new(budget as usize)),
            memory_budget_mb: budget,
            waiting: Arc::new(tokio::sync::Semaphore::new(settings.max_waiting_retries)),
            settings,
            runtime,
            cache,
            secrets: Arc::new(secrets),
            packages,
            bus,
            tracer: fx_core::trace::Tracer::disabled(),
        })
    }

    /// Records the spans of invocations (queue wait, cold start, compile, instantiate, call)
    /// with `tracer`. Call it before cloning the executor.
    pub fn with_tracer(mut self, tracer: fx_core::trace::Tracer) -> Self {
        self.tracer = tracer;
        self
    }

    /// Takes the platform secrets of its pool from `delivery` (in place of the one
    /// `platform_secrets` sets up, if any), looked up before `secrets_dir`: how `ferrisfx dev`
    /// hands it the vault of its own process. Call it before cloning the executor.
    pub fn with_secret_delivery(mut self, delivery: Arc<dyn SecretDelivery>) -> Self {
        self.secrets = Arc::new(
            secrets::SecretStore::new(self.settings.secrets_dir.clone())
                .with_delivery(&self.settings.pool, delivery),
        );
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> &ExecutorSettings {
        &self.settings
    }

    /// Idle warm instances kept for handlers that reuse instances.
    pub fn warm_instances(&self) -> usize {
        self.runtime.warm_instances()
    }

    /// Instances running a call now.
    pub fn running_instances(&self) -> usize {
        self.runtime.running()
    }

    /// Packages linked in the compile cache's memory, and their compiled bytes.
    pub fn cached_in_memory(&self) -> (usize, u64) {
        self.cache.in_memory()
    }

    /// Compile-cache counters.
    pub fn cache_counts(&self) -> CacheCounts {
        self.cache.counts()
    }

    /// Compiles, in the background, the packages of this pool's enabled handlers that are not
    /// compiled on disk yet, so that their first invocation does not pay the compile: on every
    /// change of the handlers and at least every 30 s (an alias moved to a new version changes
    /// no handler). One package at a time; until `shutdown`.
    pub async fn warm(
        &self,
        registry: Arc<dyn fx_core::registry::HandlerRegistry>,
        state: Arc<dyn fx_core::store::StateStore>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut revision = 0;
        let mut failed = std::collections::HashSet::new();
        loop {
            let table = tokio::select! {
                _ = shutdown.cancelled() => return,
                table = registry.watch(revision, Duration::from_secs(30)) => table,
            };
            let table = match table {
                Ok(table) => table,
                Err(e) => {
                    tracing::debug!(error = %e.chain(), "warm-up: reading handlers failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    }
                }
            };
            revision = table.revision;
            for stored in &table.handlers {
                let handler = &stored.handler;
                if handler.pool != self.settings.pool || !handler.enabled {
                    continue;
                }
                let Ok(version) = state.resolve_package(&handler.package).await else {
                    continue;
                };
                if failed.contains(&version.digest) {
                    continue;
                }
                let warm = self
                    .cache
                    .warm(&version.digest, &self.runtime, &self.packages);
                let warmed = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    warmed = warm => warmed,
                };
                match warmed {
                    Ok(true) => {
                        tracing::info!(handler = %handler.name, package = %handler.package, digest = %version.digest.short(), "package compiled ahead of its first invocation")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(handler = %handler.name, error = %e.chain(), "compiling a package ahead of time failed; its invocations will say why");
                        // A package that cannot run is not tried again; an unavailable store is.
                        if !e.kind().is_retryable() {
                            failed.insert(version.digest.clone());
                        }
                    }
                }
            }
        }
    }

    /// Runs one invocation without the bus: fetch/compile as needed, run, collect.
    pub async fn invoke(&self, invocation: &Invocation) -> InvocationOutcome {
        let loading = std::time::SystemTime::now();
        let ((pre, lookup, manifest), load) = match self
            .cache
            .get_measured(&invocation.package.digest, &self.runtime, &self.packages)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                return InvocationOutcome::not_run(
                    Failure {
                        kind: FailureKind::Package,
                        message: format!(
                            "package {}@{} ({}) cannot be run: {}",
                            invocation.package.name,
                            invocation.package.version,
                            invocation.package.digest.short(),
                            e.chain()
                        ),
                    },
                    None,
                )
            }
        };
        let loaded = std::time::SystemTime::now();
        if let Err(refused) = admission::admit(
            invocation,
            &manifest,
            &self.settings.ceilings,
            match self.settings.allocator {
                // A pool slot holds no more memory than this.
                Allocator::Pooling => self.settings.pool_max_memory_mb.max(1),
                Allocator::OnDemand => u32::MAX,
            }
            .min(self.memory_budget_mb),
        ) {
            tracing::warn!(reason = %refused.message, "invocation refused");
            return InvocationOutcome::not_run(refused, Some(lookup));
        }
        // Its share of the memory budget, held while it runs (admission made sure it fits).
        let Ok(_memory) = self
            .memory
            .acquire_many(invocation.limits.memory_mb.max(1))
            .await
        else {
            return InvocationOutcome::not_run(
                Failure {
                    kind: FailureKind::Internal,
                    message: "the executor's memory budget was closed".into(),
                },
                Some(lookup),
            );
        };
        let runtime = self.runtime.clone();
        let (event, limits) = (invocation.event.clone(), invocation.limits);
        let warm = invocation.handler.reuse_instances.then(|| {
            (
                invocation.handler.name.clone(),
                invocation.package.digest.clone(),
            )
        });
        // Fetching platform secrets is async, so it happens here, before the blocking run.
        let grants = self.secrets.resolve(&invocation.grants).await;
        let run = tokio::task::spawn_blocking(move || match warm {
            Some(key) => runtime.run_warm(&key, &pre, &event, &limits, &grants),
            None => runtime.run(&pre, &event, &limits, &grants),
        })
        .await;
        let run = match run {
            Ok(run) => run,
            Err(e) => {
                return InvocationOutcome::not_run(
                    Failure {
                        kind: FailureKind::Internal,
                        message: format!("invocation task failed: {e}"),
                    },
                    Some(lookup),
                )
            }
        };
        let handler = invocation.handler.name.clone();
        metrics::histogram!(telemetry::INVOCATION_DURATION, "handler" => handler.clone())
            .record(run.duration.as_secs_f64());
        metrics::histogram!(telemetry::PEAK_MEMORY, "handler" => handler.clone())
            .record(run.peak_memory_bytes as f64);
        if let Some(fuel) = run.fuel_used {
            metrics::histogram!(telemetry::FUEL_USED, "handler" => handler).record(fuel as f64);
        }
        let logs = run
            .logs
            .into_iter()
            .enumerate()
            .map(|(seq, raw)| LogLine {
                execution_id: invocation.execution_id.clone(),
                handler: invocation.handler.name.clone(),
                attempt: invocation.attempt,
                seq: seq as u32,
                at: raw.at,
                level: raw.level,
                message: raw.message,
                fields: raw.fields.into_iter().collect(),
            })
            .collect();
        InvocationOutcome {
            result: run.outcome,
            logs,
            duration: run.duration,
            compile_cache: Some(lookup),
            peak_memory_bytes: run.peak_memory_bytes,
            fuel_used: run.fuel_used,
            phases: phases::InvocationPhases {
                cold_start: (lookup != CacheLookup::Memory).then_some(phases::Phase {
                    start: loading,
                    end: loaded,
                }),
                load,
                instantiate: run.instantiate,
                call: run.call,
            },
        }
    }
}

/// The memory this process may use, in bytes: its cgroup's limit (v2, then v1), else the
/// machine's memory.
fn available_memory_bytes() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|text| text.trim().parse::<u64>().ok())
        // v1 reports "no limit" as a huge number.
        .filter(|bytes| *bytes < (1 << 60));
    let machine = read("/proc/meminfo").and_then(|text| {
        text.lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
    });
    match (cgroup, machine) {
        (Some(c), Some(m)) => Some(c.min(m)),
        (c, m) => c.or(m),
    }
}

#[async_trait::async_trait]
impl fx_core::package::PackageCheck for Executor {
    async fn check(
        &self,
        digest: &fx_core::package::PackageDigest,
        archive: bytes::Bytes,
    ) -> fx_core::Result<()> {
        self.cache
            .check(digest, archive.to_vec(), &self.runtime)
            .await
    }
}
