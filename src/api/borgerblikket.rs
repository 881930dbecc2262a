//! The citizen's own overview (Borgerblikket). A citizen token carries only
//! the CPR number; the citizen sees the cases where they are the primary
//! party, their own grants, payments and job-centre registrations — never
//! who handles them.

use tonic::{Request, Response, Status};

use super::parse;
use super::{Shared, convert, denied, next_token, store_failed, today};
use crate::access::{Deny, DenyReason};
use crate::audit::{Kind, Search, dpo};
use crate::borgerblikket::{Bucket, Configs, Month, Outcome};
use crate::domain::PartyId;
use crate::identity::Caller;
use crate::lookup::{self, Context, Loaded, Mine, Mined, Rows, Shown};
use crate::metrics::METRICS;
use crate::proto as pb;
use crate::proto::borgerblikket_server::Borgerblikket;
use crate::store::AuditFilter;

pub struct BorgerblikketService(pub Shared);

impl BorgerblikketService {
    async fn mine<R>(
        &self,
        req: Request<pb::MyListRequest>,
        what: Mine,
        respond: impl for<'a> FnOnce(Rows<'a>, String, bool) -> R,
    ) -> Result<Response<R>, Status> {
        let s = &self.0;
        let call = s.call(&req, Kind::CitizenLookup, what.rpc()).await?;
        let r = req.get_ref();
        let page = match parse::page(r.page_size, &r.page_token, 'o') {
            Ok(p) => p,
            Err(bad) => return s.refuse_bad(&call, Kind::CitizenLookup, Search::rpc(what.rpc()), &bad).await,
        };
        let me = match &call.caller {
            Ok(Caller::Citizen(c)) => Ok(PartyId::Cpr(c.cpr)),
            Ok(Caller::Employee(_) | Caller::System(_)) => Err(Deny::new(
                DenyReason::NoRole,
                "Borgerblikket shows a citizen their own data; employees and IT systems use Overblik",
            )),
            Err(e) => Err(super::token_denial(e)),
        };
        let loaded = match &me {
            Err(_) => Loaded::default(),
            Ok(me) => {
                let read = match what {
                    Mine::Cases => s.store.party_cases(&me.urn(), true).await,
                    Mine::Grants | Mine::Payments | Mine::Employment => {
                        s.store.citizen_aggregates(&me.urn(), &[what.kind()], false).await
                    }
                }
                .map_err(store_failed)?;
                Loaded::new(me, read.aggregates, read.truncated)
            }
        };
        // The settings of the authorities owning the rows read (a handful:
        // one citizen's authorities), each bounded by its topic limit.
        let configs = match &me {
            Err(_) => Configs::default(),
            Ok(me) => {
                let authorities = lookup::authorities(&loaded, me, what);
                let stored = s.store.borgerblikket_settings(&authorities).await.map_err(store_failed)?;
                Configs::new(stored.into_iter().map(|st| (st.authority, st.settings)))
            }
        };
        let actor = call.actor();
        let day = today();
        let cx = Context {
            transaction_id: &call.transaction_id,
            request_id: call.request_id,
            actor: &actor,
            today: day,
            alarms: &s.alarms,
            udk: s.catalogue.udk_cvr,
            service_agreement: None,
        };
        let Mined { shown, entry, tally } = lookup::mine(&cx, me.as_ref(), what, page, &loaded, &configs);
        s.record(vec![entry]).await?;
        count(s, what, Month::of(day), &tally).await;
        let Shown { mut rows, truncated, next_offset } = shown.map_err(|d| denied(&d))?;
        Ok(Response::new(respond(rows.remove(0), next_token(next_offset), truncated)))
    }
}

/// Counts an answered call in the metrics and the monthly statistics. The
/// statistics are not worth refusing a citizen's answer for: a count the
/// store can't take is logged (no citizen in the log) and the call goes on.
async fn count(s: &super::Serving, what: Mine, month: Month, tally: &[(Bucket, Outcome)]) {
    if tally.is_empty() {
        return;
    }
    let outcome =
        if tally.iter().any(|(_, o)| *o == Outcome::WithData) { Outcome::WithData } else { Outcome::WithoutData };
    METRICS.citizen_call(what.call_kind(), outcome);
    if let Err(e) = s.store.count_citizen_call(month, what.call_kind(), tally).await {
        tracing::warn!(error = %e, call = what.rpc(), "a citizen call was not counted in the monthly statistics");
    }
}

/// Lookups on a citizen per page at most.
const LOOKUPS_PAGE_MAX: u32 = 500;

#[tonic::async_trait]
impl Borgerblikket for BorgerblikketService {
    /// The citizen's own access log: every lookup that returned or was
    /// refused data about them, newest first — never who looked. Reading
    /// it is itself recorded.
    async fn list_lookups_on_me(
        &self,
        req: Request<pb::MyListRequest>,
    ) -> Result<Response<pb::LookupsOnMeList>, Status> {
        let s = &self.0;
        let rpc = "ListLookupsOnMe";
        let call = s.call(&req, Kind::CitizenAccessLog, rpc).await?;
        let r = req.get_ref();
        let entry = call.entry(Kind::CitizenAccessLog, Search::rpc(rpc));
        let me = match &call.caller {
            Ok(Caller::Citizen(c)) => PartyId::Cpr(c.cpr),
            Ok(Caller::Employee(_) | Caller::System(_)) => {
                let deny = Deny::new(DenyReason::NoRole, "a citizen reads the lookups on themselves");
                return s.refuse(entry, &deny).await;
            }
            Err(e) => return s.refuse(entry, &super::token_denial(e)).await,
        };
        let before = match r.page_token.as_str() {
            "" => None,
            t => match t
                .strip_prefix('b')
                .filter(|n| !n.is_empty() && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<i64>().ok())
            {
                Some(n) => Some(n),
                None => {
                    let bad = parse::BadRequest::given("page_token", "a next_page_token this service returned", t);
                    return s.refuse_bad(&call, Kind::CitizenAccessLog, Search::rpc(rpc), &bad).await;
                }
            },
        };
        let size = match r.page_size {
            0 => 100,
            n => n.min(LOOKUPS_PAGE_MAX),
        } as i64;
        let filter = AuditFilter {
            citizen: Some(me.urn()),
            kinds: Some(dpo::LOOKUPS_ON_A_CITIZEN.iter().map(|k| k.as_str()).collect()),
            ..Default::default()
        };
        let records = s.store.audit_records_newest_first(&filter, before, size + 1).await.map_err(store_failed)?;
        let more = records.len() as i64 > size;
        let items: Vec<pb::LookupOnMe> = records
            .iter()
            .take(size as usize)
            .map(|rec| {
                let l = dpo::lookup_on_me(rec, &s.catalogue);
                pb::LookupOnMe {
                    at: l.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    date: l.date.to_string(),
                    authority_cvr: l.authority,
                    authority_name: l.authority_name,
                    data_area: l.data_area,
                    purpose_id: l.purpose_id.unwrap_or(0),
                    purpose_name: l.purpose_name,
                    shown: l.shown,
                    as_party: l.as_party,
                }
            })
            .collect();
        let next_page_token = if more {
            records.get(size as usize - 1).map(|r| format!("b{}", r.seq)).unwrap_or_default()
        } else {
            String::new()
        };
        let mut entry = entry;
        entry.citizen = Some(me);
        s.record(vec![entry.allow(items.len(), Vec::new())]).await?;
        Ok(Response::new(pb::LookupsOnMeList { items, next_page_token }))
    }

    async fn list_my_cases(&self, req: Request<pb::MyListRequest>) -> Result<Response<pb::MyCaseList>, Status> {
        let udk = self.0.catalogue.udk_cvr;
        self.mine(req, Mine::Cases, |rows, next_page_token, truncated| {
            let Rows::MyCases(v) = rows else { unreachable!("cases asked for") };
            pb::MyCaseList { items: v.iter().map(|c| convert::my_case(c, &udk)).collect(), next_page_token, truncated }
        })
        .await
    }

    async fn list_my_grants(&self, req: Request<pb::MyListRequest>) -> Result<Response<pb::GrantList>, Status> {
        self.mine(req, Mine::Grants, |rows, next_page_token, truncated| {
            let Rows::Grants(v) = rows else { unreachable!("grants asked for") };
            pb::GrantList {
                items: v.into_iter().map(|(a, g)| convert::grant(a, g)).collect(),
                next_page_token,
                truncated,
            }
        })
        .await
    }

    /// The citizen's own job-centre registrations: target group and
    /// activities, without the job centre's own notes.
    async fn list_my_employment(
        &self,
        req: Request<pb::MyListRequest>,
    ) -> Result<Response<pb::MyEmploymentList>, Status> {
        self.mine(req, Mine::Employment, |rows, next_page_token, truncated| {
            let Rows::Employment(v) = rows else { unreachable!("employment asked for") };
            pb::MyEmploymentList {
                items: v.into_iter().map(|(a, e)| convert::my_employment(a, e)).collect(),
                next_page_token,
                truncated,
            }
        })
        .await
    }

    async fn list_my_payments(&self, req: Request<pb::MyListRequest>) -> Result<Response<pb::PaymentList>, Status> {
        self.mine(req, Mine::Payments, |rows, next_page_token, truncated| {
            let Rows::Payments(v) = rows else { unreachable!("payments asked for") };
            pb::PaymentList {
                items: v.into_iter().map(|(a, p)| convert::payment(a, p)).collect(),
                next_page_token,
                truncated,
            }
        })
        .await
    }
}
