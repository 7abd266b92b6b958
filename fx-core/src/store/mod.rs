//! The state store port: package metadata and aliases, executions and their attempts.

use async_trait::async_trait;

use crate::error::Result;
use crate::execution::{
    Execution, ExecutionId, ExecutionQuery, ExecutionStatus, ExecutionSummary, Page, StateEvent,
};
use crate::handler::PackageRef;
use crate::package::{PackageAlias, PackageVersion};

pub mod change;
pub mod embedded;
mod encoding;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
mod text_filter;

/// What creating an execution found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// It is new.
    New,
    /// It existed already, with this status.
    Existing(crate::execution::ExecutionStatus),
}

/// One change of a handler (a create, an update or a delete), as kept in its history.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HandlerChange {
    /// The handler's name.
    pub name: String,
    /// The registry revision of the change; with `name`, it identifies the change.
    pub revision: u64,
    /// The handler as written, or `None` when it was deleted.
    pub handler: Option<crate::handler::Handler>,
    /// When the change was made.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Who made it (the `x-fx-user` of the request), if known.
    pub by: Option<String>,
}

/// The state store.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Answers when the store can be read (for readiness): looks up an execution that does
    /// not exist (a primary-key lookup).
    async fn ready(&self) -> Result<()> {
        self.get_execution(&ExecutionId::readiness_probe())
            .await
            .map(|_| ())
    }

    /// Records a new package version and points the `latest` alias at it. `Conflict` if the
    /// version exists (versions are immutable).
    async fn add_package_version(&self, version: &PackageVersion) -> Result<()>;

    /// Every version of `name` (or of every package), newest first.
    async fn list_package_versions(&self, name: Option<&str>) -> Result<Vec<PackageVersion>>;

    /// One exact version.
    async fn get_package_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<PackageVersion>>;

    /// Points `alias` of package `name` at `version` (which must exist: `NotFound` otherwise).
    async fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<()>;

    /// The aliases of `name`.
    async fn list_aliases(&self, name: &str) -> Result<Vec<PackageAlias>>;

    /// Resolves a reference (exact version, or alias) to a version; `NotFound` naming the
    /// reference when nothing matches.
    async fn resolve_package(&self, reference: &PackageRef) -> Result<PackageVersion>;

    /// Creates an execution in status `queued` unless one with the same id exists.
    async fn create_execution(&self, execution: &Execution) -> Result<Created>;

    /// Creates `executions` as [`StateStore::create_execution`] would one by one, in their
    /// order, in as few writes as the store allows (both SQL stores: one transaction); what
    /// each found, in the same order. When it fails, some may have been created (the default,
    /// one by one) or none (a transaction); creating them again is harmless either way.
    async fn create_executions(&self, executions: &[Execution]) -> Result<Vec<Created>> {
        let mut created = Vec::with_capacity(executions.len());
        for execution in executions {
            created.push(self.create_execution(execution).await?);
        }
        Ok(created)
    }

    /// Applies a state event. Idempotent: an event already applied, or one older than the
    /// execution's latest attempt, changes nothing. `Log` events are ignored here (they go to
    /// the operational sink).
    async fn apply_state(&self, event: &StateEvent) -> Result<()>;

    /// Applies `events` in their order, as [`StateStore::apply_state`] would one by one, in as
    /// few writes as the store allows (both SQL stores: one transaction). When it fails, some
    /// of the events may have been applied (the default, one by one) or none (a transaction);
    /// applying them again is harmless either way.
    async fn apply_states(&self, events: &[StateEvent]) -> Result<()> {
        for event in events {
            self.apply_state(event).await?;
        }
        Ok(())
    }

    /// Moves execution `id` from status `from` to `to` if it is still at `attempts` attempts
    /// and in status `from`; `false` when it changed meanwhile. A re-drive moves a finished
    /// execution back to `queued` with this, so that of two re-drives at once only one runs.
    async fn transition(
        &self,
        id: &ExecutionId,
        attempts: u32,
        from: ExecutionStatus,
        to: ExecutionStatus,
    ) -> Result<bool>;

    /// Up to `limit` finished (`succeeded` or `failed`) executions created before `before`,
    /// oldest first: what retention deletes next.
    async fn expired_executions(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<Vec<ExecutionId>>;

    /// Deletes executions `ids` with their attempts' records; answers how many there were.
    async fn delete_executions(&self, ids: &[ExecutionId]) -> Result<u64>;

    /// One execution.
    async fn get_execution(&self, id: &ExecutionId) -> Result<Option<Execution>>;

    /// Executions newest first, filtered and paged by cursor.
    async fn list_executions(&self, query: &ExecutionQuery) -> Result<Page<ExecutionSummary>>;

    /// Records a change of a handler. Idempotent on (`name`, `revision`): recording a change
    /// that is already recorded changes nothing (the first record stays).
    async fn record_handler_change(&self, change: &HandlerChange) -> Result<()>;

    /// The recorded changes of handler `name`, newest (highest revision) first; empty for a
    /// name never seen.
    async fn handler_history(&self, name: &str) -> Result<Vec<HandlerChange>>;
}
