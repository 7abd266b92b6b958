//! Blocking waits in host calls end at the invocation's deadline.
//!
//! Epoch interruption stops a function only while it runs guest code: a host call that blocks
//! (a WASI clock `sleep`, `poll` on a pollable that never fires) would hold its thread, its
//! instance slot and the executor's shutdown for as long as it waits. WASI p2 funnels every
//! blocking wait through `wasi:io/poll` (`poll` and `pollable.block`; a sleep is a clock
//! subscription blocked on), so the linker's definitions of those two are shadowed here by ones
//! that wait no longer than what is left of the invocation's `timeout_ms`, then trap as the
//! epoch deadline does ([`Trap::Interrupt`]): the invocation fails as `timeout`.

use std::time::Duration;

use wasmtime::component::{Linker, Resource};
use wasmtime::{StoreContextMut, Trap};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};

use crate::host::HostState;

/// The `wasi:io/poll` interface as Wasmtime's WASI linker names it; components importing an
/// older 0.2 version are matched to it by semver.
const WASI_POLL: &str = "wasi:io/poll@0.2.12";

/// Replaces `poll` and `[method]pollable.block` of [`WASI_POLL`] with bounded ones. Call after
/// WASI is added to `linker`.
pub fn bound_blocking_waits(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_POLL)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, HostState>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let left = time_left(store.data());
            let table = store.data_mut().table();
            let ready = wasmtime_wasi::runtime::in_tokio(async {
                tokio::time::timeout(left, table.poll(pollables)).await
            });
            match ready {
                Ok(ready) => Ok((ready?,)),
                Err(_) => Err(timed_out()),
            }
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, HostState>, (pollable,): (Resource<DynPollable>,)| {
            let left = time_left(store.data());
            let table = store.data_mut().table();
            let ready = wasmtime_wasi::runtime::in_tokio(async {
                tokio::time::timeout(left, table.block(pollable)).await
            });
            match ready {
                Ok(ready) => ready,
                Err(_) => Err(timed_out()),
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// What is left of the running call's time (a day when it has no deadline: a store used
/// outside an invocation).
fn time_left(state: &HostState) -> Duration {
    state.time_left().unwrap_or(Duration::from_secs(86_400))
}

fn timed_out() -> wasmtime::Error {
    tracing::debug!("a blocking host call reached the invocation's deadline");
    Trap::Interrupt.into()
}
