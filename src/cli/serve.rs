//! `overblik serve`: the production process.

use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;

use super::grpc::GrpcArgs;
use super::{DatabaseArgs, IngestArgs, RetentionArgs, connect_retrying, stop_on_signal, stopped};
use std::sync::Arc;

use crate::ingest::{IngestHealth, IngestSettings, StopFlag};
use crate::metrics::Readiness;
use crate::store::Store;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Kafka bootstrap servers. Without them the instance only serves
    /// lookups (a stateless reader).
    #[arg(long, env = "OVERBLIK_BROKERS")]
    pub brokers: Option<String>,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Consumer group; instances in one group share the partitions.
    #[arg(long, default_value = "overblik")]
    pub group: String,
    #[command(flatten)]
    pub ingest: IngestArgs,
    /// Run the retention sweep this often, e.g. 24h (off when absent).
    #[arg(long, value_parser = parse_interval)]
    pub retention_interval: Option<Duration>,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub grpc: GrpcArgs,
    /// Don't serve gRPC (an ingest-only instance).
    #[arg(long)]
    pub no_grpc: bool,
    /// Also trust the development key in this file. Never in production.
    #[arg(long)]
    pub accept_dev_key: Option<std::path::PathBuf>,
    /// Start even if the database role could rewrite the audit log (it
    /// owns it, or may update, delete or truncate it). For development;
    /// in production serve runs as a role made by `overblik migrate
    /// --runtime-role`.
    #[arg(long)]
    pub allow_owner_role: bool,
}

/// How often `serve` and `dev` log the summary line while ingest moves.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(5);

pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not an interval like 90s, 30m, 24h or 7d");
    let (at, _) = s.char_indices().last().ok_or_else(bad)?;
    let (n, unit) = s.split_at(at);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(per).ok_or_else(bad)?;
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}

/// Starts the consumer on a thread of its own; the receiver yields its
/// result when it stops.
pub fn spawn_consumer(
    settings: IngestSettings,
    store: Store,
    stop: StopFlag,
    health: Arc<IngestHealth>,
) -> anyhow::Result<tokio::sync::oneshot::Receiver<anyhow::Result<()>>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Handle::current();
    std::thread::Builder::new().name("overblik-consumer".into()).spawn(move || {
        let result = crate::ingest::run(settings, store, rt, stop.clone(), health);
        stop.store(true, Ordering::SeqCst);
        let _ = tx.send(result);
    })?;
    Ok(rx)
}

/// Starts the change-notice publisher (the outbox to the notice topic)
/// as a background task until `stop`.
pub fn spawn_publisher(
    settings: &crate::advis::publisher::PublisherSettings,
    store: Store,
    catalogue: crate::catalogue::Catalogue,
    stop: StopFlag,
) -> anyhow::Result<()> {
    let publisher = crate::advis::publisher::Publisher::new(settings, store, catalogue)?;
    tokio::spawn(crate::advis::publisher::run(publisher, stop));
    Ok(())
}

/// Logs the operator's summary line every `every` while messages flow.
pub fn spawn_summary(stop: StopFlag, every: Duration) {
    tokio::spawn(async move {
        let mut before = crate::metrics::METRICS.totals();
        let mut at = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(every).await;
            let now = crate::metrics::METRICS.totals();
            if let Some(line) = crate::metrics::summary_line(&before, &now, at.elapsed().as_secs_f64()) {
                tracing::info!("{line}");
            }
            (before, at) = (now, std::time::Instant::now());
        }
    });
}

/// Serves metrics, liveness and readiness on `addr`, if given.
pub async fn spawn_metrics(addr: Option<std::net::SocketAddr>, readiness: Readiness) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        let listener =
            crate::metrics::bind(addr).await.map_err(|e| anyhow::anyhow!("metrics listener on {addr}: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, readiness).await {
                tracing::error!(error = %e, %addr, "metrics listener failed");
            }
        });
    }
    Ok(())
}

pub async fn run(a: ServeArgs) -> anyhow::Result<i32> {
    if a.brokers.is_none() && a.no_grpc {
        anyhow::bail!("nothing to run: give --brokers to ingest, or leave out --no-grpc to serve");
    }
    let stop = stop_on_signal();
    let store = connect_retrying(&a.db.database_url, &stop).await?;
    let rights = store.audit_rewrite_rights().await?;
    if !rights.is_empty() {
        if !a.allow_owner_role {
            anyhow::bail!(
                "refusing to serve: {}. Run serve as a role that can only read and append to the audit log \
                 (overblik migrate --runtime-role NAME, as the owner), or give --allow-owner-role for development",
                rights.join("; ")
            );
        }
        tracing::warn!(
            why = rights.join("; "),
            "serving as a role that could rewrite the audit log (--allow-owner-role)"
        );
    }
    let health = Arc::new(IngestHealth::default());
    let readiness = Readiness {
        store: Some(store.clone()),
        ingest: a.brokers.as_ref().map(|_| health.clone()),
        stall_after: a.ingest.stall_after,
    };
    spawn_metrics(a.ingest.metrics_listen, readiness).await?;
    let grpc = if a.no_grpc {
        None
    } else {
        let dev_key = a.accept_dev_key.as_deref().map(crate::identity::keys::KeyFile::load).transpose()?;
        let transport = crate::api::Transport::bind(&a.grpc.transport())?;
        let audit_key = match &a.grpc.audit_key {
            Some(path) => std::sync::Arc::new(crate::audit::checkpoint::AuditKey::load(path)?),
            None => anyhow::bail!(
                "an instance that serves gRPC writes the audit log and needs its key: give --audit-key (overblik audit keygen makes one)"
            ),
        };
        let serving = a.grpc.serving(store.clone(), dev_key.as_ref(), audit_key)?;
        a.grpc.spawn_checkpointer(store.clone(), &serving, a.grpc.audit_checkpoints.as_deref())?;
        let stop = stop.clone();
        Some(tokio::spawn(async move {
            let result = crate::api::serve(serving, transport, stopped(stop.clone())).await;
            stop.store(true, Ordering::SeqCst);
            result
        }))
    };
    if let Some(brokers) = &a.brokers {
        spawn_summary(stop.clone(), SUMMARY_EVERY);
        // Every instance that ingests publishes the notices its store holds.
        let catalogue = a.grpc.load_catalogue()?;
        spawn_publisher(&a.ingest.publisher(brokers.clone()), store.clone(), catalogue, stop.clone())?;
    }
    let consumer = match &a.brokers {
        Some(brokers) => Some(spawn_consumer(
            a.ingest.settings(brokers.clone(), a.group.clone()),
            store.clone(),
            stop.clone(),
            health,
        )?),
        None => None,
    };
    if let Some(every) = a.retention_interval {
        let (store, stop, rules) = (store.clone(), stop.clone(), a.retention.rules());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let today = crate::domain::copenhagen_today(chrono::Utc::now());
                if let Err(e) = crate::retention::sweep(&store, &rules, today).await {
                    tracing::warn!(error = %e, "retention sweep failed; next attempt at the next interval");
                }
                let until = tokio::time::Instant::now() + every;
                while tokio::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        });
    }
    let mut failed = false;
    match consumer {
        Some(consumer) => {
            let result = consumer.await.unwrap_or_else(|_| Err(anyhow::anyhow!("the consumer thread panicked")));
            if let Err(e) = result {
                tracing::error!(error = format!("{e:#}"), "ingest stopped");
                failed = true;
            }
        }
        // A reader only: serve until told to stop (or the server fails).
        None => stopped(stop.clone()).await,
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(grpc) = grpc {
        match grpc.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = format!("{e:#}"), "gRPC stopped");
                failed = true;
            }
            Err(_) => failed = true,
        }
    }
    store.close().await;
    Ok(if failed { 1 } else { 0 })
}
