//! The warm pool: instances kept after a call for the next invocation of the same handler and
//! package, for handlers that opt in (`reuse_instances`). Bounded per key and in all; an
//! instance made with other limits than the caller's is dropped, never handed out.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use fx_core::limits::Limits;
use wasmtime::Store;

use crate::bindings::Function;
use crate::host::HostState;

/// Which warm instances an invocation may use: the handler's name and the package digest.
pub type WarmKey = (String, fx_core::package::PackageDigest);

/// Idle warm instances kept per key, and in all.
const MAX_WARM_PER_KEY: usize = 16;
const MAX_WARM: usize = 128;

/// An instance kept for the next invocation of a handler that reuses instances.
pub(crate) struct Warm {
    pub(crate) store: Store<HostState>,
    pub(crate) function: Function,
}

/// Idle instances by key.
#[derive(Default)]
pub(crate) struct WarmPool {
    idle: Mutex<HashMap<WarmKey, Vec<Warm>>>,
}

impl WarmPool {
    /// Idle instances in all.
    pub(crate) fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// An idle instance of `key` made with `limits`; others of the key made with other limits
    /// are dropped on the way (limits are fixed when a store is made).
    pub(crate) fn take(&self, key: &WarmKey, limits: &Limits) -> Option<Warm> {
        let mut idle = self.lock();
        let list = idle.get_mut(key)?;
        while let Some(warm) = list.pop() {
            if warm.store.data().limits() == limits {
                return Some(warm);
            }
        }
        None
    }

    /// Keeps `warm` for the next call of `key`, unless the pool is full (then it is dropped).
    pub(crate) fn put(&self, key: WarmKey, warm: Warm) {
        let mut idle = self.lock();
        let total: usize = idle.values().map(Vec::len).sum();
        let list = idle.entry(key).or_default();
        if list.len() < MAX_WARM_PER_KEY && total < MAX_WARM {
            list.push(warm);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WarmKey, Vec<Warm>>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
