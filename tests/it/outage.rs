//! The database briefly unreachable during ingest: nothing is lost, and
//! ingest resumes by itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use overblik::simulator::DemoStream;
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::support::{
    Backend, Expected, RunningConsumer, TestDb, TestProducer, assert_exact, broker, eventually, ingest_settings,
    wait_consumed,
};

/// A TCP proxy in front of PostgreSQL that can cut every connection and
/// refuse new ones, then let them through again.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (c, l) = (cut.clone(), links.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                l.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Proxy { addr, cut, links, accept }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

fn host_port(url: &str) -> String {
    let rest = &url[url.find("://").unwrap() + 3..];
    let hostport = rest.split('/').next().unwrap();
    let hostport = hostport.rsplit('@').next().unwrap();
    if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:5432") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_for_a_while_loses_nothing() {
    let broker = broker(2);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(Backend::Postgres).await;
    let direct = db.store().await;
    let proxy = Proxy::start(host_port(&db.url)).await;
    let through_proxy = db.url.replacen(&host_port(&db.url), &proxy.addr.to_string(), 1);
    let store = overblik::store::Store::connect(&through_proxy).await.unwrap();

    let messages: Vec<_> = DemoStream::new(61, 2400).with_malformed_ratio(0.02).collect();
    let consumer = RunningConsumer::start(ingest_settings(&bootstrap, "outage"), store.clone());
    // Readiness as `serve --metrics-listen` serves it, stalling after 2 s.
    let listener = overblik::metrics::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let probe = listener.local_addr().unwrap();
    let readiness = overblik::metrics::Readiness {
        store: Some(store.clone()),
        ingest: Some(consumer.health.clone()),
        stall_after: Duration::from_secs(2),
    };
    let server = tokio::spawn(overblik::metrics::serve(listener, readiness));
    let producer = TestProducer::new(&bootstrap);
    let (first, rest) = messages.split_at(800);
    for m in first {
        producer.send_demo(m);
    }
    producer.flush();
    eventually(Duration::from_secs(60), "progress before the outage", || async {
        direct.status().await.unwrap().consumed > 0
    })
    .await;
    eventually(Duration::from_secs(20), "ready before the outage", || async { get(probe, "/readyz").await.0 == 200 })
        .await;

    proxy.cut();
    let during = direct.status().await.unwrap().consumed;
    for m in rest {
        producer.send_demo(m);
    }
    let ends = producer.flush();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(direct.status().await.unwrap().consumed, during, "nothing commits while the database is unreachable");
    assert!(consumer.is_running(), "the consumer waits, it doesn't crash");
    // Not ready, saying why; alive all the same.
    let (status, body) = get(probe, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store unreachable"), "{body}");
    assert!(body.contains("pending for") || body.contains("has not polled"), "the stall is named: {body}");
    assert_eq!(get(probe, "/healthz").await.0, 200, "liveness is not readiness");
    let (_, metrics) = get(probe, "/metrics").await;
    let oldest: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("overblik_oldest_pending_seconds "))
        .expect("the gauge")
        .parse()
        .unwrap();
    assert!(oldest > 2.0, "{oldest}");

    proxy.restore();
    eventually(Duration::from_secs(60), "ready again once the database is back", || async {
        get(probe, "/readyz").await.0 == 200
    })
    .await;
    wait_consumed(&direct, &ends, Duration::from_secs(120)).await;
    consumer.stop().await.unwrap();
    server.abort();
    assert_exact(&direct, &Expected::of(&messages)).await;
}

/// A plain HTTP GET: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await.unwrap().unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_by_another_writer_for_a_while_loses_nothing() {
    let broker = broker(2);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let messages: Vec<_> = DemoStream::new(62, 2000).collect();
    let consumer = RunningConsumer::start(ingest_settings(&bootstrap, "locked"), store.clone());
    let producer = TestProducer::new(&bootstrap);
    let (first, rest) = messages.split_at(700);
    for m in first {
        producer.send_demo(m);
    }
    producer.flush();
    eventually(Duration::from_secs(60), "progress before the lock", || async {
        store.status().await.unwrap().consumed > 0
    })
    .await;

    let mut other = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut other).await.unwrap();
    let during: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(applied + duplicates + parked + dead_lettered), 0) FROM ingest_counts")
            .fetch_one(&mut other)
            .await
            .unwrap();
    for m in rest {
        producer.send_demo(m);
    }
    let ends = producer.flush();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(applied + duplicates + parked + dead_lettered), 0) FROM ingest_counts")
            .fetch_one(&mut other)
            .await
            .unwrap();
    assert_eq!(still, during, "nothing commits while another writer holds the database");
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    drop(other);

    wait_consumed(&store, &ends, Duration::from_secs(120)).await;
    consumer.stop().await.unwrap();
    assert_exact(&store, &Expected::of(&messages)).await;
}
