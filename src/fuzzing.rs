//! The properties every input must keep, whatever its bytes: the oracle of
//! the coverage-guided fuzzer (`fuzz/`), also run over its committed seed
//! corpus as a unit test.
//!
//! - decoding never panics and answers `Event` or `Rejection`;
//! - an accepted event holds nothing a store can't keep (no control
//!   character but tab and line breaks in prose), and encoding it and
//!   decoding again gives the same event;
//! - the projector plans it without panicking, with one outcome;
//! - a rejection's detail is scrubbed (scrubbing it again changes nothing),
//!   storable and bounded, and carries no run of ten digits.

use std::sync::Arc;

use crate::events::{CURRENT_VERSION, DecodeLimits, MAX_DETAIL_CHARS, decode, scrub_detail, sniff_aggregate_id};
use crate::projection::{Context, Decoded, Origin, Prior, plan};

/// Checks the properties on one input; the violation, if any.
pub fn check(data: &[u8]) -> Result<(), String> {
    let limits = DecodeLimits::default();
    // The key a well-behaved source would send, so the fuzzer gets past
    // the key check and into the body.
    let key = sniff_aggregate_id(data).map(|u| u.to_string().into_bytes());
    match decode(data, key.as_deref(), &limits) {
        Ok(event) => {
            let encoded = event.encode();
            let text: serde_json::Value =
                serde_json::from_slice(&encoded).map_err(|e| format!("an accepted event encodes to bad JSON: {e}"))?;
            if let Some(s) =
                strings(&text).into_iter().find(|s| s.chars().any(|c| c.is_control() && !"\t\n\r".contains(c)))
            {
                return Err(format!("an accepted event holds a control character: {s:?}"));
            }
            let again = decode(&encoded, key.as_deref(), &limits)
                .map_err(|r| format!("the accepted event, encoded again, is refused: {r}"))?;
            let mut want = event;
            want.type_version = CURRENT_VERSION;
            if again != want {
                return Err(format!("encode and decode disagree:\n{want:?}\n{again:?}"));
            }
            let origin = Origin { topic: Arc::from("fuzz"), partition: 0, offset: 0 };
            let item = Decoded::new(origin, Prior::New, key.map(Into::into), data.into(), &limits);
            let planned = plan(vec![item], Context::default(), &limits);
            if planned.outcomes.len() != 1 {
                return Err("the planner gave no single outcome".into());
            }
        }
        Err(r) => {
            let d = &r.detail;
            if d.chars().any(char::is_control) || d.chars().count() > MAX_DETAIL_CHARS + 1 {
                return Err(format!("a detail that can't be stored: {d:?}"));
            }
            if scrub_detail(d) != *d {
                return Err(format!("a detail that was not scrubbed: {d:?}"));
            }
            let mut run = 0;
            for c in d.chars() {
                run = if c.is_ascii_digit() { run + 1 } else { 0 };
                if run >= 10 {
                    return Err(format!("a detail with ten digits in a row: {d:?}"));
                }
            }
        }
    }
    Ok(())
}

fn strings(v: &serde_json::Value) -> Vec<&str> {
    match v {
        serde_json::Value::String(s) => vec![s],
        serde_json::Value::Array(a) => a.iter().flat_map(strings).collect(),
        serde_json::Value::Object(m) => m.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// The seed corpus: the demo stream (valid events of every story,
/// duplicates, versions out of order), one message of every malformed
/// class, and one message of every type with every field.
pub fn seeds() -> Vec<Vec<u8>> {
    use crate::events::EventKind;
    use crate::simulator::DemoStream;
    use crate::simulator::samples::message;
    let mut seeds: Vec<Vec<u8>> = DemoStream::new(1, 200).with_malformed_ratio(0.05).map(|m| m.payload).collect();
    seeds.extend(DemoStream::new(2, 19).with_malformed_ratio(1.0).map(|m| m.payload));
    for (i, &kind) in EventKind::ALL.iter().enumerate() {
        let id = |n: usize| uuid::Uuid::from_u128(n as u128);
        seeds.push(serde_json::to_vec(&message(kind, id(i + 1), id(i + 1000), 1)).expect("JSON"));
    }
    seeds.sort();
    seeds.dedup();
    seeds
}

#[cfg(test)]
mod tests {
    /// Writes the committed seed corpus:
    /// `cargo test --lib write_the_seed_corpus -- --ignored`.
    #[test]
    #[ignore = "writes fuzz/seeds/decode"]
    fn write_the_seed_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/decode");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in super::seeds().iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:04}")), s).unwrap();
        }
    }

    /// The simulator's seeds keep every property too.
    #[test]
    fn the_seeds_keep_every_property() {
        for s in super::seeds() {
            super::check(&s).unwrap();
        }
    }

    /// Every committed seed (and whatever the fuzzer found and was kept)
    /// keeps the properties.
    #[test]
    fn the_seed_corpus_keeps_every_property() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/decode");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("the committed seed corpus") {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            super::check(&data).unwrap();
            n += 1;
        }
        assert!(n >= 100, "{n} seeds");
    }
}
