//! The ingest path against real Apache Kafka and PostgreSQL in containers
//! (`--features docker-tests`, needs a Docker engine). The default suite
//! covers the same paths with the in-process broker and the local
//! PostgreSQL; these runs add true broker semantics.

use std::time::Duration;

use overblik::simulator::DemoStream;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::support::{Expected, RunningConsumer, TestProducer, assert_exact, ingest_settings, wait_consumed};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A single-node KRaft Kafka advertising a host port fixed before it starts.
async fn kafka() -> (ContainerAsync<GenericImage>, String) {
    let port = free_port();
    let container = GenericImage::new("apache/kafka", "3.9.1")
        .with_wait_for(WaitFor::message_on_stdout("Kafka Server started"))
        .with_mapped_port(port, 9092.tcp())
        .with_env_var("KAFKA_NODE_ID", "1")
        .with_env_var("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env_var("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env_var("KAFKA_ADVERTISED_LISTENERS", format!("PLAINTEXT://127.0.0.1:{port}"))
        .with_env_var("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env_var("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT")
        .with_env_var("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env_var("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env_var("KAFKA_NUM_PARTITIONS", "3")
        .start()
        .await
        .expect("starting Kafka");
    (container, format!("127.0.0.1:{port}"))
}

async fn postgres() -> (ContainerAsync<GenericImage>, String) {
    let container = GenericImage::new("postgres", "16-alpine")
        .with_exposed_port(5432.tcp())
        .with_wait_for(WaitFor::message_on_stderr("database system is ready to accept connections"))
        .with_env_var("POSTGRES_HOST_AUTH_METHOD", "trust")
        .start()
        .await
        .expect("starting PostgreSQL");
    let port = container.get_host_port_ipv4(5432).await.unwrap();
    (container, format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

async fn connect(url: &str) -> overblik::store::Store {
    // The image logs "ready" once during initialisation, before its restart.
    for _ in 0..60 {
        if let Ok(s) = overblik::store::Store::connect(url).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("PostgreSQL container never accepted connections");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_kafka_into_real_postgres_ends_exactly() {
    let (_kafka, bootstrap) = kafka().await;
    let (_pg, url) = postgres().await;
    let store = connect(&url).await;
    let messages: Vec<_> = DemoStream::new(71, 5000).with_malformed_ratio(0.02).collect();
    let producer = TestProducer::new(&bootstrap);
    for m in &messages[..1000] {
        producer.send_demo(m);
    }
    producer.flush();
    let a = RunningConsumer::start(ingest_settings(&bootstrap, "docker"), store.clone());
    let b = RunningConsumer::start(ingest_settings(&bootstrap, "docker"), store.clone());
    for m in &messages[1000..] {
        producer.send_demo(m);
    }
    let ends = producer.flush();
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.stop().await.unwrap();
    wait_consumed(&store, &ends, Duration::from_secs(180)).await;
    b.stop().await.unwrap();
    assert_exact(&store, &Expected::of(&messages)).await;
}
