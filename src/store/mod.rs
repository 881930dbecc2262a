//! Store: the event store, the projections, the offsets, the parked and the
//! dead-lettered messages, on PostgreSQL (production) or SQLite (the embedded
//! default), behind one interface.
//!
//! The ingest path writes through a [`Tx`]: one transaction per batch that
//! loads what the projector needs ([`Tx::load_context`]), writes the plan it
//! returns ([`Tx::write`]) and advances the batch's partition offsets with a
//! compare-and-set ([`Tx::advance_offsets`]). Either all of it commits or
//! none of it does (invariant 1).
//!
//! Every query and the write order of a batch live once, in the engine
//! (`engine.rs`); a backend (`postgres`, `sqlite`) supplies only what the
//! dialects do differently (`backend.rs`): binding a value or a set of rows,
//! placeholders, locking, connection set-up, the bulk append, error codes.

mod advis;
mod backend;
mod borgerblikket;
mod engine;
mod parked;
mod postgres;
pub mod rows;
pub mod schema;
mod service_agreements;
mod serving;
mod sqlite;
mod types;

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::audit::checkpoint::AuditKey;
use crate::domain::{AggregateKind, Cvr, PartyId};
use crate::projection::{Aggregate, Context, Counts, Decoded, Deletion, PartitionKey, Plan, State};
pub use advis::{NewSubscription, PendingNotice, Subscribed};
pub use borgerblikket::StoredSettings;
pub use parked::{
    Decision, OperatorDecision, ParkedAggregate, ParkedBudget, ParkedFilter, ParkedSource, RecordedDecision,
};
pub use schema::Dialect;
pub use service_agreements::ServiceAgreementFilter;
pub use serving::StoredCheckpoint;

/// How long a query waits for a pooled connection before the store counts
/// as unavailable.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// At most this many aggregates are read for one citizen and area: a bound
/// on one lookup's memory, far above any real citizen's count.
pub const CITIZEN_ROW_LIMIT: i64 = 10_000;

/// Which audit records a data-protection officer asks for.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Only this authority's records (a data-protection officer sees their
    /// own authority's; `None` only for the national supervisor and the
    /// command line).
    pub authority: Option<String>,
    /// Only records of these kinds (`audit::Kind::as_str`).
    pub kinds: Option<Vec<&'static str>>,
    pub citizen: Option<String>,
    pub user_id: Option<String>,
    pub data_area: Option<String>,
    pub purpose_id: Option<u32>,
    pub agreement_id: Option<String>,
    pub decision: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database can't be reached or is busy. Retry with backoff.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A partition's offset moved under us: another consumer (or an earlier
    /// attempt of ours whose commit outcome we didn't see) committed it.
    /// Drop the batch and resume from the stored offset.
    #[error("fenced: the stored offset of {topic}/{partition} is no longer {expected}")]
    Fenced { topic: String, partition: i32, expected: i64 },
    /// A concurrent writer changed an aggregate this batch read. Retry.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(
        "the projection tables were built for schema version {found}, this build needs {expected}: run `overblik rebuild`"
    )]
    SchemaMismatch { found: i32, expected: i32 },
    #[error("stored data can't be read by this build: {0}")]
    Corrupt(String),
    /// The database refused the data itself: PostgreSQL's classes 22 (data
    /// exception), 23 (integrity constraint, but for the unique violations
    /// the ingest path is designed around) and 54 (program limit), and
    /// SQLite's equivalents. Trying the same data again fails the same
    /// way; the ingest path isolates the message that causes it.
    #[error("the database refused the data: SQLSTATE {sqlstate}: {detail}")]
    Refused {
        /// The SQLSTATE (for SQLite, the SQLSTATE of the same condition).
        sqlstate: String,
        /// The database's message, scrubbed, with the constraint and table
        /// it names; never a value.
        detail: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (use postgres://… or sqlite://…)")]
    BadUrl,
    #[error("a role name is 1-63 lowercase letters, digits and _, not starting with a digit")]
    BadRole,
    #[error("SQLite has no database roles: a runtime role is PostgreSQL's")]
    NoRoles,
}

impl StoreError {
    /// Whether trying the same work again later can succeed: a connection
    /// problem, a lock or serialization conflict, or an error not known to
    /// be the data's fault. A refusal of the data is not.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict(_) | StoreError::Database(_))
    }
}

/// What a database error code means for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorClass {
    /// A concurrent writer came first: retry.
    Conflict,
    /// The database is busy or gone: retry later.
    Unavailable,
}

/// The SQLSTATE of a database error that means the data itself can't be
/// stored, or `None`. PostgreSQL reports SQLSTATEs; SQLite reports its
/// extended result codes, mapped here to the SQLSTATE of the same
/// condition.
fn refusal_sqlstate(code: &str) -> Option<&str> {
    match code {
        // PostgreSQL's unique violation is the designed conflict (two writers
        // of one aggregate); everything else in these classes is the data's.
        "23505" => None,
        c if c.len() == 5 && (c.starts_with("22") || c.starts_with("23") || c.starts_with("54")) => Some(c),
        // SQLite: CHECK, NOT NULL, FOREIGN KEY, a trigger's RAISE, other
        // constraints; string or blob too big; datatype mismatch.
        "275" => Some("23514"),
        "1299" => Some("23502"),
        "787" => Some("23503"),
        "19" | "1811" | "531" => Some("23000"),
        "18" => Some("54000"),
        "20" | "3091" => Some("22000"),
        _ => None,
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::Protocol(_) | E::WorkerCrashed => {
                StoreError::Unavailable(e)
            }
            E::Database(db) => {
                let code = db.code().unwrap_or_default();
                if let Some(sqlstate) = refusal_sqlstate(&code) {
                    let native = if *sqlstate != *code { format!(" (SQLite {code})") } else { String::new() };
                    let mut detail = format!("SQLSTATE {sqlstate}{native}: {}", db.message());
                    if let Some(c) = db.constraint() {
                        detail.push_str(&format!("; constraint {c}"));
                    }
                    if let Some(t) = db.table() {
                        detail.push_str(&format!("; table {t}"));
                    }
                    let detail = crate::events::scrub_detail(&detail);
                    return StoreError::Refused { sqlstate: sqlstate.to_string(), detail, source: e };
                }
                // SQLSTATEs and SQLite's numeric codes never overlap.
                match postgres::error_class(&code).or_else(|| sqlite::error_class(&code)) {
                    Some(ErrorClass::Conflict) => StoreError::Conflict(db.message().to_string()),
                    Some(ErrorClass::Unavailable) => StoreError::Unavailable(e),
                    None => StoreError::Database(e),
                }
            }
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A partition's offset advance at the end of a batch: from the offset the
/// consumer was assigned (or last committed) to one past the last message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetAdvance {
    pub topic: String,
    pub partition: i32,
    pub expected: i64,
    pub next: i64,
}

/// The offsets a batch covers in one partition.
#[derive(Clone, Debug)]
pub struct OffsetRange {
    pub topic: String,
    pub partition: i32,
    pub lo: i64,
    pub hi: i64,
}

/// Why an aggregate was deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeletionCause {
    Event,
    Retention,
}

impl DeletionCause {
    fn as_str(self) -> &'static str {
        match self {
            DeletionCause::Event => "event",
            DeletionCause::Retention => "retention",
        }
    }
}

/// Per-partition state for `overblik status`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub next_offset: Option<i64>,
    pub consumed: i64,
    pub applied: i64,
    pub duplicates: i64,
    pub ignored_deleted: i64,
    pub parked: i64,
    pub dead_lettered: i64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Status {
    pub consumed: i64,
    pub applied: i64,
    pub duplicates: i64,
    /// Of the duplicates: events for aggregates already deleted.
    pub ignored_deleted: i64,
    pub parked: i64,
    pub dead_lettered: i64,
    pub partitions: Vec<PartitionStatus>,
    /// Row counts per projection table of the live generation.
    pub projections: BTreeMap<String, i64>,
    /// Aggregates per kind (`case`, `grant`, …).
    pub aggregates_by_kind: BTreeMap<String, i64>,
    pub events: i64,
    pub tombstones: i64,
    pub parked_rows: i64,
    /// When the longest-waiting parked event was parked.
    pub oldest_parked_at: Option<DateTime<Utc>>,
    pub dead_letters_by_reason: BTreeMap<String, i64>,
    pub projection_generation: i32,
}

/// A dead letter as listed (without its bytes).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeadLetterRow {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    pub detail: String,
    pub event_id: Option<Uuid>,
    pub aggregate_id: Option<Uuid>,
    pub dead_at: DateTime<Utc>,
    pub replay_attempts: i32,
    pub bytes: i64,
}

/// A dead letter with its bytes, for replay.
#[derive(Clone, Debug)]
pub struct DeadLetterMessage {
    pub id: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct DeadLetterFilter {
    pub reason: Option<String>,
    pub after_id: i64,
    pub limit: i64,
}

/// An event as stored, for a rebuild.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub seq: i64,
    pub aggregate_id: Uuid,
    pub aggregate_version: i64,
    pub payload: Vec<u8>,
}

/// A closed case or control case the retention sweep may remove.
#[derive(Clone, Debug)]
pub struct ClosedCase {
    pub aggregate_id: Uuid,
    pub kind: AggregateKind,
    pub kle: String,
    pub closed_on: NaiveDate,
}

/// The live projection generation and the rebuild's bound.
#[derive(Clone, Copy, Debug)]
pub struct RebuildStart {
    pub generation: i32,
    /// Events up to this sequence number are in the bulk phase; later ones
    /// are caught up under the swap lock.
    pub upto_seq: i64,
    pub total_events: i64,
    /// Whether the new generation gets the reporting tables.
    pub reporting: bool,
}

/// A citizen's aggregates as a lookup reads them: at most
/// [`CITIZEN_ROW_LIMIT`], in a fixed order (the citizen's own by kind and
/// id, then cases where the citizen is only a party), and whether the limit
/// cut any off.
#[derive(Clone, Debug, Default)]
pub struct CitizenAggregates {
    pub aggregates: Vec<Aggregate>,
    pub truncated: bool,
}

#[derive(Clone, Debug)]
pub enum Store {
    Postgres(engine::Engine<postgres::Pg>),
    Sqlite(engine::Engine<sqlite::Lite>),
}

/// A write transaction of the ingest path (also used by replay, retention
/// and the rebuild's swap).
pub enum Tx {
    Postgres(engine::EngineTx<postgres::Pg>),
    Sqlite(engine::EngineTx<sqlite::Lite>),
}

macro_rules! dispatch {
    ($on:expr, $s:ident => $body:expr) => {
        match $on {
            Store::Postgres($s) => $body,
            Store::Sqlite($s) => $body,
        }
    };
}

macro_rules! dispatch_tx {
    ($on:expr, $s:ident => $body:expr) => {
        match $on {
            Tx::Postgres($s) => $body,
            Tx::Sqlite($s) => $body,
        }
    };
}

impl Store {
    /// Connects, runs the migrations and makes sure a generation of
    /// projection tables exists.
    pub async fn connect(url: &str) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Store::Postgres(engine::Engine::connect(url).await?))
        } else if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(engine::Engine::connect(url).await?))
        } else {
            Err(StoreError::BadUrl)
        }
    }

    /// This store with another cap on the parked events one batch's
    /// transaction loads (default [`ParkedBudget::BATCH`]). Events beyond it
    /// are applied by the drain after the commit.
    pub fn with_parked_budget(mut self, budget: ParkedBudget) -> Store {
        dispatch!(&mut self, s => s.parked_budget = budget);
        self
    }

    /// Connects as the schema's owner, migrates, and — given the name of the
    /// service's database role — grants it what it needs and no more
    /// (PostgreSQL; SQLite has no roles).
    pub async fn migrate(url: &str, runtime_role: Option<&str>) -> Result<Store> {
        let store = Store::connect(url).await?;
        if let Some(role) = runtime_role {
            let valid = !role.is_empty()
                && role.len() <= 63
                && role.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !role.as_bytes()[0].is_ascii_digit();
            if !valid {
                return Err(StoreError::BadRole);
            }
            match &store {
                Store::Postgres(s) => postgres::grant_runtime(&s.backend().pool, role).await?,
                Store::Sqlite(_) => return Err(StoreError::NoRoles),
            }
        }
        Ok(store)
    }

    /// The ways the connected role could rewrite the audit log (none: it
    /// can only read it and append). Always none on SQLite, which has no
    /// roles: there the file's permissions are the boundary.
    pub async fn audit_rewrite_rights(&self) -> Result<Vec<String>> {
        match self {
            Store::Postgres(s) => postgres::audit_rewrite_rights(&s.backend().pool).await,
            Store::Sqlite(_) => Ok(Vec::new()),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Store::Postgres(_) => Dialect::Postgres,
            Store::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Begins a write transaction that sees the live projection generation.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Store::Postgres(s) => Tx::Postgres(s.begin().await?),
            Store::Sqlite(s) => Tx::Sqlite(s.begin().await?),
        })
    }

    /// The stored next offset of each partition, creating rows at 0 for
    /// partitions never seen.
    pub async fn assigned_offsets(&self, partitions: &[(String, i32)]) -> Result<Vec<i64>> {
        dispatch!(self, s => s.assigned_offsets(partitions).await)
    }

    /// Forgets the stored offsets of `topics` (used by dev mode, whose
    /// in-process broker starts empty on every run).
    pub async fn reset_offsets(&self, topics: &[String]) -> Result<u64> {
        dispatch!(self, s => s.reset_offsets(topics).await)
    }

    pub async fn status(&self) -> Result<Status> {
        dispatch!(self, s => s.status().await)
    }

    /// Parked aggregates in id order, a page at a time.
    pub async fn parked_list(&self, filter: &ParkedFilter) -> Result<Vec<ParkedAggregate>> {
        dispatch!(self, s => s.parked_list(filter).await)
    }

    /// Operators' recorded decisions about parked events, oldest first.
    pub async fn operator_decisions(
        &self,
        aggregate: Option<Uuid>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<RecordedDecision>> {
        dispatch!(self, s => s.operator_decisions(aggregate, after_id, limit).await)
    }

    /// When the longest-waiting parked event was parked.
    pub async fn oldest_parked_at(&self) -> Result<Option<DateTime<Utc>>> {
        dispatch!(self, s => s.oldest_parked_at().await)
    }

    /// How many events of `aggregate` are parked.
    pub async fn parked_count(&self, aggregate: Uuid) -> Result<i64> {
        dispatch!(self, s => s.parked_count(aggregate).await)
    }

    /// Aggregates whose first parked event is next in line (at most
    /// `limit`).
    pub async fn parked_next_in_line(&self, limit: i64) -> Result<Vec<Uuid>> {
        dispatch!(self, s => s.parked_next_in_line(limit).await)
    }

    pub async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetterRow>> {
        dispatch!(self, s => s.dead_letters(filter).await)
    }

    pub async fn dead_letter_messages(&self, ids: &[i64]) -> Result<Vec<DeadLetterMessage>> {
        dispatch!(self, s => s.dead_letter_messages(ids).await)
    }

    /// Prepares generation live+1 for a rebuild: empty tables (the
    /// reporting tables too, if asked), and the bound of its bulk phase
    /// taken while no batch is committing.
    pub async fn rebuild_start(&self, reporting: bool) -> Result<RebuildStart> {
        dispatch!(self, s => s.rebuild_start(reporting).await)
    }

    /// Stored events with `seq <= upto`, in (aggregate, version) order after
    /// `after` and, if given, of aggregates before `before`.
    pub async fn events_by_aggregate(
        &self,
        upto: i64,
        after: Option<(Uuid, i64)>,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        dispatch!(self, s => s.events_by_aggregate(upto, after, before, limit).await)
    }

    /// Inserts rows into generation `generation` (bulk phase of a rebuild).
    pub async fn insert_rows(&self, generation: i32, rows: &rows::RowSet) -> Result<()> {
        dispatch!(self, s => s.insert_rows(generation, rows).await)
    }

    /// Builds the secondary indexes of generation `generation`.
    pub async fn create_indexes(&self, generation: i32, reporting: bool) -> Result<()> {
        dispatch!(self, s => s.create_indexes(generation, reporting).await)
    }

    /// Refreshes the planner's statistics of generation `generation` and of
    /// the event store (see `engine::Engine::analyze`).
    pub async fn analyze(&self, generation: i32, reporting: bool) -> Result<()> {
        dispatch!(self, s => s.analyze(generation, reporting).await)
    }

    /// Refreshes the planner's statistics of the live generation and the
    /// event store: the end of every bulk load calls it.
    pub async fn analyze_live(&self) -> Result<()> {
        dispatch!(self, s => s.analyze_live().await)
    }

    /// Drops the tables of a generation that is not live.
    pub async fn drop_generation(&self, generation: i32) -> Result<()> {
        dispatch!(self, s => s.drop_generation(generation).await)
    }

    /// Begins the rebuild's swap transaction: it excludes every ingest
    /// batch until it ends.
    pub async fn begin_exclusive(&self) -> Result<Tx> {
        Ok(match self {
            Store::Postgres(s) => Tx::Postgres(s.begin_exclusive().await?),
            Store::Sqlite(s) => Tx::Sqlite(s.begin_exclusive().await?),
        })
    }

    /// Closed cases and control cases with `closed_on < before`, after the
    /// key `after`, oldest first.
    pub async fn closed_cases(
        &self,
        before: NaiveDate,
        after: Option<(NaiveDate, Uuid)>,
        limit: i64,
    ) -> Result<Vec<ClosedCase>> {
        dispatch!(self, s => s.closed_cases(before, after, limit).await)
    }

    /// Every table and column whose content contains `needle` (text or
    /// bytes). Verifies erasure: after a deletion, a citizen's number must
    /// be found nowhere but the audit log.
    pub async fn tables_containing(&self, needle: &str) -> Result<Vec<String>> {
        dispatch!(self, s => s.tables_containing(needle).await)
    }

    /// Every projection table's rows rendered as text, ordered by primary
    /// key: what a rebuild must reproduce exactly.
    pub async fn dump_projections(&self) -> Result<BTreeMap<String, Vec<Vec<Option<String>>>>> {
        dispatch!(self, s => s.dump_projections().await)
    }

    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// Whether the database answers a trivial query within `within` (the
    /// readiness probe).
    pub async fn ping(&self, within: std::time::Duration) -> Result<()> {
        let query = async {
            match self {
                Store::Postgres(s) => sqlx::query("SELECT 1").execute(&s.backend().pool).await.map(|_| ()),
                Store::Sqlite(s) => sqlx::query("SELECT 1").execute(&s.backend().pool).await.map(|_| ()),
            }
        };
        match tokio::time::timeout(within, query).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
        }
    }

    /// The citizen's aggregates of `kinds` (by subject) and, if asked, the
    /// cases about others where the citizen is a party — one round trip, so
    /// a lookup costs one query however many data areas it reads. At most
    /// [`CITIZEN_ROW_LIMIT`] rows, in a fixed order; `truncated` says the
    /// limit cut some off.
    pub async fn citizen_aggregates(
        &self,
        subject: &str,
        kinds: &[AggregateKind],
        party_cases: bool,
    ) -> Result<CitizenAggregates> {
        self.citizen_aggregates_limited(subject, kinds, party_cases, CITIZEN_ROW_LIMIT).await
    }

    /// [`Store::citizen_aggregates`] with a bound of the caller's (a page).
    pub async fn citizen_aggregates_limited(
        &self,
        subject: &str,
        kinds: &[AggregateKind],
        party_cases: bool,
        limit: i64,
    ) -> Result<CitizenAggregates> {
        dispatch!(self, s => s.citizen_aggregates(subject, kinds, party_cases, limit).await)
    }

    /// Cases where `party` is a party (only as primary party, if asked), by
    /// kind and id, bounded like [`Store::citizen_aggregates`].
    pub async fn party_cases(&self, party: &str, primary_only: bool) -> Result<CitizenAggregates> {
        dispatch!(self, s => s.party_cases(party, primary_only, CITIZEN_ROW_LIMIT).await)
    }

    /// One aggregate by id from the live generation.
    pub async fn aggregate(&self, id: Uuid) -> Result<Option<Aggregate>> {
        dispatch!(self, s => s.aggregate(id).await)
    }

    /// Every agreement of an authority.
    pub async fn agreements_of(&self, authority: &str) -> Result<Vec<crate::agreements::Agreement>> {
        dispatch!(self, s => s.agreements_of(authority).await)
    }

    /// One of `authority`'s agreements by id (ids are unique per authority).
    pub async fn agreement(&self, authority: &str, id: &str) -> Result<Option<crate::agreements::Agreement>> {
        dispatch!(self, s => s.agreement(authority, id).await)
    }

    /// Agreements (of one authority, or all) by (authority, id) after `after`.
    pub async fn list_agreements(
        &self,
        authority: Option<&str>,
        after: (&str, &str),
        limit: i64,
    ) -> Result<Vec<crate::agreements::Agreement>> {
        dispatch!(self, s => s.list_agreements(authority, after, limit).await)
    }

    /// Appends audit records in a transaction of their own, each with its
    /// MAC under `key` (none without one); durable on return.
    pub async fn append_audit(
        &self,
        entries: Vec<crate::audit::Recorded>,
        at: DateTime<Utc>,
        key: Option<&AuditKey>,
    ) -> Result<Vec<crate::audit::Record>> {
        dispatch!(self, s => s.append_audit(entries, at, key).await)
    }

    /// Records matching `filter` after `after_seq`, oldest first.
    pub async fn audit_records(
        &self,
        filter: &AuditFilter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<crate::audit::Record>> {
        dispatch!(self, s => s.audit_records(filter, after_seq, limit).await)
    }

    /// Records matching `filter` before `before_seq` (all when `None`),
    /// newest first.
    pub async fn audit_records_newest_first(
        &self,
        filter: &AuditFilter,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<crate::audit::Record>> {
        dispatch!(self, s => s.audit_records_newest_first(filter, before_seq, limit).await)
    }

    /// How many records match `filter`.
    pub async fn audit_count(&self, filter: &AuditFilter) -> Result<i64> {
        dispatch!(self, s => s.audit_count(filter).await)
    }

    /// The newest checkpoint of the audit log.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>> {
        dispatch!(self, s => s.latest_checkpoint().await)
    }

    /// The checkpoint of `size` records, if one was made.
    pub async fn checkpoint(&self, size: u64) -> Result<Option<StoredCheckpoint>> {
        dispatch!(self, s => s.checkpoint(size).await)
    }

    /// Stores a checkpoint that extends the newest one (of size `after`)
    /// and the Merkle tiles its records completed; false, storing nothing,
    /// when another checkpoint came first.
    pub async fn record_checkpoint(
        &self,
        checkpoint: &StoredCheckpoint,
        after: u64,
        tiles: &[crate::audit::merkle::Completed],
    ) -> Result<bool> {
        dispatch!(self, s => s.record_checkpoint(checkpoint, after, tiles).await)
    }

    /// Sizes of the checkpoints after `size`, oldest first.
    pub async fn checkpoint_sizes_after(&self, size: u64) -> Result<Vec<u64>> {
        dispatch!(self, s => s.checkpoint_sizes_after(size).await)
    }

    /// Stored Merkle tiles of `height` with indexes in `from..to`.
    pub async fn tiles(&self, height: u32, from: u64, to: u64) -> Result<Vec<(u64, crate::audit::merkle::Hash)>> {
        dispatch!(self, s => s.tiles(height, from, to).await)
    }

    /// Writes a new (`previous: None`) or changed agreement together with its
    /// audit record (the caller's allowed entry for the change), in one
    /// transaction: no change goes unaudited.
    pub async fn record_agreement(
        &self,
        agreement: &crate::agreements::Agreement,
        previous: Option<crate::agreements::Status>,
        entry: &crate::audit::Entry,
        key: Option<&AuditKey>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        match previous {
            None => tx.insert_agreement(agreement).await?,
            Some(expected) => tx.update_agreement(agreement, expected).await?,
        }
        tx.append_audit(vec![entry.seal()], Utc::now(), key).await?;
        tx.commit().await
    }

    /// The service agreements of one IT system with one authority: what a
    /// system's call is decided on.
    pub async fn service_agreements_of(
        &self,
        it_system: Uuid,
        authority: &str,
    ) -> Result<Vec<crate::service_agreements::ServiceAgreement>> {
        let filter = ServiceAgreementFilter { it_system: Some(it_system), authority: Some(authority.to_string()) };
        self.service_agreements(&filter).await
    }

    /// The service agreements `filter` names (every one when it names
    /// none), by id, at most 10,000.
    pub async fn service_agreements(
        &self,
        filter: &ServiceAgreementFilter,
    ) -> Result<Vec<crate::service_agreements::ServiceAgreement>> {
        dispatch!(self, s => s.service_agreements(filter).await)
    }

    /// One of `authority`'s service agreements by id.
    pub async fn service_agreement(
        &self,
        authority: &str,
        id: Uuid,
    ) -> Result<Option<crate::service_agreements::ServiceAgreement>> {
        dispatch!(self, s => s.service_agreement(authority, id).await)
    }

    /// Writes a new (`previous: None`) or changed service agreement together
    /// with its audit record, in one transaction: no change goes unaudited,
    /// and a change whose agreement moved meanwhile is a conflict.
    pub async fn record_service_agreement(
        &self,
        agreement: &crate::service_agreements::ServiceAgreement,
        previous: Option<crate::service_agreements::Status>,
        entry: &crate::audit::Entry,
        key: Option<&AuditKey>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        match previous {
            None => dispatch_tx!(&mut tx, t => t.insert_service_agreement(agreement).await)?,
            Some(expected) => dispatch_tx!(&mut tx, t => t.update_service_agreement(agreement, expected).await)?,
        }
        let now = Utc::now();
        // Revoking an approved agreement ends what rests on it; the system's
        // subscriptions are its, not the agreement's, so all of them lapse,
        // and those another active agreement holds are subscribed again.
        use crate::service_agreements::Status as Sa;
        if agreement.status == Sa::Revoked && previous == Some(Sa::Approved) {
            let system = format!("{}{}", crate::identity::SYSTEM_SUBJECT_PREFIX, agreement.it_system);
            dispatch_tx!(&mut tx, t => t.lapse_subscriptions(&agreement.authority, &system, now).await)?;
        }
        tx.append_audit(vec![entry.seal()], now, key).await?;
        tx.commit().await
    }

    /// The last record's sequence number and hash, as the head records them.
    pub async fn audit_head(&self) -> Result<(i64, String)> {
        dispatch!(self, s => s.audit_head().await)
    }

    /// The Borgerblikket settings of those of `authorities` that have any.
    pub async fn borgerblikket_settings(&self, authorities: &[Cvr]) -> Result<Vec<StoredSettings>> {
        dispatch!(self, s => s.borgerblikket_settings(authorities).await)
    }

    /// Replaces an authority's Borgerblikket settings together with the
    /// audit record of the change (the caller's allowed entry), in one
    /// transaction: no change goes unaudited.
    pub async fn record_borgerblikket_settings(
        &self,
        authority: Cvr,
        settings: &crate::borgerblikket::Settings,
        by: &str,
        entry: &crate::audit::Entry,
        key: Option<&AuditKey>,
    ) -> Result<StoredSettings> {
        let now = Utc::now();
        let mut tx = self.begin().await?;
        let stored = dispatch_tx!(&mut tx, t => t.put_borgerblikket_settings(authority, settings, by, now).await)?;
        tx.append_audit(vec![entry.seal()], now, key).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Adds one citizen call to the monthly counts of each of its buckets.
    pub async fn count_citizen_call(
        &self,
        month: crate::borgerblikket::Month,
        kind: crate::borgerblikket::CallKind,
        tally: &[(crate::borgerblikket::Bucket, crate::borgerblikket::Outcome)],
    ) -> Result<()> {
        dispatch!(self, s => s.count_citizen_call(month, kind, tally).await)
    }

    /// One bucket's counts of one month, one per kind of call.
    pub async fn citizen_call_counts(
        &self,
        bucket: crate::borgerblikket::Bucket,
        month: crate::borgerblikket::Month,
    ) -> Result<Vec<crate::borgerblikket::MonthlyCount>> {
        dispatch!(self, s => s.citizen_call_counts(bucket, month).await)
    }

    /// Creates a change-notice subscription, or refreshes the stored
    /// privileges of the same one.
    pub async fn subscribe(&self, s: &NewSubscription) -> Result<Subscribed> {
        dispatch!(self, e => e.subscribe(s).await)
    }

    /// Removes one of the subscriber's subscriptions; false when it had none
    /// with that id.
    pub async fn unsubscribe(&self, authority: &Cvr, subscriber: &str, id: Uuid) -> Result<bool> {
        dispatch!(self, s => s.unsubscribe(authority, subscriber, id).await)
    }

    /// The subscriber's subscriptions, oldest first.
    pub async fn subscriptions_of(&self, authority: &Cvr, subscriber: &str) -> Result<Vec<crate::advis::Subscription>> {
        dispatch!(self, s => s.subscriptions_of(authority, subscriber).await)
    }

    /// The subscriber's notices after the outbox sequence number `after`,
    /// in order, at most `limit`.
    pub async fn notices_for(
        &self,
        authority: &Cvr,
        subscriber: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, crate::advis::Notice)>> {
        dispatch!(self, s => s.notices_for(authority, subscriber, after, limit).await)
    }

    /// The highest outbox sequence number committed (0 when none).
    pub async fn outbox_head(&self) -> Result<i64> {
        dispatch!(self, s => s.outbox_head().await)
    }

    /// The first `limit` notices not yet published or suppressed, in order.
    pub async fn pending_notices(&self, limit: i64) -> Result<Vec<PendingNotice>> {
        dispatch!(self, s => s.pending_notices(limit).await)
    }

    /// Deletes at most `limit` notices published or suppressed before
    /// `before`, oldest first.
    pub async fn prune_notices(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        dispatch!(self, s => s.prune_notices(before, limit).await)
    }

    /// Marks notices published, and others suppressed with their reason.
    pub async fn mark_notices(&self, published: &[i64], suppressed: &[(i64, crate::advis::Suppression)]) -> Result<()> {
        dispatch!(self, s => s.mark_notices(published, suppressed).await)
    }
}

impl Tx {
    /// The live generation this transaction writes.
    pub fn generation(&self) -> i32 {
        dispatch_tx!(self, t => t.generation)
    }

    /// The cap on parked events one load of this transaction takes.
    pub fn parked_budget(&self) -> ParkedBudget {
        dispatch_tx!(self, t => t.parked_budget())
    }

    /// What the projector needs to know about the aggregates of `items`.
    pub async fn load_context(&mut self, items: &[Decoded]) -> Result<Context> {
        let mut aggregate_ids = Vec::new();
        let mut event_ids = Vec::new();
        let mut ranges: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
        for item in items {
            if let Ok(e) = &item.result {
                aggregate_ids.push(e.aggregate_id);
                event_ids.push(e.id);
            }
            if item.prior == crate::projection::Prior::New {
                let o = &item.origin;
                let r = ranges.entry((o.topic.to_string(), o.partition)).or_insert((o.offset, o.offset));
                r.0 = r.0.min(o.offset);
                r.1 = r.1.max(o.offset);
            }
        }
        aggregate_ids.sort_unstable();
        aggregate_ids.dedup();
        let ranges: Vec<OffsetRange> =
            ranges.into_iter().map(|((topic, partition), (lo, hi))| OffsetRange { topic, partition, lo, hi }).collect();
        dispatch_tx!(self, t => t.load_context(&aggregate_ids, &event_ids, &ranges).await)
    }

    /// Writes a plan: events, aggregate states (compare-and-set on their
    /// versions), projection rows, deletions, parked and dead letters, the
    /// disposition counts, and the change notices its applied events yield.
    pub async fn write(&mut self, plan: &Plan) -> Result<()> {
        dispatch_tx!(self, t => t.write(plan).await)
    }

    /// Advances offsets with a compare-and-set each; fails with
    /// [`StoreError::Fenced`] if any stored offset is not the expected one.
    pub async fn advance_offsets(&mut self, advances: &[OffsetAdvance]) -> Result<()> {
        if advances.is_empty() {
            return Ok(());
        }
        dispatch_tx!(self, t => t.advance_offsets(advances).await)
    }

    /// The first parked events (in version order) of each of `aggregates`,
    /// within the load budget, and the aggregates of which more are parked
    /// than were loaded.
    pub async fn load_parked(
        &mut self,
        aggregates: &[Uuid],
        budget: ParkedBudget,
    ) -> Result<(Vec<crate::projection::Parked>, std::collections::HashSet<Uuid>)> {
        dispatch_tx!(self, t => t.load_parked(aggregates, budget).await)
    }

    /// Records one step of an operator's resolution of parked events.
    pub async fn record_operator_decision(&mut self, decision: &OperatorDecision<'_>) -> Result<()> {
        dispatch_tx!(self, t => t.record_operator_decision(decision).await)
    }

    /// Loads aggregates by id (for deletions outside the event path).
    pub async fn load_aggregates(&mut self, ids: &[Uuid]) -> Result<Vec<Aggregate>> {
        dispatch_tx!(self, t => t.load_aggregates(ids).await)
    }

    /// Aggregates of `kind` linked to one of `parents`: the grants of cases,
    /// the payments of grants.
    pub async fn linked(&mut self, kind: AggregateKind, parents: &[Uuid]) -> Result<Vec<Uuid>> {
        dispatch_tx!(self, t => t.linked(kind, parents).await)
    }

    /// Deletes aggregates physically, leaving tombstones.
    pub async fn purge(&mut self, deletions: &[Deletion], cause: DeletionCause) -> Result<()> {
        dispatch_tx!(self, t => {
            let adjust = t.purge(deletions, cause).await?;
            t.add_counts(&adjust).await
        })
    }

    /// Events appended after `seq`, in (aggregate, version) order (rebuild
    /// catch-up, under the exclusive lock).
    pub async fn events_after(&mut self, seq: i64) -> Result<Vec<StoredEvent>> {
        dispatch_tx!(self, t => t.events_after(seq).await)
    }

    /// Aggregates of generation `generation` (rebuild catch-up).
    pub async fn load_generation_aggregates(&mut self, generation: i32, ids: &[Uuid]) -> Result<Vec<Aggregate>> {
        dispatch_tx!(self, t => t.load_generation_aggregates(generation, ids).await)
    }

    /// Replaces the rows of `aggregates` in generation `generation`, and
    /// removes the rows of `removed` (rebuild catch-up).
    pub async fn replace_in_generation(
        &mut self,
        generation: i32,
        reporting: bool,
        aggregates: &[Aggregate],
        removed: &[Uuid],
    ) -> Result<()> {
        dispatch_tx!(self, t => t.replace_in_generation(generation, reporting, aggregates, removed).await)
    }

    /// Removes every tombstoned aggregate's rows from `generation`.
    pub async fn drop_tombstoned(&mut self, generation: i32, reporting: bool) -> Result<()> {
        dispatch_tx!(self, t => t.drop_tombstoned(generation, reporting).await)
    }

    /// Points the views at `generation` and records it as live.
    pub async fn swap_to(&mut self, generation: i32, reporting: bool) -> Result<()> {
        dispatch_tx!(self, t => t.swap_to(generation, reporting).await)
    }

    /// Appends audit records in this transaction (with what they record).
    pub async fn append_audit(
        &mut self,
        entries: Vec<crate::audit::Recorded>,
        at: DateTime<Utc>,
        key: Option<&AuditKey>,
    ) -> Result<Vec<crate::audit::Record>> {
        dispatch_tx!(self, t => t.append_audit(entries, at, key).await)
    }

    pub async fn insert_agreement(&mut self, a: &crate::agreements::Agreement) -> Result<()> {
        dispatch_tx!(self, t => t.insert_agreement(a).await)
    }

    /// Writes a changed agreement if its status is still `expected`.
    pub async fn update_agreement(
        &mut self,
        a: &crate::agreements::Agreement,
        expected: crate::agreements::Status,
    ) -> Result<()> {
        dispatch_tx!(self, t => t.update_agreement(a, expected).await)
    }

    pub async fn commit(self) -> Result<()> {
        dispatch_tx!(self, t => t.commit().await)
    }
}

/// Count adjustments for rows purged with a deleted aggregate: a parked or
/// dead-lettered message of a deleted aggregate becomes an ignored one.
fn purged_adjustments(parked: &[(String, i32)], dead: &[(String, i32)]) -> BTreeMap<PartitionKey, Counts> {
    let mut adjust: BTreeMap<PartitionKey, Counts> = BTreeMap::new();
    for (topic, partition) in parked {
        let c = adjust.entry(PartitionKey { topic: topic.as_str().into(), partition: *partition }).or_default();
        c.parked -= 1;
        c.duplicates += 1;
        c.ignored_deleted += 1;
    }
    for (topic, partition) in dead {
        let c = adjust.entry(PartitionKey { topic: topic.as_str().into(), partition: *partition }).or_default();
        c.dead_lettered -= 1;
        c.duplicates += 1;
        c.ignored_deleted += 1;
    }
    adjust
}

fn summarise(partitions: Vec<PartitionStatus>) -> (Vec<PartitionStatus>, Counts) {
    let mut total = Counts::default();
    for p in &partitions {
        total.add(&Counts {
            applied: p.applied,
            duplicates: p.duplicates,
            ignored_deleted: p.ignored_deleted,
            parked: p.parked,
            dead_lettered: p.dead_lettered,
        });
    }
    (partitions, total)
}
