//! The state router: consumes `fx.state` and writes execution state to the state store and
//! log lines to the operational sink. Applying a state event twice changes nothing, so a
//! redelivery after a crash is harmless.

use fx_core::backends::Backends;
use fx_core::bus::{topics, Delivery};
use fx_core::execution::StateEvent;
use fx_core::Result;
use tokio_util::sync::CancellationToken;

use crate::retry::until_available;

/// Routes state events into the stores.
pub struct StateRouter {
    backends: Backends,
}

impl StateRouter {
    /// A router over `backends`.
    pub fn new(backends: Backends) -> Self {
        StateRouter { backends }
    }

    /// Consumes `fx.state` as group `group` until `shutdown`.
    pub async fn run(&self, group: &str, shutdown: CancellationToken) -> Result<()> {
        let mut subscription = until_available("subscribing to fx.state", &shutdown, || {
            self.backends.bus.subscribe(topics::STATE, group)
        })
        .await?;
        tracing::info!(group, "state router consuming fx.state");
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = subscription.next() => next,
            };
            let delivery = match delivery {
                Ok(Some(d)) => d,
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e.chain(), "reading fx.state failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
            match self.route(&delivery, &shutdown).await {
                Ok(()) => {}
                Err(e) if shutdown.is_cancelled() => {
                    tracing::info!(error = %e.chain(), "state event left uncommitted at shutdown");
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            crate::retry::commit(subscription.as_mut(), &delivery, &shutdown).await?;
        }
    }

    async fn route(&self, delivery: &Delivery, shutdown: &CancellationToken) -> Result<()> {
        let event: StateEvent = match delivery.message.decode_json() {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(reason = %e.chain(), offset = delivery.offset, "malformed state event sent to the dead-letter topic");
                let message = delivery
                    .message
                    .clone()
                    .with_header(
                        topics::REASON_HEADER,
                        format!("malformed state event: {}", e.chain()),
                    )
                    .with_header("fx-original-topic", delivery.topic.clone());
                return until_available("publishing to fx.deadletter", shutdown, || {
                    self.backends
                        .bus
                        .publish(topics::DEADLETTER, message.clone())
                })
                .await;
            }
        };
        self.apply(&event, shutdown).await
    }

    /// Writes one state event where it belongs.
    pub async fn apply(&self, event: &StateEvent, shutdown: &CancellationToken) -> Result<()> {
        match event {
            StateEvent::Log(line) => {
                let lines = std::slice::from_ref(line);
                until_available("writing log line", shutdown, || {
                    self.backends.sink.write_logs(lines)
                })
                .await
            }
            other => {
                let result = until_available("applying execution state", shutdown, || {
                    self.backends.state.apply_state(other)
                })
                .await;
                if result.is_ok() {
                    tracing::debug!(execution_id = %other.execution_id(), state = other.name(), "state applied");
                }
                result
            }
        }
    }
}
