//! The compile cache: per package digest, the archive on local disk, the compiled component on
//! disk (keyed by digest and engine hash, so an engine upgrade recompiles) and the linked
//! `FunctionPre` in memory. A digest is fetched and compiled once, even when many invocations
//! for it arrive at once; a failure is not cached.
//!
//! Both tiers are bounded in bytes and evict the least recently used package first: memory by
//! the compiled size of the linked components it holds ([`CacheBounds::memory_bytes`]; a
//! component still running keeps its memory until it ends), disk by the files under the cache
//! directory ([`CacheBounds::disk_bytes`]; a file's modification time is its last use).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use fx_core::execution::CacheLookup;
use fx_core::objects::PackageStore;
use fx_core::package::{Manifest, PackageArchive, PackageDigest};
use fx_core::telemetry;
use fx_core::{Error, Result};
use tokio::sync::OnceCell;
use wasmtime::component::Component;

use crate::bindings::FunctionPre;
use crate::engine::Runtime;
use crate::host::HostState;
use crate::phases::{LoadPhases, Phase};
use std::time::SystemTime;

/// Counters of the cache, for tests and metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Archives fetched from the package store.
    pub fetches: AtomicU64,
    /// Components compiled from source.
    pub compiles: AtomicU64,
    /// Compiled components loaded from disk.
    pub disk_hits: AtomicU64,
    /// Lookups answered from memory.
    pub memory_hits: AtomicU64,
    /// Linked components dropped from memory to stay within the bound.
    pub memory_evictions: AtomicU64,
    /// Files deleted from disk to stay within the bound.
    pub disk_evictions: AtomicU64,
}

/// A snapshot of [`CacheStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    /// Archives fetched from the package store.
    pub fetches: u64,
    /// Components compiled.
    pub compiles: u64,
    /// Compiled components loaded from disk.
    pub disk_hits: u64,
    /// Lookups answered from memory.
    pub memory_hits: u64,
    /// Linked components dropped from memory to stay within the bound.
    pub memory_evictions: u64,
    /// Files deleted from disk to stay within the bound.
    pub disk_evictions: u64,
}

/// How much each tier of the cache may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheBounds {
    /// Compiled bytes of the linked components kept in memory.
    pub memory_bytes: u64,
    /// Bytes of the archives and compiled components kept on disk.
    pub disk_bytes: u64,
}

/// One package's place in memory.
struct Entry {
    slot: Slot,
    /// Its compiled size once loaded (0 before).
    bytes: u64,
    /// When it was last looked up (a tick of the cache's clock).
    used: u64,
}

/// A linked function, with where its loader found it and its package's manifest (what the
/// executor checks an invocation's grants against).
type Loaded = (Arc<FunctionPre<HostState>>, CacheLookup, Arc<Manifest>);
type Slot = Arc<OnceCell<Loaded>>;

/// Compiled functions by package digest.
pub struct CompileCache {
    dir: PathBuf,
    engine_hash: String,
    slots: Mutex<HashMap<PackageDigest, Entry>>,
    clock: AtomicU64,
    bounds: CacheBounds,
    stats: CacheStats,
    /// One disk sweep at a time.
    sweeping: tokio::sync::Mutex<()>,
}

impl CompileCache {
    /// A cache keeping its files under `dir` (`packages/`, `compiled/`).
    pub fn new(dir: &Path, runtime: &Runtime, bounds: CacheBounds) -> Result<Self> {
        for sub in ["packages", "compiled"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| {
                Error::unavailable(format!(
                    "creating cache directory {}",
                    dir.join(sub).display()
                ))
                .with_source(e)
            })?;
        }
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            engine_hash: runtime.compatibility_hash(),
            slots: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            bounds,
            stats: CacheStats::default(),
            sweeping: tokio::sync::Mutex::new(()),
        })
    }

    /// The counters now.
    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            fetches: self.stats.fetches.load(Ordering::Relaxed),
            compiles: self.stats.compiles.load(Ordering::Relaxed),
            disk_hits: self.stats.disk_hits.load(Ordering::Relaxed),
            memory_hits: self.stats.memory_hits.load(Ordering::Relaxed),
            memory_evictions: self.stats.memory_evictions.load(Ordering::Relaxed),
            disk_evictions: self.stats.disk_evictions.load(Ordering::Relaxed),
        }
    }

    /// Packages linked in memory now, and their compiled bytes.
    pub fn in_memory(&self) -> (usize, u64) {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let loaded = slots.values().filter(|e| e.slot.initialized());
        loaded.fold((0, 0), |(n, bytes), e| (n + 1, bytes + e.bytes))
    }

    /// The memory slot of `digest`, marked as just used.
    fn slot(&self, digest: &PackageDigest) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let used = self.clock.fetch_add(1, Ordering::Relaxed);
        let entry = slots.entry(digest.clone()).or_insert_with(|| Entry {
            slot: Slot::default(),
            bytes: 0,
            used,
        });
        entry.used = used;
        entry.slot.clone()
    }

    /// Fills `slot` with what `load` yields unless a concurrent caller already did, and keeps
    /// memory within its bound when this call loaded it.
    async fn fill(
        &self,
        digest: &PackageDigest,
        slot: &Slot,
        load: impl std::future::Future<Output = Result<(Loaded, u64)>>,
    ) -> Result<Loaded> {
        let mut size = None;
        let loaded = slot
            .get_or_try_init(|| async {
                let (loaded, bytes) = load.await?;
                size = Some(bytes);
                Ok::<_, Error>(loaded)
            })
            .await
            .cloned()?;
        if let Some(bytes) = size {
            self.loaded(digest, bytes);
        }
        Ok(loaded)
    }

    /// Records the compiled size of `digest` once loaded, then drops the least recently used
    /// other packages until memory is within its bound.
    fn loaded(&self, digest: &PackageDigest, bytes: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = slots.get_mut(digest) {
            entry.bytes = bytes;
        }
        loop {
            let total: u64 = slots.values().map(|e| e.bytes).sum();
            if total <= self.bounds.memory_bytes {
                break;
            }
            let victim = slots
                .iter()
                .filter(|(d, e)| *d != digest && e.slot.initialized())
                .min_by_key(|(_, e)| e.used)
                .map(|(d, _)| d.clone());
            let Some(victim) = victim else { break };
            slots.remove(&victim);
            self.stats.memory_evictions.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(telemetry::COMPILE_CACHE_EVICTIONS, "tier" => "memory").increment(1);
            tracing::debug!(digest = %victim, "compiled component dropped from memory (cache bound)");
        }
    }

    /// Deletes the least recently used files under the cache directory until it holds no
    /// more than its bound; the files of `keep` stay.
    async fn sweep_disk(&self, keep: &PackageDigest) {
        let _one = self.sweeping.lock().await;
        let (dir, bound, keep) = (self.dir.clone(), self.bounds.disk_bytes, keep.to_string());
        let evicted = blocking(move || -> std::io::Result<u64> {
            let mut files = Vec::new();
            for sub in ["packages", "compiled"] {
                for entry in std::fs::read_dir(dir.join(sub))? {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if meta.is_file() && !name.contains(".tmp-") {
                        files.push((meta.modified()?, meta.len(), entry.path(), name));
                    }
                }
            }
            let mut total: u64 = files.iter().map(|f| f.1).sum();
            files.sort();
            let mut evicted = 0;
            for (_, len, path, name) in files {
                if total <= bound {
                    break;
                }
                if name.starts_with(&keep) {
                    continue;
                }
                std::fs::remove_file(&path)?;
                total -= len;
                evicted += 1;
            }
            Ok(evicted)
        })
        .await;
        match evicted {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                self.stats.disk_evictions.fetch_add(n, Ordering::Relaxed);
                metrics::counter!(telemetry::COMPILE_CACHE_EVICTIONS, "tier" => "disk")
                    .increment(n);
                tracing::info!(
                    files = n,
                    "compile cache files deleted to stay within the disk bound"
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "sweeping the compile cache directory failed")
            }
            Err(e) => {
                tracing::warn!(error = %e.chain(), "sweeping the compile cache directory failed")
            }
        }
    }

    /// The linked function for `digest`, fetching and compiling it if needed, and where it
    /// was found: in memory, or what the load this call waited for did (from disk, or
    /// compiled).
    pub async fn get(
        &self,
        digest: &PackageDigest,
        runtime: &Arc<Runtime>,
        packages: &Arc<dyn PackageStore>,
    ) -> Result<Loaded> {
        self.get_measured(digest, runtime, packages)
            .await
            .map(|(loaded, _)| loaded)
    }

    /// As [`CompileCache::get`], with what the load took when this call did it (fetch,
    /// compile, or the load of the compiled component from disk).
    pub async fn get_measured(
        &self,
        digest: &PackageDigest,
        runtime: &Arc<Runtime>,
        packages: &Arc<dyn PackageStore>,
    ) -> Result<(Loaded, LoadPhases)> {
        let slot = self.slot(digest);
        if let Some((pre, _, manifest)) = slot.get() {
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(telemetry::COMPILE_CACHE, "result" => "memory_hit").increment(1);
            let loaded = (pre.clone(), CacheLookup::Memory, manifest.clone());
            return Ok((loaded, LoadPhases::default()));
        }
        let mut phases = LoadPhases::default();
        let loaded = self
            .fill(
                digest,
                &slot,
                self.load(digest, runtime, packages, &mut phases),
            )
            .await?;
        Ok((loaded, phases))
    }

    async fn load(
        &self,
        digest: &PackageDigest,
        runtime: &Arc<Runtime>,
        packages: &Arc<dyn PackageStore>,
        phases: &mut LoadPhases,
    ) -> Result<(Loaded, u64)> {
        let compiled_path = self
            .dir
            .join("compiled")
            .join(format!("{digest}-{}.cwasm", self.engine_hash));
        // The manifest beside it: a compiled component without one (written by an older
        // executor) is compiled again.
        let manifest_path = self.dir.join("compiled").join(format!("{digest}.fx.toml"));
        let kept_manifest = tokio::fs::read_to_string(&manifest_path)
            .await
            .ok()
            .and_then(|text| Manifest::parse(&text).ok());
        if let (true, Some(manifest)) = (compiled_path.exists(), kept_manifest) {
            touch(&compiled_path);
            let size = std::fs::metadata(&compiled_path).map_or(0, |m| m.len());
            let (rt, path) = (runtime.clone(), compiled_path.clone());
            let begun = SystemTime::now();
            // SAFETY: the file was written by `Component::serialize` of an engine with the same
            // compatibility hash, in a directory only this executor writes.
            let loaded =
                blocking(move || unsafe { Component::deserialize_file(rt.engine(), &path) })
                    .await?;
            phases.deserialize = Some(Phase::since(begun));
            match loaded {
                Ok(component) => {
                    self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(telemetry::COMPILE_CACHE, "result" => "disk_hit")
                        .increment(1);
                    tracing::debug!(%digest, "compiled component loaded from disk");
                    return Ok((
                        (
                            Arc::new(runtime.prepare(&component)?),
                            CacheLookup::Disk,
                            Arc::new(manifest),
                        ),
                        size,
                    ));
                }
                Err(e) => {
                    tracing::warn!(%digest, error = %format!("{e:#}"), "discarding unreadable compiled component");
                    let _ = std::fs::remove_file(&compiled_path);
                }
            }
        }
        let begun = SystemTime::now();
        let archive = self.archive(digest, packages).await?;
        phases.fetch = Some(Phase::since(begun));
        let begun = SystemTime::now();
        let compiled = self.compile(digest, archive, runtime).await;
        phases.compile = Some(Phase::since(begun));
        compiled
    }

    /// Makes sure `digest` is compiled on disk (fetching and compiling it when it is not), without
    /// keeping it in memory: the background warm-up of the packages this executor's handlers
    /// use, so that their first invocation loads the compiled component instead of compiling.
    /// Returns whether it compiled.
    pub async fn warm(
        &self,
        digest: &PackageDigest,
        runtime: &Arc<Runtime>,
        packages: &Arc<dyn PackageStore>,
    ) -> Result<bool> {
        let in_memory = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .is_some_and(|e| e.slot.initialized());
        let compiled = self
            .dir
            .join("compiled")
            .join(format!("{digest}-{}.cwasm", self.engine_hash));
        if in_memory || compiled.exists() {
            return Ok(false);
        }
        let archive = self.archive(digest, packages).await?;
        self.compile(digest, archive, runtime).await?;
        Ok(true)
    }

    /// Compiles and links the component of `archive` (whose digest is `digest`) with this
    /// executor's engine, keeps it in memory and on disk, and answers later lookups from
    /// there: the check a package gets at upload, so that a component that cannot run here is
    /// refused with the reason and its first invocation does not pay the compile. `Invalid`
    /// with the reason when it cannot be compiled or linked.
    pub async fn check(
        &self,
        digest: &PackageDigest,
        archive: Vec<u8>,
        runtime: &Arc<Runtime>,
    ) -> Result<()> {
        let slot = self.slot(digest);
        if slot.initialized() {
            return Ok(());
        }
        digest.verify(&archive)?;
        self.fill(digest, &slot, self.compile(digest, archive, runtime))
            .await
            .map(|_| ())
    }

    /// Compiles `archive`, links it, and writes the compiled component and its manifest to
    /// disk.
    async fn compile(
        &self,
        digest: &PackageDigest,
        archive: Vec<u8>,
        runtime: &Arc<Runtime>,
    ) -> Result<(Loaded, u64)> {
        let compiled_path = self
            .dir
            .join("compiled")
            .join(format!("{digest}-{}.cwasm", self.engine_hash));
        let manifest_path = self.dir.join("compiled").join(format!("{digest}.fx.toml"));
        let (rt, digest_text) = (runtime.clone(), digest.to_string());
        let compiled = blocking(move || -> Result<(Component, Vec<u8>, Manifest)> {
            let (manifest, component_bytes) =
                PackageArchive::component_of(&archive).map_err(|e| {
                    Error::invalid(format!("reading package {digest_text}: {}", e.chain()))
                })?;
            let component = Component::new(rt.engine(), &component_bytes)
                .map_err(|e| Error::invalid(format!("compiling package {digest_text}: {e:#}")))?;
            let serialized = component.serialize().map_err(|e| {
                Error::internal(format!("serializing package {digest_text}: {e:#}"))
            })?;
            Ok((component, serialized, manifest))
        })
        .await??;
        self.stats.compiles.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(telemetry::COMPILE_CACHE, "result" => "compiled").increment(1);
        let (component, serialized, manifest) = compiled;
        // Linked before anything is kept: a component that cannot run here is not cached.
        let linked = runtime.prepare(&component)?;
        let size = serialized.len() as u64;
        write_atomically(&compiled_path, &serialized).await;
        match toml::to_string(&manifest) {
            Ok(text) => write_atomically(&manifest_path, text.as_bytes()).await,
            Err(e) => {
                tracing::warn!(%digest, error = %e, "could not encode the manifest for the cache")
            }
        }
        tracing::info!(%digest, compiled_bytes = size, "package compiled");
        self.sweep_disk(digest).await;
        Ok((
            (Arc::new(linked), CacheLookup::Compiled, Arc::new(manifest)),
            size,
        ))
    }

    async fn archive(
        &self,
        digest: &PackageDigest,
        packages: &Arc<dyn PackageStore>,
    ) -> Result<Vec<u8>> {
        let path = self.dir.join("packages").join(format!("{digest}.fxpkg"));
        if let Ok(bytes) = tokio::fs::read(&path).await {
            if digest.verify(&bytes).is_ok() {
                touch(&path);
                return Ok(bytes);
            }
            tracing::warn!(%digest, "cached package does not match its digest; fetching again");
            let _ = tokio::fs::remove_file(&path).await;
        }
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let bytes = packages.get(digest).await?;
        digest.verify(&bytes).map_err(|e| {
            Error::invalid(format!(
                "package {digest} from the package store is corrupt: {}",
                e.message()
            ))
        })?;
        write_atomically(&path, &bytes).await;
        Ok(bytes.to_vec())
    }
}

/// Marks a cache file as just used (its modification time orders the disk sweep).
fn touch(path: &Path) {
    let now = std::time::SystemTime::now();
    if let Err(e) = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(now))
    {
        tracing::debug!(path = %path.display(), error = %e, "could not mark a cache file as used");
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("compile task failed: {e}")))
}

/// Writes a cache file via a temporary file and a rename; a failure only costs a recompile.
async fn write_atomically(path: &Path, bytes: &[u8]) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{unique}", std::process::id()));
    let result = async {
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "could not write cache file");
        let _ = tokio::fs::remove_file(&tmp).await;
    }
}
