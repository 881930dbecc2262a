//! Data-exchange agreements (dataudvekslingsaftaler): the rules of their
//! lifecycle, as pure functions. Persistence is the store's; every change
//! is written together with its audit record.

use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::catalogue::Catalogue;
use crate::domain::{Cvr, DataArea};

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
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AgreementError(pub String);

fn err(s: impl Into<String>) -> AgreementError {
    AgreementError(s.into())
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

impl Agreement {
    /// A new agreement in status `requested`, checked against the catalogue:
    /// the area must require agreements and list the purpose.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        catalogue: &Catalogue,
        id: &str,
        authority: Cvr,
        area: DataArea,
        purpose_id: u32,
        legal_basis: &str,
        klik_task: Option<&str>,
        valid_from: NaiveDate,
        valid_to: NaiveDate,
    ) -> Result<Agreement, AgreementError> {
        let rest = id.strip_prefix(ID_PREFIX).ok_or_else(|| err(format!("an agreement id starts with {ID_PREFIX}")))?;
        if rest.is_empty()
            || rest.len() > 100
            || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(err("an agreement id ends in 1-100 letters, digits or -_.:"));
        }
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
        })
    }

    pub fn sign(&self, by: &str, at: DateTime<Utc>) -> Result<Agreement, AgreementError> {
        match self.status {
            Status::Requested => Ok(Agreement {
                status: Status::Signed,
                signed_by: Some(by.to_string()),
                signed_at: Some(at),
                ..self.clone()
            }),
            Status::Signed => Err(err("the agreement is already signed")),
            Status::Revoked => Err(err("a revoked agreement can't be signed")),
        }
    }

    pub fn revoke(&self, at: DateTime<Utc>) -> Result<Agreement, AgreementError> {
        match self.status {
            Status::Revoked => Err(err("the agreement is already revoked")),
            _ => Ok(Agreement { status: Status::Revoked, revoked_at: Some(at), ..self.clone() }),
        }
    }

    /// Whether the agreement counts on `day`: signed, not revoked, and
    /// `valid_from <= day < valid_to`.
    pub fn inactive_on(&self, day: NaiveDate) -> Option<Inactive> {
        match self.status {
            Status::Requested => Some(Inactive::NotSigned),
            Status::Revoked => Some(Inactive::Revoked),
            Status::Signed if day < self.valid_from => Some(Inactive::NotYetValid),
            Status::Signed if day >= self.valid_to => Some(Inactive::Expired),
            Status::Signed => None,
        }
    }

    pub fn is_active_on(&self, day: NaiveDate) -> bool {
        self.inactive_on(day).is_none()
    }

    /// Active on `today`, and no longer valid within `days` days.
    pub fn lapses_within(&self, today: NaiveDate, days: u32) -> bool {
        self.is_active_on(today) && self.valid_to <= today + Days::new(u64::from(days))
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
            "urn:ufst:adgangsgrundlag:aftale:aarhus-k53",
            Cvr::parse("55133018").unwrap(),
            DataArea::Forskudsopgoerelse,
            1,
            "Lov om sygedagpenge § 11",
            Some("K53"),
            d("2025-01-01"),
            d("2026-01-01"),
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
        let req =
            |id, area, purpose, from, to| Agreement::request(&c, id, cvr, area, purpose, "§", None, d(from), d(to));
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
    }
}
