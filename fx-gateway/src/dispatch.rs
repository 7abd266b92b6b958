//! The dispatcher: events in from `fx.events`, one invocation per matching handler out to
//! `fx.invocations.<pool>`. A message that is not a valid CloudEvent goes to `fx.deadletter`
//! with the reason and never blocks the topic. A delivery is committed only after everything
//! it owes is published.

use chrono::Utc;
use cloudevents::AttributesReader;
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
    /// The workflows events start runs of.
    triggers: crate::workflows::Triggers,
    /// The event catalogue's tally of the events handled, when kept.
    catalogue: Option<std::sync::Arc<fx_core::catalogue::observer::Observer>>,
}

/// Deliveries taken from `fx.events` at once: what is already waiting, up to this many.
const BATCH: usize = 256;

/// A message owed for a delivery: (topic, message).
type Outgoing = (String, Message);

/// The packages resolved while dispatching one batch, by the handler's reference: handlers of
/// one batch mostly run the same few packages, so each is resolved once per batch (a store
/// read) rather than once per event. Per batch only: an alias moved is seen by the next one.
type Packages = std::collections::HashMap<PackageRef, Option<PackageVersion>>;

/// An execution a batch is to create, before it is recorded.
struct Planned {
    /// The delivery (index in the batch) it is for.
    delivery: usize,
    /// Its handler.
    handler: Handler,
    /// The handler's package, resolved; `None` when it does not exist.
    version: Option<PackageVersion>,
    /// When it was matched: the start of its dispatch span.
    matched_at: std::time::SystemTime,
}

impl Dispatcher {
    /// A dispatcher over `backends` using the live handler `table`.
    pub fn new(backends: Backends, table: LiveTable) -> Self {
        Dispatcher {
            triggers: crate::workflows::Triggers::new(backends.clone()),
            backends,
            table,
            catalogue: None,
        }
    }

    /// The dispatcher counting every event it handles in `observer` (the event catalogue).
    pub fn with_catalogue(
        mut self,
        observer: std::sync::Arc<fx_core::catalogue::observer::Observer>,
    ) -> Self {
        self.catalogue = Some(observer);
        self
    }

    /// Counts `events` in the catalogue (once their batch is handled, so a batch handled again
    /// after a failure counts once).
    fn catalogue(&self, events: &[Event]) {
        if let Some(observer) = &self.catalogue {
            events.iter().for_each(|event| observer.observe(event));
        }
    }

    /// Consumes `fx.events` as group `group` until `shutdown`.
    ///
    /// Takes the deliveries already waiting as one batch, records all their executions with
    /// one store write (in delivery order, so the executions of one partition key are created
    /// in their events' order), publishes everything the batch owes in delivery order in one
    /// go (so invocations of one partition key keep their order), then commits the batch.
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
        let mut owed: Vec<Vec<Outgoing>> = vec![Vec::new(); batch.len()];
        let mut packages = Packages::new();
        let mut planned = Vec::new();
        let mut executions = Vec::new();
        let mut events = Vec::with_capacity(batch.len());
        for (i, delivery) in batch.iter().enumerate() {
            match decode_message(&delivery.message) {
                Ok(event) => {
                    self.plan(
                        i,
                        &table,
                        &event,
                        &mut packages,
                        shutdown,
                        (&mut planned, &mut executions),
                    )
                    .await?;
                    events.push(event);
                }
                Err(e) => owed[i] = vec![dead_letter(delivery, &e)],
            }
        }
        for (i, _, outgoing) in self.record(planned, executions, shutdown).await? {
            owed[i].extend(outgoing);
        }
        let decoded: Vec<&Event> = events.iter().collect();
        self.triggers.start(&decoded, shutdown).await?;
        let outgoing: Vec<Outgoing> = owed.into_iter().flatten().collect();
        if outgoing.is_empty() {
            self.catalogue(&events);
            return Ok(());
        }
        let published = outgoing.len();
        until_available("publishing invocations", shutdown, || {
            self.backends.bus.publish_all(outgoing.clone())
        })
        .await?;
        self.catalogue(&events);
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
        let (mut planned, mut executions) = (Vec::new(), Vec::new());
        self.plan(
            0,
            &table,
            event,
            &mut Packages::new(),
            shutdown,
            (&mut planned, &mut executions),
        )
        .await?;
        let recorded = self.record(planned, executions, shutdown).await?;
        let outgoing: Vec<Outgoing> = recorded
            .iter()
            .filter_map(|(_, _, out)| out.clone())
            .collect();
        if !outgoing.is_empty() {
            until_available("publishing invocations", shutdown, || {
                self.backends.bus.publish_all(outgoing.clone())
            })
            .await?;
        }
        Ok(recorded.into_iter().map(|(_, result, _)| result).collect())
    }

    /// Plans an execution of `event` (delivery `delivery` of its batch) for every handler that
    /// matches it, with the handler's package resolved: pushed onto `into`, not yet recorded.
    async fn plan(
        &self,
        delivery: usize,
        table: &RoutingTable,
        event: &Event,
        packages: &mut Packages,
        shutdown: &CancellationToken,
        into: (&mut Vec<Planned>, &mut Vec<Execution>),
    ) -> Result<()> {
        let arrived = std::time::Instant::now();
        let mut handlers: Vec<Handler> = table
            .matching(event)
            .map(|stored| stored.handler.clone())
            .collect();
        if handlers.is_empty() {
            // The watch may lag a handler created a moment ago: look at the store itself.
            if let Some(fresh) = self.table.newer_than(table.revision, arrived).await {
                handlers = fresh
                    .matching(event)
                    .map(|stored| stored.handler.clone())
                    .collect();
            }
        }
        if handlers.is_empty() {
            tracing::debug!(event_id = %event.id(), event_type = %event.ty(), "no handler matched");
            metrics::counter!(telemetry::EVENTS, "outcome" => "unmatched").increment(1);
            return Ok(());
        }
        metrics::counter!(telemetry::EVENTS, "outcome" => "dispatched").increment(1);
        let (planned, executions) = into;
        for handler in handlers {
            let version = match packages.get(&handler.package) {
                Some(version) => version.clone(),
                None => {
                    let state = &self.backends.state;
                    let resolved = until_available("resolving package", shutdown, || {
                        state.resolve_package(&handler.package)
                    })
                    .await;
                    let version = match resolved {
                        Ok(version) => Some(version),
                        Err(e) if e.kind() == ErrorKind::NotFound => None,
                        Err(e) => return Err(e),
                    };
                    packages.insert(handler.package.clone(), version.clone());
                    version
                }
            };
            executions.push(Execution {
                id: ExecutionId::for_event(event, &handler.name),
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
            });
            planned.push(Planned {
                delivery,
                handler,
                version,
                matched_at: std::time::SystemTime::now(),
            });
        }
        Ok(())
    }

    /// Records the `executions` `planned` with one store write, then returns, per execution
    /// and in their order, its delivery, what happened and the invocation it owes, if any (not
    /// yet published). Executions whose package does not exist are recorded as failed.
    async fn record(
        &self,
        planned: Vec<Planned>,
        executions: Vec<Execution>,
        shutdown: &CancellationToken,
    ) -> Result<Vec<(usize, Dispatched, Option<Outgoing>)>> {
        if executions.is_empty() {
            return Ok(Vec::new());
        }
        let state = &self.backends.state;
        let created = until_available("recording executions", shutdown, || {
            state.create_executions(&executions)
        })
        .await?;
        let mut results = Vec::with_capacity(executions.len());
        let mut failed = Vec::new();
        for ((plan, execution), created) in planned.into_iter().zip(executions).zip(created) {
            let Planned {
                delivery,
                handler,
                version,
                matched_at,
            } = plan;
            let id = execution.id;
            let redispatch = match created {
                Created::New => false,
                Created::Existing(ExecutionStatus::Queued) => true,
                Created::Existing(status) => {
                    tracing::info!(execution_id = %id, handler = %handler.name, %status, "duplicate event: execution exists");
                    results.push((delivery, Dispatched::Duplicate(id), None));
                    continue;
                }
            };
            let (Some(version), Some(package)) = (version, execution.package) else {
                tracing::warn!(execution_id = %id, handler = %handler.name, package = %handler.package, "handler's package does not exist");
                failed.push(StateEvent::Failed {
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
                });
                results.push((delivery, Dispatched::PackageMissing(id), None));
                continue;
            };
            let event = execution.event;
            let span = dispatch_span(&self.backends.tracer, &event, &handler, &id, matched_at);
            // Keyed like the event, so invocations of related events stay in order per
            // partition.
            let key = fx_core::event::partition_key(&event);
            let topic = topics::invocations(&handler.pool);
            tracing::debug!(execution_id = %id, handler = %handler.name, pool = %handler.pool, event_id = %event.id(), "dispatching");
            metrics::counter!(telemetry::DISPATCHED, "pool" => handler.pool.clone()).increment(1);
            let invocation = Invocation {
                execution_id: id.clone(),
                limits: Limits::resolve(&version.manifest.limits, &handler.limits),
                grants: Grants::resolve(&version.manifest, &handler),
                handler,
                package,
                event,
                attempt: 1,
                dispatched_at: Utc::now(),
                attempt_base: 0,
                publish_output: true,
                not_before: None,
                trace: span.context().cloned(),
            };
            let message = Message::json(Some(key), &invocation)?;
            span.end();
            let dispatched = if redispatch {
                Dispatched::Redispatched(id)
            } else {
                Dispatched::New(id)
            };
            results.push((delivery, dispatched, Some((topic, message))));
        }
        if !failed.is_empty() {
            until_available("recording execution failures", shutdown, || {
                state.apply_states(&failed)
            })
            .await?;
        }
        Ok(results)
    }
}

/// The span of dispatching `event` to `handler` as execution `id`: a child of the event's trace
/// context (a new trace for an event without one), from the match to the invocation.
fn dispatch_span(
    tracer: &fx_core::trace::Tracer,
    event: &Event,
    handler: &Handler,
    id: &ExecutionId,
    matched_at: std::time::SystemTime,
) -> fx_core::trace::Span {
    let parent = fx_core::trace::TraceContext::of_event(event);
    let mut span = tracer.start_at(
        "fx.dispatch",
        fx_core::trace::SpanKind::Producer,
        parent.as_ref(),
        matched_at,
    );
    span.set("fx.handler", handler.name.clone());
    span.set("fx.pool", handler.pool.clone());
    span.set("fx.execution_id", id.to_string());
    span.set("cloudevents.event_id", event.id().to_string());
    span.set("cloudevents.event_type", event.ty().to_string());
    span.set("cloudevents.event_source", event.source().to_string());
    span
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
