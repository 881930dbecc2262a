//! The Kafka path end to end, through the in-process broker: exact results
//! under duplicates, rebalances, gaps, malformed input and broker faults.

use std::time::Duration;

use overblik::events::body::CaseStatus;
use overblik::events::{DecodeLimits, Reason};
use overblik::ingest::replay::{Replacement, replay};
use overblik::projection::Outcome;
use overblik::simulator::{DemoStream, Expect};
use overblik::store::DeadLetterFilter;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use uuid::Uuid;

use crate::build::{Citizen, encoded};
use crate::support::{
    Backend, Expected, RunningConsumer, TestDb, TestProducer, assert_exact, broker, eventually, ingest_settings,
    wait_consumed,
};

async fn a_demo_stream_ends_exactly_as_expected(backend: Backend) {
    let broker = broker(3);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(41, 3000).with_malformed_ratio(0.03).collect();
    let consumer = RunningConsumer::start(ingest_settings(&bootstrap, "exact"), store.clone());
    let producer = TestProducer::new(&bootstrap);
    for m in &messages {
        producer.send_demo(m);
    }
    let ends = producer.flush();
    wait_consumed(&store, &ends, Duration::from_secs(120)).await;
    consumer.stop().await.unwrap();
    assert_exact(&store, &Expected::of(&messages)).await;
}
crate::both_backends!(a_demo_stream_ends_exactly_as_expected);

async fn redelivery_after_rebalances_applies_nothing_twice(backend: Backend) {
    let broker = broker(4);
    rebalances_apply_nothing_twice_on(&broker.bootstrap_servers(), backend).await;
}
crate::both_backends!(redelivery_after_rebalances_applies_nothing_twice);

/// The same against any broker (tansu too, see `tansu.rs`).
pub async fn rebalances_apply_nothing_twice_on(bootstrap: &str, backend: Backend) {
    let bootstrap = bootstrap.to_string();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(42, 4000).with_malformed_ratio(0.01).collect();
    let producer = TestProducer::new(&bootstrap);
    let (first, rest) = messages.split_at(1500);
    for m in first {
        producer.send_demo(m);
    }
    producer.flush();
    let mut settings = ingest_settings(&bootstrap, "rebalance");
    settings.batch_max = 50;
    let a = RunningConsumer::start(settings.clone(), store.clone());
    eventually(Duration::from_secs(60), "the first consumer to make progress", || async {
        store.status().await.unwrap().consumed > 200
    })
    .await;
    // A second member joins: the partitions are split between them, and
    // whatever either had polled but not committed is consumed again.
    let b = RunningConsumer::start(settings, store.clone());
    for m in rest {
        producer.send_demo(m);
    }
    let ends = producer.flush();
    eventually(Duration::from_secs(60), "more progress with two members", || async {
        store.status().await.unwrap().consumed > 2500
    })
    .await;
    // The first leaves: everything moves to the second.
    a.stop().await.unwrap();
    wait_consumed(&store, &ends, Duration::from_secs(120)).await;
    b.stop().await.unwrap();
    assert_exact(&store, &Expected::of(&messages)).await;
}

async fn a_gap_holds_only_its_aggregate_until_it_closes(backend: Backend) {
    let broker = broker(2);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let consumer = RunningConsumer::start(ingest_settings(&bootstrap, "gap"), store.clone());
    let producer = TestProducer::new(&bootstrap);
    let c = Citizen::new("1111701234");
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let send = |events: &[&overblik::events::Event]| {
        for (k, p) in encoded(events) {
            producer.send("overblik.ky", Some(&k), &p);
        }
    };
    // a's v2 and v3 arrive before its v1; b arrives whole.
    send(&[
        &c.status(a, 2, CaseStatus::Oplyst, "2024-01-10"),
        &c.status(a, 3, CaseStatus::Afgjort, "2024-01-20"),
        &c.case_import(b, "2024-02-01"),
        &c.status(b, 2, CaseStatus::Oplyst, "2024-02-02"),
    ]);
    let ends = producer.flush();
    wait_consumed(&store, &ends, Duration::from_secs(60)).await;
    let s = store.status().await.unwrap();
    assert_eq!((s.applied, s.parked), (2, 2));
    let stored = crate::support::stored_aggregates(&store).await;
    assert_eq!(stored.get(&b).map(|x| x.0), Some(2), "b flows past a's gap");
    assert!(!stored.contains_key(&a), "a waits for its v1");

    send(&[&c.case_import(a, "2024-01-02")]);
    let ends = producer.flush();
    wait_consumed(&store, &ends, Duration::from_secs(60)).await;
    consumer.stop().await.unwrap();
    let s = store.status().await.unwrap();
    assert_eq!((s.applied, s.parked, s.parked_rows), (5, 0, 0));
    assert_eq!(crate::support::stored_aggregates(&store).await[&a].0, 3);
}
crate::both_backends!(a_gap_holds_only_its_aggregate_until_it_closes);

async fn malformed_input_is_dead_lettered_and_replayed_after_a_fix(backend: Backend) {
    let broker = broker(1);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut settings = ingest_settings(&bootstrap, "malformed");
    settings.limits = DecodeLimits { max_message_bytes: 4096 };
    let consumer = RunningConsumer::start(settings, store.clone());
    let producer = TestProducer::new(&bootstrap);

    // One message of every malformed class the simulator knows.
    let malformed: Vec<_> = DemoStream::new(43, 19).with_malformed_ratio(1.0).collect();
    for m in &malformed {
        producer.send_demo(m);
    }
    // A valid payment with many lines: over the consumer's 4 KiB limit.
    let c = Citizen::new("0202024567");
    let big = {
        let mut e = c.payment(Uuid::new_v4(), Uuid::new_v4(), "2024-01-01", "2024-01-31");
        if let overblik::events::Body::PaymentEffectuated(p) = &mut e.body {
            let line = p.lines[0].clone();
            p.lines = (0..40)
                .map(|_| overblik::events::body::PaymentLine { gross: overblik::domain::Oere(31_250), ..line.clone() })
                .collect();
        }
        e
    };
    let big_bytes = encoded(&[&big]).remove(0);
    assert!(big_bytes.1.len() > 4096);
    producer.send("overblik.ky", Some(&big_bytes.0), &big_bytes.1);
    // After all that, a plain valid event still flows.
    let after = c.case_import(Uuid::new_v4(), "2024-03-01");
    let (k, p) = encoded(&[&after]).remove(0);
    producer.send("overblik.ky", Some(&k), &p);
    let ends = producer.flush();
    wait_consumed(&store, &ends, Duration::from_secs(60)).await;
    assert!(consumer.is_running(), "no input stops the consumer");
    consumer.stop().await.unwrap();

    let letters = store.dead_letters(&DeadLetterFilter { reason: None, after_id: 0, limit: 100 }).await.unwrap();
    let mut want: Vec<String> = malformed
        .iter()
        .map(|m| match &m.expect {
            Expect::Malformed(r) => r.as_str().to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    want.push(Reason::MessageTooLarge.as_str().to_string());
    let mut got: Vec<String> = letters.iter().map(|l| l.reason.clone()).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "every class ends as a dead letter with its reason");
    let s = store.status().await.unwrap();
    assert_eq!((s.applied, s.dead_lettered, s.consumed), (1, 20, 21));
    // Raw bytes are kept exactly.
    let too_large = letters.iter().find(|l| l.reason == "MESSAGE_TOO_LARGE").unwrap();
    let kept = store.dead_letter_messages(&[too_large.id]).await.unwrap();
    assert_eq!(kept[0].payload, big_bytes.1);

    // The fix for the size: a larger limit. The replay applies the payment.
    let out = replay(&store, &[too_large.id], &Replacement::default(), &DecodeLimits::default()).await.unwrap();
    assert_eq!(out, vec![(too_large.id, Outcome::Applied)]);
    // The fix for a bad KLE: a corrected payload from the source.
    let bad_kle = letters.iter().find(|l| l.reason == "BAD_KLE").unwrap();
    let original = store.dead_letter_messages(&[bad_kle.id]).await.unwrap().remove(0);
    let fixed = String::from_utf8(original.payload).unwrap().replace("\"32.18\"", "\"32.18.04\"").into_bytes();
    let out = replay(&store, &[bad_kle.id], &Replacement { payload: Some(fixed), key: None }, &DecodeLimits::default())
        .await
        .unwrap();
    assert_eq!(out, vec![(bad_kle.id, Outcome::Applied)]);
    // Replayed without a fix, the rest fail again and stay, counted.
    let rest: Vec<i64> = letters.iter().filter(|l| l.id != too_large.id && l.id != bad_kle.id).map(|l| l.id).collect();
    let out = replay(&store, &rest, &Replacement::default(), &DecodeLimits::default()).await.unwrap();
    assert!(out.iter().all(|(_, o)| matches!(o, Outcome::DeadLettered(_))));
    let after_replay = store.dead_letters(&DeadLetterFilter { reason: None, after_id: 0, limit: 100 }).await.unwrap();
    assert_eq!(after_replay.len(), 18);
    assert!(after_replay.iter().all(|l| l.replay_attempts == 1));
    let s = store.status().await.unwrap();
    assert_eq!(
        (s.applied, s.dead_lettered, s.consumed),
        (3, 18, 21),
        "the replayed ones moved from dead-lettered to applied"
    );
}
crate::both_backends!(malformed_input_is_dead_lettered_and_replayed_after_a_fix);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_faults_delay_but_lose_nothing() {
    let broker = broker(2);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(44, 2000).collect();
    let consumer = RunningConsumer::start(ingest_settings(&bootstrap, "faults"), store.clone());
    let producer = TestProducer::new(&bootstrap);
    let (first, rest) = messages.split_at(800);
    for m in first {
        producer.send_demo(m);
    }
    producer.flush();
    eventually(Duration::from_secs(60), "progress", || async { store.status().await.unwrap().consumed > 100 }).await;

    // Slow round trips, failing fetches, then the broker gone for a while.
    let cluster = broker.cluster();
    cluster.broker_round_trip_time(1, Duration::from_millis(150)).unwrap();
    cluster.request_errors(RDKafkaApiKey::Fetch, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 20]);
    for m in &rest[..600] {
        producer.send_demo(m);
    }
    cluster.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.broker_up(1).unwrap();
    cluster.broker_round_trip_time(1, Duration::ZERO).unwrap();
    for m in &rest[600..] {
        producer.send_demo(m);
    }
    let ends = producer.flush();
    wait_consumed(&store, &ends, Duration::from_secs(120)).await;
    consumer.stop().await.unwrap();
    assert_exact(&store, &Expected::of(&messages)).await;
}

/// Cooperative rebalancing moves only some partitions: the ones a member
/// keeps go on fetching from where they were, so messages polled from them
/// before the rebalance must not be dropped (nothing would fetch them
/// again). Members join and leave while ingest runs; the result is exact.
async fn cooperative_rebalances_lose_nothing(backend: Backend) {
    let broker = broker(6);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(45, 6000).with_malformed_ratio(0.01).collect();
    let producer = TestProducer::new(&bootstrap);
    let mut settings = ingest_settings(&bootstrap, "cooperative");
    // Long batches, so rebalances land while one is being collected.
    settings.batch_max = 2000;
    settings.batch_linger = Duration::from_millis(400);
    settings.kafka_options.push(("partition.assignment.strategy".into(), "cooperative-sticky".into()));
    // About 20 s of traffic, while members join and leave every 4 s.
    let publisher = {
        let messages = messages.clone();
        std::thread::spawn(move || {
            for (i, m) in messages.iter().enumerate() {
                producer.send_demo(m);
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(160));
                }
            }
            producer.flush()
        })
    };
    let a = RunningConsumer::start(settings.clone(), store.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b = RunningConsumer::start(settings.clone(), store.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let c = RunningConsumer::start(settings.clone(), store.clone());
    tokio::time::sleep(Duration::from_secs(4)).await;
    b.stop().await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = RunningConsumer::start(settings.clone(), store.clone());
    let ends = tokio::task::spawn_blocking(move || publisher.join().unwrap()).await.unwrap();
    wait_consumed(&store, &ends, Duration::from_secs(120)).await;
    a.stop().await.unwrap();
    c.stop().await.unwrap();
    d.stop().await.unwrap();
    assert_exact(&store, &Expected::of(&messages)).await;
}
crate::both_backends!(cooperative_rebalances_lose_nothing);
