//! A registry's entries kept in memory for a short while: what the request paths (webhooks,
//! chat commands) and the state router read on every message without a registry read each.

use std::time::{Duration, Instant};

use super::{Entry, Registry, Stored, Table};
use crate::error::Result;

/// A registry's entries as last read, read again when older than `ttl` or after a write
/// through this process ([`CachedTable::forget`]): a delivery costs no registry read, and a
/// flood of them one read per `ttl` at most. An entry written through another process is seen
/// within `ttl`.
pub struct CachedTable<T> {
    table: tokio::sync::Mutex<Option<(Instant, Table<T>)>>,
    ttl: Duration,
}

/// How long a [`CachedTable`] serves entries before it reads them again, by default.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

impl<T> Default for CachedTable<T> {
    fn default() -> Self {
        CachedTable::with_ttl(CACHE_TTL)
    }
}

impl<T> CachedTable<T> {
    /// A cache that reads the registry again when its table is older than `ttl`.
    pub fn with_ttl(ttl: Duration) -> Self {
        CachedTable {
            table: tokio::sync::Mutex::new(None),
            ttl,
        }
    }
}

impl<T: Entry> CachedTable<T> {
    /// Drops the entries read, so that the next lookup reads them again (after a write).
    pub async fn forget(&self) {
        *self.table.lock().await = None;
    }

    /// Every entry, from a table at most `ttl` old (or the last one read, while the
    /// registry does not answer).
    pub async fn entries(&self, registry: &dyn Registry<T>) -> Result<Vec<T>> {
        Ok(self
            .stored(registry)
            .await?
            .into_iter()
            .map(|s| s.entry)
            .collect())
    }

    /// As [`CachedTable::entries`], with each entry's revision.
    pub async fn stored(&self, registry: &dyn Registry<T>) -> Result<Vec<Stored<T>>> {
        let mut table = self.table.lock().await;
        let fresh = table
            .as_ref()
            .is_some_and(|(read, _)| read.elapsed() < self.ttl);
        if !fresh {
            match registry.table().await {
                Ok(read) => *table = Some((Instant::now(), read)),
                // The last table read serves while the registry cannot answer.
                Err(e) if table.is_some() => {
                    tracing::warn!(kind = T::KIND, error = %e.chain(), "reading the registry failed; using the entries read before");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(table
            .as_ref()
            .map(|(_, t)| t.entries.clone())
            .unwrap_or_default())
    }

    /// Entry `name`, from a table at most `ttl` old; `refreshed` sees a table just read.
    pub async fn entry(
        &self,
        registry: &dyn Registry<T>,
        name: &str,
        refreshed: impl FnOnce(&Table<T>),
    ) -> Result<Option<T>> {
        let mut table = self.table.lock().await;
        let fresh = table
            .as_ref()
            .is_some_and(|(read, _)| read.elapsed() < self.ttl);
        if !fresh {
            let read = registry.table().await?;
            refreshed(&read);
            *table = Some((Instant::now(), read));
        }
        Ok(table.as_ref().and_then(|(_, t)| {
            t.entries
                .iter()
                .find(|e| e.entry.name() == name)
                .map(|e| e.entry.clone())
        }))
    }
}
