//! One batch through decode → project → store, in one transaction.

use crate::events::DecodeLimits;
use crate::projection::{self, Decoded, Plan};
use crate::store::{OffsetAdvance, Store, StoreError};

/// Commits one batch: loads what the projector needs about its aggregates,
/// plans it (pure), writes the plan and advances the offsets, all in one
/// transaction. On any error nothing is written and the same batch can be
/// tried again.
pub async fn commit_batch(
    store: &Store,
    items: Vec<Decoded>,
    advances: &[OffsetAdvance],
    limits: &DecodeLimits,
) -> Result<Plan, StoreError> {
    let mut tx = store.begin().await?;
    let context = tx.load_context(&items).await?;
    let plan = projection::plan(items, context, limits);
    tx.write(&plan).await?;
    tx.advance_offsets(advances).await?;
    tx.commit().await?;
    Ok(plan)
}
