//! The SQLite backend, the embedded default. Bulk writes pass each batch as
//! one JSON array and insert with `json_each`, so, as on PostgreSQL, a batch
//! costs a fixed number of statements. Bytes travel hex-encoded inside the
//! JSON and are decoded with `unhex`.
//!
//! Writers begin with `BEGIN IMMEDIATE`: SQLite has one writer at a time, and
//! taking the write lock up front avoids a read transaction that can't be
//! upgraded later. That lock is also what the rebuild's swap waits for.

mod serve;

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{Value, json};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row as _, Sqlite, Transaction};
use uuid::Uuid;

use super::rows::{RowSet, Val};
use super::schema::{self, AGGREGATES, Dialect, PROJECTION_SCHEMA_VERSION, TABLES, Table};
use super::*;
use crate::projection::{Parked, Plan};

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
}

pub struct SqliteTx {
    pub(super) tx: Transaction<'static, Sqlite>,
    pub(in crate::store) generation: i32,
}

pub(super) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(super) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("instant {s:?}")))
}

pub(super) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(format!("uuid {s:?}")))
}

fn ids_json(ids: &[Uuid]) -> String {
    serde_json::to_string(&ids.iter().map(Uuid::to_string).collect::<Vec<_>>()).expect("json")
}

fn hex_or_null(b: Option<&[u8]>) -> Value {
    b.map_or(Value::Null, |b| Value::String(hex::encode(b)))
}

fn val_json(v: &Val) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Int(i) => json!(i),
        Val::Text(s) => json!(s),
        Val::Date(d) => json!(crate::domain::format_date(*d).as_str()),
        Val::Uuid(u) => json!(u.to_string()),
        Val::Time(t) => json!(ts(t)),
    }
}

/// `INSERT … SELECT json_extract(value, '$[i]') … FROM json_each(?1)`.
fn insert_sql(t: &Table, generation: i32, conflict: &str) -> String {
    let cols: Vec<&str> = t.columns.iter().map(|c| c.name).collect();
    let extracts: Vec<String> = (0..cols.len()).map(|i| format!("json_extract(value, '$[{i}]')")).collect();
    format!(
        "INSERT {conflict} INTO {} ({}) SELECT {} FROM json_each(?1)",
        schema::physical(t, generation),
        cols.join(", "),
        extracts.join(", ")
    )
}

fn rows_json(rows: &[Vec<Val>]) -> String {
    Value::Array(rows.iter().map(|r| Value::Array(r.iter().map(val_json).collect())).collect()).to_string()
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            // Deleted content is overwritten, not left in free pages:
            // deletion is physical (invariant 6).
            .pragma("secure_delete", "on");
        let pool =
            SqlitePoolOptions::new().max_connections(8).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let store = SqliteStore { pool };
        store.ensure_projections().await?;
        Ok(store)
    }

    async fn ensure_projections(&self) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let generation: i32 =
            sqlx::query_scalar("SELECT generation FROM projection_meta WHERE id = 1").fetch_one(&mut *tx).await?;
        if generation == 0 {
            for t in TABLES {
                sqlx::query(AssertSqlSafe(schema::create_table(Dialect::Sqlite, t, 1))).execute(&mut *tx).await?;
                for ix in schema::create_indexes(t, 1) {
                    sqlx::query(AssertSqlSafe(ix)).execute(&mut *tx).await?;
                }
                sqlx::query(AssertSqlSafe(schema::create_view(t, 1))).execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE projection_meta SET generation = 1, schema_version = ?1 WHERE id = 1")
                .bind(PROJECTION_SCHEMA_VERSION)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn begin(&self) -> Result<Tx> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query("SELECT generation, schema_version FROM projection_meta WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let (generation, version): (i32, i32) = (row.get(0), row.get(1));
        if version != PROJECTION_SCHEMA_VERSION {
            return Err(StoreError::SchemaMismatch { found: version, expected: PROJECTION_SCHEMA_VERSION });
        }
        Ok(Tx::Sqlite(SqliteTx { tx, generation }))
    }

    pub async fn begin_exclusive(&self) -> Result<Tx> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let generation: i32 =
            sqlx::query_scalar("SELECT generation FROM projection_meta WHERE id = 1").fetch_one(&mut *tx).await?;
        Ok(Tx::Sqlite(SqliteTx { tx, generation }))
    }

    pub async fn assigned_offsets(&self, partitions: &[(String, i32)]) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut out = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            sqlx::query("INSERT INTO consumer_offsets (topic, partition_id, next_offset) VALUES (?1, ?2, 0) ON CONFLICT DO NOTHING")
                .bind(topic)
                .bind(partition)
                .execute(&mut *tx)
                .await?;
            let next: i64 =
                sqlx::query_scalar("SELECT next_offset FROM consumer_offsets WHERE topic = ?1 AND partition_id = ?2")
                    .bind(topic)
                    .bind(partition)
                    .fetch_one(&mut *tx)
                    .await?;
            out.push(next);
        }
        tx.commit().await?;
        Ok(out)
    }

    pub async fn reset_offsets(&self, topics: &[String]) -> Result<u64> {
        let json = serde_json::to_string(topics).expect("json");
        let r = sqlx::query("DELETE FROM consumer_offsets WHERE topic IN (SELECT value FROM json_each(?1))")
            .bind(json)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    pub async fn status(&self) -> Result<Status> {
        // No FULL OUTER JOIN before SQLite 3.39 is assumed; a union of keys does it.
        let rows = sqlx::query(
            "SELECT k.topic, k.partition_id, o.next_offset,
                    COALESCE(c.applied, 0), COALESCE(c.duplicates, 0), COALESCE(c.ignored_deleted, 0),
                    COALESCE(c.parked, 0), COALESCE(c.dead_lettered, 0)
             FROM (SELECT topic, partition_id FROM consumer_offsets UNION SELECT topic, partition_id FROM ingest_counts) k
             LEFT JOIN consumer_offsets o ON o.topic = k.topic AND o.partition_id = k.partition_id
             LEFT JOIN ingest_counts c ON c.topic = k.topic AND c.partition_id = k.partition_id
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
        let generation = scalar("SELECT generation FROM projection_meta WHERE id = 1").await? as i32;
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
                    replay_attempts, length(payload)
             FROM dead_letters WHERE id > ?1 AND (?2 IS NULL OR reason = ?2) ORDER BY id LIMIT ?3",
        )
        .bind(f.after_id)
        .bind(&f.reason)
        .bind(f.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let opt_uuid = |i: usize| r.get::<Option<String>, _>(i).map(|s| parse_uuid(&s)).transpose();
                Ok(DeadLetterRow {
                    id: r.get(0),
                    topic: r.get(1),
                    partition: r.get(2),
                    offset: r.get(3),
                    reason: r.get(4),
                    detail: r.get(5),
                    event_id: opt_uuid(6)?,
                    aggregate_id: opt_uuid(7)?,
                    dead_at: parse_ts(&r.get::<String, _>(8))?,
                    replay_attempts: r.get(9),
                    bytes: r.get(10),
                })
            })
            .collect()
    }

    pub async fn dead_letter_messages(&self, ids: &[i64]) -> Result<Vec<DeadLetterMessage>> {
        let json = serde_json::to_string(ids).expect("json");
        let rows = sqlx::query(
            "SELECT id, topic, partition_id, kafka_offset, message_key, payload FROM dead_letters
             WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id",
        )
        .bind(json)
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
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let live: i32 =
            sqlx::query_scalar("SELECT generation FROM projection_meta WHERE id = 1").fetch_one(&mut *tx).await?;
        let upto: i64 = sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM events").fetch_one(&mut *tx).await?;
        let total: i64 =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE seq <= ?1").bind(upto).fetch_one(&mut *tx).await?;
        let next = live + 1;
        for t in TABLES {
            sqlx::query(AssertSqlSafe(schema::drop_table(t, next))).execute(&mut *tx).await?;
            sqlx::query(AssertSqlSafe(schema::create_table(Dialect::Sqlite, t, next))).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(RebuildStart { generation: next, upto_seq: upto, total_events: total })
    }

    pub async fn events_by_aggregate(
        &self,
        upto: i64,
        after: Option<(Uuid, i64)>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let (agg, ver) = after.map_or((String::new(), 0), |(a, v)| (a.to_string(), v));
        let rows = sqlx::query(
            "SELECT seq, aggregate_id, aggregate_version, payload FROM events
             WHERE seq <= ?1 AND (aggregate_id, aggregate_version) > (?2, ?3)
             ORDER BY aggregate_id, aggregate_version LIMIT ?4",
        )
        .bind(upto)
        .bind(agg)
        .bind(ver)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_event).collect()
    }

    pub async fn insert_rows(&self, generation: i32, rows: &RowSet) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for (i, t) in TABLES.iter().enumerate() {
            insert(&mut tx, t, generation, &rows.tables[i], "").await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_indexes(&self, generation: i32) -> Result<()> {
        for t in TABLES {
            for ix in schema::create_indexes(t, generation) {
                sqlx::query(AssertSqlSafe(ix)).execute(&self.pool).await?;
            }
        }
        Ok(())
    }

    pub async fn drop_generation(&self, generation: i32) -> Result<()> {
        for t in TABLES {
            sqlx::query(AssertSqlSafe(schema::drop_table(t, generation))).execute(&self.pool).await?;
        }
        Ok(())
    }

    pub async fn closed_cases(
        &self,
        before: NaiveDate,
        after: Option<(NaiveDate, Uuid)>,
        limit: i64,
    ) -> Result<Vec<ClosedCase>> {
        let (after_date, after_id) =
            after.map_or((String::new(), String::new()), |(d, u)| (d.to_string(), u.to_string()));
        let rows = sqlx::query(
            "SELECT id, kind, kle, closed_on FROM (
                 SELECT case_id AS id, 'case' AS kind, kle, closed_on FROM cases WHERE closed_on < ?1
                 UNION ALL
                 SELECT case_id, 'control_case', kle, closed_on FROM control_cases WHERE closed_on < ?1
             ) WHERE (closed_on, id) > (?2, ?3) ORDER BY closed_on, id LIMIT ?4",
        )
        .bind(before.to_string())
        .bind(after_date)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ClosedCase {
                    aggregate_id: parse_uuid(&r.get::<String, _>(0))?,
                    kind: AggregateKind::parse(r.get(1)).ok_or_else(|| StoreError::Corrupt("case kind".into()))?,
                    kle: r.get(2),
                    closed_on: crate::domain::parse_date(&r.get::<String, _>(3))
                        .map_err(|_| StoreError::Corrupt("closed_on".into()))?,
                })
            })
            .collect()
    }

    pub async fn tables_containing(&self, needle: &str) -> Result<Vec<String>> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut hits = Vec::new();
        for table in tables {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)").bind(&table).fetch_all(&self.pool).await?;
            for column in columns {
                let sql = format!(
                    "SELECT EXISTS (SELECT 1 FROM \"{table}\" WHERE instr(CAST(\"{column}\" AS BLOB), CAST(?1 AS BLOB)) > 0)"
                );
                let found: bool = sqlx::query_scalar(AssertSqlSafe(sql)).bind(needle).fetch_one(&self.pool).await?;
                if found {
                    hits.push(format!("{table}.{column}"));
                }
            }
        }
        Ok(hits)
    }

    pub async fn dump_projections(&self) -> Result<BTreeMap<String, Vec<Vec<Option<String>>>>> {
        let mut out = BTreeMap::new();
        for t in TABLES {
            let cols: Vec<String> = t.columns.iter().map(|c| format!("CAST({} AS TEXT)", c.name)).collect();
            let sql = format!("SELECT {} FROM {} ORDER BY {}", cols.join(", "), t.name, t.primary_key.join(", "));
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
            let rendered =
                rows.iter().map(|r| (0..t.columns.len()).map(|i| r.get::<Option<String>, _>(i)).collect()).collect();
            out.insert(t.name.to_string(), rendered);
        }
        Ok(out)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn stored_event(r: &SqliteRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        seq: r.get(0),
        aggregate_id: parse_uuid(&r.get::<String, _>(1))?,
        aggregate_version: r.get(2),
        payload: r.get(3),
    })
}

impl SqliteTx {
    pub async fn load_context(
        &mut self,
        aggregate_ids: &[Uuid],
        event_ids: &[Uuid],
        ranges: &[OffsetRange],
    ) -> Result<Context> {
        let mut ctx = Context::default();
        if !ranges.is_empty() {
            let json =
                Value::Array(ranges.iter().map(|r| json!([r.topic, r.partition, r.lo, r.hi])).collect()).to_string();
            let rows = sqlx::query(
                "SELECT d.topic, d.partition_id, d.kafka_offset, d.fingerprint FROM json_each(?1) AS r
                 JOIN dead_letters d ON d.topic = json_extract(r.value, '$[0]')
                   AND d.partition_id = json_extract(r.value, '$[1]')
                   AND d.kafka_offset BETWEEN json_extract(r.value, '$[2]') AND json_extract(r.value, '$[3]')",
            )
            .bind(json)
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
        let ids = ids_json(aggregate_ids);
        let tombstones: Vec<String> = sqlx::query_scalar(
            "SELECT aggregate_id FROM tombstones WHERE aggregate_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(&ids)
        .fetch_all(&mut *self.tx)
        .await?;
        for t in tombstones {
            ctx.tombstones.insert(parse_uuid(&t)?);
        }
        let parked = sqlx::query(
            "SELECT event_id, aggregate_id, aggregate_version, expected_version, topic, partition_id, kafka_offset,
                    message_key, payload
             FROM parked WHERE aggregate_id IN (SELECT value FROM json_each(?1))
             ORDER BY aggregate_id, aggregate_version LIMIT ?2",
        )
        .bind(&ids)
        .bind(PARKED_LOAD_LIMIT)
        .fetch_all(&mut *self.tx)
        .await?;
        for r in &parked {
            let p = Parked {
                event_id: parse_uuid(&r.get::<String, _>(0))?,
                aggregate_id: parse_uuid(&r.get::<String, _>(1))?,
                aggregate_version: r.get(2),
                expected_version: r.get(3),
                origin: crate::projection::Origin { topic: r.get(4), partition: r.get(5), offset: r.get(6) },
                key: r.get(7),
                payload: r.get(8),
            };
            ctx.parked.entry(p.aggregate_id).or_default().push(p);
        }
        let known: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM events WHERE event_id IN (SELECT value FROM json_each(?1))
             UNION ALL SELECT event_id FROM parked WHERE event_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids_json(event_ids))
        .fetch_all(&mut *self.tx)
        .await?;
        for k in known {
            ctx.known_event_ids.insert(parse_uuid(&k)?);
        }
        Ok(ctx)
    }

    pub async fn load_aggregates(&mut self, ids: &[Uuid]) -> Result<Vec<Aggregate>> {
        self.load_generation_aggregates(self.generation, ids).await
    }

    pub async fn load_generation_aggregates(&mut self, generation: i32, ids: &[Uuid]) -> Result<Vec<Aggregate>> {
        let sql = format!(
            "SELECT aggregate_id, version, subject, authority, source, updated_at, state FROM {}
             WHERE aggregate_id IN (SELECT value FROM json_each(?1))",
            schema::physical(&TABLES[AGGREGATES], generation)
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(ids_json(ids)).fetch_all(&mut *self.tx).await?;
        rows.iter()
            .map(|r| {
                aggregate_from_row(
                    parse_uuid(&r.get::<String, _>(0))?,
                    r.get(1),
                    r.get::<&str, _>(2),
                    r.get::<&str, _>(3),
                    r.get(4),
                    parse_ts(r.get::<&str, _>(5))?,
                    r.get::<&str, _>(6),
                )
            })
            .collect()
    }

    pub async fn linked(&mut self, kind: AggregateKind, column: &str, values: &[Uuid]) -> Result<Vec<Uuid>> {
        let (_, table) = schema::tables_of(kind).next().expect("every kind has a main table");
        let sql = format!(
            "SELECT {} FROM {} WHERE {column} IN (SELECT value FROM json_each(?1))",
            table.key,
            schema::physical(table, self.generation)
        );
        let found: Vec<String> =
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(ids_json(values)).fetch_all(&mut *self.tx).await?;
        found.iter().map(|s| parse_uuid(s)).collect()
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
            let rows: Vec<Value> = plan
                .dead_letters
                .iter()
                .map(|d| {
                    json!([
                        d.origin.topic,
                        d.origin.partition,
                        d.origin.offset,
                        hex_or_null(d.key.as_deref()),
                        hex::encode(&d.payload),
                        d.rejection.reason.as_str(),
                        d.rejection.detail,
                        d.event_id.map(|u| u.to_string()),
                        d.aggregate_id.map(|u| u.to_string()),
                        d.fingerprint,
                    ])
                })
                .collect();
            sqlx::query(
                "INSERT INTO dead_letters (topic, partition_id, kafka_offset, message_key, payload, reason, detail,
                                           event_id, aggregate_id, fingerprint)
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
                        unhex(json_extract(value, '$[3]')), unhex(json_extract(value, '$[4]')),
                        json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'),
                        json_extract(value, '$[8]'), json_extract(value, '$[9]')
                 FROM json_each(?1)",
            )
            .bind(Value::Array(rows).to_string())
            .execute(&mut *self.tx)
            .await?;
        }
        for (id, r) in &plan.dead_letters_failed_again {
            sqlx::query(
                "UPDATE dead_letters SET reason = ?2, detail = ?3, replay_attempts = replay_attempts + 1,
                        last_replay_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
            )
            .bind(id)
            .bind(r.reason.as_str())
            .bind(&r.detail)
            .execute(&mut *self.tx)
            .await?;
        }
        if !plan.dead_letters_resolved.is_empty() {
            sqlx::query("DELETE FROM dead_letters WHERE id IN (SELECT value FROM json_each(?1))")
                .bind(serde_json::to_string(&plan.dead_letters_resolved).expect("json"))
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    async fn write_parked(&mut self, plan: &Plan) -> Result<()> {
        if !plan.unparked.is_empty() {
            sqlx::query("DELETE FROM parked WHERE event_id IN (SELECT value FROM json_each(?1))")
                .bind(ids_json(&plan.unparked))
                .execute(&mut *self.tx)
                .await?;
        }
        if !plan.parked.is_empty() {
            let rows: Vec<Value> = plan
                .parked
                .iter()
                .map(|p| {
                    json!([
                        p.event_id.to_string(),
                        p.aggregate_id.to_string(),
                        p.aggregate_version,
                        p.expected_version,
                        p.origin.topic,
                        p.origin.partition,
                        p.origin.offset,
                        hex_or_null(p.key.as_deref()),
                        hex::encode(&p.payload),
                    ])
                })
                .collect();
            sqlx::query(
                "INSERT INTO parked (event_id, aggregate_id, aggregate_version, expected_version, topic, partition_id,
                                     kafka_offset, message_key, payload)
                 SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
                        json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
                        json_extract(value, '$[6]'), unhex(json_extract(value, '$[7]')), unhex(json_extract(value, '$[8]'))
                 FROM json_each(?1)",
            )
            .bind(Value::Array(rows).to_string())
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    async fn append_events(&mut self, plan: &Plan) -> Result<()> {
        if plan.appended.is_empty() {
            return Ok(());
        }
        let rows: Vec<Value> = plan
            .appended
            .iter()
            .map(|a| {
                let e = &a.header;
                json!([
                    e.id.to_string(),
                    e.aggregate_id.to_string(),
                    e.aggregate_version,
                    e.aggregate_kind().as_str(),
                    e.type_name(),
                    e.subject.urn(),
                    e.authority.as_str(),
                    ts(&e.time),
                    a.origin.topic,
                    a.origin.partition,
                    a.origin.offset,
                    hex::encode(&a.payload),
                ])
            })
            .collect();
        sqlx::query(
            "INSERT INTO events (event_id, aggregate_id, aggregate_version, aggregate_kind, event_type, subject,
                                 authority, occurred_at, topic, partition_id, kafka_offset, payload)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
                    json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'),
                    json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'),
                    json_extract(value, '$[9]'), json_extract(value, '$[10]'), unhex(json_extract(value, '$[11]'))
             FROM json_each(?1) ORDER BY key",
        )
        .bind(Value::Array(rows).to_string())
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
        for w in &plan.writes {
            rows.add(&w.aggregate);
        }
        // `RowSet::add` puts one aggregates row per aggregate, in order.
        let fresh: Vec<Vec<Val>> = plan
            .writes
            .iter()
            .zip(&rows.tables[AGGREGATES])
            .filter(|(w, _)| w.expected_version == 0)
            .map(|(_, r)| r.clone())
            .collect();
        if !fresh.is_empty() {
            let inserted = insert(&mut self.tx, &TABLES[AGGREGATES], self.generation, &fresh, "OR IGNORE").await?;
            if inserted != fresh.len() as u64 {
                return Err(StoreError::Conflict("an aggregate this batch creates already exists".into()));
            }
        }
        let changed: Vec<Value> = plan
            .writes
            .iter()
            .filter(|w| w.expected_version > 0)
            .map(|w| {
                let a = &w.aggregate;
                json!([
                    a.id.to_string(),
                    w.expected_version,
                    a.version,
                    a.authority.as_str(),
                    a.source,
                    ts(&a.updated_at),
                    a.state.to_json()
                ])
            })
            .collect();
        if !changed.is_empty() {
            let n = changed.len() as u64;
            let sql = format!(
                "UPDATE {aggregates} AS a SET version = json_extract(u.value, '$[2]'),
                        authority = json_extract(u.value, '$[3]'), source = json_extract(u.value, '$[4]'),
                        updated_at = json_extract(u.value, '$[5]'), state = json_extract(u.value, '$[6]')
                 FROM json_each(?1) AS u
                 WHERE a.aggregate_id = json_extract(u.value, '$[0]') AND a.version = json_extract(u.value, '$[1]')"
            );
            let updated = sqlx::query(AssertSqlSafe(sql))
                .bind(Value::Array(changed).to_string())
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
            if updated != n {
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
                insert(&mut self.tx, t, self.generation, &rows.tables[i], "").await?;
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
        let existing: Vec<Value> = deletions
            .iter()
            .filter(|d| d.expected_version > 0)
            .map(|d| json!([d.aggregate_id.to_string(), d.expected_version]))
            .collect();
        if !existing.is_empty() {
            let n = existing.len() as u64;
            let sql = format!(
                "DELETE FROM {} WHERE EXISTS (SELECT 1 FROM json_each(?1) AS u
                   WHERE aggregate_id = json_extract(u.value, '$[0]') AND version = json_extract(u.value, '$[1]'))",
                schema::physical(&TABLES[AGGREGATES], self.generation)
            );
            let deleted = sqlx::query(AssertSqlSafe(sql))
                .bind(Value::Array(existing).to_string())
                .execute(&mut *self.tx)
                .await?
                .rows_affected();
            if deleted != n {
                return Err(StoreError::Conflict("an aggregate being deleted changed since it was read".into()));
            }
        }
        let ids: Vec<Uuid> = deletions.iter().map(|d| d.aggregate_id).collect();
        let ids_j = ids_json(&ids);
        let kinds: HashSet<AggregateKind> = deletions.iter().map(|d| d.kind).collect();
        for t in TABLES.iter().skip(1) {
            if kinds.contains(&t.kind.expect("kind")) {
                delete_keys(&mut self.tx, t, self.generation, &ids).await?;
            }
        }
        sqlx::query("DELETE FROM events WHERE aggregate_id IN (SELECT value FROM json_each(?1))")
            .bind(&ids_j)
            .execute(&mut *self.tx)
            .await?;
        let origins =
            |rows: Vec<SqliteRow>| rows.iter().map(|r| (r.get::<String, _>(0), r.get::<i32, _>(1))).collect::<Vec<_>>();
        let parked = origins(
            sqlx::query("DELETE FROM parked WHERE aggregate_id IN (SELECT value FROM json_each(?1)) RETURNING topic, partition_id")
                .bind(&ids_j)
                .fetch_all(&mut *self.tx)
                .await?,
        );
        let dead = origins(
            sqlx::query(
                "DELETE FROM dead_letters WHERE aggregate_id IN (SELECT value FROM json_each(?1)) RETURNING topic, partition_id",
            )
            .bind(&ids_j)
            .fetch_all(&mut *self.tx)
            .await?,
        );
        let stones: Vec<Value> =
            deletions.iter().map(|d| json!([d.aggregate_id.to_string(), d.kind.as_str(), d.last_version])).collect();
        sqlx::query(
            "INSERT INTO tombstones (aggregate_id, aggregate_kind, last_version, cause)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), ?2
             FROM json_each(?1) WHERE true
             ON CONFLICT (aggregate_id) DO UPDATE
               SET last_version = max(last_version, excluded.last_version),
                   deleted_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        )
        .bind(Value::Array(stones).to_string())
        .bind(cause.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(purged_adjustments(&parked, &dead))
    }

    pub async fn add_counts(&mut self, counts: &BTreeMap<PartitionKey, Counts>) -> Result<()> {
        for (k, c) in counts {
            sqlx::query(
                "INSERT INTO ingest_counts (topic, partition_id, applied, duplicates, ignored_deleted, parked, dead_lettered)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (topic, partition_id) DO UPDATE SET
                   applied = applied + excluded.applied,
                   duplicates = duplicates + excluded.duplicates,
                   ignored_deleted = ignored_deleted + excluded.ignored_deleted,
                   parked = parked + excluded.parked,
                   dead_lettered = dead_lettered + excluded.dead_lettered",
            )
            .bind(&k.topic)
            .bind(k.partition)
            .bind(c.applied)
            .bind(c.duplicates)
            .bind(c.ignored_deleted)
            .bind(c.parked)
            .bind(c.dead_lettered)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    pub async fn advance_offsets(&mut self, advances: &[OffsetAdvance]) -> Result<()> {
        for a in advances {
            let r = sqlx::query(
                "UPDATE consumer_offsets SET next_offset = ?3, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                 WHERE topic = ?1 AND partition_id = ?2 AND next_offset = ?4",
            )
            .bind(&a.topic)
            .bind(a.partition)
            .bind(a.next)
            .bind(a.expected)
            .execute(&mut *self.tx)
            .await?;
            if r.rows_affected() != 1 {
                return Err(StoreError::Fenced {
                    topic: a.topic.clone(),
                    partition: a.partition,
                    expected: a.expected,
                });
            }
        }
        Ok(())
    }

    pub async fn events_after(&mut self, seq: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT seq, aggregate_id, aggregate_version, payload FROM events WHERE seq > ?1
             ORDER BY aggregate_id, aggregate_version",
        )
        .bind(seq)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(stored_event).collect()
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
            insert(&mut self.tx, t, generation, &rows.tables[i], "").await?;
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
            sqlx::query(AssertSqlSafe(sql)).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub async fn swap_to(&mut self, generation: i32) -> Result<()> {
        for t in TABLES {
            sqlx::query(AssertSqlSafe(schema::drop_view(t))).execute(&mut *self.tx).await?;
            sqlx::query(AssertSqlSafe(schema::create_view(t, generation))).execute(&mut *self.tx).await?;
        }
        sqlx::query(
            "UPDATE projection_meta SET generation = ?1, schema_version = ?2,
                    rebuilt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = 1",
        )
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

async fn delete_keys(tx: &mut Transaction<'static, Sqlite>, t: &Table, generation: i32, ids: &[Uuid]) -> Result<()> {
    let sql =
        format!("DELETE FROM {} WHERE {} IN (SELECT value FROM json_each(?1))", schema::physical(t, generation), t.key);
    sqlx::query(AssertSqlSafe(sql)).bind(ids_json(ids)).execute(&mut **tx).await?;
    Ok(())
}

async fn insert(
    tx: &mut Transaction<'static, Sqlite>,
    t: &Table,
    generation: i32,
    rows: &[Vec<Val>],
    conflict: &str,
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let r = sqlx::query(AssertSqlSafe(insert_sql(t, generation, conflict)))
        .bind(rows_json(rows))
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected())
}
