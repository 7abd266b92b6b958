//! The Elasticsearch operational sink: log lines, per-attempt metrics, execution documents,
//! the audit log and workflow run and step documents into daily indices under index templates
//! the sink installs on start, sent with the bulk API by a background task.
//!
//! - [`settings`]: what an operator configures.
//! - [`mappings`]: index names, templates with explicit mappings, the indexed documents.
//! - [`buffer`]: the bounded buffer between writers and the flusher (drops the oldest).
//! - `requests`: the calls to the cluster (`elasticsearch` crate).
//! - `tls`: the CA of `ca_file`, and what a refused server certificate means.
//!
//! Writes never wait for Elasticsearch: they encode the documents, append them to the buffer
//! and return. The flusher sends a batch when it holds `batch_max_docs` documents or
//! `batch_max_bytes`, when its oldest document has waited `flush_interval_ms`, or when
//! [`OperationalSink::flush`] asks; a batch that fails is retried with exponential backoff,
//! and while Elasticsearch is down the buffer keeps the newest `buffer_max_docs` documents.
//! Each document has a deterministic `_id` (log line: execution, attempt and seq), and log
//! lines and metrics are sent with `create`, so a retried or redelivered write never
//! duplicates one (executions and workflow runs and steps with `index`: a newer state replaces
//! the older). Buffered documents are lost if the process dies: logs and metrics are
//! best-effort, execution state stays in the state store.
//!
//! `execution_logs` and `handler_logs` merge what the cluster has indexed with what is still
//! buffered or in flight, so a reader in the writing process sees its own lines at once; other
//! processes see them once they are indexed (with `wait_for_refresh`, when the bulk request returns).

use crate::backoff::Backoff;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use self::buffer::{Buffer, NewOp};
use self::mappings::{ExecutionSource, Family, LogSource, MetricSource, RunSource, StepSource};
use self::requests::{Cluster, Templates};
use super::documents::{ExecutionDoc, MetricDoc, RunDoc, StepDoc};
use super::{LogQuery, OperationalSink};
use crate::error::{Error, ErrorKind, Result};
use crate::execution::{ExecutionId, LogLine};

pub mod buffer;
pub mod mappings;
mod requests;
pub mod settings;
#[cfg(test)]
mod tests;

pub use settings::ElasticsearchSettings;

/// Log lines, metrics, executions, the audit log and workflow runs and steps in Elasticsearch.
pub struct ElasticsearchSink {
    shared: Arc<Shared>,
    cluster: Cluster,
    flusher: JoinHandle<()>,
}

/// What writers, readers and the flusher share.
struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the flusher: a document arrived in an empty buffer, a batch is full, or a flush
    /// was asked for.
    wake: Notify,
    /// Documents written before this position are to be sent now (a flush was asked for).
    flush_before: AtomicU64,
    /// Every document written before this position is delivered, refused or dropped.
    progress: watch::Sender<u64>,
    /// Documents the cluster refused for good.
    rejected_total: AtomicU64,
    /// Requests (template installs and bulk requests) that failed because the cluster could
    /// not be reached, since start.
    unavailable_total: AtomicU64,
    batch_max_docs: usize,
    batch_max_bytes: usize,
    flush_interval: Duration,
    retry_initial_backoff: Duration,
    retry_max_backoff: Duration,
}

impl Shared {
    fn buffer(&self) -> MutexGuard<'_, Buffer> {
        // The buffer is consistent after every statement: a panic elsewhere leaves it usable.
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ElasticsearchSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElasticsearchSink")
            .field("url", &self.cluster.url())
            .field("index_prefix", &self.cluster.prefix())
            .finish_non_exhaustive()
    }
}

impl ElasticsearchSink {
    /// Starts the sink: checks the settings and installs the index templates. A cluster that
    /// cannot be reached does not stop the start: the sink buffers and installs the templates
    /// before its first bulk request, once the cluster answers. A cluster that refuses the
    /// templates (`Invalid`) does.
    pub async fn open(settings: &ElasticsearchSettings) -> Result<Self> {
        let cluster = Cluster::new(settings)?;
        let templates = match cluster.install_templates().await {
            Ok(kind) => Some(kind),
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                tracing::warn!(error = %e.chain(), "elasticsearch is not available; buffering documents until it is");
                None
            }
            Err(e) => return Err(e),
        };
        let (progress, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::new(
                settings.buffer_max_docs,
                settings.buffer_max_bytes,
            )),
            wake: Notify::new(),
            flush_before: AtomicU64::new(0),
            progress,
            rejected_total: AtomicU64::new(0),
            unavailable_total: AtomicU64::new(0),
            batch_max_docs: settings.batch_max_docs,
            batch_max_bytes: settings.batch_max_bytes,
            flush_interval: settings.flush_interval(),
            retry_initial_backoff: Duration::from_millis(settings.retry_initial_backoff_ms),
            retry_max_backoff: Duration::from_millis(settings.retry_max_backoff_ms),
        });
        let flusher = tokio::spawn(flush_loop(Arc::clone(&shared), cluster.clone(), templates));
        tracing::info!(url = %cluster.url(), index_prefix = %cluster.prefix(), "elasticsearch sink opened");
        Ok(ElasticsearchSink {
            shared,
            cluster,
            flusher,
        })
    }

    /// Documents the cluster refused for good (a mapping conflict, say) since start.
    pub fn rejected_total(&self) -> u64 {
        self.shared.rejected_total.load(Ordering::Relaxed)
    }

    /// Requests that failed because the cluster could not be reached, since start: each one
    /// is retried after a backoff.
    pub fn unavailable_total(&self) -> u64 {
        self.shared.unavailable_total.load(Ordering::Relaxed)
    }

    /// Documents waiting in the buffer (not counting a batch in flight).
    pub fn buffered(&self) -> usize {
        self.shared.buffer().len()
    }

    /// Appends documents to the buffer and wakes the flusher when it has to arm its timer or
    /// a batch is full.
    fn enqueue(&self, ops: Vec<NewOp>) {
        if ops.is_empty() {
            return;
        }
        let mut buffer = self.shared.buffer();
        // A flusher that found the buffer empty sleeps without a deadline: it learns of the
        // first document here, and of a full batch.
        let was_empty = buffer.is_empty();
        let mut dropped = 0;
        for op in ops {
            dropped += buffer.push(op);
        }
        let wake = was_empty
            || buffer.len() >= self.shared.batch_max_docs
            || buffer.bytes() >= self.shared.batch_max_bytes;
        if dropped > 0 {
            self.shared.progress.send_replace(buffer.done_before());
        }
        drop(buffer);
        if wake {
            self.shared.wake.notify_one();
        }
    }

    fn op<T: Serialize>(
        &self,
        family: Family,
        action: &str,
        index: String,
        id: String,
        source: &T,
        log: Option<LogLine>,
    ) -> Result<NewOp> {
        let action = json!({ action: { "_index": index, "_id": id } }).to_string();
        let source = serde_json::to_string(source).map_err(|e| {
            Error::internal(format!("encoding a {} document {id}", family.name())).with_source(e)
        })?;
        Ok(NewOp {
            family,
            action,
            source,
            log,
        })
    }
}

impl Drop for ElasticsearchSink {
    fn drop(&mut self) {
        // Buffered documents are lost: call `flush` first to deliver them.
        self.flusher.abort();
    }
}

#[async_trait]
impl OperationalSink for ElasticsearchSink {
    async fn write_logs(&self, lines: &[LogLine]) -> Result<()> {
        let prefix = self.cluster.prefix();
        let ops = lines
            .iter()
            .map(|line| {
                self.op(
                    Family::Logs,
                    "create",
                    Family::Logs.index(prefix, line.at),
                    mappings::log_id(line),
                    &LogSource::from(line),
                    Some(line.clone()),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        self.enqueue(ops);
        Ok(())
    }

    async fn execution_logs(&self, id: &ExecutionId) -> Result<Vec<LogLine>> {
        // Buffered first: a line that leaves the buffer after this is searchable before the
        // search below (with `wait_for_refresh`), so none falls between the two.
        let pending = self.shared.buffer().pending_logs(id);
        let indexed = self.cluster.search_logs(id).await?;
        let mut lines = BTreeMap::new();
        // The first write of a line wins, as in the cluster (`create`).
        for line in indexed.into_iter().chain(pending) {
            lines.entry((line.attempt, line.seq)).or_insert(line);
        }
        Ok(lines.into_values().collect())
    }

    async fn handler_logs(&self, query: &LogQuery) -> Result<Vec<LogLine>> {
        // Buffered first, as in `execution_logs`; the first write of a line wins (the page
        // keeps the first of two lines at one position).
        let pending = self.shared.buffer().pending_handler_logs(query);
        let indexed = self.cluster.search_handler_logs(query).await?;
        Ok(query.page_of(indexed.into_iter().chain(pending)))
    }

    async fn write_executions(&self, docs: &[ExecutionDoc]) -> Result<()> {
        let prefix = self.cluster.prefix();
        let ops = docs
            .iter()
            .map(|doc| {
                self.op(
                    Family::Executions,
                    "index",
                    Family::Executions.index(prefix, doc.created_at),
                    mappings::execution_id(doc),
                    &ExecutionSource::from(doc),
                    None,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        self.enqueue(ops);
        Ok(())
    }

    async fn write_metrics(&self, metrics: &[MetricDoc]) -> Result<()> {
        let prefix = self.cluster.prefix();
        let ops = metrics
            .iter()
            .map(|metric| {
                self.op(
                    Family::Metrics,
                    "create",
                    Family::Metrics.index(prefix, metric.at),
                    mappings::metric_id(metric),
                    &MetricSource::from(metric),
                    None,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        self.enqueue(ops);
        Ok(())
    }

    /// One `index` op per run (`_id` the run; dated by when it started) and per step result
    /// (`_id` `<run>/<step>/<generation>`; dated by [`mappings::step_time`]): a newer state of
    /// a run, or a result written again, replaces the document.
    async fn write_workflow_docs(&self, runs: &[RunDoc], steps: &[StepDoc]) -> Result<()> {
        let prefix = self.cluster.prefix();
        let mut ops = Vec::with_capacity(runs.len() + steps.len());
        for run in runs {
            ops.push(self.op(
                Family::WorkflowRuns,
                "index",
                Family::WorkflowRuns.index(prefix, run.created_at),
                mappings::run_doc_id(run),
                &RunSource::from(run),
                None,
            )?);
        }
        for step in steps {
            let run_created_at = runs
                .iter()
                .find(|r| r.run_id == step.run_id)
                .map(|r| r.created_at);
            let at = mappings::step_time(step, run_created_at);
            ops.push(self.op(
                Family::WorkflowSteps,
                "index",
                Family::WorkflowSteps.index(prefix, at),
                mappings::step_doc_id(step),
                &StepSource::new(step, at),
                None,
            )?);
        }
        self.enqueue(ops);
        Ok(())
    }

    async fn write_audit(&self, entries: &[crate::identity::AuditRecord]) -> Result<()> {
        let prefix = self.cluster.prefix();
        let ops = entries
            .iter()
            .map(|entry| {
                self.op(
                    Family::Audit,
                    "create",
                    Family::Audit.index(prefix, entry.at),
                    format!("audit-{}", entry.id),
                    &mappings::AuditSource::from(entry),
                    None,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        self.enqueue(ops);
        Ok(())
    }

    /// Buffers the lines, then waits until they are delivered (however long Elasticsearch is
    /// down). Fails as unavailable when the buffer dropped a log line meanwhile (only the log
    /// router writes log lines, so they may be its own): the caller writes them again, and
    /// `create` with their deterministic ids keeps what was delivered from doubling.
    async fn store_logs(&self, lines: &[LogLine]) -> Result<()> {
        let dropped_before = self.shared.buffer().dropped_logs_total();
        self.write_logs(lines).await?;
        self.flush().await?;
        let dropped = self.shared.buffer().dropped_logs_total() - dropped_before;
        if dropped > 0 {
            return Err(Error::unavailable(format!(
                "the elasticsearch buffer dropped {dropped} log lines before they were delivered (buffer_max_docs / buffer_max_bytes)"
            )));
        }
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        let target = self.shared.buffer().next_seq();
        self.shared
            .flush_before
            .fetch_max(target, Ordering::Relaxed);
        self.shared.wake.notify_one();
        let mut progress = self.shared.progress.subscribe();
        progress
            .wait_for(|done| *done >= target)
            .await
            .map_err(|_| Error::internal("the elasticsearch flusher stopped"))?;
        Ok(())
    }

    fn stores_documents(&self) -> bool {
        true
    }

    fn dropped_total(&self) -> u64 {
        self.shared.buffer().dropped_total()
    }
}

/// The background task: installs the templates if `open` could not, then sends batches until
/// the sink is dropped.
async fn flush_loop(shared: Arc<Shared>, cluster: Cluster, mut templates: Option<Templates>) {
    let mut backoff = Backoff::new(shared.retry_initial_backoff, shared.retry_max_backoff);
    loop {
        if templates.is_none() {
            match cluster.install_templates().await {
                Ok(kind) => templates = Some(kind),
                Err(e) if e.kind() != ErrorKind::Unavailable => {
                    // Retrying the same refused templates cannot help: send without them.
                    tracing::error!(error = %e.chain(), "elasticsearch refused the index templates; sending documents with the cluster's dynamic mappings");
                    templates = Some(Templates::Refused);
                }
                Err(e) => {
                    shared.unavailable_total.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e.chain(), retry_in_ms = delay.as_millis() as u64, "installing elasticsearch index templates failed; retrying");
                    report_drops(&shared);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
        }
        let batch = {
            let mut buffer = shared.buffer();
            let due = match (buffer.oldest_seq(), buffer.oldest_written_at()) {
                (Some(seq), Some(written_at)) => {
                    buffer.len() >= shared.batch_max_docs
                        || buffer.bytes() >= shared.batch_max_bytes
                        || written_at.elapsed() >= shared.flush_interval
                        || seq < shared.flush_before.load(Ordering::Relaxed)
                }
                _ => false,
            };
            if due {
                Some(buffer.take_batch(shared.batch_max_docs, shared.batch_max_bytes))
            } else {
                shared.progress.send_replace(buffer.done_before());
                None
            }
        };
        let Some(batch) = batch else {
            let deadline = shared
                .buffer()
                .oldest_written_at()
                .map(|at| at + shared.flush_interval);
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        _ = shared.wake.notified() => {}
                        _ = tokio::time::sleep_until(deadline.into()) => {}
                    }
                }
                None => shared.wake.notified().await,
            }
            continue;
        };
        let (undelivered, failed) = match cluster.bulk(&batch).await {
            Ok(outcome) => {
                if outcome.rejected > 0 {
                    shared
                        .rejected_total
                        .fetch_add(outcome.rejected as u64, Ordering::Relaxed);
                    tracing::error!(
                        rejected = outcome.rejected,
                        first = outcome.first_rejection.as_deref().unwrap_or_default(),
                        "elasticsearch refused documents; they are dropped"
                    );
                }
                let failed = !outcome.retry.is_empty();
                if failed {
                    tracing::warn!(
                        documents = outcome.retry.len(),
                        retry_in_ms = backoff.peek().as_millis() as u64,
                        "elasticsearch could not take every document of a batch; retrying them"
                    );
                }
                (outcome.retry, failed)
            }
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                shared.unavailable_total.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e.chain(), documents = batch.len(), retry_in_ms = backoff.peek().as_millis() as u64, "bulk request failed; retrying");
                // The cluster may come back rebuilt: put the templates again (idempotent)
                // before the next batch creates an index without them.
                templates = None;
                (batch, true)
            }
            Err(e) => {
                shared
                    .rejected_total
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e.chain(), documents = batch.len(), "elasticsearch refused a bulk request; its documents are dropped");
                (Vec::new(), false)
            }
        };
        {
            let mut buffer = shared.buffer();
            buffer.finish_batch(undelivered);
            shared.progress.send_replace(buffer.done_before());
        }
        report_drops(&shared);
        if failed {
            backoff.sleep().await;
        } else {
            backoff.reset();
        }
    }
}

/// Logs the documents dropped since the last report, once per flush cycle.
fn report_drops(shared: &Shared) {
    let (dropped, total) = {
        let mut buffer = shared.buffer();
        (buffer.take_unreported_drops(), buffer.dropped_total())
    };
    if dropped > 0 {
        tracing::warn!(
            dropped,
            dropped_total = total,
            "elasticsearch buffer full: dropped the oldest documents"
        );
    }
}
