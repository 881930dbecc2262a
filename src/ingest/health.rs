//! What readiness is judged on: when the consumer last polled, and since
//! when each assigned partition has had messages polled but not committed.
//!
//! `/healthz` says the process lives; `/readyz` says it does its work. A
//! consumer retrying a batch forever, or stuck outside `poll`, is alive and
//! useless — exactly the state an outside review found behind a `/healthz`
//! that said `ok` — so readiness looks at progress, not at the process.
//! The consumer thread writes this; the HTTP listener reads it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Duration;

/// The default of `--stall-after`.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(60);

/// One consumer's progress, shared with the readiness probe.
#[derive(Debug, Default)]
pub struct IngestHealth {
    /// Unix milliseconds of the last `poll` (0: never).
    last_poll_ms: AtomicI64,
    /// Per assigned partition, since when (Unix ms) it has had a message
    /// polled but not committed.
    pending: Mutex<BTreeMap<(String, i32), i64>>,
}

impl IngestHealth {
    pub fn polled(&self, now_ms: i64) {
        self.last_poll_ms.store(now_ms, Relaxed);
    }

    /// A message of `topic`/`partition` was polled at `now_ms`. Called for
    /// every message, so it allocates only for a partition's first.
    pub fn pending(&self, topic: &str, partition: i32, now_ms: i64) {
        let mut p = self.pending.lock().expect("health lock");
        if !p.keys().any(|(t, q)| *q == partition && t == topic) {
            p.insert((topic.to_string(), partition), now_ms);
        }
    }

    /// Nothing of `topic`/`partition` waits any more (committed, dropped or
    /// revoked).
    pub fn settled(&self, topic: &str, partition: i32) {
        self.pending.lock().expect("health lock").remove(&(topic.to_string(), partition));
    }

    pub fn settle_all(&self) {
        self.pending.lock().expect("health lock").clear();
    }

    /// The state at this moment, for [`readiness`].
    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            last_poll_ms: self.last_poll_ms.load(Relaxed),
            pending: self.pending.lock().expect("health lock").clone(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct HealthSnapshot {
    pub last_poll_ms: i64,
    pub pending: BTreeMap<(String, i32), i64>,
}

impl HealthSnapshot {
    /// How long the oldest pending partition has waited, in seconds.
    pub fn oldest_pending_seconds(&self, now_ms: i64) -> f64 {
        self.pending.values().map(|since| (now_ms - since).max(0)).max().unwrap_or(0) as f64 / 1e3
    }
}

/// Why the instance is not ready (empty: ready). Pure: the snapshot, the
/// store probe's outcome and the time are given.
pub fn readiness(
    ingest: Option<&HealthSnapshot>,
    store: Result<(), String>,
    stall_after: Duration,
    now_ms: i64,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Err(e) = store {
        reasons.push(format!("store unreachable: {e}"));
    }
    if let Some(h) = ingest {
        let stall = stall_after.as_millis() as i64;
        if h.last_poll_ms == 0 || now_ms - h.last_poll_ms > stall {
            let ago = if h.last_poll_ms == 0 { "never".to_string() } else { secs(now_ms - h.last_poll_ms) };
            reasons.push(format!("consumer has not polled for {ago} (stall after {})", secs(stall)));
        }
        for ((topic, partition), since) in &h.pending {
            if now_ms - since > stall {
                reasons.push(format!(
                    "partition {topic}/{partition} has had a batch pending for {} (stall after {})",
                    secs(now_ms - since),
                    secs(stall)
                ));
            }
        }
    }
    reasons
}

fn secs(ms: i64) -> String {
    format!("{:.1}s", ms as f64 / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_polling_committing_and_reaching_the_store() {
        let stall = Duration::from_secs(60);
        let h = IngestHealth::default();
        h.polled(1_000);
        assert!(readiness(Some(&h.snapshot()), Ok(()), stall, 2_000).is_empty());
        // A batch pending on one partition, for longer than the stall.
        h.pending("overblik.ky", 3, 1_000);
        h.pending("overblik.ky", 3, 5_000);
        h.polled(70_000);
        let r = readiness(Some(&h.snapshot()), Ok(()), stall, 70_000);
        assert_eq!(r, vec!["partition overblik.ky/3 has had a batch pending for 69.0s (stall after 60.0s)"]);
        assert_eq!(h.snapshot().oldest_pending_seconds(70_000), 69.0);
        h.settled("overblik.ky", 3);
        assert!(readiness(Some(&h.snapshot()), Ok(()), stall, 70_000).is_empty());
        // No poll for too long; the store unreachable.
        let r = readiness(Some(&h.snapshot()), Err("timed out".into()), stall, 200_000);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].starts_with("store unreachable") && r[1].starts_with("consumer has not polled for 130.0s"));
        // A reader without ingest only needs the store.
        assert!(readiness(None, Ok(()), stall, 200_000).is_empty());
    }
}
