//! `overblik loadtest`: fill a store with a synthetic population, and drive
//! citizen-overview lookups against a running service at a fixed rate. The
//! audit log's fill and the data-protection officer's reads are in
//! `auditload`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use super::serve::parse_interval;
use super::{DatabaseArgs, connect_retrying, stop_on_signal};
use crate::proto as pb;
use crate::proto::overblik_client::OverblikClient;
use crate::simulator::Rng;
use crate::simulator::population::{MAX_CITIZENS, cpr, municipality};

#[derive(Subcommand, Debug)]
pub enum LoadtestCommand {
    /// Fill a store with a synthetic population, straight through the
    /// projector (no Kafka): the index the overview run looks citizens up in.
    Populate(PopulateArgs),
    /// Drive citizen-overview lookups at a fixed rate; print throughput and
    /// latency percentiles.
    Overview(OverviewArgs),
    /// Kill a projector with SIGKILL and restart it, repeatedly; print how
    /// long each restart took to apply again.
    Resume(super::resume::ResumeArgs),
    /// Publish at a fixed rate and measure, per sampled event, the time
    /// from publish to visible through a gRPC lookup.
    Freshness(super::freshness::FreshnessArgs),
    /// Append millions of realistic records to the audit log through the
    /// store's own append path, with checkpoints: the log the
    /// data-protection officer's calls are measured over.
    AuditFill(super::auditload::AuditFillArgs),
    /// Run the data-protection officer's calls (verify, export, query,
    /// alarms, art. 15 report) against a running service, every page, and
    /// sample the service's resident memory during each.
    AuditRead(super::auditload::AuditReadArgs),
}

#[derive(Args, Debug)]
pub struct PopulateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// How many citizens (each with one to three stories).
    #[arg(long, default_value_t = 1_000_000)]
    pub citizens: usize,
    /// Start at this citizen (to continue an interrupted load).
    #[arg(long, default_value_t = 0)]
    pub first: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent write transactions.
    #[arg(long, default_value_t = 2)]
    pub writers: usize,
}

#[derive(Args, Debug)]
pub struct OverviewArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// A caseworker token with the roles of sager, ydelser, udk_sager and
    /// udk_ydelser (see BENCHMARKS.md for the `overblik token` command).
    #[arg(long, env = "OVERBLIK_TOKEN")]
    pub token: String,
    /// Look up citizens drawn uniformly from the first N of the population.
    #[arg(long, default_value_t = 1_000_000)]
    pub citizens: usize,
    /// Only citizens living in this municipality (CVR), as a caseworker
    /// there would look up; all citizens when absent.
    #[arg(long)]
    pub resident_of: Option<String>,
    /// Lookups per second, sent on schedule whether or not earlier ones
    /// have answered.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// How long to measure, e.g. 60s or 5m.
    #[arg(long, value_parser = parse_interval, default_value = "60s")]
    pub duration: Duration,
    /// How long to run before measuring.
    #[arg(long, value_parser = parse_interval, default_value = "10s")]
    pub warmup: Duration,
    /// HTTP/2 connections to spread the lookups over.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Lookups outstanding at most; a lookup due while this many are
    /// outstanding is not sent and counted as dropped.
    #[arg(long, default_value_t = 2000)]
    pub max_in_flight: usize,
    /// The seed the population was loaded with (it decides where citizens
    /// live), which also seeds the choice of citizens.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(c: LoadtestCommand) -> anyhow::Result<i32> {
    match c {
        LoadtestCommand::Populate(a) => populate(a).await,
        LoadtestCommand::Overview(a) => overview(a).await,
        LoadtestCommand::Resume(a) => super::resume::run(a).await,
        LoadtestCommand::Freshness(a) => super::freshness::run(a).await,
        LoadtestCommand::AuditFill(a) => super::auditload::fill(a).await,
        LoadtestCommand::AuditRead(a) => super::auditload::read(a).await,
    }
}

async fn populate(a: PopulateArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(a.citizens <= MAX_CITIZENS, "at most {MAX_CITIZENS} citizens");
    let stop = stop_on_signal();
    let store = connect_retrying(&a.db.database_url, &stop).await?;
    let started = Instant::now();
    let mut last = Instant::now();
    let todo = a.citizens.saturating_sub(a.first);
    let result = crate::ingest::population::load(&store, a.seed, a.first..a.citizens, a.writers, &stop, |l| {
        if last.elapsed() >= Duration::from_secs(10) || l.citizens == todo {
            last = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{:>9} of {todo} citizens, {:>10} events applied, {:>8.0} events/s",
                l.citizens,
                l.counts.applied,
                l.counts.consumed() as f64 / secs.max(1e-9)
            );
        }
    })
    .await;
    let loaded = match result {
        Ok(l) => l,
        Err(e) => {
            store.close().await;
            return Err(anyhow::anyhow!(e).context("loading the population failed; what committed stays"));
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let c = &loaded.counts;
    println!(
        "loaded {} citizens from {} in {secs:.0}s: {} events applied, {} duplicates, {} parked, {} dead-lettered ({:.0} events/s)",
        loaded.citizens,
        a.first,
        c.applied,
        c.duplicates,
        c.parked,
        c.dead_lettered,
        c.consumed() as f64 / secs.max(1e-9)
    );
    store.close().await;
    let interrupted = stop.load(Ordering::Relaxed) && loaded.citizens < todo;
    if interrupted {
        eprintln!("interrupted: continue with --first {}", loaded.done_until);
    }
    Ok(if interrupted || c.parked + c.dead_lettered > 0 { 1 } else { 0 })
}

/// The areas an overview reads, each with purpose 1 (casework).
fn overview_request(citizen: String) -> pb::CitizenOverviewRequest {
    let purpose = |area: &str| pb::AreaPurpose { data_area: area.into(), purpose_ids: vec![1] };
    pb::CitizenOverviewRequest {
        citizen,
        purposes: vec![purpose("sager"), purpose("ydelser"), purpose("udk_sager"), purpose("udk_ydelser")],
    }
}

/// Outcomes of the measured lookups.
#[derive(Default)]
struct Tally {
    /// Microseconds from sending to the answer.
    service_us: Vec<u32>,
    /// Microseconds from when the lookup was due to the answer: includes
    /// any delay in sending it.
    scheduled_us: Vec<u32>,
    rows: u64,
    failures: BTreeMap<String, u64>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    f64::from(sorted[rank.min(sorted.len()) - 1]) / 1000.0
}

async fn overview(a: OverviewArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(a.rate > 0 && a.citizens > 0, "--rate and --citizens must be positive");
    anyhow::ensure!(a.citizens <= MAX_CITIZENS, "at most {MAX_CITIZENS} citizens");
    if let Some(cvr) = &a.resident_of {
        let known = crate::simulator::stories::MUNICIPALITIES.iter().map(|m| m.cvr).collect::<Vec<_>>();
        anyhow::ensure!(known.contains(&cvr.as_str()), "--resident-of: the population's municipalities are {known:?}");
    }
    let measured = a.rate.saturating_mul(a.duration.as_secs().max(1));
    anyhow::ensure!(measured <= 50_000_000, "--rate × --duration is more than 50 million lookups");
    let auth: MetadataValue<_> = format!("Bearer {}", a.token).parse()?;
    let mut clients = Vec::new();
    for _ in 0..a.connections.max(1) {
        let channel: Channel = Endpoint::from_shared(a.endpoint.clone())?.tcp_nodelay(true).connect().await?;
        clients.push(OverblikClient::new(channel));
    }
    // One lookup first, so a bad token or an empty store says so at once.
    let mut probe = tonic::Request::new(overview_request(cpr(0).urn()));
    probe.metadata_mut().insert("authorization", auth.clone());
    clients[0].get_citizen_overview(probe).await.map_err(|s| anyhow::anyhow!("the first lookup failed: {s}"))?;

    let tally = Arc::new(Mutex::new(Tally {
        service_us: Vec::with_capacity(measured as usize),
        scheduled_us: Vec::with_capacity(measured as usize),
        ..Default::default()
    }));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(a.max_in_flight.max(1)));
    let dropped = Arc::new(AtomicU64::new(0));
    let mut rng = Rng::new(a.seed);
    let period = Duration::from_secs_f64(1.0 / a.rate as f64);
    let total = a.rate.saturating_mul((a.warmup + a.duration).as_secs().max(1));
    let warmup_lookups = a.rate.saturating_mul(a.warmup.as_secs());
    let start = Instant::now();
    let mut measure_start = None;
    let mut k: u64 = 0;
    while k < total {
        let due = start + period.mul_f64(k as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        // Send everything that is due, then sleep again.
        let now = Instant::now();
        while k < total && start + period.mul_f64(k as f64) <= now {
            let due = start + period.mul_f64(k as f64);
            let measuring = k >= warmup_lookups;
            if measuring && measure_start.is_none() {
                measure_start = Some(due);
            }
            k += 1;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                if measuring {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            };
            let i = loop {
                let i = rng.range(0, a.citizens as i64 - 1) as usize;
                if a.resident_of.as_deref().is_none_or(|cvr| municipality(a.seed, i).cvr == cvr) {
                    break i;
                }
            };
            let mut req = tonic::Request::new(overview_request(cpr(i).urn()));
            req.metadata_mut().insert("authorization", auth.clone());
            let mut client = clients[(k as usize) % clients.len()].clone();
            let tally = tally.clone();
            tokio::spawn(async move {
                let sent = Instant::now();
                let result = client.get_citizen_overview(req).await;
                let done = Instant::now();
                drop(permit);
                if !measuring {
                    return;
                }
                let micros = |d: Duration| d.as_micros().min(u128::from(u32::MAX)) as u32;
                let mut t = tally.lock().expect("tally");
                match result {
                    Ok(r) => {
                        t.service_us.push(micros(done - sent));
                        t.scheduled_us.push(micros(done - due));
                        t.rows += r
                            .get_ref()
                            .sections
                            .iter()
                            .map(|s| {
                                (s.cases.len()
                                    + s.grants.len()
                                    + s.payments.len()
                                    + s.udk_cases.len()
                                    + s.udk_benefits.len()) as u64
                            })
                            .sum::<u64>();
                    }
                    Err(s) => *t.failures.entry(format!("{:?}", s.code())).or_default() += 1,
                }
            });
        }
    }
    // Wait for the stragglers.
    let _all = in_flight.acquire_many(a.max_in_flight.max(1) as u32).await?;
    let elapsed = measure_start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let mut t = std::mem::take(&mut *tally.lock().expect("tally"));
    t.service_us.sort_unstable();
    t.scheduled_us.sort_unstable();
    let ok = t.service_us.len() as u64;
    let failed: u64 = t.failures.values().sum();
    let dropped = dropped.load(Ordering::Relaxed);
    let report = serde_json::json!({
        "rate_target": a.rate,
        "seconds": (elapsed * 10.0).round() / 10.0,
        "lookups_ok": ok,
        "lookups_failed": t.failures,
        "lookups_dropped": dropped,
        "throughput_per_s": (ok as f64 / elapsed.max(1e-9)).round(),
        "rows_per_lookup": if ok > 0 { (t.rows as f64 / ok as f64 * 10.0).round() / 10.0 } else { 0.0 },
        "latency_ms": {
            "p50": percentile(&t.service_us, 50.0),
            "p90": percentile(&t.service_us, 90.0),
            "p99": percentile(&t.service_us, 99.0),
            "p99_9": percentile(&t.service_us, 99.9),
            "max": percentile(&t.service_us, 100.0),
        },
        "latency_from_schedule_ms": {
            "p50": percentile(&t.scheduled_us, 50.0),
            "p99": percentile(&t.scheduled_us, 99.0),
            "max": percentile(&t.scheduled_us, 100.0),
        },
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let l = &report["latency_ms"];
        let s = &report["latency_from_schedule_ms"];
        println!(
            "{ok} lookups in {elapsed:.1}s ({} /s, target {}), {failed} failed, {dropped} dropped, {} rows per lookup",
            report["throughput_per_s"], a.rate, report["rows_per_lookup"]
        );
        println!(
            "latency ms: p50 {} p90 {} p99 {} p99.9 {} max {}",
            l["p50"], l["p90"], l["p99"], l["p99_9"], l["max"]
        );
        println!("from schedule ms: p50 {} p99 {} max {}", s["p50"], s["p99"], s["max"]);
        for (code, n) in &t.failures {
            println!("failed: {code} × {n}");
        }
    }
    Ok(if failed + dropped > 0 { 1 } else { 0 })
}
