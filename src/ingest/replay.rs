//! Dead-letter replay: refused messages run through decode and projection
//! again — after a fix to the code or the configuration, or with a corrected
//! payload an operator supplies — in the same transactional path as fresh
//! messages, without touching any offset.

use crate::events::DecodeLimits;
use crate::projection::{Decoded, Origin, Outcome, Prior};
use crate::store::{Store, StoreError};

use super::commit_batch;
use super::isolate::{BatchCommit, Refusal};

/// A corrected message to replay in place of a dead letter's bytes.
#[derive(Clone, Debug, Default)]
pub struct Replacement {
    pub payload: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

/// Replays the dead letters `ids`; returns each one's outcome. A dead letter
/// that fails again stays, with its new reason and a replay count.
pub async fn replay(
    store: &Store,
    ids: &[i64],
    replacement: &Replacement,
    limits: &DecodeLimits,
) -> Result<Vec<(i64, Outcome)>, StoreError> {
    let mut outcomes = Vec::new();
    for chunk in ids.chunks(500) {
        let messages = store.dead_letter_messages(chunk).await?;
        let items: Vec<Decoded> = messages
            .iter()
            .map(|m| {
                Decoded::new(
                    Origin { topic: m.topic.as_str().into(), partition: m.partition, offset: m.offset },
                    Prior::DeadLetter(m.id),
                    replacement.key.as_deref().or(m.key.as_deref()).map(Into::into),
                    replacement.payload.as_deref().unwrap_or(&m.payload).into(),
                    limits,
                )
            })
            .collect();
        // A replay the store refuses is isolated like a fresh batch: the
        // refused one fails again as STORE_REJECTED, the rest go through.
        let mut batch = BatchCommit::new(items, &[], limits);
        let mut chunk_outcomes = Vec::new();
        let mut conflicts = 0;
        while !batch.is_done() {
            let (attempt, _) = batch.attempt();
            match commit_batch(store, attempt, &[], limits).await {
                Ok(plan) => {
                    chunk_outcomes.extend(plan.outcomes);
                    batch.committed(&[]);
                }
                Err(StoreError::Conflict(_)) if conflicts < 5 => conflicts += 1,
                Err(StoreError::Refused { sqlstate, detail, source }) => {
                    if batch.refused(Refusal { sqlstate: sqlstate.clone(), detail: detail.clone() }).is_err() {
                        return Err(StoreError::Refused { sqlstate, detail, source });
                    }
                }
                Err(e) => return Err(e),
            }
        }
        outcomes.extend(messages.iter().map(|m| m.id).zip(chunk_outcomes));
    }
    Ok(outcomes)
}
