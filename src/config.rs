//! Defaults shared by the commands: topic names and ingest limits.

/// One topic per source system by default (each configurable).
pub const TOPIC_UDK: &str = "overblik.udk";
pub const TOPIC_KY: &str = "overblik.ky";
pub const TOPIC_JOBCENTER: &str = "overblik.jobcenter";
pub const TOPIC_SKAT: &str = "overblik.skat";

pub const DEFAULT_TOPICS: [&str; 4] = [TOPIC_UDK, TOPIC_KY, TOPIC_JOBCENTER, TOPIC_SKAT];

/// The largest batch committed in one transaction.
pub const DEFAULT_BATCH_MAX: usize = 5_000;
/// How long a batch waits to fill before it is committed anyway. Short:
/// it adds to every event's freshness, while under load a batch fills to
/// its maximum during the previous commit regardless.
pub const DEFAULT_BATCH_LINGER_MS: u64 = 10;
/// librdkafka's `fetch.wait.max.ms` for the in-process broker of dev mode.
/// librdkafka's mock cluster holds an empty fetch for the whole wait and
/// does not answer it when data arrives (a real broker does), so with the
/// default of 500 ms every event waited up to half a second before the
/// consumer saw it.
pub const EMBEDDED_FETCH_WAIT_MS: u64 = 10;

/// The topic change notices are published to.
pub const TOPIC_ADVIS: &str = "overblik.advis";
