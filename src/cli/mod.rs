//! The command line: thin edges around the library, reporting with `anyhow`.

mod agreements;
mod audit;
mod auditload;
mod borgerblikket;
mod dev;
mod freshness;
mod grpc;
mod loadtest;
mod lookup;
mod ops;
mod parked;
mod resume;
mod serve;
mod service_agreements;
mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config;

use crate::events::{DEFAULT_MAX_MESSAGE_BYTES, DecodeLimits};
use crate::ingest::{IngestSettings, StopFlag};
use crate::retention::{Deadline, RetentionRules};
use crate::store::{Store, StoreError};
/// The dev default Borgerblikket settings document.
pub use borgerblikket::DEV_SETTINGS as DEV_BORGERBLIKKET_SETTINGS;

#[derive(Parser, Debug)]
#[command(
    name = "overblik",
    version,
    about = "Cross-authority case and benefit index: Kafka ingest, event store and read models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Everything in one process with no infrastructure: an in-process
    /// Kafka-protocol broker, a SQLite store, the projector and a demo stream.
    Dev(dev::DevArgs),
    /// Consume real Kafka into PostgreSQL (or SQLite); many instances may
    /// share a consumer group.
    Serve(serve::ServeArgs),
    /// Create or update the database schema (run as its owner), and grant
    /// the service's own role what it needs.
    Migrate(ops::MigrateArgs),
    /// Publish the deterministic demo stream to a Kafka cluster.
    Publish(ops::PublishArgs),
    /// Offsets, disposition counts and projection sizes.
    Status(ops::StatusArgs),
    /// List or replay dead letters.
    #[command(subcommand)]
    Deadletters(ops::DeadLetterCommand),
    /// List parked events; resolve a gap that will not close.
    #[command(subcommand)]
    Parked(parked::ParkedCommand),
    /// Rebuild every projection from the event store, blue/green.
    Rebuild(ops::RebuildArgs),
    /// The retention sweep.
    #[command(subcommand)]
    Retention(ops::RetentionCommand),
    /// Mint a bearer token with the development key.
    Token(token::TokenArgs),
    /// Look up one data area of a citizen over gRPC (exit 3 when denied).
    Lookup(lookup::LookupArgs),
    /// Register, sign, revoke and list data-exchange agreements.
    #[command(subcommand)]
    Agreements(agreements::AgreementsCommand),
    /// Request, approve, reject, revoke, list and review IT systems' service
    /// agreements.
    #[command(subcommand)]
    ServiceAgreements(service_agreements::ServiceAgreementsCommand),
    /// Verify, query and report from the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// An authority's Borgerblikket settings and its citizens' call counts.
    #[command(subcommand)]
    Borgerblikket(borgerblikket::BorgerblikketCommand),
    /// Load runs: fill a store with a synthetic population; drive lookups.
    #[command(subcommand)]
    Loadtest(loadtest::LoadtestCommand),
}

impl Command {
    /// Commands that print and end, as opposed to those that serve.
    pub fn only_prints(&self) -> bool {
        !matches!(self, Command::Dev(_) | Command::Serve(_) | Command::Publish(_) | Command::Loadtest(_))
    }
}

#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// postgres://… or sqlite://path
    #[arg(long, env = "OVERBLIK_DATABASE_URL")]
    pub database_url: String,
}

/// How the consumer batches and decodes.
#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    /// Topics to consume, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = config::DEFAULT_TOPICS.map(String::from))]
    pub topics: Vec<String>,
    /// Largest batch (messages per transaction).
    #[arg(long, default_value_t = config::DEFAULT_BATCH_MAX)]
    pub batch_max: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, default_value_t = config::DEFAULT_BATCH_LINGER_MS)]
    pub batch_linger_ms: u64,
    /// Messages larger than this are dead-lettered.
    #[arg(long, default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Extra librdkafka setting, KEY=VALUE (repeatable).
    #[arg(long = "kafka-option", value_parser = parse_key_value)]
    pub kafka_options: Vec<(String, String)>,
    /// Serve Prometheus metrics, /healthz and /readyz on this address.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// A stable name for this instance (e.g. the host or pod name), unique
    /// in the group: static group membership, so a restarted instance gets
    /// its partitions back at once. A crashed named instance's partitions
    /// wait for it for the session timeout instead of moving to others.
    #[arg(long, env = "OVERBLIK_INSTANCE_NAME")]
    pub instance_name: Option<String>,
    /// /readyz fails when an assigned partition has had a batch pending,
    /// or the consumer has not polled, for longer than this (e.g. 60s).
    #[arg(long, default_value = "60s", value_parser = serve::parse_interval)]
    pub stall_after: Duration,
    /// The topic change notices are published to (CloudEvents).
    #[arg(long, default_value = config::TOPIC_ADVIS)]
    pub advis_topic: String,
}

impl IngestArgs {
    pub fn settings(&self, brokers: String, group: String) -> IngestSettings {
        IngestSettings {
            brokers,
            group,
            topics: self.topics.clone(),
            batch_max: self.batch_max.max(1),
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            limits: DecodeLimits { max_message_bytes: self.max_message_bytes },
            kafka_options: self.kafka_options.clone(),
            instance: self.instance_name.clone(),
        }
    }

    /// The notice publisher's settings: the same brokers and client
    /// options as the consumer's.
    pub fn publisher(&self, brokers: String) -> crate::advis::publisher::PublisherSettings {
        crate::advis::publisher::PublisherSettings {
            brokers,
            topic: self.advis_topic.clone(),
            kafka_options: self.kafka_options.clone(),
        }
    }
}

/// Deletion deadlines for the retention sweep.
#[derive(Args, Debug, Clone)]
pub struct RetentionArgs {
    /// Deadline after a case closed, unless a rule matches: 5y, 60m or 1825d.
    #[arg(long = "retention-default", default_value = "5y", value_parser = Deadline::parse)]
    pub default: Deadline,
    /// KLE-prefix rule, PREFIX=DEADLINE, e.g. 32.03=10y (repeatable; longest prefix wins).
    #[arg(long = "retention-rule", value_parser = RetentionRules::parse_rule)]
    pub rules: Vec<(String, Deadline)>,
}

impl RetentionArgs {
    pub fn rules(&self) -> RetentionRules {
        RetentionRules { default: self.default, rules: self.rules.clone() }
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// An audit entry for something done at the command line: the operator is
/// the shell's user, the call the command.
pub fn operator_entry(kind: crate::audit::Kind, search: crate::audit::Search) -> crate::audit::Entry {
    use crate::audit::{Actor, Entry, Text, TransactionId};
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Entry::new(
        TransactionId::generate(),
        uuid::Uuid::new_v4(),
        kind,
        Actor::Operator { user: Text::new(&user) },
        search,
    )
}

pub fn read_file(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
}

/// Resolves once `stop` is set (for servers that take a shutdown future).
pub async fn stopped(stop: StopFlag) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stop flag set by SIGINT or SIGTERM.
///
/// The handlers are registered before this returns, not when the waiting
/// task first runs: a signal that comes while the process is starting then
/// stops it gracefully instead of killing it outright.
pub fn stop_on_signal() -> StopFlag {
    use tokio::signal::unix::{SignalKind, signal};
    let stop: StopFlag = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let registered = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    tokio::spawn(async move {
        match registered {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        tracing::info!("stopping on signal");
        flag.store(true, Ordering::SeqCst);
    });
    stop
}

/// Connects to the store, retrying while it is unavailable (a service
/// starting before its database must not crash-loop) unless `stop` is set.
pub async fn connect_retrying(url: &str, stop: &StopFlag) -> anyhow::Result<Store> {
    let mut backoff = crate::ingest::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match Store::connect(url).await {
            Ok(s) => return Ok(s),
            Err(e @ StoreError::Unavailable(_)) if !stop.load(Ordering::Relaxed) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "store unavailable");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("connecting to the store")),
        }
    }
}

/// Runs a command; the exit code is the process's.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Dev(a) => dev::run(a).await,
        Command::Serve(a) => serve::run(a).await,
        Command::Publish(a) => ops::publish(a).await,
        Command::Status(a) => ops::status(a).await,
        Command::Migrate(a) => ops::migrate(a).await,
        Command::Deadletters(c) => ops::dead_letters(c).await,
        Command::Parked(c) => parked::run(c).await,
        Command::Rebuild(a) => ops::rebuild(a).await,
        Command::Retention(c) => ops::retention(c).await,
        Command::Token(a) => token::run(a),
        Command::Lookup(a) => lookup::run(a).await,
        Command::Agreements(c) => agreements::run(c).await,
        Command::ServiceAgreements(c) => service_agreements::run(c).await,
        Command::Audit(c) => audit::run(c).await,
        Command::Borgerblikket(c) => borgerblikket::run(c).await,
        Command::Loadtest(c) => loadtest::run(c).await,
    }
}
