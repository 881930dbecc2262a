//! Proofs from the store: the hashes an inclusion or consistency proof
//! needs, from the tiles the checkpointer keeps (complete subtrees of 2^8,
//! 2^16, … records) and, below a tile, the records' own leaves. A proof of
//! a log of n records reads O(log n) tiles and at most 255 records per
//! level, never the whole log.
//!
//! Nothing here is trusted by whoever checks a proof: it is verified
//! against the signed checkpoint alone. A changed record or tile makes a
//! proof that doesn't verify.

use super::checkpointer::TILE_HEIGHT;
use super::merkle::{self, Hash, mth, node_hash};
use crate::store::{AuditFilter, Store, StoreError};

/// The Merkle tree hash of leaves `[from, to)` (0-based; record `from + 1`
/// is the first).
pub async fn range_hash(store: &Store, from: u64, to: u64) -> Result<Hash, StoreError> {
    Box::pin(range(store, from, to)).await
}

async fn range(store: &Store, from: u64, to: u64) -> Result<Hash, StoreError> {
    let n = to - from;
    if n == 0 {
        return Ok(merkle::empty_root());
    }
    if n.is_power_of_two() && from.is_multiple_of(n) {
        let height = n.trailing_zeros();
        // The highest tile height at or below the range's: its tiles cover
        // the range exactly, at most 2^7 of them.
        let tile = height / TILE_HEIGHT * TILE_HEIGHT;
        if tile > 0 {
            let (first, last) = (from >> tile, to >> tile);
            let found = store.tiles(tile, first, last).await?;
            if found.len() as u64 == last - first {
                let hashes: Vec<Hash> = found.into_iter().map(|(_, h)| h).collect();
                return Ok(mth(&hashes));
            }
            // A tile is missing: compute the halves instead.
        } else {
            return leaves(store, from, to).await.map(|l| mth(&l));
        }
    }
    if n == 1 {
        return leaves(store, from, to).await.map(|l| l[0]);
    }
    let k = 1u64 << (63 - (n - 1).leading_zeros());
    let left = Box::pin(range(store, from, from + k)).await?;
    let right = Box::pin(range(store, from + k, to)).await?;
    Ok(node_hash(&left, &right))
}

/// The leaf hashes of records `from + 1 ..= to`.
async fn leaves(store: &Store, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
    let records = store.audit_records(&AuditFilter::default(), from as i64, (to - from) as i64).await?;
    if records.len() as u64 != to - from || records.iter().enumerate().any(|(i, r)| r.seq as u64 != from + 1 + i as u64)
    {
        return Err(StoreError::Corrupt(format!("records {}..={to} are not all in the log", from + 1)));
    }
    Ok(records.iter().map(|r| r.leaf()).collect())
}

/// The inclusion proof of record `seq` in the tree of the first `size`
/// records.
pub async fn inclusion(store: &Store, seq: u64, size: u64) -> Result<Vec<Hash>, StoreError> {
    let mut out = Vec::new();
    for (from, to) in merkle::inclusion_ranges(seq - 1, size) {
        out.push(range_hash(store, from, to).await?);
    }
    Ok(out)
}

/// The consistency proof from the tree of the first `from` records to the
/// tree of the first `to`.
pub async fn consistency(store: &Store, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
    let mut out = Vec::new();
    for (a, b) in merkle::consistency_ranges(from, to) {
        out.push(range_hash(store, a, b).await?);
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("there is no checkpoint of size {0}")]
    NoCheckpoint(u64),
    #[error("the log has no checkpoint yet")]
    NoCheckpoints,
    #[error("record {seq} is not covered by checkpoint {size}")]
    NotCovered { seq: u64, size: u64 },
    #[error("checkpoint {from} is later than checkpoint {to}")]
    Backwards { from: u64, to: u64 },
}

/// The checkpoint of `size` records, or the newest for 0.
pub async fn checkpoint_of(store: &Store, size: u64) -> Result<super::checkpoint::SignedHead, ProofError> {
    let cp = if size == 0 { store.latest_checkpoint().await? } else { store.checkpoint(size).await? };
    match cp {
        Some(c) => Ok(c.signed),
        None if size == 0 => Err(ProofError::NoCheckpoints),
        None => Err(ProofError::NoCheckpoint(size)),
    }
}

/// The inclusion proof of record `seq` against the checkpoint of
/// `tree_size` records (the newest for 0), with the record's canonical form.
pub async fn inclusion_of(store: &Store, seq: u64, tree_size: u64) -> Result<super::proof::Proof, ProofError> {
    let signed = checkpoint_of(store, tree_size).await?;
    let size = signed.head.size;
    if seq == 0 || seq > size {
        return Err(ProofError::NotCovered { seq, size });
    }
    let record = store.audit_records(&AuditFilter::default(), seq as i64 - 1, 1).await?;
    let record =
        record.into_iter().next().filter(|r| r.seq as u64 == seq).ok_or(ProofError::NotCovered { seq, size })?;
    let path = inclusion(store, seq, size).await?;
    Ok(super::proof::Proof::Inclusion {
        seq,
        canonical: Some(super::canonical(record.seq, &record.recorded_at, &record.entry)),
        leaf_hash: hex::encode(record.leaf()),
        path: path.iter().map(hex::encode).collect(),
        checkpoint: signed.encode(),
    })
}

/// The consistency proof between the checkpoints of `from` and `to`
/// records.
pub async fn consistency_of(store: &Store, from: u64, to: u64) -> Result<super::proof::Proof, ProofError> {
    if from > to {
        return Err(ProofError::Backwards { from, to });
    }
    let (a, b) = (checkpoint_of(store, from.max(1)).await?, checkpoint_of(store, to).await?);
    let path = consistency(store, a.head.size, b.head.size).await?;
    Ok(super::proof::Proof::Consistency {
        from: a.encode(),
        to: b.encode(),
        path: path.iter().map(hex::encode).collect(),
    })
}
