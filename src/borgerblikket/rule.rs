//! What a citizen is shown of one row under the settings of the authority
//! that owns it (`Aggregate::authority`). Pure: the handler loads the
//! settings of the authorities of the rows it read and passes them in.
//!
//! An authority without settings shows what Borgerblikket always showed:
//! every case, benefit and registration, cases under their own title, no
//! documents.

use std::collections::HashMap;

use crate::domain::Cvr;
use crate::events::body::DocumentFields;
use crate::projection::Aggregate;
use crate::projection::state::{Case, Grant, Payment};

use super::settings::{CaseHeading, DocumentTitles, EmploymentView, OlderCases, Settings, SourceFilter};

/// The settings of the authorities a call's rows belong to; an authority
/// missing here has none.
#[derive(Clone, Debug, Default)]
pub struct Configs {
    by_authority: HashMap<Cvr, Settings>,
}

impl Configs {
    pub fn new(settings: impl IntoIterator<Item = (Cvr, Settings)>) -> Configs {
        Configs { by_authority: settings.into_iter().collect() }
    }

    pub fn of(&self, authority: &Cvr) -> Option<&Settings> {
        self.by_authority.get(authority)
    }
}

/// A case as its primary party is shown it.
#[derive(Clone, Debug)]
pub struct MyCase<'a> {
    pub aggregate: &'a Aggregate,
    pub case: &'a Case,
    /// The case's title, or its KLE topic's name where the authority heads
    /// cases by topic.
    pub heading: &'a str,
    /// Newest first; empty unless the authority shows document titles.
    pub documents: Vec<&'a DocumentFields>,
}

/// The case as shown, or `None` when the owning authority's settings hide
/// it: its KLE subject under no listed topic; created before its topic's
/// from-date (unless still open and active older cases are shown); from a
/// source system not listed.
pub fn case<'a>(settings: Option<&'a Settings>, a: &'a Aggregate, c: &'a Case) -> Option<MyCase<'a>> {
    let Some(s) = settings else {
        return Some(MyCase { aggregate: a, case: c, heading: &c.title, documents: Vec::new() });
    };
    let topic = s.topic(&c.kle)?;
    if let Some(from) = topic.from
        && c.opened_on() < from
    {
        let open = c.closed_on().is_none();
        if !(open && s.older_cases == OlderCases::ActiveShown) {
            return None;
        }
    }
    if let SourceFilter::Only(sources) = &s.sources
        && !sources.iter().any(|x| x == &c.source_system)
    {
        return None;
    }
    let heading = match s.case_heading {
        CaseHeading::CaseTitle => c.title.as_str(),
        CaseHeading::TopicName => topic.name.as_str(),
    };
    let documents = match s.document_titles {
        DocumentTitles::Hidden => Vec::new(),
        DocumentTitles::Shown => {
            // A document filed under a subject of its own shows only if that
            // subject is among the authority's topics too.
            let listed = |d: &&DocumentFields| d.kle.as_ref().is_none_or(|k| s.topic(k).is_some());
            let mut v: Vec<&DocumentFields> = c.documents.iter().filter(listed).collect();
            v.sort_by(|x, y| y.date.cmp(&x.date).then(x.document_id.cmp(&y.document_id)));
            v
        }
    };
    Some(MyCase { aggregate: a, case: c, heading, documents })
}

/// A grant shows when one of its granted benefits falls under a listed
/// topic. The from-date is about when a case was created, so it doesn't
/// apply to benefits.
pub fn grant(settings: Option<&Settings>, g: &Grant) -> bool {
    settings.is_none_or(|s| g.fields.benefits.iter().any(|b| s.topic(&b.kle).is_some()))
}

/// A payment shows when one of its lines falls under a listed topic.
pub fn payment(settings: Option<&Settings>, p: &Payment) -> bool {
    settings.is_none_or(|s| p.fields.lines.iter().any(|l| s.topic(&l.kle).is_some()))
}

/// Job-centre registrations show unless the authority hides them.
pub fn employment(settings: Option<&Settings>) -> bool {
    settings.is_none_or(|s| s.employment == EmploymentView::Shown)
}
