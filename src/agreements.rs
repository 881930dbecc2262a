//! Data-exchange agreements (dataudvekslingsaftaler): the rules of their
//! lifecycle, as pure functions. Persistence is the store's; every change
//! is written together with its audit record.

use chrono::{DateTime, NaiveDate, Utc};

use crate::catalogue::Catalogue;
use crate::domain::{Cvr, DataArea, Validity};

pub const ID_PREFIX: &str = "urn:ufst:adgangsgrundlag:aftale:";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Requested,
    Signed,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Signed => "signed",
            Status::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [Status::Requested, Status::Signed, Status::Revoked].into_iter().find(|x| x.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreement {
    pub id: String,
    pub authority: Cvr,
    pub area: DataArea,
    pub purpose_id: u32,
    pub legal_basis: String,
    pub klik_task: Option<String>,
    pub status: Status,
    /// First day of validity.
    pub valid_from: NaiveDate,
    /// First day no longer valid (exclusive).
    pub valid_to: NaiveDate,
    pub signed_by: Option<String>,
    pub signed_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who registered it (the token's `sub`, or `cli:<user>`); the signer
    /// must be someone else. `None` for agreements older than the rule.
    pub registered_by: Option<String>,
}

/// What a new agreement is asked for with.
#[derive(Clone, Debug)]
pub struct Proposal<'a> {
    pub id: &'a str,
    pub authority: Cvr,
    pub area: DataArea,
    pub purpose_id: u32,
    pub legal_basis: &'a str,
    pub klik_task: Option<&'a str>,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
    pub registered_by: &'a str,
}

/// Why an agreement can't be made or changed. The texts are fixed: they
/// never repeat what was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgreementError {
    /// The proposal breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// The agreement's status doesn't allow the change.
    #[error("{0}")]
    State(&'static str),
    /// The one who registered an agreement may not sign it (four eyes).
    #[error("an agreement is signed by someone other than the one who registered it")]
    SameSigner,
}

fn err(s: impl Into<String>) -> AgreementError {
    AgreementError::Invalid(s.into())
}

/// Why an agreement doesn't count on a day, if it doesn't.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inactive {
    NotSigned,
    Revoked,
    NotYetValid,
    Expired,
}

impl Inactive {
    pub fn describe(self) -> &'static str {
        match self {
            Inactive::NotSigned => "the agreement is not signed",
            Inactive::Revoked => "the agreement is revoked",
            Inactive::NotYetValid => "the agreement is not valid yet",
            Inactive::Expired => "the agreement has expired",
        }
    }
}

/// Whether `id` is an agreement id: the prefix, then 1-100 ASCII letters,
/// digits or `-_.:`.
pub fn check_id(id: &str) -> Result<(), AgreementError> {
    let rest = id.strip_prefix(ID_PREFIX).ok_or_else(|| err(format!("an agreement id starts with {ID_PREFIX}")))?;
    if rest.is_empty() || rest.len() > 100 || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
        return Err(err("an agreement id ends in 1-100 letters, digits or -_.:"));
    }
    Ok(())
}

impl Agreement {
    /// A new agreement in status `requested`, checked against the catalogue:
    /// the area must require agreements and list the purpose.
    pub fn request(catalogue: &Catalogue, p: Proposal<'_>) -> Result<Agreement, AgreementError> {
        let Proposal { id, authority, area, purpose_id, legal_basis, klik_task, valid_from, valid_to, registered_by } =
            p;
        check_id(id)?;
        let entry = catalogue.area(area);
        if !entry.agreement_required {
            return Err(err(format!("data area {area} needs no agreement")));
        }
        if !entry.purposes.contains_key(&purpose_id) {
            return Err(err(format!("purpose {purpose_id} is not in the catalogue for {area}")));
        }
        if legal_basis.trim().is_empty() || legal_basis.len() > 1024 {
            return Err(err("the legal basis is required (at most 1024 characters)"));
        }
        if let Some(k) = klik_task
            && !(k.len() == 3 && k.starts_with('K') && k[1..].bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err("a KLIK task is Knn, e.g. K53"));
        }
        if valid_from >= valid_to {
            return Err(err("valid_from must be before valid_to (which is exclusive)"));
        }
        if registered_by.trim().is_empty() {
            return Err(err("an agreement is registered by someone"));
        }
        Ok(Agreement {
            id: id.to_string(),
            authority,
            area,
            purpose_id,
            legal_basis: legal_basis.to_string(),
            klik_task: klik_task.map(str::to_string),
            status: Status::Requested,
            valid_from,
            valid_to,
            signed_by: None,
            signed_at: None,
            revoked_at: None,
            registered_by: Some(registered_by.to_string()),
        })
    }

    /// Signs as `by`, who must not be the one who registered it.
    pub fn sign(&self, by: &str, at: DateTime<Utc>) -> Result<Agreement, AgreementError> {
        if self.registered_by.as_deref() == Some(by) {
            return Err(AgreementError::SameSigner);
        }
        match self.status {
            Status::Requested => Ok(Agreement {
                status: Status::Signed,
                signed_by: Some(by.to_string()),
                signed_at: Some(at),
                ..self.clone()
            }),
            Status::Signed => Err(AgreementError::State("the agreement is already signed")),
            Status::Revoked => Err(AgreementError::State("a revoked agreement can't be signed")),
        }
    }

    pub fn revoke(&self, at: DateTime<Utc>) -> Result<Agreement, AgreementError> {
        match self.status {
            Status::Revoked => Err(AgreementError::State("the agreement is already revoked")),
            _ => Ok(Agreement { status: Status::Revoked, revoked_at: Some(at), ..self.clone() }),
        }
    }

    /// Whether the agreement counts on `day`: signed, not revoked, and
    /// `valid_from <= day < valid_to`.
    pub fn inactive_on(&self, day: NaiveDate) -> Option<Inactive> {
        match self.status {
            Status::Requested => Some(Inactive::NotSigned),
            Status::Revoked => Some(Inactive::Revoked),
            Status::Signed => match Validity::on(day, self.valid_from, self.valid_to) {
                Validity::NotYet => Some(Inactive::NotYetValid),
                Validity::Ended => Some(Inactive::Expired),
                Validity::Valid => None,
            },
        }
    }

    pub fn is_active_on(&self, day: NaiveDate) -> bool {
        self.inactive_on(day).is_none()
    }

    /// Active on `today`, and no longer valid within `days` days (a horizon
    /// past the calendar's end reaches every agreement).
    pub fn lapses_within(&self, today: NaiveDate, days: u32) -> bool {
        self.is_active_on(today) && Validity::ends_within(today, self.valid_to, days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        crate::domain::parse_date(s).unwrap()
    }

    fn k53() -> Agreement {
        Agreement::request(
            &Catalogue::built_in(),
            Proposal {
                id: "urn:ufst:adgangsgrundlag:aftale:aarhus-k53",
                authority: Cvr::parse("55133018").unwrap(),
                area: DataArea::Forskudsopgoerelse,
                purpose_id: 1,
                legal_basis: "Lov om sygedagpenge § 11",
                klik_task: Some("K53"),
                valid_from: d("2025-01-01"),
                valid_to: d("2026-01-01"),
                registered_by: "registrar",
            },
        )
        .unwrap()
    }

    #[test]
    fn validity_is_from_inclusive_to_exclusive() {
        let a = k53().sign("signer", Utc::now()).unwrap();
        assert_eq!(a.inactive_on(d("2024-12-31")), Some(Inactive::NotYetValid));
        assert!(a.is_active_on(d("2025-01-01")));
        assert!(a.is_active_on(d("2025-12-31")));
        assert_eq!(a.inactive_on(d("2026-01-01")), Some(Inactive::Expired));
    }

    #[test]
    fn lifecycle_is_requested_signed_revoked() {
        let a = k53();
        assert_eq!(a.inactive_on(d("2025-06-01")), Some(Inactive::NotSigned));
        let signed = a.sign("signer", Utc::now()).unwrap();
        assert!(signed.sign("again", Utc::now()).is_err());
        let revoked = signed.revoke(Utc::now()).unwrap();
        assert_eq!(revoked.inactive_on(d("2025-06-01")), Some(Inactive::Revoked));
        assert!(revoked.revoke(Utc::now()).is_err());
        assert!(revoked.sign("late", Utc::now()).is_err());
    }

    #[test]
    fn requests_are_checked_against_the_catalogue() {
        let c = Catalogue::built_in();
        let cvr = Cvr::parse("55133018").unwrap();
        let req = |id, area, purpose_id, from, to| {
            Agreement::request(
                &c,
                Proposal {
                    id,
                    authority: cvr,
                    area,
                    purpose_id,
                    legal_basis: "§",
                    klik_task: None,
                    valid_from: d(from),
                    valid_to: d(to),
                    registered_by: "registrar",
                },
            )
        };
        let ok = "urn:ufst:adgangsgrundlag:aftale:x1";
        assert!(req(ok, DataArea::Sager, 1, "2025-01-01", "2026-01-01").is_err(), "sager needs no agreement");
        assert!(req(ok, DataArea::Forskudsopgoerelse, 99, "2025-01-01", "2026-01-01").is_err());
        assert!(req(ok, DataArea::Forskudsopgoerelse, 1, "2026-01-01", "2026-01-01").is_err());
        assert!(req("aftale-1", DataArea::Forskudsopgoerelse, 1, "2025-01-01", "2026-01-01").is_err());
        assert!(req(ok, DataArea::Forskudsopgoerelse, 1, "2025-01-01", "2026-01-01").is_ok());
    }

    #[test]
    fn lapsing_means_active_and_ending_soon() {
        let a = k53().sign("signer", Utc::now()).unwrap();
        assert!(a.lapses_within(d("2025-12-01"), 31));
        assert!(!a.lapses_within(d("2025-12-01"), 30));
        assert!(!a.revoke(Utc::now()).unwrap().lapses_within(d("2025-12-01"), 60));
        assert!(a.lapses_within(d("2025-12-01"), u32::MAX), "a horizon past the calendar's end doesn't overflow");
    }

    #[test]
    fn the_one_who_registered_can_not_sign() {
        let a = k53();
        assert_eq!(a.sign("registrar", Utc::now()).unwrap_err(), AgreementError::SameSigner);
        assert_eq!(a.sign("signer", Utc::now()).unwrap().signed_by.as_deref(), Some("signer"));
    }
}
