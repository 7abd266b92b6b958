//! What a request may want to do, and what it does it on.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An action a rule can grant. Each action acts on one kind of resource, named by
/// [`Action::resource_kind`]; a rule's pattern matches names of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    /// List and read packages and their versions, download an archive.
    #[serde(rename = "package:read")]
    PackageRead,
    /// Upload a version of a package, move its aliases.
    #[serde(rename = "package:upload")]
    PackageUpload,
    /// List and read handlers and their history.
    #[serde(rename = "handler:read")]
    HandlerRead,
    /// Create, change and delete handlers.
    #[serde(rename = "handler:write")]
    HandlerWrite,
    /// Read executions of a handler: events, output, logs.
    /// Read schedules, their next ticks and last fired.
    #[serde(rename = "schedule:read")]
    ScheduleRead,
    /// Create, change, pause, resume and delete schedules.
    #[serde(rename = "schedule:write")]
    ScheduleWrite,
    /// Read webhooks (their settings, never their secrets' values).
    #[serde(rename = "hook:read")]
    HookRead,
    /// Create, change and delete webhooks.
    #[serde(rename = "hook:write")]
    HookWrite,
    /// Read chat command bundles.
    #[serde(rename = "bundle:read")]
    BundleRead,
    /// Create, change and delete chat command bundles.
    #[serde(rename = "bundle:write")]
    BundleWrite,
    /// Read notification rules and the notifications sent.
    #[serde(rename = "notification:read")]
    NotificationRead,
    /// Create, change and delete notification rules.
    #[serde(rename = "notification:write")]
    NotificationWrite,
    /// Read workflows and their runs.
    #[serde(rename = "workflow:read")]
    WorkflowRead,
    /// Create, change and delete workflows (their steps run packages: as `handler:write`).
    #[serde(rename = "workflow:write")]
    WorkflowWrite,
    /// Start, cancel and re-drive runs of a workflow.
    #[serde(rename = "workflow:run")]
    WorkflowRun,
    #[serde(rename = "execution:read")]
    ExecutionRead,
    /// Redrive or rerun executions of a handler.
    #[serde(rename = "execution:redrive")]
    ExecutionRedrive,
    /// Publish events of a type (`POST /events`, the UI's send page).
    #[serde(rename = "event:emit")]
    EventEmit,
    /// Name an executor pool in a handler.
    #[serde(rename = "pool:use")]
    PoolUse,
    /// Grant a secret to a handler.
    #[serde(rename = "secret:grant")]
    SecretGrant,
    /// Create, rotate and delete secrets (their values are never read back).
    #[serde(rename = "secret:write")]
    SecretWrite,
    /// Receive the values of the secrets delivered to a pool: for the service account of that
    /// pool's executors only. No built-in role has it, not even `admin`: it must be granted by
    /// a rule to a `service:` subject.
    #[serde(rename = "secret:deliver")]
    SecretDeliver,
    /// Manage users, groups, service accounts, other principals' tokens and rules.
    #[serde(rename = "user:admin")]
    UserAdmin,
    /// Read the audit log.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// Read operational details: metrics, readiness details.
    #[serde(rename = "ops:read")]
    OpsRead,
    /// Read the event catalogue's entries of a type: counts, sample event, inferred schema.
    #[serde(rename = "catalogue:read")]
    CatalogueRead,
}

/// The kind of resource an action acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// A package, by name.
    Package,
    /// A handler, by name (executions are resources of their handler).
    Handler,
    /// A schedule, by name.
    Schedule,
    /// A webhook, by name.
    Hook,
    /// A chat command bundle, by name.
    Bundle,
    /// A notification rule, by name.
    Notification,
    /// A workflow, by name (its runs are resources of it).
    Workflow,
    /// An event, by its `type` attribute.
    Event,
    /// An executor pool, by name.
    Pool,
    /// A secret, by name.
    Secret,
    /// The platform itself: users, rules, the audit log, metrics. Only the pattern `*`
    /// matches it.
    Platform,
}

impl Action {
    /// Every action, in a stable order.
    pub const ALL: [Action; 26] = [
        Action::PackageRead,
        Action::PackageUpload,
        Action::HandlerRead,
        Action::HandlerWrite,
        Action::ScheduleRead,
        Action::ScheduleWrite,
        Action::HookRead,
        Action::HookWrite,
        Action::BundleRead,
        Action::BundleWrite,
        Action::NotificationRead,
        Action::NotificationWrite,
        Action::WorkflowRead,
        Action::WorkflowWrite,
        Action::WorkflowRun,
        Action::ExecutionRead,
        Action::ExecutionRedrive,
        Action::EventEmit,
        Action::PoolUse,
        Action::SecretGrant,
        Action::SecretWrite,
        Action::SecretDeliver,
        Action::UserAdmin,
        Action::AuditRead,
        Action::OpsRead,
        Action::CatalogueRead,
    ];

    /// The name rules and messages use, e.g. `package:upload`.
    pub fn name(self) -> &'static str {
        match self {
            Action::PackageRead => "package:read",
            Action::PackageUpload => "package:upload",
            Action::HandlerRead => "handler:read",
            Action::HandlerWrite => "handler:write",
            Action::ScheduleRead => "schedule:read",
            Action::ScheduleWrite => "schedule:write",
            Action::HookRead => "hook:read",
            Action::HookWrite => "hook:write",
            Action::BundleRead => "bundle:read",
            Action::BundleWrite => "bundle:write",
            Action::NotificationRead => "notification:read",
            Action::NotificationWrite => "notification:write",
            Action::WorkflowRead => "workflow:read",
            Action::WorkflowWrite => "workflow:write",
            Action::WorkflowRun => "workflow:run",
            Action::ExecutionRead => "execution:read",
            Action::ExecutionRedrive => "execution:redrive",
            Action::EventEmit => "event:emit",
            Action::PoolUse => "pool:use",
            Action::SecretGrant => "secret:grant",
            Action::SecretWrite => "secret:write",
            Action::SecretDeliver => "secret:deliver",
            Action::UserAdmin => "user:admin",
            Action::AuditRead => "audit:read",
            Action::OpsRead => "ops:read",
            Action::CatalogueRead => "catalogue:read",
        }
    }

    /// Parses an action name.
    pub fn parse(name: &str) -> Result<Self> {
        Action::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                Error::invalid(format!(
                    "unknown action {name:?}; known actions: {}",
                    known.join(", ")
                ))
            })
    }

    /// What the action acts on.
    pub fn resource_kind(self) -> ResourceKind {
        match self {
            Action::PackageRead | Action::PackageUpload => ResourceKind::Package,
            Action::HandlerRead
            | Action::HandlerWrite
            | Action::ExecutionRead
            | Action::ExecutionRedrive => ResourceKind::Handler,
            Action::ScheduleRead | Action::ScheduleWrite => ResourceKind::Schedule,
            Action::HookRead | Action::HookWrite => ResourceKind::Hook,
            Action::BundleRead | Action::BundleWrite => ResourceKind::Bundle,
            Action::NotificationRead | Action::NotificationWrite => ResourceKind::Notification,
            Action::WorkflowRead | Action::WorkflowWrite | Action::WorkflowRun => {
                ResourceKind::Workflow
            }
            Action::EventEmit | Action::CatalogueRead => ResourceKind::Event,
            Action::PoolUse | Action::SecretDeliver => ResourceKind::Pool,
            Action::SecretGrant | Action::SecretWrite => ResourceKind::Secret,
            Action::UserAdmin | Action::AuditRead | Action::OpsRead => ResourceKind::Platform,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an action is checked on: a resource of the action's kind, by name; some resource of
/// the kind ("may this principal read any handler?", for a list filtered afterwards); or
/// every resource of the kind at once (a listing that cannot be filtered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// A named resource of the action's kind.
    Named(&'a str),
    /// Some resource of the action's kind, or the platform: any rule granting the action
    /// allows it (only `*` for the platform).
    Any,
    /// Every resource of the action's kind: only a rule on `*` allows it.
    All,
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Named(name) => f.write_str(name),
            Resource::Any | Resource::All => f.write_str("*"),
        }
    }
}
