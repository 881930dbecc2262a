//! Serve: the gRPC services. Every call runs request → identity → access →
//! query → audit → response; the audit record is durable before the answer
//! leaves, and a call that can't be audited is answered UNAVAILABLE.
//!
//! Handlers are a thin shell: they parse the request into validated values
//! ([`parse`]), run the application's function for the call (the lookup
//! flow is [`crate::lookup`]), record the audit entries it returns and
//! convert the result ([`convert`]).

mod admin;
mod advis;
pub use advis::{MAX_WATCHES, MAX_WATCHES_PER_SUBSCRIBER};
mod agreements;
mod audit;
mod borgerblikket;
mod borgerblikket_config;
mod convert;
pub mod limiter;
mod overblik;
mod parse;
mod service_agreements;
pub use service_agreements::MAX_OPEN_REQUESTS;
pub mod transport;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::{Code, Request, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;

use crate::access::{Deny, DenyReason};
use crate::audit::dpo::AlarmSettings;
use crate::audit::writer::{AuditError, AuditLog};
use crate::audit::{Actor, Entry, Kind, Reason, Search, Text, TransactionId};
use crate::catalogue::Catalogue;
use crate::domain::{PartyId, copenhagen_today};
use crate::identity::{Caller, CertificatePins, Employee, OnBehalfOf, TokenError, Verifier, bearer, with_certificate};
use crate::metrics::METRICS;
use crate::proto;
use crate::store::{Store, StoreError};
use limiter::{Limiter, Limits, Verdict};
use parse::BadRequest;

pub use transport::Transport;

/// The `domain` of every `google.rpc.ErrorInfo` the service returns.
pub const ERROR_DOMAIN: &str = "overblik";

/// Roles for the administrative services.
pub const ROLE_AGREEMENTS: &str = "Administrer dataudvekslingsaftaler";
pub const ROLE_DPO: &str = "Databeskyttelsesrådgiver";
pub const ROLE_OPERATOR: &str = "Drift";
/// An authority's administrator of what its citizens see in Borgerblikket.
pub const ROLE_BORGERBLIKKET: &str = "Administrer Borgerblikket";
/// The authority's approver of IT systems' service agreements.
pub const ROLE_SERVICE_AGREEMENTS: &str = "Godkend serviceaftaler";

/// What every service shares.
pub struct Serving {
    pub store: Store,
    pub verifier: Verifier,
    pub catalogue: Catalogue,
    pub audit: AuditLog,
    pub alarms: AlarmSettings,
    anonymous: Mutex<Limiter>,
    /// Client certificates that stand for IT systems.
    certificates: CertificatePins,
}

type Shared = Arc<Serving>;

impl Serving {
    pub fn new(
        store: Store,
        verifier: Verifier,
        catalogue: Catalogue,
        audit: AuditLog,
        alarms: AlarmSettings,
        anonymous: Limits,
    ) -> Serving {
        Serving {
            store,
            verifier,
            catalogue,
            audit,
            alarms,
            anonymous: Mutex::new(Limiter::new(anonymous)),
            certificates: CertificatePins::default(),
        }
    }

    /// Knows IT systems by these client certificates too (mTLS).
    pub fn with_system_certificates(mut self, pins: CertificatePins) -> Serving {
        self.certificates = pins;
        self
    }
}

/// One call's identity and correlation ids.
struct Call {
    caller: Result<Caller, TokenError>,
    /// When the caller's token expires (Unix seconds), if it verified.
    expires: Option<i64>,
    transaction_id: TransactionId,
    request_id: Uuid,
    /// The person an IT system says it calls for (systems only; an
    /// employee's header is ignored).
    on_behalf_of: Option<OnBehalfOf>,
}

/// The rule an `x-onbehalfofuser` value must keep.
const ON_BEHALF_OF_RULE: &str =
    "one user id: visible ASCII on one line, at most 128 characters, never a personal number";

/// The current clock minute, for the anonymous rate limit.
fn minute_now() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(60)
}

impl Serving {
    /// Identifies the caller of `req`. A call without a valid token goes no
    /// further: while its peer is under the anonymous rate limit it is
    /// recorded (the call's name, the reason and the peer — nothing else it
    /// sent) and refused UNAUTHENTICATED; above the limit it is refused
    /// RESOURCE_EXHAUSTED and counted for the peer's summary record.
    async fn call<T>(&self, req: &Request<T>, kind: Kind, rpc: &'static str) -> Result<Call, Status> {
        let md = req.metadata();
        let header = md.get("authorization").and_then(|v| v.to_str().ok());
        let verified = bearer(header).and_then(|t| self.verifier.verify_until(t));
        let expires = verified.as_ref().ok().map(|(_, exp)| *exp);
        let token = verified.map(|(caller, _)| caller);
        let certificates = if self.certificates.is_empty() { None } else { req.peer_certs() };
        let pinned = certificates.as_deref().and_then(|c| c.first()).and_then(|c| self.certificates.system_of(c));
        let caller = with_certificate(token, pinned);
        // A system known by its certificate alone has no token to expire.
        let expires = expires.filter(|_| caller.is_ok());
        let transaction_id = TransactionId::from_caller(md.get("x-transaktions-id").and_then(|v| v.to_str().ok()));
        let mut call = Call { caller, expires, transaction_id, request_id: Uuid::new_v4(), on_behalf_of: None };
        if let Ok(Caller::System(_)) = &call.caller {
            let mut given = md.get_all(OnBehalfOf::HEADER).iter();
            if let Some(value) = given.next() {
                let raw = value.as_bytes();
                match OnBehalfOf::parse(raw) {
                    Ok(person) if given.next().is_none() => call.on_behalf_of = Some(person),
                    _ => {
                        let bad = BadRequest::given_bytes(OnBehalfOf::HEADER, ON_BEHALF_OF_RULE, raw);
                        return self.refuse_bad(&call, kind, Search::rpc(rpc), &bad).await;
                    }
                }
            }
        }
        let Err(token) = &call.caller else { return Ok(call) };
        let peer = req.remote_addr().map(|a| a.ip());
        let (verdict, ended) = self.anonymous.lock().expect("limiter").check(peer, minute_now());
        self.record_refusals(ended).await;
        if verdict == Verdict::Refuse {
            METRICS.anonymous_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Status::with_error_details(
                Code::ResourceExhausted,
                "RATE_LIMITED: too many calls without a valid token from this address",
                ErrorDetails::with_error_info("RATE_LIMITED", ERROR_DOMAIN, HashMap::new()),
            ));
        }
        let deny = token_denial(token);
        let mut search = Search::rpc(rpc);
        if let Some(p) = peer {
            search = search.with("peer", p.to_string().as_str());
        }
        let entry = call.entry(kind, search).deny(deny.reason);
        self.record(vec![entry]).await?;
        Err(denied(&deny))
    }

    /// Writes the summary records of peers refused over the anonymous rate
    /// limit. A summary that can't be written is logged, not retried: the
    /// refusals are counted in the metric either way.
    async fn record_refusals(&self, refusals: Vec<limiter::Refusals>) {
        if refusals.is_empty() {
            return;
        }
        let entries = refusals
            .into_iter()
            .map(|r| {
                let minute = chrono::DateTime::from_timestamp(r.minute.saturating_mul(60), 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                let peer = r.peer.map_or_else(|| "other addresses".to_string(), |p| p.to_string());
                let search = Search::rpc("*")
                    .with("peer", peer.as_str())
                    .with("minute", minute.as_str())
                    .with("refused", r.refused.to_string().as_str());
                Entry::new(TransactionId::generate(), Uuid::new_v4(), Kind::AnonymousRefusals, Actor::Anonymous, search)
                    .deny(Reason::RateLimited)
            })
            .collect();
        if let Err(e) = self.audit.record(entries).await {
            tracing::warn!(error = %e, "the summary of refused anonymous calls was not recorded");
        }
    }

    /// Records entries durably; the answer may only go out after this.
    async fn record(&self, entries: Vec<Entry>) -> Result<(), Status> {
        self.audit.record(entries).await.map(|_| ()).map_err(audit_unavailable)
    }

    /// Records a malformed request and refuses it.
    async fn refuse_bad<T>(&self, call: &Call, kind: Kind, search: Search, bad: &BadRequest) -> Result<T, Status> {
        let entry = call.entry(kind, bad.describe(search)).deny(Reason::BadRequest);
        self.record(vec![entry]).await?;
        Err(bad_request(bad))
    }

    /// Records a denial and refuses with it.
    async fn refuse<T>(&self, entry: Entry, deny: &Deny) -> Result<T, Status> {
        self.record(vec![entry.deny(deny.reason)]).await?;
        Err(denied(deny))
    }
}

/// Ends the minute of the anonymous rate limit now and then even when no
/// anonymous call comes to end it, so every refusal gets its summary.
async fn summarise_refusals(shared: Shared) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let ended = shared.anonymous.lock().expect("limiter").roll(minute_now());
        shared.record_refusals(ended).await;
    }
}

fn today() -> chrono::NaiveDate {
    copenhagen_today(chrono::Utc::now())
}

impl Call {
    /// Who the caller is, for the audit record.
    fn actor(&self) -> Actor {
        match &self.caller {
            Ok(Caller::Employee(e)) => Actor::Employee {
                user_id: Text::new(&e.user_id),
                user_name: Text::new(e.name.as_deref().unwrap_or_default()),
                authority: e.authority,
                org_unit: Text::new(e.org_unit.as_deref().unwrap_or_default()),
                it_system: Text::new(e.it_system.as_deref().unwrap_or_default()),
            },
            Ok(Caller::Citizen(_)) => Actor::Citizen,
            Ok(Caller::System(sys)) => Actor::System {
                it_system: sys.it_system,
                authority: sys.authority,
                on_behalf_of: Text::new(self.on_behalf_of.as_ref().map_or("", OnBehalfOf::as_str)),
            },
            Err(_) => Actor::Anonymous,
        }
    }

    /// An audit entry for this call, denied until decided otherwise.
    fn entry(&self, kind: Kind, search: Search) -> Entry {
        let mut e = Entry::new(self.transaction_id.clone(), self.request_id, kind, self.actor(), search);
        if let Ok(Caller::Citizen(c)) = &self.caller {
            e.citizen = Some(PartyId::Cpr(c.cpr));
        }
        e
    }

    /// The caller as an employee, or the denial to give.
    fn employee(&self) -> Result<&Employee, Deny> {
        match &self.caller {
            Ok(Caller::Employee(e)) => Ok(e),
            Ok(Caller::Citizen(_)) => Err(Deny::new(DenyReason::NoRole, "citizens use the Borgerblikket service")),
            Ok(Caller::System(_)) => Err(Deny::new(
                DenyReason::NoRole,
                "IT systems call Overblik under a service agreement; this service is for employees",
            )),
            Err(e) => Err(token_denial(e)),
        }
    }

    /// The caller as an employee holding `role`, or the denial to give.
    fn employee_with(&self, role: &str) -> Result<&Employee, Deny> {
        let e = self.employee()?;
        if e.has_role(role) { Ok(e) } else { Err(Deny::new(DenyReason::NoRole, format!("this needs the role {role}"))) }
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

fn bad_request(bad: &BadRequest) -> Status {
    let detail = bad.message();
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

/// The page token of a list's next page (`o<offset>`), or empty.
fn next_token(next: Option<usize>) -> String {
    next.map(|n| format!("o{n}")).unwrap_or_default()
}

/// An agreement as the services show it, as JSON (for the command line).
pub fn agreement_json(a: &crate::agreements::Agreement, today: chrono::NaiveDate) -> serde_json::Value {
    serde_json::to_value(convert::agreement(a, today)).expect("messages serialise")
}

/// A service agreement as the services show it, as JSON (for the command
/// line).
pub fn service_agreement_json(
    a: &crate::service_agreements::ServiceAgreement,
    today: chrono::NaiveDate,
) -> serde_json::Value {
    serde_json::to_value(convert::service_agreement(a, today)).expect("messages serialise")
}

/// An audit record as the services show it, as JSON (for the command line).
pub fn audit_record_json(r: &crate::audit::Record) -> serde_json::Value {
    serde_json::to_value(convert::audit_record(r)).expect("messages serialise")
}

/// Serves the six services, health and reflection on `transport` until
/// `shutdown`.
pub async fn serve(
    serving: Serving,
    transport: Transport,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use proto::admin_server::AdminServer;
    use proto::advis_server::AdvisServer;
    use proto::agreements_server::AgreementsServer;
    use proto::audit_server::AuditServer;
    use proto::borgerblikket_config_server::BorgerblikketConfigServer;
    use proto::borgerblikket_server::BorgerblikketServer;
    use proto::overblik_server::OverblikServer;
    use proto::service_agreements_server::ServiceAgreementsServer;

    let shared: Shared = Arc::new(serving);
    let summaries = tokio::spawn(summarise_refusals(shared.clone()));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<OverblikServer<overblik::OverblikService>>().await;
    health.set_serving::<BorgerblikketServer<borgerblikket::BorgerblikketService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let result = transport
        .server()?
        .add_service(health_service)
        .add_service(reflection)
        .add_service(OverblikServer::new(overblik::OverblikService(shared.clone())))
        .add_service(BorgerblikketServer::new(borgerblikket::BorgerblikketService(shared.clone())))
        .add_service(AgreementsServer::new(agreements::AgreementsService(shared.clone())))
        .add_service(BorgerblikketConfigServer::new(borgerblikket_config::BorgerblikketConfigService(shared.clone())))
        .add_service(ServiceAgreementsServer::new(service_agreements::ServiceAgreementsService(shared.clone())))
        .add_service(AuditServer::new(audit::AuditService(shared.clone())))
        .add_service(AdvisServer::new(advis::AdvisService::start(shared.clone())))
        .add_service(AdminServer::new(admin::AdminService(shared)))
        .serve_with_incoming_shutdown(transport.incoming, shutdown)
        .await;
    summaries.abort();
    result?;
    Ok(())
}
