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
    refresh: Option<Arc<Refresh>>,
}

/// Reading the store directly, for an event that matched nothing: the watch may not have
/// brought a handler created a moment ago yet.
struct Refresh {
    registry: Arc<dyn HandlerRegistry>,
    tx: Arc<watch::Sender<Arc<HandlerTable>>>,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

/// At most one direct read of the store per this interval (unmatched events can be many).
const REFRESH_EVERY: Duration = Duration::from_millis(250);
/// How long a direct read may take before the event is treated as unmatched.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(1);

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
        let tx = Arc::new(tx);
        tokio::spawn(watch_loop(registry.clone(), tx.clone(), shutdown));
        Ok(LiveTable {
            current: rx,
            refresh: Some(Arc::new(Refresh {
                registry,
                tx,
                last: std::sync::Mutex::new(None),
            })),
        })
    }

    /// A table that never changes, for tests.
    pub fn fixed(table: HandlerTable) -> Self {
        let (_tx, rx) = watch::channel(Arc::new(table));
        LiveTable {
            current: rx,
            refresh: None,
        }
    }

    /// The table in force now.
    pub fn current(&self) -> Arc<HandlerTable> {
        self.current.borrow().clone()
    }

    /// For an event that matched no handler: reads the store directly (at most every 250 ms)
    /// and returns the newer table if the watch has not brought it yet, so that an event sent
    /// right after its handler was created still runs. `None` when nothing is newer.
    pub async fn refreshed_if_stale(&self) -> Option<Arc<HandlerTable>> {
        let refresh = self.refresh.as_ref()?;
        {
            let mut last = refresh
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = std::time::Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < REFRESH_EVERY) {
                return None;
            }
            *last = Some(now);
        }
        let table = tokio::time::timeout(REFRESH_TIMEOUT, refresh.registry.table())
            .await
            .ok()?
            .ok()?;
        let mut newer = None;
        refresh.tx.send_if_modified(|current| {
            if table.revision > current.revision {
                log_table(&table);
                *current = Arc::new(table);
                newer = Some(current.clone());
                true
            } else {
                false
            }
        });
        newer
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
    tx: Arc<watch::Sender<Arc<HandlerTable>>>,
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
                // A direct read (`refreshed_if_stale`) may have brought it (or a newer one)
                // already; a revision below the one watched from is a store that was reset.
                let current = tx.borrow().revision;
                if table.revision > current || table.revision < revision {
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
