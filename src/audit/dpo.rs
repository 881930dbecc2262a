//! What the data-protection officer gets from the log: alarms, the
//! citizen's art. 15 report and CSV export. Pure functions over records.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Timelike, Utc};

use super::{AlarmKind, Decision, Kind, Record};
use crate::catalogue::Catalogue;
use crate::domain::{Cvr, DataArea, Kle, PartyId, Sensitivity, copenhagen_today};
use crate::identity::Employee;

/// Alarm configuration.
#[derive(Clone, Debug)]
pub struct AlarmSettings {
    /// KLE prefixes whose cases are sensitive to look at (e.g. health).
    pub sensitive_kle: Vec<String>,
    /// More distinct citizens than this per user per clock hour is an alarm.
    pub volume_per_hour: usize,
    /// The employee register, where configured: employee → their authority.
    pub employees: HashMap<PartyId, Cvr>,
}

impl Default for AlarmSettings {
    fn default() -> Self {
        AlarmSettings { sensitive_kle: vec!["32.15".into()], volume_per_hour: 100, employees: HashMap::new() }
    }
}

/// The alarms one lookup raises, from who asked, about whom, and what the
/// rows it returned were.
pub fn lookup_alarms(
    caller: &Employee,
    citizen: &PartyId,
    kles: &[Kle],
    sensitivities: &[Sensitivity],
    settings: &AlarmSettings,
) -> Vec<AlarmKind> {
    let mut alarms = Vec::new();
    let own = caller.own_cpr.is_some() && citizen.cpr() == caller.own_cpr.as_ref();
    if own {
        alarms.push(AlarmKind::SelfLookup);
    }
    if !own && settings.employees.get(citizen) == Some(&caller.authority) {
        alarms.push(AlarmKind::Colleague);
    }
    if kles.iter().any(|k| settings.sensitive_kle.iter().any(|p| k.as_str().starts_with(p.as_str()))) {
        alarms.push(AlarmKind::SensitiveKle);
    }
    if sensitivities.contains(&Sensitivity::Vip) {
        alarms.push(AlarmKind::Vip);
    }
    alarms
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Alarm {
    pub kind: String,
    pub seq: i64,
    pub user_id: String,
    pub citizen: String,
    pub at: DateTime<Utc>,
    pub detail: String,
}

/// The alarms of records fed in sequence order: those raised at lookup
/// time, and users who looked up more distinct citizens in one clock hour
/// than the threshold. Memory is bounded by the distinct (user, citizen)
/// pairs of the current and the previous hour — at most `volume_per_hour +
/// 1` citizens are remembered per user and hour — whatever the log's size.
pub struct AlarmScan<'s> {
    settings: &'s AlarmSettings,
    /// Per clock hour (at most two: records of instances with slightly
    /// different clocks interleave): per user, the citizens seen (by a
    /// 64-bit hash), or `None` once the volume alarm was raised.
    hours: BTreeMap<DateTime<Utc>, HashMap<String, Option<HashSet<u64>>>>,
}

impl<'s> AlarmScan<'s> {
    pub fn new(settings: &'s AlarmSettings) -> AlarmScan<'s> {
        AlarmScan { settings, hours: BTreeMap::new() }
    }

    /// The alarms record `r` raises.
    pub fn feed(&mut self, r: &Record) -> Vec<Alarm> {
        use std::hash::{Hash as _, Hasher as _};
        let e = &r.entry;
        let mut out: Vec<Alarm> = e
            .alarms
            .iter()
            .map(|kind| Alarm {
                kind: kind.clone(),
                seq: r.seq,
                user_id: e.user_id.clone(),
                citizen: e.citizen.clone(),
                at: r.recorded_at,
                detail: format!("{} {} for purpose {:?}", e.kind, e.data_area, e.purpose_id),
            })
            .collect();
        if e.decision == Decision::Allow.as_str() && e.kind == Kind::Lookup.as_str() && !e.citizen.is_empty() {
            let hour = r
                .recorded_at
                .with_minute(0)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_nanosecond(0))
                .expect("a whole hour");
            // Hours two or more before this one are over.
            while let Some((&oldest, _)) = self.hours.first_key_value() {
                if oldest + chrono::Duration::hours(1) < hour {
                    self.hours.pop_first();
                } else {
                    break;
                }
            }
            let users = self.hours.entry(hour).or_default();
            let seen = users.entry(e.user_id.clone()).or_insert_with(|| Some(HashSet::new()));
            if let Some(citizens) = seen {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                e.citizen.hash(&mut h);
                citizens.insert(h.finish());
                if citizens.len() > self.settings.volume_per_hour {
                    *seen = None;
                    out.push(Alarm {
                        kind: "volume".into(),
                        seq: r.seq,
                        user_id: e.user_id.clone(),
                        citizen: String::new(),
                        at: r.recorded_at,
                        detail: format!("more than {} citizens in one hour", self.settings.volume_per_hour),
                    });
                }
            }
        }
        out
    }
}

/// The alarms in `records` (in sequence order).
pub fn alarms(records: &[Record], settings: &AlarmSettings) -> Vec<Alarm> {
    let mut scan = AlarmScan::new(settings);
    records.iter().flat_map(|r| scan.feed(r)).collect()
}

/// One line of the citizen's art. 15 report: when, which authority, which
/// purpose. Never who.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ReportEntry {
    pub date: NaiveDate,
    pub authority: String,
    pub data_area: String,
    pub purpose_id: Option<u32>,
    pub purpose: String,
}

/// Whether a record tells that `citizen`'s data was shown: an allowed
/// lookup on them, or their identity disclosed as a party of a case shown
/// in someone else's lookup.
pub fn shows_data_of(r: &Record, citizen: &str) -> bool {
    r.entry.citizen == citizen
        && r.entry.decision == Decision::Allow.as_str()
        && Kind::parse(&r.entry.kind).is_some_and(Kind::is_about_a_citizens_data)
}

/// The lookups of `citizen`'s data that were allowed — the consultations
/// art. 15 gives a right to know of, including those where they were shown
/// as a party of someone else's case — with their date (Copenhagen
/// calendar), authority and purpose.
pub fn citizen_report(records: &[Record], citizen: &str, catalogue: &Catalogue) -> Vec<ReportEntry> {
    records
        .iter()
        .filter(|r| shows_data_of(r, citizen))
        .map(|r| {
            let e = &r.entry;
            let purpose = DataArea::parse(&e.data_area)
                .zip(e.purpose_id)
                .and_then(|(a, p)| catalogue.purpose(a, p))
                .map_or_else(String::new, |p| p.name.clone());
            ReportEntry {
                date: copenhagen_today(r.recorded_at),
                authority: e.authority.clone(),
                data_area: e.data_area.clone(),
                purpose_id: e.purpose_id,
                purpose,
            }
        })
        .collect()
}

/// One CSV field. A field a spreadsheet would read as a formula (starting
/// with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`
/// so it is shown as text; then the usual quoting.
/// One lookup on a citizen as the citizen sees it (Borgerblikket): when,
/// which authority, which area and purpose, whether anything was shown,
/// and whether they were shown as a party of another person's case. Never
/// who looked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupOnMe {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub date: NaiveDate,
    pub authority: String,
    pub authority_name: String,
    pub data_area: String,
    pub purpose_id: Option<u32>,
    pub purpose_name: String,
    pub shown: bool,
    pub as_party: bool,
}

/// The kinds of records a citizen's access log lists.
pub const LOOKUPS_ON_A_CITIZEN: [Kind; 2] = [Kind::Lookup, Kind::PartyDisclosure];

/// A citizen's view of a record of a lookup on them.
pub fn lookup_on_me(r: &Record, catalogue: &Catalogue) -> LookupOnMe {
    let e = &r.entry;
    let purpose_name = DataArea::parse(&e.data_area)
        .zip(e.purpose_id)
        .and_then(|(a, p)| catalogue.purpose(a, p))
        .map_or_else(String::new, |p| p.name.clone());
    let authority_name = Cvr::parse(&e.authority)
        .ok()
        .and_then(|c| catalogue.authority_name(&c).map(str::to_string))
        .unwrap_or_default();
    LookupOnMe {
        seq: r.seq,
        at: r.recorded_at,
        date: copenhagen_today(r.recorded_at),
        authority: e.authority.clone(),
        authority_name,
        data_area: e.data_area.clone(),
        purpose_id: e.purpose_id,
        purpose_name,
        shown: e.decision == Decision::Allow.as_str() && e.rows_returned > 0,
        as_party: e.kind == Kind::PartyDisclosure.as_str(),
    }
}

fn csv_field(s: &str) -> String {
    let neutral = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if neutral.contains([',', '"', '\n', '\r']) { format!("\"{}\"", neutral.replace('"', "\"\"")) } else { neutral }
}

/// The CSV header line.
pub const CSV_HEADER: &str = "seq,recorded_at,transaction_id,request_id,kind,user_id,user_name,authority,org_unit,\
     it_system,roles_used,data_area,purpose_id,agreement_id,citizen,search_criteria,decision,reason,rows_returned,\
     alarms,prev_hash,hash\n";

/// The records as CSV, one line each, with a header.
pub fn csv(records: &[Record]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str(&csv_lines(records));
    out
}

/// The records as CSV lines, without the header.
pub fn csv_lines(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        let e = &r.entry;
        let fields = [
            r.seq.to_string(),
            r.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            e.transaction_id.clone(),
            e.request_id.clone(),
            e.kind.clone(),
            e.user_id.clone(),
            e.user_name.clone(),
            e.authority.clone(),
            e.org_unit.clone(),
            e.it_system.clone(),
            e.roles_used.join(";"),
            e.data_area.clone(),
            e.purpose_id.map_or_else(String::new, |p| p.to_string()),
            e.agreement_id.clone(),
            e.citizen.clone(),
            e.search_criteria.clone(),
            e.decision.clone(),
            e.reason.clone(),
            e.rows_returned.to_string(),
            e.alarms.join(";"),
            r.prev_hash.clone(),
            r.hash.clone(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{GENESIS, Recorded, chain};
    use crate::identity::KleConstraint;

    fn employee() -> Employee {
        Employee {
            user_id: "mh".into(),
            name: Some("Mette Hansen".into()),
            authority: Cvr::parse("55133018").unwrap(),
            roles: vec![],
            kle: KleConstraint::any(),
            sensitivity: Sensitivity::Sensitive,
            org_unit: None,
            own_cpr: Some(crate::domain::Cpr::parse("0101801234").unwrap()),
            it_system: None,
        }
    }

    fn party(cpr: &str) -> PartyId {
        PartyId::parse(&format!("urn:oio:cpr-nr:{cpr}")).unwrap()
    }

    #[test]
    fn lookup_alarms_name_self_colleague_sensitive_and_vip() {
        let mut s = AlarmSettings::default();
        s.employees.insert(party("0202802345"), Cvr::parse("55133018").unwrap());
        s.employees.insert(party("0303803456"), Cvr::parse("29189420").unwrap());
        let e = employee();
        assert_eq!(lookup_alarms(&e, &party("0101801234"), &[], &[], &s), vec![AlarmKind::SelfLookup]);
        assert_eq!(lookup_alarms(&e, &party("0202802345"), &[], &[], &s), vec![AlarmKind::Colleague]);
        assert!(lookup_alarms(&e, &party("0303803456"), &[], &[], &s).is_empty(), "an employee of another authority");
        let kle = [Kle::parse("32.15.04").unwrap()];
        assert_eq!(
            lookup_alarms(&e, &party("0404804567"), &kle, &[Sensitivity::Vip], &s),
            vec![AlarmKind::SensitiveKle, AlarmKind::Vip]
        );
    }

    #[test]
    fn volume_counts_distinct_citizens_per_user_per_hour() {
        let s = AlarmSettings { volume_per_hour: 3, ..Default::default() };
        let entries: Vec<Recorded> = ["1", "2", "2", "3", "4", "5"]
            .iter()
            .map(|c| Recorded {
                kind: "lookup".into(),
                user_id: "mh".into(),
                citizen: format!("urn:oio:cpr-nr:010180123{c}"),
                decision: "allow".into(),
                ..Default::default()
            })
            .collect();
        let at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2025, 3, 1, 10, 15, 0).unwrap();
        let records = chain((0, GENESIS), at, entries, None);
        let found = alarms(&records, &s);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].kind.as_str(), found[0].seq), ("volume", 5));
    }

    #[test]
    fn the_alarm_scan_forgets_hours_that_are_over() {
        let s = AlarmSettings { volume_per_hour: 2, ..Default::default() };
        let mut scan = AlarmScan::new(&s);
        let lookup = |user: &str, citizen: &str| Recorded {
            kind: "lookup".into(),
            user_id: user.into(),
            citizen: citizen.into(),
            decision: "allow".into(),
            ..Default::default()
        };
        let mut raised = 0;
        for hour in 0..48 {
            let at =
                chrono::TimeZone::with_ymd_and_hms(&Utc, 2025, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::hours(hour);
            let entries = (0..50).map(|i| lookup(&format!("u{}", i % 5), &format!("c{i}"))).collect();
            for r in chain((0, GENESIS), at, entries, None) {
                raised += scan.feed(&r).len();
            }
            assert!(scan.hours.len() <= 2, "hour {hour}: {} hours held", scan.hours.len());
            assert!(scan.hours.values().all(|users| users.len() <= 5));
        }
        assert_eq!(raised, 48 * 5, "each of five users goes over the limit once an hour");
    }

    #[test]
    fn the_citizen_report_has_dates_authority_and_purpose_and_nobody() {
        let entry = |citizen: &str, decision: &str| Recorded {
            kind: "lookup".into(),
            user_id: "mh@aarhus".into(),
            user_name: "Mette Hansen".into(),
            authority: "55133018".into(),
            data_area: "forskudsopgoerelse".into(),
            purpose_id: Some(1),
            citizen: citizen.into(),
            decision: decision.into(),
            ..Default::default()
        };
        // 23:30 UTC on 31 March is 1 April in Copenhagen.
        let at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2025, 3, 31, 23, 30, 0).unwrap();
        let records = chain(
            (0, GENESIS),
            at,
            vec![
                entry("urn:oio:cpr-nr:0101801234", "allow"),
                entry("urn:oio:cpr-nr:0101801234", "deny"),
                entry("urn:oio:cpr-nr:0202802345", "allow"),
            ],
            None,
        );
        let report = citizen_report(&records, "urn:oio:cpr-nr:0101801234", &Catalogue::built_in());
        assert_eq!(report.len(), 1);
        assert_eq!(report[0].date, NaiveDate::from_ymd_opt(2025, 4, 1).unwrap());
        assert_eq!(report[0].authority, "55133018");
        assert_eq!(report[0].purpose, "Sygedagpenge");
        let text = serde_json::to_string(&report).unwrap();
        assert!(!text.contains("mh@aarhus") && !text.contains("Mette"), "{text}");
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let records = chain(
            (0, GENESIS),
            Utc::now(),
            vec![Recorded { search_criteria: "FormaalType: 1, \"x\"".into(), ..Default::default() }],
            None,
        );
        let text = csv(&records);
        assert_eq!(text.lines().count(), 2);
        assert!(text.contains("\"FormaalType: 1, \"\"x\"\"\""), "{text}");
    }

    #[test]
    fn csv_neutralises_what_a_spreadsheet_would_run() {
        for (given, shown) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"\"http://x\"\")"),
            ("+1", "'+1"),
            ("-1+2", "'-1+2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("plain", "plain"),
        ] {
            assert_eq!(csv_field(given).trim_matches('"'), shown, "{given:?}");
        }
        let records =
            chain((0, GENESIS), Utc::now(), vec![Recorded { data_area: "=1+1".into(), ..Default::default() }], None);
        let text = csv(&records);
        assert!(!text.contains(",=1+1,"), "{text}");
        assert!(text.contains(",'=1+1,"), "{text}");
    }
}
