//! The handler form: create (`/handlers/new`), edit (`/handlers/{name}/edit`) and delete
//! (`/handlers/{name}/delete`) handlers from the UI.
//!
//! The filter is built from condition rows (attribute, exact / prefix / suffix, value, "not"),
//! combined with all or any; a filter the rows cannot express (nested all/any) is edited as JSON
//! in the same form. Every field is checked on the server and a refused form comes back with
//! each reason next to its field (422). With JavaScript, `POST /handlers/preview` shows the
//! handler's JSON and the same reasons while typing.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use fx_core::handler::{AttributeMatch, Filter, Handler, PackageRef, DEFAULT_POOL};
use fx_core::limits::{LimitOverrides, RetryPolicy};
use fx_core::package::LATEST_ALIAS;
use fx_core::registry::Expect;
use fx_core::validate::{validate_http_host, validate_name, validate_secret_names};
use fx_core::ErrorKind;
use serde::Deserialize;

use super::{HtmlTemplate, PageError};
use crate::error::ApiError;
use crate::routes::handlers::{check, record};
use crate::AppState;

/// Condition rows shown beyond the filled ones, for adding conditions without JavaScript.
const BLANK_ROWS: usize = 2;
/// Attribute names offered in the condition rows (any extension name may be typed).
const ATTRIBUTES: [&str; 6] = [
    "type",
    "source",
    "subject",
    "id",
    "datacontenttype",
    "dataschema",
];

/// One condition row of the filter builder.
#[derive(Debug, Clone, Default)]
pub struct ConditionRow {
    /// Whether the condition is negated.
    pub negate: bool,
    /// The attribute (`type`, `source`, `subject`, or an extension name).
    pub attribute: String,
    /// `exact`, `prefix` or `suffix`.
    pub op: String,
    /// The text compared with the attribute.
    pub value: String,
}

impl ConditionRow {
    fn is_blank(&self) -> bool {
        self.attribute.trim().is_empty() && self.value.trim().is_empty()
    }
}

/// The handler form's fields, as typed.
#[derive(Debug, Clone, Default)]
pub struct HandlerForm {
    /// Handler name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// `all` or `any`: how the conditions combine.
    pub combine: String,
    /// The condition rows.
    pub conditions: Vec<ConditionRow>,
    /// The filter as JSON; when filled it is used instead of the rows.
    pub filter_json: String,
    /// Package name.
    pub package: String,
    /// Version or alias.
    pub version: String,
    /// Executor pool.
    pub pool: String,
    /// Memory cap in MiB, or empty.
    pub memory_mb: String,
    /// Timeout in milliseconds, or empty.
    pub timeout_ms: String,
    /// Concurrency per executor, or empty.
    pub concurrency: String,
    /// Fuel budget, or empty.
    pub fuel: String,
    /// Output bytes per invocation, or empty.
    pub max_output_bytes: String,
    /// Log bytes per invocation, or empty.
    pub max_log_bytes: String,
    /// Configuration values, one `key=value` per line.
    pub config: String,
    /// Granted secret names, separated by commas or spaces.
    pub secrets: String,
    /// Hosts the function may send HTTP requests to, separated by commas or spaces.
    pub http_allow: String,
    /// Attempts in all.
    pub max_attempts: String,
    /// First retry delay in milliseconds.
    pub backoff_ms: String,
    /// Largest retry delay in milliseconds.
    pub max_backoff_ms: String,
    /// Whether attempts that broke a limit are retried too.
    pub retry_limit_breaches: bool,
    /// Whether events run in warm instances kept from earlier events.
    pub reuse_instances: bool,
    /// Whether the handler matches events.
    pub enabled: bool,
    /// The revision edited (check-and-set), empty for a new handler.
    pub revision: String,
}

/// Reasons a form was refused, by field (`name`, `filter`, `package`, `pool`, `limits`,
/// `retry`, `form`).
pub type FieldErrors = BTreeMap<&'static str, String>;

impl HandlerForm {
    /// Reads the submitted pairs (`cond.<i>.<part>` for the condition rows).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut form = HandlerForm::default();
        let mut rows: BTreeMap<usize, ConditionRow> = BTreeMap::new();
        for (key, value) in pairs {
            if let Some(rest) = key.strip_prefix("cond.") {
                let Some((index, part)) = rest.split_once('.') else {
                    continue;
                };
                let Ok(index) = index.parse::<usize>() else {
                    continue;
                };
                let row = rows.entry(index).or_default();
                match part {
                    "not" => row.negate = true,
                    "attribute" => row.attribute = value,
                    "op" => row.op = value,
                    "value" => row.value = value,
                    _ => {}
                }
                continue;
            }
            match key.as_str() {
                "name" => form.name = value,
                "description" => form.description = value,
                "combine" => form.combine = value,
                "filter_json" => form.filter_json = value,
                "package" => form.package = value,
                "version" => form.version = value,
                "pool" => form.pool = value,
                "memory_mb" => form.memory_mb = value,
                "timeout_ms" => form.timeout_ms = value,
                "concurrency" => form.concurrency = value,
                "fuel" => form.fuel = value,
                "max_output_bytes" => form.max_output_bytes = value,
                "max_log_bytes" => form.max_log_bytes = value,
                "config" => form.config = value,
                "secrets" => form.secrets = value,
                "http_allow" => form.http_allow = value,
                "max_attempts" => form.max_attempts = value,
                "backoff_ms" => form.backoff_ms = value,
                "max_backoff_ms" => form.max_backoff_ms = value,
                "enabled" => form.enabled = true,
                "retry_limit_breaches" => form.retry_limit_breaches = true,
                "reuse_instances" => form.reuse_instances = true,
                "revision" => form.revision = value,
                _ => {}
            }
        }
        form.conditions = rows.into_values().filter(|r| !r.is_blank()).collect();
        form
    }

    /// The form of a new handler, on `package` when given.
    pub fn blank(package: Option<String>) -> Self {
        let retry = RetryPolicy::default();
        HandlerForm {
            combine: "all".into(),
            conditions: vec![ConditionRow {
                attribute: "type".into(),
                op: "exact".into(),
                ..ConditionRow::default()
            }],
            package: package.unwrap_or_default(),
            version: LATEST_ALIAS.into(),
            pool: DEFAULT_POOL.into(),
            max_attempts: retry.max_attempts.to_string(),
            backoff_ms: retry.backoff_ms.to_string(),
            max_backoff_ms: retry.max_backoff_ms.to_string(),
            enabled: true,
            ..HandlerForm::default()
        }
    }

    /// The form showing a stored handler.
    pub fn of(handler: &Handler, revision: u64) -> Self {
        let (combine, conditions, filter_json) = match rows_of(&handler.filter) {
            Some((combine, rows)) => (combine, rows, String::new()),
            None => (
                "all".to_string(),
                Vec::new(),
                serde_json::to_string_pretty(&handler.filter).unwrap_or_default(),
            ),
        };
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        HandlerForm {
            name: handler.name.clone(),
            description: handler.description.clone(),
            combine,
            conditions,
            filter_json,
            package: handler.package.name.clone(),
            version: handler.package.version.clone(),
            pool: handler.pool.clone(),
            memory_mb: opt(handler.limits.memory_mb.map(u64::from)),
            timeout_ms: opt(handler.limits.timeout_ms),
            concurrency: opt(handler.limits.concurrency.map(u64::from)),
            fuel: opt(handler.limits.fuel),
            max_output_bytes: opt(handler.limits.max_output_bytes),
            max_log_bytes: opt(handler.limits.max_log_bytes),
            config: handler
                .config
                .iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect(),
            secrets: handler
                .secrets
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            http_allow: handler
                .http_allow
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            max_attempts: handler.retry.max_attempts.to_string(),
            backoff_ms: handler.retry.backoff_ms.to_string(),
            max_backoff_ms: handler.retry.max_backoff_ms.to_string(),
            retry_limit_breaches: handler.retry.retry_limit_breaches,
            reuse_instances: handler.reuse_instances,
            enabled: handler.enabled,
            revision: revision.to_string(),
        }
    }

    /// The handler this form describes, or why it is not a valid one (by field).
    pub fn to_handler(&self) -> Result<Handler, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = self.name.trim().to_string();
        if let Err(e) = validate_name("handler name", &name) {
            errors.insert("name", e.chain());
        }
        let filter = match self.filter() {
            Ok(filter) => match filter.validate() {
                Ok(()) => Some(filter),
                Err(e) => {
                    errors.insert("filter", e.chain());
                    None
                }
            },
            Err(reason) => {
                errors.insert("filter", reason);
                None
            }
        };
        let package = self.package.trim().to_string();
        if package.is_empty() {
            errors.insert("package", "choose the package whose function runs".into());
        } else if let Err(e) = validate_name("package name", &package) {
            errors.insert("package", e.chain());
        }
        let version = match self.version.trim() {
            "" => LATEST_ALIAS.to_string(),
            v => v.to_string(),
        };
        let pool = match self.pool.trim() {
            "" => DEFAULT_POOL.to_string(),
            p => p.to_string(),
        };
        if let Err(e) = validate_name("executor pool", &pool) {
            errors.insert("pool", e.chain());
        }
        let limits = (|| {
            Ok::<_, String>(LimitOverrides {
                memory_mb: number(&self.memory_mb, "memory (MiB)")?,
                timeout_ms: number(&self.timeout_ms, "timeout (ms)")?,
                concurrency: number(&self.concurrency, "concurrency")?,
                fuel: number(&self.fuel, "fuel")?,
                max_output_bytes: number(&self.max_output_bytes, "output (bytes)")?,
                max_log_bytes: number(&self.max_log_bytes, "log volume (bytes)")?,
            })
        })();
        let limits = limits.unwrap_or_else(|reason| {
            errors.insert("limits", reason);
            LimitOverrides::default()
        });
        let defaults = RetryPolicy::default();
        let retry = (|| {
            Ok::<_, String>(RetryPolicy {
                max_attempts: number(&self.max_attempts, "attempts")?
                    .unwrap_or(defaults.max_attempts),
                backoff_ms: number(&self.backoff_ms, "backoff (ms)")?
                    .unwrap_or(defaults.backoff_ms),
                max_backoff_ms: number(&self.max_backoff_ms, "largest backoff (ms)")?
                    .unwrap_or(defaults.max_backoff_ms),
                retry_limit_breaches: self.retry_limit_breaches,
            })
        })();
        let retry = retry.unwrap_or_else(|reason| {
            errors.insert("retry", reason);
            defaults
        });
        let config = self.config_values().unwrap_or_else(|reason| {
            errors.insert("config", reason);
            BTreeMap::new()
        });
        let secrets: BTreeSet<String> = list(&self.secrets);
        if let Err(e) = validate_secret_names("secrets", &secrets) {
            errors.insert("secrets", e.chain());
        }
        let http_allow: BTreeSet<String> = list(&self.http_allow);
        if let Some(e) = http_allow.iter().find_map(|h| validate_http_host(h).err()) {
            errors.insert("http_allow", e.chain());
        }
        let Some(filter) = filter else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let handler = Handler {
            name,
            description: self.description.trim().to_string(),
            filter,
            package: PackageRef {
                name: package,
                version,
            },
            pool,
            limits,
            retry,
            enabled: self.enabled,
            reuse_instances: self.reuse_instances,
            config,
            secrets,
            http_allow,
        };
        // Name, filter, package, pool and secrets passed above: what is left is checked part by
        // part, so each reason lands on its own field.
        let checks = [
            ("limits", handler.limits.validate()),
            ("retry", handler.retry.validate()),
            (
                "config",
                fx_core::validate::validate_config("handler config", &handler.config),
            ),
        ];
        for (field, result) in checks {
            if let Err(e) = result {
                errors.insert(field, e.chain());
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Whatever else a stored handler must satisfy (the same rules as the API).
        if let Err(e) = handler.validate() {
            errors.insert("limits", e.chain());
            return Err(errors);
        }
        Ok(handler)
    }

    /// The filter of the rows, or of the JSON box when it is filled.
    fn filter(&self) -> Result<Filter, String> {
        if !self.filter_json.trim().is_empty() {
            return serde_json::from_str(&self.filter_json)
                .map_err(|e| format!("the filter json is not a filter: {e}"));
        }
        let mut leaves = Vec::with_capacity(self.conditions.len());
        for (i, row) in self.conditions.iter().enumerate() {
            let m = AttributeMatch {
                attribute: row.attribute.trim().to_string(),
                value: row.value.clone(),
            };
            let leaf = match row.op.as_str() {
                "exact" | "" => Filter::Exact(m),
                "prefix" => Filter::Prefix(m),
                "suffix" => Filter::Suffix(m),
                other => {
                    return Err(format!(
                        "condition {}: unknown comparison {other:?} (exact, prefix or suffix)",
                        i + 1
                    ))
                }
            };
            leaves.push(if row.negate {
                Filter::Not(Box::new(leaf))
            } else {
                leaf
            });
        }
        if leaves.is_empty() {
            return Err(
                "add at least one condition (e.g. type exact com.example.hello); to run on every event, write {\"all\": []} as the filter json"
                    .into(),
            );
        }
        if leaves.len() == 1 {
            return Ok(leaves.remove(0));
        }
        Ok(match self.combine.as_str() {
            "any" => Filter::Any(leaves),
            _ => Filter::All(leaves),
        })
    }
}

impl HandlerForm {
    /// The configuration field's `key=value` lines (blank lines and lines starting with `#`
    /// skipped).
    fn config_values(&self) -> Result<BTreeMap<String, String>, String> {
        let mut values = BTreeMap::new();
        for (n, line) in self.config.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "configuration line {} is not key=value: {line:?}",
                    n + 1
                ));
            };
            values.insert(key.trim().to_string(), value.trim().to_string());
        }
        Ok(values)
    }
}

/// A field listing names, separated by commas or white space.
fn list(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A number field: empty is `None`.
fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<Option<T>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{what} must be a whole number, got {text:?}"))
}

/// The rows of a filter the builder can show: one leaf, or all/any of leaves and negated leaves.
fn rows_of(filter: &Filter) -> Option<(String, Vec<ConditionRow>)> {
    fn row(filter: &Filter, negate: bool) -> Option<ConditionRow> {
        let (op, m) = match filter {
            Filter::Exact(m) => ("exact", m),
            Filter::Prefix(m) => ("prefix", m),
            Filter::Suffix(m) => ("suffix", m),
            Filter::Not(inner) if !negate => return row(inner, true),
            _ => return None,
        };
        Some(ConditionRow {
            negate,
            attribute: m.attribute.clone(),
            op: op.to_string(),
            value: m.value.clone(),
        })
    }
    match filter {
        Filter::All(inner) | Filter::Any(inner) if !inner.is_empty() => {
            let combine = if matches!(filter, Filter::Any(_)) {
                "any"
            } else {
                "all"
            };
            let rows = inner
                .iter()
                .map(|f| row(f, false))
                .collect::<Option<Vec<_>>>()?;
            Some((combine.to_string(), rows))
        }
        Filter::All(_) | Filter::Any(_) => None,
        leaf => Some(("all".to_string(), vec![row(leaf, false)?])),
    }
}

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
    /// Why the form was refused, by field.
    errors: FieldErrors,
    /// The preview (the handler's JSON or the reasons), rendered.
    preview_html: String,
}

async fn form_page(
    state: &AppState,
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
}

/// `GET /handlers/new`.
pub async fn new(
    State(state): State<AppState>,
    Query(params): Query<NewParams>,
) -> Result<Response, PageError> {
    let page = form_page(
        &state,
        false,
        HandlerForm::blank(params.package),
        FieldErrors::new(),
    )
    .await?;
    Ok(HtmlTemplate(page).into_response())
}

/// `POST /handlers/new`: creates the handler, or shows the form with the reasons.
pub async fn create(
    State(state): State<AppState>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = HandlerForm::from_pairs(pairs);
    save(&state, form, false).await
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
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let stored = stored_handler(&state, &name).await?;
    let form = HandlerForm::of(&stored.handler, stored.revision);
    let page = form_page(&state, true, form, FieldErrors::new()).await?;
    Ok(HtmlTemplate(page).into_response())
}

/// `POST /handlers/{name}/edit`: replaces the handler if it is still at the revision edited.
pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let mut form = HandlerForm::from_pairs(pairs);
    form.name = name;
    save(&state, form, true).await
}

async fn save(state: &AppState, form: HandlerForm, editing: bool) -> Result<Response, PageError> {
    let refused = |errors: FieldErrors, form: HandlerForm| async move {
        let page = form_page(state, editing, form, errors).await?;
        Ok::<_, PageError>((StatusCode::UNPROCESSABLE_ENTITY, HtmlTemplate(page)).into_response())
    };
    let handler = match form.to_handler() {
        Ok(handler) => handler,
        Err(errors) => return refused(errors, form).await,
    };
    if let Err(e) = check(state, &handler).await {
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
            record(state, &handler.name, revision, Some(&handler), None).await;
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
    record(&state, &name, found.revision.saturating_add(1), None, None).await;
    let query = serde_urlencoded::to_string([("deleted", name.as_str())]).unwrap_or_default();
    Ok(Redirect::to(&format!("/handlers?{query}")).into_response())
}

/// `POST /handlers/{name}/toggle`: enables a disabled handler or disables an enabled one (the
/// handlers list's one-click switch), at the revision read.
pub async fn toggle(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, PageError> {
    let found = stored_handler(&state, &name).await?;
    let mut handler = found.handler;
    handler.enabled = !handler.enabled;
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
    record(&state, &name, revision, Some(&handler), None).await;
    let query = serde_urlencoded::to_string([("saved", name.as_str())]).unwrap_or_default();
    Ok(Redirect::to(&format!("/handlers?{query}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn rows_build_the_filter_and_a_stored_filter_comes_back_as_rows() {
        let form = HandlerForm::from_pairs(pairs(&[
            ("name", "orders"),
            ("combine", "any"),
            ("cond.0.attribute", "type"),
            ("cond.0.op", "prefix"),
            ("cond.0.value", "com.example."),
            ("cond.1.not", "on"),
            ("cond.1.attribute", "tenant"),
            ("cond.1.op", "exact"),
            ("cond.1.value", "test"),
            ("cond.2.attribute", ""),
            ("cond.2.value", ""),
            ("package", "hello"),
            ("enabled", "on"),
        ]));
        let handler = form.to_handler().unwrap();
        let json = serde_json::to_value(&handler.filter).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"any": [
                {"prefix": {"attribute": "type", "value": "com.example."}},
                {"not": {"exact": {"attribute": "tenant", "value": "test"}}}
            ]})
        );
        assert_eq!(handler.package.version, "latest");
        assert_eq!(handler.pool, "default");
        assert!(handler.enabled);
        let again = HandlerForm::of(&handler, 3);
        assert_eq!(again.combine, "any");
        assert_eq!(again.conditions.len(), 2);
        assert!(again.conditions[1].negate);
        assert_eq!(again.to_handler().unwrap(), handler);
    }

    #[test]
    fn each_refused_field_says_why() {
        let form = HandlerForm::from_pairs(pairs(&[
            ("name", "Bad Name"),
            ("cond.0.attribute", "Not An Attribute!"),
            ("cond.0.op", "exact"),
            ("cond.0.value", "x"),
            ("package", "hello"),
            ("memory_mb", "lots"),
            ("max_attempts", "3"),
            ("backoff_ms", "5000"),
            ("max_backoff_ms", "10"),
        ]));
        let errors = form.to_handler().unwrap_err();
        assert!(errors["name"].contains("Bad Name"), "{errors:?}");
        assert!(
            errors["filter"].contains("not a cloudevents attribute name"),
            "{errors:?}"
        );
        assert!(errors["limits"].contains("whole number"), "{errors:?}");
        let no_conditions = HandlerForm::from_pairs(pairs(&[("name", "x"), ("package", "p")]));
        assert!(no_conditions.to_handler().unwrap_err()["filter"].contains("at least one"));
    }

    #[test]
    fn configuration_secrets_and_every_limit_survive_a_round_trip() {
        let form = HandlerForm::from_pairs(pairs(&[
            ("name", "configured"),
            ("cond.0.attribute", "type"),
            ("cond.0.op", "exact"),
            ("cond.0.value", "t"),
            ("package", "hello"),
            ("max_output_bytes", "2048"),
            ("max_log_bytes", "4096"),
            (
                "config",
                "greeting = Howdy\n# a comment\n\nurl=https://x.test/?a=b\n",
            ),
            ("secrets", "api-token, db-url"),
            ("http_allow", "api.example.com 127.0.0.1:8080"),
        ]));
        let handler = form.to_handler().unwrap();
        assert_eq!(handler.config["greeting"], "Howdy");
        assert_eq!(handler.config["url"], "https://x.test/?a=b");
        assert_eq!(handler.secrets.len(), 2);
        assert_eq!(handler.http_allow.len(), 2);
        assert_eq!(
            (
                handler.limits.max_output_bytes,
                handler.limits.max_log_bytes
            ),
            (Some(2048), Some(4096))
        );
        assert_eq!(HandlerForm::of(&handler, 1).to_handler().unwrap(), handler);

        let bad = HandlerForm::from_pairs(pairs(&[
            ("name", "x"),
            ("package", "p"),
            ("config", "no equals sign"),
            ("secrets", "..data"),
        ]));
        let errors = bad.to_handler().unwrap_err();
        assert!(errors["config"].contains("line 1"), "{errors:?}");
        assert!(errors["secrets"].contains("..data"), "{errors:?}");
    }

    #[test]
    fn nested_filters_are_edited_as_json() {
        let filter: Filter = serde_json::from_value(serde_json::json!({"all": [
            {"any": [{"exact": {"attribute": "type", "value": "a"}}]}
        ]}))
        .unwrap();
        assert!(rows_of(&filter).is_none());
        let form = HandlerForm::from_pairs(pairs(&[
            ("name", "nested"),
            ("package", "hello"),
            ("filter_json", &serde_json::to_string(&filter).unwrap()),
        ]));
        assert_eq!(form.to_handler().unwrap().filter, filter);
    }
}
