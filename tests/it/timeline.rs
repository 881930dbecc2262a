//! `GetTimeline` over gRPC, on both backends: the same rows as the
//! per-area calls under the same token, areas denied one by one, every
//! item once over the pages, and what each page records.

use chrono::{Datelike, Months, Utc};
use overblik::domain::{Kle, Sensitivity, copenhagen_today};
use overblik::events::body::*;
use overblik::events::{Body, Event};
use overblik::identity::Claims;
use overblik::proto as pb;
use overblik::proto::overblik_client::OverblikClient;
use overblik::store::AuditFilter;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::build::{Citizen, consume, d, encoded};
use crate::serve::{Served, authed, employee, served};
use crate::support::Backend;

const AARHUS: &str = "55133018";
const ODENSE: &str = "35209115";
const UDK: &str = "29980636";
/// The citizen whose timeline is read.
const T: &str = "0404804567";
/// The primary party of a case that names T as a secondary party.
const Y: &str = "0202802345";

const EVERY_ROLE: [&str; 5] = [
    "Se sager",
    "Se ydelser",
    "Se beskæftigelsesdata",
    "Se kontrolsager på tværs af UDK og kommuner",
    "Se sager og ydelser på tværs af UDK og kommuner",
];

const AREAS: [&str; 5] = ["sager", "ydelser", "udk_ydelser", "kontrolsager", "beskaeftigelse"];

fn month_ago(months: u32) -> chrono::NaiveDate {
    copenhagen_today(Utc::now()).checked_sub_months(Months::new(months)).unwrap()
}

/// T's facts. At Aarhus: a case that went Opstaaet → Oplyst → Afgjort, a
/// VIP case, Y's case naming T, a grant that ended with two payments, and a
/// job-centre registration with a target group, an activity that started
/// and ended, and a deregistration with the job centre's reason. At Odense:
/// a case, a registration, an open control case with a step, one closed
/// without action a month ago (shown under §11a) and one seven months ago
/// (not). At UDK: a case and grant, paid last month (shown under §8) and a
/// year ago (not).
async fn timeline_facts(backend: Backend) -> Served {
    let s = served(backend).await;
    let (a, o, u) = (Citizen::new(T).at(AARHUS), Citizen::new(T).at(ODENSE), Citizen::new(T).at(UDK));
    let mut events: Vec<Event> = Vec::new();

    let (c1, c2, c3, g1) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    events.push(a.case_import(c1, "2025-01-05"));
    events.push(a.status(c1, 2, CaseStatus::Oplyst, "2025-02-01"));
    events.push(a.status(c1, 3, CaseStatus::Afgjort, "2025-03-01"));
    let mut vip = a.case_import(c2, "2025-02-10");
    if let Body::CaseImported(c) = &mut vip.body {
        c.0.sensitivity = Sensitivity::Vip;
    }
    events.push(vip);
    let mut shared = Citizen::new(Y).at(AARHUS).case_import(c3, "2025-03-05");
    if let Body::CaseImported(c) = &mut shared.body {
        c.0.parties.push(Party { role: PartyRole::Secondary, id: a.party });
    }
    events.push(shared);
    events.push(a.grant(g1, c1, "2025-01-20"));
    let ended = GrantEnded { end: d("2025-06-30"), reason: Some("Flyttet til anden kommune".into()) };
    events.push(a.event(g1, 2, Body::GrantEnded(ended)));
    events.push(a.payment(Uuid::new_v4(), g1, "2025-02-01", "2025-02-28"));
    events.push(a.payment(Uuid::new_v4(), g1, "2025-03-01", "2025-03-31"));
    let job = Uuid::new_v4();
    let registered = |on: &str| {
        Body::EmploymentRegistered(EmploymentRegistered {
            registered_on: d(on),
            jobcenter: "Jobcenter".into(),
            category: "Dagpengemodtager".into(),
        })
    };
    events.push(a.event(job, 1, registered("2025-01-02")));
    let target = TargetGroupAssigned { target_group: "Jobparat".into(), from: d("2025-01-10") };
    events.push(a.event(job, 2, Body::EmploymentTargetGroupAssigned(target)));
    let started =
        ActivityStarted { activity_id: "A1".into(), kind: "Virksomhedspraktik".into(), start: d("2025-02-01") };
    events.push(a.event(job, 3, Body::EmploymentActivityStarted(started)));
    let stopped = ActivityEnded { activity_id: "A1".into(), end: d("2025-04-30") };
    events.push(a.event(job, 4, Body::EmploymentActivityEnded(stopped)));
    let gone = EmploymentDeregistered { deregistered_on: d("2025-07-01"), reason: "Intern note om borgeren".into() };
    events.push(a.event(job, 5, Body::EmploymentDeregistered(gone)));

    events.push(o.case_import(Uuid::new_v4(), "2025-01-07"));
    events.push(o.event(Uuid::new_v4(), 1, registered("2025-01-03")));
    let opened = |id: Uuid, on: &str| {
        o.event(
            id,
            1,
            Body::ControlCaseOpened(ControlCaseOpened {
                case_number: "K-1".into(),
                theme: "Samlivsforhold".into(),
                kle: Kle::parse("32.18.04").unwrap(),
                sensitivity: Sensitivity::NotConfidential,
                opened_on: d(on),
                org_unit: "Kontrol".into(),
                caseworker: Some("Lars Nielsen".into()),
                source_system: "KY".into(),
            }),
        )
    };
    let open = Uuid::new_v4();
    events.push(opened(open, "2024-06-01"));
    let step = ControlCaseStepRecorded { step: "Partshøring".into(), on: d("2024-07-01") };
    events.push(o.event(open, 2, Body::ControlCaseStepRecorded(step)));
    for months in [1, 7] {
        let id = Uuid::new_v4();
        events.push(opened(id, "2024-05-01"));
        let closed = ControlCaseClosed { on: month_ago(months), outcome: ControlOutcome::WithoutAction };
        events.push(o.event(id, 2, Body::ControlCaseClosed(closed)));
    }

    let (uc, ug) = (Uuid::new_v4(), Uuid::new_v4());
    events.push(u.case_import(uc, "2024-01-05"));
    events.push(u.grant(ug, uc, "2024-01-20"));
    for months in [1, 12] {
        let to = month_ago(months);
        events.push(u.payment(Uuid::new_v4(), ug, &to.with_day(1).unwrap().to_string(), &to.to_string()));
    }
    let refs: Vec<&Event> = events.iter().collect();
    consume(&s.store, "overblik.ky", 0, &encoded(&refs), 500).await.unwrap();
    s
}

fn purposes() -> Vec<pb::AreaPurpose> {
    AREAS.iter().map(|a| pb::AreaPurpose { data_area: a.to_string(), purpose_ids: vec![1] }).collect()
}

fn timeline(size: u32, token: &str) -> pb::TimelineRequest {
    pb::TimelineRequest { citizen: T.into(), purposes: purposes(), page_size: size, page_token: token.into() }
}

fn list(area: &str) -> pb::ListRequest {
    pb::ListRequest {
        citizen: T.into(),
        purpose: Some(pb::AreaPurpose { data_area: area.into(), purpose_ids: vec![1] }),
        page_size: 500,
        page_token: String::new(),
    }
}

/// An item as the test compares them: area, kind, id, date, label, amount,
/// authority.
type Row = (String, String, String, String, String, i64, String);

fn of_item(i: &pb::TimelineItem) -> Row {
    (
        i.data_area.clone(),
        i.kind.clone(),
        i.aggregate_id.clone(),
        i.date.clone(),
        i.label.clone(),
        i.amount_oere,
        i.authority.clone(),
    )
}

fn row(area: &str, kind: &str, id: &str, date: &str, label: &str, amount: i64, authority: &str) -> Row {
    (area.into(), kind.into(), id.into(), date.into(), label.into(), amount, authority.into())
}

/// What the per-area calls show `token`, as the timeline items their dated
/// changes make, and how many rows each area's calls returned. A denied
/// area shows nothing and is named with its reason.
async fn per_area(s: &Served, token: &str) -> (Vec<Row>, Vec<(String, usize)>, Vec<(String, String)>) {
    let mut c = OverblikClient::new(s.channel.clone());
    let t = Some(token);
    let (mut rows, mut counts, mut denied) = (Vec::new(), Vec::new(), Vec::new());
    let mut deny = |area: &str, e: tonic::Status| {
        assert_eq!(e.code(), Code::PermissionDenied, "{area}: {}", e.message());
        denied.push((area.to_string(), e.get_details_error_info().unwrap().reason));
    };
    match c.list_cases(authed(list("sager"), t)).await {
        Ok(r) => {
            let items = r.into_inner().items;
            counts.push(("sager".into(), items.len()));
            for x in &items {
                for h in &x.status_history {
                    rows.push(row("sager", "case_status_changed", &x.case_id, &h.from, &h.status, 0, &x.authority));
                }
            }
        }
        Err(e) => deny("sager", e),
    }
    match (c.list_grants(authed(list("ydelser"), t)).await, c.list_payments(authed(list("ydelser"), t)).await) {
        (Ok(g), Ok(p)) => {
            let (grants, payments) = (g.into_inner().items, p.into_inner().items);
            counts.push(("ydelser".into(), grants.len() + payments.len()));
            for x in &grants {
                let mut types: Vec<&str> = Vec::new();
                for b in &x.benefits {
                    if !types.contains(&b.benefit_type.as_str()) {
                        types.push(&b.benefit_type);
                    }
                }
                let label = types.join(", ");
                rows.push(row("ydelser", "grant_started", &x.grant_id, &x.start_date, &label, 0, &x.authority));
                if x.status == "ended" {
                    rows.push(row("ydelser", "grant_ended", &x.grant_id, &x.end_date, &label, 0, &x.authority));
                }
            }
            for x in &payments {
                let (id, on, number) = (&x.payment_id, &x.disposal_date, &x.payment_number);
                rows.push(row("ydelser", "payment_disposed", id, on, number, x.gross_oere, &x.authority));
            }
        }
        (Err(e), _) | (_, Err(e)) => deny("ydelser", e),
    }
    match c.list_udk_benefits(authed(list("udk_ydelser"), t)).await {
        Ok(r) => {
            let items = r.into_inner().items;
            counts.push(("udk_ydelser".into(), items.len()));
            for x in &items {
                let (on, kind) = (&x.disposal_date, &x.benefit_type);
                rows.push(row("udk_ydelser", "udk_benefit_disposed", "", on, kind, x.gross_oere, &x.authority));
            }
        }
        Err(e) => deny("udk_ydelser", e),
    }
    match c.list_control_cases(authed(list("kontrolsager"), t)).await {
        Ok(r) => {
            let items = r.into_inner().items;
            counts.push(("kontrolsager".into(), items.len()));
            for x in &items {
                let (id, by) = (&x.case_id, &x.authority);
                rows.push(row("kontrolsager", "control_case_opened", id, &x.opened_on, &x.theme, 0, by));
                for st in &x.steps {
                    rows.push(row("kontrolsager", "control_step", id, &st.on, &st.step, 0, by));
                }
                if x.closed_without_action {
                    let kind = "control_case_closed_without_action";
                    rows.push(row("kontrolsager", kind, id, &x.closed_on, "", 0, by));
                }
            }
        }
        Err(e) => deny("kontrolsager", e),
    }
    match c.list_employment(authed(list("beskaeftigelse"), t)).await {
        Ok(r) => {
            let items = r.into_inner().items;
            counts.push(("beskaeftigelse".into(), items.len()));
            for x in &items {
                let (id, by, area) = (&x.record_id, &x.authority, "beskaeftigelse");
                rows.push(row(area, "employment_registered", id, &x.registered_on, &x.category, 0, by));
                if !x.target_group.is_empty() {
                    rows.push(row(area, "target_group_assigned", id, &x.target_group_from, &x.target_group, 0, by));
                }
                for act in &x.activities {
                    rows.push(row(area, "activity_started", id, &act.start_date, &act.kind, 0, by));
                    if !act.end_date.is_empty() {
                        rows.push(row(area, "activity_ended", id, &act.end_date, &act.kind, 0, by));
                    }
                }
                if !x.deregistered_on.is_empty() {
                    rows.push(row(area, "employment_deregistered", id, &x.deregistered_on, "", 0, by));
                }
            }
        }
        Err(e) => deny("beskaeftigelse", e),
    }
    rows.sort();
    (rows, counts, denied)
}

/// The lookup records written after `before`: area, decision, reason,
/// rows; and the persons disclosed.
async fn recorded_since(s: &Served, before: i64) -> (Vec<(String, String, String, usize)>, Vec<String>) {
    let records = s.store.audit_records(&AuditFilter::default(), before, 1000).await.unwrap();
    let lookups = records
        .iter()
        .filter(|r| r.entry.kind == "lookup")
        .map(|r| {
            assert!(r.entry.search_criteria.contains("GetTimeline"), "{}", r.entry.search_criteria);
            let e = &r.entry;
            (e.data_area.clone(), e.decision.clone(), e.reason.clone(), e.rows_returned as usize)
        })
        .collect();
    let disclosed = records.iter().filter(|r| r.entry.kind == "party_disclosure").map(|r| r.entry.citizen.clone());
    (lookups, disclosed.collect())
}

async fn the_timeline_shows_what_the_per_area_calls_show_under_the_same_token(backend: Backend) {
    let s = timeline_facts(backend).await;
    let mint = |claims: Claims| s.key.mint(&claims).unwrap();
    let every = employee(AARHUS, &EVERY_ROLE);
    let without = |role: &str| {
        let roles: Vec<&str> = EVERY_ROLE.iter().copied().filter(|r| *r != role).collect();
        mint(employee(AARHUS, &roles))
    };
    let tokens = [
        ("Aarhus, level 3", mint(every.clone())),
        ("Aarhus, VIP", mint(Claims { foelsomhed: Some(4), ..every.clone() })),
        ("Aarhus, level 1", mint(Claims { foelsomhed: Some(1), ..every.clone() })),
        ("Aarhus, KLE 27", mint(Claims { kle: Some(vec!["27.*".into()]), ..every.clone() })),
        ("Aarhus, no ydelser", without("Se ydelser")),
        ("Aarhus, no sager", without("Se sager")),
        ("Aarhus, no kontrolsager", without("Se kontrolsager på tværs af UDK og kommuner")),
        ("Odense", mint(employee(ODENSE, &EVERY_ROLE))),
    ];
    let mut client = OverblikClient::new(s.channel.clone());
    for (name, token) in &tokens {
        let before = s.store.audit_head().await.unwrap().0;
        let answer = client.get_timeline(authed(timeline(500, ""), Some(token))).await.unwrap().into_inner();
        let (lookups, disclosed) = recorded_since(&s, before).await;
        let (expected, counts, denied) = per_area(&s, token).await;

        assert!(answer.next_page_token.is_empty() && !answer.truncated, "{name}");
        let mut got: Vec<Row> = answer.items.iter().map(of_item).collect();
        let dates: Vec<&str> = answer.items.iter().map(|i| i.date.as_str()).collect();
        assert!(dates.windows(2).all(|w| w[0] >= w[1]), "{name}: newest first: {dates:?}");
        got.sort();
        assert_eq!(got, expected, "{name}: the timeline's items are the per-area rows' dated changes");

        // Areas: in the request's order; a denied one with its reason, as
        // its own list gives it.
        let areas: Vec<&str> = answer.areas.iter().map(|a| a.data_area.as_str()).collect();
        assert_eq!(areas, AREAS, "{name}");
        let timeline_denied: Vec<(String, String)> = answer
            .areas
            .iter()
            .filter_map(|a| a.denial.as_ref().map(|d| (a.data_area.clone(), d.reason.clone())))
            .collect();
        assert_eq!(timeline_denied, denied, "{name}");

        // One record per area: a denied one with its reason; an allowed one
        // counting the rows that left — with the whole timeline on one page,
        // exactly the rows the area's own calls return.
        let expected_records: Vec<(String, String, String, usize)> = AREAS
            .iter()
            .map(|area| match denied.iter().find(|(a, _)| a == area) {
                Some((_, reason)) => (area.to_string(), "deny".into(), reason.clone(), 0),
                None => {
                    let n = counts.iter().find(|(a, _)| a == area).unwrap().1;
                    (area.to_string(), "allow".into(), String::new(), n)
                }
            })
            .collect();
        assert_eq!(lookups, expected_records, "{name}");
        // Y's case left only where sager was shown at Aarhus: Y's own report
        // gets the lookup then, and then only.
        let shows_y = expected.iter().any(|r| r.0 == "sager" && r.6 == AARHUS);
        let y = format!("urn:oio:cpr-nr:{Y}");
        assert_eq!(disclosed, if shows_y { vec![y] } else { vec![] }, "{name}");
        // Nothing of the job centre's reason, the grant's reason, a title or
        // a caseworker leaves with the items.
        let text = format!("{:?}", answer.items);
        for secret in ["Intern note", "Flyttet", "Ansøgning", "Mette Hansen", "Lars Nielsen", T] {
            assert!(!text.contains(secret), "{name}: {secret} in {text}");
        }
    }

    // The tokens above each see what they should, so the comparison above
    // is not of empty lists.
    let level3 = client.get_timeline(authed(timeline(500, ""), Some(&tokens[0].1))).await.unwrap().into_inner();
    let kinds = |t: &pb::Timeline, area: &str| t.items.iter().filter(|i| i.data_area == area).count();
    // sager: c1's three statuses and Y's case; ydelser: start, end, two
    // payments; §8: last month's line; §11a: the open case and its step,
    // the one closed a month ago opened and closed; the Aarhus registration
    // with its five changes.
    let counted: Vec<usize> = AREAS.iter().map(|a| kinds(&level3, a)).collect();
    assert_eq!(counted, [4, 4, 1, 4, 5]);
    let narrow = client.get_timeline(authed(timeline(500, ""), Some(&tokens[3].1))).await.unwrap().into_inner();
    assert_eq!(AREAS.iter().map(|a| kinds(&narrow, a)).collect::<Vec<_>>(), [0, 0, 0, 0, 5]);
    let odense = client.get_timeline(authed(timeline(500, ""), Some(&tokens[7].1))).await.unwrap().into_inner();
    assert_eq!(AREAS.iter().map(|a| kinds(&odense, a)).collect::<Vec<_>>(), [1, 0, 1, 4, 1]);
}
crate::both_backends!(the_timeline_shows_what_the_per_area_calls_show_under_the_same_token);

async fn timeline_pages_give_every_item_once_and_record_each_page(backend: Backend) {
    let s = timeline_facts(backend).await;
    let token = s.key.mint(&employee(AARHUS, &EVERY_ROLE)).unwrap();
    let mut client = OverblikClient::new(s.channel.clone());
    let whole = client.get_timeline(authed(timeline(500, ""), Some(&token))).await.unwrap().into_inner();
    assert_eq!(whole.items.len(), 18);
    let mut joined = Vec::new();
    let mut next = String::new();
    let mut pages = 0;
    loop {
        let before = s.store.audit_head().await.unwrap().0;
        let page = client.get_timeline(authed(timeline(4, &next), Some(&token))).await.unwrap().into_inner();
        pages += 1;
        assert!(page.items.len() <= 4);
        // Each area's record counts its rows with an item on this page:
        // cases, grants and payments, control cases and registrations by
        // their ids; §8's benefits by line (each its own item).
        let (lookups, _) = recorded_since(&s, before).await;
        for (area, decision, _, rows) in &lookups {
            assert_eq!(decision, "allow");
            let mut ids: Vec<String> = page
                .items
                .iter()
                .filter(|i| &i.data_area == area)
                .map(|i| if i.aggregate_id.is_empty() { format!("{i:?}") } else { i.aggregate_id.clone() })
                .collect();
            ids.sort();
            ids.dedup();
            assert_eq!(*rows, ids.len(), "page {pages}, {area}");
        }
        assert_eq!(lookups.len(), AREAS.len());
        joined.extend(page.items);
        if page.next_page_token.is_empty() {
            break;
        }
        next = page.next_page_token;
    }
    assert_eq!(pages, 5);
    assert_eq!(joined, whole.items, "every item once, in order, with no gap and no repeat");
}
crate::both_backends!(timeline_pages_give_every_item_once_and_record_each_page);

async fn the_timeline_refuses_callers_and_requests_it_cannot_serve(backend: Backend) {
    let s = timeline_facts(backend).await;
    let mut client = OverblikClient::new(s.channel.clone());
    let before = s.store.audit_head().await.unwrap().0;

    // No token: refused, and recorded with the call's name and nothing more.
    let err = client.get_timeline(authed(timeline(10, ""), None)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.get_details_error_info().unwrap().reason, "NO_TOKEN");
    let records = s.store.audit_records(&AuditFilter::default(), before, 100).await.unwrap();
    assert_eq!(records.len(), 1);
    let anonymous = &records[0].entry;
    assert_eq!((anonymous.decision.as_str(), anonymous.reason.as_str()), ("deny", "NO_TOKEN"));
    assert!(anonymous.search_criteria.contains("GetTimeline"), "{}", anonymous.search_criteria);
    assert!(anonymous.citizen.is_empty() && !anonymous.search_criteria.contains(T));

    // A page token we never issued: BAD_REQUEST, recorded as a hash.
    let token = s.key.mint(&employee(AARHUS, &EVERY_ROLE)).unwrap();
    let before = s.store.audit_head().await.unwrap().0;
    for bad in ["x4", "o-1", "=HYPERLINK(\"x\")", "o99999999999"] {
        let err = client.get_timeline(authed(timeline(10, bad), Some(&token))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
        assert_eq!(err.get_details_error_info().unwrap().reason, "BAD_REQUEST", "{bad}");
        assert!(!err.message().contains(bad), "{}", err.message());
    }
    let records = s.store.audit_records(&AuditFilter::default(), before, 100).await.unwrap();
    assert_eq!(records.len(), 4);
    for r in &records {
        assert_eq!((r.entry.decision.as_str(), r.entry.reason.as_str()), ("deny", "BAD_REQUEST"));
        assert!(r.entry.search_criteria.contains("sha256:") && !r.entry.search_criteria.contains("HYPERLINK"));
    }
    // An area the timeline doesn't show, or one named twice: BAD_REQUEST too.
    let mut udk_sager = timeline(10, "");
    udk_sager.purposes.push(pb::AreaPurpose { data_area: "udk_sager".into(), purpose_ids: vec![1] });
    let err = client.get_timeline(authed(udk_sager, Some(&token))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut twice = timeline(10, "");
    twice.purposes[1].data_area = "sager".into();
    assert_eq!(client.get_timeline(authed(twice, Some(&token))).await.unwrap_err().code(), Code::InvalidArgument);

    // Every area denied: PERMISSION_DENIED with the first reason, no data,
    // and a record per area.
    let nobody = s.key.mint(&employee(AARHUS, &["Se forskudsopgørelse"])).unwrap();
    let before = s.store.audit_head().await.unwrap().0;
    let err = client.get_timeline(authed(timeline(10, ""), Some(&nobody))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.get_details_error_info().unwrap().reason, "NO_ROLE");
    let (lookups, disclosed) = recorded_since(&s, before).await;
    assert_eq!(lookups.len(), AREAS.len());
    assert!(lookups.iter().all(|(_, decision, reason, rows)| decision == "deny" && reason == "NO_ROLE" && *rows == 0));
    assert!(disclosed.is_empty());
    // One area's purpose missing denies that area alone.
    let mut missing = timeline(500, "");
    missing.purposes[3].purpose_ids.clear();
    let answer = client.get_timeline(authed(missing, Some(&token))).await.unwrap().into_inner();
    let reasons: Vec<String> =
        answer.areas.iter().map(|a| a.denial.as_ref().map_or(String::new(), |d| d.reason.clone())).collect();
    assert_eq!(reasons, ["", "", "", "PURPOSE_MISSING", ""]);
    assert!(answer.items.iter().all(|i| i.data_area != "kontrolsager") && !answer.items.is_empty());
}
crate::both_backends!(the_timeline_refuses_callers_and_requests_it_cannot_serve);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_command_shows_a_timeline() {
    let s = timeline_facts(Backend::Sqlite).await;
    let endpoint = s.endpoint.clone();
    let token = s.key.mint(&employee(AARHUS, &["Se sager", "Se beskæftigelsesdata"])).unwrap();
    let run = move |areas: &[&str]| {
        let mut args = vec!["lookup", "--endpoint", &endpoint, "--token", &token, "--citizen", T, "--json"];
        for a in areas {
            args.extend(["--timeline", a]);
        }
        std::process::Command::new(env!("CARGO_BIN_EXE_overblik")).args(&args).output().unwrap()
    };
    let (ok, denied) =
        tokio::task::spawn_blocking(move || (run(&["sager:1", "ydelser:1", "beskaeftigelse:1"]), run(&["ydelser:1"])))
            .await
            .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    // c1's three statuses, Y's case, and the registration's five changes;
    // ydelser denied for want of the role.
    assert_eq!(v["items"].as_array().unwrap().len(), 4 + 5);
    assert_eq!(v["areas"][1]["denial"]["reason"], "NO_ROLE");
    assert_eq!(denied.status.code(), Some(3), "{}", String::from_utf8_lossy(&denied.stdout));
    let d: serde_json::Value = serde_json::from_slice(&denied.stdout).unwrap();
    assert_eq!(d["reason"], "NO_ROLE");
}
