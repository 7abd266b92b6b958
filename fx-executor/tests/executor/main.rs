//! The executor against the example functions (`examples/dist/*.fxpkg`, built by
//! `bash infra/scripts/build-examples.sh`, which the test command runs first): outcomes and
//! limits, the compile cache, and the worker loop on the bus.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cache;
mod grants;
mod http;
mod limits;
mod support;
mod warm;
mod worker;
