//! The ingest path against tansu, a second Kafka implementation with its
//! own codebase (every other Kafka test uses librdkafka's mock cluster,
//! which shares its code with the client): exactly-once under SIGKILL, two
//! instances rebalancing, and the broker itself killed and restarted with
//! its data on disk while ingest runs.

use std::time::Duration;

use overblik::simulator::DemoStream;

use crate::support::{
    Backend, Expected, RunningConsumer, Tansu, TestDb, TestProducer, assert_exact, eventually, ingest_settings,
    wait_consumed,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_under_sigkill_on_tansu() {
    let tansu = Tansu::start(2);
    crate::crash::survives_kill_9_on(&tansu.bootstrap_servers(), Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_rebalance_on_tansu() {
    let tansu = Tansu::start(4);
    crate::ingest::rebalances_apply_nothing_twice_on(&tansu.bootstrap_servers(), Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_ingest_loses_nothing_on_tansu() {
    let mut tansu = Tansu::start(2);
    let bootstrap = tansu.bootstrap_servers();
    let db = TestDb::new(Backend::Postgres).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(71, 2400).with_malformed_ratio(0.02).collect();
    let mut settings = ingest_settings(&bootstrap, "restart");
    settings.batch_max = 100;
    let consumer = RunningConsumer::start(settings, store.clone());
    let (first, rest) = messages.split_at(1200);
    {
        let producer = TestProducer::new(&bootstrap);
        for m in first {
            producer.send_demo(m);
        }
        producer.flush();
    }
    eventually(Duration::from_secs(60), "progress before the restart", || async {
        store.status().await.unwrap().consumed > 300
    })
    .await;
    // SIGKILL, down for two seconds, up again on the same data.
    let restart = tokio::task::spawn_blocking(move || {
        tansu.restart(Duration::from_secs(2));
        tansu
    });
    let tansu = restart.await.unwrap();
    assert!(consumer.is_running(), "the consumer rides out the broker's restart");
    let producer = TestProducer::new(&bootstrap);
    for m in rest {
        producer.send_demo(m);
    }
    let mut ends = producer.flush();
    // The first half's partitions end where the broker kept them.
    for (k, v) in crate::support::end_offsets(&bootstrap) {
        let e = ends.entry(k).or_insert(0);
        *e = (*e).max(v);
    }
    wait_consumed(&store, &ends, Duration::from_secs(180)).await;
    consumer.stop().await.unwrap();
    assert_exact(&store, &Expected::of(&messages)).await;
    drop(tansu);
}
