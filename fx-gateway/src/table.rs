//! The handler table, kept live by a blocking watch on the config store.

use std::sync::Arc;
use std::time::Duration;

use fx_core::registry::{HandlerRegistry, HandlerTable};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long one blocking watch waits before it is renewed.
const WATCH_WAIT: Duration = Duration::from_secs(30);

/// A handler table that swaps atomically whenever the config store changes. When the store is
/// unreachable the last good table stays in force.
#[derive(Clone)]
pub struct LiveTable {
    current: watch::Receiver<Arc<HandlerTable>>,
}

impl LiveTable {
    /// Loads the table (retrying while the store is unavailable) and starts watching it.
    pub async fn start(
        registry: Arc<dyn HandlerRegistry>,
        shutdown: CancellationToken,
    ) -> fx_core::Result<Self> {
        let first =
            crate::retry::until_available("loading handlers", &shutdown, || registry.table())
                .await?;
        log_table(&first);
        let (tx, rx) = watch::channel(Arc::new(first));
        tokio::spawn(watch_loop(registry, tx, shutdown));
        Ok(LiveTable { current: rx })
    }

    /// A table that never changes, for tests.
    pub fn fixed(table: HandlerTable) -> Self {
        let (_tx, rx) = watch::channel(Arc::new(table));
        LiveTable { current: rx }
    }

    /// The table in force now.
    pub fn current(&self) -> Arc<HandlerTable> {
        self.current.borrow().clone()
    }

    /// Waits until the table reaches at least `revision` (for tests and callers that just wrote).
    pub async fn wait_for_revision(&mut self, revision: u64) {
        let _ = self
            .current
            .wait_for(|table| table.revision >= revision)
            .await;
    }
}

async fn watch_loop(
    registry: Arc<dyn HandlerRegistry>,
    tx: watch::Sender<Arc<HandlerTable>>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let revision = tx.borrow().revision;
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = registry.watch(revision, WATCH_WAIT) => next,
        };
        match next {
            Ok(table) => {
                delay = Duration::from_millis(100);
                if table.revision != revision {
                    log_table(&table);
                    tx.send_replace(Arc::new(table));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e.chain(), retry_in_ms = delay.as_millis() as u64,
                    "watching handlers failed; keeping the last good table");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn log_table(table: &HandlerTable) {
    tracing::info!(
        revision = table.revision,
        handlers = table.handlers.len(),
        invalid = table.invalid.len(),
        "handler table loaded"
    );
    for invalid in &table.invalid {
        tracing::warn!(handler = %invalid.name, reason = %invalid.reason, "skipping invalid handler");
    }
}
