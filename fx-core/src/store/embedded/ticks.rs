//! The schedules' ticks in the SQLite state database (schema step 8).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::params;

use super::rows::{micros, time};
use super::SqliteStateStore;
use crate::error::Result;
use crate::schedule::TickLedger;
use crate::sqlite::db;

#[async_trait]
impl TickLedger for SqliteStateStore {
    async fn last_ticks(&self) -> Result<HashMap<String, DateTime<Utc>>> {
        let rows = self
            .call(|conn| {
                let what = || "reading the schedules' last ticks".to_string();
                let mut stmt = conn
                    .prepare_cached("SELECT name, last_tick FROM schedule_ticks")
                    .map_err(db(what()))?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .map_err(db(what()))?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(db(what()));
                rows
            })
            .await?;
        rows.into_iter()
            .map(|(name, at)| Ok((name, time(at)?)))
            .collect()
    }

    async fn claim_tick(&self, name: &str, at: DateTime<Utc>) -> Result<bool> {
        let name = name.to_string();
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "INSERT INTO schedule_ticks (name, last_tick) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick
                     WHERE excluded.last_tick > schedule_ticks.last_tick",
                    params![name, micros(at)],
                )
                .map_err(db(format!("claiming a tick of schedule {name}")))?;
            Ok(changed == 1)
        })
        .await
    }

    async fn forget_ticks(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.call(move |conn| {
            conn.execute("DELETE FROM schedule_ticks WHERE name = ?1", params![name])
                .map_err(db(format!("forgetting the ticks of schedule {name}")))?;
            Ok(())
        })
        .await
    }
}
