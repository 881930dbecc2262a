//! Registering, signing, revoking and listing data-exchange agreements.
//! Each change is written in one transaction with its audit record.

use tonic::{Request, Response, Status};

use super::{Call, ROLE_AGREEMENTS, Shared, bad_request, convert, denied, page, store_failed, today};
use crate::access::{Deny, DenyReason};
use crate::agreements::{Agreement, Status as AgreementStatus};
use crate::audit::Entry;
use crate::domain::{DataArea, parse_date};
use crate::identity::Employee;
use crate::proto as pb;
use crate::proto::agreements_server::Agreements;
use crate::store::StoreError;

pub struct AgreementsService(pub Shared);

impl AgreementsService {
    /// The caller, if they may administer agreements; a refusal is audited.
    async fn admin<'c>(&self, call: &'c Call, entry: &Entry) -> Result<&'c Employee, Status> {
        let refusal = match call.employee() {
            Ok(e) if e.has_role(ROLE_AGREEMENTS) => return Ok(e),
            Ok(_) => {
                Deny::new(DenyReason::NoRole, format!("administering agreements needs the role {ROLE_AGREEMENTS}"))
            }
            Err(d) => d,
        };
        let mut e = entry.clone();
        e.decision = "deny".into();
        e.reason = refusal.reason.as_str().into();
        self.0.record(vec![e]).await?;
        Err(denied(&refusal))
    }

    /// Writes the agreement with its audit record.
    async fn commit(&self, entry: Entry, change: &Agreement, previous: Option<AgreementStatus>) -> Result<(), Status> {
        match self.0.store.record_agreement(change, previous, entry).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict(why)) => Err(Status::already_exists(why)),
            Err(e) => Err(store_failed(e)),
        }
    }

    async fn change(&self, req: Request<String>, rpc: &str, sign: bool) -> Result<Response<pb::Agreement>, Status> {
        let call = self.0.call(&req);
        let id = req.into_inner();
        let entry = call.entry("agreement", format!("rpc: {rpc}; agreement: {id}"));
        let admin = self.admin(&call, &entry).await?;
        let current = self.0.store.agreement(&id).await.map_err(store_failed)?;
        let current = current
            .filter(|a| a.authority == admin.authority)
            .ok_or_else(|| Status::not_found("no such agreement of your authority"))?;
        let now = chrono::Utc::now();
        let changed = if sign { current.sign(&admin.user_id, now) } else { current.revoke(now) }
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        self.commit(entry, &changed, Some(current.status)).await?;
        Ok(Response::new(convert::agreement(&changed, today())))
    }
}

#[tonic::async_trait]
impl Agreements for AgreementsService {
    async fn register_agreement(
        &self,
        req: Request<pb::RegisterAgreementRequest>,
    ) -> Result<Response<pb::Agreement>, Status> {
        let call = self.0.call(&req);
        let r = req.into_inner();
        let entry = call.entry("agreement", format!("rpc: RegisterAgreement; agreement: {}", r.agreement_id));
        let admin = self.admin(&call, &entry).await?;
        let area = DataArea::parse(&r.data_area).ok_or_else(|| bad_request("unknown data area"))?;
        let date = |s: &str, what: &str| parse_date(s).map_err(|_| bad_request(format!("{what} is YYYY-MM-DD")));
        let klik = (!r.klik_task.is_empty()).then_some(r.klik_task.as_str());
        let agreement = Agreement::request(
            &self.0.catalogue,
            &r.agreement_id,
            admin.authority,
            area,
            r.purpose_id,
            &r.legal_basis,
            klik,
            date(&r.valid_from, "valid_from")?,
            date(&r.valid_to, "valid_to")?,
        )
        .map_err(|e| bad_request(e.to_string()))?;
        self.commit(entry, &agreement, None).await?;
        Ok(Response::new(convert::agreement(&agreement, today())))
    }

    async fn sign_agreement(&self, req: Request<pb::SignAgreementRequest>) -> Result<Response<pb::Agreement>, Status> {
        let (md, ext, r) = req.into_parts();
        self.change(Request::from_parts(md, ext, r.agreement_id), "SignAgreement", true).await
    }

    async fn revoke_agreement(
        &self,
        req: Request<pb::RevokeAgreementRequest>,
    ) -> Result<Response<pb::Agreement>, Status> {
        let (md, ext, r) = req.into_parts();
        self.change(Request::from_parts(md, ext, r.agreement_id), "RevokeAgreement", false).await
    }

    async fn list_agreements(
        &self,
        req: Request<pb::ListAgreementsRequest>,
    ) -> Result<Response<pb::AgreementList>, Status> {
        let call = self.0.call(&req);
        let r = req.into_inner();
        let mut entry = call.entry("agreement", "rpc: ListAgreements".into());
        let admin = self.admin(&call, &entry).await?;
        let all = self.0.store.agreements_of(admin.authority.as_str()).await.map_err(store_failed)?;
        let day = today();
        let (items, next) = page(all.iter().map(|a| convert::agreement(a, day)).collect(), r.page_size, &r.page_token)?;
        entry.decision = "allow".into();
        entry.rows_returned = items.len() as i32;
        self.0.record(vec![entry]).await?;
        Ok(Response::new(pb::AgreementList { items, next_page_token: next }))
    }

    async fn list_lapsing(&self, req: Request<pb::ListLapsingRequest>) -> Result<Response<pb::AgreementList>, Status> {
        let call = self.0.call(&req);
        let within = req.get_ref().within_days;
        let mut entry = call.entry("agreement", format!("rpc: ListLapsing; within_days: {within}"));
        let admin = self.admin(&call, &entry).await?;
        let all = self.0.store.agreements_of(admin.authority.as_str()).await.map_err(store_failed)?;
        let day = today();
        let items: Vec<pb::Agreement> =
            all.iter().filter(|a| a.lapses_within(day, within)).map(|a| convert::agreement(a, day)).collect();
        entry.decision = "allow".into();
        entry.rows_returned = items.len() as i32;
        self.0.record(vec![entry]).await?;
        Ok(Response::new(pb::AgreementList { items, next_page_token: String::new() }))
    }
}
