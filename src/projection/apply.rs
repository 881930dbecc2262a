//! One event applied to one aggregate: `(state, event) → transition`.
//!
//! The version rules (duplicate, gap) are the batch planner's; this function
//! is only ever called with the next version, and decides what that event
//! does to the state, or why it can't. It takes both by value: the body moves
//! into the state and a change is made in place, so the hot path copies
//! nothing it doesn't keep. A refused event hands the state back untouched.

use super::state::*;
use crate::events::body::{CaseImported, CaseStatus, CaseUpdated, DocumentFields, StatusEntry};
use crate::events::{Body, Event, EventHeader, Reason, Rejection, Role};

/// What an applied event does to its aggregate.
// Moved once per applied event; boxing the large variant would allocate once
// per event instead.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The aggregate now has this state (created or changed).
    Upsert(Aggregate),
    /// The aggregate is deleted physically.
    Delete,
}

/// A refused event: why, and the aggregate as it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub current: Option<Aggregate>,
    pub rejection: Rejection,
}

/// Which rules an event is held to.
///
/// The event store keeps what ingest accepted. Rules added since (a status
/// change must move forward; a tax record is replaced only by a report on
/// the same thing) must not make a rebuild refuse history accepted before
/// them, so stored events are folded under the rules they were accepted
/// by: the newer transition rules apply to new events only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rules {
    /// A new event from a source: every rule.
    Ingest,
    /// An event from the event store (the rebuild): the rules every stored
    /// event was accepted under.
    Stored,
}

/// Applies `event` (at the aggregate's next version) to `current`. A
/// refusal is boxed: it is the rare path, and keeps the common result small.
pub fn apply(current: Option<Aggregate>, event: Event) -> (EventHeader, Result<Transition, Box<Refused>>) {
    apply_under(Rules::Ingest, current, event)
}

/// [`apply`] under the given rules.
pub fn apply_under(
    rules: Rules,
    current: Option<Aggregate>,
    event: Event,
) -> (EventHeader, Result<Transition, Box<Refused>>) {
    let (header, body) = event.split();
    let result = transition(rules, current, &header, body);
    (header, result)
}

fn transition(
    rules: Rules,
    current: Option<Aggregate>,
    h: &EventHeader,
    body: Body,
) -> Result<Transition, Box<Refused>> {
    let kind = h.kind;
    let refuse =
        |current, reason, detail: String| Err(Box::new(Refused { current, rejection: Rejection::new(reason, detail) }));
    if let Some(cur) = &current {
        if cur.kind() != kind.aggregate_kind() {
            let detail =
                format!("aggregate is a {}, event {} is for a {}", cur.kind(), kind.name(), kind.aggregate_kind());
            return refuse(current, Reason::AggregateKindMismatch, detail);
        }
        if cur.subject != h.subject {
            return refuse(
                current,
                Reason::SubjectMismatch,
                "the event's subject is not the aggregate's citizen".into(),
            );
        }
    }
    if kind.role() == Role::Delete {
        return Ok(Transition::Delete);
    }
    let mut agg = match current {
        None if kind.role() != Role::FullState => {
            let detail = format!("{} can't start an aggregate; the first event must carry its full state", kind.name());
            return refuse(None, Reason::NotACreationEvent, detail);
        }
        None => Aggregate {
            id: h.aggregate_id,
            version: h.aggregate_version,
            subject: h.subject,
            authority: h.authority,
            source: h.source.clone(),
            updated_at: h.time,
            state: full_state(body, None),
        },
        Some(mut cur) if kind.role() == Role::FullState => {
            let next = full_state(body, Some(&mut cur.state));
            if rules == Rules::Ingest
                && let (State::TaxRecord(old), State::TaxRecord(new)) = (&cur.state, &next)
                && let Err(rejection) = replaces(&old.record, &new.record)
            {
                return Err(Box::new(Refused { current: Some(cur), rejection }));
            }
            cur.state = next;
            cur
        }
        Some(mut cur) => match change(rules, &mut cur.state, body) {
            Ok(()) => cur,
            Err(rejection) => {
                return Err(Box::new(Refused { current: Some(cur), rejection }));
            }
        },
    };
    agg.version = h.aggregate_version;
    agg.authority = h.authority;
    agg.source = h.source.clone();
    agg.updated_at = h.time;
    Ok(Transition::Upsert(agg))
}

fn invalid(detail: &str) -> Rejection {
    Rejection::new(Reason::InvalidTransition, detail)
}

/// Whether a new version of a tax record may replace the stored one: it
/// reports on the same thing (area, income year; the same business or the
/// same pension scheme) and is not older. Anything else is a source error
/// the index must not paper over by replacing one record with another.
fn replaces(old: &TaxFacts, new: &TaxFacts) -> Result<(), Rejection> {
    if old.data_area() != new.data_area() {
        return Err(invalid("a tax record's new version is of another data area"));
    }
    if old.income_year() != new.income_year() {
        return Err(invalid("a tax record's new version is for another income year"));
    }
    match (old, new) {
        (TaxFacts::SelfEmployment(o), TaxFacts::SelfEmployment(n)) => {
            if o.business_cvr != n.business_cvr {
                return Err(invalid("a self-employment report's new version is for another business"));
            }
            if n.reported_on < o.reported_on {
                return Err(invalid("a self-employment report's new version is dated before the one it replaces"));
            }
        }
        (TaxFacts::PensionRights(o), TaxFacts::PensionRights(n)) => {
            if (o.provider_cvr, &o.scheme_id) != (n.provider_cvr, &n.scheme_id) {
                return Err(invalid("a pension report's new version is for another scheme"));
            }
            if n.as_of < o.as_of {
                return Err(invalid("a pension report's new version is as of a date before the one it replaces"));
            }
        }
        _ => {}
    }
    Ok(())
}

/// The state carried by a full-state event; `previous` only counts
/// supersessions and gives up a re-imported case's documents (an import
/// carries the case's own fields; its documents have events of their own).
/// A replaced tax record stays as it was, to be compared with the new one.
fn full_state(body: Body, previous: Option<&mut State>) -> State {
    let (supersedes, documents) = match previous {
        Some(State::TaxRecord(t)) => (t.supersedes + 1, Vec::new()),
        Some(State::Case(c)) => (0, std::mem::take(&mut c.documents)),
        _ => (0, Vec::new()),
    };
    let tax = |record| State::TaxRecord(TaxRecord { record, supersedes });
    match body {
        Body::CaseImported(CaseImported(f)) => State::Case(Case {
            case_number: f.case_number,
            title: f.title,
            kle: f.kle,
            action_facet: f.action_facet,
            sensitivity: f.sensitivity,
            parties: f.parties,
            org_unit: f.org_unit,
            caseworker: f.caseworker,
            source_system: f.source_system,
            status_history: f.status_history.unwrap_or_default(),
            documents,
        }),
        Body::ControlCaseOpened(o) => State::ControlCase(ControlCase {
            case_number: o.case_number,
            theme: o.theme,
            kle: o.kle,
            sensitivity: o.sensitivity,
            opened_on: o.opened_on,
            org_unit: o.org_unit,
            caseworker: o.caseworker,
            source_system: o.source_system,
            steps: Vec::new(),
            closed: None,
        }),
        Body::GrantAwarded(g) => State::Grant(Grant { fields: g, ended: None }),
        Body::PaymentEffectuated(p) => State::Payment(Payment { fields: p, corrections: 0 }),
        Body::EmploymentRegistered(r) => State::Employment(Employment {
            registered_on: r.registered_on,
            jobcenter: r.jobcenter,
            category: r.category,
            deregistered_on: None,
            deregistration_reason: None,
            target_group: None,
            target_group_from: None,
            activities: Vec::new(),
        }),
        Body::IncomeReported(i) => tax(TaxFacts::Income(i)),
        Body::AnnualAssessmentIssued(a) => tax(TaxFacts::AnnualAssessment(a)),
        Body::PreliminaryAssessmentIssued(p) => tax(TaxFacts::PreliminaryAssessment(p)),
        Body::PersonControlRecorded(p) => tax(TaxFacts::PersonControl(p)),
        Body::DigitalLogbookRecorded(l) => tax(TaxFacts::DigitalLogbook(l)),
        Body::SelfEmploymentReported(s) => tax(TaxFacts::SelfEmployment(s)),
        Body::PensionRightsReported(p) => tax(TaxFacts::PensionRights(p)),
        other => unreachable!("{:?} is not a full-state event", other.kind()),
    }
}

/// Applies a change in place. Every check comes before the first write, so a
/// refused change leaves the state as it was.
fn change(rules: Rules, state: &mut State, body: Body) -> Result<(), Rejection> {
    let kind = state.kind();
    match (state, body) {
        (State::Case(c), Body::CaseUpdated(CaseUpdated(f))) => {
            c.case_number = f.case_number;
            c.title = f.title;
            c.kle = f.kle;
            c.action_facet = f.action_facet;
            c.sensitivity = f.sensitivity;
            c.parties = f.parties;
            c.org_unit = f.org_unit;
            c.caseworker = f.caseworker;
            c.source_system = f.source_system;
        }
        (State::Case(c), Body::CaseStatusChanged(s)) => {
            let last = c.status_history.last().expect("a case has a history");
            if s.from < last.from {
                return Err(invalid("a status change can't be dated before the current status"));
            }
            if rules == Rules::Ingest && s.status <= last.status {
                return Err(invalid(&format!(
                    "{} -> {} does not move forward; a decided or closed case goes back with case.reopened",
                    last.status.as_str(),
                    s.status.as_str()
                )));
            }
            c.status_history.push(StatusEntry { status: s.status, from: s.from });
        }
        (State::Case(c), Body::CaseReopened(s)) => {
            let last = c.status_history.last().expect("a case has a history");
            if s.from < last.from {
                return Err(invalid("a reopening can't be dated before the current status"));
            }
            if last.status < CaseStatus::Afgjort {
                return Err(invalid(&format!(
                    "a case in {} is neither decided nor closed, so it can't be reopened",
                    last.status.as_str()
                )));
            }
            if s.status >= last.status {
                return Err(invalid(&format!(
                    "reopening {} -> {} does not go back; a forward move is case.status_changed",
                    last.status.as_str(),
                    s.status.as_str()
                )));
            }
            c.status_history.push(StatusEntry { status: s.status, from: s.from });
        }
        (State::Case(c), Body::DocumentRegistered(d)) => {
            if c.documents.iter().any(|x| x.document_id == d.document_id) {
                return Err(invalid(
                    "the document id is already registered on the case; change it with document.updated",
                ));
            }
            if c.documents.len() >= Case::MAX_DOCUMENTS {
                return Err(invalid("a case holds at most 1000 documents"));
            }
            narrows(c, &d)?;
            c.documents.push(d);
        }
        (State::Case(c), Body::DocumentUpdated(d)) => {
            narrows(c, &d)?;
            let slot = c
                .documents
                .iter_mut()
                .find(|x| x.document_id == d.document_id)
                .ok_or_else(|| invalid("no document with that id is registered on the case"))?;
            *slot = d;
        }
        (State::Case(c), Body::DocumentDeleted(d)) => {
            let at = c
                .documents
                .iter()
                .position(|x| x.document_id == d.document_id)
                .ok_or_else(|| invalid("no document with that id is registered on the case"))?;
            c.documents.remove(at);
        }
        (State::ControlCase(c), Body::ControlCaseStepRecorded(s)) => {
            if c.closed.is_some() {
                return Err(invalid("the control case is closed"));
            }
            c.steps.push(s);
        }
        (State::ControlCase(c), Body::ControlCaseClosed(x)) => {
            if c.closed.is_some() {
                return Err(invalid("the control case is already closed"));
            }
            if x.on < c.opened_on {
                return Err(invalid("a control case can't close before it opened"));
            }
            c.closed = Some(x);
        }
        (State::Grant(g), Body::GrantChanged(f)) => g.fields = f,
        (State::Grant(g), Body::GrantEnded(e)) => {
            if e.end < g.fields.period.start {
                return Err(invalid("a grant can't end before it starts"));
            }
            g.ended = Some(e);
        }
        (State::Payment(p), Body::PaymentCorrected(f)) => {
            p.fields = f;
            p.corrections += 1;
        }
        (State::Employment(e), Body::EmploymentDeregistered(d)) => {
            if d.deregistered_on < e.registered_on {
                return Err(invalid("deregistration can't precede registration"));
            }
            e.deregistered_on = Some(d.deregistered_on);
            e.deregistration_reason = Some(d.reason);
        }
        (State::Employment(e), Body::EmploymentTargetGroupAssigned(t)) => {
            e.target_group = Some(t.target_group);
            e.target_group_from = Some(t.from);
        }
        (State::Employment(e), Body::EmploymentActivityStarted(a)) => {
            if e.activities.iter().any(|x| x.id == a.activity_id) {
                return Err(invalid("the activity id is already in use"));
            }
            if e.activities.len() >= 1000 {
                return Err(invalid("an employment record holds at most 1000 activities"));
            }
            e.activities.push(Activity { id: a.activity_id, kind: a.kind, start: a.start, end: None });
        }
        (State::Employment(e), Body::EmploymentActivityEnded(a)) => {
            let act = e
                .activities
                .iter_mut()
                .find(|x| x.id == a.activity_id)
                .ok_or_else(|| invalid("no activity with that id was started"))?;
            if a.end < act.start {
                return Err(invalid("an activity can't end before it starts"));
            }
            act.end = Some(a.end);
        }
        (_, other) => unreachable!("kind checked before: {:?} on {kind:?}", other.kind()),
    }
    Ok(())
}

/// A document's own class may only narrow its case's, as the case is now: a
/// KLE subject (`dd.dd.dd`) is the finest level of the systematics, so a
/// document's KLE, when it has one, is its case's; its sensitivity is the
/// case's or higher. The detail names the rule, never the values.
fn narrows(c: &Case, d: &DocumentFields) -> Result<(), Rejection> {
    if d.kle.is_some_and(|k| k != c.kle) {
        return Err(invalid("a document's kle must be its case's: a KLE subject has no narrower code"));
    }
    if d.sensitivity.is_some_and(|s| s < c.sensitivity) {
        return Err(invalid("a document's sensitivity can't be below its case's"));
    }
    Ok(())
}
