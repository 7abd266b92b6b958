//! FerrisFX gateway: consumes `fx.events`, matches each event against the live handler table
//! and dispatches one invocation per match to the handler's executor pool; and, as the state
//! router, consumes `fx.state` and writes execution state to the state store and log lines to
//! the operational sink.
//!
//! - [`table`]: the handler table, kept live by watching the config store.
//! - [`dispatch`]: events in, invocations out; malformed events to the dead-letter topic.
//! - [`router`]: state events into the state store (and documents into the sink).
//! - [`logs`]: log lines into the sink, committed once stored.
//! - [`schedules`]: the schedules' ticks onto `fx.events`, each fired once across gateways.
//! - [`workflows`]: workflow runs started by events, and the sweep of unfinished runs.
//! - [`catalogue`]: the event catalogue's counts, written to the state store periodically.

pub mod catalogue;
pub mod consume;
pub mod dispatch;
pub mod logs;
pub mod retry;
pub mod router;
pub mod schedules;
pub mod table;
pub mod workflows;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use fx_core::backends::Backends;

/// Gateway settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Consumer group of the dispatchers on `fx.events`.
    #[serde(default = "default_group")]
    pub group: String,
    /// Consumer group of the state routers on `fx.state`.
    #[serde(default = "default_state_group")]
    pub state_group: String,
    /// Consumer group of the log routers on `fx.state` (they run with the state router and
    /// commit log lines only once the sink stored them).
    #[serde(default = "default_log_group")]
    pub log_group: String,
    /// Whether this gateway also runs the state router.
    #[serde(default = "yes")]
    pub route_state: bool,
    /// Whether this gateway also fires the schedules' ticks (each tick fires once however
    /// many gateways do).
    #[serde(default = "yes")]
    pub run_schedules: bool,
    /// A tick at most this late (a restart, a pause) fires as on time; an older one was
    /// missed while no gateway ran and follows its schedule's `missed` policy.
    #[serde(default = "default_schedule_grace_ms")]
    pub schedule_grace_ms: u64,
    /// The event catalogue: counts, a sample and the inferred schema of every (source, type)
    /// dispatched.
    #[serde(default)]
    pub catalogue: catalogue::CatalogueSettings,
}

fn default_schedule_grace_ms() -> u64 {
    30_000
}

fn default_group() -> String {
    "fx-gateway".into()
}
fn default_state_group() -> String {
    "fx-state-router".into()
}
fn default_log_group() -> String {
    "fx-log-router".into()
}
fn yes() -> bool {
    true
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            group: default_group(),
            state_group: default_state_group(),
            log_group: default_log_group(),
            route_state: true,
            run_schedules: true,
            schedule_grace_ms: default_schedule_grace_ms(),
            catalogue: catalogue::CatalogueSettings::default(),
        }
    }
}

/// Runs the gateway until `shutdown` is cancelled: the handler-table watch, the dispatcher
/// and (when enabled) the state router.
pub async fn run(
    settings: GatewaySettings,
    backends: Backends,
    shutdown: CancellationToken,
) -> fx_core::Result<()> {
    let table = table::LiveTable::start(backends.registry.clone(), shutdown.clone()).await?;
    run_with_table(settings, backends, table, shutdown).await
}

/// As [`run`], matching against `table` (started by the caller, who may keep a clone to see
/// which revision of the handlers the gateway matches against).
pub async fn run_with_table(
    settings: GatewaySettings,
    backends: Backends,
    table: table::LiveTable,
    shutdown: CancellationToken,
) -> fx_core::Result<()> {
    let mut dispatcher = dispatch::Dispatcher::new(backends.clone(), table);
    let mut tasks = tokio::task::JoinSet::new();
    let observer = settings
        .catalogue
        .enabled
        .then(|| settings.catalogue.observer());
    if let Some(observer) = &observer {
        dispatcher = dispatcher.with_catalogue(observer.clone());
        let (observer, backends) = (observer.clone(), backends.clone());
        let (catalogue, shutdown) = (settings.catalogue.clone(), shutdown.clone());
        tasks.spawn(async move { catalogue::run(observer, backends, catalogue, shutdown).await });
    }
    {
        let shutdown = shutdown.clone();
        let group = settings.group.clone();
        let backends = backends.clone();
        let limits = settings.catalogue.limits();
        tasks.spawn(async move {
            let result = dispatcher.run(&group, shutdown).await;
            // The last counts, once no batch is handled any more.
            if let Some(observer) = observer {
                catalogue::flush(&observer, &backends, &limits).await;
            }
            result
        });
    }
    if settings.run_schedules {
        let scheduler = schedules::Scheduler::new(
            backends.clone(),
            std::time::Duration::from_millis(settings.schedule_grace_ms),
        );
        let shutdown = shutdown.clone();
        tasks.spawn(async move { scheduler.run(shutdown).await });
    }
    if settings.route_state {
        let router = router::StateRouter::new(backends.clone());
        let shutdown_router = shutdown.clone();
        let group = settings.state_group.clone();
        tasks.spawn(async move { router.run(&group, shutdown_router).await });
        {
            let backends = backends.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { workflows::sweep(backends, shutdown).await });
        }
        let logs = logs::LogRouter::new(backends.clone());
        let shutdown = shutdown.clone();
        let group = settings.log_group.clone();
        tasks.spawn(async move { logs.run(&group, shutdown).await });
    }
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e.chain(), "gateway task failed");
                shutdown.cancel();
                result = Err(e);
            }
            Err(e) => {
                tracing::error!(error = %e, "gateway task panicked");
                shutdown.cancel();
                result = Err(fx_core::Error::internal(format!(
                    "gateway task panicked: {e}"
                )));
            }
        }
    }
    result
}
