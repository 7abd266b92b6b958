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
use fx_core::handler::{Handler, Limits};
use fx_core::store::Created;
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

impl Dispatcher {
    /// A dispatcher over `backends` using the live handler `table`.
    pub fn new(backends: Backends, table: LiveTable) -> Self {
        Dispatcher { backends, table }
    }

    /// Consumes `fx.events` as group `group` until `shutdown`.
    pub async fn run(&self, group: &str, shutdown: CancellationToken) -> Result<()> {
        let mut subscription = until_available("subscribing to fx.events", &shutdown, || {
            self.backends.bus.subscribe(topics::EVENTS, group)
        })
        .await?;
        tracing::info!(group, "dispatcher consuming fx.events");
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = subscription.next() => next,
            };
            let delivery = match delivery {
                Ok(Some(d)) => d,
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e.chain(), "reading fx.events failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
            match self.handle_delivery(&delivery, &shutdown).await {
                Ok(()) => {}
                // Shutting down mid-way: leave the delivery uncommitted so it is seen again.
                Err(e) if shutdown.is_cancelled() => {
                    tracing::info!(error = %e.chain(), offset = delivery.offset, "left uncommitted at shutdown");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            crate::retry::commit(subscription.as_mut(), &delivery, &shutdown).await?;
        }
    }

    async fn handle_delivery(
        &self,
        delivery: &Delivery,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let event = match decode_message(&delivery.message) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(reason = %e.chain(), offset = delivery.offset, "malformed event sent to the dead-letter topic");
                let message = delivery
                    .message
                    .clone()
                    .with_header(topics::REASON_HEADER, e.chain())
                    .with_header("fx-original-topic", delivery.topic.clone());
                return until_available("publishing to fx.deadletter", shutdown, || {
                    self.backends
                        .bus
                        .publish(topics::DEADLETTER, message.clone())
                })
                .await;
            }
        };
        self.dispatch(&event, shutdown).await.map(|_| ())
    }

    /// Dispatches `event` to every matching handler; returns what happened per handler.
    pub async fn dispatch(
        &self,
        event: &Event,
        shutdown: &CancellationToken,
    ) -> Result<Vec<Dispatched>> {
        let table = self.table.current();
        let mut results = Vec::new();
        for stored in table.handlers.iter().filter(|h| h.handler.matches(event)) {
            let outcome = self.dispatch_to(&stored.handler, event, shutdown).await?;
            results.push(outcome);
        }
        if results.is_empty() {
            tracing::debug!(event_id = %event.id(), event_type = %event.ty(), "no handler matched");
        }
        Ok(results)
    }

    async fn dispatch_to(
        &self,
        handler: &Handler,
        event: &Event,
        shutdown: &CancellationToken,
    ) -> Result<Dispatched> {
        let id = ExecutionId::for_event(event, &handler.name);
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
                return Ok(Dispatched::Duplicate(id));
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
            };
            until_available("recording execution failure", shutdown, || {
                state.apply_state(&failed)
            })
            .await?;
            tracing::warn!(execution_id = %id, handler = %handler.name, package = %handler.package, "handler's package does not exist");
            return Ok(Dispatched::PackageMissing(id));
        };
        let invocation = Invocation {
            execution_id: id.clone(),
            handler: handler.clone(),
            package,
            event: event.clone(),
            attempt: 1,
            limits: Limits::resolve(&version.manifest.limits, &handler.limits),
            dispatched_at: Utc::now(),
        };
        // Keyed like the event, so invocations of related events stay in order per partition.
        let message = Message::json(Some(fx_core::event::partition_key(event)), &invocation)?;
        let topic = topics::invocations(&handler.pool);
        until_available("publishing invocation", shutdown, || {
            self.backends.bus.publish(&topic, message.clone())
        })
        .await?;
        tracing::info!(execution_id = %id, handler = %handler.name, pool = %handler.pool, event_id = %event.id(), "dispatched");
        Ok(if redispatch {
            Dispatched::Redispatched(id)
        } else {
            Dispatched::New(id)
        })
    }
}
