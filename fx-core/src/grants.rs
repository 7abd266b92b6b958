//! What an invocation hands its function besides the event: configuration values, secret
//! names and HTTP hosts, resolved from a handler and the manifest of the package it runs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::handler::Handler;
use crate::package::Manifest;
use crate::validate::HTTP_CAPABILITY;

/// Why a handler may not run a package: the handler field at fault and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The handler's field (`secrets` or `http_allow`).
    pub field: &'static str,
    /// The reason, with what to change.
    pub message: String,
}

/// What an invocation hands its function besides the event: the configuration values (the
/// manifest's defaults under the handler's values) and the names of the secrets it may read
/// (granted by the handler and declared by the manifest). Secret values are looked up by the
/// executor, never carried here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Configuration keys and values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Secret names.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secrets: BTreeSet<String>,
    /// Hosts the function may send HTTP requests to.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub http_allow: BTreeSet<String>,
}

impl Grants {
    /// The grants of `handler` running a package with `manifest`. A secret the handler grants
    /// but the manifest does not declare is left out (the management server refuses such a
    /// handler; an alias moved to a version that stopped declaring it can still get here).
    pub fn resolve(manifest: &Manifest, handler: &Handler) -> Grants {
        let mut config = manifest.config.clone();
        config.extend(handler.config.iter().map(|(k, v)| (k.clone(), v.clone())));
        Grants {
            config,
            secrets: handler
                .secrets
                .intersection(&manifest.secrets)
                .cloned()
                .collect(),
            http_allow: if manifest.declares(HTTP_CAPABILITY) {
                handler.http_allow.clone()
            } else {
                BTreeSet::new()
            },
        }
    }

    /// Why `handler` cannot run a package with `manifest` as written: secrets it grants that
    /// the manifest does not declare, or HTTP hosts it allows to a package that does not
    /// declare `wasi:http`. `None` when it can.
    pub fn refusal(manifest: &Manifest, handler: &Handler) -> Option<Refusal> {
        let undeclared = Grants::undeclared(manifest, handler);
        if !undeclared.is_empty() {
            return Some(Refusal {
                field: "secrets",
                message: format!(
                    "handler {} grants secret(s) {} that package {}@{} does not declare: add them to `secrets` in its fx.toml, or remove them from the handler",
                    handler.name,
                    undeclared.join(", "),
                    manifest.name,
                    manifest.version
                ),
            });
        }
        if !handler.http_allow.is_empty() && !manifest.declares(HTTP_CAPABILITY) {
            return Some(Refusal {
                field: "http_allow",
                message: format!(
                    "handler {} allows HTTP requests, but package {}@{} does not declare the {HTTP_CAPABILITY} capability: add `capabilities = [\"{HTTP_CAPABILITY}\"]` to its fx.toml, or remove http_allow from the handler",
                    handler.name, manifest.name, manifest.version
                ),
            });
        }
        None
    }

    /// The secrets `handler` grants that `manifest` does not declare.
    pub fn undeclared(manifest: &Manifest, handler: &Handler) -> Vec<String> {
        handler
            .secrets
            .difference(&manifest.secrets)
            .cloned()
            .collect()
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.config.is_empty() && self.secrets.is_empty() && self.http_allow.is_empty()
    }
}
