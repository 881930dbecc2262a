//! Access for IT systems, pure: an IT system's call is turned into the same
//! privileges an employee's token gives — an authority, a KLE constraint, a
//! sensitivity and the catalogue's roles of the data areas in scope — taken
//! from its active service agreement, and then decided by
//! [`super::decide`] and filtered by [`super::filter`] like any other call.
//! So one purpose per area, the data-exchange agreements the catalogue
//! requires and every row filter hold for systems without being written
//! twice.
//!
//! What comes first is the service agreement's own boundary: the system's
//! agreement with the authority of its token must be active today (approved,
//! `valid_from <= today < valid_to`), name the call, and hold the area and
//! the purposes asked for. Anything else is `NO_SERVICE_AGREEMENT` or
//! `OUTSIDE_SERVICE_AGREEMENT`.

use chrono::NaiveDate;

use super::{Allow, Deny, DenyReason, decide};
use crate::agreements::Agreement;
use crate::catalogue::Catalogue;
use crate::domain::DataArea;
use crate::identity::{Employee, SystemCaller};
use crate::lookup::Rpc;
use crate::service_agreements::ServiceAgreement;

/// A system's call within an active agreement: the agreement it rests on
/// and the privileges it gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemGrant<'a> {
    pub agreement: &'a ServiceAgreement,
    pub privileges: Employee,
}

/// The agreement `rpc` rests on for `caller`, or why there is none.
/// `agreements` may hold any system's and authority's: only the caller's
/// own system with its token's authority count. Of several active ones
/// naming the call, the first that holds every area asked for (`asks`).
pub fn grant<'a>(
    caller: &SystemCaller,
    agreements: &'a [ServiceAgreement],
    catalogue: &Catalogue,
    today: NaiveDate,
    rpc: Rpc,
    asks: &[(DataArea, &[u32])],
) -> Result<SystemGrant<'a>, Deny> {
    let naming: Vec<&ServiceAgreement> =
        active(caller, agreements, today)?.into_iter().filter(|a| a.rpcs.contains(&rpc)).collect();
    let agreement: &'a ServiceAgreement = naming
        .iter()
        .copied()
        .find(|a| asks.iter().all(|(area, purposes)| a.covers(*area, purposes)))
        .or(naming.first().copied())
        .ok_or_else(|| {
            Deny::new(
                DenyReason::OutsideServiceAgreement,
                format!("{} is not among the calls of the IT system's service agreement", rpc.name()),
            )
        })?;
    let privileges = privileges(caller, agreement, catalogue)?;
    Ok(SystemGrant { agreement, privileges })
}

/// The caller's own agreements with its token's authority that are active
/// `today`, or why there are none.
fn active<'a>(
    caller: &SystemCaller,
    agreements: &'a [ServiceAgreement],
    today: NaiveDate,
) -> Result<Vec<&'a ServiceAgreement>, Deny> {
    let mine: Vec<&ServiceAgreement> =
        agreements.iter().filter(|a| a.it_system == caller.it_system && a.authority == caller.authority).collect();
    if mine.is_empty() {
        return Err(Deny::new(
            DenyReason::NoServiceAgreement,
            format!("the IT system has no service agreement with authority {}", caller.authority),
        ));
    }
    let active: Vec<&ServiceAgreement> = mine.iter().copied().filter(|a| a.is_active_on(today)).collect();
    if active.is_empty() {
        let mut why: Vec<&str> = mine.iter().filter_map(|a| a.inactive_on(today)).map(|i| i.describe()).collect();
        why.sort_unstable();
        why.dedup();
        return Err(Deny::new(DenyReason::NoServiceAgreement, why.join("; ")));
    }
    Ok(active)
}

/// What an IT system may be notified of (change notices) under one active
/// service agreement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeGrant {
    pub privileges: Employee,
    /// The areas the agreement holds: a notice of another area is not the
    /// system's under this agreement, whatever its roles open.
    pub areas: Vec<DataArea>,
    /// The day the agreement stops (`valid_to`).
    pub ends: NaiveDate,
}

impl NoticeGrant {
    pub fn holds(&self, area: DataArea) -> bool {
        self.areas.contains(&area)
    }
}

/// What an IT system may be notified of: a [`NoticeGrant`] for each of its
/// active agreements with its token's authority — of those whose scope
/// holds `area`, when one is given. Subscribing and watching are no calls an agreement
/// names: a notice carries ids only, and whatever the system then reads
/// about it goes through the calls its agreement does name.
pub fn notice_privileges(
    caller: &SystemCaller,
    agreements: &[ServiceAgreement],
    catalogue: &Catalogue,
    today: NaiveDate,
    area: Option<DataArea>,
) -> Result<Vec<NoticeGrant>, Deny> {
    let holding: Vec<&ServiceAgreement> = active(caller, agreements, today)?
        .into_iter()
        .filter(|a| area.is_none_or(|area| a.scope.areas.contains_key(&area)))
        .collect();
    if holding.is_empty() {
        let area = area.map_or_else(String::new, |a| a.to_string());
        return Err(Deny::new(
            DenyReason::OutsideServiceAgreement,
            format!("{area} is outside the IT system's service agreements"),
        ));
    }
    holding
        .into_iter()
        .map(|a| {
            let areas = a.scope.areas.keys().copied().collect();
            Ok(NoticeGrant { privileges: privileges(caller, a, catalogue)?, areas, ends: a.valid_to })
        })
        .collect()
}

/// The privileges an active agreement gives: its authority, the catalogue's
/// roles of its areas, its KLE patterns and its sensitivity ceiling.
fn privileges(caller: &SystemCaller, a: &ServiceAgreement, catalogue: &Catalogue) -> Result<Employee, Deny> {
    let kle = a
        .scope
        .kle_constraint()
        .map_err(|_| Deny::new(DenyReason::NoServiceAgreement, "the service agreement's KLE scope can't be read"))?;
    let mut roles: Vec<String> = a.scope.areas.keys().flat_map(|area| catalogue.area(*area).roles.clone()).collect();
    roles.sort();
    roles.dedup();
    Ok(Employee {
        user_id: caller.user_id(),
        name: None,
        authority: a.authority,
        roles,
        kle,
        sensitivity: a.scope.sensitivity,
        org_unit: None,
        own_cpr: None,
        it_system: Some(caller.it_system.to_string()),
    })
}

/// Decides one data area of a granted call: inside the agreement's scope
/// (the area, every purpose named), then the rules every caller meets.
pub fn decide_area(
    grant: &SystemGrant<'_>,
    catalogue: &Catalogue,
    data_agreements: &[Agreement],
    today: NaiveDate,
    area: DataArea,
    purpose_ids: &[u32],
) -> Result<Allow, Deny> {
    if !grant.agreement.covers(area, purpose_ids) {
        return Err(Deny::new(
            DenyReason::OutsideServiceAgreement,
            format!("{area}, or a purpose named for it, is outside the IT system's service agreement"),
        ));
    }
    decide(&grant.privileges, catalogue, data_agreements, today, area, purpose_ids)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{Cvr, Kle, Sensitivity};
    use crate::service_agreements::{Answers, Request};

    fn d(s: &str) -> NaiveDate {
        crate::domain::parse_date(s).unwrap()
    }

    const SYSTEM: Uuid = Uuid::from_u128(42);

    fn caller(cvr: &str) -> SystemCaller {
        SystemCaller { it_system: SYSTEM, authority: Cvr::parse(cvr).unwrap() }
    }

    fn agreement(rpcs: &[Rpc], areas: &[(DataArea, Vec<u32>)], approve: bool) -> ServiceAgreement {
        let a = ServiceAgreement::request(
            &Catalogue::built_in(),
            Request {
                id: Uuid::new_v4(),
                it_system: SYSTEM,
                authority: Cvr::parse("55133018").unwrap(),
                justification: "ESDH",
                rpcs,
                areas,
                kle: &["32.18.*".to_string()],
                sensitivity: Sensitivity::Confidential,
                valid_from: d("2026-01-01"),
                valid_to: d("2026-07-01"),
                at: Utc::now(),
            },
        )
        .unwrap();
        if !approve {
            return a;
        }
        let answers = Answers::new(["a", "b", "c", "d", "e"]).unwrap();
        a.approve("approver", answers, Utc::now()).unwrap()
    }

    fn reason(r: Result<SystemGrant<'_>, Deny>) -> DenyReason {
        r.unwrap_err().reason
    }

    #[test]
    fn only_an_active_agreement_of_the_same_system_and_authority_grants() {
        let c = Catalogue::built_in();
        let sager: &[u32] = &[1];
        let asks = [(DataArea::Sager, sager)];
        let approved = [agreement(&[Rpc::ListCases], &[(DataArea::Sager, vec![1])], true)];
        let aarhus = caller("55133018");
        let on = |day: &str, agreements: &[ServiceAgreement], who: &SystemCaller| {
            grant(who, agreements, &c, d(day), Rpc::ListCases, &asks).map(|g| g.agreement.id)
        };
        assert!(on("2026-01-01", &approved, &aarhus).is_ok(), "from is inclusive");
        assert!(on("2026-06-30", &approved, &aarhus).is_ok());
        for day in ["2025-12-31", "2026-07-01"] {
            assert_eq!(on(day, &approved, &aarhus).unwrap_err().reason, DenyReason::NoServiceAgreement, "{day}");
        }
        let requested = [agreement(&[Rpc::ListCases], &[(DataArea::Sager, vec![1])], false)];
        assert_eq!(on("2026-03-01", &requested, &aarhus).unwrap_err().reason, DenyReason::NoServiceAgreement);
        let revoked = [approved[0].revoke("approver", Utc::now()).unwrap()];
        assert_eq!(on("2026-03-01", &revoked, &aarhus).unwrap_err().reason, DenyReason::NoServiceAgreement);
        let odense = caller("35209115");
        assert_eq!(on("2026-03-01", &approved, &odense).unwrap_err().reason, DenyReason::NoServiceAgreement);
        let other = SystemCaller { it_system: Uuid::from_u128(43), ..aarhus.clone() };
        assert_eq!(on("2026-03-01", &approved, &other).unwrap_err().reason, DenyReason::NoServiceAgreement);
        assert_eq!(
            reason(grant(&aarhus, &approved, &c, d("2026-03-01"), Rpc::ListGrants, &asks)),
            DenyReason::OutsideServiceAgreement
        );
    }

    #[test]
    fn the_agreement_gives_the_privileges_of_an_employee_with_its_scope() {
        let c = Catalogue::built_in();
        let agreements = [agreement(&[Rpc::GetCitizenOverview], &[(DataArea::Sager, vec![1])], true)];
        let g = grant(&caller("55133018"), &agreements, &c, d("2026-03-01"), Rpc::GetCitizenOverview, &[]).unwrap();
        let p = &g.privileges;
        assert_eq!(p.user_id, format!("system:{SYSTEM}"));
        assert_eq!(p.roles, ["Se sager"]);
        assert_eq!(p.sensitivity, Sensitivity::Confidential);
        assert!(p.kle.allows(&Kle::parse("32.18.04").unwrap()));
        assert!(!p.kle.allows(&Kle::parse("27.24.04").unwrap()));
        let today = d("2026-03-01");
        assert!(decide_area(&g, &c, &[], today, DataArea::Sager, &[1]).is_ok());
        let outside = |area, purposes: &[u32]| decide_area(&g, &c, &[], today, area, purposes).unwrap_err().reason;
        assert_eq!(outside(DataArea::Sager, &[2]), DenyReason::OutsideServiceAgreement, "a purpose not in scope");
        assert_eq!(outside(DataArea::Ydelser, &[1]), DenyReason::OutsideServiceAgreement, "an area not in scope");
        assert_eq!(outside(DataArea::Sager, &[]), DenyReason::PurposeMissing, "then the rules everyone meets");
    }

    #[test]
    fn data_agreements_still_apply_inside_the_scope() {
        let c = Catalogue::built_in();
        let agreements = [agreement(&[Rpc::ListTaxRecords], &[(DataArea::Forskudsopgoerelse, vec![1])], true)];
        let today = d("2026-03-01");
        let g = grant(&caller("55133018"), &agreements, &c, today, Rpc::ListTaxRecords, &[]).unwrap();
        let r = decide_area(&g, &c, &[], today, DataArea::Forskudsopgoerelse, &[1]).unwrap_err();
        assert_eq!(r.reason, DenyReason::NoAgreement, "K53 is required as for any caller");
    }
}
