//! Change notices (advis): a caseworker subscribes to changes on a citizen
//! by data area (optionally under a KLE prefix); every applied event that
//! changes something the subscription covers becomes a notice, written to
//! an outbox in the transaction of the batch that applied it, and delivered
//! from there — on the `overblik.advis` topic ([`publisher`]) and through
//! the `Advis.Watch` call.
//!
//! This module is the pure core: which notices a batch yields
//! ([`notices`]), the notice's stable id ([`notice_id`]), whether a notice
//! may be delivered to a holder of given privileges ([`deliverable`],
//! [`deliverable_stored`]) and the CloudEvent it travels as
//! ([`cloud_event`]). No clock and no I/O: callers pass `now`.
//!
//! A notice carries ids and kinds only — notice, subscription, aggregate,
//! data area, event type, when, and its cursor — never a personal number or
//! a title. The subscriber reads what changed through the audited lookups.

pub mod publisher;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::access::filter::{self, Class, Grants};
use crate::catalogue::Catalogue;
use crate::domain::{Cvr, DataArea, Kle, PartyId, Sensitivity};
use crate::events::{EventHeader, Role};
use crate::identity::{Employee, KleConstraint};
use crate::projection::state::State;
use crate::projection::{Aggregate, Plan};

/// The most subscriptions one subscriber holds at one authority: a bound
/// on what one caseworker can make every batch look at.
pub const MAX_SUBSCRIPTIONS: i64 = 1_000;

/// The outbox is read in pages of at most this many notices (by the
/// publisher and by each `Watch`), so memory stays bounded whatever the
/// backlog.
pub const PAGE: i64 = 500;

/// The CloudEvents `source` of every notice.
pub const SOURCE: &str = "urn:overblik:advis";

/// The CloudEvents `type` prefix; the notice's kind follows it.
pub const TYPE_PREFIX: &str = "dk.overblik.advis.";

/// How a data area's rows are scoped to a subscriber's authority, as the
/// lookups scope them (ARCHITECTURE.md, the filter matrix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// The casework areas: the subscriber's own authority's rows, which
    /// their lists show by role, KLE and sensitivity alone.
    Own,
    /// Not open to notices. The SKAT areas need a purpose and an agreement
    /// for every lookup, and a subscription names no purpose. Control cases
    /// (§11a) and UDK's cases and benefits (§8) show only under rules a
    /// notice can't keep: a control case closed with an outcome or long
    /// ago is hidden, a UDK case only while the citizen's own and paid
    /// within three months, never its documents — a notice about such a
    /// row would tell what the list hides.
    Closed,
}

fn scope(area: DataArea) -> Scope {
    match area {
        DataArea::Sager | DataArea::Ydelser | DataArea::Beskaeftigelse => Scope::Own,
        _ => Scope::Closed,
    }
}

/// Whether a subscription may name `area`: a casework area opened by a
/// role alone (see [`Scope::Closed`] for the rest).
pub fn subscribable(catalogue: &Catalogue, area: DataArea) -> bool {
    scope(area) != Scope::Closed && !catalogue.area(area).agreement_required
}

/// A KLE prefix a subscription narrows to: one, two or three groups of two
/// digits (`32`, `32.18`, `32.18.04`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KlePrefix(String);

impl KlePrefix {
    pub const RULE: &'static str = "empty, or a KLE prefix: dd, dd.dd or dd.dd.dd";

    pub fn parse(s: &str) -> Option<KlePrefix> {
        let groups: Vec<&str> = s.split('.').collect();
        let ok = s.len() <= 8
            && (1..=3).contains(&groups.len())
            && groups.iter().all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_digit()));
        ok.then(|| KlePrefix(s.to_string()))
    }

    /// Whether `kle` falls under this prefix. Prefixes end on a group
    /// boundary, so a plain prefix test is exact.
    pub fn covers(&self, kle: &Kle) -> bool {
        kle.as_str().starts_with(&self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A subscriber's privileges as of subscribing (or refreshing), kept with
/// the subscription: what the publisher checks delivery against, until
/// `until` (the token's expiry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Privileges {
    pub authority: Cvr,
    pub user_id: String,
    pub roles: Vec<String>,
    pub kle: KleConstraint,
    pub sensitivity: Sensitivity,
    pub until: DateTime<Utc>,
}

impl Privileges {
    pub fn of(e: &Employee, until: DateTime<Utc>) -> Privileges {
        Privileges {
            authority: e.authority,
            user_id: e.user_id.clone(),
            roles: e.roles.clone(),
            kle: e.kle.clone(),
            sensitivity: e.sensitivity,
            until,
        }
    }

    /// The employee these privileges describe, for the row filters.
    fn holder(&self) -> Employee {
        Employee {
            user_id: self.user_id.clone(),
            name: None,
            authority: self.authority,
            roles: self.roles.clone(),
            kle: self.kle.clone(),
            sensitivity: self.sensitivity,
            org_unit: None,
            own_cpr: None,
            it_system: None,
        }
    }
}

/// A subscription as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub id: Uuid,
    pub citizen: PartyId,
    pub area: DataArea,
    pub kle_prefix: Option<KlePrefix>,
    pub privileges: Privileges,
    pub created_at: DateTime<Utc>,
}

/// What a notice says happened to its aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    Changed,
    Deleted,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Changed => "changed",
            NoticeKind::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<NoticeKind> {
        [NoticeKind::Changed, NoticeKind::Deleted].into_iter().find(|k| k.as_str() == s)
    }
}

/// One notice: for one subscription, about one applied event. `row_authority`
/// and `class` are what delivery is checked against; they leave with no
/// notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub event_id: Uuid,
    pub aggregate_id: Uuid,
    pub area: DataArea,
    pub event_type: String,
    pub kind: NoticeKind,
    pub occurred_at: DateTime<Utc>,
    pub row_authority: Cvr,
    pub class: Class,
}

/// A notice's id: UUIDv5 in the subscription's id as namespace, of the
/// event's id. The same subscription and event always give the same id, so
/// a notice written or sent again is recognisably the same notice.
pub fn notice_id(subscription: Uuid, event: Uuid) -> Uuid {
    Uuid::new_v5(&subscription, event.as_bytes())
}

/// The class of a row nothing is known of (its aggregate was deleted in
/// the batch): no KLE subject, VIP — shown only to those who may see
/// everything, as an unclassifiable payment is.
fn unclassified() -> Class {
    Class { kles: Vec::new(), sensitivity: Sensitivity::Vip }
}

/// The class of `agg` as the filters see it after `header` applied. A
/// document event is classed with every document of its case, so a notice
/// never tells of a document its case's holders may not see.
fn class_of(header: &EventHeader, agg: &Aggregate, grants: &Grants<'_>) -> Class {
    match &agg.state {
        State::Case(c) => {
            let mut class = filter::case_class(c);
            if header.kind.name().starts_with("document.") {
                for d in &c.documents {
                    let dc = filter::document_class(c, d);
                    class.kles.extend(dc.kles);
                    class.sensitivity = class.sensitivity.max(dc.sensitivity);
                }
                class.kles.sort_unstable();
                class.kles.dedup();
            }
            class
        }
        State::ControlCase(c) => filter::control_class(c),
        State::Grant(g) => filter::grant_class(g),
        State::Payment(p) => grants.payment_class(p),
        // Job-centre and SKAT records carry no KLE and no sensitivity: the
        // area's role is their boundary.
        State::Employment(_) | State::TaxRecord(_) => {
            Class { kles: Vec::new(), sensitivity: Sensitivity::NotConfidential }
        }
    }
}

/// The people an aggregate is about: its subject and, for a case, every
/// person among its parties (a lookup shows a case to each of them).
fn parties(header: &EventHeader, agg: Option<&Aggregate>) -> Vec<PartyId> {
    let mut out = vec![header.subject];
    if let Some(State::Case(c)) = agg.map(|a| &a.state) {
        out.extend(c.parties.iter().map(|p| p.id).filter(|p| !matches!(p, PartyId::Cvr(_))));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The citizens a batch's applied events touch: whose subscriptions the
/// batch transaction loads (as URNs, the stored form).
pub fn touched(plan: &Plan) -> Vec<String> {
    let states = final_states(plan);
    let mut out: HashSet<PartyId> = HashSet::new();
    for a in &plan.appended {
        out.extend(parties(&a.header, states.get(&a.header.aggregate_id).copied()));
    }
    let mut urns: Vec<String> = out.iter().map(PartyId::urn).collect();
    urns.sort_unstable();
    urns
}

/// The grants a batch's payments are classified by that the batch did not
/// write itself: the store loads them in the same transaction.
pub fn grants_wanted(plan: &Plan) -> Vec<Uuid> {
    let written: HashSet<Uuid> = plan.writes.iter().map(|w| w.aggregate.id).collect();
    let mut out: Vec<Uuid> = plan
        .writes
        .iter()
        .filter_map(|w| match &w.aggregate.state {
            State::Payment(p) => p.fields.grant_id.filter(|g| !written.contains(g)),
            _ => None,
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn final_states(plan: &Plan) -> HashMap<Uuid, &Aggregate> {
    plan.writes.iter().map(|w| (w.aggregate.id, &w.aggregate)).collect()
}

/// Whether a subscription on `area` at `authority` covers a row of
/// `event_area` at `row_authority`.
fn covers_area(area: DataArea, authority: &Cvr, event_area: DataArea, row_authority: &Cvr) -> bool {
    match scope(area) {
        Scope::Own => area == event_area && row_authority == authority,
        Scope::Closed => false,
    }
}

/// The notices a batch yields: for each applied event, one per
/// subscription on a citizen it touches whose area covers the event's and
/// whose KLE prefix (if any) covers one of the row's KLE subjects. The row
/// is classed as the batch leaves it; an aggregate the batch deleted is
/// unclassified. `grants` are the stored grants [`grants_wanted`] named.
pub fn notices(plan: &Plan, subscriptions: &[Subscription], grants: &[Aggregate]) -> Vec<Notice> {
    if subscriptions.is_empty() {
        return Vec::new();
    }
    let states = final_states(plan);
    let mut known: Vec<Aggregate> = grants.to_vec();
    known.extend(
        plan.writes.iter().filter(|w| matches!(w.aggregate.state, State::Grant(_))).map(|w| w.aggregate.clone()),
    );
    let grants = Grants::of(&known);
    let mut by_citizen: HashMap<PartyId, Vec<&Subscription>> = HashMap::new();
    for s in subscriptions {
        by_citizen.entry(s.citizen).or_default().push(s);
    }
    let mut out = Vec::new();
    for a in &plan.appended {
        let h = &a.header;
        let agg = states.get(&h.aggregate_id).copied();
        let mut class = None;
        for who in parties(h, agg) {
            for s in by_citizen.get(&who).into_iter().flatten() {
                let row_authority = agg.map_or(h.authority, |a| a.authority);
                if !covers_area(s.area, &s.privileges.authority, h.kind.data_area(), &row_authority) {
                    continue;
                }
                let class = class.get_or_insert_with(|| agg.map_or_else(unclassified, |a| class_of(h, a, &grants)));
                if let Some(prefix) = &s.kle_prefix
                    && !class.kles.iter().any(|k| prefix.covers(k))
                {
                    continue;
                }
                out.push(Notice {
                    id: notice_id(s.id, h.id),
                    subscription_id: s.id,
                    event_id: h.id,
                    aggregate_id: h.aggregate_id,
                    area: s.area,
                    event_type: h.type_name(),
                    kind: if h.kind.role() == Role::Delete { NoticeKind::Deleted } else { NoticeKind::Changed },
                    occurred_at: h.time,
                    row_authority,
                    class: class.clone(),
                });
            }
        }
    }
    out
}

/// Why a notice was not delivered. The codes are stored with a suppressed
/// outbox row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suppression {
    /// The subscription is gone.
    Unsubscribed,
    /// The privileges stored with the subscription expired, and it was not
    /// refreshed.
    Expired,
    /// No role that opens the area (any more).
    NoRole,
    /// The row is not the subscriber's authority's (or UDK's, for §8).
    OtherAuthority,
    /// The row's KLE subjects or sensitivity are outside the privileges.
    OutOfClass,
}

impl Suppression {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppression::Unsubscribed => "UNSUBSCRIBED",
            Suppression::Expired => "PRIVILEGES_EXPIRED",
            Suppression::NoRole => "NO_ROLE",
            Suppression::OtherAuthority => "OTHER_AUTHORITY",
            Suppression::OutOfClass => "OUT_OF_CLASS",
        }
    }
}

/// Whether `holder` may receive `notice` now: a role that opens the area,
/// the row of the holder's authority, and its class within the holder's
/// KLE constraint and sensitivity.
pub fn deliverable(notice: &Notice, holder: &Employee, catalogue: &Catalogue) -> Result<(), Suppression> {
    let entry = catalogue.area(notice.area);
    if entry.agreement_required || !entry.roles.iter().any(|r| holder.has_role(r)) {
        return Err(Suppression::NoRole);
    }
    let authority_ok = match scope(notice.area) {
        Scope::Own => notice.row_authority == holder.authority,
        Scope::Closed => false,
    };
    if !authority_ok {
        return Err(Suppression::OtherAuthority);
    }
    if !notice.class.visible_to(holder) {
        return Err(Suppression::OutOfClass);
    }
    Ok(())
}

/// [`deliverable`] against the privileges stored with the subscription
/// (`None`: it is gone), which hold until their `until`.
pub fn deliverable_stored(
    notice: &Notice,
    privileges: Option<&Privileges>,
    catalogue: &Catalogue,
    now: DateTime<Utc>,
) -> Result<(), Suppression> {
    let p = privileges.ok_or(Suppression::Unsubscribed)?;
    if now >= p.until {
        return Err(Suppression::Expired);
    }
    deliverable(notice, &p.holder(), catalogue)
}

/// The cursor a notice is delivered with: its outbox sequence number.
pub fn cursor(seq: i64) -> String {
    seq.to_string()
}

/// A cursor a caller sent: empty (from the start) or an outbox sequence
/// number.
pub fn parse_cursor(s: &str) -> Option<i64> {
    if s.is_empty() {
        return Some(0);
    }
    (s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<i64>().ok()).flatten()
}

/// The notice as a CloudEvent 1.0 in structured mode (JSON). Ids and kinds
/// only; `subject` is left out on purpose (the index's events put the
/// citizen there).
pub fn cloud_event(seq: i64, n: &Notice) -> Vec<u8> {
    let time = n.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let event = serde_json::json!({
        "specversion": "1.0",
        "id": n.id.to_string(),
        "source": SOURCE,
        "type": format!("{TYPE_PREFIX}{}", n.kind.as_str()),
        "time": time,
        "datacontenttype": "application/json",
        "data": {
            "notice_id": n.id.to_string(),
            "subscription_id": n.subscription_id.to_string(),
            "aggregate_id": n.aggregate_id.to_string(),
            "data_area": n.area.as_str(),
            "event_type": n.event_type,
            "occurred_at": time,
            "cursor": cursor(seq),
        },
    });
    serde_json::to_vec(&event).expect("a notice serialises")
}

#[cfg(test)]
mod tests;
