//! `/catalogue`: the event catalogue ([`fx_core::catalogue`]): every (source, type) the
//! gateways dispatched, filterable by source and type, with counts and the time its schema
//! last changed; `/catalogue/entry?source=…&type=…`: one entry with its hourly counts, schema
//! (new fields and type changes flagged), sample event and matching handlers, and links to
//! create a handler for it or send one like it. The reads are the API's
//! ([`crate::routes::catalogue`]).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use fx_core::catalogue::{hour_of, CatalogueQuery, ChangeKind, HOURS_KEPT};
use serde::Deserialize;

use super::{show_time, HtmlTemplate, PageError};
use crate::auth::Caller;
use crate::routes::catalogue::{entry_view, visible, EntryParams};
use crate::AppState;

/// How recent a change is to be flagged in the list.
const RECENT: Duration = Duration::hours(24);

/// The list page.
#[derive(Template)]
#[template(path = "catalogue.html")]
struct CataloguePage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// The filters as typed.
    source: String,
    ty: String,
    /// The entries.
    entries: Vec<Row>,
    /// Whether the list stopped at its limit.
    limited: bool,
}

/// A line of the list.
struct Row {
    source: String,
    ty: String,
    href: String,
    count: u64,
    last_24h: u64,
    first_seen: String,
    last_seen: String,
    /// When the schema last changed, formatted, and whether that is recent.
    change: Option<(String, bool)>,
}

/// Query parameters of `/catalogue`.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// Sources containing this.
    #[serde(default)]
    pub source: Option<String>,
    /// Types containing this.
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
}

/// The link to an entry's page.
pub fn entry_href(source: &str, ty: &str) -> String {
    let query = serde_urlencoded::to_string([("source", source), ("type", ty)]).unwrap_or_default();
    format!("/catalogue/entry?{query}")
}

/// `GET /catalogue`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Response, PageError> {
    let query = CatalogueQuery {
        source: params.source.clone(),
        ty: params.ty.clone(),
        limit: Some(1_000),
    };
    let entries = visible(&state, &caller, &query).await?;
    let now = Utc::now();
    let page = CataloguePage {
        active: "catalogue",
        source: params.source.unwrap_or_default(),
        ty: params.ty.unwrap_or_default(),
        limited: entries.len() >= query.page_size() as usize,
        entries: entries
            .into_iter()
            .map(|e| Row {
                href: entry_href(&e.source, &e.ty),
                count: e.count,
                last_24h: e.last_24h,
                first_seen: show_time(&e.first_seen),
                last_seen: show_time(&e.last_seen),
                change: e.last_change.map(|at| (show_time(&at), now - at < RECENT)),
                source: e.source,
                ty: e.ty,
            })
            .collect(),
    };
    Ok(HtmlTemplate(page).into_response())
}

/// The entry page.
#[derive(Template)]
#[template(path = "catalogue_entry.html")]
struct EntryPage {
    /// The highlighted navigation entry.
    active: &'static str,
    source: String,
    ty: String,
    count: u64,
    first_seen: String,
    last_seen: String,
    /// One bar per hour of the last 7 days, oldest first.
    bars: Vec<Bar>,
    /// The largest hourly count.
    peak: u64,
    /// The schema, one line per path.
    fields: Vec<FieldRow>,
    truncated: bool,
    changes: Vec<ChangeRow>,
    /// The sample, pretty JSON.
    sample: Option<String>,
    sample_truncated: bool,
    /// The JSON Schema document, pretty.
    schema: String,
    /// (name, enabled) of the matching handlers.
    handlers: Vec<(String, bool)>,
    /// Where "create a handler" and "send one like it" go.
    new_handler_href: String,
    send_href: String,
}

struct Bar {
    /// Percent of the peak.
    height: u64,
    title: String,
}

struct FieldRow {
    path: String,
    /// Indentation level (segments below `$`).
    depth: usize,
    types: String,
    first_seen: String,
    seen: u64,
    /// The field appeared after the data did.
    new: bool,
    /// Its types changed.
    changed: bool,
}

struct ChangeRow {
    path: String,
    new_field: bool,
    what: String,
    at: String,
}

/// Whether `path` is `parent` or inside it.
fn within(path: &str, parent: &str) -> bool {
    path == parent
        || (path.starts_with(parent)
            && matches!(path.as_bytes().get(parent.len()), Some(b'.' | b'[')))
}

/// `GET /catalogue/entry?source=…&type=…`.
pub async fn entry(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<EntryParams>,
) -> Result<Response, PageError> {
    let view = entry_view(&state, &caller, &params.source, &params.ty).await?;
    let now = Utc::now();
    let counts: std::collections::HashMap<i64, u64> = view
        .hours
        .iter()
        .map(|h| (h.hour.timestamp(), h.count))
        .collect();
    let peak = counts.values().copied().max().unwrap_or(0).max(1);
    let current = hour_of(now);
    let bars = (0..HOURS_KEPT)
        .rev()
        .map(|back| {
            let hour = current - back * 3600;
            let count = counts.get(&hour).copied().unwrap_or(0);
            let start = DateTime::from_timestamp(hour, 0).unwrap_or(now);
            Bar {
                height: count * 100 / peak,
                title: format!("{}: {count}", start.format("%Y-%m-%d %H:00 UTC")),
            }
        })
        .collect();
    let fields = view
        .fields
        .iter()
        .map(|f| {
            let new = view
                .changes
                .iter()
                .any(|c| c.kind == ChangeKind::NewField && within(&f.path, &c.path));
            FieldRow {
                depth: f.path.matches(['.', '[']).count(),
                types: f
                    .types
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(" | "),
                first_seen: f.first_seen.as_ref().map(show_time).unwrap_or_default(),
                seen: f.seen,
                new,
                changed: view
                    .changes
                    .iter()
                    .any(|c| c.kind == ChangeKind::TypeChange && c.path == f.path),
                path: f.path.clone(),
            }
        })
        .collect();
    let changes = view
        .changes
        .iter()
        .map(|c| {
            let names = |types: &[fx_core::catalogue::JsonType]| {
                types
                    .iter()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            ChangeRow {
                path: c.path.clone(),
                new_field: c.kind == ChangeKind::NewField,
                what: match c.kind {
                    ChangeKind::NewField => format!("new field ({})", names(&c.types)),
                    ChangeKind::TypeChange => {
                        format!("now also {} (was {})", names(&c.types), names(&c.before))
                    }
                },
                at: show_time(&c.at),
            }
        })
        .collect();
    let new_handler_href = format!(
        "/handlers/new?{}",
        serde_urlencoded::to_string([("type", view.ty.as_str())]).unwrap_or_default()
    );
    let send_href = format!(
        "/send?{}",
        serde_urlencoded::to_string([("type", view.ty.as_str()), ("source", &view.source)])
            .unwrap_or_default()
    );
    let page = EntryPage {
        active: "catalogue",
        count: view.count,
        first_seen: show_time(&view.first_seen),
        last_seen: show_time(&view.last_seen),
        bars,
        peak,
        fields,
        truncated: view.truncated,
        changes,
        sample: view
            .sample
            .as_ref()
            .and_then(|s| serde_json::to_string_pretty(s).ok()),
        sample_truncated: view.sample_truncated,
        schema: serde_json::to_string_pretty(&view.schema).unwrap_or_default(),
        handlers: view
            .handlers
            .iter()
            .map(|h| (h.name.clone(), h.enabled))
            .collect(),
        new_handler_href,
        send_href,
        source: view.source,
        ty: view.ty,
    };
    Ok(HtmlTemplate(page).into_response())
}

/// The most suggestions of each kind a form offers.
const SUGGESTIONS: usize = 500;

/// Event types and sources from the catalogue that `caller` may read, to suggest in the
/// handler form and the send page (sorted, each once, at most [`SUGGESTIONS`] of each); empty
/// when the catalogue cannot be read.
pub async fn suggestions(state: &AppState, caller: &Caller) -> (Vec<String>, Vec<String>) {
    let query = CatalogueQuery {
        limit: Some(2_000),
        ..CatalogueQuery::default()
    };
    let Ok(entries) = visible(state, caller, &query).await else {
        return (Vec::new(), Vec::new());
    };
    let mut types: Vec<String> = entries.iter().map(|e| e.ty.clone()).collect();
    let mut sources: Vec<String> = entries.into_iter().map(|e| e.source).collect();
    for list in [&mut types, &mut sources] {
        list.sort_unstable();
        list.dedup();
        list.truncate(SUGGESTIONS);
    }
    (types, sources)
}
