//! The notice publisher: reads the outbox in sequence order, a page at a
//! time, checks each notice's delivery against the privileges stored with
//! its subscription, produces the deliverable ones to the notice topic as
//! CloudEvents (key: the subscription id), waits for every delivery report,
//! and only then marks them published. Notices access no longer allows are
//! marked suppressed with the reason, never produced.
//!
//! At least once, with a stable id: a crash between producing and marking
//! produces the same notices again on restart, with the same CloudEvents
//! `id` (the notice id), which consumers deduplicate on. Nothing committed
//! is lost: a notice leaves the pending set only when marked.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{Notice, PAGE, Suppression, cloud_event, deliverable_stored};
use crate::catalogue::Catalogue;
use crate::ingest::{Backoff, StopFlag};
use crate::store::{Store, StoreError};

/// How long the publisher waits when the outbox has nothing pending.
const IDLE: Duration = Duration::from_millis(500);

/// How long settled notices stay in the outbox, for watches to resume in.
pub const KEEP_DAYS: i64 = 7;

/// Settled notices deleted at most per idle round: the outbox is pruned a
/// bounded step at a time.
const PRUNE_STEP: i64 = 10_000;

/// How long one notice may wait for its delivery report before it counts
/// as failed (and is tried again in a later round).
const DELIVERY_TIMEOUT_MS: u32 = 30_000;

/// Where and how notices are produced.
#[derive(Clone, Debug)]
pub struct PublisherSettings {
    pub brokers: String,
    pub topic: String,
    /// Extra librdkafka settings (`key=value`), applied last.
    pub kafka_options: Vec<(String, String)>,
}

/// A pending notice with its delivery decision.
#[derive(Clone, Debug)]
pub struct Decided {
    pub seq: i64,
    pub notice: Notice,
    pub verdict: Result<(), Suppression>,
}

/// What producing a page came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Produced {
    /// Sequence numbers whose delivery the broker acknowledged.
    pub delivered: Vec<i64>,
    /// How many were not acknowledged (tried again in a later round).
    pub failed: usize,
}

/// What one round settled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub pending: usize,
    pub published: usize,
    pub suppressed: usize,
    pub failed: usize,
}

pub struct Publisher {
    store: Store,
    catalogue: Catalogue,
    producer: FutureProducer,
    topic: String,
}

impl Publisher {
    pub fn new(settings: &PublisherSettings, store: Store, catalogue: Catalogue) -> anyhow::Result<Publisher> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.brokers)
            // Retries inside librdkafka neither duplicate nor reorder a
            // subscription's notices.
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", DELIVERY_TIMEOUT_MS.to_string())
            .set("linger.ms", "5");
        for (k, v) in &settings.kafka_options {
            config.set(k, v);
        }
        let producer: FutureProducer = config.create()?;
        Ok(Publisher { store, catalogue, producer, topic: settings.topic.clone() })
    }

    /// The next page of pending notices, each with its delivery decision
    /// as of `now`.
    pub async fn next_page(&self, now: DateTime<Utc>) -> Result<Vec<Decided>, StoreError> {
        let pending = self.store.pending_notices(PAGE).await?;
        Ok(pending
            .into_iter()
            .map(|p| Decided {
                verdict: deliverable_stored(&p.notice, p.privileges.as_ref(), &self.catalogue, now),
                seq: p.seq,
                notice: p.notice,
            })
            .collect())
    }

    /// Produces the deliverable notices of `page` and waits for every
    /// delivery report.
    pub async fn produce(&self, page: &[Decided]) -> Produced {
        let mut inflight = Vec::new();
        let mut out = Produced::default();
        for d in page.iter().filter(|d| d.verdict.is_ok()) {
            let payload = cloud_event(d.seq, &d.notice);
            let key = d.notice.subscription_id.to_string();
            let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
            match self.producer.send_result(record) {
                Ok(delivery) => inflight.push((d.seq, delivery)),
                Err((e, _)) => {
                    tracing::warn!(error = %e, seq = d.seq, "a notice could not be queued for the broker");
                    out.failed += 1;
                }
            }
        }
        for (seq, delivery) in inflight {
            match delivery.await {
                Ok(Ok(_)) => out.delivered.push(seq),
                Ok(Err((e, _))) => {
                    tracing::warn!(error = %e, seq, "a notice was not delivered");
                    out.failed += 1;
                }
                Err(_) => out.failed += 1,
            }
        }
        out
    }

    /// Marks what `produced` delivered as published, and the page's
    /// undeliverable notices as suppressed.
    pub async fn mark(&self, page: &[Decided], produced: &Produced) -> Result<(), StoreError> {
        let suppressed: Vec<(i64, Suppression)> =
            page.iter().filter_map(|d| d.verdict.err().map(|why| (d.seq, why))).collect();
        self.store.mark_notices(&produced.delivered, &suppressed).await
    }

    /// One round: a page, produced and marked.
    pub async fn round(&self, now: DateTime<Utc>) -> Result<Round, StoreError> {
        let page = self.next_page(now).await?;
        let produced = self.produce(&page).await;
        self.mark(&page, &produced).await?;
        Ok(Round {
            pending: page.len(),
            published: produced.delivered.len(),
            suppressed: page.iter().filter(|d| d.verdict.is_err()).count(),
            failed: produced.failed,
        })
    }
}

/// Publishes until `stop`: rounds back to back while notices are pending,
/// a pause when none are (and a bounded prune of notices settled more than
/// [`KEEP_DAYS`] ago), and a growing pause (to 30 s) while the store or the
/// broker fails.
pub async fn run(publisher: Publisher, stop: StopFlag) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    while !stop.load(Ordering::Relaxed) {
        let pause = match publisher.round(Utc::now()).await {
            Ok(r) if r.failed > 0 => {
                tracing::warn!(failed = r.failed, "notices not delivered; trying again");
                backoff.next_delay()
            }
            Ok(r) if r.pending == 0 => {
                backoff.reset();
                let before = Utc::now() - chrono::Duration::days(KEEP_DAYS);
                if let Err(e) = publisher.store.prune_notices(before, PRUNE_STEP).await {
                    tracing::warn!(error = %e, "settled notices could not be pruned; trying again later");
                }
                IDLE
            }
            Ok(_) => {
                backoff.reset();
                Duration::ZERO
            }
            Err(e) => {
                tracing::warn!(error = %e, "the notice outbox can't be read; trying again");
                backoff.next_delay()
            }
        };
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}
