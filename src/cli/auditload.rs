//! `overblik loadtest audit-fill` and `loadtest audit-read`: an audit log of
//! millions of records, and a data-protection officer reading it through
//! the Audit service, to show that the officer's calls run in bounded
//! memory whatever the log's size.
//!
//! The fill goes through the store's own append (chain, hashes, MACs under
//! the audit key) and, given a directory, the checkpointer the service
//! runs, so the log it leaves is one `audit verify` accepts.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use tonic::metadata::MetadataValue;
use tonic::transport::Endpoint;

use super::DatabaseArgs;
use crate::access::DenyReason;
use crate::audit::checkpoint::Sink;
use crate::audit::checkpointer;
use crate::audit::writer::Appended;
use crate::audit::{Actor, AlarmKind, Entry, Kind, Recorded, Search, Text, TransactionId};
use crate::domain::{Cvr, DataArea};
use crate::proto as pb;
use crate::proto::audit_client::AuditClient;
use crate::simulator::Rng;
use crate::simulator::population::{MAX_CITIZENS, cpr};
use crate::simulator::stories::MUNICIPALITIES;

#[derive(Args, Debug)]
pub struct AuditFillArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub key: super::grpc::AuditKeyArgs,
    /// Append to a log that already holds records. The synthetic records
    /// can never be removed from an append-only log, so by default only an
    /// empty one (a database made for the load run) is filled.
    #[arg(long)]
    pub into_existing_log: bool,
    /// Records to append (four per simulated overview, plus the parties
    /// its cases disclosed).
    #[arg(long, default_value_t = 5_000_000)]
    pub records: u64,
    /// Make signed checkpoints into this directory while filling, as
    /// `serve --audit-checkpoints` does; none when absent.
    #[arg(long)]
    pub audit_checkpoints: Option<PathBuf>,
    /// Records per checkpoint at most.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub checkpoint_every: u64,
    /// The first N municipalities of the synthetic population look
    /// citizens up.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=10))]
    pub authorities: u64,
    /// Caseworkers per authority.
    #[arg(long, default_value_t = 300)]
    pub users: u64,
    /// Citizens are drawn from the first N of the population (one in
    /// twenty lookups from the first 100, so some citizens have long
    /// art. 15 reports).
    #[arg(long, default_value_t = 1_000_000)]
    pub citizens: usize,
    /// Records per append (one transaction, one timestamp).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    pub batch: u64,
    /// The records' times are spread evenly over this many days up to now.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct AuditReadArgs {
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// A token with the role Databeskyttelsesrådgiver (or the national
    /// supervisory role).
    #[arg(long, env = "OVERBLIK_TOKEN")]
    pub token: String,
    /// The service's process id: its resident memory is sampled during
    /// each call (Linux, /proc).
    #[arg(long)]
    pub service_pid: Option<u32>,
    /// The citizen whose art. 15 report is read (CPR or party URN).
    #[arg(long, default_value = "0101000000")]
    pub citizen: String,
    /// The calls to make, in order: verify, export, query, alarms, report.
    #[arg(long, value_delimiter = ',', default_value = "verify,export,query,alarms,report")]
    pub calls: Vec<DpoCall>,
    /// Page size of the paged calls (the service allows at most 1,000).
    #[arg(long, default_value_t = 1000)]
    pub page_size: u32,
    /// Stop paging a call after this many pages.
    #[arg(long, default_value_t = 100_000)]
    pub max_pages: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DpoCall {
    Verify,
    Export,
    Query,
    Alarms,
    Report,
}

/// Who looks up whom.
struct Mix {
    cvrs: Vec<Cvr>,
    users: u64,
    citizens: usize,
}

/// The areas an overview reads, each with purpose 1 (casework).
const AREAS: [DataArea; 4] = [DataArea::Sager, DataArea::Ydelser, DataArea::UdkSager, DataArea::UdkYdelser];

/// The entries of one simulated overview: one per area, an occasional
/// denial or alarm, and the parties its cases disclosed.
fn overview_entries(rng: &mut Rng, mix: &Mix, out: &mut Vec<Recorded>) {
    let authority = mix.cvrs[rng.range(0, mix.cvrs.len() as i64 - 1) as usize];
    let user = rng.range(0, mix.users as i64 - 1);
    let citizen_max = mix.citizens.min(MAX_CITIZENS) as i64 - 1;
    let citizen = if rng.chance(0.05) { rng.range(0, citizen_max.min(99)) } else { rng.range(0, citizen_max) };
    let citizen = cpr(citizen as usize);
    let actor = Actor::Employee {
        user_id: Text::new(&format!("load-{}-{user}", authority.as_str())),
        user_name: Text::new(&format!("Sagsbehandler {user}")),
        authority,
        org_unit: Text::new("Borgerservice"),
        it_system: Text::new("overblik-loadtest"),
    };
    let (transaction, request) = (TransactionId::from_caller(Some(&rng.uuid().to_string())), rng.uuid());
    let no_agreement = rng.chance(0.03);
    for area in AREAS {
        let search = Search::rpc("GetCitizenOverview").purpose(area, &[1]);
        let mut e = Entry::new(transaction.clone(), request, Kind::Lookup, actor.clone(), search);
        e.area = Some(area);
        e.purpose_id = Some(1);
        e.citizen = Some(citizen);
        let udk = matches!(area, DataArea::UdkSager | DataArea::UdkYdelser);
        let e = if udk && no_agreement {
            e.deny(DenyReason::NoAgreement)
        } else {
            e.roles_used =
                vec![Text::new(if udk { "Se sager og ydelser på tværs af UDK og kommuner" } else { "Se sager" })];
            let rows = rng.range(0, 3) as usize;
            let mut alarms = Vec::new();
            if rng.chance(0.001) {
                alarms.push(AlarmKind::SensitiveKle);
            }
            if rng.chance(0.0002) {
                alarms.push(AlarmKind::Vip);
            }
            if rows > 0 && area == DataArea::Sager && rng.chance(0.1) {
                // A party of a case shown: their own report lists it.
                let party = cpr(rng.range(0, citizen_max) as usize);
                let mut p =
                    Entry::new(transaction.clone(), request, Kind::PartyDisclosure, actor.clone(), e.search.clone());
                p.area = Some(area);
                p.purpose_id = Some(1);
                p.citizen = Some(party);
                p.roles_used = e.roles_used.clone();
                out.push(p.allow(1, Vec::new()).seal());
            }
            e.allow(rows, alarms)
        };
        out.push(e.seal());
    }
}

pub async fn fill(a: AuditFillArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        a.records > 0 && a.users > 0 && a.citizens > 0,
        "--records, --users and --citizens must be positive"
    );
    let stop = super::stop_on_signal();
    let store = super::connect_retrying(&a.db.database_url, &stop).await?;
    let (head, _) = store.audit_head().await?;
    anyhow::ensure!(
        head == 0 || a.into_existing_log,
        "the audit log of this database holds {head} records: synthetic lookups appended to it could never be \
         removed; fill a database made for the load run, or pass --into-existing-log"
    );
    let key = a.key.load(&a.db.database_url)?;
    let appended = Arc::new(Appended::default());
    let checkpoints = match &a.audit_checkpoints {
        Some(dir) => {
            let sink =
                Sink::open(dir).map_err(|e| anyhow::anyhow!("can't use {} for checkpoints: {e}", dir.display()))?;
            let settings = checkpointer::Settings { every: a.checkpoint_every, interval: Duration::from_secs(10) };
            let task = tokio::spawn(checkpointer::run(store.clone(), key.clone(), sink, settings, appended.clone()));
            Some((Sink::open(dir)?, task))
        }
        None => None,
    };
    let cvrs = MUNICIPALITIES[..a.authorities as usize]
        .iter()
        .map(|m| Cvr::parse(m.cvr).map_err(|e| anyhow::anyhow!("{}: {}", m.cvr, e.detail)))
        .collect::<anyhow::Result<_>>()?;
    let mix = Mix { cvrs, users: a.users, citizens: a.citizens };
    let (start_seq, _) = store.audit_head().await?;
    // Entries are made on a thread of their own while the previous batch
    // is written.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Recorded>>(2);
    let generator = {
        let (records, batch, seed) = (a.records, a.batch as usize, a.seed);
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ start_seq as u64);
            let mut made = 0u64;
            let mut pending: Vec<Recorded> = Vec::with_capacity(batch + 16);
            while made < records && !stop.load(Ordering::Relaxed) {
                while pending.len() < batch {
                    overview_entries(&mut rng, &mix, &mut pending);
                }
                let n = (batch as u64).min(records - made) as usize;
                let rest = pending.split_off(n);
                made += n as u64;
                if tx.blocking_send(std::mem::replace(&mut pending, rest)).is_err() {
                    return;
                }
            }
        })
    };
    let span = chrono::Duration::days(i64::from(a.days));
    let first_at = chrono::Utc::now() - span;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut written = 0u64;
    while let Some(entries) = rx.recv().await {
        let at = first_at + span * (written as f64 / a.records as f64 * 1e6) as i32 / 1_000_000;
        let n = entries.len() as u64;
        store.append_audit(entries, at, Some(&key)).await?;
        written += n;
        appended.records.fetch_add(n, Ordering::Relaxed);
        appended.wake.notify_one();
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "{written:>10} of {} records, {:>7.0} records/s",
                a.records,
                written as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    generator.join().map_err(|_| anyhow::anyhow!("the entry generator panicked"))?;
    let append_secs = started.elapsed().as_secs_f64();
    println!(
        "appended {written} records (seq {}-{}) in {append_secs:.0}s: {:.0} records/s",
        start_seq + 1,
        start_seq + written as i64,
        written as f64 / append_secs.max(1e-9)
    );
    if let Some((sink, task)) = checkpoints {
        task.abort();
        // Whatever the background rounds had not reached yet.
        let mut made = 0u64;
        while let Some(size) = checkpointer::round(&store, &key, &sink, a.checkpoint_every).await?.made {
            made += 1;
            if made.is_multiple_of(100) {
                eprintln!("checkpoint {size} made");
            }
        }
        let latest = store.latest_checkpoint().await?.map_or(0, |c| c.signed.head.size);
        println!(
            "checkpoints up to record {latest} ({made} after the appends ended), {:.0}s in all",
            started.elapsed().as_secs_f64()
        );
    }
    store.close().await;
    Ok(if stop.load(Ordering::Relaxed) { 1 } else { 0 })
}

/// Samples a process's resident memory from /proc every 20 ms: the peak
/// since the last reset, so each call gets its own.
struct RssSampler {
    pid: u32,
    peak_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// A field (in kB) of /proc/PID/status.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next().and_then(|n| n.parse().ok()))
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let peak_kb = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak, halt) = (peak_kb.clone(), stop.clone());
        std::thread::spawn(move || {
            while !halt.load(Ordering::Relaxed) {
                if let Some(kb) = status_kb(pid, "VmRSS") {
                    peak.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssSampler { pid, peak_kb, stop }
    }

    /// The peak since the last call (MB), and VmRSS and VmHWM now.
    fn take(&self) -> (f64, f64, f64) {
        let now = status_kb(self.pid, "VmRSS").unwrap_or(0);
        let peak = self.peak_kb.swap(now, Ordering::Relaxed).max(now);
        let hwm = status_kb(self.pid, "VmHWM").unwrap_or(0);
        let mb = |kb: u64| kb as f64 / 1024.0;
        (mb(peak), mb(now), mb(hwm))
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What one call (all its pages) brought back.
struct Outcome {
    pages: u64,
    items: u64,
    bytes: u64,
    note: String,
}

/// A request carrying the officer's token.
fn with_token<M>(msg: M, auth: &MetadataValue<tonic::metadata::Ascii>) -> tonic::Request<M> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", auth.clone());
    r
}

pub async fn read(a: AuditReadArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(a.page_size > 0 && a.max_pages > 0, "--page-size and --max-pages must be positive");
    let auth: MetadataValue<_> = format!("Bearer {}", a.token).parse()?;
    let channel = Endpoint::from_shared(a.endpoint.clone())?.tcp_nodelay(true).connect().await?;
    let client = AuditClient::new(channel).max_decoding_message_size(64 * 1024 * 1024);
    let citizen = {
        let s = a.citizen.trim();
        if s.len() == 10 { format!("{}{s}", crate::domain::PartyId::CPR_PREFIX) } else { s.to_string() }
    };
    let sampler = a.service_pid.map(RssSampler::start);
    if let Some(s) = &sampler {
        let (_, now, hwm) = s.take();
        println!("service RSS before: {now:.1} MB (VmHWM {hwm:.1} MB)");
    }
    let mut failed = false;
    for call in &a.calls {
        let started = Instant::now();
        let mut c = client.clone();
        let result: Result<Outcome, tonic::Status> = async {
            match call {
                DpoCall::Verify => {
                    // In parts, each resuming where the last one stopped.
                    let (mut pages, mut items) = (0u64, 0u64);
                    let mut ask = pb::VerifyChainRequest::default();
                    loop {
                        let r = c.verify_chain(with_token(ask.clone(), &auth)).await?.into_inner();
                        pages += 1;
                        items += r.records as u64;
                        if !r.ok {
                            let note = format!("NOT intact at {}", r.first_bad_seq);
                            return Ok(Outcome { pages, items, bytes: 0, note });
                        }
                        if r.complete {
                            return Ok(Outcome { pages, items, bytes: 0, note: "chain intact".into() });
                        }
                        ask.after_seq = r.next_after_seq;
                        ask.after_hash = r.next_after_hash;
                    }
                }
                DpoCall::Export => {
                    let mut stream = c.export_csv(with_token(pb::AuditQuery::default(), &auth)).await?.into_inner();
                    let (mut pages, mut lines, mut bytes) = (0u64, 0u64, 0u64);
                    while let Some(chunk) = stream.message().await? {
                        pages += 1;
                        bytes += chunk.csv.len() as u64;
                        lines += chunk.csv.matches('\n').count() as u64;
                    }
                    Ok(Outcome {
                        pages,
                        items: lines.saturating_sub(1),
                        bytes,
                        note: "CSV lines after the header".into(),
                    })
                }
                DpoCall::Query => {
                    let (mut pages, mut items, mut token) = (0u64, 0u64, String::new());
                    loop {
                        let q = pb::AuditQuery { page_size: a.page_size, page_token: token, ..Default::default() };
                        let r = c.query_audit(with_token(q, &auth)).await?.into_inner();
                        pages += 1;
                        items += r.items.len() as u64;
                        token = r.next_page_token;
                        if token.is_empty() || pages >= a.max_pages {
                            break;
                        }
                    }
                    Ok(Outcome { pages, items, bytes: 0, note: "records".into() })
                }
                DpoCall::Alarms => {
                    let (mut pages, mut items, mut token) = (0u64, 0u64, String::new());
                    loop {
                        let q = pb::AlarmQuery { page_size: a.page_size, page_token: token, ..Default::default() };
                        let r = c.list_alarms(with_token(q, &auth)).await?.into_inner();
                        pages += 1;
                        items += r.items.len() as u64;
                        token = r.next_page_token;
                        if token.is_empty() || pages >= a.max_pages {
                            break;
                        }
                    }
                    Ok(Outcome { pages, items, bytes: 0, note: "alarms".into() })
                }
                DpoCall::Report => {
                    let (mut pages, mut items, mut token) = (0u64, 0u64, String::new());
                    loop {
                        let q = pb::CitizenReportRequest {
                            citizen: citizen.clone(),
                            page_size: a.page_size,
                            page_token: token,
                            ..Default::default()
                        };
                        let r = c.citizen_report(with_token(q, &auth)).await?.into_inner();
                        pages += 1;
                        items += r.entries.len() as u64;
                        token = r.next_page_token;
                        if token.is_empty() || pages >= a.max_pages {
                            break;
                        }
                    }
                    Ok(Outcome { pages, items, bytes: 0, note: "report lines".into() })
                }
            }
        }
        .await;
        let secs = started.elapsed().as_secs_f64();
        let rss = sampler.as_ref().map(|s| {
            let (peak, now, hwm) = s.take();
            format!("; service RSS peak {peak:.1} MB, after {now:.1} MB, VmHWM {hwm:.1} MB")
        });
        match result {
            Ok(o) => println!(
                "{call:?}: {} {} in {} pages, {:.1} MB, {secs:.1}s{}",
                o.items,
                o.note,
                o.pages,
                o.bytes as f64 / 1e6,
                rss.unwrap_or_default()
            ),
            Err(s) => {
                failed = true;
                println!("{call:?}: failed after {secs:.1}s: {s}{}", rss.unwrap_or_default());
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
