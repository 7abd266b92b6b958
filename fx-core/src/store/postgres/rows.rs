//! How executions and package versions are stored in PostgreSQL and read back: the columns
//! and the decoding of each row type (times as `timestamptz` or integer microseconds, JSON text).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::execution::{Execution, ExecutionId, ExecutionStatus, ExecutionSummary};
use crate::package::{PackageDigest, PackageVersion};

pub(super) const PACKAGE_COLUMNS: &str =
    "name, version, digest, size, manifest, uploaded_at, uploaded_by";
pub(super) const EXECUTION_COLUMNS: &str =
    "id, handler, status, attempts, event, package, output, error, \
     created_at, started_at, finished_at, duration_us, \
     (SELECT string_agg(record, ',' ORDER BY attempt) FROM execution_attempts \
        WHERE execution_id = executions.id)";
pub(super) const SUMMARY_COLUMNS: &str =
    "id, handler, status, event_id, event_source, event_type, attempts, created_at, duration_us";

pub(super) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).kind_context(ErrorKind::Internal, || format!("encoding {what}"))
}

pub(super) fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).kind_context(ErrorKind::Internal, || {
        format!("stored {what} is not valid json")
    })
}

/// Reads column `i` of `row`.
pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T> {
    row.try_get(i)
        .kind_context(ErrorKind::Internal, || format!("reading stored column {i}"))
}

pub(super) fn stored_id(text: &str) -> Result<ExecutionId> {
    ExecutionId::parse(text).kind_context(ErrorKind::Internal, || "stored execution id".into())
}

pub(super) fn stored_status(text: &str) -> Result<ExecutionStatus> {
    ExecutionStatus::parse(text)
        .kind_context(ErrorKind::Internal, || "stored execution status".into())
}

pub(super) fn time(us: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(us)
        .ok_or_else(|| Error::internal(format!("stored time {us} is out of range")))
}

/// A `package_versions` row, columns in [`PACKAGE_COLUMNS`] order.
pub(super) fn package_version(row: &Row) -> Result<PackageVersion> {
    let name: String = get(row, 0)?;
    let version: String = get(row, 1)?;
    let what = format!("manifest of package {name} version {version}");
    let digest: String = get(row, 2)?;
    let size: i64 = get(row, 3)?;
    let manifest: String = get(row, 4)?;
    Ok(PackageVersion {
        digest: PackageDigest::parse(&digest)
            .kind_context(ErrorKind::Internal, || format!("stored digest of {what}"))?,
        size: u64::try_from(size).unwrap_or_default(),
        manifest: from_json(&what, &manifest)?,
        uploaded_at: get(row, 5)?,
        uploaded_by: get(row, 6)?,
        name,
        version,
    })
}

/// An `executions` row, columns in [`EXECUTION_COLUMNS`] order.
pub(super) fn execution(row: &Row) -> Result<Execution> {
    let id = stored_id(&get::<String>(row, 0)?)?;
    let package: Option<String> = get(row, 5)?;
    let error: Option<String> = get(row, 7)?;
    let attempts: i64 = get(row, 3)?;
    let duration_us: Option<i64> = get(row, 11)?;
    let attempt_history = match get::<Option<String>>(row, 12)? {
        Some(records) => from_json(
            &format!("attempt records of execution {id}"),
            &format!("[{records}]"),
        )?,
        None => Vec::new(),
    };
    Ok(Execution {
        handler: get(row, 1)?,
        status: stored_status(&get::<String>(row, 2)?)?,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        event: from_json(&format!("event of execution {id}"), &get::<String>(row, 4)?)?,
        package: match package {
            Some(text) => Some(from_json(&format!("package of execution {id}"), &text)?),
            None => None,
        },
        output: from_json(
            &format!("output of execution {id}"),
            &get::<String>(row, 6)?,
        )?,
        error: match error {
            Some(text) => Some(from_json(&format!("error of execution {id}"), &text)?),
            None => None,
        },
        created_at: get(row, 8)?,
        started_at: get(row, 9)?,
        finished_at: get(row, 10)?,
        duration_us: duration_us.and_then(|d| u64::try_from(d).ok()),
        attempt_history,
        id,
    })
}

/// An executions list row, columns in [`SUMMARY_COLUMNS`] order.
pub(super) fn summary(row: &Row) -> Result<ExecutionSummary> {
    let attempts: i64 = get(row, 6)?;
    let duration_us: Option<i64> = get(row, 8)?;
    Ok(ExecutionSummary {
        id: stored_id(&get::<String>(row, 0)?)?,
        handler: get(row, 1)?,
        status: stored_status(&get::<String>(row, 2)?)?,
        event_id: get(row, 3)?,
        event_source: get(row, 4)?,
        event_type: get(row, 5)?,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        created_at: get(row, 7)?,
        duration_us: duration_us.and_then(|d| u64::try_from(d).ok()),
    })
}
