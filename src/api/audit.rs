//! The data-protection officer's service. Using it is itself audited.
//!
//! A data-protection officer reads the records of their own authority: the
//! lookups its employees made. The national supervisory role (named in the
//! catalogue) reads every authority's, and the records no authority owns.
//! Verifying the chain covers the whole log, whoever asks.

use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::parse::{self, BadRequest};
use super::{Call, ROLE_DPO, Shared, convert, store_failed};
use crate::access::{Deny, DenyReason};
use crate::agreements;
use crate::audit::{Decision, Entry, Kind, Reason, Search, Text, dpo, prove, read};
use crate::domain::DataArea;
use crate::proto as pb;
use crate::proto::audit_server::Audit;
use crate::store::AuditFilter;

pub struct AuditService(pub Shared);

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
        kinds: None,
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

/// Page sizes of the officer's lists: 0 means 100, at most 1,000.
fn page_size(n: u32) -> usize {
    match n {
        0 => 100,
        n => n.min(QUERY_PAGE_MAX) as usize,
    }
}

/// A token `<prefix><seq>` this service issued, or empty (0).
fn seq_token(token: &str, prefix: char) -> Result<i64, BadRequest> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix(prefix)
        .filter(|n| !n.is_empty() && n.len() <= 19 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| BadRequest::given("page_token", "a next_page_token this service returned", token))
}

/// `a<seq>.<hour as Unix seconds>`, or empty.
fn alarm_token(token: &str) -> Result<Option<read::AlarmResume>, BadRequest> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || BadRequest::given("page_token", "a next_page_token this service returned", token);
    let (seq, hour) = token.strip_prefix('a').and_then(|t| t.split_once('.')).ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(seq) || !digits(hour) {
        return Err(bad());
    }
    let seq: i64 = seq.parse().map_err(|_| bad())?;
    let hour = chrono::DateTime::from_timestamp(hour.parse().map_err(|_| bad())?, 0).ok_or_else(bad)?;
    Ok(Some(read::AlarmResume { seq, hour }))
}

/// Records an export chunk holds at most.
const CSV_CHUNK: i64 = 1000;

impl AuditService {
    /// The checkpoint of `size` records (0: the newest), or NOT_FOUND.
    async fn checkpoint_of(&self, size: u64) -> Result<crate::audit::checkpoint::SignedHead, Status> {
        let cp = if size == 0 { self.0.store.latest_checkpoint().await } else { self.0.store.checkpoint(size).await }
            .map_err(store_failed)?;
        cp.map(|c| c.signed).ok_or_else(|| Status::not_found("no checkpoint of that size"))
    }

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
        let parsed = instant(&q.from, "from")
            .and_then(|from| Ok((from, instant(&q.to, "to")?)))
            .and_then(|(from, to)| Ok((from, to, alarm_token(&q.page_token)?)));
        let (from, to, resume) = match parsed {
            Ok(p) => p,
            Err(bad) => return self.0.refuse_bad(&call, Kind::Audit, Search::rpc(rpc), &bad).await,
        };
        let f = AuditFilter { authority: scope.authority(), from, to, ..Default::default() };
        let limit = page_size(q.page_size);
        let (alarms, next) =
            read::alarms_page(&self.0.store, &f, &self.0.alarms, resume, limit).await.map_err(store_failed)?;
        let items: Vec<pb::Alarm> = alarms
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
        let next_page_token = next.map(|r| format!("a{}.{}", r.seq, r.hour.timestamp())).unwrap_or_default();
        Ok(Response::new(pb::AlarmList { items, next_page_token }))
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
        let parsed = parse::citizen(&q.citizen).and_then(|who| {
            Ok((who, instant(&q.from, "from")?, instant(&q.to, "to")?, seq_token(&q.page_token, 'r')?))
        });
        let (who, from, to, after) = match parsed {
            Ok(x) => x,
            Err(bad) => return self.0.refuse_bad(&call, Kind::Audit, Search::rpc(rpc), &bad).await,
        };
        let urn = who.urn();
        entry.citizen = Some(who);
        let f = AuditFilter { authority: scope.authority(), citizen: Some(urn), from, to, ..Default::default() };
        let (report, next) = read::report_page(&self.0.store, &f, &self.0.catalogue, after, page_size(q.page_size))
            .await
            .map_err(store_failed)?;
        let entries: Vec<pb::CitizenReportEntry> = report
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
        let next_page_token = next.map(|s| format!("r{s}")).unwrap_or_default();
        Ok(Response::new(pb::CitizenReportResponse { entries, next_page_token }))
    }

    type ExportCsvStream = std::pin::Pin<Box<dyn Stream<Item = Result<pb::CsvExport, Status>> + Send + 'static>>;

    /// Streams the records as CSV, a page at a time, so memory holds one
    /// page whatever the log's size. The record of the export counts the
    /// records that match when it starts, and exactly those are sent.
    async fn export_csv(&self, req: Request<pb::AuditQuery>) -> Result<Response<Self::ExportCsvStream>, Status> {
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
        // Only records already there: the export's own record comes after.
        let (head, _) = self.0.store.audit_head().await.map_err(store_failed)?;
        f.to = f.to.or(Some(chrono::Utc::now()));
        let total = self.0.store.audit_count(&f).await.map_err(store_failed)?;
        self.0.record(vec![entry.allow(total as usize, Vec::new())]).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let store = self.0.store.clone();
        tokio::spawn(async move {
            let (mut after, mut sent) = (0i64, 0i64);
            let mut first = true;
            while sent < total {
                let page = match store.audit_records(&f, after, CSV_CHUNK.min(total - sent)).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(store_failed(e))).await;
                        return;
                    }
                };
                let page: Vec<_> = page.into_iter().take_while(|r| r.seq <= head).collect();
                let Some(last) = page.last() else { break };
                after = last.seq;
                sent += page.len() as i64;
                let mut csv = if first { dpo::CSV_HEADER.to_string() } else { String::new() };
                first = false;
                csv.push_str(&dpo::csv_lines(&page));
                if tx.send(Ok(pb::CsvExport { csv })).await.is_err() {
                    return; // the caller went away
                }
            }
            if first {
                let _ = tx.send(Ok(pb::CsvExport { csv: dpo::CSV_HEADER.to_string() })).await;
            }
        });
        let stream = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_checkpoint(&self, req: Request<pb::GetCheckpointRequest>) -> Result<Response<pb::Checkpoint>, Status> {
        let rpc = "GetCheckpoint";
        let call = self.0.call(&req, Kind::Audit, rpc).await?;
        let mut entry = call.entry(Kind::Audit, Search::rpc(rpc));
        self.officer(&call, &mut entry).await?;
        let latest = self.0.store.latest_checkpoint().await.map_err(store_failed)?;
        self.0.record(vec![entry.allow(usize::from(latest.is_some()), Vec::new())]).await?;
        let cp = latest.ok_or_else(|| Status::not_found("the log has no checkpoint yet"))?;
        Ok(Response::new(convert::checkpoint(&cp.signed)))
    }

    async fn prove_inclusion(
        &self,
        req: Request<pb::ProveInclusionRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let rpc = "ProveInclusion";
        let call = self.0.call(&req, Kind::Audit, rpc).await?;
        let q = req.get_ref();
        let search = Search::rpc(rpc)
            .with("seq", q.seq.to_string().as_str())
            .with("tree_size", q.tree_size.to_string().as_str());
        let mut entry = call.entry(Kind::Audit, search);
        let scope = self.officer(&call, &mut entry).await?;
        let cp = self.checkpoint_of(q.tree_size).await?;
        let size = cp.head.size;
        if q.seq < 1 || q.seq as u64 > size {
            let bad = BadRequest::new("seq", "a record the checkpoint covers: 1 to its size");
            return self.0.refuse_bad(&call, Kind::Audit, Search::rpc(rpc), &bad).await;
        }
        let records = self.0.store.audit_records(&Default::default(), q.seq - 1, 1).await.map_err(store_failed)?;
        // An officer proves their own authority's records; another's is
        // as good as absent.
        let record = records
            .into_iter()
            .next()
            .filter(|r| r.seq == q.seq)
            .filter(|r| scope.authority().is_none_or(|a| a == r.entry.authority));
        let Some(record) = record else {
            self.0.record(vec![entry.allow_nothing(Reason::NotFound)]).await?;
            return Err(Status::not_found("no such record of your authority"));
        };
        let path = prove::inclusion(&self.0.store, q.seq as u64, size).await.map_err(store_failed)?;
        entry.citizen = crate::domain::PartyId::parse(&record.entry.citizen).ok();
        self.0.record(vec![entry.allow(1, Vec::new())]).await?;
        Ok(Response::new(pb::InclusionProof {
            seq: q.seq,
            leaf_hash: hex::encode(record.leaf()),
            canonical: crate::audit::canonical(record.seq, &record.recorded_at, &record.entry),
            path: path.iter().map(hex::encode).collect(),
            checkpoint: Some(convert::checkpoint(&cp)),
        }))
    }

    async fn prove_consistency(
        &self,
        req: Request<pb::ProveConsistencyRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let rpc = "ProveConsistency";
        let call = self.0.call(&req, Kind::Audit, rpc).await?;
        let q = req.get_ref();
        let search = Search::rpc(rpc)
            .with("from_size", q.from_size.to_string().as_str())
            .with("to_size", q.to_size.to_string().as_str());
        let mut entry = call.entry(Kind::Audit, search);
        self.officer(&call, &mut entry).await?;
        let to = self.checkpoint_of(q.to_size).await?;
        let from = self.checkpoint_of(q.from_size.max(1)).await?;
        if q.from_size == 0 || from.head.size > to.head.size {
            let bad = BadRequest::new("from_size", "the size of a checkpoint no later than to_size");
            return self.0.refuse_bad(&call, Kind::Audit, Search::rpc(rpc), &bad).await;
        }
        let path = prove::consistency(&self.0.store, from.head.size, to.head.size).await.map_err(store_failed)?;
        self.0.record(vec![entry.allow(1, Vec::new())]).await?;
        Ok(Response::new(pb::ConsistencyProof {
            from: Some(convert::checkpoint(&from)),
            to: Some(convert::checkpoint(&to)),
            path: path.iter().map(hex::encode).collect(),
        }))
    }

    async fn verify_chain(
        &self,
        req: Request<pb::VerifyChainRequest>,
    ) -> Result<Response<pb::VerifyChainResponse>, Status> {
        let rpc = "VerifyChain";
        let call = self.0.call(&req, Kind::Audit, rpc).await?;
        let r = req.get_ref();
        // The role first, as in every Audit call; then the part asked for.
        let mut entry = call.entry(Kind::Audit, Search::rpc(rpc));
        self.officer(&call, &mut entry).await?;
        let (after, max_records) = match parse::chain_part(r.after_seq, &r.after_hash, r.max_records) {
            Ok(p) => p,
            Err(bad) => return self.0.refuse_bad(&call, Kind::Audit, Search::rpc(rpc), &bad).await,
        };
        entry.search = Search::rpc(rpc)
            .with("after_seq", after.as_ref().map_or(0, |a| a.0).to_string().as_str())
            .with("max_records", max_records.to_string().as_str());
        let part = read::verify_part(&self.0.store, after, max_records).await.map_err(store_failed)?;
        self.0.record(vec![entry.allow(0, Vec::new())]).await?;
        let check = &part.check;
        let (first_bad_seq, problem) = check.first_bad.clone().unwrap_or((0, String::new()));
        let (next_after_seq, next_after_hash) = check.verified_upto();
        Ok(Response::new(pb::VerifyChainResponse {
            ok: check.ok(),
            records: check.records,
            first_bad_seq,
            problem,
            complete: part.complete,
            next_after_seq,
            next_after_hash: next_after_hash.to_string(),
            head_seq: part.head_seq,
        }))
    }
}
