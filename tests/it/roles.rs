//! Two database roles (PostgreSQL): `overblik migrate` run by the schema's
//! owner grants the service's role what it needs; that role can read the
//! audit log and append to it, and nothing that could rewrite it. `serve`
//! refuses to start as a role that could.

use std::process::Command;

use chrono::Utc;
use overblik::audit::checkpoint::AuditKey;
use overblik::audit::{Actor, Entry, Kind, Search, Text, TransactionId};
use overblik::store::Store;
use sqlx::Connection;
use uuid::Uuid;

use crate::support::{pg_admin_url, with_database};

/// `url` with its user replaced.
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let host = rest.split_once('@').map_or(rest, |(_, h)| h);
    format!("{scheme}://{user}@{host}")
}

struct Roles {
    owner: String,
    runtime: String,
    db: String,
}

impl Roles {
    async fn create() -> Roles {
        let tag = Uuid::new_v4().simple().to_string()[..10].to_string();
        let r = Roles { owner: format!("ovb_own_{tag}"), runtime: format!("ovb_rt_{tag}"), db: format!("ovbr_{tag}") };
        let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
            .await
            .expect("the test PostgreSQL: its user must be able to create roles for this test");
        for sql in [
            format!("CREATE ROLE {} LOGIN", r.owner),
            format!("CREATE ROLE {} LOGIN", r.runtime),
            format!("CREATE DATABASE {} OWNER {}", r.db, r.owner),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("creating the test's roles");
        }
        r
    }

    fn url(&self, user: &str) -> String {
        as_user(&with_database(&pg_admin_url(), &self.db), user)
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let (owner, runtime, db) = (self.owner.clone(), self.runtime.clone(), self.db.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut c) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    for sql in [
                        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                        format!("DROP ROLE IF EXISTS {runtime}"),
                        format!("DROP ROLE IF EXISTS {owner}"),
                    ] {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    }
                }
            });
        })
        .join();
    }
}

fn overblik(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_overblik")).args(args).env("OVERBLIK_LOG", "warn").output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_role_can_append_to_the_audit_log_and_nothing_more() {
    let roles = Roles::create().await;
    let (owner, runtime) = (roles.url(&roles.owner), roles.url(&roles.runtime));
    let out = overblik(&["migrate", "--database-url", &owner, "--runtime-role", &roles.runtime]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The service's role works: it connects without migrating and appends.
    let store = Store::connect(&runtime).await.unwrap();
    assert_eq!(store.audit_rewrite_rights().await.unwrap(), Vec::<String>::new());
    let key = AuditKey::generate().unwrap();
    let entry = |n: usize| {
        let user = Text::new(&format!("u{n}"));
        Entry::new(TransactionId::generate(), Uuid::new_v4(), Kind::Lookup, Actor::Operator { user }, Search::rpc("X"))
            .allow(1, Vec::new())
            .seal()
    };
    let records = store.append_audit((0..5).map(entry).collect(), Utc::now(), Some(&key)).await.unwrap();
    assert_eq!(records.last().unwrap().seq, 5);
    assert!(overblik::audit::read::verify(&store).await.unwrap().ok());

    // …and can't change what it wrote, nor take the guard off.
    let mut c = sqlx::PgConnection::connect(&runtime).await.unwrap();
    for sql in [
        "DELETE FROM audit_log WHERE seq = 5",
        "UPDATE audit_log SET user_name = 'x' WHERE seq = 1",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE TRIGGER USER",
        "DROP TRIGGER audit_log_no_change ON audit_log",
        "UPDATE audit_head SET seq = 2",
        "SELECT audit_advance(5, 'not the head''s hash', 3, 'x')",
    ] {
        let r = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())).execute(&mut c).await;
        match r {
            Err(e) => assert!(e.to_string().contains("denied") || e.to_string().contains("owner"), "{sql}: {e}"),
            // The guarded function answers, and moves nothing backwards.
            Ok(_) if sql.starts_with("SELECT audit_advance") => {}
            Ok(_) => panic!("{sql} succeeded as the service's role"),
        }
    }
    assert_eq!(store.audit_head().await.unwrap().0, 5, "the head did not move back");
    // Its refresh of planner statistics skips the tables it doesn't own
    // rather than failing ingest.
    store.analyze_live().await.unwrap();
    assert_eq!(store.audit_records(&Default::default(), 0, 10).await.unwrap().len(), 5);
    // It keeps IT systems' service agreements: requests and decisions.
    let requested = crate::system::stored(
        &store,
        Uuid::new_v4(),
        Utc::now().date_naive(),
        Utc::now().date_naive() + chrono::Days::new(1),
    )
    .await;
    assert_eq!(store.service_agreements(&Default::default()).await.unwrap(), [requested]);
    let records = store.audit_records(&Default::default(), 0, 100).await.unwrap();
    assert_eq!(records.len(), 7, "each change with its record");

    // The owner could rewrite it: serve refuses to run as the owner…
    let owner_store = Store::connect(&owner).await.unwrap();
    assert!(!owner_store.audit_rewrite_rights().await.unwrap().is_empty());
    let dir = std::env::temp_dir().join(format!("overblik-roles-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (jwt, audit_key) = (dir.join("dev.key.json"), dir.join("audit.key"));
    overblik::identity::keys::KeyFile::dev_at(&jwt).unwrap();
    AuditKey::dev_at(&audit_key).unwrap();
    let serve = |url: &str, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_overblik"));
        cmd.args(["serve", "--database-url", url, "--grpc-listen", "127.0.0.1:0", "--accept-dev-key"])
            .arg(&jwt)
            .arg("--audit-key")
            .arg(&audit_key)
            .args(extra)
            .env("OVERBLIK_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    let refused = serve(&owner, &[]).wait_with_output().unwrap();
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("refusing to serve") && why.contains("owns the audit log"), "{why}");
    // …unless told to, and runs as the service's role.
    for (url, extra) in [(&runtime, &[][..]), (&owner, &["--allow-owner-role"][..])] {
        let mut child = serve(url, extra);
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        assert!(child.try_wait().unwrap().is_none(), "serve stopped by itself");
        child.kill().unwrap();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    store.close().await;
    owner_store.close().await;
}
