//! Stories: the events one source system sends about one citizen over time.
//!
//! Each story is a short, plausible life of a case, a benefit, a job-centre
//! registration, tax data or a control case, in chronological order with
//! consecutive aggregate versions. The demo stream interleaves many stories.
//! The names, CVR numbers, KLE codes and amounts are realistic in form and
//! size; they are demo data, not reference data.

use std::collections::HashMap;

use chrono::{Datelike, Days, Months, NaiveDate, TimeZone, Utc};
use uuid::Uuid;

use super::rng::Rng;
use crate::domain::{ActionFacet, ClockTime, Cvr, Kle, Oere, OpenPeriod, PartyId, Period, Sensitivity};
use crate::events::body::*;
use crate::events::{Body, Event};

/// A municipality (or UDK, or the tax agency) as an authority.
#[derive(Clone, Copy, Debug)]
pub struct Authority {
    pub name: &'static str,
    pub cvr: &'static str,
}

pub const MUNICIPALITIES: &[Authority] = &[
    Authority { name: "København", cvr: "64942212" },
    Authority { name: "Aarhus", cvr: "55133018" },
    Authority { name: "Odense", cvr: "35209115" },
    Authority { name: "Aalborg", cvr: "29189420" },
    Authority { name: "Esbjerg", cvr: "29189803" },
    Authority { name: "Vejle", cvr: "29189889" },
    Authority { name: "Frederiksberg", cvr: "11259979" },
    Authority { name: "Randers", cvr: "29189668" },
    Authority { name: "Favrskov", cvr: "29189714" },
    Authority { name: "Faaborg-Midtfyn", cvr: "29188653" },
];

pub const UDK: Authority = Authority { name: "Udbetaling Danmark", cvr: "29980636" };
pub const SKAT: Authority = Authority { name: "Skatteforvaltningen", cvr: "19552101" };

struct BenefitKind {
    name: &'static str,
    kle: &'static str,
    title: &'static str,
    /// Monthly gross in whole kroner.
    monthly: (i64, i64),
    frequency: Frequency,
}

const KY_BENEFITS: &[BenefitKind] = &[
    BenefitKind {
        name: "Kontanthjælp",
        kle: "32.18.04",
        title: "Ansøgning om kontanthjælp",
        monthly: (11_900, 16_600),
        frequency: Frequency::Monthly,
    },
    BenefitKind {
        name: "Uddannelseshjælp",
        kle: "32.18.08",
        title: "Uddannelseshjælp",
        monthly: (6_300, 12_000),
        frequency: Frequency::Monthly,
    },
    BenefitKind {
        name: "Sygedagpenge",
        kle: "32.15.04",
        title: "Sygedagpenge fra kommunen",
        monthly: (14_000, 20_000),
        frequency: Frequency::Monthly,
    },
    BenefitKind {
        name: "Ressourceforløbsydelse",
        kle: "32.18.12",
        title: "Ressourceforløb",
        monthly: (12_000, 16_600),
        frequency: Frequency::Monthly,
    },
    BenefitKind {
        name: "Ledighedsydelse",
        kle: "27.24.04",
        title: "Ledighedsydelse",
        monthly: (17_000, 19_700),
        frequency: Frequency::Monthly,
    },
];

const UDK_BENEFITS: &[(BenefitKind, &str)] = &[
    (
        BenefitKind {
            name: "Folkepension",
            kle: "32.03.04",
            title: "Folkepension",
            monthly: (7_000, 15_000),
            frequency: Frequency::Monthly,
        },
        "udk/pension",
    ),
    (
        BenefitKind {
            name: "Førtidspension",
            kle: "32.03.08",
            title: "Førtidspension",
            monthly: (14_000, 21_000),
            frequency: Frequency::Monthly,
        },
        "udk/pension",
    ),
    (
        BenefitKind {
            name: "Børne- og ungeydelse",
            kle: "32.21.04",
            title: "Børne- og ungeydelse",
            monthly: (1_200, 1_600),
            frequency: Frequency::Quarterly,
        },
        "udk/familieydelser",
    ),
    (
        BenefitKind {
            name: "Boligstøtte",
            kle: "32.24.04",
            title: "Boligstøtte",
            monthly: (900, 4_000),
            frequency: Frequency::Monthly,
        },
        "udk/boligstoette",
    ),
];

const ORG_UNITS: &[&str] =
    &["Ydelsesservice", "Borgerservice", "Jobcenter, Ydelse", "Social og Sundhed", "Familieafdelingen"];
const CASEWORKERS: &[&str] =
    &["Mette Hansen", "Lars Nielsen", "Anne Jensen", "Søren Pedersen", "Camilla Larsen", "Henrik Sørensen"];
const NOTE_TITLES: &[&str] =
    &["Telefonnotat", "Samtale med borgeren", "Notat om partshøring", "Opfølgning på aftale", "Notat fra møde"];
const CATEGORIES: &[&str] = &[
    "Dagpengemodtager",
    "Jobparat kontanthjælpsmodtager",
    "Aktivitetsparat kontanthjælpsmodtager",
    "Sygedagpengemodtager",
    "Ledighedsydelsesmodtager",
];
const TARGET_GROUPS: &[&str] =
    &["2.1 Forsikrede ledige", "2.2 Jobparate", "2.3 Aktivitetsparate", "2.4 Sygemeldte", "2.5 Fleksjob"];
const ACTIVITIES: &[&str] =
    &["Virksomhedspraktik", "Løntilskud", "Vejledning og opkvalificering", "Mentorstøtte", "Nytteindsats"];
const THEMES: &[&str] =
    &["Samlivsforhold", "Udlandsophold", "Sort arbejde", "Adresseforhold", "Uberettiget modtagelse af ydelse"];
const STEPS: &[&str] = &["Registersamkøring", "Partshøring", "Indhentning af oplysninger", "Kontrolbesøg", "Afgørelse"];
const CONTROL_GROUPS: &[(&str, &[(&str, &str)])] = &[
    ("Lønindkomst", &[("0013", "A-indkomst"), ("0014", "AM-bidrag"), ("0016", "A-skat")]),
    ("Kapitalindkomst", &[("0046", "Renteudgifter"), ("0030", "Renteindtægter")]),
    ("Fradrag", &[("0051", "Befordringsfradrag"), ("0052", "Fagforeningskontingent")]),
];

/// The demo stream's first citizen, living in Aarhus: a CPR number the
/// README and `overblik dev` can name for a first lookup.
pub const DEMO_CITIZEN: &str = "0107851234";

/// A citizen of the demo population.
#[derive(Clone, Debug)]
pub struct Citizen {
    pub party: PartyId,
    pub municipality: Authority,
}

/// A CPR number with a real birth date between 1940 and 2006, its serial's
/// first digit chosen so the century reads right.
pub fn demo_cpr(rng: &mut Rng) -> PartyId {
    let year = rng.range(1940, 2006) as i32;
    let born = NaiveDate::from_ymd_opt(year, 1, 1).unwrap() + Days::new(rng.range(0, 364) as u64);
    let century_digit = if year < 2000 { rng.range(0, 3) } else { 4 };
    let cpr = format!("{:02}{:02}{:02}{}{}", born.day(), born.month(), year % 100, century_digit, rng.digits(3));
    PartyId::parse(&format!("{}{cpr}", PartyId::CPR_PREFIX)).expect("a valid demo CPR")
}

pub fn demo_cvr(rng: &mut Rng) -> Cvr {
    Cvr::parse(&format!("{}{}", rng.range(1, 4) * 10 + rng.range(0, 9), rng.digits(6))).expect("8 digits")
}

/// Which story to tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoryKind {
    MunicipalBenefit,
    UdkBenefit,
    JobCentre,
    Tax,
    ControlCase,
}

impl StoryKind {
    pub fn topic(self) -> &'static str {
        match self {
            StoryKind::MunicipalBenefit => crate::config::TOPIC_KY,
            StoryKind::UdkBenefit => crate::config::TOPIC_UDK,
            StoryKind::JobCentre => crate::config::TOPIC_JOBCENTER,
            StoryKind::Tax => crate::config::TOPIC_SKAT,
            StoryKind::ControlCase => crate::config::TOPIC_KY,
        }
    }

    pub fn pick(rng: &mut Rng) -> StoryKind {
        match rng.range(0, 99) {
            0..=29 => StoryKind::MunicipalBenefit,
            30..=49 => StoryKind::UdkBenefit,
            50..=67 => StoryKind::JobCentre,
            68..=91 => StoryKind::Tax,
            _ => StoryKind::ControlCase,
        }
    }
}

/// Writes one story's events with consecutive versions per aggregate.
struct Writer<'a> {
    rng: &'a mut Rng,
    subject: PartyId,
    authority: Cvr,
    source: String,
    versions: HashMap<Uuid, i64>,
    events: Vec<Event>,
}

impl Writer<'_> {
    fn emit(&mut self, aggregate: Uuid, on: NaiveDate, body: Body) {
        let version = self.versions.entry(aggregate).or_insert(0);
        *version += 1;
        let secs = self.rng.range(7 * 3600, 17 * 3600);
        let time = Utc.from_utc_datetime(&on.and_hms_opt(0, 0, 0).unwrap()) + chrono::Duration::seconds(secs);
        self.events.push(Event {
            id: self.rng.uuid(),
            source: self.source.as_str().into(),
            type_version: crate::events::CURRENT_VERSION,
            time,
            subject: self.subject,
            authority: self.authority,
            aggregate_id: aggregate,
            aggregate_version: *version,
            body,
        });
    }

    fn kroner(&mut self, range: (i64, i64)) -> Oere {
        Oere(self.rng.range(range.0 * 100, range.1 * 100))
    }
}

fn month_period(start: NaiveDate, k: u32) -> Period {
    let first = NaiveDate::from_ymd_opt(start.year(), start.month(), 1).unwrap() + Months::new(k);
    let last = first + Months::new(1) - Days::new(1);
    Period { start: first, end: last }
}

fn pct(amount: Oere, percent: i64) -> Oere {
    Oere(amount.0 * percent / 100)
}

/// Tells one story about `citizen`, starting on `start`.
pub fn tell(rng: &mut Rng, kind: StoryKind, citizen: &Citizen, start: NaiveDate) -> Vec<Event> {
    let (authority, source) = match kind {
        StoryKind::MunicipalBenefit | StoryKind::ControlCase => (citizen.municipality, "ky".to_string()),
        StoryKind::UdkBenefit => (UDK, "udk".to_string()),
        StoryKind::JobCentre => (citizen.municipality, "jobcenter".to_string()),
        StoryKind::Tax => (SKAT, "skat/eindkomst".to_string()),
    };
    let mut w = Writer {
        rng,
        subject: citizen.party,
        authority: Cvr::parse(authority.cvr).expect("demo CVR"),
        source: format!("urn:overblik:source:{source}"),
        versions: HashMap::new(),
        events: Vec::new(),
    };
    match kind {
        StoryKind::MunicipalBenefit => {
            let benefit = w.rng.pick(KY_BENEFITS);
            benefit_story(&mut w, benefit, "KY", start, false);
        }
        StoryKind::UdkBenefit => {
            let (benefit, src) = w.rng.pick(UDK_BENEFITS);
            w.source = format!("urn:overblik:source:{src}");
            benefit_story(&mut w, benefit, "UDK", start, true);
        }
        StoryKind::JobCentre => jobcentre_story(&mut w, start),
        StoryKind::Tax => tax_story(&mut w, start),
        StoryKind::ControlCase => control_story(&mut w, start),
    }
    w.events
}

fn benefit_story(w: &mut Writer<'_>, b: &BenefitKind, system: &str, start: NaiveDate, udk: bool) {
    let case = w.rng.uuid();
    let grant = w.rng.uuid();
    let kle = Kle::parse(b.kle).unwrap();
    let decided = start + Days::new(w.rng.range(10, 40) as u64);
    let mut fields = CaseFields {
        case_number: format!("{}-{}", start.year(), w.rng.digits(6)),
        title: b.title.to_string(),
        kle,
        action_facet: ActionFacet::parse(w.rng.pick::<&str>(&["G01", "G05", "K07"])).unwrap(),
        sensitivity: if w.rng.chance(0.1) { Sensitivity::Sensitive } else { Sensitivity::Confidential },
        parties: vec![Party { role: PartyRole::Primary, id: w.subject }],
        org_unit: w.rng.pick(ORG_UNITS).to_string(),
        caseworker: Some(w.rng.pick(CASEWORKERS).to_string()),
        source_system: system.to_string(),
        status_history: Some(vec![StatusEntry { status: CaseStatus::Opstaaet, from: start }]),
    };
    if w.rng.chance(0.15) {
        fields.parties.push(Party { role: PartyRole::Secondary, id: demo_cpr(w.rng) });
    }
    if udk {
        // UDK cases arrive as a full import of their history so far.
        let history = fields.status_history.as_mut().unwrap();
        history.push(StatusEntry { status: CaseStatus::Oplyst, from: start + Days::new(5) });
        history.push(StatusEntry { status: CaseStatus::Afgjort, from: decided });
        w.emit(case, start, Body::CaseImported(CaseImported(fields.clone())));
    } else {
        w.emit(case, start, Body::CaseImported(CaseImported(fields.clone())));
        w.emit(
            case,
            start + Days::new(5),
            Body::CaseStatusChanged(CaseStatusChanged { status: CaseStatus::Oplyst, from: start + Days::new(5) }),
        );
        if w.rng.chance(0.2) {
            fields.caseworker = Some(w.rng.pick(CASEWORKERS).to_string());
            fields.status_history = None;
            w.emit(case, start + Days::new(7), Body::CaseUpdated(CaseUpdated(fields.clone())));
        }
        w.emit(
            case,
            decided,
            Body::CaseStatusChanged(CaseStatusChanged { status: CaseStatus::Afgjort, from: decided }),
        );
    }
    case_documents(w, case, &fields, start, decided);

    let mut monthly = w.kroner(b.monthly);
    let mut benefits = vec![GrantedBenefit {
        id: "B1".into(),
        name: b.name.to_string(),
        benefit_type: b.name.to_string(),
        kle,
        period: OpenPeriod { start: decided, end: None },
        plan: PaymentPlan { frequency: b.frequency, amount: monthly },
    }];
    let supplement = !udk && w.rng.chance(0.3);
    if supplement {
        benefits.push(GrantedBenefit {
            id: "B2".into(),
            name: "Særlig støtte".into(),
            benefit_type: "Særlig støtte".into(),
            kle,
            period: OpenPeriod { start: decided, end: None },
            plan: PaymentPlan { frequency: Frequency::Monthly, amount: w.kroner((500, 2_500)) },
        });
    }
    let mut grant_fields = GrantFields {
        grant_number: format!("B-{}", w.rng.digits(8)),
        case_id: Some(case),
        period: OpenPeriod { start: decided, end: None },
        sensitivity: fields.sensitivity,
        reason: Some(format!("Bevilget {}", b.name.to_lowercase())),
        benefits: benefits.clone(),
    };
    w.emit(grant, decided, Body::GrantAwarded(grant_fields.clone()));

    let months = w.rng.range(1, 8) as u32;
    let step = if b.frequency == Frequency::Quarterly { 3 } else { 1 };
    let mut payments = Vec::new();
    for k in (1..=months).map(|k| k * step) {
        let period = month_period(decided, k);
        if k == 2 * step && w.rng.chance(0.3) {
            // The yearly regulation (satsregulering) changes the amount.
            monthly = Oere(monthly.0 + monthly.0 / 50);
            grant_fields.benefits[0].plan.amount = monthly;
            w.emit(grant, period.start, Body::GrantChanged(grant_fields.clone()));
        }
        let payment = w.rng.uuid();
        payments.push(payment);
        let mut lines = vec![PaymentLine {
            period,
            gross: Oere(monthly.0 * i64::from(step)),
            kle,
            granted_benefit_id: "B1".into(),
        }];
        if supplement {
            lines.push(PaymentLine { period, gross: benefits[1].plan.amount, kle, granted_benefit_id: "B2".into() });
        }
        let gross = Oere(lines.iter().map(|l| l.gross.0).sum());
        let after_tax = pct(gross, w.rng.range(58, 66));
        let offset = w.rng.chance(0.08);
        let mut fields = PaymentFields {
            payment_number: format!("U-{}-{:02}-{}", period.start.year(), period.start.month(), w.rng.digits(5)),
            grant_id: Some(grant),
            period,
            disposal_date: period.end,
            gross,
            after_tax,
            sent: after_tax,
            paid: Some(if offset { pct(after_tax, 90) } else { after_tax }),
            paid_note: offset.then(|| "Modregning fra Gældsstyrelsen".to_string()),
            lines,
        };
        w.emit(payment, period.end, Body::PaymentEffectuated(fields.clone()));
        if w.rng.chance(0.08) {
            fields.after_tax = pct(gross, 60);
            fields.sent = fields.after_tax;
            fields.paid = Some(fields.after_tax);
            fields.paid_note = None;
            w.emit(payment, period.end + Days::new(3), Body::PaymentCorrected(fields));
        }
    }

    let last = month_period(decided, months * step).end;
    if w.rng.chance(0.6) {
        let end = last + Days::new(1);
        w.emit(grant, end, Body::GrantEnded(GrantEnded { end, reason: Some("Ophørt".into()) }));
        w.emit(
            case,
            end + Days::new(5),
            Body::CaseStatusChanged(CaseStatusChanged { status: CaseStatus::Afsluttet, from: end + Days::new(5) }),
        );
        if w.rng.chance(0.04) {
            // The source deleted the case: it must disappear from the index.
            let gone = end + Days::new(30);
            for p in payments {
                w.emit(p, gone, Body::PaymentDeleted(Deleted { reason: Some("Slettet i fagsystemet".into()) }));
            }
            w.emit(grant, gone, Body::GrantDeleted(Deleted::default()));
            w.emit(case, gone, Body::CaseDeleted(Deleted { reason: Some("Slettet i fagsystemet".into()) }));
        } else if w.rng.chance(0.05) {
            // A closed case taken up again (genoptagelse), decided and
            // closed once more: the index mirrors the source's status.
            let again = end + Days::new(40);
            w.emit(case, again, Body::CaseReopened(CaseStatusChanged { status: CaseStatus::Oplyst, from: again }));
            let decided = again + Days::new(14);
            w.emit(
                case,
                decided,
                Body::CaseStatusChanged(CaseStatusChanged { status: CaseStatus::Afgjort, from: decided }),
            );
            let closed = decided + Days::new(5);
            w.emit(
                case,
                closed,
                Body::CaseStatusChanged(CaseStatusChanged { status: CaseStatus::Afsluttet, from: closed }),
            );
        }
    }
}

/// A case's documents and journal notes (metadata only): the application
/// that opened it, a journal note or two, the decision sent; now and then a
/// title corrected, a note held at a higher sensitivity, or a document the
/// source removed again.
fn case_documents(w: &mut Writer<'_>, case: Uuid, fields: &CaseFields, start: NaiveDate, decided: NaiveDate) {
    let application =
        doc(w, &format!("Ansøgning: {}", fields.title), start, DocumentDirection::Incoming, DocumentKind::Document);
    w.emit(case, start, Body::DocumentRegistered(application.clone()));
    let noted = start + Days::new(3);
    let title = w.rng.pick(NOTE_TITLES).to_string();
    let mut note = doc(w, &title, noted, DocumentDirection::Internal, DocumentKind::JournalNote);
    if w.rng.chance(0.2) {
        // Health information: the note is held above the case's level.
        note.kle = Some(fields.kle);
        note.sensitivity = Some(fields.sensitivity.max(Sensitivity::Sensitive));
    }
    w.emit(case, noted, Body::DocumentRegistered(note.clone()));
    if w.rng.chance(0.3) {
        let extra = doc(w, "Lægeerklæring", noted + Days::new(2), DocumentDirection::Incoming, DocumentKind::Document);
        w.emit(case, extra.date, Body::DocumentRegistered(extra.clone()));
        if w.rng.chance(0.3) {
            let gone = extra.date + Days::new(1);
            w.emit(case, gone, Body::DocumentDeleted(DocumentDeleted { document_id: extra.document_id, reason: None }));
        }
    }
    if w.rng.chance(0.15) {
        let mut corrected = note;
        corrected.title = format!("{} (rettet)", corrected.title);
        w.emit(case, noted + Days::new(1), Body::DocumentUpdated(corrected));
    }
    let decision = doc(w, "Afgørelse", decided, DocumentDirection::Outgoing, DocumentKind::Document);
    w.emit(case, decided, Body::DocumentRegistered(decision));
}

fn doc(
    w: &mut Writer<'_>,
    title: &str,
    date: NaiveDate,
    direction: DocumentDirection,
    kind: DocumentKind,
) -> DocumentFields {
    DocumentFields {
        document_id: w.rng.uuid(),
        title: title.to_string(),
        date,
        direction,
        kind,
        kle: None,
        sensitivity: None,
    }
}

fn jobcentre_story(w: &mut Writer<'_>, start: NaiveDate) {
    let record = w.rng.uuid();
    let jobcenter = format!(
        "Jobcenter {}",
        MUNICIPALITIES.iter().find(|m| m.cvr == w.authority.as_str()).map_or("Danmark", |m| m.name)
    );
    let category = w.rng.pick(CATEGORIES).to_string();
    w.emit(
        record,
        start,
        Body::EmploymentRegistered(EmploymentRegistered { registered_on: start, jobcenter, category }),
    );
    let tg_from = start + Days::new(w.rng.range(1, 20) as u64);
    let target_group = w.rng.pick(TARGET_GROUPS).to_string();
    w.emit(record, tg_from, Body::EmploymentTargetGroupAssigned(TargetGroupAssigned { target_group, from: tg_from }));
    let mut day = tg_from;
    for i in 0..w.rng.range(0, 3) {
        day = day + Days::new(w.rng.range(5, 40) as u64);
        let activity_id = format!("A{}", i + 1);
        let kind = w.rng.pick(ACTIVITIES).to_string();
        w.emit(
            record,
            day,
            Body::EmploymentActivityStarted(ActivityStarted { activity_id: activity_id.clone(), kind, start: day }),
        );
        if w.rng.chance(0.7) {
            day = day + Days::new(w.rng.range(14, 120) as u64);
            w.emit(record, day, Body::EmploymentActivityEnded(ActivityEnded { activity_id, end: day }));
        }
    }
    if w.rng.chance(0.4) {
        day = day + Days::new(w.rng.range(1, 60) as u64);
        let reason = w.rng.pick(&["Ordinær beskæftigelse", "Uddannelse", "Flytning", "Pension"]).to_string();
        w.emit(record, day, Body::EmploymentDeregistered(EmploymentDeregistered { deregistered_on: day, reason }));
    }
}

fn tax_story(w: &mut Writer<'_>, start: NaiveDate) {
    let employer = demo_cvr(w.rng);
    let salary = (w.rng.range(22_000, 48_000)) * 100;
    for k in 0..w.rng.range(1, 4) as u32 {
        let period = month_period(start, k);
        let a_income = Oere(salary + w.rng.range(-50_000, 50_000));
        let am = pct(a_income, 8);
        let a_tax = pct(Oere(a_income.0 - am.0), 37);
        let report = w.rng.uuid();
        let mut facts = IncomeReported { period, employer_cvr: employer, a_income, a_tax, am_contribution: am };
        w.emit(report, period.end, Body::IncomeReported(facts.clone()));
        if w.rng.chance(0.05) {
            facts.a_income = Oere(facts.a_income.0 + 10_000);
            w.emit(report, period.end + Days::new(10), Body::IncomeReported(facts));
        } else if w.rng.chance(0.02) {
            w.emit(report, period.end + Days::new(10), Body::IncomeDeleted(Deleted::default()));
        }
    }
    let year = IncomeYear(start.year() - 1);
    let personal = Oere(salary * 12);
    w.source = "urn:overblik:source:skat/dupla".into();
    let annual = AnnualAssessmentIssued {
        income_year: year,
        personal_income: personal,
        capital_income: Oere(-w.rng.range(0, 3_000_000)),
        taxable_income: pct(personal, 92),
        total_tax: pct(personal, 36),
        residual_tax: Oere(w.rng.range(-1_000_000, 1_500_000)),
    };
    let assessment = w.rng.uuid();
    let issued_on = NaiveDate::from_ymd_opt(start.year(), 3, 15).unwrap().max(start);
    w.emit(assessment, issued_on, Body::AnnualAssessmentIssued(annual));
    // One aggregate per citizen and income year: a newer preliminary
    // assessment is its next version and supersedes the older.
    let prelim = w.rng.uuid();
    let next_year = IncomeYear(start.year() + 1);
    let mut issued = start;
    let mut expected = Oere(salary * 12);
    for _ in 0..w.rng.range(1, 3) {
        let p = PreliminaryAssessmentIssued {
            income_year: next_year,
            issued_on: issued,
            expected_personal_income: expected,
            expected_tax: pct(expected, 37),
            monthly_deduction: Oere(w.rng.range(400_000, 600_000)),
        };
        w.emit(prelim, issued, Body::PreliminaryAssessmentIssued(p));
        issued = issued + Days::new(w.rng.range(20, 90) as u64);
        expected = Oere(expected.0 + w.rng.range(-2_000_000, 2_000_000).max(-expected.0 / 2));
    }
    if w.rng.chance(0.5) {
        let (group, items) = w.rng.pick(CONTROL_GROUPS);
        let items = items
            .iter()
            .map(|(code, label)| ControlItem {
                code: code.to_string(),
                label: label.to_string(),
                amount: Oere(w.rng.range(0, 50_000_000)),
            })
            .collect();
        let record = w.rng.uuid();
        w.emit(
            record,
            start,
            Body::PersonControlRecorded(PersonControlRecorded { income_year: year, group: group.to_string(), items }),
        );
    }
    if w.rng.chance(0.3) {
        for d in 0..w.rng.range(1, 3) {
            let from = w.rng.range(6 * 60, 12 * 60);
            let to = from + w.rng.range(3 * 60, 9 * 60);
            let t = |m: i64| ClockTime::parse(&format!("{:02}:{:02}", m / 60, m % 60)).unwrap();
            let entry = w.rng.uuid();
            w.emit(
                entry,
                start + Days::new(d as u64),
                Body::DigitalLogbookRecorded(DigitalLogbookRecorded {
                    employer_cvr: employer,
                    work_date: start + Days::new(d as u64),
                    start: t(from),
                    end: t(to),
                }),
            );
        }
    }
    // SAPA 3.18's areas. Some citizens run a business on the side: one
    // report per business and income year, sometimes corrected later.
    if w.rng.chance(0.15) {
        let business = w.rng.uuid();
        let reported_on = NaiveDate::from_ymd_opt(start.year(), 6, 30).unwrap().max(start);
        let turnover = Oere(w.rng.range(20_000_000, 300_000_000));
        let mut facts = SelfEmploymentReported {
            income_year: year,
            business_cvr: demo_cvr(w.rng),
            business_name: w.rng.pick(BUSINESS_NAMES).to_string(),
            industry_code: w.rng.pick(INDUSTRY_CODES).to_string(),
            tax_scheme: *w.rng.pick(&[TaxScheme::Personskatteloven, TaxScheme::Virksomhedsordningen]),
            reported_on,
            turnover,
            business_result: pct(turnover, w.rng.range(-10, 30)),
            equity: Oere(w.rng.range(-5_000_000, 80_000_000)),
            interest_expenses: Oere(w.rng.range(0, 4_000_000)),
        };
        w.emit(business, reported_on, Body::SelfEmploymentReported(facts.clone()));
        if w.rng.chance(0.2) {
            facts.reported_on = reported_on + Days::new(60);
            facts.business_result = Oere(facts.business_result.0 - w.rng.range(0, 2_000_000));
            w.emit(business, facts.reported_on, Body::SelfEmploymentReported(facts));
        }
    }
    // Most have a pension through work: the year's contributions and the
    // holdings at its end, reported again when the provider corrects them.
    if w.rng.chance(0.6) {
        let scheme = w.rng.uuid();
        let as_of = NaiveDate::from_ymd_opt(year.0, 12, 31).unwrap();
        let contributions = pct(personal, 12);
        let mut facts = PensionRightsReported {
            income_year: year,
            provider_cvr: Cvr::parse(w.rng.pick::<&str>(PENSION_PROVIDERS)).expect("a demo provider's CVR"),
            scheme_id: format!("P-{}-{}", w.rng.range(10_000, 99_999), w.rng.range(1, 9)),
            pension_type: *w.rng.pick(&[PensionType::Ratepension, PensionType::Livrente, PensionType::Aldersopsparing]),
            employer_cvr: Some(employer),
            contributions,
            holdings: Oere(contributions.0 * w.rng.range(1, 30)),
            as_of,
        };
        w.emit(scheme, issued_on, Body::PensionRightsReported(facts.clone()));
        if w.rng.chance(0.1) {
            facts.holdings = Oere(facts.holdings.0 + w.rng.range(0, 5_000_000));
            w.emit(scheme, issued_on + Days::new(30), Body::PensionRightsReported(facts));
        }
    }
}

const BUSINESS_NAMES: &[&str] =
    &["Tømrer Hansen", "Frisør Lotte", "Vognmand Jensen ApS", "Konsulent Nielsen", "Café Havnen"];
/// Made-up CVR numbers of pension providers.
const PENSION_PROVIDERS: &[&str] = &["16614130", "24260577", "15200490"];
/// DB07 industry codes of those businesses.
const INDUSTRY_CODES: &[&str] = &["433200", "960210", "494100", "702200", "561010"];

fn control_story(w: &mut Writer<'_>, start: NaiveDate) {
    let case = w.rng.uuid();
    let theme = w.rng.pick(THEMES).to_string();
    let opened = ControlCaseOpened {
        case_number: format!("K-{}-{}", start.year(), w.rng.digits(5)),
        theme,
        kle: Kle::parse("32.18.04").unwrap(),
        sensitivity: Sensitivity::Confidential,
        opened_on: start,
        org_unit: "Kontrolenheden".into(),
        caseworker: Some(w.rng.pick(CASEWORKERS).to_string()),
        source_system: "KY".into(),
    };
    w.emit(case, start, Body::ControlCaseOpened(opened));
    let mut day = start;
    for _ in 0..w.rng.range(1, 3) {
        day = day + Days::new(w.rng.range(3, 40) as u64);
        let step = w.rng.pick(STEPS).to_string();
        w.emit(case, day, Body::ControlCaseStepRecorded(ControlCaseStepRecorded { step, on: day }));
    }
    if w.rng.chance(0.7) {
        day = day + Days::new(w.rng.range(3, 60) as u64);
        let outcome = if w.rng.chance(0.5) {
            ControlOutcome::WithoutAction
        } else {
            *w.rng.pick(&[ControlOutcome::Sanction, ControlOutcome::Repayment])
        };
        w.emit(case, day, Body::ControlCaseClosed(ControlCaseClosed { on: day, outcome }));
    }
}
