//! An aggregate's state flattened into the rows of the projection tables.
//!
//! Pure: the same aggregate always gives the same rows, which is what makes
//! a rebuild comparable row by row with the live tables.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::schema::*;
use crate::projection::state::{Aggregate, State, TaxFacts};

/// One cell. Text and bytes may borrow, so a bulk write binds an event's
/// payload without copying it first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val<'a> {
    Null,
    Int(i64),
    Text(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Date(NaiveDate),
    Uuid(Uuid),
    Time(DateTime<Utc>),
}

impl<'a> Val<'a> {
    /// Text borrowed for the length of one statement.
    pub fn str(v: &'a str) -> Val<'a> {
        Val::Text(Cow::Borrowed(v))
    }

    /// Bytes borrowed for the length of one statement.
    pub fn bytes(v: &'a [u8]) -> Val<'a> {
        Val::Bytes(Cow::Borrowed(v))
    }
}

impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<i32> for Val<'_> {
    fn from(v: i32) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<&str> for Val<'_> {
    fn from(v: &str) -> Self {
        Val::Text(Cow::Owned(v.to_string()))
    }
}
impl From<String> for Val<'_> {
    fn from(v: String) -> Self {
        Val::Text(Cow::Owned(v))
    }
}
impl From<NaiveDate> for Val<'_> {
    fn from(v: NaiveDate) -> Self {
        Val::Date(v)
    }
}
impl From<Uuid> for Val<'_> {
    fn from(v: Uuid) -> Self {
        Val::Uuid(v)
    }
}
impl From<DateTime<Utc>> for Val<'_> {
    fn from(v: DateTime<Utc>) -> Self {
        Val::Time(v)
    }
}
impl<'a, T: Into<Val<'a>>> From<Option<T>> for Val<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Val::Null, Into::into)
    }
}

/// One row of cells.
pub type Row<'a> = Vec<Val<'a>>;

/// Rows grouped by table: `tables[i]` holds rows for `TABLES[i]`.
#[derive(Debug)]
pub struct RowSet {
    pub tables: Vec<Vec<Row<'static>>>,
    /// Whether the reporting tables' rows are made too.
    pub reporting: bool,
}

impl Default for RowSet {
    /// The serving tables' rows only, as ingest writes them.
    fn default() -> Self {
        RowSet::new(false)
    }
}

impl RowSet {
    pub fn new(reporting: bool) -> RowSet {
        RowSet { tables: vec![Vec::new(); TABLES.len()], reporting }
    }

    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(Vec::is_empty)
    }

    /// Adds every row of `agg`, the aggregates row included (the reporting
    /// tables' rows only if the set is for reporting).
    pub fn add(&mut self, agg: &Aggregate) {
        let id = agg.id;
        let citizen = agg.subject.urn();
        let authority = agg.authority.as_str();
        let (closed_on, kle, link) = match &agg.state {
            State::Case(c) => (c.closed_on(), Some(c.kle.as_str()), None),
            State::ControlCase(c) => (c.closed.as_ref().map(|x| x.on), Some(c.kle.as_str()), None),
            State::Grant(g) => (None, None, g.fields.case_id),
            State::Payment(p) => (None, None, p.fields.grant_id),
            State::Employment(_) | State::TaxRecord(_) => (None, None, None),
        };
        self.tables[AGGREGATES].push(vec![
            id.into(),
            agg.kind().as_str().into(),
            agg.version.into(),
            citizen.clone().into(),
            authority.into(),
            (&*agg.source).into(),
            agg.updated_at.into(),
            agg.state.to_json().into(),
            closed_on.into(),
            kle.into(),
            link.into(),
        ]);
        if let State::Case(c) = &agg.state {
            for (i, p) in c.parties.iter().enumerate() {
                self.tables[CASE_PARTIES].push(vec![
                    id.into(),
                    (i as i64).into(),
                    p.role.as_str().into(),
                    p.id.urn().into(),
                ]);
            }
        }
        if !self.reporting {
            return;
        }
        match &agg.state {
            State::Case(c) => {
                self.tables[CASES].push(vec![
                    id.into(),
                    citizen.into(),
                    authority.into(),
                    c.case_number.as_str().into(),
                    c.title.as_str().into(),
                    c.kle.as_str().into(),
                    c.action_facet.as_str().into(),
                    c.sensitivity.level().into(),
                    c.status().as_str().into(),
                    c.opened_on().into(),
                    c.closed_on().into(),
                    c.org_unit.as_str().into(),
                    c.caseworker.clone().into(),
                    c.source_system.as_str().into(),
                    (&*agg.source).into(),
                    agg.updated_at.into(),
                ]);
                for (i, s) in c.status_history.iter().enumerate() {
                    self.tables[CASE_STATUS_HISTORY].push(vec![
                        id.into(),
                        (i as i64).into(),
                        s.status.as_str().into(),
                        s.from.into(),
                    ]);
                }
            }
            State::ControlCase(c) => {
                self.tables[CONTROL_CASES].push(vec![
                    id.into(),
                    citizen.into(),
                    authority.into(),
                    c.case_number.as_str().into(),
                    c.theme.as_str().into(),
                    c.kle.as_str().into(),
                    c.sensitivity.level().into(),
                    c.opened_on.into(),
                    c.closed.as_ref().map(|x| x.on).into(),
                    c.closed.as_ref().map(|x| x.outcome.as_str()).into(),
                    c.org_unit.as_str().into(),
                    c.caseworker.clone().into(),
                    c.source_system.as_str().into(),
                    agg.updated_at.into(),
                ]);
                for (i, s) in c.steps.iter().enumerate() {
                    self.tables[CONTROL_CASE_STEPS].push(vec![
                        id.into(),
                        (i as i64).into(),
                        s.step.as_str().into(),
                        s.on.into(),
                    ]);
                }
            }
            State::Grant(g) => {
                let f = &g.fields;
                self.tables[GRANTS].push(vec![
                    id.into(),
                    citizen.into(),
                    authority.into(),
                    f.case_id.into(),
                    f.grant_number.as_str().into(),
                    f.period.start.into(),
                    g.end().into(),
                    f.sensitivity.level().into(),
                    g.status().into(),
                    g.ended.as_ref().and_then(|e| e.reason.clone()).or_else(|| f.reason.clone()).into(),
                    agg.updated_at.into(),
                ]);
                for b in &f.benefits {
                    self.tables[GRANTED_BENEFITS].push(vec![
                        id.into(),
                        b.id.as_str().into(),
                        b.name.as_str().into(),
                        b.benefit_type.as_str().into(),
                        b.kle.as_str().into(),
                        b.period.start.into(),
                        b.period.end.into(),
                        b.plan.frequency.as_str().into(),
                        b.plan.amount.0.into(),
                    ]);
                }
            }
            State::Payment(p) => {
                let f = &p.fields;
                self.tables[PAYMENTS].push(vec![
                    id.into(),
                    citizen.into(),
                    authority.into(),
                    f.grant_id.into(),
                    f.payment_number.as_str().into(),
                    f.period.start.into(),
                    f.period.end.into(),
                    f.disposal_date.into(),
                    f.gross.0.into(),
                    f.after_tax.0.into(),
                    f.sent.0.into(),
                    f.paid.map(|x| x.0).into(),
                    f.paid_note.clone().into(),
                    i64::from(p.corrections).into(),
                    agg.updated_at.into(),
                ]);
                for (i, l) in f.lines.iter().enumerate() {
                    self.tables[PAYMENT_LINES].push(vec![
                        id.into(),
                        (i as i64).into(),
                        l.period.start.into(),
                        l.period.end.into(),
                        l.gross.0.into(),
                        l.kle.as_str().into(),
                        l.granted_benefit_id.as_str().into(),
                    ]);
                }
            }
            State::Employment(e) => {
                self.tables[EMPLOYMENT_RECORDS].push(vec![
                    id.into(),
                    citizen.into(),
                    authority.into(),
                    e.jobcenter.as_str().into(),
                    e.category.as_str().into(),
                    e.registered_on.into(),
                    e.deregistered_on.into(),
                    e.deregistration_reason.clone().into(),
                    e.target_group.clone().into(),
                    e.target_group_from.into(),
                    agg.updated_at.into(),
                ]);
                for a in &e.activities {
                    self.tables[EMPLOYMENT_ACTIVITIES].push(vec![
                        id.into(),
                        a.id.as_str().into(),
                        a.kind.as_str().into(),
                        a.start.into(),
                        a.end.into(),
                    ]);
                }
            }
            State::TaxRecord(t) => {
                let (period, employer, issued) = match &t.record {
                    TaxFacts::Income(i) => (Some(i.period), Some(i.employer_cvr.as_str()), None),
                    TaxFacts::PreliminaryAssessment(p) => (None, None, Some(p.issued_on)),
                    TaxFacts::DigitalLogbook(l) => (
                        Some(crate::domain::Period { start: l.work_date, end: l.work_date }),
                        Some(l.employer_cvr.as_str()),
                        None,
                    ),
                    TaxFacts::SelfEmployment(s) => (None, Some(s.business_cvr.as_str()), Some(s.reported_on)),
                    TaxFacts::PensionRights(p) => (None, p.employer_cvr.as_ref().map(|c| c.as_str()), Some(p.as_of)),
                    TaxFacts::AnnualAssessment(_) | TaxFacts::PersonControl(_) => (None, None, None),
                };
                self.tables[TAX_RECORDS].push(vec![
                    id.into(),
                    citizen.into(),
                    authority.into(),
                    t.record.data_area().as_str().into(),
                    t.record.income_year().map(|y| i64::from(y.0)).into(),
                    period.map(|p| p.start).into(),
                    period.map(|p| p.end).into(),
                    employer.into(),
                    issued.into(),
                    i64::from(t.supersedes).into(),
                    serde_json::to_string(&t.record).expect("facts serialise").into(),
                    agg.updated_at.into(),
                ]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_matches_its_table() {
        // The generator covers every aggregate kind; each row it flattens to
        // must have one typed cell per column of its table.
        let events = crate::simulator::DemoStream::new(7, 600).collect::<Vec<_>>();
        let mut latest: std::collections::HashMap<uuid::Uuid, Aggregate> = std::collections::HashMap::new();
        for m in events.iter().filter(|m| m.expect == crate::simulator::Expect::Event) {
            let e = crate::events::decode(&m.payload, Some(&m.key), &Default::default()).unwrap();
            let id = e.aggregate_id;
            if e.aggregate_version != latest.get(&id).map_or(0, |a| a.version) + 1 {
                continue; // sent ahead of its predecessor; the fold below doesn't need it
            }
            if let (_, Ok(crate::projection::Transition::Upsert(a))) = crate::projection::apply(latest.remove(&id), e) {
                latest.insert(id, a);
            }
        }
        let mut set = RowSet::new(true);
        for a in latest.values() {
            set.add(a);
        }
        for (t, rows) in TABLES.iter().zip(&set.tables) {
            assert!(!rows.is_empty(), "no rows for {}", t.name);
            for row in rows {
                assert_eq!(row.len(), t.columns.len(), "{}", t.name);
                for (cell, col) in row.iter().zip(t.columns) {
                    let ok = match (cell, col.ty) {
                        (Val::Null, _) => col.nullable,
                        (Val::Bytes(_), ColType::Bytes)
                        | (Val::Int(_), ColType::Int | ColType::Int32)
                        | (Val::Text(_), ColType::Text)
                        | (Val::Date(_), ColType::Date)
                        | (Val::Uuid(_), ColType::Uuid)
                        | (Val::Time(_), ColType::Time) => true,
                        _ => false,
                    };
                    assert!(ok, "{}.{}: {cell:?}", t.name, col.name);
                }
            }
        }
    }
}
