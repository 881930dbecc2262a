//! Why a message was refused: the machine-readable codes on dead letters.

use std::fmt;

use super::scrub::scrub_detail;
use crate::domain::{Invalid, InvalidCode};

/// A rejection reason. The `as_str` codes are stored with each dead letter,
/// counted in metrics and listed by `overblik deadletters`; they are a
/// contract with operators, so a code is never renamed or reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    // The message as bytes.
    EmptyPayload,
    MessageTooLarge,
    TruncatedJson,
    MalformedJson,
    NotAnObject,
    // The JSON shape.
    MissingField,
    WrongType,
    UnknownField,
    InvalidField,
    // The CloudEvents envelope.
    BadSpecVersion,
    BadContentType,
    BadAggregateVersion,
    UnknownType,
    UnknownTypeVersion,
    KeyMismatch,
    // Field rules (see `domain::InvalidCode`).
    BadUuid,
    BadCpr,
    BadParty,
    BadCvr,
    BadKle,
    BadActionFacet,
    BadSensitivity,
    BadMoney,
    BadDate,
    BadPeriod,
    BadTime,
    BadYear,
    // Against the aggregate it belongs to (projection stage).
    DuplicateEventId,
    AggregateKindMismatch,
    SubjectMismatch,
    NotACreationEvent,
    InvalidTransition,
    // The store refused the message's data (see `crate::ingest`): the
    // detail carries the SQLSTATE.
    StoreRejected,
    // An operator resolved a parked gap by dropping the waiting events
    // (`overblik parked resolve --drop`).
    DroppedByOperator,
}

impl Reason {
    pub const ALL: [Reason; 34] = [
        Reason::EmptyPayload,
        Reason::MessageTooLarge,
        Reason::TruncatedJson,
        Reason::MalformedJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::WrongType,
        Reason::UnknownField,
        Reason::InvalidField,
        Reason::BadSpecVersion,
        Reason::BadContentType,
        Reason::BadAggregateVersion,
        Reason::UnknownType,
        Reason::UnknownTypeVersion,
        Reason::KeyMismatch,
        Reason::BadUuid,
        Reason::BadCpr,
        Reason::BadParty,
        Reason::BadCvr,
        Reason::BadKle,
        Reason::BadActionFacet,
        Reason::BadSensitivity,
        Reason::BadMoney,
        Reason::BadDate,
        Reason::BadPeriod,
        Reason::BadTime,
        Reason::BadYear,
        Reason::DuplicateEventId,
        Reason::AggregateKindMismatch,
        Reason::SubjectMismatch,
        Reason::NotACreationEvent,
        Reason::InvalidTransition,
        Reason::StoreRejected,
        Reason::DroppedByOperator,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::EmptyPayload => "EMPTY_PAYLOAD",
            Reason::MessageTooLarge => "MESSAGE_TOO_LARGE",
            Reason::TruncatedJson => "TRUNCATED_JSON",
            Reason::MalformedJson => "MALFORMED_JSON",
            Reason::NotAnObject => "NOT_AN_OBJECT",
            Reason::MissingField => "MISSING_FIELD",
            Reason::WrongType => "WRONG_TYPE",
            Reason::UnknownField => "UNKNOWN_FIELD",
            Reason::InvalidField => "INVALID_FIELD",
            Reason::BadSpecVersion => "BAD_SPECVERSION",
            Reason::BadContentType => "BAD_CONTENT_TYPE",
            Reason::BadAggregateVersion => "BAD_AGGREGATE_VERSION",
            Reason::UnknownType => "UNKNOWN_TYPE",
            Reason::UnknownTypeVersion => "UNKNOWN_TYPE_VERSION",
            Reason::KeyMismatch => "KEY_MISMATCH",
            Reason::BadUuid => "BAD_UUID",
            Reason::BadCpr => "BAD_CPR",
            Reason::BadParty => "BAD_PARTY",
            Reason::BadCvr => "BAD_CVR",
            Reason::BadKle => "BAD_KLE",
            Reason::BadActionFacet => "BAD_ACTION_FACET",
            Reason::BadSensitivity => "BAD_SENSITIVITY",
            Reason::BadMoney => "BAD_MONEY",
            Reason::BadDate => "BAD_DATE",
            Reason::BadPeriod => "BAD_PERIOD",
            Reason::BadTime => "BAD_TIME",
            Reason::BadYear => "BAD_YEAR",
            Reason::DuplicateEventId => "DUPLICATE_EVENT_ID",
            Reason::AggregateKindMismatch => "AGGREGATE_KIND_MISMATCH",
            Reason::SubjectMismatch => "SUBJECT_MISMATCH",
            Reason::NotACreationEvent => "NOT_A_CREATION_EVENT",
            Reason::InvalidTransition => "INVALID_TRANSITION",
            Reason::StoreRejected => "STORE_REJECTED",
            Reason::DroppedByOperator => "DROPPED_BY_OPERATOR",
        }
    }

    pub fn parse(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl From<InvalidCode> for Reason {
    fn from(code: InvalidCode) -> Reason {
        match code {
            InvalidCode::Uuid => Reason::BadUuid,
            InvalidCode::Cpr => Reason::BadCpr,
            InvalidCode::Party => Reason::BadParty,
            InvalidCode::Cvr => Reason::BadCvr,
            InvalidCode::Kle => Reason::BadKle,
            InvalidCode::ActionFacet => Reason::BadActionFacet,
            InvalidCode::Sensitivity => Reason::BadSensitivity,
            InvalidCode::Money => Reason::BadMoney,
            InvalidCode::Date => Reason::BadDate,
            InvalidCode::Period => Reason::BadPeriod,
            InvalidCode::Time => Reason::BadTime,
            InvalidCode::Year => Reason::BadYear,
            InvalidCode::Field => Reason::InvalidField,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused message: the reason code and a human-readable detail naming the
/// field and the rule. The detail never contains a personal number nor a
/// value the source sent: [`Rejection::new`] passes every detail through
/// [`scrub_detail`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl AsRef<str>) -> Rejection {
        Rejection { reason, detail: scrub_detail(detail.as_ref()) }
    }

    /// A field rule broken at `field` (an attribute name or a JSON path),
    /// or inside it at the invalid value's own path.
    pub fn invalid(field: &str, invalid: Invalid) -> Rejection {
        let path = if invalid.path.is_empty() { field.to_string() } else { format!("{field}.{}", invalid.path) };
        Rejection::new(invalid.code.into(), format!("{path}: {}", invalid.detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i, "ALL is in declaration order");
            assert!(seen.insert(r.as_str()), "duplicate code {}", r.as_str());
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        for code in InvalidCode::ALL {
            assert_eq!(Reason::from(code).as_str(), code.as_str());
        }
    }
}
