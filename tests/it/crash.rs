//! Crash safety: the projector runs as a child process against a broker
//! that outlives it, is killed with SIGKILL at random points while it
//! ingests, and is restarted. At the end the store holds exactly the
//! expected projection: nothing lost, nothing applied twice.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use overblik::simulator::{DemoStream, Rng};

use crate::support::{Backend, Expected, TestDb, TestProducer, assert_exact, broker, wait_consumed};

/// What the projector logs once its consumer has subscribed, well after
/// its signal handlers are in place.
const CONSUMING: &str = "consumer: consuming";

/// Starts an ingest-only projector; its log goes to `log` (a file, not a
/// pipe, which could fill up unread and stall the child).
fn spawn_projector(bootstrap: &str, url: &str, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(["serve", "--brokers", bootstrap, "--database-url", url, "--group", "crash", "--no-grpc"])
        // The test's database user owns everything.
        .arg("--allow-owner-role")
        .args(["--batch-max", "100", "--batch-linger-ms", "10"])
        .args(["--kafka-option", "session.timeout.ms=6000", "--kafka-option", "heartbeat.interval.ms=500"])
        .env("OVERBLIK_LOG", "warn,overblik::ingest::consumer=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting the projector")
}

/// Fails the test with the projector's own words if it stopped by itself:
/// only the test may end it.
fn exited_early(child: &mut Child, log: &Path) {
    if let Some(status) = child.try_wait().unwrap() {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        panic!("the projector exited by itself ({status}); its log:\n{said}");
    }
}

async fn the_projector_survives_kill_9(backend: Backend) {
    let broker = broker(2);
    survives_kill_9_on(&broker.bootstrap_servers(), backend).await;
}
crate::both_backends!(the_projector_survives_kill_9);

/// The same against any broker (tansu too, see `tansu.rs`).
pub async fn survives_kill_9_on(bootstrap: &str, backend: Backend) {
    let bootstrap = bootstrap.to_string();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let log: PathBuf = std::env::temp_dir().join(format!("overblik-crash-{}.log", uuid::Uuid::new_v4().simple()));
    let messages: Vec<_> = DemoStream::new(51, 3000).with_malformed_ratio(0.02).collect();

    // The source keeps publishing while the projector is killed and restarted.
    let publisher = {
        let (bootstrap, messages) = (bootstrap.clone(), messages.clone());
        std::thread::spawn(move || {
            let producer = TestProducer::new(&bootstrap);
            for (i, m) in messages.iter().enumerate() {
                producer.send_demo(m);
                if i % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(60));
                }
            }
            producer.flush()
        })
    };

    let mut rng = Rng::new(7);
    let mut kills = 0;
    // Each round either makes progress or ends the loop; the bound turns a
    // projector that never ingests into a failure rather than a hang.
    let give_up = Instant::now() + Duration::from_secs(300);
    while kills < 5 {
        assert!(Instant::now() < give_up, "the projector made no progress for five minutes ({kills} kills)");
        let before = store.status().await.unwrap().consumed;
        let mut child = crate::support::KillOnDrop(spawn_projector(&bootstrap, &db.url, &log));
        // Kill only once it is ingesting, a random moment after.
        let deadline = Instant::now() + Duration::from_secs(45);
        while store.status().await.unwrap().consumed == before && Instant::now() < deadline {
            exited_early(&mut child, &log);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let progressed = store.status().await.unwrap().consumed > before;
        tokio::time::sleep(Duration::from_millis(rng.range(0, 250) as u64)).await;
        exited_early(&mut child, &log);
        child.kill().unwrap();
        child.wait().unwrap();
        if progressed {
            kills += 1;
        } else if publisher.is_finished() && store.status().await.unwrap().consumed as usize >= messages.len() {
            break;
        }
    }
    let ends = tokio::task::spawn_blocking(move || publisher.join().unwrap()).await.unwrap();

    // A last run finishes the work and stops cleanly on SIGTERM — sent once
    // it is past its start, as an operator's would be.
    let started_before = std::fs::read_to_string(&log).unwrap_or_default().matches(CONSUMING).count();
    let child = spawn_projector(&bootstrap, &db.url, &log);
    wait_consumed(&store, &ends, Duration::from_secs(120)).await;
    crate::support::eventually(Duration::from_secs(30), "the projector past its start", || {
        let log = log.clone();
        async move { std::fs::read_to_string(&log).unwrap_or_default().matches(CONSUMING).count() > started_before }
    })
    .await;
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(out.status.success(), "SIGTERM ends the projector with exit 0: {:?}", out.status);

    assert!(kills >= 3, "the projector was killed mid-ingest {kills} times");
    let _ = std::fs::remove_file(&log);
    assert_exact(&store, &Expected::of(&messages)).await;
}
