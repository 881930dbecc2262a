//! The commands as a user runs them: `dev --once`, `status --json`,
//! `deadletters list|replay`.

use std::process::Command;

use crate::support::{Backend, TestDb};

fn overblik(args: &[&str]) -> std::process::Output {
    // In a scratch directory: dev mode on PostgreSQL writes its key file
    // into the working directory.
    Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(args)
        .env("OVERBLIK_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap()
}

async fn dev_once_accounts_for_every_demo_message(backend: Backend) {
    let db = TestDb::new(backend).await;
    let out = overblik(&[
        "dev",
        "--database-url",
        &db.url,
        "--demo-events",
        "1500",
        "--malformed-ratio",
        "0.03",
        "--once",
        "--grpc-listen",
        "127.0.0.1:0",
        "--partitions",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "dev --once failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Kafka-protocol broker (in-process): 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("1500 messages published and accounted for"), "{stdout}");

    let out = overblik(&["status", "--database-url", &db.url, "--json"]);
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = |k: &str| s[k].as_i64().unwrap_or_else(|| panic!("no {k} in {s}"));
    assert_eq!(n("consumed"), 1500);
    assert_eq!(n("consumed"), n("applied") + n("duplicates") + n("parked") + n("dead_lettered"));
    assert_eq!(n("parked"), 0);
    assert!(n("dead_lettered") > 0 && n("duplicates") > 0);
    for kind in ["case", "grant", "payment", "employment", "tax_record", "control_case"] {
        assert!(s["aggregates_by_kind"][kind].as_i64().unwrap() > 0, "{kind} aggregates in {s}");
    }
    assert!(s["projections"]["case_parties"].as_i64().unwrap() > 0, "{s}");

    // Dev seeds the demo municipality's Borgerblikket settings; the others
    // have none. A malformed settings file is refused naming the field.
    let out = overblik(&["borgerblikket", "config", "show", "--database-url", &db.url, "--authority", "55133018"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((shown["version"].as_i64(), shown["settings"]["case_heading"].as_str()), (Some(1), Some("kle_topic")));
    let out = overblik(&["borgerblikket", "config", "show", "--database-url", &db.url, "--authority", "35209115"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("has no settings"));
    let bad = std::env::temp_dir().join(format!("overblik-settings-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&bad, overblik::cli::DEV_BORGERBLIKKET_SETTINGS.replace("32.18.*", "32.1*")).unwrap();
    let out = overblik(&[
        "borgerblikket",
        "config",
        "set",
        "--database-url",
        &db.url,
        "--authority",
        "55133018",
        "--file",
        bad.to_str().unwrap(),
    ]);
    let _ = std::fs::remove_file(&bad);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("topics.kle"), "{}", String::from_utf8_lossy(&out.stderr));
    let month = overblik::borgerblikket::Month::of(overblik::domain::copenhagen_today(chrono::Utc::now()));
    let out = overblik(&[
        "borgerblikket",
        "stats",
        "--database-url",
        &db.url,
        "--authority",
        "national",
        "--month",
        &month.to_string(),
        "--json",
    ]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["counts"].as_array().map(Vec::len), Some(3), "{stats}");

    let out = overblik(&["deadletters", "list", "--database-url", &db.url, "--json"]);
    let letters: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len() as i64, n("dead_lettered"));
    assert!(letters.iter().all(|l| l["reason"].as_str().is_some_and(|r| !r.is_empty())));

    // Replayed unchanged, malformed messages stay dead letters: exit code 4.
    let out = overblik(&["deadletters", "replay", "--database-url", &db.url, "--all"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stdout));

    // A corrected payload resolves one.
    let bad_kle = letters.iter().find(|l| l["reason"] == "BAD_KLE").expect("a BAD_KLE letter in the demo");
    let id = bad_kle["id"].as_i64().unwrap();
    let store = db.store().await;
    let original = store.dead_letter_messages(&[id]).await.unwrap().remove(0);
    let fixed = String::from_utf8(original.payload).unwrap().replace("\"32.18\"", "\"32.18.04\"");
    let file = std::env::temp_dir().join(format!("overblik-fixed-{id}-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, fixed).unwrap();
    let out = overblik(&[
        "deadletters",
        "replay",
        "--database-url",
        &db.url,
        "--id",
        &id.to_string(),
        "--payload-file",
        file.to_str().unwrap(),
    ]);
    std::fs::remove_file(&file).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied"));
    let after = store.status().await.unwrap();
    assert_eq!(after.dead_lettered, n("dead_lettered") - 1);
    assert_eq!(after.applied, n("applied") + 1);
}
crate::both_backends!(dev_once_accounts_for_every_demo_message);

#[test]
fn a_bad_database_url_is_a_clear_error() {
    let out = overblik(&["status", "--database-url", "mysql://nowhere/x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
}

/// A rebuild on PostgreSQL prints its report, and none of the database's
/// notices (a generation's `DROP … IF EXISTS`), at the default log level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_prints_no_database_notices() {
    let db = TestDb::new(Backend::Postgres).await;
    db.store().await.close().await;
    let out = Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(["rebuild", "--database-url", &db.url])
        .env_remove("OVERBLIK_LOG")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(all.contains("rebuilt generation 2"), "{all}");
    assert!(!all.contains("does not exist"), "a notice reached the terminal: {all}");
}

/// `dev` prints the commands for the next steps; each runs as printed, and
/// `dev` says when the demo stream is fully indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_dev_prints_run_as_printed() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("overblik-dev-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_overblik"))
        .args(["dev", "--demo-events", "1500", "--partitions", "2", "--grpc-listen", "127.0.0.1:0"])
        .env("OVERBLIK_LOG", "warn")
        // As someone who runs the binary itself, not through cargo.
        .env_remove("CARGO")
        .env_remove("CARGO_MANIFEST_DIR")
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = dev.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.starts_with("the demo stream is fully indexed");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines =
        tokio::time::timeout(std::time::Duration::from_secs(180), lines).await.expect("indexed in time").unwrap();
    let text = lines.join("\n");
    assert!(text.contains("the demo stream is fully indexed: 1500 messages"), "{text}");
    let ready = lines.iter().position(|l| l.starts_with("ready.")).expect("a ready line");
    let commands: Vec<&str> = lines[ready..].iter().filter_map(|l| l.strip_prefix("  ")).collect();
    assert_eq!(commands.len(), 3, "{text}");
    for c in &commands {
        let out = Command::new("sh").args(["-c", c]).current_dir(&dir).env("OVERBLIK_LOG", "warn").output().unwrap();
        assert!(
            out.status.success(),
            "{c}\nfailed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A denied lookup exits 3: success means the caseworker got rows.
        if c.contains(" lookup ") {
            assert!(!out.stdout.is_empty(), "{c}: no rows printed");
        }
    }
    let _ = dev.kill();
    let _ = dev.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
