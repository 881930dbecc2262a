//! Rebuild: the projections recomputed from the event store equal the live
//! ones, also when ingest and deletions continue during the rebuild.

use overblik::domain::PartyId;
use overblik::events::Body;
use overblik::events::body::CaseStatus;
use overblik::events::body::Deleted;
use overblik::rebuild::{Rebuild, id_ranges, rebuild, rebuild_with};
use overblik::simulator::DemoStream;

use crate::build::{consume, demo_payloads};
use crate::support::{Backend, TestDb};

const T: &str = "overblik.skat";

async fn a_rebuild_reproduces_the_live_rows(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(31, 3000).with_malformed_ratio(0.02).collect();
    consume(&store, T, 0, &demo_payloads(&messages), 400).await.unwrap();
    let live = store.dump_projections().await.unwrap();
    assert!(live["aggregates"].len() > 300 && live["case_parties"].len() > 10);
    assert!(!live.contains_key("payments"), "ingest writes no reporting tables");

    let mut seen = Vec::new();
    let report = rebuild(&store, |done, total| seen.push((done, total))).await.unwrap();
    assert_eq!(report.generation, 2);
    assert_eq!(report.caught_up, 0);
    assert!(seen.last().is_some_and(|(d, t)| d == t), "progress reaches the total: {seen:?}");
    assert_eq!(store.dump_projections().await.unwrap(), live, "rebuilt rows equal the live rows");
    assert_eq!(store.status().await.unwrap().projection_generation, 2);

    // And again, from generation 2 to 3.
    rebuild(&store, |_, _| {}).await.unwrap();
    assert_eq!(store.dump_projections().await.unwrap(), live);
    assert_eq!(store.status().await.unwrap().projection_generation, 3);
}
crate::both_backends!(a_rebuild_reproduces_the_live_rows);

async fn a_rebuild_catches_up_with_what_arrives_meanwhile(backend: Backend) {
    let messages: Vec<_> = DemoStream::new(32, 3000).with_malformed_ratio(0.02).collect();
    let payloads = demo_payloads(&messages);

    // The reference: the same messages, consumed with no rebuild at all.
    let reference_db = TestDb::new(backend).await;
    let reference = reference_db.store().await;
    consume(&reference, T, 0, &payloads, 300).await.unwrap();

    let db = TestDb::new(backend).await;
    let store = db.store().await;
    consume(&store, T, 0, &payloads[..1500], 300).await.unwrap();
    let first_half = store.dump_projections().await.unwrap();
    let mut r = Rebuild::start(&store).await.unwrap();
    r.bulk(|_, _| {}).await.unwrap();

    // Meanwhile ingest goes on, and lookups still read the live generation.
    consume(&store, T, 0, &payloads[1500..], 300).await.unwrap();
    assert_ne!(store.dump_projections().await.unwrap(), first_half);
    let report = r.swap().await.unwrap();
    assert!(report.caught_up > 0, "the swap applied what arrived during the bulk phase");
    assert_eq!(store.dump_projections().await.unwrap(), reference.dump_projections().await.unwrap());

    // A case the bulk phase folded is deleted before the swap.
    let dump = store.dump_projections().await.unwrap();
    let row = dump["aggregates"].iter().find(|r| r[1].as_deref() == Some("case")).expect("a case");
    let case = uuid::Uuid::parse_str(row[0].as_deref().unwrap()).unwrap();
    let version: i64 = row[2].as_deref().unwrap().parse().unwrap();
    let mut delete =
        crate::build::Citizen::new("0101801234").event(case, version + 1, Body::CaseDeleted(Deleted::default()));
    delete.subject = PartyId::parse(row[3].as_deref().unwrap()).unwrap();
    let mut r = Rebuild::start(&store).await.unwrap();
    r.bulk(|_, _| {}).await.unwrap();
    consume(&store, T, 0, &crate::build::encoded(&[&delete]), 10).await.unwrap();
    r.swap().await.unwrap();
    assert!(!crate::support::stored_aggregates(&store).await.contains_key(&case), "the deleted case is gone");
    let live = store.dump_projections().await.unwrap();
    assert!(live["case_parties"].iter().all(|r| r[0].as_deref() != Some(&case.to_string())));
    rebuild(&store, |_, _| {}).await.unwrap();
    assert_eq!(store.dump_projections().await.unwrap(), live, "a fresh rebuild agrees");
}
crate::both_backends!(a_rebuild_catches_up_with_what_arrives_meanwhile);

/// `rebuild --reporting` adds the normalised reporting tables beside the
/// serving ones, which stay as they were; a plain rebuild drops them again.
async fn a_reporting_rebuild_adds_the_reporting_tables(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(33, 2000).with_malformed_ratio(0.02).collect();
    consume(&store, T, 0, &demo_payloads(&messages), 400).await.unwrap();
    let serving = store.dump_projections().await.unwrap();

    rebuild_with(&store, true, |_, _| {}).await.unwrap();
    let with = store.dump_projections().await.unwrap();
    for (table, rows) in &serving {
        assert_eq!(&with[table], rows, "{table} unchanged");
    }
    for table in ["cases", "case_status_history", "grants", "payments", "payment_lines", "tax_records"] {
        assert!(!with[table].is_empty(), "{table} has rows");
    }
    let status = store.status().await.unwrap();
    assert_eq!(status.projections["cases"], with["cases"].len() as i64);
    // The snapshot is reproducible: the same events give the same rows.
    rebuild_with(&store, true, |_, _| {}).await.unwrap();
    assert_eq!(store.dump_projections().await.unwrap(), with);

    rebuild(&store, |_, _| {}).await.unwrap();
    assert_eq!(store.dump_projections().await.unwrap(), serving);
    assert!(!store.status().await.unwrap().projections.contains_key("cases"));
}
crate::both_backends!(a_reporting_rebuild_adds_the_reporting_tables);

/// Folding in parallel by aggregate-id range gives the same rows as the live
/// generation, and as folding with one worker — also for aggregates whose ids
/// sit on either side of each range boundary, and with pages so small that
/// aggregates span them.
async fn parallel_folding_reproduces_the_live_rows(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(34, 1500).with_malformed_ratio(0.02).collect();
    consume(&store, T, 0, &demo_payloads(&messages), 300).await.unwrap();
    let c = crate::build::Citizen::new("0101801234");
    let mut events = Vec::new();
    for (lo, _) in id_ranges(4) {
        let lo = lo.as_u128();
        for id in [lo.checked_sub(1), Some(lo), Some(lo + 1)].into_iter().flatten() {
            let id = uuid::Uuid::from_u128(id);
            events.push(c.case_import(id, "2024-01-02"));
            events.push(c.status(id, 2, CaseStatus::Oplyst, "2024-01-10"));
            events.push(c.status(id, 3, CaseStatus::Afgjort, "2024-01-20"));
        }
    }
    consume(&store, T, 0, &crate::build::encoded(&events.iter().collect::<Vec<_>>()), 50).await.unwrap();
    let live = store.dump_projections().await.unwrap();
    let stored = store.status().await.unwrap().events;

    for workers in [4, 1] {
        let mut r = Rebuild::start(&store).await.unwrap().folding(workers, 7);
        let mut seen = Vec::new();
        r.bulk(|done, total| seen.push((done, total))).await.unwrap();
        assert_eq!(seen.last(), Some(&(stored, stored)), "progress reaches the total");
        let report = r.swap().await.unwrap();
        assert_eq!(report.events, stored);
        assert_eq!(store.dump_projections().await.unwrap(), live, "{workers} workers");
    }
}
crate::both_backends!(parallel_folding_reproduces_the_live_rows);
