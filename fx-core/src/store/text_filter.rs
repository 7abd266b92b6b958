//! How both SQL state stores answer the executions list's text filter (a substring of the event
//! id or source, ASCII case ignored: `LIKE '%…%'`) without reading the whole table.
//!
//! A scan from the newest execution stops at the page's last match: fast for a common text (a
//! source every event shares fills a page in its first rows), the whole table for a rare one.
//! A trigram index is the other way round: it yields the executions holding the text's
//! trigrams, which must all be read and sorted newest first, few for a rare text, most of the
//! table for a common one. So each store runs, in order:
//!
//! 1. **Is there a window?** Do at least [`TEXT_WINDOW`] executions pass every other filter
//!    (handler, status, time range, cursor)? If not, the scan reads at most that many: it
//!    answers.
//! 2. **The window**: the newest [`TEXT_WINDOW`] executions passing the other filters, the text
//!    tested on each. If a page and one more match, that is the answer: any other match is
//!    older than the window.
//! 3. **The index**: the executions the trigram index gives (SQLite: the FTS5 table
//!    `executions_text`; PostgreSQL: `pg_trgm` GIN indexes, searched for the words of the text
//!    that most recent executions do not hold), with the `LIKE` (`ILIKE`) and the other
//!    filters applied to them, sorted newest first.
//!
//! Each statement is exact on its own: whichever answers, the page holds the rows a scan would
//! give, in the same order (`created_at DESC, id DESC`), and its cursor pages on the same way.
//! Steps 1 and 2 only choose which answers, so a write between them cannot make a page wrong.
//! A text no trigram index can serve ([`indexable`]) is scanned, as is every text on a
//! PostgreSQL database without `pg_trgm`.
//!
//! Still slow: a text that many older executions hold but few of the newest (a source that
//! stopped sending a while ago): it misses the window and the index yields all its executions.

/// How many of the newest executions passing the other filters the text filter reads before
/// it turns to the text index. A text found at least once in `TEXT_WINDOW / (page + 1)`
/// executions, evenly spread, fills its page in the window (1 in 80 for the default page of
/// 50); reading the window costs a few milliseconds, about what sorting that many index matches
/// costs.
pub(crate) const TEXT_WINDOW: u32 = 4096;

/// Whether a trigram index can find `text`: it has three characters at least (a trigram index
/// holds nothing shorter) and no NUL (which ends a string handed to SQLite's full-text query
/// parser).
pub(crate) fn indexable(text: &str) -> bool {
    text.chars().nth(2).is_some() && !text.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_of_three_characters_or_more_are_indexable() {
        for text in ["abc", "order-424242", "ÉtÉ", "\"%_"] {
            assert!(indexable(text), "{text:?}");
        }
        // Two characters, in four bytes; NUL.
        for text in ["", "a", "ab", "ÉÉ", "a\0bc"] {
            assert!(!indexable(text), "{text:?}");
        }
    }
}
