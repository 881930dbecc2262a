//! The audit entry as handlers build it: typed, from a validated request and
//! an access decision. It becomes text only in [`Entry::seal`], the one place
//! that decides how each value is written into the log.
//!
//! Nothing a caller controls reaches the log raw. Free text a caller or a
//! token supplies becomes a [`Text`] (control and direction-override
//! characters removed, at most [`Text::MAX_CHARS`] characters); a value that
//! failed validation is recorded as its hash ([`Text::hashed`]); everything
//! else is an enum, a number, a parsed identifier or a name from the
//! catalogue.

use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Recorded;
use crate::access::DenyReason;
use crate::domain::{Cvr, DataArea, PartyId};

/// Text that may be written into the log: normalised and bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(String);

impl Text {
    /// The longest text a field holds, in characters.
    pub const MAX_CHARS: usize = 256;

    /// `s` with control characters and bidirectional overrides removed and
    /// cut to [`Text::MAX_CHARS`] characters (the last one `…` when cut).
    pub fn new(s: &str) -> Text {
        let mut kept = s.chars().filter(|c| !c.is_control() && !is_bidi_control(*c));
        let mut out: String = kept.by_ref().take(Self::MAX_CHARS).collect();
        if kept.next().is_some() {
            out.pop();
            out.push('…');
        }
        Text(out)
    }

    /// A value that failed validation, recorded without its content: the
    /// first 16 hex digits of its SHA-256, and its length. Whoever holds the
    /// original can match it; nobody can write through it.
    pub fn hashed(raw: &[u8]) -> Text {
        let digest = Sha256::digest(raw);
        Text(format!("sha256:{}…({} bytes)", &hex::encode(digest)[..16], raw.len()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::new(s)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Characters that reorder how text is displayed (and so can make a log line
/// read as something it isn't).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}')
}

/// A transaction id correlates our log with the caller's: the caller's
/// `x-transaktions-id` when it is a sane token, otherwise one made here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionId(String);

impl TransactionId {
    /// Takes the caller's id if it is 1-64 ASCII letters, digits or `-`.
    pub fn from_caller(given: Option<&str>) -> TransactionId {
        match given {
            Some(v) if !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
                TransactionId(v.to_string())
            }
            _ => TransactionId::generate(),
        }
    }

    pub fn generate() -> TransactionId {
        TransactionId(Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A caseworker's (or system's) lookup of one data area on a citizen.
    Lookup,
    /// A person other than the one looked up whose identity a lookup
    /// returned: a party of a case shown. One per person per lookup, so the
    /// person's own report shows it.
    PartyDisclosure,
    /// A citizen reading their own data (Borgerblikket).
    CitizenLookup,
    /// A citizen reading the log of lookups on them (Borgerblikket).
    CitizenAccessLog,
    /// Registering, signing, revoking or listing agreements.
    Agreement,
    /// Requesting, approving, rejecting, revoking or listing IT systems'
    /// service agreements.
    ServiceAgreement,
    /// A data-protection officer's use of the log.
    Audit,
    /// The operator's service.
    Admin,
    /// One peer's anonymous calls refused over the rate limit in one minute.
    AnonymousRefusals,
    /// Reading or changing an authority's Borgerblikket settings, or its
    /// citizens' call statistics.
    BorgerblikketConfig,
    /// A caseworker's subscriptions to change notices, and their watching.
    Advis,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Lookup,
        Kind::PartyDisclosure,
        Kind::CitizenLookup,
        Kind::CitizenAccessLog,
        Kind::Agreement,
        Kind::ServiceAgreement,
        Kind::Audit,
        Kind::Admin,
        Kind::AnonymousRefusals,
        Kind::BorgerblikketConfig,
        Kind::Advis,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Lookup => "lookup",
            Kind::PartyDisclosure => "party_disclosure",
            Kind::CitizenLookup => "citizen_lookup",
            Kind::CitizenAccessLog => "citizen_access_log",
            Kind::Agreement => "agreement",
            Kind::ServiceAgreement => "service_agreement",
            Kind::Audit => "audit",
            Kind::Admin => "admin",
            Kind::AnonymousRefusals => "anonymous_refusals",
            Kind::BorgerblikketConfig => "borgerblikket_config",
            Kind::Advis => "advis",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether records of this kind tell that a citizen's data was looked
    /// at (what the citizen's art. 15 report lists).
    pub fn is_about_a_citizens_data(self) -> bool {
        matches!(self, Kind::Lookup | Kind::PartyDisclosure)
    }
}

/// Allowed or denied, as the log writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Decision> {
        [Decision::Allow, Decision::Deny].into_iter().find(|d| d.as_str() == s)
    }
}

/// Why a call did not get (all of) what it asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The access decision refused it.
    Denied(DenyReason),
    /// The request was malformed.
    BadRequest,
    /// Nothing the caller may see matched (an allowed `GetCase` of a case
    /// that isn't there or isn't visible; an agreement of another authority).
    NotFound,
    /// An agreement with this id already exists at the authority.
    AlreadyExists,
    /// The agreement's status doesn't allow the change.
    InvalidState,
    /// Calls refused over the anonymous rate limit.
    RateLimited,
    /// The subscriber holds the most change-notice subscriptions allowed.
    SubscriptionLimit,
    /// The IT system has the most undecided service-agreement requests
    /// allowed.
    OpenRequestsLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Denied(d) => d.as_str(),
            Reason::BadRequest => "BAD_REQUEST",
            Reason::NotFound => "NOT_FOUND",
            Reason::AlreadyExists => "ALREADY_EXISTS",
            Reason::InvalidState => "INVALID_STATE",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::SubscriptionLimit => "SUBSCRIPTION_LIMIT",
            Reason::OpenRequestsLimit => "OPEN_REQUESTS_LIMIT",
        }
    }
}

impl From<DenyReason> for Reason {
    fn from(d: DenyReason) -> Reason {
        Reason::Denied(d)
    }
}

/// An alarm a lookup raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlarmKind {
    /// The employee looked themselves up.
    SelfLookup,
    /// The employee looked up a colleague at their own authority.
    Colleague,
    /// Rows under a sensitive KLE subject were returned.
    SensitiveKle,
    /// Rows of sensitivity 4 (VIP) were returned.
    Vip,
}

impl AlarmKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmKind::SelfLookup => "self_lookup",
            AlarmKind::Colleague => "colleague",
            AlarmKind::SensitiveKle => "sensitive_kle",
            AlarmKind::Vip => "vip",
        }
    }
}

/// Who made the call, as far as it is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Actor {
    /// No valid token.
    Anonymous,
    /// An employee, from the claims of a verified token.
    Employee { user_id: Text, user_name: Text, authority: Cvr, org_unit: Text, it_system: Text },
    /// A citizen about themselves; who they are is the entry's `citizen`.
    Citizen,
    /// Someone at the command line with access to the store.
    Operator { user: Text },
    /// An IT system under a service agreement with `authority`, from a
    /// verified system token; `on_behalf_of` is the person it said it calls
    /// for (`x-onbehalfofuser`, validated), empty when it named none. Sealed
    /// as user id `system:<uuid>`, the person in `user_name`, the UUID in
    /// `it_system`.
    System { it_system: Uuid, authority: Cvr, on_behalf_of: Text },
}

impl Actor {
    /// The authority whose records these are (what a data-protection
    /// officer of that authority sees).
    pub fn authority(&self) -> Option<&Cvr> {
        match self {
            Actor::Employee { authority, .. } | Actor::System { authority, .. } => Some(authority),
            _ => None,
        }
    }
}

/// What was asked, in the shape of SAPA's "Soegekriterier": the call, then
/// named values — each either validated or a [`Text`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    /// `rpc` for a gRPC call, `command` for the command line.
    via: &'static str,
    call: &'static str,
    items: Vec<(&'static str, Text)>,
}

impl Search {
    /// The most named values a search holds; more are dropped (a bound on
    /// what one request can make the log hold).
    const MAX_ITEMS: usize = 8;

    /// A gRPC call: `rpc: ListCases`.
    pub fn rpc(name: &'static str) -> Search {
        Search { via: "rpc", call: name, items: Vec::new() }
    }

    /// A command of the command line: `command: agreements sign`.
    pub fn command(name: &'static str) -> Search {
        Search { via: "command", call: name, items: Vec::new() }
    }

    pub fn with(mut self, key: &'static str, value: impl Into<Text>) -> Search {
        if self.items.len() < Self::MAX_ITEMS {
            self.items.push((key, value.into()));
        }
        self
    }

    /// The purpose in SAPA's form: `<area>/FormaalType: <id>`.
    pub fn purpose(self, area: DataArea, purpose_ids: &[u32]) -> Search {
        let ids: Vec<String> = purpose_ids.iter().take(4).map(u32::to_string).collect();
        let key = match area {
            DataArea::Sager => "sager/FormaalType",
            DataArea::Kontrolsager => "kontrolsager/FormaalType",
            DataArea::Ydelser => "ydelser/FormaalType",
            DataArea::Beskaeftigelse => "beskaeftigelse/FormaalType",
            DataArea::Indkomst => "indkomst/FormaalType",
            DataArea::Aarsopgoerelse => "aarsopgoerelse/FormaalType",
            DataArea::Forskudsopgoerelse => "forskudsopgoerelse/FormaalType",
            DataArea::Personkontroloplysninger => "personkontroloplysninger/FormaalType",
            DataArea::DigitalLogbog => "digital_logbog/FormaalType",
            DataArea::SelvstaendigVirksomhed => "selvstaendig_virksomhed/FormaalType",
            DataArea::Pensionsrettigheder => "pensionsrettigheder/FormaalType",
            DataArea::UdkSager => "udk_sager/FormaalType",
            DataArea::UdkYdelser => "udk_ydelser/FormaalType",
        };
        self.with(key, ids.join(",").as_str())
    }

    pub fn call(&self) -> &'static str {
        self.call
    }

    fn render(&self) -> Text {
        let mut s = format!("{}: {}", self.via, self.call);
        for (k, v) in &self.items {
            s.push_str("; ");
            s.push_str(k);
            s.push_str(": ");
            s.push_str(v.as_str());
        }
        Text::new(&s)
    }
}

/// How the call ended for this entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed: `rows` rows left; `note` says why there were none where
    /// that matters (`NOT_FOUND`).
    Allowed {
        rows: u32,
        alarms: Vec<AlarmKind>,
        note: Option<Reason>,
    },
    Denied(Reason),
}

/// One decision, as the log will hold it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub transaction_id: TransactionId,
    /// Unique per call; every entry of one call shares it.
    pub request_id: Uuid,
    pub kind: Kind,
    pub actor: Actor,
    /// The caller's roles that opened the area (names from the catalogue
    /// or the token).
    pub roles_used: Vec<Text>,
    pub area: Option<DataArea>,
    pub purpose_id: Option<u32>,
    pub agreement_id: Option<Text>,
    /// The citizen whose data the entry is about.
    pub citizen: Option<PartyId>,
    pub search: Search,
    pub outcome: Outcome,
}

impl Entry {
    /// An entry for a call, denied until the call says otherwise: a path
    /// that forgets to decide records a denial, never an allowance.
    pub fn new(transaction_id: TransactionId, request_id: Uuid, kind: Kind, actor: Actor, search: Search) -> Entry {
        Entry {
            transaction_id,
            request_id,
            kind,
            actor,
            roles_used: Vec::new(),
            area: None,
            purpose_id: None,
            agreement_id: None,
            citizen: None,
            search,
            outcome: Outcome::Denied(Reason::BadRequest),
        }
    }

    pub fn allow(mut self, rows: usize, alarms: Vec<AlarmKind>) -> Entry {
        self.outcome = Outcome::Allowed { rows: rows.min(u32::MAX as usize) as u32, alarms, note: None };
        self
    }

    /// Allowed, but nothing was there to show, and why.
    pub fn allow_nothing(mut self, note: Reason) -> Entry {
        self.outcome = Outcome::Allowed { rows: 0, alarms: Vec::new(), note: Some(note) };
        self
    }

    pub fn deny(mut self, reason: impl Into<Reason>) -> Entry {
        self.outcome = Outcome::Denied(reason.into());
        self
    }

    pub fn decision(&self) -> Decision {
        match self.outcome {
            Outcome::Allowed { .. } => Decision::Allow,
            Outcome::Denied(_) => Decision::Deny,
        }
    }

    pub fn rows(&self) -> u32 {
        match self.outcome {
            Outcome::Allowed { rows, .. } => rows,
            Outcome::Denied(_) => 0,
        }
    }

    /// The entry as text, the form the log stores and the hash covers.
    pub fn seal(&self) -> Recorded {
        let (user_id, user_name, authority, org_unit, it_system) = match &self.actor {
            Actor::Anonymous => (String::new(), String::new(), String::new(), String::new(), String::new()),
            Actor::Employee { user_id, user_name, authority, org_unit, it_system } => (
                user_id.to_string(),
                user_name.to_string(),
                authority.to_string(),
                org_unit.to_string(),
                it_system.to_string(),
            ),
            Actor::Citizen => ("citizen".into(), String::new(), String::new(), String::new(), String::new()),
            Actor::Operator { user } => {
                (format!("cli:{user}"), String::new(), String::new(), String::new(), "overblik-cli".into())
            }
            Actor::System { it_system, authority, on_behalf_of } => (
                format!("{}{it_system}", crate::identity::SYSTEM_SUBJECT_PREFIX),
                on_behalf_of.to_string(),
                authority.to_string(),
                String::new(),
                it_system.to_string(),
            ),
        };
        let (rows, alarms, reason) = match &self.outcome {
            Outcome::Allowed { rows, alarms, note } => {
                (*rows, alarms.iter().map(|a| a.as_str().to_string()).collect(), note.map(Reason::as_str))
            }
            Outcome::Denied(r) => (0, Vec::new(), Some(r.as_str())),
        };
        Recorded {
            transaction_id: self.transaction_id.as_str().to_string(),
            request_id: self.request_id.to_string(),
            kind: self.kind.as_str().to_string(),
            user_id,
            user_name,
            authority,
            org_unit,
            it_system,
            roles_used: self.roles_used.iter().map(Text::to_string).collect(),
            data_area: self.area.map(|a| a.as_str().to_string()).unwrap_or_default(),
            purpose_id: self.purpose_id,
            agreement_id: self.agreement_id.as_ref().map(Text::to_string).unwrap_or_default(),
            citizen: self.citizen.as_ref().map(PartyId::urn).unwrap_or_default(),
            search_criteria: self.search.render().to_string(),
            decision: self.decision().as_str().to_string(),
            reason: reason.unwrap_or_default().to_string(),
            rows_returned: rows.min(i32::MAX as u32) as i32,
            alarms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_drops_control_and_bidi_characters_and_is_bounded() {
        assert_eq!(Text::new("a\u{0}b\r\nc\td\u{202E}e").as_str(), "abcde");
        let long = "x".repeat(4 * 1024 * 1024);
        let t = Text::new(&long);
        assert_eq!(t.as_str().chars().count(), Text::MAX_CHARS);
        assert!(t.as_str().ends_with('…'));
        let exact = "y".repeat(Text::MAX_CHARS);
        assert_eq!(Text::new(&exact).as_str(), exact, "text at the limit is kept whole");
        let multi = "æ".repeat(1000);
        assert_eq!(Text::new(&multi).as_str().chars().count(), Text::MAX_CHARS);
    }

    #[test]
    fn a_hashed_value_keeps_nothing_of_its_content() {
        let t = Text::hashed(b"\x00=HYPERLINK(\"x\")");
        assert!(t.as_str().starts_with("sha256:"), "{t}");
        assert!(!t.as_str().contains("HYPERLINK"));
        assert_eq!(t, Text::hashed(b"\x00=HYPERLINK(\"x\")"), "the same value hashes the same");
    }

    #[test]
    fn a_caller_transaction_id_is_kept_only_when_sane() {
        assert_eq!(TransactionId::from_caller(Some("abc-123")).as_str(), "abc-123");
        for bad in ["", "a b", "x\u{0}", &"a".repeat(65), "=cmd"] {
            let t = TransactionId::from_caller(Some(bad));
            assert_ne!(t.as_str(), bad);
            assert!(Uuid::parse_str(t.as_str()).is_ok());
        }
    }

    #[test]
    fn sealing_writes_decision_and_reason_from_one_outcome() {
        let e = Entry::new(TransactionId::generate(), Uuid::new_v4(), Kind::Lookup, Actor::Anonymous, Search::rpc("X"));
        let denied = e.clone().seal();
        assert_eq!((denied.decision.as_str(), denied.reason.as_str()), ("deny", "BAD_REQUEST"), "denied by default");
        let allowed = e.clone().allow(3, vec![AlarmKind::Vip]).seal();
        assert_eq!((allowed.decision.as_str(), allowed.reason.as_str(), allowed.rows_returned), ("allow", "", 3));
        assert_eq!(allowed.alarms, vec!["vip"]);
        let none = e.allow_nothing(Reason::NotFound).seal();
        assert_eq!((none.decision.as_str(), none.reason.as_str(), none.rows_returned), ("allow", "NOT_FOUND", 0));
    }

    #[test]
    fn search_criteria_are_bounded_whatever_is_asked() {
        let mut s = Search::rpc("QueryAudit");
        for _ in 0..100 {
            s = s.with("user_id", "u".repeat(10_000).as_str());
        }
        let rendered = s.render();
        assert!(rendered.as_str().chars().count() <= Text::MAX_CHARS);
    }
}
