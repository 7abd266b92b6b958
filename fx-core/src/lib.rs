//! FerrisFX core: the model every part of the platform shares, and one trait per port.
//!
//! - [`event`]: the CloudEvent model and its bus and HTTP bindings.
//! - [`handler`]: handlers, their filters, limits and retry policy.
//! - [`package`]: the package archive, its manifest and digest.
//! - [`execution`]: executions, invocations and the state events executors report.
//! - Ports, each a trait with an embedded backend and a conformance `testsuite`:
//!   [`bus`] (event bus), [`registry`] (handler config), [`objects`] (package archives),
//!   [`store`] (state), [`sink`] (logs and metrics).
//! - [`secrets`]: secrets managed by the platform, sealed at rest, delivered per pool.
//! - [`identity`]: principals, roles, permission rules and the one [`identity::authorize`].
//! - [`catalogue`]: the event catalogue: counts, samples and inferred schemas per (source, type).
//! - [`trace`]: W3C trace context through events, invocations and state, and the spans of
//!   every part.
//! - [`backends`]: builds every port from settings, in one place.

pub mod backends;
pub mod backoff;
pub mod backup;
pub mod bus;
pub mod catalogue;
pub mod chat;
pub mod error;
pub mod event;
pub mod execution;
pub mod failure;
pub mod grants;
pub mod handler;
pub mod hook;
pub mod identity;
pub mod limits;
pub mod notify;
pub mod objects;
pub mod package;
pub mod ready;
pub mod registry;
pub mod schedule;
pub mod secrets;
pub mod sink;
mod sqlite;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testsuite"))]
pub mod testenv;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsupport;
#[cfg(any(feature = "s3", feature = "elasticsearch", feature = "http"))]
pub(crate) mod tls;
pub mod trace;
pub mod validate;
pub mod workflow;

#[cfg(test)]
mod proptests;

pub use error::{Error, ErrorKind, Result};
