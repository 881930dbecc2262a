//! SQLite, serving path: agreements and the audit log.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row as _, Sqlite, Transaction};

use super::super::*;
use super::{Lite, parse_ts, ts};
use crate::agreements::{Agreement, Status};
use crate::audit::{Record, Recorded};
use crate::domain::{DataArea, parse_date};
use crate::store::engine::EngineTx;

const AGREEMENT_COLUMNS: &str = "agreement_id, authority, data_area, purpose_id, legal_basis, klik_task, status, \
     valid_from, valid_to, signed_by, signed_at, revoked_at, registered_by";

fn agreement(r: &SqliteRow) -> Result<Agreement> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("agreement: {what}"));
    let date = |i: usize| parse_date(r.get::<&str, _>(i)).map_err(|_| corrupt("date"));
    let instant = |i: usize| r.get::<Option<String>, _>(i).map(|s| parse_ts(&s)).transpose();
    Ok(Agreement {
        id: r.get(0),
        authority: Cvr::parse(r.get(1)).map_err(|_| corrupt("authority"))?,
        area: DataArea::parse(r.get(2)).ok_or_else(|| corrupt("data area"))?,
        purpose_id: r.get::<i64, _>(3) as u32,
        legal_basis: r.get(4),
        klik_task: r.get(5),
        status: Status::parse(r.get(6)).ok_or_else(|| corrupt("status"))?,
        valid_from: date(7)?,
        valid_to: date(8)?,
        signed_by: r.get(9),
        signed_at: instant(10)?,
        revoked_at: instant(11)?,
        registered_by: r.get(12),
    })
}

const RECORD_COLUMNS: &str = "seq, recorded_at, transaction_id, request_id, kind, user_id, user_name, authority, \
     org_unit, it_system, roles_used, data_area, purpose_id, agreement_id, citizen, search_criteria, decision, \
     reason, rows_returned, alarms, prev_hash, hash";

fn record(r: &SqliteRow) -> Result<Record> {
    let list = |i: usize| -> Result<Vec<String>> {
        serde_json::from_str(r.get::<&str, _>(i)).map_err(|_| StoreError::Corrupt("audit list column".into()))
    };
    Ok(Record {
        seq: r.get(0),
        recorded_at: parse_ts(r.get::<&str, _>(1))?,
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
            purpose_id: r.get::<Option<i64>, _>(12).map(|p| p as u32),
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

async fn append(
    tx: &mut Transaction<'static, Sqlite>,
    entries: Vec<Recorded>,
    at: DateTime<Utc>,
) -> Result<Vec<Record>> {
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&mut **tx).await?;
    let (seq, hash): (i64, String) = (head.get(0), head.get(1));
    let records = crate::audit::chain((seq, &hash), at, entries);
    let Some(last) = records.last() else { return Ok(records) };
    let rows: Vec<Value> = records
        .iter()
        .map(|r| {
            let e = &r.entry;
            json!([
                r.seq,
                ts(&r.recorded_at),
                e.transaction_id,
                e.request_id,
                e.kind,
                e.user_id,
                e.user_name,
                e.authority,
                e.org_unit,
                e.it_system,
                serde_json::to_string(&e.roles_used).expect("json"),
                e.data_area,
                e.purpose_id,
                e.agreement_id,
                e.citizen,
                e.search_criteria,
                e.decision,
                e.reason,
                e.rows_returned,
                serde_json::to_string(&e.alarms).expect("json"),
                r.prev_hash,
                r.hash,
            ])
        })
        .collect();
    let extracts: Vec<String> = (0..22).map(|i| format!("json_extract(value, '$[{i}]')")).collect();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO audit_log ({RECORD_COLUMNS}) SELECT {} FROM json_each(?1) ORDER BY key",
        extracts.join(", ")
    )))
    .bind(Value::Array(rows).to_string())
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")
        .bind(last.seq)
        .bind(&last.hash)
        .execute(&mut **tx)
        .await?;
    Ok(records)
}

impl Lite {
    pub async fn agreements_of(&self, authority: &str) -> Result<Vec<Agreement>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {AGREEMENT_COLUMNS} FROM agreements WHERE authority = ?1 ORDER BY agreement_id"
        )))
        .bind(authority)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(agreement).collect()
    }

    pub async fn agreement(&self, authority: &str, id: &str) -> Result<Option<Agreement>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {AGREEMENT_COLUMNS} FROM agreements WHERE authority = ?1 AND agreement_id = ?2"
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
             WHERE (?1 IS NULL OR authority = ?1) AND (authority, agreement_id) > (?2, ?3)
             ORDER BY authority, agreement_id LIMIT ?4"
        )))
        .bind(authority)
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(agreement).collect()
    }

    pub async fn append_audit(&self, entries: Vec<Recorded>, at: DateTime<Utc>) -> Result<Vec<Record>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let records = append(&mut tx, entries, at).await?;
        tx.commit().await?;
        Ok(records)
    }

    pub async fn audit_records(&self, f: &AuditFilter, after_seq: i64, limit: i64) -> Result<Vec<Record>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RECORD_COLUMNS} FROM audit_log
             WHERE seq > ?1
               AND (?2 IS NULL OR citizen = ?2) AND (?3 IS NULL OR user_id = ?3)
               AND (?4 IS NULL OR data_area = ?4) AND (?5 IS NULL OR purpose_id = ?5)
               AND (?6 IS NULL OR agreement_id = ?6) AND (?7 IS NULL OR decision = ?7)
               AND (?8 IS NULL OR recorded_at >= ?8) AND (?9 IS NULL OR recorded_at < ?9)
             AND (?11 IS NULL OR authority = ?11)
             ORDER BY seq LIMIT ?10"
        )))
        .bind(after_seq)
        .bind(&f.citizen)
        .bind(&f.user_id)
        .bind(&f.data_area)
        .bind(f.purpose_id.map(i64::from))
        .bind(&f.agreement_id)
        .bind(&f.decision)
        .bind(f.from.as_ref().map(ts))
        .bind(f.to.as_ref().map(ts))
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

impl EngineTx<Lite> {
    pub async fn append_audit(&mut self, entries: Vec<Recorded>, at: DateTime<Utc>) -> Result<Vec<Record>> {
        append(&mut self.tx, entries, at).await
    }

    pub async fn insert_agreement(&mut self, a: &Agreement) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO agreements ({AGREEMENT_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        )))
        .bind(&a.id)
        .bind(a.authority.as_str())
        .bind(a.area.as_str())
        .bind(i64::from(a.purpose_id))
        .bind(&a.legal_basis)
        .bind(&a.klik_task)
        .bind(a.status.as_str())
        .bind(a.valid_from.to_string())
        .bind(a.valid_to.to_string())
        .bind(&a.signed_by)
        .bind(a.signed_at.as_ref().map(ts))
        .bind(a.revoked_at.as_ref().map(ts))
        .bind(&a.registered_by)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn update_agreement(&mut self, a: &Agreement, expected: Status) -> Result<()> {
        let n = sqlx::query(
            "UPDATE agreements SET status = ?2, signed_by = ?3, signed_at = ?4, revoked_at = ?5
             WHERE agreement_id = ?1 AND status = ?6 AND authority = ?7",
        )
        .bind(&a.id)
        .bind(a.status.as_str())
        .bind(&a.signed_by)
        .bind(a.signed_at.as_ref().map(ts))
        .bind(a.revoked_at.as_ref().map(ts))
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
