//! `/notifications`: the notification rules the viewer may read, each with the handlers it
//! watches, the outcomes it sends, its target (a signed JSON webhook or a CloudEvent sink) and
//! its secret; for a viewer allowed `notification:write`, a form to create one
//! (`POST /notifications`) and a delete button per rule (`POST /notifications/{name}/delete`).
//! The checks and the writing are the API's ([`crate::routes::notifications`]); what was sent
//! about one execution shows on its page ([`super::executions`]).

use std::collections::BTreeSet;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use fx_core::identity::{Action, Resource};
use fx_core::notify::{Outcome, Rule, Target, MAX_ATTEMPTS};
use fx_core::validate::validate_name;
use fx_core::ErrorKind;
use serde::Deserialize;

use super::{HtmlTemplate, PageError};
use crate::auth::audit::AuditResource;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::routes::entries::{create_checked, remove, visible};
use crate::AppState;

/// The notification rules page.
#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    /// The highlighted navigation entry.
    active: &'static str,
    /// The rules the viewer may read, by name.
    rules: Vec<RuleView>,
    /// Whether the viewer may write some rule (the form shows).
    may_write: bool,
    /// The form as last submitted.
    form: RuleForm,
    /// The most attempts a rule may ask for.
    max_attempts: u32,
    /// What just happened.
    notice: Option<String>,
    /// Why the last change was refused.
    error: Option<String>,
    /// The form field the error is about, if one.
    error_field: Option<&'static str>,
}

impl NotificationsPage {
    /// The error, when it is about form field `field`.
    fn error_for(&self, field: &str) -> Option<&str> {
        match (&self.error, self.error_field) {
            (Some(error), Some(f)) if f == field => Some(error),
            _ => None,
        }
    }
}

/// A rule as shown.
struct RuleView {
    name: String,
    description: String,
    /// `*` or the names, comma-separated.
    handlers: String,
    /// The outcomes, comma-separated.
    outcomes: String,
    /// `webhook` or `cloudevent`.
    kind: &'static str,
    url: String,
    /// The platform secret signing the body, if any.
    secret: Option<String>,
    max_attempts: u32,
    enabled: bool,
    writable: bool,
}

impl RuleView {
    fn of(rule: Rule, writable: bool) -> RuleView {
        let kind = match rule.target {
            Target::Webhook { .. } => "webhook",
            Target::Cloudevent { .. } => "cloudevent",
        };
        RuleView {
            handlers: rule.handlers.join(", "),
            outcomes: rule
                .on
                .iter()
                .map(|o| o.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            kind,
            url: rule.target.url().to_string(),
            secret: rule.target.secret().map(str::to_string),
            max_attempts: rule.max_attempts,
            enabled: rule.enabled,
            writable,
            description: rule.description,
            name: rule.name,
        }
    }
}

/// Query parameters of the notifications page.
#[derive(Debug, Default, Deserialize)]
pub struct NotificationsParams {
    /// What just happened (`created rule oncall`, …).
    #[serde(default)]
    pub done: Option<String>,
}

/// The form of `POST /notifications`.
#[derive(Debug, Clone, Deserialize)]
pub struct RuleForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Handler names, comma-separated, or `*`.
    #[serde(default)]
    pub handlers: String,
    /// The outcome checkboxes: present (any value) when checked.
    #[serde(default)]
    pub on_failed: Option<String>,
    #[serde(default)]
    pub on_dead_lettered: Option<String>,
    #[serde(default)]
    pub on_succeeded: Option<String>,
    /// `webhook` or `cloudevent`.
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub url: String,
    /// The platform secret's name; unsigned when blank.
    #[serde(default)]
    pub secret: String,
    #[serde(default)]
    pub max_attempts: String,
}

impl Default for RuleForm {
    fn default() -> Self {
        RuleForm {
            name: String::new(),
            description: String::new(),
            handlers: "*".into(),
            on_failed: Some("on".into()),
            on_dead_lettered: None,
            on_succeeded: None,
            kind: "webhook".into(),
            url: String::new(),
            secret: String::new(),
            max_attempts: "5".into(),
        }
    }
}

impl RuleForm {
    /// Whether outcome `name` is checked (for the template).
    fn checks(&self, name: &str) -> bool {
        match name {
            "failed" => self.on_failed.is_some(),
            "dead_lettered" => self.on_dead_lettered.is_some(),
            "succeeded" => self.on_succeeded.is_some(),
            _ => false,
        }
    }

    /// The rule the form describes; a refusal names the field it is about.
    fn rule(&self) -> Result<Rule, ApiError> {
        let handlers: Vec<String> = self
            .handlers
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if handlers.is_empty() {
            return Err(ApiError::invalid(
                "name the handlers to watch, comma-separated, or * for every handler",
            )
            .on_field("handlers"));
        }
        let mut on = BTreeSet::new();
        for (checked, outcome) in [
            (&self.on_failed, Outcome::Failed),
            (&self.on_dead_lettered, Outcome::DeadLettered),
            (&self.on_succeeded, Outcome::Succeeded),
        ] {
            if checked.is_some() {
                on.insert(outcome);
            }
        }
        if on.is_empty() {
            return Err(ApiError::invalid(
                "check at least one outcome to send (failed, dead-lettered, succeeded)",
            )
            .on_field("on"));
        }
        let url = self.url.trim().to_string();
        let secret = given(&self.secret);
        let target = match self.kind.as_str() {
            "webhook" => Target::Webhook { url, secret },
            "cloudevent" => Target::Cloudevent { url, secret },
            other => {
                return Err(
                    ApiError::invalid(format!("unknown target kind {other:?}")).on_field("kind")
                )
            }
        };
        let attempts = self.max_attempts.trim();
        let max_attempts: u32 = attempts.parse().map_err(|_| {
            ApiError::invalid(format!(
                "max attempts: {attempts:?} is not a whole number from 1 to {MAX_ATTEMPTS}"
            ))
            .on_field("max_attempts")
        })?;
        Ok(Rule {
            name: self.name.trim().to_string(),
            description: self.description.trim().to_string(),
            handlers,
            on,
            target,
            max_attempts,
            enabled: true,
        })
    }
}

/// The text of an optional field: `None` when blank.
fn given(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// The form field `error` is about: the one it names, else the one its message starts with
/// (the model's validation names the rule's field).
fn field_of(error: &ApiError, name: &str) -> Option<&'static str> {
    match error.field {
        // The API's checks of the secret (it exists, the caller may grant it).
        Some("target") => return Some("secret"),
        Some(field) => return Some(field),
        None => {}
    }
    if matches!(error.kind, ErrorKind::Conflict | ErrorKind::Forbidden) {
        return Some("name");
    }
    let message = error.message.as_str();
    [
        ("notification rule name", "name"),
        ("handlers", "handlers"),
        ("on:", "on"),
        ("target.url", "url"),
        ("target.secret", "secret"),
        ("max_attempts", "max_attempts"),
    ]
    .into_iter()
    .find(|(prefix, _)| message.starts_with(prefix))
    .map(|(_, field)| field)
    .or_else(|| {
        // A message about the name names it first (`rule "x" …`).
        (!name.is_empty() && message.starts_with(&format!("rule {name:?}"))).then_some("name")
    })
}

async fn page(
    state: &AppState,
    caller: &Caller,
    notice: Option<String>,
    refill: Option<(RuleForm, ApiError)>,
) -> Result<NotificationsPage, PageError> {
    let rules = visible::<Rule>(state, caller)
        .await?
        .into_iter()
        .map(|rule| {
            let writable = caller.may(Action::NotificationWrite, &rule.name);
            RuleView::of(rule, writable)
        })
        .collect();
    let (form, error, error_field) = match refill {
        Some((form, error)) => {
            let field = field_of(&error, form.name.trim());
            (form, Some(error.message), field)
        }
        None => (RuleForm::default(), None, None),
    };
    Ok(NotificationsPage {
        active: "notifications",
        rules,
        may_write: caller
            .check(Action::NotificationWrite, Resource::Any)
            .is_ok(),
        form,
        max_attempts: MAX_ATTEMPTS,
        notice,
        error,
        error_field,
    })
}

/// `GET /notifications`.
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<NotificationsParams>, QueryRejection>,
) -> Result<HtmlTemplate<impl Template>, PageError> {
    let notice = params.ok().and_then(|Query(p)| p.done);
    Ok(HtmlTemplate(page(&state, &caller, notice, None).await?))
}

fn back(done: String) -> Response {
    let query = serde_urlencoded::to_string([("done", done)]).unwrap_or_default();
    Redirect::to(&format!("/notifications?{query}")).into_response()
}

/// `POST /notifications`: creates a rule as `POST /api/v1/notifications` does; refused, the
/// page again with the reason next to the field it is about and the form as submitted.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Form(form): Form<RuleForm>,
) -> Result<Response, PageError> {
    let name = form.name.trim().to_string();
    let created = match form.rule() {
        Ok(rule) => create_checked(&state, &caller, &rule).await,
        Err(e) => Err(e),
    };
    // The audit entry names the rule when the name is one (not arbitrary input).
    let audited = validate_name("notification rule name", &name)
        .is_ok()
        .then(|| AuditResource(format!("notification {name}")));
    let mut response = match created {
        Ok(_) => back(format!("created notification rule {name}")),
        Err(mut error) => {
            if error.kind == ErrorKind::Conflict {
                error.message = format!("a notification rule named {name:?} already exists");
            }
            let status = error.status;
            let page = page(&state, &caller, None, Some((form, error))).await?;
            (status, HtmlTemplate(page)).into_response()
        }
    };
    if let Some(audited) = audited {
        response.extensions_mut().insert(audited);
    }
    Ok(response)
}

/// `POST /notifications/{name}/delete` (the page asks for confirmation).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    match remove::<Rule>(&state, &caller, &name).await {
        Ok(()) => back(format!("deleted notification rule {name}")),
        Err(e) => PageError(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> RuleForm {
        let text = serde_urlencoded::to_string(pairs).unwrap();
        serde_urlencoded::from_str(&text).unwrap()
    }

    #[test]
    fn the_form_makes_the_rule_it_describes() {
        let rule = form(&[
            ("name", " oncall "),
            ("description", "page someone"),
            ("handlers", "orders, billing ,"),
            ("on_failed", "on"),
            ("on_dead_lettered", "on"),
            ("kind", "webhook"),
            ("url", " https://alerts.example.com/fx "),
            ("secret", "alerts"),
            ("max_attempts", "3"),
        ])
        .rule()
        .unwrap();
        rule.validate().unwrap();
        assert_eq!(
            serde_json::to_value(&rule).unwrap(),
            serde_json::json!({
                "name": "oncall",
                "description": "page someone",
                "handlers": ["orders", "billing"],
                "on": ["failed", "dead_lettered"],
                "target": {"kind": "webhook", "url": "https://alerts.example.com/fx", "secret": "alerts"},
                "max_attempts": 3,
            })
        );

        let sink = form(&[
            ("name", "audit"),
            ("handlers", "*"),
            ("on_succeeded", "on"),
            ("kind", "cloudevent"),
            ("url", "http://sink.local/"),
            ("secret", " "),
            ("max_attempts", "5"),
        ])
        .rule()
        .unwrap();
        sink.validate().unwrap();
        assert_eq!(sink.handlers, ["*"]);
        assert_eq!(
            sink.target,
            Target::Cloudevent {
                url: "http://sink.local/".into(),
                secret: None
            }
        );
        assert_eq!(
            sink.on.iter().copied().collect::<Vec<_>>(),
            [Outcome::Succeeded]
        );
    }

    #[test]
    fn the_default_form_watches_every_failure() {
        let blank = RuleForm::default();
        assert!(blank.checks("failed"));
        assert!(!blank.checks("succeeded"));
        assert_eq!(blank.handlers, "*");
    }

    #[test]
    fn refusals_name_their_field() {
        let field = |pairs: &[(&str, &str)]| {
            let form = form(pairs);
            let error = match form.rule() {
                Ok(rule) => rule
                    .validate()
                    .map(|()| panic!("{pairs:?} is valid"))
                    .unwrap_err()
                    .into(),
                Err(e) => e,
            };
            field_of(&error, &form.name)
        };
        let base = [
            ("name", "oncall"),
            ("handlers", "*"),
            ("on_failed", "on"),
            ("kind", "webhook"),
            ("url", "https://alerts.example.com/"),
            ("max_attempts", "5"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut pairs: Vec<_> = base
                .iter()
                .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
                .copied()
                .collect();
            pairs.extend_from_slice(extra);
            pairs
        };
        assert_eq!(field(&with(&[("name", "Bad Name")])), Some("name"));
        assert_eq!(field(&with(&[("name", "")])), Some("name"));
        assert_eq!(field(&with(&[("handlers", " , ")])), Some("handlers"));
        assert_eq!(
            field(&with(&[("handlers", "Not A Name")])),
            Some("handlers")
        );
        assert_eq!(
            field(
                &base
                    .iter()
                    .filter(|(k, _)| *k != "on_failed")
                    .copied()
                    .collect::<Vec<_>>()
            ),
            Some("on")
        );
        assert_eq!(field(&with(&[("kind", "email")])), Some("kind"));
        assert_eq!(field(&with(&[("url", "not a url")])), Some("url"));
        assert_eq!(
            field(&with(&[("url", "ftp://x.example.com/")])),
            Some("url")
        );
        assert_eq!(field(&with(&[("secret", "not a name!")])), Some("secret"));
        assert_eq!(
            field(&with(&[("max_attempts", "many")])),
            Some("max_attempts")
        );
        assert_eq!(field(&with(&[("max_attempts", "0")])), Some("max_attempts"));
        assert_eq!(
            field(&with(&[("max_attempts", "21")])),
            Some("max_attempts")
        );
        // The API's own checks: a missing secret, a taken name.
        let missing =
            ApiError::invalid("rule oncall: secret \"x\" does not exist").on_field("target");
        assert_eq!(field_of(&missing, "oncall"), Some("secret"));
        assert_eq!(
            field_of(
                &ApiError::conflict("rule \"oncall\" already exists"),
                "oncall"
            ),
            Some("name")
        );
    }

    mod over_the_router {
        use std::sync::Arc;

        use axum::body::Body;
        use axum::http::{header, Request, StatusCode};
        use chrono::{DateTime, Utc};
        use fx_core::event::new_json_event;
        use fx_core::execution::ExecutionId;
        use fx_core::notify::{DeliveryAttempt, DeliveryStatus, Notification, NotificationLedger};
        use fx_core::testsupport::queued_execution;

        use super::*;
        use crate::tests::{open, TestApp, TestResponse};

        async fn post(app: &TestApp, uri: &str, form: &[(&str, &str)]) -> TestResponse {
            app.call(
                Request::post(uri)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(serde_urlencoded::to_string(form).unwrap()))
                    .unwrap(),
            )
            .await
        }

        fn location(response: &TestResponse) -> String {
            response.assert_status(StatusCode::SEE_OTHER);
            response.headers[header::LOCATION]
                .to_str()
                .unwrap()
                .to_string()
        }

        #[tokio::test]
        async fn the_page_creates_lists_and_deletes_rules_with_refusals_next_to_their_field() {
            let app = TestApp::new().await;
            let empty = app.get("/notifications").await;
            empty.assert_status(StatusCode::OK);
            assert!(empty.text().contains("No notification rules yet"));
            assert!(
                empty.text().contains(
                    r#"<a href="/notifications" class="active" aria-current="page">Notifications</a>"#
                ),
                "the nav marks the page"
            );

            let oncall = [
                ("name", "oncall"),
                ("description", "page someone"),
                ("handlers", "orders, billing"),
                ("on_failed", "on"),
                ("on_dead_lettered", "on"),
                ("kind", "webhook"),
                ("url", "https://alerts.example.com/fx"),
                ("secret", "no-such-secret"),
                ("max_attempts", "3"),
            ];
            let refused = post(&app, "/notifications", &oncall).await;
            refused.assert_status(StatusCode::BAD_REQUEST);
            let html = refused.text();
            assert!(html.contains(r#"id="rule-secret-error""#), "{html}");
            assert!(html.contains("does not exist"), "{html}");
            assert!(html.contains(r#"value="page someone""#), "the form is kept");
            assert!(html.contains(r#"name="on_dead_lettered" value="on" checked"#));
            assert!(!html.contains(r#"name="on_succeeded" value="on" checked"#));

            let no_outcome: Vec<_> = oncall
                .iter()
                .filter(|(k, _)| !k.starts_with("on_"))
                .copied()
                .collect();
            let refused = post(&app, "/notifications", &no_outcome).await;
            refused.assert_status(StatusCode::BAD_REQUEST);
            assert!(refused.text().contains(r#"id="rule-on-error""#));

            let mut fine: Vec<_> = oncall.to_vec();
            fine.retain(|(k, _)| *k != "secret");
            let done = location(&post(&app, "/notifications", &fine).await);
            assert_eq!(done, "/notifications?done=created+notification+rule+oncall");
            let listed = app.get(&done).await.text();
            assert!(listed.contains("created notification rule oncall"));
            assert!(listed.contains(r#"<tr data-rule="oncall">"#), "{listed}");
            assert!(listed.contains("orders, billing"));
            assert!(listed.contains("failed, dead_lettered"));
            assert!(listed.contains("https://alerts.example.com/fx"));
            assert!(listed.contains("unsigned"));
            let stored = app.get("/api/v1/notifications/oncall").await.json();
            assert_eq!(stored["rule"]["max_attempts"], 3, "{stored}");

            let again = post(&app, "/notifications", &fine).await;
            again.assert_status(StatusCode::CONFLICT);
            assert!(again.text().contains(r#"id="rule-name-error""#));

            let done = location(&post(&app, "/notifications/oncall/delete", &[]).await);
            assert!(app
                .get(&done)
                .await
                .text()
                .contains("No notification rules yet"));
            post(&app, "/notifications/oncall/delete", &[])
                .await
                .assert_status(StatusCode::NOT_FOUND);
        }

        /// A failed execution of `handler` in `app`'s state store.
        async fn failed_execution(app: &TestApp, handler: &str) -> ExecutionId {
            let event = new_json_event(
                "order-1",
                "/shop",
                "com.example.order",
                serde_json::json!({}),
            )
            .unwrap();
            let execution = queued_execution(handler, event, Utc::now());
            app.backends
                .state
                .create_execution(&execution)
                .await
                .unwrap();
            execution.id
        }

        #[tokio::test]
        async fn an_executions_page_shows_what_was_sent_about_it_with_every_attempt() {
            let app = TestApp::new().await;
            let id = failed_execution(&app, "orders").await;
            let detail = app.get(&format!("/executions/{id}")).await;
            detail.assert_status(StatusCode::OK);
            assert!(
                !detail.text().contains("<h2>Notifications</h2>"),
                "no section without notifications"
            );

            let ledger = &app.backends.notifications;
            let at = Utc::now();
            ledger
                .enqueue_notification("oncall", &id, Outcome::Failed, at)
                .await
                .unwrap();
            ledger
                .record_notification_attempt(
                    "oncall",
                    &id,
                    &DeliveryAttempt {
                        at,
                        status_code: Some(500),
                        error: Some("the target answered 500 Internal Server Error".into()),
                        duration_ms: 12,
                    },
                    DeliveryStatus::Pending,
                    at,
                )
                .await
                .unwrap();
            ledger
                .record_notification_attempt(
                    "oncall",
                    &id,
                    &DeliveryAttempt {
                        at,
                        status_code: Some(200),
                        error: None,
                        duration_ms: 3,
                    },
                    DeliveryStatus::Delivered,
                    at,
                )
                .await
                .unwrap();
            ledger
                .enqueue_notification("audit", &id, Outcome::DeadLettered, at)
                .await
                .unwrap();
            let html = app.get(&format!("/executions/{id}")).await.text();
            assert!(html.contains("<h2>Notifications</h2>"), "{html}");
            assert!(
                html.contains(
                    r#"<tr data-rule="oncall" data-outcome="failed" data-status="delivered">"#
                ),
                "{html}"
            );
            assert!(html.contains("HTTP 500"));
            assert!(html.contains("the target answered 500 Internal Server Error"));
            assert!(html.contains("HTTP 200"));
            assert!(html.contains("12.0 ms"));
            assert!(html.contains(
                r#"<tr data-rule="audit" data-outcome="dead_lettered" data-status="pending">"#
            ));
            assert!(html.contains("none yet"));
        }

        /// A ledger that cannot be read.
        struct Down;

        #[async_trait::async_trait]
        impl NotificationLedger for Down {
            async fn enqueue_notification(
                &self,
                _: &str,
                _: &ExecutionId,
                _: Outcome,
                _: DateTime<Utc>,
            ) -> fx_core::Result<bool> {
                Err(fx_core::Error::unavailable("the ledger is down"))
            }
            async fn claim_notifications(
                &self,
                _: DateTime<Utc>,
                _: std::time::Duration,
                _: usize,
            ) -> fx_core::Result<Vec<Notification>> {
                Err(fx_core::Error::unavailable("the ledger is down"))
            }
            async fn record_notification_attempt(
                &self,
                _: &str,
                _: &ExecutionId,
                _: &DeliveryAttempt,
                _: DeliveryStatus,
                _: DateTime<Utc>,
            ) -> fx_core::Result<()> {
                Err(fx_core::Error::unavailable("the ledger is down"))
            }
            async fn notifications_of(
                &self,
                _: &ExecutionId,
            ) -> fx_core::Result<Vec<Notification>> {
                Err(fx_core::Error::unavailable("the ledger is down"))
            }
        }

        #[tokio::test]
        async fn a_ledger_that_cannot_be_read_leaves_a_note_not_a_broken_page() {
            let app = TestApp::with_backends(open(), |mut backends| {
                backends.notifications = Arc::new(Down);
                backends
            })
            .await;
            let id = failed_execution(&app, "orders").await;
            let detail = app.get(&format!("/executions/{id}")).await;
            detail.assert_status(StatusCode::OK);
            let html = detail.text();
            assert!(html.contains(r#"id="notifications-error""#), "{html}");
            assert!(html.contains("could not be read"));
            assert!(html.contains("order-1"), "the rest of the page shows");
        }
    }
}
