//! Change notices: the outbox written in the batch's transaction.

use std::collections::BTreeMap;

use chrono::Utc;
use overblik::advis::{Privileges, notice_id};
use overblik::domain::{Cvr, DataArea, PartyId, Sensitivity};
use overblik::events::DecodeLimits;
use overblik::identity::{Employee, KleConstraint};
use overblik::ingest::commit_batch;
use overblik::store::{NewSubscription, OffsetAdvance, Store, StoreError, Subscribed};
use uuid::Uuid;

use crate::build::{Citizen, consume, encoded, items};
use crate::support::{Backend, TestDb};

const AARHUS: &str = "55133018";
const X: &str = "0101801234";
const Y: &str = "0202802345";

fn caseworker(user: &str, roles: &[&str]) -> Employee {
    Employee {
        user_id: user.into(),
        name: None,
        authority: Cvr::parse(AARHUS).unwrap(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        kle: KleConstraint::any(),
        sensitivity: Sensitivity::Sensitive,
        org_unit: None,
        own_cpr: None,
        it_system: None,
    }
}

/// Subscribes `user` directly in the store, with privileges until `until`.
async fn subscribe(
    store: &Store,
    user: &str,
    cpr: &str,
    area: DataArea,
    until: chrono::DateTime<Utc>,
) -> overblik::advis::Subscription {
    let new = NewSubscription {
        citizen: PartyId::parse(&format!("urn:oio:cpr-nr:{cpr}")).unwrap(),
        area,
        kle_prefix: None,
        privileges: Privileges::of(&caseworker(user, &["Se sager", "Se ydelser"]), until),
    };
    match store.subscribe(&new).await.unwrap() {
        Subscribed::Created(s) | Subscribed::Refreshed(s) => s,
        Subscribed::Exhausted => panic!("subscription limit"),
    }
}

fn later() -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::hours(1)
}

/// Every outbox notice not yet published, as (subscription, event) → notice id.
async fn outbox(store: &Store) -> BTreeMap<(Uuid, Uuid), Uuid> {
    store
        .pending_notices(10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|p| ((p.notice.subscription_id, p.notice.event_id), p.notice.id))
        .collect()
}

async fn a_committed_batch_notifies_each_matching_subscription_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let a = subscribe(&store, "a@aarhus", X, DataArea::Sager, later()).await;
    let b = subscribe(&store, "b@aarhus", X, DataArea::Sager, later()).await;
    let _other_citizen = subscribe(&store, "a@aarhus", Y, DataArea::Sager, later()).await;
    let _other_area = subscribe(&store, "a@aarhus", X, DataArea::Ydelser, later()).await;
    // Subscribing again is the same subscription.
    assert_eq!(subscribe(&store, "a@aarhus", X, DataArea::Sager, later()).await.id, a.id);

    let x = Citizen::new(X).at(AARHUS);
    let case = x.case_import(Uuid::new_v4(), "2025-01-05");
    consume(&store, "overblik.ky", 0, &encoded(&[&case]), 100).await.unwrap();
    let want: BTreeMap<(Uuid, Uuid), Uuid> =
        [a.id, b.id].into_iter().map(|s| ((s, case.id), notice_id(s, case.id))).collect();
    assert_eq!(outbox(&store).await, want, "one notice per matching subscription, with its stable id");

    // The same event delivered again is a duplicate: no second notice.
    consume(&store, "overblik.ky", 0, &encoded(&[&case]), 100).await.unwrap();
    assert_eq!(outbox(&store).await, want);

    // A batch that does not commit leaves no notice: fenced by its offset.
    let update = x.status(case.aggregate_id, 2, overblik::events::body::CaseStatus::Oplyst, "2025-02-01");
    let next = store.assigned_offsets(&[("overblik.ky".into(), 0)]).await.unwrap()[0];
    let batch = items(&encoded(&[&update]), "overblik.ky", 0, next);
    let stale = OffsetAdvance { topic: "overblik.ky".into(), partition: 0, expected: next - 1, next: next + 1 };
    let r = commit_batch(&store, batch, &[stale], &DecodeLimits::default()).await;
    assert!(matches!(r, Err(StoreError::Fenced { .. })), "{r:?}");
    assert_eq!(outbox(&store).await, want, "a rolled-back batch leaves no notice");

    // Committed, it notifies.
    consume(&store, "overblik.ky", 0, &encoded(&[&update]), 100).await.unwrap();
    assert_eq!(outbox(&store).await.len(), 4);
    // Pending notices are never pruned, however old.
    assert_eq!(store.prune_notices(Utc::now() + chrono::Duration::days(30), 100).await.unwrap(), 0);
}
crate::both_backends!(a_committed_batch_notifies_each_matching_subscription_once);



async fn subscriptions_are_bounded_per_subscriber_and_narrowed_by_kle(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let new = |cpr: String, prefix: Option<&str>| NewSubscription {
        citizen: PartyId::parse(&format!("urn:oio:cpr-nr:{cpr}")).unwrap(),
        area: DataArea::Sager,
        kle_prefix: prefix.map(|p| overblik::advis::KlePrefix::parse(p).unwrap()),
        privileges: Privileges::of(&caseworker("a@aarhus", &["Se sager"]), later()),
    };
    let narrow = match store.subscribe(&new(X.into(), Some("27"))).await.unwrap() {
        Subscribed::Created(s) => s,
        other => panic!("{other:?}"),
    };
    let wide = match store.subscribe(&new(X.into(), Some("32.18"))).await.unwrap() {
        Subscribed::Created(s) => s,
        other => panic!("{other:?}"),
    };
    for i in 2..overblik::advis::MAX_SUBSCRIPTIONS {
        let r = store.subscribe(&new(format!("01018{i:05}"), None)).await.unwrap();
        assert!(matches!(r, Subscribed::Created(_)), "{i}: {r:?}");
    }
    let over = store.subscribe(&new("0101899999".into(), None)).await.unwrap();
    assert!(matches!(over, Subscribed::Exhausted), "{over:?}");
    // At the bound, subscribing again still refreshes.
    let again = store.subscribe(&new(X.into(), Some("27"))).await.unwrap();
    assert!(matches!(&again, Subscribed::Refreshed(s) if s.id == narrow.id), "{again:?}");
    // Another subscriber has a bound of their own.
    let other = NewSubscription {
        privileges: Privileges::of(&caseworker("b@aarhus", &["Se sager"]), later()),
        ..new("0101899999".into(), None)
    };
    assert!(matches!(store.subscribe(&other).await.unwrap(), Subscribed::Created(_)));

    // The case is under 32.18.04: only the prefix that covers it notifies.
    let case = Citizen::new(X).at(AARHUS).case_import(Uuid::new_v4(), "2025-01-05");
    consume(&store, "overblik.ky", 0, &encoded(&[&case]), 100).await.unwrap();
    let notified: Vec<Uuid> = outbox(&store).await.keys().map(|(s, _)| *s).collect();
    assert_eq!(notified, [wide.id]);
}
crate::both_backends!(subscriptions_are_bounded_per_subscriber_and_narrowed_by_kle);
