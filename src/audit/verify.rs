//! Verifying the log against the checkpoints outside the database, trusting
//! nothing the database says. Pure: the caller feeds checkpoint files and
//! records in sequence order, alternately — a checkpoint's file, then the
//! records it covers — so memory holds one checkpoint's leaves at a time.
//!
//! What it finds, and how:
//! - a record changed, reordered, or rewritten with every hash recomputed:
//!   its leaf hash differs from the one the checkpoint file holds, and those
//!   leaves hash up to a root the service signed;
//! - a record deleted, in the middle or at the end, and the head rewound:
//!   a sequence number the checkpoints cover is missing;
//! - a record appended by someone without the key: the next checkpoint
//!   names it as unvouched;
//! - a changed or removed checkpoint file: its signature, or the chain of
//!   sizes from one checkpoint to the next, breaks.
//!
//! The hash chain inside the database is checked as well, for what it
//! adds: a change to a record not yet covered by a checkpoint.

use super::checkpoint::{CheckpointFile, PublicKey};
use super::merkle::{Frontier, Hash, leaf_hash};
use super::{ChainCheck, Record, canonical};

/// How far a verification has come: what an incremental run resumes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Records covered by verified checkpoints.
    pub size: u64,
    /// The frontier of the tree of those records (hex hashes).
    pub frontier: Vec<String>,
    /// The chain hash of record `size`.
    pub chain_hash: String,
}

/// The first problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The first record that is not as the checkpoints say (0: none in
    /// particular, e.g. a checkpoint file itself is bad).
    pub seq: u64,
    /// The first checkpoint (its size) the log contradicts, if one does.
    pub checkpoint: Option<u64>,
    pub problem: String,
}

/// The verification's state.
pub struct LogCheck {
    public: PublicKey,
    chain: ChainCheck,
    frontier: Frontier,
    /// The current checkpoint: its size and the leaves it covers that no
    /// record has matched yet (from `next_seq`).
    current: Option<(u64, std::collections::VecDeque<Hash>)>,
    next_seq: u64,
    records: u64,
    checkpoints: u64,
    unvouched: Option<(u64, u64)>,
    /// The chain hash of the record at the last checkpoint's size.
    chain_at_size: String,
    first: Option<Finding>,
}

/// What a verification found.
#[derive(Clone, Debug)]
pub struct Report {
    pub records: u64,
    pub checkpoints: u64,
    /// Records covered by the checkpoints.
    pub covered: u64,
    /// Records after the last checkpoint (not yet verifiable).
    pub uncovered: u64,
    pub first: Option<Finding>,
    /// Where an incremental run can resume (as of the last checkpoint).
    pub progress: Progress,
}

impl LogCheck {
    /// Starts from nothing, or from where an earlier run stopped.
    pub fn new(public: PublicKey, from: &Progress) -> Option<LogCheck> {
        let nodes: Option<Vec<Hash>> = from.frontier.iter().map(|h| super::checkpoint::hash_hex(h)).collect();
        let frontier = Frontier::from_parts(from.size, nodes?)?;
        let chain = if from.size == 0 {
            ChainCheck::default()
        } else {
            ChainCheck::resume(from.size as i64 + 1, from.chain_hash.clone())
        };
        Some(LogCheck {
            public,
            chain,
            frontier,
            current: None,
            next_seq: from.size + 1,
            records: 0,
            checkpoints: 0,
            unvouched: None,
            chain_at_size: from.chain_hash.clone(),
            first: None,
        })
    }

    /// The size verified so far (the last checkpoint's).
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Keeps the finding about the earliest record (a bad checkpoint file,
    /// seq 0, before any).
    fn found(&mut self, seq: u64, checkpoint: Option<u64>, problem: String) {
        if self.first.as_ref().is_none_or(|f| seq < f.seq) {
            self.first = Some(Finding { seq, checkpoint, problem });
        }
    }

    /// Takes the next checkpoint file (by size). Returns the records it
    /// covers that the caller must feed next: `(first, last)` seq, or
    /// `None` when there are none (or the file is not usable).
    pub fn checkpoint(&mut self, file: CheckpointFile) -> Option<(u64, u64)> {
        // Records the previous checkpoint covered but the log lacks.
        self.missing_up_to_current();
        let size = file.signed.head.size;
        if size <= self.frontier.size() {
            return None; // verified already (an incremental run)
        }
        self.checkpoints += 1;
        if !self.public.verifies(&file.signed) {
            self.found(0, Some(size), format!("checkpoint {size}: its signature does not verify with this key"));
            return None;
        }
        if file.after != self.frontier.size() {
            let from = self.frontier.size();
            self.found(
                from + 1,
                Some(size),
                format!("checkpoint {size} follows {} instead of {from}: a checkpoint file is missing", file.after),
            );
            return None;
        }
        let mut frontier = self.frontier.clone();
        for l in &file.leaves {
            frontier.push(*l);
        }
        if frontier.root() != file.signed.head.root {
            self.found(0, Some(size), format!("checkpoint {size}: its leaves do not hash to its signed root"));
            return None;
        }
        if let Some(seq) = file.signed.head.unvouched.first()
            && self.unvouched.is_none()
        {
            self.unvouched = Some((*seq, size));
        }
        let first = file.after + 1;
        self.current = Some((size, file.leaves.into()));
        self.frontier = frontier;
        Some((first, size))
    }

    /// Takes the next record (by sequence number).
    pub fn record(&mut self, r: &Record) {
        self.records += 1;
        self.chain.feed(r);
        let seq = r.seq as u64;
        let Some((size, leaves)) = self.current.as_mut() else { return };
        let size = *size;
        // Before an incremental run's start (or a repeat the chain
        // reports), or after the last checkpoint: nothing to compare.
        if seq < self.next_seq || seq > size {
            return;
        }
        let mut findings = Vec::new();
        if seq > self.next_seq {
            let missing = self.next_seq;
            findings.push((missing, format!("record {missing} is missing (the checkpoints cover it)")));
            for _ in missing..seq {
                leaves.pop_front();
            }
        }
        let leaf = leaf_hash(canonical(r.seq, &r.recorded_at, &r.entry).as_bytes());
        if leaves.pop_front() != Some(leaf) {
            findings.push((
                seq,
                format!("record {seq} is not the record checkpoint {size} covers (it was changed, moved or replaced)"),
            ));
        }
        self.next_seq = seq + 1;
        if seq == size {
            self.chain_at_size = r.hash.clone();
        }
        for (seq, problem) in findings {
            self.found(seq, Some(size), problem);
        }
    }

    /// Reports records the current checkpoint covers that never came.
    fn missing_up_to_current(&mut self) {
        if let Some((size, leaves)) = self.current.take()
            && !leaves.is_empty()
        {
            let missing = self.next_seq;
            self.found(
                missing,
                Some(size),
                format!("record {missing} is missing (the checkpoints cover up to {size})"),
            );
            self.next_seq = size + 1;
        }
    }

    /// Ends the verification; `head` is the database's head (seq, hash).
    pub fn finish(mut self, head: Option<(i64, &str)>, last_seq: u64) -> Report {
        self.missing_up_to_current();
        if let Some((seq, size)) = self.unvouched {
            self.found(
                seq,
                Some(size),
                format!("record {seq} was not written by the service (checkpoint {size} says so)"),
            );
        }
        self.chain.finish(head);
        if let Some((seq, problem)) = self.chain.first_bad.clone() {
            self.found(seq as u64, None, format!("the hash chain: record {seq}: {problem}"));
        }
        let covered = self.frontier.size();
        Report {
            records: self.records,
            checkpoints: self.checkpoints,
            covered,
            uncovered: last_seq.saturating_sub(covered),
            first: self.first,
            progress: Progress {
                size: covered,
                frontier: self.frontier.nodes().iter().map(hex::encode).collect(),
                chain_hash: self.chain_at_size,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::super::checkpoint::{AuditKey, TreeHead};
    use super::super::{GENESIS, Recorded, chain, hash};
    use super::*;

    fn log(n: usize) -> Vec<Record> {
        let entries = (0..n)
            .map(|i| Recorded { user_id: format!("u{i}"), kind: "lookup".into(), ..Default::default() })
            .collect();
        chain((0, GENESIS), Utc::now(), entries, None)
    }

    fn leaf(r: &Record) -> Hash {
        leaf_hash(canonical(r.seq, &r.recorded_at, &r.entry).as_bytes())
    }

    /// Checkpoints every `every` records, as the service writes them.
    fn checkpoints(key: &AuditKey, records: &[Record], every: usize, unvouched: &[u64]) -> Vec<CheckpointFile> {
        let mut frontier = Frontier::new();
        let mut out = Vec::new();
        for chunk in records.chunks(every) {
            let after = frontier.size();
            let leaves: Vec<Hash> = chunk.iter().map(leaf).collect();
            for l in &leaves {
                frontier.push(*l);
            }
            let marked: Vec<u64> = unvouched.iter().copied().filter(|s| *s > after && *s <= frontier.size()).collect();
            let head = TreeHead::new(frontier.size(), frontier.root(), Utc::now(), marked);
            out.push(CheckpointFile { signed: key.sign(head), after, leaves });
        }
        out
    }

    /// Runs a verification the way the command does: a checkpoint, then
    /// the records it covers, then the rest.
    fn run(key: &AuditKey, files: &[CheckpointFile], db: &[Record]) -> Report {
        let mut check = LogCheck::new(key.public(), &Progress::default()).unwrap();
        let mut fed = 0;
        for f in files {
            if let Some((_, last)) = check.checkpoint(f.clone()) {
                while fed < db.len() && db[fed].seq as u64 <= last {
                    check.record(&db[fed]);
                    fed += 1;
                }
            }
        }
        for r in &db[fed..] {
            check.record(r);
        }
        let head = db.last().map(|r| (r.seq, r.hash.as_str()));
        check.finish(head, db.last().map_or(0, |r| r.seq as u64))
    }

    fn first(report: &Report) -> (u64, Option<u64>) {
        let f = report.first.as_ref().expect("a finding");
        (f.seq, f.checkpoint)
    }

    #[test]
    fn an_untouched_log_verifies_and_its_tail_is_only_uncovered() {
        let key = AuditKey::generate().unwrap();
        let records = log(25);
        let files = checkpoints(&key, &records[..20], 7, &[]);
        let report = run(&key, &files, &records);
        assert!(report.first.is_none(), "{:?}", report.first);
        assert_eq!((report.covered, report.uncovered, report.checkpoints), (20, 5, 3));
        assert_eq!(report.progress.size, 20);
        assert_eq!(report.progress.chain_hash, records[19].hash);
    }

    #[test]
    fn every_kind_of_tampering_names_the_first_bad_record_and_checkpoint() {
        let key = AuditKey::generate().unwrap();
        let records = log(30);
        let files = checkpoints(&key, &records, 10, &[]);

        let mut changed = records.clone();
        changed[13].entry.user_id = "someone else".into();
        assert_eq!(first(&run(&key, &files, &changed)), (14, Some(20)));

        let mut deleted = records.clone();
        deleted.remove(4);
        assert_eq!(first(&run(&key, &files, &deleted)), (5, Some(10)));

        let tail = &records[..27];
        assert_eq!(first(&run(&key, &files, tail)), (28, Some(30)), "the last 3 deleted, the head rewound");

        let mut swapped = records.clone();
        let (a, b) = (swapped[21].entry.clone(), swapped[22].entry.clone());
        swapped[21].entry = b;
        swapped[22].entry = a;
        assert_eq!(first(&run(&key, &files, &swapped)), (22, Some(30)));

        // History rewritten from record 12 with every hash recomputed: the
        // chain holds, the checkpoints don't.
        let mut rewritten = records[..11].to_vec();
        let mut prev = rewritten[10].hash.clone();
        for r in &records[11..] {
            let mut r = r.clone();
            r.entry.rows_returned += 1;
            r.prev_hash = prev.clone();
            r.hash = hash(&prev, &canonical(r.seq, &r.recorded_at, &r.entry));
            prev = r.hash.clone();
            rewritten.push(r);
        }
        let report = run(&key, &files, &rewritten);
        assert_eq!(first(&report), (12, Some(20)));
    }

    #[test]
    fn a_forged_record_named_by_a_checkpoint_is_reported() {
        let key = AuditKey::generate().unwrap();
        let records = log(12);
        let files = checkpoints(&key, &records, 6, &[9]);
        let report = run(&key, &files, &records);
        assert_eq!(first(&report), (9, Some(12)));
        assert!(report.first.unwrap().problem.contains("not written by the service"));
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_or_missing_is_reported() {
        let key = AuditKey::generate().unwrap();
        let records = log(12);
        let mut files = checkpoints(&key, &records, 4, &[]);
        let other = checkpoints(&AuditKey::generate().unwrap(), &records, 4, &[]);
        files[1] = other[1].clone();
        assert_eq!(first(&run(&key, &files, &records)), (0, Some(8)));
        let mut gap = checkpoints(&key, &records, 4, &[]);
        gap.remove(1);
        assert_eq!(first(&run(&key, &gap, &records)), (5, Some(12)));
    }

    #[test]
    fn an_incremental_run_resumes_where_the_last_one_stopped() {
        let key = AuditKey::generate().unwrap();
        let records = log(40);
        let files = checkpoints(&key, &records, 10, &[]);
        let first_run = run(&key, &files[..2], &records[..20]);
        assert!(first_run.first.is_none());
        let mut check = LogCheck::new(key.public(), &first_run.progress).unwrap();
        let mut fed = 20;
        for f in &files {
            if let Some((_, last)) = check.checkpoint(f.clone()) {
                while fed < records.len() && records[fed].seq as u64 <= last {
                    check.record(&records[fed]);
                    fed += 1;
                }
            }
        }
        let report = check.finish(Some((40, &records[39].hash)), 40);
        assert!(report.first.is_none(), "{:?}", report.first);
        assert_eq!((report.records, report.covered), (20, 40), "only the new records were read");
    }
}
