//! The state router: consumes `fx.state` and writes each kind of state event where
//! [`StateRouting`](fx_core::sink::StateRouting) sends it: execution state to the state store,
//! log lines (at once, best effort), per-attempt metrics and (when configured) execution
//! documents to the operational sink. The log router ([`crate::logs`]) makes the log lines at
//! least once. Applying a state event twice changes nothing, so a
//! redelivery after a crash is harmless.

use futures::{StreamExt, TryStreamExt};
use fx_core::backends::Backends;
use fx_core::bus::{topics, Delivery};
use fx_core::event::Message;
use fx_core::execution::{dead_letter_message, ExecutionId, Failure, FailureKind, StateEvent};
use fx_core::notify::{Outcome, Rule};
use fx_core::registry::CachedTable;
use fx_core::sink::{ExecutionDoc, MetricDoc};
use fx_core::telemetry;
use fx_core::workflow::conductor::Conductor;
use fx_core::Result;
use tokio_util::sync::CancellationToken;

use crate::retry::until_available;

/// The sink documents one execution's state events of a batch yield.
#[derive(Default)]
struct SinkDocuments {
    metrics: Vec<MetricDoc>,
    execution: Option<ExecutionDoc>,
}

/// Routes state events into the stores.
pub struct StateRouter {
    backends: Backends,
    /// The notification rules, read at most every [`RULES_TTL`].
    rules: CachedTable<Rule>,
    /// Moves the workflow runs whose step executions finished.
    conductor: Conductor,
}

/// How long the router uses the notification rules it read before reading them again.
const RULES_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// State events taken from `fx.state` at once: what is already waiting, up to this many.
const BATCH: usize = 512;
/// How long the router waits at shutdown for the sink to store what it buffered.
pub const FLUSH_AT_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);
/// Executions whose state events of one batch are applied at the same time.
const CONCURRENT_EXECUTIONS: usize = 16;

impl StateRouter {
    /// A router over `backends`.
    pub fn new(backends: Backends) -> Self {
        StateRouter {
            conductor: Conductor::new(backends.clone()),
            backends,
            rules: CachedTable::with_ttl(RULES_TTL),
        }
    }

    /// Consumes `fx.state` as group `group` until `shutdown`.
    ///
    /// Takes the events already waiting as one batch: their log lines go to the sink in one
    /// write, their state events to the state store (in order per execution, several
    /// executions at a time); then the batch is committed.
    ///
    /// When it stops, it gives the sink up to [`FLUSH_AT_SHUTDOWN`] to store what it buffered.
    pub async fn run(&self, group: &str, shutdown: CancellationToken) -> Result<()> {
        let result = self.consume(group, &shutdown).await;
        match tokio::time::timeout(FLUSH_AT_SHUTDOWN, self.backends.sink.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e.chain(), "flushing the sink at shutdown failed"),
            Err(_) => tracing::warn!(
                timeout_s = FLUSH_AT_SHUTDOWN.as_secs(),
                dropped_total = self.backends.sink.dropped_total(),
                "the sink did not store its buffered documents before the shutdown timeout; they are lost"
            ),
        }
        result
    }

    async fn consume(&self, group: &str, shutdown: &CancellationToken) -> Result<()> {
        crate::consume::batches(
            &self.backends.bus,
            topics::STATE,
            group,
            "state router",
            BATCH,
            shutdown,
            self,
        )
        .await
    }
}

/// `text` without control characters (which a store may refuse too), cut to 4 KiB.
fn storable(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    topics::reason(clean)
}

/// The span of recording `state`: a child of the executor's span named by the message's
/// `traceparent` header.
fn record_span(
    tracer: &fx_core::trace::Tracer,
    delivery: &Delivery,
    state: &StateEvent,
) -> fx_core::trace::Span {
    use fx_core::trace::{TraceContext, TRACEPARENT, TRACESTATE};
    let parent = delivery
        .message
        .header(TRACEPARENT)
        .and_then(|traceparent| {
            TraceContext::parse(traceparent, delivery.message.header(TRACESTATE))
        });
    let mut span = tracer.start(
        "fx.record",
        fx_core::trace::SpanKind::Consumer,
        parent.as_ref(),
    );
    span.set("fx.execution_id", state.execution_id().to_string());
    span.set("fx.state", state.name());
    span
}

#[async_trait::async_trait]
impl crate::consume::BatchHandler for StateRouter {
    async fn poisoned(
        &self,
        delivery: &Delivery,
        error: &fx_core::Error,
        shutdown: &CancellationToken,
    ) {
        self.record_refused(delivery, error, shutdown).await;
    }

    /// Routes one batch: log lines to the sink (best effort; the log router guarantees them),
    /// state events to the store (and the sink's documents), malformed ones to the dead-letter
    /// topic.
    async fn handle(&self, batch: &[Delivery], shutdown: &CancellationToken) -> Result<()> {
        let mut logs = Vec::new();
        let mut states = Vec::new();
        let mut dead = Vec::new();
        // One span per state event, from its arrival to its write into the store.
        let mut spans = Vec::new();
        for delivery in batch {
            match delivery.message.decode_json::<StateEvent>() {
                Ok(StateEvent::Log(line)) => logs.push(line),
                Ok(state) => {
                    spans.push(record_span(&self.backends.tracer, delivery, &state));
                    states.push(state)
                }
                Err(e) => {
                    tracing::warn!(reason = %e.chain(), offset = delivery.offset, "malformed state event sent to the dead-letter topic");
                    let message = delivery
                        .message
                        .clone()
                        .with_header(
                            topics::REASON_HEADER,
                            format!("malformed state event: {}", e.chain()),
                        )
                        .with_header(topics::ORIGINAL_TOPIC_HEADER, delivery.topic.clone());
                    dead.push((topics::DEADLETTER.to_string(), message));
                }
            }
        }
        if !dead.is_empty() {
            until_available("publishing to fx.deadletter", shutdown, || {
                self.backends.bus.publish_all(dead.clone())
            })
            .await?;
        }
        // Log lines first, so that an execution shown finished shows its lines: at once and
        // best effort (a buffering sink takes them without waiting). The log router
        // (`crate::logs`) writes them again and commits only once the sink stored them, so none
        // is lost; writes are idempotent.
        if !logs.is_empty() && self.backends.routing.logs_to_sink() {
            until_available("writing log lines", shutdown, || {
                self.backends.sink.write_logs(&logs)
            })
            .await?;
        }
        // Executions whose last attempt failed are dead-lettered once their failure is in
        // the state store (below), so that a dead-letter reader finds them `failed`.
        let exhausted = dead_letters(&states);
        let finished = finished(&states);
        // One execution's events in their order; different executions side by side.
        let mut by_execution: Vec<Vec<StateEvent>> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for state in states {
            let slot = *index
                .entry(state.execution_id().clone())
                .or_insert_with(|| {
                    by_execution.push(Vec::new());
                    by_execution.len() - 1
                });
            by_execution[slot].push(state);
        }
        // The batch's state in one write (one transaction); if the store refuses it (one
        // event it cannot take), one event at a time, so that only that one is refused.
        let batch: Vec<StateEvent> = by_execution.iter().flatten().cloned().collect();
        let one_by_one = match until_available("applying execution state", shutdown, || {
            self.backends.state.apply_states(&batch)
        })
        .await
        {
            Ok(()) => {
                let now = chrono::Utc::now();
                for event in &batch {
                    tracing::debug!(execution_id = %event.execution_id(), state = event.name(), "state applied");
                    metrics::counter!(telemetry::STATE_EVENTS, "state" => event.name())
                        .increment(1);
                    let lag = (now - event.at()).to_std().unwrap_or_default();
                    metrics::histogram!(telemetry::RECORD_LAG, "state" => event.name())
                        .record(lag.as_secs_f64());
                }
                false
            }
            Err(e) if shutdown.is_cancelled() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e.chain(), events = batch.len(), "the state store refused a batch of state events; applying them one by one");
                true
            }
        };
        if !one_by_one {
            std::mem::take(&mut spans)
                .into_iter()
                .for_each(fx_core::trace::Span::end);
        }
        let documents: Vec<SinkDocuments> = futures::stream::iter(by_execution)
            .map(|events| async move {
                if one_by_one {
                    for event in &events {
                        self.apply(event, shutdown).await?;
                    }
                }
                self.sink_documents(&events, shutdown).await
            })
            .buffer_unordered(CONCURRENT_EXECUTIONS)
            .try_collect()
            .await?;
        if !exhausted.is_empty() {
            until_available(
                "publishing exhausted executions to fx.deadletter",
                shutdown,
                || self.backends.bus.publish_all(exhausted.clone()),
            )
            .await?;
        }
        let (metrics, executions): (Vec<_>, Vec<_>) = documents
            .into_iter()
            .map(|d| (d.metrics, d.execution))
            .unzip();
        let metrics: Vec<MetricDoc> = metrics.into_iter().flatten().collect();
        let executions: Vec<ExecutionDoc> = executions.into_iter().flatten().collect();
        if !finished.is_empty() {
            self.enqueue_notifications(&finished, shutdown).await?;
            // Workflow steps among them: their runs move on (start the steps that waited).
            let ids: Vec<ExecutionId> = finished.iter().map(|(id, _)| id.clone()).collect();
            // An error other than an outage (a run record that does not decode) does not hold
            // the state events back: the sweep tries that run again.
            match until_available("moving workflow runs", shutdown, || {
                self.conductor.finished(&ids)
            })
            .await
            {
                Ok(()) => {}
                Err(e) if shutdown.is_cancelled() => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e.chain(), executions = ids.len(), "moving the workflow runs of finished executions failed; the sweep will")
                }
            }
        }
        if !metrics.is_empty() {
            until_available("writing metrics", shutdown, || {
                self.backends.sink.write_metrics(&metrics)
            })
            .await?;
        }
        if !executions.is_empty() {
            until_available("writing execution documents", shutdown, || {
                self.backends.sink.write_executions(&executions)
            })
            .await?;
        }
        Ok(())
    }
}

impl StateRouter {
    /// Records in the outbox the notifications the rules want for the executions that
    /// `finished` (their state is in the store): the management servers send them. Without
    /// rules (the common case) it costs one cached read. Rules that cannot be read (Consul
    /// down, none read before) are skipped with a warning rather than holding the state
    /// events back.
    async fn enqueue_notifications(
        &self,
        finished: &[(ExecutionId, Vec<Outcome>)],
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let rules = match self
            .rules
            .entries(self.backends.notification_rules.as_ref())
            .await
        {
            Ok(rules) => rules,
            Err(e) => {
                tracing::warn!(error = %e.chain(), executions = finished.len(), "reading the notification rules failed; these executions notify nobody");
                return Ok(());
            }
        };
        let rules: Vec<Rule> = rules.into_iter().filter(|r| r.enabled).collect();
        if rules.is_empty() {
            return Ok(());
        }
        let every_handler = rules.iter().all(|r| r.handlers.iter().any(|h| h == "*"));
        let now = chrono::Utc::now();
        for (id, outcomes) in finished {
            let handler = if every_handler {
                String::new()
            } else {
                match until_available("reading a finished execution", shutdown, || {
                    self.backends.state.get_execution(id)
                })
                .await?
                {
                    Some(execution) => execution.handler,
                    None => continue,
                }
            };
            for rule in &rules {
                // One notification per rule and execution: the most specific outcome the rule
                // wants (dead-lettered says failed too).
                let Some(outcome) = outcomes.iter().copied().find(|outcome| {
                    if every_handler {
                        rule.on.contains(outcome)
                    } else {
                        rule.wants(&handler, *outcome)
                    }
                }) else {
                    continue;
                };
                let created = until_available("recording a notification", shutdown, || {
                    self.backends
                        .notifications
                        .enqueue_notification(&rule.name, id, outcome, now)
                })
                .await?;
                if created {
                    metrics::counter!(telemetry::NOTIFICATIONS_ENQUEUED, "rule" => rule.name.clone(), "outcome" => outcome.as_str())
                        .increment(1);
                    tracing::debug!(rule = %rule.name, execution_id = %id, outcome = outcome.as_str(), "notification recorded");
                }
            }
        }
        Ok(())
    }
}

/// The executions whose last attempt ended in `states`, with what a notification can say of
/// each, most specific first: succeeded; or dead-lettered (when handed to the dead-letter
/// topic), then failed (no retry follows).
fn finished(states: &[StateEvent]) -> Vec<(ExecutionId, Vec<Outcome>)> {
    states
        .iter()
        .filter_map(|state| match state {
            StateEvent::Succeeded { execution_id, .. } => {
                Some((execution_id.clone(), vec![Outcome::Succeeded]))
            }
            StateEvent::Failed {
                execution_id,
                retry_at: None,
                dead_letter,
                ..
            } => {
                let mut outcomes = Vec::with_capacity(2);
                if dead_letter.is_some() {
                    outcomes.push(Outcome::DeadLettered);
                }
                outcomes.push(Outcome::Failed);
                Some((execution_id.clone(), outcomes))
            }
            _ => None,
        })
        .collect()
}

/// The dead-letter messages the `failed` events of `states` carry (their executions' last
/// attempts).
fn dead_letters(states: &[StateEvent]) -> Vec<(String, Message)> {
    states
        .iter()
        .filter_map(|state| match state {
            StateEvent::Failed {
                failure,
                dead_letter: Some(invocation),
                ..
            } => match dead_letter_message(invocation, failure) {
                Ok(message) => Some((topics::DEADLETTER.to_string(), message)),
                Err(e) => {
                    tracing::error!(error = %e.chain(), execution_id = %invocation.execution_id, "encoding the dead-letter message failed; the execution is failed but not dead-lettered");
                    None
                }
            },
            _ => None,
        })
        .collect()
}

impl StateRouter {
    /// Records the execution of a state event the state store refused as `failed`, naming the
    /// refusal, so that it does not stay `running` for good.
    async fn record_refused(
        &self,
        delivery: &Delivery,
        error: &fx_core::Error,
        shutdown: &CancellationToken,
    ) {
        let Ok(state) = delivery.message.decode_json::<StateEvent>() else {
            return;
        };
        let attempt = match &state {
            StateEvent::Started { attempt, .. }
            | StateEvent::Succeeded { attempt, .. }
            | StateEvent::Failed { attempt, .. } => *attempt,
            StateEvent::Log(_) => return,
        };
        let failed = StateEvent::Failed {
            execution_id: state.execution_id().clone(),
            attempt,
            at: chrono::Utc::now(),
            duration_us: 0,
            failure: Failure {
                kind: FailureKind::Internal,
                message: storable(&format!(
                    "the platform could not record this attempt's {} state: {}",
                    state.name(),
                    error.chain()
                )),
            },
            retry_at: None,
            measurements: None,
            dead_letter: None,
        };
        match until_available("recording a refused state as failed", shutdown, || {
            self.backends.state.apply_state(&failed)
        })
        .await
        {
            Ok(()) => {
                tracing::warn!(execution_id = %state.execution_id(), "execution recorded as failed: its state was refused")
            }
            Err(e) => {
                tracing::error!(error = %e.chain(), execution_id = %state.execution_id(), "recording a refused state as failed failed too")
            }
        }
    }

    /// What the sink gets for one execution's state events of a batch (already applied to the
    /// state store): the metric of each finished attempt, and the execution's latest state as
    /// a document when the routing sends its events there.
    async fn sink_documents(
        &self,
        events: &[StateEvent],
        shutdown: &CancellationToken,
    ) -> Result<SinkDocuments> {
        let routing = &self.backends.routing;
        let finished =
            |e: &&StateEvent| matches!(e, StateEvent::Succeeded { .. } | StateEvent::Failed { .. });
        // Building them costs a read of the execution: only for a sink that stores them.
        let stores = self.backends.sink.stores_documents();
        let wants_metrics =
            stores && routing.metric_to_sink() && events.iter().any(|e| finished(&e));
        let wants_document = stores && events.iter().any(|e| routing.to_sink(e));
        let Some(first) = events.first() else {
            return Ok(SinkDocuments::default());
        };
        if !wants_metrics && !wants_document {
            return Ok(SinkDocuments::default());
        }
        let id = first.execution_id();
        let execution = until_available("reading the execution for the sink", shutdown, || {
            self.backends.state.get_execution(id)
        })
        .await?;
        let Some(execution) = execution else {
            tracing::warn!(execution_id = %id, "state applied but the execution is not in the state store; nothing sent to the sink");
            return Ok(SinkDocuments::default());
        };
        let metrics = if wants_metrics {
            events
                .iter()
                .filter_map(|e| MetricDoc::from_state(e, &execution.handler))
                .collect()
        } else {
            Vec::new()
        };
        let execution = wants_document.then(|| ExecutionDoc::from(&execution));
        Ok(SinkDocuments { metrics, execution })
    }

    /// Writes one state event where it belongs.
    pub async fn apply(&self, event: &StateEvent, shutdown: &CancellationToken) -> Result<()> {
        match event {
            StateEvent::Log(_) if !self.backends.routing.logs_to_sink() => Ok(()),
            StateEvent::Log(line) => {
                let lines = std::slice::from_ref(line);
                until_available("writing log line", shutdown, || {
                    self.backends.sink.write_logs(lines)
                })
                .await
            }
            other => {
                let result = until_available("applying execution state", shutdown, || {
                    self.backends.state.apply_state(other)
                })
                .await;
                if result.is_ok() {
                    tracing::debug!(execution_id = %other.execution_id(), state = other.name(), "state applied");
                    metrics::counter!(telemetry::STATE_EVENTS, "state" => other.name())
                        .increment(1);
                }
                result
            }
        }
    }
}
