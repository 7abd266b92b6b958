//! Platform secrets in the SQLite state database (schema step 5): sealed records only.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::rows::{collect, from_json, micros, time, to_json};
use super::SqliteStateStore;
use crate::error::Result;
use crate::secrets::{SecretMeta, SecretRecord, SecretRecords};
use crate::sqlite::db;
use crate::store::encoding::SECRET_COLUMNS;

fn secret(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<SecretRecord>> {
    let name: String = row.get(0)?;
    let pools: String = row.get(1)?;
    let (version, key_id, sealed): (i64, String, Vec<u8>) = (row.get(2)?, row.get(3)?, row.get(4)?);
    let (created, updated): (i64, i64) = (row.get(5)?, row.get(6)?);
    let updated_by: String = row.get(7)?;
    Ok((|| {
        Ok(SecretRecord {
            meta: SecretMeta {
                pools: from_json(&format!("pools of secret {name}"), &pools)?,
                created_at: time(created)?,
                updated_at: time(updated)?,
                name,
                version,
                key_id,
                updated_by,
            },
            sealed,
        })
    })())
}

#[async_trait]
impl SecretRecords for SqliteStateStore {
    async fn put_secret(&self, record: &SecretRecord) -> Result<SecretMeta> {
        let r = record.clone();
        let pools = to_json("pools", &r.meta.pools)?;
        self.call(move |conn| {
            let m = &r.meta;
            conn.query_row(
                &format!(
                    "INSERT INTO secrets ({SECRET_COLUMNS}) VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (name) DO UPDATE SET pools_json = excluded.pools_json,
                        version = secrets.version + 1, key_id = excluded.key_id,
                        sealed = excluded.sealed, updated_at = excluded.updated_at,
                        updated_by = excluded.updated_by
                     RETURNING {SECRET_COLUMNS}"
                ),
                params![
                    m.name,
                    pools,
                    m.key_id,
                    r.sealed,
                    micros(m.created_at),
                    micros(m.updated_at),
                    m.updated_by
                ],
                secret,
            )
            .map_err(db(format!("writing secret {}", m.name)))?
            .map(|r| r.meta)
        })
        .await
    }

    async fn secret(&self, name: &str) -> Result<Option<SecretRecord>> {
        let name = name.to_string();
        self.call(move |conn| {
            conn.query_row(
                &format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE name = ?1"),
                params![name],
                secret,
            )
            .optional()
            .map_err(db(format!("reading secret {name}")))?
            .transpose()
        })
        .await
    }

    async fn secrets(&self) -> Result<Vec<SecretRecord>> {
        self.call(|conn| {
            let what = "listing secrets";
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {SECRET_COLUMNS} FROM secrets ORDER BY name"
                ))
                .map_err(db(what))?;
            let rows = stmt.query_map([], secret).map_err(db(what))?;
            collect(rows, what)
        })
        .await
    }

    async fn delete_secret(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.call(move |conn| {
            let deleted = conn
                .execute("DELETE FROM secrets WHERE name = ?1", params![name])
                .map_err(db(format!("deleting secret {name}")))?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn reseal_secret(
        &self,
        name: &str,
        version: i64,
        old_key_id: &str,
        key_id: &str,
        sealed: &[u8],
    ) -> Result<bool> {
        let (name, old, key, sealed) = (
            name.to_string(),
            old_key_id.to_string(),
            key_id.to_string(),
            sealed.to_vec(),
        );
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE secrets SET key_id = ?4, sealed = ?5
                     WHERE name = ?1 AND version = ?2 AND key_id = ?3",
                    params![name, version, old, key, sealed],
                )
                .map_err(db(format!("re-sealing secret {name}")))?;
            Ok(changed > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::SqliteStateStore::open(&dir.path().join("state.sqlite"))
            .await
            .unwrap();
        crate::secrets::testsuite::run(&store).await;
    }
}
