//! The consumer loop: poll → batch → decode → commit, on a thread of its own.
//!
//! A dedicated thread owns the `BaseConsumer`, so librdkafka's callbacks —
//! the rebalance callback above all — run on it, inside `poll`, where it is
//! safe to block on the store.
//!
//! Batch *n* commits as a task on the runtime ([`super::commit`]) while this
//! thread polls and decodes batch *n + 1*: the database and the decoder work
//! at the same time. Nothing else overlaps. Batch *n + 1*'s offsets are
//! prepared, and its commit started, only once batch *n*'s outcome is in;
//! and a rebalance first waits for the batch in flight, so it never reads
//! or gives up offsets while one is being written. Memory holds at most two
//! batches (one committing, one being collected) plus librdkafka's own
//! bounded prefetch.

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

use tokio::task::JoinHandle;

use super::commit::{End, Job, Outcome, commit_to_end};
use super::{Backoff, IngestHealth, IngestSettings, StopFlag, StopOnDrop};
use crate::metrics::METRICS;
use crate::projection::{Decoded, MessageBytes, Origin, Prior};
use crate::store::{OffsetAdvance, Store};

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
pub(super) struct Assignment {
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

    /// A commit moved these partitions' offsets (those still owned).
    pub(super) fn committed(&mut self, advances: &[OffsetAdvance]) {
        for adv in advances {
            if let Some(next) = self.next.get_mut(&(Arc::from(adv.topic.as_str()), adv.partition)) {
                *next = adv.next;
            }
        }
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

/// The batch whose commit runs on the runtime, if any.
#[derive(Default)]
enum InFlight {
    #[default]
    Idle,
    Running(JoinHandle<Outcome>),
    /// Done, its outcome not yet taken by the loop (a rebalance waited for it).
    Finished(Outcome),
}

struct IngestContext {
    store: Store,
    health: Arc<IngestHealth>,
    rt: Handle,
    stop: StopFlag,
    /// Shared with the commit task, which records committed offsets in it.
    assignment: Arc<Mutex<Assignment>>,
    /// Touched only on the consumer thread (the loop and, inside `poll`,
    /// the callbacks); a mutex because callbacks get `&self`.
    in_flight: Mutex<InFlight>,
}

impl IngestContext {
    fn assignment(&self) -> std::sync::MutexGuard<'_, Assignment> {
        self.assignment.lock().expect("assignment lock")
    }

    /// Starts committing a batch. One at a time: the previous outcome must
    /// have been taken.
    fn start(&self, job: Job) {
        let mut in_flight = self.in_flight.lock().expect("in-flight lock");
        debug_assert!(matches!(*in_flight, InFlight::Idle), "one batch in flight at most");
        *in_flight = InFlight::Running(self.rt.spawn(commit_to_end(job)));
    }

    /// Whether a batch's outcome is ready to take without waiting.
    fn has_outcome(&self) -> bool {
        match &*self.in_flight.lock().expect("in-flight lock") {
            InFlight::Idle => false,
            InFlight::Running(h) => h.is_finished(),
            InFlight::Finished(_) => true,
        }
    }

    /// Waits until the batch in flight, if any, has its outcome. Must not be
    /// called holding the assignment lock: the task takes it to commit.
    fn wait(&self) {
        let state = std::mem::take(&mut *self.in_flight.lock().expect("in-flight lock"));
        let state = match state {
            InFlight::Running(handle) => InFlight::Finished(match self.rt.block_on(handle) {
                Ok(outcome) => outcome,
                Err(e) => Outcome {
                    // What it applied before failing is not known: the
                    // statistics refresh merely comes later.
                    applied: 0,
                    end: End::Failed(anyhow::anyhow!("the batch's commit task failed: {e}")),
                },
            }),
            other => other,
        };
        *self.in_flight.lock().expect("in-flight lock") = state;
    }

    /// The outcome of the batch in flight, waiting for it; `None` if no
    /// batch was in flight.
    fn take_outcome(&self) -> Option<Outcome> {
        self.wait();
        match std::mem::take(&mut *self.in_flight.lock().expect("in-flight lock")) {
            InFlight::Finished(outcome) => Some(outcome),
            _ => None,
        }
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
        // Offsets are read or given up only with no batch being written:
        // its outcome waits for the loop.
        self.wait();
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

/// A message as polled and decoded, tagged with the generation of its
/// partition's assignment it was polled under (0: not assigned) and when.
struct Polled {
    decoded: Decoded,
    generation: u64,
    polled_ms: i64,
}

/// Polls and decodes up to `max` messages, returning early `linger` after
/// the first — or, with nothing polled yet, as soon as the batch in flight
/// has its outcome, so that outcome is acted on without waiting for traffic.
fn collect(consumer: &BaseConsumer<IngestContext>, settings: &IngestSettings, stop: &StopFlag) -> Vec<Polled> {
    let mut batch = Vec::new();
    let mut deadline: Option<Instant> = None;
    while batch.len() < settings.batch_max && !stop.load(Ordering::Relaxed) {
        if batch.is_empty() && consumer.context().has_outcome() {
            break;
        }
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
                let (generation, topic) = {
                    let mut a = consumer.context().assignment();
                    let topic = a.topic(m.topic());
                    (a.generation.get(&(topic.clone(), m.partition())).copied().unwrap_or(0), topic)
                };
                let origin = Origin { topic, partition: m.partition(), offset: m.offset() };
                // The one copy of the message's bytes, out of the client.
                let key = m.key().map(MessageBytes::from);
                let payload = MessageBytes::from(m.payload().unwrap_or_default());
                let decoded = Decoded::new(origin, Prior::New, key, payload, &settings.limits);
                batch.push(Polled { decoded, generation, polled_ms: now });
                deadline.get_or_insert_with(|| Instant::now() + settings.batch_linger);
            }
        }
    }
    batch
}

/// Marks the partitions of `batch` pending since their first message was
/// polled, for readiness. Polling overlaps the previous batch's commit, so
/// a partition can show as pending for up to two commits' time.
fn mark_pending(health: &IngestHealth, batch: &[Polled]) {
    for m in batch {
        health.pending(&m.decoded.origin.topic, m.decoded.origin.partition, m.polled_ms);
    }
}

/// Keeps the messages of partitions this consumer still owns, polled under
/// their current assignment, and computes each partition's offset advance.
fn prepare(batch: Vec<Polled>, ctx: &IngestContext) -> (Vec<Polled>, Vec<OffsetAdvance>) {
    let a = ctx.assignment();
    let kept: Vec<Polled> = batch
        .into_iter()
        .filter(|m| {
            let key = (m.decoded.origin.topic.clone(), m.decoded.origin.partition);
            a.next.contains_key(&key) && a.generation.get(&key) == Some(&m.generation)
        })
        .collect();
    let mut last: BTreeMap<(Arc<str>, i32), i64> = BTreeMap::new();
    for d in kept.iter().map(|m| &m.decoded) {
        let e = last.entry((d.origin.topic.clone(), d.origin.partition)).or_insert(d.origin.offset);
        *e = (*e).max(d.origin.offset);
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

/// Why the consumer could not move back to the store's offsets.
#[derive(Debug, thiserror::Error)]
enum Unsynced {
    /// Asked to stop while reading them.
    #[error("stopping")]
    Stopping,
    #[error("can't move partitions back to the store's offsets after a fence: {0}")]
    SeekFailed(String),
}

/// After a fence: the store's offsets win. Re-reads them for the batch's
/// partitions and moves the consumer there.
///
/// The fenced attempt committed nothing, so until its partitions are moved
/// back, what was polled after it must not commit: the offsets'
/// compare-and-set would pass (the stored offset is still where the
/// attempt began) and the attempt's messages would be skipped. So on any
/// failure the partitions are forgotten — nothing of theirs commits here
/// again — and the caller stops.
fn resync(
    consumer: &BaseConsumer<IngestContext>,
    ctx: &IngestContext,
    advances: &[OffsetAdvance],
) -> Result<(), Unsynced> {
    let parts: Vec<(String, i32)> = advances.iter().map(|a| (a.topic.clone(), a.partition)).collect();
    let forget = |ctx: &IngestContext| {
        let mut a = ctx.assignment();
        for (topic, p) in &parts {
            a.forget(&(Arc::from(topic.as_str()), *p));
        }
    };
    let Some(stored) = ctx.stored_offsets(&parts) else {
        forget(ctx);
        return Err(Unsynced::Stopping);
    };
    let mut tpl = TopicPartitionList::new();
    let mut refused = Vec::new();
    {
        let mut a = ctx.assignment();
        for ((topic, p), next) in parts.iter().zip(stored) {
            let key = (Arc::from(topic.as_str()), *p);
            if let Some(n) = a.next.get_mut(&key) {
                *n = next;
                match tpl.add_partition_offset(topic, *p, Offset::Offset(next)) {
                    Ok(()) => a.renew(key),
                    Err(e) => refused.push(format!("{topic}/{p} at {next}: {e}")),
                }
            }
        }
    }
    if !refused.is_empty() {
        forget(ctx);
        return Err(Unsynced::SeekFailed(refused.join(", ")));
    }
    if tpl.count() == 0 {
        return Ok(());
    }
    let failed = match consumer.seek_partitions(tpl, Duration::from_secs(10)) {
        Ok(result) => result
            .elements()
            .iter()
            .filter_map(|e| e.error().err().map(|err| format!("{}/{}: {err}", e.topic(), e.partition())))
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => e.to_string(),
    };
    if failed.is_empty() {
        return Ok(());
    }
    forget(ctx);
    Err(Unsynced::SeekFailed(failed))
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
        assignment: Arc::default(),
        in_flight: Mutex::default(),
    };
    let consumer: BaseConsumer<IngestContext> = client_config(&settings).create_with_context(ctx)?;
    let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(group = %settings.group, topics = ?settings.topics, "consuming");

    let mut statistics = super::statistics::StatisticsRefresh::new(super::statistics::REFRESH_EVERY);
    let ctx = consumer.context();
    // Should this thread unwind, the batch in flight is told to stop too
    // rather than commit on, retrying, with nobody waiting for it.
    let _stop_on_unwind = StopOnDrop(stop.clone());
    let mut result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        // Polls and decodes the next batch while the previous one commits.
        let polled = collect(&consumer, &settings, &stop);
        // A fatal client error (another instance took our static
        // membership, say) doesn't go away by polling on.
        if let Some((code, reason)) = consumer.client().fatal_error() {
            break Err(anyhow::anyhow!("the Kafka client failed fatally: {code:?}: {reason}"));
        }
        if let Some(Outcome { applied, end }) = ctx.take_outcome() {
            // One batch in flight: whatever was pending is now committed,
            // or dropped to be consumed again.
            health.settle_all();
            statistics.applied(applied, &store, &rt);
            match end {
                End::Committed => {}
                End::Fenced { advances } => match resync(&consumer, ctx, &advances) {
                    Ok(()) => {}
                    Err(Unsynced::Stopping) => break Ok(()),
                    Err(e) => break Err(e.into()),
                },
                End::Stopped => break Ok(()),
                End::Failed(e) => break Err(e),
            }
        }
        // A stop asked for while the last batch committed starts no other.
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let (kept, advances) = prepare(polled, ctx);
        mark_pending(&health, &kept);
        if kept.is_empty() {
            continue;
        }
        ctx.start(Job {
            store: store.clone(),
            items: kept.into_iter().map(|m| m.decoded).collect(),
            advances,
            limits: settings.limits,
            stop: stop.clone(),
            assignment: ctx.assignment.clone(),
        });
    };
    // The batch still in flight commits, or stops at its next retry: after
    // a failure it is told to stop, so a store that is down too can't keep
    // it (and this thread) retrying.
    if result.is_err() {
        stop.store(true, Ordering::SeqCst);
    }
    if let Some(Outcome { end: End::Failed(e), .. }) = ctx.take_outcome()
        && result.is_ok()
    {
        result = Err(e);
    }
    METRICS.pending_since_ms.store(0, Ordering::Relaxed);
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!("consumer closed");
    result
}
