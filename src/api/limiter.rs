//! The rate limit on calls without a valid token, per peer address.
//!
//! Every call is audited, and an anonymous call can't be made to pay for
//! its record — so an anonymous flood would otherwise become a flood of
//! audit records. Each peer may make [`Limits::per_minute`] anonymous calls
//! in a clock minute; those are answered and audited one by one. Above
//! that a call is refused `RESOURCE_EXHAUSTED` with no record of its own,
//! and the refusals of the minute become one summary record per peer.
//!
//! Memory is bounded: at most [`Limits::peers`] peers are counted per
//! minute; the peers beyond that share one counter (and one summary), so a
//! flood from many addresses is limited together.

use std::collections::HashMap;
use std::net::IpAddr;

/// What the limiter allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Anonymous calls a peer may make per clock minute.
    pub per_minute: u32,
    /// Peers counted one by one per minute.
    pub peers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { per_minute: 30, peers: 10_000 }
    }
}

/// Whether an anonymous call may go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Refuse,
}

/// Who was refused, how often, in which minute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusals {
    /// The minute (Unix seconds / 60).
    pub minute: i64,
    /// `None` for the peers beyond the counted ones, together.
    pub peer: Option<IpAddr>,
    pub refused: u64,
}

#[derive(Default)]
struct Count {
    calls: u32,
    refused: u64,
}

/// The counts of one minute. Pure: the caller passes the minute.
pub struct Limiter {
    limits: Limits,
    minute: i64,
    peers: HashMap<IpAddr, Count>,
    others: Count,
}

impl Limiter {
    pub fn new(limits: Limits) -> Limiter {
        Limiter { limits, minute: i64::MIN, peers: HashMap::new(), others: Count::default() }
    }

    /// Counts an anonymous call from `peer` (unknown peers count with the
    /// others) in `minute`. Returns the verdict and, when the minute
    /// turned, the previous minute's refusals to record.
    pub fn check(&mut self, peer: Option<IpAddr>, minute: i64) -> (Verdict, Vec<Refusals>) {
        let done = self.roll(minute);
        let limit = self.limits.per_minute;
        let count = match peer {
            Some(p) if self.peers.contains_key(&p) || self.peers.len() < self.limits.peers => {
                self.peers.entry(p).or_default()
            }
            _ => &mut self.others,
        };
        let verdict = if count.calls < limit {
            count.calls += 1;
            Verdict::Allow
        } else {
            count.refused += 1;
            Verdict::Refuse
        };
        (verdict, done)
    }

    /// Ends the minute if `minute` is a later one, returning its refusals.
    pub fn roll(&mut self, minute: i64) -> Vec<Refusals> {
        if minute <= self.minute {
            return Vec::new();
        }
        let ended = self.minute;
        let mut out: Vec<Refusals> = self
            .peers
            .drain()
            .filter(|(_, c)| c.refused > 0)
            .map(|(p, c)| Refusals { minute: ended, peer: Some(p), refused: c.refused })
            .collect();
        if self.others.refused > 0 {
            out.push(Refusals { minute: ended, peer: None, refused: self.others.refused });
        }
        self.others = Count::default();
        self.minute = minute;
        out.sort_by_key(|r| r.peer);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn a_peer_over_its_limit_is_refused_and_summarised_when_the_minute_ends() {
        let mut l = Limiter::new(Limits { per_minute: 3, peers: 100 });
        let verdicts: Vec<Verdict> = (0..5).map(|_| l.check(ip(1), 7).0).collect();
        assert_eq!(verdicts, [Verdict::Allow, Verdict::Allow, Verdict::Allow, Verdict::Refuse, Verdict::Refuse]);
        assert_eq!(l.check(ip(2), 7).0, Verdict::Allow, "another peer has its own count");
        let (v, done) = l.check(ip(1), 8);
        assert_eq!(v, Verdict::Allow, "a new minute, a new count");
        assert_eq!(done, vec![Refusals { minute: 7, peer: ip(1), refused: 2 }]);
        assert!(l.roll(8).is_empty(), "a minute is summarised once");
    }

    #[test]
    fn memory_is_bounded_by_sharing_one_count_beyond_the_peer_limit() {
        let mut l = Limiter::new(Limits { per_minute: 2, peers: 10 });
        for n in 0..200u8 {
            l.check(ip(n), 1);
        }
        assert!(l.peers.len() <= 10);
        let done = l.roll(2);
        let others = done.iter().find(|r| r.peer.is_none()).expect("the others are summarised together");
        assert_eq!(others.refused, 190 - 2, "190 peers beyond the limit share two calls");
    }
}
