//! Business dates, periods and instants.
//!
//! Business facts (a grant's start, a payment's disposal date) are calendar
//! dates with no time zone; instants (when something happened in a source) are
//! UTC. Where a rule speaks of "the last 3 months" it means the Copenhagen
//! calendar, which [`copenhagen_today`] provides.

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};

use super::invalid::{Invalid, InvalidCode};

/// Parses `YYYY-MM-DD` exactly: four-digit year, zero-padded month and day,
/// and a date that exists.
pub fn parse_date(s: &str) -> Result<NaiveDate, Invalid> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
    if !shape_ok {
        return Err(Invalid::new(InvalidCode::Date, "a date is YYYY-MM-DD"));
    }
    // The shape is checked: every byte read here is a digit.
    let num = |r: std::ops::Range<usize>| b[r].iter().fold(0, |n, d| n * 10 + u32::from(d - b'0'));
    NaiveDate::from_ymd_opt(num(0..4) as i32, num(5..7), num(8..10))
        .ok_or_else(|| Invalid::new(InvalidCode::Date, "the date does not exist in the calendar"))
}

/// Parses an RFC 3339 instant (with offset) and normalises it to UTC.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, Invalid> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Invalid::new(InvalidCode::Time, "a time is an RFC 3339 instant such as 2024-05-01T08:30:00Z"))
}

/// Today's date on the Copenhagen calendar at instant `now`.
pub fn copenhagen_today(now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&chrono_tz::Europe::Copenhagen).date_naive()
}

/// Where a day lies against a validity `[from, to)`: the rule every
/// agreement's period keeps, data-exchange and service agreements alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    NotYet,
    Valid,
    Ended,
}

impl Validity {
    pub fn on(day: NaiveDate, from: NaiveDate, to: NaiveDate) -> Validity {
        if day < from {
            Validity::NotYet
        } else if day >= to {
            Validity::Ended
        } else {
            Validity::Valid
        }
    }

    /// Whether a validity ending on `to` (exclusive) ends within `days`
    /// days of `today` (a horizon past the calendar's end reaches every
    /// one).
    pub fn ends_within(today: NaiveDate, to: NaiveDate, days: u32) -> bool {
        to <= today.checked_add_days(chrono::Days::new(u64::from(days))).unwrap_or(NaiveDate::MAX)
    }
}

/// A closed period of dates, `start <= end`, both inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Period {
    #[serde(with = "date_format")]
    pub start: NaiveDate,
    #[serde(with = "date_format")]
    pub end: NaiveDate,
}

/// A period that may still be running: `end` is absent until it is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpenPeriod {
    #[serde(with = "date_format")]
    pub start: NaiveDate,
    #[serde(with = "date_format::option", skip_serializing_if = "Option::is_none")]
    pub end: Option<NaiveDate>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeriod<'a> {
    #[serde(borrow)]
    start: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    end: Option<std::borrow::Cow<'a, str>>,
}

fn check_order(start: NaiveDate, end: NaiveDate) -> Result<(), Invalid> {
    if start > end {
        return Err(Invalid::new(InvalidCode::Period, "a period's start is after its end"));
    }
    Ok(())
}

impl<'de> serde::Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawPeriod::deserialize(d)?;
        let start = parse_date(&raw.start).map_err(D::Error::custom)?;
        let end = raw.end.ok_or_else(|| D::Error::missing_field("end"))?;
        let end = parse_date(&end).map_err(D::Error::custom)?;
        check_order(start, end).map_err(D::Error::custom)?;
        Ok(Period { start, end })
    }
}

impl<'de> serde::Deserialize<'de> for OpenPeriod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawPeriod::deserialize(d)?;
        let start = parse_date(&raw.start).map_err(D::Error::custom)?;
        let end = match raw.end {
            Some(e) => Some(parse_date(&e).map_err(D::Error::custom)?),
            None => None,
        };
        if let Some(end) = end {
            check_order(start, end).map_err(D::Error::custom)?;
        }
        Ok(OpenPeriod { start, end })
    }
}

/// A wall-clock time of day, `HH:MM` (digital logbook entries).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime {
    minutes: u16,
}

impl ClockTime {
    pub fn parse(s: &str) -> Result<ClockTime, Invalid> {
        let b = s.as_bytes();
        let bad = || Invalid::new(InvalidCode::Time, "a time of day is HH:MM");
        if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
            return Err(bad());
        }
        let h = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
        let m = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(ClockTime { minutes: h * 60 + m })
    }

    pub fn minutes(self) -> u16 {
        self.minutes
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl fmt::Debug for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClockTime({self})")
    }
}

impl<'de> serde::Deserialize<'de> for ClockTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: crate::domain::JsonStr<'de> = serde::Deserialize::deserialize(d)?;
        ClockTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for ClockTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Formats `YYYY-MM-DD` without going through a format string: dates are
/// written for every state and row, and chrono's formatter parses its
/// pattern on every call.
pub fn format_date(d: NaiveDate) -> DateText {
    use chrono::Datelike;
    let (y, m, day) = (d.year(), d.month(), d.day());
    if !(0..=9999).contains(&y) {
        return DateText::Other(d.format("%Y-%m-%d").to_string());
    }
    let mut b = *b"0000-00-00";
    let y = y as u32;
    b[0] = b'0' + (y / 1000) as u8;
    b[1] = b'0' + (y / 100 % 10) as u8;
    b[2] = b'0' + (y / 10 % 10) as u8;
    b[3] = b'0' + (y % 10) as u8;
    b[5] = b'0' + (m / 10) as u8;
    b[6] = b'0' + (m % 10) as u8;
    b[8] = b'0' + (day / 10) as u8;
    b[9] = b'0' + (day % 10) as u8;
    DateText::Short(b)
}

/// A formatted date, on the stack in the common case.
pub enum DateText {
    Short([u8; 10]),
    Other(String),
}

impl DateText {
    pub fn as_str(&self) -> &str {
        match self {
            DateText::Short(b) => std::str::from_utf8(b).expect("ascii digits"),
            DateText::Other(s) => s,
        }
    }
}

/// Serde adapter for `NaiveDate` in the strict `YYYY-MM-DD` form, with the
/// `BAD_DATE` code on failure. Use as `#[serde(with = "date_format")]`.
pub mod date_format {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::format_date(*d).as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let s: crate::domain::JsonStr<'de> = Deserialize::deserialize(d)?;
        super::parse_date(&s).map_err(serde::de::Error::custom)
    }

    pub mod option {
        use chrono::NaiveDate;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<NaiveDate>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(super::super::format_date(*d).as_str()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
            let s: Option<crate::domain::JsonStr<'de>> = Deserialize::deserialize(d)?;
            s.map(|s| super::super::parse_date(&s).map_err(serde::de::Error::custom)).transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validity_starts_on_its_first_day_and_ends_before_its_last() {
        let d = |s: &str| parse_date(s).unwrap();
        let (from, to) = (d("2026-01-01"), d("2026-07-01"));
        assert_eq!(Validity::on(d("2025-12-31"), from, to), Validity::NotYet);
        assert_eq!(Validity::on(from, from, to), Validity::Valid);
        assert_eq!(Validity::on(d("2026-06-30"), from, to), Validity::Valid);
        assert_eq!(Validity::on(to, from, to), Validity::Ended);
        assert!(Validity::ends_within(d("2026-06-01"), to, 30));
        assert!(!Validity::ends_within(d("2026-06-01"), to, 29));
        assert!(Validity::ends_within(d("2026-06-01"), to, u32::MAX), "a horizon past the calendar's end");
    }

    #[test]
    fn dates_are_strict() {
        assert!(parse_date("2024-02-29").is_ok());
        for bad in ["2023-02-29", "2024-2-01", "24-02-01", "2024/02/01", "2024-02-01T00:00:00Z", "2024-13-01"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn periods_must_be_ordered() {
        let p: Period = serde_json::from_str(r#"{"start":"2024-01-01","end":"2024-01-31"}"#).unwrap();
        assert_eq!(p.end, NaiveDate::from_ymd_opt(2024, 1, 31).unwrap());
        let err = serde_json::from_str::<Period>(r#"{"start":"2024-02-01","end":"2024-01-31"}"#).unwrap_err();
        assert!(err.to_string().starts_with("BAD_PERIOD"), "{err}");
        let open: OpenPeriod = serde_json::from_str(r#"{"start":"2024-01-01"}"#).unwrap();
        assert_eq!(open.end, None);
    }

    #[test]
    fn copenhagen_calendar_crosses_midnight_before_utc() {
        let t = parse_instant("2024-03-31T22:30:00Z").unwrap();
        assert_eq!(copenhagen_today(t), NaiveDate::from_ymd_opt(2024, 4, 1).unwrap());
        let t = parse_instant("2024-01-31T23:30:00Z").unwrap();
        assert_eq!(copenhagen_today(t), NaiveDate::from_ymd_opt(2024, 2, 1).unwrap());
    }

    #[test]
    fn dates_format_as_they_parse() {
        for d in ["2024-02-29", "0001-01-01", "1999-12-31", "2100-10-05"] {
            assert_eq!(format_date(parse_date(d).unwrap()).as_str(), d);
        }
    }

    #[test]
    fn clock_times() {
        assert_eq!(ClockTime::parse("08:05").unwrap().minutes(), 485);
        assert!(ClockTime::parse("24:00").is_err());
        assert!(ClockTime::parse("8:05").is_err());
    }
}
