//! Planner statistics kept current during long loads.
//!
//! After a bulk load the database plans lookups on the statistics of the
//! near-empty tables it last analyzed: on PostgreSQL a lookup that takes a
//! millisecond with current statistics took over a second straight after a
//! large load, until the autovacuum daemon came round; SQLite gathers no
//! statistics by itself at all. So ingest and the population load refresh
//! them every so many applied events, in the background, one refresh at a
//! time, and the population load and the rebuild once more at their end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::runtime::Handle;

use crate::store::Store;

/// Applied events between two refreshes.
pub const REFRESH_EVERY: i64 = 2_000_000;

/// Counts applied events and starts a refresh when enough have been.
#[derive(Debug)]
pub struct StatisticsRefresh {
    every: i64,
    since: i64,
    running: Arc<AtomicBool>,
}

impl StatisticsRefresh {
    pub fn new(every: i64) -> StatisticsRefresh {
        StatisticsRefresh { every: every.max(1), since: 0, running: Arc::default() }
    }

    /// Counts `applied` events; past the threshold, and unless a refresh is
    /// still running, starts one on `rt` and counts from zero again.
    pub fn applied(&mut self, applied: i64, store: &Store, rt: &Handle) {
        self.since += applied.max(0);
        if self.since < self.every || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.since = 0;
        let (store, running) = (store.clone(), self.running.clone());
        rt.spawn(async move {
            match store.analyze_live().await {
                Ok(()) => tracing::info!("refreshed the planner statistics of the serving tables"),
                Err(e) => {
                    tracing::warn!(error = %e, "refreshing the planner statistics failed; the next refresh retries")
                }
            }
            running.store(false, Ordering::Release);
        });
    }
}
