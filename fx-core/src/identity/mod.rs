//! Who may do what: principals, built-in roles, permission rules, and the one decision
//! [`authorize`] that every entry point asks.
//!
//! - [`action`]: the actions rules grant and the kind of resource each acts on.
//! - [`credentials`]: API tokens (random, stored hashed) and Argon2id password hashes.
//! - [`rules`]: patterns, roles, subjects, rules, token scopes, principals and [`authorize`].
//! - [`store`]: the identity store port (accounts, tokens, rules, package owners, the audit
//!   log), implemented by both state stores, with its conformance `testsuite`.

pub mod action;
pub mod credentials;
pub mod rules;
pub mod store;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;

pub use action::{Action, Resource, ResourceKind};
pub use rules::{
    authorize, Denied, Grant, Pattern, Principal, PrincipalKind, Role, Rule, Scope, Subject,
};
pub use store::{
    clip_detail, Account, AuditOutcome, AuditQuery, AuditRecord, IdentityStore, StoredRule,
    TokenRecord,
};

#[cfg(test)]
mod tests;
