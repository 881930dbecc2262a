//! The retention sweep: cases closed longer ago than their deletion deadline
//! are deleted physically, with their grants and those grants' payments.
//!
//! Deadlines follow the KLE deletion deadlines (slettefrister): by default 5
//! years after the case closed, configurable per KLE prefix (the longest
//! matching prefix wins). The rules are pure; the sweep pages through closed
//! cases oldest first and deletes each page in one transaction.

use chrono::{Months, NaiveDate};
use uuid::Uuid;

use crate::domain::AggregateKind;
use crate::projection::Deletion;
use crate::store::{DeletionCause, Store, StoreError};

/// A deadline after closing: `5y`, `18m` or `1825d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    Days(u32),
    Months(u32),
}

impl Deadline {
    pub fn parse(s: &str) -> Result<Deadline, String> {
        let bad = || format!("{s:?} is not a deadline like 5y, 18m or 1825d");
        let (num, unit) = s.split_at(s.len().checked_sub(1).ok_or_else(bad)?);
        let n: u32 = num.parse().map_err(|_| bad())?;
        match unit {
            "y" => n.checked_mul(12).map(Deadline::Months).ok_or_else(bad),
            "m" => Ok(Deadline::Months(n)),
            "d" => Ok(Deadline::Days(n)),
            _ => Err(bad()),
        }
    }

    /// The last day still inside the deadline for a case closed on `closed`.
    pub fn last_day(self, closed: NaiveDate) -> NaiveDate {
        match self {
            Deadline::Days(d) => closed + chrono::Days::new(u64::from(d)),
            Deadline::Months(m) => closed.checked_add_months(Months::new(m)).unwrap_or(NaiveDate::MAX),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RetentionRules {
    pub default: Deadline,
    /// (KLE prefix, deadline), e.g. ("32.03", 10y).
    pub rules: Vec<(String, Deadline)>,
}

impl Default for RetentionRules {
    fn default() -> Self {
        RetentionRules { default: Deadline::Months(60), rules: Vec::new() }
    }
}

impl RetentionRules {
    /// Parses `PREFIX=DEADLINE`.
    pub fn parse_rule(s: &str) -> Result<(String, Deadline), String> {
        let (prefix, deadline) = s.split_once('=').ok_or_else(|| format!("{s:?} is not PREFIX=DEADLINE"))?;
        let ok = !prefix.is_empty() && prefix.len() <= 8 && prefix.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if !ok {
            return Err(format!("{prefix:?} is not a KLE prefix such as 32 or 32.18"));
        }
        Ok((prefix.to_string(), Deadline::parse(deadline)?))
    }

    pub fn deadline_for(&self, kle: &str) -> Deadline {
        self.rules
            .iter()
            .filter(|(p, _)| kle.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map_or(self.default, |(_, d)| *d)
    }

    /// Whether a case with `kle` closed on `closed` is past its deadline.
    pub fn expired(&self, kle: &str, closed: NaiveDate, today: NaiveDate) -> bool {
        today > self.deadline_for(kle).last_day(closed)
    }

    /// No case closed on or after this date can be expired yet.
    pub fn cutoff(&self, today: NaiveDate) -> NaiveDate {
        let shortest = |d: Deadline| match d {
            Deadline::Days(n) => today - chrono::Days::new(u64::from(n)),
            Deadline::Months(m) => today.checked_sub_months(Months::new(m)).unwrap_or(NaiveDate::MIN),
        };
        std::iter::once(self.default)
            .chain(self.rules.iter().map(|(_, d)| *d))
            .map(shortest)
            .max()
            .expect("at least the default")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub cases: usize,
    pub control_cases: usize,
    pub grants: usize,
    pub payments: usize,
}

const PAGE: i64 = 500;

/// Deletes everything past its deadline on `today`.
pub async fn sweep(store: &Store, rules: &RetentionRules, today: NaiveDate) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    let cutoff = rules.cutoff(today);
    let mut after = None;
    loop {
        let page = store.closed_cases(cutoff, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some((last.closed_on, last.aggregate_id));
        let expired: Vec<(Uuid, AggregateKind)> = page
            .iter()
            .filter(|c| rules.expired(&c.kle, c.closed_on, today))
            .map(|c| (c.aggregate_id, c.kind))
            .collect();
        if expired.is_empty() {
            continue;
        }
        let mut attempts = 0;
        loop {
            match delete_page(store, &expired).await {
                Ok(r) => {
                    report.cases += r.cases;
                    report.control_cases += r.control_cases;
                    report.grants += r.grants;
                    report.payments += r.payments;
                    break;
                }
                Err(StoreError::Conflict(_)) if attempts < 5 => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }
    if report != SweepReport::default() {
        tracing::info!(?report, "retention sweep deleted expired cases");
    }
    Ok(report)
}

async fn delete_page(store: &Store, expired: &[(Uuid, AggregateKind)]) -> Result<SweepReport, StoreError> {
    let mut tx = store.begin().await?;
    let cases: Vec<Uuid> = expired.iter().filter(|(_, k)| *k == AggregateKind::Case).map(|(id, _)| *id).collect();
    let grants = tx.linked(AggregateKind::Grant, &cases).await?;
    let payments = tx.linked(AggregateKind::Payment, &grants).await?;
    let mut ids: Vec<Uuid> = expired.iter().map(|(id, _)| *id).collect();
    ids.extend(&grants);
    ids.extend(&payments);
    let aggregates = tx.load_aggregates(&ids).await?;
    let deletions: Vec<Deletion> = aggregates
        .iter()
        .map(|a| Deletion { aggregate_id: a.id, kind: a.kind(), expected_version: a.version, last_version: a.version })
        .collect();
    tx.purge(&deletions, DeletionCause::Retention).await?;
    tx.commit().await?;
    let count = |k| aggregates.iter().filter(|a| a.kind() == k).count();
    Ok(SweepReport {
        cases: count(AggregateKind::Case),
        control_cases: count(AggregateKind::ControlCase),
        grants: count(AggregateKind::Grant),
        payments: count(AggregateKind::Payment),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        crate::domain::parse_date(s).unwrap()
    }

    #[test]
    fn longest_prefix_wins_and_the_boundary_is_exact() {
        let rules = RetentionRules {
            default: Deadline::parse("5y").unwrap(),
            rules: vec![
                RetentionRules::parse_rule("32=10y").unwrap(),
                RetentionRules::parse_rule("32.18=1825d").unwrap(),
            ],
        };
        assert_eq!(rules.deadline_for("27.24.04"), Deadline::Months(60));
        assert_eq!(rules.deadline_for("32.03.04"), Deadline::Months(120));
        assert_eq!(rules.deadline_for("32.18.04"), Deadline::Days(1825));
        // Closed 2020-02-29: five years later is 2025-02-28 (no 29th), still inside.
        assert!(!rules.expired("27.24.04", d("2020-02-29"), d("2025-02-28")));
        assert!(rules.expired("27.24.04", d("2020-02-29"), d("2025-03-01")));
        assert!(!rules.expired("32.18.04", d("2020-01-01"), d("2024-12-30")));
        assert!(rules.expired("32.18.04", d("2020-01-01"), d("2024-12-31")));
        // 1825 days before 2026-01-01 (across 29 February 2024) is 2021-01-02.
        assert_eq!(rules.cutoff(d("2026-01-01")), d("2021-01-02"));
    }

    #[test]
    fn deadlines_parse_strictly() {
        assert_eq!(Deadline::parse("18m"), Ok(Deadline::Months(18)));
        for bad in ["", "5", "y", "5w", "-1y", "1.5y"] {
            assert!(Deadline::parse(bad).is_err(), "{bad}");
        }
        assert!(RetentionRules::parse_rule("32.18=5y").is_ok());
        assert!(RetentionRules::parse_rule("abc=5y").is_err());
    }
}
