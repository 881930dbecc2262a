//! Access: the decision for one data area, as a pure function of the
//! caller's claims, the catalogue, the authority's agreements and the day.
//!
//! Deny by default (invariant 7): a row leaves only for a verified caller
//! with a role for the area, exactly one catalogued purpose for it and —
//! where the area requires one — an active agreement of the caller's
//! authority for that area and purpose. What the caller then sees is cut by
//! the row filters in [`filter`].

pub mod filter;
pub mod system;

use chrono::NaiveDate;

use crate::agreements::Agreement;
use crate::catalogue::Catalogue;
use crate::domain::DataArea;
use crate::identity::Employee;

/// Why a lookup was refused. The codes are the `reason` of the
/// `google.rpc.ErrorInfo` callers get, and are stored in the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    NoToken,
    BadToken,
    NoRole,
    PurposeMissing,
    PurposeAmbiguous,
    PurposeNotInCatalogue,
    NoAgreement,
    AgreementNotActive,
    /// An agreement's signer is the one who registered it.
    FourEyes,
    /// An administrator named another authority than their own.
    OtherAuthority,
    /// An IT system has no active service agreement with this authority:
    /// none, not approved, rejected, revoked, not yet valid or expired.
    NoServiceAgreement,
    /// An IT system asked for a call, data area or purpose outside its
    /// active service agreement.
    OutsideServiceAgreement,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoToken => "NO_TOKEN",
            DenyReason::BadToken => "BAD_TOKEN",
            DenyReason::NoRole => "NO_ROLE",
            DenyReason::PurposeMissing => "PURPOSE_MISSING",
            DenyReason::PurposeAmbiguous => "PURPOSE_AMBIGUOUS",
            DenyReason::PurposeNotInCatalogue => "PURPOSE_NOT_IN_CATALOGUE",
            DenyReason::NoAgreement => "NO_AGREEMENT",
            DenyReason::AgreementNotActive => "AGREEMENT_NOT_ACTIVE",
            DenyReason::FourEyes => "FOUR_EYES",
            DenyReason::OtherAuthority => "OTHER_AUTHORITY",
            DenyReason::NoServiceAgreement => "NO_SERVICE_AGREEMENT",
            DenyReason::OutsideServiceAgreement => "OUTSIDE_SERVICE_AGREEMENT",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    pub reason: DenyReason,
    pub detail: String,
}

impl Deny {
    pub fn new(reason: DenyReason, detail: impl Into<String>) -> Deny {
        Deny { reason, detail: detail.into() }
    }
}

/// A granted lookup: what it rests on, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    pub area: DataArea,
    pub purpose_id: u32,
    /// The caller's roles that open the area.
    pub roles_used: Vec<String>,
    /// The agreement the lookup rests on, where the area requires one.
    pub agreement_id: Option<String>,
}

/// Decides one data area. `agreements` are the caller's authority's
/// (others' are never considered); `today` is the Copenhagen date.
pub fn decide(
    caller: &Employee,
    catalogue: &Catalogue,
    agreements: &[Agreement],
    today: NaiveDate,
    area: DataArea,
    purpose_ids: &[u32],
) -> Result<Allow, Deny> {
    let entry = catalogue.area(area);
    let roles_used: Vec<String> = entry.roles.iter().filter(|r| caller.has_role(r)).cloned().collect();
    if roles_used.is_empty() {
        return Err(Deny::new(
            DenyReason::NoRole,
            format!("no role for {area}; it needs one of: {}", entry.roles.join(", ")),
        ));
    }
    let purpose_id = match purpose_ids {
        [] => return Err(Deny::new(DenyReason::PurposeMissing, format!("name one purpose for {area}"))),
        [one] => *one,
        _ => {
            return Err(Deny::new(
                DenyReason::PurposeAmbiguous,
                format!("name exactly one purpose for {area}, not several"),
            ));
        }
    };
    if !entry.purposes.contains_key(&purpose_id) {
        return Err(Deny::new(
            DenyReason::PurposeNotInCatalogue,
            format!("purpose {purpose_id} is not in the catalogue for {area}"),
        ));
    }
    let mut agreement_id = None;
    if entry.agreement_required {
        let candidates: Vec<&Agreement> = agreements
            .iter()
            .filter(|a| a.authority == caller.authority && a.area == area && a.purpose_id == purpose_id)
            .collect();
        if candidates.is_empty() {
            return Err(Deny::new(
                DenyReason::NoAgreement,
                format!("authority {} has no agreement for {area}, purpose {purpose_id}", caller.authority),
            ));
        }
        match candidates.iter().find(|a| a.is_active_on(today)) {
            Some(a) => agreement_id = Some(a.id.clone()),
            None => {
                let why =
                    candidates.iter().filter_map(|a| a.inactive_on(today)).map(|i| i.describe()).collect::<Vec<_>>();
                return Err(Deny::new(DenyReason::AgreementNotActive, why.join("; ")));
            }
        }
    }
    Ok(Allow { area, purpose_id, roles_used, agreement_id })
}

#[cfg(test)]
mod tests;
