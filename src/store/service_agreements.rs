//! IT systems' service agreements, once for both backends: read by system
//! and authority, written (a new one, or a change whose status is still the
//! one it was read with) in the transaction that appends its audit record.
//! The calls, the scope and the approver's answers are stored as JSON the
//! service writes; reading them back checks them again.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::backend::{Backend, Sql};
use super::engine::{Engine, EngineTx, append_rows, fetch_rows};
use super::rows::{Row, Val};
use super::schema::durable;
use super::types::{Day, Id, Instant};
use super::*;
use crate::lookup::Rpc;
use crate::service_agreements::{Answers, Decided, Scope, ServiceAgreement, Status};

/// Agreements one read returns at most: far above any authority's count, a
/// bound on one read's memory.
const READ_LIMIT: i64 = 10_000;

/// Whose agreements to read.
#[derive(Clone, Debug, Default)]
pub struct ServiceAgreementFilter {
    pub it_system: Option<Uuid>,
    pub authority: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ServiceAgreementRow {
    id: Id,
    it_system: Id,
    authority: String,
    justification: String,
    rpcs: String,
    scope: String,
    valid_from: Day,
    valid_to: Day,
    status: String,
    requested_at: Instant,
    decided_by: Option<String>,
    decided_at: Option<Instant>,
    answers: Option<String>,
    rejection_reason: Option<String>,
    revoked_by: Option<String>,
    revoked_at: Option<Instant>,
}

impl ServiceAgreementRow {
    fn decode(self) -> Result<ServiceAgreement> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("service agreement: {what}"));
        let names: Vec<String> = serde_json::from_str(&self.rpcs).map_err(|_| corrupt("rpcs"))?;
        let rpcs =
            names.iter().map(|n| Rpc::parse(n)).collect::<Option<BTreeSet<Rpc>>>().ok_or_else(|| corrupt("rpcs"))?;
        let scope: Scope = serde_json::from_str(&self.scope).map_err(|_| corrupt("scope"))?;
        scope.kle_constraint().map_err(|_| corrupt("scope"))?;
        let status = Status::parse(&self.status).ok_or_else(|| corrupt("status"))?;
        let decided = match (self.decided_by, self.decided_at, self.answers, self.rejection_reason) {
            (Some(by), Some(at), Some(answers), None) => {
                let answers: Answers = serde_json::from_str(&answers).map_err(|_| corrupt("answers"))?;
                Some(Decided::Approved { by, at: at.0, answers })
            }
            (Some(by), Some(at), None, Some(reason)) => Some(Decided::Rejected { by, at: at.0, reason }),
            (None, None, None, None) => None,
            _ => return Err(corrupt("decision")),
        };
        Ok(ServiceAgreement {
            id: self.id.0,
            it_system: self.it_system.0,
            authority: Cvr::parse(&self.authority).map_err(|_| corrupt("authority"))?,
            justification: self.justification,
            rpcs,
            scope,
            valid_from: self.valid_from.0,
            valid_to: self.valid_to.0,
            status,
            requested_at: self.requested_at.0,
            decided,
            revoked_by: self.revoked_by,
            revoked_at: self.revoked_at.map(|t| t.0),
        })
    }
}

/// The decision's columns: by, at, answers (JSON), rejection reason.
fn decision_cells(a: &ServiceAgreement) -> (Val<'_>, Val<'_>, Val<'_>, Val<'_>) {
    match &a.decided {
        None => (Val::Null, Val::Null, Val::Null, Val::Null),
        Some(Decided::Approved { by, at, answers }) => (
            Val::str(by),
            Val::Time(*at),
            Val::from(serde_json::to_string(answers).expect("answers serialise")),
            Val::Null,
        ),
        Some(Decided::Rejected { by, at, reason }) => (Val::str(by), Val::Time(*at), Val::Null, Val::str(reason)),
    }
}

fn row(a: &ServiceAgreement) -> Row<'_> {
    let rpcs: Vec<&str> = a.rpcs.iter().map(|r| r.name()).collect();
    let (by, at, answers, reason) = decision_cells(a);
    vec![
        Val::Uuid(a.id),
        Val::Uuid(a.it_system),
        Val::str(a.authority.as_str()),
        Val::str(&a.justification),
        Val::from(serde_json::to_string(&rpcs).expect("names serialise")),
        Val::from(serde_json::to_string(&a.scope).expect("scopes serialise")),
        Val::Date(a.valid_from),
        Val::Date(a.valid_to),
        Val::str(a.status.as_str()),
        Val::Time(a.requested_at),
        by,
        at,
        answers,
        reason,
        a.revoked_by.as_deref().map_or(Val::Null, Val::str),
        a.revoked_at.map_or(Val::Null, Val::Time),
    ]
}

impl<B: Backend> Engine<B> {
    /// The agreements `filter` names, by id.
    pub async fn service_agreements(&self, filter: &ServiceAgreementFilter) -> Result<Vec<ServiceAgreement>> {
        let mut q = Sql::<B>::new();
        let mut cond = vec!["true".to_string()];
        if let Some(s) = filter.it_system {
            cond.push(format!("it_system = {}", q.arg(Val::Uuid(s))));
        }
        if let Some(a) = &filter.authority {
            cond.push(format!("authority = {}", q.arg(Val::str(a))));
        }
        let limit = q.arg(READ_LIMIT);
        let cols = durable::names(durable::SERVICE_AGREEMENTS);
        let cond = cond.join(" AND ");
        let q = q.text(format!("SELECT {cols} FROM service_agreements WHERE {cond} ORDER BY id LIMIT {limit}"));
        let rows: Vec<ServiceAgreementRow> = fetch_rows(self.b.lookups(), q).await?;
        rows.into_iter().map(ServiceAgreementRow::decode).collect()
    }

    /// One of `authority`'s agreements by id.
    pub async fn service_agreement(&self, authority: &str, id: Uuid) -> Result<Option<ServiceAgreement>> {
        let mut q = Sql::<B>::new();
        let (a, i) = (q.arg(Val::str(authority)), q.arg(Val::Uuid(id)));
        let cols = durable::names(durable::SERVICE_AGREEMENTS);
        let q = q.text(format!("SELECT {cols} FROM service_agreements WHERE authority = {a} AND id = {i}"));
        let rows: Vec<ServiceAgreementRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter().next().map(ServiceAgreementRow::decode).transpose()
    }
}

/// Binds `v`, or writes a NULL as one: a bound NULL has no type PostgreSQL
/// could give a timestamp column.
fn cell<B: Backend>(q: &mut Sql<B>, v: Val<'_>) -> String {
    match v {
        Val::Null => "NULL".to_string(),
        v => q.arg(v),
    }
}

impl<B: Backend> EngineTx<B> {
    pub async fn insert_service_agreement(&mut self, a: &ServiceAgreement) -> Result<()> {
        append_rows::<B>(&mut self.tx, "service_agreements", durable::SERVICE_AGREEMENTS, &[row(a)]).await?;
        Ok(())
    }

    /// Writes a changed agreement if its status is still `expected`.
    pub async fn update_service_agreement(&mut self, a: &ServiceAgreement, expected: Status) -> Result<()> {
        let mut q = Sql::<B>::new();
        let set = cell::<B>;
        let (by, at, answers, reason) = decision_cells(a);
        let status = set(&mut q, Val::str(a.status.as_str()));
        let (by, at, answers, reason) = (set(&mut q, by), set(&mut q, at), set(&mut q, answers), set(&mut q, reason));
        let revoked_by = set(&mut q, a.revoked_by.as_deref().map_or(Val::Null, Val::str));
        let revoked_at = set(&mut q, a.revoked_at.map_or(Val::Null, Val::Time));
        let (id, authority, was) =
            (q.arg(Val::Uuid(a.id)), q.arg(Val::str(a.authority.as_str())), q.arg(Val::str(expected.as_str())));
        let n = B::execute(
            &mut self.tx,
            q.text(format!(
                "UPDATE service_agreements SET status = {status}, decided_by = {by}, decided_at = {at},
                 answers = {answers}, rejection_reason = {reason}, revoked_by = {revoked_by}, revoked_at = {revoked_at}
                 WHERE id = {id} AND authority = {authority} AND status = {was}"
            )),
        )
        .await?;
        if n != 1 {
            return Err(StoreError::Conflict("the service agreement changed meanwhile".into()));
        }
        Ok(())
    }
}
