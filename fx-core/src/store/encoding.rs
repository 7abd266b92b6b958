//! Values both SQL state stores encode alike: the executions and runs list cursors, a
//! handler change's revision, an account's kind, a rule's columns and a run's document.

use super::HandlerChange;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::execution::{ExecutionId, ExecutionSummary, Page};
use crate::identity::rules::{Grant, Pattern, PrincipalKind, Rule, Subject};
use crate::workflow::run::{Run, RunId, RunSummary};

/// An executions list cursor: the `created_at` (microseconds) and id of the last item seen.
pub(crate) fn encode_cursor(created_at: i64, id: &ExecutionId) -> String {
    format!("{created_at}:{id}")
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<(i64, String)> {
    let malformed = || Error::invalid(format!("executions cursor {cursor:?} is malformed"));
    let (at, id) = cursor.split_once(':').ok_or_else(malformed)?;
    let at: i64 = at.parse().map_err(|_| malformed())?;
    let id = ExecutionId::parse(id).map_err(|_| malformed())?;
    Ok((at, id.as_str().to_string()))
}

/// The page of `rows`, read with `LIMIT page_size + 1`: the first `page_size`, and a cursor
/// after the last of them when there was one more.
pub(crate) fn page_of(mut rows: Vec<ExecutionSummary>, page_size: u32) -> Page<ExecutionSummary> {
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(encode_cursor(last.created_at.timestamp_micros(), &last.id)),
        _ => None,
    };
    Page {
        items: rows,
        next_cursor,
    }
}

/// A runs list cursor, as the executions one: the `created_at` (microseconds, as stored) and
/// id of the last run seen.
pub(crate) fn encode_run_cursor(created_at: i64, id: &RunId) -> String {
    format!("{created_at}:{id}")
}

pub(crate) fn decode_run_cursor(cursor: &str) -> Result<(i64, String)> {
    let malformed = || Error::invalid(format!("runs cursor {cursor:?} is malformed"));
    let (at, id) = cursor.split_once(':').ok_or_else(malformed)?;
    let at: i64 = at.parse().map_err(|_| malformed())?;
    let id = RunId::parse(id).map_err(|_| malformed())?;
    Ok((at, id.as_str().to_string()))
}

/// The page of runs read with `LIMIT page_size + 1`, each with its stored `created_at`
/// (microseconds): the first `page_size`, and a cursor after the last of them when there was
/// one more. The cursor holds the stored time, not the document's (which may be finer).
pub(crate) fn run_page_of(mut rows: Vec<(i64, Run)>, page_size: u32) -> Page<RunSummary> {
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next_cursor = match (more, rows.last()) {
        (true, Some((at, last))) => Some(encode_run_cursor(*at, &last.id)),
        _ => None,
    };
    Page {
        items: rows.iter().map(|(_, run)| RunSummary::from(run)).collect(),
        next_cursor,
    }
}

/// A run's document as stored: its JSON (the stored `version` column, not the document's,
/// is its version).
pub(crate) fn encode_run(run: &Run) -> Result<String> {
    serde_json::to_string(run)
        .kind_context(ErrorKind::Internal, || format!("encoding run {}", run.id))
}

/// The run stored under `id` as `doc` at `version`: `Internal` naming the run when the
/// document does not decode.
pub(crate) fn decode_run(id: &str, doc: &str, version: i64) -> Result<Run> {
    let mut run: Run = serde_json::from_str(doc).kind_context(ErrorKind::Internal, || {
        format!("stored run {id} does not decode")
    })?;
    if run.id.as_str() != id {
        return Err(Error::internal(format!(
            "stored run {id} holds the document of run {}",
            run.id
        )));
    }
    run.version = u64::try_from(version).map_err(|_| {
        Error::internal(format!("stored version {version} of run {id} is negative"))
    })?;
    Ok(run)
}

/// A run's version as stored (a signed integer); `None` past `i64::MAX` (no stored run is at
/// it).
pub(crate) fn stored_run_version(run: &Run) -> Option<i64> {
    i64::try_from(run.version).ok()
}

/// The revision of `change` as stored (a signed integer): `Invalid` past `i64::MAX`.
pub(crate) fn stored_revision(change: &HandlerChange) -> Result<i64> {
    i64::try_from(change.revision).map_err(|_| {
        Error::invalid(format!(
            "revision {} of handler {} is too large to record",
            change.revision, change.name
        ))
    })
}

/// The identity tables' columns, in the order both stores read them.
pub(crate) const ACCOUNT_COLUMNS: &str =
    "name, kind, display_name, password_hash, groups_json, disabled, created_at, updated_at";
pub(crate) const TOKEN_COLUMNS: &str =
    "id, owner, name, secret_hash, scope, created_at, expires_at, last_used_at, revoked_at";
pub(crate) const RULE_COLUMNS: &str = "id, subject, grant_json, pattern, created_by, created_at";
pub(crate) const AUDIT_COLUMNS: &str =
    "id, at, principal, action, resource, source, outcome, detail";

/// How an account's kind is stored.
pub(crate) fn kind_name(kind: PrincipalKind) -> &'static str {
    match kind {
        PrincipalKind::User => "user",
        PrincipalKind::ServiceAccount => "service",
    }
}

/// An account's kind as stored.
pub(crate) fn parse_kind(text: &str) -> Result<PrincipalKind> {
    match text {
        "user" => Ok(PrincipalKind::User),
        "service" => Ok(PrincipalKind::ServiceAccount),
        other => Err(Error::internal(format!(
            "stored account kind {other:?} is unknown"
        ))),
    }
}

/// A rule from its stored columns.
pub(crate) fn decode_rule(id: i64, subject: &str, grant: &str, pattern: &str) -> Result<Rule> {
    let bad = |what: &str, e: Error| {
        Error::internal(format!("stored {what} of rule {id} is invalid")).with_source(e)
    };
    Ok(Rule {
        subject: Subject::parse(subject).map_err(|e| bad("subject", e))?,
        grant: serde_json::from_str::<Grant>(grant).map_err(|e| {
            Error::internal(format!("stored grant of rule {id} is invalid")).with_source(e)
        })?,
        pattern: Pattern::parse(pattern).map_err(|e| bad("pattern", e))?,
    })
}

/// The columns of `secrets`, in the order both stores read them.
pub(crate) const SECRET_COLUMNS: &str =
    "name, pools_json, version, key_id, sealed, created_at, updated_at, updated_by";
