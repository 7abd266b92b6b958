//! The distributed deployment: `ferrisfx gateway`, `ferrisfx executor --pool NAME` and
//! `ferrisfx server`, each one part of the platform in its own process, configured like
//! `ferrisfx dev` (a TOML file, `FX_*` variables, flags) and talking through the configured
//! backends: Kafka for the bus, and shared stores. Any number of gateways and executors run
//! side by side; Kafka's consumer groups spread the partitions across them.

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::dev::wait_for_signal;
use crate::ops::{Ops, Readiness};
use crate::settings::{Settings, SettingsArgs};
use management_server::AppState;

/// Which part to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Dispatcher and state router.
    Gateway,
    /// The executor of one pool.
    Executor,
    /// Web UI and REST API.
    Server,
}

/// The readiness checks of `part` over `backends` (the table in [`crate::ops`]'s docs).
pub fn readiness(part: Part, backends: &fx_core::backends::Backends) -> Readiness {
    use fx_core::ready::Port::{Bus, Packages, Registry, Sink, State};
    match part {
        Part::Gateway => Readiness::new(backends, &[Bus, Registry, State, Sink], &[Sink]),
        Part::Executor => Readiness::new(backends, &[Bus, Packages], &[]),
        Part::Server => Readiness::new(backends, &[Bus, Registry, Packages, State, Sink], &[]),
    }
}

/// Connects to the backends; while one is unavailable (a broker or database not up yet), logs
/// why and retries with backoff until it is, or until shutdown (`None`). Other errors (bad
/// settings, refused credentials) end the process with the reason.
pub(super) async fn connect(
    settings: &Settings,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<fx_core::backends::Backends>> {
    let mut backoff = fx_core::backoff::Backoff::new(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(30),
    );
    loop {
        match settings.backends.build(&settings.data_dir).await {
            Ok(backends) => return Ok(Some(backends)),
            Err(e) if e.kind().is_retryable() => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e.chain(), retry_in_ms = delay.as_millis() as u64,
                    "a backend is unavailable; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(anyhow::Error::new(e)).context("connecting to the backends"),
        }
    }
}

/// Runs one part until Ctrl-C or SIGTERM.
pub async fn run(part: Part, args: SettingsArgs, pool: Option<String>) -> anyhow::Result<()> {
    let mut settings = Settings::load(&args)?;
    if let Some(pool) = pool {
        settings.executor.pool = pool;
    }
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: finishing in-flight work");
            shutdown.cancel();
        });
    }
    // The operations listener answers /healthz from the start, /readyz once connected.
    let ops = Ops::new();
    let ops_task = crate::ops::start(&settings.ops, ops.clone(), shutdown.clone()).await?;
    let part_name = match part {
        Part::Gateway => "gateway",
        Part::Executor => "executor",
        Part::Server => "server",
    };
    let traces = crate::traces::Traces::start(&settings.telemetry, part_name)
        .context("starting the trace exporter (telemetry)")?;
    let Some(backends) = connect(&settings, &shutdown).await? else {
        return Ok(());
    };
    let backends = backends.with_tracer(traces.tracer());
    if !backends.bus.shared() {
        tracing::warn!(
            "backends.bus is embedded: this process only sees its own messages; set backends.bus.kind = \"kafka\" for a distributed deployment (see infra/config/distributed.toml)"
        );
    }
    ops.connected(readiness(part, &backends));
    let outcome = run_part(part, settings, backends, shutdown.clone()).await;
    traces.shutdown().await;
    // The part has stopped: stop the operations listener with it.
    shutdown.cancel();
    if let Some(task) = ops_task {
        match task.await {
            Ok(Err(e)) if outcome.is_ok() => return Err(e),
            _ => {}
        }
    }
    outcome
}

/// Runs the connected part until `shutdown`.
async fn run_part(
    part: Part,
    settings: Settings,
    backends: fx_core::backends::Backends,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match part {
        Part::Gateway => fx_gateway::run(settings.gateway, backends, shutdown)
            .await
            .context("gateway stopped"),
        Part::Executor => {
            let mut executor_settings = settings.executor.clone();
            if executor_settings.cache_dir.as_os_str().is_empty() {
                executor_settings.cache_dir = settings.data_dir.join("cache");
            }
            let executor = fx_executor::Executor::new(
                executor_settings,
                backends.packages.clone(),
                backends.bus.clone(),
            )
            .context("starting the executor")?
            .with_tracer(backends.tracer.clone());
            let warm = {
                let (executor, backends, shutdown) =
                    (executor.clone(), backends.clone(), shutdown.clone());
                tokio::spawn(async move {
                    executor
                        .warm(backends.registry, backends.state, shutdown)
                        .await
                })
            };
            let result = executor.run(shutdown).await.context("executor stopped");
            warm.abort();
            result
        }
        Part::Server => {
            let listener = TcpListener::bind(settings.listen).await.with_context(|| {
                format!("listening on {} (is the port in use?)", settings.listen)
            })?;
            tracing::info!(addr = %settings.listen, "management server listening");
            let check = settings.server.check_packages;
            let keyring = settings
                .server
                .secrets
                .keyring()
                .context("reading the secrets keyring (server.secrets)")?;
            if keyring.is_none() {
                tracing::warn!("no secrets keyring (server.secrets.key_file or FX_SECRETS_KEY): platform secrets cannot be written or delivered");
            }
            let mut state = AppState::new(backends.clone(), settings.server)
                .with_keyring(keyring)
                .with_telemetry(settings.telemetry);
            if check {
                state = state.with_check(std::sync::Arc::new(UploadCheck::new(
                    &settings.executor,
                    &settings.data_dir,
                    &backends,
                )?));
            }
            management_server::serve(listener, state, shutdown)
                .await
                .context("management server stopped")
        }
    }
}

/// The upload check of `ferrisfx server`: an executor used only to compile and link uploads
/// with the executors' engine settings, one at a time, keeping nothing in memory.
struct UploadCheck {
    executor: fx_executor::Executor,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl UploadCheck {
    fn new(
        settings: &fx_executor::ExecutorSettings,
        data_dir: &std::path::Path,
        backends: &fx_core::backends::Backends,
    ) -> anyhow::Result<Self> {
        let mut settings = settings.clone();
        settings.executor_id = "upload-check".into();
        settings.cache_dir = data_dir.join("upload-check");
        settings.cache_memory_mb = 0;
        settings.cache_disk_mb = 0;
        settings.max_concurrency = 1;
        settings.pool_instances = 1;
        let executor =
            fx_executor::Executor::new(settings, backends.packages.clone(), backends.bus.clone())
                .context("starting the upload check (the executors' engine)")?;
        Ok(UploadCheck {
            executor,
            one_at_a_time: tokio::sync::Mutex::new(()),
        })
    }
}

#[async_trait::async_trait]
impl fx_core::package::PackageCheck for UploadCheck {
    async fn check(
        &self,
        digest: &fx_core::package::PackageDigest,
        archive: bytes::Bytes,
    ) -> fx_core::Result<()> {
        let _one = self.one_at_a_time.lock().await;
        fx_core::package::PackageCheck::check(&self.executor, digest, archive).await
    }
}
