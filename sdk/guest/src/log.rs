//! Structured logging to the execution's log.
//!
//! Each call writes one line with a level, a message and key-value fields; the platform records
//! it with the execution and indexes it for search. Keep messages lowercase and put values in
//! fields rather than in the message: `log::info_with("order priced", &[("order_id", id)])`.
//! The bytes an invocation may log are capped (`max_log_bytes`).

use crate::bindings::ferrisfx::function::host;
use crate::bindings::ferrisfx::function::types::Level as WitLevel;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Step-by-step detail.
    Trace,
    /// Detail useful when debugging.
    Debug,
    /// Normal progress.
    Info,
    /// Something unexpected that the function handled.
    Warn,
    /// A failure.
    Error,
}

impl From<Level> for WitLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => WitLevel::Trace,
            Level::Debug => WitLevel::Debug,
            Level::Info => WitLevel::Info,
            Level::Warn => WitLevel::Warn,
            Level::Error => WitLevel::Error,
        }
    }
}

/// Writes `message` with `fields` at `level`.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    host::log(level.into(), message, &fields);
}

/// Writes `message` at trace level.
pub fn trace(message: &str) {
    log(Level::Trace, message, &[]);
}

/// Writes `message` at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}

/// Writes `message` at info level.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Writes `message` at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Writes `message` at error level.
pub fn error(message: &str) {
    log(Level::Error, message, &[]);
}

/// Writes `message` with `fields` at trace level.
pub fn trace_with(message: &str, fields: &[(&str, &str)]) {
    log(Level::Trace, message, fields);
}

/// Writes `message` with `fields` at debug level.
pub fn debug_with(message: &str, fields: &[(&str, &str)]) {
    log(Level::Debug, message, fields);
}

/// Writes `message` with `fields` at info level.
pub fn info_with(message: &str, fields: &[(&str, &str)]) {
    log(Level::Info, message, fields);
}

/// Writes `message` with `fields` at warn level.
pub fn warn_with(message: &str, fields: &[(&str, &str)]) {
    log(Level::Warn, message, fields);
}

/// Writes `message` with `fields` at error level.
pub fn error_with(message: &str, fields: &[(&str, &str)]) {
    log(Level::Error, message, fields);
}
