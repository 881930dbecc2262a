//! The projection loop: decode + validate + project over a pre-generated
//! batch of demo events, with no I/O. Target: ≥ 1,000,000 events/s per core.
//!
//! `cargo bench --bench projection`
//!
//! Before criterion runs, the bench prints how many heap allocations (and
//! bytes) one message costs in each stage. Unlike the timings, which move
//! with whatever else the machine is doing, those counts are exact, so a
//! change to the hot path can be judged by them in one run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use overblik::events::{DecodeLimits, decode};
use overblik::projection::{Context, Decoded, Origin, Prior, plan};
use overblik::simulator::{DemoMessage, DemoStream};

const EVENTS: usize = 20_000;

/// Set (to anything) to print the allocation report and stop before
/// criterion runs: what an instruction count runs under valgrind.
const REPORT_ONLY: &str = "PROJECTION_BENCH_REPORT_ONLY";

/// The system allocator, counting every allocation (a `realloc` counts as
/// one) and the bytes asked for.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counters are only read, never trusted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn count(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

/// Allocations and bytes asked for while `f` ran (the bench is single
/// threaded until criterion starts).
#[derive(Clone, Copy, Debug)]
struct Allocated {
    allocations: u64,
    bytes: u64,
}

fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, Allocated) {
    let (a0, b0) = (ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    let out = f();
    let (a1, b1) = (ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    (out, Allocated { allocations: a1 - a0, bytes: b1 - b0 })
}

/// Prints a stage's allocations per message.
fn report(stage: &str, a: Allocated) {
    let n = EVENTS as f64;
    println!(
        "{stage:<28} {:>6.2} allocations/message, {:>7.0} bytes/message",
        a.allocations as f64 / n,
        a.bytes as f64 / n
    );
}

/// The messages as the consumer hands them to the planner: copied out of
/// the client and decoded.
#[inline(never)]
fn decoded(messages: &[DemoMessage], topics: &[std::sync::Arc<str>], limits: &DecodeLimits) -> Vec<Decoded> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let origin = Origin { topic: topics[i].clone(), partition: 0, offset: i as i64 };
            Decoded::new(origin, Prior::New, Some(m.key[..].into()), m.payload[..].into(), limits)
        })
        .collect()
}

/// Decodes every message, keeping nothing.
#[inline(never)]
fn decode_each(messages: &[DemoMessage], limits: &DecodeLimits) {
    for m in messages {
        drop(black_box(decode(black_box(&m.payload), Some(&m.key), limits)));
    }
}

/// Plans one batch, dropping the plan.
#[inline(never)]
fn plan_batch(items: Vec<Decoded>, limits: &DecodeLimits) {
    drop(black_box(plan(items, Context::default(), limits)));
}

/// Allocations per message of each stage, measured once on the whole batch.
/// The stages are functions of their own so that an instruction count
/// (`valgrind --tool=callgrind`, see BENCHMARKS.md) can name each.
fn report_allocations(messages: &[DemoMessage], topics: &[std::sync::Arc<str>], limits: &DecodeLimits) {
    let ((), decode_only) = allocated_by(|| decode_each(messages, limits));
    let (items, copy_and_decode) = allocated_by(|| decoded(messages, topics, limits));
    let ((), planning) = allocated_by(|| plan_batch(items, limits));
    report("decode", decode_only);
    report("copy + decode (Decoded::new)", copy_and_decode);
    report("plan", planning);
    report(
        "whole loop",
        Allocated {
            allocations: copy_and_decode.allocations + planning.allocations,
            bytes: copy_and_decode.bytes + planning.bytes,
        },
    );
}

fn projection_loop(c: &mut Criterion) {
    let messages: Vec<_> = DemoStream::new(1, EVENTS).with_malformed_ratio(0.01).collect();
    let limits = DecodeLimits::default();
    let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
    println!("{EVENTS} demo messages, {} bytes on average", bytes / EVENTS);
    let topics: Vec<std::sync::Arc<str>> = messages.iter().map(|m| std::sync::Arc::from(m.topic)).collect();
    report_allocations(&messages, &topics, &limits);
    if std::env::var_os(REPORT_ONLY).is_some() {
        std::process::exit(0);
    }

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
    group.bench_function("decode_validate_project", |b| {
        b.iter(|| black_box(plan(decoded(&messages, &topics, &limits), Context::default(), &limits)))
    });
    group.finish();
}

criterion_group!(benches, projection_loop);
criterion_main!(benches);
