//! Messages the store refuses: a batch holding one is bisected until the
//! message is found; it is dead-lettered as STORE_REJECTED with its
//! SQLSTATE and the rest commits exactly once — also when the projector is
//! killed with SIGKILL between the steps of the search.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use overblik::store::DeadLetterFilter;
use sqlx::Connection;
use uuid::Uuid;

use crate::build::{Citizen, encoded};
use crate::support::{Backend, RunningConsumer, TestDb, TestProducer, broker, ingest_settings, wait_consumed};

/// Makes the store refuse the events with these ids, as a constraint the
/// data breaks would: a CHECK on PostgreSQL (SQLSTATE 23514), a trigger
/// that raises on SQLite (a constraint error there).
async fn refuse_events(db: &TestDb, backend: Backend, ids: &[Uuid]) {
    let list = ids.iter().map(|i| format!("'{i}'")).collect::<Vec<_>>().join(", ");
    match backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let sql = format!("ALTER TABLE events ADD CONSTRAINT refused_by_test CHECK (event_id NOT IN ({list}))");
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let sql = format!(
                "CREATE TRIGGER refused_by_test BEFORE INSERT ON events WHEN NEW.event_id IN ({list})
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await.unwrap();
        }
    }
}

/// Messages as (key, payload).
type Messages = Vec<(Vec<u8>, Vec<u8>)>;

/// `n` independent cases (one event each); the ids of those at `poisoned`.
fn cases(n: usize, poisoned: &[usize]) -> (Messages, Vec<Uuid>) {
    let c = Citizen::new("0707704321");
    let events: Vec<_> = (0..n).map(|_| c.case_import(Uuid::new_v4(), "2024-01-02")).collect();
    let refused = poisoned.iter().map(|&i| events[i].id).collect();
    (encoded(&events.iter().collect::<Vec<_>>()), refused)
}

async fn assert_isolated(db: &TestDb, backend: Backend, n: usize, refused: &[Uuid]) {
    let store = db.store().await;
    let s = store.status().await.unwrap();
    assert_eq!(s.consumed, n as i64, "every message accounted for once");
    assert_eq!(s.applied, (n - refused.len()) as i64, "every other message applied once");
    assert_eq!(s.events, (n - refused.len()) as i64, "no event stored twice");
    assert_eq!(s.dead_lettered, refused.len() as i64);
    let letters = store.dead_letters(&DeadLetterFilter { reason: None, after_id: 0, limit: 1000 }).await.unwrap();
    assert_eq!(letters.len(), refused.len(), "one dead letter per refused message");
    let sqlstate = match backend {
        Backend::Postgres => "SQLSTATE 23514",
        Backend::Sqlite => "SQLSTATE 23000 (SQLite 1811)",
    };
    for l in &letters {
        assert_eq!(l.reason, "STORE_REJECTED");
        assert!(l.detail.starts_with(sqlstate), "{}", l.detail);
        assert!(!l.detail.contains("0707704321"), "{}", l.detail);
    }
}

async fn one_refused_message_is_isolated_and_the_rest_commits_once(backend: Backend) {
    let broker = broker(2);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (messages, refused) = cases(600, &[311]);
    refuse_events(&db, backend, &refused).await;
    let producer = TestProducer::new(&bootstrap);
    // All of it waits in the broker first, so it is consumed in big batches.
    for (i, (k, p)) in messages.iter().enumerate() {
        producer.send_to("overblik.ky", (i % 2) as i32, Some(k), p);
    }
    let ends = producer.flush();
    let mut settings = ingest_settings(&bootstrap, "refused");
    settings.batch_max = 1000;
    settings.batch_linger = Duration::from_millis(500);
    let consumer = RunningConsumer::start(settings, store.clone());
    wait_consumed(&store, &ends, Duration::from_secs(60)).await;
    assert!(consumer.is_running(), "a refused message never stops ingest");
    consumer.stop().await.unwrap();
    assert_isolated(&db, backend, messages.len(), &refused).await;
}
crate::both_backends!(one_refused_message_is_isolated_and_the_rest_commits_once);

fn spawn_projector(bootstrap: &str, url: &str, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(["serve", "--brokers", bootstrap, "--database-url", url, "--group", "refused-kill", "--no-grpc"])
        // The test's database user owns everything.
        .arg("--allow-owner-role")
        .args(["--batch-max", "400", "--batch-linger-ms", "200"])
        .args(["--kafka-option", "session.timeout.ms=6000", "--kafka-option", "heartbeat.interval.ms=500"])
        .env("OVERBLIK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting the projector")
}

fn narrowing_steps(log: &Path) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().matches("narrowing down the message").count()
}

async fn a_kill_between_bisect_steps_loses_and_repeats_nothing(backend: Backend) {
    let broker = broker(2);
    let bootstrap = broker.bootstrap_servers();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (messages, refused) = cases(1600, &[5, 77, 401, 402, 950, 1599]);
    refuse_events(&db, backend, &refused).await;
    let producer = TestProducer::new(&bootstrap);
    for (i, (k, p)) in messages.iter().enumerate() {
        producer.send_to("overblik.ky", (i % 2) as i32, Some(k), p);
    }
    let ends = producer.flush();
    let log: PathBuf = std::env::temp_dir().join(format!("overblik-refused-{}.log", Uuid::new_v4().simple()));

    // Kill the projector right after it logs a step of the search, three
    // times: each time a prefix may have committed, the rest not.
    let mut kills = 0;
    let give_up = Instant::now() + Duration::from_secs(240);
    while kills < 3 && Instant::now() < give_up {
        let seen = narrowing_steps(&log);
        let mut child = spawn_projector(&bootstrap, &db.url, &log);
        let deadline = Instant::now() + Duration::from_secs(60);
        while narrowing_steps(&log) <= seen && Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the projector exited by itself ({status}): {}", std::fs::read_to_string(&log).unwrap());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if narrowing_steps(&log) > seen {
            kills += 1;
        } else {
            break;
        }
    }
    assert!(kills >= 2, "killed mid-search only {kills} times");
    let mut child = spawn_projector(&bootstrap, &db.url, &log);
    wait_consumed(&store, &ends, Duration::from_secs(120)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&log);
    assert_isolated(&db, backend, messages.len(), &refused).await;
}
crate::both_backends!(a_kill_between_bisect_steps_loses_and_repeats_nothing);
