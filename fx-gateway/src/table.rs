//! The handler table, kept live by a blocking watch on the config store.

use fx_core::backoff::Backoff;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fx_core::registry::{HandlerRegistry, HandlerTable, RoutingTable};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long one blocking watch waits before it is renewed.
const WATCH_WAIT: Duration = Duration::from_secs(30);

/// A handler table that swaps atomically whenever the config store changes. When the store is
/// unreachable the last good table stays in force. Each table is indexed for routing once, when
/// it is read, then shared.
#[derive(Clone)]
pub struct LiveTable {
    current: watch::Receiver<Arc<RoutingTable>>,
    refresh: Option<Arc<Refresh>>,
}

/// Reading the store directly, for an event that matched nothing: the watch may not have
/// brought a handler created a moment ago yet.
struct Refresh {
    registry: Arc<dyn HandlerRegistry>,
    tx: Arc<watch::Sender<Arc<RoutingTable>>>,
    /// One read at a time; holds when the last one started and the read budget.
    reads: tokio::sync::Mutex<Reads>,
}

/// The direct reads made so far.
struct Reads {
    /// When the last completed read started: it saw every handler written before then.
    last_start: Option<Instant>,
    /// Reads that may be made now (a token bucket).
    budget: f64,
    /// When the budget was last topped up.
    topped_up: Instant,
}

/// Direct reads of the store allowed in a burst (unmatched events can be many) …
const REFRESH_BURST: f64 = 20.0;
/// … and per second after it.
const REFRESH_PER_SECOND: f64 = 4.0;
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
        let (tx, rx) = watch::channel(Arc::new(RoutingTable::new(first)));
        let tx = Arc::new(tx);
        tokio::spawn(watch_loop(registry.clone(), tx.clone(), shutdown));
        Ok(LiveTable {
            current: rx,
            refresh: Some(Arc::new(Refresh {
                registry,
                tx,
                reads: tokio::sync::Mutex::new(Reads {
                    last_start: None,
                    budget: REFRESH_BURST,
                    topped_up: Instant::now(),
                }),
            })),
        })
    }

    /// A table that never changes, for tests.
    pub fn fixed(table: HandlerTable) -> Self {
        let (_tx, rx) = watch::channel(Arc::new(RoutingTable::new(table)));
        LiveTable {
            current: rx,
            refresh: None,
        }
    }

    /// The table in force now.
    pub fn current(&self) -> Arc<RoutingTable> {
        self.current.borrow().clone()
    }

    /// For an event that arrived at `arrived` and matched no handler in the table at revision
    /// `seen`: a newer table, if there is one, so that an event sent right after its handler
    /// was created still runs although the watch has not brought the handler yet.
    ///
    /// The watch may have brought a newer table meanwhile; otherwise the store is read
    /// directly, unless a read that started after the event arrived has already been made (it
    /// saw everything written before the event). Reads go one at a time, within a budget of
    /// [`REFRESH_BURST`] at once and [`REFRESH_PER_SECOND`] after: an event beyond the budget
    /// is matched against the table as it is. `None` when nothing is newer.
    pub async fn newer_than(&self, seen: u64, arrived: Instant) -> Option<Arc<RoutingTable>> {
        let newer = |table: Arc<RoutingTable>| (table.revision > seen).then_some(table);
        let refresh = self.refresh.as_ref()?;
        if let Some(table) = newer(self.current()) {
            return Some(table);
        }
        let mut reads = refresh.reads.lock().await;
        if reads.last_start.is_some_and(|at| at >= arrived) {
            return newer(self.current());
        }
        let now = Instant::now();
        let earned = now.duration_since(reads.topped_up).as_secs_f64() * REFRESH_PER_SECOND;
        reads.budget = (reads.budget + earned).min(REFRESH_BURST);
        reads.topped_up = now;
        if reads.budget < 1.0 {
            return newer(self.current());
        }
        reads.budget -= 1.0;
        let read = tokio::time::timeout(REFRESH_TIMEOUT, refresh.registry.table()).await;
        let Ok(Ok(table)) = read else {
            return newer(self.current());
        };
        reads.last_start = Some(now);
        metrics::counter!(fx_core::telemetry::TABLE_READS, "reason" => "unmatched").increment(1);
        // Indexed only when it is to be used.
        if table.revision > self.current().revision {
            refresh.install_if_newer(Arc::new(RoutingTable::new(table)));
        }
        newer(self.current())
    }

    /// The table at `revision` or newer, for an event that arrived at `arrived` stamped by the
    /// ingress with the registry revision it saw: such an event is never matched against an
    /// older table. When the watch has not brought that revision yet the store is read directly
    /// (outside the unmatched-event budget; a read that started after the event arrived serves
    /// it), retrying while the store is unavailable. A store that answers with a lower revision
    /// was reset (a snapshot restore): its table is the truth and is used.
    pub async fn at_least(
        &self,
        revision: u64,
        arrived: Instant,
        shutdown: &CancellationToken,
    ) -> fx_core::Result<Arc<RoutingTable>> {
        let current = self.current();
        let Some(refresh) = self.refresh.as_ref() else {
            return Ok(current);
        };
        if current.revision >= revision {
            return Ok(current);
        }
        let mut reads = refresh.reads.lock().await;
        if reads.last_start.is_some_and(|at| at >= arrived) {
            return Ok(self.current());
        }
        let started = Instant::now();
        let table = crate::retry::until_available(
            "reading handlers for an event newer than the table",
            shutdown,
            || async {
                match tokio::time::timeout(REFRESH_TIMEOUT, refresh.registry.table()).await {
                    Ok(read) => read,
                    Err(_) => Err(fx_core::Error::unavailable(format!(
                        "the handler registry did not answer within {} ms",
                        REFRESH_TIMEOUT.as_millis()
                    ))),
                }
            },
        )
        .await?;
        reads.last_start = Some(started);
        metrics::counter!(fx_core::telemetry::TABLE_READS, "reason" => "stamped").increment(1);
        if table.revision < revision {
            tracing::warn!(
                stamped = revision,
                read = table.revision,
                "the handler registry is at a lower revision than an event was stamped with (was it restored?); using it"
            );
        }
        let table = Arc::new(RoutingTable::new(table));
        refresh.install_if_newer(table.clone());
        // The table just read, even when lower than the one in force (a reset store).
        Ok(if table.revision >= self.current().revision {
            table
        } else {
            self.current()
        })
    }

    /// Waits until the table reaches at least `revision` (for tests and callers that just wrote).
    pub async fn wait_for_revision(&mut self, revision: u64) {
        let _ = self
            .current
            .wait_for(|table| table.revision >= revision)
            .await;
    }
}

impl Refresh {
    /// Puts `table` in force when it is newer than the table in force.
    fn install_if_newer(&self, table: Arc<RoutingTable>) {
        self.tx.send_if_modified(|current| {
            if table.revision > current.revision {
                log_table(&table);
                *current = table;
                true
            } else {
                false
            }
        });
    }
}

async fn watch_loop(
    registry: Arc<dyn HandlerRegistry>,
    tx: Arc<watch::Sender<Arc<RoutingTable>>>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let revision = tx.borrow().revision;
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = registry.watch(revision, WATCH_WAIT) => next,
        };
        match next {
            Ok(table) => {
                backoff.reset();
                // A direct read (`newer_than`) may have brought it (or a newer one)
                // already; a revision below the one watched from is a store that was reset.
                let current = tx.borrow().revision;
                if table.revision > current || table.revision < revision {
                    log_table(&table);
                    tx.send_replace(Arc::new(RoutingTable::new(table)));
                }
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e.chain(), retry_in_ms = delay.as_millis() as u64,
                    "watching handlers failed; keeping the last good table");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
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
