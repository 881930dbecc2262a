//! The serving path over gRPC: every denial with its reason and no data;
//! Borgerblikket; agreements; the audit log under concurrency and against
//! tampering; the citizen's report.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{Datelike, Days, Utc};
use overblik::agreements::{Agreement, Proposal, Status as AgreementStatus};
use overblik::api::limiter::Limits;
use overblik::api::transport::TransportSettings;
use overblik::api::{ROLE_AGREEMENTS, ROLE_DPO, Serving, Transport};
use overblik::audit::dpo::AlarmSettings;
use overblik::audit::writer::AuditLog;
use overblik::catalogue::Catalogue;
use overblik::domain::{Cvr, DataArea, Sensitivity, copenhagen_today};
use overblik::events::Body;
use overblik::events::body::*;
use overblik::identity::keys::{DEFAULT_AUDIENCE, KeyFile};
use overblik::identity::{Claims, Verifier};
use overblik::proto as pb;
use overblik::proto::agreements_client::AgreementsClient;
use overblik::proto::audit_client::AuditClient;
use overblik::proto::borgerblikket_client::BorgerblikketClient;
use overblik::proto::overblik_client::OverblikClient;
use overblik::store::Store;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::build::{Citizen, consume, encoded};
use crate::support::{Backend, TestDb};

const AARHUS: &str = "55133018";
const ODENSE: &str = "35209115";
const UDK: &str = "29980636";
/// The citizen looked up.
const X: &str = "0101801234";
/// The primary party of a case where X is a secondary party.
const Y: &str = "0202802345";

pub struct Served {
    pub db: TestDb,
    pub store: Store,
    pub key: KeyFile,
    pub audit_key: std::sync::Arc<overblik::audit::checkpoint::AuditKey>,
    pub endpoint: String,
    pub channel: Channel,
    stop: overblik::ingest::StopFlag,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An audit key for a test.
pub fn test_key() -> std::sync::Arc<overblik::audit::checkpoint::AuditKey> {
    std::sync::Arc::new(overblik::audit::checkpoint::AuditKey::generate().unwrap())
}

/// The chunks of a CSV export, joined.
pub async fn csv_of(
    export: Result<tonic::Response<tonic::Streaming<pb::CsvExport>>, tonic::Status>,
) -> Result<String, tonic::Status> {
    let mut stream = export?.into_inner();
    let mut out = String::new();
    while let Some(chunk) = stream.message().await? {
        out.push_str(&chunk.csv);
    }
    Ok(out)
}

pub async fn served(backend: Backend) -> Served {
    served_with(backend, Limits::default()).await
}

/// A server on a fresh store, with the anonymous rate limit `limits`.
pub async fn served_with(backend: Backend, limits: Limits) -> Served {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let key = KeyFile::generate_dev().unwrap();
    let mut verifier = Verifier::new(DEFAULT_AUDIENCE);
    verifier.trust(&key).unwrap();
    let audit_key = test_key();
    let serving = Serving::new(
        store.clone(),
        verifier,
        Catalogue::built_in(),
        AuditLog::start(store.clone(), audit_key.clone()),
        AlarmSettings::default(),
        limits,
    );
    let transport = Transport::bind(&TransportSettings::plaintext("127.0.0.1:0".parse().unwrap())).unwrap();
    let addr = transport.local_addr().unwrap();
    let stop: overblik::ingest::StopFlag = Arc::new(AtomicBool::new(false));
    tokio::spawn(overblik::api::serve(serving, transport, overblik::cli::stopped(stop.clone())));
    let endpoint = format!("http://{addr}");
    let mut channel = None;
    for _ in 0..100 {
        if let Ok(c) = Channel::from_shared(endpoint.clone()).unwrap().connect().await {
            channel = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Served { db, store, key, audit_key, endpoint, channel: channel.expect("the server listens"), stop }
}

/// Loads the demo facts: X's cases at Aarhus (one VIP), a case at Aarhus
/// where X is only a secondary party, a grant and payment at Aarhus, a UDK
/// pension paid last month and one paid a year ago, and two preliminary
/// assessments for one income year.
pub async fn load_facts(store: &Store) -> Uuid {
    let today = copenhagen_today(Utc::now());
    let x = Citizen::new(X).at(AARHUS);
    let y = Citizen::new(Y).at(AARHUS);
    let (case, vip, shared, grant, payment) =
        (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut vip_import = x.case_import(vip, "2025-02-01");
    if let Body::CaseImported(c) = &mut vip_import.body {
        c.0.sensitivity = Sensitivity::Vip;
        c.0.title = "Borgmesterens sag".into();
    }
    let mut shared_import = y.case_import(shared, "2025-03-01");
    if let Body::CaseImported(c) = &mut shared_import.body {
        c.0.parties.push(Party { role: PartyRole::Secondary, id: x.party });
        c.0.title = "Y's sag".into();
    }
    let udk = Citizen::new(X).at(UDK);
    let (udk_case, udk_grant, recent, old) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    // A month wholly past (its end is the disposal date) and inside 3 months.
    let last_month = today - Days::new(35);
    let a_year_ago = today - Days::new(365);
    let month = |d: chrono::NaiveDate| {
        let first = d.with_day(1).unwrap();
        (first.to_string(), (first + chrono::Months::new(1) - Days::new(1)).to_string())
    };
    let (r0, r1) = month(last_month);
    let (o0, o1) = month(a_year_ago);
    let skat = Citizen::new(X).at("19552101");
    let prelim = |id: Uuid, version: i64, issued: &str| {
        skat.event(
            id,
            version,
            Body::PreliminaryAssessmentIssued(PreliminaryAssessmentIssued {
                income_year: IncomeYear(2026),
                issued_on: crate::build::d(issued),
                expected_personal_income: overblik::domain::Oere(40_000_000),
                expected_tax: overblik::domain::Oere(14_000_000),
                monthly_deduction: overblik::domain::Oere(500_000),
            }),
        )
    };
    let events = [
        x.case_import(case, "2025-01-05"),
        vip_import,
        shared_import,
        x.grant(grant, case, "2025-01-20"),
        x.payment(payment, grant, "2025-02-01", "2025-02-28"),
        udk.case_import(udk_case, "2024-01-05"),
        udk.grant(udk_grant, udk_case, "2024-01-20"),
        udk.payment(recent, udk_grant, &r0, &r1),
        udk.payment(old, udk_grant, &o0, &o1),
        prelim(Uuid::new_v4(), 1, "2025-12-01"),
        prelim(Uuid::new_v4(), 1, "2026-03-01"),
    ];
    let refs: Vec<&overblik::events::Event> = events.iter().collect();
    consume(store, "overblik.ky", 0, &encoded(&refs), 100).await.unwrap();
    case
}

pub fn employee(cvr: &str, roles: &[&str]) -> Claims {
    Claims {
        aud: DEFAULT_AUDIENCE.into(),
        sub: format!("user@{cvr}"),
        exp: Utc::now().timestamp() + 600,
        iat: Some(Utc::now().timestamp()),
        name: Some("Mette Hansen".into()),
        cvr: Some(cvr.into()),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        foelsomhed: Some(3),
        ..Default::default()
    }
}

pub fn citizen_claims(cpr: &str) -> Claims {
    Claims {
        aud: DEFAULT_AUDIENCE.into(),
        sub: "citizen".into(),
        exp: Utc::now().timestamp() + 600,
        iat: Some(Utc::now().timestamp()),
        cpr: Some(cpr.into()),
        ..Default::default()
    }
}

pub fn authed<T>(body: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(body);
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

pub fn list(area: &str, purposes: &[u32]) -> pb::ListRequest {
    pb::ListRequest {
        citizen: X.into(),
        purpose: Some(pb::AreaPurpose { data_area: area.into(), purpose_ids: purposes.to_vec() }),
        page_size: 0,
        page_token: String::new(),
    }
}

/// An audit entry for a change made behind the service (as the command
/// line makes them).
pub fn operator_entry() -> overblik::audit::Entry {
    use overblik::audit::{Actor, Entry, Kind, Search, Text, TransactionId};
    Entry::new(
        TransactionId::generate(),
        Uuid::new_v4(),
        Kind::Agreement,
        Actor::Operator { user: Text::new("test") },
        Search::command("test"),
    )
    .allow(1, Vec::new())
}

pub async fn agreement(store: &Store, authority: &str, from: &str, to: &str, sign: bool, revoke: bool) -> Agreement {
    let id = format!("urn:ufst:adgangsgrundlag:aftale:{authority}-{from}-k53");
    let a = Agreement::request(
        &Catalogue::built_in(),
        Proposal {
            id: &id,
            authority: Cvr::parse(authority).unwrap(),
            area: DataArea::Forskudsopgoerelse,
            purpose_id: 1,
            legal_basis: "Lov om sygedagpenge § 11",
            klik_task: Some("K53"),
            valid_from: crate::build::d(from),
            valid_to: crate::build::d(to),
            registered_by: "registrar",
        },
    )
    .unwrap();
    let entry = operator_entry();
    store.record_agreement(&a, None, &entry, None).await.unwrap();
    let mut a = a;
    if sign {
        let signed = a.sign("signer", Utc::now()).unwrap();
        store.record_agreement(&signed, Some(AgreementStatus::Requested), &entry, None).await.unwrap();
        a = signed;
    }
    if revoke {
        let revoked = a.revoke(Utc::now()).unwrap();
        store.record_agreement(&revoked, Some(a.status), &entry, None).await.unwrap();
        a = revoked;
    }
    a
}

/// Asserts a call was refused with `code` and `reason`, and carried no data.
fn refused(result: Result<tonic::Response<pb::TaxRecordList>, tonic::Status>, code: Code, reason: &str) {
    let status = match result {
        Ok(r) => panic!("expected {reason}, got data: {:?}", r.into_inner()),
        Err(s) => s,
    };
    assert_eq!(status.code(), code, "{reason}: {}", status.message());
    assert_eq!(status.get_details_error_info().map(|i| i.reason).as_deref(), Some(reason), "{}", status.message());
    assert!(!status.message().contains("expected_tax") && !status.message().contains(X), "{}", status.message());
}

async fn every_denial_carries_its_reason_and_no_data(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let mut client = OverblikClient::new(s.channel.clone());
    let today = copenhagen_today(Utc::now());
    let year = today.year();
    let role = ["Se forskudsopgørelse"];
    let aarhus = s.key.mint(&employee(AARHUS, &role)).unwrap();
    let fo = |p: &[u32]| list("forskudsopgoerelse", p);

    // Tokens.
    refused(client.list_tax_records(authed(fo(&[1]), None)).await, Code::Unauthenticated, "NO_TOKEN");
    let impostor = KeyFile::generate_dev().unwrap().mint(&employee(AARHUS, &role)).unwrap();
    refused(client.list_tax_records(authed(fo(&[1]), Some(&impostor))).await, Code::Unauthenticated, "BAD_TOKEN");
    let expired = s.key.mint(&Claims { exp: Utc::now().timestamp() - 3600, ..employee(AARHUS, &role) }).unwrap();
    refused(client.list_tax_records(authed(fo(&[1]), Some(&expired))).await, Code::Unauthenticated, "BAD_TOKEN");
    let elsewhere = s.key.mint(&Claims { aud: "another".into(), ..employee(AARHUS, &role) }).unwrap();
    refused(client.list_tax_records(authed(fo(&[1]), Some(&elsewhere))).await, Code::Unauthenticated, "BAD_TOKEN");
    let none_alg = {
        use base64::Engine;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = Claims { iss: s.key.issuer.clone(), ..employee(AARHUS, &role) };
        format!(
            "{}.{}.",
            b.encode(r#"{"alg":"none","kid":"overblik-dev"}"#),
            b.encode(serde_json::to_vec(&claims).unwrap())
        )
    };
    refused(client.list_tax_records(authed(fo(&[1]), Some(&none_alg))).await, Code::Unauthenticated, "BAD_TOKEN");

    // Role and purpose.
    let no_role = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    refused(client.list_tax_records(authed(fo(&[1]), Some(&no_role))).await, Code::PermissionDenied, "NO_ROLE");
    refused(client.list_tax_records(authed(fo(&[]), Some(&aarhus))).await, Code::PermissionDenied, "PURPOSE_MISSING");
    refused(
        client.list_tax_records(authed(fo(&[1, 2]), Some(&aarhus))).await,
        Code::PermissionDenied,
        "PURPOSE_AMBIGUOUS",
    );
    refused(
        client.list_tax_records(authed(fo(&[77]), Some(&aarhus))).await,
        Code::PermissionDenied,
        "PURPOSE_NOT_IN_CATALOGUE",
    );

    // Agreements: none, another authority's, not yet valid, expired, revoked.
    refused(client.list_tax_records(authed(fo(&[1]), Some(&aarhus))).await, Code::PermissionDenied, "NO_AGREEMENT");
    agreement(&s.store, ODENSE, &format!("{}-01-01", year - 1), &format!("{}-01-01", year + 1), true, false).await;
    refused(client.list_tax_records(authed(fo(&[1]), Some(&aarhus))).await, Code::PermissionDenied, "NO_AGREEMENT");
    let tomorrow = today + Days::new(1);
    agreement(&s.store, AARHUS, &tomorrow.to_string(), &format!("{}-01-01", year + 2), true, false).await;
    refused(
        client.list_tax_records(authed(fo(&[1]), Some(&aarhus))).await,
        Code::PermissionDenied,
        "AGREEMENT_NOT_ACTIVE",
    );
    agreement(&s.store, AARHUS, &format!("{}-01-01", year - 2), &today.to_string(), true, false).await;
    refused(
        client.list_tax_records(authed(fo(&[1]), Some(&aarhus))).await,
        Code::PermissionDenied,
        "AGREEMENT_NOT_ACTIVE",
    );
    agreement(&s.store, AARHUS, &format!("{}-06-01", year - 3), &format!("{}-01-01", year + 3), true, true).await;
    refused(
        client.list_tax_records(authed(fo(&[1]), Some(&aarhus))).await,
        Code::PermissionDenied,
        "AGREEMENT_NOT_ACTIVE",
    );
    agreement(&s.store, AARHUS, &format!("{}-07-01", year - 3), &format!("{}-01-01", year + 3), false, false).await;
    refused(
        client.list_tax_records(authed(fo(&[1]), Some(&aarhus))).await,
        Code::PermissionDenied,
        "AGREEMENT_NOT_ACTIVE",
    );

    // An active agreement lets the rows out: the newer assessment only.
    agreement(&s.store, AARHUS, &today.to_string(), &tomorrow.to_string(), true, false).await;
    let rows = client.list_tax_records(authed(fo(&[1]), Some(&aarhus))).await.unwrap().into_inner().items;
    assert_eq!(rows.len(), 1, "a newer preliminary assessment supersedes the older");
    assert_eq!(rows[0].issued_on, "2026-03-01");

    // Every decision is in the log, with its reason; the allowed one names its agreement.
    let records = s.store.audit_records(&Default::default(), 0, 1000).await.unwrap();
    let lookups: Vec<_> = records.iter().filter(|r| r.entry.kind == "lookup").collect();
    assert_eq!(lookups.len(), 16);
    assert_eq!(lookups.iter().filter(|r| r.entry.decision == "deny").count(), 15);
    let allowed = lookups.iter().find(|r| r.entry.decision == "allow").unwrap();
    assert!(allowed.entry.agreement_id.starts_with("urn:ufst:adgangsgrundlag:aftale:55133018-"));
    assert_eq!(allowed.entry.citizen, format!("urn:oio:cpr-nr:{X}"));
    assert!(allowed.entry.search_criteria.contains("FormaalType: 1"));
}
crate::both_backends!(every_denial_carries_its_reason_and_no_data);

async fn the_overview_filters_rows_and_windows_and_denies_per_area(backend: Backend) {
    let s = served(backend).await;
    let case = load_facts(&s.store).await;
    let mut client = OverblikClient::new(s.channel.clone());
    let token = s
        .key
        .mint(&employee(AARHUS, &["Se sager", "Se ydelser", "Se sager og ydelser på tværs af UDK og kommuner"]))
        .unwrap();
    let area = |a: &str, p: u32| pb::AreaPurpose { data_area: a.into(), purpose_ids: vec![p] };
    let req = pb::CitizenOverviewRequest {
        citizen: X.into(),
        purposes: vec![area("sager", 1), area("ydelser", 1), area("udk_ydelser", 1), area("udk_sager", 9)],
    };
    let overview = client.get_citizen_overview(authed(req, Some(&token))).await.unwrap().into_inner();
    let by_area = |a: &str| overview.sections.iter().find(|s| s.data_area == a).unwrap();
    // Level 3 doesn't see the VIP case; a case where X is a party does show.
    let titles: Vec<&str> = by_area("sager").cases.iter().map(|c| c.title.as_str()).collect();
    assert!(titles.contains(&"Ansøgning om kontanthjælp") && titles.contains(&"Y's sag"), "{titles:?}");
    assert!(!titles.contains(&"Borgmesterens sag"));
    assert_eq!(by_area("ydelser").grants.len(), 1);
    assert_eq!(by_area("ydelser").payments.len(), 1);
    // §8: only last month's UDK payment, as type and amount.
    let udk = &by_area("udk_ydelser").udk_benefits;
    assert_eq!(udk.len(), 1, "{udk:?}");
    assert_eq!((udk[0].benefit_type.as_str(), udk[0].gross_oere), ("Kontanthjælp", 1_250_000));
    // A purpose outside the catalogue denies that area alone, without data.
    let denied = by_area("udk_sager");
    assert_eq!(denied.denial.as_ref().unwrap().reason, "PURPOSE_NOT_IN_CATALOGUE");
    assert!(denied.udk_cases.is_empty() && denied.cases.is_empty());

    // A KLE constraint outside 32.18 hides the cases; VIP clearance shows the VIP case.
    let narrow = s.key.mint(&Claims { kle: Some(vec!["27.*".into()]), ..employee(AARHUS, &["Se sager"]) }).unwrap();
    let cases = client.list_cases(authed(list("sager", &[1]), Some(&narrow))).await.unwrap().into_inner().items;
    assert!(cases.is_empty());
    let vip = s.key.mint(&Claims { foelsomhed: Some(4), ..employee(AARHUS, &["Se sager"]) }).unwrap();
    let cases = client.list_cases(authed(list("sager", &[1]), Some(&vip))).await.unwrap().into_inner().items;
    assert_eq!(cases.len(), 3);
    let one = client
        .get_case(authed(
            pb::GetCaseRequest { citizen: X.into(), case_id: case.to_string(), purpose: Some(area("sager", 1)) },
            Some(&vip),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.caseworker, "Mette Hansen", "caseworkers see the caseworker");
    // Another authority sees none of Aarhus's cases.
    let odense = s.key.mint(&employee(ODENSE, &["Se sager"])).unwrap();
    assert!(client.list_cases(authed(list("sager", &[1]), Some(&odense))).await.unwrap().into_inner().items.is_empty());
    // The alarm for the VIP case was recorded with the lookup.
    let records = s.store.audit_records(&Default::default(), 0, 1000).await.unwrap();
    assert!(records.iter().any(|r| r.entry.alarms.contains(&"vip".to_string())));
}
crate::both_backends!(the_overview_filters_rows_and_windows_and_denies_per_area);

async fn borgerblikket_shows_the_primary_party_and_no_caseworker(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let mut client = BorgerblikketClient::new(s.channel.clone());
    let my = |size| pb::MyListRequest { page_size: size, page_token: String::new() };
    let y = s.key.mint(&citizen_claims(Y)).unwrap();
    let x = s.key.mint(&citizen_claims(X)).unwrap();
    let y_cases = client.list_my_cases(authed(my(0), Some(&y))).await.unwrap().into_inner();
    assert_eq!(y_cases.items.len(), 1);
    assert_eq!(y_cases.items[0].title, "Y's sag");
    let x_cases = client.list_my_cases(authed(my(0), Some(&x))).await.unwrap().into_inner();
    assert!(x_cases.items.iter().all(|c| c.title != "Y's sag"), "a secondary party sees nothing of the case");
    assert_eq!(x_cases.items.len(), 3);
    assert!(x_cases.items.iter().any(|c| c.from_udk));
    // No caseworker field, nor the caseworker's name, anywhere in the answers.
    let grants = client.list_my_grants(authed(my(0), Some(&x))).await.unwrap().into_inner();
    let payments = client.list_my_payments(authed(my(1), Some(&x))).await.unwrap().into_inner();
    assert_eq!(grants.items.len(), 2);
    assert_eq!(payments.items.len(), 1, "one per page");
    assert!(!payments.next_page_token.is_empty());
    for text in [
        serde_json::to_string(&x_cases).unwrap(),
        serde_json::to_string(&grants).unwrap(),
        serde_json::to_string(&payments).unwrap(),
    ] {
        assert!(!text.contains("caseworker") && !text.contains("Mette Hansen") && !text.contains("org_unit"), "{text}");
    }
    // Employees don't use this service.
    let employee_token = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let err = client.list_my_cases(authed(my(0), Some(&employee_token))).await.unwrap_err();
    assert_eq!(err.get_details_error_info().unwrap().reason, "NO_ROLE");
}
crate::both_backends!(borgerblikket_shows_the_primary_party_and_no_caseworker);

async fn agreements_are_managed_and_every_change_audited(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let mut agreements = AgreementsClient::new(s.channel.clone());
    let mut lookups = OverblikClient::new(s.channel.clone());
    let admin = s.key.mint(&employee(AARHUS, &[ROLE_AGREEMENTS])).unwrap();
    let reader = s.key.mint(&employee(AARHUS, &["Se forskudsopgørelse"])).unwrap();
    let today = copenhagen_today(Utc::now());
    let id = "urn:ufst:adgangsgrundlag:aftale:aarhus-k53-test";
    let register = pb::RegisterAgreementRequest {
        agreement_id: id.into(),
        data_area: "forskudsopgoerelse".into(),
        purpose_id: 1,
        legal_basis: "Lov om sygedagpenge § 11".into(),
        klik_task: "K53".into(),
        valid_from: today.to_string(),
        valid_to: (today + Days::new(20)).to_string(),
    };
    // Without the role: refused.
    let err = agreements.register_agreement(authed(register.clone(), Some(&reader))).await.unwrap_err();
    assert_eq!(err.get_details_error_info().unwrap().reason, "NO_ROLE");
    let a = agreements.register_agreement(authed(register, Some(&admin))).await.unwrap().into_inner();
    assert_eq!((a.status.as_str(), a.active), ("requested", false));
    let err = lookups.list_tax_records(authed(list("forskudsopgoerelse", &[1]), Some(&reader))).await.unwrap_err();
    assert_eq!(err.get_details_error_info().unwrap().reason, "AGREEMENT_NOT_ACTIVE");

    // The one who registered it can't sign it: four eyes.
    let err = agreements
        .sign_agreement(authed(pb::SignAgreementRequest { agreement_id: id.into() }, Some(&admin)))
        .await
        .unwrap_err();
    assert_eq!(err.get_details_error_info().unwrap().reason, "FOUR_EYES");
    let signer = s.key.mint(&Claims { sub: "signer@aarhus".into(), ..employee(AARHUS, &[ROLE_AGREEMENTS]) }).unwrap();
    let a = agreements
        .sign_agreement(authed(pb::SignAgreementRequest { agreement_id: id.into() }, Some(&signer)))
        .await
        .unwrap()
        .into_inner();
    assert!(a.active);
    assert_eq!(a.signed_by, "signer@aarhus");
    assert!(lookups.list_tax_records(authed(list("forskudsopgoerelse", &[1]), Some(&reader))).await.is_ok());
    let lapsing = agreements
        .list_lapsing(authed(pb::ListLapsingRequest { within_days: 30 }, Some(&admin)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lapsing.items.len(), 1);
    assert!(
        agreements
            .list_lapsing(authed(pb::ListLapsingRequest { within_days: 10 }, Some(&admin)))
            .await
            .unwrap()
            .into_inner()
            .items
            .is_empty()
    );

    agreements
        .revoke_agreement(authed(pb::RevokeAgreementRequest { agreement_id: id.into() }, Some(&admin)))
        .await
        .unwrap();
    let err = lookups.list_tax_records(authed(list("forskudsopgoerelse", &[1]), Some(&reader))).await.unwrap_err();
    assert_eq!(err.get_details_error_info().unwrap().reason, "AGREEMENT_NOT_ACTIVE");
    // Signing a revoked agreement is refused; another authority can't touch it.
    let err = agreements
        .sign_agreement(authed(pb::SignAgreementRequest { agreement_id: id.into() }, Some(&signer)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let other = s.key.mint(&employee(ODENSE, &[ROLE_AGREEMENTS])).unwrap();
    let err = agreements
        .revoke_agreement(authed(pb::RevokeAgreementRequest { agreement_id: id.into() }, Some(&other)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    let changes = s
        .store
        .audit_records(&overblik::store::AuditFilter { agreement_id: Some(id.into()), ..Default::default() }, 0, 100)
        .await
        .unwrap();
    let what: Vec<(&str, &str, &str)> = changes
        .iter()
        .filter(|r| r.entry.kind == "agreement")
        .map(|r| {
            (r.entry.search_criteria.split(';').next().unwrap(), r.entry.decision.as_str(), r.entry.reason.as_str())
        })
        .collect();
    assert_eq!(
        what,
        [
            ("rpc: RegisterAgreement", "allow", ""),
            ("rpc: SignAgreement", "deny", "FOUR_EYES"),
            ("rpc: SignAgreement", "allow", ""),
            ("rpc: RevokeAgreement", "allow", ""),
            ("rpc: SignAgreement", "deny", "INVALID_STATE"),
            ("rpc: RevokeAgreement", "deny", "NOT_FOUND"),
        ],
        "every change, and every refused one, is recorded"
    );
    // Odense's attempt is Odense's record: it names the id it asked for.
    let odense = s
        .store
        .audit_records(&overblik::store::AuditFilter { authority: Some(ODENSE.into()), ..Default::default() }, 0, 100)
        .await
        .unwrap();
    assert!(odense.iter().any(|r| r.entry.reason == "NOT_FOUND" && r.entry.agreement_id == id));
}
crate::both_backends!(agreements_are_managed_and_every_change_audited);

/// Runs SQL on the store's database behind the service's back.
pub async fn raw(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let sql = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()));
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await?;
        sql.execute(&mut c).await.map(|_| ())
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        sql.execute(&mut c).await.map(|_| ())
    }
}

async fn the_audit_log_counts_every_decision_and_shows_tampering(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let good = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let before = s.store.audit_head().await.unwrap().0;
    // 200 concurrent lookups, every fourth one denied.
    let mut calls = Vec::new();
    for i in 0..200 {
        let mut client = OverblikClient::new(s.channel.clone());
        let req = if i % 4 == 0 { list("sager", &[]) } else { list("sager", &[1]) };
        let token = good.clone();
        calls.push(tokio::spawn(async move { client.list_cases(authed(req, Some(&token))).await.is_ok() }));
    }
    let mut allowed = 0;
    for c in calls {
        allowed += c.await.unwrap() as usize;
    }
    assert_eq!(allowed, 150);
    let (after, _) = s.store.audit_head().await.unwrap();
    // Each allowed lookup also records the disclosure of Y, the primary
    // party of a case where X is a secondary one.
    assert_eq!(after - before, 200 + 150, "one record per decision, denials included, and per disclosed person");
    let written = s.store.audit_records(&Default::default(), before, 1000).await.unwrap();
    assert_eq!(written.iter().filter(|r| r.entry.kind == "lookup").count(), 200);
    assert_eq!(written.iter().filter(|r| r.entry.kind == "party_disclosure").count(), 150);
    let check = overblik::audit::read::verify(&s.store).await.unwrap();
    assert!(check.ok(), "{:?}", check.first_bad);

    // The database refuses changes to the log.
    let url = s.db.url.clone();
    assert!(raw(&url, "UPDATE audit_log SET reason = 'x' WHERE seq = 5").await.is_err());
    assert!(raw(&url, "DELETE FROM audit_log WHERE seq = 5").await.is_err());

    // With the guard taken off, as a database owner could: every kind of
    // change is found, at the record it was made.
    let off = match backend {
        Backend::Postgres => "ALTER TABLE audit_log DISABLE TRIGGER USER",
        Backend::Sqlite => "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete",
    };
    raw(&url, off).await.unwrap();
    let first_bad = || async { overblik::audit::read::verify(&s.store).await.unwrap().first_bad.map(|(seq, _)| seq) };

    raw(&url, "UPDATE audit_log SET rows_returned = rows_returned + 1 WHERE seq = 50").await.unwrap();
    assert_eq!(first_bad().await, Some(50));
    raw(&url, "UPDATE audit_log SET rows_returned = rows_returned - 1 WHERE seq = 50").await.unwrap();
    assert_eq!(first_bad().await, None, "undone, the chain verifies again");

    raw(&url, "UPDATE audit_log SET seq = -70 WHERE seq = 70").await.unwrap();
    raw(&url, "UPDATE audit_log SET seq = 70 WHERE seq = 71").await.unwrap();
    raw(&url, "UPDATE audit_log SET seq = 71 WHERE seq = -70").await.unwrap();
    assert_eq!(first_bad().await, Some(70), "two records swapped");

    raw(&url, "DELETE FROM audit_log WHERE seq = 30").await.unwrap();
    assert_eq!(first_bad().await, Some(30), "a record removed");
}
crate::both_backends!(the_audit_log_counts_every_decision_and_shows_tampering);

/// Several instances share one database: their appends interleave into one
/// chain, none lost, whichever instance wrote last.
async fn instances_sharing_a_database_append_to_one_chain(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (a, b) = (db.store().await, db.store().await);
    let key = test_key();
    let (log_a, log_b) = (AuditLog::start(a.clone(), key.clone()), AuditLog::start(b.clone(), key.clone()));
    let entry = |who: &str, n: usize| {
        use overblik::audit::{Actor, Entry, Kind, Search, Text, TransactionId};
        let user = Text::new(&format!("{who}-{n}"));
        Entry::new(TransactionId::generate(), Uuid::new_v4(), Kind::Lookup, Actor::Operator { user }, Search::rpc("T"))
            .allow(1, Vec::new())
    };
    let mut calls = Vec::new();
    for n in 0..100 {
        let (la, lb) = (log_a.clone(), log_b.clone());
        let (ea, eb) = (entry("a", n), vec![entry("b", n), entry("b", n)]);
        calls.push(tokio::spawn(async move { la.record(vec![ea]).await.map(|s| s.len()) }));
        calls.push(tokio::spawn(async move { lb.record(eb).await.map(|s| s.len()) }));
        if n % 25 == 0 {
            // An append inside another transaction (as an agreement change
            // makes) moves the head under both writers.
            let mut tx = a.begin().await.unwrap();
            tx.append_audit(vec![entry("tx", n).seal()], Utc::now(), Some(&key)).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
    let mut recorded = 0;
    for c in calls {
        recorded += c.await.unwrap().unwrap();
    }
    assert_eq!(recorded, 300);
    let (head, _) = b.audit_head().await.unwrap();
    assert_eq!(head, 304, "every record, from both instances and the transactions");
    let check = overblik::audit::read::verify(&a).await.unwrap();
    assert!(check.ok(), "{:?}", check.first_bad);
    assert_eq!(check.records, 304);
}
crate::both_backends!(instances_sharing_a_database_append_to_one_chain);

async fn the_citizen_report_names_dates_authorities_and_purposes_only(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let mut client = OverblikClient::new(s.channel.clone());
    let caseworker = s.key.mint(&employee(AARHUS, &["Se sager", "Se ydelser"])).unwrap();
    client.list_cases(authed(list("sager", &[2]), Some(&caseworker))).await.unwrap();
    client.list_grants(authed(list("ydelser", &[1]), Some(&caseworker))).await.unwrap();
    client.list_cases(authed(list("sager", &[]), Some(&caseworker))).await.unwrap_err();

    let mut audit = AuditClient::new(s.channel.clone());
    let dpo = s.key.mint(&employee(AARHUS, &[ROLE_DPO])).unwrap();
    let report = audit
        .citizen_report(authed(pb::CitizenReportRequest { citizen: X.into(), ..Default::default() }, Some(&dpo)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.entries.len(), 2, "the allowed lookups");
    let today = copenhagen_today(Utc::now()).to_string();
    let purposes: Vec<&str> = report.entries.iter().map(|e| e.purpose.as_str()).collect();
    assert_eq!(purposes, ["Helhedsorienteret sagsbehandling", "Sagsbehandling"]);
    assert!(report.entries.iter().all(|e| e.date == today && e.authority == AARHUS));
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains("user@") && !text.contains("Mette Hansen"), "{text}");

    // Only a data-protection officer gets it.
    let err = audit
        .citizen_report(authed(pb::CitizenReportRequest { citizen: X.into(), ..Default::default() }, Some(&caseworker)))
        .await
        .unwrap_err();
    assert_eq!(err.get_details_error_info().unwrap().reason, "NO_ROLE");
    let verify = audit.verify_chain(authed(pb::VerifyChainRequest::default(), Some(&dpo))).await.unwrap().into_inner();
    assert!(verify.ok && verify.complete);
    assert_eq!((verify.records, verify.next_after_seq), (verify.head_seq, verify.head_seq));
    // In parts of two records, each resuming after the last: the same
    // records, the same end.
    let mut part = pb::VerifyChainRequest { max_records: 2, ..Default::default() };
    let (mut calls, mut records) = (0, 0);
    loop {
        let r = audit.verify_chain(authed(part.clone(), Some(&dpo))).await.unwrap().into_inner();
        assert!(r.ok, "{}", r.problem);
        assert!(r.records <= 2);
        calls += 1;
        records += r.records;
        if r.complete {
            break;
        }
        part.after_seq = r.next_after_seq;
        part.after_hash = r.next_after_hash;
    }
    assert!(calls > 1);
    assert!(records >= verify.records, "every record checked once (and those appended meanwhile)");
    // A resume point whose hash isn't the record's (as after the record was
    // changed since it was verified): that record is the finding.
    let forged = pb::VerifyChainRequest { after_seq: 1, after_hash: "ab".repeat(32), max_records: 10 };
    let r = audit.verify_chain(authed(forged, Some(&dpo))).await.unwrap().into_inner();
    assert!(!r.ok);
    assert_eq!(r.first_bad_seq, 1);
    assert!(r.problem.contains("changed since"), "{}", r.problem);
    // A resume point beyond the head (as after a rewind): found.
    let beyond = pb::VerifyChainRequest { after_seq: 1_000_000, after_hash: "ab".repeat(32), max_records: 10 };
    let r = audit.verify_chain(authed(beyond, Some(&dpo))).await.unwrap().into_inner();
    assert!(!r.ok && r.complete && r.problem.contains("rewound"), "{r:?}");
    // Malformed parts are refused with the field, not echoed.
    for bad in [
        pb::VerifyChainRequest { max_records: 1_000_001, ..Default::default() },
        pb::VerifyChainRequest { max_records: -1, ..Default::default() },
        pb::VerifyChainRequest { after_seq: 3, after_hash: "=HYPERLINK(x)".into(), max_records: 0 },
        pb::VerifyChainRequest { after_seq: -3, ..Default::default() },
    ] {
        let err = audit.verify_chain(authed(bad, Some(&dpo))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(!err.message().contains("HYPERLINK"), "{}", err.message());
    }
    let csv =
        csv_of(audit.export_csv(authed(pb::AuditQuery { citizen: X.into(), ..Default::default() }, Some(&dpo))).await)
            .await
            .unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 + 1, "header, three lookups and the report request");
}
crate::both_backends!(the_citizen_report_names_dates_authorities_and_purposes_only);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_the_lookup_command() {
    let s = served(Backend::Sqlite).await;
    load_facts(&s.store).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.channel.clone());
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest { service: "overblik.v1.Overblik".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    // The command-line client: exit 0 allowed, 3 denied.
    let endpoint = s.endpoint.clone();
    let token = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let run = move |purpose: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_overblik"))
            .args([
                "lookup",
                "--endpoint",
                &endpoint,
                "--token",
                &token,
                "--citizen",
                X,
                "--area",
                "sager",
                "--purpose",
                purpose,
                "--json",
            ])
            .output()
            .unwrap()
    };
    let (ok, denied) = tokio::task::spawn_blocking(move || (run("1"), run("99"))).await.unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(denied.status.code(), Some(3), "{}", String::from_utf8_lossy(&denied.stdout));
    let d: serde_json::Value = serde_json::from_slice(&denied.stdout).unwrap();
    assert_eq!(d["reason"], "PURPOSE_NOT_IN_CATALOGUE");
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
}
