//! Borgerblikket as each authority configures it: what its citizens see of
//! its rows, who may read and change the settings, and the monthly call
//! statistics — through gRPC, on both backends.

use chrono::Utc;
use overblik::api::ROLE_BORGERBLIKKET;
use overblik::borgerblikket::{Bucket, CallKind, Month};
use overblik::domain::{Kle, copenhagen_today};
use overblik::events::body::*;
use overblik::events::{Body, Event};
use overblik::proto as pb;
use overblik::proto::borgerblikket_client::BorgerblikketClient;
use overblik::proto::borgerblikket_config_client::BorgerblikketConfigClient;
use overblik::store::{AuditFilter, Store};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::build::{Citizen, consume, d, encoded};
use crate::serve::{Served, authed, citizen_claims, employee, served};
use crate::support::Backend;

const AARHUS: &str = "55133018";
const ODENSE: &str = "35209115";
const UDK: &str = "29980636";
/// The citizen with rows at Aarhus, Odense and UDK.
const X: &str = "0101801234";
/// A citizen with no rows anywhere.
const Z: &str = "0404804567";

/// A case import of `c` at its authority, under `kle`, from `source`,
/// opened on `opened` and closed on `closed`.
fn case(c: &Citizen, id: Uuid, title: &str, kle: &str, opened: &str, closed: Option<&str>, source: &str) -> Event {
    let mut e = c.case_import(id, opened);
    if let Body::CaseImported(CaseImported(f)) = &mut e.body {
        f.title = title.into();
        f.kle = Kle::parse(kle).unwrap();
        f.source_system = source.into();
        if let Some(closed) = closed {
            f.status_history.as_mut().unwrap().push(StatusEntry { status: CaseStatus::Afsluttet, from: d(closed) });
        }
    }
    e
}

fn employment(c: &Citizen) -> Event {
    c.event(
        Uuid::new_v4(),
        1,
        Body::EmploymentRegistered(EmploymentRegistered {
            registered_on: d("2025-01-01"),
            jobcenter: "Jobcenter".into(),
            category: "Dagpengemodtager".into(),
        }),
    )
}

/// X's rows: at Aarhus a case under each rule and a registration; at
/// Odense (no settings) a case with a document and a registration; a UDK
/// case.
async fn load(store: &Store) {
    let aarhus = Citizen::new(X).at(AARHUS);
    let odense = Citizen::new(X).at(ODENSE);
    let udk = Citizen::new(X).at(UDK);
    let (shown, odense_case) = (Uuid::new_v4(), Uuid::new_v4());
    let events = [
        case(&aarhus, shown, "Ansøgning om kontanthjælp", "32.18.04", "2025-03-01", None, "KY"),
        aarhus.document(shown, 2, "Afgørelse om kontanthjælp", DocumentKind::Document, None),
        case(&aarhus, Uuid::new_v4(), "Underretning", "27.12.00", "2025-03-01", None, "KY"),
        case(&aarhus, Uuid::new_v4(), "Gammel åben sag", "32.18.04", "2024-06-01", None, "KY"),
        case(&aarhus, Uuid::new_v4(), "Gammel lukket sag", "32.18.04", "2024-06-01", Some("2024-09-01"), "KY"),
        case(&aarhus, Uuid::new_v4(), "Sag fra SBSYS", "32.18.04", "2025-03-01", None, "SBSYS"),
        employment(&aarhus),
        case(&odense, odense_case, "Odenses sag", "27.12.00", "2020-01-01", None, "SBSYS"),
        odense.document(odense_case, 2, "Odenses dokument", DocumentKind::Document, None),
        employment(&odense),
        case(&udk, Uuid::new_v4(), "Folkepension", "32.18.04", "2024-01-01", None, "UDK Pension"),
    ];
    let refs: Vec<&Event> = events.iter().collect();
    consume(store, "overblik.ky", 0, &encoded(&refs), 100).await.unwrap();
}

fn topic(kle: &str, from: &str, name: &str) -> pb::KleTopic {
    pb::KleTopic { kle: kle.into(), from: from.into(), name: name.into() }
}

/// Aarhus's settings: 32.18.* from 2025 only, from KY only, titles as
/// headings, no documents, active older cases hidden, employment shown.
fn aarhus_settings() -> pb::BorgerblikketSettings {
    pb::BorgerblikketSettings {
        topics: vec![topic("32.18.*", "2025-01-01", "Kontanthjælp og forsørgelse")],
        active_older_cases: "hidden".into(),
        source_systems: vec!["KY".into()],
        document_titles: "hidden".into(),
        case_heading: "case_title".into(),
        employment: "shown".into(),
    }
}

async fn set(s: &Served, settings: pb::BorgerblikketSettings) {
    let admin = s.key.mint(&employee(AARHUS, &[ROLE_BORGERBLIKKET])).unwrap();
    let req = pb::SetBorgerblikketSettingsRequest { authority: AARHUS.into(), settings: Some(settings) };
    BorgerblikketConfigClient::new(s.channel.clone())
        .set_borgerblikket_settings(authed(req, Some(&admin)))
        .await
        .unwrap();
}

fn my() -> pb::MyListRequest {
    pb::MyListRequest { page_size: 0, page_token: String::new() }
}

async fn titles(s: &Served) -> Vec<String> {
    let x = s.key.mint(&citizen_claims(X)).unwrap();
    let cases = BorgerblikketClient::new(s.channel.clone()).list_my_cases(authed(my(), Some(&x))).await.unwrap();
    let mut v: Vec<String> = cases.into_inner().items.into_iter().map(|c| c.title).collect();
    v.sort();
    v
}

async fn a_municipality_decides_which_of_its_cases_its_citizens_see(backend: Backend) {
    let s = served(backend).await;
    load(&s.store).await;
    let everything = [
        "Ansøgning om kontanthjælp",
        "Folkepension",
        "Gammel lukket sag",
        "Gammel åben sag",
        "Odenses sag",
        "Sag fra SBSYS",
        "Underretning",
    ];
    assert_eq!(titles(&s).await, everything, "without settings everything shows, as it always did");

    set(&s, aarhus_settings()).await;
    // Not under an enabled topic (27.12.00), created before the from-date,
    // or from a source system not listed: absent. Odense and UDK have no
    // settings: theirs show whatever their topic, date or source.
    assert_eq!(titles(&s).await, ["Ansøgning om kontanthjælp", "Folkepension", "Odenses sag"]);

    // Active older cases with the option on; the closed older case never.
    set(&s, pb::BorgerblikketSettings { active_older_cases: "shown".into(), ..aarhus_settings() }).await;
    assert_eq!(titles(&s).await, ["Ansøgning om kontanthjælp", "Folkepension", "Gammel åben sag", "Odenses sag"]);

    // Every source system: SBSYS's case shows too.
    set(&s, pb::BorgerblikketSettings { source_systems: vec![], ..aarhus_settings() }).await;
    assert!(titles(&s).await.contains(&"Sag fra SBSYS".to_string()));
}
crate::both_backends!(a_municipality_decides_which_of_its_cases_its_citizens_see);

async fn document_titles_and_headings_follow_the_municipalitys_switches(backend: Backend) {
    let s = served(backend).await;
    load(&s.store).await;
    let x = s.key.mint(&citizen_claims(X)).unwrap();
    let mut b = BorgerblikketClient::new(s.channel.clone());
    let text = |list: &pb::MyCaseList| String::from_utf8_lossy(&prost::Message::encode_to_vec(list)).into_owned();
    // Without settings, and with titles hidden: no document of any case.
    let list = b.list_my_cases(authed(my(), Some(&x))).await.unwrap().into_inner();
    assert!(list.items.iter().all(|c| c.documents.is_empty()));
    assert!(!text(&list).contains("Afgørelse om kontanthjælp") && !text(&list).contains("Odenses dokument"));
    set(&s, aarhus_settings()).await;
    let list = b.list_my_cases(authed(my(), Some(&x))).await.unwrap().into_inner();
    assert!(!text(&list).contains("Afgørelse om kontanthjælp"));

    // Titles shown, cases headed by their topic: Aarhus's case carries its
    // document's title and its topic's name; Odense's (no settings) still
    // its own title and no document.
    let on = pb::BorgerblikketSettings {
        document_titles: "shown".into(),
        case_heading: "kle_topic".into(),
        ..aarhus_settings()
    };
    set(&s, on).await;
    let list = b.list_my_cases(authed(my(), Some(&x))).await.unwrap().into_inner();
    let aarhus: Vec<&pb::MyCase> = list.items.iter().filter(|c| c.authority == AARHUS).collect();
    assert_eq!(aarhus.len(), 1);
    assert_eq!(aarhus[0].title, "Kontanthjælp og forsørgelse");
    assert_eq!(aarhus[0].documents.len(), 1);
    assert_eq!(
        (aarhus[0].documents[0].title.as_str(), aarhus[0].documents[0].kind.as_str()),
        ("Afgørelse om kontanthjælp", "document")
    );
    let odense = list.items.iter().find(|c| c.authority == ODENSE).unwrap();
    assert_eq!((odense.title.as_str(), odense.documents.len()), ("Odenses sag", 0));
    assert!(!text(&list).contains("Ansøgning om kontanthjælp"), "the case's own title gives way to its topic's name");
    // The record counts what left: three cases and one document title.
    let records = s
        .store
        .audit_records(&AuditFilter { kinds: Some(vec!["citizen_lookup"]), ..Default::default() }, 0, 100)
        .await
        .unwrap();
    assert_eq!(records.last().unwrap().entry.rows_returned, 4);
}
crate::both_backends!(document_titles_and_headings_follow_the_municipalitys_switches);

async fn the_employment_switch_hides_the_municipalitys_registrations(backend: Backend) {
    let s = served(backend).await;
    load(&s.store).await;
    let x = s.key.mint(&citizen_claims(X)).unwrap();
    let mut b = BorgerblikketClient::new(s.channel.clone());
    let authorities = |l: pb::MyEmploymentList| {
        let mut v: Vec<String> = l.items.into_iter().map(|e| e.authority).collect();
        v.sort();
        v
    };
    let jobs = b.list_my_employment(authed(my(), Some(&x))).await.unwrap().into_inner();
    assert_eq!(authorities(jobs), [ODENSE, AARHUS]);
    set(&s, pb::BorgerblikketSettings { employment: "hidden".into(), ..aarhus_settings() }).await;
    let jobs = b.list_my_employment(authed(my(), Some(&x))).await.unwrap().into_inner();
    assert_eq!(authorities(jobs), [ODENSE], "no registration of Aarhus's; Odense's as before");
}
crate::both_backends!(the_employment_switch_hides_the_municipalitys_registrations);

async fn monthly_statistics_count_each_call_per_authority(backend: Backend) {
    let s = served(backend).await;
    load(&s.store).await;
    let x = s.key.mint(&citizen_claims(X)).unwrap();
    let z = s.key.mint(&citizen_claims(Z)).unwrap();
    let mut b = BorgerblikketClient::new(s.channel.clone());
    // Aarhus hides its registrations and every case but 32.18.* from KY.
    set(&s, pb::BorgerblikketSettings { employment: "hidden".into(), ..aarhus_settings() }).await;
    // Cases twice: Aarhus, Odense and UDK each had rows and showed one.
    b.list_my_cases(authed(my(), Some(&x))).await.unwrap();
    b.list_my_cases(authed(my(), Some(&x))).await.unwrap();
    // Employment once: Aarhus's hidden (without data), Odense's shown.
    b.list_my_employment(authed(my(), Some(&x))).await.unwrap();
    // Benefits: X has none anywhere, so the national bucket, without data.
    b.list_my_grants(authed(my(), Some(&x))).await.unwrap();
    b.list_my_payments(authed(my(), Some(&x))).await.unwrap();
    // Z has nothing at all.
    b.list_my_cases(authed(my(), Some(&z))).await.unwrap();
    // An employee's refused call is not a citizen's call.
    let employee_token = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    b.list_my_cases(authed(my(), Some(&employee_token))).await.unwrap_err();

    let month = Month::of(copenhagen_today(Utc::now()));
    let counts = |bucket| {
        let store = s.store.clone();
        async move {
            store
                .citizen_call_counts(bucket, month)
                .await
                .unwrap()
                .into_iter()
                .map(|c| (c.kind, (c.with_data, c.without_data)))
                .collect::<Vec<_>>()
        }
    };
    let aarhus = Bucket::parse(AARHUS).unwrap();
    assert_eq!(
        counts(aarhus).await,
        [(CallKind::Cases, (2, 0)), (CallKind::Benefits, (0, 0)), (CallKind::Employment, (0, 1))]
    );
    assert_eq!(
        counts(Bucket::parse(ODENSE).unwrap()).await,
        [(CallKind::Cases, (2, 0)), (CallKind::Benefits, (0, 0)), (CallKind::Employment, (1, 0))]
    );
    assert_eq!(
        counts(Bucket::parse(UDK).unwrap()).await,
        [(CallKind::Cases, (2, 0)), (CallKind::Benefits, (0, 0)), (CallKind::Employment, (0, 0))]
    );
    assert_eq!(
        counts(Bucket::National).await,
        [(CallKind::Cases, (0, 1)), (CallKind::Benefits, (0, 2)), (CallKind::Employment, (0, 0))]
    );

    // Aarhus's administrator reads the same through the service.
    let admin = s.key.mint(&employee(AARHUS, &[ROLE_BORGERBLIKKET])).unwrap();
    let req = pb::CallStatisticsRequest { authority: String::new(), month: month.to_string() };
    let stats = BorgerblikketConfigClient::new(s.channel.clone())
        .get_call_statistics(authed(req, Some(&admin)))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(String, i64, i64)> =
        stats.counts.into_iter().map(|c| (c.kind, c.with_data, c.without_data)).collect();
    assert_eq!(got, [("cases".to_string(), 2, 0), ("benefits".to_string(), 0, 0), ("employment".to_string(), 0, 1)]);
    // The metrics carry kind and outcome, never an authority.
    let metrics = overblik::metrics::METRICS.render();
    let lines: Vec<&str> = metrics.lines().filter(|l| l.starts_with("overblik_citizen_calls_total{")).collect();
    assert_eq!(lines.len(), 6);
    assert!(lines.iter().all(|l| !l.contains(AARHUS) && !l.contains("authority")));
}
crate::both_backends!(monthly_statistics_count_each_call_per_authority);

async fn only_the_authoritys_administrator_reads_and_changes_its_settings(backend: Backend) {
    let s = served(backend).await;
    let mut c = BorgerblikketConfigClient::new(s.channel.clone());
    let get = |authority: &str| pb::GetBorgerblikketSettingsRequest { authority: authority.into() };
    let set = |settings: pb::BorgerblikketSettings| pb::SetBorgerblikketSettingsRequest {
        authority: AARHUS.into(),
        settings: Some(settings),
    };
    let admin = s.key.mint(&employee(AARHUS, &[ROLE_BORGERBLIKKET])).unwrap();
    let odense_admin = s.key.mint(&employee(ODENSE, &[ROLE_BORGERBLIKKET])).unwrap();
    let caseworker = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let citizen = s.key.mint(&citizen_claims(X)).unwrap();

    let none = c.get_borgerblikket_settings(authed(get(""), Some(&admin))).await.unwrap().into_inner();
    assert_eq!((none.authority.as_str(), none.configured, none.version), (AARHUS, false, 0));
    let first = c.set_borgerblikket_settings(authed(set(aarhus_settings()), Some(&admin))).await.unwrap().into_inner();
    assert_eq!((first.configured, first.version), (true, 1));
    assert_eq!(first.settings.as_ref(), Some(&aarhus_settings()));
    let second = c.set_borgerblikket_settings(authed(set(aarhus_settings()), Some(&admin))).await.unwrap().into_inner();
    assert_eq!(second.version, 2);
    let read = c.get_borgerblikket_settings(authed(get(AARHUS), Some(&admin))).await.unwrap().into_inner();
    assert_eq!((read.version, read.settings), (2, Some(aarhus_settings())));

    // Refused, each with its status and reason.
    let refusals: [(&str, Option<&str>, Code, &str); 4] = [
        ("another authority's administrator", Some(&odense_admin), Code::PermissionDenied, "OTHER_AUTHORITY"),
        ("a caseworker without the role", Some(&caseworker), Code::PermissionDenied, "NO_ROLE"),
        ("a citizen", Some(&citizen), Code::PermissionDenied, "NO_ROLE"),
        ("an anonymous caller", None, Code::Unauthenticated, "NO_TOKEN"),
    ];
    for (who, token, code, reason) in refusals {
        let e = c.get_borgerblikket_settings(authed(get(AARHUS), token)).await.unwrap_err();
        assert_eq!((e.code(), e.get_details_error_info().unwrap().reason.as_str()), (code, reason), "{who} reads");
        let e = c.set_borgerblikket_settings(authed(set(aarhus_settings()), token)).await.unwrap_err();
        assert_eq!((e.code(), e.get_details_error_info().unwrap().reason.as_str()), (code, reason), "{who} changes");
        let stats = pb::CallStatisticsRequest { authority: AARHUS.into(), month: "2026-01".into() };
        let e = c.get_call_statistics(authed(stats, token)).await.unwrap_err();
        assert_eq!((e.code(), e.get_details_error_info().unwrap().reason.as_str()), (code, reason), "{who} counts");
    }
    let still = c.get_borgerblikket_settings(authed(get(""), Some(&admin))).await.unwrap().into_inner();
    assert_eq!(still.version, 2, "no refused change changed anything");

    // Malformed settings: BAD_REQUEST naming the field, never the value.
    let spoilt: Vec<(&str, &str, pb::BorgerblikketSettings)> = vec![
        (
            "topics.kle",
            "27.1*",
            pb::BorgerblikketSettings { topics: vec![topic("27.1*", "", "x")], ..aarhus_settings() },
        ),
        (
            "topics.from",
            "01-03-2025",
            pb::BorgerblikketSettings { topics: vec![topic("27.*", "01-03-2025", "x")], ..aarhus_settings() },
        ),
        (
            "source_systems",
            "KY\u{1b}[31m",
            pb::BorgerblikketSettings { source_systems: vec!["KY\u{1b}[31m".into()], ..aarhus_settings() },
        ),
        (
            "topics",
            "Emne 1000",
            pb::BorgerblikketSettings {
                topics: (0..1001).map(|i| topic("*", "", &format!("Emne {i}"))).collect(),
                ..aarhus_settings()
            },
        ),
        (
            "case_heading",
            "overskrift-x",
            pb::BorgerblikketSettings { case_heading: "overskrift-x".into(), ..aarhus_settings() },
        ),
    ];
    for (field, value, settings) in spoilt {
        let e = c.set_borgerblikket_settings(authed(set(settings), Some(&admin))).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}");
        let info = e.get_details_error_info().unwrap();
        assert_eq!(info.reason, "BAD_REQUEST");
        assert!(info.metadata["detail"].starts_with(&format!("{field}: ")), "{field}: {:?}", info.metadata);
        assert!(!e.message().contains(value) && !info.metadata["detail"].contains(value), "{field} echoed");
    }
    let bad_month = pb::CallStatisticsRequest { authority: String::new(), month: "2026-13".into() };
    let e = c.get_call_statistics(authed(bad_month, Some(&admin))).await.unwrap_err();
    assert!(e.get_details_error_info().unwrap().metadata["detail"].starts_with("month: "));

    // Every read, change and refusal is on record, under its kind.
    let records = s
        .store
        .audit_records(&AuditFilter { kinds: Some(vec!["borgerblikket_config"]), ..Default::default() }, 0, 1000)
        .await
        .unwrap();
    let line = |r: &overblik::audit::Record| {
        let rpc = r.entry.search_criteria.split(';').next().unwrap().trim_start_matches("rpc: ").to_string();
        (rpc, r.entry.authority.clone(), r.entry.decision.clone(), r.entry.reason.clone())
    };
    let got: Vec<(String, String, String, String)> = records.iter().map(line).collect();
    let mut want: Vec<(String, String, String, String)> = Vec::new();
    let mut push = |rpc: &str, authority: &str, decision: &str, reason: &str| {
        want.push((rpc.into(), authority.into(), decision.into(), reason.into()))
    };
    push("GetBorgerblikketSettings", AARHUS, "allow", "");
    push("SetBorgerblikketSettings", AARHUS, "allow", "");
    push("SetBorgerblikketSettings", AARHUS, "allow", "");
    push("GetBorgerblikketSettings", AARHUS, "allow", "");
    for (authority, reason) in [(ODENSE, "OTHER_AUTHORITY"), (AARHUS, "NO_ROLE"), ("", "NO_ROLE"), ("", "NO_TOKEN")] {
        for rpc in ["GetBorgerblikketSettings", "SetBorgerblikketSettings", "GetCallStatistics"] {
            push(rpc, authority, "deny", reason);
        }
    }
    push("GetBorgerblikketSettings", AARHUS, "allow", "");
    for _ in 0..5 {
        push("SetBorgerblikketSettings", AARHUS, "deny", "BAD_REQUEST");
    }
    push("GetCallStatistics", AARHUS, "deny", "BAD_REQUEST");
    assert_eq!(got, want);
    // A refused value is on record only as its hash; no record holds it.
    assert!(records.iter().all(|r| !r.entry.search_criteria.contains("01-03-2025")));
    // Odense's attempt names the authority it asked for.
    assert!(records.iter().any(|r| r.entry.authority == ODENSE && r.entry.search_criteria.contains(AARHUS)));
}
crate::both_backends!(only_the_authoritys_administrator_reads_and_changes_its_settings);
