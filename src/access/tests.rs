//! The decision's deny matrix and the row filters' boundaries.

use chrono::{NaiveDate, TimeZone, Utc};
use uuid::Uuid;

use super::filter::*;
use super::*;
use crate::agreements::Agreement;
use crate::domain::{ActionFacet, Cvr, Kle, Oere, OpenPeriod, PartyId, Period, Sensitivity};
use crate::events::body::*;
use crate::identity::KleConstraint;
use crate::projection::Aggregate;
use crate::projection::state::{Case, ControlCase, Grant, Payment, State};

fn d(s: &str) -> NaiveDate {
    crate::domain::parse_date(s).unwrap()
}

const AARHUS: &str = "55133018";
const ODENSE: &str = "35209115";

fn caller(roles: &[&str]) -> Employee {
    Employee {
        user_id: "mh".into(),
        name: None,
        authority: Cvr::parse(AARHUS).unwrap(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        kle: KleConstraint::any(),
        sensitivity: Sensitivity::Confidential,
        org_unit: None,
        own_cpr: None,
        it_system: None,
    }
}

fn k53(authority: &str, from: &str, to: &str) -> Agreement {
    Agreement::request(
        &Catalogue::built_in(),
        crate::agreements::Proposal {
            id: &format!("urn:ufst:adgangsgrundlag:aftale:{authority}-k53"),
            authority: Cvr::parse(authority).unwrap(),
            area: DataArea::Forskudsopgoerelse,
            purpose_id: 1,
            legal_basis: "Lov om sygedagpenge",
            klik_task: Some("K53"),
            valid_from: d(from),
            valid_to: d(to),
            registered_by: "registrar",
        },
    )
    .unwrap()
    .sign("signer", Utc::now())
    .unwrap()
}

fn reason(r: Result<Allow, Deny>) -> DenyReason {
    r.expect_err("should be denied").reason
}

#[test]
fn the_deny_matrix() {
    let c = Catalogue::built_in();
    let today = d("2025-06-01");
    let fo = DataArea::Forskudsopgoerelse;
    let role = ["Se forskudsopgørelse"];
    let ok = [k53(AARHUS, "2025-01-01", "2026-01-01")];

    assert_eq!(reason(decide(&caller(&["Se sager"]), &c, &ok, today, fo, &[1])), DenyReason::NoRole);
    assert_eq!(reason(decide(&caller(&role), &c, &ok, today, fo, &[])), DenyReason::PurposeMissing);
    assert_eq!(reason(decide(&caller(&role), &c, &ok, today, fo, &[1, 2])), DenyReason::PurposeAmbiguous);
    assert_eq!(reason(decide(&caller(&role), &c, &ok, today, fo, &[99])), DenyReason::PurposeNotInCatalogue);
    assert_eq!(reason(decide(&caller(&role), &c, &[], today, fo, &[1])), DenyReason::NoAgreement);
    // Another authority's agreement is not the caller's.
    let odense = [k53(ODENSE, "2025-01-01", "2026-01-01")];
    assert_eq!(reason(decide(&caller(&role), &c, &odense, today, fo, &[1])), DenyReason::NoAgreement);
    // An agreement for another purpose of the area is no agreement for this one.
    assert_eq!(reason(decide(&caller(&role), &c, &ok, today, fo, &[2])), DenyReason::NoAgreement);
    let not_yet = [k53(AARHUS, "2025-07-01", "2026-01-01")];
    assert_eq!(reason(decide(&caller(&role), &c, &not_yet, today, fo, &[1])), DenyReason::AgreementNotActive);
    let expired = [k53(AARHUS, "2024-01-01", "2025-01-01")];
    assert_eq!(reason(decide(&caller(&role), &c, &expired, today, fo, &[1])), DenyReason::AgreementNotActive);
    let revoked = [k53(AARHUS, "2025-01-01", "2026-01-01").revoke(Utc::now()).unwrap()];
    let denied = decide(&caller(&role), &c, &revoked, today, fo, &[1]).unwrap_err();
    assert_eq!(denied.reason, DenyReason::AgreementNotActive);
    assert!(denied.detail.contains("revoked"), "{}", denied.detail);

    let allowed = decide(&caller(&role), &c, &ok, today, fo, &[1]).unwrap();
    assert_eq!(allowed.agreement_id.as_deref(), Some("urn:ufst:adgangsgrundlag:aftale:55133018-k53"));
    assert_eq!(allowed.roles_used, vec!["Se forskudsopgørelse"]);
    // Areas without agreements need only role and purpose.
    let sager = decide(&caller(&["Se sager"]), &c, &[], today, DataArea::Sager, &[1]).unwrap();
    assert_eq!(sager.agreement_id, None);
}

#[test]
fn an_agreement_counts_from_its_first_day_to_before_its_last() {
    let c = Catalogue::built_in();
    let a = [k53(AARHUS, "2025-01-01", "2026-01-01")];
    let call =
        |day: &str| decide(&caller(&["Se forskudsopgørelse"]), &c, &a, d(day), DataArea::Forskudsopgoerelse, &[1]);
    assert_eq!(reason(call("2024-12-31")), DenyReason::AgreementNotActive);
    assert!(call("2025-01-01").is_ok());
    assert!(call("2025-12-31").is_ok());
    assert_eq!(reason(call("2026-01-01")), DenyReason::AgreementNotActive);
}

#[test]
fn the_three_month_window_on_the_calendar() {
    // On 31 May the window starts 28 February (2023) or 29 February (2024).
    assert!(within_months(d("2023-02-28"), d("2023-05-31"), 3));
    assert!(!within_months(d("2023-02-27"), d("2023-05-31"), 3));
    assert!(within_months(d("2024-02-29"), d("2024-05-31"), 3));
    assert!(!within_months(d("2024-02-28"), d("2024-05-31"), 3));
    // Exactly three months, to the day, is inside; a day more is not.
    assert!(within_months(d("2025-03-15"), d("2025-06-15"), 3));
    assert!(!within_months(d("2025-03-14"), d("2025-06-15"), 3));
    // Across a year end, and the future is not "the last 3 months".
    assert!(within_months(d("2024-11-30"), d("2025-02-28"), 3));
    assert!(!within_months(d("2025-06-16"), d("2025-06-15"), 3));
    // Six months for §11a: from 28 February back to 28 August.
    assert!(within_months(d("2024-08-31"), d("2025-02-28"), 6));
    assert!(!within_months(d("2024-08-27"), d("2025-02-28"), 6));
}

fn agg(id: Uuid, authority: &str, state: State) -> Aggregate {
    Aggregate {
        id,
        version: 1,
        subject: PartyId::parse("urn:oio:cpr-nr:0101801234").unwrap(),
        authority: Cvr::parse(authority).unwrap(),
        source: "urn:overblik:source:test".into(),
        updated_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        state,
    }
}

fn case(kle: &str, sensitivity: Sensitivity) -> State {
    State::Case(Case {
        case_number: "1".into(),
        title: "Sag".into(),
        kle: Kle::parse(kle).unwrap(),
        action_facet: ActionFacet::parse("G01").unwrap(),
        sensitivity,
        parties: vec![Party { role: PartyRole::Primary, id: PartyId::parse("urn:oio:cpr-nr:0101801234").unwrap() }],
        org_unit: "Ydelse".into(),
        caseworker: Some("Mette Hansen".into()),
        source_system: "KY".into(),
        status_history: vec![StatusEntry { status: CaseStatus::Opstaaet, from: d("2025-01-01") }],
        documents: vec![doc(1, None, None)],
    })
}

/// A document that counts at its case's class unless given its own.
fn doc(id: u128, kle: Option<&str>, sensitivity: Option<Sensitivity>) -> DocumentFields {
    DocumentFields {
        document_id: Uuid::from_u128(id),
        title: "Ansøgning".into(),
        date: d("2025-01-02"),
        direction: DocumentDirection::Incoming,
        kind: DocumentKind::Document,
        kle: kle.map(|k| Kle::parse(k).unwrap()),
        sensitivity,
    }
}

#[test]
fn sensitivity_levels_and_kle_wildcards_cut_the_cases() {
    let aggs: Vec<Aggregate> = [1, 2, 3, 4]
        .into_iter()
        .map(|n| agg(Uuid::from_u128(n), AARHUS, case("32.18.04", Sensitivity::from_level(n as i64).unwrap())))
        .chain([
            agg(Uuid::from_u128(10), AARHUS, case("27.24.04", Sensitivity::NotConfidential)),
            agg(Uuid::from_u128(11), ODENSE, case("32.18.04", Sensitivity::NotConfidential)),
        ])
        .collect();
    for level in 1..=4 {
        let mut e = caller(&[]);
        e.sensitivity = Sensitivity::from_level(level).unwrap();
        e.kle = KleConstraint::parse(&["32.*".into()]).unwrap();
        let seen: Vec<u128> = cases(&aggs, &e).iter().map(|(a, _)| a.id.as_u128()).collect();
        let want: Vec<u128> = (1..=level as u128).collect();
        assert_eq!(seen, want, "level {level} sees levels 1..={level} of its own authority's 32.* cases");
    }
    let mut e = caller(&[]);
    e.kle = KleConstraint::parse(&["27.24.*".into()]).unwrap();
    assert_eq!(cases(&aggs, &e).iter().map(|(a, _)| a.id.as_u128()).collect::<Vec<_>>(), vec![10]);
    e.kle = KleConstraint::parse(&["32.18.04".into(), "27.*".into()]).unwrap();
    e.sensitivity = Sensitivity::Vip;
    assert_eq!(cases(&aggs, &e).len(), 5);
}

fn udk_grant(case: Uuid) -> State {
    State::Grant(Grant {
        fields: GrantFields {
            grant_number: "B".into(),
            case_id: Some(case),
            period: OpenPeriod { start: d("2024-01-01"), end: None },
            sensitivity: Sensitivity::Confidential,
            reason: None,
            benefits: vec![GrantedBenefit {
                id: "B1".into(),
                name: "Folkepension".into(),
                benefit_type: "Folkepension".into(),
                kle: Kle::parse("32.03.04").unwrap(),
                period: OpenPeriod { start: d("2024-01-01"), end: None },
                plan: PaymentPlan { frequency: Frequency::Monthly, amount: Oere(1_000_000) },
            }],
        },
        ended: None,
    })
}

fn udk_payment(grant: Uuid, disposal: &str) -> State {
    let period = Period { start: d(disposal) - chrono::Days::new(27), end: d(disposal) };
    State::Payment(Payment {
        fields: PaymentFields {
            payment_number: "U".into(),
            grant_id: Some(grant),
            period,
            disposal_date: d(disposal),
            gross: Oere(1_000_000),
            after_tax: Oere(600_000),
            sent: Oere(600_000),
            paid: None,
            paid_note: None,
            lines: vec![PaymentLine {
                period,
                gross: Oere(1_000_000),
                kle: Kle::parse("32.03.04").unwrap(),
                granted_benefit_id: "B1".into(),
            }],
        },
        corrections: 0,
    })
}

#[test]
fn section_8_shows_types_and_amounts_of_the_last_three_months_only() {
    let udk = Cvr::parse("29980636").unwrap();
    let (case_id, grant_id) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let aggs = vec![
        agg(case_id, "29980636", case("32.03.04", Sensitivity::Confidential)),
        agg(grant_id, "29980636", udk_grant(case_id)),
        agg(Uuid::from_u128(3), "29980636", udk_payment(grant_id, "2024-02-29")),
        agg(Uuid::from_u128(4), "29980636", udk_payment(grant_id, "2024-02-28")),
        agg(Uuid::from_u128(5), "29980636", udk_payment(grant_id, "2024-05-31")),
        agg(Uuid::from_u128(6), AARHUS, udk_payment(grant_id, "2024-05-31")),
    ];
    let today = d("2024-05-31");
    let everything = {
        let mut e = caller(&[]);
        e.sensitivity = Sensitivity::Vip;
        e
    };
    let shown = udk_benefits(&aggs, &udk, today, &everything);
    let dates: Vec<String> = shown.iter().map(|b| b.disposal_date.to_string()).collect();
    assert_eq!(
        dates,
        ["2024-05-31", "2024-02-29"],
        "the leap day is the window's first day; Aarhus's own payment is not UDK's"
    );
    assert!(shown.iter().all(|b| b.benefit_type == "Folkepension" && b.gross_oere == 1_000_000));
    let cases = udk_cases(&aggs, &udk, today, &everything);
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0].title, "Sag");
    // Nothing paid in the window: the case isn't shown either.
    assert!(udk_cases(&aggs, &udk, d("2024-09-01"), &everything).is_empty());
}

fn control(closed: Option<(&str, ControlOutcome)>) -> State {
    State::ControlCase(ControlCase {
        case_number: "K".into(),
        theme: "Samlivsforhold".into(),
        kle: Kle::parse("32.18.04").unwrap(),
        sensitivity: Sensitivity::Confidential,
        opened_on: d("2024-01-10"),
        org_unit: "Kontrol".into(),
        caseworker: Some("Lars Nielsen".into()),
        source_system: "KY".into(),
        steps: vec![ControlCaseStepRecorded { step: "Partshøring".into(), on: d("2024-02-01") }],
        closed: closed.map(|(on, outcome)| ControlCaseClosed { on: d(on), outcome }),
    })
}

#[test]
fn section_11a_shows_open_cases_and_those_closed_without_action_for_six_months() {
    let aggs = vec![
        agg(Uuid::from_u128(1), AARHUS, control(None)),
        agg(Uuid::from_u128(2), ODENSE, control(Some(("2024-08-28", ControlOutcome::WithoutAction)))),
        agg(Uuid::from_u128(3), AARHUS, control(Some(("2024-08-27", ControlOutcome::WithoutAction)))),
        agg(Uuid::from_u128(4), AARHUS, control(Some(("2025-02-01", ControlOutcome::Sanction)))),
    ];
    let shown = control_cases(&aggs, d("2025-02-28"), &caller(&[]));
    let ids: Vec<u128> = shown.iter().map(|c| c.case_id.as_u128()).collect();
    assert_eq!(ids, [1, 2], "open, and closed without action on the window's first day, across authorities");
    assert!(shown[1].closed_without_action);
    assert_eq!(shown[0].steps.len(), 1);
}

// ------------------------------------------------------------ the matrix
//
// Every row type against every filter that applies to it (ARCHITECTURE.md,
// "The filter matrix"): sensitivity 1-4 of the row against levels 1-4 of
// the caller, the KLE constraint, and the authority.

fn with(level: i64, kle: Option<&str>) -> Employee {
    let mut e = caller(&[]);
    e.sensitivity = Sensitivity::from_level(level).unwrap();
    e.kle = match kle {
        Some(p) => KleConstraint::parse(&[p.into()]).unwrap(),
        None => KleConstraint::any(),
    };
    e
}

fn grant_at(sensitivity: Sensitivity, kle: &str) -> State {
    let State::Grant(mut g) = udk_grant(Uuid::from_u128(99)) else { unreachable!() };
    g.fields.sensitivity = sensitivity;
    g.fields.benefits[0].kle = Kle::parse(kle).unwrap();
    State::Grant(g)
}

fn payment_of(grant: Uuid, line_kle: &str, disposal: &str) -> State {
    let State::Payment(mut p) = udk_payment(grant, disposal) else { unreachable!() };
    p.fields.lines[0].kle = Kle::parse(line_kle).unwrap();
    State::Payment(p)
}

/// Which of the row kinds a caller sees, for one row of each at
/// `sensitivity` under KLE 32.18.04 (payments through their grant).
fn seen(level: i64, kle: Option<&str>, sensitivity: Sensitivity, authority: &str) -> Vec<&'static str> {
    let today = d("2025-03-15");
    let udk = Cvr::parse("29980636").unwrap();
    let (case_id, grant_id, control_id) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(4));
    let mut control_state = control(None);
    if let State::ControlCase(c) = &mut control_state {
        c.sensitivity = sensitivity;
    }
    let aggs = vec![
        agg(case_id, authority, case("32.18.04", sensitivity)),
        agg(grant_id, authority, grant_at(sensitivity, "32.18.04")),
        agg(Uuid::from_u128(3), authority, payment_of(grant_id, "32.18.04", "2025-03-01")),
        agg(control_id, authority, control_state),
    ];
    // The §8 rows are UDK's: the same facts under UDK's authority, the
    // grant naming the case.
    let mut udk_aggs = aggs.clone();
    for a in &mut udk_aggs {
        a.authority = udk;
        if let State::Grant(g) = &mut a.state {
            g.fields.case_id = Some(case_id);
        }
    }
    let e = with(level, kle);
    let mut out = Vec::new();
    if !cases(&aggs, &e).is_empty() {
        out.push("case");
    }
    if !documents(&aggs, &e).is_empty() {
        out.push("document");
    }
    if !grants(&aggs, &e).is_empty() {
        out.push("grant");
    }
    if !payments(&aggs, &e).is_empty() {
        out.push("payment");
    }
    if !control_cases(&aggs, today, &e).is_empty() {
        out.push("control_case");
    }
    if !udk_cases(&udk_aggs, &udk, today, &e).is_empty() {
        out.push("udk_case");
    }
    if !udk_benefits(&udk_aggs, &udk, today, &e).is_empty() {
        out.push("udk_benefit");
    }
    out
}

const EVERY_CLASSIFIED_ROW: [&str; 7] =
    ["case", "document", "grant", "payment", "control_case", "udk_case", "udk_benefit"];

#[test]
fn every_classified_row_is_cut_by_sensitivity_level() {
    for row in 1..=4 {
        for level in 1..=4 {
            let shown = seen(level, None, Sensitivity::from_level(row).unwrap(), AARHUS);
            let want: Vec<&str> = if row <= level { EVERY_CLASSIFIED_ROW.to_vec() } else { Vec::new() };
            assert_eq!(shown, want, "rows of sensitivity {row} to a caller of level {level}");
        }
    }
}

#[test]
fn every_classified_row_is_cut_by_the_kle_constraint() {
    for (pattern, visible) in
        [("32.*", true), ("32.18.*", true), ("32.18.04", true), ("27.*", false), ("32.03.*", false)]
    {
        let shown = seen(4, Some(pattern), Sensitivity::NotConfidential, AARHUS);
        let want: Vec<&str> = if visible { EVERY_CLASSIFIED_ROW.to_vec() } else { Vec::new() };
        assert_eq!(shown, want, "KLE constraint {pattern}");
    }
}

#[test]
fn casework_rows_are_the_callers_authoritys_and_cross_authority_rows_are_not() {
    // Aarhus's caller and Odense's rows: the casework areas show nothing;
    // §11a shows control cases across authorities; §8 shows UDK's.
    let shown = seen(4, None, Sensitivity::NotConfidential, ODENSE);
    assert_eq!(shown, ["control_case", "udk_case", "udk_benefit"]);
    let employment_row = agg(
        Uuid::from_u128(7),
        ODENSE,
        State::Employment(crate::projection::state::Employment {
            registered_on: d("2025-01-01"),
            jobcenter: "Jobcenter Odense".into(),
            category: "Dagpengemodtager".into(),
            deregistered_on: None,
            deregistration_reason: None,
            target_group: None,
            target_group_from: None,
            activities: vec![],
        }),
    );
    assert!(employment(std::slice::from_ref(&employment_row), &with(4, None)).is_empty());
    let mut ours = employment_row;
    ours.authority = Cvr::parse(AARHUS).unwrap();
    assert_eq!(
        employment(std::slice::from_ref(&ours), &with(1, Some("27.*"))).len(),
        1,
        "no KLE or level on job-centre records"
    );
}

#[test]
fn a_payment_takes_its_grants_sensitivity_and_kle_and_fails_closed_without_it() {
    let grant_id = Uuid::from_u128(2);
    let sensitive = [
        agg(grant_id, AARHUS, grant_at(Sensitivity::Sensitive, "32.18.04")),
        agg(Uuid::from_u128(3), AARHUS, payment_of(grant_id, "32.18.04", "2025-03-01")),
    ];
    assert!(payments(&sensitive, &with(2, None)).is_empty(), "a level-2 caller sees no payment of a level-3 grant");
    assert_eq!(payments(&sensitive, &with(3, None)).len(), 1);
    // The grant's benefits bound the payment as well as its lines.
    let other_kle = [
        agg(grant_id, AARHUS, grant_at(Sensitivity::NotConfidential, "27.24.04")),
        agg(Uuid::from_u128(3), AARHUS, payment_of(grant_id, "32.18.04", "2025-03-01")),
    ];
    assert!(payments(&other_kle, &with(4, Some("32.*"))).is_empty());
    // No grant: shown only at the highest level.
    let orphan = [agg(Uuid::from_u128(3), AARHUS, payment_of(grant_id, "32.18.04", "2025-03-01"))];
    for level in 1..=3 {
        assert!(payments(&orphan, &with(level, None)).is_empty(), "level {level}");
    }
    assert_eq!(payments(&orphan, &with(4, None)).len(), 1);
    let classes = Grants::of(&orphan);
    let State::Payment(p) = &orphan[0].state else { unreachable!() };
    assert_eq!(classes.payment_class(p).sensitivity, Sensitivity::Vip, "and it raises the VIP alarm");
}

#[test]
fn borgerblikket_shows_the_primary_party_their_own_whatever_the_classification() {
    let me = PartyId::parse("urn:oio:cpr-nr:0101801234").unwrap();
    let other = PartyId::parse("urn:oio:cpr-nr:0202802345").unwrap();
    let mut secondary = agg(Uuid::from_u128(5), AARHUS, case("32.18.04", Sensitivity::Vip));
    if let State::Case(c) = &mut secondary.state {
        c.parties = vec![Party { role: PartyRole::Primary, id: other }, Party { role: PartyRole::Secondary, id: me }];
    }
    let aggs = vec![
        agg(Uuid::from_u128(1), AARHUS, case("32.18.04", Sensitivity::Vip)),
        secondary,
        agg(Uuid::from_u128(2), ODENSE, grant_at(Sensitivity::Vip, "32.18.04")),
        agg(Uuid::from_u128(3), UDK_CVR, payment_of(Uuid::from_u128(2), "32.18.04", "2025-03-01")),
    ];
    assert_eq!(own_cases(&aggs, &me).len(), 1, "primary party only, any authority, any level");
    assert_eq!(own_cases(&aggs, &other).len(), 1);
    assert_eq!(own_grants(&aggs, &me).len(), 1);
    assert_eq!(own_payments(&aggs, &me).len(), 1);
    assert!(own_grants(&aggs, &other).is_empty(), "never another citizen's");
}

const UDK_CVR: &str = "29980636";

#[test]
fn a_document_passes_its_cases_filter_and_its_own_class() {
    let case_with = |kle: &str, level: Sensitivity, docs: Vec<DocumentFields>| {
        let mut a = agg(Uuid::from_u128(1), AARHUS, case(kle, level));
        if let State::Case(c) = &mut a.state {
            c.documents = docs;
        }
        a
    };
    let ids = |aggs: &[Aggregate], e: &Employee| -> Vec<u128> {
        documents(aggs, e).iter().map(|d| d.document.document_id.as_u128()).collect()
    };
    // A journal note held at 3 on a case at 2: a level-2 caller sees the case
    // and the inheriting document, not the note; level 3 sees both.
    let aggs = [case_with(
        "32.18.04",
        Sensitivity::Confidential,
        vec![doc(1, None, None), doc(2, Some("32.18.04"), Some(Sensitivity::Sensitive))],
    )];
    assert_eq!(cases(&aggs, &with(2, None)).len(), 1);
    assert_eq!(ids(&aggs, &with(2, None)), [1]);
    assert_eq!(ids(&aggs, &with(3, None)), [1, 2]);
    let note = documents(&aggs, &with(4, None)).into_iter().find(|d| d.document.document_id.as_u128() == 2).unwrap();
    assert_eq!(note.class.sensitivity, Sensitivity::Sensitive, "the alarms see the note's own level");
    // Reclassified: the case moved to 27.24.04 and down to level 1. The
    // inheriting document follows the case; the one registered under
    // 32.18.04 at level 3 keeps that and needs the case's class too.
    let moved = [case_with(
        "27.24.04",
        Sensitivity::NotConfidential,
        vec![doc(1, None, None), doc(2, Some("32.18.04"), Some(Sensitivity::Sensitive))],
    )];
    assert_eq!(ids(&moved, &with(4, Some("27.*"))), [1]);
    assert!(ids(&moved, &with(4, Some("32.*"))).is_empty(), "never shown where its case is not");
    let both = {
        let mut e = with(3, None);
        e.kle = KleConstraint::parse(&["27.*".into(), "32.18.*".into()]).unwrap();
        e
    };
    assert_eq!(ids(&moved, &both), [1, 2]);
    // Raised: the case went up to VIP; every document follows it up.
    let raised = [case_with("32.18.04", Sensitivity::Vip, vec![doc(2, None, Some(Sensitivity::Sensitive))])];
    assert!(ids(&raised, &with(3, None)).is_empty());
    assert_eq!(ids(&raised, &with(4, None)), [2]);
    // Another authority's case shows no documents, whatever the level.
    let odense = [agg(Uuid::from_u128(1), ODENSE, case("32.18.04", Sensitivity::NotConfidential))];
    assert!(ids(&odense, &with(4, None)).is_empty());
}
