//! PostgreSQL, serving path: agreements and the audit log.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Postgres, Row as _, Transaction};

use super::super::*;
use super::Pg;
use crate::agreements::{Agreement, Status};
use crate::audit::{Record, Recorded};
use crate::domain::DataArea;
use crate::store::engine::EngineTx;

fn agreement(r: &PgRow) -> Result<Agreement> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("agreement: {what}"));
    Ok(Agreement {
        id: r.get(0),
        authority: Cvr::parse(r.get(1)).map_err(|_| corrupt("authority"))?,
        area: DataArea::parse(r.get(2)).ok_or_else(|| corrupt("data area"))?,
        purpose_id: r.get::<i32, _>(3) as u32,
        legal_basis: r.get(4),
        klik_task: r.get(5),
        status: Status::parse(r.get(6)).ok_or_else(|| corrupt("status"))?,
        valid_from: r.get(7),
        valid_to: r.get(8),
        signed_by: r.get(9),
        signed_at: r.get(10),
        revoked_at: r.get(11),
        registered_by: r.get(12),
    })
}

const AGREEMENT_COLUMNS: &str = "agreement_id, authority, data_area, purpose_id, legal_basis, klik_task, status, \
     valid_from, valid_to, signed_by, signed_at, revoked_at, registered_by";

fn record(r: &PgRow) -> Result<Record> {
    let list = |i: usize| -> Result<Vec<String>> {
        serde_json::from_str(r.get::<&str, _>(i)).map_err(|_| StoreError::Corrupt("audit list column".into()))
    };
    Ok(Record {
        seq: r.get(0),
        recorded_at: r.get(1),
        entry: Recorded {
            transaction_id: r.get(2),
            request_id: r.get(3),
            kind: r.get(4),
            user_id: r.get(5),
            user_name: r.get(6),
            authority: r.get(7),
            org_unit: r.get(8),
            it_system: r.get(9),
            roles_used: list(10)?,
            data_area: r.get(11),
            purpose_id: r.get::<Option<i32>, _>(12).map(|p| p as u32),
            agreement_id: r.get(13),
            citizen: r.get(14),
            search_criteria: r.get(15),
            decision: r.get(16),
            reason: r.get(17),
            rows_returned: r.get(18),
            alarms: list(19)?,
        },
        prev_hash: r.get(20),
        hash: r.get(21),
    })
}

const RECORD_COLUMNS: &str = "seq, recorded_at, transaction_id, request_id, kind, user_id, user_name, authority, \
     org_unit, it_system, roles_used, data_area, purpose_id, agreement_id, citizen, search_criteria, decision, \
     reason, rows_returned, alarms, prev_hash, hash";

/// Inserts chained `records` and moves the head from `from` to their last,
/// in one statement: the head moves only if it still is `from`, and the
/// records are inserted only if it moved. Returns whether it did (false: an
/// append by another process came first; chain again after the new head).
/// One round trip, so an audited lookup pays for one statement, not five.
async fn insert_chained<'e>(ex: impl sqlx::PgExecutor<'e>, from: (i64, &str), records: &[Record]) -> Result<bool> {
    let Some(last) = records.last() else { return Ok(true) };
    let json = |v: &Vec<String>| serde_json::to_string(v).expect("json");
    let entries: Vec<&Recorded> = records.iter().map(|r| &r.entry).collect();
    let inserted = sqlx::query(AssertSqlSafe(format!(
        "WITH moved AS (
             UPDATE audit_head SET seq = $23, hash = $24 WHERE id = 1 AND seq = $25 AND hash = $26 RETURNING 1)
         INSERT INTO audit_log ({RECORD_COLUMNS})
         SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[],
                              $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int[],
                              $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::int[], $20::text[],
                              $21::text[], $22::text[])
         WHERE EXISTS (SELECT 1 FROM moved)"
    )))
    .bind(records.iter().map(|r| r.seq).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.transaction_id.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.request_id.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.user_id.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.user_name.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.authority.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.org_unit.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.it_system.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| json(&e.roles_used)).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.data_area.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.purpose_id.map(|p| p as i32)).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.agreement_id.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.citizen.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.search_criteria.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.decision.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.rows_returned).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| json(&e.alarms)).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.prev_hash.as_str()).collect::<Vec<_>>())
    .bind(records.iter().map(|r| r.hash.as_str()).collect::<Vec<_>>())
    .bind(last.seq)
    .bind(&last.hash)
    .bind(from.0)
    .bind(from.1)
    .execute(ex)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

/// Appends inside a transaction (an agreement change and its record): the
/// head is locked until the transaction ends, so the append can't lose.
async fn append(
    tx: &mut Transaction<'static, Postgres>,
    entries: Vec<Recorded>,
    at: DateTime<Utc>,
) -> Result<Vec<Record>> {
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE").fetch_one(&mut **tx).await?;
    let (seq, hash): (i64, String) = (head.get(0), head.get(1));
    let records = crate::audit::chain((seq, &hash), at, entries);
    if !insert_chained(&mut **tx, (seq, &hash), &records).await? {
        return Err(StoreError::Corrupt("the audit head moved while locked".into()));
    }
    Ok(records)
}

/// Attempts at appending before giving up when other processes keep
/// appending first.
const APPEND_ATTEMPTS: usize = 20;

impl Pg {
    pub async fn agreements_of(&self, authority: &str) -> Result<Vec<Agreement>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {AGREEMENT_COLUMNS} FROM agreements WHERE authority = $1 ORDER BY agreement_id"
        )))
        .bind(authority)
        .fetch_all(&self.lookups)
        .await?;
        rows.iter().map(agreement).collect()
    }

    pub async fn agreement(&self, authority: &str, id: &str) -> Result<Option<Agreement>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {AGREEMENT_COLUMNS} FROM agreements WHERE authority = $1 AND agreement_id = $2"
        )))
        .bind(authority)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(agreement).transpose()
    }

    pub async fn list_agreements(
        &self,
        authority: Option<&str>,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<Agreement>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {AGREEMENT_COLUMNS} FROM agreements
             WHERE ($1::text IS NULL OR authority = $1) AND (authority, agreement_id) > ($2, $3)
             ORDER BY authority, agreement_id LIMIT $4"
        )))
        .bind(authority)
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(agreement).collect()
    }

    /// Appends optimistically: chains after the head this process last saw
    /// and lets the statement check it; only when another process appended
    /// in between is the head read again.
    pub async fn append_audit(&self, entries: Vec<Recorded>, at: DateTime<Utc>) -> Result<Vec<Record>> {
        let mut entries = entries;
        for _ in 0..APPEND_ATTEMPTS {
            let cached = self.audit_head.lock().expect("audit head").clone();
            let (seq, hash) = match cached {
                Some(head) => head,
                None => self.audit_head().await?,
            };
            let records = crate::audit::chain((seq, &hash), at, entries);
            let moved = insert_chained(&self.lookups, (seq, &hash), &records).await;
            let mut head = self.audit_head.lock().expect("audit head");
            match moved {
                Ok(true) => {
                    *head = records.last().map(|r| (r.seq, r.hash.clone())).or(Some((seq, hash)));
                    return Ok(records);
                }
                Ok(false) => *head = None,
                Err(e) => {
                    *head = None;
                    return Err(e);
                }
            }
            entries = records.into_iter().map(|r| r.entry).collect();
        }
        Err(StoreError::Corrupt(format!("the audit head kept moving; gave up after {APPEND_ATTEMPTS} attempts")))
    }

    pub async fn audit_records(&self, f: &AuditFilter, after_seq: i64, limit: i64) -> Result<Vec<Record>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RECORD_COLUMNS} FROM audit_log
             WHERE seq > $1
               AND ($2::text IS NULL OR citizen = $2) AND ($3::text IS NULL OR user_id = $3)
               AND ($4::text IS NULL OR data_area = $4) AND ($5::int IS NULL OR purpose_id = $5)
               AND ($6::text IS NULL OR agreement_id = $6) AND ($7::text IS NULL OR decision = $7)
               AND ($8::timestamptz IS NULL OR recorded_at >= $8) AND ($9::timestamptz IS NULL OR recorded_at < $9)
             AND ($11::text IS NULL OR authority = $11)
             ORDER BY seq LIMIT $10"
        )))
        .bind(after_seq)
        .bind(&f.citizen)
        .bind(&f.user_id)
        .bind(&f.data_area)
        .bind(f.purpose_id.map(|p| p as i32))
        .bind(&f.agreement_id)
        .bind(&f.decision)
        .bind(f.from)
        .bind(f.to)
        .bind(limit)
        .bind(&f.authority)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    pub async fn audit_head(&self) -> Result<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
        Ok((row.get(0), row.get(1)))
    }
}

impl EngineTx<Pg> {
    pub async fn append_audit(&mut self, entries: Vec<Recorded>, at: DateTime<Utc>) -> Result<Vec<Record>> {
        append(&mut self.tx, entries, at).await
    }

    pub async fn insert_agreement(&mut self, a: &Agreement) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO agreements ({AGREEMENT_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        )))
        .bind(&a.id)
        .bind(a.authority.as_str())
        .bind(a.area.as_str())
        .bind(a.purpose_id as i32)
        .bind(&a.legal_basis)
        .bind(&a.klik_task)
        .bind(a.status.as_str())
        .bind(a.valid_from)
        .bind(a.valid_to)
        .bind(&a.signed_by)
        .bind(a.signed_at)
        .bind(a.revoked_at)
        .bind(&a.registered_by)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Writes a changed agreement if its status is still `expected`.
    pub async fn update_agreement(&mut self, a: &Agreement, expected: Status) -> Result<()> {
        let n = sqlx::query(
            "UPDATE agreements SET status = $2, signed_by = $3, signed_at = $4, revoked_at = $5
             WHERE agreement_id = $1 AND status = $6 AND authority = $7",
        )
        .bind(&a.id)
        .bind(a.status.as_str())
        .bind(&a.signed_by)
        .bind(a.signed_at)
        .bind(a.revoked_at)
        .bind(expected.as_str())
        .bind(a.authority.as_str())
        .execute(&mut *self.tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::Conflict("the agreement changed meanwhile".into()));
        }
        Ok(())
    }
}
