//! IT systems under service agreements, over gRPC on both backends: a
//! system calls exactly what its approved agreement names and nothing else;
//! the approver of the same authority decides; every change, call and
//! refusal is recorded under the system's UUID; the person it calls for is
//! recorded only once validated; the review finds what was never used.

use chrono::{Days, Utc};
use overblik::api::{ROLE_AGREEMENTS, ROLE_DPO, ROLE_SERVICE_AGREEMENTS};
use overblik::audit::Record;
use overblik::catalogue::Catalogue;
use overblik::domain::{Cvr, DataArea, Sensitivity, copenhagen_today};
use overblik::identity::Claims;
use overblik::identity::keys::DEFAULT_AUDIENCE;
use overblik::lookup::Rpc;
use overblik::proto as pb;
use overblik::proto::agreements_client::AgreementsClient;
use overblik::proto::audit_client::AuditClient;
use overblik::proto::borgerblikket_client::BorgerblikketClient;
use overblik::proto::overblik_client::OverblikClient;
use overblik::proto::service_agreements_client::ServiceAgreementsClient;
use overblik::service_agreements::{Answers, Request, ServiceAgreement, Status as SaStatus};
use overblik::store::{AuditFilter, Store};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::serve::{Served, authed, employee, list, load_facts, operator_entry, served};
use crate::support::Backend;

const AARHUS: &str = "55133018";
const ODENSE: &str = "35209115";
const X: &str = "0101801234";

fn system_claims(system: Uuid, cvr: &str) -> Claims {
    Claims {
        aud: DEFAULT_AUDIENCE.into(),
        sub: format!("system:{system}"),
        exp: Utc::now().timestamp() + 600,
        iat: Some(Utc::now().timestamp()),
        cvr: Some(cvr.into()),
        it_system: Some(system.to_string()),
        ..Default::default()
    }
}

fn area(a: &str, purposes: &[u32]) -> pb::ScopeArea {
    pb::ScopeArea { data_area: a.into(), purpose_ids: purposes.to_vec() }
}

fn request(rpcs: &[&str], areas: Vec<pb::ScopeArea>, kle: &[&str], days: u64) -> pb::RequestServiceAgreementRequest {
    let today = copenhagen_today(Utc::now());
    pb::RequestServiceAgreementRequest {
        justification: "The ESDH shows the citizen's cases beside the case being handled".into(),
        rpcs: rpcs.iter().map(|r| r.to_string()).collect(),
        areas,
        kle: kle.iter().map(|k| k.to_string()).collect(),
        sensitivity: 3,
        valid_from: today.to_string(),
        valid_to: (today + Days::new(days)).to_string(),
    }
}

fn answers() -> pb::ApprovalAnswers {
    pb::ApprovalAnswers {
        who_how_long_why: "Aarhus' ESDH, 30 days, case overview during a pilot".into(),
        services_needed: "Yes: the case list and the overview".into(),
        data_scope: "Cases, purpose 1, every KLE subject, up to sensitive".into(),
        whole_period: "Yes: the pilot runs the whole period".into(),
        understandable_later: "Yes: the justification names the pilot".into(),
    }
}

fn reason<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    match r {
        Ok(ok) => panic!("expected a refusal, got {:?}", ok.into_inner()),
        Err(s) => (s.code(), s.get_details_error_info().map(|i| i.reason).unwrap_or_default()),
    }
}

/// Requests with the system's token and approves with an Aarhus approver's.
async fn approved(s: &Served, system: Uuid, req: pb::RequestServiceAgreementRequest) -> String {
    let mut sa = ServiceAgreementsClient::new(s.channel.clone());
    let token = s.key.mint(&system_claims(system, AARHUS)).unwrap();
    let id = sa.request_service_agreement(authed(req, Some(&token))).await.unwrap().into_inner().id;
    let approver = s.key.mint(&employee(AARHUS, &[ROLE_SERVICE_AGREEMENTS])).unwrap();
    let a = pb::ApproveServiceAgreementRequest { id: id.clone(), answers: Some(answers()) };
    let done = sa.approve_service_agreement(authed(a, Some(&approver))).await.unwrap().into_inner();
    assert!(done.active);
    id
}

/// The records of the system's calls (user id `system:<uuid>`).
async fn records_of(store: &Store, system: Uuid) -> Vec<Record> {
    let filter = AuditFilter { user_id: Some(format!("system:{system}")), ..Default::default() };
    store.audit_records(&filter, 0, 10_000).await.unwrap()
}

async fn a_system_calls_exactly_what_its_agreement_names(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let system = Uuid::new_v4();
    let token = s.key.mint(&system_claims(system, AARHUS)).unwrap();
    let mut client = OverblikClient::new(s.channel.clone());
    let mut sa = ServiceAgreementsClient::new(s.channel.clone());

    // No agreement, then a requested one: no access yet.
    let (code, why) = reason(client.list_cases(authed(list("sager", &[1]), Some(&token))).await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "NO_SERVICE_AGREEMENT"));
    let req = request(&["ListCases", "GetCitizenOverview"], vec![area("sager", &[1])], &["*"], 30);
    let id = sa.request_service_agreement(authed(req, Some(&token))).await.unwrap().into_inner().id;
    let (_, why) = reason(client.list_cases(authed(list("sager", &[1]), Some(&token))).await);
    assert_eq!(why, "NO_SERVICE_AGREEMENT", "requested is not approved");

    let approver = s.key.mint(&employee(AARHUS, &[ROLE_SERVICE_AGREEMENTS])).unwrap();
    let a = pb::ApproveServiceAgreementRequest { id: id.clone(), answers: Some(answers()) };
    sa.approve_service_agreement(authed(a, Some(&approver))).await.unwrap();

    // Its call, its area, its purpose: the rows its scope lets out (the
    // sensitivity ceiling 3 hides the VIP case).
    let cases = client.list_cases(authed(list("sager", &[1]), Some(&token))).await.unwrap().into_inner().items;
    let titles: Vec<&str> = cases.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(cases.len(), 2, "{titles:?}");
    assert!(!titles.contains(&"Borgmesterens sag"));

    // Outside the scope: a purpose, a call, an area.
    let (_, why) = reason(client.list_cases(authed(list("sager", &[2]), Some(&token))).await);
    assert_eq!(why, "OUTSIDE_SERVICE_AGREEMENT", "a purpose not in scope");
    let (_, why) = reason(client.list_grants(authed(list("ydelser", &[1]), Some(&token))).await);
    assert_eq!(why, "OUTSIDE_SERVICE_AGREEMENT", "a call not in the agreement");
    let timeline = pb::TimelineRequest {
        citizen: X.into(),
        purposes: vec![pb::AreaPurpose { data_area: "sager".into(), purpose_ids: vec![1] }],
        ..Default::default()
    };
    let (_, why) = reason(client.get_timeline(authed(timeline, Some(&token))).await);
    assert_eq!(why, "OUTSIDE_SERVICE_AGREEMENT", "the timeline is a call of its own");
    let overview = pb::CitizenOverviewRequest {
        citizen: X.into(),
        purposes: vec![
            pb::AreaPurpose { data_area: "sager".into(), purpose_ids: vec![1] },
            pb::AreaPurpose { data_area: "ydelser".into(), purpose_ids: vec![1] },
        ],
    };
    let sections = client.get_citizen_overview(authed(overview, Some(&token))).await.unwrap().into_inner().sections;
    let ydelser = sections.iter().find(|x| x.data_area == "ydelser").unwrap();
    assert_eq!(ydelser.denial.as_ref().unwrap().reason, "OUTSIDE_SERVICE_AGREEMENT", "an area not in scope");
    assert!(ydelser.grants.is_empty() && ydelser.payments.is_empty());
    assert_eq!(sections.iter().find(|x| x.data_area == "sager").unwrap().cases.len(), 2);

    // The same system with another authority's token has no agreement there.
    let odense = s.key.mint(&system_claims(system, ODENSE)).unwrap();
    let (_, why) = reason(client.list_cases(authed(list("sager", &[1]), Some(&odense))).await);
    assert_eq!(why, "NO_SERVICE_AGREEMENT", "another authority");

    // A KLE scope outside the cases' subject lets none of them out.
    let narrow = Uuid::new_v4();
    approved(&s, narrow, request(&["ListCases"], vec![area("sager", &[1])], &["27.*"], 30)).await;
    let narrow_token = s.key.mint(&system_claims(narrow, AARHUS)).unwrap();
    let cases = client.list_cases(authed(list("sager", &[1]), Some(&narrow_token))).await.unwrap().into_inner();
    assert!(cases.items.is_empty());

    // Revoked: nothing any more.
    sa.revoke_service_agreement(authed(pb::RevokeServiceAgreementRequest { id: id.clone() }, Some(&approver)))
        .await
        .unwrap();
    let (_, why) = reason(client.list_cases(authed(list("sager", &[1]), Some(&token))).await);
    assert_eq!(why, "NO_SERVICE_AGREEMENT", "revoked");

    // Every call is recorded under the system, with its reason; the allowed
    // ones name the agreement they rest on.
    let lookups: Vec<(String, String)> = records_of(&s.store, system)
        .await
        .into_iter()
        .filter(|r| r.entry.kind == "lookup")
        .inspect(|r| {
            assert_eq!(r.entry.it_system, system.to_string());
            assert_eq!(r.entry.authority.len(), 8);
        })
        .map(|r| {
            let marked = r.entry.search_criteria.contains(&format!("service_agreement: {id}"));
            assert!(marked || r.entry.decision == "deny", "{}", r.entry.search_criteria);
            (r.entry.decision, r.entry.reason)
        })
        .collect();
    let expected = [
        ("deny", "NO_SERVICE_AGREEMENT"),
        ("deny", "NO_SERVICE_AGREEMENT"),
        ("allow", ""),
        ("deny", "OUTSIDE_SERVICE_AGREEMENT"),
        ("deny", "OUTSIDE_SERVICE_AGREEMENT"),
        ("deny", "OUTSIDE_SERVICE_AGREEMENT"),
        ("allow", ""),
        ("deny", "OUTSIDE_SERVICE_AGREEMENT"),
        ("deny", "NO_SERVICE_AGREEMENT"),
        ("deny", "NO_SERVICE_AGREEMENT"),
    ];
    let got: Vec<(&str, &str)> = lookups.iter().map(|(d, r)| (d.as_str(), r.as_str())).collect();
    assert_eq!(got, expected);
    let odense_records = s
        .store
        .audit_records(&AuditFilter { authority: Some(ODENSE.into()), ..Default::default() }, 0, 100)
        .await
        .unwrap();
    assert_eq!(odense_records.len(), 1, "the call with Odense's token is Odense's record");
}
crate::both_backends!(a_system_calls_exactly_what_its_agreement_names);

/// An approved agreement of `[from, to)` stored behind the service.
pub async fn stored(store: &Store, system: Uuid, from: chrono::NaiveDate, to: chrono::NaiveDate) -> ServiceAgreement {
    let a = ServiceAgreement::request(
        &Catalogue::built_in(),
        Request {
            id: Uuid::new_v4(),
            it_system: system,
            authority: Cvr::parse(AARHUS).unwrap(),
            justification: "ESDH",
            rpcs: &[Rpc::ListCases],
            areas: &[(DataArea::Sager, vec![1])],
            kle: &["*".to_string()],
            sensitivity: Sensitivity::Sensitive,
            valid_from: from,
            valid_to: to,
            at: Utc::now(),
        },
    )
    .unwrap();
    let entry = operator_entry();
    store.record_service_agreement(&a, None, &entry, None).await.unwrap();
    let answers = Answers::new(["a", "b", "c", "d", "e"]).unwrap();
    let approved = a.approve("approver@aarhus", answers, Utc::now()).unwrap();
    store.record_service_agreement(&approved, Some(SaStatus::Requested), &entry, None).await.unwrap();
    approved
}

async fn an_agreement_opens_calls_only_inside_its_period(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let client = OverblikClient::new(s.channel.clone());
    let today = copenhagen_today(Utc::now());
    let call = |system: Uuid| {
        let token = s.key.mint(&system_claims(system, AARHUS)).unwrap();
        let mut client = client.clone();
        async move { client.list_cases(authed(list("sager", &[1]), Some(&token))).await.map(|r| r.into_inner()) }
    };
    // Ended yesterday (to is exclusive: today is outside).
    let ended = Uuid::new_v4();
    stored(&s.store, ended, today - Days::new(30), today).await;
    assert_eq!(reason(call(ended).await.map(tonic::Response::new)).1, "NO_SERVICE_AGREEMENT");
    // Starts tomorrow.
    let later = Uuid::new_v4();
    stored(&s.store, later, today + Days::new(1), today + Days::new(30)).await;
    assert_eq!(reason(call(later).await.map(tonic::Response::new)).1, "NO_SERVICE_AGREEMENT");
    // Starts today and ends tomorrow: today is inside.
    let now = Uuid::new_v4();
    let current = stored(&s.store, now, today, today + Days::new(1)).await;
    let read = s.store.service_agreement(AARHUS, current.id).await.unwrap();
    assert_eq!(read.as_ref(), Some(&current), "what is stored reads back as it was decided");
    assert_eq!(s.store.service_agreement(ODENSE, current.id).await.unwrap(), None, "another authority's");
    assert_eq!(call(now).await.unwrap().items.len(), 2);
    // The approver sees it lapsing within a day, not the ended one.
    let approver = s.key.mint(&employee(AARHUS, &[ROLE_SERVICE_AGREEMENTS])).unwrap();
    let mut sa = ServiceAgreementsClient::new(s.channel.clone());
    let lapsing = sa
        .list_lapsing_service_agreements(authed(
            pb::ListLapsingServiceAgreementsRequest { within_days: 1 },
            Some(&approver),
        ))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(lapsing.iter().map(|a| a.it_system.clone()).collect::<Vec<_>>(), [now.to_string()]);
    for r in records_of(&s.store, ended).await {
        assert_eq!((r.entry.decision.as_str(), r.entry.reason.as_str()), ("deny", "NO_SERVICE_AGREEMENT"));
    }
}
crate::both_backends!(an_agreement_opens_calls_only_inside_its_period);

async fn a_system_token_is_refused_outside_overblik(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let system = Uuid::new_v4();
    approved(&s, system, request(&["ListCases"], vec![area("sager", &[1])], &["*"], 30)).await;
    let token = s.key.mint(&system_claims(system, AARHUS)).unwrap();
    let mut borger = BorgerblikketClient::new(s.channel.clone());
    let my = pb::MyListRequest { page_size: 0, page_token: String::new() };
    assert_eq!(
        reason(borger.list_my_cases(authed(my, Some(&token))).await),
        (Code::PermissionDenied, "NO_ROLE".to_string())
    );
    let mut audit = AuditClient::new(s.channel.clone());
    let q = pb::AuditQuery { citizen: X.into(), ..Default::default() };
    assert_eq!(reason(audit.query_audit(authed(q, Some(&token))).await).1, "NO_ROLE");
    let mut agreements = AgreementsClient::new(s.channel.clone());
    let l = pb::ListAgreementsRequest { page_size: 0, page_token: String::new() };
    assert_eq!(reason(agreements.list_agreements(authed(l, Some(&token))).await).1, "NO_ROLE");
    let mut admin = overblik::proto::admin_client::AdminClient::new(s.channel.clone());
    assert_eq!(reason(admin.get_status(authed(pb::GetStatusRequest::default(), Some(&token))).await).1, "NO_ROLE");
    let mut settings = overblik::proto::borgerblikket_config_client::BorgerblikketConfigClient::new(s.channel.clone());
    let get = pb::GetBorgerblikketSettingsRequest { authority: String::new() };
    assert_eq!(reason(settings.get_borgerblikket_settings(authed(get, Some(&token))).await).1, "NO_ROLE");
    let mut sa = ServiceAgreementsClient::new(s.channel.clone());
    let lapsing = pb::ListLapsingServiceAgreementsRequest { within_days: 30 };
    assert_eq!(reason(sa.list_lapsing_service_agreements(authed(lapsing, Some(&token))).await).1, "NO_ROLE");
    // A system lists its own agreements.
    let mine = sa
        .list_service_agreements(authed(pb::ListServiceAgreementsRequest::default(), Some(&token)))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(mine.len(), 1);
    // Each refusal is recorded under the system.
    let refusals: Vec<(String, String)> = records_of(&s.store, system)
        .await
        .into_iter()
        .filter(|r| r.entry.decision == "deny")
        .map(|r| (r.entry.kind, r.entry.reason))
        .collect();
    let kinds: Vec<(&str, &str)> = refusals.iter().map(|(k, r)| (k.as_str(), r.as_str())).collect();
    assert_eq!(
        kinds,
        [
            ("citizen_lookup", "NO_ROLE"),
            ("audit", "NO_ROLE"),
            ("agreement", "NO_ROLE"),
            ("admin", "NO_ROLE"),
            ("borgerblikket_config", "NO_ROLE"),
            ("service_agreement", "NO_ROLE"),
        ]
    );
    // A system token that also names a person is no token at all.
    let ambiguous = s.key.mint(&Claims { cpr: Some(X.into()), ..system_claims(system, AARHUS) }).unwrap();
    let mut client = OverblikClient::new(s.channel.clone());
    let (code, why) = reason(client.list_cases(authed(list("sager", &[1]), Some(&ambiguous))).await);
    assert_eq!((code, why.as_str()), (Code::Unauthenticated, "BAD_TOKEN"));
    let with_role = s.key.mint(&Claims { roles: vec!["Se sager".into()], ..system_claims(system, AARHUS) }).unwrap();
    assert_eq!(reason(client.list_cases(authed(list("sager", &[1]), Some(&with_role))).await).1, "BAD_TOKEN");
}
crate::both_backends!(a_system_token_is_refused_outside_overblik);

async fn the_authoritys_approver_decides_and_every_change_is_recorded(backend: Backend) {
    let s = served(backend).await;
    let system = Uuid::new_v4();
    let token = s.key.mint(&system_claims(system, AARHUS)).unwrap();
    let mut sa = ServiceAgreementsClient::new(s.channel.clone());
    let approver = s.key.mint(&employee(AARHUS, &[ROLE_SERVICE_AGREEMENTS])).unwrap();

    // Only a system requests; the request is checked.
    let employee_request = sa
        .request_service_agreement(authed(
            request(&["ListCases"], vec![area("sager", &[1])], &["*"], 30),
            Some(&approver),
        ))
        .await;
    assert_eq!(reason(employee_request).1, "NO_ROLE");
    let too_wide = request(&["ListCases", "ListGrants"], vec![area("sager", &[1])], &["*"], 30);
    assert_eq!(reason(sa.request_service_agreement(authed(too_wide, Some(&token))).await).0, Code::InvalidArgument);
    let req = request(&["ListCases"], vec![area("sager", &[1])], &["*"], 30);
    let a = sa.request_service_agreement(authed(req, Some(&token))).await.unwrap().into_inner();
    assert_eq!((a.status.as_str(), a.active, a.authority.as_str()), ("requested", false, AARHUS));
    assert_eq!(a.it_system, system.to_string());
    let approve =
        |id: &str, answers: Option<pb::ApprovalAnswers>| pb::ApproveServiceAgreementRequest { id: id.into(), answers };

    // Not the system itself, not another authority's approver, not an
    // employee without the role, not without all five answers.
    let own = sa.approve_service_agreement(authed(approve(&a.id, Some(answers())), Some(&token))).await;
    assert_eq!(reason(own).1, "NO_ROLE");
    let odense = s.key.mint(&employee(ODENSE, &[ROLE_SERVICE_AGREEMENTS])).unwrap();
    let other = sa.approve_service_agreement(authed(approve(&a.id, Some(answers())), Some(&odense))).await;
    assert_eq!(reason(other).0, Code::NotFound);
    let admin = s.key.mint(&employee(AARHUS, &[ROLE_AGREEMENTS, ROLE_DPO])).unwrap();
    let no_role = sa.approve_service_agreement(authed(approve(&a.id, Some(answers())), Some(&admin))).await;
    assert_eq!(reason(no_role).1, "NO_ROLE");
    let blank = pb::ApprovalAnswers { whole_period: " ".into(), ..answers() };
    let unanswered = sa.approve_service_agreement(authed(approve(&a.id, Some(blank)), Some(&approver))).await;
    assert_eq!(reason(unanswered).0, Code::InvalidArgument);
    let none = sa.approve_service_agreement(authed(approve(&a.id, None), Some(&approver))).await;
    assert_eq!(reason(none).0, Code::InvalidArgument);

    let done = sa.approve_service_agreement(authed(approve(&a.id, Some(answers())), Some(&approver))).await.unwrap();
    let done = done.into_inner();
    assert!(done.active);
    assert_eq!(done.decided_by, "user@55133018");
    assert_eq!(done.answers.unwrap().data_scope, answers().data_scope);
    let again = sa.approve_service_agreement(authed(approve(&a.id, Some(answers())), Some(&approver))).await;
    assert_eq!(reason(again).0, Code::FailedPrecondition);

    // A second request, rejected with a reason; a rejected one can't be approved.
    let req = request(&["ListCases"], vec![area("sager", &[1, 2])], &["*"], 30);
    let b = sa.request_service_agreement(authed(req, Some(&token))).await.unwrap().into_inner();
    let reject = pb::RejectServiceAgreementRequest { id: b.id.clone(), reason: "Purpose 2 is not needed".into() };
    let rejected = sa.reject_service_agreement(authed(reject, Some(&approver))).await.unwrap().into_inner();
    assert_eq!((rejected.status.as_str(), rejected.rejection_reason.as_str()), ("rejected", "Purpose 2 is not needed"));
    let late = sa.approve_service_agreement(authed(approve(&b.id, Some(answers())), Some(&approver))).await;
    assert_eq!(reason(late).0, Code::FailedPrecondition);
    sa.revoke_service_agreement(authed(pb::RevokeServiceAgreementRequest { id: a.id.clone() }, Some(&approver)))
        .await
        .unwrap();

    let listed = sa
        .list_service_agreements(authed(pb::ListServiceAgreementsRequest::default(), Some(&approver)))
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(listed.len(), 2);

    let changes = s
        .store
        .audit_records(&AuditFilter { kinds: Some(vec!["service_agreement"]), ..Default::default() }, 0, 100)
        .await
        .unwrap();
    let what: Vec<(&str, &str, &str)> = changes
        .iter()
        .map(|r| {
            (r.entry.search_criteria.split(';').next().unwrap(), r.entry.decision.as_str(), r.entry.reason.as_str())
        })
        .collect();
    assert_eq!(
        what,
        [
            ("rpc: RequestServiceAgreement", "deny", "NO_ROLE"),
            ("rpc: RequestServiceAgreement", "deny", "BAD_REQUEST"),
            ("rpc: RequestServiceAgreement", "allow", ""),
            ("rpc: ApproveServiceAgreement", "deny", "NO_ROLE"),
            ("rpc: ApproveServiceAgreement", "deny", "NOT_FOUND"),
            ("rpc: ApproveServiceAgreement", "deny", "NO_ROLE"),
            ("rpc: ApproveServiceAgreement", "deny", "BAD_REQUEST"),
            ("rpc: ApproveServiceAgreement", "deny", "BAD_REQUEST"),
            ("rpc: ApproveServiceAgreement", "allow", ""),
            ("rpc: ApproveServiceAgreement", "deny", "INVALID_STATE"),
            ("rpc: RequestServiceAgreement", "allow", ""),
            ("rpc: RejectServiceAgreement", "allow", ""),
            ("rpc: ApproveServiceAgreement", "deny", "INVALID_STATE"),
            ("rpc: RevokeServiceAgreement", "allow", ""),
            ("rpc: ListServiceAgreements", "allow", ""),
        ],
        "every change, and every refused one, is recorded"
    );
    // The system's own request is recorded under the system and names the agreement.
    let requested = changes.iter().find(|r| r.entry.decision == "allow").unwrap();
    assert_eq!(requested.entry.user_id, format!("system:{system}"));
    assert_eq!(requested.entry.agreement_id, a.id);
    // Odense's attempt is Odense's record.
    let odense_attempt = changes.iter().find(|r| r.entry.reason == "NOT_FOUND").unwrap();
    assert_eq!(odense_attempt.entry.authority, ODENSE);
}
crate::both_backends!(the_authoritys_approver_decides_and_every_change_is_recorded);

async fn on_behalf_of_is_recorded_only_once_validated(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let system = Uuid::new_v4();
    approved(&s, system, request(&["ListCases"], vec![area("sager", &[1])], &["*"], 30)).await;
    let token = s.key.mint(&system_claims(system, AARHUS)).unwrap();
    let mut client = OverblikClient::new(s.channel.clone());
    let on_behalf = |value: &[u8]| {
        let mut r = authed(list("sager", &[1]), Some(&token));
        let v = tonic::metadata::AsciiMetadataValue::try_from(value).unwrap();
        r.metadata_mut().insert("x-onbehalfofuser", v);
        r
    };
    client.list_cases(on_behalf(b"mh@aarhus.dk")).await.unwrap();
    let hostile: [&[u8]; 5] = [b"evil\tuser", b"0101801234", b"user 010180-1234", b"\xe2\x80\xaeadmin", &[b'a'; 200]];
    for value in hostile {
        let (code, why) = reason(client.list_cases(on_behalf(value)).await);
        assert_eq!((code, why.as_str()), (Code::InvalidArgument, "BAD_REQUEST"), "{value:?}");
    }
    let records = records_of(&s.store, system).await;
    let lookups: Vec<&Record> = records.iter().filter(|r| r.entry.kind == "lookup").collect();
    assert_eq!(lookups.len(), 6);
    assert_eq!(lookups[0].entry.user_name, "mh@aarhus.dk");
    assert_eq!(lookups[0].entry.decision, "allow");
    for r in &lookups[1..] {
        assert_eq!((r.entry.decision.as_str(), r.entry.reason.as_str()), ("deny", "BAD_REQUEST"));
        assert_eq!(r.entry.user_name, "", "nothing of the refused value is the actor");
        assert!(r.entry.search_criteria.contains("bad_field: x-onbehalfofuser"), "{}", r.entry.search_criteria);
        assert!(r.entry.search_criteria.contains("sha256:"), "recorded as its hash only");
    }
    // Nothing of any hostile value is in the log, whatever field one looks at.
    let all = s.store.audit_records(&Default::default(), 0, 10_000).await.unwrap();
    let text = all.iter().map(|r| serde_json::to_string(&r.entry).unwrap()).collect::<Vec<_>>().join("\n");
    for needle in ["evil", ":\"0101801234\"", "010180-1234", "admin", &"a".repeat(200)] {
        assert!(!text.contains(needle), "{needle} is in the log");
    }
}
crate::both_backends!(on_behalf_of_is_recorded_only_once_validated);

async fn the_review_flags_what_was_never_used(backend: Backend) {
    let s = served(backend).await;
    load_facts(&s.store).await;
    let system = Uuid::new_v4();
    let id = approved(
        &s,
        system,
        request(
            &["GetCitizenOverview", "ListCases", "ListGrants"],
            vec![area("sager", &[1]), area("ydelser", &[1])],
            &["*"],
            30,
        ),
    )
    .await;
    let token = s.key.mint(&system_claims(system, AARHUS)).unwrap();
    let mut client = OverblikClient::new(s.channel.clone());
    client.list_cases(authed(list("sager", &[1]), Some(&token))).await.unwrap();
    client.list_cases(authed(list("sager", &[1]), Some(&token))).await.unwrap();
    let overview = pb::CitizenOverviewRequest {
        citizen: X.into(),
        purposes: vec![pb::AreaPurpose { data_area: "sager".into(), purpose_ids: vec![1] }],
    };
    client.get_citizen_overview(authed(overview, Some(&token))).await.unwrap();
    client.list_cases(authed(list("sager", &[2]), Some(&token))).await.unwrap_err();

    let url = s.db.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_overblik"))
            .args(["service-agreements", "review", "--database-url", &url, "--days", "1", "--json"])
            .args(["--authority", AARHUS])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let review = v.as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).unwrap()["review"].clone();
    assert_eq!(review["used_rpcs"]["ListCases"], 2);
    assert_eq!(review["used_rpcs"]["GetCitizenOverview"], 1);
    assert_eq!(review["unused_rpcs"], serde_json::json!(["ListGrants"]));
    assert_eq!(review["unused_areas"], serde_json::json!(["ydelser"]));
    assert_eq!(review["refused"], 1);
}
crate::both_backends!(the_review_flags_what_was_never_used);

#[test]
fn the_token_command_mints_a_system_token() {
    let dir = std::env::temp_dir().join(format!("overblik-system-token-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("dev.key.json");
    let system = Uuid::new_v4();
    let mint = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_overblik"))
            .args(["token", "--create-key", "--key", key.to_str().unwrap(), "--system", &system.to_string()])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = mint(&["--cvr", AARHUS]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap();
    let file = overblik::identity::keys::KeyFile::load(&key).unwrap();
    let mut v = overblik::identity::Verifier::new(DEFAULT_AUDIENCE);
    v.trust(&file).unwrap();
    match v.verify(token.trim()).unwrap() {
        overblik::identity::Caller::System(sys) => {
            assert_eq!((sys.it_system, sys.authority.as_str()), (system, AARHUS));
        }
        other => panic!("not a system: {other:?}"),
    }
    assert!(!mint(&[]).status.success(), "a system token names its authority");
    assert!(!mint(&["--cvr", AARHUS, "--role", "Se sager"]).status.success(), "and no person's claims");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_decide_and_record_like_the_service() {
    let db = crate::support::TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let key = std::env::temp_dir().join(format!("overblik-system-audit-{}.pem", Uuid::new_v4().simple()));
    overblik::audit::checkpoint::AuditKey::dev_at(&key).unwrap();
    let system = Uuid::new_v4();
    let today = copenhagen_today(Utc::now());
    let url = db.url.clone();
    let key_arg = key.to_str().unwrap().to_string();
    let run = move |args: Vec<String>| {
        let (url, key) = (url.clone(), key_arg.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_overblik"));
                cmd.arg("service-agreements").args(&args).args(["--database-url", &url]);
                if !matches!(args[0].as_str(), "list" | "lapsing" | "review") {
                    cmd.args(["--audit-key", &key]);
                }
                cmd.output().unwrap()
            })
            .await
            .unwrap()
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (from, to) = (today.to_string(), (today + Days::new(10)).to_string());
    let out = run(args(&[
        "request",
        "--system",
        &system.to_string(),
        "--authority",
        AARHUS,
        "--justification",
        "ESDH pilot",
        "--rpc",
        "ListCases",
        "--area",
        "sager=1",
        "--kle",
        "32.*",
        "--sensitivity",
        "2",
        "--valid-from",
        &from,
        "--valid-to",
        &to,
    ]))
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string();
    let answers = [
        "--who-how-long-why",
        "ESDH, 10 days, pilot",
        "--services-needed",
        "yes",
        "--data-scope",
        "yes",
        "--whole-period",
        "yes",
        "--understandable-later",
        "yes",
    ];
    let refused = run(args(
        &[&["approve", "--authority", AARHUS, "--id", &id, "--approver", "0101801234"], &answers[..]].concat(),
    ))
    .await;
    assert!(!refused.status.success(), "an approver's name is never a personal number");
    let out = run(args(
        &[&["approve", "--authority", AARHUS, "--id", &id, "--approver", "Jens Jensen"], &answers[..]].concat(),
    ))
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(args(&["lapsing", "--days", "10", "--json"])).await;
    let lapsing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lapsing[0]["id"], id.as_str());
    assert_eq!(lapsing[0]["decided_by"], "Jens Jensen");
    let out = run(args(&["revoke", "--authority", AARHUS, "--id", &id])).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(args(&["list", "--system", &system.to_string(), "--json"])).await;
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((listed[0]["status"].as_str(), listed[0]["active"].as_bool()), (Some("revoked"), Some(false)));
    let records = store
        .audit_records(&AuditFilter { kinds: Some(vec!["service_agreement"]), ..Default::default() }, 0, 100)
        .await
        .unwrap();
    let commands: Vec<&str> = records.iter().map(|r| r.entry.search_criteria.as_str()).collect();
    assert_eq!(
        commands,
        [
            "command: service-agreements request",
            "command: service-agreements approve",
            "command: service-agreements revoke"
        ]
    );
    assert!(records.iter().all(|r| r.entry.agreement_id == id && r.entry.user_id.starts_with("cli:")));
    let _ = std::fs::remove_file(&key);
}

/// Change notices for an IT system: it subscribes only to areas its active
/// service agreement holds, its watch receives the notices, and once the
/// agreement is revoked the open watch ends at the next notice, a new one
/// is refused and the stored privileges the topic's publisher checks have
/// lapsed.
async fn a_system_is_notified_only_within_its_service_agreement(backend: Backend) {
    use crate::build::{Citizen, consume, encoded};
    use overblik::proto::advis_client::AdvisClient;

    let s = served(backend).await;
    let system = Uuid::new_v4();
    let token = s.key.mint(&system_claims(system, AARHUS)).unwrap();
    let mut advis = AdvisClient::new(s.channel.clone());
    let sub =
        |area: &str| pb::SubscribeRequest { citizen: X.into(), data_area: area.into(), kle_prefix: String::new() };
    let watch = |t: &str| authed(pb::WatchRequest { cursor: String::new() }, Some(t));

    let (_, why) = reason(advis.subscribe(authed(sub("sager"), Some(&token))).await);
    assert_eq!(why, "NO_SERVICE_AGREEMENT", "no agreement, no subscription");
    let id = approved(&s, system, request(&["ListCases"], vec![area("sager", &[1])], &["*"], 30)).await;
    let (_, why) = reason(advis.subscribe(authed(sub("ydelser"), Some(&token))).await);
    assert_eq!(why, "OUTSIDE_SERVICE_AGREEMENT", "an area the agreement doesn't hold");
    let subscribed = advis.subscribe(authed(sub("sager"), Some(&token))).await.unwrap().into_inner();

    let x = Citizen::new(X).at(AARHUS);
    let first = x.case_import(Uuid::new_v4(), "2025-01-05");
    consume(&s.store, "overblik.ky", 0, &encoded(&[&first]), 100).await.unwrap();
    let mut stream = advis.watch(watch(&token)).await.unwrap().into_inner();
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message()).await;
    let notice = next.expect("a notice in time").unwrap().expect("a notice");
    assert_eq!(notice.aggregate_id, first.aggregate_id.to_string());
    assert_eq!(notice.subscription_id, subscribed.subscription_id);

    let approver = s.key.mint(&employee(AARHUS, &[ROLE_SERVICE_AGREEMENTS])).unwrap();
    let mut sa = ServiceAgreementsClient::new(s.channel.clone());
    let aarhus = Cvr::parse(AARHUS).unwrap();
    // Revoking a request never approved takes nothing the subscription rests on.
    let ask = request(&["ListGrants"], vec![area("ydelser", &[1])], &["*"], 30);
    let pending = sa.request_service_agreement(authed(ask, Some(&token))).await.unwrap().into_inner().id;
    let withdraw = pb::RevokeServiceAgreementRequest { id: pending };
    sa.revoke_service_agreement(authed(withdraw, Some(&approver))).await.unwrap();
    let stored = s.store.subscriptions_of(&aarhus, &format!("system:{system}")).await.unwrap();
    assert!(stored[0].privileges.until > Utc::now(), "still good after a request was withdrawn");

    sa.revoke_service_agreement(authed(pb::RevokeServiceAgreementRequest { id }, Some(&approver))).await.unwrap();
    let second = x.case_import(Uuid::new_v4(), "2025-01-06");
    consume(&s.store, "overblik.ky", 1, &encoded(&[&second]), 100).await.unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), stream.message()).await;
    let ended = next.expect("the watch ends in time").expect_err("revoked: no more notices");
    assert_eq!(ended.get_details_error_info().map(|i| i.reason).unwrap_or_default(), "NO_SERVICE_AGREEMENT");
    let (code, why) = reason(advis.watch(watch(&token)).await);
    assert_eq!((code, why.as_str()), (Code::PermissionDenied, "NO_SERVICE_AGREEMENT"));

    let stored = s.store.subscriptions_of(&aarhus, &format!("system:{system}")).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].privileges.until <= Utc::now(), "the publisher no longer delivers on the topic");

    let advis_records: Vec<(String, String)> = records_of(&s.store, system)
        .await
        .into_iter()
        .filter(|r| r.entry.kind == "advis")
        .map(|r| (r.entry.decision, r.entry.reason))
        .collect();
    let got: Vec<(&str, &str)> = advis_records.iter().map(|(d, r)| (d.as_str(), r.as_str())).collect();
    assert_eq!(
        got,
        [
            ("deny", "NO_SERVICE_AGREEMENT"),
            ("deny", "OUTSIDE_SERVICE_AGREEMENT"),
            ("allow", ""),
            ("allow", ""),
            ("deny", "NO_SERVICE_AGREEMENT"),
        ]
    );
}
crate::both_backends!(a_system_is_notified_only_within_its_service_agreement);

/// A system can't flood its approver: at most ten requests wait for a
/// decision at once; a decision makes room again.
async fn a_system_has_a_bounded_number_of_open_requests(backend: Backend) {
    use overblik::api::MAX_OPEN_REQUESTS;
    let s = served(backend).await;
    let system = Uuid::new_v4();
    let token = s.key.mint(&system_claims(system, AARHUS)).unwrap();
    let mut sa = ServiceAgreementsClient::new(s.channel.clone());
    let ask = || authed(request(&["ListCases"], vec![area("sager", &[1])], &["*"], 30), Some(&token));
    let mut ids = Vec::new();
    for _ in 0..MAX_OPEN_REQUESTS {
        ids.push(sa.request_service_agreement(ask()).await.unwrap().into_inner().id);
    }
    let (code, why) = reason(sa.request_service_agreement(ask()).await);
    assert_eq!((code, why.as_str()), (Code::ResourceExhausted, "OPEN_REQUESTS_LIMIT"));
    let approver = s.key.mint(&employee(AARHUS, &[ROLE_SERVICE_AGREEMENTS])).unwrap();
    let reject = pb::RejectServiceAgreementRequest { id: ids[0].clone(), reason: "Not needed".into() };
    sa.reject_service_agreement(authed(reject, Some(&approver))).await.unwrap();
    sa.request_service_agreement(ask()).await.expect("room after a decision");
    let refused = records_of(&s.store, system).await.into_iter().filter(|r| r.entry.decision == "deny").count();
    assert_eq!(refused, 1, "the refused request is recorded");
}
crate::both_backends!(a_system_has_a_bounded_number_of_open_requests);
