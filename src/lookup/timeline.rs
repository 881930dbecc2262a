//! `GetTimeline`: one chronological list of what a caseworker may see of a
//! citizen across several areas — case status changes, grants started and
//! ended, payments, UDK benefits (§8), control-case steps (§11a) and
//! job-centre changes.
//!
//! The timeline has no filter of its own. Each area is decided on its own,
//! as in the overview; an allowed area's rows are exactly the ones its own
//! list would show ([`super::filtered`]), and the items are built from those
//! rows and nothing else. The page is cut from all areas' items together;
//! then each area records one entry counting its rows with an item on the
//! page (see [`answer`]), and every other person a case on the page names
//! gets a disclosure entry, as in the other calls.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use uuid::Uuid;

use super::{Answer, Context, Loaded, Page, Query, Rows, Section, Shown, allowed, filtered, lookup_entry, recorded};
use crate::access::{Allow, Deny};
use crate::domain::{Cvr, DataArea, Oere};
use crate::identity::Employee;
use crate::projection::state::Grant;

/// What happened on an item's date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKind {
    /// A case took a status; its first is its opening.
    CaseStatusChanged,
    GrantStarted,
    /// Only a registered ending: a planned end date is not a change yet.
    GrantEnded,
    /// A payment was at the citizen's disposal.
    PaymentDisposed,
    /// A UDK payment line, as §8 shows it: the benefit type and amount.
    UdkBenefitDisposed,
    ControlCaseOpened,
    ControlStep,
    /// §11a shows a closing only when it was without action.
    ControlCaseClosedWithoutAction,
    EmploymentRegistered,
    TargetGroupAssigned,
    ActivityStarted,
    ActivityEnded,
    EmploymentDeregistered,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::CaseStatusChanged => "case_status_changed",
            ItemKind::GrantStarted => "grant_started",
            ItemKind::GrantEnded => "grant_ended",
            ItemKind::PaymentDisposed => "payment_disposed",
            ItemKind::UdkBenefitDisposed => "udk_benefit_disposed",
            ItemKind::ControlCaseOpened => "control_case_opened",
            ItemKind::ControlStep => "control_step",
            ItemKind::ControlCaseClosedWithoutAction => "control_case_closed_without_action",
            ItemKind::EmploymentRegistered => "employment_registered",
            ItemKind::TargetGroupAssigned => "target_group_assigned",
            ItemKind::ActivityStarted => "activity_started",
            ItemKind::ActivityEnded => "activity_ended",
            ItemKind::EmploymentDeregistered => "employment_deregistered",
        }
    }
}

/// One dated change on the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub date: NaiveDate,
    pub area: DataArea,
    pub kind: ItemKind,
    /// The case, grant, payment, control case or job-centre record the
    /// change belongs to, under the id its area's list shows it by. `None`
    /// for a UDK benefit: §8 shows those without an id.
    pub aggregate: Option<Uuid>,
    pub authority: Cvr,
    /// A short label the row itself shows: a case's status, a grant's
    /// benefit types, a payment's number, a UDK benefit's type, a control
    /// case's theme or step, a registration's category, target group or
    /// activity kind. Never a title, a reason or a person.
    pub label: String,
    /// The gross amount, for payments and UDK benefits.
    pub amount: Option<Oere>,
    /// Which row of which area it came from; not shown.
    origin: Origin,
}

/// Where an item came from, and its place among the items of that row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Origin {
    /// The aggregate (for a UDK benefit, its payment): the first tiebreak.
    aggregate: Uuid,
    /// The position of the area among those asked for.
    ask: usize,
    /// The view of the area, and the row's position in its list's order.
    view: usize,
    row: usize,
    /// The item's position among its row's items.
    index: usize,
}

/// What an item sorts by (see [`Item::order`]).
type Order = (std::cmp::Reverse<NaiveDate>, Uuid, DataArea, ItemKind, usize, usize, usize);

impl Item {
    /// The timeline's order, newest first; same-day items by aggregate,
    /// area, kind, then their row and position in it — a total order, so
    /// pages never overlap or skip.
    fn order(&self) -> Order {
        let o = &self.origin;
        (std::cmp::Reverse(self.date), o.aggregate, self.area, self.kind, o.view, o.row, o.index)
    }
}

/// A page of the timeline.
#[derive(Debug)]
pub struct TimelinePage {
    pub items: Vec<Item>,
    /// Where the next page starts, when there are more items.
    pub next_offset: Option<usize>,
    /// The store's bound cut the citizen's aggregates: these are not all.
    pub truncated: bool,
}

/// The timeline page `query` asks for.
///
/// Each allowed area's entry counts its rows with at least one item on
/// this page — in the unit its own list counts: a case, a grant, a payment,
/// a UDK benefit line, a control case, a job-centre record — however many
/// items each row has there. A row whose items fall on two pages is
/// counted on both, since it left with both. The section of an allowed
/// area holds those rows; a denied area's section its denial, and its
/// entry the reason.
pub(super) fn answer<'a>(
    cx: &Context<'_>,
    caller: Result<&Employee, &Deny>,
    query: &Query,
    decisions: Vec<Result<Allow, Deny>>,
    loaded: &'a Loaded,
) -> Answer<'a> {
    let page = query.page.unwrap_or_else(|| Page::first(0));
    let mut decided = Vec::with_capacity(query.asks.len());
    let mut items = Vec::new();
    for (at, (ask, decision)) in query.asks.iter().zip(decisions).enumerate() {
        let entry = lookup_entry(cx, query, ask);
        let outcome = allowed(decision, caller).map(|(allow, employee)| {
            let rows = filtered(cx, employee, query, ask.area, loaded);
            for (view, r) in rows.iter().enumerate() {
                items.extend(items_of(ask.area, at, view, r));
            }
            (allow, employee, rows)
        });
        decided.push((entry, outcome));
    }
    items.sort_by_key(|a| a.order());
    let total = items.len();
    let end = page.offset().saturating_add(page.size());
    let items: Vec<Item> = items.into_iter().skip(page.offset()).take(page.size()).collect();
    let next_offset = (end < total).then_some(end);

    let mut left: HashMap<(usize, usize), HashSet<usize>> = HashMap::new();
    for i in &items {
        left.entry((i.origin.ask, i.origin.view)).or_default().insert(i.origin.row);
    }
    let none = HashSet::new();
    let mut sections = Vec::with_capacity(query.asks.len());
    let mut entries = Vec::with_capacity(query.asks.len());
    for (at, (ask, (entry, outcome))) in query.asks.iter().zip(decided).enumerate() {
        let (allow, employee, mut rows) = match outcome {
            Ok(allowed) => allowed,
            Err(deny) => {
                entries.push(entry.deny(deny.reason));
                sections.push(Section { area: ask.area, shown: Err(deny) });
                continue;
            }
        };
        for (view, r) in rows.iter_mut().enumerate() {
            r.keep(left.get(&(at, view)).unwrap_or(&none));
        }
        entries.extend(recorded(cx, employee, query, &allow, entry, &rows, loaded));
        let shown = Shown { rows, truncated: loaded.truncated(), next_offset };
        sections.push(Section { area: ask.area, shown: Ok(shown) });
    }
    let timeline = TimelinePage { items, next_offset, truncated: loaded.truncated() };
    Answer { sections, timeline: Some(timeline), entries }
}

/// Collects the items of one view's rows.
struct Items {
    area: DataArea,
    ask: usize,
    view: usize,
    out: Vec<Item>,
}

/// One change of a row, before it is placed.
struct Change {
    date: NaiveDate,
    kind: ItemKind,
    label: String,
    amount: Option<Oere>,
}

impl Change {
    fn new(date: NaiveDate, kind: ItemKind, label: &str) -> Change {
        Change { date, kind, label: label.to_string(), amount: None }
    }

    fn paid(self, amount: Oere) -> Change {
        Change { amount: Some(amount), ..self }
    }
}

/// Who a row's changes belong to: its aggregate, whether the id is shown,
/// its authority.
struct Of {
    aggregate: Uuid,
    shown: Option<Uuid>,
    authority: Cvr,
}

impl Of {
    fn shown(aggregate: Uuid, authority: Cvr) -> Of {
        Of { aggregate, shown: Some(aggregate), authority }
    }
}

impl Items {
    /// Adds row `row`'s changes, in the order given.
    fn row(&mut self, row: usize, of: Of, changes: Vec<Change>) {
        for (index, c) in changes.into_iter().enumerate() {
            self.out.push(Item {
                date: c.date,
                area: self.area,
                kind: c.kind,
                aggregate: of.shown,
                authority: of.authority,
                label: c.label,
                amount: c.amount,
                origin: Origin { aggregate: of.aggregate, ask: self.ask, view: self.view, row, index },
            });
        }
    }
}

/// The dated changes of every row of one view.
fn items_of(area: DataArea, ask: usize, view: usize, rows: &Rows<'_>) -> Vec<Item> {
    let mut items = Items { area, ask, view, out: Vec::new() };
    match rows {
        Rows::Cases(v) => {
            for (row, (a, c)) in v.iter().enumerate() {
                let changes = c
                    .status_history
                    .iter()
                    .map(|s| Change::new(s.from, ItemKind::CaseStatusChanged, s.status.as_str()))
                    .collect();
                items.row(row, Of::shown(a.id, a.authority), changes);
            }
        }
        Rows::Grants(v) => {
            for (row, (a, g)) in v.iter().enumerate() {
                let types = benefit_types(g);
                let mut changes = vec![Change::new(g.fields.period.start, ItemKind::GrantStarted, &types)];
                changes.extend(g.ended.as_ref().map(|e| Change::new(e.end, ItemKind::GrantEnded, &types)));
                items.row(row, Of::shown(a.id, a.authority), changes);
            }
        }
        Rows::Payments(v) => {
            for (row, (a, p)) in v.iter().enumerate() {
                let f = &p.fields;
                let change = Change::new(f.disposal_date, ItemKind::PaymentDisposed, &f.payment_number).paid(f.gross);
                items.row(row, Of::shown(a.id, a.authority), vec![change]);
            }
        }
        Rows::UdkBenefits(v) => {
            for (row, b) in v.iter().enumerate() {
                let change = Change::new(b.disposal_date, ItemKind::UdkBenefitDisposed, &b.benefit_type)
                    .paid(Oere(b.gross_oere));
                let of = Of { aggregate: b.payment_id, shown: None, authority: b.authority };
                items.row(row, of, vec![change]);
            }
        }
        Rows::ControlCases(v) => {
            for (row, c) in v.iter().enumerate() {
                let mut changes = vec![Change::new(c.opened_on, ItemKind::ControlCaseOpened, c.theme)];
                changes.extend(c.steps.iter().map(|s| Change::new(s.on, ItemKind::ControlStep, &s.step)));
                if let (true, Some(on)) = (c.closed_without_action, c.closed_on) {
                    changes.push(Change::new(on, ItemKind::ControlCaseClosedWithoutAction, ""));
                }
                items.row(row, Of::shown(c.case_id, c.authority), changes);
            }
        }
        Rows::Employment(v) => {
            for (row, (a, e)) in v.iter().enumerate() {
                let mut changes = vec![Change::new(e.registered_on, ItemKind::EmploymentRegistered, &e.category)];
                if let (Some(group), Some(from)) = (&e.target_group, e.target_group_from) {
                    changes.push(Change::new(from, ItemKind::TargetGroupAssigned, group));
                }
                for x in &e.activities {
                    changes.push(Change::new(x.start, ItemKind::ActivityStarted, &x.kind));
                    changes.extend(x.end.map(|end| Change::new(end, ItemKind::ActivityEnded, &x.kind)));
                }
                // The date only: the reason is the job centre's own text.
                changes.extend(e.deregistered_on.map(|on| Change::new(on, ItemKind::EmploymentDeregistered, "")));
                items.row(row, Of::shown(a.id, a.authority), changes);
            }
        }
        // Not among the timeline's views: documents are the case's, §8
        // shows a UDK case undated, tax records are no area of it, and a
        // citizen's own cases are Borgerblikket's.
        Rows::Documents(_) | Rows::UdkCases(_) | Rows::TaxRecords(_) | Rows::MyCases(_) => {}
    }
    items.out
}

/// A grant's benefit types, each once, in the grant's order.
fn benefit_types(g: &Grant) -> String {
    let mut types: Vec<&str> = Vec::new();
    for b in &g.fields.benefits {
        if !types.contains(&b.benefit_type.as_str()) {
            types.push(&b.benefit_type);
        }
    }
    types.join(", ")
}
