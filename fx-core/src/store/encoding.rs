//! Values both SQL state stores encode alike: the executions list cursor and a handler
//! change's revision.

use super::HandlerChange;
use crate::error::{Error, Result};
use crate::execution::ExecutionId;

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

/// The revision of `change` as stored (a signed integer): `Invalid` past `i64::MAX`.
pub(crate) fn stored_revision(change: &HandlerChange) -> Result<i64> {
    i64::try_from(change.revision).map_err(|_| {
        Error::invalid(format!(
            "revision {} of handler {} is too large to record",
            change.revision, change.name
        ))
    })
}
