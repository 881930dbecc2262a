//! Field rules end to end: a character no backend can store, in any string
//! field of any event type, ends as a dead letter naming the field, on both
//! backends, while every other partition keeps flowing.

use std::time::Duration;

use overblik::events::{DecodeLimits, EventKind, decode};
use overblik::simulator::DemoStream;
use overblik::simulator::samples::{message, string_pointers};
use overblik::store::DeadLetterFilter;
use serde_json::json;
use uuid::Uuid;

use crate::support::{
    Backend, Expected, RunningConsumer, TestDb, TestProducer, assert_exact, broker, ingest_settings, wait_consumed,
};

/// NUL, the edges of C0, DEL, NEL and the end of C1 — and a lone surrogate.
const POISONS: [&str; 7] = ["\\u0000", "\\u0001", "\\u001f", "\\u007f", "\\u0085", "\\u009f", "\\ud800"];

/// Every string of every type's sample with each poison in it.
fn poisoned_messages() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for &kind in EventKind::ALL {
        let agg = Uuid::new_v4();
        let sample = message(kind, Uuid::new_v4(), agg, 1);
        for pointer in string_pointers(&sample) {
            for poison in POISONS {
                let mut v = sample.clone();
                *v.pointer_mut(&pointer).unwrap() = json!("before@@poison@@after");
                let text = serde_json::to_string(&v).unwrap().replace("@@poison@@", poison);
                out.push((agg.to_string().into_bytes(), text.into_bytes()));
            }
        }
    }
    out
}

async fn unstorable_characters_are_dead_lettered_and_nothing_else_stops(backend: Backend) {
    let broker = broker(2);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let consumer = RunningConsumer::start(ingest_settings(&bootstrap, "fields"), store.clone());
    let producer = TestProducer::new(&bootstrap);

    let demo: Vec<_> = DemoStream::new(81, 1500).with_malformed_ratio(0.01).collect();
    let poisoned = poisoned_messages();
    let mut expected = Expected::of(&demo);
    // The poisoned messages all go to one partition, interleaved with the
    // demo stream on every partition.
    let mut poison = poisoned.iter();
    for (i, m) in demo.iter().enumerate() {
        producer.send_demo(m);
        if i % 2 == 0 {
            for (key, payload) in poison.by_ref().take(3) {
                producer.send_to("overblik.ky", 0, Some(key), payload);
            }
        }
    }
    for (key, payload) in poison {
        producer.send_to("overblik.ky", 0, Some(key), payload);
    }
    for (key, payload) in &poisoned {
        let r = decode(payload, Some(key), &DecodeLimits::default()).expect_err("poisoned messages are refused");
        *expected.dead.entry(r.reason.as_str().to_string()).or_default() += 1;
        expected.total += 1;
    }
    let ends = producer.flush();
    wait_consumed(&store, &ends, Duration::from_secs(180)).await;
    assert!(consumer.is_running(), "no field stops the consumer");
    consumer.stop().await.unwrap();

    assert_exact(&store, &expected).await;
    let letters = store.dead_letters(&DeadLetterFilter { reason: None, after_id: 0, limit: 100_000 }).await.unwrap();
    assert_eq!(letters.len() as i64, expected.dead_lettered());
    assert!(letters.iter().all(|l| !l.detail.chars().any(char::is_control)), "details are storable");
}
crate::both_backends!(unstorable_characters_are_dead_lettered_and_nothing_else_stops);
