//! Bounded exponential backoff with jitter, shared by auto-auth and the secret scheduler.
//!
//! Each failure doubles the wait up to a ceiling; the actual wait is drawn between half and
//! all of it ("equal jitter"), so many agents restarted together do not retry in lockstep.

use std::time::Duration;

use rand::Rng;

/// The state of one retry sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    attempts: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            current: min,
            attempts: 0,
        }
    }

    /// The wait before the next attempt, and the sequence advanced.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.current;
        self.current = (self.current * 2).min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..=jitter_ms)
        };
        half + Duration::from_millis(extra)
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn reset(&mut self) {
        self.current = self.min;
        self.attempts = 0;
    }
}

/// `fraction` of `duration`, less up to `jitter` of that (e.g. 2/3 of a lease, minus up to 10%).
pub fn jittered_fraction(duration: Duration, fraction: f64, jitter: f64) -> Duration {
    let base = duration.as_secs_f64() * fraction;
    let cut = rand::thread_rng().gen_range(0.0..=jitter.max(0.0));
    Duration::from_secs_f64((base * (1.0 - cut)).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut previous_ceiling = Duration::ZERO;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(delay <= Duration::from_secs(2));
            assert!(delay >= Duration::from_millis(50));
            previous_ceiling = previous_ceiling.max(delay);
        }
        assert!(previous_ceiling >= Duration::from_secs(1));
        assert_eq!(backoff.attempts(), 20);
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn fraction_is_within_jitter() {
        for _ in 0..100 {
            let value = jittered_fraction(Duration::from_secs(300), 2.0 / 3.0, 0.1);
            assert!(value <= Duration::from_secs(200));
            assert!(value >= Duration::from_secs(180));
        }
    }
}
