//! The REST API under `/api/v1`, one module per resource.

pub mod backup;
pub mod bundles;
pub mod catalogue;
pub mod entries;
pub mod events;
pub mod executions;
pub mod handlers;
pub mod hooks;
pub mod identity;
pub mod logs;
pub mod notifications;
pub mod packages;
pub mod schedules;
pub mod secrets;
pub mod workflows;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

use fx_core::chat::Bundle;
use fx_core::hook::Hook;
use fx_core::notify::Rule;
use fx_core::workflow::Workflow;

use crate::AppState;

/// What a body may hold beyond the configured payload limit (multipart framing, headers of
/// a part) before the server stops reading it: an upload a little too large is read whole and
/// refused with the reason, one far too large is cut off with 413.
pub const BODY_SLACK_BYTES: u64 = 64 * 1024;

/// The body limit for payloads of at most `max_bytes`.
pub fn body_limit(max_bytes: u64) -> DefaultBodyLimit {
    let limit = max_bytes.saturating_add(BODY_SLACK_BYTES);
    DefaultBodyLimit::max(usize::try_from(limit).unwrap_or(usize::MAX))
}

/// The routes under `/api/v1`.
pub fn api(state: &AppState) -> Router<AppState> {
    let settings = &state.settings;
    Router::new()
        .route(
            "/packages",
            get(packages::list)
                .post(packages::upload)
                .layer(body_limit(settings.max_package_bytes))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::limits::uploads,
                )),
        )
        .route("/packages/{name}", get(packages::get))
        .route("/packages/{name}/aliases/{alias}", put(packages::set_alias))
        .route(
            "/packages/{name}/versions/{version}/archive",
            get(packages::archive),
        )
        .route(
            "/packages/{name}/owner",
            get(identity::package_owner).put(identity::set_package_owner),
        )
        .route("/handlers", get(handlers::list).post(handlers::create))
        .route(
            "/handlers/{name}",
            get(handlers::get)
                .put(handlers::put)
                .delete(handlers::delete),
        )
        .route("/handlers/{name}/history", get(handlers::history))
        .route("/handlers/{name}/logs", get(logs::handler_logs))
        .route("/schedules", get(schedules::list).post(schedules::create))
        .route(
            "/schedules/{name}",
            get(schedules::get)
                .put(schedules::put)
                .delete(schedules::delete),
        )
        .route("/schedules/{name}/pause", post(schedules::pause))
        .route("/schedules/{name}/resume", post(schedules::resume))
        .route(
            "/hooks",
            get(entries::list::<Hook>).post(entries::create::<Hook>),
        )
        .route(
            "/hooks/{name}",
            get(entries::get::<Hook>)
                .put(entries::put::<Hook>)
                .delete(entries::delete::<Hook>),
        )
        .route(
            "/bundles",
            get(entries::list::<Bundle>).post(entries::create::<Bundle>),
        )
        .route(
            "/bundles/{name}",
            get(entries::get::<Bundle>)
                .put(entries::put::<Bundle>)
                .delete(entries::delete::<Bundle>),
        )
        .route(
            "/notifications",
            get(entries::list::<Rule>).post(entries::create::<Rule>),
        )
        .route(
            "/notifications/{name}",
            get(entries::get::<Rule>)
                .put(entries::put::<Rule>)
                .delete(entries::delete::<Rule>),
        )
        .route(
            "/executions/{id}/notifications",
            get(notifications::of_execution),
        )
        .route(
            "/workflows",
            get(entries::list::<Workflow>).post(entries::create::<Workflow>),
        )
        .route(
            "/workflows/{name}",
            get(entries::get::<Workflow>)
                .put(entries::put::<Workflow>)
                .delete(entries::delete::<Workflow>),
        )
        .route(
            "/workflows/{name}/runs",
            get(workflows::list_of).post(workflows::start),
        )
        .route("/runs", get(workflows::list))
        .route("/runs/{id}", get(workflows::get))
        .route("/runs/{id}/graph.svg", get(workflows::graph))
        .route("/runs/{id}/cancel", post(workflows::cancel))
        .route("/runs/{id}/redrive", post(workflows::redrive))
        .route("/catalogue", get(catalogue::list))
        .route("/catalogue/entry", get(catalogue::entry))
        .route("/executions", get(executions::list))
        .route("/executions/{id}", get(executions::get))
        .route("/executions/{id}/redrive", post(executions::redrive))
        .route("/executions/{id}/rerun", post(executions::rerun))
        .route("/events", events::ingress(settings))
        .route("/login", post(identity::login))
        .route("/me", get(identity::me))
        .route(
            "/tokens",
            get(identity::own_tokens).post(identity::create_own_token),
        )
        .route("/tokens/{id}", delete(identity::revoke_token))
        .route(
            "/accounts",
            get(identity::accounts).post(identity::create_account),
        )
        .route(
            "/accounts/{name}",
            get(identity::account)
                .put(identity::update_account)
                .delete(identity::delete_account),
        )
        .route(
            "/accounts/{name}/tokens",
            post(identity::create_account_token),
        )
        .route("/rules", get(identity::rules).post(identity::add_rule))
        .route("/rules/{id}", delete(identity::delete_rule))
        .route("/audit", get(identity::audit))
        .route("/secrets", get(secrets::list))
        .route("/secrets/rekey", post(secrets::rekey))
        .route("/secrets/{name}", put(secrets::set).delete(secrets::delete))
        .route("/pools/{pool}/secrets", get(secrets::deliver))
        .route("/backup", post(backup::backup))
        .route(
            "/restore",
            post(backup::restore).layer(DefaultBodyLimit::disable()),
        )
}
