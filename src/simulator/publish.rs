//! Publishing the demo stream to Kafka, as the source systems would: one
//! topic per source, key = aggregate id, idempotent producer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::DemoStream;

#[derive(Clone, Debug)]
pub struct PublishSettings {
    pub brokers: String,
    pub events: usize,
    pub seed: u64,
    pub malformed_ratio: f64,
    /// Messages per second at most (`None`: as fast as the broker takes them).
    pub rate: Option<u64>,
    /// Extra librdkafka settings.
    pub kafka_options: Vec<(String, String)>,
}

/// What a publish run delivered.
#[derive(Clone, Debug, Default)]
pub struct PublishReport {
    pub sent: u64,
    pub failed: u64,
    /// Per (topic, partition): one past the highest delivered offset, i.e.
    /// where a consumer is done with this run.
    pub end_offsets: BTreeMap<(String, i32), i64>,
    pub seconds: f64,
}

#[derive(Default)]
struct Deliveries {
    failed: u64,
    end_offsets: BTreeMap<(String, i32), i64>,
    first_error: Option<String>,
}

struct Counting(Arc<Mutex<Deliveries>>);

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut d = self.0.lock().expect("deliveries lock");
        match result {
            Ok(m) => {
                let e = d.end_offsets.entry((m.topic().to_string(), m.partition())).or_insert(0);
                *e = (*e).max(m.offset() + 1);
            }
            Err((err, _)) => {
                d.failed += 1;
                d.first_error.get_or_insert_with(|| err.to_string());
            }
        }
    }
}

/// Publishes `settings.events` demo messages. `pace(sent)` is called before
/// every message and may block to hold the publisher back (dev mode keeps it
/// from running far ahead of the consumer, since the in-process broker's
/// small log drops what nobody has read); it returns `false` to stop early.
pub fn publish(settings: &PublishSettings, mut pace: impl FnMut(u64) -> bool) -> anyhow::Result<PublishReport> {
    let deliveries = Arc::new(Mutex::new(Deliveries::default()));
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &settings.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("message.timeout.ms", "120000");
    for (k, v) in &settings.kafka_options {
        cfg.set(k, v);
    }
    let producer: ThreadedProducer<Counting> = cfg.create_with_context(Counting(deliveries.clone()))?;
    let started = Instant::now();
    let mut sent = 0u64;
    for m in DemoStream::new(settings.seed, settings.events).with_malformed_ratio(settings.malformed_ratio) {
        if !pace(sent) {
            break;
        }
        if let Some(rate) = settings.rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let mut record = BaseRecord::to(m.topic).key(&m.key[..]).payload(&m.payload[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => {
                    return Err(anyhow::Error::new(e).context("publishing a demo message"));
                }
            }
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(120))?;
    let d = deliveries.lock().expect("deliveries lock");
    if d.failed > 0 {
        anyhow::bail!(
            "{} of {sent} messages were not delivered (first error: {})",
            d.failed,
            d.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(PublishReport {
        sent,
        failed: d.failed,
        end_offsets: d.end_offsets.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}
