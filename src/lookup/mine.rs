//! Borgerblikket: a citizen's lookups on themselves, through the same flow
//! as the caseworkers' — the rows a citizen may see, and the entry that
//! records exactly what left.

use super::{Context, Loaded, Page, Rows, Shown};
use crate::access::Deny;
use crate::access::filter;
use crate::audit::{Entry, Kind, Search};
use crate::domain::{AggregateKind, DataArea, PartyId};

/// What a citizen lists of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mine {
    Cases,
    Grants,
    Payments,
    Employment,
}

impl Mine {
    pub fn rpc(self) -> &'static str {
        match self {
            Mine::Cases => "ListMyCases",
            Mine::Grants => "ListMyGrants",
            Mine::Payments => "ListMyPayments",
            Mine::Employment => "ListMyEmployment",
        }
    }

    pub fn area(self) -> DataArea {
        match self {
            Mine::Cases => DataArea::Sager,
            Mine::Grants | Mine::Payments => DataArea::Ydelser,
            Mine::Employment => DataArea::Beskaeftigelse,
        }
    }

    /// What the store reads: the cases where the citizen is the primary
    /// party, or their own grants, payments or job-centre registrations.
    pub fn kind(self) -> AggregateKind {
        match self {
            Mine::Cases => AggregateKind::Case,
            Mine::Grants => AggregateKind::Grant,
            Mine::Payments => AggregateKind::Payment,
            Mine::Employment => AggregateKind::Employment,
        }
    }
}

/// The citizen's rows (or why there are none) and the entry recording it.
/// `citizen` is the verified caller, or the denial to give.
pub fn mine<'a>(
    cx: &Context<'_>,
    citizen: Result<&PartyId, &Deny>,
    what: Mine,
    page: Page,
    loaded: &'a Loaded,
) -> (Result<Shown<'a>, Deny>, Entry) {
    let search = Search::rpc(what.rpc()).with("offset", page.offset.to_string().as_str());
    let mut entry = Entry::new(cx.transaction_id.clone(), cx.request_id, Kind::CitizenLookup, cx.actor.clone(), search);
    entry.area = Some(what.area());
    let me = match citizen {
        Ok(me) => me,
        Err(deny) => return (Err(deny.clone()), entry.deny(deny.reason)),
    };
    entry.citizen = Some(*me);
    let all = loaded.all();
    let mut rows = match what {
        Mine::Cases => {
            let mut v = filter::own_cases(all, me);
            v.sort_by(|(a, x), (b, y)| y.opened_on().cmp(&x.opened_on()).then(a.id.cmp(&b.id)));
            Rows::Cases(v)
        }
        Mine::Grants => {
            let mut v = filter::own_grants(loaded.own(), me);
            v.sort_by(|(a, x), (b, y)| y.fields.period.start.cmp(&x.fields.period.start).then(a.id.cmp(&b.id)));
            Rows::Grants(v)
        }
        Mine::Payments => {
            let mut v = filter::own_payments(loaded.own(), me);
            v.sort_by(|(a, x), (b, y)| y.fields.disposal_date.cmp(&x.fields.disposal_date).then(a.id.cmp(&b.id)));
            Rows::Payments(v)
        }
        Mine::Employment => {
            let mut v = filter::own_employment(loaded.own(), me);
            v.sort_by(|(a, x), (b, y)| y.registered_on.cmp(&x.registered_on).then(a.id.cmp(&b.id)));
            Rows::Employment(v)
        }
    };
    let total = rows.len();
    rows.window(page.offset, page.size);
    let end = page.offset.saturating_add(page.size);
    let next_offset = (end < total).then_some(end);
    let entry = entry.allow(rows.len(), Vec::new());
    (Ok(Shown { rows: vec![rows], truncated: loaded.truncated(), next_offset }), entry)
}
