//! `overblik dev`: the whole service in one process with no infrastructure.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;

use super::grpc::{GrpcArgs, dev_key_path};
use super::serve::{SUMMARY_EVERY, spawn_consumer, spawn_metrics, spawn_publisher, spawn_summary};
use super::{IngestArgs, connect_retrying, ops::print_status, stop_on_signal, stopped};
use crate::broker::EmbeddedBroker;
use crate::metrics::METRICS;
use crate::simulator::publish::{PublishSettings, publish};

/// How far the demo publisher may run ahead of the consumer, in messages:
/// well inside what the in-process broker keeps per partition.
const PUBLISH_WINDOW: u64 = 20_000;

#[derive(Args, Debug)]
pub struct DevArgs {
    /// The store: a SQLite file by default; a postgres:// URL works too.
    #[arg(long, env = "OVERBLIK_DATABASE_URL", default_value = "sqlite://overblik-dev.db")]
    pub database_url: String,
    /// How many demo messages to publish through the broker at start.
    #[arg(long, default_value_t = 20_000)]
    pub demo_events: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of malformed demo messages (0.0–1.0).
    #[arg(long, default_value_t = 0.01)]
    pub malformed_ratio: f64,
    /// Publish the demo messages, wait until every one is accounted for,
    /// print the status and exit.
    #[arg(long)]
    pub once: bool,
    /// Partitions per topic on the in-process broker.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub grpc: GrpcArgs,
}

pub async fn run(a: DevArgs) -> anyhow::Result<i32> {
    let stop = stop_on_signal();
    let mut topics = a.ingest.topics.clone();
    topics.push(a.ingest.advis_topic.clone());
    let broker = EmbeddedBroker::start(1, &topics, a.partitions)?;
    let bootstrap = broker.bootstrap_servers();
    println!("overblik dev");
    println!("  Kafka-protocol broker (in-process): {bootstrap}");
    println!("  topics: {} ({} partitions each)", a.ingest.topics.join(", "), a.partitions);
    println!("  change notices: {}", a.ingest.advis_topic);
    println!("  store: {}", a.database_url);

    let store = connect_retrying(&a.database_url, &stop).await?;
    // The in-process broker starts empty on every run: offsets stored by an
    // earlier run point into a log that no longer exists.
    store.reset_offsets(&a.ingest.topics).await?;
    let health = std::sync::Arc::new(crate::ingest::IngestHealth::default());
    let readiness = crate::metrics::Readiness {
        store: Some(store.clone()),
        ingest: Some(health.clone()),
        stall_after: a.ingest.stall_after,
    };
    spawn_metrics(a.ingest.metrics_listen, readiness).await?;

    // The dev signing key, kept beside the database so tokens outlive a restart.
    let key_path = dev_key_path(&a.database_url);
    let dev_key = crate::identity::keys::KeyFile::dev_at(&key_path)?;
    // The audit checkpoint key and directory, beside the database too.
    let audit_key_path = a.grpc.audit_key.clone().unwrap_or_else(|| super::grpc::dev_audit_key_path(&a.database_url));
    let audit_key = std::sync::Arc::new(crate::audit::checkpoint::AuditKey::dev_at(&audit_key_path)?);
    let checkpoints =
        a.grpc.audit_checkpoints.clone().unwrap_or_else(|| super::grpc::dev_checkpoints_path(&a.database_url));
    let seeded = seed_demo_agreements(&store, &audit_key).await?;
    let settings_seeded = super::borgerblikket::seed_dev_settings(&store, &audit_key).await?;
    let serving = a.grpc.serving(store.clone(), Some(&dev_key), audit_key)?;
    a.grpc.spawn_checkpointer(store.clone(), &serving, Some(&checkpoints))?;
    spawn_publisher(&a.ingest.publisher(bootstrap.clone()), store.clone(), serving.catalogue.clone(), stop.clone())?;
    let transport = crate::api::Transport::bind(&a.grpc.transport())?;
    let addr = transport.local_addr().ok_or_else(|| anyhow::anyhow!("the gRPC listener has no address"))?;
    let grpc_stop = stop.clone();
    let grpc = tokio::spawn(async move { crate::api::serve(serving, transport, stopped(grpc_stop)).await });
    println!("  gRPC: {addr} (health and reflection on)");
    println!("  dev signing key: {}", key_path.display());
    println!(
        "  audit checkpoints: {} (public key {})",
        checkpoints.display(),
        crate::audit::checkpoint::public_path(&audit_key_path).display()
    );
    if seeded > 0 {
        println!(
            "  demo agreements registered and signed: {seeded} (K53, K54, K55 and indkomst for the demo municipalities)"
        );
    }

    if settings_seeded {
        println!(
            "  Borgerblikket settings for Aarhus ({}) from catalogue/borgerblikket-dev.json",
            super::borgerblikket::DEV_AUTHORITY
        );
    }

    let mut consumer = spawn_consumer(embedded_settings(&a, &bootstrap), store.clone(), stop.clone(), health)?;

    let settings = PublishSettings {
        brokers: bootstrap.clone(),
        events: a.demo_events,
        seed: a.seed,
        malformed_ratio: a.malformed_ratio,
        rate: None,
        kafka_options: Vec::new(),
    };
    spawn_summary(stop.clone(), SUMMARY_EVERY);
    let started = Instant::now();
    let pace_stop = stop.clone();
    let report = tokio::task::spawn_blocking(move || {
        publish(&settings, |sent| {
            while sent.saturating_sub(METRICS.consumed.load(Ordering::Relaxed)) > PUBLISH_WINDOW {
                if pace_stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            !pace_stop.load(Ordering::Relaxed)
        })
    })
    .await??;
    println!("  published {} demo messages in {:.1}s", report.sent, report.seconds);

    if !a.once {
        let me = invocation();
        let db = shell_quote(&a.database_url);
        println!("ready. Publish more to the in-process broker:");
        println!("  {me} publish --brokers {bootstrap} --demo-events 5000 --seed 2");
        println!("What became of every message:");
        println!("  {me} status --database-url {db}");
        println!("Look up the demo citizen as a caseworker in Aarhus:");
        let endpoint =
            if a.grpc.grpc_listen.port() == 50051 { String::new() } else { format!(" --endpoint http://{addr}") };
        println!(
            "  {me} lookup{endpoint} --citizen {} --area sager --purpose 1 --token \"$({} token --key {} --cvr 55133018 --role 'Se sager' --sensitivity 3)\"",
            crate::simulator::stories::DEMO_CITIZEN,
            invocation_quiet(),
            shell_quote(&key_path.display().to_string()),
        );
        println!("Stop: Ctrl-C");
        // Say when the demo stream is in, while serving on.
        let (targets, store_for_wait, wait_stop) = (report.end_offsets.clone(), store.clone(), stop.clone());
        tokio::spawn(async move {
            match wait_indexed(&store_for_wait, &targets, &wait_stop).await {
                Ok(true) => {
                    let t = METRICS.totals();
                    println!(
                        "the demo stream is fully indexed: {} messages in {:.1}s ({} applied, {} duplicates, {} parked (waiting), {} dead-lettered)",
                        report.sent,
                        started.elapsed().as_secs_f64(),
                        t.applied,
                        t.duplicates,
                        t.parked,
                        t.dead_lettered
                    );
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "can't tell whether the demo stream is indexed"),
            }
        });
        let result = consumer.await.unwrap_or_else(|_| Err(anyhow::anyhow!("the consumer thread panicked")));
        stop.store(true, Ordering::SeqCst);
        let _ = grpc.await;
        store.close().await;
        return Ok(if result.is_ok() { 0 } else { 1 });
    }

    // --once: wait until the store has consumed up to the end of what was
    // published on every partition.
    let targets: BTreeMap<(String, i32), i64> = report.end_offsets.clone();
    let parts: Vec<(String, i32)> = targets.keys().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(30 * 60);
    loop {
        let stored = store.assigned_offsets(&parts).await?;
        if parts.iter().zip(&stored).all(|(p, s)| *s >= targets[p]) {
            break;
        }
        if let Ok(result) = consumer.try_recv() {
            result?;
            anyhow::bail!("the consumer stopped before every message was accounted for");
        }
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            anyhow::bail!("stopped before every message was accounted for");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let result = consumer.await.unwrap_or_else(|_| Err(anyhow::anyhow!("the consumer thread panicked")));
    result?;
    let status = store.status().await?;
    println!();
    print_status(&status);
    let committing = METRICS.batch_seconds.sum();
    let consumed = METRICS.consumed.load(Ordering::Relaxed);
    println!(
        "\n{} messages published and accounted for in {:.1}s ({:.0} messages/s end to end)",
        report.sent,
        elapsed,
        report.sent as f64 / elapsed.max(1e-9)
    );
    println!(
        "ingest: {consumed} messages in {} batches, {:.1}s committing ({:.0} messages/s through decode, projection and the store)",
        METRICS.batches.load(Ordering::Relaxed),
        committing,
        consumed as f64 / committing.max(1e-9)
    );
    let _ = grpc.await;
    store.close().await;
    drop(broker);
    Ok(0)
}

/// The consumer's settings against the in-process broker: a short fetch
/// wait (see [`crate::config::EMBEDDED_FETCH_WAIT_MS`]) unless the command
/// line sets one.
fn embedded_settings(a: &DevArgs, bootstrap: &str) -> crate::ingest::IngestSettings {
    let mut settings = a.ingest.settings(bootstrap.to_string(), "overblik-dev".into());
    let wait = ("fetch.wait.max.ms".to_string(), crate::config::EMBEDDED_FETCH_WAIT_MS.to_string());
    settings.kafka_options.insert(0, wait);
    settings
}

/// Waits until the store has consumed up to `targets` on every partition;
/// `false` if told to stop first.
async fn wait_indexed(
    store: &crate::store::Store,
    targets: &BTreeMap<(String, i32), i64>,
    stop: &crate::ingest::StopFlag,
) -> anyhow::Result<bool> {
    let parts: Vec<(String, i32)> = targets.keys().cloned().collect();
    loop {
        let stored = store.assigned_offsets(&parts).await?;
        if parts.iter().zip(&stored).all(|(p, s)| *s >= targets[p]) {
            return Ok(true);
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How to run this binary again, as the person who started it would:
/// `cargo run --release --` when started through cargo, else the binary by
/// name if it is the one on the PATH, else by its path.
fn invocation() -> String {
    invocation_with("cargo run --release --")
}

/// The same, quiet, for inside `$(…)`.
fn invocation_quiet() -> String {
    invocation_with("cargo run -q --release --")
}

fn invocation_with(cargo: &str) -> String {
    let exe = std::env::current_exe().ok();
    if std::env::var_os("CARGO").is_some() && std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        let profile_dir = exe.as_ref().and_then(|e| e.parent()).and_then(|d| d.file_name());
        // A debug build was started with plain `cargo run`.
        return if profile_dir.is_some_and(|d| d == "debug") {
            cargo.replace(" --release", "")
        } else {
            cargo.to_string()
        };
    }
    let Some(exe) = exe else { return "overblik".into() };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| d.join("overblik").canonicalize().ok() == exe.canonicalize().ok())
    });
    if on_path { "overblik".into() } else { shell_quote(&exe.display().to_string()) }
}

/// `s` quoted for a POSIX shell, when it needs it.
fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:=@+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Registers and signs the demo agreements (once): for each demo
/// municipality K53 (forskudsopgørelse, sygedagpenge), K54
/// (personkontroloplysninger, kontrol), K55 (digital logbog) and broad income
/// access. K55 ends at the end of this year, so it shows as lapsing.
async fn seed_demo_agreements(
    store: &crate::store::Store,
    key: &crate::audit::checkpoint::AuditKey,
) -> anyhow::Result<usize> {
    use crate::agreements::{Agreement, Proposal, Status};
    use crate::domain::{Cvr, DataArea, parse_date};
    let catalogue = crate::catalogue::Catalogue::built_in();
    let this_year = chrono::Datelike::year(&crate::domain::copenhagen_today(chrono::Utc::now()));
    let from = parse_date(&format!("{}-01-01", this_year - 1)).expect("a date");
    let later = parse_date(&format!("{}-01-01", this_year + 2)).expect("a date");
    let new_year = parse_date(&format!("{}-01-01", this_year + 1)).expect("a date");
    let plans: [(DataArea, u32, Option<&str>, &str, chrono::NaiveDate); 6] = [
        (DataArea::Forskudsopgoerelse, 1, Some("K53"), "Lov om sygedagpenge § 11", later),
        (
            DataArea::Personkontroloplysninger,
            1,
            Some("K54"),
            "Lov om retssikkerhed og administration på det sociale område § 11 c",
            later,
        ),
        (DataArea::DigitalLogbog, 1, Some("K55"), "Skattekontrolloven § 60", new_year),
        (DataArea::Indkomst, 272, None, "Indkomstregisterloven § 7", later),
        (DataArea::SelvstaendigVirksomhed, 1, None, "Skatteindberetningsloven § 55", later),
        (DataArea::Pensionsrettigheder, 1, None, "Lov om social pension § 45", later),
    ];
    let mut seeded = 0;
    for m in crate::simulator::stories::MUNICIPALITIES {
        for (area, purpose, klik, basis, to) in &plans {
            let id = format!("{}{}-{}-{}", crate::agreements::ID_PREFIX, m.cvr, area, purpose);
            if store.agreement(m.cvr, &id).await?.is_some() {
                continue;
            }
            let cvr = Cvr::parse(m.cvr).expect("demo CVR");
            let proposal = Proposal {
                id: &id,
                authority: cvr,
                area: *area,
                purpose_id: *purpose,
                legal_basis: basis,
                klik_task: *klik,
                valid_from: from,
                valid_to: *to,
                registered_by: "overblik-dev",
            };
            let a = Agreement::request(&catalogue, proposal)?;
            store.record_agreement(&a, None, &super::agreements::cli_entry("dev seed", &a), Some(key)).await?;
            // Signed by a second demo identity: signing is four-eyes.
            let signed = a.sign("overblik-dev-signer", chrono::Utc::now())?;
            let entry = super::agreements::cli_entry("dev seed", &signed);
            store.record_agreement(&signed, Some(Status::Requested), &entry, Some(key)).await?;
            seeded += 1;
        }
    }
    Ok(seeded)
}
