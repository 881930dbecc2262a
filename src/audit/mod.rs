//! The audit log: one record per decision, allowed or denied, hash-chained.
//!
//! This module is the pure part — the record, its canonical form, the chain
//! and its verification, and the data-protection officer's views (alarms,
//! the citizen's art. 15 report, CSV). Writing is the store's, batched by
//! [`writer::AuditLog`] so a record is durable before the answer is sent
//! without one commit per request.

pub mod checkpoint;
pub mod checkpointer;
pub mod dpo;
mod entry;
pub mod merkle;
pub mod proof;
pub mod prove;
pub mod read;
pub mod verify;
pub mod writer;

pub use entry::{Actor, AlarmKind, Decision, Entry, Kind, Outcome, Reason, Search, Text, TransactionId};

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A decision as the log holds it: the text of an [`Entry`] after
/// [`Entry::seal`]. Empty strings stand for "not applicable" (a denied
/// token has no user, a service call no citizen). Only `seal` and the store
/// (reading back what `seal` wrote) make these.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recorded {
    /// The caller's `x-transaktions-id`, or one generated for the call.
    pub transaction_id: String,
    /// Unique per call.
    pub request_id: String,
    /// `lookup`, `citizen_lookup`, `agreement`, `audit` or `admin`.
    pub kind: String,
    pub user_id: String,
    pub user_name: String,
    /// The caller's authority (CVR).
    pub authority: String,
    pub org_unit: String,
    pub it_system: String,
    /// The roles that opened the area.
    pub roles_used: Vec<String>,
    pub data_area: String,
    pub purpose_id: Option<u32>,
    pub agreement_id: String,
    /// The citizen looked up (party URN).
    pub citizen: String,
    /// What was asked: the RPC, the purpose (as SAPA logs it:
    /// `FormaalType: <id>`), page tokens, ids.
    pub search_criteria: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// The reason code of a denial.
    pub reason: String,
    pub rows_returned: i32,
    pub alarms: Vec<String>,
}

/// A stored record: an entry with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: i64,
    pub recorded_at: DateTime<Utc>,
    pub entry: Recorded,
    pub prev_hash: String,
    pub hash: String,
    /// The MAC of the record's leaf hash under the checkpoint key: proof
    /// that the service wrote it (empty when written without the key).
    pub mac: String,
}

impl Record {
    /// The record's leaf hash in the Merkle tree: `SHA-256(0x00 ‖
    /// canonical)`.
    pub fn leaf(&self) -> merkle::Hash {
        merkle::leaf_hash(canonical(self.seq, &self.recorded_at, &self.entry).as_bytes())
    }
}

/// The canonical text the hash covers: every field, in a fixed order.
pub fn canonical(seq: i64, recorded_at: &DateTime<Utc>, e: &Recorded) -> String {
    serde_json::to_string(&serde_json::json!([
        seq,
        recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        &e.transaction_id,
        &e.request_id,
        &e.kind,
        &e.user_id,
        &e.user_name,
        &e.authority,
        &e.org_unit,
        &e.it_system,
        &e.roles_used,
        &e.data_area,
        e.purpose_id,
        &e.agreement_id,
        &e.citizen,
        &e.search_criteria,
        &e.decision,
        &e.reason,
        e.rows_returned,
        &e.alarms,
    ]))
    .expect("records serialise")
}

/// `SHA-256(prev_hash "\n" canonical)`, hex.
pub fn hash(prev: &str, canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// The instant as stored: microseconds, which both backends keep exactly.
pub fn stamp(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).expect("a representable instant")
}

/// Chains `entries` after the record `(seq, hash)` (`(0, GENESIS)` for an
/// empty log), each with its MAC under `key`.
pub fn chain(
    head: (i64, &str),
    at: DateTime<Utc>,
    entries: Vec<Recorded>,
    key: Option<&checkpoint::AuditKey>,
) -> Vec<Record> {
    let at = stamp(at);
    let (mut seq, mut prev) = (head.0, head.1.to_string());
    entries
        .into_iter()
        .map(|entry| {
            seq += 1;
            let canonical = canonical(seq, &at, &entry);
            let hash = hash(&prev, &canonical);
            let mac = key.map(|k| k.mac(&merkle::leaf_hash(canonical.as_bytes()))).unwrap_or_default();
            let record = Record { seq, recorded_at: at, entry, prev_hash: prev.clone(), hash: hash.clone(), mac };
            prev = hash;
            record
        })
        .collect()
}

/// Checks the chain record by record, in sequence order, and remembers the
/// first record that doesn't verify.
#[derive(Debug)]
pub struct ChainCheck {
    expect_seq: i64,
    prev: String,
    pub records: i64,
    pub first_bad: Option<(i64, String)>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck { expect_seq: 1, prev: GENESIS.to_string(), records: 0, first_bad: None }
    }
}

impl ChainCheck {
    /// Resumes after a verified prefix: `expect_seq` comes next, after a
    /// record whose hash is `prev`.
    pub fn resume(expect_seq: i64, prev: String) -> ChainCheck {
        ChainCheck { expect_seq, prev, records: 0, first_bad: None }
    }

    /// Feeds the next record (by ascending seq). After the first problem the
    /// rest are counted but not judged.
    pub fn feed(&mut self, r: &Record) {
        self.records += 1;
        if self.first_bad.is_some() {
            return;
        }
        let problem = if r.seq != self.expect_seq {
            Some(format!("expected record {} here, found {} (a record is missing or moved)", self.expect_seq, r.seq))
        } else if r.prev_hash != self.prev {
            Some("its prev_hash is not the hash of the record before it".to_string())
        } else if hash(&r.prev_hash, &canonical(r.seq, &r.recorded_at, &r.entry)) != r.hash {
            Some("its content does not match its hash (the record was changed)".to_string())
        } else {
            None
        };
        match problem {
            Some(p) => self.first_bad = Some((self.expect_seq.min(r.seq), p)),
            None => {
                self.expect_seq += 1;
                self.prev = r.hash.clone();
            }
        }
    }

    /// The last record verified so far and its hash (0 and the genesis
    /// hash before the first): where a later check resumes.
    pub fn verified_upto(&self) -> (i64, &str) {
        (self.expect_seq - 1, &self.prev)
    }

    /// Whether the chain ends where the head says it does (`None` to skip).
    pub fn finish(&mut self, head: Option<(i64, &str)>) {
        if self.first_bad.is_none()
            && let Some((seq, hash)) = head
            && (seq != self.expect_seq - 1 || (seq > 0 && hash != self.prev))
        {
            self.first_bad = Some((
                self.expect_seq,
                format!("the log ends at record {} but its head says {seq}", self.expect_seq - 1),
            ));
        }
    }

    pub fn ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: i32) -> Recorded {
        Recorded {
            kind: "lookup".into(),
            user_id: format!("user{n}"),
            citizen: "urn:oio:cpr-nr:0101801234".into(),
            decision: "allow".into(),
            rows_returned: n,
            roles_used: vec!["Se sager".into()],
            ..Default::default()
        }
    }

    fn log(n: i32) -> Vec<Record> {
        let first = chain((0, GENESIS), Utc::now(), (1..=n / 2).map(entry).collect(), None);
        let head = first.last().map(|r| (r.seq, r.hash.clone())).unwrap();
        let rest = chain((head.0, &head.1), Utc::now(), (n / 2 + 1..=n).map(entry).collect(), None);
        first.into_iter().chain(rest).collect()
    }

    fn check(records: &[Record]) -> ChainCheck {
        let mut c = ChainCheck::default();
        for r in records {
            c.feed(r);
        }
        c
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let records = log(10);
        assert_eq!(records.last().unwrap().seq, 10);
        let mut c = check(&records);
        c.finish(Some((10, &records[9].hash)));
        assert!(c.ok(), "{:?}", c.first_bad);
        assert_eq!(c.records, 10);
    }

    #[test]
    fn an_edit_a_deletion_and_a_reordering_are_found_at_the_right_record() {
        let mut edited = log(10);
        edited[6].entry.citizen = "urn:oio:cpr-nr:0202802345".into();
        assert_eq!(check(&edited).first_bad.unwrap().0, 7);

        let mut deleted = log(10);
        deleted.remove(3);
        assert_eq!(check(&deleted).first_bad.unwrap().0, 4);

        // Swapping two records' contents, their seq numbers kept in order.
        let mut swapped = log(10);
        let (a, b) = (swapped[4].entry.clone(), swapped[5].entry.clone());
        swapped[4].entry = b;
        swapped[5].entry = a;
        assert_eq!(check(&swapped).first_bad.unwrap().0, 5);

        // Rewriting a record together with its hash still breaks the next link.
        let mut rehashed = log(10);
        rehashed[2].entry.rows_returned = 99;
        rehashed[2].hash = hash(&rehashed[2].prev_hash, &canonical(3, &rehashed[2].recorded_at, &rehashed[2].entry));
        assert_eq!(check(&rehashed).first_bad.unwrap().0, 4);

        // The last records cut off: only the head can tell.
        let records = log(10);
        let mut c = check(&records[..8]);
        c.finish(Some((10, &records[9].hash)));
        assert_eq!(c.first_bad.unwrap().0, 9);
    }
}
