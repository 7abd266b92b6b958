//! Retrying work that failed because a backend was unavailable.

use fx_core::backoff::Backoff;
use std::future::Future;
use std::time::Duration;

use fx_core::Result;
use tokio_util::sync::CancellationToken;

/// Runs `op` until it succeeds, fails with a non-retryable error, or `shutdown` is cancelled
/// (then the last error is returned). Waits with exponential backoff from 50 ms to 5 s between
/// attempts, logging each failure with `what`.
pub async fn until_available<T, F, Fut>(
    what: &str,
    shutdown: &CancellationToken,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if e.kind().is_retryable() => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e.chain(), retry_in_ms = delay.as_millis() as u64, "{what} failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(e),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Commits the messages at `positions` (one request where the bus allows), retrying while
/// the bus is unavailable (a commit borrows the subscription mutably, so it cannot go through
/// [`until_available`]).
pub async fn commit(
    subscription: &mut dyn fx_core::bus::Subscription,
    positions: &[fx_core::bus::Position],
    shutdown: &CancellationToken,
) -> Result<()> {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        match subscription.commit_all(positions).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind().is_retryable() && !shutdown.is_cancelled() => {
                tracing::warn!(error = %e.chain(), positions = positions.len(), "commit failed; retrying");
                backoff.sleep().await;
            }
            Err(e) => return Err(e),
        }
    }
}
