//! The executor does not trust the invocation message: anyone who can write to
//! `fx.invocations.<pool>` could ask for secrets its package never declared or for more memory
//! and time than the pool is sized for. Before running, every invocation is checked against its
//! package's own manifest and the pool's ceilings; one that asks for more fails as `refused`,
//! naming what it asked for.

use fx_core::execution::{Failure, FailureKind, Invocation};
use fx_core::limits::Limits;
use fx_core::package::Manifest;
use fx_core::validate::HTTP_CAPABILITY;
use serde::{Deserialize, Serialize};

/// The most one invocation on this executor's pool may ask for. Defaults: the largest values a
/// handler may set (`Limits::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolCeilings {
    /// Linear memory per invocation, in MiB.
    #[serde(default = "max_memory_mb")]
    pub memory_mb: u32,
    /// Wall-clock timeout per invocation, in milliseconds.
    #[serde(default = "max_timeout_ms")]
    pub timeout_ms: u64,
    /// Output bytes per invocation.
    #[serde(default = "max_output_bytes")]
    pub max_output_bytes: u64,
    /// Log bytes per invocation.
    #[serde(default = "max_log_bytes")]
    pub max_log_bytes: u64,
}

fn max_memory_mb() -> u32 {
    Limits::MAX.memory_mb
}
fn max_timeout_ms() -> u64 {
    Limits::MAX.timeout_ms
}
fn max_output_bytes() -> u64 {
    Limits::MAX.max_output_bytes
}
fn max_log_bytes() -> u64 {
    Limits::MAX.max_log_bytes
}

impl Default for PoolCeilings {
    fn default() -> Self {
        PoolCeilings {
            memory_mb: max_memory_mb(),
            timeout_ms: max_timeout_ms(),
            max_output_bytes: max_output_bytes(),
            max_log_bytes: max_log_bytes(),
        }
    }
}

/// Checks `invocation` against the `manifest` of the package it runs and the pool's
/// `ceilings` (and `pool_memory_mb`, the memory of one pool slot): `Err` with a `refused`
/// failure that names the first thing it asks for beyond them.
pub fn admit(
    invocation: &Invocation,
    manifest: &Manifest,
    ceilings: &PoolCeilings,
    pool_memory_mb: u32,
) -> Result<(), Failure> {
    let refuse = |message: String| {
        Err(Failure {
            kind: FailureKind::Refused,
            message,
        })
    };
    let undeclared: Vec<&str> = invocation
        .grants
        .secrets
        .iter()
        .filter(|name| !manifest.secrets.contains(*name))
        .map(String::as_str)
        .collect();
    if !undeclared.is_empty() {
        return refuse(format!(
            "the invocation grants secrets that package {}@{} does not declare: {}",
            manifest.name,
            manifest.version,
            undeclared.join(", ")
        ));
    }
    if !invocation.grants.http_allow.is_empty() && !manifest.declares(HTTP_CAPABILITY) {
        return refuse(format!(
            "the invocation allows outbound HTTP but package {}@{} does not declare the {HTTP_CAPABILITY} capability",
            manifest.name, manifest.version
        ));
    }
    let limits = &invocation.limits;
    let memory_ceiling = ceilings.memory_mb.min(pool_memory_mb);
    let over = [
        (
            "memory_mb",
            u64::from(limits.memory_mb),
            u64::from(memory_ceiling),
        ),
        ("timeout_ms", limits.timeout_ms, ceilings.timeout_ms),
        (
            "max_output_bytes",
            limits.max_output_bytes,
            ceilings.max_output_bytes,
        ),
        (
            "max_log_bytes",
            limits.max_log_bytes,
            ceilings.max_log_bytes,
        ),
    ]
    .into_iter()
    .find(|(_, asked, most)| asked > most);
    if let Some((name, asked, most)) = over {
        return refuse(format!(
            "the invocation asks for {name} = {asked}; pool {} allows at most {most}",
            invocation.handler.pool
        ));
    }
    if limits.memory_mb == 0 || limits.timeout_ms == 0 || limits.concurrency == 0 {
        return refuse(
            "the invocation has a zero limit (memory_mb, timeout_ms or concurrency)".into(),
        );
    }
    Ok(())
}
