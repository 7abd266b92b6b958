//! The event catalogue in the SQLite state database (schema step 11).
//!
//! A flush is one immediate transaction (the writer lock of the file): forget the stale
//! entries, read those of the flushed keys, merge, write back. Two processes sharing the file
//! serialize there, so neither loses the other's counts.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::rows::{micros, time};
use super::SqliteStateStore;
use crate::catalogue::{
    merge_observations, CatalogueEntry, CatalogueLimits, CatalogueQuery, CatalogueSummary,
    EntryRow, EventCatalogue, Observation, Recorded,
};
use crate::error::Result;
use crate::sqlite::db;

const COLUMNS: &str = "source, type, first_seen, last_seen, count, last_change, hours, doc";

/// The row of (`source`, `ty`), if there is one.
fn read_row(conn: &Connection, source: &str, ty: &str) -> Result<Option<EntryRow>> {
    let what = || format!("reading catalogue entry {source} {ty}");
    let row = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM event_catalogue WHERE source = ?1 AND type = ?2"
        ))
        .map_err(db(what()))?
        .query_row(params![source, ty], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })
        .optional()
        .map_err(db(what()))?;
    let Some((source, ty, first, last, count, change, hours, doc)) = row else {
        return Ok(None);
    };
    Ok(Some(EntryRow {
        source,
        ty,
        first_seen: time(first)?,
        last_seen: time(last)?,
        count,
        last_change: change.map(time).transpose()?,
        hours,
        doc,
    }))
}

#[async_trait]
impl EventCatalogue for SqliteStateStore {
    async fn record(
        &self,
        observations: &[Observation],
        limits: &CatalogueLimits,
        now: DateTime<Utc>,
    ) -> Result<Recorded> {
        let observations = observations.to_vec();
        let limits = *limits;
        self.call(move |conn| {
            let what = "recording the event catalogue";
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db(what))?;
            let forgotten = tx
                .execute(
                    "DELETE FROM event_catalogue WHERE last_seen < ?1",
                    params![micros(now - limits.forget_after)],
                )
                .map_err(db("forgetting stale catalogue entries"))?;
            let mut existing = HashMap::new();
            for o in &observations {
                if let Some(row) = read_row(&tx, &o.source, &o.ty)? {
                    existing.insert((o.source.clone(), o.ty.clone()), CatalogueEntry::from_row(row)?);
                }
            }
            let stored: i64 = tx
                .query_row("SELECT count(*) FROM event_catalogue", [], |r| r.get(0))
                .map_err(db("counting catalogue entries"))?;
            let room = limits
                .max_entries
                .saturating_sub(u64::try_from(stored).unwrap_or(0));
            let (entries, refused) = merge_observations(&observations, existing, room, now);
            {
                let mut upsert = tx
                    .prepare_cached(&format!(
                        "INSERT INTO event_catalogue ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (source, type) DO UPDATE SET
                             first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                             count = excluded.count, last_change = excluded.last_change,
                             hours = excluded.hours, doc = excluded.doc"
                    ))
                    .map_err(db(what))?;
                for entry in &entries {
                    let row = entry.to_row()?;
                    upsert
                        .execute(params![
                            row.source,
                            row.ty,
                            micros(row.first_seen),
                            micros(row.last_seen),
                            row.count,
                            row.last_change.map(micros),
                            row.hours,
                            row.doc
                        ])
                        .map_err(db(format!("writing catalogue entry {} {}", row.source, row.ty)))?;
                }
            }
            tx.commit().map_err(db(what))?;
            Ok(Recorded {
                entries: entries.len() as u64,
                dropped_keys: refused.len() as u64,
                dropped_events: refused.iter().map(|(_, _, n)| n).sum(),
                forgotten: forgotten as u64,
            })
        })
        .await
    }

    async fn list_catalogue(
        &self,
        query: &CatalogueQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<CatalogueSummary>> {
        let (source, ty, limit) = (
            query.source_filter(),
            query.type_filter(),
            query.page_size(),
        );
        self.call(move |conn| {
            let what = || "listing the event catalogue".to_string();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT source, type, first_seen, last_seen, count, last_change, hours
                     FROM event_catalogue
                     WHERE (?1 IS NULL OR instr(lower(source), ?1) > 0)
                       AND (?2 IS NULL OR instr(lower(type), ?2) > 0)
                     ORDER BY source, type LIMIT ?3",
                )
                .map_err(db(what()))?;
            let rows = stmt
                .query_map(params![source, ty, limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                })
                .map_err(db(what()))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db(what()))?;
            rows.into_iter()
                .map(|(source, ty, first, last, count, change, hours)| {
                    CatalogueSummary::of(
                        (source, ty, time(first)?, time(last)?, count),
                        change.map(time).transpose()?,
                        &hours,
                        now,
                    )
                })
                .collect()
        })
        .await
    }

    async fn catalogue_entry(&self, source: &str, ty: &str) -> Result<Option<CatalogueEntry>> {
        let (source, ty) = (source.to_string(), ty.to_string());
        self.call(move |conn| {
            read_row(conn, &source, &ty)?
                .map(CatalogueEntry::from_row)
                .transpose()
        })
        .await
    }
}
