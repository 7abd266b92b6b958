//! What one run of a function produced, as the executor reports it: the output events within
//! the output cap, the cause of a failed call (the limit it hit, or the trap, with the tail of
//! stderr), and captured stdout and stderr as log lines.

use fx_core::event::Event;
use fx_core::execution::{Failure, FailureKind, LogLevel};
use fx_core::limits::Limits;
use wasmtime::Trap;

use crate::bindings::WitEvent;
use crate::breach::Breach;
use crate::convert::{from_wit, wit_event_size};
use crate::host::{HostState, RawLog};

/// Bytes of stderr quoted in the reason of a trap.
const STDERR_TAIL_BYTES: usize = 512;

/// The non-empty lines of a captured stream as log lines.
pub(crate) fn stdio_lines(text: &str, stream: &str, level: LogLevel) -> Vec<RawLog> {
    let at = chrono::Utc::now();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| RawLog {
            level,
            message: line.to_string(),
            fields: vec![("stream".into(), stream.into())],
            at,
        })
        .collect()
}

/// The emitted and returned events, within the output cap.
pub(crate) fn collect_output(
    state: &mut HostState,
    returned: &[WitEvent],
) -> Result<Vec<Event>, Failure> {
    let mut output = std::mem::take(&mut state.emitted);
    for (n, event) in returned.iter().enumerate() {
        if let Err(breach) = state.add_output(wit_event_size(event)) {
            return Err(Failure {
                kind: FailureKind::OutputLimit,
                message: breach.to_string(),
            });
        }
        match from_wit(event) {
            Ok(event) => output.push(event),
            Err(e) => {
                return Err(Failure {
                    kind: FailureKind::FunctionError,
                    message: format!("returned event {n} is invalid: {}", e.chain()),
                })
            }
        }
    }
    Ok(output)
}

/// Names the cause of a failed call: the limit it hit, or the trap.
pub(crate) fn classify(error: &wasmtime::Error, state: &HostState, limits: &Limits) -> Failure {
    let breach = state
        .breach
        .clone()
        .or_else(|| error.downcast_ref::<Breach>().cloned());
    if let Some(breach) = breach {
        let kind = match breach {
            Breach::BadEvent(_) => FailureKind::FunctionError,
            Breach::Output(_) | Breach::Log(_) => FailureKind::OutputLimit,
        };
        return Failure {
            kind,
            message: breach.to_string(),
        };
    }
    let trap = error.downcast_ref::<Trap>();
    let (kind, message) = match trap {
        Some(Trap::Interrupt) => (
            FailureKind::Timeout,
            format!("timed out after {} ms", limits.timeout_ms),
        ),
        Some(Trap::OutOfFuel) => (
            FailureKind::FuelLimit,
            format!("fuel budget of {} exhausted", limits.fuel.unwrap_or(0)),
        ),
        Some(Trap::StackOverflow) => (
            FailureKind::Trap,
            format!("stack overflow ({})", Trap::StackOverflow),
        ),
        _ if state.limiter.memory_refused => (
            FailureKind::MemoryLimit,
            format!("memory limit of {} MiB exceeded", limits.memory_mb),
        ),
        Some(trap) => (FailureKind::Trap, trap.to_string()),
        None => (FailureKind::Trap, format!("{error:#}")),
    };
    let mut message = message;
    if kind == FailureKind::Trap {
        let (_, stderr) = state.stdio();
        if let Some(tail) = stderr_tail(&stderr) {
            message.push_str(&format!(" (stderr: {tail})"));
        }
    }
    Failure { kind, message }
}

/// The last lines of stderr, where a guest that panics says why before it aborts
/// (`thread '<unnamed>' panicked at src/lib.rs:7:5: requested trap`), without Rust's note
/// about backtraces; at most [`STDERR_TAIL_BYTES`].
fn stderr_tail(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" ");
    if tail.is_empty() {
        return None;
    }
    if tail.len() <= STDERR_TAIL_BYTES {
        return Some(tail);
    }
    let mut start = tail.len() - STDERR_TAIL_BYTES;
    while !tail.is_char_boundary(start) {
        start += 1;
    }
    Some(format!("…{}", &tail[start..]))
}
