//! Serve: the gRPC services. Every call runs request → identity → access →
//! query → audit → response; the audit record is durable before the answer
//! leaves, and a call that can't be audited is answered UNAVAILABLE.

mod admin;
mod agreements;
mod audit;
mod borgerblikket;
mod convert;
mod overblik;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tonic::{Code, Request, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::access::{Deny, DenyReason};
use crate::audit::Entry;
use crate::audit::dpo::AlarmSettings;
use crate::audit::writer::{AuditError, AuditLog};
use crate::catalogue::Catalogue;
use crate::domain::{PartyId, copenhagen_today};
use crate::identity::{Caller, Employee, TokenError, Verifier, bearer};
use crate::proto;
use crate::store::{Store, StoreError};

/// The `domain` of every `google.rpc.ErrorInfo` the service returns.
pub const ERROR_DOMAIN: &str = "overblik";

/// Roles for the administrative services.
pub const ROLE_AGREEMENTS: &str = "Administrer dataudvekslingsaftaler";
pub const ROLE_DPO: &str = "Databeskyttelsesrådgiver";
pub const ROLE_OPERATOR: &str = "Drift";

/// What every service shares.
pub struct Serving {
    pub store: Store,
    pub verifier: Verifier,
    pub catalogue: Catalogue,
    pub audit: AuditLog,
    pub alarms: AlarmSettings,
}

type Shared = Arc<Serving>;

/// One call's identity and correlation ids.
struct Call {
    caller: Result<Caller, TokenError>,
    transaction_id: String,
    request_id: String,
}

impl Serving {
    fn call<T>(&self, req: &Request<T>) -> Call {
        let md = req.metadata();
        let header = md.get("authorization").and_then(|v| v.to_str().ok());
        let caller = bearer(header).and_then(|t| self.verifier.verify(t));
        // The caller's transaction id correlates our log with theirs; taken
        // as given when it is a sane token, otherwise one is made.
        let transaction_id = md
            .get("x-transaktions-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
        Call { caller, transaction_id, request_id: uuid::Uuid::new_v4().to_string() }
    }

    /// Records entries durably; the answer may only go out after this.
    async fn record(&self, entries: Vec<Entry>) -> Result<(), Status> {
        self.audit.record(entries).await.map(|_| ()).map_err(audit_unavailable)
    }
}

fn today() -> chrono::NaiveDate {
    copenhagen_today(chrono::Utc::now())
}

impl Call {
    /// An audit entry for this call, filled with what the caller is known as.
    fn entry(&self, kind: &str, search_criteria: String) -> Entry {
        let mut e = Entry {
            transaction_id: self.transaction_id.clone(),
            request_id: self.request_id.clone(),
            kind: kind.to_string(),
            search_criteria,
            ..Default::default()
        };
        match &self.caller {
            Ok(Caller::Employee(emp)) => {
                e.user_id = emp.user_id.clone();
                e.user_name = emp.name.clone().unwrap_or_default();
                e.authority = emp.authority.to_string();
                e.org_unit = emp.org_unit.clone().unwrap_or_default();
                e.it_system = emp.it_system.clone().unwrap_or_default();
            }
            Ok(Caller::Citizen(c)) => {
                e.user_id = "citizen".into();
                e.citizen = format!("{}{}", PartyId::CPR_PREFIX, c.cpr.as_str());
            }
            Err(_) => {}
        }
        e
    }

    /// The caller as an employee, or the denial to give.
    fn employee(&self) -> Result<&Employee, Deny> {
        match &self.caller {
            Ok(Caller::Employee(e)) => Ok(e),
            Ok(Caller::Citizen(_)) => Err(Deny::new(DenyReason::NoRole, "citizens use the Borgerblikket service")),
            Err(e) => Err(token_denial(e)),
        }
    }
}

fn token_denial(e: &TokenError) -> Deny {
    match e {
        TokenError::Missing => Deny::new(DenyReason::NoToken, "send authorization: Bearer <token>"),
        TokenError::Bad(why) => Deny::new(DenyReason::BadToken, *why),
    }
}

/// A denial as a status: UNAUTHENTICATED without a valid token, otherwise
/// PERMISSION_DENIED; the reason code in `ErrorInfo`, no data.
fn denied(d: &Deny) -> Status {
    let code = match d.reason {
        DenyReason::NoToken | DenyReason::BadToken => Code::Unauthenticated,
        _ => Code::PermissionDenied,
    };
    let metadata = HashMap::from([("detail".to_string(), d.detail.clone())]);
    Status::with_error_details(
        code,
        format!("{}: {}", d.reason.as_str(), d.detail),
        ErrorDetails::with_error_info(d.reason.as_str(), ERROR_DOMAIN, metadata),
    )
}

fn bad_request(detail: impl Into<String>) -> Status {
    let detail = detail.into();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("BAD_REQUEST: {detail}"),
        ErrorDetails::with_error_info("BAD_REQUEST", ERROR_DOMAIN, HashMap::from([("detail".to_string(), detail)])),
    )
}

fn audit_unavailable(e: AuditError) -> Status {
    Status::with_error_details(
        Code::Unavailable,
        format!("AUDIT_UNAVAILABLE: {e}"),
        ErrorDetails::with_error_info("AUDIT_UNAVAILABLE", ERROR_DOMAIN, HashMap::new()),
    )
}

fn store_failed(e: StoreError) -> Status {
    tracing::warn!(error = %e, "store query failed");
    Status::with_error_details(
        Code::Unavailable,
        "STORE_UNAVAILABLE: the index can't be read right now",
        ErrorDetails::with_error_info("STORE_UNAVAILABLE", ERROR_DOMAIN, HashMap::new()),
    )
}

/// Parses a citizen given as a party URN or as 10 CPR digits.
fn citizen(s: &str) -> Result<PartyId, Status> {
    let s = s.trim();
    let urn = if s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) {
        format!("{}{s}", PartyId::CPR_PREFIX)
    } else {
        s.to_string()
    };
    PartyId::parse(&urn).map_err(|e| bad_request(format!("citizen: {}", e.detail)))
}

/// Page tokens are opaque to callers: `o<offset>` into the filtered rows.
fn page<T>(items: Vec<T>, size: u32, token: &str) -> Result<(Vec<T>, String), Status> {
    let size = match size {
        0 => 100,
        n => n.min(500),
    } as usize;
    let offset = if token.is_empty() {
        0
    } else {
        token
            .strip_prefix('o')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| bad_request("page_token is not one this service issued"))?
    };
    let total = items.len();
    let end = offset.saturating_add(size).min(total);
    let next = if end < total { format!("o{end}") } else { String::new() };
    Ok((items.into_iter().skip(offset).take(size).collect(), next))
}

/// An agreement as the services show it, as JSON (for the command line).
pub fn agreement_json(a: &crate::agreements::Agreement, today: chrono::NaiveDate) -> serde_json::Value {
    serde_json::to_value(convert::agreement(a, today)).expect("messages serialise")
}

/// An audit record as the services show it, as JSON (for the command line).
pub fn audit_record_json(r: &crate::audit::Record) -> serde_json::Value {
    serde_json::to_value(convert::audit_record(r)).expect("messages serialise")
}

/// Binds the gRPC address (port 0 picks a free port; `local_addr` tells).
pub fn bind(addr: SocketAddr) -> anyhow::Result<tonic::transport::server::TcpIncoming> {
    tonic::transport::server::TcpIncoming::bind(addr)
        .map(|i| i.with_nodelay(Some(true)))
        .map_err(|e| anyhow::anyhow!("can't listen for gRPC on {addr}: {e}"))
}

/// Serves the five services, health and reflection until `shutdown`.
pub async fn serve(
    serving: Serving,
    incoming: tonic::transport::server::TcpIncoming,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use proto::admin_server::AdminServer;
    use proto::agreements_server::AgreementsServer;
    use proto::audit_server::AuditServer;
    use proto::borgerblikket_server::BorgerblikketServer;
    use proto::overblik_server::OverblikServer;

    let shared: Shared = Arc::new(serving);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<OverblikServer<overblik::OverblikService>>().await;
    health.set_serving::<BorgerblikketServer<borgerblikket::BorgerblikketService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    if let Ok(addr) = incoming.local_addr() {
        tracing::info!(%addr, "gRPC listening");
    }
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(OverblikServer::new(overblik::OverblikService(shared.clone())))
        .add_service(BorgerblikketServer::new(borgerblikket::BorgerblikketService(shared.clone())))
        .add_service(AgreementsServer::new(agreements::AgreementsService(shared.clone())))
        .add_service(AuditServer::new(audit::AuditService(shared.clone())))
        .add_service(AdminServer::new(admin::AdminService(shared)))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
