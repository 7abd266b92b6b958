//! The embedded package store: archives as files `<dir>/<first 2 hex digits>/<digest>.fxpkg`.
//!
//! Writes go to a temporary file renamed into place, so a reader never sees half an archive;
//! reads verify the bytes against the digest, so a corrupt file is never handed out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::PackageStore;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::package::PackageDigest;

/// Package archives in a local directory.
pub struct LocalPackageStore {
    /// The root directory.
    dir: PathBuf,
}

impl LocalPackageStore {
    /// Opens (creating it if needed) the store rooted at `dir`.
    pub async fn open(dir: &Path) -> Result<Self> {
        let dir = dir.to_path_buf();
        blocking({
            let dir = dir.clone();
            move || {
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Error::unavailable(format!("creating package directory {}", dir.display()))
                        .with_source(e)
                })
            }
        })
        .await?;
        Ok(LocalPackageStore { dir })
    }

    /// Where `digest` lives.
    fn path_of(&self, digest: &PackageDigest) -> PathBuf {
        let shard = digest.as_str().get(..2).unwrap_or("00");
        self.dir.join(shard).join(format!("{digest}.fxpkg"))
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .kind_context(ErrorKind::Internal, || "package store task failed".into())?
}

fn io_error(what: &str, digest: &PackageDigest, path: &Path, e: std::io::Error) -> Error {
    Error::unavailable(format!("{what} package {digest} at {}", path.display())).with_source(e)
}

#[async_trait]
impl PackageStore for LocalPackageStore {
    async fn put(&self, digest: &PackageDigest, bytes: Bytes) -> Result<()> {
        let path = self.path_of(digest);
        let digest = digest.clone();
        blocking(move || {
            digest.verify(&bytes)?;
            // Same digest, same length: the same bytes are there already.
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.len() == bytes.len() as u64 {
                    return Ok(());
                }
                tracing::warn!(digest = %digest, path = %path.display(), "stored package has the wrong size, replacing it");
            }
            write_atomically(&path, &bytes).map_err(|e| io_error("writing", &digest, &path, e))?;
            tracing::debug!(digest = %digest, size = bytes.len(), "package stored");
            Ok(())
        })
        .await
    }

    async fn get(&self, digest: &PackageDigest) -> Result<Bytes> {
        let path = self.path_of(digest);
        let digest = digest.clone();
        blocking(move || {
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::not_found(format!("package {digest} not found")));
                }
                Err(e) => return Err(io_error("reading", &digest, &path, e)),
            };
            if let Err(e) = digest.verify(&bytes) {
                tracing::error!(digest = %digest, path = %path.display(), "stored package is corrupt");
                return Err(Error::invalid(format!(
                    "stored bytes of package {digest} at {} do not match the digest",
                    path.display()
                ))
                .with_source(e));
            }
            Ok(Bytes::from(bytes))
        })
        .await
    }

    async fn exists(&self, digest: &PackageDigest) -> Result<bool> {
        let path = self.path_of(digest);
        let digest = digest.clone();
        blocking(move || {
            path.try_exists()
                .map_err(|e| io_error("checking", &digest, &path, e))
        })
        .await
    }

    async fn delete(&self, digest: &PackageDigest) -> Result<()> {
        let path = self.path_of(digest);
        let digest = digest.clone();
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::debug!(digest = %digest, "package deleted");
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("deleting", &digest, &path, e)),
        })
        .await
    }
}

/// Writes `bytes` to a temporary file next to `path`, then renames it into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("package");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalPackageStore::open(&dir.path().join("packages"))
            .await
            .unwrap();
        crate::objects::testsuite::run(&store).await;
    }

    #[tokio::test]
    async fn archives_are_sharded_by_the_first_two_digits() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalPackageStore::open(dir.path()).await.unwrap();
        let bytes = Bytes::from_static(b"archive");
        let digest = PackageDigest::of(&bytes);
        store.put(&digest, bytes.clone()).await.unwrap();
        let expected = dir
            .path()
            .join(&digest.as_str()[..2])
            .join(format!("{}.fxpkg", digest.as_str()));
        assert_eq!(std::fs::read(expected).unwrap(), bytes);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(&digest.as_str()[..2]))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    }

    #[tokio::test]
    async fn a_corrupt_file_is_never_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalPackageStore::open(dir.path()).await.unwrap();
        let bytes = Bytes::from_static(b"the real archive");
        let digest = PackageDigest::of(&bytes);
        store.put(&digest, bytes.clone()).await.unwrap();
        std::fs::write(store.path_of(&digest), b"the real archivX").unwrap();
        let err = store.get(&digest).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains("do not match the digest"), "{err}");
        assert!(err.message().contains(digest.as_str()), "{err}");

        // Storing the right bytes again repairs a file of the wrong size.
        std::fs::write(store.path_of(&digest), b"truncated").unwrap();
        store.put(&digest, bytes.clone()).await.unwrap();
        assert_eq!(store.get(&digest).await.unwrap(), bytes);
    }
}
