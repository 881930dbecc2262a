//! Malformed messages, one class after another, each with the reason the
//! decode stage must give it. They use fresh aggregate ids so they never
//! hold up a real aggregate.

use serde_json::{Value, json};

use super::rng::Rng;
use super::{DemoMessage, Expect};
use crate::events::Reason;

/// How many classes [`message`] cycles through.
pub const CLASSES: usize = 19;

fn valid_case(rng: &mut Rng, aggregate: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": rng.uuid().to_string(),
        "source": "urn:overblik:source:ky",
        "type": "dk.overblik.case.imported.v1",
        "time": "2025-03-03T09:15:00Z",
        "subject": "urn:oio:cpr-nr:1203814417",
        "authority": "29189420",
        "aggregateid": aggregate,
        "aggregateversion": 1,
        "data": {
            "case_number": "2025-004711",
            "title": "Ansøgning om kontanthjælp",
            "kle": "32.18.04",
            "action_facet": "G01",
            "sensitivity": 2,
            "parties": [{"role": "primary", "id": "urn:oio:cpr-nr:1203814417"}],
            "org_unit": "Ydelsesservice",
            "source_system": "KY",
            "status_history": [{"status": "Opstaaet", "from": "2025-03-01"}]
        }
    })
}

fn valid_payment(rng: &mut Rng, aggregate: &str) -> Value {
    let mut v = valid_case(rng, aggregate);
    v["type"] = json!("dk.overblik.payment.effectuated.v1");
    v["data"] = json!({
        "payment_number": "U-2025-03-00017",
        "period": {"start": "2025-03-01", "end": "2025-03-31"},
        "disposal_date": "2025-03-31",
        "gross": "12500.00", "after_tax": "7875.00", "sent": "7875.00",
        "lines": [{"period": {"start": "2025-03-01", "end": "2025-03-31"}, "gross": "12500.00", "kle": "32.18.04", "granted_benefit_id": "B1"}]
    });
    v
}

/// The `n`th malformed message (classes repeat in order).
pub fn message(rng: &mut Rng, n: usize) -> DemoMessage {
    let agg = rng.uuid().to_string();
    let case = valid_case(rng, &agg);
    let pay = valid_payment(rng, &agg);
    let bytes = |v: &Value| serde_json::to_vec(v).expect("json");
    let set = |mut v: Value, ptr: &str, x: Value| {
        *v.pointer_mut(ptr).expect("pointer") = x;
        bytes(&v)
    };
    let mut key = agg.clone().into_bytes();
    let (payload, reason) = match n % CLASSES {
        0 => {
            let full = bytes(&case);
            (full[..full.len() * 2 / 3].to_vec(), Reason::TruncatedJson)
        }
        1 => ((0..64).map(|_| (rng.next_u64() % 256) as u8 | 0x80).collect(), Reason::MalformedJson),
        2 => (Vec::new(), Reason::EmptyPayload),
        3 => (b"[\"not\", \"an\", \"event\"]".to_vec(), Reason::NotAnObject),
        4 => (set(case, "/aggregateversion", json!("1")), Reason::WrongType),
        5 => {
            let mut v = case;
            v.as_object_mut().unwrap().remove("subject");
            (bytes(&v), Reason::MissingField)
        }
        6 => (set(case, "/subject", json!("urn:oio:cpr-nr:3102814417")), Reason::BadCpr),
        7 => (set(case, "/authority", json!("2918942")), Reason::BadCvr),
        8 => (set(case, "/data/kle", json!("32.18")), Reason::BadKle),
        9 => (set(pay, "/data/gross", json!(12500.0)), Reason::BadMoney),
        10 => (set(pay, "/data/after_tax", json!("7875.005")), Reason::BadMoney),
        11 => (set(case, "/data/sensitivity", json!(7)), Reason::BadSensitivity),
        12 => (set(pay, "/data/period", json!({"start": "2025-04-01", "end": "2025-03-31"})), Reason::BadPeriod),
        13 => (set(case, "/type", json!("dk.overblik.case.archived.v1")), Reason::UnknownType),
        14 => (set(case, "/type", json!("dk.overblik.case.imported.v9")), Reason::UnknownTypeVersion),
        15 => {
            key = rng.uuid().to_string().into_bytes();
            (bytes(&case), Reason::KeyMismatch)
        }
        16 => (set(case, "/data/status_history/0/from", json!("2025-02-30")), Reason::BadDate),
        17 => (set(case, "/id", json!("event-17")), Reason::BadUuid),
        _ => (set(case, "/time", json!("03/03/2025 09:15")), Reason::BadTime),
    };
    DemoMessage { topic: crate::config::TOPIC_KY, key, payload, expect: Expect::Malformed(reason) }
}
