//! The worker loop: consume `fx.invocations.<pool>`, run up to `max_concurrency` invocations
//! at once (and at most `limits.concurrency` of one handler), publish what each owes, then
//! commit it. An invocation whose state could not be published is left uncommitted so that it
//! is delivered again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use fx_core::bus::{topics, Delivery};
use fx_core::event::{encode_message, Message};
use fx_core::execution::{Invocation, StateEvent};
use fx_core::Result;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Executor;

impl Executor {
    /// Consumes this executor's pool until `shutdown`; then stops taking invocations, lets the
    /// running ones finish and commits them.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let topic = topics::invocations(&self.settings.pool);
        let group = format!("fx-executor-{}", self.settings.pool);
        let mut subscription = loop {
            match self.bus.subscribe(&topic, &group).await {
                Ok(s) => break s,
                Err(e) if e.kind().is_retryable() && !shutdown.is_cancelled() => {
                    tracing::warn!(error = %e.chain(), %topic, "subscribing failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        };
        tracing::info!(%topic, executor = %self.settings.executor_id, "executor consuming invocations");
        let slots = Arc::new(Semaphore::new(self.settings.max_concurrency));
        let per_handler: Arc<Mutex<HashMap<String, Arc<Semaphore>>>> = Arc::default();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Delivery, bool)>();
        let mut in_flight = 0usize;
        loop {
            tokio::select! {
                biased;
                Some((delivery, ok)) = done_rx.recv() => {
                    in_flight -= 1;
                    self.commit(subscription.as_mut(), &delivery, ok).await;
                }
                _ = shutdown.cancelled() => break,
                permit = slots.clone().acquire_owned() => {
                    let Ok(permit) = permit else { break };
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        next = subscription.next() => next,
                    };
                    let delivery = match next {
                        Ok(Some(d)) => d,
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(error = %e.chain(), "reading invocations failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    };
                    in_flight += 1;
                    let (this, done, per_handler, shutdown) =
                        (self.clone(), done_tx.clone(), per_handler.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        let ok = this.handle(&delivery, &per_handler, &shutdown).await;
                        drop(permit);
                        let _ = done.send((delivery, ok));
                    });
                }
            }
        }
        tracing::info!(
            in_flight,
            "executor stopping: finishing running invocations"
        );
        while in_flight > 0 {
            let Some((delivery, ok)) = done_rx.recv().await else {
                break;
            };
            in_flight -= 1;
            self.commit(subscription.as_mut(), &delivery, ok).await;
        }
        Ok(())
    }

    async fn commit(
        &self,
        subscription: &mut dyn fx_core::bus::Subscription,
        delivery: &Delivery,
        ok: bool,
    ) {
        if !ok {
            tracing::warn!(
                offset = delivery.offset,
                "invocation left uncommitted: it will be delivered again"
            );
            return;
        }
        if let Err(e) = subscription.commit(delivery).await {
            tracing::warn!(error = %e.chain(), offset = delivery.offset, "commit failed; the invocation may run again");
        }
    }

    /// Handles one delivery; true when everything it owes was published.
    async fn handle(
        &self,
        delivery: &Delivery,
        per_handler: &Mutex<HashMap<String, Arc<Semaphore>>>,
        shutdown: &CancellationToken,
    ) -> bool {
        let invocation: Invocation = match delivery.message.decode_json() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(reason = %e.chain(), offset = delivery.offset, "undecodable invocation sent to the dead-letter topic");
                let message = delivery
                    .message
                    .clone()
                    .with_header(
                        topics::REASON_HEADER,
                        format!("undecodable invocation: {}", e.chain()),
                    )
                    .with_header("fx-original-topic", delivery.topic.clone());
                return self.publish(topics::DEADLETTER, message, shutdown).await;
            }
        };
        let handler_slots = {
            let Ok(mut map) = per_handler.lock() else {
                return false;
            };
            map.entry(invocation.handler.name.clone())
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(invocation.limits.concurrency.max(1) as usize))
                })
                .clone()
        };
        let Ok(_permit) = handler_slots.acquire_owned().await else {
            return false;
        };
        let span = tracing::info_span!("invocation", execution_id = %invocation.execution_id, handler = %invocation.handler.name, attempt = invocation.attempt);
        self.execute(&invocation, shutdown).instrument(span).await
    }

    async fn execute(&self, invocation: &Invocation, shutdown: &CancellationToken) -> bool {
        let key = Some(invocation.execution_id.to_string());
        let state = |event: &StateEvent| Message::json(key.clone(), event);
        let started = StateEvent::Started {
            execution_id: invocation.execution_id.clone(),
            attempt: invocation.attempt,
            at: Utc::now(),
            executor: self.settings.executor_id.clone(),
        };
        let Ok(message) = state(&started) else {
            return false;
        };
        if !self.publish(topics::STATE, message, shutdown).await {
            return false;
        }
        let outcome = self.invoke(invocation).await;
        for line in &outcome.logs {
            let Ok(message) = state(&StateEvent::Log(line.clone())) else {
                return false;
            };
            if !self.publish(topics::STATE, message, shutdown).await {
                return false;
            }
        }
        let duration_us = outcome.duration.as_micros() as u64;
        let last = match outcome.result {
            Ok(output) => {
                for event in &output {
                    if !self
                        .publish(topics::EVENTS, encode_message(event), shutdown)
                        .await
                    {
                        return false;
                    }
                }
                tracing::info!(duration_us, outputs = output.len(), "succeeded");
                StateEvent::Succeeded {
                    execution_id: invocation.execution_id.clone(),
                    attempt: invocation.attempt,
                    at: Utc::now(),
                    duration_us,
                    output,
                }
            }
            Err(failure) => {
                tracing::info!(duration_us, reason = %failure.message, "failed");
                StateEvent::Failed {
                    execution_id: invocation.execution_id.clone(),
                    attempt: invocation.attempt,
                    at: Utc::now(),
                    duration_us,
                    failure,
                }
            }
        };
        let Ok(message) = state(&last) else {
            return false;
        };
        self.publish(topics::STATE, message, shutdown).await
    }

    /// Publishes, retrying while the bus is unavailable (until shutdown); true on success.
    async fn publish(&self, topic: &str, message: Message, shutdown: &CancellationToken) -> bool {
        let mut delay = Duration::from_millis(50);
        loop {
            match self.bus.publish(topic, message.clone()).await {
                Ok(()) => return true,
                Err(e) if e.kind().is_retryable() && !shutdown.is_cancelled() => {
                    tracing::warn!(error = %e.chain(), %topic, "publish failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(error = %e.chain(), %topic, "publish failed");
                    return false;
                }
            }
        }
    }
}
