//! The OpenAPI document of the REST API, generated with `utoipa` and served at
//! `/api/openapi.json`, with an interactive viewer (RapiDoc 9.3.8, MIT, compiled into the
//! binary from `static/vendor/`) at `/api/docs`.
//!
//! The operations are declared here on stubs, next to one another, rather than on the route
//! functions; the test `openapi_document_matches_the_routes` calls every documented operation
//! on the real router, so a route renamed or removed without this file fails it, and it checks
//! that every route of [`crate::routes::api`] is documented.

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::Json;
use utoipa::OpenApi;

/// RapiDoc, gzipped (served with `Content-Encoding: gzip`).
const RAPIDOC_GZ: &[u8] = include_bytes!("../static/vendor/rapidoc-9.3.8.min.js.gz");

/// Every operation the REST API serves: method and path, as in the document.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("get", "/api/v1/packages"),
    ("post", "/api/v1/packages"),
    ("get", "/api/v1/packages/{name}"),
    ("put", "/api/v1/packages/{name}/aliases/{alias}"),
    ("get", "/api/v1/packages/{name}/versions/{version}/archive"),
    ("get", "/api/v1/packages/{name}/owner"),
    ("put", "/api/v1/packages/{name}/owner"),
    ("get", "/api/v1/handlers"),
    ("post", "/api/v1/handlers"),
    ("get", "/api/v1/handlers/{name}"),
    ("put", "/api/v1/handlers/{name}"),
    ("delete", "/api/v1/handlers/{name}"),
    ("get", "/api/v1/handlers/{name}/history"),
    ("get", "/api/v1/handlers/{name}/logs"),
    ("get", "/api/v1/schedules"),
    ("post", "/api/v1/schedules"),
    ("get", "/api/v1/schedules/{name}"),
    ("put", "/api/v1/schedules/{name}"),
    ("delete", "/api/v1/schedules/{name}"),
    ("post", "/api/v1/schedules/{name}/pause"),
    ("post", "/api/v1/schedules/{name}/resume"),
    ("get", "/api/v1/hooks"),
    ("post", "/api/v1/hooks"),
    ("get", "/api/v1/hooks/{name}"),
    ("put", "/api/v1/hooks/{name}"),
    ("delete", "/api/v1/hooks/{name}"),
    ("post", "/hooks/{name}"),
    ("get", "/api/v1/bundles"),
    ("post", "/api/v1/bundles"),
    ("get", "/api/v1/bundles/{name}"),
    ("put", "/api/v1/bundles/{name}"),
    ("delete", "/api/v1/bundles/{name}"),
    ("post", "/chat/slack/{bundle}"),
    ("get", "/api/v1/notifications"),
    ("post", "/api/v1/notifications"),
    ("get", "/api/v1/notifications/{name}"),
    ("put", "/api/v1/notifications/{name}"),
    ("delete", "/api/v1/notifications/{name}"),
    ("get", "/api/v1/executions/{id}/notifications"),
    ("get", "/api/v1/workflows"),
    ("post", "/api/v1/workflows"),
    ("get", "/api/v1/workflows/{name}"),
    ("put", "/api/v1/workflows/{name}"),
    ("delete", "/api/v1/workflows/{name}"),
    ("get", "/api/v1/workflows/{name}/runs"),
    ("post", "/api/v1/workflows/{name}/runs"),
    ("get", "/api/v1/runs"),
    ("get", "/api/v1/runs/{id}"),
    ("get", "/api/v1/runs/{id}/graph.svg"),
    ("post", "/api/v1/runs/{id}/cancel"),
    ("post", "/api/v1/runs/{id}/redrive"),
    ("get", "/api/v1/catalogue"),
    ("get", "/api/v1/catalogue/entry"),
    ("get", "/api/v1/executions"),
    ("get", "/api/v1/executions/{id}"),
    ("post", "/api/v1/executions/{id}/redrive"),
    ("post", "/api/v1/executions/{id}/rerun"),
    ("post", "/api/v1/events"),
    ("post", "/events"),
    ("post", "/api/v1/login"),
    ("get", "/api/v1/me"),
    ("get", "/api/v1/tokens"),
    ("post", "/api/v1/tokens"),
    ("delete", "/api/v1/tokens/{id}"),
    ("get", "/api/v1/accounts"),
    ("post", "/api/v1/accounts"),
    ("get", "/api/v1/accounts/{name}"),
    ("put", "/api/v1/accounts/{name}"),
    ("delete", "/api/v1/accounts/{name}"),
    ("post", "/api/v1/accounts/{name}/tokens"),
    ("get", "/api/v1/rules"),
    ("post", "/api/v1/rules"),
    ("delete", "/api/v1/rules/{id}"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/secrets"),
    ("put", "/api/v1/secrets/{name}"),
    ("delete", "/api/v1/secrets/{name}"),
    ("post", "/api/v1/secrets/rekey"),
    ("get", "/api/v1/pools/{pool}/secrets"),
    ("post", "/api/v1/backup"),
    ("post", "/api/v1/restore"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

/// The REST API's document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "FerrisFX management API",
        description = "Packages, handlers, executions and CloudEvents ingress. Errors answer `{\"error\": {\"kind\", \"message\"}}`; see docs/api.md."
    ),
    paths(
        list_packages, upload_package, get_package, set_alias, package_archive, get_package_owner,
        set_package_owner,
        list_handlers, create_handler, get_handler, put_handler, delete_handler, handler_history,
        handler_logs,
        list_schedules, create_schedule, get_schedule, put_schedule, delete_schedule,
        pause_schedule, resume_schedule,
        list_hooks, create_hook, get_hook, put_hook, delete_hook, deliver_hook,
        list_bundles, create_bundle, get_bundle, put_bundle, delete_bundle, slack_request,
        list_rules_notify, create_rule_notify, get_rule_notify, put_rule_notify,
        delete_rule_notify, execution_notifications,
        list_workflows, create_workflow, get_workflow, put_workflow, delete_workflow,
        list_workflow_runs, start_run, list_runs, get_run, run_graph, cancel_run, redrive_run,
        list_catalogue, catalogue_entry,
        list_executions, get_execution, redrive_execution, rerun_execution,
        post_event, post_event_root,
        login, me, own_tokens, create_own_token, revoke_token, list_accounts, create_account,
        get_account, put_account, delete_account, create_account_token, list_rules, add_rule,
        delete_rule, audit_log,
        list_secrets, set_secret, delete_secret, rekey_secrets, deliver_secrets,
        take_backup, restore_backup,
        healthz, readyz, metrics
    ),
    tags(
        (name = "packages", description = "function packages: upload, versions, aliases"),
        (name = "handlers", description = "which events run which package"),
        (name = "schedules", description = "events the platform emits on a cron expression, an interval or once (docs/schedules.md)"),
        (name = "hooks", description = "webhooks: signed deliveries from GitHub, Stripe, GitLab, Slack or any HMAC sender, each turned into a CloudEvent (docs/webhooks.md)"),
        (name = "chat", description = "chat commands from Slack: command bundles, slash commands and app mentions (docs/chat.md)"),
        (name = "notifications", description = "rules that tell a URL when executions succeed, fail or are dead-lettered, and the notifications sent (docs/notifications.md)"),
        (name = "workflows", description = "graphs of steps that run concurrently, survive crashes and are drawn live; their runs (docs/workflows.md)"),
        (name = "catalogue", description = "the event catalogue: every (source, type) seen, with counts per hour, a sample and the inferred schema of its data (docs/catalogue.md)"),
        (name = "executions", description = "one per event and handler, with logs"),
        (name = "events", description = "CloudEvents over HTTP, published to fx.events"),
        (name = "identity", description = "who may do what: accounts, api tokens, rules, the audit log (docs/security.md)"),
        (name = "secrets", description = "secrets managed by the platform: written, never read back (docs/security.md)"),
        (name = "backup", description = "backup and restore of everything the platform holds (docs/backup.md)"),
        (name = "health", description = "liveness and readiness")
    )
)]
pub struct ApiDoc;

/// `GET /api/openapi.json`.
pub async fn document() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// `GET /api/docs`: the interactive viewer.
pub async fn viewer() -> Html<&'static str> {
    Html(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>FerrisFX API</title>
<link rel="icon" href="data:,">
<script type="module" src="/api/docs/rapidoc.js"></script></head>
<body><rapi-doc spec-url="/api/openapi.json" render-style="read" show-header="false"
  regular-font="system-ui, sans-serif" mono-font="ui-monospace, monospace"
  allow-try="true" theme="light"><a slot="nav-logo" href="/">← FerrisFX</a></rapi-doc></body></html>"#,
    )
}

/// `GET /api/docs/rapidoc.js`.
pub async fn rapidoc() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CONTENT_ENCODING, "gzip"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        RAPIDOC_GZ,
    )
}

// The operations. Bodies and answers are JSON as described in docs/api.md; `Object` keeps
// this file free of schema derives on the core types.

/// Every package with its versions (newest first) and aliases.
#[utoipa::path(get, path = "/api/v1/packages", tag = "packages",
    responses((status = 200, description = "`{\"packages\": [...]}`", body = Object)))]
pub fn list_packages() {}

/// Uploads a package archive: the raw bytes, or a multipart form with a `file` field.
#[utoipa::path(post, path = "/api/v1/packages", tag = "packages",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the .fxpkg archive (gzipped tar with fx.toml and the component)"),
    params(("x-fx-user" = Option<String>, Header, description = "who uploads")),
    responses(
        (status = 201, description = "the stored version", body = Object),
        (status = 400, description = "not a valid package, with the reason", body = Object),
        (status = 409, description = "this name and version exist (versions are immutable)", body = Object),
        (status = 413, description = "larger than the configured limit", body = Object)))]
pub fn upload_package() {}

/// One package with its versions and aliases.
#[utoipa::path(get, path = "/api/v1/packages/{name}", tag = "packages",
    params(("name" = String, Path, description = "package name")),
    responses((status = 200, description = "the package", body = Object),
        (status = 404, description = "no such package", body = Object)))]
pub fn get_package() {}

/// Points an alias (e.g. `latest`) at a version: rollback and promotion.
#[utoipa::path(put, path = "/api/v1/packages/{name}/aliases/{alias}", tag = "packages",
    params(("name" = String, Path, description = "package name"), ("alias" = String, Path, description = "alias name")),
    request_body(content = Object, description = "`{\"version\": \"1.0.0\"}`"),
    responses((status = 200, description = "the alias", body = Object),
        (status = 404, description = "no such version", body = Object)))]
pub fn set_alias() {}

/// The `.fxpkg` archive of one version, byte for byte as uploaded (what `ferrisfx replay`
/// runs); its SHA-256 is in the `x-fx-digest` header and the `ETag`.
#[utoipa::path(get, path = "/api/v1/packages/{name}/versions/{version}/archive", tag = "packages",
    params(("name" = String, Path, description = "package name"),
        ("version" = String, Path, description = "an exact version, or an alias resolved now")),
    responses((status = 200, description = "the archive", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "no such version, or its archive is no longer stored", body = Object)))]
pub fn package_archive() {}

/// Who owns a package: its first uploader, or whom an admin gave it to.
#[utoipa::path(get, path = "/api/v1/packages/{name}/owner", tag = "packages",
    params(("name" = String, Path, description = "package name")),
    responses((status = 200, description = "`{\"owner\": \"user:alice\"}` (null when nobody owns it yet)", body = Object)))]
pub fn get_package_owner() {}

/// Gives a package to a user, a group or a service account (`user:admin`).
#[utoipa::path(put, path = "/api/v1/packages/{name}/owner", tag = "packages",
    params(("name" = String, Path, description = "package name")),
    request_body(content = Object, description = "`{\"owner\": \"group:payments\"}`"),
    responses((status = 200, description = "the new owner", body = Object),
        (status = 400, description = "not a subject", body = Object)))]
pub fn set_package_owner() {}

/// Every handler with its revision, and the registry entries that are not valid handlers.
#[utoipa::path(get, path = "/api/v1/handlers", tag = "handlers",
    responses((status = 200, description = "the handler table", body = Object)))]
pub fn list_handlers() {}

/// Creates a handler.
#[utoipa::path(post, path = "/api/v1/handlers", tag = "handlers",
    request_body(content = Object, description = "the handler (name, filter, package, pool, limits, retry, enabled)"),
    responses((status = 201, description = "created, with its revision (also the ETag)", body = Object),
        (status = 400, description = "invalid, with the reason", body = Object),
        (status = 409, description = "the name exists", body = Object)))]
pub fn create_handler() {}

/// One handler; its revision is also the `ETag`.
#[utoipa::path(get, path = "/api/v1/handlers/{name}", tag = "handlers",
    params(("name" = String, Path, description = "handler name")),
    responses((status = 200, description = "the handler and its revision", body = Object),
        (status = 404, description = "no such handler", body = Object)))]
pub fn get_handler() {}

/// Creates or replaces a handler; with `If-Match: <revision>` only at that revision.
#[utoipa::path(put, path = "/api/v1/handlers/{name}", tag = "handlers",
    params(("name" = String, Path, description = "handler name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    request_body(content = Object, description = "the handler"),
    responses((status = 200, description = "written, with its revision", body = Object),
        (status = 400, description = "invalid, with the reason", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn put_handler() {}

/// Deletes a handler; with `If-Match: <revision>` only at that revision.
#[utoipa::path(delete, path = "/api/v1/handlers/{name}", tag = "handlers",
    params(("name" = String, Path, description = "handler name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    responses((status = 204, description = "deleted"),
        (status = 404, description = "no such handler", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn delete_handler() {}

/// Every schedule the caller may read, with its revision, next ticks and last tick fired.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules",
    responses((status = 200, description = "{revision, schedules: [{schedule, revision, next, last_tick}], invalid}", body = Object)))]
pub fn list_schedules() {}

/// Creates a schedule.
#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules",
    request_body(content = Object, description = "the schedule: name, one of cron / every_seconds / at, timezone, data, missed (skip, once, catch_up), catch_up_limit, paused"),
    responses((status = 201, description = "created, with its revision (also the ETag) and next ticks", body = Object),
        (status = 400, description = "invalid, with the reason", body = Object),
        (status = 409, description = "a schedule of that name exists", body = Object)))]
pub fn create_schedule() {}

/// One schedule, with its next ticks and last tick fired.
#[utoipa::path(get, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "schedule name")),
    responses((status = 200, description = "the schedule and its revision", body = Object),
        (status = 404, description = "no such schedule", body = Object)))]
pub fn get_schedule() {}

/// Creates or replaces a schedule; with `If-Match: <revision>` only at that revision.
#[utoipa::path(put, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "schedule name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    request_body(content = Object, description = "the schedule"),
    responses((status = 200, description = "written, with its revision", body = Object),
        (status = 400, description = "invalid, with the reason", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn put_schedule() {}

/// Deletes a schedule and forgets its ticks.
#[utoipa::path(delete, path = "/api/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "schedule name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    responses((status = 204, description = "deleted"),
        (status = 404, description = "no such schedule", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn delete_schedule() {}

/// Pauses a schedule: it fires nothing until resumed.
#[utoipa::path(post, path = "/api/v1/schedules/{name}/pause", tag = "schedules",
    params(("name" = String, Path, description = "schedule name")),
    responses((status = 200, description = "the schedule, paused", body = Object),
        (status = 404, description = "no such schedule", body = Object)))]
pub fn pause_schedule() {}

/// Resumes a schedule from its next tick; ticks missed while paused are not caught up.
#[utoipa::path(post, path = "/api/v1/schedules/{name}/resume", tag = "schedules",
    params(("name" = String, Path, description = "schedule name")),
    responses((status = 200, description = "the schedule, resumed", body = Object),
        (status = 404, description = "no such schedule", body = Object)))]
pub fn resume_schedule() {}

/// Every workflow the caller may read, with its revision and its layers (the order its steps
/// start in).
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows",
    responses((status = 200, description = "{revision, workflows: [{workflow, revision, layers}], invalid}", body = Object)))]
pub fn list_workflows() {}

/// Creates a workflow. Every package and handler its steps name must exist.
#[utoipa::path(post, path = "/api/v1/workflows", tag = "workflows",
    request_body(content = Object, description = "the workflow: name, description, on_failure (stop | continue), trigger {event: filter, schedule}, steps [{name, package {name, version} | handler, pool, after [{step, on: success | failure | always}], map: JSON pointer, limits, retry}]"),
    responses((status = 201, description = "created, with its revision", body = Object),
        (status = 400, description = "invalid, with the reason: a cycle (its steps named), an unknown package, a missing dependency, over 1,000 steps", body = Object),
        (status = 409, description = "a workflow of that name exists", body = Object)))]
pub fn create_workflow() {}

/// One workflow.
#[utoipa::path(get, path = "/api/v1/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "workflow name")),
    responses((status = 200, description = "the workflow and its revision", body = Object),
        (status = 404, description = "no such workflow", body = Object)))]
pub fn get_workflow() {}

/// Creates or replaces a workflow; with `If-Match: <revision>` only at that revision. Runs
/// already started keep the definition they started with.
#[utoipa::path(put, path = "/api/v1/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "workflow name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    request_body(content = Object, description = "the workflow"),
    responses((status = 200, description = "written, with its revision", body = Object),
        (status = 400, description = "invalid, with the reason", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn put_workflow() {}

/// Deletes a workflow; its runs stay (and finish).
#[utoipa::path(delete, path = "/api/v1/workflows/{name}", tag = "workflows",
    params(("name" = String, Path, description = "workflow name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    responses((status = 204, description = "deleted"),
        (status = 404, description = "no such workflow", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn delete_workflow() {}

/// The runs of one workflow, newest first.
#[utoipa::path(get, path = "/api/v1/workflows/{name}/runs", tag = "workflows",
    params(("name" = String, Path, description = "workflow name"),
        ("status" = Option<String>, Query, description = "running, succeeded, failed or cancelled"),
        ("since" = Option<String>, Query, description = "started at or after (RFC 3339)"),
        ("until" = Option<String>, Query, description = "started before (RFC 3339)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<u32>, Query, description = "page size, 1 to 500")),
    responses((status = 200, description = "{runs: [{id, workflow, status, created_at, finished_at, steps: {status: count}}], next_cursor}", body = Object)))]
pub fn list_workflow_runs() {}

/// Starts a run with an input.
#[utoipa::path(post, path = "/api/v1/workflows/{name}/runs", tag = "workflows",
    params(("name" = String, Path, description = "workflow name")),
    request_body(content = Object, description = "{input: any JSON (the steps' `input`), key: an idempotency key}"),
    responses((status = 201, description = "started: {run, created, url}", body = Object),
        (status = 200, description = "a run with this key exists: {run, created: false, url}", body = Object),
        (status = 404, description = "no such workflow", body = Object)))]
pub fn start_run() {}

/// The event catalogue: every (source, type) the gateways dispatched, by source then type
/// (only the types the caller may read with `catalogue:read`).
#[utoipa::path(get, path = "/api/v1/catalogue", tag = "catalogue",
    params(("source" = Option<String>, Query, description = "only sources containing this (ASCII case ignored)"),
        ("type" = Option<String>, Query, description = "only types containing this (ASCII case ignored)"),
        ("limit" = Option<u32>, Query, description = "the most entries, 1 to 10000 (1000 by default)")),
    responses((status = 200, description = "{entries: [{source, type, first_seen, last_seen, count, last_24h, last_change}], limit}", body = Object)))]
pub fn list_catalogue() {}

/// One catalogue entry: hourly counts of the last 7 days, a sample event, the inferred JSON
/// Schema of `data` (each node with `x-first-seen`), its fields, its changes (new fields and
/// type changes with when they first appeared) and the handlers that match.
#[utoipa::path(get, path = "/api/v1/catalogue/entry", tag = "catalogue",
    params(("source" = String, Query, description = "the events' source"),
        ("type" = String, Query, description = "the events' type")),
    responses((status = 200, description = "{source, type, first_seen, last_seen, count, hours, sample, sample_truncated, schema, fields, changes, truncated, handlers}", body = Object),
        (status = 404, description = "no such entry", body = Object)))]
pub fn catalogue_entry() {}

/// Runs of every workflow (needs `workflow:read` on `*`; filter by `workflow` otherwise).
#[utoipa::path(get, path = "/api/v1/runs", tag = "workflows",
    params(("workflow" = Option<String>, Query, description = "only this workflow's"),
        ("status" = Option<String>, Query, description = "running, succeeded, failed or cancelled"),
        ("since" = Option<String>, Query, description = "started at or after (RFC 3339)"),
        ("until" = Option<String>, Query, description = "started before (RFC 3339)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<u32>, Query, description = "page size, 1 to 500")),
    responses((status = 200, description = "{runs, next_cursor}", body = Object)))]
pub fn list_runs() {}

/// One run: its definition, trigger, steps (status, executions, times, reason) and the
/// outputs of its succeeded steps.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "workflows",
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "{run, outputs}", body = Object),
        (status = 404, description = "no such run", body = Object)))]
pub fn get_run() {}

/// The run's graph as SVG, each step coloured by its status.
#[utoipa::path(get, path = "/api/v1/runs/{id}/graph.svg", tag = "workflows",
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "image/svg+xml", body = String),
        (status = 404, description = "no such run", body = Object)))]
pub fn run_graph() {}

/// Cancels a running run: no step starts any more; running steps finish and are recorded.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "workflows",
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "{run}", body = Object),
        (status = 409, description = "the run is not running", body = Object)))]
pub fn cancel_run() {}

/// Re-drives a failed or cancelled run from the steps that did not succeed (new executions);
/// succeeded steps keep their results.
#[utoipa::path(post, path = "/api/v1/runs/{id}/redrive", tag = "workflows",
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "{run}", body = Object),
        (status = 409, description = "the run is running, or succeeded", body = Object)))]
pub fn redrive_run() {}

/// Every webhook the caller may read, with its revision and the path senders post to.
#[utoipa::path(get, path = "/api/v1/hooks", tag = "hooks",
    responses((status = 200, description = "{revision, hooks: [{hook, revision, path}], invalid}", body = Object)))]
pub fn list_hooks() {}

/// Creates a webhook. Its signing secret must exist (a platform secret).
#[utoipa::path(post, path = "/api/v1/hooks", tag = "hooks",
    request_body(content = Object, description = "the hook: name, verify {kind: github | stripe | slack | gitlab | hmac | none, secret, ...}, transform {kind: github | stripe | gitlab | json | raw, ...}, keep_headers, rate {per_second, burst}, max_body_bytes, enabled"),
    responses((status = 201, description = "created, with its revision", body = Object),
        (status = 400, description = "invalid, with the reason (or its secret does not exist)", body = Object),
        (status = 409, description = "a hook of that name exists", body = Object)))]
pub fn create_hook() {}

/// One webhook.
#[utoipa::path(get, path = "/api/v1/hooks/{name}", tag = "hooks",
    params(("name" = String, Path, description = "hook name")),
    responses((status = 200, description = "the hook and its revision", body = Object),
        (status = 404, description = "no such hook", body = Object)))]
pub fn get_hook() {}

/// Creates or replaces a webhook; with `If-Match: <revision>` only at that revision.
#[utoipa::path(put, path = "/api/v1/hooks/{name}", tag = "hooks",
    params(("name" = String, Path, description = "hook name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    request_body(content = Object, description = "the hook"),
    responses((status = 200, description = "written, with its revision", body = Object),
        (status = 400, description = "invalid, with the reason", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn put_hook() {}

/// Deletes a webhook.
#[utoipa::path(delete, path = "/api/v1/hooks/{name}", tag = "hooks",
    params(("name" = String, Path, description = "hook name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    responses((status = 204, description = "deleted"),
        (status = 404, description = "no such hook", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn delete_hook() {}

/// A delivery to a webhook, from its sender: checked against the hook's signature scheme,
/// turned into a CloudEvent (the vendor's delivery id is its id) and published. No bearer
/// token: the signature is the credential.
#[utoipa::path(post, path = "/hooks/{name}", tag = "hooks",
    params(("name" = String, Path, description = "hook name")),
    request_body(content = Object, description = "the sender's payload, as it sends it"),
    responses((status = 202, description = "accepted: {id, source, type}", body = Object),
        (status = 400, description = "the delivery makes no event (the reason)", body = Object),
        (status = 401, description = "the signature is missing, stale or wrong", body = Object),
        (status = 404, description = "no such hook, or disabled", body = Object),
        (status = 413, description = "the body is over the hook's limit", body = Object),
        (status = 429, description = "over the hook's rate; Retry-After says when to retry", body = Object)))]
pub fn deliver_hook() {}

/// Every command bundle the caller may read, with its revision and the path its Slack app
/// posts to.
#[utoipa::path(get, path = "/api/v1/bundles", tag = "chat",
    responses((status = 200, description = "{revision, bundles: [{bundle, revision, path}], invalid}", body = Object)))]
pub fn list_bundles() {}

/// Creates a command bundle. Its secrets must exist (platform secrets).
#[utoipa::path(post, path = "/api/v1/bundles", tag = "chat",
    request_body(content = Object, description = "the bundle: name, description, slack {signing_secret, bot_token, api_url, response_url_prefix, tolerance_seconds}, allow [Slack user ids or *], commands [{name, handler, syntax, help, allow}]"),
    responses((status = 201, description = "created, with its revision", body = Object),
        (status = 400, description = "invalid, with the reason (or a secret does not exist)", body = Object),
        (status = 409, description = "a bundle of that name exists", body = Object)))]
pub fn create_bundle() {}

/// One command bundle.
#[utoipa::path(get, path = "/api/v1/bundles/{name}", tag = "chat",
    params(("name" = String, Path, description = "bundle name")),
    responses((status = 200, description = "the bundle and its revision", body = Object),
        (status = 404, description = "no such bundle", body = Object)))]
pub fn get_bundle() {}

/// Creates or replaces a command bundle; with `If-Match: <revision>` only at that revision.
#[utoipa::path(put, path = "/api/v1/bundles/{name}", tag = "chat",
    params(("name" = String, Path, description = "bundle name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    request_body(content = Object, description = "the bundle"),
    responses((status = 200, description = "written, with its revision", body = Object),
        (status = 400, description = "invalid, with the reason", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn put_bundle() {}

/// Deletes a command bundle.
#[utoipa::path(delete, path = "/api/v1/bundles/{name}", tag = "chat",
    params(("name" = String, Path, description = "bundle name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    responses((status = 204, description = "deleted"),
        (status = 404, description = "no such bundle", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn delete_bundle() {}

/// A request of the bundle's Slack app: a slash command (form) or an Events API callback
/// (JSON: `url_verification`, `app_mention`), signed with the app's signing secret. Answered
/// at once; the function's output is posted to the `response_url` (or the mention's thread).
#[utoipa::path(post, path = "/chat/slack/{bundle}", tag = "chat",
    params(("bundle" = String, Path, description = "bundle name")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "Slack's slash command form, or an Events API JSON body"),
    responses((status = 200, description = "an ephemeral message for the user (running, help, usage, refusal), or the URL check's challenge", body = Object),
        (status = 401, description = "the signature is missing, stale or wrong", body = Object),
        (status = 404, description = "no such bundle", body = Object),
        (status = 413, description = "over 64 KiB", body = Object)))]
pub fn slack_request() {}

/// Every notification rule the caller may read, with its revision.
#[utoipa::path(get, path = "/api/v1/notifications", tag = "notifications",
    responses((status = 200, description = "{revision, notifications: [{rule, revision}], invalid}", body = Object)))]
pub fn list_rules_notify() {}

/// Creates a notification rule. Its secret, if any, must exist.
#[utoipa::path(post, path = "/api/v1/notifications", tag = "notifications",
    request_body(content = Object, description = "the rule: name, description, handlers (names or [\"*\"]), on (succeeded, failed, dead_lettered), target {kind: webhook | cloudevent, url, secret}, max_attempts, enabled"),
    responses((status = 201, description = "created, with its revision", body = Object),
        (status = 400, description = "invalid, with the reason (or its secret does not exist)", body = Object),
        (status = 409, description = "a rule of that name exists", body = Object)))]
pub fn create_rule_notify() {}

/// One notification rule.
#[utoipa::path(get, path = "/api/v1/notifications/{name}", tag = "notifications",
    params(("name" = String, Path, description = "rule name")),
    responses((status = 200, description = "the rule and its revision", body = Object),
        (status = 404, description = "no such rule", body = Object)))]
pub fn get_rule_notify() {}

/// Creates or replaces a notification rule; with `If-Match: <revision>` only at that revision.
#[utoipa::path(put, path = "/api/v1/notifications/{name}", tag = "notifications",
    params(("name" = String, Path, description = "rule name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    request_body(content = Object, description = "the rule"),
    responses((status = 200, description = "written, with its revision", body = Object),
        (status = 400, description = "invalid, with the reason", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn put_rule_notify() {}

/// Deletes a notification rule; its pending notifications are given up.
#[utoipa::path(delete, path = "/api/v1/notifications/{name}", tag = "notifications",
    params(("name" = String, Path, description = "rule name"),
        ("If-Match" = Option<String>, Header, description = "the revision expected")),
    responses((status = 204, description = "deleted"),
        (status = 404, description = "no such rule", body = Object),
        (status = 409, description = "changed since the revision in If-Match", body = Object)))]
pub fn delete_rule_notify() {}

/// The notifications sent about an execution, each with its attempts (time, status code or
/// error, duration).
#[utoipa::path(get, path = "/api/v1/executions/{id}/notifications", tag = "notifications",
    params(("id" = String, Path, description = "execution id")),
    responses((status = 200, description = "{notifications: [{rule, execution_id, outcome, status, attempts, next_at, created_at}]}", body = Object),
        (status = 404, description = "no such execution", body = Object)))]
pub fn execution_notifications() {}

/// The recorded changes of a handler, newest first.
#[utoipa::path(get, path = "/api/v1/handlers/{name}/history", tag = "handlers",
    params(("name" = String, Path, description = "handler name")),
    responses((status = 200, description = "the changes (empty for a name never seen)", body = Object)))]
pub fn handler_history() {}

/// A handler's function log lines in order (time, execution, attempt, seq), paged by cursor;
/// to follow it, ask again with `after` the last line's cursor. Needs `execution:read` on the
/// handler.
#[utoipa::path(get, path = "/api/v1/handlers/{name}/logs", tag = "handlers",
    params(("name" = String, Path, description = "handler name"),
        ("since" = Option<String>, Query, description = "written at or after: RFC 3339, or YYYY-MM-DDTHH:MM in UTC"),
        ("after" = Option<String>, Query, description = "after this cursor: `next` of the previous page, or `<microseconds since the epoch>-<execution_id>-<attempt>-<seq>` of a line"),
        ("limit" = Option<usize>, Query, description = "page size, 1 to 1000 (100 by default)")),
    responses((status = 200, description = "`{\"lines\": [{execution_id, handler, attempt, seq, at, level, message, fields}], \"next\"}`: `next` is the cursor of the last line when the page is full, else null", body = Object),
        (status = 400, description = "a bad time, cursor or limit", body = Object),
        (status = 403, description = "the caller may not read the handler's executions", body = Object),
        (status = 404, description = "no such handler", body = Object)))]
pub fn handler_logs() {}

/// Executions, newest first, filtered and paged by cursor.
#[utoipa::path(get, path = "/api/v1/executions", tag = "executions",
    params(("handler" = Option<String>, Query, description = "only this handler's"),
        ("status" = Option<String>, Query, description = "queued, running, retrying, succeeded or failed"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<u32>, Query, description = "page size, 1 to 500"),
        ("since" = Option<String>, Query, description = "created at or after: RFC 3339, or YYYY-MM-DDTHH:MM in UTC"),
        ("until" = Option<String>, Query, description = "created before (as since)"),
        ("text" = Option<String>, Query, description = "event id or source contains this (ASCII case ignored)")),
    responses((status = 200, description = "`{\"items\": [...], \"next_cursor\"}`", body = Object),
        (status = 400, description = "an unknown status, a bad time or a bad cursor", body = Object)))]
pub fn list_executions() {}

/// One execution with its event, output, failure and log lines.
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "32 hex digits")),
    responses((status = 200, description = "`{\"execution\", \"logs\"}`", body = Object),
        (status = 400, description = "not an execution id", body = Object),
        (status = 404, description = "no such execution", body = Object)))]
pub fn get_execution() {}

/// Runs a failed execution again (typically one in the dead-letter topic) with the handler as
/// it is now and a fresh retry budget.
#[utoipa::path(post, path = "/api/v1/executions/{id}/redrive", tag = "executions",
    params(("id" = String, Path, description = "32 hex digits")),
    responses((status = 202, description = "`{\"execution_id\", \"attempt\", \"handler\", \"package\"}`: the invocation is published", body = Object),
        (status = 400, description = "not an execution id", body = Object),
        (status = 404, description = "no such execution", body = Object),
        (status = 409, description = "not failed, or its handler or package is gone", body = Object)))]
pub fn redrive_execution() {}

/// Runs a finished execution (succeeded or failed) again with the handler as it is now: the
/// handler's current package, or, pinned (`{"pin": true}` or `?pin=true`), exactly the
/// package digest the execution recorded.
#[utoipa::path(post, path = "/api/v1/executions/{id}/rerun", tag = "executions",
    params(("id" = String, Path, description = "32 hex digits"),
        ("pin" = Option<bool>, Query, description = "run the package digest the execution recorded, not the handler's current package (default false)")),
    request_body(content = Object, description = "optional: `{\"pin\": true}`, as the query parameter"),
    responses((status = 202, description = "`{\"execution_id\", \"attempt\", \"handler\", \"package\", \"pinned\"}`: the invocation is published", body = Object),
        (status = 400, description = "not an execution id, or a body or query that does not parse", body = Object),
        (status = 404, description = "no such execution", body = Object),
        (status = 409, description = "still queued, running or retrying, or its handler or package is gone (pinned: the recorded digest is no longer stored)", body = Object)))]
pub fn rerun_execution() {}

/// Accepts one CloudEvent (binary mode with `ce-` headers, or structured mode) and publishes it.
#[utoipa::path(post, path = "/api/v1/events", tag = "events",
    request_body(content = Object, content_type = "application/cloudevents+json", description = "a structured-mode CloudEvent, or the data with ce- headers"),
    responses((status = 202, description = "`{\"id\", \"source\", \"type\"}`", body = Object),
        (status = 400, description = "not a valid CloudEvent, with the reason", body = Object)))]
pub fn post_event() {}

/// The same as `POST /api/v1/events`, at the root for producers.
#[utoipa::path(post, path = "/events", tag = "events",
    request_body(content = Object, content_type = "application/cloudevents+json", description = "a CloudEvent"),
    responses((status = 202, description = "accepted", body = Object),
        (status = 400, description = "not a valid CloudEvent", body = Object)))]
pub fn post_event_root() {}

/// Signs in: a user's name and password for an api token (named `login`), answered once.
#[utoipa::path(post, path = "/api/v1/login", tag = "identity",
    request_body(content = Object, description = "`{\"name\", \"password\", \"expires_in_hours\" (1 to 720, default 12)}`"),
    responses((status = 201, description = "`{\"token\": \"fxt_...\", \"record\"}`", body = Object),
        (status = 401, description = "wrong name or password (the same answer for every failure)", body = Object)))]
pub fn login() {}

/// Who the credential is, and the rules that apply to it.
#[utoipa::path(get, path = "/api/v1/me", tag = "identity",
    responses((status = 200, description = "`{\"principal\", \"details\", \"rules\"}`", body = Object),
        (status = 401, description = "no valid token", body = Object)))]
pub fn me() {}

/// The caller's api tokens (never their secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "identity",
    responses((status = 200, description = "the token records", body = Object)))]
pub fn own_tokens() {}

/// Makes an api token of the caller's account; the token is answered once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "identity",
    request_body(content = Object, description = "`{\"name\", \"expires_in_days\" (1 to 3650, default 90), \"scope\": {\"actions\", \"pattern\"}}`"),
    responses((status = 201, description = "`{\"token\": \"fxt_...\", \"record\"}`", body = Object),
        (status = 400, description = "invalid", body = Object)))]
pub fn create_own_token() {}

/// Revokes a token: one's own, or any with `user:admin`.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "identity",
    params(("id" = String, Path, description = "the token's id (its public part)")),
    responses((status = 204, description = "revoked"),
        (status = 403, description = "another account's token, without user:admin", body = Object),
        (status = 404, description = "no such token", body = Object)))]
pub fn revoke_token() {}

/// Every account (`user:admin`).
#[utoipa::path(get, path = "/api/v1/accounts", tag = "identity",
    responses((status = 200, description = "the accounts (never a password hash)", body = Object)))]
pub fn list_accounts() {}

/// Creates a user or a service account (`user:admin`).
#[utoipa::path(post, path = "/api/v1/accounts", tag = "identity",
    request_body(content = Object, description = "`{\"name\", \"kind\": \"user\"|\"service_account\", \"display_name\", \"password\", \"groups\", \"disabled\"}`"),
    responses((status = 201, description = "the account", body = Object),
        (status = 409, description = "the name is taken", body = Object)))]
pub fn create_account() {}

/// One account (`user:admin`).
#[utoipa::path(get, path = "/api/v1/accounts/{name}", tag = "identity",
    params(("name" = String, Path, description = "account name")),
    responses((status = 200, description = "the account", body = Object),
        (status = 404, description = "no such account", body = Object)))]
pub fn get_account() {}

/// Replaces an account's display name, groups, disabled flag and password (`user:admin`).
#[utoipa::path(put, path = "/api/v1/accounts/{name}", tag = "identity",
    params(("name" = String, Path, description = "account name")),
    request_body(content = Object, description = "as for create; a missing password keeps the current one"),
    responses((status = 200, description = "the account", body = Object),
        (status = 404, description = "no such account", body = Object)))]
pub fn put_account() {}

/// Deletes an account and its tokens (`user:admin`).
#[utoipa::path(delete, path = "/api/v1/accounts/{name}", tag = "identity",
    params(("name" = String, Path, description = "account name")),
    responses((status = 204, description = "deleted"),
        (status = 404, description = "no such account", body = Object)))]
pub fn delete_account() {}

/// Makes a token of an account, e.g. a service account (`user:admin`).
#[utoipa::path(post, path = "/api/v1/accounts/{name}/tokens", tag = "identity",
    params(("name" = String, Path, description = "account name")),
    request_body(content = Object, description = "as for POST /api/v1/tokens"),
    responses((status = 201, description = "`{\"token\": \"fxt_...\", \"record\"}`", body = Object),
        (status = 404, description = "no such account", body = Object)))]
pub fn create_account_token() {}

/// Every permission rule (`user:admin`).
#[utoipa::path(get, path = "/api/v1/rules", tag = "identity",
    responses((status = 200, description = "the rules with their ids", body = Object)))]
pub fn list_rules() {}

/// Adds a rule: a role or an action, on a pattern, for a user, group or service account.
#[utoipa::path(post, path = "/api/v1/rules", tag = "identity",
    request_body(content = Object, description = "`{\"subject\": \"group:payments\", \"grant\": {\"role\": \"developer\"} or {\"action\": \"pool:use\"}, \"pattern\": \"payments-*\"}`"),
    responses((status = 201, description = "the rule with its id", body = Object),
        (status = 409, description = "the same rule exists", body = Object)))]
pub fn add_rule() {}

/// Deletes a rule (`user:admin`).
#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "identity",
    params(("id" = i64, Path, description = "the rule's id")),
    responses((status = 204, description = "deleted"),
        (status = 404, description = "no such rule", body = Object)))]
pub fn delete_rule() {}

/// The audit log, newest first (`audit:read`).
#[utoipa::path(get, path = "/api/v1/audit", tag = "identity",
    params(("principal" = Option<String>, Query, description = "only this principal's, e.g. user:alice"),
        ("action" = Option<String>, Query, description = "only actions starting with this, e.g. package:"),
        ("resource" = Option<String>, Query, description = "only resources starting with this"),
        ("outcome" = Option<String>, Query, description = "ok, denied or failed"),
        ("since" = Option<String>, Query, description = "at or after (RFC 3339)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
        ("limit" = Option<u32>, Query, description = "page size, 1 to 500")),
    responses((status = 200, description = "`{\"items\": [...], \"next_cursor\"}`", body = Object)))]
pub fn audit_log() {}

/// The secrets the caller may grant or write: names, pools, versions and keys, never values.
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets",
    responses((status = 200, description = "`{\"secrets\": [{\"name\", \"pools\", \"version\", \"key_id\", \"created_at\", \"updated_at\", \"updated_by\"}], \"keys\": [...]}`", body = Object)))]
pub fn list_secrets() {}

/// Creates a secret or gives it a new value (`secret:write`; `pool:use` on each pool).
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "secret name")),
    request_body(content = Object, description = "`{\"value\": \"...\", \"pools\": [\"default\"]}` (pools: pool names or `*`; default `[\"default\"]`)"),
    responses((status = 201, description = "created: its metadata", body = Object),
        (status = 200, description = "changed: its metadata (version one more)", body = Object),
        (status = 503, description = "the server has no keyring (server.secrets)", body = Object)))]
pub fn set_secret() {}

/// Deletes a secret (`secret:write`).
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "secret name")),
    responses((status = 204, description = "deleted"),
        (status = 404, description = "no such secret", body = Object)))]
pub fn delete_secret() {}

/// Re-seals every secret with the keyring's first key (`secret:write` on `*`).
#[utoipa::path(post, path = "/api/v1/secrets/rekey", tag = "secrets",
    responses((status = 200, description = "`{\"resealed\": n, \"key_id\"}`", body = Object)))]
pub fn rekey_secrets() {}

/// A backup of everything the platform holds, as a tar.gz (`user:admin` on `*`): packages
/// with their archives and aliases, handlers with their history, schedules, webhooks, chat
/// bundles, notification rules, workflows, accounts, tokens (hashed), rules, secrets (sealed)
/// and, with `executions_since`, the finished executions since then with their logs, the
/// workflow runs and the audit log. `ferrisfx backup` calls it.
#[utoipa::path(post, path = "/api/v1/backup", tag = "backup",
    params(("executions_since" = Option<String>, Query, description = "RFC 3339 time: also the executions created since")),
    responses((status = 200, description = "The archive (`application/gzip`)")))]
pub fn take_backup() {}

/// Restores an archive of `POST /api/v1/backup` (the body) into this deployment (`user:admin`
/// on `*`): checks every file against the manifest first, refuses a deployment that holds
/// configuration unless `force`, then verifies counts and package digests from the backends.
#[utoipa::path(post, path = "/api/v1/restore", tag = "backup",
    params(("force" = Option<bool>, Query, description = "restore into a deployment that is not empty, replacing entries of the same name")),
    request_body(content = String, content_type = "application/gzip", description = "the archive"),
    responses(
        (status = 200, description = "`{manifest, restored, kept, verified, archives_verified}`", body = Object),
        (status = 400, description = "not a backup, or a damaged one (nothing written)", body = Object),
        (status = 409, description = "the deployment is not empty", body = Object)))]
pub fn restore_backup() {}

/// The values of the secrets delivered to a pool: for its executors' service account only
/// (`secret:deliver` on the pool).
#[utoipa::path(get, path = "/api/v1/pools/{pool}/secrets", tag = "secrets",
    params(("pool" = String, Path, description = "executor pool")),
    responses((status = 200, description = "`{\"pool\", \"secrets\": {\"name\": \"value\"}}`", body = Object),
        (status = 403, description = "not a service account granted secret:deliver on the pool", body = Object)))]
pub fn deliver_secrets() {}

/// Liveness: answers `ok`.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "ok", body = String)))]
pub fn healthz() {}

/// Readiness: 200 when the stores answer, else 503, with each check's outcome.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "ready", body = Object),
        (status = 503, description = "a store does not answer", body = Object)))]
pub fn readyz() {}

/// This process's metrics in the Prometheus text format (see docs/operations.md).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub fn metrics() {}
