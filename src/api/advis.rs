//! Change notices: subscribing, unsubscribing, listing, and watching the
//! notices. Employees, and IT systems within their service agreements;
//! every call is audited like the others (kind `advis`). A notice is
//! checked against the live caller as it is streamed
//! (`advis::deliverable`): an employee's token without the area's role, or
//! a system whose agreement has ended or been revoked, receives nothing,
//! whatever was allowed when subscribing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::timeout;

use tonic::codegen::tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::parse::{self, BadRequest};
use super::{Call, ERROR_DOMAIN, Shared, denied, next_token, store_failed, today};
use crate::access::{Deny, DenyReason};
use crate::advis::{self, KlePrefix, Notice, Privileges, Subscription};
use crate::audit::{Entry, Kind, Reason, Search, Text};
use crate::domain::DataArea;
use crate::identity::{Caller, Employee, SystemCaller};
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
    watching: Watching,
}

/// How often the outbox's head is read while anyone watches.
const POLL: Duration = Duration::from_millis(250);

/// How often a quiet watch checks that its caller may still watch (a
/// token's expiry ends it sooner).
const RECHECK: Duration = Duration::from_secs(60);

/// The most watches served at once; more are refused RESOURCE_EXHAUSTED.
pub const MAX_WATCHES: usize = 1_024;

/// The most watches one subscriber holds at once, so that no one caller
/// takes the slots everyone shares.
pub const MAX_WATCHES_PER_SUBSCRIBER: usize = 4;

/// Open watches per subscriber; an entry lives while its subscriber has
/// one, so there are never more than [`MAX_WATCHES`].
type Watching = Arc<std::sync::Mutex<HashMap<(crate::domain::Cvr, String), usize>>>;

/// One subscriber's hold on a watch, given back when the watch ends.
struct WatchSlot {
    watching: Watching,
    key: (crate::domain::Cvr, String),
}

impl WatchSlot {
    fn take(watching: &Watching, key: (crate::domain::Cvr, String)) -> Option<WatchSlot> {
        let mut open = watching.lock().expect("watch slots");
        let n = open.entry(key.clone()).or_default();
        if *n >= MAX_WATCHES_PER_SUBSCRIBER {
            return None;
        }
        *n += 1;
        Some(WatchSlot { watching: watching.clone(), key })
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.watching.lock().expect("watch slots");
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

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
        AdvisService { shared, head, watches: Arc::new(Semaphore::new(MAX_WATCHES)), watching: Watching::default() }
    }
}

const AREA_RULE: &str = "a data area open to notices: sager, ydelser, beskaeftigelse";

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

/// Who subscribes, lists or watches: an employee, or an IT system.
#[derive(Clone)]
enum Subscriber {
    Employee(Employee),
    System(SystemCaller),
}

impl Subscriber {
    /// The store's key of the subscriber's subscriptions.
    fn key(&self) -> (crate::domain::Cvr, String) {
        match self {
            Subscriber::Employee(e) => (e.authority, e.user_id.clone()),
            Subscriber::System(s) => (s.authority, s.user_id()),
        }
    }
}

/// Privileges a notice may go out under now: an employee's token, or one
/// of a system's active service agreements.
struct Holder {
    privileges: Employee,
    /// When they end: the token's expiry, or the agreement's end if sooner.
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// A system's agreement holds only these areas; `None`: an employee,
    /// whose roles alone say.
    areas: Option<Vec<DataArea>>,
}

impl Holder {
    fn may_receive(&self, n: &Notice, catalogue: &crate::catalogue::Catalogue) -> bool {
        self.areas.as_ref().is_none_or(|a| a.contains(&n.area))
            && advis::deliverable(n, &self.privileges, catalogue).is_ok()
    }
}

type Holders = Vec<Holder>;

/// The first instant of `day` in Copenhagen: when an agreement valid
/// `[from, day)` stops.
fn start_of(day: chrono::NaiveDate) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    let local = chrono_tz::Europe::Copenhagen.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN));
    local.earliest().map(|t| t.with_timezone(&chrono::Utc))
}

/// The sooner of two ends, either of which may be open.
fn sooner(
    a: Option<chrono::DateTime<chrono::Utc>>,
    b: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl AdvisService {
    /// The caller as a subscriber; a citizen or a caller without a valid
    /// token is recorded and refused.
    async fn subscriber(&self, call: &Call, entry: &Entry) -> Result<Subscriber, Status> {
        match (&call.caller, call.employee()) {
            (Ok(Caller::System(s)), _) => Ok(Subscriber::System(s.clone())),
            (_, Ok(e)) => Ok(Subscriber::Employee(e.clone())),
            (_, Err(deny)) => self.shared.refuse(entry.clone(), &deny).await,
        }
    }

    /// The privileges notices go out under for `who` now (for `area`, when
    /// subscribing), or why there are none: a system needs an active
    /// service agreement holding the area.
    async fn holders(
        shared: &Shared,
        who: &Subscriber,
        token_expires: Option<i64>,
        area: Option<DataArea>,
    ) -> Result<Result<Holders, Deny>, Status> {
        let token_end = token_expires.and_then(|exp| chrono::DateTime::from_timestamp(exp, 0));
        match who {
            Subscriber::Employee(e) => {
                let opens = |a: &DataArea| {
                    advis::subscribable(&shared.catalogue, *a)
                        && shared.catalogue.area(*a).roles.iter().any(|r| e.has_role(r))
                };
                if area.is_none() && !DataArea::ALL.iter().any(opens) {
                    return Ok(Err(Deny::new(DenyReason::NoRole, "no role for an area open to notices")));
                }
                Ok(Ok(vec![Holder { privileges: e.clone(), until: token_end, areas: None }]))
            }
            Subscriber::System(s) => {
                let agreements = shared
                    .store
                    .service_agreements_of(s.it_system, s.authority.as_str())
                    .await
                    .map_err(store_failed)?;
                let held = crate::access::system::notice_privileges(s, &agreements, &shared.catalogue, today(), area);
                Ok(held.map(|grants| {
                    grants
                        .into_iter()
                        .map(|g| Holder {
                            until: sooner(token_end, start_of(g.ends)),
                            areas: Some(g.areas),
                            privileges: g.privileges,
                        })
                        .collect()
                }))
            }
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
        let who = self.subscriber(&call, &entry).await?;
        let asked = match self.asked(req.get_ref()) {
            Ok(a) => a,
            Err(bad) => return self.shared.refuse_bad(&call, Kind::Advis, Search::rpc(rpc), &bad).await,
        };
        entry.area = Some(asked.area);
        entry.citizen = Some(asked.citizen);
        if let Some(p) = &asked.prefix {
            entry.search = Search::rpc(rpc).with("kle_prefix", p.as_str());
        }
        let Holder { privileges: employee, until, .. } =
            match Self::holders(&self.shared, &who, call.expires, Some(asked.area)).await? {
                Ok(mut held) => held.swap_remove(0),
                Err(deny) => return self.shared.refuse(entry, &deny).await,
            };
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
        let new = NewSubscription {
            citizen: asked.citizen,
            area: asked.area,
            kle_prefix: asked.prefix,
            privileges: Privileges::of(&employee, until.unwrap_or_default()),
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
        let (authority, subscriber) = self.subscriber(&call, &entry).await?.key();
        let raw = &req.get_ref().subscription_id;
        let Some(id) = (raw.len() <= 36).then(|| uuid::Uuid::parse_str(raw).ok()).flatten() else {
            let bad = BadRequest::given("subscription_id", "a subscription id this service returned (a UUID)", raw);
            return self.shared.refuse_bad(&call, Kind::Advis, Search::rpc(rpc), &bad).await;
        };
        let entry = Entry { search: Search::rpc(rpc).with("subscription_id", id.to_string().as_str()), ..entry };
        if self.shared.store.unsubscribe(&authority, &subscriber, id).await.map_err(store_failed)? {
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
        let (authority, subscriber) = self.subscriber(&call, &entry).await?.key();
        let r = req.get_ref();
        let page = match parse::page(r.page_size, &r.page_token, 'o') {
            Ok(p) => p,
            Err(bad) => return self.shared.refuse_bad(&call, Kind::Advis, Search::rpc(rpc), &bad).await,
        };
        let all = self.shared.store.subscriptions_of(&authority, &subscriber).await.map_err(store_failed)?;
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
        let who = self.subscriber(&call, &entry).await?;
        let raw = &req.get_ref().cursor;
        let Some(mut after) = advis::parse_cursor(raw) else {
            let bad = BadRequest::given("cursor", "empty, or a cursor of a notice this service sent", raw);
            return self.shared.refuse_bad(&call, Kind::Advis, Search::rpc(rpc), &bad).await;
        };
        let entry = Entry { search: Search::rpc(rpc).with("cursor", advis::cursor(after).as_str()), ..entry };
        if let Err(deny) = Self::holders(&self.shared, &who, call.expires, None).await? {
            return self.shared.refuse(entry, &deny).await;
        }
        let slots = self.watches.clone().try_acquire_owned().ok().zip(WatchSlot::take(&self.watching, who.key()));
        let Some((permit, slot)) = slots else {
            self.shared.record(vec![entry.deny(Reason::RateLimited)]).await?;
            return Err(Status::with_error_details(
                Code::ResourceExhausted,
                "WATCH_LIMIT: too many watches at once, in all or of this subscriber; try again later",
                ErrorDetails::with_error_info("WATCH_LIMIT", ERROR_DOMAIN, HashMap::new()),
            ));
        };
        // The notices carry no personal content; what the caller reads
        // about them goes through the audited lookups.
        self.shared.record(vec![entry.allow(0, Vec::new())]).await?;
        let expires = call.expires;
        let (authority, subscriber) = who.key();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let shared = self.shared.clone();
        let mut head = self.head.subscribe();
        tokio::spawn(async move {
            let _held = (permit, slot);
            loop {
                // Checked again on every round: a token runs out, a
                // system's agreement ends or is revoked.
                let holders = match Self::holders(&shared, &who, expires, None).await {
                    Ok(Ok(h)) => h,
                    Ok(Err(deny)) => {
                        let _ = tx.try_send(Err(denied(&deny)));
                        return;
                    }
                    Err(status) => {
                        let _ = tx.try_send(Err(status));
                        return;
                    }
                };
                let now = chrono::Utc::now();
                let holders: Holders = holders.into_iter().filter(|h| h.until.is_none_or(|u| u > now)).collect();
                if holders.is_empty() {
                    let _ = tx.try_send(Err(Status::unauthenticated("BAD_TOKEN: the token has expired")));
                    return;
                }
                // Everything up to the head as read now is in the page read
                // after it: outbox numbers commit in order.
                let seen = *head.borrow_and_update();
                let page = match shared.store.notices_for(&authority, &subscriber, after, advis::PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.try_send(Err(store_failed(e)));
                        return;
                    }
                };
                let full = page.len() as i64 == advis::PAGE;
                let checked = std::time::Instant::now();
                let mut cut = false;
                for (seq, n) in page {
                    // A slow reader's page is cut after a minute, and the
                    // caller checked again before the rest goes out.
                    if checked.elapsed() >= RECHECK {
                        cut = true;
                        break;
                    }
                    after = seq;
                    let deliverable = holders.iter().any(|h| h.may_receive(&n, &shared.catalogue));
                    // A caller that stops reading for a minute is let go, so
                    // a stalled stream holds no slot and skips no check.
                    if deliverable && !matches!(timeout(RECHECK, tx.send(Ok(notice(seq, &n)))).await, Ok(Ok(()))) {
                        return;
                    }
                }
                if !full && !cut {
                    let left = expires.map_or(RECHECK, |exp| {
                        Duration::from_secs((exp - chrono::Utc::now().timestamp()).max(0).unsigned_abs())
                    });
                    tokio::select! {
                        moved = head.wait_for(|h| *h > seen) => if moved.is_err() { return },
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(left.min(RECHECK)) => {}
                    }
                }
            }
        });
        let stream = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }
}
