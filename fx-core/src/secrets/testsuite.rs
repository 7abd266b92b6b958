//! The conformance suite every [`SecretRecords`] store passes, run on an empty store.

// Test code that lives in the library so that every backend can run it; a failed check
// panics, as in any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Duration, Utc};

use super::{SecretMeta, SecretRecord, SecretRecords};

fn record(name: &str, pools: &[&str], key: &str, sealed: &[u8]) -> SecretRecord {
    let at = Utc::now() - Duration::seconds(10);
    SecretRecord {
        meta: SecretMeta {
            name: name.into(),
            pools: pools.iter().map(|p| p.to_string()).collect(),
            version: 1,
            key_id: key.into(),
            created_at: at,
            updated_at: at,
            updated_by: "alice".into(),
        },
        sealed: sealed.to_vec(),
    }
}

/// Runs the suite on an empty store.
pub async fn run(store: &dyn SecretRecords) {
    assert!(store.secrets().await.unwrap().is_empty());
    assert!(store.secret("db-password").await.unwrap().is_none());
    assert!(!store.delete_secret("db-password").await.unwrap());

    // Create: version 1, as written.
    let first = record("db-password", &["default"], "k1", b"sealed-1");
    let meta = store.put_secret(&first).await.unwrap();
    assert_eq!(meta.version, 1);
    assert_eq!(meta.pools, vec!["default".to_string()]);
    let read = store.secret("db-password").await.unwrap().unwrap();
    assert_eq!(read.sealed, b"sealed-1");
    assert_eq!(read.meta.key_id, "k1");
    assert_eq!(read.meta.updated_by, "alice");
    assert_eq!(
        read.meta.created_at.timestamp_micros(),
        first.meta.created_at.timestamp_micros()
    );

    // Replace: one more version, created_at kept, the rest replaced.
    let mut second = record("db-password", &["gpu", "default"], "k2", b"sealed-2");
    second.meta.created_at = Utc::now();
    second.meta.updated_at = Utc::now();
    second.meta.updated_by = "bob".into();
    let meta = store.put_secret(&second).await.unwrap();
    assert_eq!(meta.version, 2);
    assert_eq!(
        meta.created_at.timestamp_micros(),
        first.meta.created_at.timestamp_micros()
    );
    let read = store.secret("db-password").await.unwrap().unwrap();
    assert_eq!(read.sealed, b"sealed-2");
    assert_eq!(
        read.meta.pools,
        vec!["gpu".to_string(), "default".to_string()]
    );
    assert_eq!(read.meta.updated_by, "bob");
    assert_eq!(read.meta.version, 2);

    // Listed by name.
    store
        .put_secret(&record("api-key", &["*"], "k1", b"sealed-3"))
        .await
        .unwrap();
    let names: Vec<String> = store
        .secrets()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.meta.name)
        .collect();
    assert_eq!(names, ["api-key", "db-password"]);

    // Re-seal: only at the version and key it was read at; the version stays.
    assert!(!store
        .reseal_secret("db-password", 1, "k2", "k3", b"stale")
        .await
        .unwrap());
    assert!(!store
        .reseal_secret("db-password", 2, "k1", "k3", b"stale")
        .await
        .unwrap());
    assert!(store
        .reseal_secret("db-password", 2, "k2", "k3", b"sealed-4")
        .await
        .unwrap());
    let read = store.secret("db-password").await.unwrap().unwrap();
    assert_eq!((read.meta.version, read.meta.key_id.as_str()), (2, "k3"));
    assert_eq!(read.sealed, b"sealed-4");
    assert!(!store
        .reseal_secret("nothing", 1, "k1", "k3", b"x")
        .await
        .unwrap());

    // Delete.
    assert!(store.delete_secret("db-password").await.unwrap());
    assert!(!store.delete_secret("db-password").await.unwrap());
    assert!(store.secret("db-password").await.unwrap().is_none());
    assert_eq!(store.secrets().await.unwrap().len(), 1);
}
