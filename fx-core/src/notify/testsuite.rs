//! The conformance suite of the notification ledger port, run by both state stores' tests.
//!
//! Rules carry a unique suffix and every check looks at its own notifications only, so the
//! suite also runs against a shared database. Claims take every due notification, not only
//! ours, so the suite works in a time window of its own, long ago, and earlier for each later
//! run ([`window`]): notifications a crashed earlier run left pending are never due in it, and
//! it leaves none of its own pending. It never claims at a time outside that window (claims at
//! the present would lease other tests' notifications).

// Test code in the library so that every backend can run it; a failed check panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::{DeliveryAttempt, DeliveryStatus, Notification, NotificationLedger, Outcome};
use crate::error::ErrorKind;
use crate::execution::ExecutionId;
use crate::testsupport::unique;

/// How long a claim holds its notifications in this suite.
const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs every check against `ledger`.
pub async fn run(ledger: &dyn NotificationLedger) {
    let base = window();
    let mut ours = Vec::new();
    ours.extend(enqueuing_twice_records_once(ledger, base).await);
    ours.extend(claims_take_due_ones_oldest_first_under_a_lease(ledger, base + minutes(1)).await);
    ours.extend(
        attempts_append_in_order_until_delivered_or_failed(ledger, base + minutes(10)).await,
    );
    ours.extend(concurrent_claims_are_disjoint(ledger, base + minutes(20)).await);
    // Leave nothing pending, for the next run.
    let done = attempt(base + minutes(25), Some(200), None);
    for (rule, execution) in &ours {
        ledger
            .record_notification_attempt(rule, execution, &done, DeliveryStatus::Delivered, done.at)
            .await
            .unwrap();
    }
}

/// The start of this run's half hour: before 2001-01-01 by a thousand times the time since the
/// epoch, modulo 3,000 years (so within 1000 BC to 2001, wrapping every 3 years). A run started
/// a second later works 1,000 s earlier: runs started 2 s apart have disjoint windows, and a
/// later run's is the earlier one.
fn window() -> DateTime<Utc> {
    let anchor = DateTime::from_timestamp(978_307_200, 0).unwrap(); // 2001-01-01
    let span_ms = 3_000 * 365 * 86_400 * 1_000_i64;
    let back_ms = (Utc::now().timestamp_millis() * 1_000).rem_euclid(span_ms);
    anchor - Duration::milliseconds(back_ms)
}

fn minutes(n: i64) -> Duration {
    Duration::minutes(n)
}

fn seconds(n: i64) -> Duration {
    Duration::seconds(n)
}

fn execution() -> ExecutionId {
    ExecutionId::derive("/notify-suite", &unique("event"), "notify-suite")
}

fn attempt(at: DateTime<Utc>, status_code: Option<u16>, error: Option<&str>) -> DeliveryAttempt {
    DeliveryAttempt {
        at,
        status_code,
        error: error.map(str::to_string),
        duration_ms: 12,
    }
}

type Key = (String, ExecutionId);

fn key(n: &Notification) -> Key {
    (n.rule.clone(), n.execution_id.clone())
}

/// The notifications of `claimed` that are in `mine`, in their order.
fn only<'a>(claimed: &'a [Notification], mine: &[Key]) -> Vec<&'a Notification> {
    claimed.iter().filter(|n| mine.contains(&key(n))).collect()
}

fn keys(claimed: &[&Notification]) -> Vec<Key> {
    claimed.iter().map(|n| key(n)).collect()
}

async fn claim(ledger: &dyn NotificationLedger, now: DateTime<Utc>) -> Vec<Notification> {
    ledger.claim_notifications(now, LEASE, 1000).await.unwrap()
}

async fn enqueuing_twice_records_once(
    ledger: &dyn NotificationLedger,
    at: DateTime<Utc>,
) -> Vec<Key> {
    let (rule, other_rule) = (unique("notify-a"), unique("notify-b"));
    let id = execution();
    assert!(ledger
        .enqueue_notification(&rule, &id, Outcome::Failed, at)
        .await
        .unwrap());
    assert!(
        !ledger
            .enqueue_notification(&rule, &id, Outcome::Succeeded, at + seconds(1))
            .await
            .unwrap(),
        "enqueuing a second time records nothing"
    );
    assert!(ledger
        .enqueue_notification(&other_rule, &id, Outcome::DeadLettered, at + seconds(2))
        .await
        .unwrap());
    let listed = ledger.notifications_of(&id).await.unwrap();
    assert_eq!(
        listed,
        vec![
            Notification {
                rule: rule.clone(),
                execution_id: id.clone(),
                outcome: Outcome::Failed,
                status: DeliveryStatus::Pending,
                attempts: Vec::new(),
                next_at: at,
                created_at: at,
            },
            Notification {
                rule: other_rule.clone(),
                execution_id: id.clone(),
                outcome: Outcome::DeadLettered,
                status: DeliveryStatus::Pending,
                attempts: Vec::new(),
                next_at: at + seconds(2),
                created_at: at + seconds(2),
            },
        ],
        "both rules' notifications of the execution, by rule, the first one unchanged"
    );
    assert!(ledger
        .notifications_of(&execution())
        .await
        .unwrap()
        .is_empty());
    // An attempt of a notification never enqueued.
    let err = ledger
        .record_notification_attempt(
            &rule,
            &execution(),
            &attempt(at, Some(200), None),
            DeliveryStatus::Delivered,
            at,
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}", err.chain());
    vec![(rule, id.clone()), (other_rule, id)]
}

async fn claims_take_due_ones_oldest_first_under_a_lease(
    ledger: &dyn NotificationLedger,
    t: DateTime<Utc>,
) -> Vec<Key> {
    let rule = unique("notify-due");
    let (a, b, c, later) = (execution(), execution(), execution(), execution());
    // Enqueued out of order: due at t, t + 1 s and t + 2 s; one due later.
    for (id, at) in [
        (&c, t + seconds(2)),
        (&a, t),
        (&later, t + minutes(4)),
        (&b, t + seconds(1)),
    ] {
        assert!(ledger
            .enqueue_notification(&rule, id, Outcome::Succeeded, at)
            .await
            .unwrap());
    }
    let due: Vec<Key> = [&a, &b, &c]
        .into_iter()
        .map(|id| (rule.clone(), id.clone()))
        .collect();
    let all: Vec<Key> = due
        .iter()
        .cloned()
        .chain([(rule.clone(), later.clone())])
        .collect();
    // A claim takes at most its limit, oldest due first; the next one the rest.
    let now = t + seconds(10);
    let first = ledger.claim_notifications(now, LEASE, 2).await.unwrap();
    assert_eq!(first.len(), 2, "a claim of 2 with 3 due takes 2");
    let second = claim(ledger, now).await;
    let mut claimed = keys(&only(&first, &all));
    claimed.extend(keys(&only(&second, &all)));
    assert_eq!(
        claimed, due,
        "the due ones, each once, oldest first, not the later one"
    );
    for n in only(&first, &all).into_iter().chain(only(&second, &all)) {
        assert_eq!(n.next_at, now + seconds(60), "leased until now + lease");
        assert_eq!(n.status, DeliveryStatus::Pending);
        assert_eq!(n.outcome, Outcome::Succeeded);
    }
    assert_eq!(
        ledger.notifications_of(&a).await.unwrap()[0].next_at,
        now + seconds(60),
        "the lease is stored"
    );
    // Under the lease, nobody claims them again.
    assert!(only(&claim(ledger, now).await, &all).is_empty());
    assert!(only(&claim(ledger, now + seconds(59)).await, &all).is_empty());
    // Once it has run out, they are due again (the later one still not).
    let expired = now + seconds(60);
    let again: BTreeSet<Key> = keys(&only(&claim(ledger, expired).await, &all))
        .into_iter()
        .collect();
    assert_eq!(again, due.iter().cloned().collect());
    assert!(only(&claim(ledger, expired).await, &all).is_empty());
    // When the later one is due, it is claimed, with the others whose lease ran out.
    let latest: BTreeSet<Key> = keys(&only(&claim(ledger, t + minutes(5)).await, &all))
        .into_iter()
        .collect();
    assert_eq!(latest, all.iter().cloned().collect());
    // A claim of none takes none.
    assert!(ledger
        .claim_notifications(t + minutes(9), LEASE, 0)
        .await
        .unwrap()
        .is_empty());
    all
}

async fn attempts_append_in_order_until_delivered_or_failed(
    ledger: &dyn NotificationLedger,
    u: DateTime<Utc>,
) -> Vec<Key> {
    let rule = unique("notify-attempts");
    let (delivered, failed) = (execution(), execution());
    let mine = vec![
        (rule.clone(), delivered.clone()),
        (rule.clone(), failed.clone()),
    ];
    for id in [&delivered, &failed] {
        ledger
            .enqueue_notification(&rule, id, Outcome::Failed, u)
            .await
            .unwrap();
    }
    let claimed: BTreeSet<Key> = keys(&only(&claim(ledger, u).await, &mine))
        .into_iter()
        .collect();
    assert_eq!(claimed, mine.iter().cloned().collect());

    // A failed attempt: pending, due again at its retry time (before its lease ends).
    let first = attempt(u + seconds(1), Some(500), Some("answered 500: \"busy\" ü"));
    ledger
        .record_notification_attempt(
            &rule,
            &delivered,
            &first,
            DeliveryStatus::Pending,
            u + seconds(30),
        )
        .await
        .unwrap();
    let stored = &ledger.notifications_of(&delivered).await.unwrap()[0];
    assert_eq!(stored.attempts, vec![first.clone()]);
    assert_eq!(stored.status, DeliveryStatus::Pending);
    assert_eq!(stored.next_at, u + seconds(30));
    assert!(only(&claim(ledger, u + seconds(10)).await, &mine[..1]).is_empty());
    assert_eq!(
        keys(&only(&claim(ledger, u + seconds(30)).await, &mine[..1])),
        mine[..1]
    );
    // The second attempt is delivered: appended after the first.
    let second = attempt(u + seconds(31), Some(204), None);
    ledger
        .record_notification_attempt(
            &rule,
            &delivered,
            &second,
            DeliveryStatus::Delivered,
            second.at,
        )
        .await
        .unwrap();
    let stored = &ledger.notifications_of(&delivered).await.unwrap()[0];
    assert_eq!(stored.attempts, vec![first, second.clone()]);
    assert_eq!(stored.status, DeliveryStatus::Delivered);
    assert_eq!(stored.next_at, second.at);

    // Out of attempts: failed, with a next_at long past.
    let refused = attempt(u + seconds(2), None, Some("connecting: connection refused"));
    ledger
        .record_notification_attempt(&rule, &failed, &refused, DeliveryStatus::Failed, u)
        .await
        .unwrap();
    let stored = &ledger.notifications_of(&failed).await.unwrap()[0];
    assert_eq!(stored.attempts, vec![refused]);
    assert_eq!(stored.status, DeliveryStatus::Failed);

    // Neither is ever claimed again, however late.
    assert!(only(&claim(ledger, u + minutes(9)).await, &mine).is_empty());
    mine
}

async fn concurrent_claims_are_disjoint(
    ledger: &dyn NotificationLedger,
    v: DateTime<Utc>,
) -> Vec<Key> {
    let rule = unique("notify-race");
    let mut mine = Vec::new();
    for n in 0..50 {
        let id = execution();
        ledger
            .enqueue_notification(&rule, &id, Outcome::Failed, v + Duration::microseconds(n))
            .await
            .unwrap();
        mine.push((rule.clone(), id));
    }
    let now = v + seconds(1);
    let (left, right) = tokio::join!(
        ledger.claim_notifications(now, LEASE, 50),
        ledger.claim_notifications(now, LEASE, 50)
    );
    let (left, right) = (left.unwrap(), right.unwrap());
    let mut times: BTreeMap<Key, usize> = BTreeMap::new();
    for n in only(&left, &mine).into_iter().chain(only(&right, &mine)) {
        *times.entry(key(n)).or_default() += 1;
    }
    assert!(
        times.values().all(|t| *t == 1),
        "a notification claimed by both: {times:?}"
    );
    assert_eq!(
        times.keys().cloned().collect::<BTreeSet<_>>(),
        mine.iter().cloned().collect(),
        "two claims of 50 over 50 due take all of them"
    );
    mine
}

/// Checks that deleting an execution (retention) deletes its notifications, pending or not.
pub async fn deleting_an_execution_deletes_its_notifications<S>(store: &S)
where
    S: crate::store::StateStore + NotificationLedger,
{
    let handler = crate::testsupport::unique("retained");
    let execution = crate::testsupport::execution(1, &handler, Utc::now());
    store.create_execution(&execution).await.unwrap();
    for rule in ["a", "b"] {
        assert!(store
            .enqueue_notification(rule, &execution.id, Outcome::Failed, Utc::now())
            .await
            .unwrap());
    }
    assert_eq!(
        store.notifications_of(&execution.id).await.unwrap().len(),
        2
    );
    assert_eq!(
        store
            .delete_executions(std::slice::from_ref(&execution.id))
            .await
            .unwrap(),
        1
    );
    assert!(store
        .notifications_of(&execution.id)
        .await
        .unwrap()
        .is_empty());
}
