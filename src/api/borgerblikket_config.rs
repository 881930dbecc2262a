//! An authority's Borgerblikket settings and its citizens' call statistics,
//! for the authority's own administrator (role "Administrer Borgerblikket").
//! Every call is recorded; a change is written in one transaction with its
//! record, and every refusal is recorded as a denial with its reason.

use tonic::{Request, Response, Status};

use super::parse::BadRequest;
use super::{Call, ROLE_BORGERBLIKKET, Shared, store_failed};
use crate::access::{Deny, DenyReason};
use crate::audit::{Entry, Kind, Search};
use crate::borgerblikket::settings::{Document, TopicDocument};
use crate::borgerblikket::{Bucket, Month, Settings};
use crate::domain::Cvr;
use crate::proto as pb;
use crate::proto::borgerblikket_config_server::BorgerblikketConfig;
use crate::store::StoredSettings;

pub struct BorgerblikketConfigService(pub Shared);

const KIND: Kind = Kind::BorgerblikketConfig;

impl BorgerblikketConfigService {
    /// The authority the caller administers, if they may act on the one
    /// they named (empty: their own). Refusals are recorded: without the
    /// role (citizens and caseworkers) NO_ROLE; another authority's
    /// administrator OTHER_AUTHORITY; a malformed authority BAD_REQUEST.
    async fn authority(&self, call: &Call, rpc: &'static str, named: &str) -> Result<(Cvr, Entry), Status> {
        let entry = call.entry(KIND, Search::rpc(rpc));
        let admin = match call.employee_with(ROLE_BORGERBLIKKET) {
            Ok(e) => e,
            Err(deny) => return self.0.refuse(entry, &deny).await,
        };
        let asked = match named {
            "" => admin.authority,
            s => match (s.len() == 8).then(|| Cvr::parse(s).ok()).flatten() {
                Some(c) => c,
                None => {
                    let bad = BadRequest::given("authority", "a CVR number (8 digits), or empty for your own", s);
                    return self.0.refuse_bad(call, KIND, Search::rpc(rpc), &bad).await;
                }
            },
        };
        let entry = call.entry(KIND, Search::rpc(rpc).with("authority", asked.as_str()));
        if asked != admin.authority {
            let deny =
                Deny::new(DenyReason::OtherAuthority, "an administrator reads and changes their own authority's");
            return self.0.refuse(entry, &deny).await;
        }
        Ok((asked, entry))
    }
}

fn document(s: &pb::BorgerblikketSettings) -> Document {
    Document {
        topics: s
            .topics
            .iter()
            .map(|t| TopicDocument { kle: t.kle.clone(), from: t.from.clone(), name: t.name.clone() })
            .collect(),
        active_older_cases: s.active_older_cases.clone(),
        source_systems: s.source_systems.clone(),
        document_titles: s.document_titles.clone(),
        case_heading: s.case_heading.clone(),
        employment: s.employment.clone(),
    }
}

fn message(s: &Settings) -> pb::BorgerblikketSettings {
    let d = s.to_document();
    pb::BorgerblikketSettings {
        topics: d.topics.into_iter().map(|t| pb::KleTopic { kle: t.kle, from: t.from, name: t.name }).collect(),
        active_older_cases: d.active_older_cases,
        source_systems: d.source_systems,
        document_titles: d.document_titles,
        case_heading: d.case_heading,
        employment: d.employment,
    }
}

fn answer(authority: Cvr, stored: Option<&StoredSettings>) -> pb::BorgerblikketSettingsAnswer {
    pb::BorgerblikketSettingsAnswer {
        authority: authority.to_string(),
        configured: stored.is_some(),
        settings: stored.map(|s| message(&s.settings)),
        version: stored.map_or(0, |s| s.version),
        updated_at: stored.map(|s| s.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl BorgerblikketConfig for BorgerblikketConfigService {
    async fn get_borgerblikket_settings(
        &self,
        req: Request<pb::GetBorgerblikketSettingsRequest>,
    ) -> Result<Response<pb::BorgerblikketSettingsAnswer>, Status> {
        let rpc = "GetBorgerblikketSettings";
        let call = self.0.call(&req, KIND, rpc).await?;
        let (authority, entry) = self.authority(&call, rpc, &req.get_ref().authority).await?;
        let stored = self.0.store.borgerblikket_settings(&[authority]).await.map_err(store_failed)?;
        self.0.record(vec![entry.allow(stored.len(), Vec::new())]).await?;
        Ok(Response::new(answer(authority, stored.first())))
    }

    async fn set_borgerblikket_settings(
        &self,
        req: Request<pb::SetBorgerblikketSettingsRequest>,
    ) -> Result<Response<pb::BorgerblikketSettingsAnswer>, Status> {
        let rpc = "SetBorgerblikketSettings";
        let call = self.0.call(&req, KIND, rpc).await?;
        let r = req.get_ref();
        let (authority, entry) = self.authority(&call, rpc, &r.authority).await?;
        let parsed = match &r.settings {
            None => Err(BadRequest::new("settings", "the settings to store")),
            Some(s) => Settings::parse(&document(s)).map_err(|e| BadRequest::new(e.field, e.rule)),
        };
        let settings = match parsed {
            Ok(s) => s,
            Err(bad) => {
                let search = Search::rpc(rpc).with("authority", authority.as_str());
                return self.0.refuse_bad(&call, KIND, search, &bad).await;
            }
        };
        let Ok(crate::identity::Caller::Employee(admin)) = &call.caller else {
            unreachable!("an administrator was established above")
        };
        let allowed = entry.allow(1, Vec::new());
        let stored = self
            .0
            .store
            .record_borgerblikket_settings(authority, &settings, &admin.user_id, &allowed, Some(self.0.audit.key()))
            .await
            .map_err(store_failed)?;
        Ok(Response::new(answer(authority, Some(&stored))))
    }

    async fn get_call_statistics(
        &self,
        req: Request<pb::CallStatisticsRequest>,
    ) -> Result<Response<pb::CallStatistics>, Status> {
        let rpc = "GetCallStatistics";
        let call = self.0.call(&req, KIND, rpc).await?;
        let r = req.get_ref();
        let (authority, entry) = self.authority(&call, rpc, &r.authority).await?;
        let Some(month) = Month::parse(&r.month) else {
            let bad = BadRequest::given("month", "YYYY-MM", &r.month);
            let search = Search::rpc(rpc).with("authority", authority.as_str());
            return self.0.refuse_bad(&call, KIND, search, &bad).await;
        };
        let counts =
            self.0.store.citizen_call_counts(Bucket::Authority(authority), month).await.map_err(store_failed)?;
        let mut entry = entry;
        entry.search = entry.search.with("month", month.to_string().as_str());
        self.0.record(vec![entry.allow(counts.len(), Vec::new())]).await?;
        Ok(Response::new(pb::CallStatistics {
            authority: authority.to_string(),
            month: month.to_string(),
            counts: counts
                .into_iter()
                .map(|c| pb::CallCount {
                    kind: c.kind.as_str().into(),
                    with_data: c.with_data,
                    without_data: c.without_data,
                })
                .collect(),
        }))
    }
}
