//! Decode and validate: raw Kafka message bytes → a typed [`Event`], or a
//! [`Rejection`] with a machine-readable reason.
//!
//! Messages are CloudEvents 1.0 in structured JSON mode, with the index's
//! extension attributes (`authority`, `aggregateid`, `aggregateversion`).
//! This stage is pure: it sees bytes and returns values, so every rule is
//! unit-tested and benchmarked without a broker or a database. Rules that
//! need the aggregate's history (its kind, its subject, its version) belong to
//! `crate::projection`.

pub mod body;
mod reason;
mod scrub;
mod types;
mod upcast;

#[cfg(feature = "parser-comparison")]
pub mod parsers;

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::domain::{AggregateKind, Cvr, DataArea, Invalid, InvalidCode, JsonStr, PartyId, parse_instant};
pub use body::Validate;
pub use reason::{Reason, Rejection};
pub use scrub::{MAX_DETAIL_CHARS, has_personal_number, scrub_detail};
pub use types::{Body, CURRENT_VERSION, EventKind, Role, TYPE_PREFIX, split_type};

/// The default largest message accepted, 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Limits the decode stage enforces.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    pub max_message_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES }
    }
}

/// A decoded, validated event at the current version of its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: Uuid,
    /// The sending system, e.g. `urn:overblik:source:udk/pension`.
    pub source: Arc<str>,
    /// The type version as received, before upcasting (kept for the store).
    pub type_version: u32,
    /// When it happened in the source.
    pub time: DateTime<Utc>,
    /// The citizen the event is about.
    pub subject: PartyId,
    /// The responsible authority.
    pub authority: Cvr,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    pub body: Body,
}

/// What is kept of an event besides its bytes once its body has been
/// applied: the columns of the event store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventHeader {
    pub id: Uuid,
    pub kind: EventKind,
    pub type_version: u32,
    pub source: Arc<str>,
    pub time: DateTime<Utc>,
    pub subject: PartyId,
    pub authority: Cvr,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
}

impl EventHeader {
    pub fn aggregate_kind(&self) -> AggregateKind {
        self.kind.aggregate_kind()
    }

    /// The CloudEvents `type` as received.
    pub fn type_name(&self) -> String {
        self.kind.type_name(self.type_version)
    }
}

impl Event {
    /// Separates the body from the rest, so the body can move into state.
    pub fn split(self) -> (EventHeader, Body) {
        let header = EventHeader {
            id: self.id,
            kind: self.body.kind(),
            type_version: self.type_version,
            source: self.source,
            time: self.time,
            subject: self.subject,
            authority: self.authority,
            aggregate_id: self.aggregate_id,
            aggregate_version: self.aggregate_version,
        };
        (header, self.body)
    }

    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    pub fn aggregate_kind(&self) -> AggregateKind {
        self.kind().aggregate_kind()
    }

    pub fn data_area(&self) -> DataArea {
        self.kind().data_area()
    }

    /// The CloudEvents `type` as received.
    pub fn type_name(&self) -> String {
        self.kind().type_name(self.type_version)
    }

    /// Encodes the event as a CloudEvents structured-mode JSON message at the
    /// current version of its type (what a source system would publish).
    pub fn encode(&self) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            specversion: &'static str,
            id: &'a Uuid,
            source: &'a str,
            #[serde(rename = "type")]
            ty: String,
            time: String,
            subject: &'a PartyId,
            authority: &'a str,
            aggregateid: &'a Uuid,
            aggregateversion: i64,
            datacontenttype: &'static str,
            data: &'a Body,
        }
        serde_json::to_vec(&Out {
            specversion: "1.0",
            id: &self.id,
            source: &self.source,
            ty: self.kind().type_name(CURRENT_VERSION),
            time: self.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            subject: &self.subject,
            authority: self.authority.as_str(),
            aggregateid: &self.aggregate_id,
            aggregateversion: self.aggregate_version,
            datacontenttype: "application/json",
            data: &self.body,
        })
        .expect("events serialise")
    }
}

/// The envelope as parsed. `data` is parsed into its body in the same pass
/// when the type is known and current and the body is well-formed — the
/// common case; otherwise it is kept as raw JSON and parsed afterwards,
/// with the path tracking that names the failing field.
struct Envelope<'a> {
    specversion: Cow<'a, str>,
    id: Cow<'a, str>,
    source: Cow<'a, str>,
    ty: Cow<'a, str>,
    time: Cow<'a, str>,
    subject: Cow<'a, str>,
    authority: Cow<'a, str>,
    aggregateid: Cow<'a, str>,
    aggregateversion: i64,
    datacontenttype: Option<Cow<'a, str>>,
    data: Data<'a>,
}

enum Data<'a> {
    Raw(&'a RawValue),
    Parsed(Body),
}

/// The kind of a type string naming a known type at the current version.
fn current_kind(ty: &str) -> Option<EventKind> {
    match split_type(ty)? {
        (name, CURRENT_VERSION) => EventKind::from_name(name),
        _ => None,
    }
}

/// An envelope attribute's name. Read as an identifier, the name is only
/// looked at where it lies in the message, never copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attribute {
    SpecVersion,
    Id,
    Source,
    Type,
    Time,
    Subject,
    Authority,
    AggregateId,
    AggregateVersion,
    DataContentType,
    Data,
    /// Another CloudEvents extension attribute: ignored.
    Other,
}

impl Attribute {
    fn from_name(name: &str) -> Attribute {
        match name {
            "specversion" => Attribute::SpecVersion,
            "id" => Attribute::Id,
            "source" => Attribute::Source,
            "type" => Attribute::Type,
            "time" => Attribute::Time,
            "subject" => Attribute::Subject,
            "authority" => Attribute::Authority,
            "aggregateid" => Attribute::AggregateId,
            "aggregateversion" => Attribute::AggregateVersion,
            "datacontenttype" => Attribute::DataContentType,
            "data" => Attribute::Data,
            _ => Attribute::Other,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Attribute {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Attribute, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Attribute;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Attribute, E> {
                Ok(Attribute::from_name(name))
            }
        }
        d.deserialize_identifier(Name)
    }
}

/// Parses an envelope; `inline_body` says whether to try parsing `data`
/// into its body on the way.
struct EnvelopeSeed {
    inline_body: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for EnvelopeSeed {
    type Value = Envelope<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Envelope<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for EnvelopeSeed {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a CloudEvent object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        use serde::de::Error;
        let (mut specversion, mut id, mut source, mut ty, mut time) = (None, None, None, None, None);
        let (mut subject, mut authority, mut aggregateid, mut aggregateversion) = (None, None, None, None);
        let (mut datacontenttype, mut data) = (None, None);
        macro_rules! once {
            ($slot:ident, $name:literal, $value:expr) => {{
                if $slot.is_some() {
                    return Err(A::Error::duplicate_field($name));
                }
                $slot = Some($value);
            }};
        }
        while let Some(attribute) = map.next_key::<Attribute>()? {
            match attribute {
                Attribute::SpecVersion => once!(specversion, "specversion", map.next_value::<JsonStr<'de>>()?.0),
                Attribute::Id => once!(id, "id", map.next_value::<JsonStr<'de>>()?.0),
                Attribute::Source => once!(source, "source", map.next_value::<JsonStr<'de>>()?.0),
                Attribute::Type => once!(ty, "type", map.next_value::<JsonStr<'de>>()?.0),
                Attribute::Time => once!(time, "time", map.next_value::<JsonStr<'de>>()?.0),
                Attribute::Subject => once!(subject, "subject", map.next_value::<JsonStr<'de>>()?.0),
                Attribute::Authority => once!(authority, "authority", map.next_value::<JsonStr<'de>>()?.0),
                Attribute::AggregateId => once!(aggregateid, "aggregateid", map.next_value::<JsonStr<'de>>()?.0),
                Attribute::AggregateVersion => {
                    once!(aggregateversion, "aggregateversion", map.next_value::<i64>()?)
                }
                Attribute::DataContentType => {
                    once!(datacontenttype, "datacontenttype", map.next_value::<Option<JsonStr<'de>>>()?.map(|v| v.0))
                }
                Attribute::Data => {
                    let kind = if self.inline_body { ty.as_deref().and_then(current_kind) } else { None };
                    let value = match kind {
                        Some(kind) => Data::Parsed(map.next_value_seed(types::BodySeed(kind))?),
                        None => Data::Raw(map.next_value::<&'de RawValue>()?),
                    };
                    once!(data, "data", value)
                }
                // Other CloudEvents extension attributes are ignored.
                Attribute::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope {
            specversion: specversion.ok_or_else(|| A::Error::missing_field("specversion"))?,
            id: id.ok_or_else(|| A::Error::missing_field("id"))?,
            source: source.ok_or_else(|| A::Error::missing_field("source"))?,
            ty: ty.ok_or_else(|| A::Error::missing_field("type"))?,
            time: time.ok_or_else(|| A::Error::missing_field("time"))?,
            subject: subject.ok_or_else(|| A::Error::missing_field("subject"))?,
            authority: authority.ok_or_else(|| A::Error::missing_field("authority"))?,
            aggregateid: aggregateid.ok_or_else(|| A::Error::missing_field("aggregateid"))?,
            aggregateversion: aggregateversion.ok_or_else(|| A::Error::missing_field("aggregateversion"))?,
            datacontenttype: datacontenttype.flatten(),
            data: data.ok_or_else(|| A::Error::missing_field("data"))?,
        })
    }
}

/// Parses an envelope from checked UTF-8 text in one pass, or says it
/// could not (the caller then parses again to name what failed). The
/// service parses with [`SerdeJson`]; the `parsers` benchmark puts other
/// parsers behind the same seed to compare them on the same messages.
trait EnvelopeParser {
    /// `scratch` is for parsers that work in place on a mutable copy.
    fn envelope<'a>(&self, text: &'a str, scratch: &'a mut Vec<u8>, inline_body: bool) -> Option<Envelope<'a>>;
}

/// serde_json, borrowing from the text.
struct SerdeJson;

impl EnvelopeParser for SerdeJson {
    fn envelope<'a>(&self, text: &'a str, _: &'a mut Vec<u8>, inline_body: bool) -> Option<Envelope<'a>> {
        parse_envelope(text, inline_body).ok()
    }
}

fn parse_envelope(text: &str, inline_body: bool) -> Result<Envelope<'_>, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let env = EnvelopeSeed { inline_body }.deserialize(&mut de)?;
    de.end()?;
    Ok(env)
}

/// Parses an envelope again after a failure, tracking the path so that the
/// rejection names the attribute that failed.
fn parse_envelope_tracked(text: &str) -> Result<Envelope<'_>, Rejection> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let parsed = EnvelopeSeed { inline_body: false }
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .and_then(|env| de.end().map(|()| env));
    parsed.map_err(|e| {
        let path = track.path();
        if path.iter().next().is_some() { classify(&e, Some(path_text("", &path, &e))) } else { classify(&e, None) }
    })
}

/// Decodes one message. `key` is the Kafka message key, which must be the
/// aggregate id so that one aggregate's events share a partition and keep
/// their order.
pub fn decode(payload: &[u8], key: Option<&[u8]>, limits: &DecodeLimits) -> Result<Event, Rejection> {
    decode_with(payload, key, limits, true)
}

fn decode_with(
    payload: &[u8],
    key: Option<&[u8]>,
    limits: &DecodeLimits,
    inline_body: bool,
) -> Result<Event, Rejection> {
    decode_by(&SerdeJson, payload, key, limits, inline_body)
}

fn decode_by(
    parser: &impl EnvelopeParser,
    payload: &[u8],
    key: Option<&[u8]>,
    limits: &DecodeLimits,
    inline_body: bool,
) -> Result<Event, Rejection> {
    if payload.is_empty() {
        return Err(Rejection::new(Reason::EmptyPayload, "the message has no payload"));
    }
    if payload.len() > limits.max_message_bytes {
        return Err(Rejection::new(
            Reason::MessageTooLarge,
            format!("{} bytes is over the limit of {} bytes", payload.len(), limits.max_message_bytes),
        ));
    }
    // JSON is UTF-8: checked once here, so the parser needn't check every
    // string again.
    let text = std::str::from_utf8(payload).map_err(|e| match e.error_len() {
        // Cut off inside a multi-byte character: the message was truncated.
        None => Rejection::new(Reason::TruncatedJson, "the payload ends inside a UTF-8 character"),
        Some(_) => Rejection::new(Reason::MalformedJson, "the payload is not UTF-8 text"),
    })?;
    if first_non_space(payload) != Some(b'{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Rejection::new(Reason::NotAnObject, "a CloudEvent is a JSON object"),
            Err(e) => classify(&e, None),
        });
    }
    // One pass in the common case. If that fails, parse again keeping `data`
    // raw: an envelope error then reports as such, and a body error gets its
    // field's path from the body parse below.
    let mut scratch = Vec::new();
    let env = match parser.envelope(text, &mut scratch, inline_body) {
        Some(env) => env,
        None => parse_envelope_tracked(text)?,
    };

    if env.specversion != "1.0" {
        return Err(Rejection::new(Reason::BadSpecVersion, "specversion: must be 1.0"));
    }
    if let Some(ct) = &env.datacontenttype
        && ct != "application/json"
        && !ct.starts_with("application/json;")
    {
        return Err(Rejection::new(Reason::BadContentType, "datacontenttype: must be application/json"));
    }
    let id = parse_uuid("id", &env.id)?;
    if !good_source(&env.source) {
        return Err(Rejection::new(
            Reason::InvalidField,
            "source: a non-empty URI reference of at most 255 characters, without spaces or control characters",
        ));
    }
    // Both stores keep instants to the microsecond: finer digits are cut
    // here, so what is stored reads back as what was decoded.
    let time = parse_instant(&env.time).map_err(|e| Rejection::invalid("time", e))?.trunc_subsecs(6);
    let subject = PartyId::parse(&env.subject).map_err(|e| Rejection::invalid("subject", e))?;
    let authority = Cvr::parse(&env.authority).map_err(|e| Rejection::invalid("authority", e))?;
    let aggregate_id = parse_uuid("aggregateid", &env.aggregateid)?;
    if env.aggregateversion < 1 {
        return Err(Rejection::new(Reason::BadAggregateVersion, "aggregateversion: an integer from 1"));
    }
    match key.map(std::str::from_utf8) {
        Some(Ok(k)) if Uuid::parse_str(k).ok() == Some(aggregate_id) => {}
        _ => {
            return Err(Rejection::new(
                Reason::KeyMismatch,
                "the message key must be the aggregate id, so an aggregate's events keep their order",
            ));
        }
    }

    // The type as sent is never repeated: it is the source's text.
    let (name, type_version) = split_type(&env.ty)
        .ok_or_else(|| Rejection::new(Reason::UnknownType, "type: not of the form dk.overblik.<name>.v<n>"))?;
    let kind = EventKind::from_name(name)
        .ok_or_else(|| Rejection::new(Reason::UnknownType, "type: not an event type this build knows"))?;
    if !upcast::supported(kind, type_version) {
        return Err(Rejection::new(
            Reason::UnknownTypeVersion,
            format!("{} has no version {type_version} this build can read", kind.name()),
        ));
    }
    let body = match env.data {
        Data::Parsed(body) => {
            body.validate().map_err(|e| Rejection::invalid("data", e))?;
            body
        }
        Data::Raw(raw) => parse_raw_body(kind, type_version, raw)?,
    };

    Ok(Event {
        id,
        source: intern_source(&env.source),
        type_version,
        time,
        subject,
        authority,
        aggregate_id,
        aggregate_version: env.aggregateversion,
        body,
    })
}

/// Parses a body kept raw: an older version (upcast first), or one that
/// failed the inline parse (parsed again to name the failing field).
fn parse_raw_body(kind: EventKind, type_version: u32, raw: &RawValue) -> Result<Body, Rejection> {
    if first_non_space(raw.get().as_bytes()) != Some(b'{') {
        return Err(Rejection::new(Reason::WrongType, "data: must be a JSON object"));
    }
    if type_version == CURRENT_VERSION {
        Body::parse(kind, raw.get())
    } else {
        let old: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(raw.get()).map_err(|e| classify(&e, Some("data".into())))?;
        let current = upcast::upcast(kind, type_version, old)
            .map_err(|why| Rejection::new(Reason::InvalidField, format!("data: cannot upcast: {why}")))?;
        let json = serde_json::to_string(&current).expect("a JSON map serialises");
        Body::parse(kind, &json)
    }
}

/// Best-effort: the aggregate id of a message that may be malformed, so that
/// its dead letter can be deleted with the aggregate.
pub fn sniff_aggregate_id(payload: &[u8]) -> Option<Uuid> {
    #[derive(Deserialize)]
    struct Sniff<'a> {
        #[serde(borrow)]
        aggregateid: Option<Cow<'a, str>>,
    }
    let s: Sniff<'_> = serde_json::from_slice(payload).ok()?;
    Uuid::parse_str(&s.aggregateid?).ok()
}

/// Sources are few and repeat in every event: each thread keeps the ones it
/// has seen (up to a bound) and hands out shared copies.
fn intern_source(s: &str) -> Arc<str> {
    thread_local! {
        static SOURCES: std::cell::RefCell<Vec<Arc<str>>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SOURCES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(hit) = cache.iter().find(|c| c.as_ref() == s) {
            return hit.clone();
        }
        let new: Arc<str> = Arc::from(s);
        if cache.len() < 64 {
            cache.push(new.clone());
        }
        new
    })
}

/// Whether a `source` attribute is a non-empty URI reference of at most
/// 255 characters without spaces or control characters. ASCII (every
/// source seen so far) is checked byte by byte: there whitespace and
/// control characters are the bytes up to the space, and DEL.
fn good_source(source: &str) -> bool {
    if source.is_empty() || body::char_count(source) > body::SOURCE_MAX_CHARS {
        return false;
    }
    if source.is_ascii() {
        !source.bytes().any(|b| b <= b' ' || b == 0x7f)
    } else {
        !source.contains(|c: char| c.is_whitespace() || body::refused_char(c, body::TextKind::Line))
    }
}

fn parse_uuid(field: &str, s: &str) -> Result<Uuid, Rejection> {
    // Only the hyphenated form: the braced, URN and simple forms are refused
    // so that one id has one spelling across the sources.
    if s.len() != 36 {
        return Err(Rejection::invalid(field, Invalid::new(InvalidCode::Uuid, "a UUID in hyphenated form")));
    }
    Uuid::parse_str(s)
        .map_err(|_| Rejection::invalid(field, Invalid::new(InvalidCode::Uuid, "a UUID in hyphenated form")))
}

fn first_non_space(b: &[u8]) -> Option<u8> {
    b.iter().copied().find(|c| !c.is_ascii_whitespace())
}

/// Parses a body. The fast path is a plain `serde_json` parse; only on failure
/// is it parsed again tracking the path, so the detail can name the field.
fn parse_body<T: DeserializeOwned + Validate>(json: &str) -> Result<T, Rejection> {
    match serde_json::from_str::<T>(json) {
        Ok(body) => {
            body.validate().map_err(|e| Rejection::invalid("data", e))?;
            Ok(body)
        }
        Err(err) => {
            let mut de = serde_json::Deserializer::from_str(json);
            let path = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(e) => path_text("data", e.path(), &err),
                Ok(_) => "data".to_string(),
            };
            Err(classify(&err, Some(path)))
        }
    }
}

/// Maps a serde_json error to a reason: syntax and truncation from serde's
/// own categories; field rules from the code our domain types put first.
/// `tracked` says whether the failing field's path is known.
fn reason_of(err: &serde_json::Error, tracked: bool) -> Reason {
    use serde_json::error::Category;
    match err.classify() {
        Category::Eof => Reason::TruncatedJson,
        // A `\ud800` without its pair is JSON by the grammar (RFC 8259 §8.2)
        // but not a character: no backend can store it. It is the field's
        // fault, so it is reported as the field's.
        Category::Syntax if tracked && lone_surrogate(err) => Reason::InvalidField,
        Category::Syntax | Category::Io => Reason::MalformedJson,
        Category::Data => {
            let msg = err.to_string();
            let coded = msg.split_once(": ").and_then(|(code, _)| Reason::parse(code));
            match coded {
                Some(r) => r,
                None if msg.starts_with("missing field") => Reason::MissingField,
                None if msg.starts_with("unknown field") => Reason::UnknownField,
                None if msg.starts_with("invalid type") => Reason::WrongType,
                None => Reason::InvalidField,
            }
        }
    }
}

/// The rejection for a serde_json error at `path` (rendered by
/// [`path_text`]), if known.
fn classify(err: &serde_json::Error, path: Option<String>) -> Rejection {
    let reason = reason_of(err, path.is_some());
    let msg = if reason == Reason::InvalidField && lone_surrogate(err) {
        "a lone UTF-16 surrogate is not a character".to_string()
    } else {
        err.to_string()
    };
    let detail = match path {
        Some(p) => format!("{p}: {msg}"),
        None => msg,
    };
    Rejection::new(reason, detail)
}

fn lone_surrogate(err: &serde_json::Error) -> bool {
    let msg = err.to_string();
    msg.contains("surrogate") || msg.contains("hex escape") || msg.contains("unicode code point")
}

/// A JSON path as `data.benefits[0].name`, under `prefix`. Names come from
/// our own types; the name of an unknown field is the source's and is left
/// out (the path then names the object that had it).
fn path_text(prefix: &str, path: &serde_path_to_error::Path, err: &serde_json::Error) -> String {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let unknown_field = reason_of(err, true) == Reason::UnknownField;
    let keep = if unknown_field { segments.len().saturating_sub(1) } else { segments.len() };
    let mut out = prefix.to_string();
    for s in &segments[..keep] {
        match s {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                let ours =
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                out.push_str(if ours { key } else { "?" });
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    if out.is_empty() { "(message)".into() } else { out }
}

#[cfg(test)]
mod tests;
