//! The store engine: every query and the write order of a batch, once, over
//! a [`Backend`] that supplies only what the dialects do differently.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use sqlx::Transaction;
use uuid::Uuid;

use super::backend::{Backend, Lock, Sql};
use super::rows::{Row, RowSet, Val};
use super::schema::{self, AGGREGATES, ColType, Column, PROJECTION_SCHEMA_VERSION, TABLES, Table, c, durable};
use super::types::{Day, Id, Instant};
use super::*;
use crate::projection::{Origin, Parked, Plan};

/// The columns a stored aggregate is read from, in every query that reads one.
const AGGREGATE_READ: &str = "aggregate_id, version, subject, authority, source, updated_at, state";

#[derive(sqlx::FromRow)]
struct AggregateRow {
    aggregate_id: Id,
    version: i64,
    subject: String,
    authority: String,
    source: String,
    updated_at: Instant,
    state: String,
}

impl AggregateRow {
    fn decode(self) -> Result<Aggregate> {
        let id = self.aggregate_id.0;
        let corrupt = |what: &str| StoreError::Corrupt(format!("aggregate {id}: {what}"));
        Ok(Aggregate {
            id,
            version: self.version,
            subject: PartyId::parse(&self.subject).map_err(|_| corrupt("subject"))?,
            authority: Cvr::parse(&self.authority).map_err(|_| corrupt("authority"))?,
            source: self.source.into(),
            updated_at: self.updated_at.0,
            state: State::from_json(&self.state).map_err(|e| corrupt(&format!("state: {e}")))?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct IdRow {
    id: Id,
}

#[derive(sqlx::FromRow)]
pub(super) struct CountRow {
    pub(super) n: i64,
}

#[derive(sqlx::FromRow)]
struct MetaRow {
    generation: i32,
    schema_version: i32,
    /// Whether the live generation has the reporting tables.
    reporting: bool,
}

#[derive(sqlx::FromRow)]
struct OriginRow {
    topic: String,
    partition_id: i32,
}

#[derive(sqlx::FromRow)]
struct FingerprintRow {
    topic: String,
    partition_id: i32,
    kafka_offset: i64,
    fingerprint: String,
}

#[derive(sqlx::FromRow)]
pub(super) struct ParkedRow {
    event_id: Id,
    aggregate_id: Id,
    aggregate_version: i64,
    expected_version: i64,
    topic: String,
    partition_id: i32,
    kafka_offset: i64,
    message_key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

impl ParkedRow {
    pub(super) fn into_parked(self) -> Parked {
        Parked {
            event_id: self.event_id.0,
            aggregate_id: self.aggregate_id.0,
            aggregate_version: self.aggregate_version,
            expected_version: self.expected_version,
            origin: Origin { topic: self.topic.into(), partition: self.partition_id, offset: self.kafka_offset },
            key: self.message_key.map(Into::into),
            payload: self.payload.into(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct HolderRow {
    event_id: Id,
    aggregate_id: Id,
    aggregate_version: i64,
}

#[derive(sqlx::FromRow)]
struct StoredEventRow {
    seq: i64,
    aggregate_id: Id,
    aggregate_version: i64,
    payload: Vec<u8>,
}

impl From<StoredEventRow> for StoredEvent {
    fn from(r: StoredEventRow) -> StoredEvent {
        StoredEvent {
            seq: r.seq,
            aggregate_id: r.aggregate_id.0,
            aggregate_version: r.aggregate_version,
            payload: r.payload,
        }
    }
}

#[derive(sqlx::FromRow)]
struct PartitionRow {
    topic: String,
    partition_id: i32,
    next_offset: Option<i64>,
    applied: i64,
    duplicates: i64,
    ignored_deleted: i64,
    parked: i64,
    dead_lettered: i64,
}

#[derive(sqlx::FromRow)]
struct KindRow {
    kind: String,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct ReasonRow {
    reason: String,
    n: i64,
}

#[derive(sqlx::FromRow)]
struct DeadLetterDb {
    id: i64,
    topic: String,
    partition_id: i32,
    kafka_offset: i64,
    reason: String,
    detail: String,
    event_id: Option<Id>,
    aggregate_id: Option<Id>,
    dead_at: Instant,
    replay_attempts: i32,
    bytes: i64,
}

#[derive(sqlx::FromRow)]
struct DeadLetterMessageDb {
    id: i64,
    topic: String,
    partition_id: i32,
    kafka_offset: i64,
    message_key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct ClosedCaseRow {
    id: Id,
    kind: String,
    kle: String,
    closed_on: Day,
}

#[derive(sqlx::FromRow)]
struct OffsetRow {
    next_offset: i64,
}

/// Relations bound for one statement (not tables).
const OFFSET_KEYS: &[Column] = &[c("i", ColType::Int), c("t", ColType::Text), c("p", ColType::Int)];
const OFFSET_MOVES: &[Column] =
    &[c("t", ColType::Text), c("p", ColType::Int), c("expected", ColType::Int), c("next", ColType::Int)];
const OFFSET_RANGES: &[Column] =
    &[c("t", ColType::Text), c("p", ColType::Int), c("lo", ColType::Int), c("hi", ColType::Int)];
const VERSIONED: &[Column] = &[c("id", ColType::Uuid), c("expected", ColType::Int)];
const REPLAY_FAILURES: &[Column] = &[c("id", ColType::Int), c("reason", ColType::Text), c("detail", ColType::Text)];

fn uuids(ids: &[Uuid]) -> impl Iterator<Item = Val<'static>> + '_ {
    ids.iter().map(|u| Val::Uuid(*u))
}

/// The store over one backend.
#[derive(Clone, Debug)]
pub struct Engine<B: Backend> {
    pub(super) b: B,
    /// The audit chain's head as this process last wrote it; `None` when
    /// unknown. A hint only: appends check it in the database.
    pub(super) audit_head: std::sync::Arc<std::sync::Mutex<Option<(i64, String)>>>,
    /// How much parked data one batch's transaction loads at most.
    pub(super) parked_budget: super::ParkedBudget,
}

/// A write transaction over one backend.
pub struct EngineTx<B: Backend> {
    pub(super) tx: Transaction<'static, B::Db>,
    pub(super) generation: i32,
    /// Whether the live generation has the reporting tables (a deletion
    /// removes its rows from them too).
    reporting: bool,
    parked_budget: super::ParkedBudget,
}

pub(super) async fn fetch_rows<B: Backend, T: super::backend::Record>(
    pool: &sqlx::Pool<B::Db>,
    q: Sql<B>,
) -> Result<Vec<T>> {
    let mut conn = pool.acquire().await?;
    B::fetch(&mut conn, q).await
}

pub(super) async fn execute<B: Backend>(pool: &sqlx::Pool<B::Db>, q: Sql<B>) -> Result<u64> {
    let mut conn = pool.acquire().await?;
    B::execute(&mut conn, q).await
}

/// Appends `rows` to `table` in one statement (no conflict handling: a
/// duplicate key fails it). Binary `COPY` was measured against this and lost
/// over TCP (BENCHMARKS.md).
pub(super) async fn append_rows<B: Backend>(
    conn: &mut super::backend::Conn<B>,
    table: &str,
    cols: &[Column],
    rows: &[Row<'_>],
) -> Result<u64> {
    let mut q = Sql::<B>::new();
    let names = durable::names(cols);
    let src = q.rows(cols, rows, "u");
    B::execute(conn, q.text(format!("INSERT INTO {table} ({names}) SELECT {names} FROM {src} WHERE true"))).await
}

async fn count<B: Backend>(conn: &mut super::backend::Conn<B>, sql: String) -> Result<i64> {
    let rows: Vec<CountRow> = B::fetch(conn, Sql::of(sql)).await?;
    Ok(rows.first().map_or(0, |r| r.n))
}

async fn meta<B: Backend>(conn: &mut super::backend::Conn<B>) -> Result<MetaRow> {
    let mut rows: Vec<MetaRow> =
        B::fetch(conn, Sql::of(
            "SELECT generation, schema_version, reporting_at IS NOT NULL AS reporting FROM projection_meta WHERE id = 1",
        )).await?;
    rows.pop().ok_or_else(|| StoreError::Corrupt("projection_meta has no row".into()))
}

impl<B: Backend> Engine<B> {
    /// Connects, runs the migrations and makes sure a generation of
    /// projection tables exists.
    pub async fn connect(url: &str) -> Result<Self> {
        let engine = Engine {
            b: B::connect(url).await?,
            audit_head: Default::default(),
            parked_budget: super::ParkedBudget::BATCH,
        };
        engine.ensure_projections().await?;
        Ok(engine)
    }

    pub fn backend(&self) -> &B {
        &self.b
    }

    async fn ensure_projections(&self) -> Result<()> {
        let mut tx = self.b.begin(Lock::Exclusive).await?;
        if meta::<B>(&mut tx).await?.generation == 0 {
            for (_, t) in schema::tables(false) {
                B::execute(&mut tx, Sql::of(schema::create_table(B::DIALECT, t, 1))).await?;
                for ix in schema::create_indexes(t, 1) {
                    B::execute(&mut tx, Sql::of(ix)).await?;
                }
                B::execute(&mut tx, Sql::of(schema::create_view(t, 1))).await?;
            }
            let mut q = Sql::<B>::new();
            let v = q.arg(PROJECTION_SCHEMA_VERSION);
            B::execute(
                &mut tx,
                q.text(format!("UPDATE projection_meta SET generation = 1, schema_version = {v} WHERE id = 1")),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn begin(&self) -> Result<EngineTx<B>> {
        let mut tx = self.b.begin(Lock::Shared).await?;
        let m = meta::<B>(&mut tx).await?;
        if m.schema_version != PROJECTION_SCHEMA_VERSION {
            return Err(StoreError::SchemaMismatch { found: m.schema_version, expected: PROJECTION_SCHEMA_VERSION });
        }
        Ok(EngineTx { tx, generation: m.generation, reporting: m.reporting, parked_budget: self.parked_budget })
    }

    pub async fn begin_exclusive(&self) -> Result<EngineTx<B>> {
        let mut tx = self.b.begin(Lock::Exclusive).await?;
        let m = meta::<B>(&mut tx).await?;
        Ok(EngineTx { tx, generation: m.generation, reporting: m.reporting, parked_budget: self.parked_budget })
    }

    pub async fn assigned_offsets(&self, partitions: &[(String, i32)]) -> Result<Vec<i64>> {
        let keys: Vec<Row> = partitions
            .iter()
            .enumerate()
            .map(|(i, (t, p))| vec![Val::Int(i as i64), Val::str(t), Val::from(*p)])
            .collect();
        let mut tx = self.b.begin(Lock::None).await?;
        let mut q = Sql::<B>::new();
        let src = q.rows(OFFSET_KEYS, &keys, "u");
        let q = q.text(format!(
            "INSERT INTO consumer_offsets (topic, partition_id, next_offset) SELECT u.t, u.p, 0 FROM {src} WHERE true
             ON CONFLICT (topic, partition_id) DO NOTHING"
        ));
        B::execute(&mut tx, q).await?;
        let mut q = Sql::<B>::new();
        let src = q.rows(OFFSET_KEYS, &keys, "u");
        let q = q.text(format!(
            "SELECT o.next_offset FROM {src} JOIN consumer_offsets o ON o.topic = u.t AND o.partition_id = u.p
             ORDER BY u.i"
        ));
        let rows: Vec<OffsetRow> = B::fetch(&mut tx, q).await?;
        tx.commit().await?;
        // One offset per partition asked for, in order, or none at all: a
        // row deleted in between would shift offsets onto other partitions.
        if rows.len() != partitions.len() {
            return Err(StoreError::Conflict(format!(
                "{} of {} partitions' offsets read; an offset row went away meanwhile",
                rows.len(),
                partitions.len()
            )));
        }
        Ok(rows.into_iter().map(|r| r.next_offset).collect())
    }

    pub async fn reset_offsets(&self, topics: &[String]) -> Result<u64> {
        let mut q = Sql::<B>::new();
        let list = q.list(ColType::Text, topics.iter().map(|t| Val::str(t)));
        let q = q.text(format!("DELETE FROM consumer_offsets WHERE {}", B::in_list("topic", &list)));
        execute(self.b.pool(), q).await
    }

    pub async fn status(&self) -> Result<Status> {
        let mut conn = self.b.pool().acquire().await?;
        let rows: Vec<PartitionRow> = B::fetch(
            &mut conn,
            Sql::of(
                "SELECT k.topic, k.partition_id, o.next_offset,
                        COALESCE(c.applied, 0) AS applied, COALESCE(c.duplicates, 0) AS duplicates,
                        COALESCE(c.ignored_deleted, 0) AS ignored_deleted, COALESCE(c.parked, 0) AS parked,
                        COALESCE(c.dead_lettered, 0) AS dead_lettered
                 FROM (SELECT topic, partition_id FROM consumer_offsets
                       UNION SELECT topic, partition_id FROM ingest_counts) k
                 LEFT JOIN consumer_offsets o ON o.topic = k.topic AND o.partition_id = k.partition_id
                 LEFT JOIN ingest_counts c ON c.topic = k.topic AND c.partition_id = k.partition_id
                 ORDER BY k.topic, k.partition_id",
            ),
        )
        .await?;
        let partitions = rows
            .into_iter()
            .map(|r| PartitionStatus {
                topic: r.topic,
                partition: r.partition_id,
                next_offset: r.next_offset,
                consumed: r.applied + r.duplicates + r.parked + r.dead_lettered,
                applied: r.applied,
                duplicates: r.duplicates,
                ignored_deleted: r.ignored_deleted,
                parked: r.parked,
                dead_lettered: r.dead_lettered,
            })
            .collect();
        let (partitions, total) = summarise(partitions);
        let live = meta::<B>(&mut conn).await?;
        let mut projections = BTreeMap::new();
        for (_, t) in schema::tables(live.reporting) {
            projections.insert(
                t.name.to_string(),
                count::<B>(&mut conn, format!("SELECT count(*) AS n FROM {}", t.name)).await?,
            );
        }
        let events = count::<B>(&mut conn, "SELECT count(*) AS n FROM events".into()).await?;
        let tombstones = count::<B>(&mut conn, "SELECT count(*) AS n FROM tombstones".into()).await?;
        let parked_rows = count::<B>(&mut conn, "SELECT count(*) AS n FROM parked".into()).await?;
        let kinds: Vec<KindRow> =
            B::fetch(&mut conn, Sql::of("SELECT kind, count(*) AS n FROM aggregates GROUP BY kind ORDER BY kind"))
                .await?;
        let reasons: Vec<ReasonRow> = B::fetch(
            &mut conn,
            Sql::of("SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason ORDER BY reason"),
        )
        .await?;
        Ok(Status {
            consumed: total.consumed(),
            applied: total.applied,
            duplicates: total.duplicates,
            ignored_deleted: total.ignored_deleted,
            parked: total.parked,
            dead_lettered: total.dead_lettered,
            partitions,
            projections,
            events,
            tombstones,
            parked_rows,
            oldest_parked_at: self.oldest_parked_at().await?,
            aggregates_by_kind: kinds.into_iter().map(|r| (r.kind, r.n)).collect(),
            dead_letters_by_reason: reasons.into_iter().map(|r| (r.reason, r.n)).collect(),
            projection_generation: live.generation,
        })
    }

    pub async fn dead_letters(&self, f: &DeadLetterFilter) -> Result<Vec<DeadLetterRow>> {
        let mut q = Sql::<B>::new();
        let after = q.arg(f.after_id);
        let reason = match &f.reason {
            Some(r) => format!("AND reason = {}", q.arg(Val::str(r))),
            None => String::new(),
        };
        let limit = q.arg(f.limit);
        let q = q.text(format!(
            "SELECT id, topic, partition_id, kafka_offset, reason, detail, event_id, aggregate_id, dead_at,
                    replay_attempts, CAST(length(payload) AS BIGINT) AS bytes
             FROM dead_letters WHERE id > {after} {reason} ORDER BY id LIMIT {limit}"
        ));
        let rows: Vec<DeadLetterDb> = fetch_rows(self.b.pool(), q).await?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetterRow {
                id: r.id,
                topic: r.topic,
                partition: r.partition_id,
                offset: r.kafka_offset,
                reason: r.reason,
                detail: r.detail,
                event_id: r.event_id.map(|i| i.0),
                aggregate_id: r.aggregate_id.map(|i| i.0),
                dead_at: r.dead_at.0,
                replay_attempts: r.replay_attempts,
                bytes: r.bytes,
            })
            .collect())
    }

    pub async fn dead_letter_messages(&self, ids: &[i64]) -> Result<Vec<DeadLetterMessage>> {
        let mut q = Sql::<B>::new();
        let list = q.list(ColType::Int, ids.iter().map(|i| Val::Int(*i)));
        let q = q.text(format!(
            "SELECT id, topic, partition_id, kafka_offset, message_key, payload FROM dead_letters
             WHERE {} ORDER BY id",
            B::in_list("id", &list)
        ));
        let rows: Vec<DeadLetterMessageDb> = fetch_rows(self.b.pool(), q).await?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetterMessage {
                id: r.id,
                topic: r.topic,
                partition: r.partition_id,
                offset: r.kafka_offset,
                key: r.message_key,
                payload: r.payload,
            })
            .collect())
    }

    pub async fn rebuild_start(&self, reporting: bool) -> Result<RebuildStart> {
        // Exclusive for a moment: with no batch in flight, every sequence
        // number up to the maximum belongs to a committed event.
        let mut tx = self.b.begin(Lock::Exclusive).await?;
        let live = meta::<B>(&mut tx).await?.generation;
        let upto = count::<B>(&mut tx, B::LAST_SEQ.into()).await?;
        tx.commit().await?;
        let mut q = Sql::<B>::new();
        let bound = q.arg(upto);
        let rows: Vec<CountRow> =
            fetch_rows(self.b.pool(), q.text(format!("SELECT count(*) AS n FROM events WHERE seq <= {bound}"))).await?;
        let total = rows.first().map_or(0, |r| r.n);
        let next = live + 1;
        self.drop_generation(next).await?;
        let mut tx = self.b.begin(Lock::None).await?;
        for (_, t) in schema::tables(reporting) {
            let sql = schema::create_table_keyed(B::DIALECT, t, next, !B::KEYS_AFTER_LOAD);
            B::execute(&mut tx, Sql::of(sql)).await?;
        }
        tx.commit().await?;
        Ok(RebuildStart { generation: next, upto_seq: upto, total_events: total, reporting })
    }

    pub async fn events_by_aggregate(
        &self,
        upto: i64,
        after: Option<(Uuid, i64)>,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let (agg, ver) = after.unwrap_or((Uuid::nil(), 0));
        let mut q = Sql::<B>::new();
        let (upto, agg, ver, limit) = (q.arg(upto), q.arg(agg), q.arg(ver), q.arg(limit));
        let before = match before {
            Some(b) => format!("AND aggregate_id < {}", q.arg(b)),
            None => String::new(),
        };
        let q = q.text(format!(
            "SELECT seq, aggregate_id, aggregate_version, payload FROM events
             WHERE (aggregate_id, aggregate_version) > ({agg}, {ver}) {before} AND seq <= {upto}
             ORDER BY aggregate_id, aggregate_version LIMIT {limit}"
        ));
        let rows: Vec<StoredEventRow> = fetch_rows(self.b.pool(), q).await?;
        Ok(rows.into_iter().map(StoredEvent::from).collect())
    }

    pub async fn insert_rows(&self, generation: i32, rows: &RowSet) -> Result<()> {
        let mut tx = self.b.begin(Lock::None).await?;
        for (i, t) in schema::tables(rows.reporting) {
            if !rows.tables[i].is_empty() {
                append_rows::<B>(&mut tx, &schema::physical(t, generation), t.columns, &rows.tables[i]).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Builds the keys (where the backend adds them after the load) and the
    /// secondary indexes of a rebuilt generation, a table per connection at
    /// once.
    pub async fn create_indexes(&self, generation: i32, reporting: bool) -> Result<()> {
        let mut builds = tokio::task::JoinSet::new();
        for (_, t) in schema::tables(reporting) {
            let engine = self.clone();
            builds.spawn(async move {
                if B::KEYS_AFTER_LOAD {
                    execute(engine.b.pool(), Sql::<B>::of(schema::add_primary_key(t, generation))).await?;
                }
                for ix in schema::create_indexes(t, generation) {
                    execute(engine.b.pool(), Sql::<B>::of(ix)).await?;
                }
                Ok::<_, StoreError>(())
            });
        }
        while let Some(done) = builds.join_next().await {
            done.expect("an index build panicked")?;
        }
        Ok(())
    }

    /// Refreshes the planner's statistics of a generation's tables and of the
    /// event store. After a bulk load the plans of lookups otherwise rest on
    /// the statistics of a near-empty table until the autovacuum daemon
    /// comes round (PostgreSQL), or for ever (SQLite gathers none by itself).
    /// On PostgreSQL only the tables' owner may analyze them; another role's
    /// ANALYZE skips them, and the daemon stays the fallback.
    pub async fn analyze(&self, generation: i32, reporting: bool) -> Result<()> {
        let mut tx = self.b.pool().begin().await?;
        if let Some(setup) = B::ANALYZE_SETUP {
            B::execute(&mut tx, Sql::of(setup)).await?;
        }
        let generation_tables = schema::tables(reporting).map(|(_, t)| schema::physical(t, generation));
        for table in generation_tables.chain(["events".to_string(), "tombstones".to_string()]) {
            B::execute(&mut tx, Sql::of(format!("ANALYZE {table}"))).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// [`Engine::analyze`] of the live generation.
    pub async fn analyze_live(&self) -> Result<()> {
        let m = {
            let mut conn = self.b.pool().acquire().await?;
            meta::<B>(&mut conn).await?
        };
        self.analyze(m.generation, m.reporting).await
    }

    pub async fn drop_generation(&self, generation: i32) -> Result<()> {
        for t in TABLES {
            execute(self.b.pool(), Sql::<B>::of(schema::drop_table(t, generation))).await?;
        }
        Ok(())
    }

    pub async fn closed_cases(
        &self,
        before: NaiveDate,
        after: Option<(NaiveDate, Uuid)>,
        limit: i64,
    ) -> Result<Vec<ClosedCase>> {
        // (0001-01-01, nil) sorts before every real key on both backends.
        let first = (NaiveDate::from_ymd_opt(1, 1, 1).expect("a date"), Uuid::nil());
        let (after_date, after_id) = after.unwrap_or(first);
        let mut q = Sql::<B>::new();
        let (before, after_date, after_id, limit) = (q.arg(before), q.arg(after_date), q.arg(after_id), q.arg(limit));
        let q = q.text(format!(
            "SELECT aggregate_id AS id, kind, kle, closed_on FROM aggregates
             WHERE closed_on < {before} AND (closed_on, aggregate_id) > ({after_date}, {after_id})
             ORDER BY closed_on, aggregate_id LIMIT {limit}"
        ));
        let rows: Vec<ClosedCaseRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter()
            .map(|r| {
                Ok(ClosedCase {
                    aggregate_id: r.id.0,
                    kind: AggregateKind::parse(&r.kind).ok_or_else(|| StoreError::Corrupt("case kind".into()))?,
                    kle: r.kle,
                    closed_on: r.closed_on.0,
                })
            })
            .collect()
    }

    pub async fn tables_containing(&self, needle: &str) -> Result<Vec<String>> {
        self.b.tables_containing(needle).await
    }

    pub async fn dump_projections(&self) -> Result<BTreeMap<String, Vec<Vec<Option<String>>>>> {
        let mut conn = self.b.pool().acquire().await?;
        let live = meta::<B>(&mut conn).await?;
        let mut out = BTreeMap::new();
        for (_, t) in schema::tables(live.reporting) {
            let cols: Vec<String> = t.columns.iter().map(|c| format!("CAST({} AS TEXT)", c.name)).collect();
            let sql = format!("SELECT {} FROM {} ORDER BY {}", cols.join(", "), t.name, t.primary_key.join(", "));
            out.insert(t.name.to_string(), B::fetch_texts(&mut conn, sql, t.columns.len()).await?);
        }
        Ok(out)
    }

    pub async fn close(&self) {
        self.b.close().await
    }

    /// Reads at most `limit` aggregates (the query asks for one more) and
    /// says whether there were more.
    async fn bounded(&self, q: Sql<B>, limit: i64) -> Result<CitizenAggregates> {
        let rows: Vec<AggregateRow> = fetch_rows(self.b.lookups(), q).await?;
        let truncated = rows.len() as i64 > limit;
        let aggregates = rows.into_iter().take(limit as usize).map(AggregateRow::decode).collect::<Result<_>>()?;
        Ok(CitizenAggregates { aggregates, truncated })
    }

    pub async fn citizen_aggregates(
        &self,
        subject: &str,
        kinds: &[AggregateKind],
        party_cases: bool,
        limit: i64,
    ) -> Result<CitizenAggregates> {
        let mut q = Sql::<B>::new();
        let who = q.arg(Val::str(subject));
        let kinds = q.list(ColType::Text, kinds.iter().map(|k| Val::str(k.as_str())));
        let bound = q.arg(limit + 1);
        let own = format!(
            "SELECT {AGGREGATE_READ}, kind, 0 AS part FROM aggregates WHERE subject = {who} AND {}",
            B::in_list("kind", &kinds)
        );
        let others = if party_cases {
            format!(
                " UNION ALL SELECT {AGGREGATE_READ}, kind, 1 AS part FROM aggregates
                  WHERE subject <> {who} AND kind = 'case'
                    AND aggregate_id IN (SELECT case_id FROM case_parties WHERE party = {who})"
            )
        } else {
            String::new()
        };
        let q = q.text(format!(
            "SELECT {AGGREGATE_READ} FROM ({own}{others}) x ORDER BY part, kind, aggregate_id LIMIT {bound}"
        ));
        self.bounded(q, limit).await
    }

    pub async fn party_cases(&self, party: &str, primary_only: bool, limit: i64) -> Result<CitizenAggregates> {
        let mut q = Sql::<B>::new();
        let who = q.arg(Val::str(party));
        let bound = q.arg(limit + 1);
        let role = if primary_only { " AND role = 'primary'" } else { "" };
        let q = q.text(format!(
            "SELECT {AGGREGATE_READ} FROM aggregates
             WHERE aggregate_id IN (SELECT case_id FROM case_parties WHERE party = {who}{role})
             ORDER BY kind, aggregate_id LIMIT {bound}"
        ));
        self.bounded(q, limit).await
    }

    pub async fn aggregate(&self, id: Uuid) -> Result<Option<Aggregate>> {
        let mut q = Sql::<B>::new();
        let id = q.arg(id);
        let q = q.text(format!("SELECT {AGGREGATE_READ} FROM aggregates WHERE aggregate_id = {id}"));
        let rows: Vec<AggregateRow> = fetch_rows(self.b.lookups(), q).await?;
        rows.into_iter().next().map(AggregateRow::decode).transpose()
    }
}

impl<B: Backend> EngineTx<B> {
    pub fn parked_budget(&self) -> super::ParkedBudget {
        self.parked_budget
    }

    pub async fn load_context(
        &mut self,
        aggregate_ids: &[Uuid],
        event_ids: &[Uuid],
        ranges: &[OffsetRange],
    ) -> Result<Context> {
        let mut ctx = Context::default();
        if !ranges.is_empty() {
            let rows: Vec<Row> = ranges
                .iter()
                .map(|r| vec![Val::str(&r.topic), Val::from(r.partition), Val::Int(r.lo), Val::Int(r.hi)])
                .collect();
            let mut q = Sql::<B>::new();
            let src = q.rows(OFFSET_RANGES, &rows, "r");
            let q = q.text(format!(
                "SELECT d.topic, d.partition_id, d.kafka_offset, d.fingerprint FROM {src}
                 JOIN dead_letters d ON d.topic = r.t AND d.partition_id = r.p AND d.kafka_offset BETWEEN r.lo AND r.hi"
            ));
            let found: Vec<FingerprintRow> = B::fetch(&mut self.tx, q).await?;
            for r in found {
                let key = PartitionKey { topic: r.topic.into(), partition: r.partition_id };
                ctx.dead_letter_fingerprints.insert((key, r.kafka_offset, r.fingerprint));
            }
        }
        if aggregate_ids.is_empty() {
            return Ok(ctx);
        }
        for a in self.load_generation_aggregates(self.generation, aggregate_ids).await? {
            ctx.aggregates.insert(a.id, a);
        }
        // The lookups by the batch's ids below are planned for each batch
        // (`once`): a plan cached while a table was small may scan it
        // testing every row against the whole id array, a cost that grows
        // with the table times the batch — it did for `tombstones`, to
        // seconds per batch after half a million deletions.
        let mut q = Sql::<B>::new();
        let ids = q.list(ColType::Uuid, uuids(aggregate_ids));
        let q = q.text(format!("SELECT aggregate_id AS id FROM tombstones WHERE {}", B::in_list("aggregate_id", &ids)));
        let stones: Vec<IdRow> = B::fetch(&mut self.tx, q.once()).await?;
        ctx.tombstones = stones.into_iter().map(|r| r.id.0).collect();

        let (parked, truncated) = self.load_parked(aggregate_ids, self.parked_budget()).await?;
        for p in parked {
            ctx.parked.entry(p.aggregate_id).or_default().push(p);
        }
        ctx.parked_truncated = truncated;

        let mut q = Sql::<B>::new();
        let ids = q.list(ColType::Uuid, uuids(event_ids));
        let q = q.text(format!(
            "SELECT event_id, aggregate_id, aggregate_version FROM events WHERE {}
             UNION ALL SELECT event_id, aggregate_id, aggregate_version FROM parked WHERE {}",
            B::in_list("event_id", &ids),
            B::in_list("event_id", &ids)
        ));
        let known: Vec<HolderRow> = B::fetch(&mut self.tx, q.once()).await?;
        for r in known {
            ctx.known_event_ids.insert(r.event_id.0);
            ctx.event_id_holders.insert(r.event_id.0, (r.aggregate_id.0, r.aggregate_version));
        }
        Ok(ctx)
    }

    pub async fn load_aggregates(&mut self, ids: &[Uuid]) -> Result<Vec<Aggregate>> {
        self.load_generation_aggregates(self.generation, ids).await
    }

    pub async fn load_generation_aggregates(&mut self, generation: i32, ids: &[Uuid]) -> Result<Vec<Aggregate>> {
        let mut q = Sql::<B>::new();
        let list = q.list(ColType::Uuid, uuids(ids));
        let q = q.text(format!(
            "SELECT {AGGREGATE_READ} FROM {} WHERE {}",
            schema::physical(&TABLES[AGGREGATES], generation),
            B::in_list("aggregate_id", &list)
        ));
        let rows: Vec<AggregateRow> = B::fetch(&mut self.tx, q.once()).await?;
        rows.into_iter().map(AggregateRow::decode).collect()
    }

    pub async fn linked(&mut self, kind: AggregateKind, parents: &[Uuid]) -> Result<Vec<Uuid>> {
        let mut q = Sql::<B>::new();
        let kind = q.arg(Val::str(kind.as_str()));
        let list = q.list(ColType::Uuid, uuids(parents));
        let q = q.text(format!(
            "SELECT aggregate_id AS id FROM {} WHERE {} AND kind = {kind}",
            schema::physical(&TABLES[AGGREGATES], self.generation),
            B::in_list("link_id", &list)
        ));
        let rows: Vec<IdRow> = B::fetch(&mut self.tx, q).await?;
        Ok(rows.into_iter().map(|r| r.id.0).collect())
    }

    /// The batch's writes, in this order: dead letters, parked, events,
    /// aggregate states (compare-and-set), deletions, counts, and last the
    /// change notices (`store/advis.rs`), whose outbox lock is then held
    /// for the shortest time.
    pub async fn write(&mut self, plan: &Plan) -> Result<()> {
        self.write_dead_letters(plan).await?;
        self.write_parked(plan).await?;
        self.append_events(plan).await?;
        self.write_aggregates(plan).await?;
        let adjust = self.purge(&plan.deletions, DeletionCause::Event).await?;
        let mut counts = plan.counts.clone();
        for (k, c) in adjust {
            counts.entry(k).or_default().add(&c);
        }
        self.add_counts(&counts).await?;
        self.enqueue_notices(plan).await
    }

    async fn write_dead_letters(&mut self, plan: &Plan) -> Result<()> {
        if !plan.dead_letters.is_empty() {
            let rows: Vec<Row> = plan
                .dead_letters
                .iter()
                .map(|d| {
                    vec![
                        Val::str(&d.origin.topic),
                        Val::from(d.origin.partition),
                        Val::Int(d.origin.offset),
                        d.key.as_deref().map_or(Val::Null, Val::bytes),
                        Val::bytes(&d.payload),
                        Val::str(d.rejection.reason.as_str()),
                        Val::str(&d.rejection.detail),
                        d.event_id.into(),
                        d.aggregate_id.into(),
                        Val::str(&d.fingerprint),
                    ]
                })
                .collect();
            append_rows::<B>(&mut self.tx, "dead_letters", durable::DEAD_LETTERS, &rows).await?;
        }
        if !plan.dead_letters_failed_again.is_empty() {
            let rows: Vec<Row> = plan
                .dead_letters_failed_again
                .iter()
                .map(|(id, r)| vec![Val::Int(*id), Val::str(r.reason.as_str()), Val::str(&r.detail)])
                .collect();
            let mut q = Sql::<B>::new();
            let src = q.rows(REPLAY_FAILURES, &rows, "u");
            let q = q.text(format!(
                "UPDATE dead_letters AS d SET reason = u.reason, detail = u.detail,
                        replay_attempts = d.replay_attempts + 1, last_replay_at = {}
                 FROM {src} WHERE d.id = u.id",
                B::NOW
            ));
            B::execute(&mut self.tx, q).await?;
        }
        if !plan.dead_letters_resolved.is_empty() {
            let mut q = Sql::<B>::new();
            let list = q.list(ColType::Int, plan.dead_letters_resolved.iter().map(|i| Val::Int(*i)));
            let q = q.text(format!("DELETE FROM dead_letters WHERE {}", B::in_list("id", &list)));
            B::execute(&mut self.tx, q).await?;
        }
        Ok(())
    }

    async fn write_parked(&mut self, plan: &Plan) -> Result<()> {
        if !plan.unparked.is_empty() {
            let mut q = Sql::<B>::new();
            let list = q.list(ColType::Uuid, uuids(&plan.unparked));
            let q = q.text(format!("DELETE FROM parked WHERE {}", B::in_list("event_id", &list)));
            // Another transaction (a second consumer, an operator's
            // resolution) took some of them first.
            if B::execute(&mut self.tx, q).await? != plan.unparked.len() as u64 {
                return Err(StoreError::Conflict("a parked event left the parked table since it was read".into()));
            }
        }
        if !plan.parked.is_empty() {
            let rows: Vec<Row> = plan
                .parked
                .iter()
                .map(|p| {
                    vec![
                        Val::Uuid(p.event_id),
                        Val::Uuid(p.aggregate_id),
                        Val::Int(p.aggregate_version),
                        Val::Int(p.expected_version),
                        Val::str(&p.origin.topic),
                        Val::from(p.origin.partition),
                        Val::Int(p.origin.offset),
                        p.key.as_deref().map_or(Val::Null, Val::bytes),
                        Val::bytes(&p.payload),
                    ]
                })
                .collect();
            append_rows::<B>(&mut self.tx, "parked", durable::PARKED, &rows).await?;
        }
        Ok(())
    }

    async fn append_events(&mut self, plan: &Plan) -> Result<()> {
        if plan.appended.is_empty() {
            return Ok(());
        }
        let rows: Vec<Row> = plan
            .appended
            .iter()
            .map(|a| {
                let e = &a.header;
                vec![
                    Val::Uuid(e.id),
                    Val::Uuid(e.aggregate_id),
                    Val::Int(e.aggregate_version),
                    Val::str(e.aggregate_kind().as_str()),
                    Val::from(e.type_name()),
                    Val::from(e.subject.urn()),
                    Val::str(e.authority.as_str()),
                    Val::Time(e.time),
                    Val::str(&a.origin.topic),
                    Val::from(a.origin.partition),
                    Val::Int(a.origin.offset),
                    Val::bytes(&a.payload),
                ]
            })
            .collect();
        append_rows::<B>(&mut self.tx, "events", durable::EVENTS, &rows).await?;
        Ok(())
    }

    async fn write_aggregates(&mut self, plan: &Plan) -> Result<()> {
        if plan.writes.is_empty() {
            return Ok(());
        }
        let aggregates = schema::physical(&TABLES[AGGREGATES], self.generation);
        let mut rows = RowSet::default();
        for w in &plan.writes {
            rows.add(&w.aggregate);
        }
        // `RowSet::add` puts one aggregates row per aggregate, in order; the
        // rows are moved, not copied, into the two statements. New
        // aggregates are appended: one that exists already fails the
        // statement, and the batch is retried (a concurrent writer won).
        // Changed ones get every column but the id set from the new row,
        // if the stored version is still the one this batch read.
        let (mut fresh, mut changed): (Vec<Row>, Vec<Row>) = (Vec::new(), Vec::new());
        for (w, row) in plan.writes.iter().zip(std::mem::take(&mut rows.tables[AGGREGATES])) {
            if w.expected_version == 0 {
                fresh.push(row);
            } else {
                let mut versioned = Vec::with_capacity(row.len() + 1);
                versioned.push(Val::Int(w.expected_version));
                versioned.extend(row);
                changed.push(versioned);
            }
        }
        if !fresh.is_empty() {
            append_rows::<B>(&mut self.tx, &aggregates, TABLES[AGGREGATES].columns, &fresh).await?;
        }
        if !changed.is_empty() {
            let columns = TABLES[AGGREGATES].columns;
            let mut relation = vec![c("expected", ColType::Int)];
            relation.extend_from_slice(columns);
            let set: Vec<String> = columns[1..].iter().map(|c| format!("{0} = u.{0}", c.name)).collect();
            let mut q = Sql::<B>::new();
            let src = q.rows(&relation, &changed, "u");
            let q = q.text(format!(
                "UPDATE {aggregates} AS a SET {} FROM {src}
                 WHERE a.aggregate_id = u.aggregate_id AND a.version = u.expected",
                set.join(", ")
            ));
            if B::execute(&mut self.tx, q).await? != changed.len() as u64 {
                return Err(StoreError::Conflict("an aggregate changed since this batch read it".into()));
            }
        }
        // Rows are replaced whole: the old rows of changed aggregates go
        // first. Aggregates new in this batch have none. Ingest writes the
        // serving tables only.
        for (i, t) in schema::tables(false).skip(1) {
            let kind = t.kind.expect("projection tables have a kind");
            if plan.writes.iter().any(|w| w.aggregate.kind() == kind) {
                let changed: Vec<Uuid> = plan
                    .writes
                    .iter()
                    .filter(|w| w.expected_version > 0 && w.aggregate.kind() == kind)
                    .map(|w| w.aggregate.id)
                    .collect();
                if !changed.is_empty() {
                    self.delete_keys(t, self.generation, &changed).await?;
                }
                if !rows.tables[i].is_empty() {
                    append_rows::<B>(&mut self.tx, &schema::physical(t, self.generation), t.columns, &rows.tables[i])
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn delete_keys(&mut self, t: &Table, generation: i32, ids: &[Uuid]) -> Result<()> {
        let mut q = Sql::<B>::new();
        let list = q.list(ColType::Uuid, uuids(ids));
        let q = q.text(format!("DELETE FROM {} WHERE {}", schema::physical(t, generation), B::in_list(t.key, &list)));
        B::execute(&mut self.tx, q).await?;
        Ok(())
    }

    /// Deletes aggregates physically with everything stored about them, and
    /// leaves tombstones. Returns the count adjustments of the purged parked
    /// and dead-lettered messages.
    pub async fn purge(
        &mut self,
        deletions: &[Deletion],
        cause: DeletionCause,
    ) -> Result<BTreeMap<PartitionKey, Counts>> {
        if deletions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let existing: Vec<Row> = deletions
            .iter()
            .filter(|d| d.expected_version > 0)
            .map(|d| vec![Val::Uuid(d.aggregate_id), Val::Int(d.expected_version)])
            .collect();
        if !existing.is_empty() {
            let table = schema::physical(&TABLES[AGGREGATES], self.generation);
            let mut q = Sql::<B>::new();
            let src = q.rows(VERSIONED, &existing, "u");
            let q = q.text(format!(
                "DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM {src}
                   WHERE {table}.aggregate_id = u.id AND {table}.version = u.expected)"
            ));
            if B::execute(&mut self.tx, q).await? != existing.len() as u64 {
                return Err(StoreError::Conflict("an aggregate being deleted changed since it was read".into()));
            }
        }
        let ids: Vec<Uuid> = deletions.iter().map(|d| d.aggregate_id).collect();
        let kinds: HashSet<AggregateKind> = deletions.iter().map(|d| d.kind).collect();
        for (_, t) in schema::tables(self.reporting).skip(1) {
            if kinds.contains(&t.kind.expect("kind")) {
                self.delete_keys(t, self.generation, &ids).await?;
            }
        }
        let mut q = Sql::<B>::new();
        let list = q.list(ColType::Uuid, uuids(&ids));
        B::execute(&mut self.tx, q.text(format!("DELETE FROM events WHERE {}", B::in_list("aggregate_id", &list))))
            .await?;
        let mut q = Sql::<B>::new();
        let list = q.list(ColType::Uuid, uuids(&ids));
        let q = q.text(format!("DELETE FROM operator_decisions WHERE {}", B::in_list("aggregate_id", &list)));
        B::execute(&mut self.tx, q).await?;
        let mut origins = Vec::new();
        for table in ["parked", "dead_letters"] {
            let mut q = Sql::<B>::new();
            let list = q.list(ColType::Uuid, uuids(&ids));
            let q = q.text(format!(
                "DELETE FROM {table} WHERE {} RETURNING topic, partition_id",
                B::in_list("aggregate_id", &list)
            ));
            let rows: Vec<OriginRow> = B::fetch(&mut self.tx, q).await?;
            origins.push(rows.into_iter().map(|r| (r.topic, r.partition_id)).collect::<Vec<_>>());
        }
        let stones: Vec<Row> = deletions
            .iter()
            .map(|d| {
                vec![
                    Val::Uuid(d.aggregate_id),
                    Val::str(d.kind.as_str()),
                    Val::Int(d.last_version),
                    Val::str(cause.as_str()),
                ]
            })
            .collect();
        let mut q = Sql::<B>::new();
        let names = durable::names(durable::TOMBSTONES);
        let src = q.rows(durable::TOMBSTONES, &stones, "u");
        let q = q.text(format!(
            "INSERT INTO tombstones ({names}) SELECT {names} FROM {src} WHERE true
             ON CONFLICT (aggregate_id) DO UPDATE
               SET last_version = {}, deleted_at = {}",
            B::greatest("tombstones.last_version", "excluded.last_version"),
            B::NOW
        ));
        B::execute(&mut self.tx, q).await?;
        Ok(purged_adjustments(&origins[0], &origins[1]))
    }

    pub async fn add_counts(&mut self, counts: &BTreeMap<PartitionKey, Counts>) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let rows: Vec<Row> = counts
            .iter()
            .map(|(k, c)| {
                vec![
                    Val::str(&k.topic),
                    Val::from(k.partition),
                    Val::Int(c.applied),
                    Val::Int(c.duplicates),
                    Val::Int(c.ignored_deleted),
                    Val::Int(c.parked),
                    Val::Int(c.dead_lettered),
                ]
            })
            .collect();
        let mut q = Sql::<B>::new();
        let names = durable::names(durable::INGEST_COUNTS);
        let src = q.rows(durable::INGEST_COUNTS, &rows, "u");
        let q = q.text(format!(
            "INSERT INTO ingest_counts ({names}) SELECT {names} FROM {src} WHERE true
             ON CONFLICT (topic, partition_id) DO UPDATE SET
               applied = ingest_counts.applied + excluded.applied,
               duplicates = ingest_counts.duplicates + excluded.duplicates,
               ignored_deleted = ingest_counts.ignored_deleted + excluded.ignored_deleted,
               parked = ingest_counts.parked + excluded.parked,
               dead_lettered = ingest_counts.dead_lettered + excluded.dead_lettered"
        ));
        B::execute(&mut self.tx, q).await?;
        Ok(())
    }

    pub async fn advance_offsets(&mut self, advances: &[OffsetAdvance]) -> Result<()> {
        let rows: Vec<Row> = advances
            .iter()
            .map(|a| vec![Val::str(&a.topic), Val::from(a.partition), Val::Int(a.expected), Val::Int(a.next)])
            .collect();
        let mut q = Sql::<B>::new();
        let src = q.rows(OFFSET_MOVES, &rows, "u");
        let q = q.text(format!(
            "UPDATE consumer_offsets AS o SET next_offset = u.next, updated_at = {}
             FROM {src} WHERE o.topic = u.t AND o.partition_id = u.p AND o.next_offset = u.expected
             RETURNING topic, partition_id",
            B::NOW
        ));
        let moved: Vec<OriginRow> = B::fetch(&mut self.tx, q).await?;
        let done: HashSet<(String, i32)> = moved.into_iter().map(|r| (r.topic, r.partition_id)).collect();
        match advances.iter().find(|a| !done.contains(&(a.topic.clone(), a.partition))) {
            Some(a) => Err(StoreError::Fenced { topic: a.topic.clone(), partition: a.partition, expected: a.expected }),
            None => Ok(()),
        }
    }

    pub async fn events_after(&mut self, seq: i64) -> Result<Vec<StoredEvent>> {
        let mut q = Sql::<B>::new();
        let seq = q.arg(seq);
        let q = q.text(format!(
            "SELECT seq, aggregate_id, aggregate_version, payload FROM events WHERE seq > {seq}
             ORDER BY aggregate_id, aggregate_version"
        ));
        let rows: Vec<StoredEventRow> = B::fetch(&mut self.tx, q).await?;
        Ok(rows.into_iter().map(StoredEvent::from).collect())
    }

    pub async fn replace_in_generation(
        &mut self,
        generation: i32,
        reporting: bool,
        aggregates: &[Aggregate],
        removed: &[Uuid],
    ) -> Result<()> {
        let mut ids: Vec<Uuid> = aggregates.iter().map(|a| a.id).collect();
        ids.extend_from_slice(removed);
        if ids.is_empty() {
            return Ok(());
        }
        let mut rows = RowSet::new(reporting);
        for a in aggregates {
            rows.add(a);
        }
        for (i, t) in schema::tables(reporting) {
            self.delete_keys(t, generation, &ids).await?;
            if !rows.tables[i].is_empty() {
                append_rows::<B>(&mut self.tx, &schema::physical(t, generation), t.columns, &rows.tables[i]).await?;
            }
        }
        Ok(())
    }

    pub async fn drop_tombstoned(&mut self, generation: i32, reporting: bool) -> Result<()> {
        for (_, t) in schema::tables(reporting) {
            let sql = format!(
                "DELETE FROM {} WHERE {} IN (SELECT aggregate_id FROM tombstones)",
                schema::physical(t, generation),
                t.key
            );
            B::execute(&mut self.tx, Sql::of(sql)).await?;
        }
        Ok(())
    }

    pub async fn swap_to(&mut self, generation: i32, reporting: bool) -> Result<()> {
        for t in TABLES {
            B::execute(&mut self.tx, Sql::of(schema::drop_view(t))).await?;
        }
        for (_, t) in schema::tables(reporting) {
            B::execute(&mut self.tx, Sql::of(schema::create_view(t, generation))).await?;
        }
        let mut q = Sql::<B>::new();
        let (g, v) = (q.arg(generation), q.arg(PROJECTION_SCHEMA_VERSION));
        let reporting_at = if reporting { B::NOW } else { "NULL" };
        let q = q.text(format!(
            "UPDATE projection_meta SET generation = {g}, schema_version = {v}, rebuilt_at = {},
                    reporting_at = {reporting_at} WHERE id = 1",
            B::NOW
        ));
        B::execute(&mut self.tx, q).await?;
        self.generation = generation;
        self.reporting = reporting;
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}
