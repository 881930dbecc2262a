//! Rebuild: every projection recomputed from the event store into a fresh
//! generation of tables, then swapped in (blue/green, invariant 5).
//!
//! The bulk phase reads events in (aggregate, version) order, so only one
//! aggregate's state is in memory at a time and rows are written in bounded
//! chunks. Ingest keeps writing the live generation meanwhile; lookups keep
//! reading it. The swap transaction excludes ingest batches, catches up the
//! events appended since the bulk phase began, drops aggregates deleted
//! meanwhile, and points the views at the new generation.

use uuid::Uuid;

use crate::events::{DecodeLimits, decode};
use crate::projection::{Aggregate, Transition, apply};
use crate::store::rows::RowSet;
use crate::store::{Store, StoredEvent};

/// Events read per page in the bulk phase.
const PAGE: i64 = 10_000;
/// Aggregates buffered before their rows are written.
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
        current = match apply(current, event).1 {
            Ok(Transition::Upsert(a)) => Some(a),
            Ok(Transition::Delete) => None,
            Err(refused) => return Err(fail(refused.rejection.to_string())),
        };
    }
    Ok(current)
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
        Ok(Rebuild { store, start, started, events: 0, aggregates: 0 })
    }

    /// The generation being built.
    pub fn generation(&self) -> i32 {
        self.start.generation
    }

    /// The bulk phase: every event up to the bound, folded aggregate by
    /// aggregate into the new generation, then its indexes.
    pub async fn bulk(&mut self, mut progress: impl FnMut(i64, i64)) -> Result<(), RebuildError> {
        let (store, generation, upto, total, reporting) =
            (self.store, self.start.generation, self.start.upto_seq, self.start.total_events, self.start.reporting);
        // Reading, folding and writing overlap: the next page is read and the
        // previous rows are written while this page is folded, one of each
        // in flight, so memory stays at three pages' worth.
        let read = |after: Option<(Uuid, i64)>| {
            let s = store.clone();
            tokio::spawn(async move { s.events_by_aggregate(upto, after, PAGE).await })
        };
        let mut writing: Option<tokio::task::JoinHandle<Result<(), crate::store::StoreError>>> = None;
        let mut rows = RowSet::new(reporting);
        let mut buffered = 0usize;
        let mut next_page = Some(read(None));
        // Events of the aggregate being folded; it may span pages.
        let mut pending: Vec<StoredEvent> = Vec::new();
        loop {
            let page = next_page.take().expect("a page is being read").await.expect("the page reader panicked")?;
            let last_page = (page.len() as i64) < PAGE;
            if !last_page {
                let last = page.last().expect("a full page");
                next_page = Some(read(Some((last.aggregate_id, last.aggregate_version))));
            }
            for e in page {
                if pending.first().is_some_and(|p| p.aggregate_id != e.aggregate_id) {
                    self.fold_into(&mut rows, &mut buffered, &pending)?;
                    pending.clear();
                }
                pending.push(e);
            }
            if last_page {
                break;
            }
            if buffered >= FLUSH_AGGREGATES {
                if let Some(w) = writing.take() {
                    w.await.expect("the row writer panicked")?;
                }
                let (s, chunk) = (store.clone(), std::mem::replace(&mut rows, RowSet::new(reporting)));
                writing = Some(tokio::spawn(async move { s.insert_rows(generation, &chunk).await }));
                buffered = 0;
            }
            progress(self.events, total);
        }
        self.fold_into(&mut rows, &mut buffered, &pending)?;
        if let Some(w) = writing.take() {
            w.await.expect("the row writer panicked")?;
        }
        store.insert_rows(generation, &rows).await?;
        progress(self.events, total);
        store.create_indexes(generation, reporting).await?;
        Ok(())
    }

    fn fold_into(
        &mut self,
        rows: &mut RowSet,
        buffered: &mut usize,
        events: &[StoredEvent],
    ) -> Result<(), RebuildError> {
        if let Some(a) = fold(None, events)? {
            rows.add(&a);
            *buffered += 1;
            self.aggregates += 1;
        }
        self.events += events.len() as i64;
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
