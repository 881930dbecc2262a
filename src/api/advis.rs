//! Change notices: subscribing, unsubscribing, listing, and watching the
//! notices. Employees only; every call is audited like the others (kind
//! `advis`). A notice is checked against the live caller's token as it is
//! streamed (`advis::deliverable`), so a token without the area's role
//! receives nothing, whatever was allowed when subscribing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use tonic::codegen::tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::parse::{self, BadRequest};
use super::{Call, ERROR_DOMAIN, Shared, next_token, store_failed};
use crate::access::{Deny, DenyReason};
use crate::advis::{self, KlePrefix, Notice, Privileges, Subscription};
use crate::audit::{Entry, Kind, Reason, Search, Text};
use crate::domain::DataArea;
use crate::identity::Employee;
use crate::proto as pb;
use crate::proto::advis_server::Advis;
use crate::store::{NewSubscription, Subscribed};

/// The service, with what its watches share: the outbox's head, which one
/// task polls for all of them (so an idle watch costs no query), and a
/// bound on how many watches run at once.
pub struct AdvisService {
    shared: Shared,
    head: Arc<tokio::sync::watch::Sender<i64>>,
    watches: Arc<Semaphore>,
}

/// How often the outbox's head is read while anyone watches.
const POLL: Duration = Duration::from_millis(250);

/// The most watches served at once; more are refused RESOURCE_EXHAUSTED.
pub const MAX_WATCHES: usize = 1_024;

impl AdvisService {
    /// The service, and the task that follows the outbox's head for its
    /// watches (ended when the service is dropped).
    pub fn start(shared: Shared) -> AdvisService {
        let head = Arc::new(tokio::sync::watch::channel(0).0);
        let follow = Arc::downgrade(&head);
        let store = shared.store.clone();
        tokio::spawn(async move {
            while let Some(head) = follow.upgrade() {
                if head.receiver_count() > 0 {
                    match store.outbox_head().await {
                        Ok(h) => {
                            head.send_if_modified(|cur| std::mem::replace(cur, h) != h);
                        }
                        Err(e) => tracing::debug!(error = %e, "the notice outbox's head can't be read"),
                    }
                }
                drop(head);
                tokio::time::sleep(POLL).await;
            }
        });
        AdvisService { shared, head, watches: Arc::new(Semaphore::new(MAX_WATCHES)) }
    }
}

const AREA_RULE: &str =
    "a data area open to notices: sager, ydelser, beskaeftigelse, kontrolsager, udk_sager, udk_ydelser";

fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn subscription(s: &Subscription) -> pb::Subscription {
    pb::Subscription {
        subscription_id: s.id.to_string(),
        citizen: s.citizen.urn(),
        data_area: s.area.as_str().to_string(),
        kle_prefix: s.kle_prefix.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default(),
        created_at: instant(s.created_at),
        privileges_until: instant(s.privileges.until),
    }
}

fn notice(seq: i64, n: &Notice) -> pb::Notice {
    pb::Notice {
        notice_id: n.id.to_string(),
        subscription_id: n.subscription_id.to_string(),
        aggregate_id: n.aggregate_id.to_string(),
        data_area: n.area.as_str().to_string(),
        event_type: n.event_type.clone(),
        kind: n.kind.as_str().to_string(),
        occurred_at: instant(n.occurred_at),
        cursor: advis::cursor(seq),
    }
}

/// A subscription request, validated.
struct Asked {
    citizen: crate::domain::PartyId,
    area: DataArea,
    prefix: Option<KlePrefix>,
}

impl AdvisService {
    /// The caller as an employee; anyone else is recorded and refused.
    async fn employee<'c>(&self, call: &'c Call, entry: &Entry) -> Result<&'c Employee, Status> {
        match call.employee() {
            Ok(e) => Ok(e),
            Err(deny) => self.shared.refuse(entry.clone(), &deny).await,
        }
    }

    fn asked(&self, r: &pb::SubscribeRequest) -> Result<Asked, BadRequest> {
        let citizen = parse::citizen(&r.citizen)?;
        let area = DataArea::parse(&r.data_area)
            .filter(|a| advis::subscribable(&self.shared.catalogue, *a))
            .ok_or_else(|| BadRequest::given("data_area", AREA_RULE, &r.data_area))?;
        let prefix = match r.kle_prefix.as_str() {
            "" => None,
            p => Some(KlePrefix::parse(p).ok_or_else(|| BadRequest::given("kle_prefix", KlePrefix::RULE, p))?),
        };
        Ok(Asked { citizen, area, prefix })
    }
}

#[tonic::async_trait]
impl Advis for AdvisService {
    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<pb::Subscription>, Status> {
        let rpc = "Subscribe";
        let call = self.shared.call(&req, Kind::Advis, rpc).await?;
        let mut entry = call.entry(Kind::Advis, Search::rpc(rpc));
        let employee = self.employee(&call, &entry).await?;
        let asked = match self.asked(req.get_ref()) {
            Ok(a) => a,
            Err(bad) => return self.shared.refuse_bad(&call, Kind::Advis, Search::rpc(rpc), &bad).await,
        };
        entry.area = Some(asked.area);
        entry.citizen = Some(asked.citizen);
        if let Some(p) = &asked.prefix {
            entry.search = Search::rpc(rpc).with("kle_prefix", p.as_str());
        }
        let roles = &self.shared.catalogue.area(asked.area).roles;
        let used: Vec<&String> = roles.iter().filter(|r| employee.has_role(r)).collect();
        if used.is_empty() {
            let deny = Deny::new(
                DenyReason::NoRole,
                format!("no role for {}; it needs one of: {}", asked.area, roles.join(", ")),
            );
            return self.shared.refuse(entry, &deny).await;
        }
        entry.roles_used = used.iter().map(|r| Text::new(r)).collect();
        let until = call.expires.and_then(|exp| chrono::DateTime::from_timestamp(exp, 0)).unwrap_or_default();
        let new = NewSubscription {
            citizen: asked.citizen,
            area: asked.area,
            kle_prefix: asked.prefix,
            privileges: Privileges::of(employee, until),
        };
        match self.shared.store.subscribe(&new).await.map_err(store_failed)? {
            Subscribed::Created(s) | Subscribed::Refreshed(s) => {
                self.shared.record(vec![entry.allow(1, Vec::new())]).await?;
                Ok(Response::new(subscription(&s)))
            }
            Subscribed::Exhausted => {
                self.shared.record(vec![entry.deny(Reason::SubscriptionLimit)]).await?;
                let detail = format!("at most {} subscriptions per subscriber", advis::MAX_SUBSCRIPTIONS);
                Err(Status::with_error_details(
                    Code::ResourceExhausted,
                    format!("SUBSCRIPTION_LIMIT: {detail}"),
                    ErrorDetails::with_error_info(
                        "SUBSCRIPTION_LIMIT",
                        ERROR_DOMAIN,
                        HashMap::from([("detail".to_string(), detail)]),
                    ),
                ))
            }
        }
    }

    async fn unsubscribe(
        &self,
        req: Request<pb::UnsubscribeRequest>,
    ) -> Result<Response<pb::UnsubscribeResponse>, Status> {
        let rpc = "Unsubscribe";
        let call = self.shared.call(&req, Kind::Advis, rpc).await?;
        let entry = call.entry(Kind::Advis, Search::rpc(rpc));
        let employee = self.employee(&call, &entry).await?;
        let raw = &req.get_ref().subscription_id;
        let Some(id) = (raw.len() <= 36).then(|| uuid::Uuid::parse_str(raw).ok()).flatten() else {
            let bad = BadRequest::given("subscription_id", "a subscription id this service returned (a UUID)", raw);
            return self.shared.refuse_bad(&call, Kind::Advis, Search::rpc(rpc), &bad).await;
        };
        let entry = Entry { search: Search::rpc(rpc).with("subscription_id", id.to_string().as_str()), ..entry };
        if self.shared.store.unsubscribe(&employee.authority, &employee.user_id, id).await.map_err(store_failed)? {
            self.shared.record(vec![entry.allow(1, Vec::new())]).await?;
            Ok(Response::new(pb::UnsubscribeResponse {}))
        } else {
            self.shared.record(vec![entry.deny(Reason::NotFound)]).await?;
            Err(Status::not_found("you have no subscription with this id"))
        }
    }

    async fn list_subscriptions(
        &self,
        req: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::SubscriptionList>, Status> {
        let rpc = "ListSubscriptions";
        let call = self.shared.call(&req, Kind::Advis, rpc).await?;
        let entry = call.entry(Kind::Advis, Search::rpc(rpc));
        let employee = self.employee(&call, &entry).await?;
        let r = req.get_ref();
        let page = match parse::page(r.page_size, &r.page_token, 'o') {
            Ok(p) => p,
            Err(bad) => return self.shared.refuse_bad(&call, Kind::Advis, Search::rpc(rpc), &bad).await,
        };
        let all =
            self.shared.store.subscriptions_of(&employee.authority, &employee.user_id).await.map_err(store_failed)?;
        let items: Vec<pb::Subscription> = all.iter().skip(page.offset()).take(page.size()).map(subscription).collect();
        let end = page.offset().saturating_add(page.size());
        let next = (end < all.len()).then_some(end);
        self.shared.record(vec![entry.allow(items.len(), Vec::new())]).await?;
        Ok(Response::new(pb::SubscriptionList { items, next_page_token: next_token(next) }))
    }

    type WatchStream = std::pin::Pin<Box<dyn Stream<Item = Result<pb::Notice, Status>> + Send + 'static>>;

    /// Streams the caller's notices after the cursor, a page at a time,
    /// then waits for new ones until the caller leaves or the token
    /// expires. Each notice is checked
    /// against the caller's token as it goes; one not deliverable is
    /// skipped.
    async fn watch(&self, req: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let rpc = "Watch";
        let call = self.shared.call(&req, Kind::Advis, rpc).await?;
        let entry = call.entry(Kind::Advis, Search::rpc(rpc));
        let employee = self.employee(&call, &entry).await?.clone();
        let raw = &req.get_ref().cursor;
        let Some(mut after) = advis::parse_cursor(raw) else {
            let bad = BadRequest::given("cursor", "empty, or a cursor of a notice this service sent", raw);
            return self.shared.refuse_bad(&call, Kind::Advis, Search::rpc(rpc), &bad).await;
        };
        let entry = Entry { search: Search::rpc(rpc).with("cursor", advis::cursor(after).as_str()), ..entry };
        let Ok(permit) = self.watches.clone().try_acquire_owned() else {
            self.shared.record(vec![entry.deny(Reason::RateLimited)]).await?;
            return Err(Status::with_error_details(
                Code::ResourceExhausted,
                "WATCH_LIMIT: too many watches at once; try again later",
                ErrorDetails::with_error_info("WATCH_LIMIT", ERROR_DOMAIN, HashMap::new()),
            ));
        };
        // The notices carry no personal content; what the caller reads
        // about them goes through the audited lookups.
        self.shared.record(vec![entry.allow(0, Vec::new())]).await?;
        let expires = call.expires.unwrap_or(0);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let shared = self.shared.clone();
        let mut head = self.head.subscribe();
        tokio::spawn(async move {
            let _permit = permit;
            loop {
                let left = expires - chrono::Utc::now().timestamp();
                if left <= 0 {
                    let _ = tx.send(Err(Status::unauthenticated("BAD_TOKEN: the token has expired"))).await;
                    return;
                }
                // Everything up to the head as read now is in the page read
                // after it: outbox numbers commit in order.
                let seen = *head.borrow_and_update();
                let page =
                    match shared.store.notices_for(&employee.authority, &employee.user_id, after, advis::PAGE).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = tx.send(Err(store_failed(e))).await;
                            return;
                        }
                    };
                let full = page.len() as i64 == advis::PAGE;
                for (seq, n) in page {
                    after = seq;
                    if advis::deliverable(&n, &employee, &shared.catalogue).is_ok()
                        && tx.send(Ok(notice(seq, &n))).await.is_err()
                    {
                        return; // the caller went away
                    }
                }
                if !full {
                    let expiry = Duration::from_secs(left.unsigned_abs());
                    tokio::select! {
                        moved = head.wait_for(|h| *h > seen) => if moved.is_err() { return },
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(expiry) => {}
                    }
                }
            }
        });
        let stream = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }
}
