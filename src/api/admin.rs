//! The operator's service: ingest status and dead letters.

use tonic::{Request, Response, Status};

use super::parse::BadRequest;
use super::{ROLE_OPERATOR, Shared, store_failed};
use crate::audit::{Kind, Search};
use crate::proto as pb;
use crate::proto::admin_server::Admin;
use crate::store::DeadLetterFilter;

pub struct AdminService(pub Shared);

impl AdminService {
    /// Lets an operator through; records the access either way.
    async fn operator<T>(&self, req: &Request<T>, rpc: &'static str) -> Result<super::Call, Status> {
        let call = self.0.call(req, Kind::Admin, rpc).await?;
        let entry = call.entry(Kind::Admin, Search::rpc(rpc));
        match call.employee_with(ROLE_OPERATOR) {
            Ok(_) => {
                self.0.record(vec![entry.allow(1, Vec::new())]).await?;
                Ok(call)
            }
            Err(deny) => self.0.refuse(entry, &deny).await,
        }
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
        let call = self.operator(&req, "ListDeadLetters").await?;
        let r = req.into_inner();
        let after: i64 = if r.page_token.is_empty() {
            0
        } else {
            match r.page_token.strip_prefix('d').filter(|n| n.len() <= 19).and_then(|n| n.parse().ok()) {
                Some(n) => n,
                None => {
                    let bad = BadRequest::given("page_token", "a next_page_token this service returned", &r.page_token);
                    return self.0.refuse_bad(&call, Kind::Admin, Search::rpc("ListDeadLetters"), &bad).await;
                }
            }
        };
        let limit = i64::from(match r.page_size {
            0 => 100,
            n => n.min(1000),
        });
        let reason = (!r.reason.is_empty()).then(|| r.reason.chars().take(64).collect::<String>());
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
