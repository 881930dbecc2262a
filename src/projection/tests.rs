//! The version rules, deletion and counting, on hand-built batches.

use chrono::{NaiveDate, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::domain::{ActionFacet, Cvr, Kle, PartyId, Sensitivity};
use crate::events::body::*;
use crate::events::{Body, DecodeLimits, Event, Reason};

const CPR: &str = "urn:oio:cpr-nr:0101801234";

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn case_fields(history: Option<Vec<StatusEntry>>) -> CaseFields {
    CaseFields {
        case_number: "2024-1".into(),
        title: "Kontanthjælp".into(),
        kle: Kle::parse("32.18.04").unwrap(),
        action_facet: ActionFacet::parse("G01").unwrap(),
        sensitivity: Sensitivity::Confidential,
        parties: vec![Party { role: PartyRole::Primary, id: PartyId::parse(CPR).unwrap() }],
        org_unit: "Ydelse".into(),
        caseworker: Some("Mette Hansen".into()),
        source_system: "KY".into(),
        status_history: history,
    }
}

fn event(agg: Uuid, version: i64, body: Body) -> Event {
    Event {
        id: Uuid::new_v4(),
        source: "urn:overblik:source:ky".into(),
        type_version: 1,
        time: Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0).unwrap(),
        subject: PartyId::parse(CPR).unwrap(),
        authority: Cvr::parse("29189420").unwrap(),
        aggregate_id: agg,
        aggregate_version: version,
        body,
    }
}

fn import(agg: Uuid) -> Event {
    event(
        agg,
        1,
        Body::CaseImported(CaseImported(case_fields(Some(vec![StatusEntry {
            status: CaseStatus::Opstaaet,
            from: d("2024-04-01"),
        }])))),
    )
}

fn status(agg: Uuid, version: i64, s: CaseStatus, from: &str) -> Event {
    event(agg, version, Body::CaseStatusChanged(CaseStatusChanged { status: s, from: d(from) }))
}

fn item_at(e: &Event, offset: i64) -> Decoded {
    let payload = e.encode();
    Decoded::new(
        Origin { topic: "overblik.ky".into(), partition: 0, offset },
        Prior::New,
        Some(e.aggregate_id.to_string().into_bytes().into()),
        payload.into(),
        &DecodeLimits::default(),
    )
}

fn items(events: &[&Event]) -> Vec<Decoded> {
    events.iter().enumerate().map(|(i, e)| item_at(e, i as i64)).collect()
}

fn run(events: &[&Event], ctx: Context) -> Plan {
    plan(items(events), ctx, &DecodeLimits::default())
}

fn stored(agg: Uuid, upto: &[&Event]) -> Aggregate {
    let mut cur: Option<Aggregate> = None;
    for e in upto {
        match apply(cur.take(), (*e).clone()).1.unwrap() {
            Transition::Upsert(a) => cur = Some(a),
            Transition::Delete => cur = None,
        }
    }
    let a = cur.unwrap();
    assert_eq!(a.id, agg);
    a
}

fn parked_row(e: &Event, expected: i64) -> Parked {
    let item = item_at(e, 100 + e.aggregate_version);
    Parked {
        event_id: e.id,
        aggregate_id: e.aggregate_id,
        aggregate_version: e.aggregate_version,
        expected_version: expected,
        origin: item.origin,
        key: item.key,
        payload: item.payload,
    }
}

#[test]
fn in_order_events_apply_and_write_the_final_state_once() {
    let a = Uuid::new_v4();
    let (e1, e2, e3) =
        (import(a), status(a, 2, CaseStatus::Oplyst, "2024-04-10"), status(a, 3, CaseStatus::Afgjort, "2024-04-20"));
    let p = run(&[&e1, &e2, &e3], Context::default());
    assert_eq!(p.outcomes, vec![Outcome::Applied; 3]);
    assert_eq!(p.appended.len(), 3);
    assert_eq!(p.writes.len(), 1);
    assert_eq!(p.writes[0].expected_version, 0);
    assert_eq!(p.writes[0].aggregate.version, 3);
    match &p.writes[0].aggregate.state {
        State::Case(c) => assert_eq!(c.status(), CaseStatus::Afgjort),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.total().applied, 3);
}

#[test]
fn versions_at_or_below_the_last_are_duplicates() {
    let a = Uuid::new_v4();
    let (e1, e2) = (import(a), status(a, 2, CaseStatus::Oplyst, "2024-04-10"));
    let mut ctx = Context::default();
    ctx.aggregates.insert(a, stored(a, &[&e1, &e2]));
    let p = run(&[&e1, &e2, &e1], ctx);
    assert_eq!(p.outcomes, vec![Outcome::Duplicate; 3]);
    assert!(p.writes.is_empty() && p.appended.is_empty());
    assert_eq!(p.total().duplicates, 3);
}

#[test]
fn a_gap_parks_only_its_aggregate() {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (a2, a3) = (status(a, 2, CaseStatus::Oplyst, "2024-04-10"), status(a, 3, CaseStatus::Afgjort, "2024-04-20"));
    let b1 = import(b);
    let p = run(&[&a2, &b1, &a3], Context::default());
    assert_eq!(p.outcomes, vec![Outcome::Parked, Outcome::Applied, Outcome::Parked]);
    assert_eq!(p.parked.iter().map(|x| x.aggregate_version).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(p.parked[0].expected_version, 1);
    assert_eq!(p.writes.len(), 1);
    assert_eq!(p.writes[0].aggregate.id, b);
    let t = p.total();
    assert_eq!((t.applied, t.parked), (1, 2));
}

#[test]
fn the_missing_version_unparks_the_rest_in_order() {
    let a = Uuid::new_v4();
    let (a1, a2, a3, a5) = (
        import(a),
        status(a, 2, CaseStatus::Oplyst, "2024-04-10"),
        status(a, 3, CaseStatus::Afgjort, "2024-04-20"),
        status(a, 5, CaseStatus::Afsluttet, "2024-05-20"),
    );
    let mut ctx = Context::default();
    ctx.parked.insert(a, vec![parked_row(&a3, 1), parked_row(&a2, 1), parked_row(&a5, 1)]);
    let p = run(&[&a1], ctx);
    assert_eq!(p.outcomes, vec![Outcome::Applied]);
    // v2 and v3 apply; v5 still waits for v4.
    assert_eq!(p.appended.iter().map(|x| x.header.aggregate_version).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(p.unparked, vec![a2.id, a3.id]);
    assert_eq!(p.writes[0].aggregate.version, 3);
    let t = p.total();
    assert_eq!((t.applied, t.parked), (3, -2), "the parked count moves to applied");
    // The un-parked events keep the origin they were consumed from.
    assert_eq!(p.appended[1].origin.offset, 102);
}

#[test]
fn a_gap_filled_within_the_batch_never_reaches_the_parked_table() {
    let a = Uuid::new_v4();
    let (a1, a2) = (import(a), status(a, 2, CaseStatus::Oplyst, "2024-04-10"));
    let p = run(&[&a2, &a1], Context::default());
    assert_eq!(p.outcomes, vec![Outcome::Parked, Outcome::Applied]);
    assert!(p.parked.is_empty());
    let t = p.total();
    assert_eq!((t.applied, t.parked, t.consumed()), (2, 0, 2));
}

#[test]
fn a_redelivered_parked_event_is_a_duplicate() {
    let a = Uuid::new_v4();
    let a3 = status(a, 3, CaseStatus::Afgjort, "2024-04-20");
    let mut ctx = Context::default();
    ctx.parked.insert(a, vec![parked_row(&a3, 1)]);
    ctx.known_event_ids.insert(a3.id);
    let p = run(&[&a3], ctx);
    assert_eq!(p.outcomes, vec![Outcome::Duplicate]);
}

#[test]
fn a_reused_event_id_is_dead_lettered() {
    let a = Uuid::new_v4();
    let a1 = import(a);
    let mut a2 = status(a, 2, CaseStatus::Oplyst, "2024-04-10");
    a2.id = a1.id;
    let mut ctx = Context::default();
    ctx.aggregates.insert(a, stored(a, &[&a1]));
    ctx.known_event_ids.insert(a1.id);
    let p = run(&[&a2], ctx);
    assert_eq!(p.outcomes, vec![Outcome::DeadLettered(Reason::DuplicateEventId)]);
    assert_eq!(p.dead_letters[0].aggregate_id, Some(a));
}

#[test]
fn deletion_then_later_events_are_ignored() {
    let a = Uuid::new_v4();
    let (a1, a2) = (import(a), status(a, 2, CaseStatus::Oplyst, "2024-04-10"));
    let del = event(a, 3, Body::CaseDeleted(Deleted::default()));
    let late = status(a, 4, CaseStatus::Afgjort, "2024-04-20");
    let mut ctx = Context::default();
    ctx.aggregates.insert(a, stored(a, &[&a1, &a2]));
    let p = run(&[&del, &late], ctx);
    assert_eq!(p.outcomes, vec![Outcome::Applied, Outcome::IgnoredDeleted]);
    assert_eq!(p.deletions.len(), 1);
    assert_eq!(p.deletions[0].expected_version, 2);
    assert_eq!(p.deletions[0].last_version, 3);
    assert!(p.writes.is_empty());
    let t = p.total();
    assert_eq!((t.applied, t.duplicates, t.ignored_deleted), (1, 1, 1));

    let mut ctx = Context::default();
    ctx.tombstones.insert(a);
    let p = run(&[&late], ctx);
    assert_eq!(p.outcomes, vec![Outcome::IgnoredDeleted]);
}

#[test]
fn rules_against_the_aggregate_dead_letter() {
    let a = Uuid::new_v4();
    let a1 = import(a);
    // A change can't start an aggregate.
    let p = run(&[&status(a, 1, CaseStatus::Oplyst, "2024-04-10")], Context::default());
    assert_eq!(p.outcomes, vec![Outcome::DeadLettered(Reason::NotACreationEvent)]);
    // Another kind's event on this aggregate.
    let mut ctx = Context::default();
    ctx.aggregates.insert(a, stored(a, &[&a1]));
    let ended = event(a, 2, Body::GrantEnded(GrantEnded { end: d("2024-05-01"), reason: None }));
    let p = run(&[&ended], ctx);
    assert_eq!(p.outcomes, vec![Outcome::DeadLettered(Reason::AggregateKindMismatch)]);
    // Another citizen.
    let mut ctx = Context::default();
    ctx.aggregates.insert(a, stored(a, &[&a1]));
    let mut other = status(a, 2, CaseStatus::Oplyst, "2024-04-10");
    other.subject = PartyId::parse("urn:oio:cpr-nr:0202802345").unwrap();
    let p = run(&[&other], ctx);
    assert_eq!(p.outcomes, vec![Outcome::DeadLettered(Reason::SubjectMismatch)]);
    // A status dated before the current one.
    let mut ctx = Context::default();
    ctx.aggregates.insert(a, stored(a, &[&a1]));
    let p = run(&[&status(a, 2, CaseStatus::Oplyst, "2024-03-01")], ctx);
    assert_eq!(p.outcomes, vec![Outcome::DeadLettered(Reason::InvalidTransition)]);
}

fn reopen(agg: Uuid, version: i64, s: CaseStatus, from: &str) -> Event {
    event(agg, version, Body::CaseReopened(CaseStatusChanged { status: s, from: d(from) }))
}

/// The case's status after `events`, or the first refusal's detail.
fn status_after(events: &[&Event]) -> Result<CaseStatus, String> {
    let p = run(events, Context::default());
    if let Some(n) = p.outcomes.iter().position(|o| *o != Outcome::Applied) {
        assert_eq!(p.outcomes[n], Outcome::DeadLettered(Reason::InvalidTransition));
        return Err(p.dead_letters[0].rejection.detail.clone());
    }
    let write = p.writes.last().expect("an aggregate was written");
    match &write.aggregate.state {
        State::Case(c) => Ok(c.status()),
        other => panic!("not a case: {other:?}"),
    }
}

#[test]
fn a_status_change_moves_forward_and_a_reopening_back() {
    use CaseStatus::*;
    let a = Uuid::new_v4();
    let a1 = import(a);
    // Forward, skipping steps, and dated on the same day: applied.
    assert_eq!(status_after(&[&a1, &status(a, 2, Afgjort, "2024-04-01")]), Ok(Afgjort));
    assert_eq!(
        status_after(&[&a1, &status(a, 2, Oplyst, "2024-04-02"), &status(a, 3, Afsluttet, "2024-05-01")]),
        Ok(Afsluttet)
    );
    // Backward or standing still through a status change: refused, and the
    // detail says how a reopening is sent.
    let closed = status(a, 2, Afsluttet, "2024-05-01");
    let err = status_after(&[&a1, &closed, &status(a, 3, Opstaaet, "2024-06-01")]).unwrap_err();
    assert!(err.contains("Afsluttet -> Opstaaet") && err.contains("case.reopened"), "{err}");
    assert!(status_after(&[&a1, &status(a, 2, Opstaaet, "2024-04-05")]).is_err(), "the status it has");
    // A closed or decided case reopens to an earlier status, later on.
    assert_eq!(status_after(&[&a1, &closed, &reopen(a, 3, Opstaaet, "2024-06-01")]), Ok(Opstaaet));
    let decided = status(a, 2, Afgjort, "2024-05-01");
    assert_eq!(status_after(&[&a1, &decided, &reopen(a, 3, Oplyst, "2024-05-02")]), Ok(Oplyst));
    // … and moves forward again from there, and can close again.
    assert_eq!(
        status_after(&[
            &a1,
            &closed,
            &reopen(a, 3, Oplyst, "2024-06-01"),
            &status(a, 4, Afgjort, "2024-06-10"),
            &status(a, 5, Afsluttet, "2024-06-20")
        ]),
        Ok(Afsluttet)
    );
    // A reopening that doesn't go back, of an open case, or dated before
    // the current status: refused.
    let err = status_after(&[&a1, &closed, &reopen(a, 3, Afsluttet, "2024-06-01")]).unwrap_err();
    assert!(err.contains("does not go back"), "{err}");
    let err =
        status_after(&[&a1, &status(a, 2, Oplyst, "2024-04-02"), &reopen(a, 3, Opstaaet, "2024-04-03")]).unwrap_err();
    assert!(err.contains("neither decided nor closed"), "{err}");
    assert!(status_after(&[&a1, &closed, &reopen(a, 3, Oplyst, "2024-04-30")]).is_err());
}

#[test]
fn a_dead_lettered_version_holds_back_the_later_ones() {
    let a = Uuid::new_v4();
    let a1 = import(a);
    let bad = status(a, 2, CaseStatus::Oplyst, "2024-03-01");
    let a3 = status(a, 3, CaseStatus::Afgjort, "2024-04-20");
    let p = run(&[&a1, &bad, &a3], Context::default());
    assert_eq!(p.outcomes, vec![Outcome::Applied, Outcome::DeadLettered(Reason::InvalidTransition), Outcome::Parked]);
}

#[test]
fn garbage_is_dead_lettered_with_its_bytes() {
    let origin = Origin { topic: "overblik.udk".into(), partition: 3, offset: 7 };
    let items =
        vec![Decoded::new(origin.clone(), Prior::New, None, b"\x00\x01garbage"[..].into(), &DecodeLimits::default())];
    let p = plan(items, Context::default(), &DecodeLimits::default());
    assert_eq!(p.outcomes, vec![Outcome::DeadLettered(Reason::MalformedJson)]);
    assert_eq!(&*p.dead_letters[0].payload, b"\x00\x01garbage");
    assert_eq!(p.dead_letters[0].origin, origin);
    assert_eq!(p.counts[&origin.partition_key()].dead_lettered, 1);
}

#[test]
fn a_replayed_dead_letter_moves_its_count() {
    let a = Uuid::new_v4();
    let a1 = import(a);
    let mut item = item_at(&a1, 9);
    item.prior = Prior::DeadLetter(42);
    let p = plan(vec![item], Context::default(), &DecodeLimits::default());
    assert_eq!(p.outcomes, vec![Outcome::Applied]);
    assert_eq!(p.dead_letters_resolved, vec![42]);
    assert!(p.dead_letters.is_empty());
    let t = p.total();
    assert_eq!((t.applied, t.dead_lettered, t.consumed()), (1, -1, 0), "no new message was consumed");

    let mut bad = item_at(&status(a, 1, CaseStatus::Oplyst, "2024-04-10"), 9);
    bad.prior = Prior::DeadLetter(43);
    let p = plan(vec![bad], Context::default(), &DecodeLimits::default());
    assert_eq!(p.dead_letters_failed_again.len(), 1);
    assert_eq!(p.total(), Counts::default());
}

#[test]
fn a_dead_letter_for_an_id_another_aggregate_holds_names_it() {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut b1 = import(b);
    let a1 = import(a);
    b1.id = a1.id;
    let mut ctx = Context::default();
    ctx.known_event_ids.insert(a1.id);
    ctx.event_id_holders.insert(a1.id, (a, 1));
    let p = run(&[&b1], ctx);
    assert_eq!(p.outcomes, vec![Outcome::DeadLettered(Reason::DuplicateEventId)]);
    assert!(p.dead_letters[0].rejection.detail.contains(&a.to_string()), "{}", p.dead_letters[0].rejection.detail);
    assert_eq!(p.dead_letters[0].aggregate_id, Some(b), "the dead letter is filed under the stranded aggregate");
}

#[test]
fn a_redelivered_parked_event_beyond_the_loaded_ones_is_a_duplicate() {
    let a = Uuid::new_v4();
    let a5 = status(a, 5, CaseStatus::Afgjort, "2024-04-20");
    let mut ctx = Context::default();
    ctx.known_event_ids.insert(a5.id);
    ctx.event_id_holders.insert(a5.id, (a, 5));
    ctx.parked_truncated.insert(a);
    let p = run(&[&a5], ctx);
    assert_eq!(p.outcomes, vec![Outcome::Duplicate]);
    assert!(p.dead_letters.is_empty());
}

#[test]
fn accepting_a_gap_applies_from_the_version_on_until_the_next_gap() {
    let a = Uuid::new_v4();
    let a1 = import(a);
    let (a4, a5, a7) = (
        status(a, 4, CaseStatus::Oplyst, "2024-04-10"),
        status(a, 5, CaseStatus::Afgjort, "2024-04-20"),
        status(a, 7, CaseStatus::Afsluttet, "2024-04-30"),
    );
    let parked = vec![parked_row(&a4, 2), parked_row(&a5, 2), parked_row(&a7, 2)];
    let limits = DecodeLimits::default();
    assert_eq!(
        accept_gap(Some(stored(a, &[&a1])), parked.clone(), 5, &limits).unwrap_err(),
        ResolveError::NotTheFirst { aggregate: a, first: 4, asked: 5 }
    );
    let p = accept_gap(Some(stored(a, &[&a1])), parked, 4, &limits).unwrap();
    assert_eq!(p.unparked, vec![a4.id, a5.id], "version 7 still waits for 6");
    assert_eq!(p.appended.iter().map(|e| e.header.aggregate_version).collect::<Vec<_>>(), vec![4, 5]);
    assert_eq!(p.writes.len(), 1);
    assert_eq!((p.writes[0].expected_version, p.writes[0].aggregate.version), (1, 5));
    let t = p.total();
    assert_eq!((t.applied, t.parked, t.dead_lettered, t.consumed()), (2, -2, 0, 0), "counts move, consumed stays");
    assert_eq!(accept_gap(Some(stored(a, &[&a1])), vec![], 2, &limits).unwrap_err(), ResolveError::NothingParked);
}

#[test]
fn accepting_a_version_that_is_no_gap_is_refused() {
    let a = Uuid::new_v4();
    let (a1, a2) = (import(a), status(a, 2, CaseStatus::Oplyst, "2024-04-10"));
    let limits = DecodeLimits::default();
    let err = accept_gap(Some(stored(a, &[&a1, &a2])), vec![parked_row(&a2, 1)], 2, &limits).unwrap_err();
    assert_eq!(err, ResolveError::NoGap { aggregate: a, current: 2, asked: 2 });
}

#[test]
fn dropping_parked_events_dead_letters_them_with_the_reason() {
    let a = Uuid::new_v4();
    let (a3, a4) = (status(a, 3, CaseStatus::Oplyst, "2024-04-10"), status(a, 4, CaseStatus::Afgjort, "2024-04-20"));
    let p = drop_parked(vec![parked_row(&a3, 1), parked_row(&a4, 1)], "version 2 was never sent");
    assert_eq!(p.unparked, vec![a3.id, a4.id]);
    assert!(p.appended.is_empty() && p.writes.is_empty());
    assert!(p.dead_letters.iter().all(|d| d.rejection.reason == Reason::DroppedByOperator
        && d.rejection.detail.contains("version 2 was never sent")
        && d.aggregate_id == Some(a)));
    assert_eq!(*p.dead_letters[0].payload, a3.encode(), "the bytes are kept for a replay");
    let t = p.total();
    assert_eq!((t.parked, t.dead_lettered, t.consumed()), (-2, 2, 0));
}

#[test]
fn a_drain_applies_only_what_is_next_in_line() {
    let a = Uuid::new_v4();
    let a1 = import(a);
    let (a2, a3) = (status(a, 2, CaseStatus::Oplyst, "2024-04-10"), status(a, 3, CaseStatus::Afgjort, "2024-04-20"));
    let limits = DecodeLimits::default();
    let p = drain(Some(stored(a, &[&a1])), vec![parked_row(&a3, 1)], &limits);
    assert!(p.unparked.is_empty() && p.writes.is_empty(), "3 still waits for 2");
    let p = drain(Some(stored(a, &[&a1])), vec![parked_row(&a2, 1), parked_row(&a3, 1)], &limits);
    assert_eq!(p.unparked, vec![a2.id, a3.id]);
    assert_eq!(p.writes[0].aggregate.version, 3);
}

#[test]
fn a_second_parked_event_at_one_version_is_dead_lettered_when_loaded() {
    let a = Uuid::new_v4();
    let a1 = import(a);
    let a3 = status(a, 3, CaseStatus::Afgjort, "2024-04-10");
    let other3 = status(a, 3, CaseStatus::Afsluttet, "2024-04-20");
    let mut ctx = Context::default();
    ctx.aggregates.insert(a, stored(a, &[&a1]));
    ctx.parked.insert(a, vec![parked_row(&a3, 1), parked_row(&other3, 1)]);
    let a2 = status(a, 2, CaseStatus::Oplyst, "2024-04-05");
    let p = run(&[&a2], ctx);
    assert_eq!(p.unparked, vec![other3.id, a3.id]);
    assert_eq!(p.dead_letters.len(), 1);
    assert_eq!(p.dead_letters[0].event_id, Some(other3.id));
    assert_eq!(p.dead_letters[0].rejection.reason, Reason::DuplicateEventId);
    assert_eq!(p.writes[0].aggregate.version, 3);
    let t = p.total();
    assert_eq!((t.applied, t.parked, t.dead_lettered), (2, -2, 1));
}

#[test]
fn a_truncated_load_asks_for_a_drain_once_all_it_loaded_applied() {
    let a = Uuid::new_v4();
    let a1 = import(a);
    let (a2, a3) = (status(a, 2, CaseStatus::Oplyst, "2024-04-10"), status(a, 3, CaseStatus::Afgjort, "2024-04-20"));
    let mut ctx = Context::default();
    ctx.aggregates.insert(a, stored(a, &[&a1]));
    ctx.parked.insert(a, vec![parked_row(&a3, 1)]);
    ctx.parked_truncated.insert(a);
    let p = run(&[&a2], ctx);
    assert_eq!(p.drain, vec![a]);
    // Not truncated: nothing more waits.
    let mut ctx = Context::default();
    ctx.aggregates.insert(a, stored(a, &[&a1]));
    ctx.parked.insert(a, vec![parked_row(&a3, 1)]);
    assert!(run(&[&a2], ctx).drain.is_empty());
}

#[test]
fn parked_events_next_in_line_apply_before_the_batch_s_event() {
    let a = Uuid::new_v4();
    let a1 = import(a);
    let (a2, a3) = (status(a, 2, CaseStatus::Oplyst, "2024-04-10"), status(a, 3, CaseStatus::Afgjort, "2024-04-20"));
    let mut ctx = Context::default();
    ctx.aggregates.insert(a, stored(a, &[&a1]));
    ctx.parked.insert(a, vec![parked_row(&a2, 1)]);
    let p = run(&[&a3], ctx);
    assert_eq!(p.outcomes, vec![Outcome::Applied]);
    assert_eq!(p.appended.iter().map(|e| e.header.aggregate_version).collect::<Vec<_>>(), vec![2, 3]);
}

#[test]
fn a_tax_record_is_replaced_only_by_a_report_on_the_same_thing() {
    let a = Uuid::new_v4();
    let year = IncomeYear(2024);
    let income = |v: i64, start: &str, end: &str| {
        event(
            a,
            v,
            Body::IncomeReported(IncomeReported {
                period: crate::domain::Period { start: d(start), end: d(end) },
                employer_cvr: Cvr::parse("29189420").unwrap(),
                a_income: crate::domain::Oere(100),
                a_tax: crate::domain::Oere(30),
                am_contribution: crate::domain::Oere(8),
            }),
        )
    };
    let annual = event(
        a,
        2,
        Body::AnnualAssessmentIssued(AnnualAssessmentIssued {
            income_year: year,
            personal_income: crate::domain::Oere(1),
            capital_income: crate::domain::Oere(1),
            taxable_income: crate::domain::Oere(1),
            total_tax: crate::domain::Oere(1),
            residual_tax: crate::domain::Oere(1),
        }),
    );
    let first = income(1, "2024-01-01", "2024-01-31");
    // A correction of the same month replaces it.
    let p = run(&[&first, &income(2, "2024-01-01", "2024-01-31")], Context::default());
    assert_eq!(p.outcomes, vec![Outcome::Applied, Outcome::Applied]);
    match &p.writes[0].aggregate.state {
        State::TaxRecord(t) => assert_eq!(t.supersedes, 1),
        other => panic!("{other:?}"),
    }
    // Another area, or another income year, under the same aggregate: refused.
    for second in [annual, income(2, "2023-12-01", "2023-12-31")] {
        let p = run(&[&first, &second], Context::default());
        assert_eq!(p.outcomes, vec![Outcome::Applied, Outcome::DeadLettered(Reason::InvalidTransition)]);
    }
}
// ------------------------------------------------ documents and journal notes

fn document(id: u128, kle: Option<&str>, sensitivity: Option<Sensitivity>) -> DocumentFields {
    DocumentFields {
        document_id: Uuid::from_u128(id),
        title: "Ansøgning".into(),
        date: d("2024-04-02"),
        direction: DocumentDirection::Incoming,
        kind: DocumentKind::Document,
        kle: kle.map(|k| Kle::parse(k).unwrap()),
        sensitivity,
    }
}

/// Applies `events` in order to a fresh aggregate: the final case's
/// documents' ids and titles, or the first refusal's reason and detail.
fn documents_after(events: &[Event]) -> Result<Vec<(u128, String)>, (Reason, String)> {
    let mut cur = None;
    for e in events {
        match apply(cur.take(), e.clone()).1 {
            Ok(Transition::Upsert(a)) => cur = Some(a),
            Ok(Transition::Delete) => return Ok(Vec::new()),
            Err(r) => return Err((r.rejection.reason, r.rejection.detail)),
        }
    }
    let State::Case(c) = cur.unwrap().state else { panic!("a case") };
    Ok(c.documents.iter().map(|d| (d.document_id.as_u128(), d.title.clone())).collect())
}

#[test]
fn documents_are_registered_updated_and_deleted_inside_their_case() {
    let a = Uuid::new_v4();
    let mut changed = document(1, None, None);
    changed.title = "Ansøgning (rettet)".into();
    let events = [
        import(a),
        event(a, 2, Body::DocumentRegistered(document(1, None, None))),
        event(a, 3, Body::DocumentRegistered(document(2, Some("32.18.04"), Some(Sensitivity::Vip)))),
        event(a, 4, Body::DocumentUpdated(changed)),
        event(a, 5, Body::DocumentDeleted(DocumentDeleted { document_id: Uuid::from_u128(2), reason: None })),
    ];
    assert_eq!(documents_after(&events).unwrap(), [(1, "Ansøgning (rettet)".to_string())]);
    // A re-import carries the case's own fields; its documents stay.
    let mut reimport = import(a);
    reimport.aggregate_version = 6;
    let mut all = events.to_vec();
    all.push(reimport);
    assert_eq!(documents_after(&all).unwrap().len(), 1);
}

#[test]
fn document_rules_refuse_with_invalid_transition_and_a_clear_detail() {
    let a = Uuid::new_v4();
    let reg = |v, doc| event(a, v, Body::DocumentRegistered(doc));
    let refused = |second: Event| documents_after(&[import(a), reg(2, document(1, None, None)), second]).unwrap_err();
    let (reason, detail) = refused(reg(3, document(1, None, None)));
    assert_eq!(reason, Reason::InvalidTransition);
    assert!(detail.contains("already registered"), "{detail}");
    let (reason, detail) = refused(event(a, 3, Body::DocumentUpdated(document(9, None, None))));
    assert_eq!((reason, detail.contains("no document with that id")), (Reason::InvalidTransition, true), "{detail}");
    let gone = DocumentDeleted { document_id: Uuid::from_u128(9), reason: None };
    let (reason, _) = refused(event(a, 3, Body::DocumentDeleted(gone)));
    assert_eq!(reason, Reason::InvalidTransition);
    // The case is KLE 32.18.04 at sensitivity 2: a document may not widen it.
    let (reason, detail) = refused(reg(3, document(2, Some("32.18.05"), None)));
    assert_eq!(reason, Reason::InvalidTransition);
    assert!(detail.contains("kle must be its case's"), "{detail}");
    let (reason, detail) = refused(reg(3, document(2, None, Some(Sensitivity::NotConfidential))));
    assert_eq!(reason, Reason::InvalidTransition);
    assert!(detail.contains("sensitivity can't be below"), "{detail}");
    let (_, detail) =
        refused(event(a, 3, Body::DocumentUpdated(document(1, None, Some(Sensitivity::NotConfidential)))));
    assert!(detail.contains("sensitivity can't be below"), "an update keeps the rule: {detail}");
    // The case's own class, or narrower, is accepted.
    let ok = [import(a), reg(2, document(1, Some("32.18.04"), Some(Sensitivity::Confidential)))];
    assert!(documents_after(&ok).is_ok());
    // A document event can't start an aggregate.
    let (reason, _) = documents_after(&[event(a, 1, Body::DocumentRegistered(document(1, None, None)))]).unwrap_err();
    assert_eq!(reason, Reason::NotACreationEvent);
}

#[test]
fn a_case_holds_at_most_a_thousand_documents() {
    let a = Uuid::new_v4();
    let mut events = vec![import(a)];
    for i in 0..=state::Case::MAX_DOCUMENTS as u128 {
        events.push(event(a, i as i64 + 2, Body::DocumentRegistered(document(i, None, None))));
    }
    let (reason, detail) = documents_after(&events).unwrap_err();
    assert_eq!(reason, Reason::InvalidTransition);
    assert!(detail.contains("at most 1000 documents"), "{detail}");
    events.pop();
    assert_eq!(documents_after(&events).unwrap().len(), state::Case::MAX_DOCUMENTS);
}

#[test]
fn deleting_the_case_deletes_its_documents() {
    let a = Uuid::new_v4();
    let e1 = import(a);
    let e2 = event(a, 2, Body::DocumentRegistered(document(1, None, None)));
    let e3 = event(a, 3, Body::CaseDeleted(Deleted::default()));
    let p = run(&[&e1, &e2, &e3], Context::default());
    assert_eq!(p.outcomes, vec![Outcome::Applied; 3]);
    assert!(p.writes.is_empty(), "no snapshot, so no document, is written");
}

#[test]
fn history_accepted_under_older_rules_still_folds() {
    // Before the status rules, a backward change was applied and stored; a
    // rebuild (stored rules) folds it as it was, ingest refuses it.
    let a = Uuid::new_v4();
    let closed = stored(a, &[&import(a), &status(a, 2, CaseStatus::Afsluttet, "2024-05-01")]);
    let back = status(a, 3, CaseStatus::Opstaaet, "2024-06-01");
    let (_, ingest) = apply::apply_under(Rules::Ingest, Some(closed.clone()), back.clone());
    assert_eq!(ingest.unwrap_err().rejection.reason, Reason::InvalidTransition);
    let (_, stored_rules) = apply::apply_under(Rules::Stored, Some(closed), back);
    match stored_rules.unwrap() {
        Transition::Upsert(agg) => match agg.state {
            State::Case(c) => assert_eq!(c.status(), CaseStatus::Opstaaet),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}
