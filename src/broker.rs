//! The embedded Kafka-protocol broker of dev mode: librdkafka's mock
//! cluster, listening on localhost so any Kafka client can publish to it.
//!
//! It keeps only a few megabytes per partition and drops older messages, so
//! whatever publishes to it must not run far ahead of the consumer (dev mode
//! paces its demo publisher accordingly). It keeps nothing on disk: every
//! start is an empty broker.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts `brokers` mock brokers and creates `topics` with `partitions`
    /// partitions each.
    pub fn start(brokers: i32, topics: &[String], partitions: i32) -> anyhow::Result<EmbeddedBroker> {
        let cluster = MockCluster::new(brokers)?;
        for t in topics {
            cluster.create_topic(t, partitions, 1)?;
        }
        Ok(EmbeddedBroker { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The mock cluster, for fault injection in tests.
    pub fn cluster(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}
