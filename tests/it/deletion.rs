//! Physical deletion: by a delete event, and by the retention sweep. After
//! either, the citizen's number is found in no table; a tombstone without
//! personal data remains and late events are ignored.

use overblik::events::Body;
use overblik::events::body::{CaseStatus, DocumentKind};
use overblik::retention::{RetentionRules, sweep};
use uuid::Uuid;

use crate::build::{Citizen, consume, d, encoded};
use crate::support::{Backend, TestDb};

const T: &str = "overblik.ky";

async fn a_delete_event_erases_the_aggregate(backend: Backend) {
    delete_event_erases(backend, false).await
}
crate::both_backends!(a_delete_event_erases_the_aggregate);

/// With the reporting tables built, a deletion reaches them too.
async fn a_delete_event_erases_the_reporting_rows_too(backend: Backend) {
    delete_event_erases(backend, true).await
}
crate::both_backends!(a_delete_event_erases_the_reporting_rows_too);

/// Builds the reporting tables and checks they hold the citizen.
async fn with_reporting(store: &overblik::store::Store, cpr: &str) {
    overblik::rebuild::rebuild_with(store, true, |_, _| {}).await.unwrap();
    let found = store.tables_containing(cpr).await.unwrap();
    assert!(found.iter().any(|t| t.starts_with("cases_g")), "the reporting tables hold the citizen: {found:?}");
}

async fn delete_event_erases(backend: Backend, reporting: bool) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let x = Citizen::new("1502853789");
    let other = Citizen::new("0707714321");
    let (case, grant, payment) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let import = x.case_import(case, "2024-01-02");
    let oplyst = x.status(case, 2, CaseStatus::Oplyst, "2024-01-10");
    // A malformed v3 becomes a dead letter that still names the aggregate
    // (and carries the citizen's number in its bytes).
    let bad = String::from_utf8(x.status(case, 3, CaseStatus::Afgjort, "2024-01-20").encode())
        .unwrap()
        .replace("2024-01-20", "2024-01-32")
        .into_bytes();
    // v5 waits, parked, for a v4 that never comes.
    let parked = x.status(case, 5, CaseStatus::Afsluttet, "2024-03-01");
    let mut batch = encoded(&[
        &import,
        &oplyst,
        &x.grant(grant, case, "2024-01-20"),
        &x.payment(payment, grant, "2024-02-01", "2024-02-29"),
        &other.case_import(Uuid::new_v4(), "2024-01-05"),
    ]);
    batch.push((case.to_string().into_bytes(), bad));
    batch.extend(encoded(&[&parked]));
    consume(&store, T, 0, &batch, 100).await.unwrap();
    let s = store.status().await.unwrap();
    assert_eq!((s.dead_lettered, s.parked), (1, 1));
    assert!(!store.tables_containing(&x.cpr).await.unwrap().is_empty(), "the scan finds the citizen before deletion");
    if reporting {
        with_reporting(&store, &x.cpr).await;
    }

    // The source deletes the payment, the grant and the case.
    let deletes = encoded(&[
        &x.deleted(payment, 2, Body::PaymentDeleted),
        &x.deleted(grant, 2, Body::GrantDeleted),
        &x.deleted(case, 3, Body::CaseDeleted),
    ]);
    consume(&store, T, 0, &deletes, 100).await.unwrap();
    assert_eq!(store.tables_containing(&x.cpr).await.unwrap(), Vec::<String>::new(), "no table holds the number");
    assert!(!store.tables_containing(&other.cpr).await.unwrap().is_empty(), "other citizens are untouched");

    // A late event for the deleted case is counted and ignored.
    consume(&store, T, 0, &encoded(&[&x.status(case, 4, CaseStatus::Afgjort, "2024-02-01")]), 10).await.unwrap();
    let s = store.status().await.unwrap();
    assert_eq!(s.tombstones, 3);
    assert_eq!((s.parked, s.dead_lettered), (0, 0), "the parked event and the dead letter went with the case");
    assert_eq!(s.ignored_deleted, 3, "parked, dead letter and late event are ignored");
    assert_eq!(s.consumed, 11);
    assert_eq!(store.tables_containing(&x.cpr).await.unwrap(), Vec::<String>::new());
    assert!(!crate::support::stored_aggregates(&store).await.contains_key(&case));
}

async fn the_retention_sweep_erases_expired_cases(backend: Backend) {
    retention_erases(backend, false).await
}
crate::both_backends!(the_retention_sweep_erases_expired_cases);

async fn the_retention_sweep_erases_the_reporting_rows_too(backend: Backend) {
    retention_erases(backend, true).await
}
crate::both_backends!(the_retention_sweep_erases_the_reporting_rows_too);

async fn retention_erases(backend: Backend, reporting: bool) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let expired = Citizen::new("0311654321");
    let recent = Citizen::new("2206902468");
    let (old_case, old_grant, old_payment) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let new_case = Uuid::new_v4();
    let batch = encoded(&[
        &expired.case_import(old_case, "2015-01-05"),
        &expired.status(old_case, 2, CaseStatus::Afsluttet, "2015-06-01"),
        &expired.grant(old_grant, old_case, "2015-01-20"),
        &expired.payment(old_payment, old_grant, "2015-02-01", "2015-02-28"),
        &recent.case_import(new_case, "2023-01-05"),
        &recent.status(new_case, 2, CaseStatus::Afsluttet, "2024-03-01"),
    ]);
    consume(&store, T, 0, &batch, 100).await.unwrap();
    if reporting {
        with_reporting(&store, &expired.cpr).await;
    }

    let report = sweep(&store, &RetentionRules::default(), d("2026-11-22")).await.unwrap();
    assert_eq!((report.cases, report.grants, report.payments), (1, 1, 1));
    assert_eq!(store.tables_containing(&expired.cpr).await.unwrap(), Vec::<String>::new());
    assert!(!store.tables_containing(&recent.cpr).await.unwrap().is_empty(), "a case closed in 2024 stays");

    // A second sweep finds nothing more; a late event is ignored.
    assert_eq!(sweep(&store, &RetentionRules::default(), d("2026-11-22")).await.unwrap().cases, 0);
    consume(&store, T, 0, &encoded(&[&expired.status(old_case, 3, CaseStatus::Oplyst, "2016-01-01")]), 10)
        .await
        .unwrap();
    let s = store.status().await.unwrap();
    assert_eq!((s.tombstones, s.ignored_deleted), (3, 1));
    assert_eq!(store.tables_containing(&expired.cpr).await.unwrap(), Vec::<String>::new());
}

/// A title no other fact in these tests carries.
const NOTE: &str = "Journalnotat 4711-marker";

/// A case's documents live in its snapshot and its events: when the case is
/// deleted, by its source or by the retention sweep, no table holds their
/// titles or the citizen's number.
async fn a_cases_documents_are_deleted_with_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (by_event, by_sweep) = (Citizen::new("1502853789"), Citizen::new("0311654321"));
    let (deleted_case, expired_case) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = encoded(&[
        &by_event.case_import(deleted_case, "2024-01-02"),
        &by_event.document(deleted_case, 2, &format!("{NOTE} A"), DocumentKind::JournalNote, None),
        &by_event.document(deleted_case, 3, "Ansøgning", DocumentKind::Document, None),
        &by_sweep.case_import(expired_case, "2015-01-05"),
        &by_sweep.document(expired_case, 2, &format!("{NOTE} B"), DocumentKind::JournalNote, None),
        &by_sweep.status(expired_case, 3, CaseStatus::Afsluttet, "2015-06-01"),
    ]);
    consume(&store, T, 0, &batch, 100).await.unwrap();
    let found = store.tables_containing(NOTE).await.unwrap();
    assert!(found.iter().any(|t| t.starts_with("aggregates")), "the snapshot holds the titles: {found:?}");

    consume(&store, T, 0, &encoded(&[&by_event.deleted(deleted_case, 4, Body::CaseDeleted)]), 10).await.unwrap();
    assert_eq!(store.tables_containing(&format!("{NOTE} A")).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.tables_containing(&by_event.cpr).await.unwrap(), Vec::<String>::new());
    assert!(!store.tables_containing(&format!("{NOTE} B")).await.unwrap().is_empty(), "the other case keeps its own");

    let report = sweep(&store, &RetentionRules::default(), d("2026-11-22")).await.unwrap();
    assert_eq!(report.cases, 1);
    assert_eq!(store.tables_containing(NOTE).await.unwrap(), Vec::<String>::new(), "no table holds a title");
    assert_eq!(store.tables_containing(&by_sweep.cpr).await.unwrap(), Vec::<String>::new());
}
crate::both_backends!(a_cases_documents_are_deleted_with_it);
