//! Who is asking, and may they: the one guard in front of every route.
//!
//! - [`table`]: every route's requirement (public, signed in, or an action on a resource).
//! - [`Auth`]: finds the principal behind a credential (an API token in
//!   `Authorization: Bearer`) and keeps the rules, both cached for a few seconds.
//! - [`guard`]: the axum layer. It looks the route up in the table (a route missing from it is
//!   refused), authenticates, checks the action on the resource named in the path (or, when
//!   the resource is in the body or behind an id, that some rule grants the action), and puts
//!   a [`Caller`] in the request for handlers to check the resource they find, with the same
//!   [`fx_core::identity::authorize`].
//!
//! With `auth.enabled = false` every request acts as the trusted local operator: only for a
//! server on a loopback address (checked at start).

pub mod audit;
pub mod session;
pub mod table;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use fx_core::identity::credentials::Token;
use fx_core::identity::{authorize, Action, IdentityStore, Principal, Resource, Rule};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::AppState;
use table::{Requirement, Target};

/// Settings of authentication and permissions (`[server.auth]`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Require a credential (an API token, or the web UI's session) on every route but
    /// `/healthz`, `/readyz`, sign-in, static files and the API description, and check each
    /// request against the permission rules. Off (every request acts as the local operator,
    /// allowed everything) only on a loopback listener: the server refuses to start otherwise.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The password of the first admin (`admin`), made when authentication is on and no
    /// account exists yet. Prefer `bootstrap_password_file` or the environment
    /// (`FX_SERVER__AUTH__BOOTSTRAP_PASSWORD`); at least 12 characters.
    #[serde(default, skip_serializing)]
    #[schemars(extend("writeOnly" = true))]
    pub bootstrap_password: Option<String>,
    /// A file holding the first admin's password (e.g. a mounted Kubernetes secret); read at
    /// start when no account exists yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_password_file: Option<std::path::PathBuf>,
    /// How long a web UI session lasts, in hours (1 to 720).
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
    /// Mark the session cookies `Secure` even when no proxy says the request came over TLS
    /// (`X-Forwarded-Proto: https` marks them anyway).
    #[serde(default)]
    pub secure_cookies: bool,
}

fn default_session_hours() -> u32 {
    12
}

fn yes() -> bool {
    true
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            enabled: true,
            bootstrap_password: None,
            bootstrap_password_file: None,
            session_hours: default_session_hours(),
            secure_cookies: false,
        }
    }
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("enabled", &self.enabled)
            .field(
                "bootstrap_password",
                &self.bootstrap_password.as_ref().map(|_| "<redacted>"),
            )
            .field("bootstrap_password_file", &self.bootstrap_password_file)
            .field("session_hours", &self.session_hours)
            .field("secure_cookies", &self.secure_cookies)
            .finish()
    }
}

/// How long expired and revoked tokens are kept (for the audit log's sake) before they go.
const KEEP_DEAD_TOKENS: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Deletes tokens that expired or were revoked over a week ago, hourly, until `shutdown`.
pub async fn purge_tokens(
    store: Arc<dyn IdentityStore>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match store.purge_tokens(Utc::now() - KEEP_DEAD_TOKENS).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired and revoked api tokens deleted"),
            Err(e) => tracing::warn!(error = %e.chain(), "deleting expired api tokens failed"),
        }
    }
}

/// The account the bootstrap password makes.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// Makes the first admin when authentication is on and no account exists: user `admin` with
/// the bootstrap password and the `admin` role on everything. Refuses to start without a
/// bootstrap password then, since nobody could sign in.
pub async fn bootstrap(settings: &AuthSettings, store: &dyn IdentityStore) -> anyhow::Result<()> {
    use anyhow::Context;
    if !settings.enabled
        || store
            .has_accounts()
            .await
            .map_err(|e| anyhow::anyhow!(e.chain()))?
    {
        return Ok(());
    }
    let password = match (
        &settings.bootstrap_password,
        &settings.bootstrap_password_file,
    ) {
        (Some(password), _) => password.clone(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the bootstrap password from {}", path.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, None) => anyhow::bail!(
            "authentication is on and no account exists: set server.auth.bootstrap_password_file \
             (or FX_SERVER__AUTH__BOOTSTRAP_PASSWORD) to make the first admin, `{BOOTSTRAP_ADMIN}`"
        ),
    };
    let hash = fx_core::identity::credentials::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("the bootstrap password: {}", e.chain()))?;
    let now = Utc::now();
    let account = fx_core::identity::Account {
        name: BOOTSTRAP_ADMIN.into(),
        kind: fx_core::identity::PrincipalKind::User,
        display_name: "first admin (bootstrap)".into(),
        password_hash: Some(hash),
        groups: Vec::new(),
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    match store.create_account(&account).await {
        Ok(()) => {}
        // Another server made it first.
        Err(e) if e.kind() == fx_core::ErrorKind::Conflict => return Ok(()),
        Err(e) => anyhow::bail!("making the first admin: {}", e.chain()),
    }
    let rule = Rule {
        subject: fx_core::identity::Subject::User(BOOTSTRAP_ADMIN.into()),
        grant: fx_core::identity::Grant::Role(fx_core::identity::Role::Admin),
        pattern: fx_core::identity::Pattern::all(),
    };
    match store.add_rule(&rule, "bootstrap", now).await {
        Ok(_) => {}
        Err(e) if e.kind() == fx_core::ErrorKind::Conflict => {}
        Err(e) => anyhow::bail!("giving the first admin its rule: {}", e.chain()),
    }
    tracing::warn!(
        account = BOOTSTRAP_ADMIN,
        "first admin made from the bootstrap password: sign in (ferrisfx login --user admin), make real accounts, then change its password"
    );
    Ok(())
}

/// How long a looked-up token or the rules are used before they are read again: a revoked
/// token or a deleted rule stops working within this time on every server.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// Tokens kept in the cache at most (a flood of unknown ids is never cached).
const MAX_CACHED_TOKENS: usize = 10_000;
/// How often a token's `last_used_at` is written, at most.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// The principal behind a token, as looked up.
#[derive(Clone)]
struct Resolved {
    principal: Arc<Principal>,
    secret_hash: String,
    expires_at: Option<chrono::DateTime<Utc>>,
    last_used_at: Option<chrono::DateTime<Utc>>,
    at: Instant,
}

/// Authentication and the rules, over the identity store.
pub struct Auth {
    settings: AuthSettings,
    store: Arc<dyn IdentityStore>,
    rules: Mutex<Option<(Instant, Arc<[Rule]>)>>,
    tokens: Mutex<HashMap<String, Resolved>>,
}

impl Auth {
    /// Authentication with `settings` over `store`.
    pub fn new(settings: AuthSettings, store: Arc<dyn IdentityStore>) -> Self {
        Auth {
            settings,
            store,
            rules: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Whether credentials are required.
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The identity store.
    pub fn store(&self) -> &Arc<dyn IdentityStore> {
        &self.store
    }

    /// Forgets cached rules and tokens (after this server changed them).
    pub fn invalidate(&self) {
        *self.rules.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Every rule, from the cache when fresh.
    async fn rules(&self) -> Result<Arc<[Rule]>, ApiError> {
        if let Some((at, rules)) = &*self.rules.lock().unwrap_or_else(PoisonError::into_inner) {
            if at.elapsed() < CACHE_TTL {
                return Ok(rules.clone());
            }
        }
        let rules: Arc<[Rule]> = self
            .store
            .rules()
            .await?
            .into_iter()
            .map(|stored| stored.rule)
            .collect();
        *self.rules.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), rules.clone()));
        Ok(rules)
    }

    /// The principal behind the bearer token of `headers`: `Ok(None)` without one, 401 for a
    /// token that is malformed, unknown, expired, revoked or of a disabled account.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Arc<Principal>>, ApiError> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(None);
        };
        let refused = || {
            ApiError::new(
                fx_core::ErrorKind::Unauthenticated,
                "the bearer token is not valid (unknown, expired or revoked)",
            )
        };
        let text = value.to_str().map_err(|_| refused())?;
        let presented = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .map(str::trim)
            .and_then(Token::parse)
            .ok_or_else(refused)?;
        self.verify(&presented).await?.ok_or_else(refused).map(Some)
    }

    /// The principal of a browser session's token, if it is still valid (an expired or
    /// revoked session is no session: the page asks to sign in again).
    async fn session(&self, token: &str) -> Result<Option<Arc<Principal>>, ApiError> {
        match Token::parse(token) {
            Some(presented) => self.verify(&presented).await,
            None => Ok(None),
        }
    }

    /// The principal of a live, matching token; records its use at most once a minute.
    async fn verify(&self, presented: &Token) -> Result<Option<Arc<Principal>>, ApiError> {
        let Some(resolved) = self.resolve(presented.id()).await? else {
            return Ok(None);
        };
        let now = Utc::now();
        if !presented.matches(&resolved.secret_hash)
            || resolved.expires_at.is_some_and(|e| e <= now)
        {
            return Ok(None);
        }
        if resolved
            .last_used_at
            .is_none_or(|used| now - used > TOUCH_EVERY)
        {
            self.touched(presented.id(), now);
            if let Err(e) = self.store.touch_token(presented.id(), now).await {
                tracing::warn!(token = %presented.id(), error = %e.chain(), "recording a token's use failed");
            }
        }
        Ok(Some(resolved.principal))
    }

    /// Marks a cached token as used at `now`.
    fn touched(&self, id: &str, now: chrono::DateTime<Utc>) {
        if let Some(entry) = self
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(id)
        {
            entry.last_used_at = Some(now);
        }
    }

    /// The live token `id` and its principal, from the cache when fresh.
    async fn resolve(&self, id: &str) -> Result<Option<Resolved>, ApiError> {
        if let Some(hit) = self
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
        {
            if hit.at.elapsed() < CACHE_TTL {
                return Ok(Some(hit.clone()));
            }
        }
        let Some(token) = self.store.token(id).await? else {
            return Ok(None);
        };
        if token.revoked_at.is_some() {
            return Ok(None);
        }
        let Some(account) = self.store.account(&token.owner).await? else {
            return Ok(None);
        };
        if account.disabled {
            return Ok(None);
        }
        let principal = Principal {
            kind: account.kind,
            name: account.name,
            groups: account.groups,
            scope: Some(token.scope),
        };
        let resolved = Resolved {
            principal: Arc::new(principal),
            secret_hash: token.secret_hash,
            expires_at: token.expires_at,
            last_used_at: token.last_used_at,
            at: Instant::now(),
        };
        let mut cache = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.retain(|_, r| r.at.elapsed() < CACHE_TTL);
        }
        if cache.len() < MAX_CACHED_TOKENS {
            cache.insert(id.to_string(), resolved.clone());
        }
        Ok(Some(resolved))
    }
}

/// Who is asking, as the guard found: handlers check the resources they find with it.
#[derive(Clone)]
pub struct Caller {
    who: Who,
    rules: Arc<[Rule]>,
}

#[derive(Clone)]
enum Who {
    /// Authentication is off: the local operator, allowed everything.
    Local,
    /// No credential was presented (public routes only).
    Anonymous,
    /// An authenticated principal.
    Principal(Arc<Principal>),
}

impl Caller {
    /// The caller of a server without authentication: allowed everything.
    pub fn local() -> Self {
        Caller {
            who: Who::Local,
            rules: Arc::from([]),
        }
    }

    /// Whether the caller may do `action` on `resource`: 401 without a principal, 403 when
    /// no rule allows it.
    pub fn check(&self, action: Action, resource: Resource<'_>) -> Result<(), ApiError> {
        match &self.who {
            Who::Local => Ok(()),
            Who::Anonymous => Err(ApiError::new(
                fx_core::ErrorKind::Unauthenticated,
                "sign in or send an api token (Authorization: Bearer fxt_...)",
            )),
            Who::Principal(principal) => authorize(&self.rules, principal, action, resource)
                .map_err(|denied| ApiError::new(fx_core::ErrorKind::Forbidden, denied.to_string())),
        }
    }

    /// Whether the caller may do `action` on the resource `name` (to filter a list).
    pub fn may(&self, action: Action, name: &str) -> bool {
        self.check(action, Resource::Named(name)).is_ok()
    }

    /// Who to record as the author of a change: `user:alice`, `service:ci`; `None` when
    /// authentication is off (the request's `x-fx-user` header is used then).
    pub fn author(&self) -> Option<String> {
        match &self.who {
            Who::Principal(principal) => Some(principal.to_string()),
            Who::Local | Who::Anonymous => None,
        }
    }

    /// Whether a rule grants `action` itself (not through a role) on `name` to the caller:
    /// how an owner shares a package with someone else.
    pub fn granted_explicitly(&self, action: Action, name: &str) -> bool {
        match &self.who {
            Who::Local => true,
            Who::Anonymous => false,
            Who::Principal(principal) => self.rules.iter().any(|rule| {
                rule.grant == fx_core::identity::Grant::Action(action)
                    && rule.subject.includes(principal)
                    && rule.pattern.matches(name)
            }),
        }
    }

    /// Whether the caller may upload a version of package `name`: `package:upload` on it,
    /// and, when it has an owner, being the owner (or in the owning group), an admin of the
    /// platform, or granted `package:upload` on it by a rule of its own (not a role): a
    /// developer allowed every package cannot replace someone else's.
    pub async fn check_upload(
        &self,
        store: &dyn IdentityStore,
        name: &str,
    ) -> Result<(), ApiError> {
        self.check(Action::PackageUpload, Resource::Named(name))?;
        let Who::Principal(principal) = &self.who else {
            return Ok(());
        };
        let Some(owner) = store.package_owner(name).await? else {
            return Ok(());
        };
        let allowed = owner.includes(principal)
            || self.check(Action::UserAdmin, Resource::Any).is_ok()
            || self.granted_explicitly(Action::PackageUpload, name);
        if allowed {
            return Ok(());
        }
        Err(ApiError::new(
            fx_core::ErrorKind::Forbidden,
            format!(
                "package {name} belongs to {owner}: a new version needs {owner} or an admin, \
                 or a rule granting {principal} package:upload on {name}"
            ),
        ))
    }

    /// Makes the caller the owner of package `name` if it has none (after a first upload).
    pub async fn claim(&self, store: &dyn IdentityStore, name: &str) -> Result<(), ApiError> {
        if let Who::Principal(principal) = &self.who {
            store.claim_package(name, &principal.subject()).await?;
        }
        Ok(())
    }

    /// How the audit log names the caller: `user:alice`, `local` or `anonymous`.
    pub fn audit_name(&self) -> String {
        match &self.who {
            Who::Local => "local".into(),
            Who::Anonymous => "anonymous".into(),
            Who::Principal(principal) => principal.to_string(),
        }
    }

    /// The principal, when one was authenticated.
    pub fn principal(&self) -> Option<&Principal> {
        match &self.who {
            Who::Principal(principal) => Some(principal),
            Who::Local | Who::Anonymous => None,
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        // A handler mounted without the guard (a test router) acts as the local operator only
        // if no guard ran; the guard always inserts a caller.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                fx_core::ErrorKind::Internal,
                "no caller: the auth guard did not run",
            )
        })
    }
}

/// The guard: authenticates and authorizes by [`table::ROUTES`], then inserts the [`Caller`].
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    use audit::AuditWho;
    let session = match request.headers().contains_key(AUTHORIZATION) {
        true => None,
        false => session::cookie(request.headers(), session::SESSION_COOKIE),
    };
    let asked = Asked {
        method: request.method().clone(),
        template: request
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string()),
        path: request.uri().path().to_string(),
        query: request.uri().query().map(str::to_string),
        headers: request.headers().clone(),
        session,
    };
    let (who, admitted) = admit(&state, &asked).await;
    let admitted = match admitted {
        Ok(caller) => forgery_checked(caller, &asked, request).await,
        Err(e) => Err(e),
    };
    let mut response = match admitted {
        Ok((caller, mut request)) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => refusal(error, &asked),
    };
    if response.extensions().get::<AuditWho>().is_none() {
        response.extensions_mut().insert(AuditWho(who));
    }
    response
}

/// A change made with a session cookie must come from this site and carry the session's
/// CSRF token ([`session`]); anything else passes as it is.
async fn forgery_checked(
    caller: Caller,
    asked: &Asked,
    request: Request,
) -> Result<(Caller, Request), ApiError> {
    let safe = matches!(
        asked.method,
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    match (&asked.session, caller.principal()) {
        (Some(token), Some(_)) if !safe => {
            session::check_origin(&asked.headers)?;
            let request = session::check_csrf(request, token).await?;
            Ok((caller, request))
        }
        _ => Ok((caller, request)),
    }
}

/// What the guard reads of a request.
struct Asked {
    method: axum::http::Method,
    /// The matched route's template.
    template: Option<String>,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    /// The session cookie's token, when no `Authorization` header was sent.
    session: Option<String>,
}

/// Who asked (for the audit log), and the caller of the request or why it is refused.
async fn admit(state: &AppState, request: &Asked) -> (String, Result<Caller, ApiError>) {
    let principal = match (state.auth.enabled(), &request.session) {
        (false, _) => Ok(None),
        (true, Some(token)) => state.auth.session(token).await,
        (true, None) => state.auth.authenticate(&request.headers).await,
    };
    let who = match &principal {
        Ok(Some(principal)) => principal.to_string(),
        _ if !state.auth.enabled() => "local".to_string(),
        _ => "anonymous".to_string(),
    };
    // A public route (health, sign-in) answers whatever credential comes with the request: a
    // stale token must not make a probe or a new sign-in fail.
    let public = request
        .template
        .as_deref()
        .and_then(|t| table::requirement(&request.method, t))
        == Some(Requirement::Public);
    let admitted = match principal {
        Ok(principal) => decide(state, request, principal).await,
        Err(_) if public => decide(state, request, None).await,
        Err(e) => Err(e),
    };
    (who, admitted)
}

/// The caller of a request by the principal authenticated, or why it is refused.
async fn decide(
    state: &AppState,
    request: &Asked,
    principal: Option<Arc<Principal>>,
) -> Result<Caller, ApiError> {
    let Some(template) = request.template.as_deref() else {
        // No route matched: the fallback answers 404, to anyone.
        return Ok(Caller {
            who: Who::Anonymous,
            rules: Arc::from([]),
        });
    };
    let Some(requirement) = table::requirement(&request.method, template) else {
        tracing::error!(method = %request.method, route = %template, "route has no entry in the auth table; refused");
        return Err(ApiError::new(
            fx_core::ErrorKind::Forbidden,
            format!(
                "{} {template} has no permission rule (a bug: every route needs one)",
                request.method
            ),
        ));
    };
    let auth = &state.auth;
    if !auth.enabled() {
        return Ok(Caller::local());
    }
    let rules = match &principal {
        None => Arc::from([]),
        Some(_) => auth.rules().await?,
    };
    let caller = Caller {
        who: match principal {
            Some(principal) => Who::Principal(principal),
            None => Who::Anonymous,
        },
        rules,
    };
    match requirement {
        Requirement::Public => {}
        Requirement::SignedIn => {
            if caller.principal().is_none() {
                return Err(ApiError::new(
                    fx_core::ErrorKind::Unauthenticated,
                    "sign in or send an api token (Authorization: Bearer fxt_...)",
                ));
            }
        }
        Requirement::Allowed(action, Target::Later) => caller.check(action, Resource::Any)?,
        Requirement::Allowed(action, Target::All) => caller.check(action, Resource::All)?,
        Requirement::Allowed(action, Target::Path(param)) => {
            let name = table::path_param(template, &request.path, param).unwrap_or_default();
            caller.check(action, Resource::Named(&name))?;
        }
    }
    Ok(caller)
}

/// Whether `path` is a page of the web UI (not the API, the ingress or operations).
pub fn is_page(path: &str) -> bool {
    !(path.starts_with("/api/")
        || path.starts_with("/live/")
        || matches!(path, "/events" | "/metrics" | "/readyz" | "/healthz"))
}

/// The answer to a refused request: the API's error, with `WWW-Authenticate` on a 401; for a
/// page, the sign-in page (a `GET` without a session) or the error page.
fn refusal(error: ApiError, asked: &Asked) -> Response {
    let unauthenticated = error.kind == fx_core::ErrorKind::Unauthenticated;
    if is_page(&asked.path) {
        if unauthenticated && asked.method == axum::http::Method::GET {
            let next = match &asked.query {
                Some(query) => format!("{}?{query}", asked.path),
                None => asked.path.clone(),
            };
            let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
            return axum::response::Redirect::to(&format!("/login?{query}")).into_response();
        }
        return crate::pages::error_page(error.status, error.message);
    }
    let mut response = error.into_response();
    if unauthenticated {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ferrisfx\""),
        );
    }
    response
}
