//! Handlers: which events run which package, where, and within what limits.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{attribute_text, Event};
use crate::limits::{LimitOverrides, RetryPolicy};
use crate::validate::{validate_config, validate_http_host, validate_name, validate_secret_names};

/// The executor pool a handler runs in when none is named.
pub const DEFAULT_POOL: &str = "default";

/// A handler: events matching `filter` run the function in `package` on executor pool `pool`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handler {
    /// Unique name: lowercase letters, digits, `-`, `_` and `.`; 1 to 64 characters.
    pub name: String,
    /// Free text shown in the UI.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Which events this handler runs on.
    pub filter: Filter,
    /// The package whose function runs.
    pub package: PackageRef,
    /// The executor pool that runs it.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// Limits that override the package manifest's.
    #[serde(default, skip_serializing_if = "LimitOverrides::is_empty")]
    pub limits: LimitOverrides,
    /// What to do when an execution fails.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// A disabled handler matches nothing.
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Run events in warm instances kept from earlier events instead of a fresh instance per
    /// event (faster, but memory and globals survive from one event to the next, so one event
    /// can see another's data): only for trusted functions. An instance that trapped or broke
    /// a limit is never reused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_instances: bool,
    /// Configuration values handed to the function (`config.get` in the WIT world), over the
    /// defaults in the package's manifest. Anyone who can read the handler sees them: put
    /// credentials in `secrets`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Names of the executor's secrets this handler grants its function (`config.secret`). The
    /// package's manifest must declare each; the values never leave the executor.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secrets: BTreeSet<String>,
    /// Hosts the function may send HTTP requests to through `wasi:http`: `api.example.com`
    /// (any port) or `api.example.com:8443`. The package's manifest must declare the
    /// `wasi:http` capability; without an entry here no request leaves the sandbox.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub http_allow: BTreeSet<String>,
}

fn default_pool() -> String {
    DEFAULT_POOL.to_string()
}

fn enabled_default() -> bool {
    true
}

impl Handler {
    /// Checks every rule a stored handler must satisfy; the message names the offending field.
    pub fn validate(&self) -> Result<()> {
        validate_name("handler name", &self.name)?;
        validate_name("executor pool", &self.pool)?;
        self.filter.validate()?;
        self.package.validate()?;
        self.limits.validate()?;
        self.retry.validate()?;
        validate_config("handler config", &self.config)?;
        validate_secret_names("handler secrets", &self.secrets)?;
        self.http_allow
            .iter()
            .try_for_each(|host| validate_http_host(host))?;
        Ok(())
    }

    /// Whether this handler runs on `event`.
    pub fn matches(&self, event: &Event) -> bool {
        self.enabled && self.filter.matches(event)
    }
}

/// A reference to a package: a name and a version or an alias (`latest` by default).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageRef {
    /// Package name.
    pub name: String,
    /// An exact version (`1.2.0`) or an alias (`latest`, `stable`).
    #[serde(default = "latest")]
    pub version: String,
}

fn latest() -> String {
    crate::package::LATEST_ALIAS.to_string()
}

impl PackageRef {
    fn validate(&self) -> Result<()> {
        validate_name("package name", &self.name)?;
        if self.version.is_empty() {
            return Err(Error::invalid("package version or alias must not be empty"));
        }
        Ok(())
    }
}

impl std::fmt::Display for PackageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A filter over event attributes. In JSON, externally tagged:
/// `{"all": [{"exact": {"attribute": "type", "value": "com.example.hello"}}, {"not": {...}}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Filter {
    /// Every inner filter matches (true when empty).
    All(Vec<Filter>),
    /// At least one inner filter matches (false when empty).
    Any(Vec<Filter>),
    /// The inner filter does not match.
    Not(Box<Filter>),
    /// The attribute equals `value`.
    Exact(AttributeMatch),
    /// The attribute starts with `value`.
    Prefix(AttributeMatch),
    /// The attribute ends with `value`.
    Suffix(AttributeMatch),
}

/// One attribute and the text it is compared with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMatch {
    /// `type`, `source`, `subject`, `id`, `datacontenttype`, `dataschema` or an extension name.
    pub attribute: String,
    /// The text compared with the attribute's value.
    pub value: String,
}

impl Filter {
    /// `type` equals `value`: the most common filter.
    pub fn type_is(value: impl Into<String>) -> Filter {
        Filter::Exact(AttributeMatch {
            attribute: "type".into(),
            value: value.into(),
        })
    }

    /// Whether `event` passes this filter. An attribute the event lacks matches no leaf.
    pub fn matches(&self, event: &Event) -> bool {
        match self {
            Filter::All(filters) => filters.iter().all(|f| f.matches(event)),
            Filter::Any(filters) => filters.iter().any(|f| f.matches(event)),
            Filter::Not(filter) => !filter.matches(event),
            Filter::Exact(m) => attribute_text(event, &m.attribute).is_some_and(|v| v == m.value),
            Filter::Prefix(m) => {
                attribute_text(event, &m.attribute).is_some_and(|v| v.starts_with(&m.value))
            }
            Filter::Suffix(m) => {
                attribute_text(event, &m.attribute).is_some_and(|v| v.ends_with(&m.value))
            }
        }
    }

    /// Checks attribute names and nesting depth.
    pub fn validate(&self) -> Result<()> {
        self.validate_at(0)
    }

    fn validate_at(&self, depth: usize) -> Result<()> {
        if depth > 16 {
            return Err(Error::invalid("filter is nested more than 16 levels deep"));
        }
        match self {
            Filter::All(filters) | Filter::Any(filters) => {
                filters.iter().try_for_each(|f| f.validate_at(depth + 1))
            }
            Filter::Not(filter) => filter.validate_at(depth + 1),
            Filter::Exact(m) | Filter::Prefix(m) | Filter::Suffix(m) => {
                let name = &m.attribute;
                let valid = !name.is_empty()
                    && name.len() <= 20
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                if !valid {
                    return Err(Error::invalid(format!(
                        "filter attribute {name:?} is not a cloudevents attribute name (lowercase letters and digits, at most 20)"
                    )));
                }
                if matches!(self, Filter::Prefix(_) | Filter::Suffix(_)) && m.value.is_empty() {
                    return Err(Error::invalid(format!(
                        "filter on {name:?}: an empty prefix or suffix would match everything; use {{\"all\": []}} for that"
                    )));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::new_json_event;
    use crate::failure::FailureKind;
    use crate::grants::Grants;
    use crate::limits::Limits;
    use crate::validate::MAX_CONFIG_VALUE_BYTES;

    #[test]
    fn retry_policies_beyond_a_day_of_backoff_are_refused_and_executors_bound_them() {
        let handler = |retry: serde_json::Value| -> Handler {
            serde_json::from_value(serde_json::json!({
                "name": "h",
                "filter": {"all": []},
                "package": {"name": "p"},
                "retry": retry,
            }))
            .unwrap()
        };
        for retry in [
            serde_json::json!({"max_attempts": 3, "backoff_ms": 1000, "max_backoff_ms": 1_000_000_000_000_000u64}),
            serde_json::json!({"max_attempts": 3, "backoff_ms": u64::MAX, "max_backoff_ms": u64::MAX}),
            serde_json::json!({"max_attempts": 1000}),
        ] {
            let err = handler(retry.clone()).validate().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Invalid, "{retry}");
            assert!(err.message().contains("retry."), "{retry}: {err}");
        }
        handler(serde_json::json!({"max_attempts": 100, "backoff_ms": 1000, "max_backoff_ms": RetryPolicy::MAX_BACKOFF_MS}))
            .validate()
            .unwrap();
        // What an unvalidated invocation carries is bounded where it is used, and no delay
        // arithmetic overflows.
        let wild = RetryPolicy {
            max_attempts: u32::MAX,
            backoff_ms: u64::MAX,
            max_backoff_ms: u64::MAX,
            retry_limit_breaches: false,
        };
        let bounded = wild.bounded();
        assert_eq!(bounded.max_attempts, RetryPolicy::MAX_ATTEMPTS);
        assert_eq!(bounded.max_backoff_ms, RetryPolicy::MAX_BACKOFF_MS);
        for attempt in [0, 1, 2, 63, u32::MAX] {
            let delay = bounded.delay_after(attempt, 1.0);
            assert!(delay <= std::time::Duration::from_millis(RetryPolicy::MAX_BACKOFF_MS));
            let _ = wild.delay_after(attempt, 1.0);
        }
        let at = chrono::Utc::now()
            + chrono::Duration::from_std(bounded.delay_after(u32::MAX, 1.0)).unwrap();
        assert!(at > chrono::Utc::now());
    }

    #[test]
    fn grants_put_the_handler_config_over_the_manifest_and_keep_only_declared_secrets() {
        let manifest = crate::package::Manifest::parse(
            "name = \"p\"\nversion = \"1.0.0\"\nsecrets = [\"api-token\", \"db-url\"]\n\
             [config]\ngreeting = \"Hello\"\nregion = \"eu\"\n",
        )
        .unwrap();
        let handler: Handler = serde_json::from_value(serde_json::json!({
            "name": "h",
            "filter": {"all": []},
            "package": {"name": "p"},
            "config": {"greeting": "Howdy", "mode": "strict"},
            "secrets": ["api-token", "stolen"],
        }))
        .unwrap();
        handler.validate().unwrap();
        let grants = Grants::resolve(&manifest, &handler);
        let config: Vec<(&str, &str)> = grants
            .config
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            config,
            [("greeting", "Howdy"), ("mode", "strict"), ("region", "eu")]
        );
        assert_eq!(grants.secrets, BTreeSet::from(["api-token".to_string()]));
        assert_eq!(Grants::undeclared(&manifest, &handler), ["stolen"]);
    }

    #[test]
    fn http_hosts_are_granted_only_to_packages_that_declare_wasi_http() {
        for ok in ["api.example.com", "127.0.0.1:8080", "a-b.c"] {
            validate_http_host(ok).unwrap();
        }
        for bad in [
            "",
            "API.example.com",
            "x:0",
            "x:99999",
            "http://x",
            "a b",
            "[::1]:80",
        ] {
            assert!(validate_http_host(bad).is_err(), "{bad:?}");
        }
        let handler: Handler = serde_json::from_value(serde_json::json!({
            "name": "h", "filter": {"all": []}, "package": {"name": "p"},
            "http_allow": ["api.example.com"],
        }))
        .unwrap();
        let plain = crate::package::Manifest::parse("name = \"p\"\nversion = \"1.0.0\"\n").unwrap();
        assert!(Grants::resolve(&plain, &handler).http_allow.is_empty());
        let refusal = Grants::refusal(&plain, &handler).unwrap();
        assert_eq!(refusal.field, "http_allow");
        assert!(refusal
            .message
            .contains("does not declare the wasi:http capability"));
        let networked = crate::package::Manifest::parse(
            "name = \"p\"\nversion = \"1.0.0\"\ncapabilities = [\"wasi:http\"]\n",
        )
        .unwrap();
        assert_eq!(Grants::refusal(&networked, &handler), None);
        assert_eq!(
            Grants::resolve(&networked, &handler).http_allow,
            handler.http_allow
        );
        let unknown = crate::package::Manifest::parse(
            "name = \"p\"\nversion = \"1.0.0\"\ncapabilities = [\"wasi:sockets\"]\n",
        );
        assert!(unknown
            .unwrap_err()
            .message()
            .contains("not a capability FerrisFX offers"));
    }

    #[test]
    fn config_keys_secret_names_and_sizes_are_checked() {
        let mut handler: Handler = serde_json::from_value(serde_json::json!({
            "name": "h", "filter": {"all": []}, "package": {"name": "p"},
        }))
        .unwrap();
        handler.config.insert("bad key".into(), "x".into());
        assert!(handler
            .validate()
            .unwrap_err()
            .message()
            .contains("\"bad key\""));
        handler.config.clear();
        handler
            .config
            .insert("big".into(), "x".repeat(MAX_CONFIG_VALUE_BYTES + 1));
        assert!(handler
            .validate()
            .unwrap_err()
            .message()
            .contains("at most"));
        handler.config.clear();
        handler.secrets.insert("..data".into());
        assert!(handler
            .validate()
            .unwrap_err()
            .message()
            .contains("not starting with '.'"));
        let manifest = crate::package::Manifest::parse(
            "name = \"p\"\nversion = \"1.0.0\"\n[config]\n\"a b\" = \"x\"\n",
        );
        assert!(manifest.unwrap_err().message().contains("fx.toml [config]"));
    }

    #[test]
    fn retry_delays_double_up_to_the_cap_with_at_most_half_of_them_jittered() {
        let policy = RetryPolicy {
            max_attempts: 10,
            backoff_ms: 100,
            max_backoff_ms: 1_000,
            retry_limit_breaches: false,
        };
        let ms = |attempt, jitter| policy.delay_after(attempt, jitter).as_millis();
        assert_eq!(
            [ms(1, 1.0), ms(2, 1.0), ms(3, 1.0), ms(4, 1.0), ms(5, 1.0)],
            [100, 200, 400, 800, 1_000]
        );
        assert_eq!([ms(1, 0.0), ms(3, 0.0), ms(9, 0.0)], [50, 200, 500]);
        assert_eq!(ms(2, 0.5), 150);
        assert_eq!(ms(u32::MAX, 1.0), 1_000, "no overflow");
    }

    #[test]
    fn which_failures_are_retried_follows_the_policy() {
        let mut policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        for kind in [
            FailureKind::Trap,
            FailureKind::Timeout,
            FailureKind::FunctionError,
            FailureKind::Internal,
        ] {
            assert!(
                policy.retries(kind, 1) && policy.retries(kind, 2),
                "{kind:?}"
            );
            assert!(
                !policy.retries(kind, 3),
                "{kind:?}: the last attempt is not retried"
            );
        }
        assert!(!policy.retries(FailureKind::Package, 1));
        for kind in [
            FailureKind::MemoryLimit,
            FailureKind::FuelLimit,
            FailureKind::OutputLimit,
        ] {
            assert!(!policy.retries(kind, 1), "{kind:?}");
        }
        policy.retry_limit_breaches = true;
        assert!(policy.retries(FailureKind::MemoryLimit, 1));
        assert!(
            !RetryPolicy::default().retries(FailureKind::Trap, 1),
            "one attempt by default"
        );
    }

    fn event() -> Event {
        let mut e = new_json_event(
            "1",
            "/shop/eu",
            "com.example.order.created",
            serde_json::json!({}),
        )
        .unwrap();
        e.set_extension("tenant", "acme");
        e
    }

    fn m(attribute: &str, value: &str) -> AttributeMatch {
        AttributeMatch {
            attribute: attribute.into(),
            value: value.into(),
        }
    }

    #[test]
    fn filters_combine_exact_prefix_suffix_with_all_any_not() {
        let e = event();
        assert!(Filter::type_is("com.example.order.created").matches(&e));
        assert!(Filter::Prefix(m("source", "/shop/")).matches(&e));
        assert!(Filter::Suffix(m("type", ".created")).matches(&e));
        assert!(Filter::Exact(m("tenant", "acme")).matches(&e));
        assert!(
            !Filter::Exact(m("subject", "x")).matches(&e),
            "missing attribute never matches"
        );
        let f = Filter::All(vec![
            Filter::Prefix(m("type", "com.example.")),
            Filter::Any(vec![
                Filter::Exact(m("tenant", "other")),
                Filter::Suffix(m("source", "/eu")),
            ]),
            Filter::Not(Box::new(Filter::Exact(m(
                "type",
                "com.example.order.deleted",
            )))),
        ]);
        assert!(f.matches(&e));
        assert!(!Filter::Any(vec![]).matches(&e));
        assert!(Filter::All(vec![]).matches(&e));
    }

    #[test]
    fn filter_json_shape_is_externally_tagged() {
        let json = r#"{"all":[{"exact":{"attribute":"type","value":"a"}},{"not":{"prefix":{"attribute":"source","value":"/x"}}}]}"#;
        let f: Filter = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&f).unwrap(), json);
    }

    #[test]
    fn invalid_handlers_say_why() {
        let mut h = crate::testsupport::HandlerBuilder::new("Bad Name")
            .event_type("x")
            .package("hello")
            .build();
        assert!(h.validate().unwrap_err().message().contains("handler name"));
        h.name = "ok".into();
        h.filter = Filter::Prefix(m("Type!", "x"));
        assert!(h
            .validate()
            .unwrap_err()
            .message()
            .contains("filter attribute"));
        h.filter = Filter::type_is("x");
        h.limits.memory_mb = Some(1_000_000);
        assert!(h.validate().unwrap_err().message().contains("memory_mb"));
    }

    #[test]
    fn limits_layer_handler_over_manifest_over_defaults() {
        let manifest = LimitOverrides {
            memory_mb: Some(32),
            timeout_ms: Some(100),
            ..Default::default()
        };
        let handler = LimitOverrides {
            timeout_ms: Some(50),
            ..Default::default()
        };
        let l = Limits::resolve(&manifest, &handler);
        assert_eq!(
            (l.memory_mb, l.timeout_ms, l.concurrency),
            (32, 50, Limits::DEFAULT.concurrency)
        );
    }
}
