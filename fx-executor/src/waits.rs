//! Blocking waits in host calls end at the invocation's deadline.
//!
//! Epoch interruption stops a function only while it runs guest code: a host call that blocks
//! (a WASI clock `sleep`, `poll` on a pollable that never fires, a `blocking-read` of an HTTP
//! response body whose server stalls) would hold its thread, its instance slot and the
//! executor's shutdown for as long as it waits. WASI p2 blocks in two interfaces:
//! `wasi:io/poll` (`poll` and `pollable.block`; a sleep is a clock subscription blocked on) and
//! the `blocking-*` methods of `wasi:io/streams`. The linker's definitions of those are shadowed
//! here by ones that wait no longer than what is left of the invocation's `timeout_ms`, then trap
//! as the epoch deadline does ([`Trap::Interrupt`]): the invocation fails as `timeout`. A wait cut
//! short leaves the stream in whatever state it was; the instance is not used again after a trap.
//! (HTTP body streams are also bounded by the request's timeouts, which the host caps at the
//! time left; the stream bound holds for every stream, whatever hands it out.)

use std::time::Duration;

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::{StoreContextMut, Trap};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamResult};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi_io::bindings::wasi::io::streams::{
    Host as _, HostInputStream, HostOutputStream, StreamError,
};

use crate::host::HostState;

/// The `wasi:io/poll` interface as Wasmtime's WASI linker names it; components importing an
/// older 0.2 version are matched to it by semver.
const WASI_POLL: &str = "wasi:io/poll@0.2.12";
/// The `wasi:io/streams` interface, named the same way.
const WASI_STREAMS: &str = "wasi:io/streams@0.2.12";

/// Replaces `poll` and `[method]pollable.block` of [`WASI_POLL`], and the `blocking-*` methods
/// of [`WASI_STREAMS`], with bounded ones. Call after WASI is added to `linker`.
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
    bound_stream_waits(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The result a shadowed stream method returns: the wait's result with its stream error
/// converted as WASI's own definition does, or a timeout trap when the deadline came first.
type Waited<T> = wasmtime::Result<(Result<T, StreamError>,)>;

fn settle<T>(
    table: &mut ResourceTable,
    waited: Result<StreamResult<T>, tokio::time::error::Elapsed>,
) -> Waited<T> {
    match waited {
        Err(_) => Err(timed_out()),
        Ok(Ok(value)) => Ok((Ok(value),)),
        Ok(Err(e)) => Ok((Err(table.convert_stream_error(e)?),)),
    }
}

fn bound_stream_waits(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type Store<'a> = StoreContextMut<'a, HostState>;
    type Input = Resource<DynInputStream>;
    type Output = Resource<DynOutputStream>;
    let mut streams = linker.instance(WASI_STREAMS)?;
    streams.func_wrap(
        "[method]input-stream.blocking-read",
        |mut store: Store<'_>, (stream, len): (Input, u64)| -> Waited<Vec<u8>> {
            let left = time_left(store.data());
            let table = store.data_mut().table();
            let waited = in_tokio(async {
                tokio::time::timeout(left, table.blocking_read(stream, len)).await
            });
            settle(store.data_mut().table(), waited)
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-skip",
        |mut store: Store<'_>, (stream, len): (Input, u64)| -> Waited<u64> {
            let left = time_left(store.data());
            let table = store.data_mut().table();
            let waited = in_tokio(async {
                tokio::time::timeout(left, table.blocking_skip(stream, len)).await
            });
            settle(store.data_mut().table(), waited)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: Store<'_>, (stream, bytes): (Output, Vec<u8>)| -> Waited<()> {
            let left = time_left(store.data());
            let table = store.data_mut().table();
            let waited = in_tokio(async {
                tokio::time::timeout(left, table.blocking_write_and_flush(stream, bytes)).await
            });
            settle(store.data_mut().table(), waited)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store: Store<'_>, (stream, len): (Output, u64)| -> Waited<()> {
            let left = time_left(store.data());
            let table = store.data_mut().table();
            let waited = in_tokio(async {
                tokio::time::timeout(left, table.blocking_write_zeroes_and_flush(stream, len)).await
            });
            settle(store.data_mut().table(), waited)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |mut store: Store<'_>, (stream,): (Output,)| -> Waited<()> {
            let left = time_left(store.data());
            let table = store.data_mut().table();
            let waited =
                in_tokio(async { tokio::time::timeout(left, table.blocking_flush(stream)).await });
            settle(store.data_mut().table(), waited)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-splice",
        |mut store: Store<'_>, (dest, src, len): (Output, Input, u64)| -> Waited<u64> {
            let left = time_left(store.data());
            let table = store.data_mut().table();
            let waited = in_tokio(async {
                tokio::time::timeout(left, table.blocking_splice(dest, src, len)).await
            });
            settle(store.data_mut().table(), waited)
        },
    )?;
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
