//! The worker loop: consume `fx.invocations.<pool>`, run up to `max_concurrency` invocations
//! at once (and at most `limits.concurrency` of one handler), publish what each owes, then
//! commit it.
//!
//! Invocations finish out of order, but a commit marks everything before it on its partition
//! as done; so a delivery is committed only once it and every delivery before it on its
//! partition are done ([`CommitTracker`]). One that could not publish what it owes (shutdown,
//! or a bus that refuses even the `failed` state) holds back its partition's commits, so that
//! it and what follows are delivered again after a restart.

use fx_core::backoff::Backoff;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use fx_core::bus::{topics, Delivery, Subscription};
use fx_core::event::{encode_message, Message};
use fx_core::execution::{
    dead_letter_message, Failure, FailureKind, Invocation, Measurements, StateEvent,
};
use fx_core::telemetry;
use fx_core::trace::{TraceContext, TRACEPARENT, TRACESTATE};
use fx_core::Result;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::commits::{CommitTracker, Handled};
use crate::Executor;

/// Per-handler concurrency: one semaphore per handler, sized by its `limits.concurrency`.
#[derive(Default)]
struct HandlerSlots(Mutex<HashMap<String, (u32, Arc<Semaphore>)>>);

impl HandlerSlots {
    fn of(&self, handler: &str, concurrency: u32) -> Arc<Semaphore> {
        let concurrency = concurrency.max(1);
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(handler) {
            // A changed limit takes effect for new invocations; running ones keep theirs.
            Some((size, slots)) if *size == concurrency => slots.clone(),
            _ => {
                let slots = Arc::new(Semaphore::new(concurrency as usize));
                map.insert(handler.to_string(), (concurrency, slots.clone()));
                slots
            }
        }
    }
}

impl Executor {
    /// Consumes this executor's pool until `shutdown`; then stops taking invocations, lets the
    /// running ones finish, and commits them.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let topic = topics::invocations(&self.settings.pool);
        let group = format!("fx-executor-{}", self.settings.pool);
        let mut subscription = loop {
            match self.bus.subscribe(&topic, &group).await {
                Ok(s) => break s,
                Err(e) if e.kind().is_retryable() && !shutdown.is_cancelled() => {
                    tracing::warn!(error = %e.chain(), %topic, "subscribing failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        };
        tracing::info!(%topic, executor = %self.settings.executor_id, "executor consuming invocations");
        let max = self.settings.max_concurrency;
        // Deliveries taken but not finished: those running, those waiting for their handler's
        // slot (so that one saturated handler does not idle the executor), and those publishing
        // what they owe (so that the bus's round trips do not idle it either).
        let taken = Arc::new(Semaphore::new(self.settings.max_in_flight()));
        let running = Arc::new(Semaphore::new(max));
        let handler_slots = Arc::new(HandlerSlots::default());
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Delivery, Handled)>();
        let mut tracker = CommitTracker::default();
        'consume: loop {
            // Wait for room to take another delivery, committing finished ones meanwhile.
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break 'consume,
                Some((delivery, handled)) = done_rx.recv() => {
                    self.finish(subscription.as_mut(), &mut tracker, (delivery, handled), &mut done_rx).await;
                    continue 'consume;
                }
                permit = taken.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break 'consume,
                },
                // Every slot is busy: stay in the consumer group meanwhile (a Kafka consumer
                // that stops polling is made to leave it, and its partitions would run again
                // elsewhere). Only ever ends with an error.
                held = subscription.hold() => {
                    if let Err(e) = held {
                        tracing::warn!(error = %e.chain(), "keeping the consumer in its group failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    continue 'consume;
                }
            };
            let next = loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break 'consume,
                    Some((delivery, handled)) = done_rx.recv() => {
                        self.finish(subscription.as_mut(), &mut tracker, (delivery, handled), &mut done_rx).await;
                    }
                    next = subscription.next() => break next,
                }
            };
            let delivery = match next {
                Ok(Some(d)) => d,
                Ok(None) => break 'consume,
                Err(e) => {
                    tracing::warn!(error = %e.chain(), "reading invocations failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'consume;
                }
            };
            tracker.taken(&delivery);
            let (this, done, running, handler_slots, shutdown) = (
                self.clone(),
                done_tx.clone(),
                running.clone(),
                handler_slots.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                let handled = this
                    .handle(&delivery, permit, &running, &handler_slots, &shutdown)
                    .await;
                let _ = done.send((delivery, handled));
            });
        }
        let in_flight = tracker.in_flight();
        tracing::info!(
            in_flight,
            "executor stopping: finishing running invocations"
        );
        drop(done_tx);
        while tracker.in_flight() > 0 {
            let Some((delivery, handled)) = done_rx.recv().await else {
                break;
            };
            self.finish(
                subscription.as_mut(),
                &mut tracker,
                (delivery, handled),
                &mut done_rx,
            )
            .await;
        }
        tracing::info!("executor stopped");
        Ok(())
    }

    /// Records a finished delivery (`first`), and every other that has finished meanwhile
    /// (`done`), and commits what became committable with one request.
    async fn finish(
        &self,
        subscription: &mut dyn Subscription,
        tracker: &mut CommitTracker,
        first: (Delivery, Handled),
        done: &mut mpsc::UnboundedReceiver<(Delivery, Handled)>,
    ) {
        let mut commits = Vec::new();
        let mut next = Some(first);
        while let Some((delivery, handled)) = next {
            if handled == Handled::Abandoned {
                tracing::warn!(
                    partition = delivery.partition,
                    offset = delivery.offset,
                    "invocation left uncommitted: it will be delivered again"
                );
            }
            if let Some(commit) = tracker.finished(&delivery, handled) {
                commits.push(commit);
            }
            next = done.try_recv().ok();
        }
        if commits.is_empty() {
            return;
        }
        if let Err(e) = subscription.commit_all(&commits).await {
            tracing::warn!(error = %e.chain(), commits = ?commits, "commit failed; invocations may run again");
        }
    }

    /// Handles one delivery: dead-letters it or runs it and publishes what it owes. `taken`
    /// counts it against the deliveries taken; a retry waiting out its backoff gives it up
    /// while it waits, so that waiting retries never idle the executor.
    async fn handle(
        &self,
        delivery: &Delivery,
        taken: OwnedSemaphorePermit,
        running: &Semaphore,
        handler_slots: &HandlerSlots,
        shutdown: &CancellationToken,
    ) -> Handled {
        let invocation: Invocation = match delivery.message.decode_json() {
            Ok(i) => i,
            Err(e) => {
                let reason = format!("undecodable invocation: {}", e.chain());
                tracing::warn!(%reason, offset = delivery.offset, "invocation sent to the dead-letter topic");
                let message = delivery
                    .message
                    .clone()
                    .with_header(topics::REASON_HEADER, reason)
                    .with_header(topics::ORIGINAL_TOPIC_HEADER, delivery.topic.clone());
                return self.publish(topics::DEADLETTER, message, shutdown).await;
            }
        };
        let span = tracing::info_span!(
            "invocation",
            execution_id = %invocation.execution_id,
            handler = %invocation.handler.name,
            attempt = invocation.attempt,
        );
        async {
            if let Some(wait) = invocation
                .not_before
                .and_then(|at| (at - Utc::now()).to_std().ok())
            {
                // Waiting retries give up their delivery slot, up to `max_waiting_retries` at
                // once; beyond, a retry waits in its slot (so the executor takes no more).
                let waiting = self.waiting.clone().try_acquire_owned().ok();
                let held = if waiting.is_some() {
                    drop(taken);
                    None
                } else {
                    metrics::counter!(telemetry::WAITING_RETRIES_FULL).increment(1);
                    Some(taken)
                };
                tracing::debug!(
                    wait_ms = wait.as_millis() as u64,
                    in_slot = held.is_some(),
                    "retry waiting out its backoff"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return Handled::Abandoned,
                    _ = tokio::time::sleep(wait) => {}
                }
                drop((waiting, held));
            }
            let slots = handler_slots.of(&invocation.handler.name, invocation.limits.concurrency);
            let (Ok(handler_permit), Ok(permit)) =
                (slots.acquire_owned().await, running.acquire().await)
            else {
                return Handled::Abandoned;
            };
            self.execute(&invocation, handler_permit, permit, shutdown)
                .await
        }
        .instrument(span)
        .await
    }

    /// Publishes `started` while the function runs; then the log lines and output events in
    /// one batch, then `succeeded` (or `failed`). Three round trips to the bus at most, two of
    /// them after the run. The executor's slot (`running`) is given back as soon as the function
    /// has run: publishing what it owes waits on the bus, not on the CPU, and meanwhile other
    /// invocations run (the delivery stays taken until everything is published). The
    /// handler's slot (`_handler_slot`) is held until the end, so that the attempts of a handler
    /// with `limits.concurrency = 1` follow each other, states included.
    async fn execute(
        &self,
        invocation: &Invocation,
        _handler_slot: OwnedSemaphorePermit,
        running: SemaphorePermit<'_>,
        shutdown: &CancellationToken,
    ) -> Handled {
        let queued_since = invocation
            .not_before
            .map_or(invocation.dispatched_at, |at| {
                at.max(invocation.dispatched_at)
            });
        let mut span = crate::phases::execution_span(
            &self.tracer,
            invocation,
            &self.settings.executor_id,
            queued_since.into(),
        );
        let trace = span.context().cloned();
        let trace = trace.as_ref();
        let wait = (Utc::now() - queued_since).to_std().unwrap_or_default();
        let queue_wait_us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        metrics::histogram!(telemetry::QUEUE_WAIT, "handler" => invocation.handler.name.clone())
            .record(wait.as_secs_f64());
        let started = StateEvent::Started {
            execution_id: invocation.execution_id.clone(),
            attempt: invocation.attempt,
            at: Utc::now(),
            executor: self.settings.executor_id.clone(),
        };
        // `join!` polls the publish first, so `started` is handed to the bus before the run
        // begins, and both end before anything else of this execution is published.
        let (published, outcome) = tokio::join!(
            self.publish_state(invocation, trace, &started, shutdown),
            async {
                let outcome = self.invoke(invocation).await;
                drop(running);
                outcome
            }
        );
        if published == Handled::Abandoned {
            return Handled::Abandoned;
        }
        crate::phases::record(&self.tracer, &span, &outcome);
        let mut owed = Vec::with_capacity(outcome.logs.len());
        for mut line in outcome.logs {
            // A line too long for one bus message is cut (it can only be that long when
            // max_log_bytes is above the bus's message size).
            if line.message.len() > self.room() / 2 {
                line.message = truncated(&line.message, self.room() / 2);
            }
            match state_message(invocation, trace, &StateEvent::Log(line)) {
                Some(message) => owed.push((topics::STATE.to_string(), message)),
                None => return Handled::Abandoned,
            }
        }
        let duration_us = u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX);
        let measurements = Measurements {
            executor: self.settings.executor_id.clone(),
            queue_wait_us,
            compile_cache: outcome.compile_cache,
            peak_memory_bytes: outcome.peak_memory_bytes,
            fuel_used: outcome.fuel_used,
        };
        // Events the function emits continue the trace as children of this execution's span.
        let result = match outcome
            .result
            .map(|output| crate::phases::traced(output, trace))
        {
            Ok(output) => match self.output_messages(invocation, &output, duration_us) {
                Ok(messages) => {
                    // A workflow step's output feeds the steps after it, not `fx.events`.
                    if invocation.publish_output {
                        owed.extend(
                            messages
                                .into_iter()
                                .map(|message| (topics::EVENTS.to_string(), message)),
                        );
                    }
                    Ok(output)
                }
                Err(failure) => Err(failure),
            },
            Err(failure) => Err(failure),
        };
        let result = match self.publish_all_with_retry(owed, shutdown).await {
            Ok(()) => result,
            Err(_) if shutdown.is_cancelled() => return Handled::Abandoned,
            // Not retryable (a message the bus refuses): publishing again would fail again.
            Err(e) => Err(Failure {
                kind: FailureKind::Internal,
                message: format!("publishing the output events and log lines: {}", e.chain()),
            }),
        };
        let last = match result {
            Ok(output) => {
                tracing::debug!(duration_us, outputs = output.len(), "invocation succeeded");
                metrics::counter!(telemetry::INVOCATIONS, "handler" => invocation.handler.name.clone(), "status" => "succeeded").increment(1);
                StateEvent::Succeeded {
                    execution_id: invocation.execution_id.clone(),
                    attempt: invocation.attempt,
                    at: Utc::now(),
                    duration_us,
                    output,
                    measurements: Some(measurements),
                }
            }
            Err(failure) => {
                span.fail(failure.message.clone());
                return self
                    .fail(
                        invocation,
                        trace,
                        failure,
                        duration_us,
                        measurements,
                        shutdown,
                    )
                    .await;
            }
        };
        self.publish_state(invocation, trace, &last, shutdown).await
    }

    /// Bytes one bus message may hold, less room for what the bus adds (headers, record
    /// framing).
    fn room(&self) -> usize {
        self.bus
            .max_message_bytes()
            .saturating_sub(MESSAGE_OVERHEAD)
    }

    /// The messages of a successful attempt's output events for `fx.events`, when the output
    /// fits the bus: each event as one message, and all of them in its `succeeded` state
    /// event. An output beyond fails the attempt as `output_limit`, naming the sizes, before
    /// anything of it is published (so nothing of it runs twice when the attempt is retried).
    fn output_messages(
        &self,
        invocation: &Invocation,
        output: &[fx_core::event::Event],
        duration_us: u64,
    ) -> std::result::Result<Vec<Message>, Failure> {
        let room = self.room();
        let too_large = |what: String, bytes: usize| {
            Failure {
            kind: FailureKind::OutputLimit,
            message: format!(
                "{what} is {bytes} bytes encoded; the event bus carries messages of at most {} bytes (lower the output, or raise the bus's message size)",
                self.bus.max_message_bytes()
            ),
        }
        };
        let messages: Vec<Message> = output.iter().map(encode_message).collect();
        let mut total = 0usize;
        for (event, message) in output.iter().zip(&messages) {
            let size = encoded_size(message);
            if size > room {
                let id = fx_core::event::attribute(event, "id").unwrap_or_default();
                return Err(too_large(format!("output event {id:?}"), size));
            }
            total = total.saturating_add(size);
        }
        // The state event's JSON is at most about twice the messages' size (base64 of binary
        // data, escaping): only an output near the limit is encoded to be sure.
        if total.saturating_mul(2) < room {
            return Ok(messages);
        }
        let succeeded = StateEvent::Succeeded {
            execution_id: invocation.execution_id.clone(),
            attempt: invocation.attempt,
            at: Utc::now(),
            duration_us,
            output: output.to_vec(),
            measurements: None,
        };
        match serde_json::to_vec(&succeeded) {
            Ok(bytes) if bytes.len() > room => Err(too_large(
                format!("the output of {} events", output.len()),
                bytes.len(),
            )),
            _ => Ok(messages),
        }
    }

    /// Ends a failed attempt: records it, and hands the execution on as the handler's retry
    /// policy says: to the next attempt after the backoff (published to this pool's topic
    /// with `not_before`, so that it survives a restart), or to the dead-letter topic with its
    /// reason after the last one (`POST /api/v1/executions/{id}/redrive` runs it again).
    async fn fail(
        &self,
        invocation: &Invocation,
        trace: Option<&TraceContext>,
        failure: Failure,
        duration_us: u64,
        measurements: Measurements,
        shutdown: &CancellationToken,
    ) -> Handled {
        let handler = invocation.handler.name.clone();
        metrics::counter!(telemetry::INVOCATIONS, "handler" => handler.clone(), "status" => "failed").increment(1);
        metrics::counter!(telemetry::FAILURES, "handler" => handler.clone(), "kind" => failure.kind.as_str()).increment(1);
        // The invocation message was not validated here: use the policy within its bounds.
        let policy = invocation.handler.retry.bounded();
        let attempt_in_drive = invocation.attempt.saturating_sub(invocation.attempt_base);
        let now = Utc::now();
        let next = if policy.retries(failure.kind, attempt_in_drive) {
            let delay = policy.delay_after(attempt_in_drive, fastrand::f64());
            let at = now + chrono::Duration::from_std(delay).unwrap_or_default();
            tracing::info!(duration_us, kind = ?failure.kind, reason = %failure.message, retry_in_ms = delay.as_millis() as u64, "invocation failed; retrying");
            metrics::counter!(telemetry::RETRIES, "handler" => handler.clone()).increment(1);
            let retry = Invocation {
                attempt: invocation.attempt.saturating_add(1),
                not_before: Some(at),
                dispatched_at: now,
                ..invocation.clone()
            };
            let key = fx_core::event::partition_key(&invocation.event);
            match Message::json(Some(key), &retry) {
                Ok(message) => Some((at, (topics::invocations(&invocation.handler.pool), message))),
                Err(e) => {
                    tracing::error!(error = %e.chain(), "encoding the retry failed; dead-lettering instead");
                    None
                }
            }
        } else {
            None
        };
        // After the last attempt the failure carries the invocation: the state router
        // dead-letters it once the state store holds the failure, so that a dead-letter
        // reader always finds the execution `failed`.
        let (retry_at, onward, dead_letter) = match next {
            Some((at, message)) => (Some(at), Some(message), None),
            None => {
                tracing::info!(duration_us, kind = ?failure.kind, reason = %failure.message, attempts = attempt_in_drive, "invocation failed; dead-lettered");
                metrics::counter!(telemetry::DEADLETTERED, "handler" => handler).increment(1);
                (None, None, Some(Box::new(invocation.clone())))
            }
        };
        let mut last = StateEvent::Failed {
            execution_id: invocation.execution_id.clone(),
            attempt: invocation.attempt,
            at: now,
            duration_us,
            failure,
            retry_at,
            measurements: Some(measurements),
            dead_letter,
        };
        let Some(mut state) = state_message(invocation, trace, &last) else {
            return Handled::Abandoned;
        };
        let mut owed = Vec::with_capacity(3);
        if encoded_size(&state) > self.room() {
            // The invocation it carries for the dead-letter topic makes it too large (an
            // event at the bus's limit): record the failure without it and dead-letter the
            // invocation from here.
            if let StateEvent::Failed {
                dead_letter: dead @ Some(_),
                failure,
                ..
            } = &mut last
            {
                match dead
                    .take()
                    .map(|carried| dead_letter_message(&carried, failure))
                {
                    Some(Ok(message)) => owed.push((topics::DEADLETTER.to_string(), message)),
                    Some(Err(e)) => {
                        tracing::error!(error = %e.chain(), "encoding the dead-letter message failed")
                    }
                    None => {}
                }
            }
            let Some(smaller) = state_message(invocation, trace, &last) else {
                return Handled::Abandoned;
            };
            state = smaller;
        }
        owed.insert(0, (topics::STATE.to_string(), state));
        owed.extend(onward);
        match self.publish_all_with_retry(owed, shutdown).await {
            Ok(()) => Handled::Done,
            Err(e) => {
                tracing::error!(error = %e.chain(), "publishing the failure failed");
                Handled::Abandoned
            }
        }
    }

    /// Publishes a state event keyed by its execution.
    async fn publish_state(
        &self,
        invocation: &Invocation,
        trace: Option<&TraceContext>,
        state: &StateEvent,
        shutdown: &CancellationToken,
    ) -> Handled {
        match state_message(invocation, trace, state) {
            Some(message) => self.publish(topics::STATE, message, shutdown).await,
            None => Handled::Abandoned,
        }
    }

    async fn publish(
        &self,
        topic: &str,
        message: Message,
        shutdown: &CancellationToken,
    ) -> Handled {
        match self.publish_with_retry(topic, message, shutdown).await {
            Ok(()) => Handled::Done,
            Err(e) => {
                tracing::error!(error = %e.chain(), %topic, "publish failed");
                Handled::Abandoned
            }
        }
    }

    /// Publishes, retrying while the bus is unavailable, until shutdown.
    async fn publish_with_retry(
        &self,
        topic: &str,
        message: Message,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        self.publish_all_with_retry(vec![(topic.to_string(), message)], shutdown)
            .await
    }

    /// Publishes `messages` as one batch, retrying the batch while the bus is unavailable,
    /// until shutdown.
    async fn publish_all_with_retry(
        &self,
        messages: Vec<(String, Message)>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            match self.bus.publish_all(messages.clone()).await {
                Err(e) if e.kind().is_retryable() && !shutdown.is_cancelled() => {
                    tracing::warn!(error = %e.chain(), messages = messages.len(), "publish failed; retrying");
                    backoff.sleep().await;
                }
                result => return result,
            }
        }
    }
}

/// Bytes of a bus message kept free for what the bus adds to it (record framing, headers it
/// sets); a message is published only when it fits the bus's size less this.
const MESSAGE_OVERHEAD: usize = 4 * 1024;

/// The bytes a message takes on the bus: key, headers and payload.
fn encoded_size(message: &Message) -> usize {
    message.key.as_ref().map_or(0, String::len)
        + message
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>()
        + message.payload.len()
}

/// `text` cut to about `bytes` bytes (on a character boundary), saying how long it was.
fn truncated(text: &str, bytes: usize) -> String {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (truncated from {} bytes)", &text[..end], text.len())
}

/// The message of state event `state`, keyed by its execution so that one execution's events
/// keep their order.
/// The message of `state`, with the `traceparent` header of the execution's span `trace` (the
/// state router's span continues it).
fn state_message(
    invocation: &Invocation,
    trace: Option<&TraceContext>,
    state: &StateEvent,
) -> Option<Message> {
    match Message::json(Some(invocation.execution_id.to_string()), state) {
        Ok(message) => {
            let message =
                message.with_header(fx_core::bus::topics::STATE_KIND_HEADER, state.name());
            Some(match trace {
                Some(trace) => {
                    let message = message.with_header(TRACEPARENT, trace.traceparent.clone());
                    match &trace.tracestate {
                        Some(state) => message.with_header(TRACESTATE, state.clone()),
                        None => message,
                    }
                }
                None => message,
            })
        }
        Err(e) => {
            tracing::error!(error = %e.chain(), state = state.name(), "encoding a state event failed");
            None
        }
    }
}
