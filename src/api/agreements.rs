//! Registering, signing, revoking and listing data-exchange agreements.
//! Each change is written in one transaction with its audit record; each
//! refused change is recorded as a denial with its reason.

use tonic::{Request, Response, Status};

use super::parse::{self, BadRequest};
use super::{Call, ROLE_AGREEMENTS, Shared, convert, next_token, store_failed, today};
use crate::access::{Deny, DenyReason};
use crate::agreements::{self, Agreement, AgreementError, Proposal, Status as AgreementStatus};
use crate::audit::{Entry, Kind, Reason, Search, Text};
use crate::domain::{DataArea, parse_date};
use crate::identity::Employee;
use crate::proto as pb;
use crate::proto::agreements_server::Agreements;
use crate::store::StoreError;

pub struct AgreementsService(pub Shared);

/// `ListLapsing`'s horizon at most: ten years.
pub const LAPSING_MAX_DAYS: u32 = 3650;

/// How a change ends.
enum Change {
    Sign,
    Revoke,
}

impl AgreementsService {
    /// The caller, if they may administer agreements; a refusal is audited.
    async fn admin<'c>(&self, call: &'c Call, entry: &Entry) -> Result<&'c Employee, Status> {
        match call.employee_with(ROLE_AGREEMENTS) {
            Ok(e) => Ok(e),
            Err(deny) => self.0.refuse(entry.clone(), &deny).await,
        }
    }

    /// Records a failed change as a denial with `reason` and answers `status`.
    async fn fail<T>(&self, entry: Entry, reason: Reason, status: Status) -> Result<T, Status> {
        self.0.record(vec![entry.deny(reason)]).await?;
        Err(status)
    }

    /// Writes the agreement with its (allowed) audit record; a refusal by
    /// the store is recorded as a denial.
    async fn commit(&self, entry: Entry, change: &Agreement, previous: Option<AgreementStatus>) -> Result<(), Status> {
        let allowed = entry.clone().allow(1, Vec::new());
        match self.0.store.record_agreement(change, previous, &allowed, Some(self.0.audit.key())).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(_)) if previous.is_none() => {
                let status = Status::already_exists("an agreement with this id already exists at your authority");
                self.fail(entry, Reason::AlreadyExists, status).await
            }
            Err(StoreError::Conflict(_)) => {
                let status = Status::aborted("the agreement changed meanwhile; read it again");
                self.fail(entry, Reason::InvalidState, status).await
            }
            Err(e) => Err(store_failed(e)),
        }
    }

    async fn change(
        &self,
        req: Request<String>,
        rpc: &'static str,
        how: Change,
    ) -> Result<Response<pb::Agreement>, Status> {
        let call = self.0.call(&req, Kind::Agreement, rpc).await?;
        let id = req.into_inner();
        let mut entry = call.entry(Kind::Agreement, Search::rpc(rpc));
        let admin = self.admin(&call, &entry).await?;
        if agreements::check_id(&id).is_err() {
            let bad =
                BadRequest::given("agreement_id", "urn:ufst:adgangsgrundlag:aftale:<1-100 of A-Z a-z 0-9 -_.:>", &id);
            return self.0.refuse_bad(&call, Kind::Agreement, Search::rpc(rpc), &bad).await;
        }
        entry.agreement_id = Some(Text::new(&id));
        let current = self.0.store.agreement(admin.authority.as_str(), &id).await.map_err(store_failed)?;
        let Some(current) = current else {
            return self.fail(entry, Reason::NotFound, Status::not_found("no such agreement of your authority")).await;
        };
        entry.area = Some(current.area);
        entry.purpose_id = Some(current.purpose_id);
        let now = chrono::Utc::now();
        let changed = match how {
            Change::Sign => current.sign(&admin.user_id, now),
            Change::Revoke => current.revoke(now),
        };
        let changed = match changed {
            Ok(c) => c,
            Err(AgreementError::SameSigner) => {
                let deny = Deny::new(DenyReason::FourEyes, AgreementError::SameSigner.to_string());
                return self.0.refuse(entry, &deny).await;
            }
            Err(e) => return self.fail(entry, Reason::InvalidState, Status::failed_precondition(e.to_string())).await,
        };
        self.commit(entry, &changed, Some(current.status)).await?;
        Ok(Response::new(convert::agreement(&changed, today())))
    }
}

fn date(s: &str, field: &'static str) -> Result<chrono::NaiveDate, BadRequest> {
    parse_date(s).map_err(|_| BadRequest::given(field, "a date, YYYY-MM-DD", s))
}

#[tonic::async_trait]
impl Agreements for AgreementsService {
    async fn register_agreement(
        &self,
        req: Request<pb::RegisterAgreementRequest>,
    ) -> Result<Response<pb::Agreement>, Status> {
        let rpc = "RegisterAgreement";
        let call = self.0.call(&req, Kind::Agreement, rpc).await?;
        let r = req.into_inner();
        let mut entry = call.entry(Kind::Agreement, Search::rpc(rpc));
        let admin = self.admin(&call, &entry).await?;
        let parsed = (|| {
            let area = DataArea::parse(&r.data_area)
                .ok_or_else(|| BadRequest::given("data_area", "a data area of the catalogue", &r.data_area))?;
            let klik = (!r.klik_task.is_empty()).then_some(r.klik_task.as_str());
            let proposal = Proposal {
                id: &r.agreement_id,
                authority: admin.authority,
                area,
                purpose_id: r.purpose_id,
                legal_basis: &r.legal_basis,
                klik_task: klik,
                valid_from: date(&r.valid_from, "valid_from")?,
                valid_to: date(&r.valid_to, "valid_to")?,
                registered_by: &admin.user_id,
            };
            Agreement::request(&self.0.catalogue, proposal)
                .map_err(|_| BadRequest::new("agreement", "see the rules of RegisterAgreement"))
        })();
        let agreement = match parsed {
            Ok(a) => a,
            Err(bad) => return self.0.refuse_bad(&call, Kind::Agreement, Search::rpc(rpc), &bad).await,
        };
        entry.agreement_id = Some(Text::new(&agreement.id));
        entry.area = Some(agreement.area);
        entry.purpose_id = Some(agreement.purpose_id);
        self.commit(entry, &agreement, None).await?;
        Ok(Response::new(convert::agreement(&agreement, today())))
    }

    async fn sign_agreement(&self, req: Request<pb::SignAgreementRequest>) -> Result<Response<pb::Agreement>, Status> {
        let (md, ext, r) = req.into_parts();
        self.change(Request::from_parts(md, ext, r.agreement_id), "SignAgreement", Change::Sign).await
    }

    async fn revoke_agreement(
        &self,
        req: Request<pb::RevokeAgreementRequest>,
    ) -> Result<Response<pb::Agreement>, Status> {
        let (md, ext, r) = req.into_parts();
        self.change(Request::from_parts(md, ext, r.agreement_id), "RevokeAgreement", Change::Revoke).await
    }

    async fn list_agreements(
        &self,
        req: Request<pb::ListAgreementsRequest>,
    ) -> Result<Response<pb::AgreementList>, Status> {
        let rpc = "ListAgreements";
        let call = self.0.call(&req, Kind::Agreement, rpc).await?;
        let r = req.get_ref();
        let entry = call.entry(Kind::Agreement, Search::rpc(rpc));
        let admin = self.admin(&call, &entry).await?;
        let page = match parse::page(r.page_size, &r.page_token, 'o') {
            Ok(p) => p,
            Err(bad) => return self.0.refuse_bad(&call, Kind::Agreement, Search::rpc(rpc), &bad).await,
        };
        let all = self.0.store.agreements_of(admin.authority.as_str()).await.map_err(store_failed)?;
        let day = today();
        let end = page.offset().saturating_add(page.size());
        let items: Vec<pb::Agreement> =
            all.iter().skip(page.offset()).take(page.size()).map(|a| convert::agreement(a, day)).collect();
        let next = (end < all.len()).then_some(end);
        self.0.record(vec![entry.allow(items.len(), Vec::new())]).await?;
        Ok(Response::new(pb::AgreementList { items, next_page_token: next_token(next) }))
    }

    async fn list_lapsing(&self, req: Request<pb::ListLapsingRequest>) -> Result<Response<pb::AgreementList>, Status> {
        let rpc = "ListLapsing";
        let call = self.0.call(&req, Kind::Agreement, rpc).await?;
        let within = req.get_ref().within_days;
        let entry = call.entry(Kind::Agreement, Search::rpc(rpc).with("within_days", within.to_string().as_str()));
        let admin = self.admin(&call, &entry).await?;
        if within > LAPSING_MAX_DAYS {
            let bad = BadRequest::new("within_days", "0-3650 days");
            return self.0.refuse_bad(&call, Kind::Agreement, Search::rpc(rpc), &bad).await;
        }
        let all = self.0.store.agreements_of(admin.authority.as_str()).await.map_err(store_failed)?;
        let day = today();
        let items: Vec<pb::Agreement> =
            all.iter().filter(|a| a.lapses_within(day, within)).map(|a| convert::agreement(a, day)).collect();
        self.0.record(vec![entry.allow(items.len(), Vec::new())]).await?;
        Ok(Response::new(pb::AgreementList { items, next_page_token: String::new() }))
    }
}
