//! Rebuild: every projection recomputed from the event store into a fresh
//! generation of tables, then swapped in (blue/green, invariant 5).
//!
//! The bulk phase cuts the aggregate ids into one range per core and folds
//! the ranges in parallel; each reads its events in (aggregate, version)
//! order, so only one aggregate's state per range is in memory at a time and
//! rows are written in bounded chunks. Ingest keeps writing the live generation meanwhile; lookups keep
//! reading it. The swap transaction excludes ingest batches, catches up the
//! events appended since the bulk phase began, drops aggregates deleted
//! meanwhile, and points the views at the new generation.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use uuid::Uuid;

use crate::events::{DecodeLimits, decode};
use crate::projection::{Aggregate, Rules, Transition, apply_under};
use crate::store::rows::RowSet;
use crate::store::{Store, StoredEvent};

/// Events read per page in the bulk phase.
const PAGE: i64 = 10_000;
/// Aggregates buffered (per range) before their rows are written.
const FLUSH_AGGREGATES: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("stored event {seq} of aggregate {aggregate} no longer projects: {why}")]
    Event { seq: i64, aggregate: Uuid, why: String },
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct RebuildReport {
    pub generation: i32,
    pub events: i64,
    pub aggregates: u64,
    pub caught_up: usize,
    pub seconds: f64,
}

/// Folds one aggregate's events (in version order) onto `current`.
fn fold(mut current: Option<Aggregate>, events: &[StoredEvent]) -> Result<Option<Aggregate>, RebuildError> {
    let limits = DecodeLimits { max_message_bytes: usize::MAX };
    for e in events {
        let fail = |why: String| RebuildError::Event { seq: e.seq, aggregate: e.aggregate_id, why };
        let key = e.aggregate_id.to_string();
        let event = decode(&e.payload, Some(key.as_bytes()), &limits).map_err(|r| fail(r.to_string()))?;
        if current.as_ref().is_some_and(|a| event.aggregate_version <= a.version) {
            continue;
        }
        current = match apply_under(Rules::Stored, current, event).1 {
            Ok(Transition::Upsert(a)) => Some(a),
            Ok(Transition::Delete) => None,
            Err(refused) => return Err(fail(refused.rejection.to_string())),
        };
    }
    Ok(current)
}

/// One aggregate-id range of the bulk phase. Reading, folding and writing
/// overlap: the next page is read and the previous rows are written while
/// this page is folded (on a blocking thread), one of each in flight, so a
/// worker holds three pages' worth at most.
struct Range {
    store: Store,
    start: crate::store::RebuildStart,
    lo: Uuid,
    hi: Option<Uuid>,
    page: i64,
    done: Arc<AtomicI64>,
}

impl Range {
    async fn fold(self) -> Result<Folded, RebuildError> {
        let Range { store, start, lo, hi, page, done } = self;
        let read = |after: (Uuid, i64)| {
            let s = store.clone();
            tokio::spawn(async move { s.events_by_aggregate(start.upto_seq, Some(after), hi, page).await })
        };
        let mut writing: Option<tokio::task::JoinHandle<Result<(), crate::store::StoreError>>> = None;
        let mut batch =
            Batch { rows: RowSet::new(start.reporting), buffered: 0, folded: Folded { events: 0, aggregates: 0 } };
        // Events of the aggregate being folded; it may span pages.
        let mut pending: Vec<StoredEvent> = Vec::new();
        let mut next_page = Some(read((lo, 0)));
        loop {
            let events = next_page.take().expect("a page is being read").await.expect("the page reader panicked")?;
            let last_page = (events.len() as i64) < page;
            if !last_page {
                let last = events.last().expect("a full page");
                next_page = Some(read((last.aggregate_id, last.aggregate_version)));
            }
            let read_now = events.len() as i64;
            let folding = tokio::task::spawn_blocking(move || {
                let r = batch.fold_page(&mut pending, events, last_page);
                (r, batch, pending)
            });
            let (r, b, p) = folding.await.expect("folding panicked");
            r?;
            (batch, pending) = (b, p);
            done.fetch_add(read_now, Ordering::Relaxed);
            if batch.buffered >= FLUSH_AGGREGATES || last_page {
                if let Some(w) = writing.take() {
                    w.await.expect("the row writer panicked")?;
                }
                let (s, chunk) = (store.clone(), std::mem::replace(&mut batch.rows, RowSet::new(start.reporting)));
                writing = Some(tokio::spawn(async move { s.insert_rows(start.generation, &chunk).await }));
                batch.buffered = 0;
            }
            if last_page {
                break;
            }
        }
        if let Some(w) = writing.take() {
            w.await.expect("the row writer panicked")?;
        }
        Ok(batch.folded)
    }
}

/// Rows folded and not yet written.
struct Batch {
    rows: RowSet,
    buffered: usize,
    folded: Folded,
}

impl Batch {
    /// Folds the aggregates a page completes; the last one may go on in the
    /// next page and stays in `pending` (unless this is the last page).
    fn fold_page(
        &mut self,
        pending: &mut Vec<StoredEvent>,
        events: Vec<StoredEvent>,
        last_page: bool,
    ) -> Result<(), RebuildError> {
        for e in events {
            if pending.first().is_some_and(|p| p.aggregate_id != e.aggregate_id) {
                self.fold_one(pending)?;
                pending.clear();
            }
            pending.push(e);
        }
        if last_page && !pending.is_empty() {
            self.fold_one(pending)?;
            pending.clear();
        }
        Ok(())
    }

    fn fold_one(&mut self, events: &[StoredEvent]) -> Result<(), RebuildError> {
        if let Some(a) = fold(None, events)? {
            self.rows.add(&a);
            self.buffered += 1;
            self.folded.aggregates += 1;
        }
        self.folded.events += events.len() as i64;
        Ok(())
    }
}

/// The aggregate-id ranges `n` workers fold: the UUID space cut into `n`
/// equal parts, each `[lo, hi)` (the last one open-ended). An aggregate's
/// events all fall in one range, so ranges fold independently.
pub fn id_ranges(n: usize) -> Vec<(Uuid, Option<Uuid>)> {
    let n = n.max(1) as u128;
    let step = u128::MAX / n;
    (0..n)
        .map(|k| {
            let lo = Uuid::from_u128(k * step);
            let hi = (k + 1 < n).then(|| Uuid::from_u128((k + 1) * step));
            (lo, hi)
        })
        .collect()
}

/// A rebuild in progress: [`Rebuild::start`] prepares the new generation,
/// [`Rebuild::bulk`] fills it while everything else carries on,
/// [`Rebuild::swap`] catches up and makes it live. [`rebuild`] runs all three.
pub struct Rebuild<'a> {
    store: &'a Store,
    start: crate::store::RebuildStart,
    started: std::time::Instant,
    events: i64,
    aggregates: u64,
    workers: usize,
    page: i64,
}

/// What one range's worker folded.
struct Folded {
    events: i64,
    aggregates: u64,
}

impl<'a> Rebuild<'a> {
    /// Starts a rebuild of the serving tables.
    pub async fn start(store: &'a Store) -> Result<Rebuild<'a>, RebuildError> {
        Self::start_with(store, false).await
    }

    /// Starts a rebuild; with `reporting`, the new generation gets the
    /// reporting tables too, a snapshot as of the swap.
    pub async fn start_with(store: &'a Store, reporting: bool) -> Result<Rebuild<'a>, RebuildError> {
        let started = std::time::Instant::now();
        let start = store.rebuild_start(reporting).await?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Rebuild { store, start, started, events: 0, aggregates: 0, workers, page: PAGE })
    }

    /// Folds with `workers` ranges in parallel, reading `page` events at a
    /// time (the defaults: one range per core, 10,000 events).
    pub fn folding(mut self, workers: usize, page: i64) -> Self {
        self.workers = workers.max(1);
        self.page = page.max(1);
        self
    }

    /// The generation being built.
    pub fn generation(&self) -> i32 {
        self.start.generation
    }

    /// The bulk phase: every event up to the bound, folded aggregate by
    /// aggregate into the new generation — one worker per aggregate-id
    /// range, in parallel — then its keys and indexes.
    pub async fn bulk(&mut self, mut progress: impl FnMut(i64, i64)) -> Result<(), RebuildError> {
        let total = self.start.total_events;
        let done = Arc::new(AtomicI64::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for (lo, hi) in id_ranges(self.workers) {
            let range =
                Range { store: self.store.clone(), start: self.start, lo, hi, page: self.page, done: done.clone() };
            workers.spawn(range.fold());
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
        loop {
            tokio::select! {
                finished = workers.join_next() => match finished {
                    None => break,
                    Some(result) => match result.expect("a range worker panicked") {
                        Ok(f) => {
                            self.events += f.events;
                            self.aggregates += f.aggregates;
                        }
                        Err(e) => {
                            workers.abort_all();
                            return Err(e);
                        }
                    },
                },
                _ = tick.tick() => progress(done.load(Ordering::Relaxed), total),
            }
        }
        progress(self.events, total);
        self.store.create_indexes(self.start.generation, self.start.reporting).await?;
        // The new generation goes live with statistics of its own.
        self.store.analyze(self.start.generation, self.start.reporting).await?;
        Ok(())
    }

    /// The swap: under a lock that holds every ingest batch back, applies the
    /// events appended since the bulk phase began, removes aggregates deleted
    /// meanwhile, and points the views at the new generation.
    pub async fn swap(self) -> Result<RebuildReport, RebuildError> {
        let (generation, reporting) = (self.start.generation, self.start.reporting);
        let mut tx = self.store.begin_exclusive().await?;
        let old = tx.generation();
        let late = tx.events_after(self.start.upto_seq).await?;
        let mut ids: Vec<Uuid> = late.iter().map(|e| e.aggregate_id).collect();
        ids.dedup();
        let mut shadow: std::collections::HashMap<Uuid, Aggregate> =
            tx.load_generation_aggregates(generation, &ids).await?.into_iter().map(|a| (a.id, a)).collect();
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        // `late` is in (aggregate, version) order: one run per aggregate.
        for events in late.chunk_by(|a, b| a.aggregate_id == b.aggregate_id) {
            let id = events[0].aggregate_id;
            match fold(shadow.remove(&id), events)? {
                Some(a) => changed.push(a),
                None => removed.push(id),
            }
        }
        tx.replace_in_generation(generation, reporting, &changed, &removed).await?;
        tx.drop_tombstoned(generation, reporting).await?;
        tx.swap_to(generation, reporting).await?;
        tx.commit().await?;
        // The new generation is live now; failing to drop the old one only
        // leaves unused tables for the next rebuild to drop.
        if let Err(e) = self.store.drop_generation(old).await {
            tracing::warn!(error = %e, generation = old, "couldn't drop the previous generation");
        }
        Ok(RebuildReport {
            generation,
            events: self.events + late.len() as i64,
            aggregates: self.aggregates,
            caught_up: late.len(),
            seconds: self.started.elapsed().as_secs_f64(),
        })
    }

    /// Gives up: the live generation was never touched; the half-built one
    /// is removed.
    pub async fn abandon(self) {
        if let Err(e) = self.store.drop_generation(self.start.generation).await {
            tracing::warn!(error = %e, generation = self.start.generation, "couldn't drop the unfinished generation");
        }
    }
}

/// Rebuilds the serving tables. `progress(done, total)` is called as events
/// are folded.
pub async fn rebuild(store: &Store, progress: impl FnMut(i64, i64)) -> Result<RebuildReport, RebuildError> {
    rebuild_with(store, false, progress).await
}

/// Rebuilds the serving tables and, with `reporting`, the reporting tables.
pub async fn rebuild_with(
    store: &Store,
    reporting: bool,
    progress: impl FnMut(i64, i64),
) -> Result<RebuildReport, RebuildError> {
    let mut r = Rebuild::start_with(store, reporting).await?;
    if let Err(e) = r.bulk(progress).await {
        r.abandon().await;
        return Err(e);
    }
    // A swap that fails rolls back before the views move, so the live
    // generation stays; the next rebuild drops the half-built one.
    r.swap().await
}
