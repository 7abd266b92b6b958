//! The conformance suite of the tick ledger port, run by both state stores' tests.

// Test code in the library so that every backend can run it; a failed check panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{Duration, DurationRound as _, Utc};

use super::TickLedger;
use crate::testsupport::unique;

/// Runs every check against `ledger`.
pub async fn run(ledger: &dyn TickLedger) {
    let name = unique("every-second");
    let t0 = Utc::now().duration_trunc(Duration::seconds(1)).unwrap();
    let t1 = t0 + Duration::seconds(1);
    assert!(!ledger.last_ticks().await.unwrap().contains_key(&name));
    // The first claim of a tick wins, a second claim of it loses.
    assert!(ledger.claim_tick(&name, t0).await.unwrap());
    assert!(!ledger.claim_tick(&name, t0).await.unwrap());
    assert_eq!(ledger.last_ticks().await.unwrap()[&name], t0);
    // A later tick can be claimed; an earlier one no more.
    assert!(ledger.claim_tick(&name, t1).await.unwrap());
    assert!(!ledger.claim_tick(&name, t0).await.unwrap());
    assert_eq!(ledger.last_ticks().await.unwrap()[&name], t1);
    // Claims racing for one tick: exactly one wins.
    let t2 = t1 + Duration::seconds(1);
    let claims = futures::future::join_all((0..8).map(|_| ledger.claim_tick(&name, t2))).await;
    let won = claims.into_iter().filter(|c| *c.as_ref().unwrap()).count();
    assert_eq!(won, 1);
    // Another schedule's ticks are its own.
    let other = unique("other");
    assert!(ledger.claim_tick(&other, t0).await.unwrap());
    // Forgotten: the name starts afresh.
    ledger.forget_ticks(&name).await.unwrap();
    assert!(!ledger.last_ticks().await.unwrap().contains_key(&name));
    assert!(ledger.claim_tick(&name, t0).await.unwrap());
    assert_eq!(ledger.last_ticks().await.unwrap()[&other], t0);
}
