//! One batch through decode → project → store, in one transaction.

use crate::events::DecodeLimits;
use crate::projection::{self, Decoded, Plan};
use crate::store::{OffsetAdvance, Store, StoreError};

/// Commits one batch: loads what the projector needs about its aggregates,
/// plans it (pure), writes the plan and advances the offsets, all in one
/// transaction. On any error nothing is written and the same batch can be
/// tried again. Then drains the parked events the batch put next in line
/// beyond what it loaded (rare: see `store::ParkedBudget`).
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
    if !plan.drain.is_empty() {
        // Committed already: a failed drain is caught up by the next batch
        // with an event of the aggregate, or the sweep at the next start.
        if let Err(e) = super::parked::drain(store, &plan.drain, limits).await {
            tracing::warn!(error = %e, aggregates = plan.drain.len(), "draining parked events failed; retried later");
        }
    }
    Ok(plan)
}
