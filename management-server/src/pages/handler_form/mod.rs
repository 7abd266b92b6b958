//! The handler form: create (`/handlers/new`), edit (`/handlers/{name}/edit`) and delete
//! (`/handlers/{name}/delete`) handlers from the UI.
//!
//! The filter is built from condition rows (attribute, exact / prefix / suffix, value, "not"),
//! combined with all or any; a filter the rows cannot express (nested all/any) is edited as JSON
//! in the same form. Every field is checked on the server and a refused form comes back with
//! each reason next to its field (422). With JavaScript, `POST /handlers/preview` shows the
//! handler's JSON and the same reasons while typing.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use fx_core::handler::Handler;
use fx_core::package::LATEST_ALIAS;
use fx_core::registry::Expect;
use fx_core::ErrorKind;
use serde::Deserialize;

mod form;
#[cfg(test)]
mod tests;

pub use form::{ConditionRow, FieldErrors, HandlerForm};
use form::{ATTRIBUTES, BLANK_ROWS};

use super::{HtmlTemplate, PageError};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::handlers::{check, permit, record};
use crate::AppState;

/// The preview: the handler's JSON, or why it is not valid yet.
#[derive(Template)]
#[template(path = "handler_preview.html")]
struct Preview {
    /// The handler as JSON, when valid.
    json: Option<String>,
    /// The reasons, by field.
    errors: Vec<(&'static str, String)>,
}

impl Preview {
    fn of(result: &Result<Handler, FieldErrors>) -> Self {
        match result {
            Ok(handler) => Preview {
                json: serde_json::to_string_pretty(handler).ok(),
                errors: Vec::new(),
            },
            Err(errors) => Preview {
                json: None,
                errors: errors.iter().map(|(k, v)| (*k, v.clone())).collect(),
            },
        }
    }
}

/// The form page.
#[derive(Template)]
#[template(path = "handler_form.html")]
struct FormPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// Whether this edits a stored handler (the name is fixed).
    editing: bool,
    /// Where the form posts.
    action: String,
    /// The fields.
    form: HandlerForm,
    /// Condition rows to show: the filled ones and a few blank ones.
    rows: Vec<ConditionRow>,
    /// Attribute names offered.
    attributes: &'static [&'static str],
    /// Package names.
    packages: Vec<String>,
    /// Versions and aliases known (for the version field's suggestions).
    versions: Vec<String>,
    /// Event types the catalogue knows (the conditions' values' suggestions).
    event_types: Vec<String>,
    /// Event sources the catalogue knows (suggested for `source` conditions).
    event_sources: Vec<String>,
    /// Why the form was refused, by field.
    errors: FieldErrors,
    /// The preview (the handler's JSON or the reasons), rendered.
    preview_html: String,
}

async fn form_page(
    state: &AppState,
    caller: &Caller,
    editing: bool,
    form: HandlerForm,
    errors: FieldErrors,
) -> Result<FormPage, PageError> {
    let versions = state.backends.state.list_package_versions(None).await?;
    let mut packages: Vec<String> = versions.iter().map(|v| v.name.clone()).collect();
    packages.sort_unstable();
    packages.dedup();
    let mut known: Vec<String> = vec![LATEST_ALIAS.to_string()];
    for name in &packages {
        for alias in state.backends.state.list_aliases(name).await? {
            known.push(alias.alias);
        }
    }
    known.extend(versions.into_iter().map(|v| v.version));
    known.sort_unstable();
    known.dedup();
    let (event_types, event_sources) = super::catalogue::suggestions(state, caller).await;
    let mut rows = form.conditions.clone();
    rows.extend(std::iter::repeat_n(ConditionRow::default(), BLANK_ROWS));
    let preview = if errors.is_empty() {
        Preview::of(&form.to_handler())
    } else {
        Preview::of(&Err(errors.clone()))
    };
    let action = if editing {
        format!("/handlers/{}/edit", form.name)
    } else {
        "/handlers/new".to_string()
    };
    Ok(FormPage {
        active: "handlers",
        editing,
        action,
        form,
        rows,
        attributes: &ATTRIBUTES,
        packages,
        versions: known,
        event_types,
        event_sources,
        errors,
        preview_html: preview.render().unwrap_or_default(),
    })
}

/// Query parameters of `GET /handlers/new`.
#[derive(Debug, Default, Deserialize)]
pub struct NewParams {
    /// The package to preselect.
    #[serde(default)]
    pub package: Option<String>,
    /// The event type of the first condition (from the event catalogue's "create a handler").
    #[serde(default, rename = "type")]
    pub ty: Option<String>,
}

/// `GET /handlers/new`.
pub async fn new(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<NewParams>,
) -> Result<Response, PageError> {
    let mut form = HandlerForm::blank(params.package);
    if let (Some(ty), Some(first)) = (params.ty, form.conditions.first_mut()) {
        first.value = ty;
    }
    let page = form_page(&state, &caller, false, form, FieldErrors::new()).await?;
    Ok(HtmlTemplate(page).into_response())
}

/// `POST /handlers/new`: creates the handler, or shows the form with the reasons.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = HandlerForm::from_pairs(pairs);
    save(&state, &caller, form, false).await
}

/// The stored handler `name`, or a 404 page.
async fn stored_handler(
    state: &AppState,
    name: &str,
) -> Result<fx_core::registry::StoredHandler, PageError> {
    state.backends.registry.get(name).await?.ok_or_else(|| {
        PageError(ApiError::not_found(format!(
            "handler {name:?} does not exist"
        )))
    })
}

/// `GET /handlers/{name}/edit`.
pub async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let stored = stored_handler(&state, &name).await?;
    let form = HandlerForm::of(&stored.handler, stored.revision);
    let page = form_page(&state, &caller, true, form, FieldErrors::new()).await?;
    Ok(HtmlTemplate(page).into_response())
}

/// `POST /handlers/{name}/edit`: replaces the handler if it is still at the revision edited.
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let mut form = HandlerForm::from_pairs(pairs);
    form.name = name;
    save(&state, &caller, form, true).await
}

async fn save(
    state: &AppState,
    caller: &Caller,
    form: HandlerForm,
    editing: bool,
) -> Result<Response, PageError> {
    let refused = |errors: FieldErrors, form: HandlerForm| async move {
        let page = form_page(state, caller, editing, form, errors).await?;
        Ok::<_, PageError>((StatusCode::UNPROCESSABLE_ENTITY, HtmlTemplate(page)).into_response())
    };
    let handler = match form.to_handler() {
        Ok(handler) => handler,
        Err(errors) => return refused(errors, form).await,
    };
    if let Err(e) = check(state, caller, &handler).await {
        if e.status.is_server_error() {
            return Err(PageError(e));
        }
        let field = e.field.unwrap_or("package");
        return refused(FieldErrors::from([(field, e.message)]), form).await;
    }
    let expect = if !editing {
        Expect::Absent
    } else {
        match form.revision.trim().parse::<u64>() {
            Ok(revision) => Expect::Revision(revision),
            Err(_) => Expect::Any,
        }
    };
    match state.backends.registry.put(&handler, expect).await {
        Ok(revision) => {
            tracing::info!(handler = %handler.name, revision, "handler saved from the ui");
            record(
                state,
                &handler.name,
                revision,
                Some(&handler),
                caller.author(),
            )
            .await;
            let query =
                serde_urlencoded::to_string([("saved", handler.name.as_str())]).unwrap_or_default();
            Ok(Redirect::to(&format!("/handlers?{query}")).into_response())
        }
        Err(e) if e.kind() == ErrorKind::Conflict => {
            let reason = if editing {
                "this handler changed since you opened it: reload the page and edit again"
                    .to_string()
            } else {
                format!(
                    "a handler named {:?} exists: choose another name or edit it",
                    handler.name
                )
            };
            refused(FieldErrors::from([("name", reason)]), form).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /handlers/preview`: the handler's JSON, or the reasons it is not valid (a fragment).
pub async fn preview(Form(pairs): Form<Vec<(String, String)>>) -> Response {
    let form = HandlerForm::from_pairs(pairs);
    HtmlTemplate(Preview::of(&form.to_handler())).into_response()
}

/// `POST /handlers/{name}/delete`: deletes the handler (the page asks for confirmation).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let found = stored_handler(&state, &name).await?;
    state
        .backends
        .registry
        .delete(&name, Expect::Revision(found.revision))
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => ApiError::conflict(format!(
                "handler {name:?} changed while deleting it: look at it again and retry"
            )),
            _ => e.into(),
        })?;
    tracing::info!(handler = %name, "handler deleted from the ui");
    record(
        &state,
        &name,
        found.revision.saturating_add(1),
        None,
        caller.author(),
    )
    .await;
    let query = serde_urlencoded::to_string([("deleted", name.as_str())]).unwrap_or_default();
    Ok(Redirect::to(&format!("/handlers?{query}")).into_response())
}

/// `POST /handlers/{name}/toggle`: enables a disabled handler or disables an enabled one (the
/// handlers list's one-click switch), at the revision read.
pub async fn toggle(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let found = stored_handler(&state, &name).await?;
    let mut handler = found.handler;
    handler.enabled = !handler.enabled;
    permit(&caller, &handler)?;
    let revision = state
        .backends
        .registry
        .put(&handler, Expect::Revision(found.revision))
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => ApiError::conflict(format!(
                "handler {name:?} changed meanwhile: look at it again and retry"
            )),
            _ => e.into(),
        })?;
    let what = if handler.enabled {
        "enabled"
    } else {
        "disabled"
    };
    tracing::info!(handler = %name, revision, what, "handler switched from the ui");
    record(&state, &name, revision, Some(&handler), caller.author()).await;
    let query = serde_urlencoded::to_string([("saved", name.as_str())]).unwrap_or_default();
    Ok(Redirect::to(&format!("/handlers?{query}")).into_response())
}
