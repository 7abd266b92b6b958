//! The bounded buffer between the writers (the state router) and the bulk flusher.
//!
//! Writers append documents, already encoded as bulk lines, and never wait: when the buffer
//! holds `max_docs`, the oldest documents are dropped and counted. The flusher takes batches
//! from the front; a batch it could not deliver goes back to the front, so that during an
//! outage it is again the oldest and the first to be dropped. While a batch is in flight its
//! log lines stay readable, so `execution_logs` sees every line that is buffered, in flight or
//! indexed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::mappings::Family;
use crate::execution::{ExecutionId, LogLine};
use crate::sink::LogQuery;

/// One bulk operation: its action line, its document line, and the log line it carries.
#[derive(Debug)]
pub struct Op {
    /// Position in the order of writes, from 0.
    pub seq: u64,
    /// The index family.
    pub family: Family,
    /// The action line, e.g. `{"create":{"_index":"fx-logs-2026.01.01","_id":"…"}}`.
    pub action: String,
    /// The document line.
    pub source: String,
    /// The log line, for reads of lines not yet indexed.
    pub log: Option<LogLine>,
    /// When it was written.
    pub written_at: Instant,
}

impl Op {
    /// Its size in a bulk body (both lines and their newlines).
    pub fn bytes(&self) -> usize {
        self.action.len() + self.source.len() + 2
    }
}

/// A document to append: everything of an [`Op`] but its position.
#[derive(Debug)]
pub struct NewOp {
    /// The index family.
    pub family: Family,
    /// The action line.
    pub action: String,
    /// The document line.
    pub source: String,
    /// The log line it carries.
    pub log: Option<LogLine>,
}

/// The buffer. Not synchronized: the sink keeps it behind a mutex held for microseconds.
#[derive(Debug)]
pub struct Buffer {
    max_docs: usize,
    max_bytes: usize,
    queue: VecDeque<Arc<Op>>,
    queued_bytes: usize,
    in_flight: Vec<Arc<Op>>,
    next_seq: u64,
    dropped_total: u64,
    dropped_unreported: u64,
    /// Log lines among `dropped_total`.
    dropped_logs_total: u64,
}

impl Buffer {
    /// An empty buffer holding at most `max_docs` queued documents (at least 1) and, beyond
    /// its newest document, at most `max_bytes`.
    pub fn new(max_docs: usize, max_bytes: usize) -> Self {
        Buffer {
            max_docs: max_docs.max(1),
            max_bytes,
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: Vec::new(),
            next_seq: 0,
            dropped_total: 0,
            dropped_unreported: 0,
            dropped_logs_total: 0,
        }
    }

    /// Appends `op`, dropping the oldest queued documents beyond the bound; returns how many
    /// were dropped.
    pub fn push(&mut self, op: NewOp) -> usize {
        let op = Arc::new(Op {
            seq: self.next_seq,
            family: op.family,
            action: op.action,
            source: op.source,
            log: op.log,
            written_at: Instant::now(),
        });
        self.next_seq += 1;
        self.queued_bytes += op.bytes();
        self.queue.push_back(op);
        self.drop_overflow()
    }

    fn drop_overflow(&mut self) -> usize {
        let mut dropped = 0;
        while self.queue.len() > self.max_docs
            || (self.queue.len() > 1 && self.queued_bytes > self.max_bytes)
        {
            if let Some(op) = self.queue.pop_front() {
                self.queued_bytes -= op.bytes();
                dropped += 1;
                if op.log.is_some() {
                    self.dropped_logs_total += 1;
                }
            }
        }
        self.dropped_total += dropped as u64;
        self.dropped_unreported += dropped as u64;
        dropped
    }

    /// Documents queued (not counting a batch in flight).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.queued_bytes
    }

    /// When the oldest queued document was written.
    pub fn oldest_written_at(&self) -> Option<Instant> {
        self.queue.front().map(|op| op.written_at)
    }

    /// The position of the oldest queued document.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.queue.front().map(|op| op.seq)
    }

    /// The position the next write gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Every document written before this position is delivered, refused or dropped.
    pub fn done_before(&self) -> u64 {
        self.in_flight
            .iter()
            .chain(self.queue.iter())
            .map(|op| op.seq)
            .min()
            .unwrap_or(self.next_seq)
    }

    /// Documents dropped because the buffer was full, since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Log lines dropped because the buffer was full, since start.
    pub fn dropped_logs_total(&self) -> u64 {
        self.dropped_logs_total
    }

    /// Documents dropped since the last call (for one log line per flush cycle).
    pub fn take_unreported_drops(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_unreported)
    }

    /// Takes the next batch from the front: at most `max_docs` documents and, unless the first
    /// alone is larger, at most `max_bytes`. It stays readable as in flight until
    /// [`Buffer::finish_batch`].
    pub fn take_batch(&mut self, max_docs: usize, max_bytes: usize) -> Vec<Arc<Op>> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(op) = self.queue.front() {
            if batch.len() >= max_docs.max(1)
                || (!batch.is_empty() && bytes + op.bytes() > max_bytes)
            {
                break;
            }
            bytes += op.bytes();
            if let Some(op) = self.queue.pop_front() {
                self.queued_bytes -= op.bytes();
                batch.push(op);
            }
        }
        self.in_flight = batch.clone();
        batch
    }

    /// Ends the batch in flight; `undelivered` (in the batch's order) goes back to the front.
    /// Returns how many documents were dropped because that overfilled the buffer.
    pub fn finish_batch(&mut self, undelivered: Vec<Arc<Op>>) -> usize {
        self.in_flight.clear();
        for op in undelivered.into_iter().rev() {
            self.queued_bytes += op.bytes();
            self.queue.push_front(op);
        }
        self.drop_overflow()
    }

    /// The log lines of `id` that are queued or in flight.
    pub fn pending_logs(&self, id: &ExecutionId) -> Vec<LogLine> {
        self.in_flight
            .iter()
            .chain(self.queue.iter())
            .filter_map(|op| op.log.as_ref())
            .filter(|line| &line.execution_id == id)
            .cloned()
            .collect()
    }

    /// The log lines queued or in flight that `query` admits (the limit aside).
    pub fn pending_handler_logs(&self, query: &LogQuery) -> Vec<LogLine> {
        self.in_flight
            .iter()
            .chain(self.queue.iter())
            .filter_map(|op| op.log.as_ref())
            .filter(|line| query.admits(line))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(n: u32) -> NewOp {
        NewOp {
            family: Family::Metrics,
            action: format!("a{n}"),
            source: format!("s{n}"),
            log: None,
        }
    }

    fn sources(batch: &[Arc<Op>]) -> Vec<&str> {
        batch.iter().map(|op| op.source.as_str()).collect()
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts_them() {
        let mut buffer = Buffer::new(3, usize::MAX);
        for n in 0..3 {
            assert_eq!(buffer.push(op(n)), 0);
        }
        assert_eq!(buffer.push(op(3)), 1);
        assert_eq!(buffer.push(op(4)), 1);
        assert_eq!(buffer.dropped_total(), 2);
        assert_eq!(buffer.take_unreported_drops(), 2);
        assert_eq!(buffer.take_unreported_drops(), 0);
        let batch = buffer.take_batch(10, usize::MAX);
        assert_eq!(sources(&batch), ["s2", "s3", "s4"]);
        assert_eq!(buffer.bytes(), 0);
    }

    #[test]
    fn batches_are_cut_by_count_and_by_bytes() {
        let mut buffer = Buffer::new(100, usize::MAX);
        for n in 0..10 {
            buffer.push(op(n));
        }
        let per_op = 2 + 2 + 2;
        assert_eq!(buffer.bytes(), 10 * per_op);
        assert_eq!(buffer.take_batch(4, usize::MAX).len(), 4);
        buffer.finish_batch(Vec::new());
        assert_eq!(buffer.take_batch(100, 3 * per_op).len(), 3);
        buffer.finish_batch(Vec::new());
        // A document larger than the byte limit still goes, alone.
        assert_eq!(buffer.take_batch(100, 1).len(), 1);
        buffer.finish_batch(Vec::new());
        assert_eq!(buffer.len(), 2);
    }

    #[test]
    fn an_undelivered_batch_goes_back_to_the_front_and_is_dropped_first() {
        let mut buffer = Buffer::new(4, usize::MAX);
        for n in 0..4 {
            buffer.push(op(n));
        }
        let batch = buffer.take_batch(2, usize::MAX);
        assert_eq!(buffer.done_before(), 0);
        // Written while the batch is in flight: the batch does not count against the bound.
        for n in 4..6 {
            assert_eq!(buffer.push(op(n)), 0);
        }
        assert_eq!(buffer.finish_batch(batch), 2);
        assert_eq!(buffer.dropped_total(), 2);
        let rest = buffer.take_batch(10, usize::MAX);
        assert_eq!(sources(&rest), ["s2", "s3", "s4", "s5"]);
        assert_eq!(buffer.done_before(), 2);
        buffer.finish_batch(Vec::new());
        assert_eq!(buffer.done_before(), 6);
    }

    #[test]
    fn the_buffer_is_bounded_in_bytes_too_and_counts_dropped_log_lines() {
        let per_op = 6;
        let mut buffer = Buffer::new(1_000, 3 * per_op);
        for n in 0..3 {
            assert_eq!(buffer.push(op(n)), 0);
        }
        assert_eq!(buffer.push(op(3)), 1, "a fourth document is over the bytes");
        assert_eq!(buffer.bytes(), 3 * per_op);
        let line = crate::execution::LogLine {
            execution_id: ExecutionId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            handler: "h".into(),
            attempt: 1,
            seq: 0,
            level: crate::execution::LogLevel::Info,
            message: "m".into(),
            fields: Default::default(),
            at: chrono::Utc::now(),
        };
        buffer.push(NewOp {
            log: Some(line),
            ..op(9)
        });
        assert_eq!(buffer.dropped_logs_total(), 0);
        for n in 10..13 {
            buffer.push(op(n));
        }
        assert_eq!(buffer.dropped_logs_total(), 1, "the log line was dropped");
        // One document larger than the bound alone is kept.
        let mut tiny = Buffer::new(10, 1);
        assert_eq!(tiny.push(op(1)), 0);
        assert_eq!(tiny.len(), 1);
    }
}
