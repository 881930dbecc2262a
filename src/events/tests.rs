//! One test per rejection class: each malformed input ends with its reason.

use serde_json::{Value, json};

use super::*;

const AGG: &str = "6f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

fn case_imported() -> Value {
    json!({
        "specversion": "1.0",
        "id": "0e8f1d7a-3c2b-4a59-9e61-7d5c4b3a2f10",
        "source": "urn:overblik:source:ky",
        "type": "dk.overblik.case.imported.v1",
        "time": "2024-05-01T08:30:00+02:00",
        "subject": "urn:oio:cpr-nr:0101801234",
        "authority": "29189420",
        "aggregateid": AGG,
        "aggregateversion": 1,
        "datacontenttype": "application/json",
        "data": {
            "case_number": "2024-000123",
            "title": "Kontanthjælp",
            "kle": "32.18.04",
            "action_facet": "G01",
            "sensitivity": 2,
            "parties": [{"role": "primary", "id": "urn:oio:cpr-nr:0101801234"}],
            "org_unit": "Ydelsesservice",
            "caseworker": "Mette Hansen",
            "source_system": "KY",
            "status_history": [{"status": "Opstaaet", "from": "2024-04-02"}]
        }
    })
}

fn payment(version: u32) -> Value {
    let mut data = json!({
        "payment_number": "U-2024-05-77",
        "grant_id": "1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0",
        "period": {"start": "2024-05-01", "end": "2024-05-31"},
        "disposal_date": "2024-05-31",
        "gross": "12000.00",
        "after_tax": "8400.50",
        "lines": [
            {"period": {"start": "2024-05-01", "end": "2024-05-31"}, "gross": "11000.00", "kle": "32.18.04", "granted_benefit_id": "B1"},
            {"period": {"start": "2024-05-01", "end": "2024-05-31"}, "gross": "1000.00", "kle": "32.18.04", "granted_benefit_id": "B2"}
        ]
    });
    let key = if version == 0 { "net" } else { "sent" };
    data[key] = json!("8400.50");
    let mut e = case_imported();
    e["type"] = json!(format!("dk.overblik.payment.effectuated.v{version}"));
    e["data"] = data;
    e
}

fn decode_value(v: &Value) -> Result<Event, Rejection> {
    decode(&serde_json::to_vec(v).unwrap(), Some(AGG.as_bytes()), &DecodeLimits::default())
}

fn reason_of(v: &Value) -> Reason {
    decode_value(v).expect_err("should be rejected").reason
}

fn with(mut v: Value, pointer: &str, value: Value) -> Value {
    *v.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer}")) = value;
    v
}

fn without(mut v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(key).unwrap();
    v
}

#[test]
fn a_valid_import_decodes_to_typed_values() {
    let e = decode_value(&case_imported()).unwrap();
    assert_eq!(e.kind(), EventKind::CaseImported);
    assert_eq!(e.aggregate_version, 1);
    assert_eq!(e.authority.as_str(), "29189420");
    assert_eq!(e.time.to_rfc3339(), "2024-05-01T06:30:00+00:00", "instants are normalised to UTC");
    assert_eq!(e.data_area(), DataArea::Sager);
}

#[test]
fn encode_and_decode_round_trip() {
    let e = decode_value(&case_imported()).unwrap();
    let again = decode(&e.encode(), Some(AGG.as_bytes()), &DecodeLimits::default()).unwrap();
    assert_eq!(e, again);
}

#[test]
fn bytes_that_are_not_an_event() {
    let limits = DecodeLimits::default();
    let key = Some(AGG.as_bytes());
    assert_eq!(decode(b"", key, &limits).unwrap_err().reason, Reason::EmptyPayload);
    let full = serde_json::to_vec(&case_imported()).unwrap();
    assert_eq!(decode(&full[..full.len() / 2], key, &limits).unwrap_err().reason, Reason::TruncatedJson);
    assert_eq!(decode(&[0xff, 0xfe, 0x00, 0x12, 0x9c], key, &limits).unwrap_err().reason, Reason::MalformedJson);
    assert_eq!(decode(b"{\"specversion\" \"1.0\"}", key, &limits).unwrap_err().reason, Reason::MalformedJson);
    assert_eq!(decode(b"[1,2,3]", key, &limits).unwrap_err().reason, Reason::NotAnObject);
    assert_eq!(decode(b"\"hello\"", key, &limits).unwrap_err().reason, Reason::NotAnObject);
    let small = DecodeLimits { max_message_bytes: 100 };
    assert_eq!(decode(&full, key, &small).unwrap_err().reason, Reason::MessageTooLarge);
}

#[test]
fn envelope_rules() {
    let e = case_imported;
    assert_eq!(reason_of(&without(e(), "/id")), Reason::MissingField);
    assert_eq!(reason_of(&with(e(), "/aggregateversion", json!("1"))), Reason::WrongType);
    assert_eq!(reason_of(&with(e(), "/aggregateversion", json!(1.5))), Reason::WrongType);
    assert_eq!(reason_of(&with(e(), "/aggregateversion", json!(0))), Reason::BadAggregateVersion);
    assert_eq!(reason_of(&with(e(), "/specversion", json!("0.3"))), Reason::BadSpecVersion);
    assert_eq!(reason_of(&with(e(), "/datacontenttype", json!("text/xml"))), Reason::BadContentType);
    assert_eq!(reason_of(&with(e(), "/id", json!("not-a-uuid"))), Reason::BadUuid);
    assert_eq!(reason_of(&with(e(), "/time", json!("yesterday"))), Reason::BadTime);
    assert_eq!(reason_of(&with(e(), "/subject", json!("urn:oio:cpr-nr:3102801234"))), Reason::BadCpr);
    assert_eq!(reason_of(&with(e(), "/subject", json!("urn:oio:cpr-nr:01018012"))), Reason::BadCpr);
    assert_eq!(reason_of(&with(e(), "/subject", json!("0101801234"))), Reason::BadParty);
    assert_eq!(reason_of(&with(e(), "/authority", json!("1234567"))), Reason::BadCvr);
    assert_eq!(reason_of(&with(e(), "/type", json!("dk.overblik.case.teleported.v1"))), Reason::UnknownType);
    assert_eq!(reason_of(&with(e(), "/type", json!("case.imported"))), Reason::UnknownType);
    assert_eq!(reason_of(&with(e(), "/type", json!("dk.overblik.case.imported.v2"))), Reason::UnknownTypeVersion);
    assert_eq!(reason_of(&with(e(), "/data", json!([1, 2]))), Reason::WrongType);
    // Other subject forms are accepted.
    assert!(decode_value(&with(e(), "/subject", json!("urn:oio:udk:borgerid:123456789012"))).is_ok());
}

#[test]
fn the_key_must_be_the_aggregate_id() {
    let bytes = serde_json::to_vec(&case_imported()).unwrap();
    let limits = DecodeLimits::default();
    assert_eq!(decode(&bytes, None, &limits).unwrap_err().reason, Reason::KeyMismatch);
    let other = b"9f1c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
    assert_eq!(decode(&bytes, Some(other), &limits).unwrap_err().reason, Reason::KeyMismatch);
    assert!(decode(&bytes, Some(AGG.to_uppercase().as_bytes()), &limits).is_ok());
}

#[test]
fn field_rules_in_the_body_name_their_path() {
    let e = case_imported;
    let r = decode_value(&with(e(), "/data/kle", json!("32.18"))).unwrap_err();
    assert_eq!(r.reason, Reason::BadKle);
    assert!(r.detail.starts_with("data.kle"), "{}", r.detail);
    assert_eq!(reason_of(&with(e(), "/data/sensitivity", json!(5))), Reason::BadSensitivity);
    assert_eq!(reason_of(&with(e(), "/data/sensitivity", json!("2"))), Reason::BadSensitivity);
    assert_eq!(reason_of(&with(e(), "/data/action_facet", json!("g1"))), Reason::BadActionFacet);
    assert_eq!(reason_of(&with(e(), "/data/parties/0/id", json!("urn:oio:cpr-nr:0113801234"))), Reason::BadCpr);
    assert_eq!(reason_of(&with(e(), "/data/status_history/0/from", json!("2024-02-30"))), Reason::BadDate);
    assert_eq!(reason_of(&with(e(), "/data/status_history/0/status", json!("Lukket"))), Reason::InvalidField);
    assert_eq!(reason_of(&with(e(), "/data/title", json!(42))), Reason::WrongType);
    assert_eq!(reason_of(&without(e(), "/data/title")), Reason::MissingField);
    let mut extra = e();
    extra["data"]["titel"] = json!("x");
    assert_eq!(reason_of(&extra), Reason::UnknownField);
    assert_eq!(reason_of(&with(e(), "/data/parties", json!([]))), Reason::InvalidField);
}

#[test]
fn money_is_exact_or_refused() {
    let ok = decode_value(&payment(1)).unwrap();
    match ok.body {
        Body::PaymentEffectuated(p) => assert_eq!(p.after_tax.0, 840_050),
        other => panic!("{other:?}"),
    }
    assert_eq!(reason_of(&with(payment(1), "/data/gross", json!(12000.0))), Reason::BadMoney);
    assert_eq!(reason_of(&with(payment(1), "/data/after_tax", json!("8400.505"))), Reason::BadMoney);
    assert_eq!(
        reason_of(&with(payment(1), "/data/gross", json!("12000.01"))),
        Reason::BadMoney,
        "lines must sum to gross"
    );
    assert_eq!(
        reason_of(&with(payment(1), "/data/period", json!({"start": "2024-06-01", "end": "2024-05-31"}))),
        Reason::BadPeriod
    );
}

#[test]
fn an_old_version_is_upcast() {
    let e = decode_value(&payment(0)).unwrap();
    assert_eq!(e.type_version, 0);
    assert_eq!(e.type_name(), "dk.overblik.payment.effectuated.v0");
    match e.body {
        Body::PaymentEffectuated(p) => assert_eq!(p.sent.0, 840_050),
        other => panic!("{other:?}"),
    }
    // A v1 body sent as v0 has no `net` to rename.
    assert_eq!(
        reason_of(&with(payment(1), "/type", json!("dk.overblik.payment.effectuated.v0"))),
        Reason::InvalidField
    );
}

#[test]
fn details_never_carry_a_personal_number() {
    let r = decode_value(&with(case_imported(), "/data/title", json!(["urn:oio:cpr-nr:0101801234"]))).unwrap_err();
    assert!(!r.detail.contains("0101801234"), "{}", r.detail);
    let r = decode_value(&with(case_imported(), "/data/status_history/0/status", json!("0101801234"))).unwrap_err();
    assert!(!r.detail.contains("0101801234"), "{}", r.detail);
}

#[test]
fn sniffing_finds_the_aggregate_of_a_bad_event() {
    let bad = serde_json::to_vec(&with(case_imported(), "/data/kle", json!("x"))).unwrap();
    assert_eq!(sniff_aggregate_id(&bad).unwrap().to_string(), AGG);
    assert_eq!(sniff_aggregate_id(b"\xff\x00"), None);
}

#[test]
fn the_one_pass_parse_agrees_with_the_two_pass_parse() {
    let limits = DecodeLimits::default();
    for m in crate::simulator::DemoStream::new(9, 3000).with_malformed_ratio(0.05) {
        let fast = decode_with(&m.payload, Some(&m.key), &limits, true);
        let slow = decode_with(&m.payload, Some(&m.key), &limits, false);
        assert_eq!(fast, slow);
    }
    // Including bodies that fail their rules and a body that is an array.
    for v in [
        with(case_imported(), "/data/kle", json!("32.18")),
        with(payment(1), "/data/gross", json!("1.001")),
        with(case_imported(), "/data", json!(["2024-000123"])),
    ] {
        let bytes = serde_json::to_vec(&v).unwrap();
        let fast = decode_with(&bytes, Some(AGG.as_bytes()), &limits, true);
        assert_eq!(fast, decode_with(&bytes, Some(AGG.as_bytes()), &limits, false));
        assert!(fast.is_err());
    }
}

#[test]
fn a_repeated_attribute_is_refused() {
    let text = serde_json::to_string(&case_imported()).unwrap().replacen(
        "{",
        "{\"id\":\"0e8f1d7a-3c2b-4a59-9e61-7d5c4b3a2f10\",",
        1,
    );
    let r = decode(text.as_bytes(), Some(AGG.as_bytes()), &DecodeLimits::default()).unwrap_err();
    assert_eq!(r.reason, Reason::InvalidField, "{}", r.detail);
}

/// The free-text fields: they may hold tab, line feed and carriage return.
const PROSE: &[&str] = &["/data/reason", "/data/paid_note"];

/// Every control character (Unicode Cc).
fn control_characters() -> impl Iterator<Item = char> {
    (0u32..0x20).chain(0x7f..0xa0).map(|c| char::from_u32(c).unwrap())
}

fn decode_sample(v: &Value) -> Result<Event, Rejection> {
    let key = v["aggregateid"].as_str().unwrap().to_string();
    decode(&serde_json::to_vec(v).unwrap(), Some(key.as_bytes()), &DecodeLimits::default())
}

/// Whether a rejection names `path`: the field itself, or for a period's
/// `start` or `end`, the period (whose rule covers both).
fn names(r: &Rejection, path: &str) -> bool {
    let period = path.strip_suffix(".start").or_else(|| path.strip_suffix(".end")).filter(|p| p.ends_with("period"));
    r.detail.starts_with(&format!("{path}:")) || period.is_some_and(|p| r.detail.starts_with(&format!("{p}:")))
}

#[test]
fn every_string_of_every_type_refuses_control_characters_naming_its_path() {
    use crate::simulator::samples::{message, pointer_to_path, string_pointers};
    let mut checked = 0;
    for &kind in EventKind::ALL {
        let agg = uuid::Uuid::new_v4();
        let sample = message(kind, uuid::Uuid::new_v4(), agg, 1);
        for pointer in string_pointers(&sample) {
            let path = pointer_to_path(&pointer);
            let original = sample.pointer(&pointer).unwrap().as_str().unwrap().to_string();
            let prose = PROSE.contains(&pointer.as_str());
            for c in control_characters() {
                let mid = original.char_indices().nth(original.chars().count() / 2).map_or(0, |(i, _)| i);
                let poisoned = format!("{}{c}{}", &original[..mid], &original[mid..]);
                let v = with(sample.clone(), &pointer, json!(poisoned));
                let result = decode_sample(&v);
                if prose && matches!(c, '\t' | '\n' | '\r') {
                    assert!(result.is_ok(), "{} {path}: U+{:04X} is allowed in prose", kind.name(), c as u32);
                    continue;
                }
                let r = result.expect_err(&format!("{} {path}: U+{:04X} must be refused", kind.name(), c as u32));
                assert!(names(&r, &path), "{} U+{:04X}: {r} does not name {path}", kind.name(), c as u32);
                // Free text is INVALID_FIELD; typed fields (codes, dates, ids)
                // keep their own reason.
                if prose || r.detail.contains("control character") {
                    assert_eq!(r.reason, Reason::InvalidField, "{r}");
                }
                checked += 1;
            }
            // A lone surrogate, as a JSON escape (no Rust string can hold one).
            let marked = with(sample.clone(), &pointer, json!("@@lone@@"));
            let text = serde_json::to_string(&marked).unwrap().replace("@@lone@@", "ab\\ud800cd");
            let r = decode(text.as_bytes(), Some(agg.to_string().as_bytes()), &DecodeLimits::default()).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidField, "{} {path}: {r}", kind.name());
            assert!(names(&r, &path), "{} {path}: {r}", kind.name());
        }
    }
    assert!(checked > 10_000, "{checked}");
}

#[test]
fn every_free_text_field_is_length_bounded() {
    use crate::simulator::samples::{message, string_pointers};
    for &kind in EventKind::ALL {
        let sample = message(kind, uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), 1);
        for pointer in string_pointers(&sample["data"]) {
            let pointer = format!("/data{pointer}");
            let v = with(sample.clone(), &pointer, json!("x".repeat(1025)));
            let r = decode_sample(&v).expect_err(&pointer);
            assert!(names(&r, &crate::simulator::samples::pointer_to_path(&pointer)), "{r}");
        }
    }
}

#[test]
fn rejections_never_echo_what_was_sent() {
    // A name where a field name belongs, where an enum belongs, where a
    // number belongs, as a type; none of it comes back in the detail.
    let secret = "Hemmelig Hansen";
    let cases = [
        {
            let mut v = case_imported();
            v["data"]["Hemmelig Hansen"] = json!(1);
            v
        },
        with(case_imported(), "/data/status_history/0/status", json!(secret)),
        with(case_imported(), "/aggregateversion", json!(secret)),
        with(case_imported(), "/type", json!(format!("dk.overblik.{secret}.v1"))),
        with(case_imported(), "/type", json!(secret)),
        with(case_imported(), "/data/sensitivity", json!(secret)),
        with(case_imported(), "/specversion", json!(secret)),
    ];
    for v in cases {
        let r = decode_value(&v).unwrap_err();
        assert!(!r.detail.contains("Hemmelig"), "{r}");
    }
    let r = decode_value(&with(case_imported(), "/type", json!("dk.overblik.0107851234.v1"))).unwrap_err();
    assert_eq!(r.reason, Reason::UnknownType);
    assert!(!r.detail.contains("0107851234") && !r.detail.contains("dk.overblik.0"), "{r}");
}

#[test]
fn a_document_is_metadata_only_and_its_text_has_no_field() {
    let mut e = case_imported();
    e["type"] = json!("dk.overblik.document.registered.v1");
    e["data"] = json!({
        "document_id": "7b2e4c1d-9a8f-4e3b-8c2d-1f0e9d8c7b6a",
        "title": "Telefonnotat",
        "date": "2024-05-02",
        "direction": "internal",
        "kind": "journal_note"
    });
    let event = decode_value(&e).expect("a journal note's metadata decodes");
    assert_eq!(event.kind().aggregate_kind(), crate::domain::AggregateKind::Case);
    assert_eq!(event.kind().data_area(), crate::domain::DataArea::Sager);
    for text in ["text", "content", "body"] {
        let mut with_text = e.clone();
        with_text["data"][text] = json!("Borgeren oplyste i telefonen, at …");
        assert_eq!(reason_of(&with_text), Reason::UnknownField, "{text}");
    }
    let mut bad = e.clone();
    bad["data"]["direction"] = json!("sideways");
    assert!(decode_value(&bad).is_err());
    let mut long = e;
    long["data"]["title"] = json!("x".repeat(256));
    assert_eq!(reason_of(&long), Reason::InvalidField);
}

#[test]
fn the_ascii_source_check_agrees_with_the_character_rule() {
    for b in 0u8..=0x7f {
        let source = format!("urn:x{}y", char::from(b));
        let by_char = !source.contains(|c: char| c.is_whitespace() || body::refused_char(c, body::TextKind::Line));
        assert_eq!(good_source(&source), by_char, "{b:#x}");
    }
    assert!(!good_source("urn:æ\u{85}"), "a non-ASCII space is refused too");
    assert!(good_source("urn:æ"));
}
