//! The schedules' ticks in the PostgreSQL state schema (migration 6).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::rows::get;
use super::PostgresStateStore;
use crate::error::Result;
use crate::schedule::TickLedger;

#[async_trait]
impl TickLedger for PostgresStateStore {
    async fn last_ticks(&self) -> Result<HashMap<String, DateTime<Utc>>> {
        let rows = self
            .rows(
                "reading the schedules' last ticks",
                "SELECT name, last_tick FROM schedule_ticks",
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| Ok((get(row, 0)?, get(row, 1)?)))
            .collect()
    }

    async fn claim_tick(&self, name: &str, at: DateTime<Utc>) -> Result<bool> {
        let rows = self
            .rows(
                &format!("claiming a tick of schedule {name}"),
                "INSERT INTO schedule_ticks (name, last_tick) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET last_tick = excluded.last_tick
                 WHERE excluded.last_tick > schedule_ticks.last_tick
                 RETURNING name",
                &[&name, &at],
            )
            .await?;
        Ok(rows.len() == 1)
    }

    async fn forget_ticks(&self, name: &str) -> Result<()> {
        self.rows(
            &format!("forgetting the ticks of schedule {name}"),
            "DELETE FROM schedule_ticks WHERE name = $1",
            &[&name],
        )
        .await?;
        Ok(())
    }
}
