//! The compile cache: per package digest, the archive on local disk, the compiled component on
//! disk (keyed by digest and engine hash, so an engine upgrade recompiles) and the linked
//! `FunctionPre` in memory. A digest is fetched and compiled once, even when many invocations
//! for it arrive at once; a failure is not cached.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fx_core::execution::CacheLookup;
use fx_core::objects::PackageStore;
use fx_core::package::{Manifest, PackageArchive, PackageDigest};
use fx_core::telemetry;
use fx_core::{Error, Result};
use tokio::sync::OnceCell;
use wasmtime::component::Component;

use crate::engine::Runtime;
use crate::host::{FunctionPre, HostState};

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
}

/// A linked function, with where its loader found it and its package's manifest (what the
/// executor checks an invocation's grants against).
type Loaded = (Arc<FunctionPre<HostState>>, CacheLookup, Arc<Manifest>);
type Slot = Arc<OnceCell<Loaded>>;

/// Compiled functions by package digest.
pub struct CompileCache {
    dir: PathBuf,
    engine_hash: String,
    slots: Mutex<HashMap<PackageDigest, Slot>>,
    stats: CacheStats,
}

impl CompileCache {
    /// A cache keeping its files under `dir` (`packages/`, `compiled/`).
    pub fn new(dir: &Path, runtime: &Runtime) -> Result<Self> {
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
            stats: CacheStats::default(),
        })
    }

    /// The counters now.
    pub fn counts(&self) -> CacheCounts {
        CacheCounts {
            fetches: self.stats.fetches.load(Ordering::Relaxed),
            compiles: self.stats.compiles.load(Ordering::Relaxed),
            disk_hits: self.stats.disk_hits.load(Ordering::Relaxed),
            memory_hits: self.stats.memory_hits.load(Ordering::Relaxed),
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
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| Error::internal("compile cache lock poisoned"))?;
            slots.entry(digest.clone()).or_default().clone()
        };
        if let Some((pre, _, manifest)) = slot.get() {
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(telemetry::COMPILE_CACHE, "result" => "memory_hit").increment(1);
            return Ok((pre.clone(), CacheLookup::Memory, manifest.clone()));
        }
        slot.get_or_try_init(|| self.load(digest, runtime, packages))
            .await
            .cloned()
    }

    async fn load(
        &self,
        digest: &PackageDigest,
        runtime: &Arc<Runtime>,
        packages: &Arc<dyn PackageStore>,
    ) -> Result<Loaded> {
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
            let (rt, path) = (runtime.clone(), compiled_path.clone());
            // SAFETY: the file was written by `Component::serialize` of an engine with the same
            // compatibility hash, in a directory only this executor writes.
            let loaded =
                blocking(move || unsafe { Component::deserialize_file(rt.engine(), &path) })
                    .await?;
            match loaded {
                Ok(component) => {
                    self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(telemetry::COMPILE_CACHE, "result" => "disk_hit")
                        .increment(1);
                    tracing::debug!(%digest, "compiled component loaded from disk");
                    return Ok((
                        Arc::new(runtime.prepare(&component)?),
                        CacheLookup::Disk,
                        Arc::new(manifest),
                    ));
                }
                Err(e) => {
                    tracing::warn!(%digest, error = %format!("{e:#}"), "discarding unreadable compiled component");
                    let _ = std::fs::remove_file(&compiled_path);
                }
            }
        }
        let archive = self.archive(digest, packages).await?;
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
        write_atomically(&compiled_path, &serialized).await;
        match toml::to_string(&manifest) {
            Ok(text) => write_atomically(&manifest_path, text.as_bytes()).await,
            Err(e) => {
                tracing::warn!(%digest, error = %e, "could not encode the manifest for the cache")
            }
        }
        tracing::info!(%digest, "package compiled");
        Ok((
            Arc::new(runtime.prepare(&component)?),
            CacheLookup::Compiled,
            Arc::new(manifest),
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
