//! The caseworkers' lookups (SAPA), and IT systems' under their service
//! agreements: parse, run the lookup flow, record, convert.

use tonic::{Request, Response, Status};

use super::parse::{self, BadRequest};
use super::{Call, Shared, convert, denied, next_token, store_failed, today};
use crate::access::{Deny, system};
use crate::audit::{Kind, Search};
use crate::identity::{Caller, Employee};
use crate::lookup::{self, Answer, Context, Loaded, Query, Reads, Rows, Rpc, Section, Shown};
use crate::proto as pb;
use crate::proto::overblik_server::Overblik;

pub struct OverblikService(pub Shared);

impl OverblikService {
    /// Runs one lookup: identity, the decisions, the reads they allow, the
    /// answer and its audit entries (recorded before `respond` converts
    /// the answer).
    async fn run<R>(
        &self,
        call: &Call,
        rpc: Rpc,
        parsed: Result<Query, BadRequest>,
        respond: impl for<'a> FnOnce(Answer<'a>) -> Result<R, Status>,
    ) -> Result<R, Status> {
        let s = &self.0;
        let query = match parsed {
            Ok(q) => q,
            Err(bad) => return s.refuse_bad(call, Kind::Lookup, Search::rpc(rpc.name()), &bad).await,
        };
        let today = today();
        // An IT system's call rests on its service agreement, which gives it
        // the privileges an employee's token would; anyone else's on the token.
        let service_agreements = match &call.caller {
            Ok(Caller::System(sys)) => {
                s.store.service_agreements_of(sys.it_system, sys.authority.as_str()).await.map_err(store_failed)?
            }
            _ => Vec::new(),
        };
        let grant = match &call.caller {
            Ok(Caller::System(sys)) => {
                let asks: Vec<_> = query.asks.iter().map(|a| (a.area, a.purpose_ids.as_slice())).collect();
                Some(system::grant(sys, &service_agreements, &s.catalogue, today, rpc, &asks))
            }
            _ => None,
        };
        let employee = call.employee();
        let caller: Result<&Employee, &Deny> = match &grant {
            Some(Ok(g)) => Ok(&g.privileges),
            Some(Err(deny)) => Err(deny),
            None => employee.as_ref().map(|e| *e),
        };
        let agreements = match caller {
            Ok(e) if lookup::needs_agreements(&s.catalogue, &query.asks) => {
                s.store.agreements_of(e.authority.as_str()).await.map_err(store_failed)?
            }
            _ => Vec::new(),
        };
        let decisions = match &grant {
            Some(g) => lookup::decide_all_system(g.as_ref(), &s.catalogue, &agreements, today, &query.asks),
            None => lookup::decide_all(caller, &s.catalogue, &agreements, today, &query.asks),
        };
        let loaded = match query.reads(&decisions) {
            None => Loaded::default(),
            Some(Reads::One(id)) => {
                let one = s.store.aggregate(id).await.map_err(store_failed)?;
                Loaded::new(&query.citizen, one.into_iter().collect(), false)
            }
            Some(Reads::Citizen { kinds, party_cases }) => {
                let read = s
                    .store
                    .citizen_aggregates(&query.citizen.urn(), &kinds, party_cases)
                    .await
                    .map_err(store_failed)?;
                Loaded::new(&query.citizen, read.aggregates, read.truncated)
            }
        };
        let actor = call.actor();
        let cx = Context {
            transaction_id: &call.transaction_id,
            request_id: call.request_id,
            actor: &actor,
            today,
            alarms: &s.alarms,
            udk: s.catalogue.udk_cvr,
            service_agreement: match &grant {
                Some(Ok(g)) => Some(g.agreement.id),
                _ => None,
            },
        };
        let mut answer = lookup::answer(&cx, caller, &query, decisions, &loaded);
        s.record(std::mem::take(&mut answer.entries)).await?;
        respond(answer)
    }

    /// A list call: its one area's rows and the next page, or its denial.
    async fn list<R>(
        &self,
        req: Request<pb::ListRequest>,
        rpc: Rpc,
        respond: impl for<'a> FnOnce(Rows<'a>, String, bool) -> R,
    ) -> Result<Response<R>, Status> {
        let call = self.0.call(&req, Kind::Lookup, rpc.name()).await?;
        let parsed = parse::list(req.get_ref(), rpc);
        let out = self
            .run(&call, rpc, parsed, |answer| {
                let Shown { mut rows, truncated, next_offset } = one(answer.sections)?;
                Ok(respond(rows.remove(0), next_token(next_offset), truncated))
            })
            .await?;
        Ok(Response::new(out))
    }
}

/// The only section of a one-area call, or its denial as the call's status.
fn one(sections: Vec<Section<'_>>) -> Result<Shown<'_>, Status> {
    let section = sections.into_iter().next().expect("a one-area call has one section");
    section.shown.map_err(|d: Deny| denied(&d))
}

macro_rules! rows {
    ($rows:expr, $variant:ident) => {
        match $rows {
            Rows::$variant(v) => v,
            other => unreachable!("the call shows {}, not {other:?}", stringify!($variant)),
        }
    };
}

#[tonic::async_trait]
impl Overblik for OverblikService {
    async fn get_citizen_overview(
        &self,
        req: Request<pb::CitizenOverviewRequest>,
    ) -> Result<Response<pb::CitizenOverview>, Status> {
        let rpc = Rpc::GetCitizenOverview;
        let call = self.0.call(&req, Kind::Lookup, rpc.name()).await?;
        let parsed = parse::overview(req.get_ref());
        let overview = self
            .run(&call, rpc, parsed, |answer| {
                if let Some(deny) = all_denied(&answer.sections) {
                    return Err(denied(&deny));
                }
                Ok(pb::CitizenOverview { sections: answer.sections.into_iter().map(convert::section).collect() })
            })
            .await?;
        Ok(Response::new(overview))
    }

    async fn get_timeline(&self, req: Request<pb::TimelineRequest>) -> Result<Response<pb::Timeline>, Status> {
        let rpc = Rpc::GetTimeline;
        let call = self.0.call(&req, Kind::Lookup, rpc.name()).await?;
        let parsed = parse::timeline(req.get_ref());
        let timeline = self
            .run(&call, rpc, parsed, |answer| {
                if let Some(deny) = all_denied(&answer.sections) {
                    return Err(denied(&deny));
                }
                let page = answer.timeline.expect("a timeline call answers with a timeline");
                Ok(pb::Timeline {
                    items: page.items.iter().map(convert::timeline_item).collect(),
                    areas: answer.sections.iter().map(convert::timeline_area).collect(),
                    next_page_token: next_token(page.next_offset),
                    truncated: page.truncated,
                })
            })
            .await?;
        Ok(Response::new(timeline))
    }

    async fn list_cases(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::CaseList>, Status> {
        self.list(req, Rpc::ListCases, |rows, next_page_token, truncated| pb::CaseList {
            items: rows!(rows, Cases).into_iter().map(|(a, c)| convert::case(a, c)).collect(),
            next_page_token,
            truncated,
        })
        .await
    }

    async fn get_case(&self, req: Request<pb::GetCaseRequest>) -> Result<Response<pb::Case>, Status> {
        let rpc = Rpc::GetCase;
        let call = self.0.call(&req, Kind::Lookup, rpc.name()).await?;
        let parsed = parse::get_case(req.get_ref());
        let case = self
            .run(&call, rpc, parsed, |answer| {
                let Shown { mut rows, .. } = one(answer.sections)?;
                let documents = rows!(rows.remove(1), Documents);
                let mut case = rows!(rows.remove(0), Cases)
                    .first()
                    .map(|(a, c)| convert::case(a, c))
                    .ok_or_else(|| Status::not_found("no such case among those the caller may see"))?;
                case.documents = documents.iter().map(convert::document).collect();
                Ok(case)
            })
            .await?;
        Ok(Response::new(case))
    }

    async fn list_documents(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::DocumentList>, Status> {
        self.list(req, Rpc::ListDocuments, |rows, next_page_token, truncated| pb::DocumentList {
            items: rows!(rows, Documents).iter().map(convert::document).collect(),
            next_page_token,
            truncated,
        })
        .await
    }

    async fn list_grants(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::GrantList>, Status> {
        self.list(req, Rpc::ListGrants, |rows, next_page_token, truncated| pb::GrantList {
            items: rows!(rows, Grants).into_iter().map(|(a, g)| convert::grant(a, g)).collect(),
            next_page_token,
            truncated,
        })
        .await
    }

    async fn list_payments(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::PaymentList>, Status> {
        self.list(req, Rpc::ListPayments, |rows, next_page_token, truncated| pb::PaymentList {
            items: rows!(rows, Payments).into_iter().map(|(a, p)| convert::payment(a, p)).collect(),
            next_page_token,
            truncated,
        })
        .await
    }

    async fn list_udk_cases(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::UdkCaseList>, Status> {
        self.list(req, Rpc::ListUdkCases, |rows, next_page_token, truncated| pb::UdkCaseList {
            items: rows!(rows, UdkCases).iter().map(convert::udk_case).collect(),
            next_page_token,
            truncated,
        })
        .await
    }

    async fn list_udk_benefits(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::UdkBenefitList>, Status> {
        self.list(req, Rpc::ListUdkBenefits, |rows, next_page_token, truncated| pb::UdkBenefitList {
            items: rows!(rows, UdkBenefits).iter().map(convert::udk_benefit).collect(),
            next_page_token,
            truncated,
        })
        .await
    }

    async fn list_control_cases(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::ControlCaseList>, Status> {
        self.list(req, Rpc::ListControlCases, |rows, next_page_token, truncated| pb::ControlCaseList {
            items: rows!(rows, ControlCases).iter().map(convert::control_case).collect(),
            next_page_token,
            truncated,
        })
        .await
    }

    async fn list_employment(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::EmploymentList>, Status> {
        self.list(req, Rpc::ListEmployment, |rows, next_page_token, truncated| pb::EmploymentList {
            items: rows!(rows, Employment).into_iter().map(|(a, e)| convert::employment(a, e)).collect(),
            next_page_token,
            truncated,
        })
        .await
    }

    async fn list_tax_records(&self, req: Request<pb::ListRequest>) -> Result<Response<pb::TaxRecordList>, Status> {
        self.list(req, Rpc::ListTaxRecords, |rows, next_page_token, truncated| pb::TaxRecordList {
            items: rows!(rows, TaxRecords).into_iter().map(|(a, t)| convert::tax_record(a, t)).collect(),
            next_page_token,
            truncated,
        })
        .await
    }
}

/// The first denial, when every section was denied.
fn all_denied(sections: &[Section<'_>]) -> Option<Deny> {
    let mut first = None;
    for s in sections {
        match &s.shown {
            Ok(_) => return None,
            Err(d) => {
                first.get_or_insert_with(|| d.clone());
            }
        }
    }
    first
}
