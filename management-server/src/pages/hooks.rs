//! `/hooks`: the webhooks the viewer may read, each with its check, its transform, its rate
//! limit, the URL senders post to and a link to the executions its deliveries ran; for a
//! viewer allowed `hook:write`, a form to create one (`POST /hooks`) and a delete button per
//! hook (`POST /hooks/{name}/delete`). The checks and the writing are the API's
//! ([`crate::routes::hooks`]).
//!
//! Deliveries arrive at `POST /hooks/{name}` ([`crate::hooks`]): the form posts to `/hooks`
//! and the delete buttons to `/hooks/{name}/delete`, which that route does not match.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use fx_core::hook::{Hook, RateLimit, Transform, Verify, DEFAULT_TOLERANCE_SECONDS};
use fx_core::identity::{Action, Resource};
use fx_core::validate::validate_name;
use fx_core::ErrorKind;
use serde::Deserialize;

use super::{HtmlTemplate, PageError};
use crate::auth::audit::AuditResource;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::entries::{create_checked, remove, visible};
use crate::AppState;

/// The webhooks page.
#[derive(Template)]
#[template(path = "hooks.html")]
struct HooksPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// The hooks the viewer may read, by name.
    hooks: Vec<HookView>,
    /// Whether the viewer may write some hook (the form shows).
    may_write: bool,
    /// The URL deliveries go to, up to the name (`http://host/hooks/`).
    endpoint: String,
    /// The form as last submitted.
    form: HookForm,
    /// What just happened.
    notice: Option<String>,
    /// Why the last change was refused.
    error: Option<String>,
    /// The form field the error is about, if one.
    error_field: Option<&'static str>,
}

impl HooksPage {
    /// The error, when it is about form field `field`.
    fn error_for(&self, field: &str) -> Option<&str> {
        match (&self.error, self.error_field) {
            (Some(error), Some(f)) if f == field => Some(error),
            _ => None,
        }
    }
}

/// A hook as shown.
struct HookView {
    name: String,
    description: String,
    verify: &'static str,
    /// The platform secret it checks with, if any.
    secret: Option<String>,
    transform: &'static str,
    /// `10/s, burst 20`.
    rate: String,
    /// The URL senders post to.
    url: String,
    enabled: bool,
    /// The executions list filtered on the deliveries' source.
    executions_href: String,
    writable: bool,
}

/// Query parameters of the webhooks page.
#[derive(Debug, Default, Deserialize)]
pub struct HooksParams {
    /// What just happened (`created webhook github`, …).
    #[serde(default)]
    pub done: Option<String>,
}

/// The form of `POST /hooks`.
#[derive(Debug, Clone, Deserialize)]
pub struct HookForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `github`, `stripe`, `slack`, `gitlab`, `hmac` or `none`.
    #[serde(default)]
    pub verify: String,
    /// The platform secret's name.
    #[serde(default)]
    pub secret: String,
    /// With `hmac`: the header carrying the signature.
    #[serde(default)]
    pub header: String,
    /// `github`, `stripe`, `gitlab`, `json` or `raw`.
    #[serde(default)]
    pub transform: String,
    /// With `json`: the events' type…
    #[serde(default, rename = "type")]
    pub ty: String,
    /// …or a JSON pointer to it.
    #[serde(default)]
    pub type_pointer: String,
    /// With `json`: a JSON pointer to the delivery's id.
    #[serde(default)]
    pub id_pointer: String,
    /// Deliveries a second.
    #[serde(default)]
    pub rate: String,
    /// Deliveries at once.
    #[serde(default)]
    pub burst: String,
}

impl Default for HookForm {
    fn default() -> Self {
        let rate = RateLimit::default();
        HookForm {
            name: String::new(),
            description: String::new(),
            verify: "github".into(),
            secret: String::new(),
            header: String::new(),
            transform: "github".into(),
            ty: String::new(),
            type_pointer: String::new(),
            id_pointer: String::new(),
            rate: rate.per_second.to_string(),
            burst: rate.burst.to_string(),
        }
    }
}

/// The text of an optional field: `None` when blank.
fn given(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

impl HookForm {
    /// The hook the form describes; a refusal names the field it is about.
    fn hook(&self) -> Result<Hook, ApiError> {
        let secret = || {
            given(&self.secret).ok_or_else(|| {
                ApiError::invalid(format!(
                    "a {} check needs the name of the platform secret holding what the sender signs with",
                    self.verify
                ))
                .on_field("secret")
            })
        };
        let verify = match self.verify.as_str() {
            "github" => Verify::Github { secret: secret()? },
            "stripe" => Verify::Stripe {
                secret: secret()?,
                tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
            },
            "slack" => Verify::Slack {
                secret: secret()?,
                tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
            },
            "gitlab" => Verify::Gitlab { secret: secret()? },
            "hmac" => Verify::Hmac {
                secret: secret()?,
                header: given(&self.header).ok_or_else(|| {
                    ApiError::invalid("an hmac check needs the header carrying the signature")
                        .on_field("header")
                })?,
                algorithm: Default::default(),
                encoding: Default::default(),
                prefix: String::new(),
            },
            "none" => Verify::None,
            other => {
                return Err(ApiError::invalid(format!("unknown check {other:?}")).on_field("verify"))
            }
        };
        let json_fields = [&self.ty, &self.type_pointer, &self.id_pointer];
        let transform = match self.transform.as_str() {
            "json" => Transform::Json {
                ty: given(&self.ty),
                type_pointer: given(&self.type_pointer),
                type_prefix: String::new(),
                id_pointer: given(&self.id_pointer),
                id_header: None,
                subject_pointer: None,
            },
            other if json_fields.iter().any(|f| !f.trim().is_empty()) => {
                return Err(ApiError::invalid(format!(
                    "the type, type pointer and id pointer are read by a json transform, not {other}: choose json or leave them empty"
                ))
                .on_field("transform"))
            }
            "github" => Transform::Github,
            "stripe" => Transform::Stripe,
            "gitlab" => Transform::Gitlab,
            "raw" => Transform::Raw { id_header: None },
            other => {
                return Err(
                    ApiError::invalid(format!("unknown transform {other:?}")).on_field("transform")
                )
            }
        };
        let rate = self.rate.trim();
        let per_second: f64 = rate.parse().map_err(|_| {
            ApiError::invalid(format!(
                "rate: {rate:?} is not a number of deliveries a second"
            ))
            .on_field("rate")
        })?;
        let burst = self.burst.trim();
        let burst: u32 = burst.parse().map_err(|_| {
            ApiError::invalid(format!("burst: {burst:?} is not a whole number")).on_field("burst")
        })?;
        Ok(Hook {
            name: self.name.trim().to_string(),
            description: self.description.trim().to_string(),
            verify,
            transform,
            keep_headers: Vec::new(),
            rate: RateLimit { per_second, burst },
            max_body_bytes: fx_core::hook::DEFAULT_MAX_BODY_BYTES,
            enabled: true,
        })
    }
}

/// The form field `error` is about: the one it names, else the one its message starts with
/// (the model's validation names the hook's field).
fn field_of(error: &ApiError, name: &str) -> Option<&'static str> {
    match error.field {
        // The API's check of the signing secret (it exists, the caller may grant it).
        Some("verify") => return Some("secret"),
        Some(field) => return Some(field),
        None => {}
    }
    if matches!(error.kind, ErrorKind::Conflict | ErrorKind::Forbidden) {
        return Some("name");
    }
    let message = error.message.as_str();
    [
        ("hook name", "name"),
        ("verify.secret", "secret"),
        ("verify.header", "header"),
        ("transform.type_pointer", "type_pointer"),
        ("transform.id_pointer", "id_pointer"),
        ("transform.type", "type"),
        ("transform:", "type"),
        ("rate.per_second", "rate"),
        ("rate.burst", "burst"),
    ]
    .into_iter()
    .find(|(prefix, _)| message.starts_with(prefix))
    .map(|(_, field)| field)
    .or_else(|| {
        // A message about the name names it first (`hook "x" …`).
        (!name.is_empty() && message.starts_with(&format!("hook {name:?}"))).then_some("name")
    })
}

async fn page(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    notice: Option<String>,
    refill: Option<(HookForm, ApiError)>,
) -> Result<HooksPage, PageError> {
    let endpoint = format!("{}/hooks/", super::origin(headers));
    let hooks = visible::<Hook>(state, caller)
        .await?
        .into_iter()
        .map(|h| HookView {
            verify: h.verify.kind(),
            secret: h.verify.secret().map(str::to_string),
            transform: h.transform.kind(),
            rate: format!("{}/s, burst {}", h.rate.per_second, h.rate.burst),
            url: format!("{endpoint}{}", h.name),
            enabled: h.enabled,
            executions_href: format!(
                "/executions?{}",
                serde_urlencoded::to_string([("text", h.source())]).unwrap_or_default()
            ),
            writable: caller.may(Action::HookWrite, &h.name),
            description: h.description,
            name: h.name,
        })
        .collect();
    let (form, error, error_field) = match refill {
        Some((form, error)) => {
            let field = field_of(&error, form.name.trim());
            (form, Some(error.message), field)
        }
        None => (HookForm::default(), None, None),
    };
    Ok(HooksPage {
        active: "hooks",
        hooks,
        may_write: caller.check(Action::HookWrite, Resource::Any).is_ok(),
        endpoint,
        form,
        notice,
        error,
        error_field,
    })
}

/// `GET /hooks`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Result<Query<HooksParams>, QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let notice = params.ok().and_then(|Query(p)| p.done);
    Ok(HtmlTemplate(
        page(&state, &caller, &headers, notice, None).await?,
    ))
}

fn back(done: String) -> Response {
    let query = serde_urlencoded::to_string([("done", done)]).unwrap_or_default();
    Redirect::to(&format!("/hooks?{query}")).into_response()
}

/// `POST /hooks`: creates a webhook as `POST /api/v1/hooks` does; refused, the page again with
/// the reason next to the field it is about and the form as submitted.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Form(form): Form<HookForm>,
) -> Result<Response, PageError> {
    let name = form.name.trim().to_string();
    let created = match form.hook() {
        Ok(hook) => create_checked(&state, &caller, &hook).await,
        Err(e) => Err(e),
    };
    // The audit entry names the hook when the name is one (not arbitrary input).
    let audited = validate_name("hook name", &name)
        .is_ok()
        .then(|| AuditResource(format!("hook {name}")));
    let mut response = match created {
        Ok(_) => back(format!("created webhook {name}")),
        Err(mut error) => {
            if error.kind == ErrorKind::Conflict {
                error.message = format!("a webhook named {name:?} already exists");
            }
            let status = error.status;
            let page = page(&state, &caller, &headers, None, Some((form, error))).await?;
            (status, HtmlTemplate(page)).into_response()
        }
    };
    if let Some(audited) = audited {
        response.extensions_mut().insert(audited);
    }
    Ok(response)
}

/// `POST /hooks/{name}/delete` (the page asks for confirmation).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    match remove::<Hook>(&state, &caller, &name).await {
        Ok(()) => back(format!("deleted webhook {name}")),
        Err(e) => PageError(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HookForm {
        let text = serde_urlencoded::to_string(pairs).unwrap();
        let mut form: HookForm = serde_urlencoded::from_str(&text).unwrap();
        if form.rate.is_empty() {
            form.rate = "10".into();
        }
        if form.burst.is_empty() {
            form.burst = "20".into();
        }
        form
    }

    #[test]
    fn the_form_makes_the_hook_it_describes() {
        let hook = form(&[
            ("name", " gh "),
            ("verify", "github"),
            ("secret", "gh-secret"),
            ("transform", "github"),
        ])
        .hook()
        .unwrap();
        assert_eq!(hook.name, "gh");
        assert_eq!(
            hook.verify,
            Verify::Github {
                secret: "gh-secret".into()
            }
        );
        assert_eq!(hook.transform, Transform::Github);
        assert_eq!(hook.rate, RateLimit::default());
        hook.validate().unwrap();

        let json = form(&[
            ("name", "orders"),
            ("verify", "none"),
            ("transform", "json"),
            ("type_pointer", "/event"),
            ("id_pointer", "/id"),
            ("rate", "2.5"),
            ("burst", "4"),
        ])
        .hook()
        .unwrap();
        assert_eq!(
            json.transform,
            Transform::Json {
                ty: None,
                type_pointer: Some("/event".into()),
                type_prefix: String::new(),
                id_pointer: Some("/id".into()),
                id_header: None,
                subject_pointer: None,
            }
        );
        assert_eq!(
            json.rate,
            RateLimit {
                per_second: 2.5,
                burst: 4
            }
        );
    }

    #[test]
    fn refusals_name_their_field() {
        let field = |pairs: &[(&str, &str)]| {
            let form = form(pairs);
            let error = match form.hook() {
                Ok(hook) => hook
                    .validate()
                    .map(|()| panic!("{pairs:?} is valid"))
                    .unwrap_err()
                    .into(),
                Err(e) => e,
            };
            field_of(&error, &form.name)
        };
        let base = [("name", "gh"), ("verify", "github"), ("secret", "s")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs: Vec<_> = base
                .iter()
                .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
                .copied()
                .collect();
            pairs.extend_from_slice(extra);
            pairs
        };
        assert_eq!(
            field(&[("name", "gh"), ("verify", "github")]),
            Some("secret")
        );
        assert_eq!(
            field(&with(&[("name", "Bad Name"), ("transform", "github")])),
            Some("name")
        );
        assert_eq!(
            field(&with(&[("transform", "github"), ("rate", "fast")])),
            Some("rate")
        );
        assert_eq!(
            field(&with(&[("transform", "github"), ("rate", "0")])),
            Some("rate")
        );
        assert_eq!(
            field(&with(&[("transform", "github"), ("burst", "0")])),
            Some("burst")
        );
        assert_eq!(
            field(&with(&[("transform", "github"), ("burst", "-1")])),
            Some("burst")
        );
        assert_eq!(field(&with(&[("transform", "json")])), Some("type"));
        assert_eq!(
            field(&with(&[("transform", "json"), ("type_pointer", "event")])),
            Some("type_pointer")
        );
        assert_eq!(
            field(&with(&[
                ("transform", "json"),
                ("type", "t"),
                ("id_pointer", "id")
            ])),
            Some("id_pointer")
        );
        assert_eq!(
            field(&with(&[("transform", "github"), ("type", "t")])),
            Some("transform")
        );
        assert_eq!(
            field(&[
                ("name", "x"),
                ("verify", "hmac"),
                ("secret", "s"),
                ("transform", "raw")
            ]),
            Some("header")
        );
        assert_eq!(
            field(&with(&[("transform", "github"), ("secret", "not a name!")])),
            Some("secret")
        );
    }

    #[test]
    fn the_origin_is_the_requests_host() {
        let mut headers = HeaderMap::new();
        assert_eq!(crate::pages::origin(&headers), "");
        headers.insert(
            axum::http::header::HOST,
            "fx.example.com:8080".parse().unwrap(),
        );
        assert_eq!(crate::pages::origin(&headers), "http://fx.example.com:8080");
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            crate::pages::origin(&headers),
            "https://fx.example.com:8080"
        );
        headers.insert(axum::http::header::HOST, "evil\"><script>".parse().unwrap());
        assert_eq!(crate::pages::origin(&headers), "");
    }
}
