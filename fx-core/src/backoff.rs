//! The one exponential backoff of the platform: waits that double from an initial one up to
//! a maximum, reset after a success. Every loop that retries a backend while it is unavailable
//! takes its waits from here.

use std::time::Duration;

/// Waits that double from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubling up to `max` (at least `initial`).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
        }
    }

    /// The wait to make now; the one after it is twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// The wait [`Backoff::next_delay`] gives next, without taking it (for a log line written
    /// before the wait).
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Back to the initial wait, after a success.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// Sleeps for [`Backoff::next_delay`].
    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_and_reset() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(50), ms(300));
        let waits: Vec<_> = (0..5).map(|_| backoff.next_delay()).collect();
        assert_eq!(waits, [ms(50), ms(100), ms(200), ms(300), ms(300)]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(50));
        // A maximum below the initial wait is the initial wait; huge waits do not overflow.
        let mut odd = Backoff::new(ms(500), ms(10));
        assert_eq!((odd.next_delay(), odd.next_delay()), (ms(500), ms(500)));
        let mut huge = Backoff::new(Duration::MAX / 2 + ms(1), Duration::MAX);
        huge.next_delay();
        assert_eq!(huge.next_delay(), Duration::MAX);
    }
}
