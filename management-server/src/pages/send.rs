//! `/send`: send a test CloudEvent from the browser (type, source, subject, id and JSON data),
//! then watch the executions it causes turn `succeeded` or `failed` live on the same page.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use cloudevents::event::AttributesWriter;
use fx_core::event::new_json_event;
use fx_core::execution::ExecutionId;
use fx_core::handler::Filter;
use serde::Deserialize;

use super::rows::{live_query, LiveListParams};
use super::{HtmlTemplate, PageError};
use crate::auth::Caller;
use crate::AppState;
use fx_core::identity::{Action, Resource};

/// The fields of the send form, as typed.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SendForm {
    /// `type`.
    #[serde(default, rename = "type")]
    pub ty: String,
    /// `source`.
    #[serde(default)]
    pub source: String,
    /// `subject`, optional.
    #[serde(default)]
    pub subject: String,
    /// `id`; a fresh one when empty.
    #[serde(default)]
    pub id: String,
    /// The data, JSON.
    #[serde(default)]
    pub data: String,
}

/// The send page.
#[derive(Template)]
#[template(path = "send.html")]
struct SendPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// The fields.
    form: SendForm,
    /// Event types the handlers filter on exactly and the catalogue knows, as suggestions.
    types: Vec<String>,
    /// Event sources the catalogue knows, as suggestions.
    sources: Vec<String>,
    /// Why the event was not sent, by field (`type`, `source`, `data`, `form`).
    errors: Vec<(&'static str, String)>,
    /// The event just sent: its id.
    sent: Option<String>,
    /// Handlers that match the event just sent.
    matched: Vec<String>,
    /// The live stream of the executions of the event just sent.
    live: Option<String>,
    /// What the live list says while empty.
    empty: String,
    /// No rows at first: the live stream fills them in.
    rows: Vec<super::rows::ExecutionRow>,
}

impl SendPage {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, e)| e.as_str())
    }
}

/// Query parameters of `GET /send`.
#[derive(Debug, Default, Deserialize)]
pub struct SendParams {
    /// Prefill the type.
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
    /// Prefill the source (and, with the type, the data of the catalogue's sample).
    #[serde(default)]
    pub source: Option<String>,
}

async fn page(state: &AppState, caller: &Caller, form: SendForm) -> Result<SendPage, PageError> {
    let table = state.backends.registry.table().await?;
    let mut types = Vec::new();
    for h in &table.handlers {
        collect_types(&h.handler.filter, &mut types);
    }
    let (known, sources) = super::catalogue::suggestions(state, caller).await;
    types.extend(known);
    types.sort_unstable();
    types.dedup();
    Ok(SendPage {
        active: "send",
        form,
        types,
        sources,
        errors: Vec::new(),
        sent: None,
        matched: Vec::new(),
        live: None,
        empty: String::new(),
        rows: Vec::new(),
    })
}

fn collect_types(filter: &Filter, into: &mut Vec<String>) {
    match filter {
        Filter::All(inner) | Filter::Any(inner) => {
            inner.iter().for_each(|f| collect_types(f, into));
        }
        Filter::Exact(m) if m.attribute == "type" => into.push(m.value.clone()),
        _ => {}
    }
}

/// `GET /send`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<SendParams>,
) -> Result<Response, PageError> {
    let mut form = SendForm {
        source: "/ui".into(),
        data: "{\n  \"name\": \"Ferris\"\n}".into(),
        ..SendForm::default()
    };
    if let (Some(source), Some(ty)) = (&params.source, &params.ty) {
        form.source.clone_from(source);
        // The data of the catalogue's sample of this kind, when the viewer may read it.
        if let Ok(view) = crate::routes::catalogue::entry_view(&state, &caller, source, ty).await {
            if let Some(data) = view.sample.as_ref().and_then(|s| s.get("data")) {
                form.data = serde_json::to_string_pretty(data).unwrap_or_default();
            }
        }
    }
    let mut page = page(&state, &caller, form.clone()).await?;
    form.ty = params
        .ty
        .or_else(|| page.types.first().cloned())
        .unwrap_or_default();
    page.form = form;
    Ok(HtmlTemplate(page).into_response())
}

/// `POST /send`: publishes the event to `fx.events` and shows its executions live.
pub async fn send(
    State(state): State<AppState>,
    caller: Caller,
    Form(form): Form<SendForm>,
) -> Result<Response, PageError> {
    let arrived = std::time::Instant::now();
    let mut page = page(&state, &caller, form.clone()).await?;
    let ty = form.ty.trim();
    let source = form.source.trim();
    if ty.is_empty() {
        page.errors.push((
            "type",
            "an event needs a type, e.g. com.example.hello".into(),
        ));
    }
    if source.is_empty() {
        page.errors
            .push(("source", "an event needs a source, e.g. /ui".into()));
    }
    let data = match form.data.trim() {
        "" => Ok(serde_json::Value::Null),
        text => serde_json::from_str::<serde_json::Value>(text),
    };
    let data = match data {
        Ok(data) => data,
        Err(e) => {
            page.errors
                .push(("data", format!("the data is not valid JSON: {e}")));
            serde_json::Value::Null
        }
    };
    if !page.errors.is_empty() {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, HtmlTemplate(page)).into_response());
    }
    let id = match form.id.trim() {
        "" => uuid::Uuid::new_v4().to_string(),
        id => id.to_string(),
    };
    let mut event = match new_json_event(id.clone(), source, ty, data) {
        Ok(event) => event,
        Err(e) => {
            page.errors.push(("form", e.chain()));
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, HtmlTemplate(page)).into_response());
        }
    };
    if !form.subject.trim().is_empty() {
        event.set_subject(Some(form.subject.trim().to_string()));
    }
    caller.check(Action::EventEmit, Resource::Named(ty))?;
    crate::routes::events::publish(&state, &event, arrived).await?;
    tracing::info!(event_id = %id, event_type = %ty, source = %source, "test event sent from the ui");
    let table = state.backends.registry.table().await?;
    let matched: Vec<String> = table
        .handlers
        .iter()
        .filter(|h| h.handler.matches(&event))
        .map(|h| h.handler.name.clone())
        .collect();
    let ids: Vec<String> = matched
        .iter()
        .map(|h| ExecutionId::for_event(&event, h).to_string())
        .collect();
    page.empty = "Waiting for the gateway to dispatch it…".into();
    if !ids.is_empty() {
        page.live = Some(format!(
            "/live/executions?{}",
            live_query(&LiveListParams {
                ids: Some(ids.join(",")),
                empty: Some(page.empty.clone()),
                ..LiveListParams::default()
            })
        ));
    }
    page.sent = Some(id.clone());
    page.matched = matched;
    // Keep the fields for the next event, with a fresh id.
    page.form.id = String::new();
    Ok(HtmlTemplate(page).into_response())
}
