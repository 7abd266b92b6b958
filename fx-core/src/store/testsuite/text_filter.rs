//! The executions list's text filter: whichever way a store answers it (a scan, a window of
//! the newest executions, a text index; see `crate::store::text_filter`), the pages hold what
//! a scan gives, in its order. [`super::run`] runs these with the store as configured, where
//! a fresh store's few executions are all in the window; each SQL store's tests run them again
//! with the window lowered to a few executions, so that they reach the text index.
//!
//! Every query names a unique handler or a unique text, so that they run in a shared store.

use chrono::{DateTime, Duration, Utc};

use super::{now, started, succeeded};
use crate::event::new_json_event;
use crate::execution::{Execution, ExecutionId, ExecutionQuery, ExecutionStatus, ExecutionSummary};
use crate::store::StateStore;
use crate::testsupport::{queued_execution, unique};

/// Runs every text filter check against `store`.
pub async fn run(store: &dyn StateStore) {
    texts_are_found_wherever_they_are_and_paged_to_the_end(store).await;
    texts_of_one_or_two_characters_are_found(store).await;
    quotes_wildcards_backslashes_and_non_ascii_are_plain_characters(store).await;
    deleted_and_changed_executions_are_found_as_they_are(store).await;
}

/// An execution of `handler` for an event with this id and source.
fn execution(handler: &str, event_id: &str, source: &str, at: DateTime<Utc>) -> Execution {
    let event = new_json_event(
        event_id,
        source,
        "com.example.conformance",
        serde_json::json!({}),
    )
    .unwrap();
    queued_execution(handler, event, at)
}

/// What a scan of `rows` gives for `query` (its cursor and page size aside): the reference.
/// The text is matched with ASCII case ignored, any other character as it is.
fn scanned(rows: &[ExecutionSummary], query: &ExecutionQuery) -> Vec<ExecutionId> {
    let text = query.text.as_deref().map(str::to_ascii_lowercase);
    let holds = |field: &str, text: &str| field.to_ascii_lowercase().contains(text);
    let mut found: Vec<&ExecutionSummary> = rows
        .iter()
        .filter(|s| {
            query.handler.as_ref().is_none_or(|h| &s.handler == h)
                && query.status.is_none_or(|status| s.status == status)
                && query.since.is_none_or(|since| s.created_at >= since)
                && query.until.is_none_or(|until| s.created_at < until)
                && text
                    .as_deref()
                    .is_none_or(|t| holds(&s.event_id, t) || holds(&s.event_source, t))
        })
        .collect();
    found.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    found.into_iter().map(|s| s.id.clone()).collect()
}

/// Every page of `query`, cursor after cursor, checked as it goes: no page over the page
/// size, a cursor after every page but the last.
async fn every_page(store: &dyn StateStore, query: &ExecutionQuery) -> Vec<ExecutionId> {
    let mut query = query.clone();
    let mut ids = Vec::new();
    loop {
        let page = store.list_executions(&query).await.unwrap();
        assert!(page.items.len() <= query.page_size() as usize, "{query:?}");
        ids.extend(page.items.into_iter().map(|s| s.id));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return ids,
        }
    }
}

/// Checks that every page of each query holds what a scan of `rows` gives.
async fn pages_are_scanned(
    store: &dyn StateStore,
    rows: &[ExecutionSummary],
    queries: &[ExecutionQuery],
) {
    for query in queries {
        let expected = scanned(rows, query);
        assert_eq!(every_page(store, query).await, expected, "{query:?}");
    }
}

fn text_query(handler: Option<&str>, text: &str, limit: u32) -> ExecutionQuery {
    ExecutionQuery {
        handler: handler.map(str::to_string),
        text: Some(text.to_string()),
        limit: Some(limit),
        ..ExecutionQuery::default()
    }
}

async fn texts_are_found_wherever_they_are_and_paged_to_the_end(store: &dyn StateStore) {
    let handler = unique("text");
    let other = unique("text-other");
    let needle = unique("Needle");
    let base = now();
    let at = |n: u32| base + Duration::seconds(i64::from(n / 2));
    // 30 executions, two a second (the id orders those): the needle in the 12 oldest only, in
    // the event id or the source, in either case; then 3 of another handler, the newest,
    // with it too.
    let mut all = Vec::new();
    for n in 0..30u32 {
        let (id, source) = match n {
            n if n < 12 && n % 4 == 1 => (format!("{handler}-{n}"), format!("/src/{needle}")),
            n if n < 12 && n % 3 == 0 => (format!("{}-{n}", needle.to_uppercase()), "/s".into()),
            n if n < 12 => (format!("{needle}-{n}"), "/s".into()),
            n => (format!("{handler}-{n}"), "/s".into()),
        };
        all.push(execution(&handler, &id, &source, at(n)));
    }
    for n in 0..3u32 {
        all.push(execution(
            &other,
            &format!("{needle}-x{n}"),
            "/s",
            at(40 + n),
        ));
    }
    store.create_executions(&all).await.unwrap();
    // Some of the needle's on to other statuses.
    store
        .apply_states(&[
            started(&all[0].id, 1, base),
            succeeded(&all[0].id, 1, base),
            started(&all[3].id, 1, base),
            succeeded(&all[3].id, 1, base),
            started(&all[7].id, 1, base),
        ])
        .await
        .unwrap();
    let mut rows: Vec<ExecutionSummary> = all.iter().map(ExecutionSummary::from).collect();
    rows[0].status = ExecutionStatus::Succeeded;
    rows[3].status = ExecutionStatus::Succeeded;
    rows[7].status = ExecutionStatus::Running;

    let lower = needle.to_lowercase();
    let upper = needle.to_uppercase();
    let queries = [
        text_query(None, &needle, 4),
        text_query(None, &upper, 50),
        text_query(Some(&handler), &lower, 3),
        text_query(Some(&other), &needle, 2),
        ExecutionQuery {
            status: Some(ExecutionStatus::Succeeded),
            ..text_query(None, &needle, 1)
        },
        ExecutionQuery {
            status: Some(ExecutionStatus::Queued),
            ..text_query(Some(&handler), &needle, 2)
        },
        ExecutionQuery {
            since: Some(at(2)),
            until: Some(at(9)),
            ..text_query(Some(&handler), &needle, 2)
        },
        ExecutionQuery {
            since: Some(at(6)),
            ..text_query(None, &needle, 5)
        },
        // In every source of the handler's: common, not rare.
        text_query(Some(&handler), "/s", 7),
        // In none.
        text_query(Some(&handler), &format!("{needle}-none"), 5),
    ];
    pages_are_scanned(store, &rows, &queries).await;
    assert_eq!(every_page(store, &queries[0]).await.len(), 15);
}

async fn texts_of_one_or_two_characters_are_found(store: &dyn StateStore) {
    // `q`, `z`: in no unique name (hex digits and `-`) and not in the source.
    let handler = unique("short");
    let base = now();
    let all: Vec<Execution> = (0..12u32)
        .map(|n| {
            let id = match n {
                0..=3 => format!("{handler}-qz{n}"),
                4 => format!("{handler}-Z{n}"),
                _ => format!("{handler}-{n}"),
            };
            execution(&handler, &id, "/s", base + Duration::seconds(i64::from(n)))
        })
        .collect();
    store.create_executions(&all).await.unwrap();
    let rows: Vec<ExecutionSummary> = all.iter().map(ExecutionSummary::from).collect();
    let queries: Vec<ExecutionQuery> = ["q", "Q", "z", "qZ", "-q", "zq", "/"]
        .iter()
        .map(|text| text_query(Some(&handler), text, 2))
        .collect();
    pages_are_scanned(store, &rows, &queries).await;
    assert_eq!(
        every_page(store, &queries[2]).await.len(),
        5,
        "qz0…3 and Z4"
    );
}

async fn quotes_wildcards_backslashes_and_non_ascii_are_plain_characters(store: &dyn StateStore) {
    let handler = unique("chars");
    let base = now();
    // The oldest hold the characters; `x` and `X` stand where `%` and `_` would match anything.
    let ids = [
        "say \"hi\"",
        "100%",
        "100x",
        "snake_case",
        "snakeXcase",
        "back\\slash",
        "crème brûlée",
        "ÉCLAIR",
        "eclair",
        "日本語",
        "plain",
        "plain",
        "plain",
        "plain",
        "plain",
        "plain",
    ];
    let all: Vec<Execution> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let at = base + Duration::seconds(n as i64);
            execution(&handler, &format!("{handler}-{id}-{n}"), "/s", at)
        })
        .collect();
    store.create_executions(&all).await.unwrap();
    let rows: Vec<ExecutionSummary> = all.iter().map(ExecutionSummary::from).collect();
    // Non-ASCII characters only as they are written: case is ignored for ASCII letters alone
    // (a PostgreSQL database under another locale than C would fold `É` and `é` too).
    let texts = [
        "\"",
        "\"hi\"",
        "say \"HI",
        "%",
        "100%",
        "0%-",
        "_",
        "e_c",
        "SNAKE_CASE",
        "\\",
        "k\\s",
        "back\\slash",
        "rème",
        "brûlée",
        "CRèME BRûLéE",
        "ÉCLAIR",
        "Éclair",
        "ÉC",
        "日本",
        "日本語",
        "本語-",
        "\"%_\\",
        "%_",
    ];
    let queries: Vec<ExecutionQuery> = texts
        .iter()
        .map(|text| text_query(Some(&handler), text, 1))
        .collect();
    pages_are_scanned(store, &rows, &queries).await;
    for (text, expected) in [("_", 1), ("%", 1), ("\\", 1), ("Éclair", 1), ("日本語", 1)] {
        assert_eq!(
            every_page(store, &text_query(Some(&handler), text, 1))
                .await
                .len(),
            expected,
            "{text:?}"
        );
    }
}

async fn deleted_and_changed_executions_are_found_as_they_are(store: &dyn StateStore) {
    let handler = unique("text-gone");
    let needle = unique("gone");
    let base = now();
    let at = |n: u32| base + Duration::seconds(i64::from(n));
    // The needle in the 6 oldest, then 5 without.
    let mut all: Vec<Execution> = (0..11u32)
        .map(|n| {
            let id = match n {
                0..=5 => format!("{needle}-{n}"),
                _ => format!("{handler}-{n}"),
            };
            execution(&handler, &id, "/s", at(n))
        })
        .collect();
    store.create_executions(&all).await.unwrap();
    store
        .apply_states(&[
            started(&all[1].id, 1, base),
            succeeded(&all[1].id, 1, base),
            started(&all[2].id, 1, base),
        ])
        .await
        .unwrap();
    let (succeeded_id, running_id) = (all[1].id.clone(), all[2].id.clone());
    let current = |all: &[Execution]| -> Vec<ExecutionSummary> {
        all.iter()
            .map(|e| ExecutionSummary {
                status: match &e.id {
                    id if *id == succeeded_id => ExecutionStatus::Succeeded,
                    id if *id == running_id => ExecutionStatus::Running,
                    _ => ExecutionStatus::Queued,
                },
                ..ExecutionSummary::from(e)
            })
            .collect()
    };
    let queries: Vec<ExecutionQuery> = [
        None,
        Some(ExecutionStatus::Queued),
        Some(ExecutionStatus::Running),
        Some(ExecutionStatus::Succeeded),
    ]
    .into_iter()
    .map(|status| ExecutionQuery {
        status,
        ..text_query(Some(&handler), &needle, 2)
    })
    .collect();
    pages_are_scanned(store, &current(&all), &queries).await;
    let found = store
        .list_executions(&ExecutionQuery {
            status: Some(ExecutionStatus::Succeeded),
            ..text_query(None, &needle, 5)
        })
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(
        (found.items[0].attempts, found.items[0].duration_us),
        (1, Some(20)),
        "the execution as it is now"
    );

    // Retention's delete: the oldest, and the newest (whose row a new execution may take).
    let gone = [all[0].id.clone(), all[3].id.clone(), all[10].id.clone()];
    assert_eq!(store.delete_executions(&gone).await.unwrap(), 3);
    all.retain(|e| !gone.contains(&e.id));
    pages_are_scanned(store, &current(&all), &queries).await;
    // New executions, one with the needle in its source.
    let fresh = [
        execution(&handler, &format!("{handler}-11"), "/s", at(11)),
        execution(
            &handler,
            &format!("{handler}-12"),
            &format!("/{needle}"),
            at(12),
        ),
    ];
    store.create_executions(&fresh).await.unwrap();
    all.extend(fresh);
    pages_are_scanned(store, &current(&all), &queries).await;
    assert_eq!(every_page(store, &queries[0]).await.len(), 5);

    let ids: Vec<ExecutionId> = all.iter().map(|e| e.id.clone()).collect();
    store.delete_executions(&ids).await.unwrap();
    assert!(every_page(store, &queries[0]).await.is_empty());
    assert!(every_page(store, &text_query(None, &needle, 5))
        .await
        .is_empty());
}
