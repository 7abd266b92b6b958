//! The config store port: handlers by name, with revisions for check-and-set and a
//! blocking watch, the shape of Consul KV.

use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::Event;
use crate::handler::Handler;
use crate::schedule::Schedule;

pub mod cached;
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

/// What a registry holds: handlers, schedules. Each kind is a collection of its own (a file
/// in the data directory, a key prefix in Consul) with its own revisions; the backends are
/// generic over it ([`Registry`]).
pub trait Entry:
    Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The kind, singular, in messages and as the entry's field in stored documents
    /// (`handler`).
    const KIND: &'static str;
    /// The kind, plural: the collection's key in a registry file (`handlers`).
    const COLLECTION: &'static str;
    /// The entry's name, its key in the collection.
    fn name(&self) -> &str;
    /// Checks the entry before it is stored, and when it is read back.
    fn validate(&self) -> Result<()>;
}

impl Entry for Handler {
    const KIND: &'static str = "handler";
    const COLLECTION: &'static str = "handlers";
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<()> {
        Handler::validate(self)
    }
}

impl Entry for crate::notify::Rule {
    const KIND: &'static str = "rule";
    const COLLECTION: &'static str = "notifications";
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<()> {
        crate::notify::Rule::validate(self)
    }
}

impl Entry for crate::chat::Bundle {
    const KIND: &'static str = "bundle";
    const COLLECTION: &'static str = "bundles";
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<()> {
        crate::chat::Bundle::validate(self)
    }
}

impl Entry for crate::workflow::Workflow {
    const KIND: &'static str = "workflow";
    const COLLECTION: &'static str = "workflows";
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<()> {
        crate::workflow::Workflow::validate(self)
    }
}

impl Entry for crate::hook::Hook {
    const KIND: &'static str = "hook";
    const COLLECTION: &'static str = "hooks";
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<()> {
        crate::hook::Hook::validate(self)
    }
}

impl Entry for Schedule {
    const KIND: &'static str = "schedule";
    const COLLECTION: &'static str = "schedules";
    fn name(&self) -> &str {
        &self.name
    }
    fn validate(&self) -> Result<()> {
        Schedule::validate(self)
    }
}

/// An entry as stored, with the revision it was last written at. Serialized as
/// `{"<kind>": {...}, "revision": N}`, as [`StoredHandler`] is.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<T> {
    /// The entry.
    pub entry: T,
    /// Revision of its last write; pass it back to update or delete with check-and-set.
    pub revision: u64,
}

/// Every entry of a collection at one revision. Serialized as
/// `{"revision": N, "<collection>": [...], "invalid": [...]}`, as [`HandlerTable`] is.
#[derive(Debug, Clone, PartialEq)]
pub struct Table<T> {
    /// The collection's revision this table reflects; grows with every change.
    pub revision: u64,
    /// Valid entries, sorted by name.
    pub entries: Vec<Stored<T>>,
    /// Stored entries that failed validation, skipped.
    pub invalid: Vec<InvalidHandler>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            revision: 0,
            entries: Vec::new(),
            invalid: Vec::new(),
        }
    }
}

impl<T: Entry> Serialize for Stored<T> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("Stored", 2)?;
        s.serialize_field(T::KIND, &self.entry)?;
        s.serialize_field("revision", &self.revision)?;
        s.end()
    }
}

impl<T: Entry> Serialize for Table<T> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut s = serializer.serialize_struct("Table", 3)?;
        s.serialize_field("revision", &self.revision)?;
        s.serialize_field(T::COLLECTION, &self.entries)?;
        s.serialize_field("invalid", &self.invalid)?;
        s.end()
    }
}

impl From<Stored<Handler>> for StoredHandler {
    fn from(stored: Stored<Handler>) -> Self {
        StoredHandler {
            handler: stored.entry,
            revision: stored.revision,
        }
    }
}

impl From<Table<Handler>> for HandlerTable {
    fn from(table: Table<Handler>) -> Self {
        HandlerTable {
            revision: table.revision,
            handlers: table.entries.into_iter().map(StoredHandler::from).collect(),
            invalid: table.invalid,
        }
    }
}

/// A registry of one kind of entry, the shape of Consul KV: entries by name, with revisions
/// for check-and-set and a blocking watch.
#[async_trait]
pub trait Registry<T: Entry>: Send + Sync + 'static {
    /// Every entry now.
    async fn table(&self) -> Result<Table<T>>;

    /// The collection's revision now: what a table read now would carry.
    async fn revision(&self) -> Result<u64>;

    /// One entry by name.
    async fn get(&self, name: &str) -> Result<Option<Stored<T>>>;

    /// Creates or replaces an entry (validated first); returns its new revision.
    async fn put(&self, entry: &T, expect: Expect) -> Result<u64>;

    /// Deletes an entry; `NotFound` if it does not exist.
    async fn delete(&self, name: &str, expect: Expect) -> Result<()>;

    /// Waits until the collection's revision is past `after_revision` (or `wait` elapses)
    /// and returns the table then: a blocking query.
    async fn watch(&self, after_revision: u64, wait: Duration) -> Result<Table<T>>;
}

/// The schedules, kept beside the handlers in the same backend.
pub type ScheduleRegistry = dyn Registry<Schedule>;

/// The webhooks' registry, in the handlers' backend.
pub type HookRegistry = dyn Registry<crate::hook::Hook>;

/// The workflows' registry, in the handlers' backend.
pub type WorkflowRegistry = dyn Registry<crate::workflow::Workflow>;

/// The chat command bundles' registry, in the handlers' backend.
pub type BundleRegistry = dyn Registry<crate::chat::Bundle>;

pub use cached::CachedTable;

/// The notification rules' registry, in the handlers' backend.
pub type NotificationRegistry = dyn Registry<crate::notify::Rule>;

/// A registry of handlers serves as the [`HandlerRegistry`] the platform uses.
macro_rules! handler_registry_of {
    ($registry:ty) => {
        #[async_trait::async_trait]
        impl $crate::registry::HandlerRegistry for $registry {
            async fn table(&self) -> $crate::error::Result<$crate::registry::HandlerTable> {
                Ok($crate::registry::Registry::<Handler>::table(self)
                    .await?
                    .into())
            }
            async fn revision(&self) -> $crate::error::Result<u64> {
                $crate::registry::Registry::<Handler>::revision(self).await
            }
            async fn get(
                &self,
                name: &str,
            ) -> $crate::error::Result<Option<$crate::registry::StoredHandler>> {
                Ok($crate::registry::Registry::<Handler>::get(self, name)
                    .await?
                    .map(Into::into))
            }
            async fn put(
                &self,
                handler: &Handler,
                expect: $crate::registry::Expect,
            ) -> $crate::error::Result<u64> {
                $crate::registry::Registry::<Handler>::put(self, handler, expect).await
            }
            async fn delete(
                &self,
                name: &str,
                expect: $crate::registry::Expect,
            ) -> $crate::error::Result<()> {
                $crate::registry::Registry::<Handler>::delete(self, name, expect).await
            }
            async fn watch(
                &self,
                after_revision: u64,
                wait: std::time::Duration,
            ) -> $crate::error::Result<$crate::registry::HandlerTable> {
                Ok(
                    $crate::registry::Registry::<Handler>::watch(self, after_revision, wait)
                        .await?
                        .into(),
                )
            }
        }
    };
}
pub(crate) use handler_registry_of;

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
