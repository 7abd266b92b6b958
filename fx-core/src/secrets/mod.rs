//! Secrets managed by the platform: written through the API, UI or CLI (never read back),
//! stored encrypted at rest in the state database, and delivered to the executors of the pools
//! allowed to use them.
//!
//! - [`keyring`]: the AEAD keys (AES-256-GCM) from a file or an environment variable; the
//!   first key seals, every key opens, so a key is rotated by putting a new one first and
//!   re-sealing ([`Vault::rekey`]).
//! - [`vault`]: seals, opens, lists, deletes and delivers secrets over a [`SecretRecords`]
//!   store; only the management server holds the keyring.
//! - [`SecretRecords`]: the store port, implemented by both state stores (SQLite schema step
//!   5, PostgreSQL migration 5), with its conformance `testsuite`.
//! - [`delivery`]: how an executor gets the values of its pool: in process (`ferrisfx dev`) or
//!   from the management server over HTTP with a service account's token.
//!
//! A value lives in a [`SecretValue`], whose `Debug` and `Display` print `***` and whose
//! memory is wiped when dropped: it reaches a log line only by calling [`SecretValue::expose`].

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod delivery;
pub mod keyring;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
pub mod vault;

#[cfg(test)]
mod tests;

pub use delivery::SecretDelivery;
pub use keyring::{Keyring, SecretsSettings};
pub use vault::Vault;

/// The most bytes of one secret value.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

/// The most secrets the platform holds: a pool's executors receive all of theirs in one
/// answer, so the count (with [`MAX_SECRET_BYTES`] each) bounds that answer.
pub const MAX_SECRETS: usize = 1000;

/// The pool pattern that lets every pool's executors receive a secret.
pub const ALL_POOLS: &str = "*";

/// A secret's value: printed as `***`, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(zeroize::Zeroizing<String>);

impl SecretValue {
    /// Wraps a value, checking its size.
    pub fn new(value: impl Into<String>) -> Result<Self> {
        let value = zeroize::Zeroizing::new(value.into());
        if value.len() > MAX_SECRET_BYTES {
            return Err(Error::invalid(format!(
                "a secret value is at most {MAX_SECRET_BYTES} bytes, got {}",
                value.len()
            )));
        }
        Ok(SecretValue(value))
    }

    /// The value itself. Every call is a place where a secret leaves its wrapper: never log
    /// what it returns.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What may be shown of a secret: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretMeta {
    /// Its name, as handlers grant it and functions read it.
    pub name: String,
    /// The pools whose executors receive it (pool names, or `*` for every pool).
    pub pools: Vec<String>,
    /// 1 when created, one more on each change of its value or pools.
    pub version: i64,
    /// The id of the key that sealed it.
    pub key_id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its value or pools last changed.
    pub updated_at: DateTime<Utc>,
    /// Who last changed it.
    pub updated_by: String,
}

impl SecretMeta {
    /// Whether executors of `pool` receive it.
    pub fn delivered_to(&self, pool: &str) -> bool {
        self.pools.iter().any(|p| p == ALL_POOLS || p == pool)
    }
}

/// A secret as stored: its metadata and its sealed value (nonce, ciphertext and tag).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// Everything but the value.
    pub meta: SecretMeta,
    /// The value sealed with key `meta.key_id` ([`keyring::Keyring::seal`]).
    pub sealed: Vec<u8>,
}

impl fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRecord")
            .field("meta", &self.meta)
            .field("sealed_bytes", &self.sealed.len())
            .finish()
    }
}

/// Checks a secret's name (the rules of configuration keys: it is a file name in an
/// executor's secrets directory too).
pub fn validate_secret_name(name: &str) -> Result<()> {
    crate::validate::validate_key("secret name", name)
}

/// Checks the pools a secret is delivered to: at least one, each a pool name or `*`.
pub fn validate_pools(pools: &[String]) -> Result<()> {
    if pools.is_empty() {
        return Err(Error::invalid(
            "a secret needs at least one pool its executors receive it in (a pool name, or * for every pool)",
        ));
    }
    if pools.len() > 64 {
        return Err(Error::invalid("a secret names at most 64 pools"));
    }
    for pool in pools {
        if pool != ALL_POOLS {
            crate::validate::validate_name("pool", pool)?;
        }
    }
    Ok(())
}

/// The secret store port: sealed records in the state database.
#[async_trait]
pub trait SecretRecords: Send + Sync + 'static {
    /// Creates secret `record.meta.name` at version 1, or replaces its pools, key and sealed
    /// value and adds one to its version; `created_at` of an existing secret is kept. Answers
    /// the metadata as stored.
    async fn put_secret(&self, record: &SecretRecord) -> Result<SecretMeta>;

    /// One secret.
    async fn secret(&self, name: &str) -> Result<Option<SecretRecord>>;

    /// Every secret, by name.
    async fn secrets(&self) -> Result<Vec<SecretRecord>>;

    /// Deletes a secret; `false` when there was none.
    async fn delete_secret(&self, name: &str) -> Result<bool>;

    /// Replaces the key and sealed value of secret `name` if it is still at `version` and
    /// sealed with `old_key_id`, keeping its version (a re-seal under a new key changes no
    /// value); `false` when it changed meanwhile.
    async fn reseal_secret(
        &self,
        name: &str,
        version: i64,
        old_key_id: &str,
        key_id: &str,
        sealed: &[u8],
    ) -> Result<bool>;
}
