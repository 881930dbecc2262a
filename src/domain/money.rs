//! Exact money: amounts are integer øre, parsed from decimal strings.

use std::fmt;

use super::invalid::{Invalid, InvalidCode};

/// An amount in øre (1/100 DKK).
///
/// The sources send amounts as decimal strings (`"1234.50"`, the Ydelsesindeks
/// convention `-?[0-9]+(\.[0-9]+)?` narrowed to at most two decimals). A JSON
/// number is refused rather than converted, and a third decimal is refused
/// rather than rounded: an index that rounds is an index that disagrees with
/// the payment it mirrors (invariant 10).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oere(pub i64);

impl Oere {
    pub fn parse(s: &str) -> Result<Oere, Invalid> {
        let bad = |detail: &str| Invalid::new(InvalidCode::Money, detail.to_string());
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = match digits.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (digits, None),
        };
        if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("an amount is a decimal string such as \"1234.50\""));
        }
        let frac_oere: i64 = match frac {
            None => 0,
            Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(bad("an amount is a decimal string such as \"1234.50\""));
            }
            Some(f) if f.len() > 2 => {
                return Err(bad("an amount has at most two decimals (øre); it is never rounded"));
            }
            Some(f) if f.len() == 1 => i64::from(f.as_bytes()[0] - b'0') * 10,
            Some(f) => i64::from(f.as_bytes()[0] - b'0') * 10 + i64::from(f.as_bytes()[1] - b'0'),
        };
        let whole: i64 = whole.parse().map_err(|_| bad("the amount is too large"))?;
        let oere = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac_oere))
            .ok_or_else(|| bad("the amount is too large"))?;
        Ok(Oere(if negative { -oere } else { oere }))
    }
}

impl fmt::Debug for Oere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oere({self})")
    }
}

/// Formats back to the decimal-string form the sources use (`"-12.05"`).
impl fmt::Display for Oere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl<'de> serde::Deserialize<'de> for Oere {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Oere;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal string amount")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Oere, E> {
                Oere::parse(v).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Oere, E> {
                Err(E::custom(Invalid::new(
                    InvalidCode::Money,
                    "an amount must be a decimal string, not a JSON number",
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Oere, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Oere, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

impl serde::Serialize for Oere {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(Oere::parse("1234.50").unwrap(), Oere(123_450));
        assert_eq!(Oere::parse("1234.5").unwrap(), Oere(123_450));
        assert_eq!(Oere::parse("1234").unwrap(), Oere(123_400));
        assert_eq!(Oere::parse("-0.05").unwrap(), Oere(-5));
        assert_eq!(Oere::parse("0.01").unwrap(), Oere(1));
        assert_eq!(Oere::parse("92233720368547758.07").unwrap(), Oere(i64::MAX));
    }

    #[test]
    fn refuses_rounding_and_odd_shapes() {
        for bad in ["1.005", "1.", ".5", "", "-", "1,50", "1e3", "+1", " 1", "1 000", "92233720368547758.08"] {
            assert_eq!(Oere::parse(bad).unwrap_err().code, InvalidCode::Money, "{bad:?}");
        }
    }

    #[test]
    fn refuses_json_numbers() {
        let err = serde_json::from_str::<Oere>("1234.5").unwrap_err();
        assert!(err.to_string().starts_with("BAD_MONEY"), "{err}");
        let err = serde_json::from_str::<Oere>("1234").unwrap_err();
        assert!(err.to_string().starts_with("BAD_MONEY"), "{err}");
    }

    #[test]
    fn round_trips_through_text() {
        for s in ["0.00", "-12.05", "1234.50"] {
            assert_eq!(Oere::parse(s).unwrap().to_string(), s);
        }
    }
}
