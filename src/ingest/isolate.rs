//! Isolating what the store refuses: a batch whose data the database
//! refuses (a [`StoreError::Refused`](crate::store::StoreError)) is bisected
//! until the refused message is found; that message is dead-lettered with
//! `STORE_REJECTED`, its SQLSTATE and the scrubbed message, and the rest
//! commits as usual.
//!
//! The search commits as it goes: each attempt is a prefix of what is left
//! (`items[lo..end]`), in one transaction with the offsets it covers (a
//! prefix of a batch is a prefix of each of its partitions, so the offsets
//! advance exactly as a smaller batch's would). A prefix that commits is
//! done; one that is refused halves the search. So a crash at any point
//! leaves a committed prefix and its offsets, and the next run consumes the
//! rest again — exactly once, as for any batch.
//!
//! Cost: after the batch's own failed attempt, finding one refused message
//! among `n` takes at most ⌈log2 n⌉ attempts, then one more commits the
//! rest with the refused message as a dead letter — ⌈log2 n⌉ + 1
//! transactions beyond the batch's own. Each further refused message in the
//! same batch costs the same again, over what is left.
//!
//! The first attempt takes the decoded messages as they are; an attempt
//! after it decodes its messages again from their bytes, which the batch
//! shares rather than copies (decoding is pure, so the result is the same).
//! A batch that commits at once therefore copies neither a payload nor an
//! event, and one that needs more attempts pays a decode per message and
//! attempt instead — retries are rare, copies would be on every batch.
//!
//! This is a pure state machine: the consumer (and replay) drive it with
//! the store, so the search is unit-tested without one.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::events::{DecodeLimits, Reason, Rejection};
use crate::projection::{Decoded, MessageBytes, Origin, Prior};
use crate::store::OffsetAdvance;

/// Why the store refused an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub sqlstate: String,
    /// Scrubbed, as `StoreError::Refused` carries it.
    pub detail: String,
}

/// The store refused a message even as a dead letter: nothing more can be
/// isolated, and nothing may be dropped.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the store refuses even the dead letter of the message at {topic}/{partition}@{offset}: {detail}")]
pub struct Unisolable {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub detail: String,
}

/// A message found to be refused, for the log.
#[derive(Clone, Debug)]
pub struct Isolated {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub sqlstate: String,
}

/// A message's coordinates and bytes, kept to decode it again for an attempt
/// after the first.
#[derive(Debug)]
struct Kept {
    origin: Origin,
    prior: Prior,
    key: Option<MessageBytes>,
    payload: MessageBytes,
}

/// A batch being committed, whole or — once the store refused it — in
/// pieces.
#[derive(Debug)]
pub struct BatchCommit {
    items: Vec<Kept>,
    /// The messages as decoded, until the first attempt takes them.
    decoded: Option<Vec<Decoded>>,
    /// Messages found refused by the store, by index: each later attempt
    /// holds them as `STORE_REJECTED` dead letters.
    store_rejected: BTreeMap<usize, Rejection>,
    limits: DecodeLimits,
    /// `items[..lo]` are committed.
    lo: usize,
    /// The attempt in flight is `items[lo..end]`.
    end: usize,
    /// `items[lo..hi]` is known to be refused, and why.
    refused: Option<(usize, Refusal)>,
    /// The next stored offset of each partition the batch covers.
    expected: BTreeMap<(Arc<str>, i32), i64>,
    /// Attempts beyond the first.
    extra_attempts: usize,
}

impl BatchCommit {
    /// A batch starting at the offsets in `advances` (their `expected`).
    /// Without advances (a replay), no offsets move. `limits` must be the
    /// ones `decoded` was decoded under.
    pub fn new(decoded: Vec<Decoded>, advances: &[OffsetAdvance], limits: &DecodeLimits) -> BatchCommit {
        let expected = advances.iter().map(|a| ((Arc::from(a.topic.as_str()), a.partition), a.expected)).collect();
        let items: Vec<Kept> = decoded
            .iter()
            .map(|d| Kept { origin: d.origin.clone(), prior: d.prior, key: d.key.clone(), payload: d.payload.clone() })
            .collect();
        let end = items.len();
        BatchCommit {
            items,
            decoded: Some(decoded),
            store_rejected: BTreeMap::new(),
            limits: *limits,
            lo: 0,
            end,
            refused: None,
            expected,
            extra_attempts: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.lo == self.items.len()
    }

    /// Attempts after the first (transactions the isolation cost).
    pub fn extra_attempts(&self) -> usize {
        self.extra_attempts
    }

    /// Whether the batch is being searched for a refused message.
    pub fn isolating(&self) -> bool {
        self.refused.is_some()
    }

    /// The messages left to commit, from the next one.
    pub fn remaining(&self) -> usize {
        self.items.len() - self.lo
    }

    /// The attempt to make: its messages and its offset advances.
    pub fn attempt(&mut self) -> (Vec<Decoded>, Vec<OffsetAdvance>) {
        let items = match self.decoded.take() {
            // The first attempt is always the whole batch.
            Some(decoded) => decoded,
            None => (self.lo..self.end).map(|i| self.decode_again(i)).collect(),
        };
        let mut last: BTreeMap<(Arc<str>, i32), i64> = BTreeMap::new();
        for d in items.iter().filter(|d| d.prior == Prior::New) {
            let e = last.entry((d.origin.topic.clone(), d.origin.partition)).or_insert(d.origin.offset);
            *e = (*e).max(d.origin.offset);
        }
        let advances = last
            .into_iter()
            .filter_map(|(key, offset)| {
                let expected = *self.expected.get(&key)?;
                Some(OffsetAdvance { topic: key.0.to_string(), partition: key.1, expected, next: offset + 1 })
            })
            .collect();
        (items, advances)
    }

    /// The attempt committed with `advances`. Returns the message found
    /// refused on the way, if the next attempt dead-letters one.
    pub fn committed(&mut self, advances: &[OffsetAdvance]) -> Option<Isolated> {
        for a in advances {
            self.expected.insert((Arc::from(a.topic.as_str()), a.partition), a.next);
        }
        self.lo = self.end;
        if self.is_done() {
            return None;
        }
        self.extra_attempts += 1;
        let (hi, refusal) = self.refused.take().expect("a partial commit only while isolating");
        if hi - self.lo == 1 {
            // items[lo..lo+1] is what was refused.
            return Some(self.dead_letter(refusal));
        }
        self.end = self.lo + (hi - self.lo) / 2;
        self.refused = Some((hi, refusal));
        None
    }

    /// The attempt was refused. Returns the message found refused, if this
    /// pins it down; an error if that message was already a dead letter.
    pub fn refused(&mut self, refusal: Refusal) -> Result<Option<Isolated>, Unisolable> {
        self.extra_attempts += 1;
        if self.end - self.lo == 1 {
            let d = &self.items[self.lo];
            if self.store_rejected.contains_key(&self.lo) {
                return Err(Unisolable {
                    topic: d.origin.topic.to_string(),
                    partition: d.origin.partition,
                    offset: d.origin.offset,
                    detail: refusal.detail,
                });
            }
            return Ok(Some(self.dead_letter(refusal)));
        }
        let hi = self.end;
        self.end = self.lo + (hi - self.lo) / 2;
        self.refused = Some((hi, refusal));
        Ok(None)
    }

    /// Message `i` for an attempt after the first: decoded again from its
    /// bytes, or the dead letter the store's refusal made it.
    fn decode_again(&self, i: usize) -> Decoded {
        let k = &self.items[i];
        let mut d = Decoded::new(k.origin.clone(), k.prior, k.key.clone(), k.payload.clone(), &self.limits);
        if let Some(rejection) = self.store_rejected.get(&i) {
            d.result = Err(rejection.clone());
        }
        d
    }

    /// Turns `items[lo]` into a `STORE_REJECTED` dead letter and makes the
    /// next attempt everything left.
    fn dead_letter(&mut self, refusal: Refusal) -> Isolated {
        self.end = self.items.len();
        self.refused = None;
        self.store_rejected.insert(self.lo, Rejection::new(Reason::StoreRejected, &refusal.detail));
        let d = &self.items[self.lo];
        Isolated {
            topic: d.origin.topic.clone(),
            partition: d.origin.partition,
            offset: d.origin.offset,
            sqlstate: refusal.sqlstate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::DecodeLimits;
    use crate::projection::Origin;

    fn batch(n: usize) -> Vec<Decoded> {
        (0..n)
            .map(|i| {
                let origin =
                    Origin { topic: Arc::from(if i % 3 == 0 { "a" } else { "b" }), partition: 0, offset: i as i64 };
                Decoded::new(origin, Prior::New, None, format!("m{i}").into_bytes().into(), &DecodeLimits::default())
            })
            .collect()
    }

    fn refusal() -> Refusal {
        Refusal { sqlstate: "23514".into(), detail: "SQLSTATE 23514: refused".into() }
    }

    /// Drives a batch against a "store" that refuses any attempt holding
    /// one of `poison` (by offset) as it was sent; returns the committed
    /// offsets in order, the dead-lettered ones and the transactions used.
    fn drive(n: usize, poison: &[i64]) -> (Vec<i64>, Vec<i64>, usize) {
        let items = batch(n);
        let advances = vec![
            OffsetAdvance { topic: "a".into(), partition: 0, expected: 0, next: 0 },
            OffsetAdvance { topic: "b".into(), partition: 0, expected: 0, next: 0 },
        ];
        let mut b = BatchCommit::new(items, &advances, &DecodeLimits::default());
        let (mut committed, mut dead, mut transactions) = (Vec::new(), Vec::new(), 0);
        let mut stored: BTreeMap<String, i64> = BTreeMap::new();
        while !b.is_done() {
            let (attempt, advances) = b.attempt();
            transactions += 1;
            assert!(transactions < 1000, "no progress");
            let refused = attempt.iter().any(|d| {
                poison.contains(&d.origin.offset) && !matches!(&d.result, Err(r) if r.reason == Reason::StoreRejected)
            });
            if refused {
                b.refused(refusal()).unwrap();
                continue;
            }
            for a in &advances {
                // The offsets advance as a compare-and-set would.
                assert_eq!(stored.get(&a.topic).copied().unwrap_or(0), a.expected, "{a:?}");
                stored.insert(a.topic.clone(), a.next);
            }
            for d in &attempt {
                match &d.result {
                    Err(r) if r.reason == Reason::StoreRejected => dead.push(d.origin.offset),
                    _ => committed.push(d.origin.offset),
                }
            }
            b.committed(&advances);
        }
        let last = |t: &str| (0..n as i64).filter(|i| (i % 3 == 0) == (t == "a")).max().map_or(0, |m| m + 1);
        assert_eq!(stored.get("a").copied().unwrap_or(0), last("a"));
        assert_eq!(stored.get("b").copied().unwrap_or(0), last("b"));
        (committed, dead, transactions)
    }

    #[test]
    fn a_clean_batch_is_one_transaction() {
        let (committed, dead, t) = drive(100, &[]);
        assert_eq!((committed.len(), dead.len(), t), (100, 0, 1));
    }

    #[test]
    fn one_refused_message_is_found_in_log2_attempts_and_the_rest_commits_once() {
        for n in [1usize, 2, 3, 7, 100, 500, 5000] {
            let bound = 2 + (n as f64).log2().ceil() as usize;
            for p in [0, n / 3, n / 2, n - 1] {
                let (committed, dead, t) = drive(n, &[p as i64]);
                assert_eq!(dead, vec![p as i64], "n={n} p={p}");
                let want: Vec<i64> = (0..n as i64).filter(|&i| i != p as i64).collect();
                assert_eq!(committed, want, "n={n} p={p}: every other message once, in order");
                assert!(t <= bound, "n={n} p={p}: {t} transactions, bound {bound}");
            }
        }
    }

    #[test]
    fn several_refused_messages_are_each_isolated() {
        let poison = [3, 4, 250, 499];
        let (committed, dead, t) = drive(500, &poison);
        assert_eq!(dead, poison.to_vec());
        assert_eq!(committed.len(), 496);
        assert!(t <= 1 + poison.len() * (1 + 9), "{t}");
    }

    /// The first attempt gets the messages as decoded; a later one decodes
    /// them again to the same events and rejections. Neither copies a
    /// payload: every attempt shares the bytes polled from the client.
    #[test]
    fn attempts_share_the_bytes_and_decode_again_to_the_same_result() {
        let limits = DecodeLimits::default();
        let demo: Vec<Decoded> = crate::simulator::DemoStream::new(7, 40)
            .with_malformed_ratio(0.2)
            .enumerate()
            .map(|(i, m)| {
                let origin = Origin { topic: Arc::from(m.topic), partition: 0, offset: i as i64 };
                Decoded::new(origin, Prior::New, Some(m.key[..].into()), m.payload[..].into(), &limits)
            })
            .collect();
        let polled: Vec<MessageBytes> = demo.iter().map(|d| d.payload.clone()).collect();
        let results: Vec<_> = demo.iter().map(|d| d.result.clone()).collect();
        assert!(results.iter().any(Result::is_err) && results.iter().any(Result::is_ok));
        let mut b = BatchCommit::new(demo, &[], &limits);
        let (first, _) = b.attempt();
        assert!(first.iter().zip(&polled).all(|(d, p)| Arc::ptr_eq(&d.payload, p)));
        drop(first);
        // Refused whole: the next attempt is the first half, decoded again.
        assert!(b.refused(refusal()).unwrap().is_none());
        let (again, _) = b.attempt();
        assert_eq!(again.len(), 20);
        for (i, d) in again.iter().enumerate() {
            assert!(Arc::ptr_eq(&d.payload, &polled[i]), "message {i} was copied");
            assert_eq!(d.result, results[i], "message {i} decodes again to the same result");
        }
    }

    #[test]
    fn a_dead_letter_the_store_refuses_too_is_an_error_not_a_loop() {
        let mut b = BatchCommit::new(batch(1), &[], &DecodeLimits::default());
        assert!(b.refused(refusal()).unwrap().is_some());
        assert!(b.refused(refusal()).is_err());
    }
}
