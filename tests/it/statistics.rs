//! Planner statistics after bulk loads: a load or a rebuild leaves the
//! serving tables analyzed, so the first lookups after it are planned on
//! the data they will read rather than on an empty table.

use std::collections::BTreeSet;

use sqlx::Connection;

use crate::support::{Backend, TestDb};

/// The tables, of `wanted`, that have planner statistics from an explicit
/// ANALYZE (PostgreSQL: `last_analyze`, never set by the autovacuum daemon;
/// SQLite: rows in `sqlite_stat1`).
async fn analyzed(backend: Backend, url: &str, wanted: &[String]) -> BTreeSet<String> {
    let names: Vec<String> = match backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar("SELECT relname::text FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")
                .fetch_all(&mut c)
                .await
                .unwrap()
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            let has_stats: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
                .fetch_one(&mut c)
                .await
                .unwrap();
            if has_stats == 0 {
                return BTreeSet::new();
            }
            sqlx::query_scalar("SELECT DISTINCT tbl FROM sqlite_stat1").fetch_all(&mut c).await.unwrap()
        }
    };
    names.into_iter().filter(|n| wanted.contains(n)).collect()
}

async fn live_generation(backend: Backend, url: &str) -> i64 {
    let sql = "SELECT CAST(generation AS BIGINT) FROM projection_meta WHERE id = 1";
    match backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        }
    }
}

fn serving_tables(generation: i64) -> Vec<String> {
    vec![format!("aggregates_g{generation}"), format!("case_parties_g{generation}"), "events".into()]
}

async fn a_bulk_load_and_a_rebuild_leave_the_serving_tables_analyzed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let generation = live_generation(backend, &db.url).await;
    let wanted = serving_tables(generation);
    assert!(analyzed(backend, &db.url, &wanted).await.is_empty(), "a new store has no statistics yet");

    let never: overblik::ingest::StopFlag = Default::default();
    overblik::ingest::population::load(&store, 3, 0..200, 2, &never, |_| {}).await.unwrap();
    assert_eq!(analyzed(backend, &db.url, &wanted).await, wanted.iter().cloned().collect());

    overblik::rebuild::rebuild(&store, |_, _| {}).await.unwrap();
    let rebuilt = live_generation(backend, &db.url).await;
    assert_ne!(rebuilt, generation);
    let wanted = serving_tables(rebuilt);
    assert_eq!(analyzed(backend, &db.url, &wanted).await, wanted.iter().cloned().collect());
}
crate::both_backends!(a_bulk_load_and_a_rebuild_leave_the_serving_tables_analyzed);

/// When each of `tables` was last analyzed explicitly (PostgreSQL), or
/// `None` for all after clearing SQLite's statistics (it keeps no time).
async fn mark(backend: Backend, url: &str, tables: &[String]) -> Vec<Option<String>> {
    match backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            let mut out = Vec::new();
            for t in tables {
                let at: Option<String> =
                    sqlx::query_scalar("SELECT last_analyze::text FROM pg_stat_user_tables WHERE relname = $1")
                        .bind(t)
                        .fetch_one(&mut c)
                        .await
                        .unwrap();
                out.push(at);
            }
            out
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query("DELETE FROM sqlite_stat1").execute(&mut c).await.unwrap();
            vec![None; tables.len()]
        }
    }
}

/// Ingest refreshes the statistics in the background once enough events
/// applied, one refresh at a time.
async fn ingest_refreshes_the_statistics_after_enough_events(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let wanted = serving_tables(live_generation(backend, &db.url).await);
    let never: overblik::ingest::StopFlag = Default::default();
    overblik::ingest::population::load(&store, 3, 0..50, 1, &never, |_| {}).await.unwrap();
    let before = mark(backend, &db.url, &wanted).await;
    let refreshed = || async {
        let now = mark_again(backend, &db.url, &wanted).await;
        now.iter().zip(&before).all(|(n, b)| n.is_some() && n != b)
    };

    let mut refresh = overblik::ingest::statistics::StatisticsRefresh::new(100);
    let rt = tokio::runtime::Handle::current();
    refresh.applied(99, &store, &rt);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!refreshed().await, "below the threshold nothing runs");
    refresh.applied(1, &store, &rt);
    crate::support::eventually(std::time::Duration::from_secs(30), "the statistics are refreshed", refreshed).await;
}
crate::both_backends!(ingest_refreshes_the_statistics_after_enough_events);

/// Like [`mark`], without clearing: SQLite's tables with statistics get
/// `Some`.
async fn mark_again(backend: Backend, url: &str, tables: &[String]) -> Vec<Option<String>> {
    match backend {
        Backend::Postgres => mark(backend, url, tables).await,
        Backend::Sqlite => {
            let present = analyzed(backend, url, tables).await;
            tables.iter().map(|t| present.contains(t).then(|| "analyzed".to_string())).collect()
        }
    }
}
