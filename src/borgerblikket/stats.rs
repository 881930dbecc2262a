//! Monthly call statistics: how often citizens asked for cases, benefits
//! and job-centre registrations, per authority, and whether the authority
//! had anything to show. Pure: which buckets a call counts in.
//!
//! A call counts once in each authority whose rows it considered (the
//! citizen's own rows of the kind asked for, before that authority's
//! settings): *with data* when a row of that authority was shown (on any
//! page), *without data* otherwise. A call where no authority had rows
//! counts once in the national bucket, without data.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate};

use crate::domain::Cvr;

/// What a citizen asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallKind {
    Cases,
    /// Grants and payments.
    Benefits,
    Employment,
}

impl CallKind {
    pub const ALL: [CallKind; 3] = [CallKind::Cases, CallKind::Benefits, CallKind::Employment];

    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Cases => "cases",
            CallKind::Benefits => "benefits",
            CallKind::Employment => "employment",
        }
    }

    pub fn parse(s: &str) -> Option<CallKind> {
        CallKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Whether a bucket's rows were in the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    WithData,
    WithoutData,
}

impl Outcome {
    pub const ALL: [Outcome; 2] = [Outcome::WithData, Outcome::WithoutData];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::WithData => "with_data",
            Outcome::WithoutData => "without_data",
        }
    }
}

/// Whose count a call goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    Authority(Cvr),
    /// Calls where no authority had rows.
    National,
}

impl Bucket {
    /// The stored form: the CVR number, or `national`.
    pub const NATIONAL: &'static str = "national";

    pub fn parse(s: &str) -> Option<Bucket> {
        if s == Self::NATIONAL { Some(Bucket::National) } else { Cvr::parse(s).ok().map(Bucket::Authority) }
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bucket::Authority(c) => f.write_str(c.as_str()),
            Bucket::National => f.write_str(Self::NATIONAL),
        }
    }
}

/// A calendar month (Copenhagen), `YYYY-MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    pub fn of(day: NaiveDate) -> Month {
        Month { year: day.year(), month: day.month() }
    }

    /// `YYYY-MM`, years 2000-9999.
    pub fn parse(s: &str) -> Option<Month> {
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !s[..4].bytes().chain(s[5..].bytes()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        let (year, month) = (s[..4].parse().ok()?, s[5..].parse().ok()?);
        ((2000..=9999).contains(&year) && (1..=12).contains(&month)).then_some(Month { year, month })
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The buckets one call counts in: `considered` are the authorities of the
/// rows looked at, `shown` those of the rows in the answer (on any page).
pub fn tally(
    considered: impl IntoIterator<Item = Cvr>,
    shown: impl IntoIterator<Item = Cvr>,
) -> Vec<(Bucket, Outcome)> {
    let mut out: BTreeMap<Bucket, Outcome> =
        considered.into_iter().map(|a| (Bucket::Authority(a), Outcome::WithoutData)).collect();
    for a in shown {
        out.insert(Bucket::Authority(a), Outcome::WithData);
    }
    if out.is_empty() {
        out.insert(Bucket::National, Outcome::WithoutData);
    }
    out.into_iter().collect()
}

/// One bucket's counts for one month and kind of call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthlyCount {
    pub bucket: Bucket,
    pub month: Month,
    pub kind: CallKind,
    pub with_data: i64,
    pub without_data: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cvr(s: &str) -> Cvr {
        Cvr::parse(s).unwrap()
    }

    #[test]
    fn a_call_counts_once_per_authority_and_nationally_when_none_had_rows() {
        let (a, b) = (cvr("55133018"), cvr("35209115"));
        assert_eq!(
            tally([a, b, a], [a, a]),
            [(Bucket::Authority(b), Outcome::WithoutData), (Bucket::Authority(a), Outcome::WithData)]
                .into_iter()
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect::<Vec<_>>()
        );
        assert_eq!(tally([], []), [(Bucket::National, Outcome::WithoutData)]);
    }

    #[test]
    fn months_parse_strictly() {
        assert_eq!(Month::parse("2026-03").unwrap().to_string(), "2026-03");
        for bad in ["2026-3", "2026-13", "2026-00", "26-03", "2026/03", "2026-03-01", "+026-03", "1999-12"] {
            assert!(Month::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Bucket::parse("national"), Some(Bucket::National));
        assert!(Bucket::parse("nation").is_none());
    }
}
