//! The host bindings of the function contract, generated from `sdk/wit/function.wit`.

/// Bindings generated from `sdk/wit/function.wit`.
mod generated {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "function",
        imports: { default: trappable },
    });
}

/// The WIT event record.
pub use ferrisfx::function::types::Event as WitEvent;
pub use generated::ferrisfx;
pub use generated::{Function, FunctionPre};
