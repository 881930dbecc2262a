//! The guard as an attacker meets it, on both backends: every row type
//! through every filter (the matrix in ARCHITECTURE.md), and each hole an
//! outside review found, as a regression test.

use chrono::{Datelike, Days, Months, Utc};
use overblik::api::limiter::Limits;
use overblik::api::{ROLE_AGREEMENTS, ROLE_DPO};
use overblik::domain::{Sensitivity, copenhagen_today};
use overblik::events::body::*;
use overblik::events::{Body, Event};
use overblik::identity::Claims;
use overblik::identity::keys::KeyFile;
use overblik::proto as pb;
use overblik::proto::agreements_client::AgreementsClient;
use overblik::proto::audit_client::AuditClient;
use overblik::proto::borgerblikket_client::BorgerblikketClient;
use overblik::proto::overblik_client::OverblikClient;
use overblik::store::AuditFilter;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::build::{Citizen, consume, d, encoded};
use crate::serve::{Served, authed, citizen_claims, employee, load_facts, served, served_with};
use crate::support::Backend;

const AARHUS: &str = "55133018";
const ODENSE: &str = "35209115";
const UDK: &str = "29980636";
/// The citizen of the matrix.
const M: &str = "0303803456";
/// The serve suite's citizen, and the primary party of a case where X is a
/// secondary party.
const X: &str = "0101801234";
const Y: &str = "0202802345";

const EVERY_ROLE: [&str; 6] = [
    "Se sager",
    "Se ydelser",
    "Se beskæftigelsesdata",
    "Se kontrolsager på tværs af UDK og kommuner",
    "Se sager og ydelser på tværs af UDK og kommuner",
    "Se indkomstoplysninger",
];

fn month_ago(months: u32) -> chrono::NaiveDate {
    copenhagen_today(Utc::now()).checked_sub_months(Months::new(months)).unwrap()
}

fn with_sensitivity(mut e: Event, level: i64) -> Event {
    let s = Sensitivity::from_level(level).unwrap();
    match &mut e.body {
        Body::CaseImported(c) => c.0.sensitivity = s,
        Body::GrantAwarded(g) => g.sensitivity = s,
        Body::ControlCaseOpened(c) => c.sensitivity = s,
        _ => unreachable!("only classified rows"),
    }
    e
}

/// A title only the matrix's documents carry.
const DOC_TITLE: &str = "Matrixdokument";

/// M's facts: at Aarhus and at UDK a case (with a document at its class), a
/// grant and a payment at each sensitivity 1-4; on Aarhus's level-1 case a
/// journal note of its own at VIP; a payment whose grant is unknown; at Odense one of each
/// and a job-centre record; a job-centre record at Aarhus; control cases at
/// Odense at each level, one closed without action a month ago (shown) and
/// one seven months ago (not shown); a UDK payment a year ago (not shown).
async fn matrix_facts(backend: Backend) -> Served {
    let s = served(backend).await;
    let recent = month_ago(1);
    let (p0, p1) = (recent.with_day(1).unwrap(), recent);
    let mut events = Vec::new();
    for authority in [AARHUS, UDK] {
        let m = Citizen::new(M).at(authority);
        for level in 1..=4 {
            let (case, grant) = (Uuid::new_v4(), Uuid::new_v4());
            events.push(with_sensitivity(m.case_import(case, "2025-01-01"), level));
            events.push(m.document(case, 2, DOC_TITLE, DocumentKind::Document, None));
            if authority == AARHUS && level == 1 {
                let vip = Some(Sensitivity::Vip);
                events.push(m.document(case, 3, DOC_TITLE, DocumentKind::JournalNote, vip));
            }
            events.push(with_sensitivity(m.grant(grant, case, "2025-01-01"), level));
            events.push(m.payment(Uuid::new_v4(), grant, &p0.to_string(), &p1.to_string()));
            if authority == UDK && level == 1 {
                let old = month_ago(12);
                events.push(m.payment(Uuid::new_v4(), grant, &old.with_day(1).unwrap().to_string(), &old.to_string()));
            }
        }
    }
    let aarhus = Citizen::new(M).at(AARHUS);
    events.push(aarhus.payment(Uuid::new_v4(), Uuid::new_v4(), &p0.to_string(), &p1.to_string()));
    let odense = Citizen::new(M).at(ODENSE);
    let (case, grant) = (Uuid::new_v4(), Uuid::new_v4());
    events.push(odense.case_import(case, "2025-01-01"));
    events.push(odense.document(case, 2, DOC_TITLE, DocumentKind::Document, None));
    events.push(odense.grant(grant, case, "2025-01-01"));
    events.push(odense.payment(Uuid::new_v4(), grant, &p0.to_string(), &p1.to_string()));
    for c in [&aarhus, &odense] {
        events.push(c.event(
            Uuid::new_v4(),
            1,
            Body::EmploymentRegistered(EmploymentRegistered {
                registered_on: d("2025-01-01"),
                jobcenter: "Jobcenter".into(),
                category: "Dagpengemodtager".into(),
            }),
        ));
    }
    // Aarhus's record goes on: a target group, an activity, and a
    // deregistration with the job centre's reason.
    let record = events.last().unwrap().aggregate_id;
    let target = TargetGroupAssigned { target_group: "Jobparat".into(), from: d("2025-01-10") };
    let activity =
        ActivityStarted { activity_id: "A1".into(), kind: "Virksomhedspraktik".into(), start: d("2025-02-01") };
    let gone = EmploymentDeregistered { deregistered_on: d("2025-06-30"), reason: "Intern note om borgeren".into() };
    events.push(odense.event(record, 2, Body::EmploymentTargetGroupAssigned(target)));
    events.push(odense.event(record, 3, Body::EmploymentActivityStarted(activity)));
    events.push(odense.event(record, 4, Body::EmploymentDeregistered(gone)));
    let control = |level: i64| {
        with_sensitivity(
            odense.event(
                Uuid::new_v4(),
                1,
                Body::ControlCaseOpened(ControlCaseOpened {
                    case_number: "K-1".into(),
                    theme: "Samlivsforhold".into(),
                    kle: overblik::domain::Kle::parse("32.18.04").unwrap(),
                    sensitivity: Sensitivity::NotConfidential,
                    opened_on: d("2024-06-01"),
                    org_unit: "Kontrol".into(),
                    caseworker: Some("Lars Nielsen".into()),
                    source_system: "KY".into(),
                }),
            ),
            level,
        )
    };
    for level in 1..=4 {
        events.push(control(level));
    }
    for months in [1, 7] {
        let opened = control(1);
        let closed = odense.event(
            opened.aggregate_id,
            2,
            Body::ControlCaseClosed(ControlCaseClosed {
                on: month_ago(months),
                outcome: ControlOutcome::WithoutAction,
            }),
        );
        events.push(opened);
        events.push(closed);
    }
    let refs: Vec<&Event> = events.iter().collect();
    consume(&s.store, "overblik.ky", 0, &encoded(&refs), 500).await.unwrap();
    s
}

fn ask(area: &str) -> pb::ListRequest {
    pb::ListRequest {
        citizen: M.into(),
        purpose: Some(pb::AreaPurpose { data_area: area.into(), purpose_ids: vec![1] }),
        page_size: 500,
        page_token: String::new(),
    }
}

/// How many rows of each list `token` gets for M.
async fn counts(s: &Served, token: &str) -> [usize; 8] {
    let mut c = OverblikClient::new(s.channel.clone());
    let t = Some(token);
    [
        c.list_cases(authed(ask("sager"), t)).await.unwrap().into_inner().items.len(),
        c.list_grants(authed(ask("ydelser"), t)).await.unwrap().into_inner().items.len(),
        c.list_payments(authed(ask("ydelser"), t)).await.unwrap().into_inner().items.len(),
        c.list_control_cases(authed(ask("kontrolsager"), t)).await.unwrap().into_inner().items.len(),
        c.list_udk_cases(authed(ask("udk_sager"), t)).await.unwrap().into_inner().items.len(),
        c.list_udk_benefits(authed(ask("udk_ydelser"), t)).await.unwrap().into_inner().items.len(),
        c.list_employment(authed(ask("beskaeftigelse"), t)).await.unwrap().into_inner().items.len(),
        c.list_documents(authed(ask("sager"), t)).await.unwrap().into_inner().items.len(),
    ]
}

async fn every_row_type_passes_every_filter(backend: Backend) {
    let s = matrix_facts(backend).await;
    let token = |cvr: &str, level: i64, kle: Option<&str>| {
        let claims =
            Claims { foelsomhed: Some(level), kle: kle.map(|k| vec![k.to_string()]), ..employee(cvr, &EVERY_ROLE) };
        s.key.mint(&claims).unwrap()
    };
    //      cases grants payments control udk_cases udk_benefits employment documents
    // Sensitivity: a caller of level L sees the rows of levels 1..=L of each
    // classified kind; the payment without a grant and the VIP journal note
    // only at level 4; §11a adds the control case closed without action a
    // month ago (level 1).
    for level in 1..=4usize {
        let vip = usize::from(level == 4);
        let got = counts(&s, &token(AARHUS, level as i64, None)).await;
        assert_eq!(got, [level, level, level + vip, level + 1, level, level, 1, level + vip], "level {level}");
    }
    // KLE: inside the constraint everything classified; outside it nothing
    // classified, and the job-centre records (which carry no KLE) stay.
    assert_eq!(counts(&s, &token(AARHUS, 4, Some("32.18.*"))).await, [4, 4, 5, 5, 4, 4, 1, 5]);
    assert_eq!(counts(&s, &token(AARHUS, 4, Some("27.*"))).await, [0, 0, 0, 0, 0, 0, 1, 0]);
    // Authority: Odense's caller gets Odense's casework rows and their
    // documents; §11a and §8 are across authorities.
    assert_eq!(counts(&s, &token(ODENSE, 4, None)).await, [1, 1, 1, 5, 4, 4, 1, 1]);

    // Borgerblikket: the citizen's own, whatever the level or authority.
    let me = s.key.mint(&citizen_claims(M)).unwrap();
    let mut b = BorgerblikketClient::new(s.channel.clone());
    let mine = |size: u32| pb::MyListRequest { page_size: size, page_token: String::new() };
    let cases = b.list_my_cases(authed(mine(500), Some(&me))).await.unwrap().into_inner();
    let grants = b.list_my_grants(authed(mine(500), Some(&me))).await.unwrap().into_inner();
    let payments = b.list_my_payments(authed(mine(500), Some(&me))).await.unwrap().into_inner();
    assert_eq!((cases.items.len(), grants.items.len(), payments.items.len()), (9, 9, 11));
    assert_eq!(cases.items.iter().filter(|c| c.from_udk).count(), 4);
    // Both job-centre registrations, Odense's with its target group and
    // activity; the job centre's reason for the deregistration is not the
    // citizen's view (the message has no field for it).
    let jobs = b.list_my_employment(authed(mine(500), Some(&me))).await.unwrap().into_inner();
    assert_eq!(jobs.items.len(), 2);
    let odense_job = jobs.items.iter().find(|j| j.authority == ODENSE).expect("Odense's registration");
    assert_eq!((odense_job.target_group.as_str(), odense_job.deregistered_on.as_str()), ("Jobparat", "2025-06-30"));
    assert_eq!(odense_job.activities.len(), 1);
    assert_eq!(odense_job.activities[0].kind, "Virksomhedspraktik");
    assert!(!format!("{jobs:?}").contains("Intern note"), "the deregistration reason stays with the job centre");
    // One page at a time, and an employee's token is refused.
    let one = b.list_my_employment(authed(mine(1), Some(&me))).await.unwrap().into_inner();
    assert_eq!(one.items.len(), 1);
    assert!(!one.next_page_token.is_empty());
    let employee = token(AARHUS, 4, None);
    let refused = b.list_my_employment(authed(mine(10), Some(&employee))).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // Document titles show to citizens only where the case's authority
    // switched them on (Odense has no settings): nothing of them leaves.
    let bytes = prost::Message::encode_to_vec(&cases);
    assert!(!String::from_utf8_lossy(&bytes).contains(DOC_TITLE), "no document title reaches Borgerblikket");
    // …and nobody else's: X sees none of M's.
    let x = s.key.mint(&citizen_claims(X)).unwrap();
    assert!(b.list_my_grants(authed(mine(500), Some(&x))).await.unwrap().into_inner().items.is_empty());
    assert!(b.list_my_employment(authed(mine(500), Some(&x))).await.unwrap().into_inner().items.is_empty());

    // The overview's ydelser section filters payments like the list.
    let level2 = token(AARHUS, 2, None);
    let req = pb::CitizenOverviewRequest {
        citizen: M.into(),
        purposes: vec![pb::AreaPurpose { data_area: "ydelser".into(), purpose_ids: vec![1] }],
    };
    let overview =
        OverblikClient::new(s.channel.clone()).get_citizen_overview(authed(req, Some(&level2))).await.unwrap();
    let section = &overview.into_inner().sections[0];
    assert_eq!((section.grants.len(), section.payments.len()), (2, 2), "a level-2 caller sees no level-3 payment");
}
crate::both_backends!(every_row_type_passes_every_filter);

async fn the_vip_alarm_fires_for_payments(backend: Backend) {
    let s = matrix_facts(backend).await;
    let vip = s.key.mint(&Claims { foelsomhed: Some(4), ..employee(AARHUS, &EVERY_ROLE) }).unwrap();
    OverblikClient::new(s.channel.clone()).list_payments(authed(ask("ydelser"), Some(&vip))).await.unwrap();
    let records = s.store.audit_records(&AuditFilter::default(), 0, 100).await.unwrap();
    let lookup = records.iter().rev().find(|r| r.entry.kind == "lookup").unwrap();
    assert!(lookup.entry.search_criteria.contains("ListPayments"));
    assert_eq!(lookup.entry.alarms, ["vip"]);
}
crate::both_backends!(the_vip_alarm_fires_for_payments);

/// Runs a few lookups at Aarhus and at Odense on X.
async fn lookups_at_two_authorities(s: &Served) {
    let mut c = OverblikClient::new(s.channel.clone());
    for cvr in [AARHUS, ODENSE] {
        let t = s.key.mint(&Claims { foelsomhed: Some(4), ..employee(cvr, &["Se sager"]) }).unwrap();
        c.list_cases(authed(crate::serve::list("sager", &[1]), Some(&t))).await.unwrap();
        c.list_cases(authed(crate::serve::list("sager", &[]), Some(&t))).await.unwrap_err();
    }
}

async fn a_data_protection_officer_sees_only_their_authoritys_records(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    lookups_at_two_authorities(&s).await;
    let mut audit = AuditClient::new(s.channel.clone());
    let odense_dpo = s.key.mint(&employee(ODENSE, &[ROLE_DPO])).unwrap();
    let q = pb::AuditQuery { page_size: 1000, ..Default::default() };
    let seen = audit.query_audit(authed(q.clone(), Some(&odense_dpo))).await.unwrap().into_inner().items;
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|r| r.authority == ODENSE), "{:?}", seen.iter().map(|r| &r.authority).collect::<Vec<_>>());
    let aarhus_users = seen.iter().filter(|r| r.user_id.contains(AARHUS)).count();
    assert_eq!(aarhus_users, 0);
    // The citizen's report, the CSV and the alarms likewise.
    let report = audit
        .citizen_report(authed(pb::CitizenReportRequest { citizen: X.into(), ..Default::default() }, Some(&odense_dpo)))
        .await
        .unwrap()
        .into_inner();
    assert!(!report.entries.is_empty() && report.entries.iter().all(|e| e.authority == ODENSE));
    let csv = crate::serve::csv_of(audit.export_csv(authed(q.clone(), Some(&odense_dpo))).await).await.unwrap();
    assert!(!csv.contains(&format!("user@{AARHUS}")), "{csv}");
    let alarms = audit.list_alarms(authed(pb::AlarmQuery::default(), Some(&odense_dpo))).await.unwrap().into_inner();
    assert!(alarms.items.iter().all(|a| !a.user_id.contains(AARHUS)));

    // The national supervisory role sees every authority's.
    let catalogue = overblik::catalogue::Catalogue::built_in();
    let national = s.key.mint(&employee(ODENSE, &[&catalogue.supervisory_role])).unwrap();
    let all = audit.query_audit(authed(q, Some(&national))).await.unwrap().into_inner().items;
    assert!(all.iter().any(|r| r.authority == AARHUS) && all.iter().any(|r| r.authority == ODENSE));
    // A caseworker gets nothing.
    let caseworker = s.key.mint(&employee(ODENSE, &["Se sager"])).unwrap();
    let err = audit.query_audit(authed(pb::AuditQuery::default(), Some(&caseworker))).await.unwrap_err();
    assert_eq!(err.get_details_error_info().unwrap().reason, "NO_ROLE");
}
crate::both_backends!(a_data_protection_officer_sees_only_their_authoritys_records);

async fn a_person_shown_as_a_party_finds_the_lookup_in_their_own_report(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    // An Aarhus caseworker looks up X; one of X's cases is Y's, naming X.
    let t = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let cases = OverblikClient::new(s.channel.clone())
        .list_cases(authed(crate::serve::list("sager", &[1]), Some(&t)))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(cases.iter().any(|c| c.parties.iter().any(|p| p.id.ends_with(Y))), "Y's identity left with X's lookup");
    let dpo = s.key.mint(&employee(AARHUS, &[ROLE_DPO])).unwrap();
    let report = AuditClient::new(s.channel.clone())
        .citizen_report(authed(pb::CitizenReportRequest { citizen: Y.into(), ..Default::default() }, Some(&dpo)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.entries.len(), 1, "Y's report shows the lookup that showed Y");
    assert_eq!((report.entries[0].authority.as_str(), report.entries[0].purpose.as_str()), (AARHUS, "Sagsbehandling"));
    // The record is in the same group as the lookup: one request id.
    let records = s.store.audit_records(&AuditFilter::default(), 0, 100).await.unwrap();
    let lookup = records.iter().find(|r| r.entry.kind == "lookup" && r.entry.decision == "allow").unwrap();
    let disclosure = records.iter().find(|r| r.entry.kind == "party_disclosure").unwrap();
    assert_eq!(lookup.entry.request_id, disclosure.entry.request_id);
    assert_eq!(disclosure.entry.citizen, format!("urn:oio:cpr-nr:{Y}"));
}
crate::both_backends!(a_person_shown_as_a_party_finds_the_lookup_in_their_own_report);

/// Bytes the audit log holds in its text fields.
fn size(records: &[overblik::audit::Record]) -> usize {
    records
        .iter()
        .map(|r| {
            let e = &r.entry;
            e.search_criteria.len() + e.user_id.len() + e.user_name.len() + e.data_area.len() + e.citizen.len() + 200
        })
        .sum()
}

async fn anonymous_callers_cannot_grow_the_log(backend: Backend) {
    let s = served_with(backend, Limits { per_minute: 10, peers: 100 }).await;
    let before = s.store.audit_head().await.unwrap().0;
    let mut c = OverblikClient::new(s.channel.clone()).max_encoding_message_size(8 << 20);
    let huge = "o".to_string() + &"9".repeat(3 << 20);
    let (mut unauthenticated, mut exhausted) = (0, 0);
    for _ in 0..40 {
        let mut req = crate::serve::list(&"=HYPERLINK(\"x\")".repeat(1000), &[1; 100]);
        req.page_token = huge.clone();
        match c.list_cases(authed(req, None)).await.unwrap_err().code() {
            Code::Unauthenticated => unauthenticated += 1,
            Code::ResourceExhausted => exhausted += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((unauthenticated, exhausted), (10, 30), "ten a minute from one address, then refused");
    let records = s.store.audit_records(&AuditFilter::default(), before, 1000).await.unwrap();
    assert_eq!(records.len(), 10, "one small record per answered call; the refused ones are summarised per minute");
    assert!(size(&records) < 10 * 1024, "{} bytes", size(&records));
    assert!(records.iter().all(|r| r.entry.reason == "NO_TOKEN" && !r.entry.search_criteria.contains("HYPERLINK")));
    assert!(records[0].entry.search_criteria.contains("peer: 127.0.0.1"), "{}", records[0].entry.search_criteria);
}
crate::both_backends!(anonymous_callers_cannot_grow_the_log);

async fn hostile_input_from_a_caller_is_recorded_as_a_hash(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let t = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let mut c = OverblikClient::new(s.channel.clone());
    let before = s.store.audit_head().await.unwrap().0;
    let mut req = crate::serve::list("sager", &[1]);
    req.page_token = "\u{0}".into();
    let err = c.list_cases(authed(req, Some(&t))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(!err.message().contains('\u{0}'));
    let formula = crate::serve::list("=HYPERLINK(\"http://x\",\"klik\")", &[1]);
    assert_eq!(c.list_cases(authed(formula, Some(&t))).await.unwrap_err().code(), Code::InvalidArgument);
    let records = s.store.audit_records(&AuditFilter::default(), before, 100).await.unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!((r.entry.decision.as_str(), r.entry.reason.as_str()), ("deny", "BAD_REQUEST"));
        assert!(r.entry.search_criteria.contains("sha256:"), "{}", r.entry.search_criteria);
        assert!(!r.entry.search_criteria.contains('\u{0}') && !r.entry.search_criteria.contains("HYPERLINK"));
        assert!(r.entry.data_area.is_empty());
    }
}
crate::both_backends!(hostile_input_from_a_caller_is_recorded_as_a_hash);

/// A NUL page token once made PostgreSQL refuse the whole group commit,
/// failing everyone's lookups with it. Now nothing of it reaches the log,
/// and a group that fails is written one request at a time.
async fn no_request_can_fail_another_ones_audit(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    // A record the database refuses, as a stand-in for any entry it can't
    // store: a trigger refusing one user's records.
    let refuse = match backend {
        Backend::Postgres => {
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.user_id = 'poison' THEN RAISE EXCEPTION 'poisoned record'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER poison BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION poison();"
        }
        Backend::Sqlite => {
            "CREATE TRIGGER poison BEFORE INSERT ON audit_log WHEN NEW.user_id = 'poison'
             BEGIN SELECT RAISE(ABORT, 'poisoned record'); END;"
        }
    };
    crate::serve::raw(&s.db.url, refuse).await.unwrap();
    let good = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let poison = s.key.mint(&Claims { sub: "poison".into(), ..employee(AARHUS, &["Se sager"]) }).unwrap();
    let mut tasks = Vec::new();
    for i in 0..120 {
        let mut c = OverblikClient::new(s.channel.clone());
        let (t, nul) = match i % 3 {
            0 => (poison.clone(), false),
            1 => (good.clone(), true),
            _ => (good.clone(), false),
        };
        tasks.push(tokio::spawn(async move {
            let mut req = crate::serve::list("sager", &[1]);
            if nul {
                req.page_token = "\u{0}".into();
            }
            (i % 3, c.list_cases(authed(req, Some(&t))).await)
        }));
    }
    let mut legit_failures = 0;
    for t in tasks {
        let (kind, result) = t.await.unwrap();
        match (kind, result) {
            (0, Ok(_)) => panic!("a lookup whose record was refused must not answer"),
            (0, Err(e)) => {
                assert_eq!(e.code(), Code::Unavailable);
                assert!(!e.message().contains("poisoned"), "no database text to callers: {}", e.message());
            }
            (1, r) => assert_eq!(r.unwrap_err().code(), Code::InvalidArgument),
            (_, r) => legit_failures += usize::from(r.is_err()),
        }
    }
    assert_eq!(legit_failures, 0, "one bad record never fails another caller");
    let check = overblik::audit::read::verify(&s.store).await.unwrap();
    assert!(check.ok(), "{:?}", check.first_bad);
}
crate::both_backends!(no_request_can_fail_another_ones_audit);

async fn csv_exports_cannot_carry_formulas(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    // A token's name is the IdP's, but the export must not run it either.
    let t = s
        .key
        .mint(&Claims { name: Some("=HYPERLINK(\"http://x\",\"klik\")".into()), ..employee(AARHUS, &["Se sager"]) })
        .unwrap();
    OverblikClient::new(s.channel.clone())
        .list_cases(authed(crate::serve::list("sager", &[1]), Some(&t)))
        .await
        .unwrap();
    let dpo = s.key.mint(&employee(AARHUS, &[ROLE_DPO])).unwrap();
    let csv = crate::serve::csv_of(
        AuditClient::new(s.channel.clone()).export_csv(authed(pb::AuditQuery::default(), Some(&dpo))).await,
    )
    .await
    .unwrap();
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    for line in csv.lines() {
        for field in line.split(',') {
            let f = field.trim_start_matches('"');
            assert!(!f.starts_with(['=', '+', '@']), "{field} in {line}");
        }
    }
    // A filter value that is a formula is refused, not echoed.
    let err = AuditClient::new(s.channel.clone())
        .export_csv(authed(pb::AuditQuery { data_area: "=1+1".into(), ..Default::default() }, Some(&dpo)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
crate::both_backends!(csv_exports_cannot_carry_formulas);

async fn agreements_are_their_authoritys_and_signed_by_a_second_person(backend: Backend) {
    let s = served(backend).await;
    let mut a = AgreementsClient::new(s.channel.clone());
    let today = copenhagen_today(Utc::now());
    let register = |id: &str| pb::RegisterAgreementRequest {
        agreement_id: id.into(),
        data_area: "forskudsopgoerelse".into(),
        purpose_id: 1,
        legal_basis: "Lov om sygedagpenge § 11".into(),
        klik_task: "K53".into(),
        valid_from: today.to_string(),
        valid_to: (today + Days::new(30)).to_string(),
    };
    let id = "urn:ufst:adgangsgrundlag:aftale:k53-2026";
    let aarhus = s.key.mint(&employee(AARHUS, &[ROLE_AGREEMENTS])).unwrap();
    let odense = s.key.mint(&employee(ODENSE, &[ROLE_AGREEMENTS])).unwrap();
    a.register_agreement(authed(register(id), Some(&aarhus))).await.unwrap();
    // The same id at another authority is that authority's own agreement:
    // nothing about Aarhus's leaks.
    let theirs = a.register_agreement(authed(register(id), Some(&odense))).await.unwrap().into_inner();
    assert_eq!(theirs.authority, ODENSE);
    // Twice at one authority: refused, in words that give nothing away.
    let err = a.register_agreement(authed(register(id), Some(&aarhus))).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let message = err.message().to_lowercase();
    assert!(
        !message.contains("duplicate") && !message.contains("unique") && !message.contains("constraint"),
        "{message}"
    );
    // The registrar can't sign it; a colleague can.
    let err = a.sign_agreement(authed(pb::SignAgreementRequest { agreement_id: id.into() }, Some(&aarhus))).await;
    assert_eq!(err.unwrap_err().get_details_error_info().unwrap().reason, "FOUR_EYES");
    let colleague =
        s.key.mint(&Claims { sub: "kollega@aarhus".into(), ..employee(AARHUS, &[ROLE_AGREEMENTS]) }).unwrap();
    let signed = a.sign_agreement(authed(pb::SignAgreementRequest { agreement_id: id.into() }, Some(&colleague))).await;
    assert!(signed.unwrap().into_inner().active);
    // Odense's copy is untouched.
    let list = a.list_agreements(authed(pb::ListAgreementsRequest::default(), Some(&odense))).await.unwrap();
    assert_eq!(list.into_inner().items[0].status, "requested");
    // Every refusal is recorded.
    let records = s.store.audit_records(&AuditFilter::default(), 0, 100).await.unwrap();
    let refusals: Vec<&str> =
        records.iter().filter(|r| r.entry.decision == "deny").map(|r| r.entry.reason.as_str()).collect();
    assert_eq!(refusals, ["ALREADY_EXISTS", "FOUR_EYES"]);
}
crate::both_backends!(agreements_are_their_authoritys_and_signed_by_a_second_person);

async fn numeric_fields_have_ranges_and_nothing_panics(backend: Backend) {
    let s = served(backend).await;
    let admin = s.key.mint(&employee(AARHUS, &[ROLE_AGREEMENTS])).unwrap();
    let mut a = AgreementsClient::new(s.channel.clone());
    let err =
        a.list_lapsing(authed(pb::ListLapsingRequest { within_days: 100_000_000 }, Some(&admin))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let ok = a.list_lapsing(authed(pb::ListLapsingRequest { within_days: 3650 }, Some(&admin))).await;
    assert!(ok.is_ok(), "the server is still there and the largest horizon works");
    // Page sizes past the maximum are the maximum; offsets past the bound
    // are refused.
    let t = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let mut c = OverblikClient::new(s.channel.clone());
    let mut req = crate::serve::list("sager", &[1]);
    req.page_size = u32::MAX;
    assert!(c.list_cases(authed(req.clone(), Some(&t))).await.is_ok());
    req.page_token = format!("o{}", u64::MAX);
    assert_eq!(c.list_cases(authed(req, Some(&t))).await.unwrap_err().code(), Code::InvalidArgument);
}
crate::both_backends!(numeric_fields_have_ranges_and_nothing_panics);

async fn tokens_live_at_most_a_working_day(backend: Backend) {
    let s = served(backend).await;
    let mut c = OverblikClient::new(s.channel.clone());
    let now = Utc::now().timestamp();
    let century = s.key.mint(&Claims { exp: now + 100 * 365 * 86_400, ..employee(AARHUS, &["Se sager"]) }).unwrap();
    let err = c.list_cases(authed(crate::serve::list("sager", &[1]), Some(&century))).await.unwrap_err();
    assert_eq!(
        (err.code(), err.get_details_error_info().unwrap().reason.as_str()),
        (Code::Unauthenticated, "BAD_TOKEN")
    );
    let array = s
        .key
        .mint(&Claims {
            aud: overblik::identity::Audience::Many(vec!["sapa".into(), "overblik".into()]),
            ..employee(AARHUS, &["Se sager"])
        })
        .unwrap();
    assert!(c.list_cases(authed(crate::serve::list("sager", &[1]), Some(&array))).await.is_ok());
    let stranger = KeyFile::generate_dev().unwrap().mint(&employee(AARHUS, &["Se sager"])).unwrap();
    assert_eq!(
        c.list_cases(authed(crate::serve::list("sager", &[1]), Some(&stranger))).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}
crate::both_backends!(tokens_live_at_most_a_working_day);

async fn get_case_records_exactly_what_it_returns(backend: Backend) {
    let s = served(backend).await;
    let case = load_facts(&s.store).await;
    let t = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let mut c = OverblikClient::new(s.channel.clone());
    let get = |id: String| pb::GetCaseRequest {
        citizen: X.into(),
        case_id: id,
        purpose: Some(pb::AreaPurpose { data_area: "sager".into(), purpose_ids: vec![1] }),
    };
    let before = s.store.audit_head().await.unwrap().0;
    c.get_case(authed(get(case.to_string()), Some(&t))).await.unwrap();
    let err = c.get_case(authed(get(Uuid::new_v4().to_string()), Some(&t))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let records = s.store.audit_records(&AuditFilter::default(), before, 100).await.unwrap();
    let summary: Vec<(&str, &str, i32)> =
        records.iter().map(|r| (r.entry.decision.as_str(), r.entry.reason.as_str(), r.entry.rows_returned)).collect();
    assert_eq!(summary, [("allow", "", 1), ("allow", "NOT_FOUND", 0)]);
}
crate::both_backends!(get_case_records_exactly_what_it_returns);

async fn get_case_returns_and_records_the_documents_the_caller_may_see(backend: Backend) {
    let s = matrix_facts(backend).await;
    let token =
        |level: i64| s.key.mint(&Claims { foelsomhed: Some(level), ..employee(AARHUS, &["Se sager"]) }).unwrap();
    let mut c = OverblikClient::new(s.channel.clone());
    // The level-1 caller sees one case at Aarhus: the one with the VIP note.
    let listed = c.list_cases(authed(ask("sager"), Some(&token(1)))).await.unwrap().into_inner().items;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].documents.is_empty(), "lists leave documents to ListDocuments");
    let get = pb::GetCaseRequest {
        citizen: M.into(),
        case_id: listed[0].case_id.clone(),
        purpose: Some(pb::AreaPurpose { data_area: "sager".into(), purpose_ids: vec![1] }),
    };
    let before = s.store.audit_head().await.unwrap().0;
    let low = c.get_case(authed(get.clone(), Some(&token(1)))).await.unwrap().into_inner();
    let kinds: Vec<(&str, i32)> = low.documents.iter().map(|d| (d.kind.as_str(), d.sensitivity)).collect();
    assert_eq!(kinds, [("document", 1)], "the VIP journal note stays hidden");
    assert_eq!(low.documents[0].case_id, low.case_id);
    let vip = c.get_case(authed(get, Some(&token(4)))).await.unwrap().into_inner();
    assert_eq!(vip.documents.len(), 2);
    let records = s.store.audit_records(&AuditFilter::default(), before, 100).await.unwrap();
    let summary: Vec<(i32, Vec<String>)> =
        records.iter().map(|r| (r.entry.rows_returned, r.entry.alarms.clone())).collect();
    assert_eq!(summary, [(2, vec![]), (3, vec!["vip".to_string()])], "the case and each document that left");

    // ListDocuments is decided like ListCases: the role of sager, one
    // purpose of it, and no other area.
    let no_role = s.key.mint(&Claims { foelsomhed: Some(4), ..employee(AARHUS, &["Se ydelser"]) }).unwrap();
    let err = c.list_documents(authed(ask("sager"), Some(&no_role))).await.unwrap_err();
    assert_eq!((err.code(), err.get_details_error_info().unwrap().reason), (Code::PermissionDenied, "NO_ROLE".into()));
    let mut no_purpose = ask("sager");
    no_purpose.purpose.as_mut().unwrap().purpose_ids.clear();
    let err = c.list_documents(authed(no_purpose, Some(&token(4)))).await.unwrap_err();
    assert_eq!(err.get_details_error_info().unwrap().reason, "PURPOSE_MISSING");
    let err = c.list_documents(authed(ask("ydelser"), Some(&token(4)))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
crate::both_backends!(get_case_returns_and_records_the_documents_the_caller_may_see);
