//! The notification sender: claims due notifications from the outbox in the state store
//! ([`fx_core::notify::NotificationLedger`]; the state router records them as executions
//! finish), POSTs each to its rule's target, and records every attempt. A failed attempt is
//! retried with exponential backoff (1 s, 2 s, 4 s… at most 5 minutes, with jitter) until the
//! rule's `max_attempts`; then the notification is `failed`. Every server runs a sender; a
//! claim is a lease, so each attempt is made by one of them.

use std::time::Duration;

use chrono::Utc;
use fx_core::notify::{
    sign, DeliveryAttempt, DeliveryStatus, Notification, Rule, Summary, Target, EVENT_TYPE_PREFIX,
    SIGNATURE_HEADER,
};
use fx_core::telemetry::NOTIFICATIONS;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use fx_core::registry::CachedTable;

/// How often the sender looks for due notifications when it found none.
const POLL: Duration = Duration::from_millis(500);

/// Notifications claimed at once.
const CLAIM: usize = 32;

/// How long a claim holds a notification: longer than one attempt can take.
const LEASE: Duration = Duration::from_secs(60);

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The timeout of one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends notifications until `shutdown`; `ui` is the web UI's base URL for the links.
pub async fn run(state: AppState, ui: String, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "building the notification sender's http client failed; no notification is sent");
            return;
        }
    };
    let rules = CachedTable::<Rule>::default();
    let sender = Sender {
        state,
        ui,
        client,
        rules,
    };
    loop {
        let sent = sender.pass().await;
        let pause = if sent == CLAIM { Duration::ZERO } else { POLL };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

struct Sender {
    state: AppState,
    ui: String,
    client: reqwest::Client,
    rules: CachedTable<Rule>,
}

impl Sender {
    /// One pass: claims what is due and sends it; how many were claimed.
    async fn pass(&self) -> usize {
        let ledger = &self.state.backends.notifications;
        let claimed = match ledger.claim_notifications(Utc::now(), LEASE, CLAIM).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "claiming due notifications failed; retrying");
                return 0;
            }
        };
        let count = claimed.len();
        futures::future::join_all(claimed.into_iter().map(|n| self.send(n))).await;
        count
    }

    async fn send(&self, notification: Notification) {
        let rule = match self
            .rules
            .entry(
                self.state.backends.notification_rules.as_ref(),
                &notification.rule,
                |_| {},
            )
            .await
        {
            Ok(Some(rule)) => rule,
            Ok(None) => {
                self.give_up(&notification, "the rule no longer exists")
                    .await;
                return;
            }
            Err(e) => {
                tracing::warn!(rule = %notification.rule, error = %e.chain(), "reading the notification rules failed; the notification waits for its lease");
                return;
            }
        };
        let execution = match self
            .state
            .backends
            .state
            .get_execution(&notification.execution_id)
            .await
        {
            Ok(Some(execution)) => execution,
            Ok(None) => {
                // Deleted by retention before it was told: nothing left to say.
                self.give_up(&notification, "the execution no longer exists")
                    .await;
                return;
            }
            Err(e) => {
                tracing::warn!(execution_id = %notification.execution_id, error = %e.chain(), "reading a notification's execution failed; it waits for its lease");
                return;
            }
        };
        let summary = Summary::of(&rule.name, notification.outcome, &execution, &self.ui);
        let started = std::time::Instant::now();
        let at = Utc::now();
        let result = self.post(&rule.target, &summary).await;
        let attempt = DeliveryAttempt {
            at,
            status_code: result.as_ref().ok().copied().flatten(),
            error: result.as_ref().err().cloned(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let made = notification.attempts.len() as u32 + 1;
        let (status, next_at) = if attempt.error.is_none() {
            (DeliveryStatus::Delivered, at)
        } else if made >= rule.max_attempts {
            (DeliveryStatus::Failed, at)
        } else {
            (DeliveryStatus::Pending, at + backoff(made))
        };
        metrics::counter!(NOTIFICATIONS, "rule" => rule.name.clone(), "result" => match (status, &attempt.error) {
            (DeliveryStatus::Delivered, _) => "delivered",
            (DeliveryStatus::Failed, _) => "failed",
            _ => "retrying",
        })
        .increment(1);
        match status {
            DeliveryStatus::Delivered => {
                tracing::info!(rule = %rule.name, execution_id = %notification.execution_id, attempt = made, "notification delivered")
            }
            _ => {
                tracing::warn!(rule = %rule.name, execution_id = %notification.execution_id, attempt = made, status = status.as_str(), error = attempt.error.as_deref().unwrap_or(""), "notification attempt failed")
            }
        }
        if let Err(e) = self
            .state
            .backends
            .notifications
            .record_notification_attempt(
                &notification.rule,
                &notification.execution_id,
                &attempt,
                status,
                next_at,
            )
            .await
        {
            tracing::warn!(rule = %rule.name, execution_id = %notification.execution_id, error = %e.chain(), "recording a notification attempt failed; it is made again when its lease ends");
        }
    }

    /// POSTs `summary` to `target`: the status code of a 2xx answer, or what went wrong.
    async fn post(&self, target: &Target, summary: &Summary) -> Result<Option<u16>, String> {
        let body = serde_json::to_vec(summary).map_err(|e| format!("encoding the summary: {e}"))?;
        let mut request = self
            .client
            .post(target.url())
            .header("user-agent", "FerrisFX-Notifier");
        if let Target::Cloudevent { .. } = target {
            request = request
                .header("ce-specversion", "1.0")
                .header(
                    "ce-id",
                    format!("{}:{}", summary.rule, summary.execution_id.as_str()),
                )
                .header("ce-source", "/ferrisfx/notifications")
                .header(
                    "ce-type",
                    format!("{EVENT_TYPE_PREFIX}{}", summary.outcome.as_str()),
                )
                .header("ce-subject", summary.handler.as_str())
                .header("ce-time", Utc::now().to_rfc3339());
        }
        if let Some(secret) = target.secret() {
            let value = match self.state.vault.value(secret).await {
                Ok(Some(value)) => value,
                Ok(None) => return Err(format!("secret {secret:?} does not exist")),
                Err(e) => return Err(format!("reading secret {secret:?}: {}", e.chain())),
            };
            request = request.header(
                SIGNATURE_HEADER,
                sign(value.expose().as_bytes(), Utc::now(), &body),
            );
        }
        let response = request
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let status = response.status();
        if status.is_success() {
            Ok(Some(status.as_u16()))
        } else {
            Err(format!("the target answered {status}"))
        }
    }

    async fn give_up(&self, notification: &Notification, why: &str) {
        let attempt = DeliveryAttempt {
            at: Utc::now(),
            status_code: None,
            error: Some(why.to_string()),
            duration_ms: 0,
        };
        tracing::info!(rule = %notification.rule, execution_id = %notification.execution_id, why, "notification given up");
        if let Err(e) = self
            .state
            .backends
            .notifications
            .record_notification_attempt(
                &notification.rule,
                &notification.execution_id,
                &attempt,
                DeliveryStatus::Failed,
                attempt.at,
            )
            .await
        {
            tracing::warn!(error = %e.chain(), "recording a notification given up failed");
        }
    }
}

/// The wait after failed attempt `n` (from 1): 1 s, 2 s, 4 s… at most [`MAX_BACKOFF`], with
/// up to 25 % jitter so that a target coming back is not hit by every retry at once.
fn backoff(n: u32) -> chrono::Duration {
    let base = Duration::from_secs(1)
        .saturating_mul(2u32.saturating_pow(n.saturating_sub(1)))
        .min(MAX_BACKOFF);
    let jitter = base.mul_f64(fastrand_fraction() * 0.25);
    chrono::Duration::from_std(base + jitter).unwrap_or(chrono::Duration::seconds(300))
}

/// A number in [0, 1) from the clock's nanoseconds: jitter needs no better.
fn fastrand_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let secs = |n| backoff(n).num_milliseconds() as f64 / 1000.0;
        assert!((1.0..1.26).contains(&secs(1)), "{}", secs(1));
        assert!((2.0..2.51).contains(&secs(2)), "{}", secs(2));
        assert!((8.0..10.1).contains(&secs(4)), "{}", secs(4));
        assert!((300.0..375.1).contains(&secs(30)), "{}", secs(30));
    }
}
