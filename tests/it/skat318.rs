//! SAPA 3.18's SKAT areas, selvstændig virksomhed and pensionsrettigheder,
//! end to end on both backends: ingest, a newer report replacing the older,
//! the refusals that keep one record from replacing another, purpose and
//! agreement checks, physical deletion and rebuild equality.

use chrono::Utc;
use overblik::agreements::{Agreement, Proposal};
use overblik::catalogue::Catalogue;
use overblik::domain::{Cvr, DataArea, Oere};
use overblik::events::body::*;
use overblik::events::{Body, Event, Reason};
use overblik::proto as pb;
use overblik::proto::overblik_client::OverblikClient;
use overblik::store::{DeadLetterFilter, Store};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::build::{Citizen, consume, d, encoded};
use crate::serve::{authed, employee, operator_entry, served};
use crate::support::Backend;

const AARHUS: &str = "55133018";
const CITIZEN: &str = "0505805678";

fn business(year: i32, reported_on: &str, result: i64) -> Body {
    Body::SelfEmploymentReported(SelfEmploymentReported {
        income_year: IncomeYear(year),
        business_cvr: Cvr::parse("31122345").unwrap(),
        business_name: "Tømrer Hansen".into(),
        industry_code: "433200".into(),
        tax_scheme: TaxScheme::Virksomhedsordningen,
        reported_on: d(reported_on),
        turnover: Oere(125_000_000),
        business_result: Oere(result),
        equity: Oere(48_000_000),
        interest_expenses: Oere(1_850_000),
    })
}

fn pension(scheme: &str, as_of: &str, holdings: i64) -> Body {
    Body::PensionRightsReported(PensionRightsReported {
        income_year: IncomeYear(2024),
        provider_cvr: Cvr::parse("16614130").unwrap(),
        scheme_id: scheme.into(),
        pension_type: PensionType::Ratepension,
        employer_cvr: Some(Cvr::parse("29189420").unwrap()),
        contributions: Oere(5_400_000),
        holdings: Oere(holdings),
        as_of: d(as_of),
    })
}

/// A signed agreement of Aarhus for `area`'s purpose 1.
async fn agreement(store: &Store, area: DataArea) {
    let id = format!("urn:ufst:adgangsgrundlag:aftale:{AARHUS}-{area}");
    let today = overblik::domain::copenhagen_today(Utc::now());
    let a = Agreement::request(
        &Catalogue::built_in(),
        Proposal {
            id: &id,
            authority: Cvr::parse(AARHUS).unwrap(),
            area,
            purpose_id: 1,
            legal_basis: "Lov om en aktiv beskæftigelsesindsats § 10",
            klik_task: None,
            valid_from: today - chrono::Days::new(1),
            valid_to: today + chrono::Days::new(30),
            registered_by: "registrar",
        },
    )
    .unwrap();
    let entry = operator_entry();
    store.record_agreement(&a, None, &entry, None).await.unwrap();
    let signed = a.sign("signer", Utc::now()).unwrap();
    store.record_agreement(&signed, Some(a.status), &entry, None).await.unwrap();
}

fn ask(area: &str, purposes: &[u32]) -> pb::ListRequest {
    pb::ListRequest {
        citizen: CITIZEN.into(),
        purpose: Some(pb::AreaPurpose { data_area: area.into(), purpose_ids: purposes.to_vec() }),
        page_size: 0,
        page_token: String::new(),
    }
}

fn reason(status: tonic::Status) -> String {
    status.get_details_error_info().map(|i| i.reason).unwrap_or_else(|| format!("{:?}", status.code()))
}

async fn the_sapa_318_areas_ingest_replace_guard_delete_and_rebuild(backend: Backend) {
    let s = served(backend).await;
    let c = Citizen::new(CITIZEN).at(AARHUS);
    let (firm, scheme, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let events: Vec<Event> = vec![
        c.event(firm, 1, business(2024, "2025-06-30", 31_200_000)),
        // A correction replaces the report…
        c.event(firm, 2, business(2024, "2025-08-29", 29_000_000)),
        // …but not with another year's: refused, the record stays.
        c.event(firm, 3, business(2023, "2025-09-01", 1)),
        c.event(scheme, 1, pension("P-77120-3", "2024-12-31", 81_234_567)),
        // Another scheme can't replace this one, nor an older statement.
        c.event(other, 1, pension("P-1", "2024-12-31", 100)),
        c.event(other, 2, pension("P-2", "2024-12-31", 200)),
    ];
    let refs: Vec<&Event> = events.iter().collect();
    let plans = consume(&s.store, "overblik.skat", 0, &encoded(&refs), 100).await.unwrap();
    let outcomes: Vec<_> = plans.iter().flat_map(|p| p.outcomes.clone()).collect();
    use overblik::projection::Outcome::*;
    assert_eq!(
        outcomes,
        vec![
            Applied,
            Applied,
            DeadLettered(Reason::InvalidTransition),
            Applied,
            Applied,
            DeadLettered(Reason::InvalidTransition)
        ]
    );
    let dead = s.store.dead_letters(&DeadLetterFilter { limit: 10, ..Default::default() }).await.unwrap();
    assert!(dead.iter().any(|l| l.detail.contains("another income year")), "{dead:?}");
    assert!(dead.iter().any(|l| l.detail.contains("another scheme")), "{dead:?}");

    // The roles, purposes and agreements of each area.
    let mut client = OverblikClient::new(s.channel.clone());
    let reader = s.key.mint(&employee(AARHUS, &["Se selvstændig virksomhed", "Se pensionsrettigheder"])).unwrap();
    let no_role = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    for area in ["selvstaendig_virksomhed", "pensionsrettigheder"] {
        let err = client.list_tax_records(authed(ask(area, &[1]), Some(&no_role))).await.unwrap_err();
        assert_eq!((err.code(), reason(err)), (Code::PermissionDenied, "NO_ROLE".to_string()), "{area}");
        let err = client.list_tax_records(authed(ask(area, &[1]), Some(&reader))).await.unwrap_err();
        assert_eq!(reason(err), "NO_AGREEMENT", "{area}: purpose 1 needs a signed agreement");
        let err = client.list_tax_records(authed(ask(area, &[]), Some(&reader))).await.unwrap_err();
        assert_eq!(reason(err), "PURPOSE_MISSING", "{area}");
        let err = client.list_tax_records(authed(ask(area, &[1, 2]), Some(&reader))).await.unwrap_err();
        assert_eq!(reason(err), "PURPOSE_AMBIGUOUS", "{area}: one purpose per area");
    }
    let err = client.list_tax_records(authed(ask("selvstaendig_virksomhed", &[2]), Some(&reader))).await.unwrap_err();
    assert_eq!(reason(err), "PURPOSE_NOT_IN_CATALOGUE", "self-employment has one purpose");
    agreement(&s.store, DataArea::SelvstaendigVirksomhed).await;
    agreement(&s.store, DataArea::Pensionsrettigheder).await;

    let firms = client
        .list_tax_records(authed(ask("selvstaendig_virksomhed", &[1]), Some(&reader)))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(firms.len(), 1);
    let f = &firms[0];
    assert_eq!((f.data_area.as_str(), f.income_year, f.supersedes), ("selvstaendig_virksomhed", 2024, 1));
    assert_eq!((f.employer_cvr.as_str(), f.issued_on.as_str()), ("31122345", "2025-08-29"));
    let details: serde_json::Value = serde_json::from_str(&f.details_json).unwrap();
    assert_eq!(details["self_employment"]["business_result"], 29_000_000, "the correction, in øre");
    assert_eq!(details["self_employment"]["tax_scheme"], "virksomhedsordningen");

    let schemes = client
        .list_tax_records(authed(ask("pensionsrettigheder", &[1]), Some(&reader)))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(schemes.len(), 2);
    let p = schemes.iter().find(|p| p.record_id == scheme.to_string()).unwrap();
    let details: serde_json::Value = serde_json::from_str(&p.details_json).unwrap();
    assert_eq!(details["pension_rights"]["holdings"], 81_234_567);
    // Pension rights are not self-employment: each area shows its own.
    assert!(schemes.iter().all(|p| p.data_area == "pensionsrettigheder"));

    // Rebuild gives the same records; deletion removes every trace.
    let before = crate::support::stored_aggregates(&s.store).await;
    overblik::rebuild::rebuild(&s.store, |_, _| {}).await.unwrap();
    assert_eq!(crate::support::stored_aggregates(&s.store).await, before);
    let deletions: Vec<Event> = vec![
        c.event(firm, 3, Body::SelfEmploymentDeleted(Deleted::default())),
        c.event(scheme, 2, Body::PensionRightsDeleted(Deleted::default())),
        c.event(other, 2, Body::PensionRightsDeleted(Deleted::default())),
    ];
    let refs: Vec<&Event> = deletions.iter().collect();
    consume(&s.store, "overblik.skat", 0, &encoded(&refs), 100).await.unwrap();
    // Events, snapshots and the refused reports' dead letters go with their
    // aggregates; only the audit log keeps the lookups made on the citizen.
    let left: Vec<String> = s.store.tables_containing(CITIZEN).await.unwrap();
    assert!(left.iter().all(|t| t.starts_with("audit")), "{left:?}");
    let records = client
        .list_tax_records(authed(ask("pensionsrettigheder", &[1]), Some(&reader)))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(records.is_empty());
}
crate::both_backends!(the_sapa_318_areas_ingest_replace_guard_delete_and_rebuild);
