//! Notifications out: when an execution succeeds, fails for good or is dead-lettered, tell
//! someone. A [`Rule`] (in the registry, beside the handlers) names the handlers it watches
//! (`*` for all), the outcomes, and where to send: a signed JSON POST to a URL, or a CloudEvent
//! to an HTTP sink.
//!
//! Delivery is an outbox in the state store ([`NotificationLedger`]): the notifier records a
//! pending notification per (rule, execution) once, then senders claim due ones, POST them and
//! record each attempt (its status code or error, its time), retrying with backoff until
//! delivered or out of attempts. A crash loses nothing (pending rows are claimed again) and
//! several servers send each notification once per attempt (a claim is a lease).
//!
//! A JSON notification is signed like Stripe signs its webhooks: `X-FerrisFX-Signature:
//! t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">` with the rule's secret ([`sign`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::execution::{Execution, ExecutionId};
use crate::validate::validate_name;

/// The header carrying a notification's signature.
pub const SIGNATURE_HEADER: &str = "X-FerrisFX-Signature";

/// The type of a notification sent as a CloudEvent: `com.ferrisfx.execution.<outcome>`.
pub const EVENT_TYPE_PREFIX: &str = "com.ferrisfx.execution.";

/// The most attempts a rule may ask for.
pub const MAX_ATTEMPTS: u32 = 20;

/// A notification rule, as stored in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The handlers whose executions it watches: names, or `*` for every handler.
    pub handlers: Vec<String>,
    /// The outcomes it sends: `failed` (the last attempt failed), `dead_lettered` (failed
    /// and handed to the dead-letter topic), `succeeded`.
    pub on: BTreeSet<Outcome>,
    /// Where it sends.
    pub target: Target,
    /// Attempts per notification before it is given up (1 to 20).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// A disabled rule sends nothing.
    #[serde(default = "enabled", skip_serializing_if = "Clone::clone")]
    pub enabled: bool,
}

fn default_attempts() -> u32 {
    5
}
fn enabled() -> bool {
    true
}

/// What became of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its last attempt succeeded.
    Succeeded,
    /// Its last attempt failed and no retry follows.
    Failed,
    /// It failed for good and its invocation went to the dead-letter topic.
    DeadLettered,
}

impl Outcome {
    /// The outcome's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::DeadLettered => "dead_lettered",
        }
    }

    /// Parses a name of [`Outcome::as_str`].
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "succeeded" => Ok(Outcome::Succeeded),
            "failed" => Ok(Outcome::Failed),
            "dead_lettered" => Ok(Outcome::DeadLettered),
            other => Err(Error::invalid(format!(
                "outcome {other:?} is not succeeded, failed or dead_lettered"
            ))),
        }
    }
}

/// Where a rule sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// A JSON POST of the [`Summary`], signed with `secret` (a platform secret).
    Webhook {
        /// The URL (`http` or `https`).
        url: String,
        /// The platform secret whose value signs the body; unsigned when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
    /// A CloudEvent in binary mode (`ce-` headers; the [`Summary`] as JSON data) to an HTTP
    /// sink (Knative's, an event gateway's), signed as a webhook is when `secret` is set.
    Cloudevent {
        /// The sink's URL.
        url: String,
        /// The platform secret whose value signs the body; unsigned when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
    },
}

impl Target {
    /// The URL sent to.
    pub fn url(&self) -> &str {
        match self {
            Target::Webhook { url, .. } | Target::Cloudevent { url, .. } => url,
        }
    }

    /// The platform secret signing the body, if any.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Target::Webhook { secret, .. } | Target::Cloudevent { secret, .. } => secret.as_deref(),
        }
    }
}

impl Rule {
    /// Checks every rule a stored rule must satisfy; the message names the offending field.
    pub fn validate(&self) -> Result<()> {
        validate_name("notification rule name", &self.name)?;
        if self.handlers.is_empty() || self.handlers.len() > 1000 {
            return Err(Error::invalid(
                "handlers: name 1 to 1000 handlers, or [\"*\"] for every handler",
            ));
        }
        for handler in &self.handlers {
            if handler != "*" {
                validate_name("handlers", handler)?;
            }
        }
        if self.on.is_empty() {
            return Err(Error::invalid(
                "on: name at least one outcome (succeeded, failed, dead_lettered)",
            ));
        }
        let url = url::Url::parse(self.target.url()).map_err(|e| {
            Error::invalid(format!(
                "target.url {:?} is not a URL: {e}",
                self.target.url()
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::invalid(format!(
                "target.url {:?} is not an http or https URL",
                self.target.url()
            )));
        }
        if let Some(secret) = self.target.secret() {
            crate::secrets::validate_secret_name(secret)
                .map_err(|e| Error::invalid(format!("target.secret: {}", e.message())))?;
        }
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS {
            return Err(Error::invalid(format!(
                "max_attempts must be 1 to {MAX_ATTEMPTS}, got {}",
                self.max_attempts
            )));
        }
        Ok(())
    }

    /// Whether this rule sends `outcome` of an execution of `handler`.
    pub fn wants(&self, handler: &str, outcome: Outcome) -> bool {
        self.enabled
            && self.on.contains(&outcome)
            && self.handlers.iter().any(|h| h == "*" || h == handler)
    }
}

/// What a notification says about an execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The rule that sent it.
    pub rule: String,
    /// `succeeded`, `failed` or `dead_lettered`.
    pub outcome: Outcome,
    /// The execution.
    pub execution_id: ExecutionId,
    /// Its handler.
    pub handler: String,
    /// The package that ran, `name@version`, when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The triggering event's id, source and type.
    pub event: EventRef,
    /// Attempts made.
    pub attempts: u32,
    /// Why it failed (absent on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was created and finished.
    pub created_at: DateTime<Utc>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Its page in the web UI.
    pub url: String,
}

/// An event, by its identifying attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    /// `id`.
    pub id: String,
    /// `source`.
    pub source: String,
    /// `type`.
    #[serde(rename = "type")]
    pub ty: String,
}

impl Summary {
    /// The summary of `execution` for `rule` and `outcome`; `ui` is the web UI's base URL.
    pub fn of(rule: &str, outcome: Outcome, execution: &Execution, ui: &str) -> Summary {
        use cloudevents::AttributesReader;
        Summary {
            rule: rule.to_string(),
            outcome,
            execution_id: execution.id.clone(),
            handler: execution.handler.clone(),
            package: execution
                .package
                .as_ref()
                .map(|p| format!("{}@{}", p.name, p.version)),
            event: EventRef {
                id: execution.event.id().to_string(),
                source: execution.event.source().to_string(),
                ty: execution.event.ty().to_string(),
            },
            attempts: execution.attempts,
            error: execution.error.as_ref().map(|f| f.message.clone()),
            created_at: execution.created_at,
            finished_at: execution.finished_at,
            url: format!(
                "{}/executions/{}",
                ui.trim_end_matches('/'),
                execution.id.as_str()
            ),
        }
    }
}

/// The signature header's value for `body` at `at` with `key`: `t=<unix>,v1=<hex>`.
pub fn sign(key: &[u8], at: DateTime<Utc>, body: &[u8]) -> String {
    let t = at.timestamp().to_string();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(t.as_bytes());
    context.update(b".");
    context.update(body);
    format!("t={t},v1={}", hex::encode(context.sign().as_ref()))
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; another attempt is due at `next_at`.
    Pending,
    /// The target answered 2xx.
    Delivered,
    /// Out of attempts (or the rule is gone).
    Failed,
}

impl DeliveryStatus {
    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Parses a name of [`DeliveryStatus::as_str`].
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(Error::invalid(format!(
                "delivery status {other:?} is not pending, delivered or failed"
            ))),
        }
    }
}

/// One attempt to deliver a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// The target's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// What went wrong (a connection error, a non-2xx answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// One notification: a rule's message about one execution, with its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The rule.
    pub rule: String,
    /// The execution.
    pub execution_id: ExecutionId,
    /// What it tells.
    pub outcome: Outcome,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// The attempts made, oldest first.
    pub attempts: Vec<DeliveryAttempt>,
    /// When the next attempt is due (pending), or the last was made.
    pub next_at: DateTime<Utc>,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// The outbox of notifications: in the state database (both backends), so that every
/// server's sender sees them and none is lost in a crash.
#[async_trait::async_trait]
pub trait NotificationLedger: Send + Sync + 'static {
    /// Records notification (`rule`, `execution`) of `outcome` as pending, due at `at`;
    /// `false` (and nothing changes) when it exists already: enqueuing twice sends once.
    async fn enqueue_notification(
        &self,
        rule: &str,
        execution: &ExecutionId,
        outcome: Outcome,
        at: DateTime<Utc>,
    ) -> Result<bool>;

    /// Claims up to `limit` pending notifications due at `now` (oldest due first) and moves
    /// their `next_at` to `now + lease`, so that no other sender claims them meanwhile. Atomic
    /// per notification: two senders never claim the same one at once.
    async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<Notification>>;

    /// Appends `attempt` to notification (`rule`, `execution`) and sets its status; a pending
    /// one is due again at `next_at`.
    async fn record_notification_attempt(
        &self,
        rule: &str,
        execution: &ExecutionId,
        attempt: &DeliveryAttempt,
        status: DeliveryStatus,
        next_at: DateTime<Utc>,
    ) -> Result<()>;

    /// Every notification about `execution`, by rule name.
    async fn notifications_of(&self, execution: &ExecutionId) -> Result<Vec<Notification>>;
}

#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

#[cfg(test)]
mod tests;
