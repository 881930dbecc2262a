//! Reading the log back: pages of records, the chain check over all of
//! them, and the verification against checkpoint files outside the
//! database. Every read is by pages: memory holds one page (and one
//! checkpoint's leaves), whatever the log's size.

use std::path::{Path, PathBuf};

use super::checkpoint::{CheckpointFile, PublicKey};
use super::verify::{LogCheck, Progress, Report};
use super::{ChainCheck, Record};
use crate::store::{AuditFilter, Store, StoreError};

/// Records read per query.
pub const PAGE: i64 = 10_000;

/// Every record matching `filter`, up to `cap` of them (a bound on memory;
/// `truncated` says whether there were more).
pub async fn load(store: &Store, filter: &AuditFilter, cap: usize) -> Result<(Vec<Record>, bool), StoreError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_records(filter, after, PAGE).await?;
        let Some(last) = page.last() else { return Ok((out, false)) };
        after = last.seq;
        let full = page.len() as i64 == PAGE;
        for r in page {
            if out.len() == cap {
                return Ok((out, true));
            }
            out.push(r);
        }
        if !full {
            return Ok((out, false));
        }
    }
}

/// Verifies the whole chain, page by page, and that it ends at the head.
pub async fn verify(store: &Store) -> Result<ChainCheck, StoreError> {
    Ok(verify_part(store, None, i64::MAX).await?.check)
}

/// A part of the chain checked: the check, whether it reached the head,
/// and the head's record number when it began.
#[derive(Debug)]
pub struct ChainPart {
    pub check: ChainCheck,
    pub complete: bool,
    pub head_seq: i64,
}

/// Verifies at most `max_records` records of the chain after `after` (a
/// record number and its hash, from an earlier part; `None`: from the
/// start), up to the head as it was when the check began — records
/// appended meanwhile are the next part's. When the part reaches that
/// head, the chain must end there.
pub async fn verify_part(
    store: &Store,
    after: Option<(i64, String)>,
    max_records: i64,
) -> Result<ChainPart, StoreError> {
    let (head_seq, head_hash) = store.audit_head().await?;
    let mut check = match &after {
        Some((seq, hash)) => ChainCheck::resume(seq + 1, hash.clone()),
        None => ChainCheck::default(),
    };
    // The resume point itself must still be what was verified: the record
    // there, with the hash the earlier part saw, below the head.
    if let Some((seq, hash)) = &after {
        let problem = if *seq > head_seq {
            Some((
                head_seq + 1,
                format!("the head is at record {head_seq}, before record {seq} verified earlier (the log was rewound)"),
            ))
        } else {
            match store.audit_records(&AuditFilter::default(), seq - 1, 1).await?.pop() {
                Some(r) if r.seq == *seq && r.hash == *hash => None,
                Some(r) if r.seq == *seq => {
                    Some((*seq, "its hash is not the one verified earlier (the record was changed since)".to_string()))
                }
                _ => Some((*seq, "the record verified earlier is missing".to_string())),
            }
        };
        if let Some(found) = problem {
            check.first_bad = Some(found);
            return Ok(ChainPart { check, complete: true, head_seq });
        }
    }
    let mut at = check.verified_upto().0;
    let mut left = max_records.max(0);
    while left > 0 && at < head_seq {
        let want = PAGE.min(left).min(head_seq - at);
        let page = store.audit_records(&AuditFilter::default(), at, want).await?;
        let Some(last) = page.last() else { break };
        at = last.seq;
        left -= page.len() as i64;
        for r in &page {
            check.feed(r);
        }
        if (page.len() as i64) < want {
            break;
        }
    }
    let complete = at >= head_seq || left > 0;
    if complete {
        check.finish(Some((head_seq, &head_hash)));
    }
    Ok(ChainPart { check, complete, head_seq })
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("can't read the checkpoints in {path}: {source}")]
    Files { path: PathBuf, source: std::io::Error },
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("the saved progress {path} is not usable: {why}")]
    Progress { path: PathBuf, why: String },
}

/// The checkpoint files in `dir`, by size.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    let fail = |source| VerifyError::Files { path: dir.to_path_buf(), source };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(fail)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "checkpoint"))
        .collect();
    // The names are the sizes, zero-padded: they sort as numbers.
    files.sort();
    Ok(files)
}

/// Where a verification keeps its progress, unless told otherwise.
pub fn default_progress_path(dir: &Path) -> PathBuf {
    dir.join("verified.json")
}

/// Reads saved progress; none yet is the start.
pub fn load_progress(path: &Path) -> Result<Progress, VerifyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| VerifyError::Progress { path: path.to_path_buf(), why: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::default()),
        Err(e) => Err(VerifyError::Progress { path: path.to_path_buf(), why: e.to_string() }),
    }
}

pub fn save_progress(path: &Path, progress: &Progress) -> Result<(), VerifyError> {
    let text = serde_json::to_string_pretty(progress).expect("progress serialises");
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| VerifyError::Progress { path: path.to_path_buf(), why: e.to_string() })
}

/// Verifies the records in `store` against the checkpoint files in `dir`,
/// from `from` on (the start, or an earlier run's progress). `progress` is
/// told the records read so far now and then.
pub async fn verify_against(
    store: &Store,
    dir: &Path,
    public: PublicKey,
    from: &Progress,
    mut progress: impl FnMut(u64),
) -> Result<Report, VerifyError> {
    let mut check = LogCheck::new(public, from).ok_or_else(|| VerifyError::Progress {
        path: dir.to_path_buf(),
        why: "its frontier doesn't fit its size".into(),
    })?;
    let mut after = from.size as i64;
    let mut last_seq = from.size;
    let mut read = 0u64;
    // Feeds records with seq ≤ `upto` (all when None), page by page.
    async fn feed(
        store: &Store,
        check: &mut LogCheck,
        after: &mut i64,
        last_seq: &mut u64,
        upto: Option<u64>,
        read: &mut u64,
        progress: &mut impl FnMut(u64),
    ) -> Result<(), StoreError> {
        loop {
            let limit = match upto {
                Some(u) if (u as i64) <= *after => return Ok(()),
                Some(u) => (u as i64 - *after).min(PAGE),
                None => PAGE,
            };
            let page = store.audit_records(&AuditFilter::default(), *after, limit).await?;
            let Some(last) = page.last() else { return Ok(()) };
            *after = last.seq;
            *last_seq = last.seq as u64;
            for r in &page {
                check.record(r);
            }
            let before = *read / 100_000;
            *read += page.len() as u64;
            if *read / 100_000 != before {
                progress(*read);
            }
            if (page.len() as i64) < limit {
                return Ok(());
            }
        }
    }
    for path in checkpoint_files(dir)? {
        let text =
            std::fs::read_to_string(&path).map_err(|e| VerifyError::File { path: path.clone(), why: e.to_string() })?;
        let file =
            CheckpointFile::decode(&text).map_err(|e| VerifyError::File { path: path.clone(), why: e.to_string() })?;
        if let Some((_, last)) = check.checkpoint(file) {
            feed(store, &mut check, &mut after, &mut last_seq, Some(last), &mut read, &mut progress).await?;
        }
    }
    // The records after the last checkpoint: the chain only.
    feed(store, &mut check, &mut after, &mut last_seq, None, &mut read, &mut progress).await?;
    let (seq, hash) = store.audit_head().await?;
    Ok(check.finish(Some((seq, &hash)), last_seq))
}

/// Where a page of alarms resumes: after the alarms of record `seq`,
/// scanning again from the start of its clock hour so the volume alarm
/// counts that hour whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmResume {
    pub seq: i64,
    pub hour: chrono::DateTime<chrono::Utc>,
}

/// One page of alarms of the records matching `filter`: at least `limit`
/// (ending at a record's last alarm) unless the records run out first, and
/// where the next page resumes. Memory holds one page of records and the
/// scan's bounded state.
pub async fn alarms_page(
    store: &Store,
    filter: &AuditFilter,
    settings: &super::dpo::AlarmSettings,
    resume: Option<AlarmResume>,
    limit: usize,
) -> Result<(Vec<super::dpo::Alarm>, Option<AlarmResume>), StoreError> {
    use chrono::Timelike;
    let mut f = filter.clone();
    if let Some(r) = resume {
        f.from = Some(f.from.map_or(r.hour, |from| from.max(r.hour)));
    }
    let skip_through = resume.map_or(0, |r| r.seq);
    let mut scan = super::dpo::AlarmScan::new(settings);
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_records(&f, after, PAGE).await?;
        let Some(last) = page.last() else { return Ok((out, None)) };
        after = last.seq;
        let full = page.len() as i64 == PAGE;
        for r in &page {
            let raised = scan.feed(r);
            if r.seq <= skip_through || raised.is_empty() {
                continue;
            }
            out.extend(raised);
            if out.len() >= limit {
                let hour = r
                    .recorded_at
                    .with_minute(0)
                    .and_then(|t| t.with_second(0))
                    .and_then(|t| t.with_nanosecond(0))
                    .expect("a whole hour");
                return Ok((out, Some(AlarmResume { seq: r.seq, hour })));
            }
        }
        if !full {
            return Ok((out, None));
        }
    }
}

/// One page of a citizen's art. 15 report: the lookups that showed their
/// data among the records matching `filter` (which names the citizen)
/// after `after`, at most `limit`, and the seq the next page starts after.
pub async fn report_page(
    store: &Store,
    filter: &AuditFilter,
    catalogue: &crate::catalogue::Catalogue,
    after: i64,
    limit: usize,
) -> Result<(Vec<super::dpo::ReportEntry>, Option<i64>), StoreError> {
    let citizen = filter.citizen.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut after = after;
    loop {
        let page = store.audit_records(filter, after, PAGE).await?;
        let Some(last) = page.last() else { return Ok((out, None)) };
        let full = page.len() as i64 == PAGE;
        for r in &page {
            after = r.seq;
            out.extend(super::dpo::citizen_report(std::slice::from_ref(r), &citizen, catalogue));
            if out.len() >= limit {
                let more = r.seq < last.seq || full;
                return Ok((out, more.then_some(r.seq)));
            }
        }
        if !full {
            return Ok((out, None));
        }
    }
}
