//! The event catalogue: for every (source, type) the gateways have dispatched, how many events
//! arrived per hour, when the first and the last did, a sample event and a schema of their
//! `data` inferred from traffic (new fields and type changes flagged with the time they first
//! appeared).
//!
//! - [`observer`]: each gateway's dispatcher tallies events in memory ([`observer::Observer`]),
//!   cheaply: counts for every event, schema inference and the sample for a few per key per
//!   flush interval. Every few seconds (and at shutdown) it hands its [`Observation`]s to the
//!   store.
//! - [`EventCatalogue`]: the port, in the state store (SQLite or PostgreSQL): merges the
//!   observations of every gateway into one [`CatalogueEntry`] per key, serialized so that two
//!   gateways flushing at once lose nothing.
//! - [`schema`]: the inferred schema, its merge and the changes it shows.
//!
//! Bounded whatever the traffic: at most [`CatalogueLimits::max_entries`] keys (events of
//! further keys are counted as dropped), hourly counts for [`HOURS_KEPT`] hours, keys not seen
//! for [`CatalogueLimits::forget_after`] forgotten, a schema of at most
//! [`schema::MAX_FIELDS`] fields [`schema::MAX_DEPTH`] levels deep, a sample of at most
//! [`MAX_SAMPLE_BYTES`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorKind, Result, ResultExt};

pub mod observer;
pub mod schema;
#[cfg(test)]
mod tests;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use schema::{Change, ChangeKind, JsonType, Schema};

/// Hourly counts are kept for this many hours (7 days), the current one included.
pub const HOURS_KEPT: i64 = 7 * 24;
/// The largest sample event kept, in bytes of its JSON; a larger one is kept without its data.
pub const MAX_SAMPLE_BYTES: usize = 8 * 1024;
/// The longest source plus type catalogued, in bytes; events with longer ones are counted as
/// dropped.
pub const MAX_KEY_BYTES: usize = 1024;
/// The most entries one list returns.
pub const MAX_LIST: u32 = 10_000;

/// How large the catalogue may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogueLimits {
    /// The most (source, type) entries kept; events of a key beyond are counted as dropped.
    pub max_entries: u64,
    /// An entry not seen for this long is forgotten (making room for new keys).
    pub forget_after: Duration,
}

impl Default for CatalogueLimits {
    fn default() -> Self {
        CatalogueLimits {
            max_entries: 10_000,
            forget_after: Duration::days(30),
        }
    }
}

/// What one gateway saw of one (source, type) since its last flush.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The events' `source`.
    pub source: String,
    /// The events' `type`.
    #[serde(rename = "type")]
    pub ty: String,
    /// When the first arrived.
    pub first_seen: DateTime<Utc>,
    /// When the last arrived.
    pub last_seen: DateTime<Utc>,
    /// How many arrived.
    pub count: u64,
    /// How many arrived per hour, by the hour's start (Unix seconds).
    pub hours: BTreeMap<i64, u64>,
    /// The last event sampled, as structured-mode JSON.
    pub sample: Option<Value>,
    /// Whether the sample's data was left out (too large).
    pub sample_truncated: bool,
    /// The schema of the sampled events' data.
    pub schema: Schema,
}

/// The start (Unix seconds) of the hour `at` falls in.
pub fn hour_of(at: DateTime<Utc>) -> i64 {
    at.duration_trunc(Duration::hours(1))
        .unwrap_or(at)
        .timestamp()
}

/// The count of one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourCount {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// Events that arrived in it.
    pub count: u64,
}

/// Everything the catalogue knows of one (source, type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    /// The events' `source`.
    pub source: String,
    /// The events' `type`.
    #[serde(rename = "type")]
    pub ty: String,
    /// When the first arrived.
    pub first_seen: DateTime<Utc>,
    /// When the last arrived.
    pub last_seen: DateTime<Utc>,
    /// How many arrived (since the entry was created).
    pub count: u64,
    /// Counts per hour, by the hour's start (Unix seconds), for the last [`HOURS_KEPT`] hours.
    pub hours: BTreeMap<i64, u64>,
    /// A recent event, as structured-mode JSON.
    pub sample: Option<Value>,
    /// Whether the sample's data was left out (too large).
    pub sample_truncated: bool,
    /// The schema of the events' data, merged over time.
    pub schema: Schema,
}

/// What the store keeps beside the columns: the sample and the schema.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryDocument {
    /// A recent event.
    #[serde(default)]
    pub sample: Option<Value>,
    /// Whether the sample's data was left out.
    #[serde(default)]
    pub sample_truncated: bool,
    /// The schema.
    #[serde(default)]
    pub schema: Schema,
}

/// An entry as a store keeps it: columns and JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRow {
    /// The events' `source`.
    pub source: String,
    /// The events' `type`.
    pub ty: String,
    /// When the first arrived.
    pub first_seen: DateTime<Utc>,
    /// When the last arrived.
    pub last_seen: DateTime<Utc>,
    /// How many arrived.
    pub count: i64,
    /// When the schema last changed (a new field or type), if it did.
    pub last_change: Option<DateTime<Utc>>,
    /// [`CatalogueEntry::hours`] as JSON.
    pub hours: String,
    /// [`EntryDocument`] as JSON.
    pub doc: String,
}

impl CatalogueEntry {
    /// A new entry made of one observation.
    pub fn new(observation: &Observation, now: DateTime<Utc>) -> Self {
        let mut entry = CatalogueEntry {
            source: observation.source.clone(),
            ty: observation.ty.clone(),
            first_seen: observation.first_seen,
            last_seen: observation.last_seen,
            count: 0,
            hours: BTreeMap::new(),
            sample: None,
            sample_truncated: false,
            schema: Schema::default(),
        };
        entry.merge(observation, now);
        entry
    }

    /// Adds `observation` (of the same key): counts add up, times widen, the sample is
    /// replaced, the schemas merge; hours older than [`HOURS_KEPT`] before `now` are dropped.
    pub fn merge(&mut self, observation: &Observation, now: DateTime<Utc>) {
        self.first_seen = self.first_seen.min(observation.first_seen);
        self.last_seen = self.last_seen.max(observation.last_seen);
        self.count = self.count.saturating_add(observation.count);
        for (hour, count) in &observation.hours {
            let slot = self.hours.entry(*hour).or_default();
            *slot = slot.saturating_add(*count);
        }
        let oldest = hour_of(now) - (HOURS_KEPT - 1) * 3600;
        self.hours.retain(|hour, _| *hour >= oldest);
        if observation.sample.is_some() {
            self.sample.clone_from(&observation.sample);
            self.sample_truncated = observation.sample_truncated;
        }
        self.schema.merge(&observation.schema);
    }

    /// The counts of the hours within [`HOURS_KEPT`] before `now`, oldest first.
    pub fn hour_counts(&self, now: DateTime<Utc>) -> Vec<HourCount> {
        hour_counts(&self.hours, now)
    }

    /// The entry as a store keeps it.
    pub fn to_row(&self) -> Result<EntryRow> {
        let doc = EntryDocument {
            sample: self.sample.clone(),
            sample_truncated: self.sample_truncated,
            schema: self.schema.clone(),
        };
        let what = || format!("encoding catalogue entry {} {}", self.source, self.ty);
        Ok(EntryRow {
            source: self.source.clone(),
            ty: self.ty.clone(),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            count: i64::try_from(self.count).unwrap_or(i64::MAX),
            last_change: self.schema.last_change(),
            hours: serde_json::to_string(&self.hours).kind_context(ErrorKind::Internal, what)?,
            doc: serde_json::to_string(&doc).kind_context(ErrorKind::Internal, what)?,
        })
    }

    /// The entry a store's row holds.
    pub fn from_row(row: EntryRow) -> Result<Self> {
        let what = || format!("stored catalogue entry {} {}", row.source, row.ty);
        let hours: BTreeMap<i64, u64> =
            serde_json::from_str(&row.hours).kind_context(ErrorKind::Internal, what)?;
        let doc: EntryDocument =
            serde_json::from_str(&row.doc).kind_context(ErrorKind::Internal, what)?;
        Ok(CatalogueEntry {
            source: row.source,
            ty: row.ty,
            first_seen: row.first_seen,
            last_seen: row.last_seen,
            count: u64::try_from(row.count).unwrap_or(0),
            hours,
            sample: doc.sample,
            sample_truncated: doc.sample_truncated,
            schema: doc.schema,
        })
    }
}

/// The counts of `hours` within [`HOURS_KEPT`] before `now`, oldest first.
pub fn hour_counts(hours: &BTreeMap<i64, u64>, now: DateTime<Utc>) -> Vec<HourCount> {
    let oldest = hour_of(now) - (HOURS_KEPT - 1) * 3600;
    hours
        .range(oldest..)
        .filter_map(|(hour, count)| {
            Some(HourCount {
                hour: DateTime::from_timestamp(*hour, 0)?,
                count: *count,
            })
        })
        .collect()
}

/// One line of the catalogue's list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueSummary {
    /// The events' `source`.
    pub source: String,
    /// The events' `type`.
    #[serde(rename = "type")]
    pub ty: String,
    /// When the first arrived.
    pub first_seen: DateTime<Utc>,
    /// When the last arrived.
    pub last_seen: DateTime<Utc>,
    /// How many arrived.
    pub count: u64,
    /// How many arrived in the last 24 hours (the current hour and the 23 before).
    pub last_24h: u64,
    /// When the schema last changed (a new field or type), if it did.
    pub last_change: Option<DateTime<Utc>>,
}

impl CatalogueSummary {
    /// The summary of a row's columns (`hours` the JSON of the hourly counts).
    pub fn of(
        row: (String, String, DateTime<Utc>, DateTime<Utc>, i64),
        last_change: Option<DateTime<Utc>>,
        hours: &str,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let (source, ty, first_seen, last_seen, count) = row;
        let hours: BTreeMap<i64, u64> = serde_json::from_str(hours)
            .kind_context(ErrorKind::Internal, || {
                format!("stored hourly counts of catalogue entry {source} {ty}")
            })?;
        let since = hour_of(now) - 23 * 3600;
        Ok(CatalogueSummary {
            last_24h: hours.range(since..).map(|(_, c)| *c).sum(),
            source,
            ty,
            first_seen,
            last_seen,
            count: u64::try_from(count).unwrap_or(0),
            last_change,
        })
    }
}

/// A query over the catalogue: entries by source, then type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueQuery {
    /// Only sources containing this (ASCII case ignored).
    #[serde(default)]
    pub source: Option<String>,
    /// Only types containing this (ASCII case ignored).
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    /// The most entries returned: 1 to [`MAX_LIST`], 1,000 by default.
    #[serde(default)]
    pub limit: Option<u32>,
}

impl CatalogueQuery {
    /// The most entries to return.
    pub fn page_size(&self) -> u32 {
        self.limit.unwrap_or(1_000).clamp(1, MAX_LIST)
    }

    /// The source filter, ASCII lowercased; `None` when empty.
    pub fn source_filter(&self) -> Option<String> {
        filter(&self.source)
    }

    /// The type filter, ASCII lowercased; `None` when empty.
    pub fn type_filter(&self) -> Option<String> {
        filter(&self.ty)
    }
}

fn filter(text: &Option<String>) -> Option<String> {
    text.as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
}

/// What a store did with a flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Entries created or updated.
    pub entries: u64,
    /// Observations of new keys refused because the catalogue is full.
    pub dropped_keys: u64,
    /// The events those observations counted.
    pub dropped_events: u64,
    /// Entries forgotten (not seen for [`CatalogueLimits::forget_after`]).
    pub forgotten: u64,
}

/// The catalogue, in the state store.
#[async_trait]
pub trait EventCatalogue: Send + Sync + 'static {
    /// Merges `observations` into their entries, creating those that do not exist while fewer
    /// than `limits.max_entries` do, and first forgets the entries not seen since
    /// `now - limits.forget_after`. Atomic, and serialized with other gateways' flushes.
    async fn record(
        &self,
        observations: &[Observation],
        limits: &CatalogueLimits,
        now: DateTime<Utc>,
    ) -> Result<Recorded>;

    /// Entries by source then type, filtered; `now` dates the last 24 hours.
    async fn list_catalogue(
        &self,
        query: &CatalogueQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<CatalogueSummary>>;

    /// The entry of (`source`, `ty`).
    async fn catalogue_entry(&self, source: &str, ty: &str) -> Result<Option<CatalogueEntry>>;
}

/// Merges `observations` into `existing` (the stored entries of their keys, by key) within
/// `room` new entries; returns the entries to write and the observations refused.
pub fn merge_observations(
    observations: &[Observation],
    mut existing: std::collections::HashMap<(String, String), CatalogueEntry>,
    mut room: u64,
    now: DateTime<Utc>,
) -> (Vec<CatalogueEntry>, Vec<(String, String, u64)>) {
    let mut touched: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut refused = Vec::new();
    for observation in observations {
        let key = (observation.source.clone(), observation.ty.clone());
        match existing.get_mut(&key) {
            Some(entry) => entry.merge(observation, now),
            None if room > 0 => {
                room -= 1;
                existing.insert(key.clone(), CatalogueEntry::new(observation, now));
            }
            None => {
                refused.push((key.0, key.1, observation.count));
                continue;
            }
        }
        if seen.insert(key.clone()) {
            touched.push(key);
        }
    }
    let entries = touched
        .into_iter()
        .filter_map(|key| existing.remove(&key))
        .collect();
    (entries, refused)
}
