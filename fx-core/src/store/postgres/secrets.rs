//! Platform secrets in the PostgreSQL state schema (migration 5): sealed records only.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::rows::{from_json, get, to_json};
use super::PostgresStateStore;
use crate::error::Result;
use crate::secrets::{SecretMeta, SecretRecord, SecretRecords};
use crate::store::encoding::SECRET_COLUMNS;

fn secret(row: &Row) -> Result<SecretRecord> {
    let name: String = get(row, 0)?;
    Ok(SecretRecord {
        meta: SecretMeta {
            pools: from_json(&format!("pools of secret {name}"), &get::<String>(row, 1)?)?,
            version: get(row, 2)?,
            key_id: get(row, 3)?,
            created_at: get(row, 5)?,
            updated_at: get(row, 6)?,
            updated_by: get(row, 7)?,
            name,
        },
        sealed: get(row, 4)?,
    })
}

#[async_trait]
impl SecretRecords for PostgresStateStore {
    async fn put_secret(&self, record: &SecretRecord) -> Result<SecretMeta> {
        let m = &record.meta;
        let pools = to_json("pools", &m.pools)?;
        let rows = self
            .rows(
                &format!("writing secret {}", m.name),
                &format!(
                    "INSERT INTO secrets ({SECRET_COLUMNS}) VALUES ($1, $2, 1, $3, $4, $5, $6, $7)
                     ON CONFLICT (name) DO UPDATE SET pools_json = excluded.pools_json,
                        version = secrets.version + 1, key_id = excluded.key_id,
                        sealed = excluded.sealed, updated_at = excluded.updated_at,
                        updated_by = excluded.updated_by
                     RETURNING {SECRET_COLUMNS}"
                ),
                &[
                    &m.name,
                    &pools,
                    &m.key_id,
                    &record.sealed,
                    &m.created_at,
                    &m.updated_at,
                    &m.updated_by,
                ],
            )
            .await?;
        let row = rows.first().ok_or_else(|| {
            crate::Error::internal(format!("writing secret {} returned no row", m.name))
        })?;
        Ok(secret(row)?.meta)
    }

    async fn secret(&self, name: &str) -> Result<Option<SecretRecord>> {
        self.rows(
            &format!("reading secret {name}"),
            &format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE name = $1"),
            &[&name],
        )
        .await?
        .first()
        .map(secret)
        .transpose()
    }

    async fn secrets(&self) -> Result<Vec<SecretRecord>> {
        self.rows(
            "listing secrets",
            &format!("SELECT {SECRET_COLUMNS} FROM secrets ORDER BY name"),
            &[],
        )
        .await?
        .iter()
        .map(secret)
        .collect()
    }

    async fn delete_secret(&self, name: &str) -> Result<bool> {
        Ok(!self
            .rows(
                &format!("deleting secret {name}"),
                "DELETE FROM secrets WHERE name = $1 RETURNING 1",
                &[&name],
            )
            .await?
            .is_empty())
    }

    async fn reseal_secret(
        &self,
        name: &str,
        version: i64,
        old_key_id: &str,
        key_id: &str,
        sealed: &[u8],
    ) -> Result<bool> {
        Ok(!self
            .rows(
                &format!("re-sealing secret {name}"),
                "UPDATE secrets SET key_id = $4, sealed = $5
                 WHERE name = $1 AND version = $2 AND key_id = $3 RETURNING 1",
                &[&name, &version, &old_key_id, &key_id, &sealed],
            )
            .await?
            .is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{drop_schema, fresh_settings};
    use super::PostgresStateStore;

    #[tokio::test]
    async fn postgres_secret_store_passes_the_conformance_suite() {
        let Some(settings) = fresh_settings("postgres_secret_store_passes_the_conformance_suite")
        else {
            return;
        };
        let store = PostgresStateStore::open(&settings).await.unwrap();
        crate::secrets::testsuite::run(&store).await;
        drop(store);
        drop_schema(&settings).await;
    }
}
