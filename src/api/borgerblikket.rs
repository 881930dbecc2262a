//! The citizen's own overview (Borgerblikket). A citizen token carries only
//! the CPR number; the citizen sees the cases where they are the primary
//! party and their own grants and payments — never who handles them.

use tonic::{Request, Response, Status};

use super::{Shared, convert, denied, page, store_failed};
use crate::access::filter;
use crate::access::{Deny, DenyReason};
use crate::domain::{AggregateKind, DataArea, PartyId};
use crate::identity::Caller;
use crate::proto as pb;
use crate::proto::borgerblikket_server::Borgerblikket;

pub struct BorgerblikketService(pub Shared);

#[derive(Clone, Copy)]
enum Mine {
    Cases,
    Grants,
    Payments,
}

enum MyRows {
    Cases(Vec<pb::MyCase>),
    Grants(Vec<pb::Grant>),
    Payments(Vec<pb::Payment>),
}

impl BorgerblikketService {
    async fn mine(&self, req: Request<pb::MyListRequest>, rpc: &str, what: Mine) -> Result<(MyRows, String), Status> {
        let s = &self.0;
        let call = s.call(&req);
        let r = req.into_inner();
        let mut entry = call.entry("citizen_lookup", format!("rpc: {rpc}; page_token: {}", r.page_token));
        entry.data_area = match what {
            Mine::Cases => DataArea::Sager,
            Mine::Grants | Mine::Payments => DataArea::Ydelser,
        }
        .to_string();
        let me = match &call.caller {
            Ok(Caller::Citizen(c)) => PartyId::Cpr(c.cpr),
            other => {
                let deny = match other {
                    Err(e) => super::token_denial(e),
                    _ => Deny::new(
                        DenyReason::NoRole,
                        "Borgerblikket shows a citizen their own data; employees use Overblik",
                    ),
                };
                entry.decision = "deny".into();
                entry.reason = deny.reason.as_str().into();
                s.record(vec![entry]).await?;
                return Err(denied(&deny));
            }
        };
        if let Err(status) = page(Vec::<()>::new(), r.page_size, &r.page_token) {
            entry.decision = "deny".into();
            entry.reason = "BAD_REQUEST".into();
            s.record(vec![entry]).await?;
            return Err(status);
        }
        let urn = me.urn();
        let udk = s.catalogue.udk_cvr;
        let (rows, next) = match what {
            Mine::Cases => {
                let aggs = s.store.party_cases(&urn, true).await.map_err(store_failed)?.aggregates;
                let rows =
                    filter::own_cases(&aggs, &me).into_iter().map(|(a, c)| convert::my_case(a, c, &udk)).collect();
                page(rows, r.page_size, &r.page_token).map(|(v, n)| (MyRows::Cases(v), n))?
            }
            Mine::Grants => {
                let aggs = s
                    .store
                    .citizen_aggregates(&urn, &[AggregateKind::Grant], false)
                    .await
                    .map_err(store_failed)?
                    .aggregates;
                let rows = filter::own_grants(&aggs, &me).into_iter().map(|(a, g)| convert::grant(a, g)).collect();
                page(rows, r.page_size, &r.page_token).map(|(v, n)| (MyRows::Grants(v), n))?
            }
            Mine::Payments => {
                let aggs = s
                    .store
                    .citizen_aggregates(&urn, &[AggregateKind::Payment], false)
                    .await
                    .map_err(store_failed)?
                    .aggregates;
                let rows = filter::own_payments(&aggs, &me).into_iter().map(|(a, p)| convert::payment(a, p)).collect();
                page(rows, r.page_size, &r.page_token).map(|(v, n)| (MyRows::Payments(v), n))?
            }
        };
        entry.decision = "allow".into();
        entry.rows_returned = match &rows {
            MyRows::Cases(v) => v.len(),
            MyRows::Grants(v) => v.len(),
            MyRows::Payments(v) => v.len(),
        } as i32;
        s.record(vec![entry]).await?;
        Ok((rows, next))
    }
}

#[tonic::async_trait]
impl Borgerblikket for BorgerblikketService {
    async fn list_my_cases(&self, req: Request<pb::MyListRequest>) -> Result<Response<pb::MyCaseList>, Status> {
        match self.mine(req, "ListMyCases", Mine::Cases).await? {
            (MyRows::Cases(items), next_page_token) => Ok(Response::new(pb::MyCaseList { items, next_page_token })),
            _ => unreachable!("cases asked for"),
        }
    }

    async fn list_my_grants(&self, req: Request<pb::MyListRequest>) -> Result<Response<pb::GrantList>, Status> {
        match self.mine(req, "ListMyGrants", Mine::Grants).await? {
            (MyRows::Grants(items), next_page_token) => Ok(Response::new(pb::GrantList { items, next_page_token })),
            _ => unreachable!("grants asked for"),
        }
    }

    async fn list_my_payments(&self, req: Request<pb::MyListRequest>) -> Result<Response<pb::PaymentList>, Status> {
        match self.mine(req, "ListMyPayments", Mine::Payments).await? {
            (MyRows::Payments(items), next_page_token) => Ok(Response::new(pb::PaymentList { items, next_page_token })),
            _ => unreachable!("payments asked for"),
        }
    }
}
