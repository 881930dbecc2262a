//! What differs between PostgreSQL and SQLite, and nothing else.
//!
//! The engine (`engine.rs`) holds every query and the order of a batch's
//! writes once; a [`Backend`] supplies only what the dialects do differently:
//! how a value and a set of rows are bound (typed arrays and `UNNEST` on
//! PostgreSQL, one JSON array and `json_each` on SQLite), placeholders, how a
//! writer excludes the rebuild's swap (an advisory lock, `BEGIN IMMEDIATE`),
//! connection set-up and migrations, and the catalogue scan of the erasure
//! check.

use std::future::Future;

use sqlx::error::BoxDynError;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, FromRow, Pool, Transaction};

use super::Result;
use super::rows::{Row, Val};
use super::schema::{ColType, Column, Dialect};

/// The connection type of a backend (a pooled connection and a transaction
/// both dereference to it).
pub type Conn<B> = <<B as Backend>::Db as Database>::Connection;
/// The argument buffer of a backend.
pub type Args<B> = <<B as Backend>::Db as Database>::Arguments;

/// How a transaction stands to the rebuild's swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// Not at all (reads, offsets, the rebuild's bulk writes).
    None,
    /// An ingest batch: many at once, never during a swap.
    Shared,
    /// The swap (and the rebuild's start): alone.
    Exclusive,
}

/// A row struct that decodes on both backends (see `types.rs`).
pub trait Record: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}
impl<T> Record for T where T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}

/// A statement and its bound arguments, built like sqlx's `QueryBuilder`:
/// each bound value yields the placeholder to write where it is used.
pub struct Sql<B: Backend> {
    pub text: String,
    pub args: Args<B>,
    pub count: usize,
    /// Whether the backend may keep the statement's plan (false for lookups
    /// by a batch's id list, whose best plan depends on the table's size).
    pub persistent: bool,
    pub error: Option<BoxDynError>,
}

impl<B: Backend> Default for Sql<B> {
    fn default() -> Self {
        Sql { text: String::new(), args: Default::default(), count: 0, persistent: true, error: None }
    }
}

impl<B: Backend> Sql<B> {
    pub fn new() -> Self {
        Self::default()
    }

    /// A statement without arguments.
    pub fn of(text: impl Into<String>) -> Self {
        Sql { text: text.into(), ..Self::default() }
    }

    fn keep(&mut self, r: std::result::Result<(), BoxDynError>) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    /// Binds one value; returns its placeholder.
    pub fn arg<'v>(&mut self, v: impl Into<Val<'v>>) -> String {
        let r = B::bind(&mut self.args, &v.into());
        self.keep(r);
        self.count += 1;
        B::placeholder(self.count)
    }

    /// Binds a list of values of one type; returns the placeholder to pass
    /// to [`Backend::in_list`].
    pub fn list<'v>(&mut self, ty: ColType, vals: impl IntoIterator<Item = Val<'v>>) -> String {
        let vals: Vec<Val<'v>> = vals.into_iter().collect();
        let r = B::bind_list(&mut self.args, ty, &vals);
        self.keep(r);
        self.count += 1;
        B::placeholder(self.count)
    }

    /// Binds `rows` (cells in the order of `cols`); returns a relation
    /// `alias` with those column names, for `FROM`, `JOIN` or `USING`.
    pub fn rows(&mut self, cols: &[Column], rows: &[Row<'_>], alias: &str) -> String {
        B::bind_rows(self, cols, rows, alias)
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = text.into();
        self
    }

    /// Planned for this call only.
    pub fn once(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Records a binding error for the execution to report.
    pub fn fail(&mut self, e: BoxDynError) {
        self.error.get_or_insert(e);
    }

    /// Counts a placeholder bound directly into `args` by a backend.
    pub fn next_placeholder(&mut self) -> String {
        self.count += 1;
        B::placeholder(self.count)
    }
}

/// One database product. Implemented once per backend; everything shared
/// lives in the engine.
pub trait Backend: Clone + Send + Sync + std::fmt::Debug + Sized + 'static {
    type Db: Database;
    const DIALECT: Dialect;
    /// The current instant, as the backend stores instants.
    const NOW: &'static str;
    /// Whether a rebuild creates its tables without primary keys and adds
    /// them after the bulk load (SQLite can't add a primary key later).
    const KEYS_AFTER_LOAD: bool;
    /// Run in the transaction before `ANALYZE`: bounds its cost where the
    /// backend would otherwise read every row, and keeps the notices of
    /// tables another role owns (and may not be analyzed) out of the log.
    const ANALYZE_SETUP: Option<&'static str>;
    /// A query for `n`, the highest event sequence number handed out.
    const LAST_SEQ: &'static str;
    /// Run in a batch transaction before it writes notices, where writers
    /// can commit in parallel: it serialises the outbox's writers until
    /// they commit, so outbox sequence numbers become visible in order and
    /// a reader resuming after a cursor never skips one committed later.
    const OUTBOX_LOCK: Option<&'static str>;

    /// The placeholder of the `n`th argument (1-based).
    fn placeholder(n: usize) -> String;
    fn bind(args: &mut Args<Self>, v: &Val<'_>) -> std::result::Result<(), BoxDynError>;
    fn bind_list(args: &mut Args<Self>, ty: ColType, vals: &[Val<'_>]) -> std::result::Result<(), BoxDynError>;
    /// `expr` is one of the list bound at `placeholder`.
    fn in_list(expr: &str, placeholder: &str) -> String;
    fn bind_rows(q: &mut Sql<Self>, cols: &[Column], rows: &[Row<'_>], alias: &str) -> String;
    /// The larger of two expressions.
    fn greatest(a: &str, b: &str) -> String;
    /// A statement that moves the audit head from (`from_seq`, `from_hash`)
    /// forward to (`to_seq`, `to_hash`) if it is still there, returning one
    /// row (`n`) if it moved and none otherwise. The arguments are
    /// placeholders already bound.
    fn audit_advance(from_seq: &str, from_hash: &str, to_seq: &str, to_hash: &str) -> String;

    /// Connects and runs the migrations.
    fn connect(url: &str) -> impl Future<Output = Result<Self>> + Send;
    /// The pool for everything but lookups.
    fn pool(&self) -> &Pool<Self::Db>;
    /// The pool of the lookup path.
    fn lookups(&self) -> &Pool<Self::Db>;
    fn begin(&self, lock: Lock) -> impl Future<Output = Result<Transaction<'static, Self::Db>>> + Send;
    fn close(&self) -> impl Future<Output = ()> + Send;

    fn execute(conn: &mut Conn<Self>, q: Sql<Self>) -> impl Future<Output = Result<u64>> + Send;
    fn fetch<T: Record>(conn: &mut Conn<Self>, q: Sql<Self>) -> impl Future<Output = Result<Vec<T>>> + Send;
    /// Rows of `columns` text cells (the projection dump).
    fn fetch_texts(
        conn: &mut Conn<Self>,
        sql: String,
        columns: usize,
    ) -> impl Future<Output = Result<Vec<Vec<Option<String>>>>> + Send;

    /// Every `table.column` whose content contains `needle`.
    fn tables_containing(&self, needle: &str) -> impl Future<Output = Result<Vec<String>>> + Send;
}

/// `execute`, `fetch` and `fetch_texts` of a [`Backend`], the same for both
/// sqlx drivers but for their concrete types, written once.
macro_rules! sqlx_execution {
    ($db:ty, $conn:ty) => {
        async fn execute(conn: &mut $conn, q: Sql<Self>) -> Result<u64> {
            if let Some(e) = q.error {
                return Err(StoreError::Database(sqlx::Error::Encode(e)));
            }
            let r = sqlx::query_with(AssertSqlSafe(q.text), q.args).persistent(q.persistent).execute(conn).await?;
            Ok(r.rows_affected())
        }

        async fn fetch<T: Record>(conn: &mut $conn, q: Sql<Self>) -> Result<Vec<T>> {
            if let Some(e) = q.error {
                return Err(StoreError::Database(sqlx::Error::Encode(e)));
            }
            Ok(sqlx::query_as_with::<$db, T, _>(AssertSqlSafe(q.text), q.args)
                .persistent(q.persistent)
                .fetch_all(conn)
                .await?)
        }

        async fn fetch_texts(conn: &mut $conn, sql: String, columns: usize) -> Result<Vec<Vec<Option<String>>>> {
            let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(conn).await?;
            Ok(rows.iter().map(|r| (0..columns).map(|i| r.get::<Option<String>, _>(i)).collect()).collect())
        }
    };
}
pub(super) use sqlx_execution;
