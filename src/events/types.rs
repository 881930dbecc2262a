//! The registry of event types: each type's name, body, aggregate kind, data
//! area and role, in one table.
//!
//! A CloudEvents `type` is `dk.overblik.<name>.v<version>`. The table below
//! lists the current version of every type; older versions reach it through
//! [`super::upcast`]. Adding a type is adding a row (and, for a new kind of
//! aggregate, teaching `crate::projection` to apply it).

use serde::Serialize;

use super::body::*;
use crate::domain::{AggregateKind, DataArea};

/// The namespace every type name starts with.
pub const TYPE_PREFIX: &str = "dk.overblik.";

/// The version every type in the table is at.
pub const CURRENT_VERSION: u32 = 1;

/// What an event does to its aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Carries the aggregate's full state: may start it (version 1) and, sent
    /// again later, replaces it.
    FullState,
    /// Changes an aggregate that exists.
    Change,
    /// Deletes the aggregate physically.
    Delete,
}

macro_rules! event_types {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $body:ty, $kind:ident, $area:ident, $role:ident; )*) => {
        /// Every event type at its current version.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $( $(#[$doc])* $variant, )*
        }

        /// The typed `data` of an event.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Body {
            $( $variant($body), )*
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[ $( EventKind::$variant, )* ];

            /// The name between the prefix and the version, e.g. `case.imported`.
            pub const fn name(self) -> &'static str {
                match self { $( EventKind::$variant => $name, )* }
            }

            pub const fn aggregate_kind(self) -> AggregateKind {
                match self { $( EventKind::$variant => AggregateKind::$kind, )* }
            }

            /// The one data area this type's facts belong to.
            pub const fn data_area(self) -> DataArea {
                match self { $( EventKind::$variant => DataArea::$area, )* }
            }

            pub const fn role(self) -> Role {
                match self { $( EventKind::$variant => Role::$role, )* }
            }

            pub fn from_name(name: &str) -> Option<EventKind> {
                match name {
                    $( $name => Some(EventKind::$variant), )*
                    _ => None,
                }
            }
        }

        impl Body {
            pub fn kind(&self) -> EventKind {
                match self { $( Body::$variant(_) => EventKind::$variant, )* }
            }

            /// Parses and validates the body of a current-version event.
            pub(super) fn parse(kind: EventKind, json: &str) -> Result<Body, super::Rejection> {
                match kind {
                    $( EventKind::$variant => super::parse_body::<$body>(json).map(Body::$variant), )*
                }
            }
        }

        impl Body {
            /// The body's own rules, after it parsed.
            pub fn validate(&self) -> Result<(), crate::domain::Invalid> {
                match self { $( Body::$variant(b) => b.validate(), )* }
            }
        }

        /// Parses the body of a current-version `kind` straight from the
        /// envelope's parser; only a JSON object is accepted.
        pub(super) struct BodySeed(pub EventKind);

        impl<'de> serde::de::DeserializeSeed<'de> for BodySeed {
            type Value = Body;
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Body, D::Error> {
                d.deserialize_map(self)
            }
        }

        impl<'de> serde::de::Visitor<'de> for BodySeed {
            type Value = Body;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event body object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Body, A::Error> {
                let d = serde::de::value::MapAccessDeserializer::new(map);
                match self.0 {
                    $( EventKind::$variant => <$body as serde::Deserialize>::deserialize(d).map(Body::$variant), )*
                }
            }
        }

        impl Serialize for Body {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $( Body::$variant(b) => b.serialize(s), )* }
            }
        }
    };
}

event_types! {
    /// A case with its full state and status history (import on connect, or re-import).
    CaseImported = "case.imported", CaseImported, Case, Sager, FullState;
    /// A case's descriptive fields replaced.
    CaseUpdated = "case.updated", CaseUpdated, Case, Sager, Change;
    /// A case moved forward to a later progress status.
    CaseStatusChanged = "case.status_changed", CaseStatusChanged, Case, Sager, Change;
    /// A decided or closed case taken up again: its status goes back.
    CaseReopened = "case.reopened", CaseStatusChanged, Case, Sager, Change;
    CaseDeleted = "case.deleted", Deleted, Case, Sager, Delete;
    /// A document or journal note registered on a case (the case is the aggregate).
    DocumentRegistered = "document.registered", DocumentFields, Case, Sager, Change;
    /// A document's metadata replaced.
    DocumentUpdated = "document.updated", DocumentFields, Case, Sager, Change;
    /// One document removed from its case; the case stays.
    DocumentDeleted = "document.deleted", DocumentDeleted, Case, Sager, Change;

    /// A control case (kontrolsag, UDK-loven §11a) opened.
    ControlCaseOpened = "controlcase.opened", ControlCaseOpened, ControlCase, Kontrolsager, FullState;
    ControlCaseStepRecorded = "controlcase.step_recorded", ControlCaseStepRecorded, ControlCase, Kontrolsager, Change;
    ControlCaseClosed = "controlcase.closed", ControlCaseClosed, ControlCase, Kontrolsager, Change;
    ControlCaseDeleted = "controlcase.deleted", Deleted, ControlCase, Kontrolsager, Delete;

    /// A grant (bevilling) with its granted benefits and payment plans.
    GrantAwarded = "grant.awarded", GrantFields, Grant, Ydelser, FullState;
    GrantChanged = "grant.changed", GrantFields, Grant, Ydelser, Change;
    GrantEnded = "grant.ended", GrantEnded, Grant, Ydelser, Change;
    GrantDeleted = "grant.deleted", Deleted, Grant, Ydelser, Delete;

    /// A payment (økonomisk effektuering) with its lines.
    PaymentEffectuated = "payment.effectuated", PaymentFields, Payment, Ydelser, FullState;
    PaymentCorrected = "payment.corrected", PaymentFields, Payment, Ydelser, Change;
    PaymentDeleted = "payment.deleted", Deleted, Payment, Ydelser, Delete;

    /// A citizen registered at a job centre.
    EmploymentRegistered = "employment.registered", EmploymentRegistered, Employment, Beskaeftigelse, FullState;
    EmploymentDeregistered = "employment.deregistered", EmploymentDeregistered, Employment, Beskaeftigelse, Change;
    EmploymentTargetGroupAssigned = "employment.target_group_assigned", TargetGroupAssigned, Employment, Beskaeftigelse, Change;
    EmploymentActivityStarted = "employment.activity_started", ActivityStarted, Employment, Beskaeftigelse, Change;
    EmploymentActivityEnded = "employment.activity_ended", ActivityEnded, Employment, Beskaeftigelse, Change;
    EmploymentDeleted = "employment.deleted", Deleted, Employment, Beskaeftigelse, Delete;

    /// A monthly income report (eIndkomst); a later version corrects it.
    IncomeReported = "income.reported", IncomeReported, TaxRecord, Indkomst, FullState;
    IncomeDeleted = "income.deleted", Deleted, TaxRecord, Indkomst, Delete;
    AnnualAssessmentIssued = "annual_assessment.issued", AnnualAssessmentIssued, TaxRecord, Aarsopgoerelse, FullState;
    AnnualAssessmentDeleted = "annual_assessment.deleted", Deleted, TaxRecord, Aarsopgoerelse, Delete;
    /// A preliminary assessment; a newer one for the same income year supersedes it.
    PreliminaryAssessmentIssued = "preliminary_assessment.issued", PreliminaryAssessmentIssued, TaxRecord, Forskudsopgoerelse, FullState;
    PreliminaryAssessmentDeleted = "preliminary_assessment.deleted", Deleted, TaxRecord, Forskudsopgoerelse, Delete;
    PersonControlRecorded = "person_control.recorded", PersonControlRecorded, TaxRecord, Personkontroloplysninger, FullState;
    PersonControlDeleted = "person_control.deleted", Deleted, TaxRecord, Personkontroloplysninger, Delete;
    DigitalLogbookRecorded = "digital_logbook.recorded", DigitalLogbookRecorded, TaxRecord, DigitalLogbog, FullState;
    DigitalLogbookDeleted = "digital_logbook.deleted", Deleted, TaxRecord, DigitalLogbog, Delete;
    /// A self-employed citizen's business for an income year (SAPA 3.18); a later report replaces it.
    SelfEmploymentReported = "self_employment.reported", SelfEmploymentReported, TaxRecord, SelvstaendigVirksomhed, FullState;
    SelfEmploymentDeleted = "self_employment.deleted", Deleted, TaxRecord, SelvstaendigVirksomhed, Delete;
    /// A pension scheme's contributions and holdings for an income year (SAPA 3.18); a later report replaces it.
    PensionRightsReported = "pension_rights.reported", PensionRightsReported, TaxRecord, Pensionsrettigheder, FullState;
    PensionRightsDeleted = "pension_rights.deleted", Deleted, TaxRecord, Pensionsrettigheder, Delete;
}

impl EventKind {
    /// The full CloudEvents `type` of this kind at `version`.
    pub fn type_name(self, version: u32) -> String {
        format!("{TYPE_PREFIX}{}.v{version}", self.name())
    }
}

/// Splits `dk.overblik.<name>.v<n>` into name and version.
///
/// The version is the run of digits the type ends with, which must follow
/// the last `.v`: the same split as at the last `.v`, found with one
/// backward scan instead of a substring search (it runs twice on every
/// message).
pub fn split_type(ty: &str) -> Option<(&str, u32)> {
    let rest = ty.strip_prefix(TYPE_PREFIX)?;
    let digits = rest.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (head, version) = rest.split_at(rest.len() - digits);
    let name = head.strip_suffix(".v")?;
    if version.is_empty() || version.len() > 4 {
        return None;
    }
    Some((name, version.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_names_itself_uniquely_and_maps_to_one_area() {
        let mut names = std::collections::HashSet::new();
        for &k in EventKind::ALL {
            assert!(names.insert(k.name()));
            assert_eq!(EventKind::from_name(k.name()), Some(k));
            assert_eq!(split_type(&k.type_name(1)), Some((k.name(), 1)));
        }
        // Every aggregate kind has exactly one delete type and at least one full-state type.
        for agg in AggregateKind::ALL {
            let of_kind: Vec<_> = EventKind::ALL.iter().filter(|k| k.aggregate_kind() == agg).collect();
            assert!(of_kind.iter().any(|k| k.role() == Role::FullState), "{agg}");
        }
    }

    #[test]
    fn type_strings_are_strict() {
        assert_eq!(split_type("dk.overblik.case.imported.v12"), Some(("case.imported", 12)));
        assert_eq!(split_type("dk.overblik.a.v1.v2"), Some(("a.v1", 2)), "the version follows the last .v");
        assert_eq!(split_type("dk.overblik..v0001"), Some(("", 1)));
        for bad in [
            "dk.overblik.case.imported",
            "case.imported.v1",
            "dk.overblik.case.imported.vx",
            "dk.overblik.case.imported.v",
            "dk.overblik.case.imported.v12345",
            "dk.overblik.case.imported.v1x",
            "dk.overblik.case.imported1",
            "dk.overblik.v1",
        ] {
            assert_eq!(split_type(bad), None, "{bad}");
        }
    }
}
