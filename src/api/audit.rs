//! The data-protection officer's service. Using it is itself audited.

use tonic::{Request, Response, Status};

use super::{Call, ROLE_DPO, Shared, bad_request, citizen, convert, denied, store_failed};
use crate::access::{Deny, DenyReason};
use crate::audit::{Entry, dpo, read};
use crate::proto as pb;
use crate::proto::audit_server::Audit;
use crate::store::AuditFilter;

pub struct AuditService(pub Shared);

/// Records read for one alarm, report or export at most.
const CAP: usize = 200_000;

fn instant(s: &str, what: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    crate::domain::parse_instant(s).map(Some).map_err(|_| bad_request(format!("{what} is an RFC 3339 instant")))
}

fn filter(q: &pb::AuditQuery) -> Result<AuditFilter, Status> {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Ok(AuditFilter {
        citizen: if q.citizen.is_empty() { None } else { Some(citizen(&q.citizen)?.urn()) },
        user_id: opt(&q.user_id),
        data_area: opt(&q.data_area),
        purpose_id: (q.purpose_id != 0).then_some(q.purpose_id),
        agreement_id: opt(&q.agreement_id),
        decision: opt(&q.decision),
        from: instant(&q.from, "from")?,
        to: instant(&q.to, "to")?,
    })
}

impl AuditService {
    /// Lets a data-protection officer through; records the access either way.
    async fn dpo(&self, call: &Call, mut entry: Entry) -> Result<Entry, Status> {
        match call.employee() {
            Ok(e) if e.has_role(ROLE_DPO) => {
                entry.decision = "allow".into();
                entry.roles_used = vec![ROLE_DPO.into()];
                Ok(entry)
            }
            other => {
                let deny = match other {
                    Err(d) => d,
                    Ok(_) => Deny::new(DenyReason::NoRole, format!("the audit log needs the role {ROLE_DPO}")),
                };
                entry.decision = "deny".into();
                entry.reason = deny.reason.as_str().into();
                self.0.record(vec![entry]).await?;
                Err(denied(&deny))
            }
        }
    }
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn query_audit(&self, req: Request<pb::AuditQuery>) -> Result<Response<pb::AuditRecordList>, Status> {
        let call = self.0.call(&req);
        let q = req.into_inner();
        let mut entry = self.dpo(&call, call.entry("audit", format!("rpc: QueryAudit; {q:?}"))).await?;
        let f = filter(&q)?;
        entry.citizen = f.citizen.clone().unwrap_or_default();
        let after: i64 = if q.page_token.is_empty() {
            0
        } else {
            q.page_token
                .strip_prefix('s')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad_request("page_token is not one this service issued"))?
        };
        let size = match q.page_size {
            0 => 100,
            n => n.min(1000),
        } as i64;
        let records = self.0.store.audit_records(&f, after, size + 1).await.map_err(store_failed)?;
        let more = records.len() as i64 > size;
        let items: Vec<pb::AuditRecord> = records.iter().take(size as usize).map(convert::audit_record).collect();
        let next = if more { items.last().map(|r| format!("s{}", r.seq)).unwrap_or_default() } else { String::new() };
        entry.rows_returned = items.len() as i32;
        self.0.record(vec![entry]).await?;
        Ok(Response::new(pb::AuditRecordList { items, next_page_token: next }))
    }

    async fn list_alarms(&self, req: Request<pb::AlarmQuery>) -> Result<Response<pb::AlarmList>, Status> {
        let call = self.0.call(&req);
        let q = req.into_inner();
        let mut entry =
            self.dpo(&call, call.entry("audit", format!("rpc: ListAlarms; from: {}; to: {}", q.from, q.to))).await?;
        let f = AuditFilter { from: instant(&q.from, "from")?, to: instant(&q.to, "to")?, ..Default::default() };
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
        entry.rows_returned = items.len() as i32;
        self.0.record(vec![entry]).await?;
        Ok(Response::new(pb::AlarmList { items }))
    }

    async fn citizen_report(
        &self,
        req: Request<pb::CitizenReportRequest>,
    ) -> Result<Response<pb::CitizenReportResponse>, Status> {
        let call = self.0.call(&req);
        let q = req.into_inner();
        let mut entry = self.dpo(&call, call.entry("audit", "rpc: CitizenReport".into())).await?;
        let who = citizen(&q.citizen)?.urn();
        entry.citizen = who.clone();
        let f = AuditFilter {
            citizen: Some(who.clone()),
            from: instant(&q.from, "from")?,
            to: instant(&q.to, "to")?,
            ..Default::default()
        };
        let (records, _) = read::load(&self.0.store, &f, CAP).await.map_err(store_failed)?;
        let entries: Vec<pb::CitizenReportEntry> = dpo::citizen_report(&records, &who, &self.0.catalogue)
            .into_iter()
            .map(|e| pb::CitizenReportEntry {
                date: e.date.to_string(),
                authority: e.authority,
                data_area: e.data_area,
                purpose_id: e.purpose_id.unwrap_or(0),
                purpose: e.purpose,
            })
            .collect();
        entry.rows_returned = entries.len() as i32;
        self.0.record(vec![entry]).await?;
        Ok(Response::new(pb::CitizenReportResponse { entries }))
    }

    async fn export_csv(&self, req: Request<pb::AuditQuery>) -> Result<Response<pb::CsvExport>, Status> {
        let call = self.0.call(&req);
        let q = req.into_inner();
        let mut entry = self.dpo(&call, call.entry("audit", format!("rpc: ExportCsv; {q:?}"))).await?;
        let f = filter(&q)?;
        entry.citizen = f.citizen.clone().unwrap_or_default();
        let (records, truncated) = read::load(&self.0.store, &f, CAP).await.map_err(store_failed)?;
        if truncated {
            return Err(Status::out_of_range(format!("more than {CAP} records: narrow the period")));
        }
        entry.rows_returned = records.len() as i32;
        self.0.record(vec![entry]).await?;
        Ok(Response::new(pb::CsvExport { csv: dpo::csv(&records) }))
    }

    async fn verify_chain(
        &self,
        req: Request<pb::VerifyChainRequest>,
    ) -> Result<Response<pb::VerifyChainResponse>, Status> {
        let call = self.0.call(&req);
        let entry = self.dpo(&call, call.entry("audit", "rpc: VerifyChain".into())).await?;
        let check = read::verify(&self.0.store).await.map_err(store_failed)?;
        self.0.record(vec![entry]).await?;
        let (first_bad_seq, problem) = check.first_bad.clone().unwrap_or((0, String::new()));
        Ok(Response::new(pb::VerifyChainResponse { ok: check.ok(), records: check.records, first_bad_seq, problem }))
    }
}
