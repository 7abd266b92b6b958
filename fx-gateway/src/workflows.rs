//! Workflow runs on the gateway: the dispatcher starts the runs of workflows whose trigger an
//! event passes ([`Triggers`]); the state router moves runs as their steps finish; and
//! [`sweep`] moves every unfinished run at start and then every [`SWEEP_EVERY`], for what no
//! state event announces (a cancel, a step that could not start, a conductor that died
//! between two writes).

use std::time::Duration;

use fx_core::backends::Backends;
use fx_core::event::Event;
use fx_core::registry::CachedTable;
use fx_core::workflow::conductor::{Conductor, STEP_EVENT_TYPE};
use fx_core::workflow::Workflow;
use fx_core::Result;
use tokio_util::sync::CancellationToken;

use crate::retry::until_available;

/// How often the sweep moves the unfinished runs.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The workflows with a trigger, read at most every second, and the runs they start.
pub struct Triggers {
    backends: Backends,
    workflows: CachedTable<Workflow>,
    conductor: Conductor,
}

impl Triggers {
    /// Triggers over `backends`.
    pub fn new(backends: Backends) -> Self {
        Triggers {
            conductor: Conductor::new(backends.clone()),
            workflows: CachedTable::default(),
            backends,
        }
    }

    /// Starts a run of every workflow whose trigger `events` pass (a redelivered event finds
    /// the run it started). Workflows that cannot be read (registry down, none read before)
    /// start nothing, with a warning, rather than holding the events back.
    pub async fn start(&self, events: &[&Event], shutdown: &CancellationToken) -> Result<()> {
        let workflows = match self
            .workflows
            .stored(self.backends.workflows.as_ref())
            .await
        {
            Ok(workflows) => workflows,
            Err(e) => {
                tracing::warn!(error = %e.chain(), events = events.len(), "reading the workflows failed; these events start no run");
                return Ok(());
            }
        };
        if workflows.iter().all(|w| w.entry.trigger.is_empty()) {
            return Ok(());
        }
        for event in events {
            use cloudevents::AttributesReader;
            if event.ty() == STEP_EVENT_TYPE {
                continue;
            }
            for stored in workflows.iter().filter(|w| w.entry.trigger.matches(event)) {
                let started = until_available("starting a workflow run", shutdown, || {
                    self.conductor
                        .start(&stored.entry, stored.revision, (*event).clone())
                })
                .await;
                match started {
                    Ok((run, created)) => {
                        tracing::debug!(run = %run, workflow = %stored.entry.name, created, event_id = %event.id(), "event triggered a workflow")
                    }
                    Err(e) if shutdown.is_cancelled() => return Err(e),
                    // Not an outage (a run the store refuses): the event still reaches its
                    // handlers; the run is not started, and the log says why.
                    Err(e) => {
                        tracing::error!(workflow = %stored.entry.name, event_id = %event.id(), error = %e.chain(), "starting a workflow run failed")
                    }
                }
            }
        }
        Ok(())
    }
}

/// Moves every unfinished run now and then every [`SWEEP_EVERY`] until `shutdown`.
pub async fn sweep(backends: Backends, shutdown: CancellationToken) -> Result<()> {
    let conductor = Conductor::new(backends);
    loop {
        match conductor.sweep().await {
            Ok(0) => {}
            Ok(runs) => tracing::debug!(runs, "unfinished workflow runs moved"),
            Err(e) => {
                tracing::warn!(error = %e.chain(), "moving the unfinished workflow runs failed; trying again later")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}
