//! The projection loop: decode + validate + project over a pre-generated
//! batch of demo events, with no I/O. Target: ≥ 1,000,000 events/s per core.
//!
//! `cargo bench --bench projection`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use overblik::events::{DecodeLimits, decode};
use overblik::projection::{Context, Decoded, Origin, Prior, plan};
use overblik::simulator::DemoStream;

const EVENTS: usize = 20_000;

fn projection_loop(c: &mut Criterion) {
    let messages: Vec<_> = DemoStream::new(1, EVENTS).with_malformed_ratio(0.01).collect();
    let limits = DecodeLimits::default();
    let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
    println!("{EVENTS} demo messages, {} bytes on average", bytes / EVENTS);

    let mut group = c.benchmark_group("projection_loop");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(20);

    // The floor: serde_json only checking the same bytes are JSON, building
    // nothing. No decoder that reads every byte with it can beat this.
    group.bench_function("json_syntax_only", |b| {
        b.iter(|| {
            for m in &messages {
                let _ = black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&m.payload)));
            }
        })
    });

    group.bench_function("decode_validate", |b| {
        b.iter(|| {
            for m in &messages {
                let _ = black_box(decode(black_box(&m.payload), Some(&m.key), &limits));
            }
        })
    });

    // What the consumer does per batch between poll and store: copy each
    // message out of the client, decode and validate it, then plan the batch
    // (version rules, state transitions, disposition counts).
    let topics: Vec<std::sync::Arc<str>> = messages.iter().map(|m| std::sync::Arc::from(m.topic)).collect();
    group.bench_function("decode_validate_project", |b| {
        b.iter(|| {
            let items: Vec<Decoded> = messages
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let origin = Origin { topic: topics[i].clone(), partition: 0, offset: i as i64 };
                    Decoded::new(origin, Prior::New, Some(m.key[..].into()), m.payload[..].into(), &limits)
                })
                .collect();
            black_box(plan(items, Context::default(), &limits))
        })
    });
    group.finish();
}

criterion_group!(benches, projection_loop);
criterion_main!(benches);
