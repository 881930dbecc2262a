//! Requests → validated values. Every field a caller sends is checked here
//! before anything is decided, read or recorded; a field that fails is
//! named in the refusal, and what it held is recorded only as a hash.

use uuid::Uuid;

use crate::audit::{Search, Text};
use crate::domain::{DataArea, PartyId};
use crate::lookup::{Ask, Page, Query, Rpc};
use crate::proto as pb;

/// A malformed request: which field, and what it must be. The text is
/// fixed (never the caller's input); the input itself is kept only as a
/// hash, for the audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRequest {
    pub field: &'static str,
    pub rule: &'static str,
    given: Option<Text>,
}

impl BadRequest {
    pub fn new(field: &'static str, rule: &'static str) -> BadRequest {
        BadRequest { field, rule, given: None }
    }

    /// With the offending value, recorded as its hash.
    pub fn given(field: &'static str, rule: &'static str, raw: &str) -> BadRequest {
        BadRequest { field, rule, given: Some(Text::hashed(raw.as_bytes())) }
    }

    /// With the offending raw bytes (a header that may not even be text),
    /// recorded as their hash.
    pub fn given_bytes(field: &'static str, rule: &'static str, raw: &[u8]) -> BadRequest {
        BadRequest { field, rule, given: Some(Text::hashed(raw)) }
    }

    /// The message callers get: the field and its rule.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.rule)
    }

    /// Adds what was wrong to an audit record's search criteria.
    pub fn describe(&self, search: Search) -> Search {
        let search = search.with("bad_field", self.field);
        match &self.given {
            Some(h) => search.with("given", h.clone()),
            None => search,
        }
    }
}

/// The longest citizen identifier accepted (a BorgerID URN is 33 bytes).
const CITIZEN_MAX_BYTES: usize = 64;

/// A citizen given as a party URN or as 10 CPR digits.
pub fn citizen(s: &str) -> Result<PartyId, BadRequest> {
    const RULE: &str = "a CPR number (10 digits) or a party URN (urn:oio:cpr-nr:…, urn:oio:udk:borgerid:…)";
    if s.len() > CITIZEN_MAX_BYTES {
        return Err(BadRequest::given("citizen", RULE, s));
    }
    let t = s.trim();
    let urn = if t.len() == 10 && t.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}{t}", PartyId::CPR_PREFIX)
    } else {
        t.to_string()
    };
    match PartyId::parse(&urn) {
        // A company is not a citizen.
        Ok(PartyId::Cvr(_)) | Err(_) => Err(BadRequest::given("citizen", RULE, s)),
        Ok(p) => Ok(p),
    }
}

/// A data area among those the call reads.
pub fn area(s: &str, rpc: Rpc) -> Result<DataArea, BadRequest> {
    DataArea::parse(s).filter(|a| rpc.areas().contains(a)).ok_or_else(|| {
        BadRequest::given("data_area", "a data area this call reads (see the service's documentation)", s)
    })
}

fn ask(p: &pb::AreaPurpose, rpc: Rpc) -> Result<Ask, BadRequest> {
    let area = area(&p.data_area, rpc)?;
    if p.purpose_ids.len() > Ask::MAX_PURPOSES {
        return Err(BadRequest::new("purpose_ids", "name one purpose per data area"));
    }
    Ok(Ask { area, purpose_ids: p.purpose_ids.clone() })
}

/// The longest page token this service issues, with room to spare.
const PAGE_TOKEN_MAX_BYTES: usize = 16;

/// A page: `page_size` 0 means 100 and more than 500 means 500; the token
/// is one this service issued (`o<offset>`) or empty.
pub fn page(size: u32, token: &str, prefix: char) -> Result<Page, BadRequest> {
    const RULE: &str = "a next_page_token this service returned, or empty";
    if token.is_empty() {
        return Ok(Page::first(size));
    }
    let offset = (token.len() <= PAGE_TOKEN_MAX_BYTES)
        .then(|| token.strip_prefix(prefix))
        .flatten()
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| BadRequest::given("page_token", RULE, token))?;
    Page::new(offset, size).ok_or_else(|| BadRequest::given("page_token", RULE, token))
}

/// A list call's request.
pub fn list(r: &pb::ListRequest, rpc: Rpc) -> Result<Query, BadRequest> {
    let citizen = citizen(&r.citizen)?;
    let purpose = r.purpose.as_ref().ok_or_else(|| BadRequest::new("purpose", "name the data area and its purpose"))?;
    let ask = ask(purpose, rpc)?;
    let page = page(r.page_size, &r.page_token, 'o')?;
    Ok(Query { rpc, citizen, asks: vec![ask], page: Some(page), case_id: None })
}

/// `GetCase`.
pub fn get_case(r: &pb::GetCaseRequest) -> Result<Query, BadRequest> {
    let citizen = citizen(&r.citizen)?;
    let case_id = case_id(&r.case_id)?;
    let purpose = r.purpose.as_ref().ok_or_else(|| BadRequest::new("purpose", "name the data area and its purpose"))?;
    let ask = ask(purpose, Rpc::GetCase)?;
    Ok(Query { rpc: Rpc::GetCase, citizen, asks: vec![ask], page: None, case_id: Some(case_id) })
}

pub fn case_id(s: &str) -> Result<Uuid, BadRequest> {
    const RULE: &str = "a case id (UUID)";
    if s.len() > 36 {
        return Err(BadRequest::given("case_id", RULE, s));
    }
    Uuid::parse_str(s).map_err(|_| BadRequest::given("case_id", RULE, s))
}

/// `GetCitizenOverview`: 1-4 distinct areas of the overview's.
pub fn overview(r: &pb::CitizenOverviewRequest) -> Result<Query, BadRequest> {
    let rpc = Rpc::GetCitizenOverview;
    let citizen = citizen(&r.citizen)?;
    let asks = distinct_asks(&r.purposes, rpc, "name 1-4 data areas, each with its purpose")?;
    Ok(Query { rpc, citizen, asks, page: None, case_id: None })
}

/// `GetTimeline`: 1-5 distinct areas of the timeline's, and a page.
pub fn timeline(r: &pb::TimelineRequest) -> Result<Query, BadRequest> {
    let rpc = Rpc::GetTimeline;
    let citizen = citizen(&r.citizen)?;
    let asks = distinct_asks(&r.purposes, rpc, "name 1-5 data areas, each with its purpose")?;
    let page = page(r.page_size, &r.page_token, 'o')?;
    Ok(Query { rpc, citizen, asks, page: Some(page), case_id: None })
}

/// A multi-area call's asks: at least one, each a distinct area of the
/// call's own; `rule` says how many.
fn distinct_asks(purposes: &[pb::AreaPurpose], rpc: Rpc, rule: &'static str) -> Result<Vec<Ask>, BadRequest> {
    if purposes.is_empty() || purposes.len() > rpc.areas().len() {
        return Err(BadRequest::new("purposes", rule));
    }
    let asks = purposes.iter().map(|p| ask(p, rpc)).collect::<Result<Vec<_>, _>>()?;
    let mut areas: Vec<DataArea> = asks.iter().map(|a| a.area).collect();
    areas.sort();
    areas.dedup();
    if areas.len() != asks.len() {
        return Err(BadRequest::new("purposes", "name each data area once"));
    }
    Ok(asks)
}

/// Records one `VerifyChain` call checks when the caller names no number.
pub const VERIFY_DEFAULT_RECORDS: i64 = 500_000;
/// Records one `VerifyChain` call checks at most.
pub const VERIFY_MAX_RECORDS: i64 = 1_000_000;

/// A `VerifyChain` part: where to resume (`None`: from the start) and how
/// many records to check at most.
pub fn chain_part(
    after_seq: i64,
    after_hash: &str,
    max_records: i64,
) -> Result<(Option<(i64, String)>, i64), BadRequest> {
    let max = match max_records {
        0 => VERIFY_DEFAULT_RECORDS,
        n if (1..=VERIFY_MAX_RECORDS).contains(&n) => n,
        _ => return Err(BadRequest::new("max_records", "0 (the default) or 1 to 1,000,000")),
    };
    let after = match (after_seq, after_hash) {
        (0, "") => None,
        (n, h) if n > 0 && h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
            Some((n, h.to_string()))
        }
        (_, h) => {
            return Err(BadRequest::given(
                "after_seq",
                "0 with no after_hash, or a record number with its hash (64 lowercase hex digits) from an earlier answer",
                h,
            ));
        }
    };
    Ok((after, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_are_ours_or_refused_without_echo() {
        assert_eq!(page(0, "", 'o').unwrap().offset(), 0);
        assert_eq!(page(10, "o20", 'o').unwrap().offset(), 20);
        for bad in ["\u{0}", "o", "o-1", "o+1", "x20", "o99999999999999999999", &"o1".repeat(2_000_000), "o2000000"] {
            let e = page(10, bad, 'o').unwrap_err();
            assert_eq!(e.field, "page_token");
            assert_eq!(e.message(), "page_token: a next_page_token this service returned, or empty");
            let rendered = e.describe(Search::rpc("ListCases"));
            assert!(format!("{rendered:?}").len() < 512, "the record of a bad token is bounded");
        }
    }

    #[test]
    fn citizens_are_cpr_or_person_urns() {
        assert!(citizen("0101801234").is_ok());
        assert!(citizen(" urn:oio:cpr-nr:0101801234 ").is_ok());
        assert!(citizen("urn:oio:udk:borgerid:123456789012").is_ok());
        for bad in ["", "urn:oio:cvr-nr:29189420", "=HYPERLINK(1)", &"9".repeat(100), "0101801234\u{0}"] {
            assert_eq!(citizen(bad).unwrap_err().field, "citizen", "{bad:?}");
        }
    }

    #[test]
    fn the_overview_names_distinct_areas_of_its_own() {
        let ap = |a: &str| pb::AreaPurpose { data_area: a.into(), purpose_ids: vec![1] };
        let req = |ps: Vec<pb::AreaPurpose>| pb::CitizenOverviewRequest { citizen: "0101801234".into(), purposes: ps };
        assert!(overview(&req(vec![ap("sager"), ap("ydelser")])).is_ok());
        assert_eq!(overview(&req(vec![])).unwrap_err().field, "purposes");
        assert_eq!(overview(&req(vec![ap("sager"), ap("sager")])).unwrap_err().field, "purposes");
        assert_eq!(overview(&req(vec![ap("indkomst")])).unwrap_err().field, "data_area");
        assert_eq!(overview(&req(vec![ap("=cmd|' /C calc'!A0")])).unwrap_err().field, "data_area");
        let many = pb::AreaPurpose { data_area: "sager".into(), purpose_ids: (0..10_000).collect() };
        assert_eq!(overview(&req(vec![many])).unwrap_err().field, "purpose_ids");
    }

    #[test]
    fn the_timeline_names_distinct_areas_of_its_own_and_a_page_of_ours() {
        let ap = |a: &str| pb::AreaPurpose { data_area: a.into(), purpose_ids: vec![1] };
        let req = |ps: Vec<pb::AreaPurpose>, token: &str| pb::TimelineRequest {
            citizen: "0101801234".into(),
            purposes: ps,
            page_size: 10,
            page_token: token.into(),
        };
        let every = ["sager", "ydelser", "udk_ydelser", "kontrolsager", "beskaeftigelse"];
        let q = timeline(&req(every.iter().map(|a| ap(a)).collect(), "o20")).unwrap();
        assert_eq!((q.asks.len(), q.page.map(|p| (p.offset(), p.size()))), (5, Some((20, 10))));
        assert_eq!(timeline(&req(vec![], "")).unwrap_err().field, "purposes");
        assert_eq!(timeline(&req(vec![ap("sager"), ap("sager")], "")).unwrap_err().field, "purposes");
        assert_eq!(timeline(&req(vec![ap("udk_sager")], "")).unwrap_err().field, "data_area");
        assert_eq!(timeline(&req(vec![ap("indkomst")], "")).unwrap_err().field, "data_area");
        assert_eq!(timeline(&req(vec![ap("sager")], "x1")).unwrap_err().field, "page_token");
    }

    #[test]
    fn chain_parts_are_bounded_and_resume_only_from_a_hash() {
        let h = "0a".repeat(32);
        assert_eq!(chain_part(0, "", 0).unwrap(), (None, VERIFY_DEFAULT_RECORDS));
        assert_eq!(chain_part(7, &h, 10).unwrap(), (Some((7, h.clone())), 10));
        assert_eq!(chain_part(0, "", VERIFY_MAX_RECORDS + 1).unwrap_err().field, "max_records");
        assert_eq!(chain_part(0, "", -1).unwrap_err().field, "max_records");
        assert_eq!(chain_part(7, "", 0).unwrap_err().field, "after_seq");
        assert_eq!(chain_part(0, &h, 0).unwrap_err().field, "after_seq");
        assert_eq!(chain_part(-7, &h, 0).unwrap_err().field, "after_seq");
        assert_eq!(chain_part(7, &h.to_uppercase(), 0).unwrap_err().field, "after_seq");
    }
}
