//! Group commit: many requests' audit records written in one transaction,
//! each request waiting until its records are durable.
//!
//! Handlers send their entries and await the acknowledgement; a single task
//! takes whatever has queued up (bounded), chains and writes it in one
//! transaction, and acknowledges everyone in it. One fsync serves a whole
//! group, so auditing every decision before answering stays cheap. The queue
//! is bounded: when the store falls behind, handlers wait rather than memory
//! growing.
//!
//! One request's entries can never fail another's: when a group's
//! transaction fails, the writer writes each request's entries in a
//! transaction of its own, and only the requests whose own write fails get
//! the error — and answer UNAVAILABLE, so no answer goes out unaudited.
//! The error they get says that the log can't be written, never why: the
//! database's text is logged here, for the operator, not sent to callers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc, oneshot};

use super::checkpoint::AuditKey;
use super::{Entry, Recorded};
use crate::store::Store;

/// Requests queued at most.
const QUEUE: usize = 4096;
/// Requests written per transaction at most.
const GROUP: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log can't be written right now")]
    Unavailable,
    #[error("the audit writer has stopped")]
    Stopped,
}

struct Job {
    entries: Vec<Recorded>,
    done: oneshot::Sender<Result<Vec<i64>, AuditError>>,
}

/// The handle handlers record through; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Job>,
    key: Arc<AuditKey>,
    appended: Arc<Appended>,
}

/// What the writer tells the checkpointer: how many records it appended,
/// and a wake-up when enough have come to make a checkpoint.
#[derive(Default)]
pub struct Appended {
    pub records: AtomicU64,
    pub wake: Notify,
}

impl AuditLog {
    /// Starts the writer task on the current runtime. Every record it
    /// writes carries its MAC under `key`.
    pub fn start(store: Store, key: Arc<AuditKey>) -> AuditLog {
        let (queue, rx) = mpsc::channel(QUEUE);
        let appended = Arc::new(Appended::default());
        tokio::spawn(write_groups(store, rx, key.clone(), appended.clone()));
        AuditLog { queue, key, appended }
    }

    /// The key records are written under (an agreement change writes its
    /// record itself, in its own transaction).
    pub fn key(&self) -> &AuditKey {
        &self.key
    }

    pub fn key_arc(&self) -> Arc<AuditKey> {
        self.key.clone()
    }

    /// Counts and wake-ups of the records written, for the checkpointer.
    pub fn appended(&self) -> Arc<Appended> {
        self.appended.clone()
    }

    /// Records `entries` and returns their sequence numbers once they are
    /// durable.
    pub async fn record(&self, entries: Vec<Entry>) -> Result<Vec<i64>, AuditError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let entries = entries.iter().map(Entry::seal).collect();
        let (done, wait) = oneshot::channel();
        self.queue.send(Job { entries, done }).await.map_err(|_| AuditError::Stopped)?;
        wait.await.map_err(|_| AuditError::Stopped)?
    }
}

async fn write_groups(store: Store, mut rx: mpsc::Receiver<Job>, key: Arc<AuditKey>, appended: Arc<Appended>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let all: Vec<Recorded> = jobs.iter().flat_map(|j| j.entries.iter().cloned()).collect();
        let written = all.len() as u64;
        match store.append_audit(all, chrono::Utc::now(), Some(&key)).await {
            Ok(records) => {
                appended.records.fetch_add(written, Ordering::Relaxed);
                appended.wake.notify_one();
                let mut seqs = records.into_iter().map(|r| r.seq);
                for job in jobs {
                    let n = job.entries.len();
                    let _ = job.done.send(Ok(seqs.by_ref().take(n).collect()));
                }
            }
            Err(e) if jobs.len() == 1 => {
                tracing::error!(error = %e, "an audit record was not written; its request fails");
                let _ = jobs.pop().expect("one job").done.send(Err(AuditError::Unavailable));
            }
            Err(e) => {
                tracing::warn!(error = %e, requests = jobs.len(), "an audit group failed; writing its requests one by one");
                for job in jobs {
                    let n = job.entries.len() as u64;
                    let result = store.append_audit(job.entries, chrono::Utc::now(), Some(&key)).await;
                    if result.is_ok() {
                        appended.records.fetch_add(n, Ordering::Relaxed);
                        appended.wake.notify_one();
                    }
                    let answer = result.map(|records| records.into_iter().map(|r| r.seq).collect()).map_err(|e| {
                        tracing::error!(error = %e, "an audit record was not written; its request fails");
                        AuditError::Unavailable
                    });
                    let _ = job.done.send(answer);
                }
            }
        }
    }
}
