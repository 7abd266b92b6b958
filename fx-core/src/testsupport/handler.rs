//! [`HandlerBuilder`]: a handler for tests, naming only what the test is about.

use crate::handler::{Filter, Handler, PackageRef, DEFAULT_POOL};
use crate::limits::{LimitOverrides, RetryPolicy};
use crate::registry::StoredHandler;

/// Builds a [`Handler`] for a test:
/// `HandlerBuilder::new("greeter").event_type("com.example.hello").package("hello").build()`.
///
/// What is not set is what a handler's smallest JSON gives, and a filter and package of the
/// `hello` example: no description, a filter on events of type `com.example.hello`, package
/// `hello` at `latest`, the default pool, no limit overrides, the default retry policy,
/// enabled, a fresh instance per event, and no config, secrets or HTTP hosts.
#[derive(Debug, Clone)]
#[must_use]
pub struct HandlerBuilder {
    handler: Handler,
}

impl HandlerBuilder {
    /// A handler named `name` with the defaults above.
    pub fn new(name: impl Into<String>) -> Self {
        HandlerBuilder {
            handler: Handler {
                name: name.into(),
                description: String::new(),
                filter: Filter::type_is("com.example.hello"),
                package: PackageRef {
                    name: "hello".into(),
                    version: crate::package::LATEST_ALIAS.into(),
                },
                pool: DEFAULT_POOL.into(),
                limits: LimitOverrides::default(),
                retry: RetryPolicy::default(),
                enabled: true,
                reuse_instances: false,
                config: Default::default(),
                secrets: Default::default(),
                http_allow: Default::default(),
            },
        }
    }

    /// Its description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.handler.description = description.into();
        self
    }

    /// Runs on events whose `type` is `event_type` (the filter [`Filter::type_is`]).
    pub fn event_type(self, event_type: impl Into<String>) -> Self {
        self.filter(Filter::type_is(event_type))
    }

    /// Runs on events that match `filter`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.handler.filter = filter;
        self
    }

    /// Runs package `name` (at the version set, `latest` by default).
    pub fn package(mut self, name: impl Into<String>) -> Self {
        self.handler.package.name = name.into();
        self
    }

    /// Runs this version (or alias) of its package.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.handler.package.version = version.into();
        self
    }

    /// Runs in executor pool `pool`.
    pub fn pool(mut self, pool: impl Into<String>) -> Self {
        self.handler.pool = pool.into();
        self
    }

    /// Overrides the package's limits with `limits`.
    pub fn limits(mut self, limits: LimitOverrides) -> Self {
        self.handler.limits = limits;
        self
    }

    /// Retries failed executions as `retry` says.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.handler.retry = retry;
        self
    }

    /// Runs events in warm instances (`true`) or a fresh instance per event (`false`).
    pub fn reuse_instances(mut self, reuse: bool) -> Self {
        self.handler.reuse_instances = reuse;
        self
    }

    /// The handler.
    pub fn build(self) -> Handler {
        self.handler
    }

    /// The handler as a registry stores it, at `revision`.
    pub fn stored(self, revision: u64) -> StoredHandler {
        StoredHandler {
            handler: self.handler,
            revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_those_of_a_handlers_smallest_json() {
        let json = serde_json::json!({
            "name": "greeter",
            "filter": {"exact": {"attribute": "type", "value": "com.example.hello"}},
            "package": {"name": "hello"},
        });
        let parsed: Handler = serde_json::from_value(json).unwrap();
        assert_eq!(HandlerBuilder::new("greeter").build(), parsed);
        assert!(parsed.validate().is_ok());
    }

    #[test]
    fn each_setter_sets_its_field() {
        let limits = LimitOverrides {
            memory_mb: Some(32),
            ..LimitOverrides::default()
        };
        let retry = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let h = HandlerBuilder::new("h")
            .description("d")
            .event_type("t")
            .package("p")
            .version("1.0.0")
            .pool("fast")
            .limits(limits.clone())
            .retry(retry.clone())
            .reuse_instances(true)
            .build();
        assert_eq!(
            (h.name.as_str(), h.description.as_str(), &h.filter),
            ("h", "d", &Filter::type_is("t"))
        );
        assert_eq!(
            (h.package.name.as_str(), h.package.version.as_str()),
            ("p", "1.0.0")
        );
        assert_eq!(
            (h.pool.as_str(), &h.limits, &h.retry),
            ("fast", &limits, &retry)
        );
        assert!(h.reuse_instances && h.enabled);
        let stored = HandlerBuilder::new("h").stored(7);
        assert_eq!((stored.handler.name.as_str(), stored.revision), ("h", 7));
    }
}
