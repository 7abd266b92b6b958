//! The event catalogue in the PostgreSQL state schema (migration 9).
//!
//! A flush is one transaction that first takes a transaction-level advisory lock on the
//! catalogue of the schema: gateways flushing at once take turns (a flush is a few statements
//! every few seconds), so a new key two of them saw is created once with both counts, and the
//! bound on entries holds. Keys travel as arrays (`unnest`), so a flush of any size is a fixed
//! number of statements.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::rows::get;
use super::PostgresStateStore;
use crate::catalogue::{
    merge_observations, CatalogueEntry, CatalogueLimits, CatalogueQuery, CatalogueSummary,
    EntryRow, EventCatalogue, Observation, Recorded,
};
use crate::error::Result;

const COLUMNS: &str = "source, type, first_seen, last_seen, count, last_change, hours, doc";

fn entry_row(row: &Row) -> Result<EntryRow> {
    Ok(EntryRow {
        source: get(row, 0)?,
        ty: get(row, 1)?,
        first_seen: get(row, 2)?,
        last_seen: get(row, 3)?,
        count: get(row, 4)?,
        last_change: get(row, 5)?,
        hours: get(row, 6)?,
        doc: get(row, 7)?,
    })
}

#[async_trait]
impl EventCatalogue for PostgresStateStore {
    async fn record(
        &self,
        observations: &[Observation],
        limits: &CatalogueLimits,
        now: DateTime<Utc>,
    ) -> Result<Recorded> {
        let what = || "recording the event catalogue".to_string();
        let lock = format!("ferrisfx catalogue {}", self.db.schema());
        let mut client = self.db.client().await?;
        let tx = client.transaction().await.map_err(self.db.error(what()))?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&lock])
            .await
            .map_err(self.db.error(what()))?;
        let forgotten = tx
            .execute(
                "DELETE FROM event_catalogue WHERE last_seen < $1",
                &[&(now - limits.forget_after)],
            )
            .await
            .map_err(self.db.error("forgetting stale catalogue entries"))?;
        let sources: Vec<&str> = observations.iter().map(|o| o.source.as_str()).collect();
        let types: Vec<&str> = observations.iter().map(|o| o.ty.as_str()).collect();
        let rows = tx
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM event_catalogue
                     WHERE (source, type) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
                ),
                &[&sources, &types],
            )
            .await
            .map_err(self.db.error("reading catalogue entries"))?;
        let mut existing = HashMap::new();
        for row in &rows {
            let entry = CatalogueEntry::from_row(entry_row(row)?)?;
            existing.insert((entry.source.clone(), entry.ty.clone()), entry);
        }
        let stored: i64 = get(
            &tx.query_one("SELECT count(*) FROM event_catalogue", &[])
                .await
                .map_err(self.db.error("counting catalogue entries"))?,
            0,
        )?;
        let room = limits
            .max_entries
            .saturating_sub(u64::try_from(stored).unwrap_or(0));
        let (entries, refused) = merge_observations(observations, existing, room, now);
        let rows = entries
            .iter()
            .map(CatalogueEntry::to_row)
            .collect::<Result<Vec<_>>>()?;
        let sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
        let types: Vec<&str> = rows.iter().map(|r| r.ty.as_str()).collect();
        let firsts: Vec<DateTime<Utc>> = rows.iter().map(|r| r.first_seen).collect();
        let lasts: Vec<DateTime<Utc>> = rows.iter().map(|r| r.last_seen).collect();
        let counts: Vec<i64> = rows.iter().map(|r| r.count).collect();
        let changes: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.last_change).collect();
        let hours: Vec<&str> = rows.iter().map(|r| r.hours.as_str()).collect();
        let docs: Vec<&str> = rows.iter().map(|r| r.doc.as_str()).collect();
        tx.execute(
            &format!(
                "INSERT INTO event_catalogue ({COLUMNS})
                 SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[],
                     $4::timestamptz[], $5::int8[], $6::timestamptz[], $7::text[], $8::text[])
                 ON CONFLICT (source, type) DO UPDATE SET
                     first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                     count = excluded.count, last_change = excluded.last_change,
                     hours = excluded.hours, doc = excluded.doc"
            ),
            &[
                &sources, &types, &firsts, &lasts, &counts, &changes, &hours, &docs,
            ],
        )
        .await
        .map_err(self.db.error("writing catalogue entries"))?;
        tx.commit().await.map_err(self.db.error(what()))?;
        Ok(Recorded {
            entries: entries.len() as u64,
            dropped_keys: refused.len() as u64,
            dropped_events: refused.iter().map(|(_, _, n)| n).sum(),
            forgotten,
        })
    }

    async fn list_catalogue(
        &self,
        query: &CatalogueQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<CatalogueSummary>> {
        let (source, ty) = (query.source_filter(), query.type_filter());
        let limit = i64::from(query.page_size());
        let rows = self
            .rows(
                "listing the event catalogue",
                "SELECT source, type, first_seen, last_seen, count, last_change, hours
                 FROM event_catalogue
                 WHERE ($1::text IS NULL OR strpos(lower(source), $1) > 0)
                   AND ($2::text IS NULL OR strpos(lower(type), $2) > 0)
                 ORDER BY source, type LIMIT $3",
                &[&source, &ty, &limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let hours: String = get(row, 6)?;
                CatalogueSummary::of(
                    (
                        get(row, 0)?,
                        get(row, 1)?,
                        get(row, 2)?,
                        get(row, 3)?,
                        get(row, 4)?,
                    ),
                    get(row, 5)?,
                    &hours,
                    now,
                )
            })
            .collect()
    }

    async fn catalogue_entry(&self, source: &str, ty: &str) -> Result<Option<CatalogueEntry>> {
        let rows = self
            .rows(
                &format!("reading catalogue entry {source} {ty}"),
                &format!("SELECT {COLUMNS} FROM event_catalogue WHERE source = $1 AND type = $2"),
                &[&source, &ty],
            )
            .await?;
        rows.first()
            .map(|row| CatalogueEntry::from_row(entry_row(row)?))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, DurationRound as _};
    use serde_json::json;

    use super::super::testing::{drop_schema, fresh_settings};
    use super::*;
    use crate::catalogue::testsuite;

    #[tokio::test]
    async fn postgres_catalogue_passes_the_catalogue_suite() {
        let Some(settings) = fresh_settings("postgres_catalogue_passes_the_catalogue_suite") else {
            return;
        };
        let store = PostgresStateStore::open(&settings).await.unwrap();
        testsuite::run(&store).await;
        drop(store);
        drop_schema(&settings).await;
    }

    /// Two gateways (two stores, two connection pools) flushing a new key at once: it is
    /// created once, with every count.
    #[tokio::test]
    async fn postgres_gateways_flushing_a_new_key_at_once_lose_nothing() {
        let Some(settings) =
            fresh_settings("postgres_gateways_flushing_a_new_key_at_once_lose_nothing")
        else {
            return;
        };
        let a = PostgresStateStore::open(&settings).await.unwrap();
        let b = PostgresStateStore::open(&settings).await.unwrap();
        let now = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
        let limits = CatalogueLimits::default();
        let flushes: Vec<Vec<Observation>> = (0..16)
            .map(|i| testsuite::observe(&[("/race", "raced", json!({ format!("f{i}"): i }))], now))
            .collect();
        let results = futures::future::join_all(flushes.iter().enumerate().map(|(i, o)| {
            let store = if i % 2 == 0 { &a } else { &b };
            store.record(o, &limits, now)
        }))
        .await;
        for result in results {
            result.unwrap();
        }
        let entry = a.catalogue_entry("/race", "raced").await.unwrap().unwrap();
        assert_eq!(entry.count, 16);
        assert_eq!(entry.schema.fields.len(), 17);
        drop((a, b));
        drop_schema(&settings).await;
    }
}
