//! Who may do what: principals, built-in roles, permission rules, and the one decision
//! [`authorize`] that every entry point asks.
//!
//! - [`action`]: the actions rules grant and the kind of resource each acts on.
//! - [`rules`]: patterns, roles, subjects, rules, token scopes, principals and [`authorize`].

pub mod action;
pub mod rules;

pub use action::{Action, Resource, ResourceKind};
pub use rules::{
    authorize, Denied, Grant, Pattern, Principal, PrincipalKind, Role, Rule, Scope, Subject,
};

#[cfg(test)]
mod tests;
