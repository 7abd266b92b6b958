//! End-to-end tests: the platform's whole path, driven through its HTTP API.
//!
//! Needs the example packages, the Python and JavaScript ones included: run
//! `bash infra/scripts/build-examples.sh` first (the test command `bash infra/scripts/test.sh`
//! does).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod backup;
mod catalogue;
mod chat;
mod cli_output;
mod consul;
mod distributed;
mod elasticsearch;
mod grants;
mod guests;
mod logs;
mod metrics;
mod notifications;
mod project;
mod replay;
mod retries;
mod schedules;
mod secrets;
mod skeleton;
mod traces;
mod ui;
mod webhooks;
mod workflows;
