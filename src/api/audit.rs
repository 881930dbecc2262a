//! The data-protection officer's service. Using it is itself audited.
//!
//! A data-protection officer reads the records of their own authority: the
//! lookups its employees made. The national supervisory role (named in the
//! catalogue) reads every authority's, and the records no authority owns.
//! Verifying the chain covers the whole log, whoever asks.

use tonic::{Request, Response, Status};

use super::parse::{self, BadRequest};
use super::{Call, ROLE_DPO, Shared, convert, store_failed};
use crate::access::{Deny, DenyReason};
use crate::agreements;
use crate::audit::{Decision, Entry, Kind, Search, Text, dpo, read};
use crate::domain::DataArea;
use crate::proto as pb;
use crate::proto::audit_server::Audit;
use crate::store::AuditFilter;

pub struct AuditService(pub Shared);

/// Records read for one alarm, report or export at most.
const CAP: usize = 200_000;

/// Records a `QueryAudit` page holds at most.
const QUERY_PAGE_MAX: u32 = 1000;

/// Whose records an officer reads.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Scope {
    /// One authority's (CVR).
    Authority(String),
    National,
}

impl Scope {
    fn authority(&self) -> Option<String> {
        match self {
            Scope::Authority(cvr) => Some(cvr.clone()),
            Scope::National => None,
        }
    }
}

fn instant(s: &str, field: &'static str) -> Result<Option<chrono::DateTime<chrono::Utc>>, BadRequest> {
    if s.is_empty() {
        return Ok(None);
    }
    crate::domain::parse_instant(s).map(Some).map_err(|_| BadRequest::given(field, "an RFC 3339 instant", s))
}

/// The query's filters, validated; the search criteria that record them.
fn filter(q: &pb::AuditQuery, search: Search) -> Result<(AuditFilter, Search), BadRequest> {
    let mut search = search;
    let citizen = if q.citizen.is_empty() { None } else { Some(parse::citizen(&q.citizen)?) };
    let data_area = if q.data_area.is_empty() {
        None
    } else {
        let a = DataArea::parse(&q.data_area)
            .ok_or_else(|| BadRequest::given("data_area", "a data area of the catalogue", &q.data_area))?;
        search = search.with("data_area", a.as_str());
        Some(a.as_str().to_string())
    };
    let decision = if q.decision.is_empty() {
        None
    } else {
        let d =
            Decision::parse(&q.decision).ok_or_else(|| BadRequest::given("decision", "allow or deny", &q.decision))?;
        search = search.with("decision", d.as_str());
        Some(d.as_str().to_string())
    };
    let agreement_id = if q.agreement_id.is_empty() {
        None
    } else {
        agreements::check_id(&q.agreement_id)
            .map_err(|_| BadRequest::given("agreement_id", "an agreement id", &q.agreement_id))?;
        search = search.with("agreement_id", q.agreement_id.as_str());
        Some(q.agreement_id.clone())
    };
    let user_id = if q.user_id.is_empty() {
        None
    } else {
        if q.user_id.chars().count() > Text::MAX_CHARS {
            return Err(BadRequest::given("user_id", "at most 256 characters", &q.user_id));
        }
        search = search.with("user_id", q.user_id.as_str());
        Some(q.user_id.clone())
    };
    if q.purpose_id != 0 {
        search = search.with("purpose_id", q.purpose_id.to_string().as_str());
    }
    let from = instant(&q.from, "from")?;
    let to = instant(&q.to, "to")?;
    for (k, v) in [("from", from), ("to", to)] {
        if let Some(t) = v {
            search = search.with(k, t.to_rfc3339().as_str());
        }
    }
    let f = AuditFilter {
        authority: None,
        citizen: citizen.map(|c| c.urn()),
        user_id,
        data_area,
        purpose_id: (q.purpose_id != 0).then_some(q.purpose_id),
        agreement_id,
        decision,
        from,
        to,
    };
    Ok((f, search))
}

impl AuditService {
    /// Lets an officer through with their scope; records the refusal
    /// otherwise.
    async fn officer(&self, call: &Call, entry: &mut Entry) -> Result<Scope, Status> {
        let supervisory = &self.0.catalogue.supervisory_role;
        let scope = call.employee().and_then(|e| {
            if e.has_role(supervisory) {
                entry.roles_used = vec![Text::new(supervisory)];
                Ok(Scope::National)
            } else if e.has_role(ROLE_DPO) {
                entry.roles_used = vec![Text::new(ROLE_DPO)];
                Ok(Scope::Authority(e.authority.to_string()))
            } else {
                Err(Deny::new(DenyReason::NoRole, format!("the audit log needs the role {ROLE_DPO}")))
            }
        });
        match scope {
            Ok(s) => Ok(s),
            Err(deny) => self.0.refuse(entry.clone(), &deny).await,
        }
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn query_audit(&self, req: Request<pb::AuditQuery>) -> Result<Response<pb::AuditRecordList>, Status> {
        let rpc = "QueryAudit";
        let call = self.0.call(&req, Kind::Audit, rpc).await?;
        let q = req.get_ref();
        let mut entry = call.entry(Kind::Audit, Search::rpc(rpc));
        let scope = self.officer(&call, &mut entry).await?;
        let parsed = filter(q, Search::rpc(rpc)).and_then(|(f, search)| {
            let after: i64 = if q.page_token.is_empty() {
                0
            } else {
                q.page_token
                    .strip_prefix('s')
                    .filter(|n| n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| {
                        BadRequest::given("page_token", "a next_page_token this service returned", &q.page_token)
                    })?
            };
            Ok((f, search, after))
        });
        let (mut f, search, after) = match parsed {
            Ok(x) => x,
            Err(bad) => return self.0.refuse_bad(&call, Kind::Audit, Search::rpc(rpc), &bad).await,
        };
        f.authority = scope.authority();
        entry.search = search;
        entry.citizen = f.citizen.as_deref().and_then(|c| crate::domain::PartyId::parse(c).ok());
        let size = match q.page_size {
            0 => 100,
            n => n.min(QUERY_PAGE_MAX),
        } as i64;
        let records = self.0.store.audit_records(&f, after, size + 1).await.map_err(store_failed)?;
        let more = records.len() as i64 > size;
        let items: Vec<pb::AuditRecord> = records.iter().take(size as usize).map(convert::audit_record).collect();
        let next = if more { items.last().map(|r| format!("s{}", r.seq)).unwrap_or_default() } else { String::new() };
        self.0.record(vec![entry.allow(items.len(), Vec::new())]).await?;
        Ok(Response::new(pb::AuditRecordList { items, next_page_token: next }))
    }

    async fn list_alarms(&self, req: Request<pb::AlarmQuery>) -> Result<Response<pb::AlarmList>, Status> {
        let rpc = "ListAlarms";
        let call = self.0.call(&req, Kind::Audit, rpc).await?;
        let q = req.get_ref();
        let mut entry = call.entry(Kind::Audit, Search::rpc(rpc));
        let scope = self.officer(&call, &mut entry).await?;
        let period = instant(&q.from, "from").and_then(|from| Ok((from, instant(&q.to, "to")?)));
        let (from, to) = match period {
            Ok(p) => p,
            Err(bad) => return self.0.refuse_bad(&call, Kind::Audit, Search::rpc(rpc), &bad).await,
        };
        let f = AuditFilter { authority: scope.authority(), from, to, ..Default::default() };
        let (records, _) = read::load(&self.0.store, &f, CAP).await.map_err(store_failed)?;
        let items: Vec<pb::Alarm> = dpo::alarms(&records, &self.0.alarms)
            .into_iter()
            .map(|a| pb::Alarm {
                kind: a.kind,
                seq: a.seq,
                user_id: a.user_id,
                citizen: a.citizen,
                at: a.at.to_rfc3339(),
                detail: a.detail,
            })
            .collect();
        self.0.record(vec![entry.allow(items.len(), Vec::new())]).await?;
        Ok(Response::new(pb::AlarmList { items }))
    }

    async fn citizen_report(
        &self,
        req: Request<pb::CitizenReportRequest>,
    ) -> Result<Response<pb::CitizenReportResponse>, Status> {
        let rpc = "CitizenReport";
        let call = self.0.call(&req, Kind::Audit, rpc).await?;
        let q = req.get_ref();
        let mut entry = call.entry(Kind::Audit, Search::rpc(rpc));
        let scope = self.officer(&call, &mut entry).await?;
        let parsed =
            parse::citizen(&q.citizen).and_then(|who| Ok((who, instant(&q.from, "from")?, instant(&q.to, "to")?)));
        let (who, from, to) = match parsed {
            Ok(x) => x,
            Err(bad) => return self.0.refuse_bad(&call, Kind::Audit, Search::rpc(rpc), &bad).await,
        };
        let urn = who.urn();
        entry.citizen = Some(who);
        let f =
            AuditFilter { authority: scope.authority(), citizen: Some(urn.clone()), from, to, ..Default::default() };
        let (records, _) = read::load(&self.0.store, &f, CAP).await.map_err(store_failed)?;
        let entries: Vec<pb::CitizenReportEntry> = dpo::citizen_report(&records, &urn, &self.0.catalogue)
            .into_iter()
            .map(|e| pb::CitizenReportEntry {
                date: e.date.to_string(),
                authority: e.authority,
                data_area: e.data_area,
                purpose_id: e.purpose_id.unwrap_or(0),
                purpose: e.purpose,
            })
            .collect();
        self.0.record(vec![entry.allow(entries.len(), Vec::new())]).await?;
        Ok(Response::new(pb::CitizenReportResponse { entries }))
    }

    async fn export_csv(&self, req: Request<pb::AuditQuery>) -> Result<Response<pb::CsvExport>, Status> {
        let rpc = "ExportCsv";
        let call = self.0.call(&req, Kind::Audit, rpc).await?;
        let q = req.get_ref();
        let mut entry = call.entry(Kind::Audit, Search::rpc(rpc));
        let scope = self.officer(&call, &mut entry).await?;
        let (mut f, search) = match filter(q, Search::rpc(rpc)) {
            Ok(x) => x,
            Err(bad) => return self.0.refuse_bad(&call, Kind::Audit, Search::rpc(rpc), &bad).await,
        };
        f.authority = scope.authority();
        entry.search = search;
        entry.citizen = f.citizen.as_deref().and_then(|c| crate::domain::PartyId::parse(c).ok());
        let (records, truncated) = read::load(&self.0.store, &f, CAP).await.map_err(store_failed)?;
        if truncated {
            return Err(Status::out_of_range(format!("more than {CAP} records: narrow the period")));
        }
        self.0.record(vec![entry.allow(records.len(), Vec::new())]).await?;
        Ok(Response::new(pb::CsvExport { csv: dpo::csv(&records) }))
    }

    async fn verify_chain(
        &self,
        req: Request<pb::VerifyChainRequest>,
    ) -> Result<Response<pb::VerifyChainResponse>, Status> {
        let rpc = "VerifyChain";
        let call = self.0.call(&req, Kind::Audit, rpc).await?;
        let mut entry = call.entry(Kind::Audit, Search::rpc(rpc));
        self.officer(&call, &mut entry).await?;
        let check = read::verify(&self.0.store).await.map_err(store_failed)?;
        self.0.record(vec![entry.allow(0, Vec::new())]).await?;
        let (first_bad_seq, problem) = check.first_bad.clone().unwrap_or((0, String::new()));
        Ok(Response::new(pb::VerifyChainResponse { ok: check.ok(), records: check.records, first_bad_seq, problem }))
    }
}
