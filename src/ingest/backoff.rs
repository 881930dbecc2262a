//! Capped exponential backoff with jitter, for retries against a store that
//! is unavailable. A retry loop never spins: a 2-5 % failure rate once built
//! a week-long backlog elsewhere because retries were neither paced nor
//! bounded.

use std::time::Duration;

#[derive(Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
    jitter_state: u64,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max, next: first, jitter_state: 0x2545_F491_4F6C_DD1D }
    }

    /// The next delay: doubles up to `max`, with up to a quarter of jitter so
    /// that many consumers don't retry in step.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        self.jitter_state ^= self.jitter_state << 13;
        self.jitter_state ^= self.jitter_state >> 7;
        self.jitter_state ^= self.jitter_state << 17;
        let quarter = base.as_millis() as u64 / 4;
        let jitter = if quarter == 0 { 0 } else { self.jitter_state % quarter };
        base + Duration::from_millis(jitter)
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert!((100..125).contains(&d[0]), "{d:?}");
        assert!((200..250).contains(&d[1]), "{d:?}");
        assert!(d[5] >= 1000 && d[5] < 1250, "{d:?}");
        b.reset();
        assert!(b.next_delay().as_millis() < 125);
    }
}
