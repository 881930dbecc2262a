//! Service agreements (serviceaftaler): an IT system's access to the
//! caseworkers' calls, approved by its authority. The rules of their
//! lifecycle, as pure functions; the store persists them, `api` and `cli`
//! change them, `access::system` turns an active one into privileges.
//!
//! The system requests an agreement (no access yet): the calls it needs,
//! the data scope (data areas with their purposes, KLE subjects, a
//! sensitivity ceiling), the period `[from, to)` and why. The authority's
//! approver approves it, answering five questions on the record, or rejects
//! it with a reason. It gives access only while approved and inside its
//! period; it can be revoked, and it lapses by itself at its end.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Days, NaiveDate, Utc};
use uuid::Uuid;

use crate::audit::stamp;
use crate::catalogue::Catalogue;
use crate::domain::{Cvr, DataArea, Sensitivity, Validity};
use crate::identity::KleConstraint;
use crate::ingest::parked::Note;
use crate::lookup::Rpc;

// Instants are kept to the microsecond (`audit::stamp`), as both stores
// hold them: what is stored reads back as what was decided.

/// The longest free text (justification, an answer, a reason), in
/// characters.
pub const TEXT_MAX_CHARS: usize = 1000;
/// KLE patterns a scope holds at most.
pub const KLE_MAX: usize = 64;
/// The longest period an agreement may run: three years. A longer need is
/// a new request, judged again.
pub const MAX_PERIOD_DAYS: u64 = 3 * 366;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Requested,
    Approved,
    Rejected,
    Revoked,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Requested, Status::Approved, Status::Rejected, Status::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What a system may see (dataafgrænsning): areas with the purposes it may
/// name for each, the KLE subjects (patterns as in a token's constraint:
/// `32.18.04`, `32.18.*`, `32.*`, `*`) and the highest sensitivity.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Scope {
    pub areas: BTreeMap<DataArea, BTreeSet<u32>>,
    pub kle: Vec<String>,
    pub sensitivity: Sensitivity,
}

impl Scope {
    /// The KLE constraint the scope's patterns make (checked when the
    /// agreement was requested).
    pub fn kle_constraint(&self) -> Result<KleConstraint, String> {
        KleConstraint::parse(&self.kle)
    }
}

/// The approver's five answers, each on the record with the approval.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Answers {
    /// 1. Is it clear who gets access, for how long and why?
    pub who_how_long_why: String,
    /// 2. Does the system need exactly these services?
    pub services_needed: String,
    /// 3. Is the data scope right?
    pub data_scope: String,
    /// 4. Does it need access for the whole period?
    pub whole_period: String,
    /// 5. Will the agreement make sense to a colleague later?
    pub understandable_later: String,
}

impl Answers {
    /// The five answers, each a non-empty line of at most
    /// [`TEXT_MAX_CHARS`] characters.
    pub fn new(answers: [&str; 5]) -> Result<Answers, ServiceAgreementError> {
        const WHAT: [&str; 5] = [
            "answer 1 (who, how long, why)",
            "answer 2 (the services needed)",
            "answer 3 (the data scope)",
            "answer 4 (the whole period)",
            "answer 5 (clear to a colleague later)",
        ];
        let mut out = Vec::with_capacity(5);
        for (text, what) in answers.into_iter().zip(WHAT) {
            out.push(text_of(text, what)?);
        }
        let [a, b, c, d, e]: [String; 5] = out.try_into().expect("five answers");
        Ok(Answers { who_how_long_why: a, services_needed: b, data_scope: c, whole_period: d, understandable_later: e })
    }
}

/// The approver's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decided {
    Approved { by: String, at: DateTime<Utc>, answers: Answers },
    Rejected { by: String, at: DateTime<Utc>, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAgreement {
    pub id: Uuid,
    pub it_system: Uuid,
    pub authority: Cvr,
    pub justification: String,
    /// The calls the system may make.
    pub rpcs: BTreeSet<Rpc>,
    pub scope: Scope,
    /// First day of validity.
    pub valid_from: NaiveDate,
    /// First day no longer valid (exclusive).
    pub valid_to: NaiveDate,
    pub status: Status,
    pub requested_at: DateTime<Utc>,
    pub decided: Option<Decided>,
    pub revoked_by: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What a system asks for.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub id: Uuid,
    pub it_system: Uuid,
    pub authority: Cvr,
    pub justification: &'a str,
    pub rpcs: &'a [Rpc],
    pub areas: &'a [(DataArea, Vec<u32>)],
    pub kle: &'a [String],
    pub sensitivity: Sensitivity,
    pub valid_from: NaiveDate,
    pub valid_to: NaiveDate,
    pub at: DateTime<Utc>,
}

/// Why an agreement can't be made or changed. The texts are fixed or name
/// a rule, an area or a call: they never repeat free text that was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceAgreementError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    State(&'static str),
    /// Only an employee of the authority decides; the system never decides
    /// on its own request.
    #[error("the requesting system can't decide on its own service agreement")]
    OwnRequest,
}

fn invalid(s: impl Into<String>) -> ServiceAgreementError {
    ServiceAgreementError::Invalid(s.into())
}

fn text_of(text: &str, what: &'static str) -> Result<String, ServiceAgreementError> {
    Note::new(text, what, TEXT_MAX_CHARS).map(|n| n.as_str().to_string()).map_err(|e| invalid(e.to_string()))
}

/// Why an agreement gives no access on a day, if it doesn't.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inactive {
    NotApproved,
    Rejected,
    Revoked,
    NotYetValid,
    Expired,
}

impl Inactive {
    pub fn describe(self) -> &'static str {
        match self {
            Inactive::NotApproved => "the service agreement is not approved",
            Inactive::Rejected => "the service agreement was rejected",
            Inactive::Revoked => "the service agreement is revoked",
            Inactive::NotYetValid => "the service agreement is not valid yet",
            Inactive::Expired => "the service agreement has expired",
        }
    }
}

impl ServiceAgreement {
    /// A new agreement in status `requested`, checked against the catalogue
    /// and its own sense: every area and purpose catalogued, every call
    /// reaching an area in scope and every area reached by a call (the
    /// system asks for exactly what it uses), a KLE scope, a period of at
    /// most [`MAX_PERIOD_DAYS`].
    pub fn request(catalogue: &Catalogue, r: Request<'_>) -> Result<ServiceAgreement, ServiceAgreementError> {
        let justification = text_of(r.justification, "the justification")?;
        if r.rpcs.is_empty() {
            return Err(invalid("name the calls the system needs"));
        }
        let rpcs: BTreeSet<Rpc> = r.rpcs.iter().copied().collect();
        if r.areas.is_empty() {
            return Err(invalid("name the data areas the system needs"));
        }
        let mut areas: BTreeMap<DataArea, BTreeSet<u32>> = BTreeMap::new();
        for (area, purposes) in r.areas {
            if areas.contains_key(area) {
                return Err(invalid(format!("data area {area} is named twice")));
            }
            let entry = catalogue.area(*area);
            if purposes.is_empty() {
                return Err(invalid(format!("name the purposes for {area}")));
            }
            if let Some(p) = purposes.iter().find(|p| !entry.purposes.contains_key(*p)) {
                return Err(invalid(format!("purpose {p} is not in the catalogue for {area}")));
            }
            areas.insert(*area, purposes.iter().copied().collect());
        }
        if let Some(rpc) = rpcs.iter().find(|rpc| !rpc.areas().iter().any(|a| areas.contains_key(a))) {
            return Err(invalid(format!("{} reads none of the data areas in scope", rpc.name())));
        }
        if let Some(area) = areas.keys().find(|a| !rpcs.iter().any(|rpc| rpc.areas().contains(*a))) {
            return Err(invalid(format!("no call named reads {area}")));
        }
        if r.kle.is_empty() || r.kle.len() > KLE_MAX {
            return Err(invalid(format!("name 1-{KLE_MAX} KLE patterns (dd.dd.dd, dd.dd.*, dd.* or *)")));
        }
        KleConstraint::parse(r.kle).map_err(|_| invalid("a KLE pattern is not dd.dd.dd, dd.dd.*, dd.* or *"))?;
        if r.valid_from >= r.valid_to {
            return Err(invalid("valid_from must be before valid_to (which is exclusive)"));
        }
        let longest = r.valid_from.checked_add_days(Days::new(MAX_PERIOD_DAYS)).unwrap_or(NaiveDate::MAX);
        if r.valid_to > longest {
            return Err(invalid(format!("a service agreement runs at most {MAX_PERIOD_DAYS} days")));
        }
        Ok(ServiceAgreement {
            id: r.id,
            it_system: r.it_system,
            authority: r.authority,
            justification,
            rpcs,
            scope: Scope { areas, kle: r.kle.to_vec(), sensitivity: r.sensitivity },
            valid_from: r.valid_from,
            valid_to: r.valid_to,
            status: Status::Requested,
            requested_at: stamp(r.at),
            decided: None,
            revoked_by: None,
            revoked_at: None,
        })
    }

    /// The system's user id, as its token and the audit log name it.
    fn system_user(&self) -> String {
        format!("{}{}", crate::identity::SYSTEM_SUBJECT_PREFIX, self.it_system)
    }

    fn decidable_by(&self, by: &str) -> Result<(), ServiceAgreementError> {
        if by == self.system_user() {
            return Err(ServiceAgreementError::OwnRequest);
        }
        match self.status {
            Status::Requested => Ok(()),
            Status::Approved => Err(ServiceAgreementError::State("the service agreement is already approved")),
            Status::Rejected => Err(ServiceAgreementError::State("the service agreement was rejected")),
            Status::Revoked => Err(ServiceAgreementError::State("the service agreement is revoked")),
        }
    }

    /// Approves as `by` (an approver of the agreement's authority; the
    /// caller checks the role and the authority), with the five answers.
    pub fn approve(&self, by: &str, answers: Answers, at: DateTime<Utc>) -> Result<Self, ServiceAgreementError> {
        self.decidable_by(by)?;
        Ok(ServiceAgreement {
            status: Status::Approved,
            decided: Some(Decided::Approved { by: by.to_string(), at: stamp(at), answers }),
            ..self.clone()
        })
    }

    /// Rejects as `by`, with a reason.
    pub fn reject(&self, by: &str, reason: &str, at: DateTime<Utc>) -> Result<Self, ServiceAgreementError> {
        self.decidable_by(by)?;
        let reason = text_of(reason, "the reason")?;
        Ok(ServiceAgreement {
            status: Status::Rejected,
            decided: Some(Decided::Rejected { by: by.to_string(), at: stamp(at), reason }),
            ..self.clone()
        })
    }

    /// Revokes a requested or approved agreement: from now on it opens
    /// nothing.
    pub fn revoke(&self, by: &str, at: DateTime<Utc>) -> Result<Self, ServiceAgreementError> {
        match self.status {
            Status::Requested | Status::Approved => Ok(ServiceAgreement {
                status: Status::Revoked,
                revoked_by: Some(by.to_string()),
                revoked_at: Some(stamp(at)),
                ..self.clone()
            }),
            Status::Rejected => Err(ServiceAgreementError::State("a rejected service agreement can't be revoked")),
            Status::Revoked => Err(ServiceAgreementError::State("the service agreement is already revoked")),
        }
    }

    /// Why the agreement gives no access on `day`, if it doesn't: it must
    /// be approved, and `valid_from <= day < valid_to`.
    pub fn inactive_on(&self, day: NaiveDate) -> Option<Inactive> {
        match self.status {
            Status::Requested => Some(Inactive::NotApproved),
            Status::Rejected => Some(Inactive::Rejected),
            Status::Revoked => Some(Inactive::Revoked),
            Status::Approved => match Validity::on(day, self.valid_from, self.valid_to) {
                Validity::NotYet => Some(Inactive::NotYetValid),
                Validity::Ended => Some(Inactive::Expired),
                Validity::Valid => None,
            },
        }
    }

    pub fn is_active_on(&self, day: NaiveDate) -> bool {
        self.inactive_on(day).is_none()
    }

    /// Active on `today`, and no longer valid within `days` days.
    pub fn lapses_within(&self, today: NaiveDate, days: u32) -> bool {
        self.is_active_on(today) && Validity::ends_within(today, self.valid_to, days)
    }

    /// Whether `area` with the named purposes lies in the scope: the area,
    /// and every purpose named for it.
    pub fn covers(&self, area: DataArea, purpose_ids: &[u32]) -> bool {
        self.scope.areas.get(&area).is_some_and(|allowed| purpose_ids.iter().all(|p| allowed.contains(p)))
    }
}

/// One call a system made, as its audit record tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Use {
    pub rpc: Rpc,
    pub area: Option<DataArea>,
    /// Whether the call was allowed.
    pub allowed: bool,
}

/// What a system did with an agreement against what it may do: the calls
/// and areas it used (allowed calls), those it never used, and how many of
/// its calls were refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Review {
    pub used_rpcs: BTreeMap<&'static str, u64>,
    pub unused_rpcs: Vec<&'static str>,
    pub used_areas: BTreeMap<&'static str, u64>,
    pub unused_areas: Vec<&'static str>,
    pub refused: u64,
}

/// Reviews `a` against the system's calls in the period looked at.
pub fn review(a: &ServiceAgreement, uses: impl IntoIterator<Item = Use>) -> Review {
    let mut r = Review::default();
    for u in uses {
        r.count(u);
    }
    r.finish(a)
}

impl Review {
    /// Counts one call. A review is built a page of the log at a time, so
    /// what it holds is bounded by the agreement's calls and areas, not by
    /// how many calls the system made.
    pub fn count(&mut self, u: Use) {
        if !u.allowed {
            self.refused += 1;
            return;
        }
        *self.used_rpcs.entry(u.rpc.name()).or_default() += 1;
        if let Some(area) = u.area {
            *self.used_areas.entry(area.as_str()).or_default() += 1;
        }
    }

    /// Names the calls and areas `a` allows that were never used.
    pub fn finish(mut self, a: &ServiceAgreement) -> Review {
        self.unused_rpcs = a.rpcs.iter().map(|x| x.name()).filter(|n| !self.used_rpcs.contains_key(n)).collect();
        self.unused_areas =
            a.scope.areas.keys().map(|x| x.as_str()).filter(|n| !self.used_areas.contains_key(n)).collect();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        crate::domain::parse_date(s).unwrap()
    }

    const SYSTEM: Uuid = Uuid::from_u128(0x7d9f8b1e_2c3a_4b5d_8e6f_0a1b2c3d4e5f);

    fn request(rpcs: &[Rpc], areas: &[(DataArea, Vec<u32>)]) -> Result<ServiceAgreement, ServiceAgreementError> {
        ServiceAgreement::request(
            &Catalogue::built_in(),
            Request {
                id: Uuid::from_u128(1),
                it_system: SYSTEM,
                authority: Cvr::parse("55133018").unwrap(),
                justification: "ESDH shows the citizen's cases beside the municipality's own",
                rpcs,
                areas,
                kle: &["32.*".to_string()],
                sensitivity: Sensitivity::Confidential,
                valid_from: d("2026-01-01"),
                valid_to: d("2026-07-01"),
                at: Utc::now(),
            },
        )
    }

    fn esdh() -> ServiceAgreement {
        request(&[Rpc::ListCases, Rpc::GetCase], &[(DataArea::Sager, vec![1])]).unwrap()
    }

    fn answers() -> Answers {
        Answers::new(["ESDH, six months, case overview", "yes", "sager, purpose 1, KLE 32", "yes", "yes"]).unwrap()
    }

    #[test]
    fn active_only_while_approved_and_inside_from_inclusive_to_exclusive() {
        let a = esdh();
        assert_eq!(a.inactive_on(d("2026-03-01")), Some(Inactive::NotApproved));
        let approved = a.approve("approver@aarhus", answers(), Utc::now()).unwrap();
        assert_eq!(approved.inactive_on(d("2025-12-31")), Some(Inactive::NotYetValid));
        assert!(approved.is_active_on(d("2026-01-01")));
        assert!(approved.is_active_on(d("2026-06-30")));
        assert_eq!(approved.inactive_on(d("2026-07-01")), Some(Inactive::Expired));
        let revoked = approved.revoke("approver@aarhus", Utc::now()).unwrap();
        assert_eq!(revoked.inactive_on(d("2026-03-01")), Some(Inactive::Revoked));
        assert!(revoked.revoke("x", Utc::now()).is_err());
        assert!(revoked.approve("x", answers(), Utc::now()).is_err());
        let rejected = a.reject("approver@aarhus", "too wide", Utc::now()).unwrap();
        assert_eq!(rejected.inactive_on(d("2026-03-01")), Some(Inactive::Rejected));
        assert!(rejected.approve("other", answers(), Utc::now()).is_err());
        assert!(rejected.revoke("other", Utc::now()).is_err());
        assert!(approved.approve("other", answers(), Utc::now()).is_err(), "approved once");
    }

    #[test]
    fn the_system_never_decides_its_own_request() {
        let a = esdh();
        let me = format!("system:{SYSTEM}");
        assert_eq!(a.approve(&me, answers(), Utc::now()).unwrap_err(), ServiceAgreementError::OwnRequest);
        assert_eq!(a.reject(&me, "no", Utc::now()).unwrap_err(), ServiceAgreementError::OwnRequest);
    }

    #[test]
    fn answers_and_texts_are_non_empty_bounded_lines() {
        assert!(Answers::new(["a", "b", "c", "d", ""]).is_err());
        assert!(Answers::new(["a", "b\u{0}", "c", "d", "e"]).is_err());
        assert!(Answers::new(["a", "b", "c", &"x".repeat(TEXT_MAX_CHARS + 1), "e"]).is_err());
        assert!(Answers::new(["a", "b", "0101801234", "d", "e"]).is_err(), "no personal number");
        assert!(esdh().reject("approver", " ", Utc::now()).is_err());
    }

    #[test]
    fn requests_name_exactly_what_they_use() {
        let sager = || vec![(DataArea::Sager, vec![1])];
        assert!(request(&[], &sager()).is_err());
        assert!(request(&[Rpc::ListCases], &[]).is_err());
        assert!(request(&[Rpc::ListCases, Rpc::ListGrants], &sager()).is_err(), "ListGrants reads nothing in scope");
        assert!(
            request(&[Rpc::ListCases], &[(DataArea::Sager, vec![1]), (DataArea::Ydelser, vec![1])]).is_err(),
            "no call reads ydelser"
        );
        assert!(request(&[Rpc::ListCases], &[(DataArea::Sager, vec![99])]).is_err());
        assert!(request(&[Rpc::ListCases], &[(DataArea::Sager, vec![])]).is_err());
        assert!(request(&[Rpc::ListCases], &[(DataArea::Sager, vec![1]), (DataArea::Sager, vec![2])]).is_err());
        let overview =
            request(&[Rpc::GetCitizenOverview], &[(DataArea::Sager, vec![1, 2]), (DataArea::Ydelser, vec![1])])
                .unwrap();
        assert!(overview.covers(DataArea::Sager, &[2]));
        assert!(!overview.covers(DataArea::Ydelser, &[2]));
        assert!(!overview.covers(DataArea::UdkSager, &[1]));
    }

    #[test]
    fn periods_are_ordered_and_bounded() {
        let base = || Request {
            id: Uuid::from_u128(1),
            it_system: SYSTEM,
            authority: Cvr::parse("55133018").unwrap(),
            justification: "why",
            rpcs: &[Rpc::ListCases],
            areas: &[],
            kle: &[],
            sensitivity: Sensitivity::NotConfidential,
            valid_from: d("2026-01-01"),
            valid_to: d("2026-01-01"),
            at: Utc::now(),
        };
        let areas = [(DataArea::Sager, vec![1])];
        let kle = ["32.18.*".to_string()];
        let c = Catalogue::built_in();
        let with = |from: &str, to: &str, kle: &[String]| {
            ServiceAgreement::request(
                &c,
                Request { areas: &areas, kle, valid_from: d(from), valid_to: d(to), ..base() },
            )
        };
        assert!(with("2026-01-01", "2026-01-01", &kle).is_err());
        assert!(with("2026-01-02", "2026-01-01", &kle).is_err());
        assert!(with("2026-01-01", "2026-01-02", &kle).is_ok());
        assert!(with("2026-01-01", "2030-01-01", &kle).is_err(), "at most three years");
        assert!(with("2026-01-01", "2026-01-02", &[]).is_err(), "a KLE scope is named");
        assert!(with("2026-01-01", "2026-01-02", &["32.18".to_string()]).is_err());
    }

    #[test]
    fn lapsing_means_active_and_ending_soon() {
        let a = esdh().approve("approver", answers(), Utc::now()).unwrap();
        assert!(a.lapses_within(d("2026-06-01"), 30));
        assert!(!a.lapses_within(d("2026-06-01"), 29));
        assert!(!a.lapses_within(d("2026-07-01"), 30), "lapsed already");
        assert!(a.lapses_within(d("2026-06-01"), u32::MAX));
    }

    #[test]
    fn a_review_lists_what_was_never_used() {
        let a = request(
            &[Rpc::GetCitizenOverview, Rpc::ListCases, Rpc::ListGrants],
            &[(DataArea::Sager, vec![1]), (DataArea::Ydelser, vec![1]), (DataArea::UdkSager, vec![1])],
        )
        .unwrap();
        let uses = [
            Use { rpc: Rpc::ListCases, area: Some(DataArea::Sager), allowed: true },
            Use { rpc: Rpc::ListCases, area: Some(DataArea::Sager), allowed: true },
            Use { rpc: Rpc::GetCitizenOverview, area: Some(DataArea::Sager), allowed: true },
            Use { rpc: Rpc::ListGrants, area: Some(DataArea::Ydelser), allowed: false },
        ];
        let r = review(&a, uses);
        assert_eq!(r.used_rpcs.get("ListCases"), Some(&2));
        assert_eq!(r.unused_rpcs, ["ListGrants"]);
        assert_eq!(r.unused_areas, ["ydelser", "udk_sager"]);
        assert_eq!(r.refused, 1);
    }
}
