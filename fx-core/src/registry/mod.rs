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

/// The handler registry.
#[async_trait]
pub trait HandlerRegistry: Send + Sync + 'static {
    /// Every handler now.
    async fn table(&self) -> Result<HandlerTable>;

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
