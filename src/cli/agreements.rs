//! `overblik agreements list|add|sign|revoke|lapsing`: the administrator's
//! commands, against the store directly. Each change is audited like one
//! made over gRPC, as the operating-system user running the command.

use clap::{Args, Subcommand};

use super::DatabaseArgs;
use crate::agreements::{Agreement, Proposal, Status};
use crate::audit::{Entry, Kind, Search, Text};
use crate::catalogue::Catalogue;
use crate::domain::{Cvr, DataArea, copenhagen_today, parse_date};
use crate::store::Store;

#[derive(Subcommand, Debug)]
pub enum AgreementsCommand {
    /// Every agreement, or one authority's.
    List(ListArgs),
    /// Register an agreement (status requested; --sign-as signs it at once).
    Add(AddArgs),
    /// Sign a requested agreement: from its valid-from date it opens lookups.
    Sign(SignArgs),
    /// Revoke an agreement: lookups resting on it are refused from now on.
    Revoke(IdArgs),
    /// Active agreements that end within N days.
    Lapsing(LapsingArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[arg(long)]
    pub authority: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: super::grpc::AuditKeyArgs,
    /// urn:ufst:adgangsgrundlag:aftale:<id>
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub authority: String,
    #[arg(long)]
    pub area: String,
    #[arg(long)]
    pub purpose: u32,
    #[arg(long)]
    pub legal_basis: String,
    /// KLIK task, e.g. K53.
    #[arg(long)]
    pub klik: Option<String>,
    #[arg(long)]
    pub valid_from: String,
    /// Exclusive.
    #[arg(long)]
    pub valid_to: String,
    #[arg(long)]
    pub sign_as: Option<String>,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: super::grpc::AuditKeyArgs,
    /// The authority (CVR) whose agreement it is: ids are unique per authority.
    #[arg(long)]
    pub authority: String,
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub signer: String,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: super::grpc::AuditKeyArgs,
    /// The authority (CVR) whose agreement it is: ids are unique per authority.
    #[arg(long)]
    pub authority: String,
    #[arg(long)]
    pub id: String,
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

/// Who runs the command, as the audit log names them (`cli:<user>`).
pub fn cli_user() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

/// The audit entry of a change made from the command line to `a`.
pub fn cli_entry(command: &'static str, a: &Agreement) -> Entry {
    let mut e = super::operator_entry(Kind::Agreement, Search::command(command));
    e.agreement_id = Some(Text::new(&a.id));
    e.area = Some(a.area);
    e.purpose_id = Some(a.purpose_id);
    e.allow(1, Vec::new())
}

fn print(rows: &[Agreement], json: bool) {
    let today = copenhagen_today(chrono::Utc::now());
    if json {
        let v: Vec<_> = rows.iter().map(|a| crate::api::agreement_json(a, today)).collect();
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        return;
    }
    for a in rows {
        println!(
            "{}  {} {}/{} {} {}..{} {}{}",
            a.id,
            a.authority,
            a.area,
            a.purpose_id,
            a.klik_task.as_deref().unwrap_or("-"),
            a.valid_from,
            a.valid_to,
            a.status.as_str(),
            if a.is_active_on(today) { " (active)" } else { "" }
        );
    }
    if rows.is_empty() {
        println!("no agreements");
    }
}

async fn find(store: &Store, authority: &str, id: &str) -> anyhow::Result<Agreement> {
    store.agreement(authority, id).await?.ok_or_else(|| anyhow::anyhow!("no agreement {id} at {authority}"))
}

pub async fn run(c: AgreementsCommand) -> anyhow::Result<i32> {
    match c {
        AgreementsCommand::List(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let mut all = Vec::new();
            let mut after = (String::new(), String::new());
            loop {
                let page = store.list_agreements(a.authority.as_deref(), (&after.0, &after.1), 1000).await?;
                let Some(last) = page.last() else { break };
                after = (last.authority.to_string(), last.id.clone());
                all.extend(page);
            }
            print(&all, a.json);
        }
        AgreementsCommand::Add(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let key = a.key.load(&a.db.database_url)?;
            let area = DataArea::parse(&a.area).ok_or_else(|| anyhow::anyhow!("unknown data area {:?}", a.area))?;
            let authority = Cvr::parse(&a.authority).map_err(|e| anyhow::anyhow!("{e}"))?;
            let date = |s: &str| parse_date(s).map_err(|e| anyhow::anyhow!("{e}"));
            let registered_by = cli_user();
            let new = Agreement::request(
                &Catalogue::built_in(),
                Proposal {
                    id: &a.id,
                    authority,
                    area,
                    purpose_id: a.purpose,
                    legal_basis: &a.legal_basis,
                    klik_task: a.klik.as_deref(),
                    valid_from: date(&a.valid_from)?,
                    valid_to: date(&a.valid_to)?,
                    registered_by: &registered_by,
                },
            )?;
            store.record_agreement(&new, None, &cli_entry("agreements add", &new), Some(&key)).await?;
            let shown = match a.sign_as {
                Some(signer) => {
                    let signed = new.sign(&signer, chrono::Utc::now())?;
                    store
                        .record_agreement(
                            &signed,
                            Some(Status::Requested),
                            &cli_entry("agreements sign", &signed),
                            Some(&key),
                        )
                        .await?;
                    signed
                }
                None => new,
            };
            print(&[shown], false);
        }
        AgreementsCommand::Sign(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let key = a.key.load(&a.db.database_url)?;
            let current = find(&store, &a.authority, &a.id).await?;
            let signed = current.sign(&a.signer, chrono::Utc::now())?;
            let entry = cli_entry("agreements sign", &signed);
            store.record_agreement(&signed, Some(current.status), &entry, Some(&key)).await?;
            print(&[signed], false);
        }
        AgreementsCommand::Revoke(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let key = a.key.load(&a.db.database_url)?;
            let current = find(&store, &a.authority, &a.id).await?;
            let revoked = current.revoke(chrono::Utc::now())?;
            let entry = cli_entry("agreements revoke", &revoked);
            store.record_agreement(&revoked, Some(current.status), &entry, Some(&key)).await?;
            print(&[revoked], false);
        }
        AgreementsCommand::Lapsing(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let today = copenhagen_today(chrono::Utc::now());
            let mut lapsing = Vec::new();
            let mut after = (String::new(), String::new());
            loop {
                let page = store.list_agreements(None, (&after.0, &after.1), 1000).await?;
                let Some(last) = page.last() else { break };
                after = (last.authority.to_string(), last.id.clone());
                lapsing.extend(page.into_iter().filter(|x| x.lapses_within(today, a.days)));
            }
            print(&lapsing, a.json);
        }
    }
    Ok(0)
}
