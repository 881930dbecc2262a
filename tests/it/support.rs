//! Shared test setup: a fresh store per test on either backend, an
//! in-process Kafka-protocol broker, a consumer thread, and the projection a
//! demo stream must end in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use overblik::broker::EmbeddedBroker;
use overblik::events::{DecodeLimits, Event, decode};
use overblik::ingest::{IngestSettings, StopFlag};
use overblik::projection::{Aggregate, Transition, apply};
use overblik::simulator::{DemoMessage, Expect};
use overblik::store::Store;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use sqlx::Connection;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend, each in its own test.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    };
}

/// The PostgreSQL server the suite may create databases on. The test command
/// (`scripts/test`) always provides one; a run without it fails rather than
/// skipping.
pub fn pg_admin_url() -> String {
    std::env::var("OVERBLIK_TEST_DATABASE_URL")
        .expect("OVERBLIK_TEST_DATABASE_URL is not set: run the suite with scripts/test, which provides PostgreSQL")
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let root = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: String,
    dir: Option<PathBuf>,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let tag = Uuid::new_v4().simple().to_string()[..12].to_string();
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("overblik-test-{tag}"));
                std::fs::create_dir_all(&dir).unwrap();
                let url = format!("sqlite://{}", dir.join("store.db").display());
                TestDb { url, dir: Some(dir), pg_name: None }
            }
            Backend::Postgres => {
                let admin = pg_admin_url();
                let name = format!("ovbt_{tag}");
                let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connecting to the test PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
                conn.close().await.ok();
                TestDb { url: with_database(&admin, &name), dir: None, pg_name: Some(name) }
            }
        }
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.expect("connecting the store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(name) = self.pg_name.take() {
            // Drop on a thread of its own: Drop can't await, and the test's
            // runtime may be shutting down.
            let admin = pg_admin_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }
}

/// What a demo stream must end in once every message is consumed.
#[derive(Debug, Default)]
pub struct Expected {
    /// Live aggregates: id → (version, state JSON).
    pub aggregates: BTreeMap<Uuid, (i64, String)>,
    pub deleted: BTreeSet<Uuid>,
    pub events: i64,
    pub duplicates: i64,
    pub dead: BTreeMap<String, i64>,
    pub total: i64,
}

impl Expected {
    pub fn of(messages: &[DemoMessage]) -> Expected {
        let mut x = Expected { total: messages.len() as i64, ..Default::default() };
        let mut by_agg: HashMap<Uuid, Vec<Event>> = HashMap::new();
        for m in messages {
            match &m.expect {
                Expect::Event => {
                    x.events += 1;
                    let e = decode(&m.payload, Some(&m.key), &DecodeLimits::default()).unwrap();
                    by_agg.entry(e.aggregate_id).or_default().push(e);
                }
                Expect::Duplicate => x.duplicates += 1,
                Expect::Malformed(r) => *x.dead.entry(r.as_str().to_string()).or_default() += 1,
            }
        }
        for (id, mut events) in by_agg {
            events.sort_by_key(|e| e.aggregate_version);
            let mut cur: Option<Aggregate> = None;
            for e in &events {
                match apply(cur.take(), e.clone()).1.expect("demo streams apply cleanly") {
                    Transition::Upsert(a) => cur = Some(a),
                    Transition::Delete => {
                        cur = None;
                        x.deleted.insert(id);
                    }
                }
            }
            if let Some(a) = cur {
                x.aggregates.insert(id, (a.version, a.state.to_json()));
            }
        }
        x
    }

    pub fn dead_lettered(&self) -> i64 {
        self.dead.values().sum()
    }
}

/// The aggregates table as (version, state JSON) per id.
pub async fn stored_aggregates(store: &Store) -> BTreeMap<Uuid, (i64, String)> {
    let dump = store.dump_projections().await.unwrap();
    dump["aggregates"]
        .iter()
        .map(|r| {
            let id = Uuid::parse_str(r[0].as_deref().unwrap()).unwrap();
            let version: i64 = r[2].as_deref().unwrap().parse().unwrap();
            (id, (version, r[7].clone().unwrap()))
        })
        .collect()
}

/// Asserts the store holds exactly what `x` says: every message accounted
/// for once, every aggregate in its final state, nothing parked.
pub async fn assert_exact(store: &Store, x: &Expected) {
    let s = store.status().await.unwrap();
    assert_eq!(s.consumed, x.total, "every message consumed exactly once");
    assert_eq!(s.applied, x.events, "every event applied exactly once");
    assert_eq!(s.duplicates, x.duplicates, "duplicates");
    assert_eq!(s.dead_lettered, x.dead_lettered(), "dead letters");
    assert_eq!(s.parked, 0, "nothing left parked");
    assert_eq!(s.parked_rows, 0, "no parked rows");
    let by_reason: BTreeMap<String, i64> = s.dead_letters_by_reason.clone().into_iter().collect();
    assert_eq!(by_reason, x.dead, "dead letters by reason");
    let stored = stored_aggregates(store).await;
    assert_eq!(stored.len(), x.aggregates.len(), "aggregate count");
    for (id, want) in &x.aggregates {
        assert_eq!(stored.get(id), Some(want), "aggregate {id}");
    }
    assert_eq!(s.tombstones as usize, x.deleted.len(), "tombstones");
}

pub fn topics() -> Vec<String> {
    overblik::config::DEFAULT_TOPICS.iter().map(|t| t.to_string()).collect()
}

pub fn broker(partitions: i32) -> EmbeddedBroker {
    EmbeddedBroker::start(1, &topics(), partitions).expect("mock cluster")
}

/// One past the last delivered offset per partition, and the failures.
type Delivered = (BTreeMap<(String, i32), i64>, u64);

#[derive(Default)]
struct Ends(std::sync::Mutex<Delivered>);

struct Tracking(Arc<Ends>);
impl ClientContext for Tracking {}
impl ProducerContext for Tracking {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let mut g = self.0.0.lock().unwrap();
        match r {
            Ok(m) => {
                let e = g.0.entry((m.topic().to_string(), m.partition())).or_insert(0);
                *e = (*e).max(m.offset() + 1);
            }
            Err(_) => g.1 += 1,
        }
    }
}

/// A producer that remembers where each partition ends.
pub struct TestProducer {
    producer: ThreadedProducer<Tracking>,
    ends: Arc<Ends>,
}

impl TestProducer {
    pub fn new(bootstrap: &str) -> TestProducer {
        let ends = Arc::new(Ends::default());
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true")
            .set("linger.ms", "2")
            .create_with_context(Tracking(ends.clone()))
            .unwrap();
        TestProducer { producer, ends }
    }

    pub fn send(&self, topic: &str, key: Option<&[u8]>, payload: &[u8]) {
        self.send_record(BaseRecord::to(topic).payload(payload), key)
    }

    /// Sends to one partition, whatever the key.
    pub fn send_to(&self, topic: &str, partition: i32, key: Option<&[u8]>, payload: &[u8]) {
        self.send_record(BaseRecord::to(topic).partition(partition).payload(payload), key)
    }

    fn send_record<'a>(&self, mut record: BaseRecord<'a, [u8], [u8]>, key: Option<&'a [u8]>) {
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    pub fn send_demo(&self, m: &DemoMessage) {
        self.send(m.topic, Some(&m.key), &m.payload);
    }

    /// Flushes and returns one past the last delivered offset per partition.
    pub fn flush(&self) -> BTreeMap<(String, i32), i64> {
        self.producer.flush(Duration::from_secs(60)).unwrap();
        let g = self.ends.0.lock().unwrap();
        assert_eq!(g.1, 0, "every message delivered");
        g.0.clone()
    }
}

pub fn ingest_settings(bootstrap: &str, group: &str) -> IngestSettings {
    IngestSettings {
        brokers: bootstrap.to_string(),
        group: group.to_string(),
        topics: topics(),
        batch_max: 500,
        batch_linger: Duration::from_millis(20),
        limits: DecodeLimits::default(),
        kafka_options: vec![
            ("session.timeout.ms".into(), "6000".into()),
            ("heartbeat.interval.ms".into(), "500".into()),
        ],
        instance: None,
    }
}

/// The consumer on a thread of its own, as `serve` runs it.
pub struct RunningConsumer {
    pub stop: StopFlag,
    pub health: Arc<overblik::ingest::IngestHealth>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl RunningConsumer {
    pub fn start(settings: IngestSettings, store: Store) -> RunningConsumer {
        let stop: StopFlag = Arc::new(AtomicBool::new(false));
        let rt = tokio::runtime::Handle::current();
        let flag = stop.clone();
        let health = Arc::new(overblik::ingest::IngestHealth::default());
        let h = health.clone();
        let handle = std::thread::spawn(move || overblik::ingest::run(settings, store, rt, flag, h));
        RunningConsumer { stop, health, handle: Some(handle) }
    }

    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Stops it and returns what it returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let h = self.handle.take().unwrap();
        tokio::task::spawn_blocking(move || h.join().expect("consumer thread panicked")).await.unwrap()
    }
}

impl Drop for RunningConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Waits until the stored offsets reach `ends` on every partition.
pub async fn wait_consumed(store: &Store, ends: &BTreeMap<(String, i32), i64>, within: Duration) {
    let parts: Vec<(String, i32)> = ends.keys().cloned().collect();
    let deadline = Instant::now() + within;
    loop {
        let stored = store.assigned_offsets(&parts).await.unwrap();
        if parts.iter().zip(&stored).all(|(p, s)| *s >= ends[p]) {
            return;
        }
        if Instant::now() > deadline {
            let status = store.status().await.unwrap();
            panic!("not consumed within {within:?}: stored {stored:?}, wanted {ends:?}\n{status:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds, polling.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// tansu, a second and independent Kafka implementation (Apache-2.0, its
/// log in SQLite), run as a child process on a free local port. The test
/// command installs it and names it in `OVERBLIK_TEST_TANSU`; a run without
/// it fails rather than skipping.
pub struct Tansu {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl Tansu {
    /// Starts an empty broker and creates the topics with `partitions` each.
    pub fn start(partitions: i32) -> Tansu {
        let bin =
            PathBuf::from(std::env::var("OVERBLIK_TEST_TANSU").expect(
                "OVERBLIK_TEST_TANSU is not set: run the suite with scripts/test, which installs and names tansu",
            ));
        let dir = std::env::temp_dir().join(format!("overblik-tansu-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut t = Tansu { bin, dir, port, child: None };
        t.run();
        for topic in topics() {
            let out = std::process::Command::new(&t.bin)
                .args(["topic", "create", &topic, "--partitions", &partitions.to_string()])
                .args(["--broker", &format!("tcp://127.0.0.1:{port}")])
                .output()
                .unwrap();
            assert!(out.status.success(), "creating {topic} on tansu: {}", String::from_utf8_lossy(&out.stderr));
        }
        t
    }

    fn run(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("tansu.log")).unwrap();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = std::process::Command::new(&self.bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            // Relative to the working directory: the broker's data on disk.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (SIGKILL) and starts it again on the same port
    /// with the same data on disk.
    pub fn restart(&mut self, down_for: Duration) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        std::thread::sleep(down_for);
        self.run();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One past the last offset of every partition of our topics, as the
/// broker has it.
pub fn end_offsets(bootstrap: &str) -> BTreeMap<(String, i32), i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "overblik-test-ends").create().unwrap();
    let mut out = BTreeMap::new();
    for topic in topics() {
        let md = c.fetch_metadata(Some(&topic), Duration::from_secs(10)).unwrap();
        for t in md.topics() {
            for p in t.partitions() {
                let (_, hi) = c.fetch_watermarks(t.name(), p.id(), Duration::from_secs(10)).unwrap();
                if hi > 0 {
                    out.insert((t.name().to_string(), p.id()), hi);
                }
            }
        }
    }
    out
}

/// A child process killed when dropped, so a test that fails half-way
/// leaves no `serve` behind.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
