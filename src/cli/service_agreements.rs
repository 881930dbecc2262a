//! `overblik service-agreements list|request|approve|reject|revoke|lapsing|review`:
//! IT systems' service agreements, against the store directly. Each change
//! is audited like one made over gRPC, as the operating-system user running
//! the command; `review` compares what a system called with what it may.

use clap::{Args, Subcommand};
use uuid::Uuid;

use super::DatabaseArgs;
use crate::audit::{Entry, Kind, Search, Text};
use crate::catalogue::Catalogue;
use crate::domain::{Cvr, DataArea, Sensitivity, copenhagen_today, parse_date};
use crate::lookup::Rpc;
use crate::service_agreements::{self, Answers, Request, ServiceAgreement, Use};
use crate::store::{AuditFilter, ServiceAgreementFilter, Store};

#[derive(Subcommand, Debug)]
pub enum ServiceAgreementsCommand {
    /// Every service agreement, or one authority's or one system's.
    List(ListArgs),
    /// Record a system's request (status requested: no access yet).
    Request(RequestArgs),
    /// Approve a requested agreement, with the five answers.
    Approve(ApproveArgs),
    /// Reject a requested agreement, with a reason.
    Reject(RejectArgs),
    /// Revoke an agreement: the system's calls under it are refused from now on.
    Revoke(IdArgs),
    /// Active agreements that end within N days.
    Lapsing(LapsingArgs),
    /// Per agreement: what the system called in the last N days against what
    /// it may call; calls and data areas never used are flagged.
    Review(ReviewArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[arg(long)]
    pub authority: Option<String>,
    #[arg(long)]
    pub system: Option<Uuid>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RequestArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: super::grpc::AuditKeyArgs,
    /// The IT system's UUID.
    #[arg(long)]
    pub system: Uuid,
    /// The authority (CVR) whose approver decides.
    #[arg(long)]
    pub authority: String,
    #[arg(long)]
    pub justification: String,
    /// An Overblik call the system needs (repeatable), e.g. ListCases.
    #[arg(long = "rpc", required = true)]
    pub rpcs: Vec<String>,
    /// A data area and its purposes (repeatable): sager=1,2.
    #[arg(long = "area", required = true)]
    pub areas: Vec<String>,
    /// A KLE pattern (repeatable): 32.18.04, 32.18.*, 32.* or *.
    #[arg(long = "kle", required = true)]
    pub kle: Vec<String>,
    /// The highest sensitivity the system may see, 1-4.
    #[arg(long)]
    pub sensitivity: i64,
    #[arg(long)]
    pub valid_from: String,
    /// Exclusive.
    #[arg(long)]
    pub valid_to: String,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: super::grpc::AuditKeyArgs,
    /// The authority (CVR) whose agreement it is.
    #[arg(long)]
    pub authority: String,
    #[arg(long)]
    pub id: Uuid,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub target: IdArgs,
    /// Who approves (the authority's approver).
    #[arg(long)]
    pub approver: String,
    /// 1. Is it clear who gets access, for how long and why?
    #[arg(long)]
    pub who_how_long_why: String,
    /// 2. Does the system need exactly these services?
    #[arg(long)]
    pub services_needed: String,
    /// 3. Is the data scope right?
    #[arg(long)]
    pub data_scope: String,
    /// 4. Does it need access for the whole period?
    #[arg(long)]
    pub whole_period: String,
    /// 5. Will the agreement make sense to a colleague later?
    #[arg(long)]
    pub understandable_later: String,
}

#[derive(Args, Debug)]
pub struct RejectArgs {
    #[command(flatten)]
    pub target: IdArgs,
    #[arg(long)]
    pub approver: String,
    #[arg(long)]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct LapsingArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// How many days back to look.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    #[arg(long)]
    pub authority: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// The audit entry of a change made from the command line to `a`.
fn cli_entry(command: &'static str, a: &ServiceAgreement) -> Entry {
    let mut e = super::operator_entry(Kind::ServiceAgreement, Search::command(command));
    e.agreement_id = Some(Text::new(&a.id.to_string()));
    e.allow(1, Vec::new())
}

fn print(rows: &[ServiceAgreement], json: bool) {
    let today = copenhagen_today(chrono::Utc::now());
    if json {
        let v: Vec<_> = rows.iter().map(|a| crate::api::service_agreement_json(a, today)).collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return;
    }
    for a in rows {
        let rpcs: Vec<&str> = a.rpcs.iter().map(|r| r.name()).collect();
        let areas: Vec<&str> = a.scope.areas.keys().map(|x| x.as_str()).collect();
        println!(
            "{}  system {} at {}  {}..{} {}{}  calls {}  areas {}",
            a.id,
            a.it_system,
            a.authority,
            a.valid_from,
            a.valid_to,
            a.status.as_str(),
            if a.is_active_on(today) { " (active)" } else { "" },
            rpcs.join(","),
            areas.join(","),
        );
    }
    if rows.is_empty() {
        println!("no service agreements");
    }
}

/// `sager=1,2` → the area and its purposes.
fn area_arg(s: &str) -> anyhow::Result<(DataArea, Vec<u32>)> {
    let (area, purposes) = s.split_once('=').ok_or_else(|| anyhow::anyhow!("--area is <area>=<purpose>,…"))?;
    let area = DataArea::parse(area).ok_or_else(|| anyhow::anyhow!("unknown data area {area:?}"))?;
    let purposes = purposes.split(',').map(|p| p.trim().parse::<u32>()).collect::<Result<Vec<_>, _>>()?;
    Ok((area, purposes))
}

async fn find(store: &Store, authority: &str, id: Uuid) -> anyhow::Result<ServiceAgreement> {
    store
        .service_agreement(authority, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no service agreement {id} at {authority}"))
}

/// The approver's name as given on the command line: one printable line,
/// bounded, no personal number — it is stored and shown with the decision.
fn approver(name: &str) -> anyhow::Result<String> {
    Ok(crate::ingest::parked::Note::new(name, "--approver", 256)?.as_str().to_string())
}

/// The call a record names (`rpc: ListCases; …`).
fn rpc_of(search_criteria: &str) -> Option<Rpc> {
    let first = search_criteria.split(';').next()?;
    Rpc::parse(first.strip_prefix("rpc: ")?)
}

/// Reviews `a` against the system's lookups with `a`'s authority in the
/// last `days` days, read a page at a time: allowed calls under another of
/// its agreements are not this one's.
async fn reviewed(store: &Store, a: &ServiceAgreement, days: u32) -> anyhow::Result<service_agreements::Review> {
    let filter = AuditFilter {
        authority: Some(a.authority.to_string()),
        user_id: Some(format!("{}{}", crate::identity::SYSTEM_SUBJECT_PREFIX, a.it_system)),
        kinds: Some(vec![Kind::Lookup.as_str()]),
        from: Some(chrono::Utc::now() - chrono::Duration::days(i64::from(days))),
        ..Default::default()
    };
    let marker = format!("service_agreement: {}", a.id);
    let mut review = service_agreements::Review::default();
    let mut after = 0;
    loop {
        let page = store.audit_records(&filter, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            let Some(rpc) = rpc_of(&r.entry.search_criteria) else { continue };
            let allowed = r.entry.decision == "allow";
            if allowed && !r.entry.search_criteria.contains(&marker) {
                continue;
            }
            review.count(Use { rpc, area: DataArea::parse(&r.entry.data_area), allowed });
        }
    }
    Ok(review.finish(a))
}

async fn record(
    store: &Store,
    key: &super::grpc::AuditKeyArgs,
    db: &DatabaseArgs,
    change: Change<'_>,
) -> anyhow::Result<()> {
    let key = key.load(&db.database_url)?;
    store
        .record_service_agreement(
            change.agreement,
            change.previous,
            &cli_entry(change.command, change.agreement),
            Some(&key),
        )
        .await?;
    Ok(())
}

/// One change to write.
struct Change<'a> {
    command: &'static str,
    agreement: &'a ServiceAgreement,
    previous: Option<service_agreements::Status>,
}

pub async fn run(c: ServiceAgreementsCommand) -> anyhow::Result<i32> {
    let now = chrono::Utc::now();
    match c {
        ServiceAgreementsCommand::List(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let filter = ServiceAgreementFilter { it_system: a.system, authority: a.authority };
            print(&store.service_agreements(&filter).await?, a.json);
        }
        ServiceAgreementsCommand::Request(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let rpcs = a
                .rpcs
                .iter()
                .map(|r| Rpc::parse(r).ok_or_else(|| anyhow::anyhow!("unknown call {r:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let areas = a.areas.iter().map(|s| area_arg(s)).collect::<anyhow::Result<Vec<_>>>()?;
            let date = |s: &str| parse_date(s).map_err(|e| anyhow::anyhow!("{e}"));
            let new = ServiceAgreement::request(
                &Catalogue::built_in(),
                Request {
                    id: Uuid::new_v4(),
                    it_system: a.system,
                    authority: Cvr::parse(&a.authority).map_err(|e| anyhow::anyhow!("{e}"))?,
                    justification: &a.justification,
                    rpcs: &rpcs,
                    areas: &areas,
                    kle: &a.kle,
                    sensitivity: Sensitivity::from_level(a.sensitivity).map_err(|e| anyhow::anyhow!("{e}"))?,
                    valid_from: date(&a.valid_from)?,
                    valid_to: date(&a.valid_to)?,
                    at: now,
                },
            )?;
            let change = Change { command: "service-agreements request", agreement: &new, previous: None };
            record(&store, &a.key, &a.db, change).await?;
            print(&[new], false);
        }
        ServiceAgreementsCommand::Approve(a) => {
            let t = &a.target;
            let store = Store::connect(&t.db.database_url).await?;
            let current = find(&store, &t.authority, t.id).await?;
            let answers = Answers::new([
                &a.who_how_long_why,
                &a.services_needed,
                &a.data_scope,
                &a.whole_period,
                &a.understandable_later,
            ])?;
            let approved = current.approve(&approver(&a.approver)?, answers, now)?;
            let change =
                Change { command: "service-agreements approve", agreement: &approved, previous: Some(current.status) };
            record(&store, &t.key, &t.db, change).await?;
            print(&[approved], false);
        }
        ServiceAgreementsCommand::Reject(a) => {
            let t = &a.target;
            let store = Store::connect(&t.db.database_url).await?;
            let current = find(&store, &t.authority, t.id).await?;
            let rejected = current.reject(&approver(&a.approver)?, &a.reason, now)?;
            let change =
                Change { command: "service-agreements reject", agreement: &rejected, previous: Some(current.status) };
            record(&store, &t.key, &t.db, change).await?;
            print(&[rejected], false);
        }
        ServiceAgreementsCommand::Revoke(t) => {
            let store = Store::connect(&t.db.database_url).await?;
            let current = find(&store, &t.authority, t.id).await?;
            let revoked = current.revoke(&super::agreements::cli_user(), now)?;
            let change =
                Change { command: "service-agreements revoke", agreement: &revoked, previous: Some(current.status) };
            record(&store, &t.key, &t.db, change).await?;
            print(&[revoked], false);
        }
        ServiceAgreementsCommand::Lapsing(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let today = copenhagen_today(now);
            let all = store.service_agreements(&ServiceAgreementFilter::default()).await?;
            let lapsing: Vec<_> = all.into_iter().filter(|x| x.lapses_within(today, a.days)).collect();
            print(&lapsing, a.json);
        }
        ServiceAgreementsCommand::Review(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let filter = ServiceAgreementFilter { it_system: None, authority: a.authority };
            let mut reviews = Vec::new();
            for agreement in store.service_agreements(&filter).await? {
                let review = reviewed(&store, &agreement, a.days).await?;
                reviews.push((agreement, review));
            }
            print_reviews(&reviews, a.days, a.json);
        }
    }
    Ok(0)
}

fn print_reviews(reviews: &[(ServiceAgreement, service_agreements::Review)], days: u32, json: bool) {
    if json {
        let v: Vec<_> = reviews
            .iter()
            .map(|(a, r)| {
                serde_json::json!({
                    "id": a.id.to_string(),
                    "it_system": a.it_system.to_string(),
                    "authority": a.authority.to_string(),
                    "status": a.status.as_str(),
                    "days": days,
                    "review": r,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return;
    }
    for (a, r) in reviews {
        println!("{}  system {} at {} ({}), last {days} days:", a.id, a.it_system, a.authority, a.status.as_str());
        for (rpc, n) in &r.used_rpcs {
            println!("  called {rpc}: {n}");
        }
        for rpc in &r.unused_rpcs {
            println!("  UNUSED call {rpc}");
        }
        for area in &r.unused_areas {
            println!("  UNUSED data area {area}");
        }
        if r.refused > 0 {
            println!("  refused calls: {}", r.refused);
        }
    }
    if reviews.is_empty() {
        println!("no service agreements");
    }
}
