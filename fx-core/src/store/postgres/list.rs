//! The executions list in PostgreSQL: keyset pages newest first, every filter on an index
//! range, and the text filter's window and `pg_trgm` indexes ([`super::text_index`]), as
//! [`crate::store::text_filter`] describes.
//!
//! The statements are prepared once per connection, so after a few runs PostgreSQL plans them
//! without the values (a generic plan): each is written so that the plan is the same either
//! way. Left to choose, a generic plan of the text filter reads `executions_newest` for any
//! text (the whole table for a rare one), and one for a rare text with a handler reads the
//! trigram and handler indexes together (the handler's whole range); the window's `LIMIT` and
//! the index's `MATERIALIZED` text-only CTE leave one way each.
//!
//! `pg_trgm`'s GIN scan checks every trigram of the pattern for each execution holding its
//! rarest one, so trigrams most executions hold cost much (about 5 ms each at 1,000,000, for
//! `ord`, `rde`, `der` in `order-424242` when every id starts `order-`) and select nothing.
//! Before the index statement, a sample of the newest executions tells which words of the text
//! most of them hold; the trigram indexes search the other words only ([`index_pattern`]), and
//! the whole pattern is tested on what they find.

use deadpool_postgres::Client;
use tokio_postgres::types::ToSql;

use super::connection::PgDatabase;
use super::rows::{get, summary, time, SUMMARY_COLUMNS};
use super::Param;
use crate::error::{Error, Result};
use crate::execution::{ExecutionQuery, ExecutionSummary, Page};
use crate::store::encoding::{decode_cursor, page_of};
use crate::store::text_filter::indexable;

/// PostgreSQL's first `timestamptz`, 4714-11-24 00:00 UTC BC, in microseconds since the epoch.
pub(super) const FIRST_TIMESTAMP_MICROS: i64 = -210_866_803_200_000_000;

const NEWEST_FIRST: &str = "ORDER BY created_at DESC, id DESC";

/// How many of the newest executions passing the filter tell which words of a text are common.
const WORD_SAMPLE: i64 = 256;

/// How the executions list answers a text: its window, and whether the trigram indexes were
/// there when the store opened.
#[derive(Debug, Clone, Copy)]
pub(super) struct TextSearch {
    /// [`crate::store::text_filter::TEXT_WINDOW`], lowered by tests.
    pub(super) window: u32,
    /// The `pg_trgm` indexes exist: without them the index query would read the whole table.
    pub(super) indexed: bool,
}

/// A page of the executions `query` selects.
pub(super) async fn executions(
    db: &PgDatabase,
    query: &ExecutionQuery,
    search: TextSearch,
) -> Result<Page<ExecutionSummary>> {
    let others = Filter::of(query)?;
    let limit = query.page_size();
    let client = db.client().await?;
    let list = Statements {
        db,
        client: &client,
        others: &others,
        limit,
    };
    let (Some(text), Some(pattern)) = (query.text.as_deref(), query.text_pattern()) else {
        return list.scan(None).await;
    };
    if !search.indexed || !indexable(text) || !list.window_is_full(search.window).await? {
        return list.scan(Some(&pattern)).await;
    }
    let newest = list.window(&pattern, search.window).await?;
    if newest.next_cursor.is_some() {
        return Ok(newest);
    }
    let words = words(text);
    let common = match words.len() {
        // One word or none: leaving it out would leave nothing to search for.
        0 | 1 => Vec::new(),
        _ => list.common_words(&words).await?,
    };
    list.indexed(&index_pattern(&words, &common, &pattern), &pattern)
        .await
}

/// The words of `text` a trigram index finds: runs of ASCII letters and digits (what
/// `pg_trgm` makes trigrams of under the C locale; other characters end a word), three
/// characters or more, in order.
fn words(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| word.len() >= 3)
        .collect()
}

/// The pattern the trigram indexes search for a text of `words`, `pattern` its own: the words
/// but the `common` ones, in order, `%` around and between them. An event id or source holding
/// the text holds those words in that order, so it matches: a superset, tested against
/// `pattern` afterwards. `pattern` itself when no word is common, or all are.
fn index_pattern(words: &[&str], common: &[&str], pattern: &str) -> String {
    let rare: Vec<&str> = words
        .iter()
        .copied()
        .filter(|word| !common.contains(word))
        .collect();
    if rare.is_empty() || rare.len() == words.len() {
        return pattern.to_string();
    }
    // Letters and digits only: nothing to escape.
    format!("%{}%", rare.join("%"))
}

/// `(event_id ILIKE p OR event_source ILIKE p)` for the placeholder `p`: ASCII case ignored
/// (the database's `lower`, which is ASCII only under the C locale the tests use).
fn text_clause(p: &str) -> String {
    format!("(event_id ILIKE {p} ESCAPE '\\' OR event_source ILIKE {p} ESCAPE '\\')")
}

/// Every filter of a query but the text, as `WHERE` clauses (placeholders `$1`…) and their
/// values.
pub(super) struct Filter {
    clauses: Vec<String>,
    args: Vec<Param>,
}

impl Filter {
    pub(super) fn of(query: &ExecutionQuery) -> Result<Filter> {
        let mut clauses = Vec::new();
        let mut args: Vec<Param> = Vec::new();
        if let Some(handler) = &query.handler {
            args.push(Box::new(handler.clone()));
            clauses.push(format!("handler = ${}", args.len()));
        }
        if let Some(status) = query.status {
            args.push(Box::new(status.as_str().to_string()));
            clauses.push(format!("status = ${}", args.len()));
        }
        if let Some(since) = query.since {
            args.push(Box::new(since));
            clauses.push(format!("created_at >= ${}", args.len()));
        }
        if let Some(until) = query.until {
            args.push(Box::new(until));
            clauses.push(format!("created_at < ${}", args.len()));
        }
        if let Some(cursor) = &query.cursor {
            let (at, id) = decode_cursor(cursor)?;
            let at = time(at)
                .ok()
                .filter(|_| at >= FIRST_TIMESTAMP_MICROS)
                .ok_or_else(|| {
                    Error::invalid(format!("executions cursor {cursor:?} is malformed"))
                })?;
            args.push(Box::new(at));
            args.push(Box::new(id));
            // A row comparison: one index range, newest first.
            clauses.push(format!(
                "(created_at, id) < (${}, ${})",
                args.len() - 1,
                args.len()
            ));
        }
        Ok(Filter { clauses, args })
    }

    /// The placeholder of the `n`th value after the filter's (from 0).
    fn placeholder(&self, n: usize) -> String {
        format!("${}", self.args.len() + n + 1)
    }

    /// `WHERE` with the clauses and `more`, or nothing.
    fn where_and(&self, more: &[String]) -> String {
        let all: Vec<&str> = self
            .clauses
            .iter()
            .chain(more)
            .map(String::as_str)
            .collect();
        if all.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", all.join(" AND "))
        }
    }

    /// The filter's values, then `more`.
    fn params<'a>(&'a self, more: &[&'a (dyn ToSql + Sync)]) -> Vec<&'a (dyn ToSql + Sync)> {
        self.args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .chain(more.iter().copied())
            .collect()
    }
}

impl Filter {
    /// From the newest execution on, those passing the filter (and the text, when `text`)
    /// until the page is full: one index range, read as far as the matches take it. Values:
    /// the filter's, [the pattern,] the page size plus one.
    pub(super) fn scan_sql(&self, text: bool) -> String {
        let (clauses, limit) = match text {
            true => (vec![text_clause(&self.placeholder(0))], self.placeholder(1)),
            false => (vec![], self.placeholder(0)),
        };
        format!(
            "SELECT {SUMMARY_COLUMNS} FROM executions {} {NEWEST_FIRST} LIMIT {limit}",
            self.where_and(&clauses)
        )
    }

    /// A row when the window is full: an index read, from the table too until vacuumed.
    /// Values: the filter's, the window minus one.
    pub(super) fn window_is_full_sql(&self) -> String {
        format!(
            "SELECT 1 FROM executions {} {NEWEST_FIRST} LIMIT 1 OFFSET {}",
            self.where_and(&[]),
            self.placeholder(0)
        )
    }

    /// Among the newest executions passing the filter, those matching the text. The inner
    /// `LIMIT` keeps the text test out of the inner scan (so off the trigram indexes). Values:
    /// the filter's, the window, the pattern, the page size plus one.
    pub(super) fn window_sql(&self) -> String {
        format!(
            "SELECT {SUMMARY_COLUMNS} FROM (
                 SELECT {SUMMARY_COLUMNS} FROM executions {} {NEWEST_FIRST} LIMIT {}) newest
             WHERE {} {NEWEST_FIRST} LIMIT {}",
            self.where_and(&[]),
            self.placeholder(0),
            text_clause(&self.placeholder(1)),
            self.placeholder(2)
        )
    }

    /// Of each word, how many of the newest executions passing the filter hold it, and how
    /// many there are. Values: the filter's, the words, the sample size.
    pub(super) fn sample_sql(&self) -> String {
        format!(
            "SELECT word, count(*) FILTER (WHERE sample.event_id ILIKE '%' || word || '%'
                                             OR sample.event_source ILIKE '%' || word || '%'),
                    count(*)
             FROM unnest({}::text[]) AS word CROSS JOIN (
                 SELECT event_id, event_source FROM executions {} {NEWEST_FIRST} LIMIT {}) sample
             GROUP BY word",
            self.placeholder(0),
            self.where_and(&[]),
            self.placeholder(1)
        )
    }

    /// The executions the trigram indexes find for the index pattern (a bitmap of both,
    /// rechecked against it), then those matching the text's pattern and the filter, sorted.
    /// `MATERIALIZED` keeps the text's pattern and the other filters (and their indexes) out of
    /// the search. Values: the filter's, the index pattern, the text's, the page size plus one.
    pub(super) fn indexed_sql(&self) -> String {
        format!(
            "WITH matches AS MATERIALIZED (
                 SELECT {SUMMARY_COLUMNS} FROM executions WHERE {})
             SELECT {SUMMARY_COLUMNS} FROM matches {} {NEWEST_FIRST} LIMIT {}",
            text_clause(&self.placeholder(0)),
            self.where_and(&[text_clause(&self.placeholder(1))]),
            self.placeholder(2)
        )
    }
}

/// The statements of one executions list request, on one connection.
struct Statements<'a> {
    db: &'a PgDatabase,
    client: &'a Client,
    others: &'a Filter,
    limit: u32,
}

impl Statements<'_> {
    async fn scan(&self, pattern: Option<&str>) -> Result<Page<ExecutionSummary>> {
        let f = self.others;
        let fetch = i64::from(self.limit) + 1;
        match pattern {
            Some(pattern) => {
                self.page(&f.scan_sql(true), &f.params(&[&pattern, &fetch]))
                    .await
            }
            None => self.page(&f.scan_sql(false), &f.params(&[&fetch])).await,
        }
    }

    /// Whether `window` executions or more pass the filter.
    async fn window_is_full(&self, window: u32) -> Result<bool> {
        let f = self.others;
        let what = || "sizing the executions text filter's window".to_string();
        let offset = i64::from(window.saturating_sub(1));
        let stmt = self
            .client
            .prepare_cached(&f.window_is_full_sql())
            .await
            .map_err(self.db.error(what()))?;
        let row = self
            .client
            .query_opt(&stmt, &f.params(&[&offset]))
            .await
            .map_err(self.db.error(what()))?;
        Ok(row.is_some())
    }

    /// Among the newest `window` executions passing the filter, those matching `pattern`; a
    /// page with a cursor when the window holds more than a page of them.
    async fn window(&self, pattern: &str, window: u32) -> Result<Page<ExecutionSummary>> {
        let f = self.others;
        let (window, fetch) = (i64::from(window), i64::from(self.limit) + 1);
        self.page(&f.window_sql(), &f.params(&[&window, &pattern, &fetch]))
            .await
    }

    /// The `words` that more than half the newest executions passing the filter hold.
    async fn common_words<'w>(&self, words: &[&'w str]) -> Result<Vec<&'w str>> {
        let f = self.others;
        let what = || "sampling the executions for the text filter's words".to_string();
        let stmt = self
            .client
            .prepare_cached(&f.sample_sql())
            .await
            .map_err(self.db.error(what()))?;
        let rows = self
            .client
            .query(&stmt, &f.params(&[&words, &WORD_SAMPLE]))
            .await
            .map_err(self.db.error(what()))?;
        let mut common = Vec::new();
        for row in &rows {
            let word: String = get(row, 0)?;
            let (holding, sampled): (i64, i64) = (get(row, 1)?, get(row, 2)?);
            if holding * 2 > sampled {
                common.extend(words.iter().copied().filter(|w| **w == word));
            }
        }
        Ok(common)
    }

    /// The executions the trigram indexes find for `index_pattern`, that match `pattern`.
    async fn indexed(&self, index_pattern: &str, pattern: &str) -> Result<Page<ExecutionSummary>> {
        let f = self.others;
        let fetch = i64::from(self.limit) + 1;
        let params = f.params(&[&index_pattern, &pattern, &fetch]);
        self.page(&f.indexed_sql(), &params).await
    }

    /// The page `sql` selects ([`SUMMARY_COLUMNS`], `LIMIT` a page and one more).
    async fn page(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Page<ExecutionSummary>> {
        let what = || "listing executions".to_string();
        let stmt = self
            .client
            .prepare_cached(sql)
            .await
            .map_err(self.db.error(what()))?;
        let rows = self
            .client
            .query(&stmt, params)
            .await
            .map_err(self.db.error(what()))?;
        let items = rows.iter().map(summary).collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, self.limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_runs_of_ascii_letters_and_digits_of_three_or_more() {
        assert_eq!(words("order-424242"), ["order", "424242"]);
        assert_eq!(words("/shop/orders"), ["shop", "orders"]);
        assert_eq!(words("a-bc-def_ghij"), ["def", "ghij"]);
        // Short runs, between the non-ASCII letters.
        assert!(words("crème brûlée").is_empty());
        assert!(words("日本語 %_\\").is_empty());
    }

    #[test]
    fn the_index_pattern_leaves_the_common_words_out() {
        let pattern = "%order-424242%";
        let words = ["order", "424242"];
        assert_eq!(index_pattern(&words, &["order"], pattern), "%424242%");
        assert_eq!(index_pattern(&words, &[], pattern), pattern);
        assert_eq!(index_pattern(&words, &words, pattern), pattern);
        let words = ["evt", "2024", "000123", "retry"];
        assert_eq!(
            index_pattern(&words, &["evt", "2024"], "%evt-2024-000123-retry%"),
            "%000123%retry%"
        );
    }
}
