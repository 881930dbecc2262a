//! The SQLite backend, the embedded default. A set of rows is bound as one
//! JSON array and read with `json_each`, so, as on PostgreSQL, a batch costs
//! a fixed number of statements. Bytes travel hex-encoded inside the JSON and
//! are decoded with `unhex`; UUIDs, dates and instants are stored as text.
//!
//! Writers begin with `BEGIN IMMEDIATE`: SQLite has one writer at a time, and
//! taking the write lock up front avoids a read transaction that can't be
//! upgraded later. That lock is also what the rebuild's swap waits for.

use std::str::FromStr;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::error::BoxDynError;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Arguments as _, AssertSqlSafe, Pool, Row as _, Sqlite, Transaction};

use super::backend::{Backend, Lock, Record, Sql};
use super::rows::{Row, Val};
use super::schema::{ColType, Column, Dialect};
use super::types::sqlite_instant;
use super::{ACQUIRE_TIMEOUT, ErrorClass, Result, StoreError};

/// What a SQLite result code means for the caller.
pub(super) fn error_class(code: &str) -> Option<ErrorClass> {
    match code {
        // Constraint unique / primary key.
        "2067" | "1555" => Some(ErrorClass::Conflict),
        // Busy and locked.
        "5" | "6" | "517" | "261" => Some(ErrorClass::Unavailable),
        _ => None,
    }
}

#[derive(Clone, Debug)]
pub struct Lite {
    pub(super) pool: SqlitePool,
}

/// A cell as JSON inside a bound row set (bytes hex-encoded).
fn json_cell(v: &Val<'_>) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Int(i) => json!(i),
        Val::Text(s) => json!(s),
        Val::Bytes(b) => json!(hex::encode(b)),
        Val::Date(d) => json!(d.to_string()),
        Val::Uuid(u) => json!(u.to_string()),
        Val::Time(t) => json!(sqlite_instant(t)),
    }
}

impl Backend for Lite {
    type Db = Sqlite;
    const DIALECT: Dialect = Dialect::Sqlite;
    const NOW: &'static str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
    const KEYS_AFTER_LOAD: bool = false;
    // Without a limit ANALYZE reads every index whole; 1,000 rows per index
    // give the planner the shape at a bounded cost (SQLite's own advice).
    const ANALYZE_SETUP: Option<&'static str> = Some("PRAGMA analysis_limit = 1000");
    const LAST_SEQ: &'static str = "SELECT COALESCE(max(seq), 0) AS n FROM events";
    // One writer at a time already.
    const OUTBOX_LOCK: Option<&'static str> = None;

    fn placeholder(n: usize) -> String {
        format!("?{n}")
    }

    fn bind(args: &mut SqliteArguments, v: &Val<'_>) -> std::result::Result<(), BoxDynError> {
        match v {
            Val::Null => args.add(Option::<String>::None),
            Val::Int(x) => args.add(*x),
            Val::Text(x) => args.add(x.as_ref()),
            Val::Bytes(x) => args.add(x.as_ref()),
            Val::Date(x) => args.add(x.to_string()),
            Val::Uuid(x) => args.add(x.to_string()),
            Val::Time(x) => args.add(sqlite_instant(x)),
        }
    }

    fn bind_list(args: &mut SqliteArguments, _ty: ColType, vals: &[Val<'_>]) -> std::result::Result<(), BoxDynError> {
        args.add(Value::Array(vals.iter().map(json_cell).collect()).to_string())
    }

    fn in_list(expr: &str, placeholder: &str) -> String {
        format!("{expr} IN (SELECT value FROM json_each({placeholder}))")
    }

    fn bind_rows(q: &mut Sql<Self>, cols: &[Column], rows: &[Row<'_>], alias: &str) -> String {
        let json = Value::Array(rows.iter().map(|r| Value::Array(r.iter().map(json_cell).collect())).collect());
        if let Err(e) = q.args.add(json.to_string()) {
            q.fail(e);
        }
        let p = q.next_placeholder();
        let cells: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, c)| match c.ty {
                ColType::Bytes => format!("unhex(json_extract(value, '$[{i}]')) AS {}", c.name),
                _ => format!("json_extract(value, '$[{i}]') AS {}", c.name),
            })
            .collect();
        format!("(SELECT {} FROM json_each({p}) ORDER BY key) AS {alias}", cells.join(", "))
    }

    fn greatest(a: &str, b: &str) -> String {
        format!("max({a}, {b})")
    }

    fn audit_advance(from_seq: &str, from_hash: &str, to_seq: &str, to_hash: &str) -> String {
        format!(
            "UPDATE audit_head SET seq = {to_seq}, hash = {to_hash}
             WHERE id = 1 AND seq = {from_seq} AND hash = {from_hash} AND {to_seq} > {from_seq} RETURNING 1 AS n"
        )
    }

    async fn connect(url: &str) -> Result<Lite> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            // Deleted content is overwritten, not left in free pages:
            // deletion is physical (invariant 6).
            .pragma("secure_delete", "on");
        let pool =
            SqlitePoolOptions::new().max_connections(8).acquire_timeout(ACQUIRE_TIMEOUT).connect_with(options).await?;
        let migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.run(&pool).await?;
        Ok(Lite { pool })
    }

    fn pool(&self) -> &Pool<Sqlite> {
        &self.pool
    }

    fn lookups(&self) -> &Pool<Sqlite> {
        &self.pool
    }

    /// Every writer takes the write lock up front, whatever `lock` asks:
    /// SQLite has one writer at a time.
    async fn begin(&self, _lock: Lock) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    super::backend::sqlx_execution!(Sqlite, SqliteConnection);

    async fn tables_containing(&self, needle: &str) -> Result<Vec<String>> {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut hits = Vec::new();
        for table in tables {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)").bind(&table).fetch_all(&self.pool).await?;
            for column in columns {
                let sql = format!(
                    "SELECT EXISTS (SELECT 1 FROM \"{table}\" WHERE instr(CAST(\"{column}\" AS BLOB), CAST(?1 AS BLOB)) > 0)"
                );
                let found: bool = sqlx::query_scalar(AssertSqlSafe(sql)).bind(needle).fetch_one(&self.pool).await?;
                if found {
                    hits.push(format!("{table}.{column}"));
                }
            }
        }
        Ok(hits)
    }
}
