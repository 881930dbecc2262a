//! IT systems' service agreements: the system requests, the authority's
//! approver approves (with the five answers), rejects or revokes, and both
//! list. Each change is written in one transaction with its audit record;
//! each refused change is recorded as a denial with its reason.

use std::collections::HashMap;

use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;

use super::parse::{self, BadRequest};
use super::{Call, ERROR_DOMAIN, ROLE_SERVICE_AGREEMENTS, Shared, convert, next_token, store_failed, today};
use crate::access::{Deny, DenyReason};
use crate::audit::{Entry, Kind, Reason, Search, Text};
use crate::domain::{DataArea, Sensitivity, parse_date};
use crate::identity::{Caller, Employee, SystemCaller};
use crate::lookup::Rpc;
use crate::proto as pb;
use crate::proto::service_agreements_server::ServiceAgreements;
use crate::service_agreements::{
    Answers, Request as Proposal, ServiceAgreement, ServiceAgreementError, Status as AgreementStatus,
};
use crate::store::{ServiceAgreementFilter, StoreError};

pub struct ServiceAgreementsService(pub Shared);

/// `ListLapsingServiceAgreements`' horizon at most: ten years.
pub const LAPSING_MAX_DAYS: u32 = 3650;

/// Requests of one IT system with one authority waiting for a decision at
/// once, at most: a bound on what a system can make the approver's list
/// and every later read of its agreements hold.
pub const MAX_OPEN_REQUESTS: usize = 10;
/// Purpose ids one area of a request names at most.
const PURPOSES_MAX: usize = 16;
/// The longest KLE pattern (`dd.dd.dd`), with room to spare.
const KLE_PATTERN_MAX_BYTES: usize = 16;

/// How a change ends.
enum Change {
    Approve(Answers),
    Reject(String),
    Revoke,
}

/// The request of a change: the agreement's id, and what the change needs.
struct ChangeRequest {
    id: String,
    answers: Option<pb::ApprovalAnswers>,
    reason: String,
}

fn kind() -> Kind {
    Kind::ServiceAgreement
}

/// A request the agreement's rules refused: `INVALID_ARGUMENT` naming the
/// rule (the rules' texts never repeat what was sent).
fn refused_request(e: &ServiceAgreementError) -> Status {
    let detail = e.to_string();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("BAD_REQUEST: {detail}"),
        ErrorDetails::with_error_info("BAD_REQUEST", ERROR_DOMAIN, HashMap::from([("detail".to_string(), detail)])),
    )
}

impl ServiceAgreementsService {
    /// The caller, if they approve service agreements; a refusal is audited.
    async fn approver<'c>(&self, call: &'c Call, entry: &Entry) -> Result<&'c Employee, Status> {
        match call.employee_with(ROLE_SERVICE_AGREEMENTS) {
            Ok(e) => Ok(e),
            Err(deny) => self.0.refuse(entry.clone(), &deny).await,
        }
    }

    /// Records a failed change as a denial with `reason` and answers `status`.
    async fn fail<T>(&self, entry: Entry, reason: Reason, status: Status) -> Result<T, Status> {
        self.0.record(vec![entry.deny(reason)]).await?;
        Err(status)
    }

    /// Writes the agreement with its (allowed) audit record.
    async fn commit(
        &self,
        entry: Entry,
        change: &ServiceAgreement,
        previous: Option<AgreementStatus>,
    ) -> Result<(), Status> {
        let allowed = entry.clone().allow(1, Vec::new());
        match self.0.store.record_service_agreement(change, previous, &allowed, Some(self.0.audit.key())).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) => {
                let status = Status::aborted("the service agreement changed meanwhile; read it again");
                self.fail(entry, Reason::InvalidState, status).await
            }
            Err(e) => Err(store_failed(e)),
        }
    }

    async fn change(
        &self,
        req: Request<ChangeRequest>,
        rpc: &'static str,
        how: fn(&ChangeRequest) -> Result<Change, ServiceAgreementError>,
    ) -> Result<Response<pb::ServiceAgreement>, Status> {
        let call = self.0.call(&req, kind(), rpc).await?;
        let r = req.into_inner();
        let mut entry = call.entry(kind(), Search::rpc(rpc));
        let approver = self.approver(&call, &entry).await?;
        let Ok(id) = Uuid::parse_str(&r.id) else {
            let bad = BadRequest::given("id", "the UUID of a service agreement", &r.id);
            return self.0.refuse_bad(&call, kind(), Search::rpc(rpc), &bad).await;
        };
        entry.agreement_id = Some(Text::new(&id.to_string()));
        let change = match how(&r) {
            Ok(c) => c,
            Err(e) => {
                // Recorded with the agreement it was for.
                entry.search = Search::rpc(rpc).with("bad_field", "answers or reason");
                return self.fail(entry, Reason::BadRequest, refused_request(&e)).await;
            }
        };
        let current = self.0.store.service_agreement(approver.authority.as_str(), id).await.map_err(store_failed)?;
        let Some(current) = current else {
            let status = Status::not_found("no such service agreement of your authority");
            return self.fail(entry, Reason::NotFound, status).await;
        };
        let now = chrono::Utc::now();
        let changed = match change {
            Change::Approve(answers) => current.approve(&approver.user_id, answers, now),
            Change::Reject(reason) => current.reject(&approver.user_id, &reason, now),
            Change::Revoke => current.revoke(&approver.user_id, now),
        };
        let changed = match changed {
            Ok(c) => c,
            Err(ServiceAgreementError::OwnRequest) => {
                let deny = Deny::new(DenyReason::NoRole, ServiceAgreementError::OwnRequest.to_string());
                return self.0.refuse(entry, &deny).await;
            }
            Err(e @ ServiceAgreementError::Invalid(_)) => {
                return self.fail(entry, Reason::BadRequest, refused_request(&e)).await;
            }
            Err(e @ ServiceAgreementError::State(_)) => {
                return self.fail(entry, Reason::InvalidState, Status::failed_precondition(e.to_string())).await;
            }
        };
        self.commit(entry, &changed, Some(current.status)).await?;
        Ok(Response::new(convert::service_agreement(&changed, today())))
    }

    /// Whose agreements the caller lists: an approver their authority's, a
    /// system its own. Anyone else is refused (and that is recorded).
    async fn lister(&self, call: &Call, entry: &Entry) -> Result<ServiceAgreementFilter, Status> {
        match &call.caller {
            Ok(Caller::System(SystemCaller { it_system, authority })) => {
                Ok(ServiceAgreementFilter { it_system: Some(*it_system), authority: Some(authority.to_string()) })
            }
            _ => {
                let approver = self.approver(call, entry).await?;
                Ok(ServiceAgreementFilter { it_system: None, authority: Some(approver.authority.to_string()) })
            }
        }
    }
}

fn date(s: &str, field: &'static str) -> Result<chrono::NaiveDate, BadRequest> {
    parse_date(s).map_err(|_| BadRequest::given(field, "a date, YYYY-MM-DD", s))
}

/// The request's values, parsed; the agreement's own rules come after.
struct Parsed {
    rpcs: Vec<Rpc>,
    areas: Vec<(DataArea, Vec<u32>)>,
    kle: Vec<String>,
    sensitivity: Sensitivity,
    valid_from: chrono::NaiveDate,
    valid_to: chrono::NaiveDate,
}

fn parse_request(r: &pb::RequestServiceAgreementRequest) -> Result<Parsed, BadRequest> {
    if r.rpcs.len() > Rpc::ALL.len() {
        return Err(BadRequest::new("rpcs", "Overblik call names, each once"));
    }
    let rpcs = r
        .rpcs
        .iter()
        .map(|n| Rpc::parse(n).ok_or_else(|| BadRequest::given("rpcs", "Overblik call names, e.g. ListCases", n)))
        .collect::<Result<Vec<_>, _>>()?;
    if r.areas.len() > DataArea::ALL.len() {
        return Err(BadRequest::new("areas", "data areas of the catalogue, each once"));
    }
    let mut areas = Vec::with_capacity(r.areas.len());
    for a in &r.areas {
        let area = DataArea::parse(&a.data_area)
            .ok_or_else(|| BadRequest::given("areas.data_area", "a data area of the catalogue", &a.data_area))?;
        if a.purpose_ids.len() > PURPOSES_MAX {
            return Err(BadRequest::new("areas.purpose_ids", "at most 16 purposes per data area"));
        }
        areas.push((area, a.purpose_ids.clone()));
    }
    if r.kle.len() > crate::service_agreements::KLE_MAX
        || r.kle.iter().any(|k| k.len() > KLE_PATTERN_MAX_BYTES || k.chars().any(char::is_control))
    {
        return Err(BadRequest::new("kle", "1-64 patterns: dd.dd.dd, dd.dd.*, dd.* or *"));
    }
    let sensitivity = Sensitivity::from_level(i64::from(r.sensitivity))
        .map_err(|_| BadRequest::new("sensitivity", "the highest sensitivity, 1-4"))?;
    Ok(Parsed {
        rpcs,
        areas,
        kle: r.kle.clone(),
        sensitivity,
        valid_from: date(&r.valid_from, "valid_from")?,
        valid_to: date(&r.valid_to, "valid_to")?,
    })
}

fn answers_of(r: &ChangeRequest) -> Result<Change, ServiceAgreementError> {
    let a = r.answers.clone().unwrap_or_default();
    let answers = Answers::new([
        &a.who_how_long_why,
        &a.services_needed,
        &a.data_scope,
        &a.whole_period,
        &a.understandable_later,
    ])?;
    Ok(Change::Approve(answers))
}

fn reason_of(r: &ChangeRequest) -> Result<Change, ServiceAgreementError> {
    Ok(Change::Reject(r.reason.clone()))
}

fn revoke(_: &ChangeRequest) -> Result<Change, ServiceAgreementError> {
    Ok(Change::Revoke)
}

fn change_request<T>(req: Request<T>, f: impl FnOnce(T) -> ChangeRequest) -> Request<ChangeRequest> {
    let (md, ext, r) = req.into_parts();
    Request::from_parts(md, ext, f(r))
}

#[tonic::async_trait]
impl ServiceAgreements for ServiceAgreementsService {
    async fn request_service_agreement(
        &self,
        req: Request<pb::RequestServiceAgreementRequest>,
    ) -> Result<Response<pb::ServiceAgreement>, Status> {
        let rpc = "RequestServiceAgreement";
        let call = self.0.call(&req, kind(), rpc).await?;
        let r = req.into_inner();
        let mut entry = call.entry(kind(), Search::rpc(rpc));
        let system = match &call.caller {
            Ok(Caller::System(s)) => s.clone(),
            Ok(_) => {
                let deny =
                    Deny::new(DenyReason::NoRole, "an IT system requests its service agreement with its own token");
                return self.0.refuse(entry, &deny).await;
            }
            Err(e) => return self.0.refuse(entry, &super::token_denial(e)).await,
        };
        let parsed = match parse_request(&r) {
            Ok(p) => p,
            Err(bad) => return self.0.refuse_bad(&call, kind(), Search::rpc(rpc), &bad).await,
        };
        let id = Uuid::new_v4();
        entry.agreement_id = Some(Text::new(&id.to_string()));
        let proposal = Proposal {
            id,
            it_system: system.it_system,
            authority: system.authority,
            justification: &r.justification,
            rpcs: &parsed.rpcs,
            areas: &parsed.areas,
            kle: &parsed.kle,
            sensitivity: parsed.sensitivity,
            valid_from: parsed.valid_from,
            valid_to: parsed.valid_to,
            at: chrono::Utc::now(),
        };
        let agreement = match ServiceAgreement::request(&self.0.catalogue, proposal) {
            Ok(a) => a,
            Err(e) => {
                let search = Search::rpc(rpc).with("bad_field", "service_agreement");
                return self.fail(call.entry(kind(), search), Reason::BadRequest, refused_request(&e)).await;
            }
        };
        let mine = self
            .0
            .store
            .service_agreements_of(system.it_system, system.authority.as_str())
            .await
            .map_err(store_failed)?;
        if mine.iter().filter(|a| a.status == AgreementStatus::Requested).count() >= MAX_OPEN_REQUESTS {
            let detail = format!("at most {MAX_OPEN_REQUESTS} requests of one IT system wait for a decision at once");
            let status = Status::with_error_details(
                Code::ResourceExhausted,
                format!("OPEN_REQUESTS_LIMIT: {detail}"),
                ErrorDetails::with_error_info(
                    "OPEN_REQUESTS_LIMIT",
                    ERROR_DOMAIN,
                    HashMap::from([("detail".to_string(), detail)]),
                ),
            );
            return self.fail(entry, Reason::OpenRequestsLimit, status).await;
        }
        self.commit(entry, &agreement, None).await?;
        Ok(Response::new(convert::service_agreement(&agreement, today())))
    }

    async fn approve_service_agreement(
        &self,
        req: Request<pb::ApproveServiceAgreementRequest>,
    ) -> Result<Response<pb::ServiceAgreement>, Status> {
        let req = change_request(req, |r| ChangeRequest { id: r.id, answers: r.answers, reason: String::new() });
        self.change(req, "ApproveServiceAgreement", answers_of).await
    }

    async fn reject_service_agreement(
        &self,
        req: Request<pb::RejectServiceAgreementRequest>,
    ) -> Result<Response<pb::ServiceAgreement>, Status> {
        let req = change_request(req, |r| ChangeRequest { id: r.id, answers: None, reason: r.reason });
        self.change(req, "RejectServiceAgreement", reason_of).await
    }

    async fn revoke_service_agreement(
        &self,
        req: Request<pb::RevokeServiceAgreementRequest>,
    ) -> Result<Response<pb::ServiceAgreement>, Status> {
        let req = change_request(req, |r| ChangeRequest { id: r.id, answers: None, reason: String::new() });
        self.change(req, "RevokeServiceAgreement", revoke).await
    }

    async fn list_service_agreements(
        &self,
        req: Request<pb::ListServiceAgreementsRequest>,
    ) -> Result<Response<pb::ServiceAgreementList>, Status> {
        let rpc = "ListServiceAgreements";
        let call = self.0.call(&req, kind(), rpc).await?;
        let r = req.get_ref();
        let entry = call.entry(kind(), Search::rpc(rpc));
        let filter = self.lister(&call, &entry).await?;
        let page = match parse::page(r.page_size, &r.page_token, 'o') {
            Ok(p) => p,
            Err(bad) => return self.0.refuse_bad(&call, kind(), Search::rpc(rpc), &bad).await,
        };
        let all = self.0.store.service_agreements(&filter).await.map_err(store_failed)?;
        let day = today();
        let end = page.offset().saturating_add(page.size());
        let items: Vec<pb::ServiceAgreement> =
            all.iter().skip(page.offset()).take(page.size()).map(|a| convert::service_agreement(a, day)).collect();
        let next = (end < all.len()).then_some(end);
        self.0.record(vec![entry.allow(items.len(), Vec::new())]).await?;
        Ok(Response::new(pb::ServiceAgreementList { items, next_page_token: next_token(next) }))
    }

    async fn list_lapsing_service_agreements(
        &self,
        req: Request<pb::ListLapsingServiceAgreementsRequest>,
    ) -> Result<Response<pb::ServiceAgreementList>, Status> {
        let rpc = "ListLapsingServiceAgreements";
        let call = self.0.call(&req, kind(), rpc).await?;
        let within = req.get_ref().within_days;
        let entry = call.entry(kind(), Search::rpc(rpc).with("within_days", within.to_string().as_str()));
        let approver = self.approver(&call, &entry).await?;
        if within > LAPSING_MAX_DAYS {
            let bad = BadRequest::new("within_days", "0-3650 days");
            return self.0.refuse_bad(&call, kind(), Search::rpc(rpc), &bad).await;
        }
        let filter = ServiceAgreementFilter { it_system: None, authority: Some(approver.authority.to_string()) };
        let all = self.0.store.service_agreements(&filter).await.map_err(store_failed)?;
        let day = today();
        let items: Vec<pb::ServiceAgreement> =
            all.iter().filter(|a| a.lapses_within(day, within)).map(|a| convert::service_agreement(a, day)).collect();
        self.0.record(vec![entry.allow(items.len(), Vec::new())]).await?;
        Ok(Response::new(pb::ServiceAgreementList { items, next_page_token: String::new() }))
    }
}
