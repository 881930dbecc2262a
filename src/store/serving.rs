//! The serving path's durable state, once for both backends: agreements,
//! the audit log and its head, and the log's checkpoints and Merkle tiles.
//!
//! The audit log is appended optimistically: a writer chains its records
//! after the head it last saw and moves the head with a compare-and-set
//! (`Backend::audit_advance`, a guarded function on PostgreSQL so the
//! service's database role can move the head forward and nothing else);
//! only when another writer came first is the head read again. The move and
//! the insert share a transaction, so the head and the records agree.

use chrono::{DateTime, Utc};

use super::backend::{Backend, Sql};
use super::engine::{Engine, EngineTx, append_rows, fetch_rows};
use super::rows::{Row, Val};
use super::schema::durable;
use super::types::{Day, Instant};
use super::*;
use crate::agreements::{Agreement, Status as AgreementStatus};
use crate::audit::checkpoint::{AuditKey, SignedHead};
use crate::audit::merkle::{Completed, Hash};
use crate::audit::{Record, Recorded};
use crate::domain::DataArea;

/// Attempts at appending before giving up when other writers keep
/// appending first.
const APPEND_ATTEMPTS: usize = 20;

#[derive(sqlx::FromRow)]
struct AgreementRow {
    agreement_id: String,
    authority: String,
    data_area: String,
    purpose_id: i32,
    legal_basis: String,
    klik_task: Option<String>,
    status: String,
    valid_from: Day,
    valid_to: Day,
    signed_by: Option<String>,
    signed_at: Option<Instant>,
    revoked_at: Option<Instant>,
    registered_by: Option<String>,
}

impl AgreementRow {
    fn decode(self) -> Result<Agreement> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("agreement: {what}"));
        Ok(Agreement {
            id: self.agreement_id,
            authority: Cvr::parse(&self.authority).map_err(|_| corrupt("authority"))?,
            area: DataArea::parse(&self.data_area).ok_or_else(|| corrupt("data area"))?,
            purpose_id: u32::try_from(self.purpose_id).map_err(|_| corrupt("purpose"))?,
            legal_basis: self.legal_basis,
            klik_task: self.klik_task,
            status: AgreementStatus::parse(&self.status).ok_or_else(|| corrupt("status"))?,
            valid_from: self.valid_from.0,
            valid_to: self.valid_to.0,
            signed_by: self.signed_by,
            signed_at: self.signed_at.map(|t| t.0),
            revoked_at: self.revoked_at.map(|t| t.0),
            registered_by: self.registered_by,
        })
    }
}

fn agreement_row(a: &Agreement) -> Row<'_> {
    vec![
        Val::str(&a.id),
        Val::str(a.authority.as_str()),
        Val::str(a.area.as_str()),
        Val::Int(i64::from(a.purpose_id)),
        Val::str(&a.legal_basis),
        a.klik_task.as_deref().map_or(Val::Null, Val::str),
        Val::str(a.status.as_str()),
        Val::Date(a.valid_from),
        Val::Date(a.valid_to),
        a.signed_by.as_deref().map_or(Val::Null, Val::str),
        a.signed_at.map_or(Val::Null, Val::Time),
        a.revoked_at.map_or(Val::Null, Val::Time),
        a.registered_by.as_deref().map_or(Val::Null, Val::str),
    ]
}

#[derive(sqlx::FromRow)]
struct RecordRow {
    seq: i64,
    recorded_at: Instant,
    transaction_id: String,
    request_id: String,
    kind: String,
    user_id: String,
    user_name: String,
    authority: String,
    org_unit: String,
    it_system: String,
    roles_used: String,
    data_area: String,
    purpose_id: Option<i32>,
    agreement_id: String,
    citizen: String,
    search_criteria: String,
    decision: String,
    reason: String,
    rows_returned: i32,
    alarms: String,
    prev_hash: String,
    hash: String,
    mac: String,
}

impl RecordRow {
    fn decode(self) -> Result<Record> {
        let list = |s: &str| -> Result<Vec<String>> {
            serde_json::from_str(s).map_err(|_| StoreError::Corrupt("audit list column".into()))
        };
        Ok(Record {
            seq: self.seq,
            recorded_at: self.recorded_at.0,
            entry: Recorded {
                transaction_id: self.transaction_id,
                request_id: self.request_id,
                kind: self.kind,
                user_id: self.user_id,
                user_name: self.user_name,
                authority: self.authority,
                org_unit: self.org_unit,
                it_system: self.it_system,
                roles_used: list(&self.roles_used)?,
                data_area: self.data_area,
                purpose_id: self.purpose_id.and_then(|p| u32::try_from(p).ok()),
                agreement_id: self.agreement_id,
                citizen: self.citizen,
                search_criteria: self.search_criteria,
                decision: self.decision,
                reason: self.reason,
                rows_returned: self.rows_returned,
                alarms: list(&self.alarms)?,
            },
            prev_hash: self.prev_hash,
            hash: self.hash,
            mac: self.mac,
        })
    }
}

fn record_row(r: &Record) -> Row<'_> {
    let e = &r.entry;
    let json = |v: &Vec<String>| serde_json::to_string(v).expect("lists serialise");
    vec![
        Val::Int(r.seq),
        Val::Time(r.recorded_at),
        Val::str(&e.transaction_id),
        Val::str(&e.request_id),
        Val::str(&e.kind),
        Val::str(&e.user_id),
        Val::str(&e.user_name),
        Val::str(&e.authority),
        Val::str(&e.org_unit),
        Val::str(&e.it_system),
        Val::from(json(&e.roles_used)),
        Val::str(&e.data_area),
        e.purpose_id.map_or(Val::Null, |p| Val::Int(i64::from(p))),
        Val::str(&e.agreement_id),
        Val::str(&e.citizen),
        Val::str(&e.search_criteria),
        Val::str(&e.decision),
        Val::str(&e.reason),
        Val::Int(i64::from(e.rows_returned)),
        Val::from(json(&e.alarms)),
        Val::str(&r.prev_hash),
        Val::str(&r.hash),
        Val::str(&r.mac),
    ]
}

#[derive(sqlx::FromRow)]
struct HeadRow {
    seq: i64,
    hash: String,
}

#[derive(sqlx::FromRow)]
struct MovedRow {
    #[allow(dead_code)]
    n: i64,
}

#[derive(sqlx::FromRow)]
struct CheckpointRow {
    head: String,
    frontier: String,
}

#[derive(sqlx::FromRow)]
struct TileRow {
    idx: i64,
    hash: String,
}

/// A checkpoint as the store keeps it: the signed head, and the frontier
/// the next checkpoint extends (the service's own working state — a
/// verifier never trusts it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub signed: SignedHead,
    pub frontier: Vec<Hash>,
}

impl CheckpointRow {
    fn decode(self) -> Result<StoredCheckpoint> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("audit checkpoint: {what}"));
        let signed = SignedHead::decode(&self.head).map_err(|e| corrupt(&e.to_string()))?;
        let frontier = if self.frontier.is_empty() {
            Vec::new()
        } else {
            self.frontier
                .split(',')
                .map(|h| crate::audit::checkpoint::hash_hex(h).ok_or_else(|| corrupt("frontier")))
                .collect::<Result<_>>()?
        };
        Ok(StoredCheckpoint { signed, frontier })
    }
}

/// The WHERE clause of an audit filter: only the conditions it names.
fn audit_where<B: Backend>(q: &mut Sql<B>, f: &AuditFilter) -> String {
    let mut cond = Vec::new();
    let mut eq = |q: &mut Sql<B>, col: &str, v: Option<&str>| {
        if let Some(v) = v {
            let p = q.arg(Val::from(v));
            cond.push(format!("{col} = {p}"));
        }
    };
    eq(q, "authority", f.authority.as_deref());
    eq(q, "citizen", f.citizen.as_deref());
    eq(q, "user_id", f.user_id.as_deref());
    eq(q, "data_area", f.data_area.as_deref());
    eq(q, "agreement_id", f.agreement_id.as_deref());
    eq(q, "decision", f.decision.as_deref());
    if let Some(kinds) = &f.kinds {
        let list = q.list(super::schema::ColType::Text, kinds.iter().map(|k| Val::str(k)));
        cond.push(B::in_list("kind", &list));
    }
    if let Some(p) = f.purpose_id {
        let p = q.arg(Val::Int(i64::from(p)));
        cond.push(format!("purpose_id = {p}"));
    }
    if let Some(t) = f.from {
        let p = q.arg(Val::Time(t));
        cond.push(format!("recorded_at >= {p}"));
    }
    if let Some(t) = f.to {
        let p = q.arg(Val::Time(t));
        cond.push(format!("recorded_at < {p}"));
    }
    if cond.is_empty() { "true".to_string() } else { cond.join(" AND ") }
}

impl<B: Backend> Engine<B> {
    pub async fn agreements_of(&self, authority: &str) -> Result<Vec<Agreement>> {
        let mut q = Sql::<B>::new();
        let a = q.arg(Val::str(authority));
        let cols = durable::names(durable::AGREEMENTS);
        let q = q.text(format!("SELECT {cols} FROM agreements WHERE authority = {a} ORDER BY agreement_id"));
        let rows: Vec<AgreementRow> = fetch_rows(self.b.lookups(), q).await?;
        rows.into_iter().map(AgreementRow::decode).collect()
    }

    pub async fn agreement(&self, authority: &str, id: &str) -> Result<Option<Agreement>> {
        let mut q = Sql::<B>::new();
        let (a, i) = (q.arg(Val::str(authority)), q.arg(Val::str(id)));
        let cols = durable::names(durable::AGREEMENTS);
        let q = q.text(format!("SELECT {cols} FROM agreements WHERE authority = {a} AND agreement_id = {i}"));
        let rows: Vec<AgreementRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter().next().map(AgreementRow::decode).transpose()
    }

    pub async fn list_agreements(
        &self,
        authority: Option<&str>,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<Agreement>> {
        let mut q = Sql::<B>::new();
        let scope = match authority {
            Some(a) => format!("authority = {} AND ", q.arg(Val::str(a))),
            None => String::new(),
        };
        let (after_a, after_i, limit) = (q.arg(Val::str(after.0)), q.arg(Val::str(after.1)), q.arg(limit));
        let cols = durable::names(durable::AGREEMENTS);
        let q = q.text(format!(
            "SELECT {cols} FROM agreements
             WHERE {scope}(authority > {after_a} OR (authority = {after_a} AND agreement_id > {after_i}))
             ORDER BY authority, agreement_id LIMIT {limit}"
        ));
        let rows: Vec<AgreementRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter().map(AgreementRow::decode).collect()
    }

    /// Appends `entries` after the head this process last saw; reads the
    /// head again only when another writer came first. Durable on return.
    pub async fn append_audit(
        &self,
        entries: Vec<Recorded>,
        at: DateTime<Utc>,
        key: Option<&AuditKey>,
    ) -> Result<Vec<Record>> {
        let mut entries = entries;
        for _ in 0..APPEND_ATTEMPTS {
            let cached = self.audit_head.lock().expect("audit head").clone();
            let (seq, hash) = match cached {
                Some(head) => head,
                None => self.audit_head().await?,
            };
            let records = crate::audit::chain((seq, &hash), at, entries, key);
            let mut tx = self.b.begin(super::backend::Lock::None).await?;
            let moved = advance_and_insert::<B>(&mut tx, (seq, &hash), &records).await;
            let moved = match moved {
                Ok(true) => tx.commit().await.map(|_| true).map_err(StoreError::from),
                other => other,
            };
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

    /// Records matching `f` after `after_seq`, oldest first.
    pub async fn audit_records(&self, f: &AuditFilter, after_seq: i64, limit: i64) -> Result<Vec<Record>> {
        let mut q = Sql::<B>::new();
        let cond = audit_where(&mut q, f);
        let (after, limit) = (q.arg(after_seq), q.arg(limit));
        let cols = durable::names(durable::AUDIT_LOG);
        let q =
            q.text(format!("SELECT {cols} FROM audit_log WHERE seq > {after} AND {cond} ORDER BY seq LIMIT {limit}"));
        let rows: Vec<RecordRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter().map(RecordRow::decode).collect()
    }

    /// Records matching `f` before `before_seq` (all when `None`), newest
    /// first.
    pub async fn audit_records_newest_first(
        &self,
        f: &AuditFilter,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Record>> {
        let mut q = Sql::<B>::new();
        let cond = audit_where(&mut q, f);
        let before = q.arg(before_seq.unwrap_or(i64::MAX));
        let limit = q.arg(limit);
        let cols = durable::names(durable::AUDIT_LOG);
        let q = q.text(format!(
            "SELECT {cols} FROM audit_log WHERE seq < {before} AND {cond} ORDER BY seq DESC LIMIT {limit}"
        ));
        let rows: Vec<RecordRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter().map(RecordRow::decode).collect()
    }

    /// How many records match `f`.
    pub async fn audit_count(&self, f: &AuditFilter) -> Result<i64> {
        let mut q = Sql::<B>::new();
        let cond = audit_where(&mut q, f);
        let q = q.text(format!("SELECT count(*) AS n FROM audit_log WHERE {cond}"));
        let rows: Vec<super::engine::CountRow> = fetch_rows(self.b.pool(), q).await?;
        Ok(rows.first().map_or(0, |r| r.n))
    }

    pub async fn audit_head(&self) -> Result<(i64, String)> {
        let rows: Vec<HeadRow> =
            fetch_rows(self.b.pool(), Sql::<B>::of("SELECT seq, hash FROM audit_head WHERE id = 1")).await?;
        let head = rows.into_iter().next().ok_or_else(|| StoreError::Corrupt("audit_head has no row".into()))?;
        Ok((head.seq, head.hash))
    }

    /// The newest checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        let rows: Vec<CheckpointRow> = fetch_rows(
            self.b.pool(),
            Sql::<B>::of("SELECT head, frontier FROM audit_checkpoints ORDER BY size DESC LIMIT 1"),
        )
        .await?;
        rows.into_iter().next().map(CheckpointRow::decode).transpose()
    }

    /// The checkpoint of `size` records, if one was made.
    pub async fn checkpoint(&self, size: u64) -> Result<Option<StoredCheckpoint>> {
        let mut q = Sql::<B>::new();
        let s = q.arg(Val::Int(size as i64));
        let q = q.text(format!("SELECT head, frontier FROM audit_checkpoints WHERE size = {s}"));
        let rows: Vec<CheckpointRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter().next().map(CheckpointRow::decode).transpose()
    }

    /// Sizes of the checkpoints after `size`, oldest first.
    pub async fn checkpoint_sizes_after(&self, size: u64) -> Result<Vec<u64>> {
        let mut q = Sql::<B>::new();
        let s = q.arg(Val::Int(size as i64));
        let q = q.text(format!("SELECT size AS n FROM audit_checkpoints WHERE size > {s} ORDER BY size"));
        let rows: Vec<super::engine::CountRow> = fetch_rows(self.b.pool(), q).await?;
        Ok(rows.into_iter().map(|r| r.n as u64).collect())
    }

    /// Stores a checkpoint that extends the newest one (of size `after`),
    /// and the tiles its records completed. Returns false, storing nothing,
    /// when the newest is not `after` any more: another instance came first.
    pub async fn record_checkpoint(&self, cp: &StoredCheckpoint, after: u64, tiles: &[Completed]) -> Result<bool> {
        let mut tx = self.b.begin(super::backend::Lock::None).await?;
        let mut q = Sql::<B>::new();
        let size = q.arg(Val::Int(cp.signed.head.size as i64));
        let prev = q.arg(Val::Int(after as i64));
        let head = q.arg(Val::from(cp.signed.encode()));
        let frontier = q.arg(Val::from(cp.frontier.iter().map(hex::encode).collect::<Vec<_>>().join(",")));
        // Each checkpoint is extended once (`after` is unique), and only the
        // newest is: the checkpoints form one chain of sizes.
        let inserted = B::execute(
            &mut tx,
            q.text(format!(
                "INSERT INTO audit_checkpoints (size, after, head, frontier)
                 SELECT {size}, {prev}, {head}, {frontier}
                 WHERE (SELECT COALESCE(MAX(size), 0) FROM audit_checkpoints) = {prev}
                 ON CONFLICT DO NOTHING"
            )),
        )
        .await?;
        if inserted == 1 && !tiles.is_empty() {
            let rows: Vec<Row> = tiles
                .iter()
                .map(|t| vec![Val::Int(i64::from(t.height)), Val::Int(t.index as i64), Val::from(hex::encode(t.hash))])
                .collect();
            let mut q = Sql::<B>::new();
            let names = durable::names(durable::AUDIT_TILES);
            let src = q.rows(durable::AUDIT_TILES, &rows, "t");
            B::execute(
                &mut tx,
                q.text(format!(
                    "INSERT INTO audit_tiles ({names}) SELECT {names} FROM {src} WHERE true
                     ON CONFLICT (height, idx) DO NOTHING"
                )),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(inserted == 1)
    }

    /// The stored tiles of `height` with indexes in `from..to`.
    pub async fn tiles(&self, height: u32, from: u64, to: u64) -> Result<Vec<(u64, Hash)>> {
        let mut q = Sql::<B>::new();
        let (h, f, t) = (q.arg(Val::Int(i64::from(height))), q.arg(Val::Int(from as i64)), q.arg(Val::Int(to as i64)));
        let q = q.text(format!(
            "SELECT idx, hash FROM audit_tiles WHERE height = {h} AND idx >= {f} AND idx < {t} ORDER BY idx"
        ));
        let rows: Vec<TileRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter()
            .map(|r| {
                let hash = crate::audit::checkpoint::hash_hex(&r.hash)
                    .ok_or_else(|| StoreError::Corrupt("audit tile hash".into()))?;
                Ok((r.idx as u64, hash))
            })
            .collect()
    }
}

/// Moves the head from `from` to the last of `records` and inserts them,
/// if the head is still at `from`; false (and nothing written) otherwise.
async fn advance_and_insert<B: Backend>(
    conn: &mut super::backend::Conn<B>,
    from: (i64, &str),
    records: &[Record],
) -> Result<bool> {
    let Some(last) = records.last() else { return Ok(true) };
    let mut q = Sql::<B>::new();
    let (fs, fh, ts, th) = (q.arg(from.0), q.arg(Val::str(from.1)), q.arg(last.seq), q.arg(Val::str(&last.hash)));
    let moved: Vec<MovedRow> = B::fetch(conn, q.text(B::audit_advance(&fs, &fh, &ts, &th))).await?;
    if moved.is_empty() {
        return Ok(false);
    }
    let rows: Vec<Row> = records.iter().map(record_row).collect();
    append_rows::<B>(conn, "audit_log", durable::AUDIT_LOG, &rows).await?;
    Ok(true)
}

impl<B: Backend> EngineTx<B> {
    /// Appends inside this transaction (an agreement change and its
    /// record): the head read here is moved with a compare-and-set, read
    /// again when another writer came first.
    pub async fn append_audit(
        &mut self,
        entries: Vec<Recorded>,
        at: DateTime<Utc>,
        key: Option<&AuditKey>,
    ) -> Result<Vec<Record>> {
        let mut entries = entries;
        for _ in 0..APPEND_ATTEMPTS {
            let rows: Vec<HeadRow> =
                B::fetch(&mut self.tx, Sql::of("SELECT seq, hash FROM audit_head WHERE id = 1")).await?;
            let head = rows.into_iter().next().ok_or_else(|| StoreError::Corrupt("audit_head has no row".into()))?;
            let records = crate::audit::chain((head.seq, &head.hash), at, entries, key);
            if advance_and_insert::<B>(&mut self.tx, (head.seq, &head.hash), &records).await? {
                return Ok(records);
            }
            entries = records.into_iter().map(|r| r.entry).collect();
        }
        Err(StoreError::Corrupt(format!("the audit head kept moving; gave up after {APPEND_ATTEMPTS} attempts")))
    }

    pub async fn insert_agreement(&mut self, a: &Agreement) -> Result<()> {
        append_rows::<B>(&mut self.tx, "agreements", durable::AGREEMENTS, &[agreement_row(a)]).await?;
        Ok(())
    }

    /// Writes a changed agreement if its status is still `expected`.
    pub async fn update_agreement(&mut self, a: &Agreement, expected: AgreementStatus) -> Result<()> {
        let mut q = Sql::<B>::new();
        let status = q.arg(Val::str(a.status.as_str()));
        // A NULL is written as one: a bound NULL has no type PostgreSQL
        // could give a timestamp column.
        let by = a.signed_by.as_deref().map_or_else(|| "NULL".to_string(), |v| q.arg(Val::str(v)));
        let at = a.signed_at.map_or_else(|| "NULL".to_string(), |t| q.arg(Val::Time(t)));
        let revoked = a.revoked_at.map_or_else(|| "NULL".to_string(), |t| q.arg(Val::Time(t)));
        let (id, authority, was) =
            (q.arg(Val::str(&a.id)), q.arg(Val::str(a.authority.as_str())), q.arg(Val::str(expected.as_str())));
        let n = B::execute(
            &mut self.tx,
            q.text(format!(
                "UPDATE agreements SET status = {status}, signed_by = {by}, signed_at = {at}, revoked_at = {revoked}
                 WHERE agreement_id = {id} AND authority = {authority} AND status = {was}"
            )),
        )
        .await?;
        if n != 1 {
            return Err(StoreError::Conflict("the agreement changed meanwhile".into()));
        }
        Ok(())
    }
}
