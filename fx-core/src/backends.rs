//! Builds every port's backend from settings, in one place. Each port's settings is a closed
//! enum tagged by `kind`; `ferrisfx dev` uses the embedded backends, all under one data
//! directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bus::EventBus;
use crate::catalogue::EventCatalogue;
use crate::error::Result;
use crate::identity::IdentityStore;
use crate::notify::NotificationLedger;
use crate::objects::PackageStore;
use crate::registry::{
    BundleRegistry, HandlerRegistry, HookRegistry, NotificationRegistry, ScheduleRegistry,
    WorkflowRegistry,
};
use crate::schedule::TickLedger;
use crate::secrets::SecretRecords;
use crate::sink::{OperationalSink, StateRouting};
use crate::store::StateStore;
use crate::workflow::ledger::RunLedger;

/// One instance of every port.
#[derive(Clone)]
pub struct Backends {
    /// Event bus.
    pub bus: Arc<dyn EventBus>,
    /// Handler config store.
    pub registry: Arc<dyn HandlerRegistry>,
    /// Schedules, in the same backend as the handlers.
    pub schedules: Arc<ScheduleRegistry>,
    /// Webhooks, in the same backend as the handlers.
    pub hooks: Arc<HookRegistry>,
    /// Chat command bundles, in the same backend as the handlers.
    pub bundles: Arc<BundleRegistry>,
    /// Notification rules, in the same backend as the handlers.
    pub notification_rules: Arc<NotificationRegistry>,
    /// Workflows, in the same backend as the handlers.
    pub workflows: Arc<WorkflowRegistry>,
    /// Package archives.
    pub packages: Arc<dyn PackageStore>,
    /// State store.
    pub state: Arc<dyn StateStore>,
    /// Accounts, tokens, rules, package owners and the audit log: the state store's database.
    pub identity: Arc<dyn IdentityStore>,
    /// Sealed platform secrets: the state store's database.
    pub secrets: Arc<dyn SecretRecords>,
    /// The schedules' last ticks: the state store's database.
    pub ticks: Arc<dyn TickLedger>,
    /// The outbox of notifications: the state store's database.
    pub notifications: Arc<dyn NotificationLedger>,
    /// Workflow runs: the state store's database.
    pub runs: Arc<dyn RunLedger>,
    /// The event catalogue: the state store's database.
    pub catalogue: Arc<dyn EventCatalogue>,
    /// Logs and metrics.
    pub sink: Arc<dyn OperationalSink>,
    /// Which of `state` and `sink` each kind of state event goes to (validated).
    pub routing: StateRouting,
    /// Opens the spans of traces: disabled unless the process set one up
    /// ([`Backends::with_tracer`]).
    pub tracer: crate::trace::Tracer,
}

impl Backends {
    /// These backends, with spans opened by `tracer`.
    pub fn with_tracer(mut self, tracer: crate::trace::Tracer) -> Backends {
        self.tracer = tracer;
        self
    }
}

/// Which backend each port uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// Event bus.
    #[serde(default)]
    pub bus: BusSettings,
    /// Handler config store.
    #[serde(default)]
    pub registry: RegistrySettings,
    /// Package archives.
    #[serde(default)]
    pub packages: PackageStoreSettings,
    /// State store.
    #[serde(default)]
    pub state: StateStoreSettings,
    /// Logs and metrics.
    #[serde(default)]
    pub sink: SinkSettings,
    /// Which kinds of state events go to the state store and which to the sink.
    #[serde(default)]
    pub routing: StateRouting,
}

/// Event bus backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BusSettings {
    /// In-process bounded queues; nothing survives a restart.
    Embedded {
        /// Messages a topic holds per consumer group before publishers wait.
        #[serde(default = "default_capacity")]
        capacity: usize,
    },
    /// Kafka topics and consumer groups: durable, shared by every process of a deployment.
    #[cfg(feature = "kafka")]
    Kafka(crate::bus::kafka::KafkaSettings),
}

fn default_capacity() -> usize {
    10_000
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings::Embedded {
            capacity: default_capacity(),
        }
    }
}

/// Handler config store backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
// Read once at start: the size of the Consul variant (one prefix per collection) costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum RegistrySettings {
    /// `handlers.json` in the data directory, watched for changes.
    #[default]
    Embedded,
    /// Consul KV: one key per handler under a prefix, watched with blocking queries; shared by
    /// every process of a deployment.
    #[cfg(feature = "consul")]
    Consul(crate::registry::consul::ConsulSettings),
}

/// Package store backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PackageStoreSettings {
    /// `packages/` in the data directory.
    #[default]
    Embedded,
    /// An S3 bucket (MinIO, AWS S3 or another S3-compatible server).
    #[cfg(feature = "s3")]
    S3(crate::objects::s3::S3Settings),
}

/// State store backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StateStoreSettings {
    /// SQLite database `state.sqlite` in the data directory.
    #[default]
    Embedded,
    /// A PostgreSQL database (tables in its `schema`, migrated at start).
    #[cfg(feature = "postgres")]
    Postgres(crate::store::postgres::PostgresSettings),
}

/// Operational-data sink backend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkSettings {
    /// SQLite database `logs.sqlite` in the data directory.
    #[default]
    Embedded,
    /// Log lines in a PostgreSQL table, where no Elasticsearch is configured (may share the
    /// state store's database and schema).
    #[cfg(feature = "postgres")]
    Postgres(crate::store::postgres::PostgresSettings),
    /// Log lines, metrics and execution documents in Elasticsearch, sent in bulk from a
    /// bounded buffer, with the index templates the Kibana dashboards read.
    #[cfg(feature = "elasticsearch")]
    Elasticsearch(crate::sink::elasticsearch::ElasticsearchSettings),
}

impl BackendSettings {
    /// Builds every backend; embedded ones keep their files under `data_dir`.
    pub async fn build(&self, data_dir: &Path) -> Result<Backends> {
        self.routing.validate()?;
        std::fs::create_dir_all(data_dir).map_err(|e| {
            crate::Error::unavailable(format!("creating data directory {}", data_dir.display()))
                .with_source(e)
        })?;
        let path = |name: &str| -> PathBuf { data_dir.join(name) };
        let bus: Arc<dyn EventBus> = match &self.bus {
            BusSettings::Embedded { capacity } => {
                Arc::new(crate::bus::embedded::EmbeddedBus::new(*capacity))
            }
            #[cfg(feature = "kafka")]
            BusSettings::Kafka(settings) => {
                Arc::new(crate::bus::kafka::KafkaBus::connect(settings.clone()).await?)
            }
        };
        type Registries = (
            Arc<dyn HandlerRegistry>,
            Arc<ScheduleRegistry>,
            Arc<HookRegistry>,
            Arc<BundleRegistry>,
            Arc<NotificationRegistry>,
            Arc<WorkflowRegistry>,
        );
        let (registry, schedules, hooks, bundles, notification_rules, workflows): Registries =
            match &self.registry {
                RegistrySettings::Embedded => {
                    use crate::registry::embedded::FileRegistry;
                    (
                        Arc::new(FileRegistry::open(&path("handlers.json")).await?),
                        Arc::new(FileRegistry::open_entries(&path("schedules.json")).await?),
                        Arc::new(FileRegistry::open_entries(&path("hooks.json")).await?),
                        Arc::new(FileRegistry::open_entries(&path("bundles.json")).await?),
                        Arc::new(FileRegistry::open_entries(&path("notifications.json")).await?),
                        Arc::new(FileRegistry::open_entries(&path("workflows.json")).await?),
                    )
                }
                #[cfg(feature = "consul")]
                RegistrySettings::Consul(settings) => {
                    use crate::registry::consul::ConsulRegistry;
                    (
                        Arc::new(ConsulRegistry::new(settings)?),
                        Arc::new(ConsulRegistry::schedules(settings)?),
                        Arc::new(ConsulRegistry::hooks(settings)?),
                        Arc::new(ConsulRegistry::bundles(settings)?),
                        Arc::new(ConsulRegistry::notifications(settings)?),
                        Arc::new(ConsulRegistry::workflows(settings)?),
                    )
                }
            };
        let packages: Arc<dyn PackageStore> = match &self.packages {
            PackageStoreSettings::Embedded => {
                Arc::new(crate::objects::local::LocalPackageStore::open(&path("packages")).await?)
            }
            #[cfg(feature = "s3")]
            PackageStoreSettings::S3(settings) => {
                Arc::new(crate::objects::s3::S3PackageStore::open(settings).await?)
            }
        };
        // One store, five ports: the identity, secret, tick and notification tables live in the
        // state database.
        type Ports = (
            Arc<dyn StateStore>,
            Arc<dyn IdentityStore>,
            Arc<dyn SecretRecords>,
            Arc<dyn TickLedger>,
            Arc<dyn NotificationLedger>,
            Arc<dyn RunLedger>,
            Arc<dyn EventCatalogue>,
        );
        let (state, identity, secrets, ticks, notifications, runs, catalogue): Ports = match &self
            .state
        {
            StateStoreSettings::Embedded => {
                let store = Arc::new(
                    crate::store::embedded::SqliteStateStore::open(&path("state.sqlite")).await?,
                );
                (
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store,
                )
            }
            #[cfg(feature = "postgres")]
            StateStoreSettings::Postgres(settings) => {
                let store =
                    Arc::new(crate::store::postgres::PostgresStateStore::open(settings).await?);
                (
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store,
                )
            }
        };
        let sink: Arc<dyn OperationalSink> = match &self.sink {
            SinkSettings::Embedded => {
                Arc::new(crate::sink::embedded::SqliteSink::open(&path("logs.sqlite")).await?)
            }
            #[cfg(feature = "postgres")]
            SinkSettings::Postgres(settings) => {
                Arc::new(crate::sink::postgres::PostgresSink::open(settings).await?)
            }
            #[cfg(feature = "elasticsearch")]
            SinkSettings::Elasticsearch(settings) => {
                Arc::new(crate::sink::elasticsearch::ElasticsearchSink::open(settings).await?)
            }
        };
        Ok(Backends {
            bus,
            registry,
            schedules,
            hooks,
            bundles,
            notification_rules,
            workflows,
            packages,
            state,
            identity,
            secrets,
            ticks,
            notifications,
            runs,
            catalogue,
            sink,
            routing: self.routing.clone(),
            tracer: crate::trace::Tracer::disabled(),
        })
    }
}
