//! `overblik borgerblikket config show|set` and `overblik borgerblikket
//! stats`: an authority's Borgerblikket settings and its citizens' monthly
//! call counts, against the store directly. A change is validated like one
//! made over gRPC and audited as the operating-system user running it.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::DatabaseArgs;
use crate::audit::{Entry, Kind, Search};
use crate::borgerblikket::{Bucket, Month, Settings};
use crate::domain::Cvr;
use crate::store::{Store, StoredSettings};

/// The demo municipality whose settings `overblik dev` seeds from
/// `catalogue/borgerblikket-dev.json` (Aarhus).
pub const DEV_AUTHORITY: &str = "55133018";
/// The dev default settings, a settings document like `config set --file`
/// takes.
pub const DEV_SETTINGS: &str = include_str!("../../catalogue/borgerblikket-dev.json");

#[derive(Subcommand, Debug)]
pub enum BorgerblikketCommand {
    /// Show or replace an authority's settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// An authority's (or the national bucket's) call counts of one month.
    Stats(StatsArgs),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// The authority's settings as a settings document (JSON).
    Show(ShowArgs),
    /// Replace the authority's settings with a settings document (JSON).
    Set(SetArgs),
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The authority's CVR number.
    #[arg(long)]
    pub authority: String,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: super::grpc::AuditKeyArgs,
    #[arg(long)]
    pub authority: String,
    /// A settings document (see README, *Borgerblikket settings*).
    #[arg(long)]
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// A CVR number, or `national` for calls where no authority had rows.
    #[arg(long)]
    pub authority: String,
    /// YYYY-MM.
    #[arg(long)]
    pub month: String,
    #[arg(long)]
    pub json: bool,
}

fn cvr(s: &str) -> anyhow::Result<Cvr> {
    Cvr::parse(s).map_err(|e| anyhow::anyhow!("--authority: {e}"))
}

/// The audit entry of a change made outside the service.
pub fn operator_entry(command: &'static str, authority: Cvr) -> Entry {
    super::operator_entry(Kind::BorgerblikketConfig, Search::command(command).with("authority", authority.as_str()))
        .allow(1, Vec::new())
}

fn shown(s: &StoredSettings) -> serde_json::Value {
    serde_json::json!({
        "authority": s.authority.to_string(),
        "version": s.version,
        "updated_at": s.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "updated_by": s.updated_by,
        "settings": s.settings.to_document(),
    })
}

/// Seeds the dev default settings for the demo municipality, unless it
/// has settings already. Returns whether it did.
pub async fn seed_dev_settings(store: &Store, key: &crate::audit::checkpoint::AuditKey) -> anyhow::Result<bool> {
    let authority = cvr(DEV_AUTHORITY)?;
    if !store.borgerblikket_settings(&[authority]).await?.is_empty() {
        return Ok(false);
    }
    let settings = Settings::from_json(DEV_SETTINGS).map_err(|e| anyhow::anyhow!("the dev settings: {e}"))?;
    let entry = operator_entry("dev seed", authority);
    store
        .record_borgerblikket_settings(authority, &settings, &super::agreements::cli_user(), &entry, Some(key))
        .await?;
    Ok(true)
}

pub async fn run(c: BorgerblikketCommand) -> anyhow::Result<i32> {
    match c {
        BorgerblikketCommand::Config(ConfigCommand::Show(a)) => {
            let authority = cvr(&a.authority)?;
            let store = Store::connect(&a.db.database_url).await?;
            match store.borgerblikket_settings(&[authority]).await?.first() {
                Some(s) => println!("{}", serde_json::to_string_pretty(&shown(s))?),
                None => {
                    println!("{authority} has no settings: its citizens see everything, as Borgerblikket always showed")
                }
            }
            Ok(0)
        }
        BorgerblikketCommand::Config(ConfigCommand::Set(a)) => {
            let authority = cvr(&a.authority)?;
            let text = String::from_utf8(super::read_file(&a.file)?)
                .map_err(|_| anyhow::anyhow!("{}: not UTF-8", a.file.display()))?;
            let settings = Settings::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
            let store = Store::connect(&a.db.database_url).await?;
            let key = a.key.load(&a.db.database_url)?;
            let entry = operator_entry("borgerblikket config set", authority);
            let by = super::agreements::cli_user();
            let stored = store.record_borgerblikket_settings(authority, &settings, &by, &entry, Some(&key)).await?;
            println!("{}", serde_json::to_string_pretty(&shown(&stored))?);
            Ok(0)
        }
        BorgerblikketCommand::Stats(a) => {
            let bucket = Bucket::parse(&a.authority)
                .ok_or_else(|| anyhow::anyhow!("--authority: a CVR number (8 digits) or national"))?;
            let month = Month::parse(&a.month).ok_or_else(|| anyhow::anyhow!("--month: YYYY-MM"))?;
            let store = Store::connect(&a.db.database_url).await?;
            let counts = store.citizen_call_counts(bucket, month).await?;
            if a.json {
                let v: Vec<_> = counts
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "kind": c.kind.as_str(), "with_data": c.with_data, "without_data": c.without_data,
                        })
                    })
                    .collect();
                let out = serde_json::json!({"authority": bucket.to_string(), "month": month.to_string(), "counts": v});
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("{bucket} {month}");
                println!("{:<12} {:>10} {:>13}", "calls on", "with data", "without data");
                for c in &counts {
                    println!("{:<12} {:>10} {:>13}", c.kind.as_str(), c.with_data, c.without_data);
                }
            }
            Ok(0)
        }
    }
}
