//! Personal, company and classification identifiers.

use std::fmt;

use chrono::NaiveDate;

use super::invalid::{Invalid, InvalidCode, deserialize_from_str};

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn two_digits(b: &[u8]) -> u32 {
    u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0')
}

/// A Danish personal number (CPR), `DDMMYYSSSS`.
///
/// The date part must be a real date once the century is read from the
/// serial (the rule the CPR office publishes); the modulus-11 check is not
/// applied because numbers issued since 2007 need not satisfy it.
///
/// `Debug` never prints the digits, so a `Cpr` can't leak into a log line by
/// accident (invariant 9); the number is only reachable through [`Cpr::as_str`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cpr([u8; 10]);

impl Cpr {
    pub fn parse(s: &str) -> Result<Cpr, Invalid> {
        if s.len() != 10 || !all_digits(s) {
            return Err(Invalid::new(InvalidCode::Cpr, "a CPR number has exactly 10 digits"));
        }
        Self::birth_date_of(s.as_bytes())
            .ok_or_else(|| Invalid::new(InvalidCode::Cpr, "the date part of the CPR number is not a real date"))?;
        let mut digits = [0u8; 10];
        digits.copy_from_slice(s.as_bytes());
        Ok(Cpr(digits))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ascii digits")
    }

    pub fn birth_date(&self) -> NaiveDate {
        Self::birth_date_of(&self.0).expect("validated on parse")
    }

    fn birth_date_of(b: &[u8]) -> Option<NaiveDate> {
        let day = two_digits(&b[0..2]);
        let month = two_digits(&b[2..4]);
        let yy = two_digits(&b[4..6]) as i32;
        let century = match b[6] - b'0' {
            0..=3 => 1900,
            4 | 9 if yy <= 36 => 2000,
            4 | 9 => 1900,
            _ if yy <= 57 => 2000,
            _ => 1800,
        };
        NaiveDate::from_ymd_opt(century + yy, month, day)
    }
}

impl fmt::Debug for Cpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cpr(**********)")
    }
}

/// A Danish company number (CVR): exactly eight digits. Authorities —
/// municipalities and Udbetaling Danmark — are identified by theirs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cvr([u8; 8]);

impl Cvr {
    pub fn parse(s: &str) -> Result<Cvr, Invalid> {
        if s.len() != 8 || !all_digits(s) {
            return Err(Invalid::new(InvalidCode::Cvr, "a CVR number has exactly 8 digits"));
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(s.as_bytes());
        Ok(Cvr(b))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ascii digits")
    }
}

impl fmt::Debug for Cvr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cvr({})", self.as_str())
    }
}

impl fmt::Display for Cvr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A party to a case, grant or payment, in the URN forms the national
/// indexes use: a CPR number, a UDK BorgerID (for people without a CPR
/// number) or a CVR number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartyId {
    Cpr(Cpr),
    BorgerId([u8; 12]),
    Cvr(Cvr),
}

impl PartyId {
    pub const CPR_PREFIX: &'static str = "urn:oio:cpr-nr:";
    pub const BORGERID_PREFIX: &'static str = "urn:oio:udk:borgerid:";
    pub const CVR_PREFIX: &'static str = "urn:oio:cvr-nr:";

    pub fn parse(s: &str) -> Result<PartyId, Invalid> {
        if let Some(rest) = s.strip_prefix(Self::CPR_PREFIX) {
            return Cpr::parse(rest).map(PartyId::Cpr);
        }
        if let Some(rest) = s.strip_prefix(Self::BORGERID_PREFIX) {
            if rest.len() == 12 && all_digits(rest) {
                let mut digits = [0u8; 12];
                digits.copy_from_slice(rest.as_bytes());
                return Ok(PartyId::BorgerId(digits));
            }
            return Err(Invalid::new(InvalidCode::Party, "a UDK BorgerID has exactly 12 digits"));
        }
        if let Some(rest) = s.strip_prefix(Self::CVR_PREFIX) {
            return Cvr::parse(rest).map(PartyId::Cvr);
        }
        Err(Invalid::new(
            InvalidCode::Party,
            "a party is urn:oio:cpr-nr:<10 digits>, urn:oio:udk:borgerid:<12 digits> or urn:oio:cvr-nr:<8 digits>",
        ))
    }

    /// The URN as stored and as sent to authorised callers. Deliberately not
    /// `Display`: formatting a party must be a visible decision.
    pub fn urn(&self) -> String {
        match self {
            PartyId::Cpr(c) => format!("{}{}", Self::CPR_PREFIX, c.as_str()),
            PartyId::BorgerId(b) => format!("{}{}", Self::BORGERID_PREFIX, std::str::from_utf8(b).expect("ascii")),
            PartyId::Cvr(c) => format!("{}{}", Self::CVR_PREFIX, c.as_str()),
        }
    }

    pub fn cpr(&self) -> Option<&Cpr> {
        match self {
            PartyId::Cpr(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Debug for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartyId::Cpr(_) => f.write_str("PartyId(cpr:**********)"),
            PartyId::BorgerId(_) => f.write_str("PartyId(borgerid:************)"),
            PartyId::Cvr(c) => write!(f, "PartyId(cvr:{})", c.as_str()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for PartyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: crate::domain::JsonStr<'de> = serde::Deserialize::deserialize(d)?;
        PartyId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for PartyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.urn())
    }
}

/// A KLE subject code (Kommunernes Landsforenings Emnesystematik),
/// `dd.dd.dd` — the primary data boundary for what a caseworker may see.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kle([u8; 8]);

impl Kle {
    pub fn parse(s: &str) -> Result<Kle, Invalid> {
        let b = s.as_bytes();
        let shape_ok = b.len() == 8
            && b.iter().enumerate().all(|(i, c)| if i == 2 || i == 5 { *c == b'.' } else { c.is_ascii_digit() });
        if !shape_ok {
            return Err(Invalid::new(InvalidCode::Kle, "a KLE subject is dd.dd.dd"));
        }
        let mut k = [0u8; 8];
        k.copy_from_slice(b);
        Ok(Kle(k))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ascii")
    }
}

impl fmt::Debug for Kle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kle({})", self.as_str())
    }
}

impl fmt::Display for Kle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A KLE action facet (handlingsfacet), one capital letter and two digits,
/// e.g. `G01`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActionFacet([u8; 3]);

impl ActionFacet {
    pub fn parse(s: &str) -> Result<ActionFacet, Invalid> {
        let b = s.as_bytes();
        if b.len() != 3 || !b[0].is_ascii_uppercase() || !b[1].is_ascii_digit() || !b[2].is_ascii_digit() {
            return Err(Invalid::new(InvalidCode::ActionFacet, "an action facet is a capital letter and two digits"));
        }
        Ok(ActionFacet([b[0], b[1], b[2]]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ascii")
    }
}

impl fmt::Debug for ActionFacet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActionFacet({})", self.as_str())
    }
}

deserialize_from_str!(Cpr, InvalidCode::Cpr, "a CPR number string");
deserialize_from_str!(Cvr, InvalidCode::Cvr, "a CVR number string");
deserialize_from_str!(Kle, InvalidCode::Kle, "a KLE code string dd.dd.dd");
deserialize_from_str!(ActionFacet, InvalidCode::ActionFacet, "an action facet string");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpr_century_follows_the_serial_digit() {
        assert_eq!(Cpr::parse("0101801234").unwrap().birth_date(), NaiveDate::from_ymd_opt(1980, 1, 1).unwrap());
        assert_eq!(Cpr::parse("0101204234").unwrap().birth_date(), NaiveDate::from_ymd_opt(2020, 1, 1).unwrap());
        assert_eq!(Cpr::parse("0101504234").unwrap().birth_date(), NaiveDate::from_ymd_opt(1950, 1, 1).unwrap());
        assert_eq!(Cpr::parse("0101105234").unwrap().birth_date(), NaiveDate::from_ymd_opt(2010, 1, 1).unwrap());
        assert_eq!(Cpr::parse("0101905234").unwrap().birth_date(), NaiveDate::from_ymd_opt(1890, 1, 1).unwrap());
    }

    #[test]
    fn cpr_refuses_impossible_dates_and_shapes() {
        for bad in ["3102801234", "2902011234", "0013801234", "010180123", "01018012345", "01018O1234", ""] {
            assert_eq!(Cpr::parse(bad).unwrap_err().code, InvalidCode::Cpr, "{bad}");
        }
        // 29 February exists in 2000 (serial 4, yy 00) but not in 1900 (serial 0).
        assert!(Cpr::parse("2902004000").is_ok());
        assert!(Cpr::parse("2902000000").is_err());
    }

    #[test]
    fn cpr_debug_never_shows_digits() {
        let c = Cpr::parse("0101801234").unwrap();
        assert!(!format!("{c:?}").contains("0101"));
        let p = PartyId::parse("urn:oio:cpr-nr:0101801234").unwrap();
        assert!(!format!("{p:?}").contains("0101"));
    }

    #[test]
    fn party_forms() {
        assert!(matches!(PartyId::parse("urn:oio:udk:borgerid:123456789012"), Ok(PartyId::BorgerId(_))));
        assert!(matches!(PartyId::parse("urn:oio:cvr-nr:29189420"), Ok(PartyId::Cvr(_))));
        assert_eq!(PartyId::parse("urn:oio:udk:borgerid:12345").unwrap_err().code, InvalidCode::Party);
        assert_eq!(PartyId::parse("0101801234").unwrap_err().code, InvalidCode::Party);
        assert_eq!(PartyId::parse("urn:oio:cpr-nr:3201801234").unwrap_err().code, InvalidCode::Cpr);
        let urn = "urn:oio:cpr-nr:0101801234";
        assert_eq!(PartyId::parse(urn).unwrap().urn(), urn);
    }

    #[test]
    fn cvr_kle_and_facet_shapes() {
        assert!(Cvr::parse("29189420").is_ok());
        for bad in ["2918942", "291894201", "2918942a"] {
            assert!(Cvr::parse(bad).is_err());
        }
        assert!(Kle::parse("32.18.04").is_ok());
        for bad in ["32.18", "32-18-04", "3a.18.04", "32.18.04.01"] {
            assert_eq!(Kle::parse(bad).unwrap_err().code, InvalidCode::Kle);
        }
        assert!(ActionFacet::parse("G01").is_ok());
        assert!(ActionFacet::parse("g01").is_err());
    }
}
