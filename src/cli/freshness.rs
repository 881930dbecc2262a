//! `overblik loadtest freshness`: how long after a source publishes an
//! event a caseworker's lookup shows it — through the broker, the
//! projector and the store to the gRPC API, as a user would see it.
//!
//! Events are published open loop at a fixed rate (a new case each, for
//! the token's own authority). Some are sampled: each sampled case goes to
//! a citizen of its own, and from its send on, `ListCases` for that
//! citizen is asked every `--poll-ms` until the case is there. Freshness is
//! the time from the send to the first answer that has it (so it includes
//! the producer's own linger and is late by at most `--poll-ms` or 5 %,
//! whichever is more: slow samples are polled less often, since every
//! lookup is audited and polling would otherwise load the service).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tonic::metadata::MetadataValue;
use uuid::Uuid;

use super::parse_key_value;
use super::serve::parse_interval;
use crate::events::EventKind;
use crate::proto as pb;
use crate::proto::overblik_client::OverblikClient;
use crate::simulator::population::cpr;
use crate::simulator::samples::message;

#[derive(Args, Debug)]
pub struct FreshnessArgs {
    /// The Kafka cluster the service consumes (dev prints its address).
    #[arg(long)]
    pub brokers: String,
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub endpoint: String,
    /// A caseworker token with the role for `sager` at `--authority`.
    #[arg(long, env = "OVERBLIK_TOKEN")]
    pub token: String,
    /// The CVR the events are for: the token's authority.
    #[arg(long, default_value = "55133018")]
    pub authority: String,
    /// Events published per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Sampled events per second (each then looked up until visible).
    #[arg(long, default_value_t = 20)]
    pub samples_per_second: u64,
    /// How long to measure, after the warm-up.
    #[arg(long, value_parser = parse_interval, default_value = "30s")]
    pub duration: Duration,
    #[arg(long, value_parser = parse_interval, default_value = "5s")]
    pub warmup: Duration,
    /// How often a sampled case is looked up until it shows.
    #[arg(long, default_value_t = 5)]
    pub poll_ms: u64,
    /// The first citizen number used (runs with different ones don't mix).
    #[arg(long, default_value_t = 500_000)]
    pub first_citizen: usize,
    /// Extra librdkafka producer setting, KEY=VALUE (repeatable).
    #[arg(long = "kafka-option", value_parser = parse_key_value)]
    pub kafka_options: Vec<(String, String)>,
}

struct Sample {
    /// Sent after the warm-up.
    measured: bool,
    latency: Option<Duration>,
}

pub async fn run(a: FreshnessArgs) -> anyhow::Result<i32> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &a.brokers).set("linger.ms", "1").set("enable.idempotence", "true");
    for (k, v) in &a.kafka_options {
        cfg.set(k, v);
    }
    let producer: ThreadedProducer<DefaultProducerContext> = cfg.create()?;
    let channel = tonic::transport::Endpoint::from_shared(a.endpoint.clone())?.connect().await?;
    let auth: MetadataValue<_> = format!("Bearer {}", a.token).parse()?;
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let every = (a.rate / a.samples_per_second.max(1)).max(1);
    let total = a.rate * (a.warmup + a.duration).as_secs();
    let interval = Duration::from_secs_f64(1.0 / a.rate as f64);
    let started = Instant::now();
    let mut checks = tokio::task::JoinSet::new();
    println!(
        "publishing {} events/s for {}s ({}s warm-up), sampling {}/s, polling every {} ms",
        a.rate,
        (a.warmup + a.duration).as_secs(),
        a.warmup.as_secs(),
        a.samples_per_second,
        a.poll_ms
    );
    for n in 0..total {
        let due = started + interval.mul_f64(n as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let sampled = n % every == 0;
        let citizen = if sampled { a.first_citizen + (n / every) as usize } else { (n % 10_000) as usize };
        let party = cpr(citizen);
        let case = Uuid::new_v4();
        let mut v = message(EventKind::CaseImported, Uuid::new_v4(), case, 1);
        v["subject"] = serde_json::json!(party.urn());
        v["authority"] = serde_json::json!(a.authority);
        v["time"] = serde_json::json!(chrono::Utc::now().to_rfc3339());
        v["data"]["parties"] = serde_json::json!([{"role": "primary", "id": party.urn()}]);
        let payload = serde_json::to_vec(&v)?;
        let key = case.to_string();
        let mut record = BaseRecord::to(crate::config::TOPIC_KY).key(key.as_bytes()).payload(&payload[..]);
        let sent = Instant::now();
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        if sampled {
            let index = {
                let mut s = samples.lock().expect("samples");
                s.push(Sample { measured: sent.duration_since(started) >= a.warmup, latency: None });
                s.len() - 1
            };
            let (mut client, auth, samples) = (OverblikClient::new(channel.clone()), auth.clone(), samples.clone());
            let (citizen, case, poll) = (party.urn(), case.to_string(), Duration::from_millis(a.poll_ms));
            checks.spawn(async move {
                while sent.elapsed() < Duration::from_secs(30) {
                    let mut req = tonic::Request::new(pb::ListRequest {
                        citizen: citizen.clone(),
                        purpose: Some(pb::AreaPurpose { data_area: "sager".into(), purpose_ids: vec![1] }),
                        page_size: 10,
                        page_token: String::new(),
                    });
                    req.metadata_mut().insert("authorization", auth.clone());
                    if let Ok(list) = client.list_cases(req).await
                        && list.into_inner().items.iter().any(|c| c.case_id == case)
                    {
                        samples.lock().expect("samples")[index].latency = Some(sent.elapsed());
                        return;
                    }
                    // Every lookup is audited: polling a slow sample as
                    // often as a fast one would load the service it
                    // measures. The error stays under 5 % of the latency.
                    tokio::time::sleep(poll.max(sent.elapsed() / 20)).await;
                }
            });
        }
    }
    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30))).await?;
    while checks.join_next().await.is_some() {}
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    let samples = samples.lock().expect("samples");
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.measured).collect();
    let mut ms: Vec<f64> = measured.iter().filter_map(|s| s.latency).map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let lost = measured.len() - ms.len();
    let pct = |p: f64| ms.get(((ms.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    println!(
        "freshness over {} sampled events at {:.0} events/s: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; not visible within 30 s: {lost}",
        ms.len(),
        achieved,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    Ok(if lost == 0 { 0 } else { 1 })
}
