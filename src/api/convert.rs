//! From the index's values to the wire's messages. Field selection is the
//! row filters' decision; these functions only translate.

use chrono::NaiveDate;

use crate::access::filter::{ControlView, DocumentView, UdkBenefit, UdkCase};
use crate::agreements::Agreement;
use crate::audit::Record;
use crate::domain::Oere;
use crate::lookup::{Item, Rows, Section};
use crate::projection::Aggregate;
use crate::projection::state::{Case, Employment, Grant, Payment, TaxFacts, TaxRecord};
use crate::proto as pb;

fn date(d: NaiveDate) -> String {
    crate::domain::format_date(d).as_str().to_string()
}

fn opt_date(d: Option<NaiveDate>) -> String {
    d.map(date).unwrap_or_default()
}

fn history(c: &Case) -> Vec<pb::StatusChange> {
    c.status_history.iter().map(|s| pb::StatusChange { status: s.status.as_str().into(), from: date(s.from) }).collect()
}

/// An overview section: its rows, or its denial and no rows.
pub fn section(s: Section<'_>) -> pb::OverviewSection {
    let mut out = pb::OverviewSection { data_area: s.area.to_string(), ..Default::default() };
    match s.shown {
        Err(d) => out.denial = Some(pb::Denial { reason: d.reason.as_str().into(), message: d.detail }),
        Ok(shown) => {
            out.truncated = shown.truncated;
            for rows in shown.rows {
                match rows {
                    Rows::Cases(v) => out.cases = v.into_iter().map(|(a, c)| case(a, c)).collect(),
                    Rows::Grants(v) => out.grants = v.into_iter().map(|(a, g)| grant(a, g)).collect(),
                    Rows::Payments(v) => out.payments = v.into_iter().map(|(a, p)| payment(a, p)).collect(),
                    Rows::UdkCases(v) => out.udk_cases = v.iter().map(udk_case).collect(),
                    Rows::UdkBenefits(v) => out.udk_benefits = v.iter().map(udk_benefit).collect(),
                    other => unreachable!("the overview shows no {other:?}"),
                }
            }
        }
    }
    out
}

/// A timeline area: its name, and its denial when it was not shown.
pub fn timeline_area(s: &Section<'_>) -> pb::TimelineArea {
    let denial =
        s.shown.as_ref().err().map(|d| pb::Denial { reason: d.reason.as_str().into(), message: d.detail.clone() });
    pb::TimelineArea { data_area: s.area.to_string(), denial }
}

pub fn timeline_item(i: &Item) -> pb::TimelineItem {
    pb::TimelineItem {
        date: date(i.date),
        data_area: i.area.to_string(),
        kind: i.kind.as_str().into(),
        aggregate_id: i.aggregate.map(|id| id.to_string()).unwrap_or_default(),
        authority: i.authority.to_string(),
        label: i.label.clone(),
        amount_oere: i.amount.map_or(0, |a| a.0),
    }
}

pub fn case(a: &Aggregate, c: &Case) -> pb::Case {
    pb::Case {
        case_id: a.id.to_string(),
        authority: a.authority.to_string(),
        case_number: c.case_number.clone(),
        title: c.title.clone(),
        kle: c.kle.to_string(),
        action_facet: c.action_facet.as_str().into(),
        sensitivity: c.sensitivity.level() as i32,
        status: c.status().as_str().into(),
        opened_on: date(c.opened_on()),
        closed_on: opt_date(c.closed_on()),
        org_unit: c.org_unit.clone(),
        caseworker: c.caseworker.clone().unwrap_or_default(),
        source_system: c.source_system.clone(),
        status_history: history(c),
        parties: c.parties.iter().map(|p| pb::Party { role: p.role.as_str().into(), id: p.id.urn() }).collect(),
        documents: Vec::new(),
    }
}

/// A document as a caseworker sees it: its metadata and the class it is
/// held at.
pub fn document(d: &DocumentView<'_>) -> pb::Document {
    let f = d.document;
    pb::Document {
        document_id: f.document_id.to_string(),
        case_id: d.case.id.to_string(),
        authority: d.case.authority.to_string(),
        title: f.title.clone(),
        date: date(f.date),
        direction: f.direction.as_str().into(),
        kind: f.kind.as_str().into(),
        kle: f.kle.unwrap_or(d.case_state.kle).to_string(),
        sensitivity: d.class.sensitivity.level() as i32,
    }
}

/// A case as its primary party sees it: no caseworker, no org unit, no
/// other parties.
/// A citizen's case as its authority's settings show it: the heading they
/// chose, and document titles only where they show them.
pub fn my_case(v: &crate::borgerblikket::MyCase<'_>, udk: &crate::domain::Cvr) -> pb::MyCase {
    let (a, c) = (v.aggregate, v.case);
    pb::MyCase {
        case_id: a.id.to_string(),
        authority: a.authority.to_string(),
        title: v.heading.to_string(),
        kle: c.kle.to_string(),
        status: c.status().as_str().into(),
        opened_on: date(c.opened_on()),
        closed_on: opt_date(c.closed_on()),
        status_history: history(c),
        from_udk: &a.authority == udk,
        documents: v
            .documents
            .iter()
            .map(|d| pb::MyDocument {
                title: d.title.clone(),
                date: date(d.date),
                kind: d.kind.as_str().into(),
                direction: d.direction.as_str().into(),
            })
            .collect(),
    }
}

pub fn grant(a: &Aggregate, g: &Grant) -> pb::Grant {
    let f = &g.fields;
    pb::Grant {
        grant_id: a.id.to_string(),
        authority: a.authority.to_string(),
        case_id: f.case_id.map(|c| c.to_string()).unwrap_or_default(),
        grant_number: f.grant_number.clone(),
        start_date: date(f.period.start),
        end_date: opt_date(g.end()),
        sensitivity: f.sensitivity.level() as i32,
        status: g.status().into(),
        benefits: f
            .benefits
            .iter()
            .map(|b| pb::GrantedBenefit {
                benefit_id: b.id.clone(),
                name: b.name.clone(),
                benefit_type: b.benefit_type.clone(),
                kle: b.kle.to_string(),
                start_date: date(b.period.start),
                end_date: opt_date(b.period.end),
                frequency: b.plan.frequency.as_str().into(),
                amount_oere: b.plan.amount.0,
            })
            .collect(),
    }
}

pub fn payment(a: &Aggregate, p: &Payment) -> pb::Payment {
    let f = &p.fields;
    pb::Payment {
        payment_id: a.id.to_string(),
        authority: a.authority.to_string(),
        grant_id: f.grant_id.map(|g| g.to_string()).unwrap_or_default(),
        payment_number: f.payment_number.clone(),
        period_start: date(f.period.start),
        period_end: date(f.period.end),
        disposal_date: date(f.disposal_date),
        gross_oere: f.gross.0,
        after_tax_oere: f.after_tax.0,
        sent_oere: f.sent.0,
        paid_oere: f.paid.map(|x| x.0),
        paid_note: f.paid_note.clone().unwrap_or_default(),
        corrections: p.corrections as i32,
        lines: f
            .lines
            .iter()
            .map(|l| pb::PaymentLine {
                period_start: date(l.period.start),
                period_end: date(l.period.end),
                gross_oere: l.gross.0,
                kle: l.kle.to_string(),
                granted_benefit_id: l.granted_benefit_id.clone(),
            })
            .collect(),
    }
}

pub fn udk_case(c: &UdkCase) -> pb::UdkCase {
    pb::UdkCase {
        case_id: c.case_id.to_string(),
        authority: c.authority.to_string(),
        title: c.title.clone(),
        kle: c.kle.to_string(),
        status: c.status.into(),
    }
}

pub fn udk_benefit(b: &UdkBenefit) -> pb::UdkBenefit {
    pb::UdkBenefit {
        authority: b.authority.to_string(),
        benefit_type: b.benefit_type.clone(),
        period_start: date(b.period.start),
        period_end: date(b.period.end),
        disposal_date: date(b.disposal_date),
        gross_oere: b.gross_oere,
    }
}

pub fn control_case(c: &ControlView<'_>) -> pb::ControlCase {
    pb::ControlCase {
        case_id: c.case_id.to_string(),
        authority: c.authority.to_string(),
        theme: c.theme.into(),
        opened_on: date(c.opened_on),
        steps: c.steps.iter().map(|s| pb::ControlStep { step: s.step.clone(), on: date(s.on) }).collect(),
        closed_without_action: c.closed_without_action,
        closed_on: opt_date(if c.closed_without_action { c.closed_on } else { None }),
    }
}

pub fn employment(a: &Aggregate, e: &Employment) -> pb::EmploymentRecord {
    pb::EmploymentRecord {
        record_id: a.id.to_string(),
        authority: a.authority.to_string(),
        jobcenter: e.jobcenter.clone(),
        category: e.category.clone(),
        registered_on: date(e.registered_on),
        deregistered_on: opt_date(e.deregistered_on),
        deregistration_reason: e.deregistration_reason.clone().unwrap_or_default(),
        target_group: e.target_group.clone().unwrap_or_default(),
        target_group_from: opt_date(e.target_group_from),
        activities: e
            .activities
            .iter()
            .map(|x| pb::Activity {
                activity_id: x.id.clone(),
                kind: x.kind.clone(),
                start_date: date(x.start),
                end_date: opt_date(x.end),
            })
            .collect(),
    }
}

/// A job-centre registration as the citizen sees it: no deregistration
/// reason, which is the job centre's free text about them.
pub fn my_employment(a: &Aggregate, e: &Employment) -> pb::MyEmploymentRecord {
    let full = employment(a, e);
    pb::MyEmploymentRecord {
        record_id: full.record_id,
        authority: full.authority,
        jobcenter: full.jobcenter,
        category: full.category,
        registered_on: full.registered_on,
        deregistered_on: full.deregistered_on,
        target_group: full.target_group,
        target_group_from: full.target_group_from,
        activities: full.activities,
    }
}

pub fn tax_record(a: &Aggregate, t: &TaxRecord) -> pb::TaxRecord {
    let (period, employer, issued) = match &t.record {
        TaxFacts::Income(i) => (Some(i.period), Some(i.employer_cvr.to_string()), None),
        TaxFacts::PreliminaryAssessment(p) => (None, None, Some(p.issued_on)),
        TaxFacts::DigitalLogbook(l) => (None, Some(l.employer_cvr.to_string()), Some(l.work_date)),
        TaxFacts::SelfEmployment(s) => (None, Some(s.business_cvr.to_string()), Some(s.reported_on)),
        TaxFacts::PensionRights(p) => (None, p.employer_cvr.map(|c| c.to_string()), Some(p.as_of)),
        _ => (None, None, None),
    };
    pb::TaxRecord {
        record_id: a.id.to_string(),
        data_area: t.record.data_area().to_string(),
        income_year: t.record.income_year().map_or(0, |y| y.0),
        period_start: opt_date(period.map(|p| p.start)),
        period_end: opt_date(period.map(|p| p.end)),
        employer_cvr: employer.unwrap_or_default(),
        issued_on: opt_date(issued),
        supersedes: t.supersedes as i32,
        details_json: tax_details(&t.record).to_string(),
    }
}

/// A tax record's facts as `TaxRecord.details_json` promises them: the
/// record's fields under its kind (`{"income": {…}}`), every amount as an
/// integer number of øre. (The events, and the stored state, carry amounts
/// as decimal kroner strings; that stays the wire format of the sources.)
pub fn tax_details(facts: &TaxFacts) -> serde_json::Value {
    let mut v = serde_json::to_value(facts).expect("facts serialise");
    let Some(fields) = v.as_object_mut().and_then(|o| o.values_mut().next()).and_then(|f| f.as_object_mut()) else {
        unreachable!("tax facts serialise as {{kind: {{fields}}}}")
    };
    let mut oere = |key: &str, amount: Oere| {
        fields.insert(key.to_string(), amount.0.into());
    };
    match facts {
        TaxFacts::Income(i) => {
            oere("a_income", i.a_income);
            oere("a_tax", i.a_tax);
            oere("am_contribution", i.am_contribution);
        }
        TaxFacts::AnnualAssessment(a) => {
            oere("personal_income", a.personal_income);
            oere("capital_income", a.capital_income);
            oere("taxable_income", a.taxable_income);
            oere("total_tax", a.total_tax);
            oere("residual_tax", a.residual_tax);
        }
        TaxFacts::PreliminaryAssessment(p) => {
            oere("expected_personal_income", p.expected_personal_income);
            oere("expected_tax", p.expected_tax);
            oere("monthly_deduction", p.monthly_deduction);
        }
        TaxFacts::PersonControl(p) => {
            let items = p
                .items
                .iter()
                .map(|i| serde_json::json!({"code": i.code, "label": i.label, "amount": i.amount.0}))
                .collect();
            fields.insert("items".into(), serde_json::Value::Array(items));
        }
        TaxFacts::DigitalLogbook(_) => {}
        TaxFacts::SelfEmployment(s) => {
            oere("turnover", s.turnover);
            oere("business_result", s.business_result);
            oere("equity", s.equity);
            oere("interest_expenses", s.interest_expenses);
        }
        TaxFacts::PensionRights(p) => {
            oere("contributions", p.contributions);
            oere("holdings", p.holdings);
        }
    }
    v
}

pub fn agreement(a: &Agreement, today: NaiveDate) -> pb::Agreement {
    pb::Agreement {
        agreement_id: a.id.clone(),
        authority: a.authority.to_string(),
        data_area: a.area.to_string(),
        purpose_id: a.purpose_id,
        legal_basis: a.legal_basis.clone(),
        klik_task: a.klik_task.clone().unwrap_or_default(),
        status: a.status.as_str().into(),
        valid_from: date(a.valid_from),
        valid_to: date(a.valid_to),
        signed_by: a.signed_by.clone().unwrap_or_default(),
        signed_at: a.signed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        revoked_at: a.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
        active: a.is_active_on(today),
    }
}

pub fn service_agreement(a: &crate::service_agreements::ServiceAgreement, today: NaiveDate) -> pb::ServiceAgreement {
    use crate::service_agreements::Decided;
    let (decided_by, decided_at, answers, rejection_reason) = match &a.decided {
        None => (String::new(), String::new(), None, String::new()),
        Some(Decided::Approved { by, at, answers }) => (
            by.clone(),
            at.to_rfc3339(),
            Some(pb::ApprovalAnswers {
                who_how_long_why: answers.who_how_long_why.clone(),
                services_needed: answers.services_needed.clone(),
                data_scope: answers.data_scope.clone(),
                whole_period: answers.whole_period.clone(),
                understandable_later: answers.understandable_later.clone(),
            }),
            String::new(),
        ),
        Some(Decided::Rejected { by, at, reason }) => (by.clone(), at.to_rfc3339(), None, reason.clone()),
    };
    pb::ServiceAgreement {
        id: a.id.to_string(),
        it_system: a.it_system.to_string(),
        authority: a.authority.to_string(),
        justification: a.justification.clone(),
        rpcs: a.rpcs.iter().map(|r| r.name().to_string()).collect(),
        areas: a
            .scope
            .areas
            .iter()
            .map(|(area, purposes)| pb::ScopeArea {
                data_area: area.to_string(),
                purpose_ids: purposes.iter().copied().collect(),
            })
            .collect(),
        kle: a.scope.kle.clone(),
        sensitivity: a.scope.sensitivity.level() as i32,
        valid_from: date(a.valid_from),
        valid_to: date(a.valid_to),
        status: a.status.as_str().into(),
        active: a.is_active_on(today),
        requested_at: a.requested_at.to_rfc3339(),
        decided_by,
        decided_at,
        answers,
        rejection_reason,
        revoked_by: a.revoked_by.clone().unwrap_or_default(),
        revoked_at: a.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
    }
}

pub fn checkpoint(s: &crate::audit::checkpoint::SignedHead) -> pb::Checkpoint {
    use base64::Engine as _;
    pb::Checkpoint {
        size: s.head.size,
        root: hex::encode(s.head.root),
        time: s.head.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        key_id: s.head.key_id.clone(),
        signature: base64::engine::general_purpose::STANDARD.encode(s.signature),
        unvouched: s.head.unvouched.clone(),
        text: s.encode(),
    }
}

pub fn audit_record(r: &Record) -> pb::AuditRecord {
    let e = &r.entry;
    pb::AuditRecord {
        seq: r.seq,
        recorded_at: r.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        transaction_id: e.transaction_id.clone(),
        request_id: e.request_id.clone(),
        kind: e.kind.clone(),
        user_id: e.user_id.clone(),
        user_name: e.user_name.clone(),
        authority: e.authority.clone(),
        org_unit: e.org_unit.clone(),
        it_system: e.it_system.clone(),
        roles_used: e.roles_used.clone(),
        data_area: e.data_area.clone(),
        purpose_id: e.purpose_id.unwrap_or(0),
        agreement_id: e.agreement_id.clone(),
        citizen: e.citizen.clone(),
        search_criteria: e.search_criteria.clone(),
        decision: e.decision.clone(),
        reason: e.reason.clone(),
        rows_returned: e.rows_returned,
        alarms: e.alarms.clone(),
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Every string anywhere in `v` that looks like decimal kroner.
    fn kroner_strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.contains('.') && s.replace(['.', '-'], "").bytes().all(|b| b.is_ascii_digit()) => {
                out.push(s.clone())
            }
            Value::Array(a) => a.iter().for_each(|x| kroner_strings(x, out)),
            Value::Object(o) => o.values().for_each(|x| kroner_strings(x, out)),
            _ => {}
        }
    }

    #[test]
    fn tax_details_give_every_amount_of_every_area_in_oere() {
        let cases = [
            (
                json!({"income": {"period": {"start": "2025-01-01", "end": "2025-01-31"}, "employer_cvr": "29189420",
                    "a_income": "35000.00", "a_tax": "-12000.50", "am_contribution": "2800.00"}}),
                json!({"a_income": 3_500_000, "a_tax": -1_200_050, "am_contribution": 280_000}),
            ),
            (
                json!({"annual_assessment": {"income_year": 2024, "personal_income": "420000.00",
                    "capital_income": "-1500.25", "taxable_income": "400000.00", "total_tax": "150000.00",
                    "residual_tax": "0.01"}}),
                json!({"personal_income": 42_000_000, "capital_income": -150_025, "taxable_income": 40_000_000,
                    "total_tax": 15_000_000, "residual_tax": 1}),
            ),
            (
                json!({"preliminary_assessment": {"income_year": 2025, "issued_on": "2024-11-12",
                    "expected_personal_income": "430000.00", "expected_tax": "160000.00", "monthly_deduction": "4200.00"}}),
                json!({"expected_personal_income": 43_000_000, "expected_tax": 16_000_000, "monthly_deduction": 420_000}),
            ),
            (
                json!({"person_control": {"income_year": 2024, "group": "Renter",
                    "items": [{"code": "41", "label": "Renteudgifter", "amount": "-8123.45"}]}}),
                json!({"items": [{"code": "41", "label": "Renteudgifter", "amount": -812_345}]}),
            ),
            (
                json!({"digital_logbook": {"employer_cvr": "29189420", "work_date": "2025-03-03", "start": "07:00",
                    "end": "15:30"}}),
                json!({}),
            ),
            (
                json!({"self_employment": {"income_year": 2024, "business_cvr": "31122345",
                    "business_name": "Tømrer Hansen", "industry_code": "433200", "tax_scheme": "virksomhedsordningen",
                    "reported_on": "2025-06-30", "turnover": "1250000.00", "business_result": "-3120.05",
                    "equity": "480000.00", "interest_expenses": "18500.00"}}),
                json!({"turnover": 125_000_000, "business_result": -312_005, "equity": 48_000_000,
                    "interest_expenses": 1_850_000}),
            ),
            (
                json!({"pension_rights": {"income_year": 2024, "provider_cvr": "16614130", "scheme_id": "P-77120-3",
                    "pension_type": "ratepension", "employer_cvr": "29189420", "contributions": "54000.00",
                    "holdings": "812345.67", "as_of": "2024-12-31"}}),
                json!({"contributions": 5_400_000, "holdings": 81_234_567}),
            ),
        ];
        for (event_form, amounts) in cases {
            let facts: TaxFacts = serde_json::from_value(event_form.clone()).unwrap();
            let details: Value = serde_json::from_str(&tax_details(&facts).to_string()).unwrap();
            let (kind, fields) = details.as_object().unwrap().iter().next().unwrap();
            assert_eq!(Some(kind), event_form.as_object().unwrap().keys().next());
            for (key, want) in amounts.as_object().unwrap() {
                assert_eq!(&fields[key], want, "{kind}.{key}");
            }
            let mut left = Vec::new();
            kroner_strings(&details, &mut left);
            assert!(left.is_empty(), "{kind} still has kroner strings: {left:?}");
            // Nothing else changed: the non-amount fields are as in the event.
            for (key, value) in event_form[kind].as_object().unwrap() {
                if amounts.get(key).is_none() {
                    assert_eq!(&fields[key], value, "{kind}.{key}");
                }
            }
        }
    }
}
