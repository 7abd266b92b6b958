//! The outbox of notifications in the PostgreSQL state schema (migration 7).
//!
//! A claim is one statement: the due rows, oldest first, locked `FOR UPDATE SKIP LOCKED` (a row
//! another sender is claiming is skipped, not waited for), then their `next_at` moved to the
//! end of the lease. A row claimed and committed meanwhile is rechecked against `next_at <=
//! now` and dropped, so two senders never claim one notification at once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::rows::{get, stored_id, to_json};
use super::PostgresStateStore;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::execution::ExecutionId;
use crate::notify::{DeliveryAttempt, DeliveryStatus, Notification, NotificationLedger, Outcome};

const COLUMNS: &str = "rule, execution_id, outcome, status, attempts, next_at, created_at";

/// Claims up to `$3` notifications due at `$1` until `$2`, oldest due first.
const CLAIM: &str = "WITH due AS MATERIALIZED (
        SELECT rule, execution_id, next_at FROM notifications
        WHERE status = 'pending' AND next_at <= $1
        ORDER BY next_at LIMIT $3
        FOR UPDATE SKIP LOCKED),
    claimed AS (
        UPDATE notifications n SET next_at = $2 FROM due
        WHERE n.rule = due.rule AND n.execution_id = due.execution_id
        RETURNING n.rule, n.execution_id, n.outcome, n.status, n.attempts, n.next_at,
            n.created_at, due.next_at AS due_at)
    SELECT rule, execution_id, outcome, status, attempts, next_at, created_at FROM claimed
    ORDER BY due_at, rule, execution_id";

/// A `notifications` row, columns in [`COLUMNS`] order.
fn notification(row: &Row) -> Result<Notification> {
    let rule: String = get(row, 0)?;
    let execution_id: String = get(row, 1)?;
    let what = || format!("stored notification of rule {rule} about execution {execution_id}");
    let attempts: String = get(row, 4)?;
    Ok(Notification {
        execution_id: stored_id(&execution_id).kind_context(ErrorKind::Internal, what)?,
        outcome: Outcome::parse(&get::<String>(row, 2)?).kind_context(ErrorKind::Internal, what)?,
        status: DeliveryStatus::parse(&get::<String>(row, 3)?)
            .kind_context(ErrorKind::Internal, what)?,
        attempts: serde_json::from_str(&attempts).kind_context(ErrorKind::Internal, || {
            format!("attempts of the {} are not valid json", what())
        })?,
        next_at: get(row, 5)?,
        created_at: get(row, 6)?,
        rule,
    })
}

/// The end of a lease of `lease` from `now`.
fn lease_end(now: DateTime<Utc>, lease: std::time::Duration) -> Result<DateTime<Utc>> {
    chrono::TimeDelta::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .ok_or_else(|| {
            Error::invalid(format!(
                "a notification lease of {lease:?} from {now} is out of range"
            ))
        })
}

#[async_trait]
impl NotificationLedger for PostgresStateStore {
    async fn enqueue_notification(
        &self,
        rule: &str,
        execution: &ExecutionId,
        outcome: Outcome,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        // Recorded when first due: the caller enqueues at the time it learns the outcome.
        let rows = self
            .rows(
                &format!("enqueuing the notification of rule {rule} about execution {execution}"),
                "INSERT INTO notifications
                     (rule, execution_id, outcome, status, attempts, next_at, created_at)
                 VALUES ($1, $2, $3, 'pending', '[]', $4, $4)
                 ON CONFLICT (rule, execution_id) DO NOTHING
                 RETURNING 1",
                &[&rule, &execution.as_str(), &outcome.as_str(), &at],
            )
            .await?;
        Ok(rows.len() == 1)
    }

    async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<Notification>> {
        let until = lease_end(now, lease)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .rows(
                &format!("claiming up to {limit} notifications due at {now}"),
                CLAIM,
                &[&now, &until, &limit],
            )
            .await?;
        rows.iter().map(notification).collect()
    }

    async fn record_notification_attempt(
        &self,
        rule: &str,
        execution: &ExecutionId,
        attempt: &DeliveryAttempt,
        status: DeliveryStatus,
        next_at: DateTime<Utc>,
    ) -> Result<()> {
        let encoded = to_json("a notification attempt", attempt)?;
        // The attempts are a JSON array of compact objects, as encoded: appending one is text
        // work, in the same statement as the status.
        let rows = self
            .rows(
                &format!(
                    "recording an attempt of the notification of rule {rule} about execution {execution}"
                ),
                "UPDATE notifications SET
                     attempts = CASE attempts WHEN '[]' THEN '[' || $3::text || ']'
                         ELSE left(attempts, -1) || ',' || $3::text || ']'
                     END,
                     status = $4, next_at = $5
                 WHERE rule = $1 AND execution_id = $2
                 RETURNING 1",
                &[&rule, &execution.as_str(), &encoded, &status.as_str(), &next_at],
            )
            .await?;
        if rows.is_empty() {
            return Err(Error::not_found(format!(
                "no notification of rule {rule} about execution {execution} to record an attempt of"
            )));
        }
        Ok(())
    }

    async fn notifications_of(&self, execution: &ExecutionId) -> Result<Vec<Notification>> {
        let rows = self
            .rows(
                &format!("listing the notifications about execution {execution}"),
                &format!(
                    "SELECT {COLUMNS} FROM notifications WHERE execution_id = $1 ORDER BY rule"
                ),
                &[&execution.as_str()],
            )
            .await?;
        rows.iter().map(notification).collect()
    }
}
