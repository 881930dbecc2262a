//! Column types that read the same on both backends.
//!
//! PostgreSQL stores UUIDs, dates and instants natively; SQLite stores them
//! as text (instants as RFC 3339 UTC with microseconds). These wrappers decode
//! either, so one row struct (`sqlx::FromRow`) serves both backends and no
//! query reads a column by position.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Postgres, Sqlite, Type};
use uuid::Uuid;

/// A UUID column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub Uuid);

/// A date column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Day(pub NaiveDate);

/// An instant column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instant(pub DateTime<Utc>);

/// How SQLite stores an instant: RFC 3339, UTC, microseconds.
pub fn sqlite_instant(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

macro_rules! both {
    ($wrapper:ident, $inner:ty, $parse:expr) => {
        impl Type<Postgres> for $wrapper {
            fn type_info() -> PgTypeInfo {
                <$inner as Type<Postgres>>::type_info()
            }
            fn compatible(ty: &PgTypeInfo) -> bool {
                <$inner as Type<Postgres>>::compatible(ty)
            }
        }
        impl<'r> Decode<'r, Postgres> for $wrapper {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok($wrapper(<$inner as Decode<'r, Postgres>>::decode(value)?))
            }
        }
        impl Type<Sqlite> for $wrapper {
            fn type_info() -> SqliteTypeInfo {
                <&str as Type<Sqlite>>::type_info()
            }
            fn compatible(ty: &SqliteTypeInfo) -> bool {
                <&str as Type<Sqlite>>::compatible(ty)
            }
        }
        impl<'r> Decode<'r, Sqlite> for $wrapper {
            fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
                let parse: fn(&str) -> Result<$inner, BoxDynError> = $parse;
                Ok($wrapper(parse(text)?))
            }
        }
    };
}

both!(Id, Uuid, |s| Ok(Uuid::parse_str(s)?));
both!(Day, NaiveDate, |s| crate::domain::parse_date(s).map_err(|e| e.to_string().into()));
both!(Instant, DateTime<Utc>, |s| Ok(DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc)));
