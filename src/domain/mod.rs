//! Value types of the index domain, validated once where they enter.
//!
//! Every type here parses from the exact textual form the source systems send
//! and refuses anything else with an [`Invalid`] that names the rule broken.
//! Nothing in this module does I/O; the decode stage (`crate::events`) and the
//! projection stage build on these types so that a value that exists is valid.

mod area;
mod ids;
mod invalid;
mod json_str;
mod money;
mod time;

pub use area::{AggregateKind, DataArea, Sensitivity};
pub use ids::{ActionFacet, Cpr, Cvr, Kle, PartyId};
pub use invalid::{Invalid, InvalidCode};
pub use json_str::JsonStr;
pub use money::Oere;
pub use time::{
    ClockTime, DateText, OpenPeriod, Period, Validity, copenhagen_today, date_format, format_date, parse_date,
    parse_instant,
};
