//! How executions and package versions are stored in SQLite and read back: the columns, the
//! row types and the encodings (times as integer microseconds, JSON text).

use chrono::{DateTime, Utc};

use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::execution::{Execution, ExecutionId, ExecutionStatus};
use crate::package::PackageVersion;

pub(super) const PACKAGE_COLUMNS: &str =
    "name, version, digest, size, manifest, uploaded_at, uploaded_by";
pub(super) const EXECUTION_COLUMNS: &str =
    "id, handler, status, attempts, event, package, output, error, \
     created_at, started_at, finished_at, duration_us";
pub(super) const SUMMARY_COLUMNS: &str =
    "id, handler, status, event_id, event_source, event_type, attempts, created_at, duration_us";

pub(super) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(super) fn time(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| Error::internal(format!("stored time {us} is out of range")))
}

pub(super) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).kind_context(ErrorKind::Internal, || format!("encoding {what}"))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).kind_context(ErrorKind::Internal, || {
        format!("stored {what} is not valid json")
    })
}

/// Collects rows decoded by a row function that itself may fail (`Result<Result<T>>`).
pub(super) fn collect<T>(
    rows: impl Iterator<Item = rusqlite::Result<Result<T>>>,
    what: &str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(crate::sqlite::db(what.to_string()))??);
    }
    Ok(out)
}

/// A `package_versions` row as stored.
pub(super) struct PackageRow {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) digest: String,
    pub(super) size: i64,
    pub(super) manifest: String,
    pub(super) uploaded_at: i64,
    pub(super) uploaded_by: Option<String>,
}

impl PackageRow {
    pub(super) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(PackageRow {
            name: row.get(0)?,
            version: row.get(1)?,
            digest: row.get(2)?,
            size: row.get(3)?,
            manifest: row.get(4)?,
            uploaded_at: row.get(5)?,
            uploaded_by: row.get(6)?,
        })
    }

    pub(super) fn decode(self) -> Result<PackageVersion> {
        let what = format!("manifest of package {} version {}", self.name, self.version);
        Ok(PackageVersion {
            digest: crate::package::PackageDigest::parse(&self.digest)
                .kind_context(ErrorKind::Internal, || format!("stored digest of {what}"))?,
            size: u64::try_from(self.size).unwrap_or_default(),
            manifest: from_json(&what, &self.manifest)?,
            uploaded_at: time(self.uploaded_at)?,
            uploaded_by: self.uploaded_by,
            name: self.name,
            version: self.version,
        })
    }
}

/// An `executions` row as stored.
pub(super) struct ExecutionRow {
    pub(super) id: String,
    pub(super) handler: String,
    pub(super) status: String,
    pub(super) attempts: i64,
    pub(super) event: String,
    pub(super) package: Option<String>,
    pub(super) output: String,
    pub(super) error: Option<String>,
    pub(super) created_at: i64,
    pub(super) started_at: Option<i64>,
    pub(super) finished_at: Option<i64>,
    pub(super) duration_us: Option<i64>,
}

impl ExecutionRow {
    pub(super) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(ExecutionRow {
            id: row.get(0)?,
            handler: row.get(1)?,
            status: row.get(2)?,
            attempts: row.get(3)?,
            event: row.get(4)?,
            package: row.get(5)?,
            output: row.get(6)?,
            error: row.get(7)?,
            created_at: row.get(8)?,
            started_at: row.get(9)?,
            finished_at: row.get(10)?,
            duration_us: row.get(11)?,
        })
    }

    pub(super) fn decode(self) -> Result<Execution> {
        let id = stored_id(&self.id)?;
        Ok(Execution {
            handler: self.handler,
            status: stored_status(&self.status)?,
            attempts: u32::try_from(self.attempts).unwrap_or_default(),
            event: from_json(&format!("event of execution {id}"), &self.event)?,
            package: match self.package {
                Some(text) => Some(from_json(&format!("package of execution {id}"), &text)?),
                None => None,
            },
            output: from_json(&format!("output of execution {id}"), &self.output)?,
            error: match self.error {
                Some(text) => Some(from_json(&format!("error of execution {id}"), &text)?),
                None => None,
            },
            created_at: time(self.created_at)?,
            started_at: self.started_at.map(time).transpose()?,
            finished_at: self.finished_at.map(time).transpose()?,
            duration_us: self.duration_us.and_then(|d| u64::try_from(d).ok()),
            attempt_history: Vec::new(),
            id,
        })
    }
}

pub(super) fn stored_id(text: &str) -> Result<ExecutionId> {
    ExecutionId::parse(text).kind_context(ErrorKind::Internal, || "stored execution id".into())
}

pub(super) fn stored_status(text: &str) -> Result<ExecutionStatus> {
    ExecutionStatus::parse(text)
        .kind_context(ErrorKind::Internal, || "stored execution status".into())
}
