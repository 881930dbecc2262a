//! Hand-built events for one citizen, and batches of them as the consumer
//! would hand them to the store.

use chrono::{NaiveDate, TimeZone, Utc};
use overblik::domain::{ActionFacet, Cvr, Kle, Oere, OpenPeriod, PartyId, Period, Sensitivity};
use overblik::events::body::*;
use overblik::events::{Body, DecodeLimits, Event};
use overblik::ingest::commit_batch;
use overblik::projection::{Decoded, Origin, Plan, Prior};
use overblik::simulator::DemoMessage;
use overblik::store::{OffsetAdvance, Store, StoreError};
use uuid::Uuid;

pub fn d(s: &str) -> NaiveDate {
    overblik::domain::parse_date(s).unwrap()
}

pub struct Citizen {
    pub cpr: String,
    pub party: PartyId,
    /// The authority the events come from (Aalborg unless changed).
    pub authority: Cvr,
}

impl Citizen {
    pub fn new(cpr: &str) -> Citizen {
        Citizen {
            cpr: cpr.to_string(),
            party: PartyId::parse(&format!("urn:oio:cpr-nr:{cpr}")).unwrap(),
            authority: Cvr::parse("29189420").unwrap(),
        }
    }

    /// The same citizen, with events from `authority`.
    pub fn at(&self, authority: &str) -> Citizen {
        Citizen { authority: Cvr::parse(authority).unwrap(), ..Citizen::new(&self.cpr) }
    }

    pub fn event(&self, aggregate: Uuid, version: i64, body: Body) -> Event {
        Event {
            id: Uuid::new_v4(),
            source: "urn:overblik:source:ky".into(),
            type_version: 1,
            time: Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0).unwrap(),
            subject: self.party,
            authority: self.authority,
            aggregate_id: aggregate,
            aggregate_version: version,
            body,
        }
    }

    pub fn case_import(&self, case: Uuid, opened: &str) -> Event {
        self.event(
            case,
            1,
            Body::CaseImported(CaseImported(CaseFields {
                case_number: "2015-000042".into(),
                title: "Ansøgning om kontanthjælp".into(),
                kle: Kle::parse("32.18.04").unwrap(),
                action_facet: ActionFacet::parse("G01").unwrap(),
                sensitivity: Sensitivity::Confidential,
                parties: vec![Party { role: PartyRole::Primary, id: self.party }],
                org_unit: "Ydelsesservice".into(),
                caseworker: Some("Mette Hansen".into()),
                source_system: "KY".into(),
                status_history: Some(vec![StatusEntry { status: CaseStatus::Opstaaet, from: d(opened) }]),
            })),
        )
    }

    /// `document.registered` on `case`: a document or journal note titled
    /// `title`, at its case's class unless `sensitivity` narrows it.
    pub fn document(
        &self,
        case: Uuid,
        version: i64,
        title: &str,
        kind: DocumentKind,
        sensitivity: Option<Sensitivity>,
    ) -> Event {
        self.event(
            case,
            version,
            Body::DocumentRegistered(DocumentFields {
                document_id: Uuid::new_v4(),
                title: title.into(),
                date: d("2024-01-15"),
                direction: DocumentDirection::Incoming,
                kind,
                kle: None,
                sensitivity,
            }),
        )
    }

    pub fn status(&self, case: Uuid, version: i64, status: CaseStatus, from: &str) -> Event {
        self.event(case, version, Body::CaseStatusChanged(CaseStatusChanged { status, from: d(from) }))
    }

    pub fn grant(&self, grant: Uuid, case: Uuid, start: &str) -> Event {
        let period = OpenPeriod { start: d(start), end: None };
        self.event(
            grant,
            1,
            Body::GrantAwarded(GrantFields {
                grant_number: "B-1".into(),
                case_id: Some(case),
                period,
                sensitivity: Sensitivity::Confidential,
                reason: None,
                benefits: vec![GrantedBenefit {
                    id: "B1".into(),
                    name: "Kontanthjælp".into(),
                    benefit_type: "Kontanthjælp".into(),
                    kle: Kle::parse("32.18.04").unwrap(),
                    period,
                    plan: PaymentPlan { frequency: Frequency::Monthly, amount: Oere(1_250_000) },
                }],
            }),
        )
    }

    pub fn payment(&self, payment: Uuid, grant: Uuid, month_start: &str, month_end: &str) -> Event {
        let period = Period { start: d(month_start), end: d(month_end) };
        self.event(
            payment,
            1,
            Body::PaymentEffectuated(PaymentFields {
                payment_number: "U-1".into(),
                grant_id: Some(grant),
                period,
                disposal_date: period.end,
                gross: Oere(1_250_000),
                after_tax: Oere(800_000),
                sent: Oere(800_000),
                paid: Some(Oere(800_000)),
                paid_note: None,
                lines: vec![PaymentLine {
                    period,
                    gross: Oere(1_250_000),
                    kle: Kle::parse("32.18.04").unwrap(),
                    granted_benefit_id: "B1".into(),
                }],
            }),
        )
    }

    pub fn deleted(&self, aggregate: Uuid, version: i64, body: fn(Deleted) -> Body) -> Event {
        self.event(aggregate, version, body(Deleted::default()))
    }
}

/// Messages as one partition's consecutive offsets from `first`.
pub fn items(payloads: &[(Vec<u8>, Vec<u8>)], topic: &str, partition: i32, first: i64) -> Vec<Decoded> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, (key, payload))| {
            Decoded::new(
                Origin { topic: topic.into(), partition, offset: first + i as i64 },
                Prior::New,
                Some(key.clone().into()),
                payload.clone().into(),
                &DecodeLimits::default(),
            )
        })
        .collect()
}

pub fn encoded(events: &[&Event]) -> Vec<(Vec<u8>, Vec<u8>)> {
    events.iter().map(|e| (e.aggregate_id.to_string().into_bytes(), e.encode())).collect()
}

pub fn demo_payloads(messages: &[DemoMessage]) -> Vec<(Vec<u8>, Vec<u8>)> {
    messages.iter().map(|m| (m.key.clone(), m.payload.clone())).collect()
}

/// Consumes `payloads` as the next messages of `topic`/`partition`, in
/// batches of `batch`, the way the consumer commits them.
pub async fn consume(
    store: &Store,
    topic: &str,
    partition: i32,
    payloads: &[(Vec<u8>, Vec<u8>)],
    batch: usize,
) -> Result<Vec<Plan>, StoreError> {
    let mut next = store.assigned_offsets(&[(topic.to_string(), partition)]).await?[0];
    let mut plans = Vec::new();
    for chunk in payloads.chunks(batch) {
        let its = items(chunk, topic, partition, next);
        let adv = OffsetAdvance { topic: topic.into(), partition, expected: next, next: next + chunk.len() as i64 };
        plans.push(commit_batch(store, its, &[adv], &DecodeLimits::default()).await?);
        next += chunk.len() as i64;
    }
    Ok(plans)
}
