//! Test support for the tests of every crate (feature `testsuite`, never in a production
//! build; fx-core's own unit tests have it without the feature): names no other test or run
//! uses, waiting for a condition with a deadline, a [`HandlerBuilder`] and execution fixtures;
//! for fx-core's own tests, a TLS-terminating proxy in front of a plain-HTTP test server
//! (`TlsProxy`, test-only: tokio-rustls is a dev-dependency).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

mod fixtures;
mod handler;
#[cfg(test)]
mod tls_proxy;
mod wait;

pub use fixtures::{execution, queued_execution};
pub use handler::HandlerBuilder;
#[cfg(test)]
pub use tls_proxy::{TestCertificates, TlsProxy};
pub use wait::{eventually, eventually_async, poll_until, CHECK_EVERY};

/// `prefix` followed by a suffix no other call (in this process or another, now or in an
/// earlier run) gives: the time in nanoseconds, the process id and a counter, each after a
/// `-`. Lowercase letters, digits and `-` when `prefix` is, so it is a valid handler, package,
/// topic, bucket or index name; replace the `-` where they are not allowed (a PostgreSQL
/// schema).
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{nanos:x}-{}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_keep_their_prefix() {
        let (a, b) = (unique("name"), unique("name"));
        assert_ne!(a, b);
        assert!(a.starts_with("name-") && b.starts_with("name-"), "{a} {b}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }
}
