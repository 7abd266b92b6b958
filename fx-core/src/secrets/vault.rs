//! Seals, opens, lists, deletes and delivers platform secrets. Only the management server (and
//! `ferrisfx dev`, in process) holds a vault with a keyring; executors receive their pool's
//! values through [`super::delivery`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use super::{
    validate_pools, validate_secret_name, Keyring, SecretDelivery, SecretMeta, SecretRecord,
    SecretRecords, SecretValue,
};
use crate::error::{Error, Result};

/// The platform's secrets: a store of sealed records and the keyring that opens them.
#[derive(Clone)]
pub struct Vault {
    records: Arc<dyn SecretRecords>,
    keyring: Option<Arc<Keyring>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// A vault over `records`; without a keyring, it lists and deletes but cannot seal or open.
    pub fn new(records: Arc<dyn SecretRecords>, keyring: Option<Keyring>) -> Self {
        Vault {
            records,
            keyring: keyring.map(Arc::new),
        }
    }

    /// Whether it has a keyring.
    pub fn configured(&self) -> bool {
        self.keyring.is_some()
    }

    /// The keyring's ids, the sealing one first; empty without a keyring.
    pub fn key_ids(&self) -> Vec<String> {
        self.keyring
            .as_ref()
            .map(|k| k.ids().into_iter().map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn keyring(&self) -> Result<&Keyring> {
        self.keyring.as_deref().ok_or_else(|| {
            Error::unavailable(
                "platform secrets are not configured on this server: give it a keyring (server.secrets.key_file, or the FX_SECRETS_KEY variable; `ferrisfx secret keygen` prints a key)",
            )
        })
    }

    /// Creates or changes secret `name`: its value and the pools whose executors receive it.
    pub async fn set(
        &self,
        name: &str,
        value: &SecretValue,
        pools: Vec<String>,
        by: &str,
    ) -> Result<SecretMeta> {
        validate_secret_name(name)?;
        validate_pools(&pools)?;
        let keyring = self.keyring()?;
        let existing = self.records.secrets().await?;
        if existing.len() >= super::MAX_SECRETS && !existing.iter().any(|r| r.meta.name == name) {
            return Err(Error::invalid(format!(
                "the platform holds {} secrets, the most it takes: delete one first",
                existing.len()
            )));
        }
        let (key_id, sealed) = keyring.seal(name, value)?;
        let now = Utc::now();
        let meta = self
            .records
            .put_secret(&SecretRecord {
                meta: SecretMeta {
                    name: name.to_string(),
                    pools,
                    version: 1,
                    key_id,
                    created_at: now,
                    updated_at: now,
                    updated_by: by.to_string(),
                },
                sealed,
            })
            .await?;
        tracing::info!(secret = %meta.name, version = meta.version, pools = ?meta.pools, by, "secret written");
        Ok(meta)
    }

    /// Every secret's metadata, by name.
    pub async fn list(&self) -> Result<Vec<SecretMeta>> {
        Ok(self
            .records
            .secrets()
            .await?
            .into_iter()
            .map(|r| r.meta)
            .collect())
    }

    /// One secret's metadata.
    pub async fn meta(&self, name: &str) -> Result<Option<SecretMeta>> {
        Ok(self.records.secret(name).await?.map(|r| r.meta))
    }

    /// The value of secret `name`, for the server's own use (a webhook's signing secret);
    /// `None` when there is no such secret.
    pub async fn value(&self, name: &str) -> Result<Option<SecretValue>> {
        let keyring = self.keyring()?;
        let Some(record) = self.records.secret(name).await? else {
            return Ok(None);
        };
        keyring
            .open(&record.meta.name, &record.meta.key_id, &record.sealed)
            .map(Some)
    }

    /// Deletes secret `name`; `false` when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        let deleted = self.records.delete_secret(name).await?;
        if deleted {
            tracing::info!(secret = name, "secret deleted");
        }
        Ok(deleted)
    }

    /// The values of the secrets delivered to `pool`. A secret that does not open (its key
    /// left the keyring, or its record was altered) is left out with an error log naming it;
    /// the others are delivered.
    pub async fn values_for(&self, pool: &str) -> Result<BTreeMap<String, SecretValue>> {
        let keyring = self.keyring()?;
        let mut values = BTreeMap::new();
        for record in self.records.secrets().await? {
            if !record.meta.delivered_to(pool) {
                continue;
            }
            match keyring.open(&record.meta.name, &record.meta.key_id, &record.sealed) {
                Ok(value) => {
                    values.insert(record.meta.name, value);
                }
                Err(e) => {
                    tracing::error!(secret = %record.meta.name, key = %record.meta.key_id, error = %e, "a secret cannot be opened; it is not delivered")
                }
            }
        }
        Ok(values)
    }

    /// Re-seals with the keyring's first key every secret sealed with another; answers how
    /// many were re-sealed. A secret changed meanwhile is left as its writer sealed it (with
    /// the first key already).
    pub async fn rekey(&self) -> Result<u64> {
        let keyring = self.keyring()?;
        let mut resealed = 0;
        for record in self.records.secrets().await? {
            let meta = &record.meta;
            if meta.key_id == keyring.primary() {
                continue;
            }
            let value = keyring.open(&meta.name, &meta.key_id, &record.sealed)?;
            let (key_id, sealed) = keyring.seal(&meta.name, &value)?;
            if self
                .records
                .reseal_secret(&meta.name, meta.version, &meta.key_id, &key_id, &sealed)
                .await?
            {
                resealed += 1;
            }
        }
        if resealed > 0 {
            tracing::info!(resealed, key = keyring.primary(), "secrets re-sealed");
        }
        Ok(resealed)
    }
}

#[async_trait]
impl SecretDelivery for Vault {
    async fn deliver(&self, pool: &str) -> Result<BTreeMap<String, SecretValue>> {
        self.values_for(pool).await
    }

    fn describe(&self) -> String {
        "the platform's secrets (in process)".into()
    }
}
