//! The `data` of each event type (current versions), with the rules that go
//! beyond a single field.
//!
//! Field names are English snake_case; the values follow the national index
//! conventions (KLE codes, CPR/BorgerID/CVR URNs, decimal-string amounts,
//! `YYYY-MM-DD` dates, the status names Opstaaet/Oplyst/Afgjort/Afsluttet).
//! Unknown fields are refused: a misspelt field silently ignored would put a
//! wrong fact in a legal index.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    ActionFacet, ClockTime, Cvr, Invalid, InvalidCode, Kle, Oere, OpenPeriod, PartyId, Period, Sensitivity, date_format,
};

/// Rules on a whole body, checked after it parsed.
pub trait Validate {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

/// What a text field may hold besides printable text.
///
/// No field may hold a control character (Unicode category Cc: U+0000 to
/// U+001F and U+007F to U+009F): PostgreSQL can't store U+0000 in text at
/// all, SQLite's text functions stop at it, and the rest have no place in
/// an index entry and make listings lie (a carriage return rewrites a
/// terminal line). Free prose — reasons and notes — may hold tab, line feed
/// and carriage return. Lone UTF-16 surrogates never reach a field: the
/// JSON parse refuses them (`INVALID_FIELD` at the field's path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// One line: names, numbers, codes.
    Line,
    /// Free prose: may also hold tab, line feed and carriage return.
    Prose,
}

/// Whether `c` is refused in a text field of `kind`.
pub fn refused_char(c: char, kind: TextKind) -> bool {
    c.is_control() && !(kind == TextKind::Prose && matches!(c, '\t' | '\n' | '\r'))
}

/// Where the first character refused in a text of `kind` is, counted in
/// characters. Most text is ASCII, which is scanned byte by byte: there a
/// byte's position is its character's.
pub fn first_refused(value: &str, kind: TextKind) -> Option<usize> {
    if value.is_ascii() {
        value.bytes().position(|b| refused_char(char::from(b), kind))
    } else {
        value.chars().position(|c| refused_char(c, kind))
    }
}

/// The number of characters in `value`; its length when it is ASCII.
pub fn char_count(value: &str) -> usize {
    if value.is_ascii() { value.len() } else { value.chars().count() }
}

/// The longest `source` attribute, in characters.
pub const SOURCE_MAX_CHARS: usize = 255;

/// Where a text field lies inside `data`: a field of the body, or a field of
/// one item of a list. It is written out only when the field breaks a rule,
/// so checking a valid body builds no strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldPath {
    Field(&'static str),
    Item { list: &'static str, index: usize, field: &'static str },
}

impl From<&'static str> for FieldPath {
    fn from(field: &'static str) -> FieldPath {
        FieldPath::Field(field)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldPath::Field(field) => f.write_str(field),
            FieldPath::Item { list, index, field } => write!(f, "{list}[{index}].{field}"),
        }
    }
}

/// The one rule every text field of every body keeps: not blank, at most
/// `max` characters, no refused character. `path` is the field's JSON path
/// inside `data`; the detail never repeats the value.
fn text(path: impl Into<FieldPath>, value: &str, max: usize, kind: TextKind) -> Result<(), Invalid> {
    let path = path.into();
    if value.trim().is_empty() {
        return Err(Invalid::at(path.to_string(), InvalidCode::Field, "is empty"));
    }
    if let Some(at) = first_refused(value, kind) {
        let allowed = match kind {
            TextKind::Line => "no control characters",
            TextKind::Prose => "no control characters but tab, line feed and carriage return",
        };
        return Err(Invalid::at(
            path.to_string(),
            InvalidCode::Field,
            format!("has a control character at character {} ({allowed})", at + 1),
        ));
    }
    if char_count(value) > max {
        return Err(Invalid::at(path.to_string(), InvalidCode::Field, format!("is longer than {max} characters")));
    }
    Ok(())
}

fn line(path: impl Into<FieldPath>, value: &str, max: usize) -> Result<(), Invalid> {
    text(path, value, max, TextKind::Line)
}

fn opt_line(path: &'static str, value: &Option<String>, max: usize) -> Result<(), Invalid> {
    value.as_deref().map_or(Ok(()), |v| line(path, v, max))
}

fn opt_prose(path: &'static str, value: &Option<String>, max: usize) -> Result<(), Invalid> {
    value.as_deref().map_or(Ok(()), |v| text(path, v, max, TextKind::Prose))
}

/// The path of `field` in item `index` of `list`.
fn item(list: &'static str, index: usize, field: &'static str) -> FieldPath {
    FieldPath::Item { list, index, field }
}

/// An income year: a plausible calendar year.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct IncomeYear(pub i32);

impl<'de> Deserialize<'de> for IncomeYear {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let y = i64::deserialize(d)?;
        if (1900..=2100).contains(&y) {
            Ok(IncomeYear(y as i32))
        } else {
            Err(serde::de::Error::custom(Invalid::new(
                InvalidCode::Year,
                "an income year is a year between 1900 and 2100",
            )))
        }
    }
}

// ---------------------------------------------------------------- cases

/// Progress status of a case (FremdriftStatusKode), in the order a case
/// moves through them (the derived `Ord`: Opstaaet < Oplyst < Afgjort <
/// Afsluttet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CaseStatus {
    Opstaaet,
    Oplyst,
    Afgjort,
    Afsluttet,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Opstaaet => "Opstaaet",
            CaseStatus::Oplyst => "Oplyst",
            CaseStatus::Afgjort => "Afgjort",
            CaseStatus::Afsluttet => "Afsluttet",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusEntry {
    pub status: CaseStatus,
    #[serde(with = "date_format")]
    pub from: NaiveDate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartyRole {
    Primary,
    Secondary,
    BenefitRecipient,
}

impl PartyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PartyRole::Primary => "primary",
            PartyRole::Secondary => "secondary",
            PartyRole::BenefitRecipient => "benefit_recipient",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    pub role: PartyRole,
    pub id: PartyId,
}

fn check_parties(parties: &[Party]) -> Result<(), Invalid> {
    let primaries = parties.iter().filter(|p| p.role == PartyRole::Primary).count();
    if primaries != 1 {
        return Err(Invalid::new(InvalidCode::Field, "a case has exactly one primary party"));
    }
    if parties.iter().filter(|p| p.role == PartyRole::BenefitRecipient).count() > 1 {
        return Err(Invalid::new(InvalidCode::Field, "a case has at most one benefit recipient"));
    }
    if parties.len() > 100 {
        return Err(Invalid::new(InvalidCode::Field, "a case has at most 100 parties"));
    }
    Ok(())
}

/// The fields of a case, sent whole on import and on update. Only an import
/// carries the status history; afterwards status moves with
/// `case.status_changed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFields {
    pub case_number: String,
    pub title: String,
    pub kle: Kle,
    pub action_facet: ActionFacet,
    pub sensitivity: Sensitivity,
    pub parties: Vec<Party>,
    pub org_unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caseworker: Option<String>,
    pub source_system: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_history: Option<Vec<StatusEntry>>,
}

impl CaseFields {
    fn validate_descriptive(&self) -> Result<(), Invalid> {
        line("case_number", &self.case_number, 50)?;
        line("title", &self.title, 255)?;
        line("org_unit", &self.org_unit, 255)?;
        opt_line("caseworker", &self.caseworker, 255)?;
        line("source_system", &self.source_system, 100)?;
        check_parties(&self.parties)
    }
}

/// `case.imported`: the full case with its whole status history, as the
/// index requires on connect ("a case must not lack Opstaaet").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaseImported(pub CaseFields);

impl Validate for CaseImported {
    fn validate(&self) -> Result<(), Invalid> {
        self.0.validate_descriptive()?;
        let history = self.0.status_history.as_deref().unwrap_or_default();
        match history.first() {
            Some(first) if first.status == CaseStatus::Opstaaet => {}
            _ => {
                return Err(Invalid::new(InvalidCode::Field, "status_history must begin with Opstaaet"));
            }
        }
        if history.windows(2).any(|w| w[0].from > w[1].from) {
            return Err(Invalid::new(InvalidCode::Period, "status_history dates must not go backwards"));
        }
        if history.len() > 1000 {
            return Err(Invalid::new(InvalidCode::Field, "status_history has at most 1000 entries"));
        }
        Ok(())
    }
}

/// `case.updated`: replaces the descriptive fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaseUpdated(pub CaseFields);

impl Validate for CaseUpdated {
    fn validate(&self) -> Result<(), Invalid> {
        if self.0.status_history.is_some() {
            return Err(Invalid::new(
                InvalidCode::Field,
                "case.updated carries no status_history; send case.status_changed",
            ));
        }
        self.0.validate_descriptive()
    }
}

/// `case.status_changed` and `case.reopened`: the status a case moves to,
/// from a date. The rules (in `projection::apply`): a status change moves
/// forward (to a later status, steps may be skipped); a reopening moves a
/// decided or closed case back (to an earlier status); either is dated on
/// or after the current status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseStatusChanged {
    pub status: CaseStatus,
    #[serde(with = "date_format")]
    pub from: NaiveDate,
}

impl Validate for CaseStatusChanged {}

/// Any `*.deleted` event: the source deleted the aggregate, so the index
/// must delete it physically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Deleted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Validate for Deleted {
    fn validate(&self) -> Result<(), Invalid> {
        opt_prose("reason", &self.reason, 255)
    }
}

// ------------------------------------------------ documents and journal notes

/// Which way a document went (the index's Journalpost): received by the
/// authority, sent by it, or made inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentDirection {
    Incoming,
    Outgoing,
    Internal,
}

impl DocumentDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentDirection::Incoming => "incoming",
            DocumentDirection::Outgoing => "outgoing",
            DocumentDirection::Internal => "internal",
        }
    }
}

/// A document proper, or a journal note (journalnotat) written on the case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Document,
    JournalNote,
}

impl DocumentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::Document => "document",
            DocumentKind::JournalNote => "journal_note",
        }
    }
}

/// `document.registered` and `document.updated`: a document or journal
/// note of the case that is the event's aggregate (`aggregateid` is the
/// case id), whole. Metadata only, as the national index keeps it: there is
/// no field for a document's content or a journal note's text, and strict
/// parsing refuses one sent anyway (`UNKNOWN_FIELD`), so no text reaches the
/// index. `kle` and `sensitivity`, when sent, may only narrow the case's
/// (checked against the case in `projection::apply`); when absent the
/// document counts at its case's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentFields {
    pub document_id: Uuid,
    pub title: String,
    #[serde(with = "date_format")]
    pub date: NaiveDate,
    pub direction: DocumentDirection,
    pub kind: DocumentKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kle: Option<Kle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<Sensitivity>,
}

impl Validate for DocumentFields {
    fn validate(&self) -> Result<(), Invalid> {
        line("title", &self.title, 255)
    }
}

/// `document.deleted`: the source deleted one document of the case; the
/// case stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentDeleted {
    pub document_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Validate for DocumentDeleted {
    fn validate(&self) -> Result<(), Invalid> {
        opt_prose("reason", &self.reason, 255)
    }
}

// --------------------------------------------------------- control cases

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlCaseOpened {
    pub case_number: String,
    /// The control theme (kontroltema), e.g. "Samlivsforhold".
    pub theme: String,
    pub kle: Kle,
    pub sensitivity: Sensitivity,
    #[serde(with = "date_format")]
    pub opened_on: NaiveDate,
    pub org_unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caseworker: Option<String>,
    pub source_system: String,
}

impl Validate for ControlCaseOpened {
    fn validate(&self) -> Result<(), Invalid> {
        line("case_number", &self.case_number, 50)?;
        line("theme", &self.theme, 255)?;
        line("org_unit", &self.org_unit, 255)?;
        opt_line("caseworker", &self.caseworker, 255)?;
        line("source_system", &self.source_system, 100)
    }
}

/// A case step (sagsskridt) in a control case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlCaseStepRecorded {
    pub step: String,
    #[serde(with = "date_format")]
    pub on: NaiveDate,
}

impl Validate for ControlCaseStepRecorded {
    fn validate(&self) -> Result<(), Invalid> {
        line("step", &self.step, 255)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlOutcome {
    /// Closed without action (henlagt) — §11a shows these for 6 months.
    WithoutAction,
    Sanction,
    Repayment,
    ReportedToPolice,
}

impl ControlOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ControlOutcome::WithoutAction => "without_action",
            ControlOutcome::Sanction => "sanction",
            ControlOutcome::Repayment => "repayment",
            ControlOutcome::ReportedToPolice => "reported_to_police",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlCaseClosed {
    #[serde(with = "date_format")]
    pub on: NaiveDate,
    pub outcome: ControlOutcome,
}

impl Validate for ControlCaseClosed {}

// ---------------------------------------------------------------- grants

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Once,
    Weekly,
    Fortnightly,
    Monthly,
    Quarterly,
    Yearly,
}

impl Frequency {
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Once => "once",
            Frequency::Weekly => "weekly",
            Frequency::Fortnightly => "fortnightly",
            Frequency::Monthly => "monthly",
            Frequency::Quarterly => "quarterly",
            Frequency::Yearly => "yearly",
        }
    }
}

/// The payment plan (effektueringsplan) of a granted benefit: what is to be
/// paid, as opposed to payments, which record what was paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentPlan {
    pub frequency: Frequency,
    pub amount: Oere,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantedBenefit {
    /// The source's id of the granted benefit; payment lines refer to it.
    pub id: String,
    pub name: String,
    /// The benefit type (ydelsestype), e.g. "Kontanthjælp".
    pub benefit_type: String,
    pub kle: Kle,
    pub period: OpenPeriod,
    pub plan: PaymentPlan,
}

/// `grant.awarded` and `grant.changed`: the whole grant (bevilling).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantFields {
    pub grant_number: String,
    /// The case the grant was decided in; every grant in the benefit index
    /// relates to a case in the case index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<Uuid>,
    pub period: OpenPeriod,
    pub sensitivity: Sensitivity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub benefits: Vec<GrantedBenefit>,
}

impl Validate for GrantFields {
    fn validate(&self) -> Result<(), Invalid> {
        line("grant_number", &self.grant_number, 50)?;
        opt_prose("reason", &self.reason, 1024)?;
        if self.benefits.is_empty() || self.benefits.len() > 100 {
            return Err(Invalid::new(InvalidCode::Field, "a grant has 1-100 granted benefits"));
        }
        for (i, b) in self.benefits.iter().enumerate() {
            line(item("benefits", i, "id"), &b.id, 64)?;
            line(item("benefits", i, "name"), &b.name, 255)?;
            line(item("benefits", i, "benefit_type"), &b.benefit_type, 255)?;
            // At most 100 benefits: scanning the earlier ones is cheaper than
            // building a set for every grant.
            if self.benefits[..i].iter().any(|earlier| earlier.id == b.id) {
                return Err(Invalid::new(InvalidCode::Field, "granted benefit ids are unique within a grant"));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantEnded {
    #[serde(with = "date_format")]
    pub end: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Validate for GrantEnded {
    fn validate(&self) -> Result<(), Invalid> {
        opt_prose("reason", &self.reason, 1024)
    }
}

// -------------------------------------------------------------- payments

/// One line of a payment (økonomisk ydelseseffektuering): the period paid
/// for, the gross amount and the KLE that bounds who may see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentLine {
    pub period: Period,
    pub gross: Oere,
    pub kle: Kle,
    pub granted_benefit_id: String,
}

/// `payment.effectuated` and `payment.corrected`: the whole payment, like a
/// pay slip whose lines are the benefits paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentFields {
    pub payment_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<Uuid>,
    pub period: Period,
    /// When the money is at the citizen's disposal (dispositionsdato).
    #[serde(with = "date_format")]
    pub disposal_date: NaiveDate,
    pub gross: Oere,
    pub after_tax: Oere,
    /// Sent for payment, after the paying authority's offsetting.
    pub sent: Oere,
    /// Paid out, once the bank confirms; lower if a debt was offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid: Option<Oere>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_note: Option<String>,
    pub lines: Vec<PaymentLine>,
}

impl Validate for PaymentFields {
    fn validate(&self) -> Result<(), Invalid> {
        line("payment_number", &self.payment_number, 50)?;
        opt_prose("paid_note", &self.paid_note, 255)?;
        if self.lines.is_empty() || self.lines.len() > 1000 {
            return Err(Invalid::new(InvalidCode::Field, "a payment has 1-1000 lines"));
        }
        let mut sum: i64 = 0;
        for (i, l) in self.lines.iter().enumerate() {
            line(item("lines", i, "granted_benefit_id"), &l.granted_benefit_id, 64)?;
            sum = sum
                .checked_add(l.gross.0)
                .ok_or_else(|| Invalid::new(InvalidCode::Money, "the lines' sum overflows"))?;
        }
        if sum != self.gross.0 {
            return Err(Invalid::new(InvalidCode::Money, "gross is not the sum of the lines' gross"));
        }
        Ok(())
    }
}

// ------------------------------------------------------------ employment

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmploymentRegistered {
    #[serde(with = "date_format")]
    pub registered_on: NaiveDate,
    pub jobcenter: String,
    /// Person category (personkategori), e.g. "Kontanthjælpsmodtager".
    pub category: String,
}

impl Validate for EmploymentRegistered {
    fn validate(&self) -> Result<(), Invalid> {
        line("jobcenter", &self.jobcenter, 255)?;
        line("category", &self.category, 255)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmploymentDeregistered {
    #[serde(with = "date_format")]
    pub deregistered_on: NaiveDate,
    pub reason: String,
}

impl Validate for EmploymentDeregistered {
    fn validate(&self) -> Result<(), Invalid> {
        text("reason", &self.reason, 255, TextKind::Prose)
    }
}

/// Target group (målgruppe) assigned to a registered citizen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroupAssigned {
    pub target_group: String,
    #[serde(with = "date_format")]
    pub from: NaiveDate,
}

impl Validate for TargetGroupAssigned {
    fn validate(&self) -> Result<(), Invalid> {
        line("target_group", &self.target_group, 255)
    }
}

/// An activity (indsats) started, e.g. "Virksomhedspraktik".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityStarted {
    pub activity_id: String,
    pub kind: String,
    #[serde(with = "date_format")]
    pub start: NaiveDate,
}

impl Validate for ActivityStarted {
    fn validate(&self) -> Result<(), Invalid> {
        line("activity_id", &self.activity_id, 64)?;
        line("kind", &self.kind, 255)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityEnded {
    pub activity_id: String,
    #[serde(with = "date_format")]
    pub end: NaiveDate,
}

impl Validate for ActivityEnded {
    fn validate(&self) -> Result<(), Invalid> {
        line("activity_id", &self.activity_id, 64)
    }
}

// ------------------------------------------------------------ tax income

/// `income.reported`: one monthly eIndkomst report from one employer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomeReported {
    pub period: Period,
    pub employer_cvr: Cvr,
    pub a_income: Oere,
    pub a_tax: Oere,
    /// Labour-market contribution (AM-bidrag).
    pub am_contribution: Oere,
}

impl Validate for IncomeReported {}

/// `annual_assessment.issued` (årsopgørelse).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnualAssessmentIssued {
    pub income_year: IncomeYear,
    pub personal_income: Oere,
    pub capital_income: Oere,
    pub taxable_income: Oere,
    pub total_tax: Oere,
    pub residual_tax: Oere,
}

impl Validate for AnnualAssessmentIssued {}

/// `preliminary_assessment.issued` (forskudsopgørelse). A newer one for the
/// same income year supersedes the older.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreliminaryAssessmentIssued {
    pub income_year: IncomeYear,
    #[serde(with = "date_format")]
    pub issued_on: NaiveDate,
    pub expected_personal_income: Oere,
    pub expected_tax: Oere,
    pub monthly_deduction: Oere,
}

impl Validate for PreliminaryAssessmentIssued {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlItem {
    pub code: String,
    pub label: String,
    pub amount: Oere,
}

/// `person_control.recorded` (personkontroloplysninger) for one income year
/// and one group of items (redigeringsgruppe).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonControlRecorded {
    pub income_year: IncomeYear,
    pub group: String,
    pub items: Vec<ControlItem>,
}

impl Validate for PersonControlRecorded {
    fn validate(&self) -> Result<(), Invalid> {
        line("group", &self.group, 255)?;
        if self.items.is_empty() || self.items.len() > 500 {
            return Err(Invalid::new(InvalidCode::Field, "person control data has 1-500 items"));
        }
        for (n, i) in self.items.iter().enumerate() {
            line(item("items", n, "code"), &i.code, 64)?;
            line(item("items", n, "label"), &i.label, 255)?;
        }
        Ok(())
    }
}

/// `digital_logbook.recorded`: a working-time registration in an employer's
/// digital logbook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigitalLogbookRecorded {
    pub employer_cvr: Cvr,
    #[serde(with = "date_format")]
    pub work_date: NaiveDate,
    pub start: ClockTime,
    pub end: ClockTime,
}

impl Validate for DigitalLogbookRecorded {
    fn validate(&self) -> Result<(), Invalid> {
        if self.start >= self.end {
            return Err(Invalid::new(InvalidCode::Period, "a logbook entry's start is not before its end"));
        }
        Ok(())
    }
}

// ----------------------------------------------- SKAT areas of SAPA 3.18

/// How a self-employed person's business income is taxed: the ordinary
/// rules of the personal tax act, the business scheme
/// (virksomhedsordningen) or the capital return scheme
/// (kapitalafkastordningen).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaxScheme {
    Personskatteloven,
    Virksomhedsordningen,
    Kapitalafkastordningen,
}

/// `self_employment.reported` (selvstændig virksomhed): what one business
/// of a self-employed citizen reported for one income year. The aggregate
/// is (citizen, business, income year): a later report for it replaces the
/// earlier one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfEmploymentReported {
    pub income_year: IncomeYear,
    pub business_cvr: Cvr,
    pub business_name: String,
    /// The industry code (branchekode, DB07: six digits).
    pub industry_code: String,
    pub tax_scheme: TaxScheme,
    #[serde(with = "date_format")]
    pub reported_on: NaiveDate,
    /// Turnover (omsætning).
    pub turnover: Oere,
    /// The business's result (resultat af virksomhed); negative for a loss.
    pub business_result: Oere,
    /// Equity at the end of the income year (egenkapital ultimo).
    pub equity: Oere,
    /// Interest expenses of the business (renteudgifter).
    pub interest_expenses: Oere,
}

impl Validate for SelfEmploymentReported {
    fn validate(&self) -> Result<(), Invalid> {
        line("business_name", &self.business_name, 255)?;
        if self.industry_code.len() != 6 || !self.industry_code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::at("industry_code", InvalidCode::Field, "an industry code has six digits"));
        }
        if self.turnover.0 < 0 {
            return Err(Invalid::at("turnover", InvalidCode::Field, "turnover is not negative"));
        }
        reported_in_or_after(self.income_year, self.reported_on, "reported_on")
    }
}

/// A kind of pension scheme, as the pension reports name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PensionType {
    /// Livsvarig livrente: paid for life.
    Livrente,
    /// Ophørende livrente: paid for a fixed number of years.
    OphoerendeLivrente,
    Ratepension,
    Aldersopsparing,
    /// Kapitalpension: closed to new contributions since 2013.
    Kapitalpension,
}

/// `pension_rights.reported` (pensionsrettigheder): one pension scheme of
/// the citizen at one provider, for one income year: the year's
/// contributions and the holdings as of a date. The aggregate is (citizen,
/// scheme, income year): a later report for it replaces the earlier one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PensionRightsReported {
    pub income_year: IncomeYear,
    pub provider_cvr: Cvr,
    /// The provider's number of the scheme (policenummer).
    pub scheme_id: String,
    pub pension_type: PensionType,
    /// The employer paying into it, for a scheme through work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employer_cvr: Option<Cvr>,
    /// Contributions in the income year, the employer's share included.
    pub contributions: Oere,
    /// The value of the scheme (depotværdi) as of `as_of`.
    pub holdings: Oere,
    #[serde(with = "date_format")]
    pub as_of: NaiveDate,
}

impl Validate for PensionRightsReported {
    fn validate(&self) -> Result<(), Invalid> {
        line("scheme_id", &self.scheme_id, 64)?;
        if self.contributions.0 < 0 || self.holdings.0 < 0 {
            return Err(Invalid::at("holdings", InvalidCode::Field, "contributions and holdings are not negative"));
        }
        reported_in_or_after(self.income_year, self.as_of, "as_of")
    }
}

/// A report on an income year is dated in that year or the next two (late
/// reports and corrections come after the year ends).
fn reported_in_or_after(year: IncomeYear, on: NaiveDate, path: &str) -> Result<(), Invalid> {
    let y = chrono::Datelike::year(&on);
    if y < year.0 || y > year.0 + 2 {
        return Err(Invalid::at(path, InvalidCode::Field, "is not in the income year or the two after it"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_scans_agree_with_the_character_rules() {
        for b in 0u8..=0x7f {
            let text = format!("ab{}d", char::from(b));
            for kind in [TextKind::Line, TextKind::Prose] {
                assert_eq!(first_refused(&text, kind), text.chars().position(|c| refused_char(c, kind)), "{b:#x}");
            }
            assert_eq!(char_count(&text), text.chars().count());
        }
        assert_eq!(first_refused("æø\u{7}", TextKind::Line), Some(2));
        assert_eq!(char_count("æøå"), 3);
    }

    #[test]
    fn payment_gross_must_equal_its_lines() {
        let p: PaymentFields = serde_json::from_str(
            r#"{"payment_number":"P1","period":{"start":"2024-01-01","end":"2024-01-31"},
                "disposal_date":"2024-01-31","gross":"100.00","after_tax":"60.00","sent":"60.00",
                "lines":[{"period":{"start":"2024-01-01","end":"2024-01-31"},"gross":"40.00","kle":"32.18.04","granted_benefit_id":"B1"},
                         {"period":{"start":"2024-01-01","end":"2024-01-31"},"gross":"60.01","kle":"32.18.04","granted_benefit_id":"B1"}]}"#,
        )
        .unwrap();
        assert_eq!(p.validate().unwrap_err().code, InvalidCode::Money);
    }

    #[test]
    fn import_must_start_with_opstaaet() {
        let fields = CaseFields {
            case_number: "2024-1".into(),
            title: "Kontanthjælp".into(),
            kle: Kle::parse("32.18.04").unwrap(),
            action_facet: ActionFacet::parse("G01").unwrap(),
            sensitivity: Sensitivity::Confidential,
            parties: vec![Party { role: PartyRole::Primary, id: PartyId::parse("urn:oio:cpr-nr:0101801234").unwrap() }],
            org_unit: "Ydelse".into(),
            caseworker: None,
            source_system: "KY".into(),
            status_history: None,
        };
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert!(CaseUpdated(fields.clone()).validate().is_ok());
        let mut c = CaseImported(fields);
        assert!(c.validate().is_err(), "an import needs a history");
        c.0.status_history = Some(vec![StatusEntry { status: CaseStatus::Oplyst, from: d("2024-01-01") }]);
        assert!(c.validate().is_err());
        let history = c.0.status_history.as_mut().unwrap();
        history.insert(0, StatusEntry { status: CaseStatus::Opstaaet, from: d("2024-01-02") });
        assert_eq!(c.validate().unwrap_err().code, InvalidCode::Period);
        c.0.status_history.as_mut().unwrap()[0].from = d("2023-12-31");
        assert!(c.validate().is_ok());
        assert!(CaseUpdated(c.0.clone()).validate().is_err(), "an update carries no history");
        c.0.parties.clear();
        assert!(c.validate().is_err());
    }

    #[test]
    fn sapa_318_reports_are_checked() {
        let firm: SelfEmploymentReported = serde_json::from_value(serde_json::json!({
            "income_year": 2024, "business_cvr": "31122345", "business_name": "Tømrer Hansen",
            "industry_code": "433200", "tax_scheme": "kapitalafkastordningen", "reported_on": "2025-06-30",
            "turnover": "1250000.00", "business_result": "-3120.05", "equity": "-1.00", "interest_expenses": "0.00"
        }))
        .unwrap();
        assert!(firm.validate().is_ok(), "a loss and negative equity are real");
        let bad = |f: fn(&mut SelfEmploymentReported)| {
            let mut x = firm.clone();
            f(&mut x);
            x.validate().unwrap_err().path
        };
        assert_eq!(bad(|x| x.industry_code = "43320".into()), "industry_code");
        assert_eq!(bad(|x| x.turnover = Oere(-1)), "turnover");
        assert_eq!(bad(|x| x.reported_on = NaiveDate::from_ymd_opt(2023, 12, 31).unwrap()), "reported_on");
        assert_eq!(bad(|x| x.reported_on = NaiveDate::from_ymd_opt(2027, 1, 1).unwrap()), "reported_on");
        assert_eq!(bad(|x| x.business_name = "a\u{0}b".into()), "business_name");

        let scheme: PensionRightsReported = serde_json::from_value(serde_json::json!({
            "income_year": 2024, "provider_cvr": "16614130", "scheme_id": "P-1", "pension_type": "ophoerende_livrente",
            "contributions": "54000.00", "holdings": "812345.67", "as_of": "2024-12-31"
        }))
        .unwrap();
        assert!(scheme.validate().is_ok(), "a private scheme has no employer");
        let mut x = scheme.clone();
        x.holdings = Oere(-1);
        assert!(x.validate().is_err());
        let unknown = serde_json::from_value::<PensionRightsReported>(serde_json::json!({
            "income_year": 2024, "provider_cvr": "16614130", "scheme_id": "P-1", "pension_type": "lottery",
            "contributions": "0.00", "holdings": "0.00", "as_of": "2024-12-31"
        }));
        assert!(unknown.is_err(), "pension types are a closed set");
    }
}
