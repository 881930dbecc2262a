//! Making checkpoints: every N records or T seconds, the records since the
//! last checkpoint are folded into the Merkle tree, the new tree head is
//! signed, stored in the database and written to the sink outside it.
//!
//! The database is where instances agree: a checkpoint is stored only if it
//! extends the newest one (so checkpoints form one chain of sizes), and its
//! file is written after. A file missing from the sink — the process died
//! between the two, or another instance made the checkpoint — is written
//! from the stored signed head and the records' leaves, if they still hash
//! to its root; if they don't, the records were changed since it was
//! signed, and that is reported, not papered over.
//!
//! Records are read back from the database and each one's MAC is checked:
//! one the service didn't write is still part of the tree (the tree has no
//! gaps), but the checkpoint names it as unvouched, so whoever verifies
//! learns of it from a signature nobody but the key's holder can make.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::checkpoint::{AuditKey, CheckpointFile, Sink, TreeHead, UNVOUCHED_LISTED};
use super::merkle::{Completed, Frontier, Hash};
use super::writer::Appended;
use crate::store::{AuditFilter, Store, StoreError, StoredCheckpoint};

/// Heights of the tiles kept for proofs: complete subtrees of 2^8, 2^16,
/// 2^24 … records.
pub const TILE_HEIGHT: u32 = 8;

/// When checkpoints are made.
#[derive(Clone, Debug)]
pub struct Settings {
    /// After this many new records at the latest.
    pub every: u64,
    /// After this long at the latest, when there are new records.
    pub interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { every: 1000, interval: Duration::from_secs(10) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("can't write to the checkpoint directory: {0}")]
    Sink(#[from] std::io::Error),
    #[error(
        "the log does not match checkpoint {size}: records were changed after it was signed (verify with overblik audit verify)"
    )]
    Contradicted { size: u64 },
    #[error("the stored checkpoint {size} is not one this key signed")]
    ForeignCheckpoint { size: u64 },
    #[error("checkpoint {size} in the sink differs from the one the database holds")]
    SinkDisagrees { size: u64 },
    #[error("record {seq} is missing from the log below the head: no checkpoint can cover it")]
    Gap { seq: i64 },
}

/// What one round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// The size of the checkpoint made, if one was.
    pub made: Option<u64>,
    /// Records the checkpoint names as not the service's.
    pub unvouched: Vec<u64>,
    /// Checkpoint files written to the sink from stored heads.
    pub exported: u64,
}

/// Keeps making checkpoints until the task is dropped.
pub async fn run(store: Store, key: Arc<AuditKey>, sink: Sink, settings: Settings, appended: Arc<Appended>) {
    loop {
        let since = appended.records.load(Ordering::Relaxed);
        tokio::select! {
            _ = appended.wake.notified() => {
                if appended.records.load(Ordering::Relaxed) < since + settings.every {
                    // Not enough yet: wait for more or for the interval.
                    tokio::select! {
                        _ = wait_for(&appended, since + settings.every) => {}
                        _ = tokio::time::sleep(settings.interval) => {}
                    }
                }
            }
            _ = tokio::time::sleep(settings.interval) => {}
        }
        // Catch up, one checkpoint of at most `every` records at a time.
        loop {
            match round(&store, &key, &sink, settings.every).await {
                Ok(r) => {
                    if !r.unvouched.is_empty() {
                        tracing::error!(
                            records = ?r.unvouched,
                            "audit records in the log that the service did not write; the checkpoint names them"
                        );
                    }
                    if r.made.is_none() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit checkpoint not made");
                    break;
                }
            }
        }
    }
}

async fn wait_for(appended: &Appended, target: u64) {
    while appended.records.load(Ordering::Relaxed) < target {
        appended.wake.notified().await;
    }
}

/// One round: writes missing checkpoint files, then makes one checkpoint
/// of at most `limit` new records, if there are any.
pub async fn round(store: &Store, key: &AuditKey, sink: &Sink, limit: u64) -> Result<Round, CheckpointerError> {
    let mut out = Round::default();
    let latest = store.latest_checkpoint().await?;
    if let Some(cp) = &latest {
        out.exported = export_missing(store, key, sink, cp).await?;
    }
    let (size, frontier) = match &latest {
        Some(cp) => {
            let f = Frontier::from_parts(cp.signed.head.size, cp.frontier.clone())
                .ok_or(CheckpointerError::ForeignCheckpoint { size: cp.signed.head.size })?;
            (cp.signed.head.size, f)
        }
        None => (0, Frontier::new()),
    };
    let (head, _) = store.audit_head().await?;
    if head as u64 <= size {
        return Ok(out);
    }
    let upto = (head as u64).min(size + limit);
    let folded = fold(store, key, frontier, size, upto).await?;
    let signed = key.sign(TreeHead::new(
        folded.frontier.size(),
        folded.frontier.root(),
        chrono::Utc::now(),
        folded.unvouched.clone(),
    ));
    let stored = StoredCheckpoint { signed: signed.clone(), frontier: folded.frontier.nodes().to_vec() };
    if !store.record_checkpoint(&stored, size, &folded.tiles).await? {
        // Another instance made a checkpoint first; the next round exports
        // it and goes on from there.
        return Ok(out);
    }
    let made = signed.head.size;
    let file = CheckpointFile { signed: signed.clone(), after: size, leaves: folded.leaves };
    if let Some(existing) = write_file(sink, file).await?
        && existing.signed != signed
    {
        return Err(CheckpointerError::SinkDisagrees { size: made });
    }
    out.made = Some(made);
    out.unvouched = folded.unvouched;
    Ok(out)
}

struct Folded {
    frontier: Frontier,
    leaves: Vec<Hash>,
    tiles: Vec<Completed>,
    unvouched: Vec<u64>,
}

/// Folds records `after + 1 ..= upto` into `frontier`, checking each MAC.
async fn fold(
    store: &Store,
    key: &AuditKey,
    mut frontier: Frontier,
    after: u64,
    upto: u64,
) -> Result<Folded, CheckpointerError> {
    let mut leaves = Vec::with_capacity((upto - after) as usize);
    let mut tiles = Vec::new();
    let mut unvouched = Vec::new();
    let mut next = after as i64;
    while (next as u64) < upto {
        let limit = (upto - next as u64).min(super::read::PAGE as u64) as i64;
        let page = store.audit_records(&AuditFilter::default(), next, limit).await?;
        if page.is_empty() {
            return Err(CheckpointerError::Gap { seq: next + 1 });
        }
        for r in &page {
            if r.seq != next + 1 {
                return Err(CheckpointerError::Gap { seq: next + 1 });
            }
            let leaf = r.leaf();
            if key.mac(&leaf) != r.mac && unvouched.len() < UNVOUCHED_LISTED {
                unvouched.push(r.seq as u64);
            }
            leaves.push(leaf);
            tiles.extend(frontier.push(leaf).into_iter().filter(|c| c.height % TILE_HEIGHT == 0));
            next = r.seq;
        }
    }
    Ok(Folded { frontier, leaves, tiles, unvouched })
}

/// Writes a checkpoint file on a blocking thread: the write syncs the file
/// and the directory, milliseconds that a runtime worker serving lookups
/// (two of them on a two-core host) should not spend waiting.
async fn write_file(sink: &Sink, file: CheckpointFile) -> Result<Option<CheckpointFile>, CheckpointerError> {
    let sink = sink.clone();
    let written = tokio::task::spawn_blocking(move || sink.write(&file))
        .await
        .map_err(|e| std::io::Error::other(format!("the checkpoint file's writer failed: {e}")))?;
    Ok(written?)
}

/// Writes the files of stored checkpoints the sink lacks, newest last, from
/// the signed heads and the records' leaves. Returns how many it wrote.
async fn export_missing(
    store: &Store,
    key: &AuditKey,
    sink: &Sink,
    latest: &StoredCheckpoint,
) -> Result<u64, CheckpointerError> {
    // The usual case, every round: the newest stored checkpoint's file is
    // there. Only when it isn't is the directory listed.
    if sink.holds(latest.signed.head.size) {
        return Ok(0);
    }
    let have = sink.latest()?.map_or(0, |f| f.signed.head.size);
    if have >= latest.signed.head.size {
        return Ok(0);
    }
    let mut written = 0;
    let mut after = have;
    let mut frontier = match store.checkpoint(have).await? {
        Some(cp) => {
            Frontier::from_parts(have, cp.frontier).ok_or(CheckpointerError::ForeignCheckpoint { size: have })?
        }
        None if have == 0 => Frontier::new(),
        None => return Err(CheckpointerError::SinkDisagrees { size: have }),
    };
    for size in store.checkpoint_sizes_after(have).await? {
        let cp = store.checkpoint(size).await?.ok_or(CheckpointerError::SinkDisagrees { size })?;
        if !key.public().verifies(&cp.signed) {
            return Err(CheckpointerError::ForeignCheckpoint { size });
        }
        let folded = fold(store, key, frontier, after, size).await?;
        if folded.frontier.root() != cp.signed.head.root {
            return Err(CheckpointerError::Contradicted { size });
        }
        write_file(sink, CheckpointFile { signed: cp.signed, after, leaves: folded.leaves }).await?;
        written += 1;
        frontier = folded.frontier;
        after = size;
    }
    Ok(written)
}
