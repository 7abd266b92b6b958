//! The bounds of one invocation ([`Limits`], and the [`LimitOverrides`] a handler or a
//! manifest sets) and what happens when an execution fails ([`RetryPolicy`]), with their upper
//! bounds. Depends only on the error type and the failure kinds.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::failure::FailureKind;

/// Limits of one invocation, each optional so that a handler overrides only what it names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Linear memory cap in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// Wall-clock timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Invocations of this handler running at once on one executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Fuel budget (instructions, roughly); unmetered when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Cap on the bytes of the events an invocation returns or emits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Cap on the bytes of log lines an invocation writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<u64>,
}

impl LimitOverrides {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self == &LimitOverrides::default()
    }

    /// Checks each override against its bounds; the message names the field.
    pub fn validate(&self) -> Result<()> {
        let bounds = Limits::MAX;
        check_bound(
            "memory_mb",
            self.memory_mb.map(u64::from),
            1,
            bounds.memory_mb.into(),
        )?;
        check_bound("timeout_ms", self.timeout_ms, 1, bounds.timeout_ms)?;
        check_bound(
            "concurrency",
            self.concurrency.map(u64::from),
            1,
            bounds.concurrency.into(),
        )?;
        check_bound("fuel", self.fuel, 1, u64::MAX)?;
        check_bound(
            "max_output_bytes",
            self.max_output_bytes,
            1,
            bounds.max_output_bytes,
        )?;
        check_bound("max_log_bytes", self.max_log_bytes, 1, bounds.max_log_bytes)?;
        Ok(())
    }

    /// These overrides on top of `base`.
    pub fn apply_to(&self, base: Limits) -> Limits {
        Limits {
            memory_mb: self.memory_mb.unwrap_or(base.memory_mb),
            timeout_ms: self.timeout_ms.unwrap_or(base.timeout_ms),
            concurrency: self.concurrency.unwrap_or(base.concurrency),
            fuel: self.fuel.or(base.fuel),
            max_output_bytes: self.max_output_bytes.unwrap_or(base.max_output_bytes),
            max_log_bytes: self.max_log_bytes.unwrap_or(base.max_log_bytes),
        }
    }
}

fn check_bound(field: &str, value: Option<u64>, min: u64, max: u64) -> Result<()> {
    match value {
        Some(v) if v < min || v > max => Err(Error::invalid(format!(
            "limit {field} = {v} is out of bounds ({min} to {max})"
        ))),
        _ => Ok(()),
    }
}

/// The effective limits of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Linear memory cap in MiB.
    pub memory_mb: u32,
    /// Wall-clock timeout in milliseconds.
    pub timeout_ms: u64,
    /// Invocations of one handler running at once on one executor.
    pub concurrency: u32,
    /// Fuel budget; unmetered when `None`.
    pub fuel: Option<u64>,
    /// Cap on output event bytes.
    pub max_output_bytes: u64,
    /// Cap on log bytes.
    pub max_log_bytes: u64,
}

impl Limits {
    /// The defaults when neither manifest nor handler says otherwise.
    pub const DEFAULT: Limits = Limits {
        memory_mb: 64,
        timeout_ms: 5_000,
        concurrency: 16,
        fuel: None,
        max_output_bytes: 1024 * 1024,
        max_log_bytes: 256 * 1024,
    };

    /// The largest values a handler or manifest may ask for.
    pub const MAX: Limits = Limits {
        memory_mb: 4096,
        timeout_ms: 15 * 60 * 1000,
        concurrency: 1024,
        fuel: None,
        max_output_bytes: 64 * 1024 * 1024,
        max_log_bytes: 16 * 1024 * 1024,
    };

    /// Effective limits: defaults, then the manifest's, then the handler's.
    pub fn resolve(manifest: &LimitOverrides, handler: &LimitOverrides) -> Limits {
        handler.apply_to(manifest.apply_to(Limits::DEFAULT))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// What happens when an execution fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    #[serde(default = "one")]
    pub max_attempts: u32,
    /// Delay before the first retry, doubled for each further one.
    #[serde(default = "initial_backoff")]
    pub backoff_ms: u64,
    /// Upper bound of the delay.
    #[serde(default = "max_backoff")]
    pub max_backoff_ms: u64,
    /// Whether an attempt that broke a limit (memory, fuel, output or log volume) is retried.
    /// Traps, timeouts, errors the function returns and platform failures always are; a
    /// package that cannot be fetched or compiled never is.
    #[serde(default)]
    pub retry_limit_breaches: bool,
}

fn one() -> u32 {
    1
}
fn initial_backoff() -> u64 {
    1_000
}
fn max_backoff() -> u64 {
    60_000
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: one(),
            backoff_ms: initial_backoff(),
            max_backoff_ms: max_backoff(),
            retry_limit_breaches: false,
        }
    }
}

impl RetryPolicy {
    /// Whether a failure of `kind` in attempt `attempt` of this drive (from 1) is retried.
    pub fn retries(&self, kind: FailureKind, attempt: u32) -> bool {
        if attempt >= self.max_attempts {
            return false;
        }
        match kind {
            FailureKind::Trap
            | FailureKind::Timeout
            | FailureKind::FunctionError
            | FailureKind::Internal => true,
            FailureKind::MemoryLimit | FailureKind::FuelLimit | FailureKind::OutputLimit => {
                self.retry_limit_breaches
            }
            FailureKind::Package | FailureKind::Refused => false,
        }
    }

    /// The delay before the attempt that follows attempt `attempt` (from 1): `backoff_ms`
    /// doubled per earlier retry, capped at `max_backoff_ms`, with "equal jitter": half of it
    /// fixed, the other half scaled by `jitter` (in 0..=1; pass a random number), so that
    /// retries of many executions spread out but never come sooner than half the backoff.
    pub fn delay_after(&self, attempt: u32, jitter: f64) -> std::time::Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let backoff = self
            .backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_ms);
        let half = backoff as f64 / 2.0;
        let ms = half + half * jitter.clamp(0.0, 1.0);
        std::time::Duration::from_micros((ms * 1000.0) as u64)
    }

    /// The longest backoff a policy may ask for: a day.
    pub const MAX_BACKOFF_MS: u64 = 24 * 60 * 60 * 1000;
    /// The most attempts a policy may ask for.
    pub const MAX_ATTEMPTS: u32 = 100;

    /// This policy within the bounds [`RetryPolicy::validate`] enforces: what an executor uses,
    /// since an invocation message may not have been validated.
    pub fn bounded(&self) -> RetryPolicy {
        let max_backoff_ms = self.max_backoff_ms.min(Self::MAX_BACKOFF_MS);
        RetryPolicy {
            max_attempts: self.max_attempts.clamp(1, Self::MAX_ATTEMPTS),
            backoff_ms: self.backoff_ms.min(max_backoff_ms),
            max_backoff_ms,
            retry_limit_breaches: self.retry_limit_breaches,
        }
    }

    /// Checks the policy against its bounds; the message names the field.
    pub fn validate(&self) -> Result<()> {
        check_bound(
            "retry.max_attempts",
            Some(self.max_attempts.into()),
            1,
            Self::MAX_ATTEMPTS.into(),
        )?;
        check_bound(
            "retry.backoff_ms",
            Some(self.backoff_ms),
            0,
            Self::MAX_BACKOFF_MS,
        )?;
        check_bound(
            "retry.max_backoff_ms",
            Some(self.max_backoff_ms),
            0,
            Self::MAX_BACKOFF_MS,
        )?;
        if self.backoff_ms > self.max_backoff_ms {
            return Err(Error::invalid(format!(
                "retry.backoff_ms ({}) is larger than retry.max_backoff_ms ({})",
                self.backoff_ms, self.max_backoff_ms
            )));
        }
        Ok(())
    }
}
