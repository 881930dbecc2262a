//! One authority's Borgerblikket settings: which KLE topics its citizens
//! see cases of and from which creation date, whether active older cases
//! show, which source systems' cases show, whether document titles show,
//! what heads a case, and whether job-centre registrations show.
//!
//! Settings enter as a [`Document`] — the shape of the dev default file,
//! the command line's `--file`, the stored JSON and (field for field) the
//! gRPC message — and become [`Settings`] only through [`Settings::parse`],
//! the one validation path. A refusal names the field and its rule and
//! never repeats the value.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::{Kle, parse_date};

/// KLE topics one authority may list at most: a bound on the settings'
/// size, and on the work of judging one row.
pub const MAX_TOPICS: usize = 1_000;
/// Source systems one authority may list at most.
pub const MAX_SOURCES: usize = 50;
/// Characters of a topic's name at most.
pub const MAX_NAME_CHARS: usize = 100;
/// Characters of a source system's name at most (as the events allow).
pub const MAX_SOURCE_CHARS: usize = 100;

/// Which KLE subjects a topic covers: one subject (`32.18.04`), a group
/// (`32.18.*`), a main group (`32.*`) or every subject (`*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KlePattern {
    Every,
    /// `dd.` or `dd.dd.`: the subjects that start with it.
    Prefix(String),
    Subject(Kle),
}

impl KlePattern {
    pub fn parse(s: &str) -> Option<KlePattern> {
        if s == "*" {
            return Some(KlePattern::Every);
        }
        if let Some(prefix) = s.strip_suffix('*') {
            let groups: Vec<&str> = prefix.strip_suffix('.')?.split('.').collect();
            let ok = groups.len() <= 2 && groups.iter().all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_digit()));
            return ok.then(|| KlePattern::Prefix(prefix.to_string()));
        }
        Kle::parse(s).ok().map(KlePattern::Subject)
    }

    pub fn matches(&self, kle: &Kle) -> bool {
        match self {
            KlePattern::Every => true,
            KlePattern::Prefix(p) => kle.as_str().starts_with(p.as_str()),
            KlePattern::Subject(k) => k == kle,
        }
    }

    /// How narrow the pattern is: the most specific matching topic decides.
    fn specificity(&self) -> usize {
        match self {
            KlePattern::Every => 0,
            KlePattern::Prefix(p) => p.len(),
            KlePattern::Subject(_) => 8,
        }
    }

    pub fn text(&self) -> String {
        match self {
            KlePattern::Every => "*".into(),
            KlePattern::Prefix(p) => format!("{p}*"),
            KlePattern::Subject(k) => k.to_string(),
        }
    }
}

/// A KLE topic the authority shows, from an optional case-creation date,
/// under a name of its choosing (shown instead of the case's title when
/// the authority heads cases by topic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topic {
    pub pattern: KlePattern,
    pub from: Option<NaiveDate>,
    pub name: String,
}

/// Cases created before their topic's from-date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OlderCases {
    /// Never shown.
    Hidden,
    /// Shown while not closed; a closed older case never.
    ActiveShown,
}

/// Which source systems' cases show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceFilter {
    Any,
    /// Only these (the case's `source_system`, compared exactly).
    Only(Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentTitles {
    Hidden,
    Shown,
}

/// What heads a case in the citizen's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaseHeading {
    CaseTitle,
    /// The name of the KLE topic the case falls under.
    TopicName,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmploymentView {
    Shown,
    Hidden,
}

/// One authority's validated settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Never empty, at most [`MAX_TOPICS`], patterns distinct.
    pub topics: Vec<Topic>,
    pub older_cases: OlderCases,
    pub sources: SourceFilter,
    pub document_titles: DocumentTitles,
    pub case_heading: CaseHeading,
    pub employment: EmploymentView,
}

/// Settings as they are written down: a file, the stored JSON, a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    pub topics: Vec<TopicDocument>,
    /// `hidden` or `shown`.
    pub active_older_cases: String,
    /// Absent or empty: every source system.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_systems: Vec<String>,
    /// `hidden` or `shown`.
    pub document_titles: String,
    /// `case_title` or `kle_topic`.
    pub case_heading: String,
    /// `shown` or `hidden`.
    pub employment: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDocument {
    /// `dd.dd.dd`, `dd.dd.*`, `dd.*` or `*`.
    pub kle: String,
    /// `YYYY-MM-DD`, or absent/empty for no from-date.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    pub name: String,
}

/// Why settings were refused: the field and its rule (fixed text, never
/// the value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct Refused {
    pub field: &'static str,
    pub rule: &'static str,
}

fn refused(field: &'static str, rule: &'static str) -> Refused {
    Refused { field, rule }
}

/// A name: not blank, bounded, no control character.
/// One line a citizen reads (a topic's name) or a source system's name:
/// the rules of an operator's note — not blank, bounded, nothing that hides,
/// reorders or breaks text, no personal number.
fn line(s: &str, max: usize) -> bool {
    s.len() <= max * 4 && crate::ingest::parked::Note::new(s, "setting", max).is_ok_and(|n| n.as_str() == s)
}

impl Settings {
    /// The one way in: every field checked, in a fixed order.
    pub fn parse(d: &Document) -> Result<Settings, Refused> {
        if d.topics.is_empty() {
            return Err(refused("topics", "at least one topic; `*` shows every KLE subject"));
        }
        if d.topics.len() > MAX_TOPICS {
            return Err(refused("topics", "at most 1000 topics"));
        }
        let mut topics = Vec::with_capacity(d.topics.len());
        let mut seen = std::collections::HashSet::with_capacity(d.topics.len());
        for t in &d.topics {
            let pattern = (t.kle.len() <= 8)
                .then(|| KlePattern::parse(&t.kle))
                .flatten()
                .ok_or_else(|| refused("topics.kle", "dd.dd.dd, dd.dd.*, dd.* or *"))?;
            if !seen.insert(pattern.clone()) {
                return Err(refused("topics.kle", "each pattern once"));
            }
            let from = match t.from.as_str() {
                "" => None,
                s => Some(
                    (s.len() == 10)
                        .then(|| parse_date(s).ok())
                        .flatten()
                        .ok_or_else(|| refused("topics.from", "a date, YYYY-MM-DD, or empty"))?,
                ),
            };
            if !line(&t.name, MAX_NAME_CHARS) {
                return Err(refused("topics.name", "1-100 characters, no control characters"));
            }
            topics.push(Topic { pattern, from, name: t.name.clone() });
        }
        let older_cases = match d.active_older_cases.as_str() {
            "hidden" => OlderCases::Hidden,
            "shown" => OlderCases::ActiveShown,
            _ => return Err(refused("active_older_cases", "hidden or shown")),
        };
        if d.source_systems.len() > MAX_SOURCES {
            return Err(refused("source_systems", "at most 50 source systems"));
        }
        if !d.source_systems.iter().all(|s| line(s, MAX_SOURCE_CHARS)) {
            return Err(refused("source_systems", "1-100 characters each, no control characters"));
        }
        let sources = match d.source_systems.as_slice() {
            [] => SourceFilter::Any,
            list => SourceFilter::Only(list.to_vec()),
        };
        let document_titles = match d.document_titles.as_str() {
            "hidden" => DocumentTitles::Hidden,
            "shown" => DocumentTitles::Shown,
            _ => return Err(refused("document_titles", "hidden or shown")),
        };
        let case_heading = match d.case_heading.as_str() {
            "case_title" => CaseHeading::CaseTitle,
            "kle_topic" => CaseHeading::TopicName,
            _ => return Err(refused("case_heading", "case_title or kle_topic")),
        };
        let employment = match d.employment.as_str() {
            "shown" => EmploymentView::Shown,
            "hidden" => EmploymentView::Hidden,
            _ => return Err(refused("employment", "shown or hidden")),
        };
        Ok(Settings { topics, older_cases, sources, document_titles, case_heading, employment })
    }

    /// The settings written down again; `parse(to_document(s)) == s`.
    pub fn to_document(&self) -> Document {
        Document {
            topics: self
                .topics
                .iter()
                .map(|t| TopicDocument {
                    kle: t.pattern.text(),
                    from: t.from.map(|d| d.to_string()).unwrap_or_default(),
                    name: t.name.clone(),
                })
                .collect(),
            active_older_cases: match self.older_cases {
                OlderCases::Hidden => "hidden",
                OlderCases::ActiveShown => "shown",
            }
            .into(),
            source_systems: match &self.sources {
                SourceFilter::Any => Vec::new(),
                SourceFilter::Only(v) => v.clone(),
            },
            document_titles: match self.document_titles {
                DocumentTitles::Hidden => "hidden",
                DocumentTitles::Shown => "shown",
            }
            .into(),
            case_heading: match self.case_heading {
                CaseHeading::CaseTitle => "case_title",
                CaseHeading::TopicName => "kle_topic",
            }
            .into(),
            employment: match self.employment {
                EmploymentView::Shown => "shown",
                EmploymentView::Hidden => "hidden",
            }
            .into(),
        }
    }

    /// Parses the stored or filed JSON form.
    pub fn from_json(json: &str) -> Result<Settings, Refused> {
        let d: Document =
            serde_json::from_str(json).map_err(|_| refused("settings", "a settings document (see README)"))?;
        Settings::parse(&d)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.to_document()).expect("settings serialise")
    }

    /// The most specific topic covering `kle`, if any.
    pub fn topic(&self, kle: &Kle) -> Option<&Topic> {
        self.topics.iter().filter(|t| t.pattern.matches(kle)).max_by_key(|t| t.pattern.specificity())
    }
}
