//! The operational-data port: function log lines, per-attempt metrics and execution documents
//! for dashboards, searchable.
//!
//! Backends: [`embedded`] (SQLite, log lines only), `postgres` (log lines only) and
//! `elasticsearch` (everything, with Kibana dashboards). [`routing`] says which state events
//! the state router sends here; [`documents`] are the non-log documents it sends; [`query`]
//! is how a handler's lines are read in order.

use async_trait::async_trait;

use crate::error::Result;
use crate::execution::{ExecutionId, LogLine};

pub mod documents;
#[cfg(feature = "elasticsearch")]
pub mod elasticsearch;
pub mod embedded;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod query;
pub mod routing;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use documents::{ExecutionDoc, MetricDoc, RunDoc, StepDoc};
pub use query::{LogCursor, LogQuery, MAX_LOG_LINES};
pub use routing::StateRouting;

/// Where log lines, metrics and execution documents go.
#[async_trait]
pub trait OperationalSink: Send + Sync + 'static {
    /// Writes log lines. A line already written (same execution, attempt and seq) is not
    /// duplicated. A buffering backend returns once the lines are buffered.
    async fn write_logs(&self, lines: &[LogLine]) -> Result<()>;

    /// Writes log lines and returns only once they are stored for good, however long that
    /// takes (bound it with the caller's shutdown). Fails as unavailable when they could not
    /// be (the caller writes them again: writes are idempotent). The log router commits a
    /// line only after this. Default: [`OperationalSink::write_logs`], then
    /// [`OperationalSink::flush`].
    async fn store_logs(&self, lines: &[LogLine]) -> Result<()> {
        self.write_logs(lines).await?;
        self.flush().await
    }

    /// The log lines of one execution, in order (attempt, then seq).
    async fn execution_logs(&self, id: &ExecutionId) -> Result<Vec<LogLine>>;

    /// The log lines of one handler that `query` asks for, in [`LogCursor`] order (time,
    /// execution, attempt, seq), at most [`LogQuery::page_size`] of them.
    async fn handler_logs(&self, query: &LogQuery) -> Result<Vec<LogLine>>;

    /// Deletes the log lines of executions `ids` (retention); answers how many. A sink that
    /// ages its data out by itself (Elasticsearch: index lifecycle) deletes nothing here.
    async fn delete_logs(&self, ids: &[ExecutionId]) -> Result<u64> {
        let _ = ids;
        Ok(0)
    }

    /// Answers when the sink can be read (for readiness): the log lines of an execution that
    /// does not exist.
    async fn ready(&self) -> Result<()> {
        self.execution_logs(&ExecutionId::readiness_probe())
            .await
            .map(|_| ())
    }

    /// Whether the backend stores metrics and execution documents. The state router reads an
    /// execution back to build them only for a backend that does (default: no).
    fn stores_documents(&self) -> bool {
        false
    }

    /// Writes the latest state of executions; a newer document replaces the older one of the
    /// same execution. Backends without dashboards ignore them (the default).
    async fn write_executions(&self, docs: &[ExecutionDoc]) -> Result<()> {
        let _ = docs;
        Ok(())
    }

    /// Writes the metrics of finished attempts; one already written (same execution and
    /// attempt) is not counted twice. Backends without dashboards ignore them (the default).
    async fn write_metrics(&self, metrics: &[MetricDoc]) -> Result<()> {
        let _ = metrics;
        Ok(())
    }

    /// Writes workflow run and step documents (a run's latest state; a step's recorded
    /// result); a newer document of the same run or step replaces the older one. Backends
    /// without dashboards ignore them (the default).
    async fn write_workflow_docs(&self, runs: &[RunDoc], steps: &[StepDoc]) -> Result<()> {
        let _ = (runs, steps);
        Ok(())
    }

    /// Writes entries of the audit log (already kept in the state store), for dashboards and
    /// searches; one written before (same id) is not written twice. Backends without
    /// dashboards ignore them (the default).
    async fn write_audit(&self, entries: &[crate::identity::AuditRecord]) -> Result<()> {
        let _ = entries;
        Ok(())
    }

    /// Returns once everything written before the call is stored (delivered, or dropped for
    /// good). It waits as long as the backend is down: bound it with a timeout at shutdown.
    /// Backends that store on write return at once (the default).
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Documents dropped since start because a bounded buffer was full (the backend was
    /// down or slow for too long). Backends without a buffer never drop (the default, 0).
    fn dropped_total(&self) -> u64 {
        0
    }
}
