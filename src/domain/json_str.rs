//! A JSON string borrowed from the message when it can be.

use std::borrow::Cow;
use std::fmt;

/// A JSON string value, borrowed from the input when it holds no escape
/// and copied only when it does.
///
/// serde's own `Deserialize` for `Cow<str>` always copies into a `String`
/// (it borrows only under a derive's `#[serde(borrow)]`), which cost the
/// decoder one allocation for every envelope attribute, date and party of
/// every message. Values that are parsed into a typed value at once (dates,
/// party URNs, UUIDs) need only be looked at, never owned.
///
/// It refuses what a `String` refuses, with the same words (`expected a
/// string`), so rejections read as before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonStr<'de>(pub Cow<'de, str>);

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(JsonStrVisitor)
    }
}

struct JsonStrVisitor;

impl<'de> serde::de::Visitor<'de> for JsonStrVisitor {
    type Value = JsonStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<JsonStr<'de>, E> {
        Ok(JsonStr(Cow::Borrowed(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JsonStr<'de>, E> {
        Ok(JsonStr(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<JsonStr<'de>, E> {
        Ok(JsonStr(Cow::Owned(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrows_plain_strings_and_copies_escaped_ones() {
        let plain: JsonStr<'_> = serde_json::from_str(r#""2024-05-01""#).unwrap();
        assert!(matches!(plain.0, Cow::Borrowed("2024-05-01")));
        let escaped: JsonStr<'_> = serde_json::from_str(r#""a\u0062c""#).unwrap();
        assert!(matches!(escaped.0, Cow::Owned(ref s) if s == "abc"));
    }

    #[test]
    fn refuses_what_a_string_refuses_in_the_same_words() {
        for json in ["5", "null", "[]", "{}", "true"] {
            let ours = serde_json::from_str::<JsonStr<'_>>(json).unwrap_err().to_string();
            let strings = serde_json::from_str::<String>(json).unwrap_err().to_string();
            assert_eq!(ours, strings, "{json}");
        }
    }
}
