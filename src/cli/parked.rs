//! `overblik parked`: the events waiting for an earlier version of their
//! aggregate, and an operator's resolution of a gap that will not close.

use std::time::Duration;

use clap::{Args, Subcommand};
use uuid::Uuid;

use super::DatabaseArgs;
use super::serve::parse_interval;
use crate::events::{DEFAULT_MAX_MESSAGE_BYTES, DecodeLimits};
use crate::ingest::parked::{Note, Resolution, ResolveFailure, resolve};
use crate::store::{Decision, ParkedAggregate, ParkedFilter, Store};

/// The longest reason an operator may record.
const REASON_MAX_CHARS: usize = 500;
const OPERATOR_MAX_CHARS: usize = 64;

#[derive(Subcommand, Debug)]
pub enum ParkedCommand {
    /// Aggregates with parked events: the version they wait for, the parked
    /// versions, their age and where they came from.
    List(ListArgs),
    /// Resolve an aggregate's gap: accept it (apply the parked events from a
    /// version on) or drop the parked events (dead-letter them).
    Resolve(ResolveArgs),
    /// The recorded decisions of operators, oldest first.
    Decisions(DecisionsArgs),
}

#[derive(Args, Debug)]
pub struct DecisionsArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[arg(long)]
    pub aggregate: Option<Uuid>,
    /// Only decisions after this id (paging).
    #[arg(long, default_value_t = 0)]
    pub after: i64,
    /// At most this many (1–1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Only aggregates whose oldest parked event waited longer than this
    /// (90s, 30m, 24h, 7d).
    #[arg(long, value_parser = parse_interval)]
    pub older_than: Option<Duration>,
    /// Only aggregates after this id (paging).
    #[arg(long)]
    pub after: Option<Uuid>,
    /// At most this many (1–1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("decision").required(true).args(["accept_from", "drop"]))]
pub struct ResolveArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[arg(long)]
    pub aggregate: Uuid,
    /// Apply the parked events from this version on, as if the versions
    /// before it had come (it must be the first parked version).
    #[arg(long)]
    pub accept_from: Option<i64>,
    /// Dead-letter every parked event of the aggregate
    /// (DROPPED_BY_OPERATOR); they can be replayed from there.
    #[arg(long)]
    pub drop: bool,
    /// Why: recorded with the decision in the event store.
    #[arg(long)]
    pub reason: String,
    /// Who decides (default: the login name).
    #[arg(long, env = "USER")]
    pub operator: Option<String>,
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(c: ParkedCommand) -> anyhow::Result<i32> {
    match c {
        ParkedCommand::List(a) => list(a).await,
        ParkedCommand::Resolve(a) => resolve_gap(a).await,
        ParkedCommand::Decisions(a) => decisions(a).await,
    }
}

async fn decisions(a: DecisionsArgs) -> anyhow::Result<i32> {
    let store = Store::connect(&a.db.database_url).await?;
    let rows = store.operator_decisions(a.aggregate, a.after, a.limit.clamp(1, 10_000)).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no decisions");
    } else {
        for r in &rows {
            let from = r.from_version.map_or(String::new(), |v| format!(" from {v}"));
            println!(
                "{:>6}  {}  {}  {}{from}: {} applied, {} dead-lettered, by {}: {}",
                r.id,
                r.decided_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                r.aggregate_id,
                r.decision,
                r.applied,
                r.dead_lettered,
                r.operator,
                r.reason
            );
        }
    }
    store.close().await;
    Ok(0)
}

async fn list(a: ListArgs) -> anyhow::Result<i32> {
    let store = Store::connect(&a.db.database_url).await?;
    let now = chrono::Utc::now();
    // An interval reaching before 1970 means "everything parked".
    let parked_before = a.older_than.map(|d| {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .map_or(chrono::DateTime::UNIX_EPOCH, |t| t.max(chrono::DateTime::UNIX_EPOCH))
    });
    let rows =
        store.parked_list(&ParkedFilter { parked_before, after: a.after, limit: a.limit.clamp(1, 10_000) }).await?;
    if a.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["age_seconds"] = (now - r.oldest_parked_at).num_seconds().into();
                v["next_in_line"] = r.next_in_line().into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("no parked events");
    } else {
        println!(
            "{:<36}  {:>11}  {:>6}  {:<20}  {:>9}  first parked from",
            "aggregate", "waiting for", "parked", "versions", "age"
        );
        for r in &rows {
            println!("{}", line(r, now));
            for (id, reason) in &r.dead_letters {
                println!("{:<36}  dead letter {id} of this aggregate: {reason}", "");
            }
        }
    }
    store.close().await;
    Ok(0)
}

fn line(r: &ParkedAggregate, now: chrono::DateTime<chrono::Utc>) -> String {
    let source = r.sources.first().map_or(String::new(), |s| format!("{}/{}@{}", s.topic, s.partition, s.offset));
    let waiting = if r.next_in_line() { format!("{} (here)", r.waiting_for) } else { r.waiting_for.to_string() };
    format!(
        "{:<36}  {:>11}  {:>6}  {:<20}  {:>9}  {source}",
        r.aggregate_id,
        waiting,
        r.parked,
        versions(r),
        age((now - r.oldest_parked_at).num_seconds())
    )
}

/// The parked versions as ranges: `5-7, 9`, with `…` when more are parked
/// than listed.
fn versions(r: &ParkedAggregate) -> String {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for s in &r.sources {
        match ranges.last_mut() {
            Some((_, hi)) if s.version <= *hi + 1 => *hi = s.version.max(*hi),
            _ => ranges.push((s.version, s.version)),
        }
    }
    let mut text: Vec<String> =
        ranges.iter().map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect();
    if (r.sources.len() as i64) < r.parked {
        text.push(format!("… {}", r.last_version));
    }
    text.join(", ")
}

fn age(seconds: i64) -> String {
    match seconds.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

async fn resolve_gap(a: ResolveArgs) -> anyhow::Result<i32> {
    let decision = match (a.accept_from, a.drop) {
        (Some(v), false) => Decision::AcceptFrom(v),
        (None, true) => Decision::Drop,
        _ => anyhow::bail!("give exactly one of --accept-from VERSION and --drop"),
    };
    let operator = a.operator.ok_or_else(|| anyhow::anyhow!("give --operator NAME (no login name is set)"))?;
    let resolution = Resolution {
        aggregate: a.aggregate,
        decision,
        reason: Note::new(&a.reason, "the reason", REASON_MAX_CHARS)?,
        operator: Note::new(&operator, "the operator name", OPERATOR_MAX_CHARS)?,
    };
    let store = Store::connect(&a.db.database_url).await?;
    let limits = DecodeLimits { max_message_bytes: a.max_message_bytes };
    let result = resolve(&store, &resolution, &limits).await;
    store.close().await;
    let done = match result {
        Ok(done) => done,
        Err(ResolveFailure::Refused(e)) => {
            eprintln!("nothing changed: {e}");
            return Ok(2);
        }
        Err(e) => return Err(e.into()),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!(
            "aggregate {}: {} applied, {} dead-lettered in {} step(s); {} still parked",
            a.aggregate, done.applied, done.dead_lettered, done.steps, done.still_parked
        );
    }
    Ok(0)
}
