//! The operational-data port: function log lines (and later metrics), searchable.

use async_trait::async_trait;

use crate::error::Result;
use crate::execution::{ExecutionId, LogLine};

pub mod embedded;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod testsuite;

/// Where log lines go.
#[async_trait]
pub trait OperationalSink: Send + Sync + 'static {
    /// Writes log lines. A line already written (same execution, attempt and seq) is not
    /// duplicated.
    async fn write_logs(&self, lines: &[LogLine]) -> Result<()>;

    /// The log lines of one execution, in order (attempt, then seq).
    async fn execution_logs(&self, id: &ExecutionId) -> Result<Vec<LogLine>>;
}
