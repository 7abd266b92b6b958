//! `/api/v1/catalogue`: the event catalogue ([`fx_core::catalogue`]): every (source, type) the
//! gateways dispatched, with counts, and one entry with its hourly counts, sample event,
//! inferred schema, the changes of that schema and the handlers that match it. Entries are
//! resources of their event type (`catalogue:read`).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use cloudevents::Event;
use fx_core::catalogue::{CatalogueQuery, CatalogueSummary, Change, HourCount, JsonType};
use fx_core::identity::{Action, Resource};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ApiQuery};
use crate::AppState;

/// Query parameters of `GET /api/v1/catalogue/entry`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EntryParams {
    /// The events' `source`.
    #[serde(default)]
    pub source: String,
    /// The events' `type`.
    #[serde(default, rename = "type")]
    pub ty: String,
}

/// A field of an entry's schema, as shown.
#[derive(Debug, Clone, Serialize)]
pub struct FieldView {
    /// Its path (`$.order.id`, `$.items[*]`).
    pub path: String,
    /// The types seen there.
    pub types: Vec<JsonType>,
    /// When it was first seen.
    pub first_seen: Option<DateTime<Utc>>,
    /// Events (of those looked at) that had it.
    pub seen: u64,
}

/// A handler whose filter matches the entry's sample event.
#[derive(Debug, Clone, Serialize)]
pub struct HandlerMatch {
    /// Its name.
    pub name: String,
    /// Whether it is enabled (a disabled one matches but does not run).
    pub enabled: bool,
}

/// One entry, as the API and the page show it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryView {
    /// The events' `source`.
    pub source: String,
    /// The events' `type`.
    #[serde(rename = "type")]
    pub ty: String,
    /// When the first arrived.
    pub first_seen: DateTime<Utc>,
    /// When the last arrived.
    pub last_seen: DateTime<Utc>,
    /// How many arrived.
    pub count: u64,
    /// Counts per hour of the last 7 days, oldest first (hours without events left out).
    pub hours: Vec<HourCount>,
    /// A recent event, structured-mode JSON.
    pub sample: Option<Value>,
    /// Whether the sample's data was left out (too large).
    pub sample_truncated: bool,
    /// The inferred schema of `data`, as a JSON Schema document.
    pub schema: Value,
    /// The same schema, one line per path.
    pub fields: Vec<FieldView>,
    /// New fields and type changes, newest first.
    pub changes: Vec<Change>,
    /// Whether the schema left something out (bounds).
    pub truncated: bool,
    /// The handlers the viewer may read whose filter matches the sample.
    pub handlers: Vec<HandlerMatch>,
}

/// The entries `query` selects that `caller` may read.
pub async fn visible(
    state: &AppState,
    caller: &Caller,
    query: &CatalogueQuery,
) -> Result<Vec<CatalogueSummary>, ApiError> {
    caller.check(Action::CatalogueRead, Resource::Any)?;
    let entries = state
        .backends
        .catalogue
        .list_catalogue(query, Utc::now())
        .await?;
    Ok(entries
        .into_iter()
        .filter(|e| caller.may(Action::CatalogueRead, &e.ty))
        .collect())
}

/// The entry of (`source`, `ty`) once `caller` may read it.
pub async fn entry_view(
    state: &AppState,
    caller: &Caller,
    source: &str,
    ty: &str,
) -> Result<EntryView, ApiError> {
    if source.is_empty() || ty.is_empty() {
        return Err(ApiError::invalid(
            "name the entry with both source and type, e.g. ?source=/orders&type=order.created",
        ));
    }
    caller.check(Action::CatalogueRead, Resource::Named(ty))?;
    let Some(entry) = state.backends.catalogue.catalogue_entry(source, ty).await? else {
        return Err(ApiError::not_found(format!(
            "no events of type {ty:?} from source {source:?} in the catalogue"
        )));
    };
    // The sample, or an event of the key alone when none was kept.
    let event = entry
        .sample
        .clone()
        .and_then(|sample| serde_json::from_value::<Event>(sample).ok())
        .or_else(|| fx_core::event::new_json_event("sample", source, ty, Value::Null).ok());
    let mut handlers = Vec::new();
    if let Some(event) = &event {
        let table = state.backends.registry.table().await?;
        for stored in &table.handlers {
            let handler = &stored.handler;
            if handler.filter.matches(event) && caller.may(Action::HandlerRead, &handler.name) {
                handlers.push(HandlerMatch {
                    name: handler.name.clone(),
                    enabled: handler.enabled,
                });
            }
        }
    }
    handlers.sort_by(|a, b| a.name.cmp(&b.name));
    let now = Utc::now();
    Ok(EntryView {
        hours: entry.hour_counts(now),
        schema: entry.schema.json_schema(),
        fields: entry
            .schema
            .fields
            .iter()
            .map(|(path, field)| FieldView {
                path: path.clone(),
                types: field.types.keys().copied().collect(),
                first_seen: field.first_seen(),
                seen: field.seen,
            })
            .collect(),
        changes: entry.schema.changes(),
        truncated: entry.schema.truncated,
        source: entry.source,
        ty: entry.ty,
        first_seen: entry.first_seen,
        last_seen: entry.last_seen,
        count: entry.count,
        sample: entry.sample,
        sample_truncated: entry.sample_truncated,
        handlers,
    })
}

/// `GET /api/v1/catalogue`: entries by source then type, filtered by `source` and `type`
/// substrings.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CatalogueQuery>,
) -> Result<Json<Value>, ApiError> {
    let entries = visible(&state, &caller, &query).await?;
    Ok(Json(
        json!({ "entries": entries, "limit": query.page_size() }),
    ))
}

/// `GET /api/v1/catalogue/entry?source=…&type=…`: one entry.
pub async fn entry(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<EntryParams>,
) -> Result<Json<EntryView>, ApiError> {
    let view = entry_view(&state, &caller, &params.source, &params.ty).await?;
    Ok(Json(view))
}
