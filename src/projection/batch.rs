//! The batch planner: decoded messages + what the store holds about their
//! aggregates → everything one transaction must write.
//!
//! Version rules (invariant 3): an event applies only at its aggregate's
//! last version + 1. At or below the last version it is a duplicate, counted
//! and skipped. Above it, it is parked with every later event of the same
//! aggregate until the missing version arrives — then they apply in order,
//! in the same transaction — or until an operator resolves it. Other
//! aggregates are never held up. Nothing here looks at the clock.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use uuid::Uuid;

use super::apply::{Transition, apply};
use super::state::Aggregate;
use crate::domain::AggregateKind;
use crate::events::{DecodeLimits, Event, EventHeader, Reason, Rejection, decode};

/// A message's key or payload, shared rather than copied: a batch keeps its
/// messages' bytes for another attempt while an attempt's plan moves them
/// into the rows it writes, so the bytes are copied once, out of the Kafka
/// client, and never again.
pub type MessageBytes = Arc<[u8]>;

/// Where a message was consumed from.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

impl Origin {
    pub fn partition_key(&self) -> PartitionKey {
        PartitionKey { topic: self.topic.clone(), partition: self.partition }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic: Arc<str>,
    pub partition: i32,
}

/// What a message's disposition was before this batch: new from Kafka, or a
/// dead letter being replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prior {
    New,
    DeadLetter(i64),
}

/// A message after the decode stage.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub origin: Origin,
    pub prior: Prior,
    pub key: Option<MessageBytes>,
    pub payload: MessageBytes,
    pub result: Result<Event, Rejection>,
}

impl Decoded {
    pub fn new(
        origin: Origin,
        prior: Prior,
        key: Option<MessageBytes>,
        payload: MessageBytes,
        limits: &DecodeLimits,
    ) -> Decoded {
        let result = decode(&payload, key.as_deref(), limits);
        Decoded { origin, prior, key, payload, result }
    }
}

/// An event waiting for an earlier version of its aggregate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parked {
    pub event_id: Uuid,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    /// The version the aggregate was waiting for when this was parked.
    pub expected_version: i64,
    pub origin: Origin,
    pub key: Option<MessageBytes>,
    pub payload: MessageBytes,
}

/// What the store holds about the aggregates a batch touches.
#[derive(Debug, Default)]
pub struct Context {
    pub aggregates: HashMap<Uuid, Aggregate>,
    pub tombstones: HashSet<Uuid>,
    /// Parked events of these aggregates.
    pub parked: HashMap<Uuid, Vec<Parked>>,
    /// Which of the batch's event ids the store already holds (applied or
    /// parked).
    pub known_event_ids: HashSet<Uuid>,
    /// Dead letters already stored for the batch's coordinates, by
    /// (partition, offset, fingerprint): a message consumed again is a
    /// duplicate, not a second dead letter.
    pub dead_letter_fingerprints: HashSet<(PartitionKey, i64, String)>,
    /// The (aggregate, version) of each of the batch's event ids the store
    /// already holds: a redelivered parked event is a duplicate, and a dead
    /// letter for a reused id names the aggregate that holds it.
    pub event_id_holders: HashMap<Uuid, (Uuid, i64)>,
    /// Aggregates of which only the first parked events (in version order)
    /// were loaded, to keep a batch's memory bounded: if all of those apply,
    /// the rest are drained after the commit (`Plan::drain`).
    pub parked_truncated: HashSet<Uuid>,
}

/// Identifies a message's bytes (key and payload) for dead-letter dedup.
pub fn fingerprint(key: Option<&[u8]>, payload: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    match key {
        Some(k) => {
            h.update([1u8]);
            h.update((k.len() as u64).to_be_bytes());
            h.update(k);
        }
        None => h.update([0u8]),
    }
    h.update(payload);
    hex::encode(h.finalize())
}

/// An event to append to the event store.
#[derive(Clone, Debug)]
pub struct Appended {
    pub header: EventHeader,
    pub origin: Origin,
    pub payload: MessageBytes,
}

/// An aggregate's new state, to be written if the stored version is still
/// `expected_version` (0: the aggregate must not exist yet).
#[derive(Clone, Debug)]
pub struct AggregateWrite {
    pub aggregate: Aggregate,
    pub expected_version: i64,
}

/// An aggregate to delete physically, leaving a tombstone.
#[derive(Clone, Debug)]
pub struct Deletion {
    pub aggregate_id: Uuid,
    pub kind: AggregateKind,
    /// The stored version the deletion expects (0: nothing stored yet).
    pub expected_version: i64,
    /// The version of the delete event.
    pub last_version: i64,
}

#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub origin: Origin,
    pub fingerprint: String,
    pub key: Option<MessageBytes>,
    pub payload: MessageBytes,
    pub rejection: Rejection,
    pub event_id: Option<Uuid>,
    pub aggregate_id: Option<Uuid>,
}

/// Disposition counters. A batch carries deltas per partition; the store
/// keeps running totals, and `consumed = applied + duplicates + parked +
/// dead_lettered` holds for the totals at every commit (invariant 4): when a
/// parked event applies later, or a dead letter is replayed, its count moves
/// from one bucket to another.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub applied: i64,
    pub duplicates: i64,
    /// Of the duplicates: events for an aggregate that was already deleted.
    pub ignored_deleted: i64,
    pub parked: i64,
    pub dead_lettered: i64,
}

impl Counts {
    pub fn consumed(&self) -> i64 {
        self.applied + self.duplicates + self.parked + self.dead_lettered
    }

    pub fn add(&mut self, o: &Counts) {
        self.applied += o.applied;
        self.duplicates += o.duplicates;
        self.ignored_deleted += o.ignored_deleted;
        self.parked += o.parked;
        self.dead_lettered += o.dead_lettered;
    }

    fn bump(&mut self, outcome: Outcome, by: i64) {
        match outcome {
            Outcome::Applied => self.applied += by,
            Outcome::Duplicate => self.duplicates += by,
            Outcome::IgnoredDeleted => {
                self.duplicates += by;
                self.ignored_deleted += by;
            }
            Outcome::Parked => self.parked += by,
            Outcome::DeadLettered(_) => self.dead_lettered += by,
        }
    }
}

/// What became of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    IgnoredDeleted,
    Parked,
    DeadLettered(Reason),
}

/// Everything one batch transaction writes.
#[derive(Debug, Default)]
pub struct Plan {
    /// In apply order, which per aggregate is version order.
    pub appended: Vec<Appended>,
    pub writes: Vec<AggregateWrite>,
    pub deletions: Vec<Deletion>,
    pub parked: Vec<Parked>,
    /// Event ids leaving the parked table because they applied or failed.
    pub unparked: Vec<Uuid>,
    pub dead_letters: Vec<DeadLetter>,
    /// Replayed dead letters that failed again, with the new reason.
    pub dead_letters_failed_again: Vec<(i64, Rejection)>,
    /// Replayed dead letters that are now resolved (rows to delete).
    pub dead_letters_resolved: Vec<i64>,
    pub counts: BTreeMap<PartitionKey, Counts>,
    /// One per input message, in input order.
    pub outcomes: Vec<Outcome>,
    /// Aggregates whose loaded parked events all applied while more wait in
    /// the store: the next of them may now be in line.
    pub drain: Vec<Uuid>,
}

impl Plan {
    fn count(&mut self, origin: &Origin, outcome: Outcome, by: i64) {
        self.counts.entry(origin.partition_key()).or_default().bump(outcome, by);
    }

    /// The totals over all partitions.
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in self.counts.values() {
            t.add(c);
        }
        t
    }
}

/// Per-aggregate working state while planning.
struct Working {
    current: Option<Aggregate>,
    stored_version: i64,
    /// The version the next event follows when it isn't the current one's:
    /// an operator accepted a gap up to it.
    floor: i64,
    deleted: bool,
    /// Parked events by version: from the store (`stored`) or this batch.
    parked: BTreeMap<i64, (Parked, bool)>,
    /// More parked events wait in the store than were loaded.
    truncated: bool,
}

impl Working {
    fn new(plan: &mut Plan, current: Option<Aggregate>, floor: i64, parked: Vec<Parked>) -> Working {
        Working {
            stored_version: current.as_ref().map_or(0, |a| a.version),
            current,
            floor,
            deleted: false,
            parked: stored_parked(plan, parked),
            truncated: false,
        }
    }

    /// The aggregate's new state, if it moved and still exists.
    fn finish(self, plan: &mut Plan) {
        let aggregate = self.aggregate_id();
        if self.truncated && !self.deleted && !self.parked.values().any(|(_, stored)| *stored) {
            plan.drain.extend(aggregate);
        }
        if let Some(agg) = self.current
            && !self.deleted
            && agg.version > self.stored_version
        {
            plan.writes.push(AggregateWrite { aggregate: agg, expected_version: self.stored_version });
        }
    }

    fn aggregate_id(&self) -> Option<Uuid> {
        self.current.as_ref().map(|a| a.id).or_else(|| self.parked.values().next().map(|(p, _)| p.aggregate_id))
    }
}

/// An aggregate's stored parked events by version. Two at one version can
/// only be stored when the second arrived while the first was beyond a
/// truncated load: the second is dead-lettered here, as any reused version
/// is.
fn stored_parked(plan: &mut Plan, parked: Vec<Parked>) -> BTreeMap<i64, (Parked, bool)> {
    let mut by_version = BTreeMap::new();
    for p in parked {
        if let Some((first, _)) = by_version.get(&p.aggregate_version) {
            let first: &Parked = first;
            let detail = format!(
                "version {} of aggregate {} is already parked as event {}",
                p.aggregate_version, p.aggregate_id, first.event_id
            );
            plan.unparked.push(p.event_id);
            plan.count(&p.origin, Outcome::Parked, -1);
            plan.count(&p.origin, Outcome::DeadLettered(Reason::DuplicateEventId), 1);
            plan.dead_letters.push(DeadLetter {
                fingerprint: fingerprint(p.key.as_deref(), &p.payload),
                rejection: Rejection::new(Reason::DuplicateEventId, detail),
                event_id: Some(p.event_id),
                aggregate_id: Some(p.aggregate_id),
                origin: p.origin,
                key: p.key,
                payload: p.payload,
            });
        } else {
            by_version.insert(p.aggregate_version, (p, true));
        }
    }
    by_version
}

/// Plans one batch. `items` are in consumption order, which within a
/// partition is offset order.
pub fn plan(items: Vec<Decoded>, mut ctx: Context, limits: &DecodeLimits) -> Plan {
    let mut plan = Plan::default();
    let mut working: HashMap<Uuid, Working> = HashMap::new();
    let mut seen_ids: HashSet<Uuid> = HashSet::new();

    for item in items {
        let Decoded { origin, prior, key, payload, result } = item;
        let outcome = match result {
            Err(rejection) => {
                let aggregate_id = crate::events::sniff_aggregate_id(&payload);
                dead_letter(
                    &mut plan,
                    &ctx.dead_letter_fingerprints,
                    origin.clone(),
                    key,
                    payload,
                    rejection,
                    None,
                    aggregate_id,
                    prior,
                )
            }
            Ok(event) => {
                let agg_id = event.aggregate_id;
                let w = match working.entry(agg_id) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        let current = ctx.aggregates.remove(&agg_id);
                        let parked = ctx.parked.remove(&agg_id).unwrap_or_default();
                        let mut w = Working::new(&mut plan, current, 0, parked);
                        w.deleted = ctx.tombstones.contains(&agg_id);
                        w.truncated = ctx.parked_truncated.contains(&agg_id);
                        // Parked events already next in line (a drain that
                        // did not run) go first: they came earlier.
                        unpark(&mut plan, &mut w, limits);
                        v.insert(w)
                    }
                };
                let last = w.current.as_ref().map_or(0, |a| a.version);
                let v = event.aggregate_version;
                if w.deleted {
                    Outcome::IgnoredDeleted
                } else if v <= last
                    || w.parked.get(&v).is_some_and(|(p, _)| p.event_id == event.id)
                    || ctx.event_id_holders.get(&event.id) == Some(&(agg_id, v))
                {
                    Outcome::Duplicate
                } else if ctx.known_event_ids.contains(&event.id)
                    || !seen_ids.insert(event.id)
                    || w.parked.contains_key(&v)
                {
                    let detail = match ctx.event_id_holders.get(&event.id) {
                        Some((holder, _)) if *holder != agg_id => {
                            format!("the event id is already taken by an event of aggregate {holder}")
                        }
                        _ => "the event id, or the aggregate version, is already taken by another event".to_string(),
                    };
                    let rejection = Rejection::new(Reason::DuplicateEventId, detail);
                    dead_letter(
                        &mut plan,
                        &ctx.dead_letter_fingerprints,
                        origin.clone(),
                        key,
                        payload,
                        rejection,
                        Some(event.id),
                        Some(agg_id),
                        prior,
                    )
                } else if v > last + 1 {
                    let p = Parked {
                        event_id: event.id,
                        aggregate_id: agg_id,
                        aggregate_version: v,
                        expected_version: last + 1,
                        origin: origin.clone(),
                        key,
                        payload,
                    };
                    w.parked.insert(v, (p.clone(), false));
                    plan.parked.push(p);
                    Outcome::Parked
                } else {
                    match apply(w.current.take(), event) {
                        (header, Err(refused)) => {
                            w.current = refused.current;
                            dead_letter(
                                &mut plan,
                                &ctx.dead_letter_fingerprints,
                                origin.clone(),
                                key,
                                payload,
                                refused.rejection,
                                Some(header.id),
                                Some(agg_id),
                                prior,
                            )
                        }
                        (header, Ok(transition)) => {
                            record(&mut plan, w, transition, header, origin.clone(), payload);
                            unpark(&mut plan, w, limits);
                            Outcome::Applied
                        }
                    }
                }
            }
        };
        match prior {
            Prior::New => plan.count(&origin, outcome, 1),
            Prior::DeadLetter(id) => match outcome {
                Outcome::DeadLettered(_) => {}
                resolved => {
                    plan.dead_letters_resolved.push(id);
                    plan.counts.entry(origin.partition_key()).or_default().dead_lettered -= 1;
                    plan.count(&origin, resolved, 1);
                }
            },
        }
        plan.outcomes.push(outcome);
    }

    // Deletions were recorded as they applied; everything else that moved
    // is written with a compare-and-set on the version it was loaded at.
    for w in working.into_values() {
        w.finish(&mut plan);
    }
    plan
}

/// Why an operator's resolution of a parked gap can't be planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the aggregate has no parked events")]
    NothingParked,
    #[error("the first parked version of aggregate {aggregate} is {first}, not {asked}")]
    NotTheFirst { aggregate: Uuid, first: i64, asked: i64 },
    #[error("aggregate {aggregate} is at version {current}: version {asked} is no gap")]
    NoGap { aggregate: Uuid, current: i64, asked: i64 },
}

/// Plans applying an aggregate's parked events as if the versions before
/// `from` had come (`overblik parked resolve --accept-from`): `current` is
/// the aggregate as stored, `parked` its first parked events in version
/// order, the first of which must be `from`. They apply in order until one
/// is missing or refused; counts move from parked to applied (or
/// dead-lettered).
pub fn accept_gap(
    current: Option<Aggregate>,
    parked: Vec<Parked>,
    from: i64,
    limits: &DecodeLimits,
) -> Result<Plan, ResolveError> {
    let Some(first) = parked.first() else {
        return Err(ResolveError::NothingParked);
    };
    let (aggregate, first) = (first.aggregate_id, first.aggregate_version);
    let version = current.as_ref().map_or(0, |a| a.version);
    if first != from {
        return Err(ResolveError::NotTheFirst { aggregate, first, asked: from });
    }
    if from <= version {
        return Err(ResolveError::NoGap { aggregate, current: version, asked: from });
    }
    Ok(unpark_stored(current, parked, from - 1, limits))
}

/// Plans applying an aggregate's stored parked events that are next in line
/// (its first parked version follows its current one): what a batch leaves
/// in `Plan::drain`, taken in bounded steps. Nothing applies if the first is
/// not next.
pub fn drain(current: Option<Aggregate>, parked: Vec<Parked>, limits: &DecodeLimits) -> Plan {
    let version = current.as_ref().map_or(0, |a| a.version);
    unpark_stored(current, parked, version, limits)
}

fn unpark_stored(current: Option<Aggregate>, parked: Vec<Parked>, floor: i64, limits: &DecodeLimits) -> Plan {
    let mut plan = Plan::default();
    let mut w = Working::new(&mut plan, current, floor, parked);
    unpark(&mut plan, &mut w, limits);
    w.finish(&mut plan);
    plan
}

/// Plans dropping parked events: each leaves the parked table as a dead
/// letter (`DROPPED_BY_OPERATOR`, with the operator's reason); counts move
/// from parked to dead-lettered.
pub fn drop_parked(parked: Vec<Parked>, reason: &str) -> Plan {
    let mut plan = Plan::default();
    for p in parked {
        plan.unparked.push(p.event_id);
        plan.count(&p.origin, Outcome::Parked, -1);
        plan.count(&p.origin, Outcome::DeadLettered(Reason::DroppedByOperator), 1);
        plan.dead_letters.push(DeadLetter {
            fingerprint: fingerprint(p.key.as_deref(), &p.payload),
            origin: p.origin,
            key: p.key,
            payload: p.payload,
            rejection: Rejection::new(Reason::DroppedByOperator, format!("dropped by an operator: {reason}")),
            event_id: Some(p.event_id),
            aggregate_id: Some(p.aggregate_id),
        });
    }
    plan
}

/// A refused message: stored as a dead letter, unless this very message
/// (same coordinates, same bytes) already is one.
#[allow(clippy::too_many_arguments)]
fn dead_letter(
    plan: &mut Plan,
    known: &HashSet<(PartitionKey, i64, String)>,
    origin: Origin,
    key: Option<MessageBytes>,
    payload: MessageBytes,
    rejection: Rejection,
    event_id: Option<Uuid>,
    aggregate_id: Option<Uuid>,
    prior: Prior,
) -> Outcome {
    let outcome = Outcome::DeadLettered(rejection.reason);
    match prior {
        Prior::New => {
            let fingerprint = fingerprint(key.as_deref(), &payload);
            let coordinates = (origin.partition_key(), origin.offset, fingerprint);
            if known.contains(&coordinates)
                || plan.dead_letters.iter().any(|d| d.origin == origin && d.fingerprint == coordinates.2)
            {
                return Outcome::Duplicate;
            }
            plan.dead_letters.push(DeadLetter {
                origin,
                fingerprint: coordinates.2,
                key,
                payload,
                rejection,
                event_id,
                aggregate_id,
            })
        }
        Prior::DeadLetter(id) => plan.dead_letters_failed_again.push((id, rejection)),
    }
    outcome
}

fn record(
    plan: &mut Plan,
    w: &mut Working,
    transition: Transition,
    header: EventHeader,
    origin: Origin,
    payload: MessageBytes,
) {
    match transition {
        Transition::Upsert(agg) => w.current = Some(agg),
        Transition::Delete => {
            w.deleted = true;
            w.current = None;
            // The tombstone remembers the delete's version and kind.
            plan.deletions.push(Deletion {
                aggregate_id: header.aggregate_id,
                kind: header.aggregate_kind(),
                expected_version: w.stored_version,
                last_version: header.aggregate_version,
            });
            // The aggregate's parked events are purged with it by the store.
            w.parked.clear();
        }
    }
    plan.appended.push(Appended { header, origin, payload });
}

/// After an apply, drains the parked events that are now next in line.
fn unpark(plan: &mut Plan, w: &mut Working, limits: &DecodeLimits) {
    loop {
        if w.deleted {
            return;
        }
        let next = w.current.as_ref().map_or(0, |a| a.version).max(w.floor) + 1;
        let Some((parked, stored)) = w.parked.remove(&next) else {
            return;
        };
        let origin = parked.origin.clone();
        if stored {
            plan.unparked.push(parked.event_id);
        } else {
            plan.parked.retain(|p| p.event_id != parked.event_id);
        }
        plan.count(&origin, Outcome::Parked, -1);
        let applied = match decode(&parked.payload, parked.key.as_deref(), limits) {
            Err(rejection) => Err(rejection),
            Ok(event) => match apply(w.current.take(), event) {
                (header, Ok(transition)) => Ok((transition, header)),
                (_, Err(refused)) => {
                    w.current = refused.current;
                    Err(refused.rejection)
                }
            },
        };
        match applied {
            Ok((transition, header)) => {
                plan.count(&origin, Outcome::Applied, 1);
                record(plan, w, transition, header, origin, parked.payload);
            }
            Err(rejection) => {
                plan.count(&origin, Outcome::DeadLettered(rejection.reason), 1);
                plan.dead_letters.push(DeadLetter {
                    fingerprint: fingerprint(parked.key.as_deref(), &parked.payload),
                    origin,
                    key: parked.key,
                    payload: parked.payload,
                    rejection,
                    event_id: Some(parked.event_id),
                    aggregate_id: Some(parked.aggregate_id),
                });
                return;
            }
        }
    }
}
