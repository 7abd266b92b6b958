//! The outbox of notifications in the SQLite state database (schema step 9).
//!
//! A claim is one immediate transaction (the due rows, oldest first, then their `next_at`
//! moved to the end of the lease), so two senders, even in two processes sharing the file,
//! never claim one notification at once.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, TransactionBehavior};

use super::rows::{micros, time, to_json};
use super::SqliteStateStore;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::execution::ExecutionId;
use crate::notify::{DeliveryAttempt, DeliveryStatus, Notification, NotificationLedger, Outcome};
use crate::sqlite::db;

const COLUMNS: &str = "rule, execution_id, outcome, status, attempts, next_at, created_at";

/// A `notifications` row as stored, columns in [`COLUMNS`] order.
struct Row {
    rule: String,
    execution_id: String,
    outcome: String,
    status: String,
    attempts: String,
    next_at: i64,
    created_at: i64,
}

impl Row {
    /// Reads the row from column `first` on.
    fn read(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Self> {
        Ok(Row {
            rule: row.get(first)?,
            execution_id: row.get(first + 1)?,
            outcome: row.get(first + 2)?,
            status: row.get(first + 3)?,
            attempts: row.get(first + 4)?,
            next_at: row.get(first + 5)?,
            created_at: row.get(first + 6)?,
        })
    }

    fn decode(self) -> Result<Notification> {
        let what = || {
            format!(
                "stored notification of rule {} about execution {}",
                self.rule, self.execution_id
            )
        };
        Ok(Notification {
            execution_id: ExecutionId::parse(&self.execution_id)
                .kind_context(ErrorKind::Internal, what)?,
            outcome: Outcome::parse(&self.outcome).kind_context(ErrorKind::Internal, what)?,
            status: DeliveryStatus::parse(&self.status).kind_context(ErrorKind::Internal, what)?,
            attempts: serde_json::from_str(&self.attempts)
                .kind_context(ErrorKind::Internal, || {
                    format!("attempts of the {} are not valid json", what())
                })?,
            next_at: time(self.next_at)?,
            created_at: time(self.created_at)?,
            rule: self.rule,
        })
    }
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
impl NotificationLedger for SqliteStateStore {
    async fn enqueue_notification(
        &self,
        rule: &str,
        execution: &ExecutionId,
        outcome: Outcome,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let (rule, execution) = (rule.to_string(), execution.clone());
        self.call(move |conn| {
            // Recorded when first due: the caller enqueues at the time it learns the outcome.
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO notifications
                         (rule, execution_id, outcome, status, attempts, next_at, created_at)
                     VALUES (?1, ?2, ?3, 'pending', '[]', ?4, ?4)
                     ON CONFLICT (rule, execution_id) DO NOTHING",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        rule,
                        execution.as_str(),
                        outcome.as_str(),
                        micros(at)
                    ])
                })
                .map_err(db(format!(
                    "enqueuing the notification of rule {rule} about execution {execution}"
                )))?;
            Ok(inserted == 1)
        })
        .await
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
            .call(move |conn| {
                let what = || format!("claiming up to {limit} notifications due at {now}");
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db(what()))?;
                let due = {
                    let mut select = tx
                        .prepare_cached(&format!(
                            "SELECT rowid, {COLUMNS} FROM notifications
                             WHERE status = 'pending' AND next_at <= ?1
                             ORDER BY next_at LIMIT ?2"
                        ))
                        .map_err(db(what()))?;
                    let due = select
                        .query_map(params![micros(now), limit], |r| {
                            Ok((r.get::<_, i64>(0)?, Row::read(r, 1)?))
                        })
                        .map_err(db(what()))?
                        .collect::<rusqlite::Result<Vec<_>>>()
                        .map_err(db(what()))?;
                    let mut lease = tx
                        .prepare_cached("UPDATE notifications SET next_at = ?2 WHERE rowid = ?1")
                        .map_err(db(what()))?;
                    for (rowid, _) in &due {
                        lease
                            .execute(params![rowid, micros(until)])
                            .map_err(db(what()))?;
                    }
                    due
                };
                tx.commit().map_err(db(what()))?;
                Ok(due)
            })
            .await?;
        rows.into_iter()
            .map(|(_, row)| {
                Ok(Notification {
                    next_at: until,
                    ..row.decode()?
                })
            })
            .collect()
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
        let (rule, execution) = (rule.to_string(), execution.clone());
        self.call(move |conn| {
            // The attempts are a JSON array of compact objects, as encoded: appending one is
            // text work, in the same statement as the status.
            let changed = conn
                .prepare_cached(
                    "UPDATE notifications SET
                         attempts = CASE attempts WHEN '[]' THEN '[' || ?3 || ']'
                             ELSE substr(attempts, 1, length(attempts) - 1) || ',' || ?3 || ']'
                         END,
                         status = ?4, next_at = ?5
                     WHERE rule = ?1 AND execution_id = ?2",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        rule,
                        execution.as_str(),
                        encoded,
                        status.as_str(),
                        micros(next_at)
                    ])
                })
                .map_err(db(format!(
                    "recording an attempt of the notification of rule {rule} about execution {execution}"
                )))?;
            if changed == 0 {
                return Err(Error::not_found(format!(
                    "no notification of rule {rule} about execution {execution} to record an attempt of"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn notifications_of(&self, execution: &ExecutionId) -> Result<Vec<Notification>> {
        let execution = execution.clone();
        let rows = self
            .call(move |conn| {
                let what = || format!("listing the notifications about execution {execution}");
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM notifications WHERE execution_id = ?1 ORDER BY rule"
                    ))
                    .map_err(db(what()))?;
                let rows = stmt
                    .query_map(params![execution.as_str()], |r| Row::read(r, 0))
                    .map_err(db(what()))?
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(db(what()));
                rows
            })
            .await?;
        rows.into_iter().map(Row::decode).collect()
    }
}
