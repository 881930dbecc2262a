use std::fmt;

/// Which validation rule a value broke.
///
/// The `as_str` forms are the machine-readable reason codes that end up on
/// dead letters, so they are part of the operator-facing contract: never
/// rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidCode {
    Uuid,
    Cpr,
    Party,
    Cvr,
    Kle,
    ActionFacet,
    Sensitivity,
    Money,
    Date,
    Period,
    Time,
    Year,
    Field,
}

impl InvalidCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            InvalidCode::Uuid => "BAD_UUID",
            InvalidCode::Cpr => "BAD_CPR",
            InvalidCode::Party => "BAD_PARTY",
            InvalidCode::Cvr => "BAD_CVR",
            InvalidCode::Kle => "BAD_KLE",
            InvalidCode::ActionFacet => "BAD_ACTION_FACET",
            InvalidCode::Sensitivity => "BAD_SENSITIVITY",
            InvalidCode::Money => "BAD_MONEY",
            InvalidCode::Date => "BAD_DATE",
            InvalidCode::Period => "BAD_PERIOD",
            InvalidCode::Time => "BAD_TIME",
            InvalidCode::Year => "BAD_YEAR",
            InvalidCode::Field => "INVALID_FIELD",
        }
    }

    pub const ALL: [InvalidCode; 13] = [
        InvalidCode::Uuid,
        InvalidCode::Cpr,
        InvalidCode::Party,
        InvalidCode::Cvr,
        InvalidCode::Kle,
        InvalidCode::ActionFacet,
        InvalidCode::Sensitivity,
        InvalidCode::Money,
        InvalidCode::Date,
        InvalidCode::Period,
        InvalidCode::Time,
        InvalidCode::Year,
        InvalidCode::Field,
    ];
}

/// A value that broke a rule. The detail never repeats a personal number:
/// it names the rule, not the input (these texts reach logs and dead-letter
/// listings).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub code: InvalidCode,
    pub detail: String,
    /// Where inside the value the rule broke, as a JSON path relative to
    /// it (`benefits[2].name`); empty when the value as a whole broke it.
    pub path: String,
}

impl Invalid {
    pub fn new(code: InvalidCode, detail: impl Into<String>) -> Self {
        Invalid { code, detail: detail.into(), path: String::new() }
    }

    /// A rule broken at `path` inside the value.
    pub fn at(path: impl Into<String>, code: InvalidCode, detail: impl Into<String>) -> Self {
        Invalid { code, detail: detail.into(), path: path.into() }
    }
}

/// `CODE: detail` — the decode stage recognises the leading code in serde's
/// error text, which is how a field-level rule travels out of a derived
/// `Deserialize` impl with its reason intact.
impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

/// Implements `Deserialize` for a type that parses from a JSON string with a
/// `fn parse(&str) -> Result<Self, Invalid>`, without allocating for
/// unescaped strings and with the rule's code on every failure.
macro_rules! deserialize_from_str {
    ($ty:ty, $code:expr, $expecting:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        <$ty>::parse(v).map_err(E::custom)
                    }
                    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<$ty, E> {
                        Err(E::custom($crate::domain::Invalid::new(
                            $code,
                            concat!("expected ", $expecting, ", got a JSON number"),
                        )))
                    }
                    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<$ty, E> {
                        Err(E::custom($crate::domain::Invalid::new(
                            $code,
                            concat!("expected ", $expecting, ", got a JSON number"),
                        )))
                    }
                    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<$ty, E> {
                        Err(E::custom($crate::domain::Invalid::new(
                            $code,
                            concat!("expected ", $expecting, ", got a JSON number"),
                        )))
                    }
                }
                d.deserialize_any(V)
            }
        }
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use deserialize_from_str;
