//! Why the host stopped an invocation from inside an import: a limit breached or an invalid
//! emitted event. A leaf module.

/// Why the host stopped an invocation from inside an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Breach {
    /// Output (returned + emitted event bytes) went over the cap.
    Output(u64),
    /// Log volume (log lines, stdout, stderr) went over the cap.
    Log(u64),
    /// An emitted event is not a valid CloudEvent.
    BadEvent(String),
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Breach::Output(cap) => write!(f, "output exceeded {cap} bytes (max_output_bytes)"),
            Breach::Log(cap) => write!(f, "log volume exceeded {cap} bytes (max_log_bytes)"),
            Breach::BadEvent(reason) => write!(f, "emitted event is invalid: {reason}"),
        }
    }
}

impl std::error::Error for Breach {}
