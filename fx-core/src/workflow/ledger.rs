//! Where runs are kept: the state store (SQLite or PostgreSQL), beside the executions their
//! steps start. A run is one record updated by compare-and-swap on its version, so that two
//! gateways moving one run at once never both record a step: the second one's update fails,
//! it reads the run again and finds the step recorded. An index from each step execution to
//! its run lets the state router find the runs a batch of finished executions moves.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::run::{Run, RunId, RunStatus, RunSummary};
use crate::error::Result;
use crate::execution::{ExecutionId, Page};

/// A query over runs: newest first, paged by an opaque cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuery {
    /// Only this workflow's.
    #[serde(default)]
    pub workflow: Option<String>,
    /// Only this status.
    #[serde(default)]
    pub status: Option<RunStatus>,
    /// Continue after this cursor (from [`Page::next_cursor`]).
    #[serde(default)]
    pub cursor: Option<String>,
    /// Page size; the store caps it at 500 and defaults to 50.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only those started at or after this time.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Only those started before this time.
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
}

impl RunQuery {
    /// The page size to use.
    pub fn page_size(&self) -> u32 {
        self.limit.unwrap_or(50).clamp(1, 500)
    }
}

/// The runs of workflows, in the state store.
#[async_trait]
pub trait RunLedger: Send + Sync + 'static {
    /// Stores `run` (its `version` is ignored and stored as 1) unless a run with its id
    /// exists; returns whether it was stored.
    async fn create_run(&self, run: &Run) -> Result<bool>;

    /// The run with this id, with the version it is stored at.
    async fn get_run(&self, id: &RunId) -> Result<Option<Run>>;

    /// Replaces the stored run if it is still at `run.version`, storing it at `run.version +
    /// 1`; returns false (and changes nothing) when another update came first or the run does
    /// not exist.
    async fn update_run(&self, run: &Run) -> Result<bool>;

    /// Runs newest first (by start, then id), filtered and paged.
    async fn list_runs(&self, query: &RunQuery) -> Result<Page<RunSummary>>;

    /// Up to `limit` runs still `running` or with steps still running (`finished_at` unset),
    /// oldest first: what a conductor checks after a restart.
    async fn unfinished_runs(&self, limit: u32) -> Result<Vec<RunId>>;

    /// Records that the `executions` belong to run `run` (idempotent).
    async fn index_step_executions(&self, run: &RunId, executions: &[ExecutionId]) -> Result<()>;

    /// The runs that any of `executions` belongs to, each once.
    async fn runs_of(&self, executions: &[ExecutionId]) -> Result<Vec<RunId>>;
}
