//! The consumer loop: poll → batch → decode → commit, on a thread of its own.
//!
//! A dedicated thread owns the `BaseConsumer`, so librdkafka's callbacks —
//! the rebalance callback above all — run on it, inside `poll`, where it is
//! safe to block on the store. Batches are committed synchronously: while a
//! batch is being written nothing else is polled, so a rebalance can never
//! find a batch in flight, and memory holds at most one batch plus
//! librdkafka's own bounded prefetch.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::runtime::Handle;

use super::isolate::{BatchCommit, Isolated, Refusal};
use super::{Backoff, IngestHealth, IngestSettings, StopFlag, commit_batch};
use crate::metrics::METRICS;
use crate::projection::{Decoded, Origin, Prior};
use crate::store::{OffsetAdvance, Store, StoreError};

/// What this consumer owns: the next offset to commit per partition (as read
/// from, then written to, the store), and per partition the generation of
/// its assignment, so that messages polled under an earlier one can be
/// recognised.
///
/// Generations are per partition, not per consumer: under cooperative
/// rebalancing a member keeps most of its partitions, whose fetch positions
/// go on from where they were. Dropping their polled messages would lose
/// them (nothing fetches them again), so only the partitions that were
/// revoked, newly assigned or moved by a seek drop what was polled before.
#[derive(Default)]
struct Assignment {
    next: HashMap<(Arc<str>, i32), i64>,
    generation: HashMap<(Arc<str>, i32), u64>,
    last_generation: u64,
    /// Topic names shared by every message polled from them.
    topics: Vec<Arc<str>>,
}

impl Assignment {
    /// A new generation for `key`: what was polled from it before is stale.
    fn renew(&mut self, key: (Arc<str>, i32)) {
        self.last_generation += 1;
        self.generation.insert(key, self.last_generation);
    }

    fn forget(&mut self, key: &(Arc<str>, i32)) {
        self.next.remove(key);
        self.generation.remove(key);
    }

    fn clear(&mut self) {
        self.next.clear();
        self.generation.clear();
    }

    fn topic(&mut self, name: &str) -> Arc<str> {
        if let Some(t) = self.topics.iter().find(|t| t.as_ref() == name) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(name);
        self.topics.push(t.clone());
        t
    }
}

struct IngestContext {
    store: Store,
    health: Arc<IngestHealth>,
    rt: Handle,
    stop: StopFlag,
    assignment: Mutex<Assignment>,
}

impl IngestContext {
    fn assignment(&self) -> std::sync::MutexGuard<'_, Assignment> {
        self.assignment.lock().expect("assignment lock")
    }

    /// Reads the stored offsets of `parts`, retrying with backoff while the
    /// store is unavailable. `None` if asked to stop meanwhile.
    fn stored_offsets(&self, parts: &[(String, i32)]) -> Option<Vec<i64>> {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            match self.rt.block_on(self.store.assigned_offsets(parts)) {
                Ok(offsets) => return Some(offsets),
                Err(e) => {
                    tracing::warn!(error = %e, "can't read stored offsets for the assignment; retrying");
                    if self.stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    std::thread::sleep(backoff.next_delay());
                }
            }
        }
    }
}

impl ClientContext for IngestContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", "{fac} {message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            _ => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, "{reason}");
    }

    /// Lag is measured against the store, not Kafka's committed offsets
    /// (which are never written): last stable offset − next stored offset.
    fn stats(&self, stats: Statistics) {
        let a = self.assignment();
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                if let Some(next) = a.next.get(&(Arc::from(topic.as_str()), *p)) {
                    let end = if part.ls_offset >= 0 { part.ls_offset } else { part.hi_offset };
                    if end >= 0 {
                        METRICS.set_lag(topic, *p, (end - next).max(0));
                    }
                }
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    /// Assigns with the offsets stored in the database, once (setting them
    /// on the list before assigning, rather than seeking afterwards).
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let parts: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
                let stored = self.stored_offsets(&parts);
                {
                    let mut a = self.assignment();
                    if !cooperative {
                        // Eager: this is the whole assignment.
                        a.clear();
                    }
                    if let Some(offsets) = &stored {
                        for ((topic, p), next) in parts.iter().zip(offsets) {
                            if let Err(e) = tpl.set_partition_offset(topic, *p, Offset::Offset(*next)) {
                                tracing::error!(%topic, partition = p, error = %e, "can't set the assigned offset");
                                continue;
                            }
                            let topic = a.topic(topic);
                            a.next.insert((topic.clone(), *p), *next);
                            a.renew((topic, *p));
                        }
                    }
                    // Without stored offsets (stopping), partitions are assigned
                    // but absent from `next`: nothing from them is committed.
                }
                tracing::info!(partitions = ?parts, "assigned");
                let result = if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(e) = result {
                    tracing::error!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                {
                    let mut a = self.assignment();
                    for e in tpl.elements() {
                        a.forget(&(Arc::from(e.topic()), e.partition()));
                        METRICS.forget_lag(e.topic(), e.partition());
                        self.health.settled(e.topic(), e.partition());
                    }
                }
                tracing::info!(partitions = tpl.count(), lost = consumer.assignment_lost(), "revoked");
                let result = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                if let Err(e) = result {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; dropping the assignment");
                self.assignment().clear();
                let _ = if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
            }
        }
    }
}

/// A message as polled, owned, tagged with the generation of its
/// partition's assignment it was polled under (0: not assigned).
struct Polled {
    origin: Origin,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    generation: u64,
}

/// Polls up to `max` messages, returning early `linger` after the first.
fn collect(consumer: &BaseConsumer<IngestContext>, settings: &IngestSettings, stop: &StopFlag) -> Vec<Polled> {
    let mut batch = Vec::new();
    let mut deadline: Option<Instant> = None;
    while batch.len() < settings.batch_max && !stop.load(Ordering::Relaxed) {
        let timeout = match deadline {
            None => Duration::from_millis(100),
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => left,
                None => break,
            },
        };
        let polled = consumer.poll(timeout);
        let now = chrono::Utc::now().timestamp_millis();
        consumer.context().health.polled(now);
        match polled {
            None => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "poll error"),
            Some(Ok(m)) => {
                consumer.context().health.pending(m.topic(), m.partition(), now);
                let (generation, topic) = {
                    let mut a = consumer.context().assignment();
                    let topic = a.topic(m.topic());
                    (a.generation.get(&(topic.clone(), m.partition())).copied().unwrap_or(0), topic)
                };
                batch.push(Polled {
                    origin: Origin { topic, partition: m.partition(), offset: m.offset() },
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    generation,
                });
                deadline.get_or_insert_with(|| Instant::now() + settings.batch_linger);
            }
        }
    }
    batch
}

/// Keeps the messages of partitions this consumer still owns, polled under
/// their current assignment, and computes each partition's offset advance.
fn prepare(batch: Vec<Polled>, ctx: &IngestContext) -> (Vec<Polled>, Vec<OffsetAdvance>) {
    let a = ctx.assignment();
    let kept: Vec<Polled> = batch
        .into_iter()
        .filter(|m| {
            let key = (m.origin.topic.clone(), m.origin.partition);
            a.next.contains_key(&key) && a.generation.get(&key) == Some(&m.generation)
        })
        .collect();
    let mut last: BTreeMap<(Arc<str>, i32), i64> = BTreeMap::new();
    for m in &kept {
        let e = last.entry((m.origin.topic.clone(), m.origin.partition)).or_insert(m.origin.offset);
        *e = (*e).max(m.origin.offset);
    }
    let advances = last
        .into_iter()
        .map(|((topic, partition), offset)| {
            let expected = a.next[&(topic.clone(), partition)];
            OffsetAdvance { topic: topic.to_string(), partition, expected, next: offset + 1 }
        })
        .collect();
    (kept, advances)
}

/// After a fence: the store's offsets win. Re-reads them for the batch's
/// partitions and moves the consumer there.
fn resync(consumer: &BaseConsumer<IngestContext>, ctx: &IngestContext, advances: &[OffsetAdvance]) {
    let parts: Vec<(String, i32)> = advances.iter().map(|a| (a.topic.clone(), a.partition)).collect();
    let Some(stored) = ctx.stored_offsets(&parts) else {
        return;
    };
    let mut tpl = TopicPartitionList::new();
    {
        let mut a = ctx.assignment();
        for ((topic, p), next) in parts.iter().zip(stored) {
            let key = (Arc::from(topic.as_str()), *p);
            if let Some(n) = a.next.get_mut(&key) {
                *n = next;
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(next));
                a.renew(key);
            }
        }
    }
    if tpl.count() > 0
        && let Err(e) = consumer.seek_partitions(tpl, Duration::from_secs(10))
    {
        tracing::error!(error = %e, "seek after a fence failed");
    }
}

/// A conflict that repeats this many times in a row on the same attempt is
/// not a race any more: the attempt is isolated like a refusal.
const MAX_CONFLICTS: u32 = 10;

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(_))
}

fn log_isolated(found: &Isolated) {
    tracing::warn!(
        topic = %found.topic,
        partition = found.partition,
        offset = found.offset,
        sqlstate = %found.sqlstate,
        "the store refuses this message; dead-lettering it as STORE_REJECTED"
    );
}

fn client_config(settings: &IngestSettings) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &settings.brokers)
        .set("group.id", &settings.group)
        .set("client.id", format!("overblik-{}", std::process::id()))
        // Offsets are the store's business, never Kafka's.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000");
    if let Some(instance) = &settings.instance {
        // Static membership: the broker keeps this member's assignment
        // across a restart within the session timeout, so a killed
        // instance resumes without a rebalance.
        cfg.set("group.instance.id", format!("overblik-{instance}"));
    }
    for (k, v) in &settings.kafka_options {
        cfg.set(k, v);
    }
    cfg
}

/// Runs the consumer until `stop` is set. Blocks the calling thread (spawn
/// it on a thread of its own); `rt` runs the store's futures.
///
/// Returns an error only for what retrying can't fix (a projection schema
/// this build doesn't know, unreadable stored state); everything transient
/// is retried with backoff while the backlog stays visible in the metrics.
pub fn run(
    settings: IngestSettings,
    store: Store,
    rt: Handle,
    stop: StopFlag,
    health: Arc<IngestHealth>,
) -> anyhow::Result<()> {
    // Parked events a stopped process left next in line apply first.
    match rt.block_on(super::parked::drain_ready(&store, &settings.limits)) {
        Ok(0) => {}
        Ok(applied) => tracing::info!(applied, "applied parked events that were next in line"),
        Err(e) => tracing::warn!(error = %e, "draining parked events that are next in line failed"),
    }
    let ctx = IngestContext {
        store: store.clone(),
        health: health.clone(),
        rt: rt.clone(),
        stop: stop.clone(),
        assignment: Mutex::default(),
    };
    let consumer: BaseConsumer<IngestContext> = client_config(&settings).create_with_context(ctx)?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(group = %settings.group, topics = ?settings.topics, "consuming");

    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut statistics = super::statistics::StatisticsRefresh::new(super::statistics::REFRESH_EVERY);
    let result = 'outer: loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let polled = collect(&consumer, &settings, &stop);
        // A fatal client error (another instance took our static
        // membership, say) doesn't go away by polling on.
        if let Some((code, reason)) = consumer.client().fatal_error() {
            break Err(anyhow::anyhow!("the Kafka client failed fatally: {code:?}: {reason}"));
        }
        if polled.is_empty() {
            continue;
        }
        let (kept, advances) = prepare(polled, consumer.context());
        if kept.is_empty() {
            health.settle_all();
            continue;
        }
        let items: Vec<Decoded> =
            kept.into_iter().map(|m| Decoded::new(m.origin, Prior::New, m.key, m.payload, &settings.limits)).collect();
        METRICS.pending_since_ms.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
        let mut batch = BatchCommit::new(items, &advances);
        let mut conflicts = 0;
        let mut counted = 0;
        while !batch.is_done() {
            // Every attempt after the first is one the isolation costs.
            METRICS.isolation_attempts.fetch_add((batch.extra_attempts() - counted) as u64, Ordering::Relaxed);
            counted = batch.extra_attempts();
            let (attempt, attempt_advances) = batch.attempt();
            let new_messages = attempt.len();
            let started = Instant::now();
            match rt.block_on(commit_batch(&store, attempt, &attempt_advances, &settings.limits)) {
                Ok(plan) => {
                    let mut a = consumer.context().assignment();
                    for adv in &attempt_advances {
                        if let Some(next) = a.next.get_mut(&(Arc::from(adv.topic.as_str()), adv.partition)) {
                            *next = adv.next;
                        }
                    }
                    drop(a);
                    METRICS.record(&plan, new_messages, started.elapsed().as_secs_f64());
                    statistics.applied(plan.total().applied, &store, &rt);
                    backoff.reset();
                    conflicts = 0;
                    if let Some(found) = batch.committed(&attempt_advances) {
                        log_isolated(&found);
                    }
                }
                Err(StoreError::Fenced { topic, partition, .. }) => {
                    METRICS.fenced.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%topic, partition, "fenced: another commit moved the offset; resuming from the store");
                    resync(&consumer, consumer.context(), &advances);
                    break;
                }
                Err(e)
                    if matches!(e, StoreError::Refused { .. }) || (is_conflict(&e) && conflicts >= MAX_CONFLICTS) =>
                {
                    let refusal = match e {
                        StoreError::Refused { sqlstate, detail, .. } => Refusal { sqlstate, detail },
                        other => Refusal {
                            sqlstate: "40001".into(),
                            detail: crate::events::scrub_detail(&format!(
                                "SQLSTATE 40001: a conflict that persisted through {MAX_CONFLICTS} attempts: {other}"
                            )),
                        },
                    };
                    conflicts = 0;
                    let sqlstate = refusal.sqlstate.clone();
                    match batch.refused(refusal) {
                        Ok(Some(found)) => log_isolated(&found),
                        Ok(None) => tracing::warn!(
                            %sqlstate,
                            remaining = batch.remaining(),
                            "the store refused part of a batch; narrowing down the message it refuses"
                        ),
                        Err(e) => break 'outer Err(anyhow::Error::new(e).context("ingest stopped")),
                    }
                }
                Err(e) if e.is_transient() => {
                    if is_conflict(&e) {
                        METRICS.conflicts.fetch_add(1, Ordering::Relaxed);
                        conflicts += 1;
                    }
                    METRICS.commit_failures.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, messages = new_messages, "batch not committed; retrying");
                    // Sleep in short steps so a stop is noticed; an abandoned
                    // batch is simply consumed again next time.
                    let until = Instant::now() + delay;
                    while Instant::now() < until {
                        if stop.load(Ordering::Relaxed) {
                            tracing::info!("stopping with an uncommitted batch; it will be consumed again");
                            break 'outer Ok(());
                        }
                        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
                    }
                }
                Err(e) => break 'outer Err(anyhow::Error::new(e).context("ingest stopped")),
            }
        }
        METRICS.pending_since_ms.store(0, Ordering::Relaxed);
        // One batch in flight: whatever was pending is now committed, or
        // dropped to be consumed again.
        health.settle_all();
    };
    METRICS.pending_since_ms.store(0, Ordering::Relaxed);
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!("consumer closed");
    result
}
