//! `overblik audit verify|query|alarms|report|export`: the data-protection
//! officer's commands, against the store directly. Reading the log is
//! itself recorded in it.

use clap::{Args, Subcommand};

use super::DatabaseArgs;
use crate::audit::dpo::{self, AlarmSettings};
use crate::audit::{Kind, Search, read};
use crate::catalogue::Catalogue;
use crate::domain::{PartyId, parse_instant};
use crate::store::{AuditFilter, Store};

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the log; exit 2 and name the first bad record if any record was
    /// changed, removed, moved or forged. With --checkpoints, against the
    /// signed checkpoints outside the database (trusting nothing in it);
    /// without, the hash chain inside it only.
    Verify(VerifyArgs),
    /// Records by citizen, user, area, purpose, agreement, decision, period.
    Query(QueryArgs),
    /// Self-lookups, colleagues, sensitive KLE, VIP, volume.
    Alarms(AlarmArgs),
    /// A citizen's GDPR art. 15 report: dates, authorities, purposes.
    Report(ReportArgs),
    /// Records as CSV on standard output.
    Export(QueryArgs),
    /// Make an audit checkpoint key: the private key (for --audit-key) and,
    /// beside it with .pub appended, the public key verifiers need.
    Keygen(KeygenArgs),
    /// Print a proof as JSON: that record --seq is in the log as of a
    /// checkpoint, or that one checkpoint's log is a prefix of a later one's.
    Prove(ProveArgs),
    /// Check a proof from `audit prove` (or the Audit service) offline, with
    /// only the public key. Exit 0 if it holds, 2 if not.
    CheckProof(CheckProofArgs),
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    #[arg(long)]
    pub out: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct ProveArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The record to prove (inclusion).
    #[arg(long, conflicts_with_all = ["from_checkpoint", "to_checkpoint"])]
    pub seq: Option<u64>,
    /// The checkpoint (its size) to prove against; the newest by default.
    #[arg(long)]
    pub tree_size: Option<u64>,
    /// Consistency: from the checkpoint of this size…
    #[arg(long, requires = "to_checkpoint")]
    pub from_checkpoint: Option<u64>,
    /// …to the checkpoint of this size.
    #[arg(long, requires = "from_checkpoint")]
    pub to_checkpoint: Option<u64>,
}

#[derive(Args, Debug)]
pub struct CheckProofArgs {
    /// The proof (JSON), or - for standard input.
    #[arg(long)]
    pub proof: std::path::PathBuf,
    #[arg(long)]
    pub public_key: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The directory of checkpoint files the service writes
    /// (--audit-checkpoints).
    #[arg(long, requires = "public_key")]
    pub checkpoints: Option<std::path::PathBuf>,
    /// The checkpoint key's public half (PEM).
    #[arg(long, requires = "checkpoints")]
    pub public_key: Option<std::path::PathBuf>,
    /// Verify everything, not only what was added since the last run.
    #[arg(long)]
    pub full: bool,
    /// Where the progress of earlier runs is kept (default: verified.json in
    /// the checkpoint directory).
    #[arg(long)]
    pub state: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct Filters {
    /// Only this authority's records (CVR).
    #[arg(long)]
    pub authority: Option<String>,
    #[arg(long)]
    pub citizen: Option<String>,
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub area: Option<String>,
    #[arg(long)]
    pub purpose: Option<u32>,
    #[arg(long)]
    pub agreement: Option<String>,
    /// allow or deny
    #[arg(long)]
    pub decision: Option<String>,
    /// RFC 3339, inclusive.
    #[arg(long)]
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: super::grpc::AuditKeyArgs,
    #[command(flatten)]
    pub filters: Filters,
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AlarmArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: super::grpc::AuditKeyArgs,
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub volume: usize,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: super::grpc::AuditKeyArgs,
    #[arg(long)]
    pub citizen: String,
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn citizen_urn(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    let urn = if s.len() == 10 { format!("{}{s}", PartyId::CPR_PREFIX) } else { s.to_string() };
    Ok(PartyId::parse(&urn).map_err(|e| anyhow::anyhow!("citizen: {}", e.detail))?.urn())
}

fn instant(s: &Option<String>) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    s.as_deref().map(|s| parse_instant(s).map_err(|e| anyhow::anyhow!("{e}"))).transpose()
}

impl Filters {
    fn filter(&self) -> anyhow::Result<AuditFilter> {
        Ok(AuditFilter {
            authority: self.authority.clone(),
            kinds: None,
            citizen: self.citizen.as_deref().map(citizen_urn).transpose()?,
            user_id: self.user.clone(),
            data_area: self.area.clone(),
            purpose_id: self.purpose,
            agreement_id: self.agreement.clone(),
            decision: self.decision.clone(),
            from: instant(&self.from)?,
            to: instant(&self.to)?,
        })
    }
}

/// Records the command's use of the log in the log.
async fn note(
    store: &Store,
    key: &crate::audit::checkpoint::AuditKey,
    command: &'static str,
    citizen: Option<&str>,
    rows: usize,
) -> anyhow::Result<()> {
    let mut entry = super::operator_entry(Kind::Audit, Search::command(command));
    entry.citizen = citizen.and_then(|c| PartyId::parse(c).ok());
    store.append_audit(vec![entry.allow(rows, Vec::new()).seal()], chrono::Utc::now(), Some(key)).await?;
    Ok(())
}

pub async fn run(c: AuditCommand) -> anyhow::Result<i32> {
    match c {
        AuditCommand::Verify(VerifyArgs { db, checkpoints: Some(dir), public_key: Some(key), full, state }) => {
            let store = Store::connect(&db.database_url).await?;
            let public = crate::audit::checkpoint::PublicKey::load(&key)?;
            let state = state.unwrap_or_else(|| read::default_progress_path(&dir));
            let from = if full { Default::default() } else { read::load_progress(&state)? };
            if from.size > 0 {
                eprintln!("resuming after record {} (verified before; --full for everything)", from.size);
            }
            let report = read::verify_against(&store, &dir, public, &from, |n| eprintln!("{n} records read")).await?;
            match &report.first {
                None => {
                    read::save_progress(&state, &report.progress)?;
                    println!(
                        "audit log verified: {} records read, {} checkpoints, records 1-{} covered by signed checkpoints, {} after the last one (checked by the chain only)",
                        report.records, report.checkpoints, report.covered, report.uncovered
                    );
                    Ok(0)
                }
                Some(f) => {
                    let against = f
                        .checkpoint
                        .map(|c| format!("; the first checkpoint it contradicts: size {c}"))
                        .unwrap_or_default();
                    println!("audit log does NOT verify: record {}: {}{against}", f.seq, f.problem);
                    Ok(2)
                }
            }
        }
        AuditCommand::Verify(VerifyArgs { db, .. }) => {
            let store = Store::connect(&db.database_url).await?;
            let check = read::verify(&store).await?;
            match &check.first_bad {
                None => {
                    println!("audit log verified: {} records, chain intact", check.records);
                    Ok(0)
                }
                Some((seq, problem)) => {
                    println!("audit log does NOT verify: record {seq}: {problem}");
                    Ok(2)
                }
            }
        }
        AuditCommand::Query(a) | AuditCommand::Export(a) if a.limit == 0 => anyhow::bail!("--limit must be positive"),
        AuditCommand::Query(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let f = a.filters.filter()?;
            let (records, truncated) = read::load(&store, &f, a.limit).await?;
            note(&store, &*a.key.load(&a.db.database_url)?, "audit query", f.citizen.as_deref(), records.len()).await?;
            if a.json {
                let v: Vec<_> = records.iter().map(crate::api::audit_record_json).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for r in &records {
                    let e = &r.entry;
                    println!(
                        "{:>8} {} {:<6} {:<5} {:<24} {} {}/{} {} rows={} {}",
                        r.seq,
                        r.recorded_at.format("%Y-%m-%d %H:%M:%S"),
                        e.kind,
                        e.decision,
                        e.reason,
                        e.user_id,
                        e.data_area,
                        e.purpose_id.map_or("-".into(), |p| p.to_string()),
                        e.citizen,
                        e.rows_returned,
                        e.alarms.join(",")
                    );
                }
                if truncated {
                    println!("(more records: raise --limit or narrow the filters)");
                }
            }
            Ok(0)
        }
        AuditCommand::Export(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let f = a.filters.filter()?;
            let (records, truncated) = read::load(&store, &f, a.limit).await?;
            if truncated {
                anyhow::bail!("more than {} records: raise --limit or narrow the filters", a.limit);
            }
            note(&store, &*a.key.load(&a.db.database_url)?, "audit export", f.citizen.as_deref(), records.len())
                .await?;
            print!("{}", dpo::csv(&records));
            Ok(0)
        }
        AuditCommand::Alarms(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let f = AuditFilter { from: instant(&a.from)?, to: instant(&a.to)?, ..Default::default() };
            let (records, _) = read::load(&store, &f, 1_000_000).await?;
            let settings = AlarmSettings { volume_per_hour: a.volume, ..Default::default() };
            let alarms = dpo::alarms(&records, &settings);
            note(&store, &*a.key.load(&a.db.database_url)?, "audit alarms", None, alarms.len()).await?;
            for al in &alarms {
                println!(
                    "{:>8} {} {:<14} {} {} {}",
                    al.seq,
                    al.at.format("%Y-%m-%d %H:%M:%S"),
                    al.kind,
                    al.user_id,
                    al.citizen,
                    al.detail
                );
            }
            if alarms.is_empty() {
                println!("no alarms");
            }
            Ok(0)
        }
        AuditCommand::Keygen(a) => {
            if a.out.exists() {
                anyhow::bail!("{} exists: a key is never overwritten", a.out.display());
            }
            let key = crate::audit::checkpoint::AuditKey::generate()?;
            key.save(&a.out)?;
            println!(
                "audit key {} written to {} (public key: {})",
                key.key_id(),
                a.out.display(),
                crate::audit::checkpoint::public_path(&a.out).display()
            );
            Ok(0)
        }
        AuditCommand::Prove(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let proof = match (a.seq, a.from_checkpoint, a.to_checkpoint) {
                (Some(seq), _, _) => crate::audit::prove::inclusion_of(&store, seq, a.tree_size.unwrap_or(0)).await?,
                (None, Some(from), Some(to)) => crate::audit::prove::consistency_of(&store, from, to).await?,
                _ => anyhow::bail!("give --seq N, or --from-checkpoint A --to-checkpoint B"),
            };
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(0)
        }
        AuditCommand::CheckProof(a) => {
            let text = if a.proof.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&a.proof)?
            };
            let proof: crate::audit::proof::Proof = serde_json::from_str(&text)?;
            let public = crate::audit::checkpoint::PublicKey::load(&a.public_key)?;
            match proof.check(&public) {
                Ok(what) => {
                    println!("the proof holds: {what}");
                    Ok(0)
                }
                Err(why) => {
                    println!("the proof does NOT hold: {why}");
                    Ok(2)
                }
            }
        }
        AuditCommand::Report(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let who = citizen_urn(&a.citizen)?;
            let f = AuditFilter {
                citizen: Some(who.clone()),
                from: instant(&a.from)?,
                to: instant(&a.to)?,
                ..Default::default()
            };
            let (records, _) = read::load(&store, &f, 1_000_000).await?;
            let report = dpo::citizen_report(&records, &who, &Catalogue::built_in());
            note(&store, &*a.key.load(&a.db.database_url)?, "audit report", Some(&who), report.len()).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for e in &report {
                    println!(
                        "{}  {}  {}  {} {}",
                        e.date,
                        e.authority,
                        e.data_area,
                        e.purpose_id.map_or("-".into(), |p| p.to_string()),
                        e.purpose
                    );
                }
                if report.is_empty() {
                    println!("no lookups of this citizen's data");
                }
            }
            Ok(0)
        }
    }
}
