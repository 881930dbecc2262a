//! The operator's service: ingest status and dead letters.

use tonic::{Request, Response, Status};

use super::{ROLE_OPERATOR, Shared, bad_request, denied, store_failed};
use crate::access::{Deny, DenyReason};
use crate::proto as pb;
use crate::proto::admin_server::Admin;
use crate::store::DeadLetterFilter;

pub struct AdminService(pub Shared);

impl AdminService {
    async fn operator<T>(&self, req: &Request<T>, rpc: &str) -> Result<(), Status> {
        let call = self.0.call(req);
        let mut entry = call.entry("admin", format!("rpc: {rpc}"));
        let verdict = match call.employee() {
            Ok(e) if e.has_role(ROLE_OPERATOR) => Ok(()),
            Ok(_) => Err(Deny::new(DenyReason::NoRole, format!("this service needs the role {ROLE_OPERATOR}"))),
            Err(d) => Err(d),
        };
        entry.decision = if verdict.is_ok() { "allow" } else { "deny" }.into();
        if let Err(d) = &verdict {
            entry.reason = d.reason.as_str().into();
        }
        self.0.record(vec![entry]).await?;
        verdict.map_err(|d| denied(&d))
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_status(&self, req: Request<pb::GetStatusRequest>) -> Result<Response<pb::GetStatusResponse>, Status> {
        self.operator(&req, "GetStatus").await?;
        let s = self.0.store.status().await.map_err(store_failed)?;
        Ok(Response::new(pb::GetStatusResponse {
            consumed: s.consumed,
            applied: s.applied,
            duplicates: s.duplicates,
            parked: s.parked,
            dead_lettered: s.dead_lettered,
            partitions: s
                .partitions
                .iter()
                .map(|p| pb::PartitionStatus {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    next_offset: p.next_offset,
                    consumed: p.consumed,
                    applied: p.applied,
                    duplicates: p.duplicates,
                    parked: p.parked,
                    dead_lettered: p.dead_lettered,
                })
                .collect(),
            projection_rows: s.projections.into_iter().collect(),
            events: s.events,
        }))
    }

    async fn list_dead_letters(
        &self,
        req: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::DeadLetterList>, Status> {
        self.operator(&req, "ListDeadLetters").await?;
        let r = req.into_inner();
        let after: i64 = if r.page_token.is_empty() {
            0
        } else {
            r.page_token
                .strip_prefix('d')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad_request("page_token is not one this service issued"))?
        };
        let limit = i64::from(match r.page_size {
            0 => 100,
            n => n.min(1000),
        });
        let reason = (!r.reason.is_empty()).then_some(r.reason);
        let rows = self
            .0
            .store
            .dead_letters(&DeadLetterFilter { reason, after_id: after, limit: limit + 1 })
            .await
            .map_err(store_failed)?;
        let more = rows.len() as i64 > limit;
        let items: Vec<pb::DeadLetter> = rows
            .into_iter()
            .take(limit as usize)
            .map(|d| pb::DeadLetter {
                id: d.id,
                topic: d.topic,
                partition: d.partition,
                offset: d.offset,
                reason: d.reason,
                detail: d.detail,
                dead_at: d.dead_at.to_rfc3339(),
                replay_attempts: d.replay_attempts,
                bytes: d.bytes,
            })
            .collect();
        let next = if more { items.last().map(|d| format!("d{}", d.id)).unwrap_or_default() } else { String::new() };
        Ok(Response::new(pb::DeadLetterList { items, next_page_token: next }))
    }
}
