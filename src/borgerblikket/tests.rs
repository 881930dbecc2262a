//! The settings' validation and the rule a citizen's rows pass.

use chrono::{NaiveDate, TimeZone, Utc};
use uuid::Uuid;

use super::rule;
use super::settings::*;
use crate::domain::{ActionFacet, Cvr, Kle, PartyId, Sensitivity};
use crate::events::body::*;
use crate::projection::Aggregate;
use crate::projection::state::{Case, State};

fn d(s: &str) -> NaiveDate {
    crate::domain::parse_date(s).unwrap()
}

fn doc() -> Document {
    Document {
        topics: vec![
            TopicDocument { kle: "32.*".into(), from: "2025-01-01".into(), name: "Forsørgelse".into() },
            TopicDocument { kle: "32.18.04".into(), from: String::new(), name: "Kontanthjælp".into() },
        ],
        active_older_cases: "hidden".into(),
        source_systems: vec!["KY".into()],
        document_titles: "hidden".into(),
        case_heading: "case_title".into(),
        employment: "shown".into(),
    }
}

fn case(kle: &str, opened: &str, closed: Option<&str>, source: &str) -> Case {
    let mut history = vec![StatusEntry { status: CaseStatus::Opstaaet, from: d(opened) }];
    if let Some(c) = closed {
        history.push(StatusEntry { status: CaseStatus::Afsluttet, from: d(c) });
    }
    Case {
        case_number: "1".into(),
        title: "Ansøgning".into(),
        kle: Kle::parse(kle).unwrap(),
        action_facet: ActionFacet::parse("G01").unwrap(),
        sensitivity: Sensitivity::NotConfidential,
        parties: Vec::new(),
        org_unit: "Ydelse".into(),
        caseworker: None,
        source_system: source.into(),
        status_history: history,
        documents: vec![DocumentFields {
            document_id: Uuid::from_u128(1),
            title: "Afgørelse".into(),
            date: d("2025-02-01"),
            direction: DocumentDirection::Outgoing,
            kind: DocumentKind::Document,
            kle: None,
            sensitivity: None,
        }],
    }
}

fn agg(c: &Case) -> Aggregate {
    Aggregate {
        id: Uuid::from_u128(7),
        version: 1,
        subject: PartyId::parse("urn:oio:cpr-nr:0101801234").unwrap(),
        authority: Cvr::parse("55133018").unwrap(),
        source: "urn:overblik:source:ky".into(),
        updated_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        state: State::Case(c.clone()),
    }
}

#[test]
fn settings_round_trip_through_their_document_and_json() {
    let s = Settings::parse(&doc()).unwrap();
    assert_eq!(Settings::parse(&s.to_document()).unwrap(), s);
    assert_eq!(Settings::from_json(&s.to_json()).unwrap(), s);
}

#[test]
fn malformed_settings_name_the_field_and_never_the_value() {
    type Spoil = Box<dyn Fn(&mut Document)>;
    let cases: Vec<(&str, Spoil)> = vec![
        ("topics", Box::new(|d| d.topics.clear())),
        ("topics.kle", Box::new(|d| d.topics[0].kle = "32.1*".into())),
        ("topics.kle", Box::new(|d| d.topics[0].kle = "32.18.04.01".into())),
        ("topics.kle", Box::new(|d| d.topics[1].kle = "32.*".into())),
        ("topics.from", Box::new(|d| d.topics[0].from = "01-01-2025".into())),
        ("topics.from", Box::new(|d| d.topics[0].from = "2025-02-30".into())),
        ("topics.name", Box::new(|d| d.topics[0].name = " ".into())),
        ("topics.name", Box::new(|d| d.topics[0].name = "a\u{7}b".into())),
        ("topics.name", Box::new(|d| d.topics[0].name = "Kontant\u{202e}hjælp".into())),
        ("topics.name", Box::new(|d| d.topics[0].name = "Kontant\u{200b}hjælp".into())),
        ("topics.name", Box::new(|d| d.topics[0].name = "Sag 010180-1234".into())),
        ("source_systems", Box::new(|d| d.source_systems = vec![" KY".into()])),
        ("topics", Box::new(|d| d.topics = (0..1001).map(|_| d.topics[0].clone()).collect())),
        ("active_older_cases", Box::new(|d| d.active_older_cases = "yes".into())),
        ("source_systems", Box::new(|d| d.source_systems = vec!["K\u{0}Y".into()])),
        ("source_systems", Box::new(|d| d.source_systems = vec!["KY".into(); 51])),
        ("document_titles", Box::new(|d| d.document_titles = String::new())),
        ("case_heading", Box::new(|d| d.case_heading = "title".into())),
        ("employment", Box::new(|d| d.employment = "on".into())),
    ];
    for (field, spoil) in cases {
        let mut d = doc();
        spoil(&mut d);
        let e = Settings::parse(&d).unwrap_err();
        assert_eq!(e.field, field);
        assert!(!e.to_string().contains("01-01-2025") && !e.to_string().contains('\u{0}'));
    }
}

#[test]
fn the_most_specific_topic_decides() {
    let s = Settings::parse(&doc()).unwrap();
    assert_eq!(s.topic(&Kle::parse("32.18.04").unwrap()).unwrap().name, "Kontanthjælp");
    assert_eq!(s.topic(&Kle::parse("32.18.05").unwrap()).unwrap().name, "Forsørgelse");
    assert!(s.topic(&Kle::parse("27.12.00").unwrap()).is_none());
}

#[test]
fn topics_from_dates_older_cases_and_sources_decide_what_shows() {
    let mut s = Settings::parse(&doc()).unwrap();
    let shown = |s: &Settings, c: &Case| rule::case(Some(s), &agg(c), c).is_some();
    // Not under a listed topic.
    assert!(!shown(&s, &case("27.12.00", "2025-03-01", None, "KY")));
    // Under 32.* from 2025: a newer case shows, an older one doesn't.
    assert!(shown(&s, &case("32.12.00", "2025-03-01", None, "KY")));
    assert!(!shown(&s, &case("32.12.00", "2024-12-31", None, "KY")));
    // 32.18.04 has no from-date.
    assert!(shown(&s, &case("32.18.04", "2010-01-01", Some("2011-01-01"), "KY")));
    // Active older cases with the option on; closed older ones never.
    s.older_cases = OlderCases::ActiveShown;
    assert!(shown(&s, &case("32.12.00", "2024-12-31", None, "KY")));
    assert!(!shown(&s, &case("32.12.00", "2024-12-31", Some("2025-01-10"), "KY")));
    // A source system not listed.
    assert!(!shown(&s, &case("32.12.00", "2025-03-01", None, "SBSYS")));
    s.sources = SourceFilter::Any;
    assert!(shown(&s, &case("32.12.00", "2025-03-01", None, "SBSYS")));
}

#[test]
fn headings_and_document_titles_follow_the_switches() {
    let mut s = Settings::parse(&doc()).unwrap();
    let c = case("32.18.04", "2025-03-01", None, "KY");
    let a = agg(&c);
    // Without settings: as always, the title and no documents.
    let plain = rule::case(None, &a, &c).unwrap();
    assert_eq!((plain.heading, plain.documents.len()), ("Ansøgning", 0));
    let v = rule::case(Some(&s), &a, &c).unwrap();
    assert_eq!((v.heading, v.documents.len()), ("Ansøgning", 0));
    s.case_heading = CaseHeading::TopicName;
    s.document_titles = DocumentTitles::Shown;
    let v = rule::case(Some(&s), &a, &c).unwrap();
    assert_eq!(v.heading, "Kontanthjælp");
    assert_eq!(v.documents.iter().map(|d| d.title.as_str()).collect::<Vec<_>>(), ["Afgørelse"]);
    // A document filed under a subject of its own not among the topics
    // stays hidden, though its case shows.
    let mut filed = c.clone();
    filed.documents.push(DocumentFields {
        document_id: Uuid::from_u128(2),
        title: "Lægeerklæring".into(),
        kle: Some(Kle::parse("29.09.00").unwrap()),
        ..c.documents[0].clone()
    });
    let v = rule::case(Some(&s), &a, &filed).unwrap();
    assert_eq!(v.documents.iter().map(|d| d.title.as_str()).collect::<Vec<_>>(), ["Afgørelse"]);
}

#[test]
fn employment_shows_unless_hidden() {
    let mut s = Settings::parse(&doc()).unwrap();
    assert!(rule::employment(None) && rule::employment(Some(&s)));
    s.employment = EmploymentView::Hidden;
    assert!(!rule::employment(Some(&s)));
}
