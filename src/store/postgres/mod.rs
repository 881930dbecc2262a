//! The PostgreSQL backend. A set of rows is bound as one typed array per
//! column and read with `UNNEST`, so a batch costs a fixed number of
//! statements whatever its size.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Arguments as _, AssertSqlSafe, Pool, Postgres, Row as _, Transaction};
use uuid::Uuid;

use super::backend::{Backend, Lock, Record, Sql};
use super::rows::{Row, Val};
use super::schema::{ColType, Column, Dialect};
use super::{ACQUIRE_TIMEOUT, ErrorClass, Result, StoreError};

/// Serialises ingest batches (shared) against the rebuild's swap
/// (exclusive); the value spells "overblik".
const PROJECTION_LOCK: i64 = 0x6f76_6572_626c_696b;

/// What a SQLSTATE means for the caller.
pub(super) fn error_class(code: &str) -> Option<ErrorClass> {
    match code {
        // Unique violation, serialization failure, deadlock.
        "23505" | "40001" | "40P01" => Some(ErrorClass::Conflict),
        // Shutdown, too many connections, connection exceptions.
        "57P01" | "57P02" | "57P03" | "53300" => Some(ErrorClass::Unavailable),
        c if c.starts_with("08") => Some(ErrorClass::Unavailable),
        _ => None,
    }
}

#[derive(Clone, Debug)]
pub struct Pg {
    pub(super) pool: PgPool,
    /// The lookup path's pool. Its statements (a citizen's aggregates, an
    /// authority's agreements, the audit append) have one plan that fits
    /// every argument, so its sessions always use the generic plan and skip
    /// planning on every call — most of the database's CPU per lookup
    /// otherwise. Other statements keep per-call plans (an audit query with
    /// optional filters needs them).
    pub(super) lookups: PgPool,
}

/// Whether every migration of this build is applied (then nothing needs
/// the rights to run DDL).
async fn migrations_current(pool: &PgPool, migrator: &sqlx::migrate::Migrator) -> Result<bool> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(false);
    }
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success").fetch_all(pool).await?;
    Ok(migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| applied.iter().any(|(v, c)| *v == m.version && c.as_slice() == m.checksum.as_ref())))
}

/// What `overblik migrate --runtime-role` grants the service's role: to
/// read and write the event store, the projections (also those a rebuild
/// makes later, by default privileges) and the agreements; to read the
/// audit log and append to it, and to move its head forward through the
/// guarded function — never to update, delete or truncate it, and, not
/// owning it, never to alter it or its triggers.
pub(super) async fn grant_runtime(pool: &PgPool, role: &str) -> Result<()> {
    let r = format!("\"{role}\"");
    let audit = "audit_log, audit_head, audit_checkpoints, audit_tiles";
    let statements = [
        format!("GRANT USAGE ON SCHEMA public TO {r}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}"),
        format!("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}"),
        format!("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {r}"),
        format!("REVOKE ALL ON {audit}, _sqlx_migrations FROM {r}"),
        format!("GRANT SELECT, INSERT ON audit_log, audit_checkpoints, audit_tiles TO {r}"),
        format!("GRANT SELECT ON audit_head, _sqlx_migrations TO {r}"),
        format!("GRANT EXECUTE ON FUNCTION audit_advance(BIGINT, TEXT, BIGINT, TEXT) TO {r}"),
    ];
    let mut tx = pool.begin().await?;
    for sql in statements {
        sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Why the connected role could rewrite the audit log, if it could.
pub(super) async fn audit_rewrite_rights(pool: &PgPool) -> Result<Vec<String>> {
    let row = sqlx::query(
        "SELECT current_user::text,
                (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
                pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = 'audit_log'::regclass), 'USAGE'),
                has_table_privilege('audit_log', 'UPDATE'), has_table_privilege('audit_log', 'DELETE'),
                has_table_privilege('audit_log', 'TRUNCATE'), has_table_privilege('audit_head', 'UPDATE')",
    )
    .fetch_one(pool)
    .await?;
    let role: String = row.get(0);
    let mut why = Vec::new();
    for (i, what) in [
        (1, "is a superuser"),
        (2, "owns the audit log (so it may alter it and switch off its triggers)"),
        (3, "may UPDATE audit_log"),
        (4, "may DELETE from audit_log"),
        (5, "may TRUNCATE audit_log"),
        (6, "may UPDATE audit_head"),
    ] {
        if row.get::<Option<bool>, _>(i).unwrap_or(false) {
            why.push(format!("role {role} {what}"));
        }
    }
    Ok(why)
}

fn array_type(ty: ColType) -> &'static str {
    match ty {
        ColType::Int => "bigint[]",
        ColType::Int32 => "int[]",
        ColType::Text => "text[]",
        ColType::Date => "date[]",
        ColType::Uuid => "uuid[]",
        ColType::Time => "timestamptz[]",
        ColType::Bytes => "bytea[]",
    }
}

/// Binds the cells as one array of `ty` (NULL where a cell is NULL).
fn bind_array<'r, 'v: 'r>(
    args: &mut PgArguments,
    ty: ColType,
    cells: impl Iterator<Item = &'r Val<'v>>,
) -> std::result::Result<(), BoxDynError> {
    macro_rules! column {
        ($t:ty, $conv:expr) => {{
            let conv: fn(&'r Val<'v>) -> Option<$t> = $conv;
            args.add(cells.map(conv).collect::<Vec<Option<$t>>>())
        }};
    }
    match ty {
        ColType::Int => column!(i64, |v| if let Val::Int(x) = v { Some(*x) } else { None }),
        ColType::Int32 => {
            let cells: Vec<Option<i32>> =
                cells.map(|v| if let Val::Int(x) = v { i32::try_from(*x).ok() } else { None }).collect();
            args.add(cells)
        }
        ColType::Text => column!(&'r str, |v| if let Val::Text(x) = v { Some(x.as_ref()) } else { None }),
        ColType::Bytes => column!(&'r [u8], |v| if let Val::Bytes(x) = v { Some(x.as_ref()) } else { None }),
        ColType::Date => column!(NaiveDate, |v| if let Val::Date(x) = v { Some(*x) } else { None }),
        ColType::Uuid => column!(Uuid, |v| if let Val::Uuid(x) = v { Some(*x) } else { None }),
        ColType::Time => column!(DateTime<Utc>, |v| if let Val::Time(x) = v { Some(*x) } else { None }),
    }
}

impl Backend for Pg {
    type Db = Postgres;
    const DIALECT: Dialect = Dialect::Postgres;
    const NOW: &'static str = "now()";
    // The identity's last value: under the exclusive lock no batch is in
    // flight, so every event up to it is committed (or never will be), and
    // `seq` has no B-tree to read a maximum from (see migration 0004).
    const KEYS_AFTER_LOAD: bool = true;
    // ANALYZE samples (300 × default_statistics_target rows per table); a
    // role that doesn't own a table gets a WARNING and the table is skipped.
    const ANALYZE_SETUP: Option<&'static str> = Some("SET LOCAL client_min_messages = error");
    const LAST_SEQ: &'static str =
        "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence('events', 'seq')), 0) AS n";
    // Held to the commit; the value spells "advis".
    const OUTBOX_LOCK: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(x'6164766973'::bigint)");

    fn placeholder(n: usize) -> String {
        format!("${n}")
    }

    fn bind(args: &mut PgArguments, v: &Val<'_>) -> std::result::Result<(), BoxDynError> {
        match v {
            Val::Null => args.add(Option::<String>::None),
            Val::Int(x) => args.add(*x),
            Val::Text(x) => args.add(x.as_ref()),
            Val::Bytes(x) => args.add(x.as_ref()),
            Val::Date(x) => args.add(*x),
            Val::Uuid(x) => args.add(*x),
            Val::Time(x) => args.add(*x),
        }
    }

    fn bind_list(args: &mut PgArguments, ty: ColType, vals: &[Val<'_>]) -> std::result::Result<(), BoxDynError> {
        bind_array(args, ty, vals.iter())
    }

    fn in_list(expr: &str, placeholder: &str) -> String {
        format!("{expr} = ANY({placeholder})")
    }

    fn bind_rows(q: &mut Sql<Self>, cols: &[Column], rows: &[Row<'_>], alias: &str) -> String {
        let mut arrays = Vec::with_capacity(cols.len());
        for (i, c) in cols.iter().enumerate() {
            if let Err(e) = bind_array(&mut q.args, c.ty, rows.iter().map(|r| &r[i])) {
                q.fail(e);
            }
            arrays.push(format!("{}::{}", q.next_placeholder(), array_type(c.ty)));
        }
        let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        format!("UNNEST({}) AS {alias}({})", arrays.join(", "), names.join(", "))
    }

    fn greatest(a: &str, b: &str) -> String {
        format!("GREATEST({a}, {b})")
    }

    /// Through the guarded function (migration 0011): the service's role
    /// may move the head forward this way and may not update it otherwise.
    fn audit_advance(from_seq: &str, from_hash: &str, to_seq: &str, to_hash: &str) -> String {
        format!("SELECT 1::bigint AS n WHERE audit_advance({from_seq}, {from_hash}, {to_seq}, {to_hash})")
    }

    async fn connect(url: &str) -> Result<Pg> {
        // Notices (`… does not exist, skipping` from the generation loops'
        // `DROP … IF EXISTS`) are not for the user's terminal.
        let options =
            PgConnectOptions::from_str(url).map_err(StoreError::from)?.options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        // Only an owner may migrate; the service's own role finds the schema
        // current and goes on (overblik migrate, README "Two roles").
        let migrator = sqlx::migrate!("./migrations/postgres");
        if !migrations_current(&pool, &migrator).await? {
            migrator.run(&pool).await?;
        }
        let lookups = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.options([("plan_cache_mode", "force_generic_plan")]));
        Ok(Pg { pool, lookups })
    }

    fn pool(&self) -> &Pool<Postgres> {
        &self.pool
    }

    fn lookups(&self) -> &Pool<Postgres> {
        &self.lookups
    }

    async fn begin(&self, lock: Lock) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        let take = match lock {
            Lock::None => None,
            Lock::Shared => Some("SELECT pg_advisory_xact_lock_shared($1)"),
            Lock::Exclusive => Some("SELECT pg_advisory_xact_lock($1)"),
        };
        if let Some(sql) = take {
            sqlx::query(sql).bind(PROJECTION_LOCK).execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    async fn close(&self) {
        self.lookups.close().await;
        self.pool.close().await;
    }

    super::backend::sqlx_execution!(Postgres, PgConnection);

    async fn tables_containing(&self, needle: &str) -> Result<Vec<String>> {
        #[derive(sqlx::FromRow)]
        struct ColumnRow {
            table_name: String,
            column_name: String,
            data_type: String,
        }
        let columns: Vec<ColumnRow> = sqlx::query_as(
            "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name,
                    c.data_type::text AS data_type
             FROM information_schema.columns c JOIN information_schema.tables t
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
               AND c.table_name NOT LIKE '\\_sqlx%'
             ORDER BY 1, 2",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut hits = Vec::new();
        for ColumnRow { table_name: table, column_name: column, data_type } in &columns {
            let test = if data_type == "bytea" {
                format!("position(convert_to($1, 'UTF8') IN \"{column}\") > 0")
            } else {
                format!("strpos(\"{column}\"::text, $1) > 0")
            };
            let found: bool =
                sqlx::query_scalar(AssertSqlSafe(format!("SELECT EXISTS (SELECT 1 FROM \"{table}\" WHERE {test})")))
                    .bind(needle)
                    .fetch_one(&self.pool)
                    .await?;
            if found {
                hits.push(format!("{table}.{column}"));
            }
        }
        Ok(hits)
    }
}
