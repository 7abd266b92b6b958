//! The batch-consume loop the dispatcher (`fx.events`) and the state router (`fx.state`)
//! share: take what is waiting as one batch, handle it, then commit it.

use std::sync::Arc;
use std::time::Duration;

use fx_core::bus::{topics, Delivery, EventBus};
use fx_core::Result;
use tokio_util::sync::CancellationToken;

use crate::retry::{commit, until_available};

/// What handles one batch of deliveries.
#[async_trait::async_trait]
pub trait BatchHandler: Send + Sync {
    /// Handles `batch`. It waits out an unavailable backend itself (the error it returns then
    /// is that shutdown came first); any other error concerns a message of the batch.
    async fn handle(&self, batch: &[Delivery], shutdown: &CancellationToken) -> Result<()>;

    /// Called for a delivery that failed on its own with `error` (a value a backend refuses,
    /// say), before it is dead-lettered and committed: records what can be recorded, such as
    /// the execution it concerns as failed with the reason.
    async fn poisoned(
        &self,
        delivery: &Delivery,
        error: &fx_core::Error,
        shutdown: &CancellationToken,
    ) {
        let _ = (delivery, error, shutdown);
    }
}

/// What the consume loop does with an error of a batch: the one place that decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Shutting down: leave the batch uncommitted, to be delivered again after a restart.
    LeaveUncommitted,
    /// A backend is unavailable: wait and handle the batch again.
    Retry,
    /// The error concerns a message (invalid data, a value a backend refuses, a message too
    /// large for the bus): find it, dead-letter it with the reason, commit and go on.
    DeadLetter,
}

impl OnError {
    /// The decision for `error`.
    pub fn of(error: &fx_core::Error, shutdown: &CancellationToken) -> OnError {
        if shutdown.is_cancelled() {
            OnError::LeaveUncommitted
        } else if error.kind().is_retryable() {
            OnError::Retry
        } else {
            OnError::DeadLetter
        }
    }
}

/// Consumes `topic` as `group` until `shutdown`: each batch of waiting deliveries (up to
/// `batch` at once) goes to `handler`, then every delivery of it is committed. A batch whose handling fails while
/// shutting down is left uncommitted, so that it is delivered again after a restart; a failure
/// otherwise ends the loop with that error. `who` names the consumer in logs.
pub async fn batches(
    bus: &Arc<dyn EventBus>,
    topic: &str,
    group: &str,
    who: &str,
    batch: usize,
    shutdown: &CancellationToken,
    handler: &dyn BatchHandler,
) -> Result<()> {
    let mut subscription = until_available(&format!("subscribing to {topic}"), shutdown, || {
        bus.subscribe(topic, group)
    })
    .await?;
    tracing::info!(group, topic, "{who} consuming");
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = subscription.next_batch(batch) => next,
        };
        let deliveries = match next {
            Ok(deliveries) if deliveries.is_empty() => return Ok(()),
            Ok(deliveries) => deliveries,
            Err(e) => {
                tracing::warn!(error = %e.chain(), topic, "reading failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let what = format!("handling a batch of {topic}");
        let handling = until_available(&what, shutdown, || handler.handle(&deliveries, shutdown));
        tokio::pin!(handling);
        // A batch may wait long for a backend (a sink or a store that is down): meanwhile the
        // consumer keeps its group membership (partitions paused, polls go on), so its
        // partitions do not move and get handled twice.
        let handled = loop {
            tokio::select! {
                handled = &mut handling => break handled,
                held = subscription.hold() => {
                    if let Err(e) = held {
                        tracing::warn!(error = %e.chain(), topic, "keeping the consumer in its group failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        };
        if let Err(e) = handled {
            match OnError::of(&e, shutdown) {
                OnError::LeaveUncommitted | OnError::Retry => {
                    tracing::info!(error = %e.chain(), topic, deliveries = deliveries.len(), "left uncommitted at shutdown");
                    return Ok(());
                }
                OnError::DeadLetter => {
                    tracing::warn!(error = %e.chain(), topic, deliveries = deliveries.len(), "a message of the batch failed; handling them one at a time");
                    if !one_at_a_time(bus, topic, &deliveries, shutdown, handler).await {
                        return Ok(());
                    }
                }
            }
        }
        let positions: Vec<_> = deliveries.iter().map(Delivery::position).collect();
        commit(subscription.as_mut(), &positions, shutdown).await?;
    }
}

/// Handles `deliveries` one at a time after their batch failed: a delivery that fails on its
/// own goes to `fx.deadletter` with the reason (after [`BatchHandler::poisoned`]), so that
/// it never stops the consumer. Handling is idempotent, so those of the batch that had been
/// handled are handled again harmlessly. Returns `false` when shutdown came first (the batch
/// is then left uncommitted).
async fn one_at_a_time(
    bus: &Arc<dyn EventBus>,
    topic: &str,
    deliveries: &[Delivery],
    shutdown: &CancellationToken,
    handler: &dyn BatchHandler,
) -> bool {
    for delivery in deliveries {
        let single = std::slice::from_ref(delivery);
        let Err(e) = until_available(&format!("handling a message of {topic}"), shutdown, || {
            handler.handle(single, shutdown)
        })
        .await
        else {
            continue;
        };
        if OnError::of(&e, shutdown) != OnError::DeadLetter {
            return false;
        }
        tracing::warn!(reason = %e.chain(), topic, partition = delivery.partition, offset = delivery.offset, "message sent to the dead-letter topic");
        metrics::counter!(fx_core::telemetry::POISONED, "topic" => topic.to_string()).increment(1);
        handler.poisoned(delivery, &e, shutdown).await;
        let message = delivery
            .message
            .clone()
            .with_header(topics::REASON_HEADER, topics::reason(e.chain()))
            .with_header(topics::ORIGINAL_TOPIC_HEADER, delivery.topic.clone());
        if until_available("publishing to fx.deadletter", shutdown, || {
            bus.publish(topics::DEADLETTER, message.clone())
        })
        .await
        .is_err()
        {
            // Shutdown, or a message the bus refuses even as a dead-letter: leave the batch
            // uncommitted rather than lose it.
            tracing::error!(
                topic,
                offset = delivery.offset,
                "dead-lettering a message failed; leaving its batch uncommitted"
            );
            return false;
        }
    }
    true
}
