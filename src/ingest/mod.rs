//! Source: the Kafka consumer that feeds batches through decode → project →
//! store.
//!
//! Offsets live in the store, not in Kafka (invariant 1): on assignment the
//! consumer reads them from the database inside the rebalance callback and
//! assigns once with them; each batch's commit advances them with a
//! compare-and-set in the same transaction as its effects. Kafka's own
//! offset commits are never made.

mod backoff;
mod commit;
mod consumer;
pub mod health;
pub mod isolate;
pub mod parked;
mod pipeline;
pub mod population;
pub mod replay;
pub mod statistics;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub use backoff::Backoff;
pub use consumer::run;
pub use health::IngestHealth;
pub use pipeline::commit_batch;

use crate::events::DecodeLimits;

/// How the consumer connects and batches.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    pub brokers: String,
    pub group: String,
    pub topics: Vec<String>,
    /// At most this many messages per batch (and per transaction).
    pub batch_max: usize,
    /// A batch commits at the latest this long after its first message.
    pub batch_linger: Duration,
    pub limits: DecodeLimits,
    /// Extra librdkafka settings (`key=value`), applied last.
    pub kafka_options: Vec<(String, String)>,
    /// This instance's stable name in the group: static membership
    /// (`group.instance.id`), so a restarted instance gets its partitions
    /// back at once instead of after a rebalance. `None`: dynamic.
    pub instance: Option<String>,
}

/// Set to stop the consumer: it finishes (or abandons) its batch and leaves
/// the group.
pub type StopFlag = Arc<AtomicBool>;

/// Sets its flag when dropped, so whatever the flag stops also stops on
/// every way out of a scope, unwinding included.
pub struct StopOnDrop(pub StopFlag);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
