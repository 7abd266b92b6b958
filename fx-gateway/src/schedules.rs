//! The scheduler: fires the schedules' ticks onto `fx.events`, where they are matched and
//! dispatched as any event is.
//!
//! Every gateway runs one. The ticks are computed from each schedule alone
//! ([`Schedule::due`]), and each is claimed in the state database before it is published
//! ([`TickLedger::claim_tick`]): with several gateways, the first to claim a tick publishes it
//! and the others move on, so a tick runs its handlers once. The tick's event id is the same in
//! every process ([`fx_core::schedule::tick_event_id`]), so a tick published twice anyway would
//! still record one execution per handler. A gateway killed between claiming a tick and
//! publishing it loses that tick (the claim and the publish are not one transaction); a bus
//! that refuses the publish is retried until it takes it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fx_core::backends::Backends;
use fx_core::backoff::Backoff;
use fx_core::bus::topics;
use fx_core::event::encode_message;
use fx_core::registry::Table;
use fx_core::schedule::Schedule;
use fx_core::Result;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::retry::until_available;

/// How long one blocking watch of the schedules waits before it is renewed.
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// The longest sleep between two looks at the schedules (a clock that jumped, a tick
/// computed late).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// The most ticks of one schedule looked at in one round (see [`Schedule::due`]).
const SCAN_BUDGET: usize = 100_000;

/// Fires the schedules' ticks until `shutdown`.
pub struct Scheduler {
    backends: Backends,
    /// A tick at most this late fires as on time; older ones follow the schedule's `missed`.
    grace: chrono::Duration,
}

impl Scheduler {
    /// A scheduler over `backends` that counts ticks up to `grace` late as on time.
    pub fn new(backends: Backends, grace: Duration) -> Self {
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        Scheduler { backends, grace }
    }

    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let registry = self.backends.schedules.clone();
        let first = until_available("loading schedules", &shutdown, || registry.table()).await?;
        tracing::info!(
            schedules = first.entries.len(),
            revision = first.revision,
            "scheduler started"
        );
        let (tx, mut table) = watch::channel(Arc::new(first));
        tokio::spawn(watch_loop(self.backends.clone(), tx, shutdown.clone()));
        let ticks = self.backends.ticks.clone();
        let mut last: HashMap<String, DateTime<Utc>> =
            until_available("reading the schedules' last ticks", &shutdown, || {
                ticks.last_ticks()
            })
            .await?;
        loop {
            let current = Arc::clone(&table.borrow_and_update());
            let now = Utc::now();
            for stored in &current.entries {
                let schedule = &stored.entry;
                for at in schedule.due(
                    last.get(&schedule.name).copied(),
                    now,
                    self.grace,
                    SCAN_BUDGET,
                ) {
                    if shutdown.is_cancelled() {
                        return Ok(());
                    }
                    self.fire(schedule, at, &shutdown).await?;
                    last.insert(schedule.name.clone(), at);
                }
            }
            let sleep = next_wake(&current, &last, Utc::now());
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                changed = table.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Claims tick `at` of `schedule` and, when this scheduler won it, publishes its event.
    async fn fire(
        &self,
        schedule: &Schedule,
        at: DateTime<Utc>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let name = &schedule.name;
        let ticks = &self.backends.ticks;
        let won = until_available(
            &format!("claiming a tick of schedule {name}"),
            shutdown,
            || ticks.claim_tick(name, at),
        )
        .await?;
        if !won {
            tracing::debug!(schedule = %name, %at, "tick fired by another scheduler");
            return Ok(());
        }
        let event = schedule.tick_event(at)?;
        let message = encode_message(&event);
        let bus = &self.backends.bus;
        until_available(
            &format!("publishing a tick of schedule {name}"),
            shutdown,
            || bus.publish(topics::EVENTS, message.clone()),
        )
        .await?;
        let late_ms = (Utc::now() - at).num_milliseconds();
        metrics::counter!(fx_core::telemetry::SCHEDULE_TICKS, "schedule" => name.clone())
            .increment(1);
        tracing::info!(schedule = %name, %at, late_ms, event_id = %cloudevents::AttributesReader::id(&event), "schedule fired");
        Ok(())
    }
}

/// How long to sleep until the next tick of any schedule is due.
fn next_wake(
    table: &Table<Schedule>,
    last: &HashMap<String, DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Duration {
    let next = table
        .entries
        .iter()
        .filter(|s| !s.entry.paused)
        .filter_map(|s| {
            let from = last.get(&s.entry.name).map_or(now, |l| (*l).max(now));
            s.entry.next_after(from)
        })
        .min();
    match next {
        Some(at) => (at - now).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP),
        None => MAX_SLEEP,
    }
}

/// Keeps `tx` on the newest schedule table, by blocking watches of the registry.
async fn watch_loop(
    backends: Backends,
    tx: watch::Sender<Arc<Table<Schedule>>>,
    shutdown: CancellationToken,
) {
    let registry = backends.schedules;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let revision = tx.borrow().revision;
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = registry.watch(revision, WATCH_WAIT) => next,
        };
        match next {
            Ok(table) => {
                backoff.reset();
                // A revision below the one watched from is a store that was reset.
                if table.revision != revision {
                    tracing::info!(
                        schedules = table.entries.len(),
                        revision = table.revision,
                        "schedules reloaded"
                    );
                    for invalid in &table.invalid {
                        tracing::warn!(schedule = %invalid.name, reason = %invalid.reason, "skipping invalid schedule");
                    }
                    tx.send_replace(Arc::new(table));
                }
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e.chain(), retry_in_ms = delay.as_millis() as u64,
                    "watching schedules failed; keeping the last good table");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}
