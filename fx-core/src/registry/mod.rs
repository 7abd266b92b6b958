//! The config store port: handlers by name, with revisions for check-and-set and a
//! blocking watch, the shape of Consul KV.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::Event;
use crate::handler::Handler;

#[cfg(feature = "consul")]
pub mod consul;
#[cfg(all(feature = "consul", any(test, feature = "testsuite")))]
pub mod consul_double;
pub mod embedded;
pub mod routing;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use routing::RoutingTable;

/// A handler as stored, with the revision it was last written at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredHandler {
    /// The handler.
    pub handler: Handler,
    /// Revision of its last write; pass it back to update or delete with check-and-set.
    pub revision: u64,
}

/// A stored entry that is not a valid handler (hand-edited, or written by a newer version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidHandler {
    /// The entry's name (key).
    pub name: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Every handler at one revision of the store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandlerTable {
    /// The store's revision this table reflects; grows with every change.
    pub revision: u64,
    /// Valid handlers, sorted by name.
    pub handlers: Vec<StoredHandler>,
    /// Entries that failed validation, skipped.
    pub invalid: Vec<InvalidHandler>,
}

impl HandlerTable {
    /// The handlers that run on `event`, in table order, found by trying every handler. A
    /// [`RoutingTable`] answers the same without trying them all; this is what it is checked
    /// against.
    pub fn scan_matching<'t>(
        &'t self,
        event: &'t Event,
    ) -> impl Iterator<Item = &'t StoredHandler> + 't {
        self.handlers
            .iter()
            .filter(move |stored| stored.handler.matches(event))
    }
}

/// What a write expects of the stored entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// Create only: fails with `Conflict` if the name exists.
    Absent,
    /// Update only at this revision: fails with `Conflict` if it changed, `NotFound` if gone.
    Revision(u64),
}

/// Reads of the registry's revision shared by concurrent callers: a caller reuses the answer of
/// a read that started after it arrived (that read saw every write made before the caller
/// came), else it makes one. Under a flood of callers the store sees about one read per read's
/// round trip, not one per caller.
pub struct RevisionReads {
    registry: std::sync::Arc<dyn HandlerRegistry>,
    last: tokio::sync::Mutex<LastRead>,
    /// How long one read may take before the last known revision is used.
    timeout: Duration,
}

#[derive(Default)]
struct LastRead {
    /// When the last read started, successful or not.
    started: Option<std::time::Instant>,
    /// The highest revision read so far.
    revision: u64,
    /// Why the last read failed, if it did.
    failed: Option<String>,
}

impl RevisionReads {
    /// Shared reads of `registry`'s revision, each allowed `timeout`.
    pub fn new(registry: std::sync::Arc<dyn HandlerRegistry>, timeout: Duration) -> Self {
        RevisionReads {
            registry,
            last: tokio::sync::Mutex::new(LastRead::default()),
            timeout,
        }
    }

    /// The store's revision as of a moment after `arrived`. When the store does not answer
    /// within the timeout, the highest revision read before, with the error (`Err((last, e))`)
    /// for the caller to log. A failed read serves the callers that arrived before it too, so
    /// that an outage costs one timeout per wave of callers, not one per caller.
    pub async fn since(
        &self,
        arrived: std::time::Instant,
    ) -> std::result::Result<u64, (u64, crate::Error)> {
        let mut last = self.last.lock().await;
        if last.started.is_some_and(|at| at >= arrived) {
            return match &last.failed {
                None => Ok(last.revision),
                Some(reason) => Err((last.revision, crate::Error::unavailable(reason.clone()))),
            };
        }
        let started = std::time::Instant::now();
        last.started = Some(started);
        match tokio::time::timeout(self.timeout, self.registry.revision()).await {
            Ok(Ok(revision)) => {
                // A store reset (snapshot restore) lowers it: the store is the truth.
                last.revision = revision;
                last.failed = None;
                Ok(revision)
            }
            Ok(Err(e)) => {
                last.failed = Some(e.chain());
                Err((last.revision, e))
            }
            Err(_) => {
                let e = crate::Error::unavailable(format!(
                    "the handler registry did not answer within {} ms",
                    self.timeout.as_millis()
                ));
                last.failed = Some(e.chain());
                Err((last.revision, e))
            }
        }
    }
}

/// The handler registry.
#[async_trait]
pub trait HandlerRegistry: Send + Sync + 'static {
    /// Every handler now.
    async fn table(&self) -> Result<HandlerTable>;

    /// Answers when the registry can be read (for readiness).
    async fn ready(&self) -> Result<()> {
        self.revision().await.map(|_| ())
    }

    /// The store's revision now: what a table read now would carry. Cheaper than
    /// [`HandlerRegistry::table`] where the store allows.
    async fn revision(&self) -> Result<u64> {
        Ok(self.table().await?.revision)
    }

    /// One handler by name.
    async fn get(&self, name: &str) -> Result<Option<StoredHandler>>;

    /// Creates or replaces a handler (validated first); returns its new revision.
    async fn put(&self, handler: &Handler, expect: Expect) -> Result<u64>;

    /// Deletes a handler; `NotFound` if it does not exist.
    async fn delete(&self, name: &str, expect: Expect) -> Result<()>;

    /// Waits until the store's revision is past `after_revision` (or `wait` elapses) and
    /// returns the table then: a blocking query.
    async fn watch(&self, after_revision: u64, wait: Duration) -> Result<HandlerTable>;
}

#[cfg(test)]
mod revision_reads_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// A registry whose revision reads take `delay` and are counted.
    struct Slow {
        delay: Duration,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl HandlerRegistry for Slow {
        async fn table(&self) -> Result<HandlerTable> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            Ok(HandlerTable {
                revision: 7,
                ..HandlerTable::default()
            })
        }
        async fn get(&self, _: &str) -> Result<Option<StoredHandler>> {
            Ok(None)
        }
        async fn put(&self, _: &Handler, _: Expect) -> Result<u64> {
            Ok(0)
        }
        async fn delete(&self, _: &str, _: Expect) -> Result<()> {
            Ok(())
        }
        async fn watch(&self, _: u64, _: Duration) -> Result<HandlerTable> {
            self.table().await
        }
    }

    async fn callers(
        delay: Duration,
        timeout: Duration,
    ) -> (Vec<std::result::Result<u64, u64>>, usize) {
        let slow = Arc::new(Slow {
            delay,
            reads: AtomicUsize::new(0),
        });
        let reads = Arc::new(RevisionReads::new(slow.clone(), timeout));
        let arrived = std::time::Instant::now();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let reads = reads.clone();
                tokio::spawn(async move { reads.since(arrived).await.map_err(|(last, _)| last) })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        (out, slow.reads.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_read() {
        let (results, reads) = callers(Duration::from_millis(20), Duration::from_secs(5)).await;
        assert!(results.iter().all(|r| *r == Ok(7)), "{results:?}");
        assert_eq!(reads, 1);
    }

    #[tokio::test]
    async fn a_registry_that_does_not_answer_costs_one_timeout_per_wave_not_per_caller() {
        let (results, reads) = callers(Duration::from_secs(60), Duration::from_millis(50)).await;
        assert!(results.iter().all(|r| *r == Err(0)), "{results:?}");
        assert_eq!(
            reads, 1,
            "the callers waiting behind the failed read reuse its answer"
        );
    }
}
