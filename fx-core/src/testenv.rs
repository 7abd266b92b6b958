//! How tests find the real servers the test command starts: each backend's address is in an
//! `FX_TEST_*` variable. Without it a test says it skipped; under `CI=true` a missing variable
//! is a failure, so CI never passes by skipping. A server the test command cannot start (no
//! Consul can be installed where CI runs) uses [`optional_backend`] instead, and its backend
//! is also tested against a double that always runs.

/// The value of `var`, or `None` after printing that the test is skipped. Under `CI=true` a
/// missing variable panics (test-only helper: panicking is how a test fails).
#[allow(clippy::panic)]
pub fn backend(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: {var} is not set, and CI=true forbids skipping: run the tests through infra/scripts/test.sh")
        }
        _ => {
            eprintln!(
                "skipped {test}: set {var} (infra/scripts/test.sh starts the server and sets it)"
            );
            None
        }
    }
}

/// The value of `var`, or `None` after printing that the test is skipped, even under `CI=true`:
/// for a real server the test command cannot start (Consul), whose tests run when someone
/// points the variable at one. Use it only for a backend whose tests also run against a double
/// every time, so that CI still covers it.
pub fn optional_backend(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            eprintln!("skipped {test}: set {var} to run it against a real server (optional, also under CI=true)");
            None
        }
    }
}
