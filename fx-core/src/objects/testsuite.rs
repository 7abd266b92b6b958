//! The conformance suite of the package store port, run by every backend's tests.
//!
//! Every archive's bytes carry a unique suffix, so their digests are new to the store and the
//! suite also runs against a shared bucket.

// Test code that lives in the library so that every backend (in any crate) can run it; a
// failed check panics, as in any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;

use super::PackageStore;
use crate::error::ErrorKind;
use crate::package::PackageDigest;
use crate::testsupport::unique;

/// Runs every check against `store`.
pub async fn run(store: &dyn PackageStore) {
    put_get_exists_delete_round_trip(store).await;
    bytes_that_do_not_match_the_digest_are_refused(store).await;
    missing_archives_are_not_found(store).await;
    storing_twice_is_a_no_op(store).await;
    concurrent_puts_of_one_archive_all_succeed(store).await;
    large_archives_round_trip(store).await;
}

/// The bytes of an archive no other test (or run) stores.
fn unique_bytes(prefix: &str) -> Bytes {
    Bytes::from(format!("fx conformance archive {}", unique(prefix)))
}

async fn put_get_exists_delete_round_trip(store: &dyn PackageStore) {
    let bytes = unique_bytes("roundtrip");
    let digest = PackageDigest::of(&bytes);
    assert!(!store.exists(&digest).await.unwrap());
    store.put(&digest, bytes.clone()).await.unwrap();
    assert!(store.exists(&digest).await.unwrap());
    assert_eq!(store.get(&digest).await.unwrap(), bytes);
    store.delete(&digest).await.unwrap();
    assert!(!store.exists(&digest).await.unwrap());
    assert_eq!(
        store.get(&digest).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    // Deleting an absent archive is a no-op.
    store.delete(&digest).await.unwrap();
}

async fn bytes_that_do_not_match_the_digest_are_refused(store: &dyn PackageStore) {
    let bytes = unique_bytes("mismatch");
    let digest = PackageDigest::of(&bytes);
    let err = store.put(&digest, unique_bytes("other")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("digest"), "{err}");
    assert!(
        !store.exists(&digest).await.unwrap(),
        "nothing is stored on a mismatch"
    );
}

async fn missing_archives_are_not_found(store: &dyn PackageStore) {
    let digest = PackageDigest::of(&unique_bytes("missing"));
    let err = store.get(&digest).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains(digest.as_str()), "{err}");
    assert!(!store.exists(&digest).await.unwrap());
}

async fn storing_twice_is_a_no_op(store: &dyn PackageStore) {
    let bytes = unique_bytes("twice");
    let digest = PackageDigest::of(&bytes);
    store.put(&digest, bytes.clone()).await.unwrap();
    store.put(&digest, bytes.clone()).await.unwrap();
    assert_eq!(store.get(&digest).await.unwrap(), bytes);
    store.delete(&digest).await.unwrap();

    let empty = Bytes::new();
    let digest = PackageDigest::of(&empty);
    store.put(&digest, empty.clone()).await.unwrap();
    assert_eq!(store.get(&digest).await.unwrap(), empty);
}

async fn concurrent_puts_of_one_archive_all_succeed(store: &dyn PackageStore) {
    let bytes = unique_bytes("race");
    let digest = PackageDigest::of(&bytes);
    let results =
        futures::future::join_all((0..8).map(|_| store.put(&digest, bytes.clone()))).await;
    for result in results {
        result.unwrap();
    }
    assert_eq!(store.get(&digest).await.unwrap(), bytes);
    store.delete(&digest).await.unwrap();
}

async fn large_archives_round_trip(store: &dyn PackageStore) {
    let mut bytes = unique_bytes("large").to_vec();
    bytes.extend((0..4 * 1024 * 1024).map(|i: u32| (i % 251) as u8));
    let bytes = Bytes::from(bytes);
    let digest = PackageDigest::of(&bytes);
    store.put(&digest, bytes.clone()).await.unwrap();
    assert_eq!(store.get(&digest).await.unwrap(), bytes);
    store.delete(&digest).await.unwrap();
}
