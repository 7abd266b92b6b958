//! `/secrets`: the platform secrets the viewer may grant or write, with their pools, version
//! and key (never a value); for a viewer allowed `secret:write`, a form to set one
//! (`POST /secrets`) and a delete button per secret (`POST /secrets/{name}/delete`). The
//! checks and the writing are the API's ([`crate::routes::secrets`]).

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use fx_core::identity::{Action, Resource};
use fx_core::secrets::{validate_secret_name, SecretValue};
use serde::Deserialize;

use super::{show_time, HtmlTemplate, PageError};
use crate::auth::audit::AuditResource;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::secrets::{remove, visible, write, written};
use crate::AppState;

/// The secrets page.
#[derive(Template)]
#[template(path = "secrets.html")]
struct SecretsPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// The secrets the viewer may grant or write, by name.
    secrets: Vec<SecretView>,
    /// The keyring's key ids, the sealing one first.
    keys: Vec<String>,
    /// Whether the server has a keyring (secrets can be written).
    configured: bool,
    /// The variable a keyring is read from when no key file is set.
    key_env: String,
    /// Whether the viewer may write some secret (the form shows).
    may_write: bool,
    /// The form's name, as last submitted.
    name: String,
    /// The form's pools, as last submitted (`default` at first).
    pools: String,
    /// What just happened (a secret set or deleted).
    notice: Option<String>,
    /// Why the last change was refused.
    error: Option<String>,
    /// The form field the error is about (`name`, `value` or `pools`), if one.
    error_field: Option<&'static str>,
}

impl SecretsPage {
    /// Whether the error is about form field `field`.
    fn error_on(&self, field: &str) -> bool {
        self.error.is_some() && self.error_field == Some(field)
    }
}

/// A secret as shown: everything but its value.
struct SecretView {
    /// Name.
    name: String,
    /// The pools receiving it, comma-separated.
    pools: String,
    /// Version.
    version: i64,
    /// The key that sealed it.
    key_id: String,
    /// When it last changed.
    updated_at: String,
    /// Who last changed it.
    updated_by: String,
    /// Whether the viewer may delete it.
    deletable: bool,
}

/// Query parameters of the secrets page.
#[derive(Debug, Default, Deserialize)]
pub struct SecretsParams {
    /// `name vN` just set.
    #[serde(default)]
    pub saved: Option<String>,
    /// The secret just deleted.
    #[serde(default)]
    pub deleted: Option<String>,
}

/// The form of `POST /secrets`. No `Debug`: it holds a value.
#[derive(Default, Deserialize)]
pub struct SecretForm {
    /// The secret's name.
    #[serde(default)]
    pub name: String,
    /// Its value, wrapped at once in a [`SecretValue`] and never shown again.
    #[serde(default)]
    pub value: String,
    /// The pools receiving it, comma-separated.
    #[serde(default)]
    pub pools: String,
}

/// The pools of the form's comma-separated text, empty entries left out.
fn pool_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// What the form shows again after a refusal (never the value).
struct Refill {
    name: String,
    pools: String,
    error: ApiError,
}

async fn page(
    state: &AppState,
    caller: &Caller,
    notice: Option<String>,
    refill: Option<Refill>,
) -> Result<SecretsPage, PageError> {
    let secrets = visible(state, caller)
        .await?
        .into_iter()
        .map(|s| SecretView {
            deletable: caller.may(Action::SecretWrite, &s.name),
            pools: s.pools.join(", "),
            version: s.version,
            key_id: s.key_id,
            updated_at: show_time(&s.updated_at),
            updated_by: s.updated_by,
            name: s.name,
        })
        .collect();
    let (name, pools, error) = match refill {
        Some(r) => (r.name, r.pools, Some(r.error)),
        None => (
            String::new(),
            fx_core::handler::DEFAULT_POOL.to_string(),
            None,
        ),
    };
    Ok(SecretsPage {
        active: "secrets",
        secrets,
        keys: state.vault.key_ids(),
        configured: state.vault.configured(),
        key_env: state.settings.secrets.key_env.clone(),
        may_write: caller.check(Action::SecretWrite, Resource::Any).is_ok(),
        name,
        pools,
        notice,
        error_field: error.as_ref().and_then(|e| e.field),
        error: error.map(|e| e.message),
    })
}

/// `GET /secrets`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<SecretsParams>, QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let notice = params.ok().and_then(|Query(p)| {
        p.saved
            .map(|what| format!("saved secret {what}"))
            .or(p.deleted.map(|name| format!("deleted secret {name}")))
    });
    Ok(HtmlTemplate(page(&state, &caller, notice, None).await?))
}

/// `POST /secrets`: sets a secret as `PUT /api/v1/secrets/{name}` does, then back to the list
/// with a notice; refused, the page again with the reason (and the error's status), the name
/// and pools kept and the value left out.
pub async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Form(form): Form<SecretForm>,
) -> Result<Response, PageError> {
    let name = form.name.trim().to_string();
    let pools = form.pools;
    let written_meta = match SecretValue::new(form.value) {
        Ok(value) => write(&state, &caller, &name, &value, pool_list(&pools)).await,
        Err(e) => Err(ApiError::from(e).on_field("value")),
    };
    match written_meta {
        Ok(meta) => {
            let query = serde_urlencoded::to_string([(
                "saved",
                format!("{} v{}", meta.name, meta.version),
            )])
            .unwrap_or_default();
            let mut response = Redirect::to(&format!("/secrets?{query}")).into_response();
            response.extensions_mut().insert(written(&meta));
            Ok(response)
        }
        Err(error) => {
            let status = error.status;
            if status.is_server_error() {
                tracing::warn!(status = %status, error = %error.message, "setting a secret from the ui failed");
            }
            // The audit entry names the secret when the name is one (not arbitrary input).
            let audited = validate_secret_name(&name)
                .is_ok()
                .then(|| AuditResource(format!("secret {name}")));
            let refill = Refill { name, pools, error };
            let page = page(&state, &caller, None, Some(refill)).await?;
            let mut response = (status, HtmlTemplate(page)).into_response();
            if let Some(audited) = audited {
                response.extensions_mut().insert(audited);
            }
            Ok(response)
        }
    }
}

/// `POST /secrets/{name}/delete`: deletes the secret (the page asks for confirmation), then
/// back to the list with a notice; the error page (404 when there is none) otherwise.
pub async fn delete(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let mut response = match remove(&state, &name).await {
        Ok(()) => {
            let query =
                serde_urlencoded::to_string([("deleted", name.as_str())]).unwrap_or_default();
            Redirect::to(&format!("/secrets?{query}")).into_response()
        }
        Err(e) => PageError(e).into_response(),
    };
    response
        .extensions_mut()
        .insert(AuditResource(format!("secret {name}")));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_read_from_comma_separated_text() {
        assert_eq!(pool_list("default"), ["default"]);
        assert_eq!(pool_list(" default , gpu,,"), ["default", "gpu"]);
        assert!(pool_list(" , ").is_empty());
    }
}
