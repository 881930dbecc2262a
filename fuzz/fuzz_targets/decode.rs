//! Any bytes as a Kafka message: decode, and if accepted, encode, decode
//! again and plan; the properties are `overblik::fuzzing::check`'s.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(violation) = overblik::fuzzing::check(data) {
        panic!("{violation}");
    }
});
