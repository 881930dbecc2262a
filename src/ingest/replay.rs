//! Dead-letter replay: refused messages run through decode and projection
//! again — after a fix to the code or the configuration, or with a corrected
//! payload an operator supplies — in the same transactional path as fresh
//! messages, without touching any offset.

use crate::events::DecodeLimits;
use crate::projection::{Decoded, Origin, Outcome, Prior};
use crate::store::{Store, StoreError};

use super::commit_batch;

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
                    replacement.key.clone().or_else(|| m.key.clone()),
                    replacement.payload.clone().unwrap_or_else(|| m.payload.clone()),
                    limits,
                )
            })
            .collect();
        let mut attempts = 0;
        let plan = loop {
            match commit_batch(store, items.clone(), &[], limits).await {
                Err(StoreError::Conflict(_)) if attempts < 5 => attempts += 1,
                other => break other?,
            }
        };
        outcomes.extend(messages.iter().map(|m| m.id).zip(plan.outcomes));
    }
    Ok(outcomes)
}
