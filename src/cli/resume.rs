//! `overblik loadtest resume`: how long a projector killed with SIGKILL
//! takes, once restarted, to apply again — with static group membership
//! (`--instance-name`) or without.
//!
//! It publishes the demo stream at a steady rate to a broker that outlives
//! the projector, runs `overblik serve` as a child, kills it with SIGKILL a
//! few seconds into each round, starts it again at once and measures from
//! that start to the first message committed by the new process.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;

use crate::simulator::publish::{PublishSettings, publish};
use crate::store::Store;

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// A Kafka cluster that outlives the projector, with the topics created.
    #[arg(long)]
    pub brokers: String,
    #[arg(long, env = "OVERBLIK_DATABASE_URL")]
    pub database_url: String,
    /// Run the projector with this instance name (static membership);
    /// without it, dynamic membership.
    #[arg(long)]
    pub instance_name: Option<String>,
    /// How many kill-and-restart rounds.
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// Messages per second published meanwhile.
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// The projector's session timeout (librdkafka `session.timeout.ms`).
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// Consumer group.
    #[arg(long, default_value = "overblik-resume")]
    pub group: String,
    /// A restart that applies nothing for this long fails the run.
    #[arg(long, value_parser = super::serve::parse_interval, default_value = "120s")]
    pub give_up_after: Duration,
}

/// The projector child, killed when dropped.
struct Projector(Child);

impl Drop for Projector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn run(a: ResumeArgs) -> anyhow::Result<i32> {
    let store = Store::connect(&a.database_url).await?;
    let stop = Arc::new(AtomicBool::new(false));
    // The publisher stops on every way out.
    let _stop_publisher = crate::ingest::StopOnDrop(stop.clone());
    let publisher = {
        let settings = PublishSettings {
            brokers: a.brokers.clone(),
            events: 100_000_000,
            seed: 7,
            malformed_ratio: 0.0,
            rate: Some(a.rate),
            kafka_options: Vec::new(),
        };
        let stop = stop.clone();
        tokio::task::spawn_blocking(move || publish(&settings, |_| !stop.load(Ordering::Relaxed)))
    };
    let log = std::env::temp_dir().join(format!("overblik-resume-{}.log", std::process::id()));
    let consumed = || async { store.status().await.map(|s| s.consumed) };

    let mut child = Projector(spawn(&a, &log)?);
    let first = consumed().await?;
    wait_until(Duration::from_secs(120), || async { consumed().await.map(|c| c > first) }).await?;
    let mut resumes = Vec::new();
    for round in 1..=a.kills {
        tokio::time::sleep(Duration::from_secs(3)).await;
        child.0.kill()?;
        child.0.wait()?;
        let at_kill = consumed().await?;
        let started = Instant::now();
        child = Projector(spawn(&a, &log)?);
        wait_until(Duration::from_secs(a.give_up_after.as_secs()), || async { consumed().await.map(|c| c > at_kill) })
            .await?;
        let took = started.elapsed();
        println!("round {round}: applying again {:.2}s after the restart", took.as_secs_f64());
        resumes.push(took.as_secs_f64());
    }
    drop(child);
    stop.store(true, Ordering::Relaxed);
    publisher.await??;
    resumes.sort_by(f64::total_cmp);
    println!(
        "{} membership, session timeout {} ms: resume after SIGKILL median {:.2}s, max {:.2}s over {} kills",
        if a.instance_name.is_some() { "static" } else { "dynamic" },
        a.session_timeout_ms,
        resumes[resumes.len() / 2],
        resumes[resumes.len() - 1],
        resumes.len()
    );
    let _ = std::fs::remove_file(&log);
    Ok(0)
}

fn spawn(a: &ResumeArgs, log: &std::path::Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    // A measurement harness, run against a database its user owns.
    cmd.args(["serve", "--no-grpc", "--brokers", &a.brokers, "--database-url", &a.database_url, "--group", &a.group])
        .arg("--allow-owner-role")
        .args(["--batch-linger-ms", "20"])
        .args(["--kafka-option", &format!("session.timeout.ms={}", a.session_timeout_ms)])
        .env("OVERBLIK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(name) = &a.instance_name {
        cmd.args(["--instance-name", name]);
    }
    Ok(cmd.spawn()?)
}

async fn wait_until<F, Fut>(within: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::store::Result<bool>>,
{
    let deadline = Instant::now() + within;
    while !check().await? {
        if Instant::now() > deadline {
            anyhow::bail!("the projector applied nothing within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}
