//! Waiting for a condition with a deadline: a test that waits fails after its timeout, with a
//! message naming what it waited for and for how long, instead of hanging.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

/// How often [`eventually`] and [`eventually_async`] check their condition.
pub const CHECK_EVERY: Duration = Duration::from_millis(10);

/// Waits until `condition` holds, checking it every [`CHECK_EVERY`]; fails after `timeout`
/// with "timed out after {timeout} waiting until {what}".
pub async fn eventually(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    poll_until(what, timeout, CHECK_EVERY, || {
        std::future::ready(if condition() { Ok(()) } else { Err("") })
    })
    .await
}

/// [`eventually`] with a condition that is a future (an API call, a query).
pub async fn eventually_async<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll_until(what, timeout, CHECK_EVERY, || {
        let holds = condition();
        async move {
            if holds.await {
                Ok(())
            } else {
                Err("")
            }
        }
    })
    .await
}

/// Runs `probe` every `every` until it gives `Ok`, and returns that value; after `timeout`
/// fails with "timed out after {timeout} waiting until {what}: {the last Err}" (what the
/// probe saw last, shown when not empty).
// Test support: a wait that times out fails the test, by panicking as any assertion does.
#[allow(clippy::panic)]
pub async fn poll_until<T, E, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = tokio::time::Instant::now();
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        if start.elapsed() >= timeout {
            let last = last.to_string();
            if last.is_empty() {
                panic!("timed out after {timeout:?} waiting until {what}");
            }
            panic!("timed out after {timeout:?} waiting until {what}: {last}");
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_condition_that_comes_true_ends_the_wait() {
        let mut checks = 0;
        eventually("the third check", Duration::from_secs(5), || {
            checks += 1;
            checks == 3
        })
        .await;
        assert_eq!(checks, 3);
        let counter = AtomicU32::new(0);
        let calls = &counter;
        eventually_async("the second call", Duration::from_secs(5), || async move {
            calls.fetch_add(1, Ordering::Relaxed) == 1
        })
        .await;
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        let mut n = 0;
        let value = poll_until("a value", Duration::from_secs(5), CHECK_EVERY, || {
            n += 1;
            std::future::ready(if n < 3 { Err(n) } else { Ok(n * 10) })
        })
        .await;
        assert_eq!(value, 30);
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 50ms waiting until nothing happens: still 7")]
    async fn a_wait_that_times_out_names_what_it_waited_for_how_long_and_what_it_saw() {
        poll_until(
            "nothing happens",
            Duration::from_millis(50),
            CHECK_EVERY,
            || std::future::ready(Err::<(), _>("still 7")),
        )
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 20ms waiting until never")]
    async fn eventually_fails_after_its_timeout() {
        eventually("never", Duration::from_millis(20), || false).await;
    }
}
