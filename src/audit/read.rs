//! Reading the log back: pages of records, and the chain check over all of
//! them.

use super::{ChainCheck, Record};
use crate::store::{AuditFilter, Store, StoreError};

/// Records read per query.
const PAGE: i64 = 10_000;

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
    let mut check = ChainCheck::default();
    let mut after = 0;
    loop {
        let page = store.audit_records(&AuditFilter::default(), after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            check.feed(r);
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    let (seq, hash) = store.audit_head().await?;
    check.finish(Some((seq, &hash)));
    Ok(check)
}
