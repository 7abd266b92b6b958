//! Roles, rules and the one decision: [`authorize`].
//!
//! A rule grants a built-in role or a single action, on the resources a pattern matches, to a
//! user, a group or a service account. A principal may do an action on a resource when a rule
//! of theirs grants it there and their token's scope (if any) does not exclude it. Nothing is
//! allowed by default.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::action::{Action, Resource, ResourceKind};
use crate::error::{Error, Result};

/// Which names a rule covers: `*` (all, and the platform), `prefix*`, or one exact name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(String);

/// Bytes of a pattern.
const MAX_PATTERN_BYTES: usize = 256;

impl Pattern {
    /// The pattern that matches everything.
    pub fn all() -> Self {
        Pattern("*".into())
    }

    /// Parses a pattern: 1 to 256 visible ASCII characters, with `*` only as the last one.
    pub fn parse(text: &str) -> Result<Self> {
        let body = text.strip_suffix('*').unwrap_or(text);
        if text.is_empty()
            || text.len() > MAX_PATTERN_BYTES
            || body.contains('*')
            || !text.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(Error::invalid(format!(
                "pattern {text:?} must be 1 to {MAX_PATTERN_BYTES} visible ASCII characters: \
                 `*` (everything), `prefix*` or an exact name"
            )));
        }
        Ok(Pattern(text.to_string()))
    }

    /// Whether the pattern matches everything.
    pub fn is_all(&self) -> bool {
        self.0 == "*"
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` is matched.
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }

    /// Whether the pattern covers `resource` of `kind`: the platform and every resource of a
    /// kind only under `*`; some resource of a kind under every pattern.
    fn covers(&self, kind: ResourceKind, resource: Resource<'_>) -> bool {
        match (kind, resource) {
            (ResourceKind::Platform, _) | (_, Resource::All) => self.is_all(),
            (_, Resource::Any) => true,
            (_, Resource::Named(name)) => self.matches(name),
        }
    }
}

impl TryFrom<String> for Pattern {
    type Error = Error;
    fn try_from(text: String) -> Result<Self> {
        Pattern::parse(&text)
    }
}

impl From<Pattern> for String {
    fn from(pattern: Pattern) -> String {
        pattern.0
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A built-in role: a fixed set of actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including users, rules and the audit log.
    Admin,
    /// Upload packages, write handlers (naming pools and granting secrets within the rule's
    /// pattern), read and redrive executions, emit events.
    Developer,
    /// Read everything a viewer reads, redrive executions, read the audit log and metrics.
    Operator,
    /// Read packages, handlers and executions.
    Viewer,
    /// Emit events only (`POST /events`): for services.
    Producer,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Developer,
        Role::Operator,
        Role::Viewer,
        Role::Producer,
    ];

    /// The role's name, e.g. `developer`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Producer => "producer",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown role {name:?}; roles: admin, developer, operator, viewer, producer"
                ))
            })
    }

    /// What the role may do.
    pub fn actions(self) -> &'static [Action] {
        use Action::*;
        match self {
            // Everything but receiving secret values, which is for executors' service accounts.
            Role::Admin => &[
                PackageRead,
                PackageUpload,
                HandlerRead,
                HandlerWrite,
                ScheduleRead,
                ScheduleWrite,
                HookRead,
                HookWrite,
                BundleRead,
                BundleWrite,
                NotificationRead,
                NotificationWrite,
                WorkflowRead,
                WorkflowWrite,
                WorkflowRun,
                ExecutionRead,
                ExecutionRedrive,
                EventEmit,
                PoolUse,
                SecretGrant,
                SecretWrite,
                UserAdmin,
                AuditRead,
                OpsRead,
                CatalogueRead,
            ],
            Role::Developer => &[
                PackageRead,
                PackageUpload,
                HandlerRead,
                HandlerWrite,
                ScheduleRead,
                ScheduleWrite,
                HookRead,
                HookWrite,
                BundleRead,
                BundleWrite,
                NotificationRead,
                NotificationWrite,
                WorkflowRead,
                WorkflowWrite,
                WorkflowRun,
                ExecutionRead,
                ExecutionRedrive,
                EventEmit,
                PoolUse,
                SecretGrant,
                CatalogueRead,
            ],
            Role::Operator => &[
                PackageRead,
                HandlerRead,
                ScheduleRead,
                HookRead,
                BundleRead,
                NotificationRead,
                WorkflowRead,
                WorkflowRun,
                ExecutionRead,
                ExecutionRedrive,
                AuditRead,
                OpsRead,
                CatalogueRead,
            ],
            Role::Viewer => &[
                PackageRead,
                HandlerRead,
                ScheduleRead,
                HookRead,
                BundleRead,
                NotificationRead,
                WorkflowRead,
                ExecutionRead,
                CatalogueRead,
            ],
            Role::Producer => &[EventEmit],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kind of an authenticated principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person with a password (or an OIDC login).
    User,
    /// A service with tokens only.
    ServiceAccount,
}

/// Whom a rule is for: `user:<name>`, `group:<name>` or `service:<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Subject {
    /// One user.
    User(String),
    /// Every member of a group.
    Group(String),
    /// One service account.
    Service(String),
}

impl Subject {
    /// Parses `user:<name>`, `group:<name>` or `service:<name>`.
    pub fn parse(text: &str) -> Result<Self> {
        let subject = match text.split_once(':') {
            Some(("user", name)) => Subject::User(name.to_string()),
            Some(("group", name)) => Subject::Group(name.to_string()),
            Some(("service", name)) => Subject::Service(name.to_string()),
            _ => {
                return Err(Error::invalid(format!(
                    "subject {text:?} must be user:<name>, group:<name> or service:<name>"
                )))
            }
        };
        crate::validate::validate_name("subject name", subject.name())?;
        Ok(subject)
    }

    /// The user's, group's or service account's name.
    pub fn name(&self) -> &str {
        match self {
            Subject::User(name) | Subject::Group(name) | Subject::Service(name) => name,
        }
    }

    /// Whether `principal` is this subject or a member of this group.
    pub fn includes(&self, principal: &Principal) -> bool {
        match (self, principal.kind) {
            (Subject::User(name), PrincipalKind::User)
            | (Subject::Service(name), PrincipalKind::ServiceAccount) => *name == principal.name,
            (Subject::Group(group), _) => principal.groups.iter().any(|g| g == group),
            _ => false,
        }
    }
}

impl TryFrom<String> for Subject {
    type Error = Error;
    fn try_from(text: String) -> Result<Self> {
        Subject::parse(&text)
    }
}

impl From<Subject> for String {
    fn from(subject: Subject) -> String {
        subject.to_string()
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(name) => write!(f, "user:{name}"),
            Subject::Group(name) => write!(f, "group:{name}"),
            Subject::Service(name) => write!(f, "service:{name}"),
        }
    }
}

/// What a rule grants: a built-in role's actions or one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// Every action of the role.
    Role(Role),
    /// One action.
    Action(Action),
}

impl Grant {
    fn includes(self, action: Action) -> bool {
        match self {
            Grant::Role(role) => role.actions().contains(&action),
            Grant::Action(granted) => granted == action,
        }
    }
}

/// A permission rule: `grant` on what `pattern` matches, for `subject`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Whom the rule is for.
    pub subject: Subject,
    /// A role or one action.
    pub grant: Grant,
    /// The resources: names of the kind each granted action acts on.
    pub pattern: Pattern,
}

impl Rule {
    /// Whether the rule lets `principal` do `action` on `resource`.
    fn allows(&self, principal: &Principal, action: Action, resource: Resource<'_>) -> bool {
        self.subject.includes(principal)
            && self.grant.includes(action)
            && self.pattern.covers(action.resource_kind(), resource)
    }
}

/// What a token is limited to, beyond its owner's rules.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Only these actions (`None`: all the owner has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<BTreeSet<Action>>,
    /// Only resources this pattern matches (`None`: all the owner has; platform actions need
    /// none or `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Pattern>,
}

impl Scope {
    fn allows(&self, action: Action, resource: Resource<'_>) -> bool {
        self.actions.as_ref().is_none_or(|a| a.contains(&action))
            && self
                .pattern
                .as_ref()
                .is_none_or(|p| p.covers(action.resource_kind(), resource))
    }
}

/// Who is asking: an authenticated user or service account, their groups, and the scope of
/// the token they presented (none for a browser session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// User or service account.
    pub kind: PrincipalKind,
    /// Their name.
    pub name: String,
    /// The groups they belong to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The token's limits, when a token was presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
}

impl Principal {
    /// A user with no groups and no token scope.
    pub fn user(name: &str) -> Self {
        Principal {
            kind: PrincipalKind::User,
            name: name.to_string(),
            groups: Vec::new(),
            scope: None,
        }
    }

    /// A service account with no groups and no token scope.
    pub fn service(name: &str) -> Self {
        Principal {
            kind: PrincipalKind::ServiceAccount,
            ..Principal::user(name)
        }
    }

    /// As a rule's subject.
    pub fn subject(&self) -> Subject {
        match self.kind {
            PrincipalKind::User => Subject::User(self.name.clone()),
            PrincipalKind::ServiceAccount => Subject::Service(self.name.clone()),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.subject().fmt(f)
    }
}

/// Why a request was refused: the principal may not do the action on the resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{principal} may not {action} on {resource:?}{reason}")]
pub struct Denied {
    /// Who asked.
    pub principal: String,
    /// What they asked to do.
    pub action: Action,
    /// On what (`*`: any, or the platform).
    pub resource: String,
    /// ` (outside the token's scope)` when the owner has the permission but the token not.
    reason: &'static str,
}

/// The one permission decision: whether `principal` may do `action` on `resource`, by
/// `rules` (all rules; those of other subjects are ignored).
pub fn authorize(
    rules: &[Rule],
    principal: &Principal,
    action: Action,
    resource: Resource<'_>,
) -> std::result::Result<(), Denied> {
    let granted = rules.iter().any(|r| r.allows(principal, action, resource));
    let scoped = principal
        .scope
        .as_ref()
        .is_none_or(|s| s.allows(action, resource));
    if granted && scoped {
        return Ok(());
    }
    Err(Denied {
        principal: principal.to_string(),
        action,
        resource: resource.to_string(),
        reason: if granted {
            " (outside the token's scope)"
        } else {
            ""
        },
    })
}
