//! Parked events as an operator sees and resolves them, once for both
//! backends: the list (`overblik parked list`), an aggregate's parked events
//! in bounded steps (resolution and draining), operator decisions, and the
//! oldest parked age (`status`, `overblik_oldest_parked_seconds`).
//!
//! What a batch loads of the parked events of its aggregates is bounded in
//! rows and bytes ([`ParkedBudget::BATCH`]): the first
//! events in (aggregate, version) order up to the budget; an aggregate cut
//! short is marked truncated, and the planner asks for a drain when all it
//! loaded applied (see `projection::drain`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::backend::{Backend, Sql};
use super::engine::{Engine, EngineTx, ParkedRow, fetch_rows};
use super::rows::Val;
use super::schema::{ColType, durable};
use super::types::{Id, Instant};
use super::{Result, StoreError};
use crate::projection::Parked;

/// How much of the parked table one batch or one step loads at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkedBudget {
    pub rows: i64,
    /// Payload bytes (the first event loads even if it alone is larger).
    pub bytes: i64,
}

impl ParkedBudget {
    /// What a batch, a drain step or a resolution step loads.
    pub const BATCH: ParkedBudget = ParkedBudget { rows: 100_000, bytes: 64 * 1024 * 1024 };
}
/// `parked list` shows at most this many versions (with their sources) and
/// dead letters per aggregate.
const LIST_VERSIONS: i64 = 20;
const LIST_DEAD_LETTERS: i64 = 5;

/// Which parked aggregates to list.
#[derive(Clone, Debug)]
pub struct ParkedFilter {
    /// Only aggregates whose oldest parked event was parked before this.
    pub parked_before: Option<DateTime<Utc>>,
    /// Resume after this aggregate (the list is in aggregate id order).
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// Where a parked event was consumed from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ParkedSource {
    pub version: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One aggregate's parked events, as `overblik parked list` shows them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ParkedAggregate {
    pub aggregate_id: Uuid,
    /// The aggregate's stored version (0: nothing applied yet).
    pub current_version: i64,
    /// The version the parked events wait for.
    pub waiting_for: i64,
    pub parked: i64,
    pub first_version: i64,
    pub last_version: i64,
    /// The first parked versions with where each came from (at most
    /// `LIST_VERSIONS`).
    pub sources: Vec<ParkedSource>,
    pub oldest_parked_at: DateTime<Utc>,
    pub bytes: i64,
    /// Dead letters of the same aggregate (id, reason; at most
    /// `LIST_DEAD_LETTERS`): often the missing version itself, refused —
    /// for instance because another aggregate holds its event id.
    pub dead_letters: Vec<(i64, String)>,
}

impl ParkedAggregate {
    /// Whether the first parked event is next in line: nothing is missing,
    /// a drain will apply it.
    pub fn next_in_line(&self) -> bool {
        self.first_version == self.waiting_for
    }
}

/// What an operator decided about an aggregate's parked events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Apply the parked events from this version on, as if the gap before
    /// it were filled.
    AcceptFrom(i64),
    /// Dead-letter the parked events (`DROPPED_BY_OPERATOR`).
    Drop,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::AcceptFrom(_) => "accept_gap",
            Decision::Drop => "drop_parked",
        }
    }
}

/// One step of an operator's resolution, as recorded in the event store.
#[derive(Clone, Debug)]
pub struct OperatorDecision<'a> {
    pub aggregate_id: Uuid,
    pub decision: Decision,
    pub applied: i64,
    pub dead_lettered: i64,
    pub reason: &'a str,
    pub operator: &'a str,
}

/// A recorded step of an operator's resolution.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecordedDecision {
    pub id: i64,
    pub aggregate_id: Uuid,
    pub decision: String,
    pub from_version: Option<i64>,
    pub applied: i64,
    pub dead_lettered: i64,
    pub reason: String,
    pub operator: String,
    pub decided_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct DecisionRow {
    id: i64,
    aggregate_id: Id,
    decision: String,
    from_version: Option<i64>,
    applied: i64,
    dead_lettered: i64,
    reason: String,
    operator: String,
    decided_at: Instant,
}

#[derive(sqlx::FromRow)]
struct LoadedRow {
    #[sqlx(flatten)]
    parked: ParkedRow,
    /// The aggregate's parked events.
    n: i64,
    /// The parked events of all the aggregates asked for.
    total: i64,
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    aggregate_id: Id,
    version: i64,
    n: i64,
    first_version: i64,
    last_version: i64,
    oldest: Instant,
    bytes: i64,
}

#[derive(sqlx::FromRow)]
struct SourceRow {
    aggregate_id: Id,
    aggregate_version: i64,
    topic: String,
    partition_id: i32,
    kafka_offset: i64,
}

#[derive(sqlx::FromRow)]
struct DeadLetterRefRow {
    aggregate_id: Id,
    id: i64,
    reason: String,
}

#[derive(sqlx::FromRow)]
struct OldestRow {
    oldest: Option<Instant>,
}

#[derive(sqlx::FromRow)]
struct IdOnly {
    id: Id,
}

impl<B: Backend> Engine<B> {
    /// Parked aggregates in id order, a page at a time.
    pub async fn parked_list(&self, f: &ParkedFilter) -> Result<Vec<ParkedAggregate>> {
        let mut q = Sql::<B>::new();
        let after = match f.after {
            Some(a) => format!("WHERE p.aggregate_id > {}", q.arg(a)),
            None => String::new(),
        };
        let before = match f.parked_before {
            Some(t) => format!("HAVING min(p.parked_at) < {}", q.arg(Val::Time(t))),
            None => String::new(),
        };
        let limit = q.arg(f.limit);
        let q = q.text(format!(
            "SELECT p.aggregate_id, COALESCE(a.version, 0) AS version, count(*) AS n,
                    min(p.aggregate_version) AS first_version, max(p.aggregate_version) AS last_version,
                    min(p.parked_at) AS oldest, COALESCE(sum(length(p.payload)), 0) AS bytes
             FROM parked p LEFT JOIN aggregates a ON a.aggregate_id = p.aggregate_id
             {after} GROUP BY p.aggregate_id, a.version {before}
             ORDER BY p.aggregate_id LIMIT {limit}"
        ));
        let rows: Vec<SummaryRow> = fetch_rows(self.b.pool(), q).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.aggregate_id.0).collect();

        let mut q = Sql::<B>::new();
        let list = q.list(ColType::Uuid, ids.iter().map(|u| Val::Uuid(*u)));
        let q = q.text(format!(
            "SELECT aggregate_id, aggregate_version, topic, partition_id, kafka_offset FROM (
               SELECT aggregate_id, aggregate_version, topic, partition_id, kafka_offset,
                      ROW_NUMBER() OVER (PARTITION BY aggregate_id ORDER BY aggregate_version, event_id) AS rn
               FROM parked WHERE {}) x
             WHERE rn <= {LIST_VERSIONS} ORDER BY aggregate_id, aggregate_version",
            B::in_list("aggregate_id", &list)
        ));
        let sources: Vec<SourceRow> = fetch_rows(self.b.pool(), q).await?;

        let mut q = Sql::<B>::new();
        let list = q.list(ColType::Uuid, ids.iter().map(|u| Val::Uuid(*u)));
        let q = q.text(format!(
            "SELECT aggregate_id, id, reason FROM (
               SELECT aggregate_id, id, reason, ROW_NUMBER() OVER (PARTITION BY aggregate_id ORDER BY id) AS rn
               FROM dead_letters WHERE {}) x
             WHERE rn <= {LIST_DEAD_LETTERS} ORDER BY aggregate_id, id",
            B::in_list("aggregate_id", &list)
        ));
        let dead: Vec<DeadLetterRefRow> = fetch_rows(self.b.pool(), q).await?;

        Ok(rows
            .into_iter()
            .map(|r| ParkedAggregate {
                aggregate_id: r.aggregate_id.0,
                current_version: r.version,
                waiting_for: r.version + 1,
                parked: r.n,
                first_version: r.first_version,
                last_version: r.last_version,
                sources: sources
                    .iter()
                    .filter(|s| s.aggregate_id == r.aggregate_id)
                    .map(|s| ParkedSource {
                        version: s.aggregate_version,
                        topic: s.topic.clone(),
                        partition: s.partition_id,
                        offset: s.kafka_offset,
                    })
                    .collect(),
                oldest_parked_at: r.oldest.0,
                bytes: r.bytes,
                dead_letters: dead
                    .iter()
                    .filter(|d| d.aggregate_id == r.aggregate_id)
                    .map(|d| (d.id, d.reason.clone()))
                    .collect(),
            })
            .collect())
    }

    /// Operators' recorded decisions, oldest first, a page at a time.
    pub async fn operator_decisions(
        &self,
        aggregate: Option<Uuid>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<RecordedDecision>> {
        let mut q = Sql::<B>::new();
        let after = q.arg(after_id);
        let of = match aggregate {
            Some(a) => format!("AND aggregate_id = {}", q.arg(a)),
            None => String::new(),
        };
        let limit = q.arg(limit);
        let q = q.text(format!(
            "SELECT id, aggregate_id, decision, from_version, applied, dead_lettered, reason, operator, decided_at
             FROM operator_decisions WHERE id > {after} {of} ORDER BY id LIMIT {limit}"
        ));
        let rows: Vec<DecisionRow> = fetch_rows(self.b.pool(), q).await?;
        Ok(rows
            .into_iter()
            .map(|r| RecordedDecision {
                id: r.id,
                aggregate_id: r.aggregate_id.0,
                decision: r.decision,
                from_version: r.from_version,
                applied: r.applied,
                dead_lettered: r.dead_lettered,
                reason: r.reason,
                operator: r.operator,
                decided_at: r.decided_at.0,
            })
            .collect())
    }

    /// When the longest-waiting parked event was parked.
    pub async fn oldest_parked_at(&self) -> Result<Option<DateTime<Utc>>> {
        let rows: Vec<OldestRow> =
            fetch_rows(self.b.pool(), Sql::<B>::of("SELECT min(parked_at) AS oldest FROM parked")).await?;
        Ok(rows.into_iter().next().and_then(|r| r.oldest).map(|t| t.0))
    }

    /// How many events of `aggregate` are parked.
    pub async fn parked_count(&self, aggregate: Uuid) -> Result<i64> {
        let mut q = Sql::<B>::new();
        let id = q.arg(aggregate);
        let q = q.text(format!("SELECT count(*) AS n FROM parked WHERE aggregate_id = {id}"));
        let rows: Vec<super::engine::CountRow> = fetch_rows(self.b.pool(), q).await?;
        Ok(rows.first().map_or(0, |r| r.n))
    }

    /// Aggregates whose first parked event is next in line (at most
    /// `limit`): left so when a process stopped between a batch and its
    /// drain.
    pub async fn parked_next_in_line(&self, limit: i64) -> Result<Vec<Uuid>> {
        let mut q = Sql::<B>::new();
        let limit = q.arg(limit);
        let q = q.text(format!(
            "SELECT p.aggregate_id AS id FROM parked p LEFT JOIN aggregates a ON a.aggregate_id = p.aggregate_id
             GROUP BY p.aggregate_id, a.version
             HAVING min(p.aggregate_version) = COALESCE(a.version, 0) + 1
             ORDER BY p.aggregate_id LIMIT {limit}"
        ));
        let rows: Vec<IdOnly> = fetch_rows(self.b.pool(), q).await?;
        Ok(rows.into_iter().map(|r| r.id.0).collect())
    }
}

impl<B: Backend> EngineTx<B> {
    /// The first parked events (in version order) of each of `aggregates`,
    /// within the load budget, and the aggregates of which more are parked
    /// than were loaded.
    pub async fn load_parked(
        &mut self,
        aggregates: &[Uuid],
        budget: ParkedBudget,
    ) -> Result<(Vec<Parked>, HashSet<Uuid>)> {
        let mut q = Sql::<B>::new();
        let ids = q.list(ColType::Uuid, aggregates.iter().map(|u| Val::Uuid(*u)));
        let rows = q.arg(budget.rows);
        let bytes = q.arg(budget.bytes);
        let names = durable::names(durable::PARKED);
        // The running sums run over the whole (aggregate, version) order, so
        // the first aggregates load whole and the budget cuts one short; the
        // rest load nothing and count as cut short.
        let q = q.text(format!(
            "SELECT {names}, n, total FROM (
               SELECT {names}, COUNT(*) OVER (PARTITION BY aggregate_id) AS n, COUNT(*) OVER () AS total,
                      ROW_NUMBER() OVER (ORDER BY aggregate_id, aggregate_version, event_id) AS rn,
                      SUM(length(payload)) OVER (ORDER BY aggregate_id, aggregate_version, event_id
                                                 ROWS UNBOUNDED PRECEDING) AS running
               FROM parked WHERE {}) x
             WHERE rn <= {rows} AND (running <= {bytes} OR rn = 1)
             ORDER BY aggregate_id, aggregate_version, event_id",
            B::in_list("aggregate_id", &ids)
        ));
        let loaded: Vec<LoadedRow> = B::fetch(&mut self.tx, q.once()).await?;
        let total = loaded.first().map_or(0, |r| r.total);
        let mut counts: HashMap<Uuid, (i64, i64)> = HashMap::new();
        let mut parked = Vec::with_capacity(loaded.len());
        for r in loaded {
            let p = r.parked.into_parked();
            counts.entry(p.aggregate_id).or_insert((0, r.n)).0 += 1;
            parked.push(p);
        }
        let mut truncated: HashSet<Uuid> =
            counts.iter().filter(|(_, (loaded, all))| loaded < all).map(|(id, _)| *id).collect();
        if (parked.len() as i64) < total {
            // The budget ran out: aggregates past it loaded nothing.
            let mut q = Sql::<B>::new();
            let ids = q.list(ColType::Uuid, aggregates.iter().map(|u| Val::Uuid(*u)));
            let q = q.text(format!(
                "SELECT DISTINCT aggregate_id AS id FROM parked WHERE {}",
                B::in_list("aggregate_id", &ids)
            ));
            let with_parked: Vec<IdOnly> = B::fetch(&mut self.tx, q.once()).await?;
            truncated.extend(with_parked.into_iter().map(|r| r.id.0).filter(|id| !counts.contains_key(id)));
        }
        Ok((parked, truncated))
    }

    /// Records one step of an operator's resolution.
    pub async fn record_operator_decision(&mut self, d: &OperatorDecision<'_>) -> Result<()> {
        let from = match d.decision {
            Decision::AcceptFrom(v) => Val::Int(v),
            Decision::Drop => Val::Null,
        };
        let mut q = Sql::<B>::new();
        let values = [
            q.arg(d.aggregate_id),
            q.arg(Val::str(d.decision.as_str())),
            // A NULL binds untyped: the cast types it on both dialects.
            format!("CAST({} AS BIGINT)", q.arg(from)),
            q.arg(d.applied),
            q.arg(d.dead_lettered),
            q.arg(Val::str(d.reason)),
            q.arg(Val::str(d.operator)),
        ]
        .join(", ");
        let q = q.text(format!(
            "INSERT INTO operator_decisions
               (aggregate_id, decision, from_version, applied, dead_lettered, reason, operator)
             VALUES ({values})"
        ));
        if B::execute(&mut self.tx, q).await? != 1 {
            return Err(StoreError::Corrupt("an operator decision was not recorded".into()));
        }
        Ok(())
    }
}
