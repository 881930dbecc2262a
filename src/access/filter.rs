//! Row filters: what an allowed caller sees of the citizen's aggregates.
//! Pure; every legal window is computed on the Copenhagen calendar date the
//! caller passes in.
//!
//! Every row that carries a KLE subject and a sensitivity passes the
//! caller's KLE constraint and sensitivity level, whatever area it is read
//! through (ARCHITECTURE.md has the matrix of row types and filters). A
//! payment carries no sensitivity of its own: it takes its grant's, and its
//! KLE subjects are its lines' and its grant's benefits'. A payment whose
//! grant is not known counts as sensitivity 4 (VIP): what can't be
//! classified is shown only to those who may see everything. A document
//! or journal note is shown only with its case, and is held to its case's
//! class and its own together.

use std::collections::{HashMap, HashSet};

use chrono::{Months, NaiveDate};
use uuid::Uuid;

use crate::domain::{Cvr, DataArea, Kle, PartyId, Period, Sensitivity};
use crate::events::body::{ControlCaseStepRecorded, ControlOutcome, DocumentFields, PartyRole};
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

/// What the caseworker filters look at in a row: the KLE subjects it falls
/// under and its sensitivity. The alarms look at the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    pub kles: Vec<Kle>,
    pub sensitivity: Sensitivity,
}

impl Class {
    fn of(kle: Kle, sensitivity: Sensitivity) -> Class {
        Class { kles: vec![kle], sensitivity }
    }

    /// Whether `caller` may see a row of this class: every KLE subject within
    /// the KLE constraint, the sensitivity within the caller's level.
    pub fn visible_to(&self, caller: &Employee) -> bool {
        self.sensitivity <= caller.sensitivity && self.kles.iter().all(|k| caller.kle.allows(k))
    }
}

/// The class of a case.
pub fn case_class(c: &Case) -> Class {
    Class::of(c.kle, c.sensitivity)
}

/// The class of a document of case `c`: its own KLE and sensitivity where
/// it has them, else its case's — held together with its case's class (both
/// KLE subjects, the higher sensitivity), so a document is never shown where
/// its case is not, even after the case was reclassified.
pub fn document_class(c: &Case, d: &DocumentFields) -> Class {
    let mut kles = vec![c.kle];
    if let Some(own) = d.kle.filter(|k| *k != c.kle) {
        kles.push(own);
    }
    Class { kles, sensitivity: d.sensitivity.map_or(c.sensitivity, |s| s.max(c.sensitivity)) }
}

/// The class of a grant: its own sensitivity, every granted benefit's KLE.
pub fn grant_class(g: &Grant) -> Class {
    Class { kles: g.fields.benefits.iter().map(|b| b.kle).collect(), sensitivity: g.fields.sensitivity }
}

/// The class of a control case.
pub fn control_class(c: &ControlCase) -> Class {
    Class::of(c.kle, c.sensitivity)
}

/// The grants among a lookup's aggregates, by id: what a payment is
/// classified by.
pub struct Grants<'a>(HashMap<Uuid, &'a Grant>);

impl<'a> Grants<'a> {
    pub fn of(aggs: &'a [Aggregate]) -> Grants<'a> {
        Grants(
            aggs.iter()
                .filter_map(|a| match &a.state {
                    State::Grant(g) => Some((a.id, g)),
                    _ => None,
                })
                .collect(),
        )
    }

    fn grant(&self, p: &Payment) -> Option<&'a Grant> {
        p.fields.grant_id.and_then(|id| self.0.get(&id).copied())
    }

    /// A payment's class: its grant's sensitivity (VIP when the grant is
    /// unknown), its lines' KLE subjects and its grant's benefits'.
    pub fn payment_class(&self, p: &Payment) -> Class {
        let mut kles: Vec<Kle> = p.fields.lines.iter().map(|l| l.kle).collect();
        let sensitivity = match self.grant(p) {
            Some(g) => {
                kles.extend(g.fields.benefits.iter().map(|b| b.kle));
                g.fields.sensitivity
            }
            None => Sensitivity::Vip,
        };
        kles.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        kles.dedup();
        Class { kles, sensitivity }
    }
}

/// Area `sager`: the caller's authority's cases, within its KLE and
/// sensitivity constraints.
pub fn cases<'a>(aggs: &'a [Aggregate], caller: &Employee) -> Vec<(&'a Aggregate, &'a Case)> {
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Case(c) if a.authority == caller.authority && case_class(c).visible_to(caller) => Some((a, c)),
            _ => None,
        })
        .collect()
}

/// A document or journal note as a caseworker sees it, with its case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentView<'a> {
    pub case: &'a Aggregate,
    pub case_state: &'a Case,
    pub document: &'a DocumentFields,
    /// What the filters and alarms looked at (see [`document_class`]).
    pub class: Class,
}

/// Area `sager`: the documents of the cases [`cases`] shows the caller,
/// each within the caller's KLE and sensitivity constraints by its own
/// class as well.
pub fn documents<'a>(aggs: &'a [Aggregate], caller: &Employee) -> Vec<DocumentView<'a>> {
    cases(aggs, caller)
        .into_iter()
        .flat_map(|(a, c)| {
            c.documents.iter().filter_map(move |d| {
                let class = document_class(c, d);
                class.visible_to(caller).then_some(DocumentView { case: a, case_state: c, document: d, class })
            })
        })
        .collect()
}

/// Area `ydelser`: the caller's authority's grants within the KLE and
/// sensitivity constraints.
pub fn grants<'a>(aggs: &'a [Aggregate], caller: &Employee) -> Vec<(&'a Aggregate, &'a Grant)> {
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Grant(g) if a.authority == caller.authority && grant_class(g).visible_to(caller) => Some((a, g)),
            _ => None,
        })
        .collect()
}

/// Area `ydelser`: the caller's authority's payments whose class (see
/// [`Grants::payment_class`]) the caller may see.
pub fn payments<'a>(aggs: &'a [Aggregate], caller: &Employee) -> Vec<(&'a Aggregate, &'a Payment)> {
    let grants = Grants::of(aggs);
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Payment(p) if a.authority == caller.authority && grants.payment_class(p).visible_to(caller) => {
                Some((a, p))
            }
            _ => None,
        })
        .collect()
}

/// Area `beskaeftigelse`: the caller's authority's job-centre records.
/// They carry no KLE subject and no sensitivity; the area's role is their
/// boundary.
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
    pub payment_id: Uuid,
    pub benefit_type: String,
    pub period: Period,
    pub disposal_date: NaiveDate,
    pub gross_oere: i64,
    /// Not shown; what the filters and alarms looked at.
    pub class: Class,
}

/// Area `udk_ydelser` (§8): one row per payment line of UDK payments at the
/// citizen's disposal in the last 3 months; the benefit type comes from the
/// grant the line pays. Each line is classified by its KLE, its granted
/// benefit's KLE and the grant's sensitivity (VIP when the grant is
/// unknown).
pub fn udk_benefits(aggs: &[Aggregate], udk: &Cvr, today: NaiveDate, caller: &Employee) -> Vec<UdkBenefit> {
    let grants = Grants::of(aggs);
    let mut out = Vec::new();
    for a in aggs.iter().filter(|a| &a.authority == udk) {
        let State::Payment(p) = &a.state else { continue };
        if !within_months(p.fields.disposal_date, today, UDK_MONTHS) {
            continue;
        }
        let grant = grants.grant(p);
        for line in &p.fields.lines {
            let benefit = grant.and_then(|g| g.fields.benefits.iter().find(|b| b.id == line.granted_benefit_id));
            let mut kles = vec![line.kle];
            kles.extend(benefit.map(|b| b.kle));
            let class = Class { kles, sensitivity: grant.map_or(Sensitivity::Vip, |g| g.fields.sensitivity) };
            if !class.visible_to(caller) {
                continue;
            }
            out.push(UdkBenefit {
                authority: a.authority,
                payment_id: a.id,
                benefit_type: benefit.map_or_else(String::new, |b| b.benefit_type.clone()),
                period: line.period,
                disposal_date: p.fields.disposal_date,
                gross_oere: line.gross.0,
                class,
            });
        }
    }
    out.sort_by(|x, y| {
        y.disposal_date
            .cmp(&x.disposal_date)
            .then(x.benefit_type.cmp(&y.benefit_type))
            .then(x.payment_id.cmp(&y.payment_id))
            .then(x.period.start.cmp(&y.period.start))
    });
    out
}

/// A UDK case as §8 shows it: the limited case information of the cases
/// benefits are shown from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdkCase {
    pub case_id: Uuid,
    pub authority: Cvr,
    pub title: String,
    pub kle: Kle,
    pub status: &'static str,
    /// Not shown; what the filters and alarms looked at.
    pub class: Class,
}

/// Area `udk_sager` (§8): UDK cases with a grant that paid within the last 3
/// months, within the caller's KLE and sensitivity constraints.
pub fn udk_cases(aggs: &[Aggregate], udk: &Cvr, today: NaiveDate, caller: &Employee) -> Vec<UdkCase> {
    let paid_grants: HashSet<Uuid> = aggs
        .iter()
        .filter(|a| &a.authority == udk)
        .filter_map(|a| match &a.state {
            State::Payment(p) if within_months(p.fields.disposal_date, today, UDK_MONTHS) => p.fields.grant_id,
            _ => None,
        })
        .collect();
    let shown_cases: HashSet<Uuid> = aggs
        .iter()
        .filter(|a| paid_grants.contains(&a.id))
        .filter_map(|a| match &a.state {
            State::Grant(g) => g.fields.case_id,
            _ => None,
        })
        .collect();
    let mut out: Vec<UdkCase> = aggs
        .iter()
        .filter(|a| &a.authority == udk && shown_cases.contains(&a.id))
        .filter_map(|a| match &a.state {
            State::Case(c) if case_class(c).visible_to(caller) => Some(UdkCase {
                case_id: a.id,
                authority: a.authority,
                title: c.title.clone(),
                kle: c.kle,
                status: c.status().as_str(),
                class: case_class(c),
            }),
            _ => None,
        })
        .collect();
    out.sort_by_key(|c| c.case_id);
    out
}

/// A control case as §11a shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlView<'a> {
    pub case_id: Uuid,
    pub authority: Cvr,
    pub theme: &'a str,
    pub opened_on: NaiveDate,
    pub steps: &'a [ControlCaseStepRecorded],
    pub closed_without_action: bool,
    pub closed_on: Option<NaiveDate>,
    /// Not shown; what the filters and alarms looked at.
    pub class: Class,
}

/// Area `kontrolsager` (§11a), across authorities: control cases that are
/// open, and those closed without action within the last 6 months, within
/// the caller's KLE and sensitivity constraints. Cases closed with an
/// outcome, or longer ago, are not shown.
pub fn control_cases<'a>(aggs: &'a [Aggregate], today: NaiveDate, caller: &Employee) -> Vec<ControlView<'a>> {
    aggs.iter()
        .filter_map(|a| {
            let State::ControlCase(c) = &a.state else { return None };
            let shown = match &c.closed {
                None => true,
                Some(x) => x.outcome == ControlOutcome::WithoutAction && within_months(x.on, today, CONTROL_MONTHS),
            };
            (shown && control_class(c).visible_to(caller)).then(|| view(a, c))
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
        class: control_class(c),
    }
}

/// One SKAT area's records. For preliminary assessments only the newest per
/// income year is shown: a newer one supersedes the older. SKAT's records
/// carry no KLE subject, sensitivity or municipal authority: the area's
/// role, purpose and agreement are their boundary.
pub fn tax_records(aggs: &[Aggregate], area: DataArea) -> Vec<(&Aggregate, &TaxRecord)> {
    let mut rows: Vec<(&Aggregate, &TaxRecord)> = aggs
        .iter()
        .filter_map(|a| match &a.state {
            State::TaxRecord(t) if t.record.data_area() == area => Some((a, t)),
            _ => None,
        })
        .collect();
    if area == DataArea::Forskudsopgoerelse {
        let mut newest: HashMap<i32, (NaiveDate, Uuid)> = HashMap::new();
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

/// Borgerblikket: the citizen's own job-centre registrations.
pub fn own_employment<'a>(aggs: &'a [Aggregate], citizen: &PartyId) -> Vec<(&'a Aggregate, &'a Employment)> {
    aggs.iter()
        .filter_map(|a| match &a.state {
            State::Employment(e) if &a.subject == citizen => Some((a, e)),
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
