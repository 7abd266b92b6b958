//! The batch-consume loop the dispatcher (`fx.events`) and the state router (`fx.state`)
//! share: take what is waiting as one batch, handle it, then commit it.

use std::sync::Arc;
use std::time::Duration;

use fx_core::bus::{Delivery, EventBus};
use fx_core::Result;
use tokio_util::sync::CancellationToken;

use crate::retry::{commit, until_available};

/// What handles one batch of deliveries.
#[async_trait::async_trait]
pub trait BatchHandler: Send + Sync {
    /// Handles `batch`; an error leaves it uncommitted.
    async fn handle(&self, batch: &[Delivery], shutdown: &CancellationToken) -> Result<()>;
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
        match handler.handle(&deliveries, shutdown).await {
            Ok(()) => {}
            Err(e) if shutdown.is_cancelled() => {
                tracing::info!(error = %e.chain(), topic, deliveries = deliveries.len(), "left uncommitted at shutdown");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        for delivery in &deliveries {
            commit(subscription.as_mut(), delivery, shutdown).await?;
        }
    }
}
