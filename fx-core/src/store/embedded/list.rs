//! The executions list in SQLite: keyset pages newest first, every filter on an index range,
//! and the text filter's window and FTS5 trigram index (`executions_text`, migration 7), as
//! [`crate::store::text_filter`] describes.

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use super::rows::{collect, micros, stored_id, stored_status, time, SUMMARY_COLUMNS};
use crate::error::Result;
use crate::execution::{ExecutionQuery, ExecutionSummary, Page};
use crate::sqlite::db;
use crate::store::encoding::{decode_cursor, page_of};
use crate::store::text_filter::indexable;

/// The text filter: ASCII case ignored (SQLite's `LIKE`), two `?` for the pattern.
const TEXT: &str = "(event_id LIKE ? ESCAPE '\\' OR event_source LIKE ? ESCAPE '\\')";

/// The executions holding the text's trigrams, one `?` for the FTS5 query: a superset of those
/// [`TEXT`] keeps (the trigram tokenizer folds case beyond ASCII).
const TRIGRAMS: &str = "rowid IN (SELECT rowid FROM executions_text WHERE executions_text MATCH ?)";

const NEWEST_FIRST: &str = "ORDER BY created_at DESC, id DESC";

/// A page of the executions `query` selects; `window` is
/// [`crate::store::text_filter::TEXT_WINDOW`] (lowered in tests).
pub(super) fn executions(
    conn: &Connection,
    query: &ExecutionQuery,
    window: u32,
) -> Result<Page<ExecutionSummary>> {
    let others = Filter::of(query)?;
    let limit = query.page_size();
    let (Some(text), Some(pattern)) = (query.text.as_deref(), query.text_pattern()) else {
        return others.scan(conn, None, limit);
    };
    if !indexable(text) || !others.window_is_full(conn, window)? {
        return others.scan(conn, Some(&pattern), limit);
    }
    let newest = others.window(conn, &pattern, window, limit)?;
    if newest.next_cursor.is_some() {
        return Ok(newest);
    }
    others.indexed(conn, text, &pattern, limit)
}

/// Every filter of a query but the text, as `WHERE` clauses and their values.
struct Filter {
    clauses: Vec<&'static str>,
    args: Vec<SqlValue>,
}

impl Filter {
    fn of(query: &ExecutionQuery) -> Result<Filter> {
        let mut filter = Filter {
            clauses: Vec::new(),
            args: Vec::new(),
        };
        if let Some(handler) = &query.handler {
            filter.clauses.push("handler = ?");
            filter.args.push(handler.clone().into());
        }
        if let Some(status) = query.status {
            filter.clauses.push("status = ?");
            filter.args.push(status.as_str().to_string().into());
        }
        if let Some(since) = query.since {
            filter.clauses.push("created_at >= ?");
            filter.args.push(micros(since).into());
        }
        if let Some(until) = query.until {
            filter.clauses.push("created_at < ?");
            filter.args.push(micros(until).into());
        }
        if let Some(cursor) = &query.cursor {
            let (at, id) = decode_cursor(cursor)?;
            filter.clauses.push("(created_at, id) < (?, ?)");
            filter.args.extend([at.into(), id.into()]);
        }
        Ok(filter)
    }

    /// `WHERE` with the clauses and `more`, or nothing.
    fn where_and(&self, more: &[&str]) -> String {
        let all: Vec<&str> = self
            .clauses
            .iter()
            .copied()
            .chain(more.iter().copied())
            .collect();
        if all.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", all.join(" AND "))
        }
    }

    /// The clauses' values, then `more`.
    fn args_and(&self, more: impl IntoIterator<Item = SqlValue>) -> Vec<SqlValue> {
        self.args.iter().cloned().chain(more).collect()
    }

    /// From the newest execution on, those passing the filter (and the text, when `text`)
    /// until the page is full: one index range, read as far as the matches take it. Values:
    /// the filter's, [the pattern twice,] the page size plus one.
    fn scan_sql(&self, text: bool) -> String {
        let text: &[&str] = if text { &[TEXT] } else { &[] };
        format!(
            "SELECT {SUMMARY_COLUMNS} FROM executions {} {NEWEST_FIRST} LIMIT ?",
            self.where_and(text)
        )
    }

    /// A row when the window is full, read from an index alone. Values: the filter's, the
    /// window minus one.
    fn window_is_full_sql(&self) -> String {
        format!(
            "SELECT 1 FROM executions {} {NEWEST_FIRST} LIMIT 1 OFFSET ?",
            self.where_and(&[])
        )
    }

    /// Among the newest executions passing the filter, those matching the text. Values: the
    /// filter's, the window, the pattern twice, the page size plus one.
    fn window_sql(&self) -> String {
        format!(
            "SELECT {SUMMARY_COLUMNS} FROM (
                 SELECT {SUMMARY_COLUMNS} FROM executions {} {NEWEST_FIRST} LIMIT ?)
             WHERE {TEXT} {NEWEST_FIRST} LIMIT ?",
            self.where_and(&[])
        )
    }

    /// The executions holding the text's trigrams, kept if they match the text and the filter,
    /// sorted. `NOT INDEXED` keeps SQLite from walking a filter's index instead (it would
    /// read the filter's whole range, testing each row against the trigram matches). Values:
    /// the filter's, the pattern twice, the FTS5 phrase, the page size plus one.
    fn indexed_sql(&self) -> String {
        format!(
            "SELECT {SUMMARY_COLUMNS} FROM executions NOT INDEXED {} {NEWEST_FIRST} LIMIT ?",
            self.where_and(&[TEXT, TRIGRAMS])
        )
    }

    fn scan(
        &self,
        conn: &Connection,
        pattern: Option<&str>,
        limit: u32,
    ) -> Result<Page<ExecutionSummary>> {
        let pattern = pattern.map(|p| [text_value(p), text_value(p)]);
        let args = self.args_and(
            pattern
                .iter()
                .flatten()
                .cloned()
                .chain([i64::from(limit + 1).into()]),
        );
        let sql = self.scan_sql(pattern.is_some());
        Ok(page_of(summaries(conn, &sql, args)?, limit))
    }

    /// Whether `window` executions or more pass the filter.
    fn window_is_full(&self, conn: &Connection, window: u32) -> Result<bool> {
        let what = "sizing the executions text filter's window";
        let args = self.args_and([i64::from(window.saturating_sub(1)).into()]);
        let mut stmt = conn
            .prepare_cached(&self.window_is_full_sql())
            .map_err(db(what))?;
        stmt.exists(rusqlite::params_from_iter(args))
            .map_err(db(what))
    }

    /// Among the newest `window` executions passing the filter, those matching `pattern`; a
    /// page with a cursor when the window holds more than a page of them.
    fn window(
        &self,
        conn: &Connection,
        pattern: &str,
        window: u32,
        limit: u32,
    ) -> Result<Page<ExecutionSummary>> {
        let args = self.args_and([
            i64::from(window).into(),
            text_value(pattern),
            text_value(pattern),
            i64::from(limit + 1).into(),
        ]);
        Ok(page_of(summaries(conn, &self.window_sql(), args)?, limit))
    }

    fn indexed(
        &self,
        conn: &Connection,
        text: &str,
        pattern: &str,
        limit: u32,
    ) -> Result<Page<ExecutionSummary>> {
        let args = self.args_and([
            text_value(pattern),
            text_value(pattern),
            SqlValue::Text(fts_phrase(text)),
            i64::from(limit + 1).into(),
        ]);
        Ok(page_of(summaries(conn, &self.indexed_sql(), args)?, limit))
    }
}

fn text_value(text: &str) -> SqlValue {
    SqlValue::Text(text.to_string())
}

/// `text` as an FTS5 query: one string, matched as a phrase (its trigrams in a row, that is
/// the substring, case folded), `"` doubled inside.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// The summaries `sql` selects ([`SUMMARY_COLUMNS`]) with `args`.
fn summaries(conn: &Connection, sql: &str, args: Vec<SqlValue>) -> Result<Vec<ExecutionSummary>> {
    let what = "listing executions";
    let mut stmt = conn.prepare_cached(sql).map_err(db(what))?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), summary)
        .map_err(db(what))?;
    collect(rows, what)
}

/// A row of [`SUMMARY_COLUMNS`], read, then decoded.
fn summary(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ExecutionSummary>> {
    let id: String = row.get(0)?;
    let status: String = row.get(2)?;
    let attempts: i64 = row.get(6)?;
    let at: i64 = row.get(7)?;
    let duration: Option<i64> = row.get(8)?;
    let (handler, event_id, event_source, event_type) =
        (row.get(1)?, row.get(3)?, row.get(4)?, row.get(5)?);
    Ok(stored_id(&id).and_then(|id| {
        Ok(ExecutionSummary {
            id,
            handler,
            status: stored_status(&status)?,
            event_id,
            event_source,
            event_type,
            attempts: u32::try_from(attempts).unwrap_or_default(),
            created_at: time(at)?,
            duration_us: duration.and_then(|d| u64::try_from(d).ok()),
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execution::ExecutionStatus;
    use crate::store::embedded::SqliteStateStore;

    /// The plan SQLite makes of `sql` (`EXPLAIN QUERY PLAN`, every value NULL), one step a line.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![SqlValue::Null; stmt.parameter_count()];
        let steps = stmt
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        steps.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    #[tokio::test]
    async fn each_statement_reads_the_index_it_is_meant_to_whatever_the_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::open(&dir.path().join("state.sqlite"))
            .await
            .unwrap();
        store
            .call(|conn| {
                let cursor = crate::store::encoding::encode_cursor(
                    1,
                    &crate::execution::ExecutionId::derive("/s", "1", "h"),
                );
                let at = time(1_700_000_000_000_000).ok();
                for query in [
                    ExecutionQuery::default(),
                    ExecutionQuery {
                        handler: Some("h".into()),
                        ..ExecutionQuery::default()
                    },
                    ExecutionQuery {
                        status: Some(ExecutionStatus::Failed),
                        ..ExecutionQuery::default()
                    },
                    ExecutionQuery {
                        handler: Some("h".into()),
                        status: Some(ExecutionStatus::Failed),
                        since: at,
                        until: at,
                        cursor: Some(cursor.clone()),
                        ..ExecutionQuery::default()
                    },
                    ExecutionQuery {
                        since: at,
                        cursor: Some(cursor),
                        ..ExecutionQuery::default()
                    },
                ] {
                    let filter = Filter::of(&query)?;
                    // The trigram matches first, each looked up by rowid; no filter's index.
                    let indexed = plan(conn, &filter.indexed_sql());
                    assert!(
                        indexed
                            .starts_with("SEARCH executions USING INTEGER PRIMARY KEY (rowid=?)")
                            && indexed.contains("SCAN executions_text VIRTUAL TABLE")
                            && !indexed.contains("INDEX executions_"),
                        "{query:?}:\n{indexed}"
                    );
                    // The window and its size: the filter's index range.
                    let window = plan(conn, &filter.window_sql());
                    assert!(window.contains("INDEX executions_"), "{query:?}:\n{window}");
                    assert!(!window.contains("executions_text"), "{query:?}:\n{window}");
                    let full = plan(conn, &filter.window_is_full_sql());
                    assert!(
                        full.contains("COVERING INDEX executions_"),
                        "{query:?}:\n{full}"
                    );
                }
                Ok(())
            })
            .await
            .unwrap();
    }

    #[test]
    fn a_text_is_one_fts_phrase_whatever_it_holds() {
        assert_eq!(fts_phrase("order-42"), "\"order-42\"");
        assert_eq!(fts_phrase("a\"b"), "\"a\"\"b\"");
        assert_eq!(fts_phrase("\"\""), "\"\"\"\"\"\"");
        assert_eq!(fts_phrase("x OR y*"), "\"x OR y*\"");
    }
}
