//! Operator commands: publish, status, dead letters, rebuild, retention.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, Subcommand};

pub use super::DatabaseArgs;
use super::{RetentionArgs, parse_key_value, read_file};
use crate::events::{DEFAULT_MAX_MESSAGE_BYTES, DecodeLimits};
use crate::ingest::replay::{Replacement, replay};
use crate::projection::Outcome;
use crate::simulator::publish::{PublishSettings, publish as publish_stream};
use crate::store::{DeadLetterFilter, Status, Store};

#[derive(Args, Debug)]
pub struct PublishArgs {
    #[arg(long)]
    pub brokers: String,
    /// How many messages to publish.
    #[arg(long, default_value_t = 10_000)]
    pub demo_events: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of malformed messages (0.0–1.0).
    #[arg(long, default_value_t = 0.0)]
    pub malformed_ratio: f64,
    /// At most this many messages per second.
    #[arg(long)]
    pub rate: Option<u64>,
    #[arg(long = "kafka-option", value_parser = parse_key_value)]
    pub kafka_options: Vec<(String, String)>,
}

pub async fn publish(a: PublishArgs) -> anyhow::Result<i32> {
    let settings = PublishSettings {
        brokers: a.brokers,
        events: a.demo_events,
        seed: a.seed,
        malformed_ratio: a.malformed_ratio,
        rate: a.rate,
        kafka_options: a.kafka_options,
    };
    let report = tokio::task::spawn_blocking(move || publish_stream(&settings, |_| true)).await??;
    println!(
        "published {} messages in {:.1}s ({:.0}/s)",
        report.sent,
        report.seconds,
        report.sent as f64 / report.seconds.max(1e-9)
    );
    Ok(0)
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The database role `serve` runs as (PostgreSQL): granted what it
    /// needs — the event store, projections and agreements; to read and
    /// append to the audit log — and nothing that could rewrite the log.
    #[arg(long)]
    pub runtime_role: Option<String>,
}

/// `overblik migrate`: run as the schema's owner.
pub async fn migrate(a: MigrateArgs) -> anyhow::Result<i32> {
    let store = Store::migrate(&a.db.database_url, a.runtime_role.as_deref()).await?;
    let rights = store.audit_rewrite_rights().await?;
    println!("migrated");
    if let Some(role) = &a.runtime_role {
        println!("role {role} may read and write the index and read and append to the audit log");
    }
    if rights.is_empty() && store.dialect() == crate::store::Dialect::Postgres {
        println!("note: this role can't rewrite the audit log; migrations are normally run by its owner");
    }
    store.close().await;
    Ok(0)
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn status(a: StatusArgs) -> anyhow::Result<i32> {
    let store = Store::connect(&a.db.database_url).await?;
    let s = store.status().await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print_status(&s);
    }
    store.close().await;
    Ok(0)
}

pub fn print_status(s: &Status) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<24} {:>11} {:>10} {:>10} {:>10} {:>8} {:>13}",
        "topic/partition", "next offset", "consumed", "applied", "duplicates", "parked", "dead-lettered"
    );
    for p in &s.partitions {
        let _ = writeln!(
            out,
            "{:<24} {:>11} {:>10} {:>10} {:>10} {:>8} {:>13}",
            format!("{}/{}", p.topic, p.partition),
            p.next_offset.map_or("-".to_string(), |o| o.to_string()),
            p.consumed,
            p.applied,
            p.duplicates,
            p.parked,
            p.dead_lettered
        );
    }
    let _ = writeln!(
        out,
        "{:<24} {:>11} {:>10} {:>10} {:>10} {:>8} {:>13}",
        "total", "", s.consumed, s.applied, s.duplicates, s.parked, s.dead_lettered
    );
    let _ = writeln!(
        out,
        "\nevent store: {} events, {} tombstones; {} duplicates were for deleted aggregates",
        s.events, s.tombstones, s.ignored_deleted
    );
    let rows: Vec<String> = s.projections.iter().map(|(t, n)| format!("{t} {n}")).collect();
    let _ = writeln!(out, "projections (generation {}): {}", s.projection_generation, rows.join(", "));
    let kinds: Vec<String> = s.aggregates_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(out, "aggregates by kind: {}", kinds.join(", "));
    if let Some(at) = s.oldest_parked_at {
        let _ = writeln!(
            out,
            "parked: {} events, the oldest parked {} (overblik parked list)",
            s.parked_rows,
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    if !s.dead_letters_by_reason.is_empty() {
        let reasons: Vec<String> = s.dead_letters_by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(out, "dead letters by reason: {}", reasons.join(", "));
    }
}

#[derive(Subcommand, Debug)]
pub enum DeadLetterCommand {
    /// List dead letters (without their bytes).
    List(ListArgs),
    /// Run dead letters through validation and projection again.
    Replay(ReplayArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Only this reason code.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only ids after this one (paging).
    #[arg(long, default_value_t = 0)]
    pub after: i64,
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Dead letter ids (repeatable).
    #[arg(long = "id")]
    pub ids: Vec<i64>,
    /// Every dead letter.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Every dead letter with this reason.
    #[arg(long, conflicts_with_all = ["ids", "all"])]
    pub reason: Option<String>,
    /// Replay this corrected payload instead of the stored bytes (one --id).
    #[arg(long)]
    pub payload_file: Option<PathBuf>,
    /// Replay with this message key instead of the stored one (one --id).
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    #[arg(long)]
    pub json: bool,
}

pub async fn dead_letters(c: DeadLetterCommand) -> anyhow::Result<i32> {
    match c {
        DeadLetterCommand::List(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let rows = store
                .dead_letters(&DeadLetterFilter {
                    reason: a.reason,
                    after_id: a.after,
                    limit: a.limit.clamp(1, 10_000),
                })
                .await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    println!(
                        "{:>6}  {}/{}@{}  {:<22} {} ({} bytes, {} replays)",
                        r.id, r.topic, r.partition, r.offset, r.reason, r.detail, r.bytes, r.replay_attempts
                    );
                }
                if rows.is_empty() {
                    println!("no dead letters");
                }
            }
            store.close().await;
            Ok(0)
        }
        DeadLetterCommand::Replay(a) => {
            let store = Store::connect(&a.db.database_url).await?;
            let replacement = Replacement {
                payload: a.payload_file.as_ref().map(read_file).transpose()?,
                key: a.key.map(String::into_bytes),
            };
            if (replacement.payload.is_some() || replacement.key.is_some()) && a.ids.len() != 1 {
                anyhow::bail!("--payload-file and --key replace one dead letter: give exactly one --id");
            }
            let ids = if a.all || a.reason.is_some() {
                let mut ids = Vec::new();
                let mut after = 0;
                loop {
                    let page = store
                        .dead_letters(&DeadLetterFilter { reason: a.reason.clone(), after_id: after, limit: 1000 })
                        .await?;
                    let Some(last) = page.last() else { break };
                    after = last.id;
                    ids.extend(page.iter().map(|r| r.id));
                }
                ids
            } else {
                a.ids
            };
            if ids.is_empty() {
                anyhow::bail!("nothing to replay: give --id, --reason or --all");
            }
            let limits = DecodeLimits { max_message_bytes: a.max_message_bytes };
            let outcomes = replay(&store, &ids, &replacement, &limits).await?;
            let resolved = outcomes.iter().filter(|(_, o)| !matches!(o, Outcome::DeadLettered(_))).count();
            if a.json {
                let rows: Vec<_> =
                    outcomes.iter().map(|(id, o)| serde_json::json!({"id": id, "outcome": outcome_name(o)})).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for (id, o) in &outcomes {
                    println!("{id:>6}  {}", outcome_name(o));
                }
                println!("{resolved} of {} resolved", outcomes.len());
            }
            store.close().await;
            Ok(if resolved == outcomes.len() { 0 } else { 4 })
        }
    }
}

fn outcome_name(o: &Outcome) -> String {
    match o {
        Outcome::Applied => "applied".into(),
        Outcome::Duplicate => "duplicate".into(),
        Outcome::IgnoredDeleted => "ignored (aggregate deleted)".into(),
        Outcome::Parked => "parked (waiting for an earlier version)".into(),
        Outcome::DeadLettered(r) => format!("dead-lettered again: {r}"),
    }
}

#[derive(Args, Debug)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Also build the reporting tables (cases, grants, payments, … one row
    /// per entity and child), a snapshot for ad-hoc SQL as of the swap.
    /// Ingest does not maintain them; deletions remove from them.
    #[arg(long)]
    pub reporting: bool,
}

pub async fn rebuild(a: RebuildArgs) -> anyhow::Result<i32> {
    let store = Store::connect(&a.db.database_url).await?;
    let mut bar = Progress::new("rebuilding");
    let report = crate::rebuild::rebuild_with(&store, a.reporting, |done, total| bar.show(done, total)).await?;
    bar.finish();
    println!(
        "rebuilt generation {}: {} events, {} aggregates ({} caught up at the swap) in {:.1}s ({:.0} events/s)",
        report.generation,
        report.events,
        report.aggregates,
        report.caught_up,
        report.seconds,
        report.events as f64 / report.seconds.max(1e-9)
    );
    store.close().await;
    Ok(0)
}

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Delete cases closed longer ago than their deadline, with their grants
    /// and payments.
    Run(RetentionRunArgs),
}

#[derive(Args, Debug)]
pub struct RetentionRunArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    /// The date to judge deadlines on (default: today, Copenhagen).
    #[arg(long, value_parser = |s: &str| crate::domain::parse_date(s).map_err(|e| e.to_string()))]
    pub today: Option<chrono::NaiveDate>,
}

pub async fn retention(c: RetentionCommand) -> anyhow::Result<i32> {
    let RetentionCommand::Run(a) = c;
    let store = Store::connect(&a.db.database_url).await?;
    let today = a.today.unwrap_or_else(|| crate::domain::copenhagen_today(chrono::Utc::now()));
    let report = crate::retention::sweep(&store, &a.retention.rules(), today).await?;
    println!(
        "deleted {} cases, {} control cases, {} grants and {} payments",
        report.cases, report.control_cases, report.grants, report.payments
    );
    store.close().await;
    Ok(0)
}

/// A one-line progress bar on stderr.
pub struct Progress {
    label: &'static str,
    last: std::time::Instant,
    tty: bool,
}

impl Progress {
    pub fn new(label: &'static str) -> Progress {
        use std::io::IsTerminal;
        Progress { label, last: std::time::Instant::now(), tty: std::io::stderr().is_terminal() }
    }

    pub fn show(&mut self, done: i64, total: i64) {
        let every = if self.tty { 100 } else { 2000 };
        if self.last.elapsed().as_millis() < every && done < total {
            return;
        }
        self.last = std::time::Instant::now();
        let pct = if total > 0 { done as f64 * 100.0 / total as f64 } else { 100.0 };
        let width = 30;
        let filled = ((pct / 100.0) * width as f64) as usize;
        let bar = format!("{}{}", "#".repeat(filled.min(width)), "-".repeat(width - filled.min(width)));
        if self.tty {
            eprint!("\r{} [{bar}] {pct:5.1}% {done}/{total}", self.label);
        } else {
            eprintln!("{} [{bar}] {pct:5.1}% {done}/{total}", self.label);
        }
    }

    pub fn finish(&mut self) {
        if self.tty {
            eprintln!();
        }
    }
}
