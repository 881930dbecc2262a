//! The PostgreSQL backend. Bulk writes bind one array per column and insert
//! with `UNNEST`, so a batch costs a fixed number of statements whatever its
//! size.

mod serve;

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Postgres, Row as _, Transaction};
use uuid::Uuid;

use super::rows::{RowSet, Val};
use super::schema::{self, AGGREGATES, ColType, Dialect, PROJECTION_SCHEMA_VERSION, TABLES, Table};
use super::*;
use crate::projection::{Parked, Plan};

/// Serialises ingest batches (shared) against the rebuild's swap
/// (exclusive); the value spells "overblik".
const PROJECTION_LOCK: i64 = 0x6f76_6572_626c_696b;

#[derive(Clone, Debug)]
pub struct PgStore {
    pub(super) pool: PgPool,
    /// The lookup path's pool. Its statements (a citizen's aggregates, an
    /// authority's agreements, the audit append) have one plan that fits
    /// every argument, so its sessions always use the generic plan and skip
    /// planning on every call — most of the database's CPU per lookup
    /// otherwise. Other statements keep per-call plans (an audit query with
    /// optional filters needs them).
    pub(super) lookups: PgPool,
    /// The audit chain's head as this process last wrote it; `None` when
    /// unknown. A hint only: appends check it in the database.
    pub(super) audit_head: Arc<std::sync::Mutex<Option<(i64, String)>>>,
}

pub struct PgTx {
    pub(super) tx: Transaction<'static, Postgres>,
    pub(in crate::store) generation: i32,
}

type PgQuery = Query<'static, Postgres, PgArguments>;

fn q(sql: String) -> PgQuery {
    sqlx::query(AssertSqlSafe(sql))
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<PgStore> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::from)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let lookups = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.options([("plan_cache_mode", "force_generic_plan")]));
        let store = PgStore { pool, lookups, audit_head: Default::default() };
        store.ensure_projections().await?;
        Ok(store)
    }

    async fn ensure_projections(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PROJECTION_LOCK).execute(&mut *tx).await?;
        let generation: i32 =
            sqlx::query_scalar("SELECT generation FROM projection_meta WHERE id = 1").fetch_one(&mut *tx).await?;
        if generation == 0 {
            for t in TABLES {
                q(schema::create_table(Dialect::Postgres, t, 1)).execute(&mut *tx).await?;
                for ix in schema::create_indexes(t, 1) {
                    q(ix).execute(&mut *tx).await?;
                }
                q(schema::create_view(t, 1)).execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE projection_meta SET generation = 1, schema_version = $1 WHERE id = 1")
                .bind(PROJECTION_SCHEMA_VERSION)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn live_generation(tx: &mut Transaction<'static, Postgres>) -> Result<i32> {
        let row = sqlx::query("SELECT generation, schema_version FROM projection_meta WHERE id = 1")
            .fetch_one(&mut **tx)
            .await?;
        let (generation, version): (i32, i32) = (row.get(0), row.get(1));
        if version != PROJECTION_SCHEMA_VERSION {
            return Err(StoreError::SchemaMismatch { found: version, expected: PROJECTION_SCHEMA_VERSION });
        }
        Ok(generation)
    }

    pub async fn begin(&self) -> Result<Tx> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock_shared($1)").bind(PROJECTION_LOCK).execute(&mut *tx).await?;
        let generation = Self::live_generation(&mut tx).await?;
        Ok(Tx::Postgres(PgTx { tx, generation }))
    }

    pub async fn begin_exclusive(&self) -> Result<Tx> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PROJECTION_LOCK).execute(&mut *tx).await?;
        let generation: i32 =
            sqlx::query_scalar("SELECT generation FROM projection_meta WHERE id = 1").fetch_one(&mut *tx).await?;
        Ok(Tx::Postgres(PgTx { tx, generation }))
    }

    pub async fn assigned_offsets(&self, partitions: &[(String, i32)]) -> Result<Vec<i64>> {
        let topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
        let parts: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
        sqlx::query(
            "INSERT INTO consumer_offsets (topic, partition_id, next_offset)
             SELECT t, p, 0 FROM UNNEST($1::text[], $2::int[]) AS u(t, p)
             ON CONFLICT (topic, partition_id) DO NOTHING",
        )
        .bind(&topics)
        .bind(&parts)
        .execute(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT u.i, o.next_offset FROM UNNEST($1::text[], $2::int[]) WITH ORDINALITY AS u(t, p, i)
             JOIN consumer_offsets o ON o.topic = u.t AND o.partition_id = u.p ORDER BY u.i",
        )
        .bind(&topics)
        .bind(&parts)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get::<i64, _>(1)).collect())
    }

    pub async fn reset_offsets(&self, topics: &[String]) -> Result<u64> {
        let r =
            sqlx::query("DELETE FROM consumer_offsets WHERE topic = ANY($1)").bind(topics).execute(&self.pool).await?;
        Ok(r.rows_affected())
    }

    pub async fn status(&self) -> Result<Status> {
        let rows = sqlx::query(
            "SELECT COALESCE(o.topic, c.topic), COALESCE(o.partition_id, c.partition_id), o.next_offset,
                    COALESCE(c.applied, 0), COALESCE(c.duplicates, 0), COALESCE(c.ignored_deleted, 0),
                    COALESCE(c.parked, 0), COALESCE(c.dead_lettered, 0)
             FROM consumer_offsets o FULL OUTER JOIN ingest_counts c
               ON c.topic = o.topic AND c.partition_id = o.partition_id
             ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        let partitions = rows
            .iter()
            .map(|r| {
                let (applied, duplicates, parked, dead): (i64, i64, i64, i64) =
                    (r.get(3), r.get(4), r.get(6), r.get(7));
                PartitionStatus {
                    topic: r.get(0),
                    partition: r.get(1),
                    next_offset: r.get(2),
                    consumed: applied + duplicates + parked + dead,
                    applied,
                    duplicates,
                    ignored_deleted: r.get(5),
                    parked,
                    dead_lettered: dead,
                }
            })
            .collect();
        let (partitions, total) = summarise(partitions);
        let mut projections = BTreeMap::new();
        for t in TABLES {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", t.name)))
                .fetch_one(&self.pool)
                .await?;
            projections.insert(t.name.to_string(), n);
        }
        let scalar = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(&self.pool);
        let events = scalar("SELECT count(*) FROM events").await?;
        let tombstones = scalar("SELECT count(*) FROM tombstones").await?;
        let parked_rows = scalar("SELECT count(*) FROM parked").await?;
        let generation: i32 =
            sqlx::query_scalar("SELECT generation FROM projection_meta WHERE id = 1").fetch_one(&self.pool).await?;
        let by_reason = sqlx::query("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect();
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
            dead_letters_by_reason: by_reason,
            projection_generation: generation,
        })
    }

    pub async fn dead_letters(&self, f: &DeadLetterFilter) -> Result<Vec<DeadLetterRow>> {
        let rows = sqlx::query(
            "SELECT id, topic, partition_id, kafka_offset, reason, detail, event_id, aggregate_id, dead_at,
                    replay_attempts, octet_length(payload)::bigint
             FROM dead_letters WHERE id > $1 AND ($2::text IS NULL OR reason = $2) ORDER BY id LIMIT $3",
        )
        .bind(f.after_id)
        .bind(&f.reason)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DeadLetterRow {
                id: r.get(0),
                topic: r.get(1),
                partition: r.get(2),
                offset: r.get(3),
                reason: r.get(4),
                detail: r.get(5),
                event_id: r.get(6),
                aggregate_id: r.get(7),
                dead_at: r.get(8),
                replay_attempts: r.get(9),
                bytes: r.get(10),
            })
            .collect())
    }

    pub async fn dead_letter_messages(&self, ids: &[i64]) -> Result<Vec<DeadLetterMessage>> {
        let rows = sqlx::query(
            "SELECT id, topic, partition_id, kafka_offset, message_key, payload FROM dead_letters
             WHERE id = ANY($1) ORDER BY id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DeadLetterMessage {
                id: r.get(0),
                topic: r.get(1),
                partition: r.get(2),
                offset: r.get(3),
                key: r.get(4),
                payload: r.get(5),
            })
            .collect())
    }

    pub async fn rebuild_start(&self) -> Result<RebuildStart> {
        let mut tx = self.pool.begin().await?;
        // Exclusive for a moment: with no batch in flight, every sequence
        // number up to the maximum belongs to a committed event.
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PROJECTION_LOCK).execute(&mut *tx).await?;
        let live = PgStore::live_generation_any(&mut tx).await?;
        let upto: i64 = sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM events").fetch_one(&mut *tx).await?;
        tx.commit().await?;
        let total: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE seq <= $1").bind(upto).fetch_one(&self.pool).await?;
        let next = live + 1;
        self.drop_generation(next).await?;
        let mut tx = self.pool.begin().await?;
        for t in TABLES {
            q(schema::create_table(Dialect::Postgres, t, next)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(RebuildStart { generation: next, upto_seq: upto, total_events: total })
    }

    async fn live_generation_any(tx: &mut Transaction<'static, Postgres>) -> Result<i32> {
        Ok(sqlx::query_scalar("SELECT generation FROM projection_meta WHERE id = 1").fetch_one(&mut **tx).await?)
    }

    pub async fn events_by_aggregate(
        &self,
        upto: i64,
        after: Option<(Uuid, i64)>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let (agg, ver) = after.unwrap_or((Uuid::nil(), 0));
        let rows = sqlx::query(
            "SELECT seq, aggregate_id, aggregate_version, payload FROM events
             WHERE seq <= $1 AND (aggregate_id, aggregate_version) > ($2, $3)
             ORDER BY aggregate_id, aggregate_version LIMIT $4",
        )
        .bind(upto)
        .bind(agg)
        .bind(ver)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(stored_event).collect())
    }

    pub async fn insert_rows(&self, generation: i32, rows: &RowSet) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (i, t) in TABLES.iter().enumerate() {
            insert(&mut tx, t, generation, &rows.tables[i]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_indexes(&self, generation: i32) -> Result<()> {
        for t in TABLES {
            for ix in schema::create_indexes(t, generation) {
                q(ix).execute(&self.pool).await?;
            }
        }
        Ok(())
    }

    pub async fn drop_generation(&self, generation: i32) -> Result<()> {
        for t in TABLES {
            q(schema::drop_table(t, generation)).execute(&self.pool).await?;
        }
        Ok(())
    }

    pub async fn closed_cases(
        &self,
        before: NaiveDate,
        after: Option<(NaiveDate, Uuid)>,
        limit: i64,
    ) -> Result<Vec<ClosedCase>> {
        // (0001-01-01, nil) sorts before every real key and is a date PostgreSQL accepts.
        let first = (NaiveDate::from_ymd_opt(1, 1, 1).expect("a date"), Uuid::nil());
        let (after_date, after_id) = after.unwrap_or(first);
        let rows = sqlx::query(
            "SELECT id, kind, kle, closed_on FROM (
                 SELECT case_id AS id, 'case' AS kind, kle, closed_on FROM cases WHERE closed_on < $1
                 UNION ALL
                 SELECT case_id, 'control_case', kle, closed_on FROM control_cases WHERE closed_on < $1
             ) c WHERE (closed_on, id) > ($2, $3) ORDER BY closed_on, id LIMIT $4",
        )
        .bind(before)
        .bind(after_date)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ClosedCase {
                    aggregate_id: r.get(0),
                    kind: AggregateKind::parse(r.get(1)).ok_or_else(|| StoreError::Corrupt("case kind".into()))?,
                    kle: r.get(2),
                    closed_on: r.get(3),
                })
            })
            .collect()
    }

    pub async fn tables_containing(&self, needle: &str) -> Result<Vec<String>> {
        let columns = sqlx::query(
            "SELECT c.table_name::text, c.column_name::text, c.data_type::text
             FROM information_schema.columns c JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
               AND c.table_name NOT LIKE '\\_sqlx%'
             ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut hits = Vec::new();
        for c in &columns {
            let (table, column, ty): (String, String, String) = (c.get(0), c.get(1), c.get(2));
            let test = if ty == "bytea" {
                format!("position(convert_to($1, 'UTF8') IN \"{column}\") > 0")
            } else {
                format!("strpos(\"{column}\"::text, $1) > 0")
            };
            let found: bool =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM \"{table}\" WHERE {test})")))
                    .bind(needle)
                    .fetch_one(&self.pool)
                    .await?;
            if found {
                hits.push(format!("{table}.{column}"));
            }
        }
        Ok(hits)
    }

    pub async fn dump_projections(&self) -> Result<BTreeMap<String, Vec<Vec<Option<String>>>>> {
        let mut out = BTreeMap::new();
        for t in TABLES {
            let cols: Vec<String> = t.columns.iter().map(|c| format!("{}::text", c.name)).collect();
            let sql = format!("SELECT {} FROM {} ORDER BY {}", cols.join(", "), t.name, t.primary_key.join(", "));
            let rows = q(sql).fetch_all(&self.pool).await?;
            let rendered =
                rows.iter().map(|r| (0..t.columns.len()).map(|i| r.get::<Option<String>, _>(i)).collect()).collect();
            out.insert(t.name.to_string(), rendered);
        }
        Ok(out)
    }

    pub async fn close(&self) {
        self.lookups.close().await;
        self.pool.close().await;
    }
}

fn stored_event(r: &PgRow) -> StoredEvent {
    StoredEvent { seq: r.get(0), aggregate_id: r.get(1), aggregate_version: r.get(2), payload: r.get(3) }
}

impl PgTx {
    pub async fn load_context(
        &mut self,
        aggregate_ids: &[Uuid],
        event_ids: &[Uuid],
        ranges: &[OffsetRange],
    ) -> Result<Context> {
        let mut ctx = Context::default();
        if !ranges.is_empty() {
            let rows = sqlx::query(
                "SELECT d.topic, d.partition_id, d.kafka_offset, d.fingerprint FROM dead_letters d
                 JOIN UNNEST($1::text[], $2::int[], $3::bigint[], $4::bigint[]) AS r(topic, part, lo, hi)
                   ON d.topic = r.topic AND d.partition_id = r.part AND d.kafka_offset BETWEEN r.lo AND r.hi",
            )
            .bind(ranges.iter().map(|r| r.topic.as_str()).collect::<Vec<_>>())
            .bind(ranges.iter().map(|r| r.partition).collect::<Vec<_>>())
            .bind(ranges.iter().map(|r| r.lo).collect::<Vec<_>>())
            .bind(ranges.iter().map(|r| r.hi).collect::<Vec<_>>())
            .fetch_all(&mut *self.tx)
            .await?;
            for r in &rows {
                let key = PartitionKey { topic: r.get(0), partition: r.get(1) };
                ctx.dead_letter_fingerprints.insert((key, r.get(2), r.get(3)));
            }
        }
        if aggregate_ids.is_empty() {
            return Ok(ctx);
        }
        for a in self.load_generation_aggregates(self.generation, aggregate_ids).await? {
            ctx.aggregates.insert(a.id, a);
        }
        // The lookups by the batch's ids below are planned for each batch
        // (`persistent(false)`): a plan cached while a table was small may
        // scan it testing every row against the whole id array, a cost that
        // grows with the table times the batch — it did for `tombstones`,
        // to seconds per batch after half a million deletions.
        ctx.tombstones = sqlx::query_scalar("SELECT aggregate_id FROM tombstones WHERE aggregate_id = ANY($1)")
            .persistent(false)
            .bind(aggregate_ids)
            .fetch_all(&mut *self.tx)
            .await?
            .into_iter()
            .collect();
        let parked = sqlx::query(
            "SELECT event_id, aggregate_id, aggregate_version, expected_version, topic, partition_id, kafka_offset,
                    message_key, payload
             FROM parked WHERE aggregate_id = ANY($1) ORDER BY aggregate_id, aggregate_version LIMIT $2",
        )
        .persistent(false)
        .bind(aggregate_ids)
        .bind(PARKED_LOAD_LIMIT)
        .fetch_all(&mut *self.tx)
        .await?;
        for r in &parked {
            let p = Parked {
                event_id: r.get(0),
                aggregate_id: r.get(1),
                aggregate_version: r.get(2),
                expected_version: r.get(3),
                origin: crate::projection::Origin { topic: r.get(4), partition: r.get(5), offset: r.get(6) },
                key: r.get(7),
                payload: r.get(8),
            };
            ctx.parked.entry(p.aggregate_id).or_default().push(p);
        }
        ctx.known_event_ids = sqlx::query_scalar(
            "SELECT event_id FROM events WHERE event_id = ANY($1)
             UNION ALL SELECT event_id FROM parked WHERE event_id = ANY($1)",
        )
        .persistent(false)
        .bind(event_ids)
        .fetch_all(&mut *self.tx)
        .await?
        .into_iter()
        .collect();
        Ok(ctx)
    }

    pub async fn load_aggregates(&mut self, ids: &[Uuid]) -> Result<Vec<Aggregate>> {
        self.load_generation_aggregates(self.generation, ids).await
    }

    pub async fn load_generation_aggregates(&mut self, generation: i32, ids: &[Uuid]) -> Result<Vec<Aggregate>> {
        let sql = format!(
            "SELECT aggregate_id, version, subject, authority, source, updated_at, state FROM {}
             WHERE aggregate_id = ANY($1)",
            schema::physical(&TABLES[AGGREGATES], generation)
        );
        let rows = q(sql).persistent(false).bind(ids).fetch_all(&mut *self.tx).await?;
        rows.iter()
            .map(|r| {
                aggregate_from_row(
                    r.get(0),
                    r.get(1),
                    r.get::<&str, _>(2),
                    r.get::<&str, _>(3),
                    r.get(4),
                    r.get(5),
                    r.get::<&str, _>(6),
                )
            })
            .collect()
    }

    pub async fn linked(&mut self, kind: AggregateKind, column: &str, values: &[Uuid]) -> Result<Vec<Uuid>> {
        let (_, table) = schema::tables_of(kind).next().expect("every kind has a main table");
        let sql =
            format!("SELECT {} FROM {} WHERE {column} = ANY($1)", table.key, schema::physical(table, self.generation));
        Ok(sqlx::query_scalar(AssertSqlSafe(sql)).bind(values).fetch_all(&mut *self.tx).await?)
    }

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
        self.add_counts(&counts).await
    }

    async fn write_dead_letters(&mut self, plan: &Plan) -> Result<()> {
        if !plan.dead_letters.is_empty() {
            let d = &plan.dead_letters;
            sqlx::query(
                "INSERT INTO dead_letters (topic, partition_id, kafka_offset, message_key, payload, reason, detail,
                                           event_id, aggregate_id, fingerprint)
                 SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::bytea[], $6::text[],
                                      $7::text[], $8::uuid[], $9::uuid[], $10::text[])",
            )
            .bind(d.iter().map(|x| &*x.origin.topic).collect::<Vec<_>>())
            .bind(d.iter().map(|x| x.origin.partition).collect::<Vec<_>>())
            .bind(d.iter().map(|x| x.origin.offset).collect::<Vec<_>>())
            .bind(d.iter().map(|x| x.key.as_deref()).collect::<Vec<_>>())
            .bind(d.iter().map(|x| x.payload.as_slice()).collect::<Vec<_>>())
            .bind(d.iter().map(|x| x.rejection.reason.as_str()).collect::<Vec<_>>())
            .bind(d.iter().map(|x| x.rejection.detail.as_str()).collect::<Vec<_>>())
            .bind(d.iter().map(|x| x.event_id).collect::<Vec<_>>())
            .bind(d.iter().map(|x| x.aggregate_id).collect::<Vec<_>>())
            .bind(d.iter().map(|x| x.fingerprint.as_str()).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.dead_letters_failed_again.is_empty() {
            let f = &plan.dead_letters_failed_again;
            sqlx::query(
                "UPDATE dead_letters d SET reason = u.reason, detail = u.detail,
                        replay_attempts = d.replay_attempts + 1, last_replay_at = now()
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS u(id, reason, detail) WHERE d.id = u.id",
            )
            .bind(f.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .bind(f.iter().map(|(_, r)| r.reason.as_str()).collect::<Vec<_>>())
            .bind(f.iter().map(|(_, r)| r.detail.as_str()).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.dead_letters_resolved.is_empty() {
            sqlx::query("DELETE FROM dead_letters WHERE id = ANY($1)")
                .bind(&plan.dead_letters_resolved)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn write_parked(&mut self, plan: &Plan) -> Result<()> {
        if !plan.unparked.is_empty() {
            sqlx::query("DELETE FROM parked WHERE event_id = ANY($1)")
                .bind(&plan.unparked)
                .execute(&mut *self.tx)
                .await?;
        }
        if !plan.parked.is_empty() {
            let p = &plan.parked;
            sqlx::query(
                "INSERT INTO parked (event_id, aggregate_id, aggregate_version, expected_version, topic,
                                     partition_id, kafka_offset, message_key, payload)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::text[], $6::int[],
                                      $7::bigint[], $8::bytea[], $9::bytea[])",
            )
            .bind(p.iter().map(|x| x.event_id).collect::<Vec<_>>())
            .bind(p.iter().map(|x| x.aggregate_id).collect::<Vec<_>>())
            .bind(p.iter().map(|x| x.aggregate_version).collect::<Vec<_>>())
            .bind(p.iter().map(|x| x.expected_version).collect::<Vec<_>>())
            .bind(p.iter().map(|x| &*x.origin.topic).collect::<Vec<_>>())
            .bind(p.iter().map(|x| x.origin.partition).collect::<Vec<_>>())
            .bind(p.iter().map(|x| x.origin.offset).collect::<Vec<_>>())
            .bind(p.iter().map(|x| x.key.as_deref()).collect::<Vec<_>>())
            .bind(p.iter().map(|x| x.payload.as_slice()).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn append_events(&mut self, plan: &Plan) -> Result<()> {
        if plan.appended.is_empty() {
            return Ok(());
        }
        let a = &plan.appended;
        sqlx::query(
            "INSERT INTO events (event_id, aggregate_id, aggregate_version, aggregate_kind, event_type, subject,
                                 authority, occurred_at, topic, partition_id, kafka_offset, payload)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::timestamptz[], $9::text[], $10::int[], $11::bigint[], $12::bytea[])",
        )
        .bind(a.iter().map(|x| x.header.id).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.header.aggregate_id).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.header.aggregate_version).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.header.aggregate_kind().as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.header.type_name()).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.header.subject.urn()).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.header.authority.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.header.time).collect::<Vec<_>>())
        .bind(a.iter().map(|x| &*x.origin.topic).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.origin.partition).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.origin.offset).collect::<Vec<_>>())
        .bind(a.iter().map(|x| x.payload.as_slice()).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn write_aggregates(&mut self, plan: &Plan) -> Result<()> {
        if plan.writes.is_empty() {
            return Ok(());
        }
        let aggregates = schema::physical(&TABLES[AGGREGATES], self.generation);
        let mut rows = RowSet::default();
        let (mut new, mut changed) = (Vec::new(), Vec::new());
        for w in &plan.writes {
            rows.add(&w.aggregate);
            if w.expected_version == 0 { new.push(w) } else { changed.push(w) }
        }
        if !new.is_empty() {
            // `RowSet::add` puts one aggregates row per aggregate, in order.
            let fresh: Vec<Vec<Val>> = plan
                .writes
                .iter()
                .zip(&rows.tables[AGGREGATES])
                .filter(|(w, _)| w.expected_version == 0)
                .map(|(_, r)| r.clone())
                .collect();
            let inserted =
                insert_returning_count(&mut self.tx, &TABLES[AGGREGATES], self.generation, &fresh, true).await?;
            if inserted != new.len() as u64 {
                return Err(StoreError::Conflict("an aggregate this batch creates already exists".into()));
            }
        }
        if !changed.is_empty() {
            let sql = format!(
                "UPDATE {aggregates} a SET version = u.version, authority = u.authority, source = u.source,
                        updated_at = u.updated_at, state = u.state
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[],
                             $7::text[]) AS u(id, expected, version, authority, source, updated_at, state)
                 WHERE a.aggregate_id = u.id AND a.version = u.expected"
            );
            let updated = q(sql)
                .bind(changed.iter().map(|w| w.aggregate.id).collect::<Vec<_>>())
                .bind(changed.iter().map(|w| w.expected_version).collect::<Vec<_>>())
                .bind(changed.iter().map(|w| w.aggregate.version).collect::<Vec<_>>())
                .bind(changed.iter().map(|w| w.aggregate.authority.as_str()).collect::<Vec<_>>())
                .bind(changed.iter().map(|w| &*w.aggregate.source).collect::<Vec<_>>())
                .bind(changed.iter().map(|w| w.aggregate.updated_at).collect::<Vec<_>>())
                .bind(changed.iter().map(|w| w.aggregate.state.to_json()).collect::<Vec<_>>())
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
            if updated != changed.len() as u64 {
                return Err(StoreError::Conflict("an aggregate changed since this batch read it".into()));
            }
        }
        // Rows are replaced whole: the old rows of changed aggregates go
        // first. Aggregates new in this batch have none.
        for (i, t) in TABLES.iter().enumerate().skip(1) {
            let kind = t.kind.expect("projection tables have a kind");
            if plan.writes.iter().any(|w| w.aggregate.kind() == kind) {
                let changed: Vec<Uuid> = plan
                    .writes
                    .iter()
                    .filter(|w| w.expected_version > 0 && w.aggregate.kind() == kind)
                    .map(|w| w.aggregate.id)
                    .collect();
                if !changed.is_empty() {
                    delete_keys(&mut self.tx, t, self.generation, &changed).await?;
                }
                insert(&mut self.tx, t, self.generation, &rows.tables[i]).await?;
            }
        }
        Ok(())
    }

    pub async fn purge(
        &mut self,
        deletions: &[Deletion],
        cause: DeletionCause,
    ) -> Result<BTreeMap<PartitionKey, Counts>> {
        if deletions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let existing: Vec<&Deletion> = deletions.iter().filter(|d| d.expected_version > 0).collect();
        if !existing.is_empty() {
            let sql = format!(
                "DELETE FROM {} a USING UNNEST($1::uuid[], $2::bigint[]) AS u(id, expected)
                 WHERE a.aggregate_id = u.id AND a.version = u.expected",
                schema::physical(&TABLES[AGGREGATES], self.generation)
            );
            let deleted = q(sql)
                .bind(existing.iter().map(|d| d.aggregate_id).collect::<Vec<_>>())
                .bind(existing.iter().map(|d| d.expected_version).collect::<Vec<_>>())
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
            if deleted != existing.len() as u64 {
                return Err(StoreError::Conflict("an aggregate being deleted changed since it was read".into()));
            }
        }
        let ids: Vec<Uuid> = deletions.iter().map(|d| d.aggregate_id).collect();
        let kinds: HashSet<AggregateKind> = deletions.iter().map(|d| d.kind).collect();
        for t in TABLES.iter().skip(1) {
            if kinds.contains(&t.kind.expect("kind")) {
                delete_keys(&mut self.tx, t, self.generation, &ids).await?;
            }
        }
        sqlx::query("DELETE FROM events WHERE aggregate_id = ANY($1)").bind(&ids).execute(&mut *self.tx).await?;
        let origins =
            |rows: Vec<PgRow>| rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i32, _>(1))).collect::<Vec<_>>();
        let parked = origins(
            sqlx::query("DELETE FROM parked WHERE aggregate_id = ANY($1) RETURNING topic, partition_id")
                .bind(&ids)
                .fetch_all(&mut *self.tx)
                .await?,
        );
        let dead = origins(
            sqlx::query("DELETE FROM dead_letters WHERE aggregate_id = ANY($1) RETURNING topic, partition_id")
                .bind(&ids)
                .fetch_all(&mut *self.tx)
                .await?,
        );
        sqlx::query(
            "INSERT INTO tombstones (aggregate_id, aggregate_kind, last_version, cause)
             SELECT u.id, u.kind, u.version, $4 FROM UNNEST($1::uuid[], $2::text[], $3::bigint[]) AS u(id, kind, version)
             ON CONFLICT (aggregate_id) DO UPDATE
               SET last_version = GREATEST(tombstones.last_version, excluded.last_version), deleted_at = now()",
        )
        .bind(&ids)
        .bind(deletions.iter().map(|d| d.kind.as_str()).collect::<Vec<_>>())
        .bind(deletions.iter().map(|d| d.last_version).collect::<Vec<_>>())
        .bind(cause.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(purged_adjustments(&parked, &dead))
    }

    pub async fn add_counts(&mut self, counts: &BTreeMap<PartitionKey, Counts>) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let c: Vec<(&PartitionKey, &Counts)> = counts.iter().collect();
        sqlx::query(
            "INSERT INTO ingest_counts AS c (topic, partition_id, applied, duplicates, ignored_deleted, parked, dead_lettered)
             SELECT * FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])
             ON CONFLICT (topic, partition_id) DO UPDATE SET
               applied = c.applied + excluded.applied,
               duplicates = c.duplicates + excluded.duplicates,
               ignored_deleted = c.ignored_deleted + excluded.ignored_deleted,
               parked = c.parked + excluded.parked,
               dead_lettered = c.dead_lettered + excluded.dead_lettered",
        )
        .bind(c.iter().map(|(k, _)| &*k.topic).collect::<Vec<_>>())
        .bind(c.iter().map(|(k, _)| k.partition).collect::<Vec<_>>())
        .bind(c.iter().map(|(_, v)| v.applied).collect::<Vec<_>>())
        .bind(c.iter().map(|(_, v)| v.duplicates).collect::<Vec<_>>())
        .bind(c.iter().map(|(_, v)| v.ignored_deleted).collect::<Vec<_>>())
        .bind(c.iter().map(|(_, v)| v.parked).collect::<Vec<_>>())
        .bind(c.iter().map(|(_, v)| v.dead_lettered).collect::<Vec<_>>())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn advance_offsets(&mut self, advances: &[OffsetAdvance]) -> Result<()> {
        let rows = sqlx::query(
            "UPDATE consumer_offsets o SET next_offset = u.next, updated_at = now()
             FROM UNNEST($1::text[], $2::int[], $3::bigint[], $4::bigint[]) AS u(topic, part, expected, next)
             WHERE o.topic = u.topic AND o.partition_id = u.part AND o.next_offset = u.expected
             RETURNING o.topic, o.partition_id",
        )
        .bind(advances.iter().map(|a| a.topic.as_str()).collect::<Vec<_>>())
        .bind(advances.iter().map(|a| a.partition).collect::<Vec<_>>())
        .bind(advances.iter().map(|a| a.expected).collect::<Vec<_>>())
        .bind(advances.iter().map(|a| a.next).collect::<Vec<_>>())
        .fetch_all(&mut *self.tx)
        .await?;
        let done: HashSet<(String, i32)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        match advances.iter().find(|a| !done.contains(&(a.topic.clone(), a.partition))) {
            Some(a) => Err(StoreError::Fenced { topic: a.topic.clone(), partition: a.partition, expected: a.expected }),
            None => Ok(()),
        }
    }

    pub async fn events_after(&mut self, seq: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT seq, aggregate_id, aggregate_version, payload FROM events WHERE seq > $1
             ORDER BY aggregate_id, aggregate_version",
        )
        .bind(seq)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.iter().map(stored_event).collect())
    }

    pub async fn replace_in_generation(
        &mut self,
        generation: i32,
        aggregates: &[Aggregate],
        removed: &[Uuid],
    ) -> Result<()> {
        let mut ids: Vec<Uuid> = aggregates.iter().map(|a| a.id).collect();
        ids.extend_from_slice(removed);
        if ids.is_empty() {
            return Ok(());
        }
        let mut rows = RowSet::default();
        for a in aggregates {
            rows.add(a);
        }
        for (i, t) in TABLES.iter().enumerate() {
            delete_keys(&mut self.tx, t, generation, &ids).await?;
            insert(&mut self.tx, t, generation, &rows.tables[i]).await?;
        }
        Ok(())
    }

    pub async fn drop_tombstoned(&mut self, generation: i32) -> Result<()> {
        for t in TABLES {
            let sql = format!(
                "DELETE FROM {} WHERE {} IN (SELECT aggregate_id FROM tombstones)",
                schema::physical(t, generation),
                t.key
            );
            q(sql).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub async fn swap_to(&mut self, generation: i32) -> Result<()> {
        for t in TABLES {
            q(schema::drop_view(t)).execute(&mut *self.tx).await?;
            q(schema::create_view(t, generation)).execute(&mut *self.tx).await?;
        }
        sqlx::query("UPDATE projection_meta SET generation = $1, schema_version = $2, rebuilt_at = now() WHERE id = 1")
            .bind(generation)
            .bind(PROJECTION_SCHEMA_VERSION)
            .execute(&mut *self.tx)
            .await?;
        self.generation = generation;
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

async fn delete_keys(tx: &mut Transaction<'static, Postgres>, t: &Table, generation: i32, ids: &[Uuid]) -> Result<()> {
    let sql = format!("DELETE FROM {} WHERE {} = ANY($1)", schema::physical(t, generation), t.key);
    q(sql).bind(ids).execute(&mut **tx).await?;
    Ok(())
}

async fn insert(tx: &mut Transaction<'static, Postgres>, t: &Table, generation: i32, rows: &[Vec<Val>]) -> Result<()> {
    insert_returning_count(tx, t, generation, rows, false).await.map(|_| ())
}

/// `INSERT … SELECT * FROM UNNEST(…)` with one typed array per column.
async fn insert_returning_count(
    tx: &mut Transaction<'static, Postgres>,
    t: &Table,
    generation: i32,
    rows: &[Vec<Val>],
    skip_existing: bool,
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let cols: Vec<&str> = t.columns.iter().map(|c| c.name).collect();
    let arrays: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ty = match c.ty {
                ColType::Int => "bigint",
                ColType::Text => "text",
                ColType::Date => "date",
                ColType::Uuid => "uuid",
                ColType::Time => "timestamptz",
            };
            format!("${}::{ty}[]", i + 1)
        })
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({}){}",
        schema::physical(t, generation),
        cols.join(", "),
        arrays.join(", "),
        if skip_existing { format!(" ON CONFLICT ({}) DO NOTHING", t.primary_key.join(", ")) } else { String::new() }
    );
    let mut query = q(sql);
    for (i, c) in t.columns.iter().enumerate() {
        let cells = rows.iter().map(|r| &r[i]);
        query = match c.ty {
            ColType::Int => {
                query.bind(cells.map(|v| if let Val::Int(x) = v { Some(*x) } else { None }).collect::<Vec<_>>())
            }
            ColType::Text => {
                query.bind(cells.map(|v| if let Val::Text(x) = v { Some(x.clone()) } else { None }).collect::<Vec<_>>())
            }
            ColType::Date => query.bind(
                cells.map(|v| if let Val::Date(x) = v { Some(*x) } else { None }).collect::<Vec<Option<NaiveDate>>>(),
            ),
            ColType::Uuid => {
                query.bind(cells.map(|v| if let Val::Uuid(x) = v { Some(*x) } else { None }).collect::<Vec<_>>())
            }
            ColType::Time => query.bind(
                cells
                    .map(|v| if let Val::Time(x) = v { Some(*x) } else { None })
                    .collect::<Vec<Option<DateTime<Utc>>>>(),
            ),
        };
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}
