//! Why an attempt failed: the failure kinds that drive retries, the dead-letter reason and the
//! metrics. A leaf module: it depends on nothing else in the crate.

use serde::{Deserialize, Serialize};

/// Why an attempt failed: the kind drives retry decisions, the message is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// Human-readable reason naming the cause (the trap, the limit, the missing package).
    pub message: String,
}

/// Kinds of failure of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The function trapped (unreachable, out-of-bounds access, stack overflow, …).
    Trap,
    /// The wall-clock timeout expired.
    Timeout,
    /// The memory cap was hit.
    MemoryLimit,
    /// The fuel budget ran out.
    FuelLimit,
    /// Output or log volume went over its cap.
    OutputLimit,
    /// The function returned an error.
    FunctionError,
    /// The package could not be fetched, verified or compiled.
    Package,
    /// Something on the platform's side.
    Internal,
    /// The executor refused the invocation: it asks for more than the executor's pool allows,
    /// or for grants its package does not declare. Never retried.
    Refused,
}

impl FailureKind {
    /// The snake_case name used in JSON, metrics and the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::MemoryLimit => "memory_limit",
            FailureKind::FuelLimit => "fuel_limit",
            FailureKind::OutputLimit => "output_limit",
            FailureKind::FunctionError => "function_error",
            FailureKind::Package => "package",
            FailureKind::Internal => "internal",
            FailureKind::Refused => "refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kind_names_are_their_json_names() {
        use FailureKind::*;
        for kind in [
            Trap,
            Timeout,
            MemoryLimit,
            FuelLimit,
            OutputLimit,
            FunctionError,
            Package,
            Internal,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
