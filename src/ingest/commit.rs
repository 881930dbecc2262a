//! Committing one batch to its end — retried while the store is away,
//! bisected while the store refuses part of it — as a task on the runtime,
//! so the consumer thread can poll and decode the next batch meanwhile.
//!
//! Only one batch is ever in flight: the consumer waits for this task's
//! [`Outcome`] before it prepares the next batch's offsets (which start
//! where this batch ends) and before a rebalance reads or gives up offsets.
//! What overlaps is only the pure part of the next batch — polling and
//! decoding — so every invariant of a batch (effects and offsets in one
//! transaction, compare-and-set on the offsets) holds as before.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::isolate::{BatchCommit, Isolated, Refusal};
use super::{Backoff, StopFlag, commit_batch};
use crate::events::DecodeLimits;
use crate::metrics::METRICS;
use crate::projection::Decoded;
use crate::store::{OffsetAdvance, Store, StoreError};

/// A conflict that repeats this many times in a row on the same attempt is
/// not a race any more: the attempt is isolated like a refusal.
const MAX_CONFLICTS: u32 = 10;

/// What committing a batch came to.
#[derive(Debug)]
pub(super) struct Outcome {
    /// Events applied by what committed (the whole batch, or the prefixes
    /// an isolation committed before it ended otherwise).
    pub applied: i64,
    pub end: End,
}

#[derive(Debug)]
pub(super) enum End {
    /// Every message committed (some perhaps as `STORE_REJECTED` dead
    /// letters).
    Committed,
    /// Another commit moved an offset first: the store's offsets win, and
    /// the consumer moves back to them for these partitions.
    Fenced { advances: Vec<OffsetAdvance> },
    /// Asked to stop with (part of) the batch uncommitted; it is consumed
    /// again next time.
    Stopped,
    /// What retrying can't fix: ingest stops.
    Failed(anyhow::Error),
}

/// Where a committed attempt's offsets are recorded for the consumer: the
/// next offset per partition it still owns.
pub(super) type NextOffsets = Arc<Mutex<super::consumer::Assignment>>;

/// Everything the commit of one batch needs, owned, so it runs as a task.
pub(super) struct Job {
    pub store: Store,
    pub items: Vec<Decoded>,
    pub advances: Vec<OffsetAdvance>,
    pub limits: DecodeLimits,
    pub stop: StopFlag,
    pub assignment: NextOffsets,
}

/// Commits `job`'s batch, retrying transient failures with backoff until it
/// commits, is fenced, is asked to stop, or fails for good.
pub(super) async fn commit_to_end(job: Job) -> Outcome {
    let Job { store, items, advances, limits, stop, assignment } = job;
    METRICS.pending_since_ms.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    let mut applied = 0;
    let end = attempts(&store, items, advances, &limits, &stop, &assignment, &mut applied).await;
    METRICS.pending_since_ms.store(0, Ordering::Relaxed);
    Outcome { applied, end }
}

async fn attempts(
    store: &Store,
    items: Vec<Decoded>,
    advances: Vec<OffsetAdvance>,
    limits: &DecodeLimits,
    stop: &StopFlag,
    assignment: &NextOffsets,
    applied: &mut i64,
) -> End {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut batch = BatchCommit::new(items, &advances, limits);
    let (mut conflicts, mut counted) = (0, 0);
    while !batch.is_done() {
        // Every attempt after the first is one the isolation costs.
        METRICS.isolation_attempts.fetch_add((batch.extra_attempts() - counted) as u64, Ordering::Relaxed);
        counted = batch.extra_attempts();
        let (attempt, attempt_advances) = batch.attempt();
        let new_messages = attempt.len();
        let started = Instant::now();
        match commit_batch(store, attempt, &attempt_advances, limits).await {
            Ok(plan) => {
                assignment.lock().expect("assignment lock").committed(&attempt_advances);
                METRICS.record(&plan, new_messages, started.elapsed().as_secs_f64());
                *applied += plan.total().applied;
                backoff.reset();
                conflicts = 0;
                if let Some(found) = batch.committed(&attempt_advances) {
                    log_isolated(&found);
                }
            }
            Err(StoreError::Fenced { topic, partition, .. }) => {
                METRICS.fenced.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%topic, partition, "fenced: another commit moved the offset; resuming from the store");
                return End::Fenced { advances };
            }
            Err(e) if matches!(e, StoreError::Refused { .. }) || (is_conflict(&e) && conflicts >= MAX_CONFLICTS) => {
                let refusal = match e {
                    StoreError::Refused { sqlstate, detail, .. } => Refusal { sqlstate, detail },
                    other => Refusal {
                        sqlstate: "40001".into(),
                        detail: crate::events::scrub_detail(&format!(
                            "SQLSTATE 40001: a conflict that persisted through {MAX_CONFLICTS} attempts: {other}"
                        )),
                    },
                };
                conflicts = 0;
                let sqlstate = refusal.sqlstate.clone();
                match batch.refused(refusal) {
                    Ok(Some(found)) => log_isolated(&found),
                    Ok(None) => tracing::warn!(
                        %sqlstate,
                        remaining = batch.remaining(),
                        "the store refused part of a batch; narrowing down the message it refuses"
                    ),
                    Err(e) => return End::Failed(anyhow::Error::new(e).context("ingest stopped")),
                }
            }
            Err(e) if e.is_transient() => {
                if is_conflict(&e) {
                    METRICS.conflicts.fetch_add(1, Ordering::Relaxed);
                    conflicts += 1;
                }
                METRICS.commit_failures.fetch_add(1, Ordering::Relaxed);
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, messages = new_messages, "batch not committed; retrying");
                if wait_unless_stopped(delay, stop).await {
                    tracing::info!("stopping with an uncommitted batch; it will be consumed again");
                    return End::Stopped;
                }
            }
            Err(e) => return End::Failed(anyhow::Error::new(e).context("ingest stopped")),
        }
    }
    End::Committed
}

/// Sleeps `delay` in short steps so a stop is noticed; true if stopped.
async fn wait_unless_stopped(delay: Duration, stop: &StopFlag) -> bool {
    let until = Instant::now() + delay;
    loop {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            return false;
        };
        tokio::time::sleep(Duration::from_millis(50).min(left)).await;
    }
}

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_))
}

fn log_isolated(found: &Isolated) {
    tracing::warn!(
        topic = %found.topic,
        partition = found.partition,
        offset = found.offset,
        sqlstate = %found.sqlstate,
        "the store refuses this message; dead-lettering it as STORE_REJECTED"
    );
}
