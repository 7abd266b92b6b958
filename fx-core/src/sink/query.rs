//! Reading a handler's log lines in order, page by page (`ferrisfx logs`, `GET
//! /api/v1/handlers/{name}/logs`): the [`LogQuery`] every backend answers and the
//! [`LogCursor`] a reader continues after.
//!
//! A handler's lines are ordered by (time, execution, attempt, seq), time to the microsecond
//! (what every sink keeps): a total order, so a page ends at a cursor and the next one starts
//! right after it, even among lines that share one time stamp.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::execution::{ExecutionId, LogLine};

/// The most lines one query answers.
pub const MAX_LOG_LINES: usize = 1_000;

/// Where a line sits in its handler's log: lines are ordered by these fields, in this order
/// (the derived `Ord`). As text, `<microseconds since the epoch>-<execution>-<attempt>-<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogCursor {
    /// When the line was written, to the microsecond.
    pub at: DateTime<Utc>,
    /// Its execution.
    pub execution_id: ExecutionId,
    /// Its attempt.
    pub attempt: u32,
    /// Its position in the attempt.
    pub seq: u32,
}

impl LogCursor {
    /// The position of `line` (its time cut to the microsecond, as stored).
    pub fn of(line: &LogLine) -> Self {
        LogCursor {
            at: to_micros(line.at),
            execution_id: line.execution_id.clone(),
            attempt: line.attempt,
            seq: line.seq,
        }
    }
}

/// `at` cut to the microsecond.
fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

impl fmt::Display for LogCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}-{}",
            self.at.timestamp_micros(),
            self.execution_id,
            self.attempt,
            self.seq
        )
    }
}

impl FromStr for LogCursor {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = || {
            Error::invalid(format!(
                "log cursor {text:?} is not <microseconds>-<execution id>-<attempt>-<seq> (the `next` of a previous page)"
            ))
        };
        // The time may be negative: its sign is the only `-` that is not a separator.
        let (sign, rest) = match text.strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, text),
        };
        let mut parts = rest.split('-');
        let (Some(micros), Some(id), Some(attempt), Some(seq), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(invalid());
        };
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        Ok(LogCursor {
            at: DateTime::from_timestamp_micros(sign * micros).ok_or_else(invalid)?,
            execution_id: ExecutionId::parse(id).map_err(|_| invalid())?,
            attempt: attempt.parse().map_err(|_| invalid())?,
            seq: seq.parse().map_err(|_| invalid())?,
        })
    }
}

/// The log lines of one handler, in order: those at or after `since` and after `after`, at
/// most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// The handler.
    pub handler: String,
    /// Only lines written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only lines after this position (the last line of the previous page).
    pub after: Option<LogCursor>,
    /// At most this many lines (taken as 1 to [`MAX_LOG_LINES`]).
    pub limit: usize,
}

impl LogQuery {
    /// The first [`MAX_LOG_LINES`] lines of `handler`.
    pub fn new(handler: impl Into<String>) -> Self {
        LogQuery {
            handler: handler.into(),
            since: None,
            after: None,
            limit: MAX_LOG_LINES,
        }
    }

    /// How many lines to answer at most: `limit` within 1 to [`MAX_LOG_LINES`].
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_LOG_LINES)
    }

    /// The earliest time a line answered can have: the later of `since` and `after`'s time,
    /// to the microsecond.
    pub fn lower_bound(&self) -> Option<DateTime<Utc>> {
        let since = self.since.map(to_micros);
        match (since, &self.after) {
            (Some(since), Some(after)) => Some(since.max(after.at)),
            (since, after) => since.or(after.as_ref().map(|a| a.at)),
        }
    }

    /// Whether `line` is one this query answers (the limit aside).
    pub fn admits(&self, line: &LogLine) -> bool {
        line.handler == self.handler
            && self
                .since
                .is_none_or(|since| to_micros(line.at) >= to_micros(since))
            && self
                .after
                .as_ref()
                .is_none_or(|after| LogCursor::of(line) > *after)
    }

    /// The page this query answers out of `lines` (in any order, possibly with lines it does
    /// not admit): the admitted ones, in order, at most [`LogQuery::page_size`].
    pub fn page_of(&self, lines: impl IntoIterator<Item = LogLine>) -> Vec<LogLine> {
        let mut page: Vec<LogLine> = lines.into_iter().filter(|l| self.admits(l)).collect();
        page.sort_by_cached_key(LogCursor::of);
        page.dedup_by_key(|l| LogCursor::of(l));
        page.truncate(self.page_size());
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::LogLevel;

    fn line(micros: i64, execution: &str, attempt: u32, seq: u32) -> LogLine {
        LogLine {
            execution_id: ExecutionId::derive("/s", execution, "h"),
            handler: "h".into(),
            attempt,
            seq,
            at: DateTime::from_timestamp_micros(micros).unwrap(),
            level: LogLevel::Info,
            message: String::new(),
            fields: Default::default(),
        }
    }

    #[test]
    fn a_cursor_reads_back_what_it_writes() {
        for micros in [1_796_385_601_123_456, 0, -1_000_001] {
            let cursor = LogCursor::of(&line(micros, "e", 2, 7));
            let text = cursor.to_string();
            assert_eq!(text.parse::<LogCursor>().unwrap(), cursor, "{text}");
        }
    }

    #[test]
    fn a_malformed_cursor_is_invalid() {
        let id = ExecutionId::derive("/s", "e", "h");
        for text in [
            String::new(),
            "x".into(),
            format!("1-{id}-1"),
            format!("1-{id}-1-2-3"),
            "1-nothex-1-2".to_string(),
            format!("a-{id}-1-2"),
            format!("1-{id}--1-2"),
        ] {
            let err = text.parse::<LogCursor>().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{text}");
        }
    }

    #[test]
    fn lines_order_by_time_then_execution_attempt_and_seq() {
        let a = line(10, "a", 1, 0);
        let b = line(10, "b", 1, 0);
        let (first, second) = if a.execution_id < b.execution_id {
            (a, b)
        } else {
            (b, a)
        };
        let lines = vec![
            line(11, "a", 1, 0),
            second.clone(),
            line(9, "z", 3, 3),
            first.clone(),
        ];
        let page = LogQuery::new("h").page_of(lines);
        let order: Vec<_> = page.iter().map(LogCursor::of).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
        assert_eq!(page[1], first);
        assert_eq!(page[2], second);
    }

    #[test]
    fn the_lower_bound_is_the_later_of_since_and_the_cursor() {
        let mut query = LogQuery::new("h");
        assert_eq!(query.lower_bound(), None);
        query.since = DateTime::from_timestamp_micros(5);
        assert_eq!(query.lower_bound(), DateTime::from_timestamp_micros(5));
        query.after = Some(LogCursor::of(&line(3, "a", 1, 0)));
        assert_eq!(query.lower_bound(), DateTime::from_timestamp_micros(5));
        query.after = Some(LogCursor::of(&line(8, "a", 1, 0)));
        assert_eq!(query.lower_bound(), DateTime::from_timestamp_micros(8));
        query.limit = 0;
        assert_eq!(query.page_size(), 1);
        query.limit = 1_000_000;
        assert_eq!(query.page_size(), MAX_LOG_LINES);
    }
}
