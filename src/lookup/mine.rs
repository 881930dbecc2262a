//! Borgerblikket: a citizen's lookups on themselves, through the same flow
//! as the caseworkers' — the rows a citizen may see under the settings of
//! the authority that owns each (`crate::borgerblikket::rule`), the entry
//! that records exactly what left, and the buckets the call counts in.

use super::{Context, Loaded, Page, Rows, Shown};
use crate::access::Deny;
use crate::access::filter;
use crate::audit::{Entry, Kind, Search};
use crate::borgerblikket::stats::{self, Bucket, CallKind, Outcome};
use crate::borgerblikket::{Configs, rule};
use crate::domain::{AggregateKind, Cvr, DataArea, PartyId};
use crate::projection::Aggregate;

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

    /// What the call counts as in the statistics.
    pub fn call_kind(self) -> CallKind {
        match self {
            Mine::Cases => CallKind::Cases,
            Mine::Grants | Mine::Payments => CallKind::Benefits,
            Mine::Employment => CallKind::Employment,
        }
    }
}

/// A citizen's call answered: the rows (or why there are none), the entry
/// recording it, and the statistics buckets it counts in (none when
/// refused).
#[derive(Debug)]
pub struct Mined<'a> {
    pub shown: Result<Shown<'a>, Deny>,
    pub entry: Entry,
    pub tally: Vec<(Bucket, Outcome)>,
}

/// The authorities of the rows a call considers, to load their settings
/// for: the citizen's own rows of the kind asked for.
pub fn authorities(loaded: &Loaded, citizen: &PartyId, what: Mine) -> Vec<Cvr> {
    let mut v: Vec<Cvr> = considered(loaded, citizen, what).into_iter().map(|a| a.authority).collect();
    v.sort();
    v.dedup();
    v
}

fn considered<'a>(loaded: &'a Loaded, me: &PartyId, what: Mine) -> Vec<&'a Aggregate> {
    match what {
        Mine::Cases => filter::own_cases(loaded.all(), me).into_iter().map(|(a, _)| a).collect(),
        Mine::Grants => filter::own_grants(loaded.own(), me).into_iter().map(|(a, _)| a).collect(),
        Mine::Payments => filter::own_payments(loaded.own(), me).into_iter().map(|(a, _)| a).collect(),
        Mine::Employment => filter::own_employment(loaded.own(), me).into_iter().map(|(a, _)| a).collect(),
    }
}

/// The citizen's rows (or why there are none), the entry recording it and
/// the statistics buckets. `citizen` is the verified caller, or the denial
/// to give; `configs` the settings of the authorities of the rows read.
pub fn mine<'a>(
    cx: &Context<'_>,
    citizen: Result<&PartyId, &Deny>,
    what: Mine,
    page: Page,
    loaded: &'a Loaded,
    configs: &'a Configs,
) -> Mined<'a> {
    let search = Search::rpc(what.rpc()).with("offset", page.offset.to_string().as_str());
    let mut entry = Entry::new(cx.transaction_id.clone(), cx.request_id, Kind::CitizenLookup, cx.actor.clone(), search);
    entry.area = Some(what.area());
    let me = match citizen {
        Ok(me) => me,
        Err(deny) => return Mined { shown: Err(deny.clone()), entry: entry.deny(deny.reason), tally: Vec::new() },
    };
    entry.citizen = Some(*me);
    let all = loaded.all();
    let settings = |a: &Aggregate| configs.of(&a.authority);
    let mut rows = match what {
        Mine::Cases => {
            let mut v: Vec<_> =
                filter::own_cases(all, me).into_iter().filter_map(|(a, c)| rule::case(settings(a), a, c)).collect();
            v.sort_by(|x, y| y.case.opened_on().cmp(&x.case.opened_on()).then(x.aggregate.id.cmp(&y.aggregate.id)));
            Rows::MyCases(v)
        }
        Mine::Grants => {
            let mut v = filter::own_grants(loaded.own(), me);
            v.retain(|(a, g)| rule::grant(settings(a), g));
            v.sort_by(|(a, x), (b, y)| y.fields.period.start.cmp(&x.fields.period.start).then(a.id.cmp(&b.id)));
            Rows::Grants(v)
        }
        Mine::Payments => {
            let mut v = filter::own_payments(loaded.own(), me);
            v.retain(|(a, p)| rule::payment(settings(a), p));
            v.sort_by(|(a, x), (b, y)| y.fields.disposal_date.cmp(&x.fields.disposal_date).then(a.id.cmp(&b.id)));
            Rows::Payments(v)
        }
        Mine::Employment => {
            let mut v = filter::own_employment(loaded.own(), me);
            v.retain(|(a, _)| rule::employment(settings(a)));
            v.sort_by(|(a, x), (b, y)| y.registered_on.cmp(&x.registered_on).then(a.id.cmp(&b.id)));
            Rows::Employment(v)
        }
    };
    let tally = stats::tally(considered(loaded, me, what).into_iter().map(|a| a.authority), rows.authorities());
    let total = rows.len();
    rows.window(page.offset, page.size);
    let end = page.offset.saturating_add(page.size);
    let next_offset = (end < total).then_some(end);
    let entry = entry.allow(rows.records(), Vec::new());
    Mined { shown: Ok(Shown { rows: vec![rows], truncated: loaded.truncated(), next_offset }), entry, tally }
}
