//! Schedules: events the platform emits on its own, on a cron expression, at a fixed interval
//! or once at a given time.
//!
//! A schedule's tick is the CloudEvent [`FIRED_TYPE`] from `/schedules/<name>`, with the
//! schedule's `data`; its id names the schedule and the instant it was due
//! ([`tick_event_id`]), so every process computing the same tick produces the same event.
//! Instants are computed, never counted: an interval schedule fires at the multiples of its
//! period since the Unix epoch, a cron schedule at its expression's instants in its time zone.
//! So processes that agree on the clock agree on the ticks, with no shared state but the last
//! tick fired (see the gateway's scheduler).

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{new_json_event, Event};
use crate::validate::validate_name;

/// The type of a schedule's tick event.
pub const FIRED_TYPE: &str = "com.ferrisfx.schedule.fired";

/// The longest interval: one year.
const MAX_EVERY_SECONDS: u64 = 366 * 24 * 3600;

/// The most missed ticks a `catch_up` schedule fires after a downtime.
pub const MAX_CATCH_UP: u32 = 1_000;

/// The largest `data` a schedule carries, as JSON.
const MAX_DATA_BYTES: usize = 64 * 1024;

/// A schedule as stored in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Unique name (lowercase letters, digits and `-`); the tick's source is
    /// `/schedules/<name>`.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A cron expression: five fields (minute to day of week) or six with seconds first
    /// (`*/10 * * * * *`), in `timezone`. One of `cron`, `every_seconds` and `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// A fixed period in seconds: ticks at every multiple of it since the Unix epoch (`60`
    /// fires at each full minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_seconds: Option<u64>,
    /// One tick at this time, then none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// The IANA time zone of `cron` (`Europe/Paris`); `UTC` by default.
    #[serde(default = "utc", skip_serializing_if = "is_utc")]
    pub timezone: String,
    /// The `data` of every tick event (JSON).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
    /// What ticks missed while no scheduler ran become.
    #[serde(default)]
    pub missed: Missed,
    /// With `missed = catch_up`: at most this many missed ticks fire (the latest ones).
    #[serde(
        default = "default_catch_up",
        skip_serializing_if = "is_default_catch_up"
    )]
    pub catch_up_limit: u32,
    /// A paused schedule fires nothing; its missed ticks are not caught up on resume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

fn utc() -> String {
    "UTC".into()
}
fn is_utc(tz: &str) -> bool {
    tz == "UTC"
}
fn default_catch_up() -> u32 {
    10
}
fn is_default_catch_up(n: &u32) -> bool {
    *n == default_catch_up()
}

/// What a schedule does with ticks missed while no scheduler ran (every gateway down).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Drop them: the next tick is the next one due.
    #[default]
    Skip,
    /// Fire the latest missed tick once.
    Once,
    /// Fire the latest `catch_up_limit` missed ticks, oldest first.
    CatchUp,
}

impl Missed {
    /// Its name in settings and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::Once => "once",
            Missed::CatchUp => "catch_up",
        }
    }
}

/// When a schedule fires, parsed.
#[derive(Debug, Clone)]
enum When {
    Cron(Box<croner::Cron>, chrono_tz::Tz),
    Every(u64),
    At(DateTime<Utc>),
}

impl When {
    /// The first tick strictly after `after`, if any.
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            When::Every(seconds) => {
                let period = i64::try_from(*seconds).ok()?;
                let next = (after.timestamp().div_euclid(period) + 1).checked_mul(period)?;
                Utc.timestamp_opt(next, 0).single()
            }
            When::At(at) => (*at > after).then_some(*at),
            When::Cron(cron, tz) => {
                let local = after.with_timezone(tz);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
        }
    }
}

impl Schedule {
    /// Checks the schedule; the error names the field.
    pub fn validate(&self) -> Result<()> {
        validate_name("schedule name", &self.name)?;
        self.when()?;
        if self.catch_up_limit == 0 || self.catch_up_limit > MAX_CATCH_UP {
            return Err(Error::invalid(format!(
                "schedule {}: catch_up_limit must be between 1 and {MAX_CATCH_UP}, not {}",
                self.name, self.catch_up_limit
            )));
        }
        let data = serde_json::to_vec(&self.data).map_err(|e| {
            Error::invalid(format!("schedule {}: data is not JSON: {e}", self.name))
        })?;
        if data.len() > MAX_DATA_BYTES {
            return Err(Error::invalid(format!(
                "schedule {}: data is {} bytes of JSON, more than {MAX_DATA_BYTES}",
                self.name,
                data.len()
            )));
        }
        Ok(())
    }

    fn when(&self) -> Result<When> {
        let name = &self.name;
        let tz = chrono_tz::Tz::from_str(&self.timezone).map_err(|_| {
            Error::invalid(format!(
                "schedule {name}: timezone {:?} is not an IANA time zone (e.g. UTC, Europe/Paris)",
                self.timezone
            ))
        })?;
        match (&self.cron, self.every_seconds, self.at) {
            (Some(expression), None, None) => {
                let cron = parse_cron(expression)
                    .map_err(|e| Error::invalid(format!("schedule {name}: {e}")))?;
                Ok(When::Cron(Box::new(cron), tz))
            }
            (None, Some(seconds), None) => {
                if seconds == 0 || seconds > MAX_EVERY_SECONDS {
                    return Err(Error::invalid(format!(
                        "schedule {name}: every_seconds must be between 1 and {MAX_EVERY_SECONDS}, not {seconds}"
                    )));
                }
                Ok(When::Every(seconds))
            }
            (None, None, Some(at)) => Ok(When::At(at)),
            _ => Err(Error::invalid(format!(
                "schedule {name}: give exactly one of cron, every_seconds and at"
            ))),
        }
    }

    /// The first tick strictly after `after`; `None` when there is none (a one-off schedule
    /// past its time, a cron expression that never matches again) or the schedule is invalid.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.when().ok()?.next_after(after)
    }

    /// The latest tick at or before `at`, if any.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.when().ok()? {
            When::Every(seconds) => {
                let period = i64::try_from(seconds).ok()?;
                let tick = at.timestamp().div_euclid(period).checked_mul(period)?;
                Utc.timestamp_opt(tick, 0).single()
            }
            When::At(one) => (one <= at).then_some(one),
            When::Cron(cron, tz) => cron
                .find_previous_occurrence(&at.with_timezone(&tz), true)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        }
    }

    /// The next `n` ticks after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let Ok(when) = self.when() else {
            return Vec::new();
        };
        let mut ticks = Vec::with_capacity(n);
        let mut at = after;
        while ticks.len() < n {
            match when.next_after(at) {
                Some(next) => {
                    ticks.push(next);
                    at = next;
                }
                None => break,
            }
        }
        ticks
    }

    /// The ticks to fire at `now`, given the last tick fired (`None`: none yet, so nothing
    /// before `now` is owed) and `grace`: a tick at most `grace` old is on time (a scheduler
    /// that woke late, a restart); older ones were missed and follow [`Schedule::missed`].
    /// Oldest first. Looks at no more than `budget` ticks, so a per-second schedule after a
    /// year of downtime costs bounded time (the oldest are then dropped).
    pub fn due(
        &self,
        last: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        grace: chrono::Duration,
        budget: usize,
    ) -> Vec<DateTime<Utc>> {
        if self.paused {
            return Vec::new();
        }
        // Parsed once: a catch-up scan may step through many ticks.
        let Ok(when) = self.when() else {
            return Vec::new();
        };
        let Some(last) = last else {
            // Never fired: only a tick due within the grace counts.
            return when
                .next_after(now - grace - chrono::Duration::microseconds(1))
                .filter(|t| *t <= now)
                .into_iter()
                .collect();
        };
        let keep_missed = match self.missed {
            Missed::Skip => 0,
            Missed::Once => 1,
            Missed::CatchUp => self.catch_up_limit as usize,
        };
        // Start late enough that at most `budget` ticks are looked at: for a fixed period
        // this is exact; for cron, scanning from `last` is bounded by `budget` steps.
        let mut at = match when {
            When::Every(seconds) => {
                let span = chrono::Duration::seconds(seconds as i64 * budget as i64);
                last.max(now - span)
            }
            _ => last,
        };
        let mut missed = std::collections::VecDeque::new();
        let mut on_time = Vec::new();
        for _ in 0..budget {
            let Some(next) = when.next_after(at) else {
                break;
            };
            if next > now {
                break;
            }
            if now - next <= grace {
                on_time.push(next);
            } else if keep_missed > 0 {
                if missed.len() == keep_missed {
                    missed.pop_front();
                }
                missed.push_back(next);
            }
            at = next;
        }
        missed.into_iter().chain(on_time).collect()
    }

    /// The source of this schedule's tick events.
    pub fn source(&self) -> String {
        format!("/schedules/{}", self.name)
    }

    /// The tick event of the instant `at`.
    pub fn tick_event(&self, at: DateTime<Utc>) -> Result<Event> {
        use cloudevents::event::AttributesWriter as _;
        let mut event = new_json_event(
            tick_event_id(&self.name, at),
            self.source(),
            FIRED_TYPE,
            self.data.clone(),
        )?;
        event.set_time(Some(at));
        event.set_subject(Some(self.name.clone()));
        Ok(event)
    }
}

/// The ticks fired, by schedule: in the state database, so that every scheduler (one per
/// gateway) sees what the others fired and a tick fires once however many run.
#[async_trait::async_trait]
pub trait TickLedger: Send + Sync + 'static {
    /// The last tick fired of every schedule that has fired.
    async fn last_ticks(&self) -> Result<std::collections::HashMap<String, DateTime<Utc>>>;

    /// Claims tick `at` of schedule `name` for the caller: `true` when no later or equal tick
    /// of it was claimed before (the last tick is then `at`), `false` when another scheduler
    /// claimed it (or a later one) first. Atomic.
    async fn claim_tick(&self, name: &str, at: DateTime<Utc>) -> Result<bool>;

    /// Forgets the ticks of schedule `name` (deleted): a schedule created again under the
    /// name starts afresh.
    async fn forget_ticks(&self, name: &str) -> Result<()>;
}

/// The id of the tick of schedule `name` due at `at`: the same in every process.
pub fn tick_event_id(name: &str, at: DateTime<Utc>) -> String {
    format!(
        "{name}@{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Parses a cron expression of five fields, or six with seconds first.
fn parse_cron(expression: &str) -> std::result::Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    let fields = expression.split_whitespace().count();
    let seconds = match fields {
        // `@daily`, `@hourly`, …
        1 if expression.trim_start().starts_with('@') => Seconds::Optional,
        5 => Seconds::Disallowed,
        6 => Seconds::Required,
        n => {
            return Err(format!(
                "cron {expression:?} has {n} fields: give 5 (minute hour day month weekday) or 6 (second first)"
            ))
        }
    };
    CronParser::builder()
        .seconds(seconds)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .map_err(|e| format!("cron {expression:?} is not valid: {e}"))
}

#[cfg(test)]
mod tests;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
