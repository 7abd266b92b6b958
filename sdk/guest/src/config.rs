//! Configuration values and secrets, handed to the function by its handler.
//!
//! - Configuration: the handler's `config`, over the defaults of the package's `fx.toml`
//!   (`[config]`). Plain values, readable by anyone who can read the handler.
//! - Secrets: a function reads a secret only when its `fx.toml` declares it
//!   (`secrets = ["api-token"]`), its handler grants it (`"secrets": ["api-token"]`) and the
//!   executor holds it (a file in its secrets directory). The value never leaves the executor
//!   except into the function.
//!
//! ```ignore
//! let greeting = ferrisfx_guest::config::get("greeting").unwrap_or_else(|| "Hello".into());
//! let token = ferrisfx_guest::config::secret("api-token")?;
//! ```

use crate::bindings::ferrisfx::function::config as host;
use crate::Error;

/// The value of configuration key `key`, if the handler or the manifest sets it.
pub fn get(key: &str) -> Option<String> {
    host::get(key)
}

/// Every configuration key and value, sorted by key.
pub fn all() -> Vec<(String, String)> {
    host::get_all()
}

/// The value of secret `name`, or an error saying why the function cannot have it (not
/// declared, not granted, or not held by the executor).
pub fn secret(name: &str) -> Result<String, Error> {
    host::secret(name).map_err(Error::new)
}
