//! Settings of the Consul handler registry and their checks.

use std::fmt;

use reqwest::header::HeaderValue;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Error, Result};

/// Settings of the Consul handler registry.
#[derive(Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsulSettings {
    /// Base URL of a Consul agent's HTTP API, e.g. `http://127.0.0.1:8500` (`http` or `https`).
    #[serde(default = "default_address")]
    pub address: String,
    /// Key prefix of the handlers: handler `name` is the key `<prefix><name>`. A `/` is added
    /// when missing; must not start with `/`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Key prefix of the schedules, as `prefix` is of the handlers.
    #[serde(default = "default_schedules_prefix")]
    pub schedules_prefix: String,
    /// Key prefix of the webhooks, as `prefix` is of the handlers.
    #[serde(default = "default_hooks_prefix")]
    pub hooks_prefix: String,
    /// Key prefix of the chat command bundles, as `prefix` is of the handlers.
    #[serde(default = "default_bundles_prefix")]
    pub bundles_prefix: String,
    /// Key prefix of the notification rules, as `prefix` is of the handlers.
    #[serde(default = "default_notifications_prefix")]
    pub notifications_prefix: String,
    /// Key prefix of the workflows, as `prefix` is of the handlers.
    #[serde(default = "default_workflows_prefix")]
    pub workflows_prefix: String,
    /// ACL token, sent as `X-Consul-Token`; needs `key_prefix` read (gateways) or write
    /// (management server) on the prefix. Never logged, redacted in `Debug`; better given as
    /// `FX_BACKENDS__REGISTRY__TOKEN` than in a file.
    #[serde(default)]
    #[schemars(extend("writeOnly" = true))]
    pub token: Option<String>,
    /// Datacenter to query (`?dc=`); the agent's own when unset.
    #[serde(default)]
    pub datacenter: Option<String>,
    /// Timeout of a request, in milliseconds; a blocking query gets its wait on top.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_address() -> String {
    "http://127.0.0.1:8500".into()
}
fn default_prefix() -> String {
    "ferrisfx/handlers/".into()
}
fn default_schedules_prefix() -> String {
    "ferrisfx/schedules/".into()
}
fn default_hooks_prefix() -> String {
    "ferrisfx/hooks/".into()
}
fn default_bundles_prefix() -> String {
    "ferrisfx/bundles/".into()
}
fn default_workflows_prefix() -> String {
    "ferrisfx/workflows/".into()
}
fn default_notifications_prefix() -> String {
    "ferrisfx/notifications/".into()
}
fn default_timeout_ms() -> u64 {
    5_000
}

impl Default for ConsulSettings {
    fn default() -> Self {
        ConsulSettings {
            address: default_address(),
            prefix: default_prefix(),
            schedules_prefix: default_schedules_prefix(),
            hooks_prefix: default_hooks_prefix(),
            bundles_prefix: default_bundles_prefix(),
            notifications_prefix: default_notifications_prefix(),
            workflows_prefix: default_workflows_prefix(),
            token: None,
            datacenter: None,
            timeout_ms: default_timeout_ms(),
        }
    }
}

impl fmt::Debug for ConsulSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulSettings")
            .field("address", &self.address)
            .field("prefix", &self.prefix)
            .field("schedules_prefix", &self.schedules_prefix)
            .field("hooks_prefix", &self.hooks_prefix)
            .field("bundles_prefix", &self.bundles_prefix)
            .field("notifications_prefix", &self.notifications_prefix)
            .field("workflows_prefix", &self.workflows_prefix)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("datacenter", &self.datacenter)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl ConsulSettings {
    /// Checks the settings without contacting Consul.
    pub fn validate(&self) -> Result<()> {
        let url = Url::parse(&self.address).map_err(|e| {
            Error::invalid(format!("consul address {:?} is not a url", self.address)).with_source(e)
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::invalid(format!(
                "consul address {:?} is not an http or https url",
                self.address
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::invalid(format!(
                "consul address {:?} must not have a query or fragment",
                self.address
            )));
        }
        if self.prefix.trim_matches('/').is_empty() || self.prefix.starts_with('/') {
            return Err(Error::invalid(format!(
                "consul key prefix {:?} must be a key path such as \"ferrisfx/handlers/\"",
                self.prefix
            )));
        }
        let prefixes = [
            ("prefix", &self.prefix, "ferrisfx/handlers/"),
            (
                "schedules_prefix",
                &self.schedules_prefix,
                "ferrisfx/schedules/",
            ),
            ("hooks_prefix", &self.hooks_prefix, "ferrisfx/hooks/"),
            ("bundles_prefix", &self.bundles_prefix, "ferrisfx/bundles/"),
            (
                "notifications_prefix",
                &self.notifications_prefix,
                "ferrisfx/notifications/",
            ),
            (
                "workflows_prefix",
                &self.workflows_prefix,
                "ferrisfx/workflows/",
            ),
        ];
        for (field, prefix, example) in prefixes {
            if prefix.trim_matches('/').is_empty() || prefix.starts_with('/') {
                return Err(Error::invalid(format!(
                    "consul {field} {prefix:?} must be a key path such as {example:?}"
                )));
            }
        }
        let folder = |p: &str| format!("{}/", p.trim_end_matches('/'));
        for (i, (a, pa, _)) in prefixes.iter().enumerate() {
            for (b, pb, _) in &prefixes[i + 1..] {
                let (fa, fb) = (folder(pa), folder(pb));
                if fa.starts_with(&fb) || fb.starts_with(&fa) {
                    return Err(Error::invalid(format!(
                        "consul {a} {pa:?} and {b} {pb:?} overlap: the keys of one would be read as entries of the other"
                    )));
                }
            }
        }
        if let Some(token) = &self.token {
            if HeaderValue::from_str(token).is_err() {
                return Err(Error::invalid(
                    "consul token contains characters not allowed in an http header",
                ));
            }
        }
        if self.datacenter.as_deref() == Some("") {
            return Err(Error::invalid(
                "consul datacenter must not be empty; leave it out for the agent's own",
            ));
        }
        if self.timeout_ms == 0 {
            return Err(Error::invalid("consul timeout_ms must be at least 1"));
        }
        Ok(())
    }
}
