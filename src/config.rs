//! Defaults shared by the commands: topic names and ingest limits.

/// One topic per source system by default (each configurable).
pub const TOPIC_UDK: &str = "overblik.udk";
pub const TOPIC_KY: &str = "overblik.ky";
pub const TOPIC_JOBCENTER: &str = "overblik.jobcenter";
pub const TOPIC_SKAT: &str = "overblik.skat";

pub const DEFAULT_TOPICS: [&str; 4] = [TOPIC_UDK, TOPIC_KY, TOPIC_JOBCENTER, TOPIC_SKAT];

/// The largest batch committed in one transaction.
pub const DEFAULT_BATCH_MAX: usize = 5_000;
/// How long a batch waits to fill before it is committed anyway.
pub const DEFAULT_BATCH_LINGER_MS: u64 = 50;
