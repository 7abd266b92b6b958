//! What every route needs: the one table the guard reads. A route that is not in it is refused
//! (fail closed), and a test walks every route of the router and of the OpenAPI document
//! against it, so a route added without a line here fails the build's tests.

use axum::http::Method;
use fx_core::identity::Action;

/// Where the resource a route acts on is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// In the path: the value of the `{param}` of this name.
    Path(&'static str),
    /// Not in the path (a list, or a name in the body or behind an id): the guard checks that
    /// some rule grants the action; the handler checks the resource itself, with the same
    /// [`fx_core::identity::authorize`], once it knows it.
    Later,
    /// Every resource of the kind (a page summing up all of them): only a rule on `*`.
    All,
}

/// What a request must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: health, the login page, static files, the API description.
    Public,
    /// Any signed-in principal (pages that show only what the viewer may read).
    SignedIn,
    /// A principal allowed `Action` on the target.
    Allowed(Action, Target),
}

use Requirement::{Allowed, Public, SignedIn};
use Target::{Later, Path};

/// Every route: method, path template (as axum matches it) and requirement.
pub const ROUTES: &[(Method, &str, Requirement)] = &[
    // Operations and documentation.
    (Method::GET, "/healthz", Public),
    // Answers ready or not to anyone; the per-port details need `ops:read`.
    (Method::GET, "/readyz", Public),
    (Method::GET, "/metrics", Allowed(Action::OpsRead, Later)),
    (Method::GET, "/api/openapi.json", Public),
    (Method::GET, "/api/docs", Public),
    (Method::GET, "/api/docs/rapidoc.js", Public),
    // Static files of the UI.
    (Method::GET, "/static/style.css", Public),
    (Method::GET, "/static/htmx.min.js", Public),
    (Method::GET, "/static/app.js", Public),
    // The REST API.
    // The event catalogue: entries are resources of their event type, filtered by the handler.
    (
        Method::GET,
        "/api/v1/catalogue",
        Allowed(Action::CatalogueRead, Later),
    ),
    (
        Method::GET,
        "/api/v1/catalogue/entry",
        Allowed(Action::CatalogueRead, Later),
    ),
    (
        Method::GET,
        "/api/v1/packages",
        Allowed(Action::PackageRead, Later),
    ),
    (
        Method::POST,
        "/api/v1/packages",
        Allowed(Action::PackageUpload, Later),
    ),
    (
        Method::GET,
        "/api/v1/packages/{name}",
        Allowed(Action::PackageRead, Path("name")),
    ),
    (
        Method::PUT,
        "/api/v1/packages/{name}/aliases/{alias}",
        Allowed(Action::PackageUpload, Path("name")),
    ),
    // The archive of a version: what `ferrisfx replay` runs.
    (
        Method::GET,
        "/api/v1/packages/{name}/versions/{version}/archive",
        Allowed(Action::PackageRead, Path("name")),
    ),
    (
        Method::GET,
        "/api/v1/packages/{name}/owner",
        Allowed(Action::PackageRead, Path("name")),
    ),
    // Giving a package to another owner is an admin's.
    (
        Method::PUT,
        "/api/v1/packages/{name}/owner",
        Allowed(Action::UserAdmin, Later),
    ),
    (
        Method::GET,
        "/api/v1/handlers",
        Allowed(Action::HandlerRead, Later),
    ),
    (
        Method::POST,
        "/api/v1/handlers",
        Allowed(Action::HandlerWrite, Later),
    ),
    (
        Method::GET,
        "/api/v1/handlers/{name}",
        Allowed(Action::HandlerRead, Path("name")),
    ),
    (
        Method::PUT,
        "/api/v1/handlers/{name}",
        Allowed(Action::HandlerWrite, Path("name")),
    ),
    (
        Method::DELETE,
        "/api/v1/handlers/{name}",
        Allowed(Action::HandlerWrite, Path("name")),
    ),
    (
        Method::GET,
        "/api/v1/handlers/{name}/history",
        Allowed(Action::HandlerRead, Path("name")),
    ),
    // A handler's log lines: what reading its executions shows.
    (
        Method::GET,
        "/api/v1/handlers/{name}/logs",
        Allowed(Action::ExecutionRead, Path("name")),
    ),
    (
        Method::GET,
        "/api/v1/schedules",
        Allowed(Action::ScheduleRead, Later),
    ),
    (
        Method::POST,
        "/api/v1/schedules",
        Allowed(Action::ScheduleWrite, Later),
    ),
    (
        Method::GET,
        "/api/v1/schedules/{name}",
        Allowed(Action::ScheduleRead, Path("name")),
    ),
    (
        Method::PUT,
        "/api/v1/schedules/{name}",
        Allowed(Action::ScheduleWrite, Path("name")),
    ),
    (
        Method::DELETE,
        "/api/v1/schedules/{name}",
        Allowed(Action::ScheduleWrite, Path("name")),
    ),
    (
        Method::POST,
        "/api/v1/schedules/{name}/pause",
        Allowed(Action::ScheduleWrite, Path("name")),
    ),
    (
        Method::POST,
        "/api/v1/schedules/{name}/resume",
        Allowed(Action::ScheduleWrite, Path("name")),
    ),
    (
        Method::GET,
        "/api/v1/hooks",
        Allowed(Action::HookRead, Later),
    ),
    (
        Method::POST,
        "/api/v1/hooks",
        Allowed(Action::HookWrite, Later),
    ),
    (
        Method::GET,
        "/api/v1/hooks/{name}",
        Allowed(Action::HookRead, Path("name")),
    ),
    (
        Method::PUT,
        "/api/v1/hooks/{name}",
        Allowed(Action::HookWrite, Path("name")),
    ),
    (
        Method::DELETE,
        "/api/v1/hooks/{name}",
        Allowed(Action::HookWrite, Path("name")),
    ),
    (
        Method::GET,
        "/api/v1/bundles",
        Allowed(Action::BundleRead, Later),
    ),
    (
        Method::POST,
        "/api/v1/bundles",
        Allowed(Action::BundleWrite, Later),
    ),
    (
        Method::GET,
        "/api/v1/bundles/{name}",
        Allowed(Action::BundleRead, Path("name")),
    ),
    (
        Method::PUT,
        "/api/v1/bundles/{name}",
        Allowed(Action::BundleWrite, Path("name")),
    ),
    (
        Method::DELETE,
        "/api/v1/bundles/{name}",
        Allowed(Action::BundleWrite, Path("name")),
    ),
    (
        Method::GET,
        "/api/v1/notifications",
        Allowed(Action::NotificationRead, Later),
    ),
    (
        Method::POST,
        "/api/v1/notifications",
        Allowed(Action::NotificationWrite, Later),
    ),
    (
        Method::GET,
        "/api/v1/notifications/{name}",
        Allowed(Action::NotificationRead, Path("name")),
    ),
    (
        Method::PUT,
        "/api/v1/notifications/{name}",
        Allowed(Action::NotificationWrite, Path("name")),
    ),
    (
        Method::DELETE,
        "/api/v1/notifications/{name}",
        Allowed(Action::NotificationWrite, Path("name")),
    ),
    (
        Method::GET,
        "/api/v1/executions/{id}/notifications",
        Allowed(Action::ExecutionRead, Later),
    ),
    (
        Method::GET,
        "/api/v1/workflows",
        Allowed(Action::WorkflowRead, Later),
    ),
    (
        Method::POST,
        "/api/v1/workflows",
        Allowed(Action::WorkflowWrite, Later),
    ),
    (
        Method::GET,
        "/api/v1/workflows/{name}",
        Allowed(Action::WorkflowRead, Path("name")),
    ),
    (
        Method::PUT,
        "/api/v1/workflows/{name}",
        Allowed(Action::WorkflowWrite, Path("name")),
    ),
    (
        Method::DELETE,
        "/api/v1/workflows/{name}",
        Allowed(Action::WorkflowWrite, Path("name")),
    ),
    (
        Method::GET,
        "/api/v1/workflows/{name}/runs",
        Allowed(Action::WorkflowRead, Path("name")),
    ),
    (
        Method::POST,
        "/api/v1/workflows/{name}/runs",
        Allowed(Action::WorkflowRun, Path("name")),
    ),
    (
        Method::GET,
        "/api/v1/runs",
        Allowed(Action::WorkflowRead, Later),
    ),
    (
        Method::GET,
        "/api/v1/runs/{id}",
        Allowed(Action::WorkflowRead, Later),
    ),
    (
        Method::GET,
        "/api/v1/runs/{id}/graph.svg",
        Allowed(Action::WorkflowRead, Later),
    ),
    (
        Method::POST,
        "/api/v1/runs/{id}/cancel",
        Allowed(Action::WorkflowRun, Later),
    ),
    (
        Method::POST,
        "/api/v1/runs/{id}/redrive",
        Allowed(Action::WorkflowRun, Later),
    ),
    (
        Method::GET,
        "/api/v1/executions",
        Allowed(Action::ExecutionRead, Later),
    ),
    (
        Method::GET,
        "/api/v1/executions/{id}",
        Allowed(Action::ExecutionRead, Later),
    ),
    (
        Method::POST,
        "/api/v1/executions/{id}/redrive",
        Allowed(Action::ExecutionRedrive, Later),
    ),
    (
        Method::POST,
        "/api/v1/executions/{id}/rerun",
        Allowed(Action::ExecutionRedrive, Later),
    ),
    (
        Method::POST,
        "/api/v1/events",
        Allowed(Action::EventEmit, Later),
    ),
    (Method::POST, "/events", Allowed(Action::EventEmit, Later)),
    // Webhook deliveries: the hook's signature is the credential (checked by the handler).
    (Method::POST, crate::hooks::PATH, Public),
    // Slack's requests: the signing secret's signature is the credential.
    (Method::POST, crate::chat::PATH, Public),
    // Identity: one's own credential and tokens; accounts, rules and the audit log.
    // Signing in: a name and a password for a token.
    (Method::POST, "/api/v1/login", Public),
    (Method::GET, "/api/v1/me", SignedIn),
    (Method::GET, "/api/v1/tokens", SignedIn),
    (Method::POST, "/api/v1/tokens", SignedIn),
    // Revoking another account's token needs user:admin (checked by the handler).
    (Method::DELETE, "/api/v1/tokens/{id}", SignedIn),
    (
        Method::GET,
        "/api/v1/accounts",
        Allowed(Action::UserAdmin, Later),
    ),
    (
        Method::POST,
        "/api/v1/accounts",
        Allowed(Action::UserAdmin, Later),
    ),
    (
        Method::GET,
        "/api/v1/accounts/{name}",
        Allowed(Action::UserAdmin, Later),
    ),
    (
        Method::PUT,
        "/api/v1/accounts/{name}",
        Allowed(Action::UserAdmin, Later),
    ),
    (
        Method::DELETE,
        "/api/v1/accounts/{name}",
        Allowed(Action::UserAdmin, Later),
    ),
    (
        Method::POST,
        "/api/v1/accounts/{name}/tokens",
        Allowed(Action::UserAdmin, Later),
    ),
    (
        Method::GET,
        "/api/v1/rules",
        Allowed(Action::UserAdmin, Later),
    ),
    (
        Method::POST,
        "/api/v1/rules",
        Allowed(Action::UserAdmin, Later),
    ),
    (
        Method::DELETE,
        "/api/v1/rules/{id}",
        Allowed(Action::UserAdmin, Later),
    ),
    (
        Method::GET,
        "/api/v1/audit",
        Allowed(Action::AuditRead, Later),
    ),
    // Platform secrets: names and metadata to whoever may grant or write some; values never
    // (written only), except to a pool's executors.
    (
        Method::GET,
        "/api/v1/secrets",
        Allowed(Action::SecretGrant, Later),
    ),
    (
        Method::PUT,
        "/api/v1/secrets/{name}",
        Allowed(Action::SecretWrite, Path("name")),
    ),
    (
        Method::DELETE,
        "/api/v1/secrets/{name}",
        Allowed(Action::SecretWrite, Path("name")),
    ),
    (
        Method::POST,
        "/api/v1/secrets/rekey",
        Allowed(Action::SecretWrite, Target::All),
    ),
    (
        Method::GET,
        "/api/v1/pools/{pool}/secrets",
        Allowed(Action::SecretDeliver, Path("pool")),
    ),
    // Backup and restore: everything, password hashes and sealed secrets included.
    (
        Method::POST,
        "/api/v1/backup",
        Allowed(Action::UserAdmin, Target::All),
    ),
    (
        Method::POST,
        "/api/v1/restore",
        Allowed(Action::UserAdmin, Target::All),
    ),
    // The web UI.
    (
        Method::GET,
        "/backup",
        Allowed(Action::UserAdmin, Target::All),
    ),
    (
        Method::POST,
        "/backup",
        Allowed(Action::UserAdmin, Target::All),
    ),
    (
        Method::POST,
        "/backup/restore",
        Allowed(Action::UserAdmin, Target::All),
    ),
    (Method::GET, "/audit", Allowed(Action::AuditRead, Later)),
    // The event catalogue's pages, as the API's.
    (
        Method::GET,
        "/catalogue",
        Allowed(Action::CatalogueRead, Later),
    ),
    (
        Method::GET,
        "/catalogue/entry",
        Allowed(Action::CatalogueRead, Later),
    ),
    (Method::GET, "/login", Public),
    (Method::POST, "/login", Public),
    // Revokes the session of the cookie, if any; a forged sign-out is refused (CSRF).
    (Method::POST, "/logout", Public),
    // The overview and the dashboard sum up every handler's executions.
    (
        Method::GET,
        "/",
        Allowed(Action::ExecutionRead, Target::All),
    ),
    (
        Method::GET,
        "/dashboard",
        Allowed(Action::ExecutionRead, Target::All),
    ),
    (
        Method::GET,
        "/packages",
        Allowed(Action::PackageRead, Later),
    ),
    (
        Method::POST,
        "/packages",
        Allowed(Action::PackageUpload, Later),
    ),
    (
        Method::POST,
        "/packages/{name}/aliases",
        Allowed(Action::PackageUpload, Path("name")),
    ),
    (
        Method::GET,
        "/handlers",
        Allowed(Action::HandlerRead, Later),
    ),
    (
        Method::GET,
        "/handlers/new",
        Allowed(Action::HandlerWrite, Later),
    ),
    (
        Method::POST,
        "/handlers/new",
        Allowed(Action::HandlerWrite, Later),
    ),
    (
        Method::POST,
        "/handlers/preview",
        Allowed(Action::HandlerWrite, Later),
    ),
    (
        Method::GET,
        "/handlers/{name}/edit",
        Allowed(Action::HandlerWrite, Path("name")),
    ),
    (
        Method::POST,
        "/handlers/{name}/edit",
        Allowed(Action::HandlerWrite, Path("name")),
    ),
    (
        Method::POST,
        "/handlers/{name}/toggle",
        Allowed(Action::HandlerWrite, Path("name")),
    ),
    (
        Method::POST,
        "/handlers/{name}/delete",
        Allowed(Action::HandlerWrite, Path("name")),
    ),
    // Schedules: the list as the API's; the form's name is checked by the handler.
    (
        Method::GET,
        "/schedules",
        Allowed(Action::ScheduleRead, Later),
    ),
    (
        Method::POST,
        "/schedules",
        Allowed(Action::ScheduleWrite, Later),
    ),
    (
        Method::POST,
        "/schedules/{name}/pause",
        Allowed(Action::ScheduleWrite, Path("name")),
    ),
    (
        Method::POST,
        "/schedules/{name}/resume",
        Allowed(Action::ScheduleWrite, Path("name")),
    ),
    (
        Method::POST,
        "/schedules/{name}/delete",
        Allowed(Action::ScheduleWrite, Path("name")),
    ),
    // Webhooks: the list as the API's; the form's name is checked by the handler. (`POST
    // /hooks/{name}`, a delivery, is the public route above.)
    (Method::GET, "/hooks", Allowed(Action::HookRead, Later)),
    (Method::POST, "/hooks", Allowed(Action::HookWrite, Later)),
    (
        Method::POST,
        "/hooks/{name}/delete",
        Allowed(Action::HookWrite, Path("name")),
    ),
    // Chat command bundles: the list as the API's (created with the API or the CLI).
    (Method::GET, "/bundles", Allowed(Action::BundleRead, Later)),
    (
        Method::POST,
        "/bundles/{name}/delete",
        Allowed(Action::BundleWrite, Path("name")),
    ),
    // Notification rules: the list as the API's; the form's name, handlers and secret are
    // checked by the handler.
    (
        Method::GET,
        "/notifications",
        Allowed(Action::NotificationRead, Later),
    ),
    (
        Method::POST,
        "/notifications",
        Allowed(Action::NotificationWrite, Later),
    ),
    (
        Method::POST,
        "/notifications/{name}/delete",
        Allowed(Action::NotificationWrite, Path("name")),
    ),
    // Workflows: the list as the API's; the definition's name and steps are checked by the
    // handler, as the API does. A run names its workflow behind its id (checked by the
    // handler).
    (
        Method::GET,
        "/workflows",
        Allowed(Action::WorkflowRead, Later),
    ),
    (
        Method::POST,
        "/workflows",
        Allowed(Action::WorkflowWrite, Later),
    ),
    (
        Method::GET,
        "/workflows/{name}",
        Allowed(Action::WorkflowRead, Path("name")),
    ),
    (
        Method::POST,
        "/workflows/{name}/delete",
        Allowed(Action::WorkflowWrite, Path("name")),
    ),
    (
        Method::POST,
        "/workflows/{name}/runs",
        Allowed(Action::WorkflowRun, Path("name")),
    ),
    (Method::GET, "/runs", Allowed(Action::WorkflowRead, Later)),
    (
        Method::GET,
        "/runs/{id}",
        Allowed(Action::WorkflowRead, Later),
    ),
    (
        Method::POST,
        "/runs/{id}/cancel",
        Allowed(Action::WorkflowRun, Later),
    ),
    (
        Method::POST,
        "/runs/{id}/redrive",
        Allowed(Action::WorkflowRun, Later),
    ),
    // Secrets: the list as the API's; the form's name and pools are checked by the handler.
    (Method::GET, "/secrets", Allowed(Action::SecretGrant, Later)),
    (
        Method::POST,
        "/secrets",
        Allowed(Action::SecretWrite, Later),
    ),
    (
        Method::POST,
        "/secrets/{name}/delete",
        Allowed(Action::SecretWrite, Path("name")),
    ),
    (Method::GET, "/send", Allowed(Action::EventEmit, Later)),
    (Method::POST, "/send", Allowed(Action::EventEmit, Later)),
    (
        Method::GET,
        "/executions",
        Allowed(Action::ExecutionRead, Later),
    ),
    (
        Method::GET,
        "/executions/{id}",
        Allowed(Action::ExecutionRead, Later),
    ),
    (
        Method::POST,
        "/executions/{id}/redrive",
        Allowed(Action::ExecutionRedrive, Later),
    ),
    (
        Method::POST,
        "/executions/{id}/rerun",
        Allowed(Action::ExecutionRedrive, Later),
    ),
    (
        Method::GET,
        "/live/executions",
        Allowed(Action::ExecutionRead, Later),
    ),
    (
        Method::GET,
        "/live/executions/{id}",
        Allowed(Action::ExecutionRead, Later),
    ),
];

/// The requirement of `method` on the route `template`; `None` for a route not in the table.
/// `HEAD` is answered like `GET`, as axum does.
pub fn requirement(method: &Method, template: &str) -> Option<Requirement> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    // Built once: every request looks its route up.
    static INDEX: std::sync::LazyLock<
        std::collections::HashMap<(Method, &'static str), Requirement>,
    > = std::sync::LazyLock::new(|| {
        ROUTES
            .iter()
            .map(|(m, path, requirement)| ((m.clone(), *path), *requirement))
            .collect()
    });
    INDEX.get(&(method.clone(), template)).copied()
}

/// The value of the `{param}` of `template` in `path`, percent-decoded as the handler will
/// see it, e.g. `name` of `/api/v1/handlers/{name}` in `/api/v1/handlers/orders`.
pub fn path_param(template: &str, path: &str, param: &str) -> Option<String> {
    let wanted = format!("{{{param}}}");
    let mut segments = path.split('/');
    for part in template.split('/') {
        let segment = segments.next()?;
        if part == wanted {
            return Some(
                percent_encoding::percent_decode_str(segment)
                    .decode_utf8_lossy()
                    .into_owned(),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once() {
        for (i, (method, path, _)) in ROUTES.iter().enumerate() {
            let again = ROUTES
                .iter()
                .skip(i + 1)
                .any(|(m, p, _)| m == method && p == path);
            assert!(!again, "{method} {path} is listed twice");
            if let Allowed(_, Path(param)) = ROUTES[i].2 {
                assert!(
                    path.contains(&format!("{{{param}}}")),
                    "{method} {path} names a missing parameter {param}"
                );
            }
        }
    }

    #[test]
    fn unknown_routes_have_no_requirement_and_head_is_get() {
        assert_eq!(requirement(&Method::GET, "/api/v1/secret"), None);
        assert_eq!(requirement(&Method::PATCH, "/api/v1/handlers/{name}"), None);
        assert_eq!(requirement(&Method::HEAD, "/healthz"), Some(Public));
    }

    #[test]
    fn path_params_are_read_by_position() {
        let t = "/api/v1/packages/{name}/aliases/{alias}";
        let p = "/api/v1/packages/payments/aliases/latest";
        assert_eq!(path_param(t, p, "name").as_deref(), Some("payments"));
        assert_eq!(path_param(t, p, "alias").as_deref(), Some("latest"));
        let encoded = "/api/v1/packages/a%62/aliases/latest";
        assert_eq!(path_param(t, encoded, "name").as_deref(), Some("ab"));
        assert_eq!(path_param(t, p, "id"), None);
        assert_eq!(path_param(t, "/api/v1/packages", "name"), None);
    }
}
