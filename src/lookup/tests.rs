//! The lookup flow: what leaves and what is recorded, for each shape of call.

use chrono::{NaiveDate, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::audit::{Decision, Outcome};
use crate::domain::{ActionFacet, Oere, OpenPeriod, Period};
use crate::events::body::*;
use crate::identity::KleConstraint;
use crate::projection::state::{Case, Grant, Payment, State};

const AARHUS: &str = "55133018";
const A: &str = "urn:oio:cpr-nr:0101801234";
const B: &str = "urn:oio:cpr-nr:0202802345";

fn d(s: &str) -> NaiveDate {
    crate::domain::parse_date(s).unwrap()
}

fn party(s: &str) -> PartyId {
    PartyId::parse(s).unwrap()
}

fn employee(level: i64) -> Employee {
    Employee {
        user_id: "mh".into(),
        name: Some("Mette Hansen".into()),
        authority: Cvr::parse(AARHUS).unwrap(),
        roles: vec!["Se sager".into(), "Se ydelser".into()],
        kle: KleConstraint::any(),
        sensitivity: Sensitivity::from_level(level).unwrap(),
        org_unit: None,
        own_cpr: None,
        it_system: None,
    }
}

fn agg(id: u128, subject: &str, state: State) -> Aggregate {
    Aggregate {
        id: Uuid::from_u128(id),
        version: 1,
        subject: party(subject),
        authority: Cvr::parse(AARHUS).unwrap(),
        source: "urn:overblik:source:test".into(),
        updated_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        state,
    }
}

fn case(primary: &str, others: &[&str], opened: &str) -> State {
    let mut parties = vec![Party { role: PartyRole::Primary, id: party(primary) }];
    parties.extend(others.iter().map(|o| Party { role: PartyRole::Secondary, id: party(o) }));
    parties.push(Party { role: PartyRole::BenefitRecipient, id: party("urn:oio:cvr-nr:29189420") });
    State::Case(Case {
        case_number: "1".into(),
        title: "Sag".into(),
        kle: Kle::parse("32.18.04").unwrap(),
        action_facet: ActionFacet::parse("G01").unwrap(),
        sensitivity: Sensitivity::NotConfidential,
        parties,
        org_unit: "Ydelse".into(),
        caseworker: Some("Lars".into()),
        source_system: "KY".into(),
        status_history: vec![StatusEntry { status: CaseStatus::Opstaaet, from: d(opened) }],
        documents: Vec::new(),
    })
}

/// A's case with three documents: an application, a journal note at VIP,
/// and a decision, dated in that order.
fn case_with_documents(id: u128) -> Aggregate {
    let mut a = agg(id, A, case(A, &[], "2025-01-10"));
    let State::Case(c) = &mut a.state else { unreachable!() };
    let doc = |n: u128, date: &str, kind, sensitivity| DocumentFields {
        document_id: Uuid::from_u128(n),
        title: format!("Dokument {n}"),
        date: d(date),
        direction: DocumentDirection::Internal,
        kind,
        kle: None,
        sensitivity,
    };
    c.documents = vec![
        doc(10, "2025-01-10", DocumentKind::Document, None),
        doc(11, "2025-01-12", DocumentKind::JournalNote, Some(Sensitivity::Vip)),
        doc(12, "2025-01-20", DocumentKind::Document, None),
    ];
    a
}

fn payment(grant: Option<u128>) -> State {
    let period = Period { start: d("2025-02-01"), end: d("2025-02-28") };
    State::Payment(Payment {
        fields: PaymentFields {
            payment_number: "P".into(),
            grant_id: grant.map(Uuid::from_u128),
            period,
            disposal_date: d("2025-02-28"),
            gross: Oere(100),
            after_tax: Oere(60),
            sent: Oere(60),
            paid: None,
            paid_note: None,
            lines: vec![PaymentLine {
                period,
                gross: Oere(100),
                kle: Kle::parse("32.18.04").unwrap(),
                granted_benefit_id: "B1".into(),
            }],
        },
        corrections: 0,
    })
}

fn grant(sensitivity: Sensitivity) -> State {
    State::Grant(Grant {
        fields: GrantFields {
            grant_number: "G".into(),
            case_id: None,
            period: OpenPeriod { start: d("2025-01-01"), end: None },
            sensitivity,
            reason: None,
            benefits: vec![GrantedBenefit {
                id: "B1".into(),
                name: "Kontanthjælp".into(),
                benefit_type: "Kontanthjælp".into(),
                kle: Kle::parse("32.18.04").unwrap(),
                period: OpenPeriod { start: d("2025-01-01"), end: None },
                plan: PaymentPlan { frequency: Frequency::Monthly, amount: Oere(100) },
            }],
        },
        ended: None,
    })
}

struct Run {
    tid: TransactionId,
    actor: Actor,
    alarms: AlarmSettings,
}

impl Run {
    fn new() -> Run {
        Run { tid: TransactionId::generate(), actor: Actor::Anonymous, alarms: AlarmSettings::default() }
    }

    fn cx(&self) -> Context<'_> {
        Context {
            transaction_id: &self.tid,
            request_id: Uuid::from_u128(42),
            actor: &self.actor,
            today: d("2025-03-15"),
            alarms: &self.alarms,
            udk: Cvr::parse("29980636").unwrap(),
            service_agreement: None,
        }
    }
}

fn query(rpc: Rpc, citizen: &str, areas: &[DataArea]) -> Query {
    Query {
        rpc,
        citizen: party(citizen),
        asks: areas.iter().map(|a| Ask { area: *a, purpose_ids: vec![1] }).collect(),
        page: (rpc != Rpc::GetCitizenOverview && rpc != Rpc::GetCase).then(|| Page::first(0)),
        case_id: None,
    }
}

fn run<'a>(run: &Run, e: &Employee, q: &Query, loaded: &'a Loaded) -> Answer<'a> {
    let catalogue = Catalogue::built_in();
    let decisions = decide_all(Ok(e), &catalogue, &[], run.cx().today, &q.asks);
    answer(&run.cx(), Ok(e), q, decisions, loaded)
}

#[test]
fn another_persons_identity_in_a_shown_case_is_recorded_for_that_person() {
    // B looks up; B is a secondary party of A's case.
    let loaded = Loaded::new(&party(B), vec![agg(1, A, case(A, &[B], "2025-01-10"))], false);
    let r = Run::new();
    let q = query(Rpc::ListCases, B, &[DataArea::Sager]);
    let a = run(&r, &employee(1), &q, &loaded);
    assert_eq!(a.entries.len(), 2, "{:#?}", a.entries);
    let (lookup, disclosure) = (&a.entries[0], &a.entries[1]);
    assert_eq!((lookup.kind, lookup.citizen.as_ref(), lookup.rows()), (Kind::Lookup, Some(&party(B)), 1));
    assert_eq!(disclosure.kind, Kind::PartyDisclosure);
    assert_eq!(disclosure.citizen.as_ref(), Some(&party(A)), "A's own report will show it");
    assert_eq!(
        (disclosure.request_id, disclosure.area, disclosure.purpose_id),
        (lookup.request_id, Some(DataArea::Sager), Some(1))
    );
    assert_eq!(disclosure.decision(), Decision::Allow);
    assert!(a.entries.iter().all(|e| e.citizen != Some(party("urn:oio:cvr-nr:29189420"))), "a company is no person");
}

#[test]
fn no_disclosure_is_recorded_when_the_case_is_not_shown() {
    let loaded = Loaded::new(&party(B), vec![agg(1, A, case(A, &[B], "2025-01-10"))], false);
    let r = Run::new();
    let mut e = employee(1);
    e.kle = KleConstraint::parse(&["27.*".into()]).unwrap();
    let a = run(&r, &e, &query(Rpc::ListCases, B, &[DataArea::Sager]), &loaded);
    assert_eq!(a.entries.len(), 1);
    assert_eq!(a.entries[0].rows(), 0);
}

#[test]
fn get_case_shows_and_records_exactly_the_one_case() {
    let loaded = Loaded::new(&party(B), vec![agg(1, A, case(A, &[B], "2025-01-10"))], false);
    let r = Run::new();
    let mut q = query(Rpc::GetCase, B, &[DataArea::Sager]);
    q.case_id = Some(Uuid::from_u128(1));
    assert_eq!(
        q.reads(&[Ok(Allow { area: DataArea::Sager, purpose_id: 1, roles_used: vec![], agreement_id: None })]),
        Some(Reads::One(Uuid::from_u128(1)))
    );
    let a = run(&r, &employee(1), &q, &loaded);
    let Ok(shown) = &a.sections[0].shown else { panic!("allowed") };
    assert_eq!(shown.rows[0].len(), 1);
    assert_eq!(a.entries[0].rows(), 1);

    // A case that doesn't name the citizen asked about is not theirs to show,
    // and the record says nothing was.
    let loaded = Loaded::new(&party(B), vec![agg(2, A, case(A, &[], "2025-01-10"))], false);
    q.case_id = Some(Uuid::from_u128(2));
    let a = run(&r, &employee(1), &q, &loaded);
    let Ok(shown) = &a.sections[0].shown else { panic!("allowed") };
    assert!(shown.rows[0].is_empty());
    assert_eq!(a.entries.len(), 1);
    assert_eq!(a.entries[0].outcome, Outcome::Allowed { rows: 0, alarms: vec![], note: Some(Reason::NotFound) });
}

#[test]
fn lists_page_in_a_fixed_order_and_count_the_page() {
    let aggs: Vec<Aggregate> = (1..=7).map(|i| agg(i, A, case(A, &[], &format!("2025-01-0{i}")))).collect();
    let loaded = Loaded::new(&party(A), aggs, false);
    let r = Run::new();
    let mut q = query(Rpc::ListCases, A, &[DataArea::Sager]);
    q.page = Page::new(0, 3);
    let a = run(&r, &employee(1), &q, &loaded);
    let Ok(shown) = &a.sections[0].shown else { panic!() };
    let Rows::Cases(v) = &shown.rows[0] else { panic!() };
    assert_eq!(v.iter().map(|(a, _)| a.id.as_u128()).collect::<Vec<_>>(), [7, 6, 5], "newest first");
    assert_eq!(shown.next_offset, Some(3));
    assert_eq!(a.entries[0].rows(), 3, "the page, not everything visible");
    q.page = Page::new(6, 3);
    let a = run(&r, &employee(1), &q, &loaded);
    let Ok(shown) = &a.sections[0].shown else { panic!() };
    assert_eq!((shown.rows[0].len(), shown.next_offset), (1, None));
}

#[test]
fn the_overview_caps_its_sections_and_says_so_and_passes_on_the_stores_cut() {
    let aggs: Vec<Aggregate> =
        (1..=(OVERVIEW_ROWS as u128 + 1)).map(|i| agg(i, A, case(A, &[], "2025-01-01"))).collect();
    let r = Run::new();
    let q = query(Rpc::GetCitizenOverview, A, &[DataArea::Sager]);
    let loaded = Loaded::new(&party(A), aggs, false);
    let a = run(&r, &employee(1), &q, &loaded);
    let Ok(shown) = &a.sections[0].shown else { panic!() };
    assert_eq!((shown.rows[0].len(), shown.truncated), (OVERVIEW_ROWS, true));
    assert_eq!(a.entries[0].rows() as usize, OVERVIEW_ROWS);

    let loaded = Loaded::new(&party(A), vec![agg(1, A, case(A, &[], "2025-01-01"))], true);
    let a = run(&r, &employee(1), &query(Rpc::ListCases, A, &[DataArea::Sager]), &loaded);
    let Ok(shown) = &a.sections[0].shown else { panic!() };
    assert!(shown.truncated, "the store's bound cut rows off: the answer says so");
}

#[test]
fn each_area_is_decided_and_recorded_on_its_own() {
    let loaded = Loaded::new(&party(A), vec![agg(1, A, case(A, &[], "2025-01-01"))], false);
    let r = Run::new();
    let mut e = employee(1);
    e.roles = vec!["Se sager".into()];
    let q = query(Rpc::GetCitizenOverview, A, &[DataArea::Sager, DataArea::Ydelser]);
    let a = run(&r, &e, &q, &loaded);
    assert!(a.sections[0].shown.is_ok());
    assert_eq!(a.sections[1].shown.as_ref().unwrap_err().reason, crate::access::DenyReason::NoRole);
    assert_eq!(
        a.entries.iter().map(|e| (e.area, e.decision())).collect::<Vec<_>>(),
        [(Some(DataArea::Sager), Decision::Allow), (Some(DataArea::Ydelser), Decision::Deny)]
    );
    // Only the allowed area is read.
    let decisions = decide_all(Ok(&e), &Catalogue::built_in(), &[], d("2025-03-15"), &q.asks);
    assert_eq!(q.reads(&decisions), Some(Reads::Citizen { kinds: vec![AggregateKind::Case], party_cases: true }));
}

#[test]
fn a_payment_without_its_grant_raises_the_vip_alarm_for_those_who_may_see_it() {
    let loaded = Loaded::new(
        &party(A),
        vec![agg(1, A, payment(None)), agg(2, A, grant(Sensitivity::NotConfidential)), agg(3, A, payment(Some(2)))],
        false,
    );
    let r = Run::new();
    let q = query(Rpc::ListPayments, A, &[DataArea::Ydelser]);
    let a = run(&r, &employee(1), &q, &loaded);
    assert_eq!(a.entries[0].rows(), 1, "only the payment whose grant is known, at level 1");
    assert!(matches!(&a.entries[0].outcome, Outcome::Allowed { alarms, .. } if alarms.is_empty()));
    let a = run(&r, &employee(4), &q, &loaded);
    assert_eq!(a.entries[0].rows(), 2);
    assert!(matches!(&a.entries[0].outcome, Outcome::Allowed { alarms, .. } if alarms == &[AlarmKind::Vip]));
}

#[test]
fn without_an_employee_every_area_is_denied_and_nothing_is_read() {
    let q = query(Rpc::GetCitizenOverview, A, &[DataArea::Sager, DataArea::UdkSager]);
    let deny = Deny::new(crate::access::DenyReason::NoToken, "x");
    let decisions = decide_all(Err(&deny), &Catalogue::built_in(), &[], d("2025-03-15"), &q.asks);
    assert_eq!(q.reads(&decisions), None);
    let r = Run::new();
    let loaded = Loaded::default();
    let a = answer(&r.cx(), Err(&deny), &q, decisions, &loaded);
    assert!(a.entries.iter().all(|e| e.decision() == Decision::Deny && e.rows() == 0));
    assert_eq!(a.entries.len(), 2);
}

fn employment(registered: &str) -> State {
    State::Employment(crate::projection::state::Employment {
        registered_on: d(registered),
        jobcenter: "Jobcenter Aarhus".into(),
        category: "Dagpengemodtager".into(),
        deregistered_on: None,
        deregistration_reason: None,
        target_group: Some("Jobparat".into()),
        target_group_from: Some(d(registered)),
        activities: Vec::new(),
    })
}

#[test]
fn a_citizen_lists_their_own_job_centre_registrations_newest_first_recorded_under_employment() {
    let loaded = Loaded::new(
        &party(A),
        vec![
            agg(1, A, employment("2024-01-01")),
            agg(2, A, employment("2025-01-01")),
            // Loaded by mistake, another's: never shown.
            agg(3, B, employment("2025-02-01")),
        ],
        false,
    );
    let r = Run::new();
    let configs = crate::borgerblikket::Configs::default();
    let Mined { shown, entry, .. } = mine(&r.cx(), Ok(&party(A)), Mine::Employment, Page::first(10), &loaded, &configs);
    let Shown { rows, .. } = shown.unwrap();
    let Rows::Employment(v) = &rows[0] else { panic!("employment rows") };
    assert_eq!(v.iter().map(|(a, _)| a.id).collect::<Vec<_>>(), vec![Uuid::from_u128(2), Uuid::from_u128(1)]);
    assert_eq!(
        (entry.kind, entry.area, entry.citizen),
        (Kind::CitizenLookup, Some(DataArea::Beskaeftigelse), Some(party(A)))
    );
    assert!(matches!(entry.outcome, Outcome::Allowed { rows: 2, .. }), "{:?}", entry.outcome);
}

#[test]
fn get_case_returns_and_records_the_case_with_the_documents_the_caller_may_see() {
    let loaded = Loaded::new(&party(A), vec![case_with_documents(1)], false);
    let r = Run::new();
    let mut q = query(Rpc::GetCase, A, &[DataArea::Sager]);
    q.case_id = Some(Uuid::from_u128(1));
    let a = run(&r, &employee(1), &q, &loaded);
    let Ok(shown) = &a.sections[0].shown else { panic!("allowed") };
    let Rows::Documents(docs) = &shown.rows[1] else { panic!("documents") };
    let ids: Vec<u128> = docs.iter().map(|d| d.document.document_id.as_u128()).collect();
    assert_eq!(ids, [12, 10], "newest first, without the VIP note");
    assert_eq!(a.entries[0].rows(), 3, "the case and its two documents left");
    assert_eq!(a.entries[0].outcome, Outcome::Allowed { rows: 3, alarms: vec![], note: None });
    // A VIP caller gets the note too, and the VIP alarm with it.
    let a = run(&r, &employee(4), &q, &loaded);
    assert_eq!(a.entries[0].rows(), 4);
    assert_eq!(a.entries[0].outcome, Outcome::Allowed { rows: 4, alarms: vec![AlarmKind::Vip], note: None });
}

#[test]
fn list_documents_pages_the_documents_of_the_shown_cases_and_counts_the_page() {
    let loaded = Loaded::new(&party(A), vec![case_with_documents(1), case_with_documents(2)], false);
    let r = Run::new();
    let mut q = query(Rpc::ListDocuments, A, &[DataArea::Sager]);
    q.page = Page::new(1, 2);
    assert_eq!(
        q.reads(&[Ok(Allow { area: DataArea::Sager, purpose_id: 1, roles_used: vec![], agreement_id: None })]),
        Some(Reads::Citizen { kinds: vec![AggregateKind::Case], party_cases: true })
    );
    let a = run(&r, &employee(1), &q, &loaded);
    let Ok(shown) = &a.sections[0].shown else { panic!("allowed") };
    assert_eq!(shown.rows.len(), 1);
    let Rows::Documents(docs) = &shown.rows[0] else { panic!("documents") };
    let got: Vec<(u128, u128)> = docs.iter().map(|d| (d.case.id.as_u128(), d.document.document_id.as_u128())).collect();
    // Of (1,12) (2,12) (1,10) (2,10): the page from the second row.
    assert_eq!(got, [(2, 12), (1, 10)]);
    assert_eq!(shown.next_offset, Some(3));
    assert_eq!(a.entries.len(), 1, "documents name no party: no disclosure");
    assert_eq!(a.entries[0].rows(), 2);
    // A caller kept out of the case's KLE sees none of its documents.
    let mut e = employee(4);
    e.kle = KleConstraint::parse(&["27.*".into()]).unwrap();
    let a = run(&r, &e, &q, &loaded);
    assert_eq!(a.entries[0].rows(), 0);
}

#[test]
fn documents_of_another_persons_case_are_recorded_for_that_person_once() {
    // B, a secondary party of A's case, is looked up through the documents.
    let mut shared = case_with_documents(1);
    if let State::Case(c) = &mut shared.state {
        c.parties.push(Party { role: PartyRole::Secondary, id: party(B) });
    }
    let loaded = Loaded::new(&party(B), vec![shared], false);
    let r = Run::new();
    let q = query(Rpc::ListDocuments, B, &[DataArea::Sager]);
    let a = run(&r, &employee(4), &q, &loaded);
    let disclosures: Vec<_> = a.entries.iter().filter(|e| e.kind == Kind::PartyDisclosure).collect();
    assert_eq!(disclosures.len(), 1, "one record for A, however many documents: {:#?}", a.entries);
    assert_eq!(disclosures[0].citizen, Some(party(A)));
    assert_eq!(disclosures[0].decision(), Decision::Allow);
}

/// A's case opened on `opened` and decided on `decided`: two items.
fn decided_case(primary: &str, others: &[&str], opened: &str, decided: &str) -> State {
    let mut s = case(primary, others, opened);
    if let State::Case(c) = &mut s {
        c.status_history.push(StatusEntry { status: CaseStatus::Afgjort, from: d(decided) });
    }
    s
}

/// A's facts for the timeline: two cases (one VIP) and one of B's naming A;
/// a grant that ended with a payment, and a payment without a grant; a
/// job-centre registration with a target group.
fn timeline_facts() -> Loaded {
    let mut vip = decided_case(A, &[], "2025-01-03", "2025-02-03");
    if let State::Case(c) = &mut vip {
        c.sensitivity = Sensitivity::Vip;
    }
    let mut ended = grant(Sensitivity::NotConfidential);
    if let State::Grant(g) = &mut ended {
        g.ended = Some(GrantEnded { end: d("2025-03-01"), reason: Some("Flyttet".into()) });
    }
    let mut job = employment("2025-01-02");
    if let State::Employment(e) = &mut job {
        e.target_group_from = Some(d("2025-01-20"));
        e.deregistered_on = Some(d("2025-03-10"));
        e.deregistration_reason = Some("Intern note".into());
    }
    Loaded::new(
        &party(A),
        vec![
            agg(1, A, decided_case(A, &[], "2025-01-10", "2025-02-20")),
            agg(2, A, vip),
            agg(3, B, case(B, &[A], "2025-01-15")),
            agg(4, A, ended),
            agg(5, A, payment(Some(4))),
            agg(6, A, payment(None)),
            agg(7, A, job),
        ],
        false,
    )
}

fn timeline_caller(level: i64) -> Employee {
    let mut e = employee(level);
    e.roles.push("Se beskæftigelsesdata".into());
    e
}

const TIMELINE_AREAS: [DataArea; 3] = [DataArea::Sager, DataArea::Ydelser, DataArea::Beskaeftigelse];

/// The items of one page of the timeline, and its answer.
fn timeline_page<'a>(e: &Employee, loaded: &'a Loaded, offset: usize, size: u32) -> Answer<'a> {
    let mut q = query(Rpc::GetTimeline, A, &TIMELINE_AREAS);
    q.page = Page::new(offset, size);
    run(&Run::new(), e, &q, loaded)
}

fn summary(items: &[Item]) -> Vec<(String, &'static str, u128)> {
    items.iter().map(|i| (i.date.to_string(), i.kind.as_str(), i.aggregate.map_or(0, |a| a.as_u128()))).collect()
}

#[test]
fn the_timeline_is_newest_first_and_built_only_from_the_rows_the_lists_show() {
    let loaded = timeline_facts();
    let a = timeline_page(&timeline_caller(1), &loaded, 0, 100);
    let page = a.timeline.as_ref().unwrap();
    assert_eq!(
        summary(&page.items),
        [
            ("2025-03-10".to_string(), "employment_deregistered", 7),
            ("2025-03-01".to_string(), "grant_ended", 4),
            ("2025-02-28".to_string(), "payment_disposed", 5),
            ("2025-02-20".to_string(), "case_status_changed", 1),
            ("2025-01-20".to_string(), "target_group_assigned", 7),
            ("2025-01-15".to_string(), "case_status_changed", 3),
            ("2025-01-10".to_string(), "case_status_changed", 1),
            ("2025-01-02".to_string(), "employment_registered", 7),
            ("2025-01-01".to_string(), "grant_started", 4),
        ],
        "neither the VIP case nor the payment without its grant at level 1"
    );
    assert_eq!(page.next_offset, None);
    let labels: Vec<&str> = page.items.iter().map(|i| i.label.as_str()).collect();
    assert_eq!(labels[..4], ["", "Kontanthjælp", "P", "Afgjort"]);
    assert!(!format!("{:?}", page.items).contains("Intern note"), "no reason leaves with the timeline");
    assert!(!format!("{:?}", page.items).contains("Flyttet"));

    // Every item is of a row its area's own list shows the same caller, and
    // every row of those lists has an item.
    let shown_by = |rpc: Rpc, area: DataArea| -> Vec<u128> {
        let mut q = query(rpc, A, &[area]);
        q.page = Page::new(0, 500);
        let answer = run(&Run::new(), &timeline_caller(1), &q, &loaded);
        let Ok(shown) = &answer.sections[0].shown else { panic!("allowed") };
        let mut ids: Vec<u128> = match &shown.rows[0] {
            Rows::Cases(v) => v.iter().map(|(a, _)| a.id.as_u128()).collect(),
            Rows::Grants(v) => v.iter().map(|(a, _)| a.id.as_u128()).collect(),
            Rows::Payments(v) => v.iter().map(|(a, _)| a.id.as_u128()).collect(),
            Rows::Employment(v) => v.iter().map(|(a, _)| a.id.as_u128()).collect(),
            other => panic!("{other:?}"),
        };
        ids.sort();
        ids
    };
    let on_timeline = |kinds: &[ItemKind]| -> Vec<u128> {
        let mut ids: Vec<u128> =
            page.items.iter().filter(|i| kinds.contains(&i.kind)).map(|i| i.aggregate.unwrap().as_u128()).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    assert_eq!(on_timeline(&[ItemKind::CaseStatusChanged]), shown_by(Rpc::ListCases, DataArea::Sager));
    assert_eq!(
        on_timeline(&[ItemKind::GrantStarted, ItemKind::GrantEnded]),
        shown_by(Rpc::ListGrants, DataArea::Ydelser)
    );
    assert_eq!(on_timeline(&[ItemKind::PaymentDisposed]), shown_by(Rpc::ListPayments, DataArea::Ydelser));
    assert_eq!(
        on_timeline(&[ItemKind::EmploymentRegistered, ItemKind::TargetGroupAssigned, ItemKind::EmploymentDeregistered]),
        shown_by(Rpc::ListEmployment, DataArea::Beskaeftigelse)
    );

    // A VIP caller: the VIP case's two changes and the unclassifiable payment.
    let a = timeline_page(&timeline_caller(4), &loaded, 0, 100);
    assert_eq!(a.timeline.as_ref().unwrap().items.len(), 9 + 3);
}

#[test]
fn timeline_pages_give_every_item_once_in_order_and_record_the_rows_that_left() {
    let loaded = timeline_facts();
    let e = timeline_caller(1);
    let whole = timeline_page(&e, &loaded, 0, 500);
    let all = summary(&whole.timeline.as_ref().unwrap().items);
    let mut paged = Vec::new();
    let mut offset = 0;
    let mut counts = Vec::new();
    loop {
        let a = timeline_page(&e, &loaded, offset, 2);
        let page = a.timeline.as_ref().unwrap();
        assert!(page.items.len() <= 2);
        paged.extend(summary(&page.items));
        // One lookup entry per area, counting its rows with an item on the
        // page (a row counts once however many of its items are there).
        let lookups: Vec<(Option<DataArea>, u32)> =
            a.entries.iter().filter(|x| x.kind == Kind::Lookup).map(|x| (x.area, x.rows())).collect();
        let mut expected = Vec::new();
        for area in TIMELINE_AREAS {
            let mut rows: Vec<u128> =
                page.items.iter().filter(|i| i.area == area).map(|i| i.aggregate.unwrap().as_u128()).collect();
            rows.sort();
            rows.dedup();
            expected.push((Some(area), rows.len() as u32));
        }
        assert_eq!(lookups, expected, "page at {offset}");
        // B's case is on a page: B's own report gets the lookup, on that page only.
        let shows_b = page.items.iter().any(|i| i.aggregate == Some(Uuid::from_u128(3)));
        let disclosures: Vec<_> = a.entries.iter().filter(|x| x.kind == Kind::PartyDisclosure).collect();
        assert_eq!(disclosures.len(), usize::from(shows_b), "page at {offset}");
        if shows_b {
            assert_eq!((disclosures[0].citizen, disclosures[0].area), (Some(party(B)), Some(DataArea::Sager)));
        }
        counts.push(lookups.iter().map(|(_, n)| *n).sum::<u32>());
        match page.next_offset {
            Some(next) => offset = next,
            None => break,
        }
    }
    assert_eq!(paged, all, "the pages, joined, are the whole timeline: no gap, no repeat");
    // Case 1's two changes fall on two pages: it left with both, and both count it.
    assert_eq!(counts, [2, 2, 2, 2, 1]);
    assert_eq!(counts.iter().sum::<u32>(), 9, "a row counts on every page it left on");
}

#[test]
fn a_denied_area_is_absent_from_the_timeline_and_the_others_still_show() {
    let loaded = timeline_facts();
    let mut e = timeline_caller(1);
    e.roles.retain(|r| r != "Se ydelser");
    let a = timeline_page(&e, &loaded, 0, 100);
    let page = a.timeline.as_ref().unwrap();
    assert!(page.items.iter().all(|i| i.area != DataArea::Ydelser));
    assert!(page.items.iter().any(|i| i.area == DataArea::Sager));
    assert!(page.items.iter().any(|i| i.area == DataArea::Beskaeftigelse));
    let denied: Vec<DataArea> = a.sections.iter().filter(|s| s.shown.is_err()).map(|s| s.area).collect();
    assert_eq!(denied, [DataArea::Ydelser]);
    let decisions: Vec<(Option<DataArea>, Decision)> =
        a.entries.iter().filter(|x| x.kind == Kind::Lookup).map(|x| (x.area, x.decision())).collect();
    assert_eq!(
        decisions,
        [
            (Some(DataArea::Sager), Decision::Allow),
            (Some(DataArea::Ydelser), Decision::Deny),
            (Some(DataArea::Beskaeftigelse), Decision::Allow)
        ]
    );
    // A KLE constraint outside the cases' and benefits' subjects leaves the
    // job-centre record, which carries none.
    let mut narrow = timeline_caller(4);
    narrow.kle = KleConstraint::parse(&["27.*".into()]).unwrap();
    let a = timeline_page(&narrow, &loaded, 0, 100);
    let areas: Vec<DataArea> = a.timeline.as_ref().unwrap().items.iter().map(|i| i.area).collect();
    assert!(!areas.is_empty() && areas.iter().all(|a| *a == DataArea::Beskaeftigelse), "{areas:?}");
    // The timeline reads what its allowed areas need, and party cases for sager.
    let q = query(Rpc::GetTimeline, A, &TIMELINE_AREAS);
    let decisions = decide_all(Ok(&e), &Catalogue::built_in(), &[], d("2025-03-15"), &q.asks);
    assert_eq!(
        q.reads(&decisions),
        Some(Reads::Citizen { kinds: vec![AggregateKind::Case, AggregateKind::Employment], party_cases: true })
    );
}
