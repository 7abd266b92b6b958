//! The checks of names, keys, configuration and HTTP hosts that handlers, manifests and the
//! stores share. A leaf module: it depends only on the error type.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};

/// Checks a name used in keys, topics and URLs.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 {
        return Err(Error::invalid(format!(
            "{what} must be 1 to 64 characters, got {}",
            name.len()
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')))
    {
        return Err(Error::invalid(format!(
            "{what} {name:?} contains {c:?}: use lowercase letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

/// Configuration entries a handler or manifest may set.
pub const MAX_CONFIG_ENTRIES: usize = 100;
/// Bytes of one configuration value.
pub const MAX_CONFIG_VALUE_BYTES: usize = 16 * 1024;
/// Bytes of all configuration keys and values together.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Checks a configuration key or secret name: 1 to 128 ASCII letters, digits, `_`, `-`, `.`,
/// not starting with `.` (so that a Kubernetes secret volume's own files never match).
pub fn validate_key(what: &str, key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what}: {key:?} must be 1 to 128 ASCII letters, digits, '_', '-' or '.', not starting with '.'"
        )))
    }
}

/// Checks configuration entries: keys by [`validate_key`], and the sizes.
pub fn validate_config(what: &str, config: &BTreeMap<String, String>) -> Result<()> {
    if config.len() > MAX_CONFIG_ENTRIES {
        return Err(Error::invalid(format!(
            "{what} has {} entries; at most {MAX_CONFIG_ENTRIES}",
            config.len()
        )));
    }
    let mut total = 0;
    for (key, value) in config {
        validate_key(what, key)?;
        if value.len() > MAX_CONFIG_VALUE_BYTES {
            return Err(Error::invalid(format!(
                "{what}: the value of {key:?} is {} bytes; at most {MAX_CONFIG_VALUE_BYTES}",
                value.len()
            )));
        }
        total += key.len() + value.len();
    }
    if total > MAX_CONFIG_BYTES {
        return Err(Error::invalid(format!(
            "{what} is {total} bytes in all; at most {MAX_CONFIG_BYTES}"
        )));
    }
    Ok(())
}

/// The capability a manifest declares to make outbound HTTP requests.
pub const HTTP_CAPABILITY: &str = "wasi:http";

/// Checks an `http_allow` entry: a lowercase host name or IPv4 address, optionally `:port`.
pub fn validate_http_host(entry: &str) -> Result<()> {
    let (host, port) = match entry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (entry, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "handler http_allow: {entry:?} must be a lowercase host name or IPv4 address, optionally with :port (e.g. api.example.com or 10.0.0.5:8080)"
        )))
    }
}

/// Checks secret names by [`validate_key`].
pub fn validate_secret_names(what: &str, names: &BTreeSet<String>) -> Result<()> {
    if names.len() > MAX_CONFIG_ENTRIES {
        return Err(Error::invalid(format!(
            "{what} names {} secrets; at most {MAX_CONFIG_ENTRIES}",
            names.len()
        )));
    }
    names.iter().try_for_each(|name| validate_key(what, name))
}
