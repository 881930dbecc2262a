//! Change notices: the outbox written in the batch's transaction, the
//! publisher's at-least-once delivery with stable ids (after a simulated
//! crash and under SIGKILL), and `Advis.Watch` with access checked as
//! notices are delivered.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use overblik::advis::publisher::{Publisher, PublisherSettings};
use overblik::advis::{Privileges, notice_id};
use overblik::catalogue::Catalogue;
use overblik::domain::{Cvr, DataArea, PartyId, Sensitivity};
use overblik::events::{DecodeLimits, Event};
use overblik::identity::{Claims, Employee, KleConstraint};
use overblik::ingest::commit_batch;
use overblik::proto as pb;
use overblik::proto::advis_client::AdvisClient;
use overblik::store::{NewSubscription, OffsetAdvance, Store, StoreError, Subscribed};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::build::{Citizen, consume, encoded, items};
use crate::serve::{authed, citizen_claims, employee, served};
use crate::support::{Backend, TestDb};

const AARHUS: &str = "55133018";
const X: &str = "0101801234";
const Y: &str = "0202802345";
const TOPIC: &str = "overblik.advis";

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

/// Reads every message of the notice topic: (key, payload).
fn consume_topic(bootstrap: &str, at_least: usize) -> Vec<(String, Vec<u8>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("advis-test-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                String::from_utf8(m.key().unwrap_or_default().to_vec()).unwrap(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(e)) => panic!("consuming notices: {e}"),
            None if out.len() >= at_least => break,
            None => {}
        }
    }
    out
}

async fn the_publisher_delivers_every_notice_again_after_a_crash(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let broker = overblik::broker::EmbeddedBroker::start(1, &[TOPIC.to_string()], 1).unwrap();
    let settings =
        PublisherSettings { brokers: broker.bootstrap_servers(), topic: TOPIC.into(), kafka_options: Vec::new() };
    let live = subscribe(&store, "a@aarhus", X, DataArea::Sager, later()).await;
    let lapsed = subscribe(&store, "b@aarhus", X, DataArea::Sager, Utc::now() - chrono::Duration::minutes(1)).await;

    let x = Citizen::new(X).at(AARHUS);
    let events: Vec<Event> = (0..3).map(|_| x.case_import(Uuid::new_v4(), "2025-01-05")).collect();
    let refs: Vec<&Event> = events.iter().collect();
    consume(&store, "overblik.ky", 0, &encoded(&refs), 100).await.unwrap();
    let committed: BTreeSet<Uuid> = events.iter().map(|e| notice_id(live.id, e.id)).collect();

    // Produced, then the process dies before marking them.
    let first = Publisher::new(&settings, store.clone(), Catalogue::built_in()).unwrap();
    let page = first.next_page(Utc::now()).await.unwrap();
    assert_eq!(page.len(), 6);
    let produced = first.produce(&page).await;
    assert_eq!(produced.delivered.len(), 3, "only the live subscription's notices are produced");
    drop(first);

    // Started again: the same notices again, with the same ids; the lapsed
    // subscription's are suppressed, never produced.
    let second = Publisher::new(&settings, store.clone(), Catalogue::built_in()).unwrap();
    let round = second.round(Utc::now()).await.unwrap();
    assert_eq!((round.published, round.suppressed, round.failed), (3, 3, 0));
    assert_eq!(second.round(Utc::now()).await.unwrap().pending, 0, "nothing left pending");

    let messages = consume_topic(&broker.bootstrap_servers(), 6);
    assert_eq!(messages.len(), 6, "each notice twice: before and after the crash");
    let mut ids: BTreeMap<Uuid, usize> = BTreeMap::new();
    for (key, payload) in &messages {
        assert_eq!(key, &live.id.to_string(), "keyed by the subscription");
        let text = String::from_utf8(payload.clone()).unwrap();
        assert!(!text.contains(X), "no personal number in a notice");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "dk.overblik.advis.changed");
        assert_eq!(v["source"], "urn:overblik:advis");
        assert_eq!(v["data"]["notice_id"], v["id"]);
        *ids.entry(Uuid::parse_str(v["id"].as_str().unwrap()).unwrap()).or_default() += 1;
    }
    assert_eq!(ids.keys().copied().collect::<BTreeSet<_>>(), committed, "every committed notice reached the topic");
    assert!(ids.values().all(|n| *n == 2), "the repeat carries the same id: {ids:?}");
    assert!(!ids.keys().any(|id| events.iter().any(|e| notice_id(lapsed.id, e.id) == *id)));

    // The outbox holds no personal number either.
    let holding = store.tables_containing(X).await.unwrap();
    assert!(!holding.iter().any(|t| t.starts_with("advis_outbox")), "{holding:?}");

    // Settled notices are pruned once old enough, a bounded step at a time.
    assert_eq!(store.prune_notices(Utc::now() - chrono::Duration::days(7), 100).await.unwrap(), 0);
    assert_eq!(store.prune_notices(Utc::now() + chrono::Duration::days(1), 4).await.unwrap(), 4);
    assert_eq!(store.prune_notices(Utc::now() + chrono::Duration::days(1), 100).await.unwrap(), 2);
}
crate::both_backends!(the_publisher_delivers_every_notice_again_after_a_crash);

fn subscribe_request(citizen: &str, area: &str, kle_prefix: &str) -> pb::SubscribeRequest {
    pb::SubscribeRequest { citizen: citizen.into(), data_area: area.into(), kle_prefix: kle_prefix.into() }
}

/// The next notice of a watch, or `None` if none comes within `within`.
async fn next_notice(stream: &mut tonic::Streaming<pb::Notice>, within: Duration) -> Option<pb::Notice> {
    match tokio::time::timeout(within, stream.message()).await {
        Ok(r) => r.unwrap(),
        Err(_) => None,
    }
}

async fn watch(
    client: &mut AdvisClient<tonic::transport::Channel>,
    token: &str,
    cursor: &str,
) -> tonic::Streaming<pb::Notice> {
    client.watch(authed(pb::WatchRequest { cursor: cursor.into() }, Some(token))).await.unwrap().into_inner()
}

async fn watch_resumes_from_its_cursor_and_checks_the_live_token(backend: Backend) {
    let s = served(backend).await;
    let mut client = AdvisClient::new(s.channel.clone());
    let token = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let sub =
        client.subscribe(authed(subscribe_request(X, "sager", "32.18"), Some(&token))).await.unwrap().into_inner();
    assert_eq!(sub.kle_prefix, "32.18");
    let listed = client
        .list_subscriptions(authed(pb::ListSubscriptionsRequest::default(), Some(&token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.items.len(), 1);

    let x = Citizen::new(X).at(AARHUS);
    let (c1, c2) = (x.case_import(Uuid::new_v4(), "2025-01-05"), x.case_import(Uuid::new_v4(), "2025-01-06"));
    consume(&s.store, "overblik.ky", 0, &encoded(&[&c1, &c2]), 100).await.unwrap();

    let mut stream = watch(&mut client, &token, "").await;
    let n1 = next_notice(&mut stream, Duration::from_secs(5)).await.expect("first notice");
    let n2 = next_notice(&mut stream, Duration::from_secs(5)).await.expect("second notice");
    assert_eq!(
        (n1.aggregate_id.as_str(), n2.aggregate_id.as_str()),
        (c1.aggregate_id.to_string().as_str(), c2.aggregate_id.to_string().as_str())
    );
    assert_eq!(n1.notice_id, notice_id(Uuid::parse_str(&sub.subscription_id).unwrap(), c1.id).to_string());
    assert_eq!(n1.data_area, "sager");
    assert_eq!(n1.kind, "changed");
    assert_eq!(n1.event_type, "dk.overblik.case.imported.v1");
    assert!(!format!("{n1:?}").contains(X), "no personal number in a notice");

    // A later change reaches the open watch.
    let c3 = x.case_import(Uuid::new_v4(), "2025-01-07");
    consume(&s.store, "overblik.ky", 0, &encoded(&[&c3]), 100).await.unwrap();
    let n3 = next_notice(&mut stream, Duration::from_secs(5)).await.expect("the live notice");
    assert_eq!(n3.aggregate_id, c3.aggregate_id.to_string());
    drop(stream);

    // Resumed from the first cursor: the rest, no gap, no repeat.
    let mut resumed = watch(&mut client, &token, &n1.cursor).await;
    let got: Vec<String> = [
        next_notice(&mut resumed, Duration::from_secs(5)).await,
        next_notice(&mut resumed, Duration::from_secs(5)).await,
    ]
    .into_iter()
    .map(|n| n.expect("a notice").notice_id)
    .collect();
    assert_eq!(got, [n2.notice_id.clone(), n3.notice_id.clone()]);
    assert!(next_notice(&mut resumed, Duration::from_millis(800)).await.is_none(), "nothing repeated");
    drop(resumed);

    // The same subscriber with a new token without the role: nothing.
    let without = s.key.mint(&employee(AARHUS, &["Se ydelser"])).unwrap();
    let mut stream = watch(&mut client, &without, "").await;
    assert!(next_notice(&mut stream, Duration::from_secs(1)).await.is_none(), "no role, no notice");
    drop(stream);
    // Nor below the row's sensitivity (the cases are confidential).
    let low = s.key.mint(&Claims { foelsomhed: Some(1), ..employee(AARHUS, &["Se sager"]) }).unwrap();
    let mut stream = watch(&mut client, &low, "").await;
    assert!(next_notice(&mut stream, Duration::from_secs(1)).await.is_none(), "out of class, no notice");
    drop(stream);

    // Another caseworker sees none of this subscriber's notices.
    let other = s.key.mint(&Claims { sub: "other@aarhus".into(), ..employee(AARHUS, &["Se sager"]) }).unwrap();
    let mut stream = watch(&mut client, &other, "").await;
    assert!(next_notice(&mut stream, Duration::from_secs(1)).await.is_none(), "not the subscriber");
    drop(stream);

    // Unsubscribed: the notices go with it.
    client
        .unsubscribe(authed(pb::UnsubscribeRequest { subscription_id: sub.subscription_id.clone() }, Some(&token)))
        .await
        .unwrap();
    let mut stream = watch(&mut client, &token, "").await;
    assert!(next_notice(&mut stream, Duration::from_secs(1)).await.is_none(), "unsubscribed");
}
crate::both_backends!(watch_resumes_from_its_cursor_and_checks_the_live_token);

async fn bad_requests_and_strangers_are_refused_and_recorded(backend: Backend) {
    let s = served(backend).await;
    let mut client = AdvisClient::new(s.channel.clone());
    let token = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let bad = |field: &'static str, status: tonic::Status, given: &str| {
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "BAD_REQUEST");
        assert!(status.message().contains(field), "{field}: {}", status.message());
        assert!(!status.message().contains(given), "{field}: the value is not echoed");
    };
    for (req, field, given) in [
        (subscribe_request(X, "hemmeligheder", ""), "data_area", "hemmeligheder"),
        (subscribe_request(X, "indkomst", ""), "data_area", "indkomst"),
        // §11a and §8 hide rows by rules a notice can't keep.
        (subscribe_request(X, "kontrolsager", ""), "data_area", "kontrolsager"),
        (subscribe_request(X, "udk_sager", ""), "data_area", "udk_sager"),
        (subscribe_request(X, "sager", "32.1x"), "kle_prefix", "32.1x"),
        (subscribe_request("01018O1234", "sager", ""), "citizen", "01018O1234"),
    ] {
        let status = client.subscribe(authed(req, Some(&token))).await.unwrap_err();
        bad(field, status, given);
    }
    let status = client
        .watch(authed(pb::WatchRequest { cursor: "abc-17".into() }, Some(&token)))
        .await
        .expect_err("a bad cursor is refused");
    bad("cursor", status, "abc-17");
    let status = client
        .unsubscribe(authed(pb::UnsubscribeRequest { subscription_id: "not-a-uuid".into() }, Some(&token)))
        .await
        .unwrap_err();
    bad("subscription_id", status, "not-a-uuid");

    // Without the area's role.
    let status = client.subscribe(authed(subscribe_request(X, "ydelser", ""), Some(&token))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Anonymous and citizen callers.
    let status = client.subscribe(authed(subscribe_request(X, "sager", ""), None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let citizen = s.key.mint(&citizen_claims(X)).unwrap();
    let status = client.subscribe(authed(subscribe_request(X, "sager", ""), Some(&citizen))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = client.watch(authed(pb::WatchRequest::default(), Some(&citizen))).await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    // An employee with no role for an area open to notices has nothing to watch.
    let roleless = s.key.mint(&employee(AARHUS, &["Se indkomstoplysninger"])).unwrap();
    let status = client.watch(authed(pb::WatchRequest::default(), Some(&roleless))).await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);

    let filter = overblik::store::AuditFilter { kinds: Some(vec!["advis"]), ..Default::default() };
    let records = s.store.audit_records(&filter, 0, 100).await.unwrap();
    assert_eq!(records.len(), 13, "every refused call recorded: {records:#?}");
    assert!(records.iter().all(|r| r.entry.decision == "deny"));
    let reasons: BTreeSet<&str> = records.iter().map(|r| r.entry.reason.as_str()).collect();
    assert_eq!(reasons, BTreeSet::from(["BAD_REQUEST", "NO_ROLE", "NO_TOKEN"]));
    for r in &records {
        let text = format!("{:?}", r.entry.search_criteria);
        for given in ["hemmeligheder", "kontrolsager", "udk_sager", "32.1x", "01018O1234", "abc-17", "not-a-uuid"] {
            assert!(!text.contains(given), "{text}");
        }
    }
}
crate::both_backends!(bad_requests_and_strangers_are_refused_and_recorded);

/// One subscriber holds at most a few watches, so no caller takes the
/// slots everyone shares; a slot is given back when its watch ends.
async fn a_subscriber_holds_a_bounded_number_of_watches(backend: Backend) {
    use overblik::api::MAX_WATCHES_PER_SUBSCRIBER;
    let s = served(backend).await;
    let mut client = AdvisClient::new(s.channel.clone());
    let token = s.key.mint(&employee(AARHUS, &["Se sager"])).unwrap();
    let mut open = Vec::new();
    for _ in 0..MAX_WATCHES_PER_SUBSCRIBER {
        open.push(watch(&mut client, &token, "").await);
    }
    let refused = client.watch(authed(pb::WatchRequest::default(), Some(&token))).await.expect_err("over the bound");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(refused.get_details_error_info().unwrap().reason, "WATCH_LIMIT");
    // Another caseworker is not held back by this one's watches.
    let other = s.key.mint(&Claims { sub: "other@aarhus".into(), ..employee(AARHUS, &["Se sager"]) }).unwrap();
    let _theirs = watch(&mut client, &other, "").await;
    // A watch that ends gives its slot back.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.watch(authed(pb::WatchRequest::default(), Some(&token))).await {
            Ok(_) => break,
            Err(e) if e.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("the slot did not come back: {e:?}"),
        }
    }
}
crate::both_backends!(a_subscriber_holds_a_bounded_number_of_watches);

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

/// Starts `overblik serve` as an ingest-only instance: the consumer and
/// the notice publisher.
fn spawn_serve(bootstrap: &str, url: &str, log: &std::path::Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(["serve", "--brokers", bootstrap, "--database-url", url, "--group", "advis-crash", "--no-grpc"])
        .arg("--allow-owner-role")
        .args(["--kafka-option", "session.timeout.ms=6000", "--kafka-option", "heartbeat.interval.ms=500"])
        .env("OVERBLIK_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting overblik serve")
}

/// `serve` killed with SIGKILL a random moment after its publisher starts
/// marking notices, up to five times, then run to the end: every committed
/// notice is on the topic.
async fn the_publisher_survives_kill_9(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut topics = crate::support::topics();
    topics.push(TOPIC.to_string());
    let broker = overblik::broker::EmbeddedBroker::start(1, &topics, 1).unwrap();
    let bootstrap = broker.bootstrap_servers();
    let live = subscribe(&store, "a@aarhus", X, DataArea::Sager, later()).await;
    let x = Citizen::new(X).at(AARHUS);
    let events: Vec<Event> = (0..4000).map(|_| x.case_import(Uuid::new_v4(), "2025-01-05")).collect();
    let refs: Vec<&Event> = events.iter().collect();
    consume(&store, "overblik.ky", 0, &encoded(&refs), 500).await.unwrap();
    let committed: BTreeSet<Uuid> = events.iter().map(|e| notice_id(live.id, e.id)).collect();
    let pending = || async { store.pending_notices(10_000).await.unwrap().len() };
    let log = std::env::temp_dir().join(format!("overblik-advis-crash-{}.log", Uuid::new_v4().simple()));

    let mut rng = overblik::simulator::Rng::new(11);
    let mut kills = 0;
    while kills < 5 && pending().await > 0 {
        let before = pending().await;
        let mut child = crate::support::KillOnDrop(spawn_serve(&bootstrap, &db.url, &log));
        // Kill it a random moment after it starts publishing.
        let deadline = Instant::now() + Duration::from_secs(45);
        while pending().await == before && Instant::now() < deadline {
            assert!(child.try_wait().unwrap().is_none(), "serve exited by itself");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(pending().await < before, "the publisher made no progress");
        tokio::time::sleep(Duration::from_millis(rng.range(0, 30) as u64)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
    }
    // A last run publishes the rest.
    let mut child = crate::support::KillOnDrop(spawn_serve(&bootstrap, &db.url, &log));
    crate::support::eventually(Duration::from_secs(60), "every notice published", || async { pending().await == 0 })
        .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(kills >= 1, "killed while publishing");

    let messages = tokio::task::spawn_blocking(move || consume_topic(&bootstrap, 4000)).await.unwrap();
    let ids: BTreeSet<Uuid> = messages
        .iter()
        .map(|(_, payload)| {
            let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
            Uuid::parse_str(v["id"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(ids, committed, "every committed notice reached the topic, after {kills} kills");
}
crate::both_backends!(the_publisher_survives_kill_9);
