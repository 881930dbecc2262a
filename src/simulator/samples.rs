//! One message of every event type with every optional field present: the
//! shapes the field-rule tests walk (every string of every family) and the
//! fuzzer's seeds start from.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::events::{EventKind, TYPE_PREFIX};

/// The data of a `kind` event with every optional field present.
pub fn data(kind: EventKind) -> Value {
    use EventKind as K;
    let period = json!({"start": "2025-03-01", "end": "2025-03-31"});
    let case = json!({
        "case_number": "2025-004711",
        "title": "Ansøgning om kontanthjælp",
        "kle": "32.18.04",
        "action_facet": "G01",
        "sensitivity": 2,
        "parties": [
            {"role": "primary", "id": "urn:oio:cpr-nr:1203814417"},
            {"role": "secondary", "id": "urn:oio:udk:borgerid:123456789012"}
        ],
        "org_unit": "Ydelsesservice",
        "caseworker": "Mette Hansen",
        "source_system": "KY",
        "status_history": [{"status": "Opstaaet", "from": "2025-03-01"}, {"status": "Oplyst", "from": "2025-03-02"}]
    });
    let grant = json!({
        "grant_number": "B-2025-17",
        "case_id": "3f0c8b52-6a5e-4f0e-9d0e-2b7c1c9f4e11",
        "period": period,
        "sensitivity": 2,
        "reason": "Bevilget efter §11.\nSe sagen.",
        "benefits": [{
            "id": "B1",
            "name": "Kontanthjælp",
            "benefit_type": "Kontanthjælp",
            "kle": "32.18.04",
            "period": period,
            "plan": {"frequency": "monthly", "amount": "12500.00"}
        }]
    });
    let payment = json!({
        "payment_number": "U-2025-03-00017",
        "grant_id": "5d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6",
        "period": period,
        "disposal_date": "2025-03-31",
        "gross": "12500.00",
        "after_tax": "7875.00",
        "sent": "7875.00",
        "paid": "7500.00",
        "paid_note": "Modregnet 375,00 kr.",
        "lines": [{"period": period, "gross": "12500.00", "kle": "32.18.04", "granted_benefit_id": "B1"}]
    });
    let deleted = json!({"reason": "Slettet i kildesystemet"});
    match kind {
        K::CaseImported => case,
        K::CaseUpdated => {
            let mut c = case;
            c.as_object_mut().expect("an object").remove("status_history");
            c
        }
        K::CaseStatusChanged => json!({"status": "Afgjort", "from": "2025-03-20"}),
        K::CaseReopened => json!({"status": "Oplyst", "from": "2025-04-02"}),
        K::DocumentRegistered | K::DocumentUpdated => json!({
            "document_id": "7b2e4c1d-9a8f-4e3b-8c2d-1f0e9d8c7b6a", "title": "Ansøgning om kontanthjælp",
            "date": "2025-03-01", "direction": "incoming", "kind": "document", "kle": "32.18.04", "sensitivity": 3
        }),
        K::DocumentDeleted => json!({
            "document_id": "7b2e4c1d-9a8f-4e3b-8c2d-1f0e9d8c7b6a", "reason": "Journaliseret på forkert sag"
        }),
        K::ControlCaseOpened => json!({
            "case_number": "K-2025-3", "theme": "Samlivsforhold", "kle": "32.18.04", "sensitivity": 3,
            "opened_on": "2025-03-01", "org_unit": "Kontrolenheden", "caseworker": "Jens Jensen",
            "source_system": "UDK Kontrol"
        }),
        K::ControlCaseStepRecorded => json!({"step": "Partshøring", "on": "2025-03-10"}),
        K::ControlCaseClosed => json!({"on": "2025-04-01", "outcome": "without_action"}),
        K::GrantAwarded | K::GrantChanged => grant,
        K::GrantEnded => json!({"end": "2025-03-31", "reason": "Overgået til\tandet forsørgelsesgrundlag"}),
        K::PaymentEffectuated | K::PaymentCorrected => payment,
        K::EmploymentRegistered => {
            json!({"registered_on": "2025-03-01", "jobcenter": "Jobcenter Aarhus", "category": "Kontanthjælpsmodtager"})
        }
        K::EmploymentDeregistered => json!({"deregistered_on": "2025-05-01", "reason": "I ordinær beskæftigelse"}),
        K::EmploymentTargetGroupAssigned => json!({"target_group": "Jobparat", "from": "2025-03-02"}),
        K::EmploymentActivityStarted => {
            json!({"activity_id": "A-1", "kind": "Virksomhedspraktik", "start": "2025-03-10"})
        }
        K::EmploymentActivityEnded => json!({"activity_id": "A-1", "end": "2025-04-10"}),
        K::IncomeReported => json!({
            "period": period, "employer_cvr": "29189420", "a_income": "31250.00", "a_tax": "9000.00",
            "am_contribution": "2500.00"
        }),
        K::AnnualAssessmentIssued => json!({
            "income_year": 2024, "personal_income": "375000.00", "capital_income": "-12000.00",
            "taxable_income": "330000.00", "total_tax": "120000.00", "residual_tax": "-1500.00"
        }),
        K::PreliminaryAssessmentIssued => json!({
            "income_year": 2025, "issued_on": "2024-11-12", "expected_personal_income": "380000.00",
            "expected_tax": "121000.00", "monthly_deduction": "4100.00"
        }),
        K::PersonControlRecorded => json!({
            "income_year": 2024, "group": "Lønindkomst",
            "items": [{"code": "0013", "label": "A-indkomst", "amount": "375000.00"}]
        }),
        K::DigitalLogbookRecorded => {
            json!({"employer_cvr": "29189420", "work_date": "2025-03-03", "start": "07:00", "end": "15:30"})
        }
        K::SelfEmploymentReported => json!({
            "income_year": 2024, "business_cvr": "31122345", "business_name": "Tømrer Hansen",
            "industry_code": "433200", "tax_scheme": "virksomhedsordningen", "reported_on": "2025-06-30",
            "turnover": "1250000.00", "business_result": "312000.00", "equity": "480000.00",
            "interest_expenses": "18500.00"
        }),
        K::PensionRightsReported => json!({
            "income_year": 2024, "provider_cvr": "16614130", "scheme_id": "P-77120-3",
            "pension_type": "ratepension", "employer_cvr": "29189420", "contributions": "54000.00",
            "holdings": "812345.67", "as_of": "2024-12-31"
        }),
        K::CaseDeleted
        | K::ControlCaseDeleted
        | K::GrantDeleted
        | K::PaymentDeleted
        | K::EmploymentDeleted
        | K::IncomeDeleted
        | K::AnnualAssessmentDeleted
        | K::PreliminaryAssessmentDeleted
        | K::PersonControlDeleted
        | K::DigitalLogbookDeleted
        | K::SelfEmploymentDeleted
        | K::PensionRightsDeleted => deleted,
    }
}

/// A whole CloudEvent of `kind` with every optional attribute and field.
pub fn message(kind: EventKind, event_id: Uuid, aggregate_id: Uuid, version: i64) -> Value {
    json!({
        "specversion": "1.0",
        "id": event_id.to_string(),
        "source": "urn:overblik:source:ky",
        "type": format!("{TYPE_PREFIX}{}.v1", kind.name()),
        "time": "2025-03-03T09:15:00.250+01:00",
        "subject": "urn:oio:cpr-nr:1203814417",
        "authority": "29189420",
        "aggregateid": aggregate_id.to_string(),
        "aggregateversion": version,
        "datacontenttype": "application/json",
        "data": data(kind)
    })
}

/// The JSON pointers of every string in `v`, in document order.
pub fn string_pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::String(_) => out.push(at),
            Value::Array(items) => items.iter().enumerate().for_each(|(i, x)| walk(x, format!("{at}/{i}"), out)),
            Value::Object(m) => m.iter().for_each(|(k, x)| walk(x, format!("{at}/{k}"), out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

/// A JSON pointer as the path a rejection names: `/data/benefits/0/name`
/// is `data.benefits[0].name`.
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{DecodeLimits, decode};

    #[test]
    fn every_type_has_a_sample_that_decodes_with_every_field_present() {
        for &kind in EventKind::ALL {
            let (e, a) = (Uuid::new_v4(), Uuid::new_v4());
            let v = message(kind, e, a, 1);
            let event =
                decode(&serde_json::to_vec(&v).unwrap(), Some(a.to_string().as_bytes()), &DecodeLimits::default())
                    .unwrap_or_else(|r| panic!("{}: {r}", kind.name()));
            // Encoding leaves out only absent optional fields: every field of
            // the sample survives, so none was absent.
            let again: Value = serde_json::from_slice(&event.encode()).unwrap();
            assert_eq!(string_pointers(&again["data"]).len(), string_pointers(&v["data"]).len(), "{}", kind.name());
            assert_eq!(again["data"].as_object().unwrap().len(), v["data"].as_object().unwrap().len());
        }
    }
}
