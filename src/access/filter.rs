//! Row filters: what an allowed caller sees of the citizen's aggregates.
//! Pure; every legal window is computed on the Copenhagen calendar date the
//! caller passes in.

use std::collections::HashMap;

use chrono::{Months, NaiveDate};

use crate::domain::{Cvr, DataArea, Kle, PartyId, Period, Sensitivity};
use crate::events::body::{ControlCaseStepRecorded, ControlOutcome, PartyRole};
use crate::identity::Employee;
use crate::projection::Aggregate;
use crate::projection::state::{Case, ControlCase, Employment, Grant, Payment, State, TaxFacts, TaxRecord};

/// UDK-loven §8: benefits of the last 3 months.
pub const UDK_MONTHS: u32 = 3;
/// UDK-loven §11a: control cases closed without action within 6 months.
pub const CONTROL_MONTHS: u32 = 6;

/// Whether `date` lies in the `months` calendar months up to and including
/// `today`: on or after the same day `months` earlier (the month's last day
/// when that month is shorter), and not after today.
pub fn within_months(date: NaiveDate, today: NaiveDate, months: u32) -> bool {
    let from = today.checked_sub_months(Months::new(months)).unwrap_or(NaiveDate::MIN);
    from <= date && date <= today
}

fn casework_allows(caller: &Employee, kle: &Kle, sensitivity: Sensitivity) -> bool {
    caller.kle.allows(kle) && sensitivity <= caller.sensitivity
}

/// Area `sager`: the caller's authority's cases, within its KLE and
/// sensitivity constraints.
pub fn cases<'a>(aggs: &'a [Aggregate], caller: &Employee) -> Vec<(&'a Aggregate, &'a Case)> {
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Case(c) if a.authority == caller.authority && casework_allows(caller, &c.kle, c.sensitivity) => {
                Some((a, c))
            }
            _ => None,
        })
        .collect()
}

/// Area `ydelser`: the caller's authority's grants, every granted benefit
/// within the KLE constraint and the grant within the sensitivity level.
pub fn grants<'a>(aggs: &'a [Aggregate], caller: &Employee) -> Vec<(&'a Aggregate, &'a Grant)> {
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Grant(g)
                if a.authority == caller.authority
                    && g.fields.sensitivity <= caller.sensitivity
                    && g.fields.benefits.iter().all(|b| caller.kle.allows(&b.kle)) =>
            {
                Some((a, g))
            }
            _ => None,
        })
        .collect()
}

/// Area `ydelser`: the caller's authority's payments whose every line is
/// within the KLE constraint (the line's KLE is the payment's data boundary).
pub fn payments<'a>(aggs: &'a [Aggregate], caller: &Employee) -> Vec<(&'a Aggregate, &'a Payment)> {
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Payment(p)
                if a.authority == caller.authority && p.fields.lines.iter().all(|l| caller.kle.allows(&l.kle)) =>
            {
                Some((a, p))
            }
            _ => None,
        })
        .collect()
}

/// Area `beskaeftigelse`: the caller's authority's job-centre records.
pub fn employment<'a>(aggs: &'a [Aggregate], caller: &Employee) -> Vec<(&'a Aggregate, &'a Employment)> {
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Employment(e) if a.authority == caller.authority => Some((a, e)),
            _ => None,
        })
        .collect()
}

/// A benefit UDK paid, as §8 shows it: the type and the amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdkBenefit {
    pub authority: Cvr,
    pub benefit_type: String,
    pub period: Period,
    pub disposal_date: NaiveDate,
    pub gross_oere: i64,
}

/// Area `udk_ydelser` (§8): one row per payment line of UDK payments at the
/// citizen's disposal in the last 3 months; the benefit type comes from the
/// grant the line pays.
pub fn udk_benefits(aggs: &[Aggregate], udk: &Cvr, today: NaiveDate) -> Vec<UdkBenefit> {
    let types: HashMap<(uuid::Uuid, &str), &str> = aggs
        .iter()
        .filter_map(|a| match &a.state {
            State::Grant(g) => {
                Some(g.fields.benefits.iter().map(move |b| ((a.id, b.id.as_str()), b.benefit_type.as_str())))
            }
            _ => None,
        })
        .flatten()
        .collect();
    let mut out = Vec::new();
    for a in aggs.iter().filter(|a| &a.authority == udk) {
        let State::Payment(p) = &a.state else { continue };
        if !within_months(p.fields.disposal_date, today, UDK_MONTHS) {
            continue;
        }
        for line in &p.fields.lines {
            let benefit_type = p
                .fields
                .grant_id
                .and_then(|g| types.get(&(g, line.granted_benefit_id.as_str())))
                .map_or_else(String::new, |t| t.to_string());
            out.push(UdkBenefit {
                authority: a.authority,
                benefit_type,
                period: line.period,
                disposal_date: p.fields.disposal_date,
                gross_oere: line.gross.0,
            });
        }
    }
    out.sort_by(|x, y| y.disposal_date.cmp(&x.disposal_date).then(x.benefit_type.cmp(&y.benefit_type)));
    out
}

/// A UDK case as §8 shows it: the limited case information of the cases
/// benefits are shown from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdkCase {
    pub case_id: uuid::Uuid,
    pub authority: Cvr,
    pub title: String,
    pub kle: Kle,
    pub status: &'static str,
}

/// Area `udk_sager` (§8): UDK cases with a grant that paid within the last 3
/// months.
pub fn udk_cases(aggs: &[Aggregate], udk: &Cvr, today: NaiveDate) -> Vec<UdkCase> {
    let paid_grants: std::collections::HashSet<uuid::Uuid> = aggs
        .iter()
        .filter(|a| &a.authority == udk)
        .filter_map(|a| match &a.state {
            State::Payment(p) if within_months(p.fields.disposal_date, today, UDK_MONTHS) => p.fields.grant_id,
            _ => None,
        })
        .collect();
    let shown_cases: std::collections::HashSet<uuid::Uuid> = aggs
        .iter()
        .filter(|a| paid_grants.contains(&a.id))
        .filter_map(|a| match &a.state {
            State::Grant(g) => g.fields.case_id,
            _ => None,
        })
        .collect();
    aggs.iter()
        .filter(|a| &a.authority == udk && shown_cases.contains(&a.id))
        .filter_map(|a| match &a.state {
            State::Case(c) => Some(UdkCase {
                case_id: a.id,
                authority: a.authority,
                title: c.title.clone(),
                kle: c.kle,
                status: c.status().as_str(),
            }),
            _ => None,
        })
        .collect()
}

/// A control case as §11a shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlView<'a> {
    pub case_id: uuid::Uuid,
    pub authority: Cvr,
    pub theme: &'a str,
    pub opened_on: NaiveDate,
    pub steps: &'a [ControlCaseStepRecorded],
    pub closed_without_action: bool,
    pub closed_on: Option<NaiveDate>,
}

/// Area `kontrolsager` (§11a), across authorities: control cases that are
/// open, and those closed without action within the last 6 months. Cases
/// closed with an outcome, or longer ago, are not shown.
pub fn control_cases<'a>(aggs: &'a [Aggregate], today: NaiveDate) -> Vec<ControlView<'a>> {
    aggs.iter()
        .filter_map(|a| {
            let State::ControlCase(c) = &a.state else { return None };
            let shown = match &c.closed {
                None => true,
                Some(x) => x.outcome == ControlOutcome::WithoutAction && within_months(x.on, today, CONTROL_MONTHS),
            };
            shown.then(|| view(a, c))
        })
        .collect()
}

fn view<'a>(a: &Aggregate, c: &'a ControlCase) -> ControlView<'a> {
    ControlView {
        case_id: a.id,
        authority: a.authority,
        theme: &c.theme,
        opened_on: c.opened_on,
        steps: &c.steps,
        closed_without_action: c.closed.as_ref().is_some_and(|x| x.outcome == ControlOutcome::WithoutAction),
        closed_on: c.closed.as_ref().map(|x| x.on),
    }
}

/// One SKAT area's records. For preliminary assessments only the newest per
/// income year is shown: a newer one supersedes the older.
pub fn tax_records(aggs: &[Aggregate], area: DataArea) -> Vec<(&Aggregate, &TaxRecord)> {
    let mut rows: Vec<(&Aggregate, &TaxRecord)> = aggs
        .iter()
        .filter_map(|a| match &a.state {
            State::TaxRecord(t) if t.record.data_area() == area => Some((a, t)),
            _ => None,
        })
        .collect();
    if area == DataArea::Forskudsopgoerelse {
        let mut newest: HashMap<i32, (NaiveDate, uuid::Uuid)> = HashMap::new();
        for (a, t) in &rows {
            if let TaxFacts::PreliminaryAssessment(p) = &t.record {
                let e = newest.entry(p.income_year.0).or_insert((p.issued_on, a.id));
                if (p.issued_on, a.id) > *e {
                    *e = (p.issued_on, a.id);
                }
            }
        }
        rows.retain(|(a, t)| match &t.record {
            TaxFacts::PreliminaryAssessment(p) => newest.get(&p.income_year.0).is_some_and(|(_, id)| *id == a.id),
            _ => true,
        });
    }
    rows
}

/// Borgerblikket: the cases where `citizen` is the primary party.
pub fn own_cases<'a>(aggs: &'a [Aggregate], citizen: &PartyId) -> Vec<(&'a Aggregate, &'a Case)> {
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Case(c) if c.parties.iter().any(|p| p.role == PartyRole::Primary && &p.id == citizen) => {
                Some((a, c))
            }
            _ => None,
        })
        .collect()
}

/// Borgerblikket: the citizen's own grants (they are its subject).
pub fn own_grants<'a>(aggs: &'a [Aggregate], citizen: &PartyId) -> Vec<(&'a Aggregate, &'a Grant)> {
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Grant(g) if &a.subject == citizen => Some((a, g)),
            _ => None,
        })
        .collect()
}

/// Borgerblikket: the citizen's own payments.
pub fn own_payments<'a>(aggs: &'a [Aggregate], citizen: &PartyId) -> Vec<(&'a Aggregate, &'a Payment)> {
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Payment(p) if &a.subject == citizen => Some((a, p)),
            _ => None,
        })
        .collect()
}
