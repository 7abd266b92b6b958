//! Write a FerrisFX function in plain Rust.
//!
//! A FerrisFX function is a WebAssembly component (built for `wasm32-wasip2`) that implements the
//! `function` world of `sdk/wit/function.wit`. The executor calls it once per matching event: it
//! gets one [`Event`] (a CloudEvent 1.0), and either returns zero or more events, which the
//! platform publishes to `fx.events` so that functions chain, or fails with an [`Error`], whose
//! message becomes the execution's failure reason. This crate hides the generated bindings, so a
//! function is one function and one macro call:
//!
//! ```ignore
//! use ferrisfx_guest::{log, Error, Event};
//!
//! fn handle(event: Event) -> Result<Vec<Event>, Error> {
//!     log::info_with("greeting", &[("event_id", event.id())]);
//!     let reply = Event::new(format!("{}-reply", event.id()), "/functions/greeter", "com.example.greeted")
//!         .with_subject(event.subject().unwrap_or("world"))
//!         .with_json(&serde_json::json!({ "greeting": "hello" }))?;
//!     Ok(vec![reply])
//! }
//!
//! ferrisfx_guest::export_handler!(handle);
//! ```
//!
//! # What the host offers
//!
//! - [`log`]: structured log lines (`trace` to `error`, with key-value fields), recorded in the
//!   execution's log and searchable in the UI. Standard output and error are not the log.
//! - [`emit`]: sends an event to `fx.events` in the middle of a run. Emitted and returned events are
//!   published together, and only when the invocation succeeds: a failed run publishes nothing.
//! - [`config`]: configuration values set on the handler (over the manifest's defaults), and the
//!   secrets the handler grants.
//!
//! Nothing else of the host is visible: no files, environment variables, network or arguments.
//!
//! # Limits
//!
//! Each invocation runs in a fresh instance with a memory cap, a wall-clock timeout and caps on the
//! bytes it may log and output. Breaking a limit, panicking (which aborts: build with
//! `panic = "abort"`) or returning `Err` fails the execution; the retry policy of the handler
//! decides whether it runs again. Handle each event idempotently: delivery is at least once.
//!
//! # Building and packaging
//!
//! Make the crate a `cdylib`, build it with `cargo build --target wasm32-wasip2 --release`, and
//! pack the component as `function.wasm` next to an `fx.toml` manifest in a gzipped tar (`.fxpkg`);
//! `infra/scripts/build-examples.sh` shows how.

pub mod config;
mod error;
mod event;
pub mod log;

pub use error::Error;
pub use event::{Event, JSON_CONTENT_TYPE};

/// The bindings `wit-bindgen` generates for the `function` world; used by [`export_handler!`].
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "function",
        pub_export_macro: true,
        export_macro_name: "__export_function",
    });
}

use bindings::ferrisfx::function::host;

/// Emits `event` to `fx.events`.
///
/// The host publishes emitted events once the invocation succeeds, together with the events
/// `handle` returns; if the invocation fails, they are dropped.
pub fn emit(event: Event) {
    host::emit(&event.into());
}

/// Support for [`export_handler!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::__export_function;
    pub use crate::bindings::ferrisfx::function::types::Event as WitEvent;
    pub use crate::bindings::Guest;

    use crate::{Error, Event};

    /// Calls `handler` with the event converted from its WIT form, and converts the outcome back.
    pub fn call<F>(handler: F, event: WitEvent) -> Result<Vec<WitEvent>, String>
    where
        F: FnOnce(Event) -> Result<Vec<Event>, Error>,
    {
        match handler(Event::from(event)) {
            Ok(events) => Ok(events.into_iter().map(WitEvent::from).collect()),
            Err(error) => Err(error.into_message()),
        }
    }
}

/// Exports `handler` as the function's `handle`.
///
/// `handler` is a path to a function `fn(Event) -> Result<Vec<Event>, Error>`. Call the macro
/// once, at the top level of a `cdylib` crate.
#[macro_export]
macro_rules! export_handler {
    ($handler:path) => {
        const _: () = {
            struct FerrisFxFunction;

            impl $crate::__private::Guest for FerrisFxFunction {
                fn handle(
                    event: $crate::__private::WitEvent,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::__private::WitEvent>,
                    ::std::string::String,
                > {
                    $crate::__private::call($handler, event)
                }
            }

    $crate::__private::__export_function!(FerrisFxFunction with_types_in $crate::bindings);
        };
    };
}
