//! Process metrics in the Prometheus text format, and the small HTTP
//! listener that serves them (`--metrics-listen`).
//!
//! Counters are plain atomics in one static; labels are bounded by
//! construction (reasons are an enum, partitions are the assigned ones), so
//! the registry cannot grow without bound. No label ever carries a personal
//! number.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::borgerblikket::{CallKind, Outcome as CallOutcome};
use crate::events::Reason;
use crate::projection::{Outcome, Plan, Prior};

/// A histogram with fixed buckets.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Relaxed);
            }
        }
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// The sum of the observed values.
    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Relaxed) as f64 / 1e6
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", c.load(Relaxed));
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {n}");
    }
}

pub struct Metrics {
    pub consumed: AtomicU64,
    pub applied: AtomicU64,
    pub duplicates: AtomicU64,
    pub parked: AtomicU64,
    pub unparked: AtomicU64,
    dead_lettered: Vec<AtomicU64>,
    pub batches: AtomicU64,
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub commit_failures: AtomicU64,
    pub fenced: AtomicU64,
    pub conflicts: AtomicU64,
    /// Transactions spent isolating messages the store refuses.
    pub isolation_attempts: AtomicU64,
    /// Unix milliseconds since a batch has been waiting to commit (0: none).
    pub pending_since_ms: AtomicI64,
    lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// Calls without a valid token refused over the per-peer rate limit.
    pub anonymous_refused: AtomicU64,
    /// Citizens' answered calls by kind and whether anything was shown.
    /// Never by authority: the per-authority counts are the store's
    /// (`borgerblikket_calls`), read through the service and the command
    /// line, so the labels stay 3 × 2.
    citizen_calls: [[AtomicU64; 2]; 3],
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    consumed: AtomicU64::new(0),
    applied: AtomicU64::new(0),
    duplicates: AtomicU64::new(0),
    parked: AtomicU64::new(0),
    unparked: AtomicU64::new(0),
    dead_lettered: Reason::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
    batches: AtomicU64::new(0),
    batch_size: Histogram::new(&[1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0]),
    batch_seconds: Histogram::new(&[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
    commit_failures: AtomicU64::new(0),
    fenced: AtomicU64::new(0),
    conflicts: AtomicU64::new(0),
    isolation_attempts: AtomicU64::new(0),
    pending_since_ms: AtomicI64::new(0),
    lag: Mutex::new(BTreeMap::new()),
    anonymous_refused: AtomicU64::new(0),
    citizen_calls: Default::default(),
});

impl Metrics {
    /// Counts one answered citizen call.
    pub fn citizen_call(&self, kind: CallKind, outcome: CallOutcome) {
        self.citizen_calls[kind as usize][outcome as usize].fetch_add(1, Relaxed);
    }

    /// Counts what a committed batch did.
    pub fn record(&self, plan: &Plan, new_messages: usize, seconds: f64) {
        self.consumed.fetch_add(new_messages as u64, Relaxed);
        self.applied.fetch_add(plan.appended.len() as u64, Relaxed);
        self.unparked.fetch_add(plan.unparked.len() as u64, Relaxed);
        for o in &plan.outcomes {
            match o {
                Outcome::Duplicate | Outcome::IgnoredDeleted => self.duplicates.fetch_add(1, Relaxed),
                Outcome::Parked => self.parked.fetch_add(1, Relaxed),
                Outcome::Applied | Outcome::DeadLettered(_) => 0,
            };
        }
        for d in &plan.dead_letters {
            self.dead_lettered[d.rejection.reason.index()].fetch_add(1, Relaxed);
        }
        self.batches.fetch_add(1, Relaxed);
        self.batch_size.observe(new_messages as f64);
        self.batch_seconds.observe(seconds);
    }

    /// How many new messages a plan consumed.
    pub fn new_messages(items: &[crate::projection::Decoded]) -> usize {
        items.iter().filter(|d| d.prior == Prior::New).count()
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag.lock().expect("lag lock").insert((topic.to_string(), partition), lag);
    }

    pub fn forget_lag(&self, topic: &str, partition: i32) {
        self.lag.lock().expect("lag lock").remove(&(topic.to_string(), partition));
    }

    pub fn total_lag(&self) -> i64 {
        self.lag.lock().expect("lag lock").values().sum()
    }

    /// The counters an operator's summary line reports.
    pub fn totals(&self) -> Totals {
        Totals {
            consumed: self.consumed.load(Relaxed),
            applied: self.applied.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            // Parked and not yet applied: waiting now.
            parked: self.parked.load(Relaxed).saturating_sub(self.unparked.load(Relaxed)),
            dead_lettered: self.dead_lettered.iter().map(|c| c.load(Relaxed)).sum(),
            lag: self.total_lag(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(&mut out, "overblik_consumed_total", "Messages consumed from Kafka.", self.consumed.load(Relaxed));
        counter(
            &mut out,
            "overblik_applied_total",
            "Events applied to the projections (including un-parked ones).",
            self.applied.load(Relaxed),
        );
        counter(
            &mut out,
            "overblik_duplicates_total",
            "Messages skipped as duplicates or for deleted aggregates.",
            self.duplicates.load(Relaxed),
        );
        counter(&mut out, "overblik_parked_total", "Events parked on a version gap.", self.parked.load(Relaxed));
        counter(
            &mut out,
            "overblik_unparked_total",
            "Parked events applied once their gap closed.",
            self.unparked.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP overblik_dead_lettered_total Messages dead-lettered, by reason.\n# TYPE overblik_dead_lettered_total counter"
        );
        for (r, c) in Reason::ALL.iter().zip(&self.dead_lettered) {
            let _ = writeln!(out, "overblik_dead_lettered_total{{reason=\"{}\"}} {}", r.as_str(), c.load(Relaxed));
        }
        counter(&mut out, "overblik_batches_total", "Batches committed.", self.batches.load(Relaxed));
        self.batch_size.render(&mut out, "overblik_batch_size", "Messages per committed batch.");
        self.batch_seconds.render(&mut out, "overblik_batch_seconds", "Time to commit a batch (load, project, write).");
        counter(
            &mut out,
            "overblik_commit_failures_total",
            "Batch commits that failed and were retried.",
            self.commit_failures.load(Relaxed),
        );
        counter(
            &mut out,
            "overblik_fenced_total",
            "Batches dropped because another consumer owned the partition.",
            self.fenced.load(Relaxed),
        );
        counter(
            &mut out,
            "overblik_conflicts_total",
            "Batches retried after a concurrent change to an aggregate.",
            self.conflicts.load(Relaxed),
        );
        counter(
            &mut out,
            "overblik_isolation_attempts_total",
            "Transactions spent finding messages the store refuses (each is then dead-lettered as STORE_REJECTED).",
            self.isolation_attempts.load(Relaxed),
        );
        let since = self.pending_since_ms.load(Relaxed);
        let pending =
            if since == 0 { 0.0 } else { (chrono::Utc::now().timestamp_millis() - since).max(0) as f64 / 1e3 };
        let _ = writeln!(
            out,
            "# HELP overblik_pending_batch_seconds How long the current batch has waited to commit (0: none).\n# TYPE overblik_pending_batch_seconds gauge\noverblik_pending_batch_seconds {pending}"
        );
        let _ = writeln!(
            out,
            "# HELP overblik_consumer_lag Messages in the partition not yet committed to the store.\n# TYPE overblik_consumer_lag gauge"
        );
        for ((t, p), lag) in self.lag.lock().expect("lag lock").iter() {
            let _ = writeln!(out, "overblik_consumer_lag{{topic=\"{t}\",partition=\"{p}\"}} {lag}");
        }
        counter(
            &mut out,
            "overblik_anonymous_refused_total",
            "Calls without a valid token refused over the per-peer rate limit (RESOURCE_EXHAUSTED).",
            self.anonymous_refused.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP overblik_citizen_calls_total Citizens' answered Borgerblikket calls, by kind and whether anything was shown.\n# TYPE overblik_citizen_calls_total counter"
        );
        for kind in CallKind::ALL {
            for outcome in CallOutcome::ALL {
                let n = self.citizen_calls[kind as usize][outcome as usize].load(Relaxed);
                let (k, o) = (kind.as_str(), outcome.as_str());
                let _ = writeln!(out, "overblik_citizen_calls_total{{kind=\"{k}\",outcome=\"{o}\"}} {n}");
            }
        }
        out
    }
}

/// This process's ingest totals since it started, and the lag now.
/// `applied` includes parked events applied once their gap closed;
/// `parked` is what waits now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub consumed: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub parked: u64,
    pub dead_lettered: u64,
    pub lag: i64,
}

/// The operator's summary line for the interval from `before` to `now`
/// (`seconds` long), or `None` when nothing moved and nothing waits: the
/// log stays quiet while ingest is idle. Counts only — never a personal
/// number, an id or a payload.
pub fn summary_line(before: &Totals, now: &Totals, seconds: f64) -> Option<String> {
    let consumed = now.consumed - before.consumed;
    if consumed == 0 && now.lag == 0 {
        return None;
    }
    Some(format!(
        "ingest: {consumed} messages in the last {seconds:.0}s ({:.0}/s); since start {} consumed: {} applied, {} duplicates, {} parked (waiting), {} dead-lettered; lag {}",
        consumed as f64 / seconds.max(1e-9),
        now.consumed,
        now.applied,
        now.duplicates,
        now.parked,
        now.dead_lettered,
        now.lag
    ))
}

/// What `/readyz` judges: the store (if the instance uses one), the
/// consumer's progress (if it ingests) and how long is too long.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub store: Option<crate::store::Store>,
    pub ingest: Option<std::sync::Arc<crate::ingest::IngestHealth>>,
    pub stall_after: Duration,
}

impl Readiness {
    /// Why the instance is not ready now (empty: ready).
    pub async fn check(&self) -> Vec<String> {
        let store = match &self.store {
            Some(s) => s.ping(Duration::from_secs(2)).await.map_err(|e| e.to_string()),
            None => Ok(()),
        };
        let snapshot = self.ingest.as_ref().map(|h| h.snapshot());
        crate::ingest::health::readiness(
            snapshot.as_ref(),
            store,
            self.stall_after,
            chrono::Utc::now().timestamp_millis(),
        )
    }

    /// The readiness gauges, in the Prometheus text format. The oldest
    /// parked age is left out while the store does not answer.
    async fn render(&self) -> String {
        let now = chrono::Utc::now();
        let oldest = self.ingest.as_ref().map_or(0.0, |h| h.snapshot().oldest_pending_seconds(now.timestamp_millis()));
        let mut out = format!(
            "# HELP overblik_oldest_pending_seconds How long the longest-waiting assigned partition has had messages polled but not committed (0: none).\n# TYPE overblik_oldest_pending_seconds gauge\noverblik_oldest_pending_seconds {oldest}\n"
        );
        if let Some(store) = &self.store
            && let Ok(Ok(parked)) = tokio::time::timeout(Duration::from_secs(2), store.oldest_parked_at()).await
        {
            let age = parked.map_or(0.0, |at| (now - at).num_milliseconds().max(0) as f64 / 1000.0);
            let _ = write!(
                out,
                "# HELP overblik_oldest_parked_seconds How long the longest-waiting parked event has waited for an earlier version (0: none; overblik parked list).\n# TYPE overblik_oldest_parked_seconds gauge\noverblik_oldest_parked_seconds {age}\n"
            );
        }
        out
    }
}

/// Binds the metrics listener (`--metrics-listen`).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    Ok(listener)
}

/// Serves `GET /metrics`, `GET /healthz` (liveness: the process answers)
/// and `GET /readyz` (503 with the reasons while the store is unreachable
/// or ingest is stalled) until the task is dropped. Requests are read with
/// a size and time limit.
pub async fn serve(listener: TcpListener, readiness: Readiness) -> std::io::Result<()> {
    loop {
        let (mut sock, _) = listener.accept().await?;
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut read = 0;
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                while read < buf.len() {
                    let n = sock.read(&mut buf[read..]).await?;
                    if n == 0 {
                        break;
                    }
                    read += n;
                    if buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(head, Ok(Ok(()))) {
                return;
            }
            let line = String::from_utf8_lossy(&buf[..read]);
            let path = line.split_whitespace().nth(1).unwrap_or("");
            let (status, body, ctype) = match path {
                "/metrics" => ("200 OK", METRICS.render() + &readiness.render().await, "text/plain; version=0.0.4"),
                "/healthz" => ("200 OK", "ok\n".to_string(), "text/plain"),
                "/readyz" => {
                    let reasons = readiness.check().await;
                    if reasons.is_empty() {
                        ("200 OK", "ready\n".to_string(), "text/plain")
                    } else {
                        ("503 Service Unavailable", format!("not ready\n{}\n", reasons.join("\n")), "text/plain")
                    }
                }
                _ => ("404 Not Found", "not found\n".to_string(), "text/plain"),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_speaks_while_ingest_moves_and_is_quiet_otherwise() {
        let before = Totals { consumed: 100, applied: 90, duplicates: 5, parked: 2, dead_lettered: 3, lag: 0 };
        assert_eq!(summary_line(&before, &before, 5.0), None);
        let now = Totals { consumed: 600, applied: 580, duplicates: 10, parked: 4, dead_lettered: 6, lag: 1200 };
        assert_eq!(
            summary_line(&before, &now, 5.0).unwrap(),
            "ingest: 500 messages in the last 5s (100/s); since start 600 consumed: 580 applied, 10 duplicates, 4 parked (waiting), 6 dead-lettered; lag 1200"
        );
        // Stuck with a backlog is worth a line too.
        let stuck = Totals { lag: 50, ..before };
        assert!(summary_line(&before, &stuck, 5.0).unwrap().ends_with("lag 50"));
    }
}
