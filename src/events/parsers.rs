//! Other JSON parsers behind the decoder's envelope seed, for the `parsers`
//! benchmark only (feature `parser-comparison`): the same messages, the same
//! typed bodies and the same rules, only the parser differs. The service
//! never links them; [`decode`](super::decode) parses with serde_json.

use serde::de::DeserializeSeed;

use super::{DecodeLimits, Envelope, EnvelopeParser, EnvelopeSeed, Event, Rejection, SerdeJson, decode_by};

/// The parser a benchmark decodes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parser {
    SerdeJson,
    SonicRs,
    SimdJson,
}

impl Parser {
    pub const ALL: [Parser; 3] = [Parser::SerdeJson, Parser::SonicRs, Parser::SimdJson];

    pub fn name(self) -> &'static str {
        match self {
            Parser::SerdeJson => "serde_json",
            Parser::SonicRs => "sonic_rs",
            Parser::SimdJson => "simd_json",
        }
    }
}

/// [`decode`](super::decode), with the envelope and body parsed by `parser`.
/// A message any parser fails on in the one pass is parsed again by
/// serde_json to name the failure, as in the service.
pub fn decode_with(
    parser: Parser,
    payload: &[u8],
    key: Option<&[u8]>,
    limits: &DecodeLimits,
) -> Result<Event, Rejection> {
    match parser {
        Parser::SerdeJson => decode_by(&SerdeJson, payload, key, limits, true),
        Parser::SonicRs => decode_by(&SonicRs, payload, key, limits, true),
        Parser::SimdJson => decode_by(&SimdJson, payload, key, limits, true),
    }
}

struct SonicRs;

impl EnvelopeParser for SonicRs {
    fn envelope<'a>(&self, text: &'a str, _: &'a mut Vec<u8>, inline_body: bool) -> Option<Envelope<'a>> {
        let mut de = sonic_rs::Deserializer::from_str(text);
        let env = EnvelopeSeed { inline_body }.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(env)
    }
}

/// simd-json parses in place, so it works on a copy of the message.
struct SimdJson;

impl EnvelopeParser for SimdJson {
    fn envelope<'a>(&self, text: &'a str, scratch: &'a mut Vec<u8>, inline_body: bool) -> Option<Envelope<'a>> {
        scratch.clear();
        scratch.extend_from_slice(text.as_bytes());
        let mut de = simd_json::Deserializer::from_slice(scratch).ok()?;
        EnvelopeSeed { inline_body }.deserialize(&mut de).ok()
    }
}
