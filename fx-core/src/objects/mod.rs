//! The package store port: archives addressed by their SHA-256 digest.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;
use crate::package::PackageDigest;

pub mod local;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

/// Where package archives live.
#[async_trait]
pub trait PackageStore: Send + Sync + 'static {
    /// Stores `bytes` under `digest`, after checking that they hash to it (`Invalid` if not).
    /// Storing the same bytes again is a no-op.
    async fn put(&self, digest: &PackageDigest, bytes: Bytes) -> Result<()>;

    /// The bytes stored under `digest` (`NotFound` if absent), verified against the digest
    /// (`Invalid` if they do not match: a corrupt object is never handed out).
    async fn get(&self, digest: &PackageDigest) -> Result<Bytes>;

    /// Whether `digest` is stored.
    async fn exists(&self, digest: &PackageDigest) -> Result<bool>;

    /// Removes `digest`; removing an absent digest is a no-op.
    async fn delete(&self, digest: &PackageDigest) -> Result<()>;

    /// Answers when the store can be read (for readiness): looks up a digest no package has.
    async fn ready(&self) -> Result<()> {
        self.exists(&PackageDigest::of(b"")).await.map(|_| ())
    }
}
