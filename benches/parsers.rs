//! The decoder with three JSON parsers on the same messages, in one run:
//! serde_json (what the service uses), sonic-rs and simd-json, each behind
//! the same envelope seed, typed bodies and rules. Before timing, every
//! message must decode to the same event or the same rejection with each.
//!
//! `RUSTFLAGS="-C target-cpu=native" cargo bench --features parser-comparison --bench parsers`
//! (the SIMD parsers choose their instructions when compiled).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use overblik::events::DecodeLimits;
use overblik::events::parsers::{Parser, decode_with};
use overblik::simulator::DemoStream;

const EVENTS: usize = 20_000;

fn parsers(c: &mut Criterion) {
    let messages: Vec<_> = DemoStream::new(1, EVENTS).with_malformed_ratio(0.01).collect();
    let limits = DecodeLimits::default();
    let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
    let mut rejected = 0;
    for m in &messages {
        let expected = decode_with(Parser::SerdeJson, &m.payload, Some(&m.key), &limits);
        rejected += usize::from(expected.is_err());
        for parser in [Parser::SonicRs, Parser::SimdJson] {
            let got = decode_with(parser, &m.payload, Some(&m.key), &limits);
            assert_eq!(got, expected, "{} decodes a message differently from serde_json", parser.name());
        }
    }
    println!("{EVENTS} demo messages, {} bytes on average, {rejected} rejected; every parser agrees", bytes / EVENTS);

    let mut group = c.benchmark_group("decode_validate");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(20);
    for parser in Parser::ALL {
        group.bench_function(parser.name(), |b| {
            b.iter(|| {
                for m in &messages {
                    let _ = black_box(decode_with(parser, black_box(&m.payload), Some(&m.key), &limits));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parsers);
criterion_main!(benches);
