//! Exponential reconnect backoff for camera sources. Pure: the caller says
//! how long a run lasted; nothing here reads a clock.

use std::time::Duration;

/// Exponential reconnect backoff: 500 ms, doubling, at most 30 s; back to
/// the start after a run that stayed healthy for `healthy_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// First delay, and the delay after a reset.
    pub initial: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
    /// A run at least this long counts as healthy and resets the backoff.
    pub healthy_after: Duration,
    /// The delay the next call to `next_delay` returns.
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// 500 ms initial, x2, 30 s max, reset after 30 s healthy.
    pub fn new() -> Self {
        Self::with(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Duration::from_secs(30),
        )
    }

    /// A backoff with other bounds (`initial` is capped at `max`).
    pub fn with(initial: Duration, max: Duration, healthy_after: Duration) -> Self {
        let initial = initial.min(max);
        Backoff {
            initial,
            max,
            healthy_after,
            next: initial,
        }
    }

    /// Delay to wait before the next reconnect attempt; each call doubles the
    /// following one up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }

    /// The delay `next_delay` will return, without advancing.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Back to the initial delay.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// Records how long the last run stayed up; a healthy run resets the
    /// backoff. Returns true when it did.
    pub fn note_run(&mut self, ran_for: Duration) -> bool {
        let healthy = ran_for >= self.healthy_after;
        if healthy {
            self.reset();
        }
        healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sequence_doubles_to_cap_and_resets() {
        let mut b = Backoff::new();
        let got: Vec<u64> = (0..10).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            got,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]
        );
        assert!(!b.note_run(Duration::from_secs(5)));
        assert_eq!(b.peek(), Duration::from_secs(30));
        assert!(b.note_run(Duration::from_secs(30)));
        assert_eq!(b.next_delay(), Duration::from_millis(500));
        b.next_delay();
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    proptest! {
        #[test]
        fn delays_are_monotone_and_bounded(init_ms in 1u64..10_000, max_ms in 1u64..100_000, n in 1usize..80) {
            let mut b = Backoff::with(Duration::from_millis(init_ms), Duration::from_millis(max_ms), Duration::from_secs(1));
            let mut prev = Duration::ZERO;
            for _ in 0..n {
                let d = b.next_delay();
                prop_assert!(d >= prev);
                prop_assert!(d <= Duration::from_millis(max_ms));
                prop_assert!(d >= Duration::from_millis(init_ms.min(max_ms)));
                prev = d;
            }
        }
    }
}
