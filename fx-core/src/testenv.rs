//! How tests find the real servers the test command starts: each backend's address is in an
//! `FX_TEST_*` variable. Without it a test says it skipped; under `CI=true` a missing variable
//! is a failure, so CI never passes by skipping.

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
