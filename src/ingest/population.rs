//! A second source for load runs: the synthetic population
//! (`simulator::population`) straight into the store, without Kafka.
//!
//! Filling an index with a million citizens through the in-process broker
//! would be bounded by its small log and take hours; this takes the same
//! decode → project → store path (`commit_batch`) with the population as the
//! source. Each batch holds whole citizens, so no aggregate spans two
//! batches and several batches can commit at once. The messages are counted
//! under their own topic name, `overblik.population`, one partition per
//! writer; no consumer offsets are written. Loading the same citizens again
//! changes nothing: every event is a duplicate by the version rules.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{Mutex, mpsc};

use super::statistics::{REFRESH_EVERY, StatisticsRefresh};
use super::{StopFlag, commit_batch};
use crate::events::DecodeLimits;
use crate::projection::{Counts, Decoded, Origin, Prior};
use crate::simulator::population::citizen_events;
use crate::store::{Store, StoreError};

/// The topic name the loaded messages are counted under.
pub const TOPIC: &str = "overblik.population";
/// Events per batch, roughly: a batch ends after the citizen that reaches it.
const BATCH_EVENTS: usize = 4000;

/// What a load did.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub citizens: usize,
    pub counts: Counts,
    /// Every citizen below this is loaded (batches commit out of order, so
    /// after a stop this, not `citizens`, is where to continue).
    pub done_until: usize,
    /// Committed batches above `done_until`: start → end.
    committed: std::collections::BTreeMap<usize, usize>,
}

impl Loaded {
    fn committed(&mut self, range: Range<usize>) {
        self.citizens += range.len();
        self.committed.insert(range.start, range.end);
        while let Some(end) = self.committed.remove(&self.done_until) {
            self.done_until = end;
        }
    }
}

struct Batch {
    citizens: Range<usize>,
    items: Vec<Decoded>,
}

/// Loads `citizens` of the population from `seed` with `writers` concurrent
/// transactions. `progress` sees the running totals after every batch.
/// Stops between batches when `stop` is set; what committed stays.
pub async fn load(
    store: &Store,
    seed: u64,
    citizens: Range<usize>,
    writers: usize,
    stop: &StopFlag,
    mut progress: impl FnMut(&Loaded),
) -> Result<Loaded, StoreError> {
    let writers = writers.max(1);
    let first = citizens.start;
    // Set by the caller's stop, or by a writer that failed.
    let halt: StopFlag = Default::default();
    let halted = {
        let (stop, halt) = (stop.clone(), halt.clone());
        move || stop.load(Ordering::Relaxed) || halt.load(Ordering::Relaxed)
    };
    let limits = DecodeLimits::default();
    // Telling and decoding run on a blocking thread, a bounded queue ahead
    // of the writers.
    let (tx, rx) = mpsc::channel::<Batch>(writers * 2);
    let gen_halted = halted.clone();
    let generator = tokio::task::spawn_blocking(move || {
        let topic: Arc<str> = TOPIC.into();
        let mut offset = 0i64;
        let new_batch = |at: usize| Batch { citizens: at..at, items: Vec::with_capacity(BATCH_EVENTS + 64) };
        let mut batch = new_batch(first);
        for i in citizens {
            if gen_halted() {
                return;
            }
            for event in citizen_events(seed, i).1 {
                let origin = Origin { topic: topic.clone(), partition: 0, offset };
                offset += 1;
                let key = event.aggregate_id.to_string().into_bytes();
                batch.items.push(Decoded::new(origin, Prior::New, Some(key.into()), event.encode().into(), &limits));
            }
            batch.citizens.end = i + 1;
            if batch.items.len() >= BATCH_EVENTS {
                let full = std::mem::replace(&mut batch, new_batch(i + 1));
                if tx.blocking_send(full).is_err() {
                    return;
                }
            }
        }
        if !batch.citizens.is_empty() {
            let _ = tx.blocking_send(batch);
        }
    });

    let rx = Arc::new(Mutex::new(rx));
    let total = Arc::new(std::sync::Mutex::new(Loaded { done_until: first, ..Default::default() }));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), StoreError>>();
    for writer in 0..writers {
        let (store, rx, total, done_tx, halted) =
            (store.clone(), rx.clone(), total.clone(), done_tx.clone(), halted.clone());
        tokio::spawn(async move {
            let result = async {
                loop {
                    let Some(mut batch) = rx.lock().await.recv().await else { return Ok(()) };
                    if halted() {
                        return Ok(());
                    }
                    for item in &mut batch.items {
                        item.origin.partition = writer as i32;
                    }
                    let plan = commit_batch(&store, batch.items, &[], &limits).await?;
                    let mut t = total.lock().expect("load totals");
                    t.committed(batch.citizens);
                    let c = plan.total();
                    t.counts.applied += c.applied;
                    t.counts.duplicates += c.duplicates;
                    t.counts.ignored_deleted += c.ignored_deleted;
                    t.counts.parked += c.parked;
                    t.counts.dead_lettered += c.dead_lettered;
                }
            }
            .await;
            let _ = done_tx.send(result);
        });
    }
    drop(done_tx);
    let mut first_error = None;
    let mut finished = 0;
    let mut last_reported = 0;
    // Statistics are refreshed during the load and once more at its end.
    let mut refresh = StatisticsRefresh::new(REFRESH_EVERY);
    let mut applied_before = 0;
    while finished < writers {
        match tokio::time::timeout(std::time::Duration::from_secs(1), done_rx.recv()).await {
            Ok(Some(result)) => {
                finished += 1;
                if let Err(e) = result {
                    // The others stop after their batch; the queue closes.
                    halt.store(true, Ordering::SeqCst);
                    first_error.get_or_insert(e);
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
        let now = total.lock().expect("load totals").clone();
        if now.citizens != last_reported {
            last_reported = now.citizens;
            progress(&now);
        }
        refresh.applied(now.counts.applied - applied_before, store, &tokio::runtime::Handle::current());
        applied_before = now.counts.applied;
    }
    drop(rx);
    let _ = generator.await;
    if let Some(e) = first_error {
        return Err(e);
    }
    // Also after a stop: what committed is served.
    store.analyze_live().await?;
    Ok(total.lock().expect("load totals").clone())
}

#[cfg(test)]
mod tests {
    use super::Loaded;

    #[test]
    fn the_resume_point_is_the_end_of_the_committed_prefix() {
        let mut l = Loaded { done_until: 100, ..Default::default() };
        l.committed(130..160);
        assert_eq!((l.citizens, l.done_until), (30, 100), "a gap below holds it back");
        l.committed(100..130);
        assert_eq!((l.citizens, l.done_until), (60, 160));
        l.committed(190..200);
        l.committed(160..190);
        assert_eq!(l.done_until, 200);
    }
}
