//! The dispatcher: events in from `fx.events`, one invocation per matching handler out to
//! `fx.invocations.<pool>`. A message that is not a valid CloudEvent goes to `fx.deadletter`
//! with the reason and never blocks the topic. A delivery is committed only after everything
//! it owes is published.

use chrono::Utc;
use cloudevents::AttributesReader;
use futures::{StreamExt, TryStreamExt};
use fx_core::backends::Backends;
use fx_core::bus::{topics, Delivery};
use fx_core::event::{decode_message, Event, Message};
use fx_core::execution::{
    Execution, ExecutionId, ExecutionStatus, Failure, FailureKind, Invocation, ResolvedPackage,
    StateEvent,
};
use fx_core::grants::Grants;
use fx_core::handler::{Handler, PackageRef};
use fx_core::limits::Limits;
use fx_core::package::PackageVersion;
use fx_core::registry::RoutingTable;
use fx_core::store::Created;
use fx_core::telemetry;
use fx_core::{ErrorKind, Result};
use tokio_util::sync::CancellationToken;

use crate::retry::until_available;
use crate::table::LiveTable;

/// What happened to one event for one handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// A new execution was created and its invocation published.
    New(ExecutionId),
    /// The execution existed but had not started: its invocation was published again.
    Redispatched(ExecutionId),
    /// The execution existed and had started or finished: nothing was published.
    Duplicate(ExecutionId),
    /// The handler's package does not resolve: the execution was recorded as failed.
    PackageMissing(ExecutionId),
}

/// Matches events to handlers and dispatches invocations.
pub struct Dispatcher {
    backends: Backends,
    table: LiveTable,
}

/// Deliveries taken from `fx.events` at once: what is already waiting, up to this many.
const BATCH: usize = 256;
/// Partition keys of one batch whose events are matched and recorded at the same time.
const CONCURRENT_KEYS: usize = 16;

/// A message owed for a delivery: (topic, message).
type Outgoing = (String, Message);

/// The packages resolved while dispatching one batch, by the handler's reference: handlers of
/// one batch mostly run the same few packages, so each is resolved once per batch (a store
/// read) rather than once per event. Per batch only: an alias moved is seen by the next one.
#[derive(Default)]
struct Packages(std::sync::Mutex<std::collections::HashMap<PackageRef, Option<PackageVersion>>>);

impl Packages {
    fn get(&self, reference: &PackageRef) -> Option<Option<PackageVersion>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(reference)
            .cloned()
    }

    fn put(&self, reference: PackageRef, version: Option<PackageVersion>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(reference, version);
    }
}

impl Dispatcher {
    /// A dispatcher over `backends` using the live handler `table`.
    pub fn new(backends: Backends, table: LiveTable) -> Self {
        Dispatcher { backends, table }
    }

    /// Consumes `fx.events` as group `group` until `shutdown`.
    ///
    /// Takes the deliveries already waiting as one batch, records their executions a few at a
    /// time, publishes everything the batch owes in delivery order in one go (so invocations
    /// of one partition key keep their order), then commits the batch.
    pub async fn run(&self, group: &str, shutdown: CancellationToken) -> Result<()> {
        crate::consume::batches(
            &self.backends.bus,
            topics::EVENTS,
            group,
            "dispatcher",
            BATCH,
            &shutdown,
            self,
        )
        .await
    }
}

#[async_trait::async_trait]
impl crate::consume::BatchHandler for Dispatcher {
    /// Records the executions the event already has as failed, naming why it could not be
    /// dispatched (an invocation the bus refuses, say).
    async fn poisoned(
        &self,
        delivery: &Delivery,
        error: &fx_core::Error,
        shutdown: &CancellationToken,
    ) {
        let Ok(event) = decode_message(&delivery.message) else {
            return;
        };
        let table = self.table.current();
        for stored in table.matching(&event) {
            let id = ExecutionId::for_event(&event, &stored.handler.name);
            let state = &self.backends.state;
            let Ok(Some(execution)) = state.get_execution(&id).await else {
                continue;
            };
            if execution.status != ExecutionStatus::Queued {
                continue;
            }
            let failed = StateEvent::Failed {
                execution_id: id.clone(),
                attempt: execution.attempts.max(1),
                at: Utc::now(),
                duration_us: 0,
                failure: Failure {
                    kind: FailureKind::Internal,
                    message: fx_core::bus::topics::reason(format!(
                        "the event could not be dispatched: {}",
                        error.chain()
                    )),
                },
                retry_at: None,
                measurements: None,
                dead_letter: None,
            };
            if let Err(e) = until_available("recording an undispatchable event", shutdown, || {
                state.apply_state(&failed)
            })
            .await
            {
                tracing::error!(error = %e.chain(), execution_id = %id, "recording an undispatchable event as failed failed");
            }
        }
    }

    async fn handle(&self, batch: &[Delivery], shutdown: &CancellationToken) -> Result<()> {
        let arrived = std::time::Instant::now();
        let mut table = self.table.current();
        // An event the ingress accepted after a handler change carries the registry revision
        // it saw: the batch is matched against a table at least that new.
        let stamped = batch
            .iter()
            .filter_map(|d| d.message.header(topics::REGISTRY_REVISION_HEADER))
            .filter_map(|revision| revision.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        if stamped > table.revision {
            table = self.table.at_least(stamped, arrived, shutdown).await?;
        }
        // Events of one partition key are recorded one after another, in order (so their
        // executions' creation order is the events' order); different keys side by side.
        let mut owed: Vec<Vec<Outgoing>> = vec![Vec::new(); batch.len()];
        let mut keys: Vec<Vec<(usize, Event)>> = Vec::new();
        let mut key_index = std::collections::HashMap::new();
        for (i, delivery) in batch.iter().enumerate() {
            match decode_message(&delivery.message) {
                Ok(event) => {
                    let key = fx_core::event::partition_key(&event);
                    let slot = *key_index.entry(key).or_insert_with(|| {
                        keys.push(Vec::new());
                        keys.len() - 1
                    });
                    keys[slot].push((i, event));
                }
                Err(e) => owed[i] = vec![dead_letter(delivery, &e)],
            }
        }
        let table = &table;
        let packages = &Packages::default();
        let groups: Vec<_> = keys
            .into_iter()
            .map(|events| async move {
                let mut planned = Vec::with_capacity(events.len());
                for (i, event) in events {
                    let outgoing = self.plan(table, &event, packages, shutdown).await?;
                    let outgoing: Vec<Outgoing> =
                        outgoing.into_iter().filter_map(|(_, out)| out).collect();
                    planned.push((i, outgoing));
                }
                Ok::<Vec<(usize, Vec<Outgoing>)>, fx_core::Error>(planned)
            })
            .collect();
        let planned: Vec<Vec<(usize, Vec<Outgoing>)>> = futures::stream::iter(groups)
            .buffer_unordered(CONCURRENT_KEYS)
            .try_collect()
            .await?;
        for (i, outgoing) in planned.into_iter().flatten() {
            owed[i] = outgoing;
        }
        let outgoing: Vec<Outgoing> = owed.into_iter().flatten().collect();
        if outgoing.is_empty() {
            return Ok(());
        }
        let published = outgoing.len();
        until_available("publishing invocations", shutdown, || {
            self.backends.bus.publish_all(outgoing.clone())
        })
        .await?;
        tracing::debug!(deliveries = batch.len(), published, "batch dispatched");
        Ok(())
    }
}

impl Dispatcher {
    /// Dispatches `event` to every matching handler; returns what happened per handler.
    pub async fn dispatch(
        &self,
        event: &Event,
        shutdown: &CancellationToken,
    ) -> Result<Vec<Dispatched>> {
        let table = self.table.current();
        let planned = self
            .plan(&table, event, &Packages::default(), shutdown)
            .await?;
        let (results, outgoing): (Vec<_>, Vec<_>) = planned.into_iter().unzip();
        let outgoing: Vec<Outgoing> = outgoing.into_iter().flatten().collect();
        if !outgoing.is_empty() {
            until_available("publishing invocations", shutdown, || {
                self.backends.bus.publish_all(outgoing.clone())
            })
            .await?;
        }
        Ok(results)
    }

    /// Records an execution per handler that matches `event`; returns what happened per
    /// handler and the invocation it owes, if any (not yet published).
    async fn plan(
        &self,
        table: &RoutingTable,
        event: &Event,
        packages: &Packages,
        shutdown: &CancellationToken,
    ) -> Result<Vec<(Dispatched, Option<Outgoing>)>> {
        let arrived = std::time::Instant::now();
        let mut results = Vec::new();
        for stored in table.matching(event) {
            results.push(
                self.dispatch_to(&stored.handler, event, packages, shutdown)
                    .await?,
            );
        }
        if results.is_empty() {
            // The watch may lag a handler created a moment ago: look at the store itself.
            if let Some(fresh) = self.table.newer_than(table.revision, arrived).await {
                for stored in fresh.matching(event) {
                    results.push(
                        self.dispatch_to(&stored.handler, event, packages, shutdown)
                            .await?,
                    );
                }
            }
        }
        if results.is_empty() {
            tracing::debug!(event_id = %event.id(), event_type = %event.ty(), "no handler matched");
            metrics::counter!(telemetry::EVENTS, "outcome" => "unmatched").increment(1);
        } else {
            metrics::counter!(telemetry::EVENTS, "outcome" => "dispatched").increment(1);
        }
        Ok(results)
    }

    async fn dispatch_to(
        &self,
        handler: &Handler,
        event: &Event,
        packages: &Packages,
        shutdown: &CancellationToken,
    ) -> Result<(Dispatched, Option<Outgoing>)> {
        let id = ExecutionId::for_event(event, &handler.name);
        let state = &self.backends.state;
        let version = match packages.get(&handler.package) {
            Some(version) => version,
            None => {
                let resolved = until_available("resolving package", shutdown, || {
                    state.resolve_package(&handler.package)
                })
                .await;
                let version = match resolved {
                    Ok(version) => Some(version),
                    Err(e) if e.kind() == ErrorKind::NotFound => None,
                    Err(e) => return Err(e),
                };
                packages.put(handler.package.clone(), version.clone());
                version
            }
        };
        let execution = Execution {
            id: id.clone(),
            handler: handler.name.clone(),
            package: version.as_ref().map(|v| ResolvedPackage {
                name: v.name.clone(),
                version: v.version.clone(),
                digest: v.digest.clone(),
            }),
            event: event.clone(),
            status: ExecutionStatus::Queued,
            attempts: 0,
            output: Vec::new(),
            error: None,
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            duration_us: None,
            attempt_history: vec![],
        };
        let created = until_available("recording execution", shutdown, || {
            state.create_execution(&execution)
        })
        .await?;
        let redispatch = match created {
            Created::New => false,
            Created::Existing(ExecutionStatus::Queued) => true,
            Created::Existing(status) => {
                tracing::info!(execution_id = %id, handler = %handler.name, %status, "duplicate event: execution exists");
                return Ok((Dispatched::Duplicate(id), None));
            }
        };
        let (Some(version), Some(package)) = (version, execution.package.clone()) else {
            let failed = StateEvent::Failed {
                execution_id: id.clone(),
                attempt: 1,
                at: Utc::now(),
                duration_us: 0,
                failure: Failure {
                    kind: FailureKind::Package,
                    message: format!(
                        "package {} does not exist: upload it or point the handler at another version",
                        handler.package
                    ),
                },
                retry_at: None,
                measurements: None,
                dead_letter: None,
            };
            until_available("recording execution failure", shutdown, || {
                state.apply_state(&failed)
            })
            .await?;
            tracing::warn!(execution_id = %id, handler = %handler.name, package = %handler.package, "handler's package does not exist");
            return Ok((Dispatched::PackageMissing(id), None));
        };
        let invocation = Invocation {
            execution_id: id.clone(),
            handler: handler.clone(),
            package,
            event: event.clone(),
            attempt: 1,
            limits: Limits::resolve(&version.manifest.limits, &handler.limits),
            dispatched_at: Utc::now(),
            attempt_base: 0,
            not_before: None,
            grants: Grants::resolve(&version.manifest, handler),
        };
        // Keyed like the event, so invocations of related events stay in order per partition.
        let message = Message::json(Some(fx_core::event::partition_key(event)), &invocation)?;
        let topic = topics::invocations(&handler.pool);
        tracing::debug!(execution_id = %id, handler = %handler.name, pool = %handler.pool, event_id = %event.id(), "dispatching");
        metrics::counter!(telemetry::DISPATCHED, "pool" => handler.pool.clone()).increment(1);
        let dispatched = if redispatch {
            Dispatched::Redispatched(id)
        } else {
            Dispatched::New(id)
        };
        Ok((dispatched, Some((topic, message))))
    }
}

/// The dead-letter message of a delivery that is not a valid CloudEvent.
fn dead_letter(delivery: &Delivery, error: &fx_core::Error) -> Outgoing {
    tracing::warn!(reason = %error.chain(), offset = delivery.offset, "malformed event sent to the dead-letter topic");
    metrics::counter!(telemetry::EVENTS, "outcome" => "deadlettered").increment(1);
    let message = delivery
        .message
        .clone()
        .with_header(topics::REASON_HEADER, error.chain())
        .with_header(topics::ORIGINAL_TOPIC_HEADER, delivery.topic.clone());
    (topics::DEADLETTER.to_string(), message)
}
