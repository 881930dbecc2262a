//! The state of each aggregate kind, as the projector folds it from events.
//!
//! The state is stored as JSON beside the aggregate's version, so the next
//! event applies without reassembling it from the read-model tables, and the
//! read-model rows are a pure function of it (see `crate::store::rows`).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{ActionFacet, AggregateKind, Cvr, DataArea, Kle, PartyId, Sensitivity, date_format};
use crate::events::body::{
    AnnualAssessmentIssued, CaseStatus, ControlCaseClosed, ControlCaseStepRecorded, DigitalLogbookRecorded,
    DocumentFields, GrantEnded, GrantFields, IncomeReported, IncomeYear, Party, PaymentFields, PensionRightsReported,
    PersonControlRecorded, PreliminaryAssessmentIssued, SelfEmploymentReported, StatusEntry,
};

/// One aggregate: its identity, the version of the last applied event, and
/// its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate {
    pub id: Uuid,
    pub version: i64,
    /// The citizen the aggregate is about (the events' `subject`).
    pub subject: PartyId,
    /// The responsible authority as of the last event.
    pub authority: Cvr,
    /// The sending system as of the last event.
    pub source: Arc<str>,
    /// When the last applied event happened in the source.
    pub updated_at: DateTime<Utc>,
    pub state: State,
}

impl Aggregate {
    pub fn kind(&self) -> AggregateKind {
        self.state.kind()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Case(Case),
    ControlCase(ControlCase),
    Grant(Grant),
    Payment(Payment),
    Employment(Employment),
    TaxRecord(TaxRecord),
}

impl State {
    pub fn kind(&self) -> AggregateKind {
        match self {
            State::Case(_) => AggregateKind::Case,
            State::ControlCase(_) => AggregateKind::ControlCase,
            State::Grant(_) => AggregateKind::Grant,
            State::Payment(_) => AggregateKind::Payment,
            State::Employment(_) => AggregateKind::Employment,
            State::TaxRecord(_) => AggregateKind::TaxRecord,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("state serialises")
    }

    pub fn from_json(json: &str) -> Result<State, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub case_number: String,
    pub title: String,
    pub kle: Kle,
    pub action_facet: ActionFacet,
    pub sensitivity: Sensitivity,
    pub parties: Vec<Party>,
    pub org_unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caseworker: Option<String>,
    pub source_system: String,
    /// Never empty; begins with Opstaaet.
    pub status_history: Vec<StatusEntry>,
    /// The case's documents and journal notes (metadata only), in the order
    /// they were registered; at most [`Case::MAX_DOCUMENTS`]. They live in
    /// the case's snapshot, so whatever deletes the case deletes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<DocumentFields>,
}

impl Case {
    /// Documents one case holds at most: the snapshot is loaded and written
    /// whole on every event of the case, so it must stay small.
    pub const MAX_DOCUMENTS: usize = 1000;

    pub fn status(&self) -> CaseStatus {
        self.status_history.last().expect("a case has a history").status
    }

    pub fn opened_on(&self) -> NaiveDate {
        self.status_history[0].from
    }

    /// The date the case was closed, if its current status is Afsluttet.
    pub fn closed_on(&self) -> Option<NaiveDate> {
        let last = self.status_history.last()?;
        (last.status == CaseStatus::Afsluttet).then_some(last.from)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlCase {
    pub case_number: String,
    pub theme: String,
    pub kle: Kle,
    pub sensitivity: Sensitivity,
    #[serde(with = "date_format")]
    pub opened_on: NaiveDate,
    pub org_unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caseworker: Option<String>,
    pub source_system: String,
    pub steps: Vec<ControlCaseStepRecorded>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<ControlCaseClosed>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub fields: GrantFields,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<GrantEnded>,
}

impl Grant {
    pub fn status(&self) -> &'static str {
        if self.ended.is_some() { "ended" } else { "active" }
    }

    /// The grant's end: the ending date once ended, else the planned end.
    pub fn end(&self) -> Option<NaiveDate> {
        self.ended.as_ref().map(|e| e.end).or(self.fields.period.end)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub fields: PaymentFields,
    /// How many corrections replaced the original effectuation.
    pub corrections: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub id: String,
    pub kind: String,
    #[serde(with = "date_format")]
    pub start: NaiveDate,
    #[serde(default, with = "date_format::option", skip_serializing_if = "Option::is_none")]
    pub end: Option<NaiveDate>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Employment {
    #[serde(with = "date_format")]
    pub registered_on: NaiveDate,
    pub jobcenter: String,
    pub category: String,
    #[serde(default, with = "date_format::option", skip_serializing_if = "Option::is_none")]
    pub deregistered_on: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistration_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_group: Option<String>,
    #[serde(default, with = "date_format::option", skip_serializing_if = "Option::is_none")]
    pub target_group_from: Option<NaiveDate>,
    pub activities: Vec<Activity>,
}

/// A record in one of the five SKAT data areas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxRecord {
    pub record: TaxFacts,
    /// How many earlier versions this one superseded (corrections, or newer
    /// preliminary assessments for the same income year).
    pub supersedes: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxFacts {
    Income(IncomeReported),
    AnnualAssessment(AnnualAssessmentIssued),
    PreliminaryAssessment(PreliminaryAssessmentIssued),
    PersonControl(PersonControlRecorded),
    DigitalLogbook(DigitalLogbookRecorded),
    SelfEmployment(SelfEmploymentReported),
    PensionRights(PensionRightsReported),
}

impl TaxFacts {
    pub fn data_area(&self) -> DataArea {
        match self {
            TaxFacts::Income(_) => DataArea::Indkomst,
            TaxFacts::AnnualAssessment(_) => DataArea::Aarsopgoerelse,
            TaxFacts::PreliminaryAssessment(_) => DataArea::Forskudsopgoerelse,
            TaxFacts::PersonControl(_) => DataArea::Personkontroloplysninger,
            TaxFacts::DigitalLogbook(_) => DataArea::DigitalLogbog,
            TaxFacts::SelfEmployment(_) => DataArea::SelvstaendigVirksomhed,
            TaxFacts::PensionRights(_) => DataArea::Pensionsrettigheder,
        }
    }

    pub fn income_year(&self) -> Option<IncomeYear> {
        match self {
            TaxFacts::Income(i) => Some(IncomeYear(chrono::Datelike::year(&i.period.start))),
            TaxFacts::AnnualAssessment(a) => Some(a.income_year),
            TaxFacts::PreliminaryAssessment(p) => Some(p.income_year),
            TaxFacts::PersonControl(p) => Some(p.income_year),
            TaxFacts::DigitalLogbook(l) => Some(IncomeYear(chrono::Datelike::year(&l.work_date))),
            TaxFacts::SelfEmployment(s) => Some(s.income_year),
            TaxFacts::PensionRights(p) => Some(p.income_year),
        }
    }
}
