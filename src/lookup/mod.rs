//! The lookup flow, in one place and pure: a validated query, the caller,
//! the catalogue, the authority's agreements, the aggregates read for the
//! call and one `today` in; the sections to answer with and every audit
//! entry the call must record out.
//!
//! Handlers only parse the request into a [`Query`], run it through here
//! (with the two reads it asks for: [`needs_agreements`] and [`Query::reads`]),
//! record the entries and convert the sections. So the rules that matter —
//! each area decided on its own, rows filtered by [`crate::access::filter`],
//! an entry per decision that counts exactly the rows that leave, an entry
//! for every other person a returned row names, truncation reported — hold
//! for every call at once.

mod mine;
#[cfg(test)]
mod tests;
mod timeline;

pub use mine::{Mine, Mined, authorities, mine};
pub use timeline::{Item, ItemKind, TimelinePage};

use std::collections::BTreeMap;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::access::filter::{self, Class, ControlView, DocumentView, Grants, UdkBenefit, UdkCase};
use crate::access::system::{self, SystemGrant};
use crate::access::{Allow, Deny, decide};
use crate::agreements::Agreement;
use crate::audit::dpo::{AlarmSettings, lookup_alarms};
use crate::audit::{Actor, AlarmKind, Entry, Kind, Reason, Search, Text, TransactionId};
use crate::catalogue::Catalogue;
use crate::domain::{AggregateKind, Cvr, DataArea, Kle, PartyId, Sensitivity};
use crate::identity::Employee;
use crate::projection::Aggregate;
use crate::projection::state::{Case, Employment, Grant, Payment, TaxRecord};

/// Rows an overview section shows at most; the area's list pages the rest.
pub const OVERVIEW_ROWS: usize = 100;

/// A page of a list: the rows from `offset`, at most `size` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    offset: usize,
    size: usize,
}

impl Page {
    /// Rows per page when the caller doesn't say.
    pub const DEFAULT_SIZE: usize = 100;
    /// Rows per page at most.
    pub const MAX_SIZE: usize = 500;
    /// The furthest offset a page token may name (far beyond any citizen's
    /// rows; a bound on what a token can ask for).
    pub const MAX_OFFSET: usize = 1_000_000;

    /// `size` 0 means the default; larger than the maximum is the maximum.
    pub fn new(offset: usize, size: u32) -> Option<Page> {
        let size = match size as usize {
            0 => Self::DEFAULT_SIZE,
            n => n.min(Self::MAX_SIZE),
        };
        (offset <= Self::MAX_OFFSET).then_some(Page { offset, size })
    }

    pub fn first(size: u32) -> Page {
        Page::new(0, size).expect("offset 0 is in range")
    }

    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

/// The caseworkers' calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rpc {
    GetCitizenOverview,
    ListCases,
    GetCase,
    ListDocuments,
    ListGrants,
    ListPayments,
    ListUdkCases,
    ListUdkBenefits,
    ListControlCases,
    ListEmployment,
    ListTaxRecords,
    GetTimeline,
}

impl Rpc {
    /// Every caseworker call, in the service's order.
    pub const ALL: [Rpc; 12] = [
        Rpc::GetCitizenOverview,
        Rpc::GetTimeline,
        Rpc::ListCases,
        Rpc::GetCase,
        Rpc::ListDocuments,
        Rpc::ListGrants,
        Rpc::ListPayments,
        Rpc::ListUdkCases,
        Rpc::ListUdkBenefits,
        Rpc::ListControlCases,
        Rpc::ListEmployment,
        Rpc::ListTaxRecords,
    ];

    /// The call named `s` (its gRPC method name, e.g. `ListCases`).
    pub fn parse(s: &str) -> Option<Rpc> {
        Rpc::ALL.into_iter().find(|r| r.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Rpc::GetCitizenOverview => "GetCitizenOverview",
            Rpc::ListCases => "ListCases",
            Rpc::GetCase => "GetCase",
            Rpc::ListDocuments => "ListDocuments",
            Rpc::ListGrants => "ListGrants",
            Rpc::ListPayments => "ListPayments",
            Rpc::ListUdkCases => "ListUdkCases",
            Rpc::ListUdkBenefits => "ListUdkBenefits",
            Rpc::ListControlCases => "ListControlCases",
            Rpc::ListEmployment => "ListEmployment",
            Rpc::ListTaxRecords => "ListTaxRecords",
            Rpc::GetTimeline => "GetTimeline",
        }
    }

    /// The data areas the call may name.
    pub fn areas(self) -> &'static [DataArea] {
        match self {
            Rpc::GetCitizenOverview => &[DataArea::Sager, DataArea::Ydelser, DataArea::UdkSager, DataArea::UdkYdelser],
            Rpc::ListCases | Rpc::GetCase | Rpc::ListDocuments => &[DataArea::Sager],
            Rpc::ListGrants | Rpc::ListPayments => &[DataArea::Ydelser],
            Rpc::ListUdkCases => &[DataArea::UdkSager],
            Rpc::ListUdkBenefits => &[DataArea::UdkYdelser],
            Rpc::ListControlCases => &[DataArea::Kontrolsager],
            Rpc::ListEmployment => &[DataArea::Beskaeftigelse],
            Rpc::ListTaxRecords => &DataArea::TAX,
            // Not udk_sager: §8 shows a UDK case's status without a date,
            // so it has nothing to place on a timeline.
            Rpc::GetTimeline => &[
                DataArea::Sager,
                DataArea::Ydelser,
                DataArea::UdkYdelser,
                DataArea::Kontrolsager,
                DataArea::Beskaeftigelse,
            ],
        }
    }

    /// What the call shows of `area` (one of [`Rpc::areas`]). `GetCase`
    /// shows the case with the documents of it the caller may see, so its
    /// entry counts both.
    fn views(self, area: DataArea) -> Vec<View> {
        match (self, area) {
            (Rpc::GetCase, _) => vec![View::Cases, View::Documents],
            (Rpc::ListDocuments, _) => vec![View::Documents],
            (Rpc::GetCitizenOverview | Rpc::GetTimeline, DataArea::Ydelser) => vec![View::Grants, View::Payments],
            (Rpc::ListGrants, _) => vec![View::Grants],
            (Rpc::ListPayments, _) => vec![View::Payments],
            (Rpc::ListTaxRecords, area) => vec![View::TaxRecords(area)],
            (_, DataArea::Sager) => vec![View::Cases],
            (_, DataArea::UdkSager) => vec![View::UdkCases],
            (_, DataArea::UdkYdelser) => vec![View::UdkBenefits],
            (_, DataArea::Kontrolsager) => vec![View::ControlCases],
            (_, DataArea::Beskaeftigelse) => vec![View::Employment],
            (_, area) => vec![View::TaxRecords(area)],
        }
    }
}

/// One kind of row a section shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Cases,
    Documents,
    Grants,
    Payments,
    UdkCases,
    UdkBenefits,
    ControlCases,
    Employment,
    TaxRecords(DataArea),
}

impl View {
    /// The aggregate kinds the view reads: payments are classified by their
    /// grants, §8 reads cases, grants and payments together.
    fn kinds(self) -> &'static [AggregateKind] {
        match self {
            View::Cases | View::Documents => &[AggregateKind::Case],
            View::Grants => &[AggregateKind::Grant],
            View::Payments | View::UdkBenefits => &[AggregateKind::Grant, AggregateKind::Payment],
            View::UdkCases => &[AggregateKind::Case, AggregateKind::Grant, AggregateKind::Payment],
            View::ControlCases => &[AggregateKind::ControlCase],
            View::Employment => &[AggregateKind::Employment],
            View::TaxRecords(_) => &[AggregateKind::TaxRecord],
        }
    }
}

/// One data area asked for, with the purposes named for it (decided on:
/// exactly one must be, see [`crate::access::decide`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub area: DataArea,
    pub purpose_ids: Vec<u32>,
}

impl Ask {
    /// Purpose ids kept from a request at most: one is valid, two are
    /// enough to be refused as ambiguous.
    pub const MAX_PURPOSES: usize = 4;
}

/// A validated caseworker request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub rpc: Rpc,
    pub citizen: PartyId,
    /// One per area; areas distinct and among the call's.
    pub asks: Vec<Ask>,
    /// Lists only.
    pub page: Option<Page>,
    /// `GetCase` only.
    pub case_id: Option<Uuid>,
}

/// What the store must read for a query once its areas are decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reads {
    /// The citizen's aggregates of these kinds and, if asked, the cases
    /// where they are only a party.
    Citizen { kinds: Vec<AggregateKind>, party_cases: bool },
    /// One aggregate by id.
    One(Uuid),
}

impl Query {
    /// What to read, or `None` when every area was denied.
    pub fn reads(&self, decisions: &[Result<Allow, Deny>]) -> Option<Reads> {
        if !decisions.iter().any(Result::is_ok) {
            return None;
        }
        if let Some(id) = self.case_id {
            return Some(Reads::One(id));
        }
        let mut kinds = Vec::new();
        let mut party_cases = false;
        for (ask, decision) in self.asks.iter().zip(decisions) {
            if decision.is_err() {
                continue;
            }
            for view in self.rpc.views(ask.area) {
                kinds.extend_from_slice(view.kinds());
                party_cases |= matches!(view, View::Cases | View::Documents);
            }
        }
        kinds.sort();
        kinds.dedup();
        Some(Reads::Citizen { kinds, party_cases })
    }
}

/// The aggregates read for a call: the citizen's own first, then the cases
/// where they are only a party; and whether the store's bound cut some off.
#[derive(Debug, Default)]
pub struct Loaded {
    aggregates: Vec<Aggregate>,
    own: usize,
    truncated: bool,
}

impl Loaded {
    /// Orders `aggregates` so that `citizen`'s own come first.
    pub fn new(citizen: &PartyId, mut aggregates: Vec<Aggregate>, truncated: bool) -> Loaded {
        aggregates.sort_by_key(|a| &a.subject != citizen);
        let own = aggregates.iter().take_while(|a| &a.subject == citizen).count();
        Loaded { aggregates, own, truncated }
    }

    /// Every aggregate read.
    pub fn all(&self) -> &[Aggregate] {
        &self.aggregates
    }

    /// The aggregates about the citizen.
    pub fn own(&self) -> &[Aggregate] {
        &self.aggregates[..self.own]
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

/// Whether deciding `asks` needs the authority's agreements (only areas
/// that require one do; the others skip the read).
pub fn needs_agreements(catalogue: &Catalogue, asks: &[Ask]) -> bool {
    asks.iter().any(|a| catalogue.area(a.area).agreement_required)
}

/// Decides every area asked for: the caller (or why there is none), the
/// catalogue, the caller's authority's agreements and today's date.
pub fn decide_all(
    caller: Result<&Employee, &Deny>,
    catalogue: &Catalogue,
    agreements: &[Agreement],
    today: NaiveDate,
    asks: &[Ask],
) -> Vec<Result<Allow, Deny>> {
    asks.iter()
        .map(|ask| match caller {
            Ok(employee) => decide(employee, catalogue, agreements, today, ask.area, &ask.purpose_ids),
            Err(deny) => Err(deny.clone()),
        })
        .collect()
}

/// Decides every area an IT system asked for, within the service agreement
/// its call rests on (or the reason it rests on none): each area must lie
/// in the agreement's scope, then meets the rules every caller meets.
pub fn decide_all_system(
    grant: Result<&SystemGrant<'_>, &Deny>,
    catalogue: &Catalogue,
    agreements: &[Agreement],
    today: NaiveDate,
    asks: &[Ask],
) -> Vec<Result<Allow, Deny>> {
    asks.iter()
        .map(|ask| match grant {
            Ok(g) => system::decide_area(g, catalogue, agreements, today, ask.area, &ask.purpose_ids),
            Err(deny) => Err(deny.clone()),
        })
        .collect()
}

/// The rows of one view, as the filters left them.
#[derive(Debug)]
pub enum Rows<'a> {
    Cases(Vec<(&'a Aggregate, &'a Case)>),
    /// Borgerblikket's cases: each under its authority's settings.
    MyCases(Vec<crate::borgerblikket::MyCase<'a>>),
    Documents(Vec<DocumentView<'a>>),
    Grants(Vec<(&'a Aggregate, &'a Grant)>),
    Payments(Vec<(&'a Aggregate, &'a Payment)>),
    UdkCases(Vec<UdkCase>),
    UdkBenefits(Vec<UdkBenefit>),
    ControlCases(Vec<ControlView<'a>>),
    Employment(Vec<(&'a Aggregate, &'a Employment)>),
    TaxRecords(Vec<(&'a Aggregate, &'a TaxRecord)>),
}

impl Rows<'_> {
    pub fn len(&self) -> usize {
        match self {
            Rows::Cases(v) => v.len(),
            Rows::MyCases(v) => v.len(),
            Rows::Documents(v) => v.len(),
            Rows::Grants(v) => v.len(),
            Rows::Payments(v) => v.len(),
            Rows::UdkCases(v) => v.len(),
            Rows::UdkBenefits(v) => v.len(),
            Rows::ControlCases(v) => v.len(),
            Rows::Employment(v) => v.len(),
            Rows::TaxRecords(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows an audit entry counts: each row, and each document title
    /// that leaves with a citizen's case.
    pub fn records(&self) -> usize {
        match self {
            Rows::MyCases(v) => v.iter().map(|c| 1 + c.documents.len()).sum(),
            other => other.len(),
        }
    }

    /// The owning authority of each row of a citizen's list (the
    /// statistics' attribution); empty for the caseworkers' views.
    fn authorities(&self) -> Vec<Cvr> {
        match self {
            Rows::MyCases(v) => v.iter().map(|c| c.aggregate.authority).collect(),
            Rows::Grants(v) => v.iter().map(|(a, _)| a.authority).collect(),
            Rows::Payments(v) => v.iter().map(|(a, _)| a.authority).collect(),
            Rows::Employment(v) => v.iter().map(|(a, _)| a.authority).collect(),
            _ => Vec::new(),
        }
    }

    /// Keeps rows `from..from + n`.
    fn window(&mut self, from: usize, n: usize) {
        fn cut<T>(v: &mut Vec<T>, from: usize, n: usize) {
            let from = from.min(v.len());
            v.drain(..from);
            v.truncate(n);
        }
        match self {
            Rows::Cases(v) => cut(v, from, n),
            Rows::MyCases(v) => cut(v, from, n),
            Rows::Documents(v) => cut(v, from, n),
            Rows::Grants(v) => cut(v, from, n),
            Rows::Payments(v) => cut(v, from, n),
            Rows::UdkCases(v) => cut(v, from, n),
            Rows::UdkBenefits(v) => cut(v, from, n),
            Rows::ControlCases(v) => cut(v, from, n),
            Rows::Employment(v) => cut(v, from, n),
            Rows::TaxRecords(v) => cut(v, from, n),
        }
    }

    /// Keeps the rows whose positions `keep` holds, in their order.
    fn keep(&mut self, keep: &std::collections::HashSet<usize>) {
        fn only<T>(v: &mut Vec<T>, keep: &std::collections::HashSet<usize>) {
            let mut at = 0;
            v.retain(|_| {
                at += 1;
                keep.contains(&(at - 1))
            });
        }
        match self {
            Rows::Cases(v) => only(v, keep),
            Rows::MyCases(v) => only(v, keep),
            Rows::Documents(v) => only(v, keep),
            Rows::Grants(v) => only(v, keep),
            Rows::Payments(v) => only(v, keep),
            Rows::UdkCases(v) => only(v, keep),
            Rows::UdkBenefits(v) => only(v, keep),
            Rows::ControlCases(v) => only(v, keep),
            Rows::Employment(v) => only(v, keep),
            Rows::TaxRecords(v) => only(v, keep),
        }
    }
}

/// What one area of the answer shows.
#[derive(Debug)]
pub struct Shown<'a> {
    /// One entry per view of the area (the overview's `ydelser` has grants
    /// and payments).
    pub rows: Vec<Rows<'a>>,
    /// More rows exist than are shown: the overview's cap, or the store's
    /// bound on one citizen's aggregates.
    pub truncated: bool,
    /// Where the next page starts, for lists with more rows.
    pub next_offset: Option<usize>,
}

#[derive(Debug)]
pub struct Section<'a> {
    pub area: DataArea,
    pub shown: Result<Shown<'a>, Deny>,
}

/// The answer to a call and the entries to record before it leaves.
#[derive(Debug)]
pub struct Answer<'a> {
    /// One per area asked for. For `GetTimeline`, an allowed section holds
    /// the rows whose items are on the page.
    pub sections: Vec<Section<'a>>,
    /// `GetTimeline` only: the page of items built from those rows.
    pub timeline: Option<TimelinePage>,
    pub entries: Vec<Entry>,
}

/// Who asked and when, for the entries; and the settings the rows are
/// judged by.
pub struct Context<'c> {
    pub transaction_id: &'c TransactionId,
    pub request_id: Uuid,
    pub actor: &'c Actor,
    pub today: NaiveDate,
    pub alarms: &'c AlarmSettings,
    pub udk: Cvr,
    /// The service agreement an IT system's call rests on, named in each
    /// of its entries.
    pub service_agreement: Option<Uuid>,
}

/// The answer to `query`, given its decisions and what was read.
pub fn answer<'a>(
    cx: &Context<'_>,
    caller: Result<&Employee, &Deny>,
    query: &Query,
    decisions: Vec<Result<Allow, Deny>>,
    loaded: &'a Loaded,
) -> Answer<'a> {
    if query.rpc == Rpc::GetTimeline {
        return timeline::answer(cx, caller, query, decisions, loaded);
    }
    let mut sections = Vec::with_capacity(query.asks.len());
    let mut entries = Vec::with_capacity(query.asks.len());
    for (ask, decision) in query.asks.iter().zip(decisions) {
        let entry = lookup_entry(cx, query, ask);
        let (allow, employee) = match allowed(decision, caller) {
            Ok(pair) => pair,
            Err(deny) => {
                entries.push(entry.deny(deny.reason));
                sections.push(Section { area: ask.area, shown: Err(deny) });
                continue;
            }
        };
        let shown = show(cx, employee, query, ask.area, loaded);
        entries.extend(recorded(cx, employee, query, &allow, entry, &shown.rows, loaded));
        sections.push(Section { area: ask.area, shown: Ok(shown) });
    }
    Answer { sections, timeline: None, entries }
}

/// The entry of one area's decision, before it is decided: the call, the
/// area and its purposes, the page, the citizen.
fn lookup_entry(cx: &Context<'_>, query: &Query, ask: &Ask) -> Entry {
    let mut search = Search::rpc(query.rpc.name()).purpose(ask.area, &ask.purpose_ids);
    if let Some(page) = query.page {
        search = search.with("offset", page.offset.to_string().as_str());
    }
    if let Some(id) = query.case_id {
        search = search.with("case_id", id.to_string().as_str());
    }
    if let Some(id) = cx.service_agreement {
        search = search.with("service_agreement", id.to_string().as_str());
    }
    let mut entry = Entry::new(cx.transaction_id.clone(), cx.request_id, Kind::Lookup, cx.actor.clone(), search);
    entry.area = Some(ask.area);
    entry.purpose_id = match ask.purpose_ids.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    entry.citizen = Some(query.citizen);
    entry
}

/// The area's allowance and the employee it allows, or why there is none:
/// denied by the decision, or no employee to allow.
fn allowed<'e>(
    decision: Result<Allow, Deny>,
    caller: Result<&'e Employee, &Deny>,
) -> Result<(Allow, &'e Employee), Deny> {
    match (decision, caller) {
        (Ok(allow), Ok(employee)) => Ok((allow, employee)),
        (Err(deny), _) => Err(deny),
        (Ok(_), Err(deny)) => Err(deny.clone()),
    }
}

/// The entries an allowed area records for `rows`, the rows that leave:
/// its own, counting them (with the alarms their classes raise), then one
/// for every other person a shown case names, in the same group, so their
/// own report shows the lookup.
fn recorded(
    cx: &Context<'_>,
    employee: &Employee,
    query: &Query,
    allow: &Allow,
    mut entry: Entry,
    rows: &[Rows<'_>],
    loaded: &Loaded,
) -> Vec<Entry> {
    entry.roles_used = allow.roles_used.iter().map(|r| Text::new(r)).collect();
    entry.agreement_id = allow.agreement_id.as_deref().map(Text::new);
    let grants = Grants::of(loaded.all());
    let classes: Vec<Class> = rows.iter().flat_map(|r| classes(r, &grants)).collect();
    let count: usize = rows.iter().map(Rows::len).sum();
    let entry = if query.case_id.is_some() && count == 0 {
        entry.allow_nothing(Reason::NotFound)
    } else {
        entry.allow(count, alarms_of(cx, employee, &query.citizen, &classes))
    };
    let disclosures: Vec<Entry> = disclosed(rows, &query.citizen)
        .into_iter()
        .map(|(party, cases)| {
            let mut e = entry.clone();
            e.kind = Kind::PartyDisclosure;
            e.citizen = Some(party);
            let classes: Vec<Class> = cases.iter().map(|c| filter::case_class(c)).collect();
            e.allow(cases.len(), alarms_of(cx, employee, &party, &classes))
        })
        .collect();
    let mut out = vec![entry];
    out.extend(disclosures);
    out
}

/// The rows of one allowed area, paged or capped.
fn show<'a>(cx: &Context<'_>, caller: &Employee, query: &Query, area: DataArea, loaded: &'a Loaded) -> Shown<'a> {
    let mut rows = filtered(cx, caller, query, area, loaded);
    let mut truncated = loaded.truncated();
    let mut next_offset = None;
    match query.page {
        Some(page) => {
            for r in &mut rows {
                let total = r.len();
                r.window(page.offset, page.size);
                let end = page.offset.saturating_add(page.size);
                if end < total {
                    next_offset = Some(end);
                }
            }
        }
        None => {
            for r in &mut rows {
                // GetCase shows its case's documents whole (at most
                // Case::MAX_DOCUMENTS); an overview section its first rows.
                let cap = match r {
                    Rows::Documents(_) => Case::MAX_DOCUMENTS,
                    _ => OVERVIEW_ROWS,
                };
                truncated |= r.len() > cap;
                r.window(0, cap);
            }
        }
    }
    Shown { rows, truncated, next_offset }
}

/// Every row of one allowed area the filters let through, one entry per
/// view of the call, each in its list's order. The one place a lookup's
/// rows are chosen: the lists, the overview and the timeline all read them
/// from here.
fn filtered<'a>(
    cx: &Context<'_>,
    caller: &Employee,
    query: &Query,
    area: DataArea,
    loaded: &'a Loaded,
) -> Vec<Rows<'a>> {
    let (all, own) = (loaded.all(), loaded.own());
    let citizen = &query.citizen;
    query
        .rpc
        .views(area)
        .into_iter()
        .map(|view| {
            // Only cases are shown beyond the citizen's own aggregates (the
            // cases where they are a party).
            match view {
                View::Cases => {
                    let mut v = filter::cases(all, caller);
                    if let Some(id) = query.case_id {
                        v.retain(|(a, c)| a.id == id && names(a, c, citizen));
                    }
                    v.sort_by(|(a, x), (b, y)| y.opened_on().cmp(&x.opened_on()).then(a.id.cmp(&b.id)));
                    Rows::Cases(v)
                }
                View::Documents => {
                    let mut v = filter::documents(all, caller);
                    if let Some(id) = query.case_id {
                        v.retain(|d| d.case.id == id && names(d.case, d.case_state, citizen));
                    }
                    v.sort_by(|x, y| {
                        (y.document.date, x.case.id, x.document.document_id).cmp(&(
                            x.document.date,
                            y.case.id,
                            y.document.document_id,
                        ))
                    });
                    Rows::Documents(v)
                }
                View::Grants => {
                    let mut v = filter::grants(own, caller);
                    v.sort_by(|(a, x), (b, y)| y.fields.period.start.cmp(&x.fields.period.start).then(a.id.cmp(&b.id)));
                    Rows::Grants(v)
                }
                View::Payments => {
                    let mut v = filter::payments(own, caller);
                    v.sort_by(|(a, x), (b, y)| {
                        y.fields.disposal_date.cmp(&x.fields.disposal_date).then(a.id.cmp(&b.id))
                    });
                    Rows::Payments(v)
                }
                View::UdkCases => Rows::UdkCases(filter::udk_cases(own, &cx.udk, cx.today, caller)),
                View::UdkBenefits => Rows::UdkBenefits(filter::udk_benefits(own, &cx.udk, cx.today, caller)),
                View::ControlCases => {
                    let mut v = filter::control_cases(own, cx.today, caller);
                    v.sort_by(|x, y| y.opened_on.cmp(&x.opened_on).then(x.case_id.cmp(&y.case_id)));
                    Rows::ControlCases(v)
                }
                View::Employment => {
                    let mut v = filter::employment(own, caller);
                    v.sort_by(|(a, x), (b, y)| y.registered_on.cmp(&x.registered_on).then(a.id.cmp(&b.id)));
                    Rows::Employment(v)
                }
                View::TaxRecords(area) => {
                    let mut v = filter::tax_records(own, area);
                    v.sort_by(|(a, x), (b, y)| {
                        let year = |t: &TaxRecord| t.record.income_year().map_or(0, |y| y.0);
                        year(y).cmp(&year(x)).then(a.id.cmp(&b.id))
                    });
                    Rows::TaxRecords(v)
                }
            }
        })
        .collect()
}

/// Whether a case is about `citizen`: theirs, or naming them as a party.
fn names(a: &Aggregate, c: &Case, citizen: &PartyId) -> bool {
    &a.subject == citizen || c.parties.iter().any(|p| &p.id == citizen)
}

/// The classes of the rows shown, for the alarms: what the filters judged.
fn classes(rows: &Rows<'_>, grants: &Grants<'_>) -> Vec<Class> {
    match rows {
        Rows::Cases(v) => v.iter().map(|(_, c)| filter::case_class(c)).collect(),
        Rows::MyCases(v) => v.iter().map(|c| filter::case_class(c.case)).collect(),
        Rows::Documents(v) => v.iter().map(|d| d.class.clone()).collect(),
        Rows::Grants(v) => v.iter().map(|(_, g)| filter::grant_class(g)).collect(),
        Rows::Payments(v) => v.iter().map(|(_, p)| grants.payment_class(p)).collect(),
        Rows::UdkCases(v) => v.iter().map(|c| c.class.clone()).collect(),
        Rows::UdkBenefits(v) => v.iter().map(|b| b.class.clone()).collect(),
        Rows::ControlCases(v) => v.iter().map(|c| c.class.clone()).collect(),
        Rows::Employment(_) | Rows::TaxRecords(_) => Vec::new(),
    }
}

fn alarms_of(cx: &Context<'_>, caller: &Employee, citizen: &PartyId, classes: &[Class]) -> Vec<AlarmKind> {
    let kles: Vec<Kle> = classes.iter().flat_map(|c| c.kles.iter().copied()).collect();
    let sensitivities: Vec<Sensitivity> = classes.iter().map(|c| c.sensitivity).collect();
    lookup_alarms(caller, citizen, &kles, &sensitivities, cx.alarms)
}

/// The persons other than `citizen` the shown cases (or the shown
/// documents' cases: a document is about its case's parties) name, each with
/// the cases that name them, in a fixed order. Companies (CVR) are not
/// persons.
fn disclosed<'a>(rows: &[Rows<'a>], citizen: &PartyId) -> Vec<(PartyId, Vec<&'a Case>)> {
    let mut out: BTreeMap<String, (PartyId, Vec<&'a Case>)> = BTreeMap::new();
    // Each case once, in the order shown, however many of its documents
    // left with it (GetCase shows a case and its documents).
    let mut seen: std::collections::HashSet<*const Case> = std::collections::HashSet::new();
    for r in rows {
        let shown: Vec<&'a Case> = match r {
            Rows::Cases(cases) => cases.iter().map(|(_, c)| *c).collect(),
            Rows::Documents(documents) => documents.iter().map(|d| d.case_state).collect(),
            _ => continue,
        };
        for c in shown {
            if !seen.insert(c as *const Case) {
                continue;
            }
            let mut named: Vec<&PartyId> =
                c.parties.iter().map(|p| &p.id).filter(|p| *p != citizen && !matches!(p, PartyId::Cvr(_))).collect();
            named.sort_by_key(|p| p.urn());
            named.dedup();
            for p in named {
                out.entry(p.urn()).or_insert_with(|| (*p, Vec::new())).1.push(c);
            }
        }
    }
    out.into_values().collect()
}
