//! Group commit: many requests' audit records written in one transaction,
//! each request waiting until its records are durable.
//!
//! Handlers send their entries and await the acknowledgement; a single task
//! takes whatever has queued up (bounded), chains and writes it in one
//! transaction, and acknowledges everyone in it. One fsync serves a whole
//! group, so auditing every decision before answering stays cheap. The queue
//! is bounded: when the store falls behind, handlers wait rather than memory
//! growing. If the store fails, every waiting handler gets the error and
//! answers UNAVAILABLE — no answer goes out unaudited.

use tokio::sync::{mpsc, oneshot};

use super::Entry;
use crate::store::Store;

/// Requests queued at most.
const QUEUE: usize = 4096;
/// Requests written per transaction at most.
const GROUP: usize = 512;

#[derive(Clone, Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log can't be written: {0}")]
    Store(String),
    #[error("the audit writer has stopped")]
    Stopped,
}

struct Job {
    entries: Vec<Entry>,
    done: oneshot::Sender<Result<Vec<i64>, AuditError>>,
}

/// The handle handlers record through; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Job>,
}

impl AuditLog {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> AuditLog {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_groups(store, rx));
        AuditLog { queue }
    }

    /// Records `entries` and returns their sequence numbers once they are
    /// durable.
    pub async fn record(&self, entries: Vec<Entry>) -> Result<Vec<i64>, AuditError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (done, wait) = oneshot::channel();
        self.queue.send(Job { entries, done }).await.map_err(|_| AuditError::Stopped)?;
        wait.await.map_err(|_| AuditError::Stopped)?
    }
}

async fn write_groups(store: Store, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let sizes: Vec<usize> = jobs.iter().map(|j| j.entries.len()).collect();
        let (entries, waiters): (Vec<Vec<Entry>>, Vec<_>) = jobs.into_iter().map(|j| (j.entries, j.done)).unzip();
        let result = store.append_audit(entries.into_iter().flatten().collect(), chrono::Utc::now()).await;
        match result {
            Ok(records) => {
                let mut seqs = records.into_iter().map(|r| r.seq);
                for (done, n) in waiters.into_iter().zip(sizes) {
                    let _ = done.send(Ok(seqs.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "audit records not written; the requests waiting on them fail");
                let err = AuditError::Store(e.to_string());
                for done in waiters {
                    let _ = done.send(Err(err.clone()));
                }
            }
        }
    }
}
