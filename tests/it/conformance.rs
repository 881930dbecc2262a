//! The store's contract, on both backends: one transaction per batch,
//! fencing, idempotence, parking across batches.

use overblik::events::DecodeLimits;
use overblik::events::body::CaseStatus;
use overblik::ingest::commit_batch;
use overblik::projection::Outcome;
use overblik::simulator::DemoStream;
use overblik::store::{OffsetAdvance, StoreError};
use uuid::Uuid;

use crate::build::{Citizen, consume, demo_payloads, encoded, items};
use crate::support::{Backend, Expected, TestDb, assert_exact};

const T: &str = "overblik.ky";

fn adv(expected: i64, next: i64) -> Vec<OffsetAdvance> {
    vec![OffsetAdvance { topic: T.into(), partition: 0, expected, next }]
}

async fn a_batch_commits_whole_or_not_at_all(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(21, 1200).with_malformed_ratio(0.03).collect();
    let payloads = demo_payloads(&messages);
    assert_eq!(store.assigned_offsets(&[(T.into(), 0)]).await.unwrap(), vec![0]);

    // A batch whose offset compare-and-set fails leaves no trace at all.
    let err = commit_batch(&store, items(&payloads[..600], T, 0, 0), &adv(5, 600), &DecodeLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    let s = store.status().await.unwrap();
    assert_eq!((s.consumed, s.events, s.parked_rows), (0, 0, 0));
    assert!(s.projections.values().all(|n| *n == 0), "{:?}", s.projections);
    assert!(s.dead_letters_by_reason.is_empty());

    consume(&store, T, 0, &payloads, 300).await.unwrap();
    assert_exact(&store, &Expected::of(&messages)).await;
    assert_eq!(store.assigned_offsets(&[(T.into(), 0)]).await.unwrap(), vec![1200]);
}
crate::both_backends!(a_batch_commits_whole_or_not_at_all);

async fn replaying_a_prefix_changes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(22, 1000).with_malformed_ratio(0.05).collect();
    let payloads = demo_payloads(&messages);
    consume(&store, T, 0, &payloads, 250).await.unwrap();
    let before = store.dump_projections().await.unwrap();
    let s0 = store.status().await.unwrap();

    // The stored offset is lost (say, restored from an old backup): the
    // first 700 messages are consumed again.
    store.reset_offsets(&[T.to_string()]).await.unwrap();
    let plans = consume(&store, T, 0, &payloads[..700], 100).await.unwrap();
    for p in &plans {
        // Duplicates; those of aggregates deleted since are counted as such.
        assert!(
            p.outcomes.iter().all(|o| matches!(o, Outcome::Duplicate | Outcome::IgnoredDeleted)),
            "{:?}",
            p.outcomes
        );
    }
    assert_eq!(store.dump_projections().await.unwrap(), before, "projections unchanged");
    let s1 = store.status().await.unwrap();
    assert_eq!(s1.events, s0.events);
    assert_eq!(s1.dead_letters_by_reason, s0.dead_letters_by_reason, "no second dead letter for the same message");
    assert_eq!(s1.duplicates, s0.duplicates + 700);
    assert_eq!(s1.consumed, s0.consumed + 700);
}
crate::both_backends!(replaying_a_prefix_changes_nothing);

async fn a_fenced_consumer_cannot_commit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(23, 300).collect();
    let payloads = demo_payloads(&messages);
    // Two consumers both believe they own the partition from offset 0.
    assert_eq!(store.assigned_offsets(&[(T.into(), 0)]).await.unwrap(), vec![0]);
    let limits = DecodeLimits::default();
    commit_batch(&store, items(&payloads[..100], T, 0, 0), &adv(0, 100), &limits).await.unwrap();
    let zombie = commit_batch(&store, items(&payloads[..150], T, 0, 0), &adv(0, 150), &limits).await;
    assert!(matches!(zombie, Err(StoreError::Fenced { .. })));
    let s = store.status().await.unwrap();
    assert_eq!(s.consumed, 100, "nothing of the zombie's batch was written");
    assert_eq!(store.assigned_offsets(&[(T.into(), 0)]).await.unwrap(), vec![100]);
}
crate::both_backends!(a_fenced_consumer_cannot_commit);

async fn a_gap_waits_across_batches_and_only_for_its_aggregate(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let c = Citizen::new("0101801234");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let a1 = c.case_import(a, "2024-01-02");
    let a2 = c.status(a, 2, CaseStatus::Oplyst, "2024-01-10");
    let a3 = c.status(a, 3, CaseStatus::Afgjort, "2024-01-20");
    let b1 = c.case_import(b, "2024-02-01");

    consume(&store, T, 0, &encoded(&[&a1]), 10).await.unwrap();
    // v3 arrives before v2: it waits, while b flows.
    consume(&store, T, 0, &encoded(&[&a3, &b1]), 10).await.unwrap();
    let s = store.status().await.unwrap();
    assert_eq!((s.parked, s.parked_rows), (1, 1));
    let stored = crate::support::stored_aggregates(&store).await;
    assert_eq!(stored[&a].0, 1, "a waits at v1");
    assert_eq!(stored[&b].0, 1, "b applied");

    // The missing version arrives in a later batch: both apply, in order.
    consume(&store, T, 0, &encoded(&[&a2]), 10).await.unwrap();
    let s = store.status().await.unwrap();
    assert_eq!((s.parked, s.parked_rows, s.applied), (0, 0, 4));
    assert_eq!(crate::support::stored_aggregates(&store).await[&a].0, 3);
    let Some(overblik::projection::State::Case(case)) = store.aggregate(a).await.unwrap().map(|a| a.state) else {
        panic!("case a is stored")
    };
    let of_a: Vec<&str> = case.status_history.iter().map(|s| s.status.as_str()).collect();
    assert_eq!(of_a, ["Opstaaet", "Oplyst", "Afgjort"]);
}
crate::both_backends!(a_gap_waits_across_batches_and_only_for_its_aggregate);

/// Two transactions that read the same aggregate can't both write it; the
/// loser retries and finds the winner's version. (SQLite has one writer at a
/// time, so there this can't arise.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_to_one_aggregate_conflict_on_postgres() {
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let c = Citizen::new("0101801234");
    let a = Uuid::new_v4();
    consume(&store, T, 0, &encoded(&[&c.case_import(a, "2024-01-02")]), 10).await.unwrap();
    let limits = DecodeLimits::default();
    let first = items(&encoded(&[&c.status(a, 2, CaseStatus::Oplyst, "2024-01-10")]), T, 1, 0);
    let second = items(&encoded(&[&c.status(a, 2, CaseStatus::Afgjort, "2024-01-11")]), T, 2, 0);

    let mut tx1 = store.begin().await.unwrap();
    let mut tx2 = store.begin().await.unwrap();
    let ctx1 = tx1.load_context(&first).await.unwrap();
    let ctx2 = tx2.load_context(&second).await.unwrap();
    let plan1 = overblik::projection::plan(first, ctx1, &limits);
    let plan2 = overblik::projection::plan(second, ctx2, &limits);
    tx1.write(&plan1).await.unwrap();
    let writer2 = tokio::spawn(async move {
        let r = tx2.write(&plan2).await;
        (r, tx2)
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tx1.commit().await.unwrap();
    let (r, _tx2) = writer2.await.unwrap();
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(crate::support::stored_aggregates(&store).await[&a].0, 2);
}

/// The load-run population goes through the same commit path: every event
/// applies once, a second load changes nothing, and each citizen's
/// aggregates are found under their CPR number.
async fn the_load_population_applies_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let never: overblik::ingest::StopFlag = Default::default();
    let events: i64 = (0..300).map(|i| overblik::simulator::population::citizen_events(5, i).1.len() as i64).sum();

    let first = overblik::ingest::population::load(&store, 5, 0..300, 2, &never, |_| {}).await.unwrap();
    assert_eq!((first.citizens, first.done_until), (300, 300));
    let c = &first.counts;
    assert_eq!((c.applied, c.duplicates, c.parked, c.dead_lettered), (events, 0, 0, 0));

    let again = overblik::ingest::population::load(&store, 5, 0..300, 2, &never, |_| {}).await.unwrap();
    assert_eq!((again.counts.applied, again.counts.duplicates), (0, events));

    let kinds = [
        overblik::domain::AggregateKind::Case,
        overblik::domain::AggregateKind::Grant,
        overblik::domain::AggregateKind::Payment,
        overblik::domain::AggregateKind::Employment,
        overblik::domain::AggregateKind::TaxRecord,
        overblik::domain::AggregateKind::ControlCase,
    ];
    for i in [0, 150, 299] {
        let who = overblik::simulator::population::cpr(i);
        let found = store.citizen_aggregates(&who.urn(), &kinds, false).await.unwrap().aggregates;
        assert!(!found.is_empty(), "citizen {i} has aggregates");
        assert!(found.iter().all(|a| a.subject == who));
    }
}
crate::both_backends!(the_load_population_applies_once);

/// A citizen's lookup reads in a fixed order — the citizen's own aggregates
/// by kind and id, then the cases where the citizen is only a party — and
/// says when its bound cut rows off.
async fn a_citizen_lookup_is_ordered_and_says_when_it_was_cut(backend: Backend) {
    use overblik::domain::AggregateKind::{Case, Grant};
    use overblik::events::Body;
    use overblik::events::body::{CaseImported, Party, PartyRole};

    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (x, y) = (Citizen::new("0101801234"), Citizen::new("0202802345"));
    let (own_cases, party_cases) = ([Uuid::new_v4(), Uuid::new_v4()], [Uuid::new_v4(), Uuid::new_v4()]);
    let grant = Uuid::new_v4();
    let mut events = vec![x.case_import(own_cases[0], "2024-01-02"), x.case_import(own_cases[1], "2024-01-03")];
    events.push(x.grant(grant, own_cases[0], "2024-02-01"));
    for id in party_cases {
        let mut e = y.case_import(id, "2024-01-04");
        let Body::CaseImported(CaseImported(f)) = &mut e.body else { unreachable!() };
        f.parties.push(Party { role: PartyRole::Secondary, id: x.party });
        events.push(e);
    }
    consume(&store, T, 0, &encoded(&events.iter().collect::<Vec<_>>()), 10).await.unwrap();

    let sorted = |mut v: Vec<Uuid>| {
        v.sort();
        v
    };
    let mut expected = sorted(own_cases.to_vec());
    expected.push(grant);
    expected.extend(sorted(party_cases.to_vec()));
    let urn = x.party.urn();
    let ids = |found: &overblik::store::CitizenAggregates| found.aggregates.iter().map(|a| a.id).collect::<Vec<_>>();

    let all = store.citizen_aggregates_limited(&urn, &[Case, Grant], true, 5).await.unwrap();
    assert_eq!((ids(&all), all.truncated), (expected.clone(), false));
    let cut = store.citizen_aggregates_limited(&urn, &[Case, Grant], true, 4).await.unwrap();
    assert_eq!((ids(&cut), cut.truncated), (expected[..4].to_vec(), true));
    let own = store.citizen_aggregates(&urn, &[Case], false).await.unwrap();
    assert_eq!((ids(&own), own.truncated), (expected[..2].to_vec(), false));

    let parties = store.party_cases(&urn, false).await.unwrap();
    assert_eq!(ids(&parties), sorted([own_cases, party_cases].concat()));
    assert_eq!(ids(&store.party_cases(&urn, true).await.unwrap()), sorted(own_cases.to_vec()));

    let one = store.aggregate(party_cases[0]).await.unwrap().expect("the case");
    assert_eq!((one.id, one.subject), (party_cases[0], y.party));
    assert!(store.aggregate(Uuid::new_v4()).await.unwrap().is_none());
}
crate::both_backends!(a_citizen_lookup_is_ordered_and_says_when_it_was_cut);
