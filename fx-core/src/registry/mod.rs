//! The config store port: handlers by name, with revisions for check-and-set and a
//! blocking watch, the shape of Consul KV.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::handler::Handler;

#[cfg(feature = "consul")]
pub mod consul;
#[cfg(feature = "consul")]
pub mod consul_double;
pub mod embedded;
pub mod testsuite;

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
    /// When the last successful read started.
    started: Option<std::time::Instant>,
    /// The highest revision read so far.
    revision: u64,
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
    /// for the caller to log.
    pub async fn since(
        &self,
        arrived: std::time::Instant,
    ) -> std::result::Result<u64, (u64, crate::Error)> {
        let mut last = self.last.lock().await;
        if last.started.is_some_and(|at| at >= arrived) {
            return Ok(last.revision);
        }
        let started = std::time::Instant::now();
        match tokio::time::timeout(self.timeout, self.registry.revision()).await {
            Ok(Ok(revision)) => {
                last.started = Some(started);
                // A store reset (snapshot restore) lowers it: the store is the truth.
                last.revision = revision;
                Ok(revision)
            }
            Ok(Err(e)) => Err((last.revision, e)),
            Err(_) => Err((
                last.revision,
                crate::Error::unavailable(format!(
                    "the handler registry did not answer within {} ms",
                    self.timeout.as_millis()
                )),
            )),
        }
    }
}

/// The handler registry.
#[async_trait]
pub trait HandlerRegistry: Send + Sync + 'static {
    /// Every handler now.
    async fn table(&self) -> Result<HandlerTable>;

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
