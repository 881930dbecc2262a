//! The read-model (projection) tables, defined once.
//!
//! These tables are derived from the event store and disposable (invariant
//! 5), so their schema lives in code rather than in migrations: each
//! generation `n` is a set of physical tables `<name>_g<n>`, and a view under
//! each plain `<name>` points at the live generation. Readers query the
//! views; the ingest path writes the live generation's tables; a rebuild
//! fills generation `n+1` beside it and swaps the views in one transaction.
//!
//! A change to these tables bumps [`PROJECTION_SCHEMA_VERSION`]; a store built
//! by older code then refuses to ingest until `overblik rebuild` has built a
//! generation with the new schema.

use crate::domain::AggregateKind;

/// The version of the table definitions below.
pub const PROJECTION_SCHEMA_VERSION: i32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    /// A 64-bit integer.
    Int,
    /// A 32-bit integer (the durable tables' partition numbers).
    Int32,
    Text,
    Date,
    Uuid,
    Time,
    Bytes,
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
    pub nullable: bool,
}

pub(crate) const fn c(name: &'static str, ty: ColType) -> Column {
    Column { name, ty, nullable: false }
}

pub(crate) const fn n(name: &'static str, ty: ColType) -> Column {
    Column { name, ty, nullable: true }
}

#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    /// The column holding the aggregate id; every row of an aggregate is
    /// found (and deleted) through it. Always the first column.
    pub key: &'static str,
    /// Whose rows the table holds; `None` for the aggregates table itself.
    pub kind: Option<AggregateKind>,
    /// A reporting table: built only by `overblik rebuild --reporting`, never
    /// written by ingest (see ARCHITECTURE.md, "Projections").
    pub reporting: bool,
    pub columns: &'static [Column],
    pub primary_key: &'static [&'static str],
    pub indexes: &'static [&'static [&'static str]],
}

use ColType::*;

pub const AGGREGATES: usize = 0;
pub const CASES: usize = 1;
pub const CASE_STATUS_HISTORY: usize = 2;
pub const CASE_PARTIES: usize = 3;
pub const CONTROL_CASES: usize = 4;
pub const CONTROL_CASE_STEPS: usize = 5;
pub const GRANTS: usize = 6;
pub const GRANTED_BENEFITS: usize = 7;
pub const PAYMENTS: usize = 8;
pub const PAYMENT_LINES: usize = 9;
pub const EMPLOYMENT_RECORDS: usize = 10;
pub const EMPLOYMENT_ACTIVITIES: usize = 11;
pub const TAX_RECORDS: usize = 12;

/// Every projection table. `TABLES[AGGREGATES]` is the per-aggregate
/// snapshot the projector loads and the lookups read; `case_parties` finds
/// the cases where a citizen is a party. Both are written by every batch.
/// The others are reporting tables: a normalised snapshot for ad-hoc SQL,
/// built on demand (`reporting`).
pub const TABLES: &[Table] = &[
    Table {
        name: "aggregates",
        key: "aggregate_id",
        kind: None,
        reporting: false,
        columns: &[
            c("aggregate_id", Uuid),
            c("kind", Text),
            c("version", Int),
            c("subject", Text),
            c("authority", Text),
            c("source", Text),
            c("updated_at", Time),
            c("state", Text),
            // Extracted from the state for retention and deletion: when a
            // case or control case closed and under which KLE code, and the
            // case of a grant or the grant of a payment.
            n("closed_on", Date),
            n("kle", Text),
            n("link_id", Uuid),
        ],
        primary_key: &["aggregate_id"],
        // The serving path reads a citizen's aggregates of some kinds; the
        // retention sweep finds closed cases by date and what hangs off them.
        indexes: &[&["subject", "kind"], &["closed_on"], &["link_id"]],
    },
    Table {
        name: "cases",
        key: "case_id",
        kind: Some(AggregateKind::Case),
        reporting: true,
        columns: &[
            c("case_id", Uuid),
            c("citizen", Text),
            c("authority", Text),
            c("case_number", Text),
            c("title", Text),
            c("kle", Text),
            c("action_facet", Text),
            c("sensitivity", Int),
            c("status", Text),
            c("opened_on", Date),
            n("closed_on", Date),
            c("org_unit", Text),
            n("caseworker", Text),
            c("source_system", Text),
            c("source", Text),
            c("updated_at", Time),
        ],
        primary_key: &["case_id"],
        indexes: &[&["citizen"], &["closed_on"]],
    },
    Table {
        name: "case_status_history",
        key: "case_id",
        kind: Some(AggregateKind::Case),
        reporting: true,
        columns: &[c("case_id", Uuid), c("seq", Int), c("status", Text), c("valid_from", Date)],
        primary_key: &["case_id", "seq"],
        indexes: &[],
    },
    Table {
        name: "case_parties",
        key: "case_id",
        kind: Some(AggregateKind::Case),
        reporting: false,
        columns: &[c("case_id", Uuid), c("seq", Int), c("role", Text), c("party", Text)],
        primary_key: &["case_id", "seq"],
        indexes: &[&["party"]],
    },
    Table {
        name: "control_cases",
        key: "case_id",
        kind: Some(AggregateKind::ControlCase),
        reporting: true,
        columns: &[
            c("case_id", Uuid),
            c("citizen", Text),
            c("authority", Text),
            c("case_number", Text),
            c("theme", Text),
            c("kle", Text),
            c("sensitivity", Int),
            c("opened_on", Date),
            n("closed_on", Date),
            n("outcome", Text),
            c("org_unit", Text),
            n("caseworker", Text),
            c("source_system", Text),
            c("updated_at", Time),
        ],
        primary_key: &["case_id"],
        indexes: &[&["citizen"], &["closed_on"]],
    },
    Table {
        name: "control_case_steps",
        key: "case_id",
        kind: Some(AggregateKind::ControlCase),
        reporting: true,
        columns: &[c("case_id", Uuid), c("seq", Int), c("step", Text), c("on_date", Date)],
        primary_key: &["case_id", "seq"],
        indexes: &[],
    },
    Table {
        name: "grants",
        key: "grant_id",
        kind: Some(AggregateKind::Grant),
        reporting: true,
        columns: &[
            c("grant_id", Uuid),
            c("citizen", Text),
            c("authority", Text),
            n("case_id", Uuid),
            c("grant_number", Text),
            c("start_date", Date),
            n("end_date", Date),
            c("sensitivity", Int),
            c("status", Text),
            n("reason", Text),
            c("updated_at", Time),
        ],
        primary_key: &["grant_id"],
        indexes: &[&["citizen"], &["case_id"]],
    },
    Table {
        name: "granted_benefits",
        key: "grant_id",
        kind: Some(AggregateKind::Grant),
        reporting: true,
        columns: &[
            c("grant_id", Uuid),
            c("benefit_id", Text),
            c("name", Text),
            c("benefit_type", Text),
            c("kle", Text),
            c("start_date", Date),
            n("end_date", Date),
            c("frequency", Text),
            c("amount_oere", Int),
        ],
        primary_key: &["grant_id", "benefit_id"],
        indexes: &[],
    },
    Table {
        name: "payments",
        key: "payment_id",
        kind: Some(AggregateKind::Payment),
        reporting: true,
        columns: &[
            c("payment_id", Uuid),
            c("citizen", Text),
            c("authority", Text),
            n("grant_id", Uuid),
            c("payment_number", Text),
            c("period_start", Date),
            c("period_end", Date),
            c("disposal_date", Date),
            c("gross_oere", Int),
            c("after_tax_oere", Int),
            c("sent_oere", Int),
            n("paid_oere", Int),
            n("paid_note", Text),
            c("corrections", Int),
            c("updated_at", Time),
        ],
        primary_key: &["payment_id"],
        indexes: &[&["citizen", "disposal_date"], &["grant_id"]],
    },
    Table {
        name: "payment_lines",
        key: "payment_id",
        kind: Some(AggregateKind::Payment),
        reporting: true,
        columns: &[
            c("payment_id", Uuid),
            c("seq", Int),
            c("period_start", Date),
            c("period_end", Date),
            c("gross_oere", Int),
            c("kle", Text),
            c("granted_benefit_id", Text),
        ],
        primary_key: &["payment_id", "seq"],
        indexes: &[],
    },
    Table {
        name: "employment_records",
        key: "record_id",
        kind: Some(AggregateKind::Employment),
        reporting: true,
        columns: &[
            c("record_id", Uuid),
            c("citizen", Text),
            c("authority", Text),
            c("jobcenter", Text),
            c("category", Text),
            c("registered_on", Date),
            n("deregistered_on", Date),
            n("deregistration_reason", Text),
            n("target_group", Text),
            n("target_group_from", Date),
            c("updated_at", Time),
        ],
        primary_key: &["record_id"],
        indexes: &[&["citizen"]],
    },
    Table {
        name: "employment_activities",
        key: "record_id",
        kind: Some(AggregateKind::Employment),
        reporting: true,
        columns: &[
            c("record_id", Uuid),
            c("activity_id", Text),
            c("kind", Text),
            c("start_date", Date),
            n("end_date", Date),
        ],
        primary_key: &["record_id", "activity_id"],
        indexes: &[],
    },
    Table {
        name: "tax_records",
        key: "record_id",
        kind: Some(AggregateKind::TaxRecord),
        reporting: true,
        columns: &[
            c("record_id", Uuid),
            c("citizen", Text),
            c("authority", Text),
            c("data_area", Text),
            n("income_year", Int),
            n("period_start", Date),
            n("period_end", Date),
            n("employer_cvr", Text),
            n("issued_on", Date),
            c("supersedes", Int),
            c("details", Text),
            c("updated_at", Time),
        ],
        primary_key: &["record_id"],
        indexes: &[&["citizen", "data_area"]],
    },
];

/// The columns the ingest path writes into the durable tables (created by
/// the migrations), each list defined once for both backends.
pub mod durable {
    use super::ColType::*;
    use super::{Column, c, n};

    pub const EVENTS: &[Column] = &[
        c("event_id", Uuid),
        c("aggregate_id", Uuid),
        c("aggregate_version", Int),
        c("aggregate_kind", Text),
        c("event_type", Text),
        c("subject", Text),
        c("authority", Text),
        c("occurred_at", Time),
        c("topic", Text),
        c("partition_id", Int32),
        c("kafka_offset", Int),
        c("payload", Bytes),
    ];

    pub const PARKED: &[Column] = &[
        c("event_id", Uuid),
        c("aggregate_id", Uuid),
        c("aggregate_version", Int),
        c("expected_version", Int),
        c("topic", Text),
        c("partition_id", Int32),
        c("kafka_offset", Int),
        n("message_key", Bytes),
        c("payload", Bytes),
    ];

    pub const DEAD_LETTERS: &[Column] = &[
        c("topic", Text),
        c("partition_id", Int32),
        c("kafka_offset", Int),
        n("message_key", Bytes),
        c("payload", Bytes),
        c("reason", Text),
        c("detail", Text),
        n("event_id", Uuid),
        n("aggregate_id", Uuid),
        c("fingerprint", Text),
    ];

    pub const TOMBSTONES: &[Column] =
        &[c("aggregate_id", Uuid), c("aggregate_kind", Text), c("last_version", Int), c("cause", Text)];

    pub const INGEST_COUNTS: &[Column] = &[
        c("topic", Text),
        c("partition_id", Int32),
        c("applied", Int),
        c("duplicates", Int),
        c("ignored_deleted", Int),
        c("parked", Int),
        c("dead_lettered", Int),
    ];

    pub const AGREEMENTS: &[Column] = &[
        c("agreement_id", Text),
        c("authority", Text),
        c("data_area", Text),
        c("purpose_id", Int),
        c("legal_basis", Text),
        n("klik_task", Text),
        c("status", Text),
        c("valid_from", Date),
        c("valid_to", Date),
        n("signed_by", Text),
        n("signed_at", Time),
        n("revoked_at", Time),
        n("registered_by", Text),
    ];

    pub const SERVICE_AGREEMENTS: &[Column] = &[
        c("id", Uuid),
        c("it_system", Uuid),
        c("authority", Text),
        c("justification", Text),
        c("rpcs", Text),
        c("scope", Text),
        c("valid_from", Date),
        c("valid_to", Date),
        c("status", Text),
        c("requested_at", Time),
        n("decided_by", Text),
        n("decided_at", Time),
        n("answers", Text),
        n("rejection_reason", Text),
        n("revoked_by", Text),
        n("revoked_at", Time),
    ];

    /// Every column of a record; all but `hash` and `mac` are covered by
    /// `hash` (the canonical form, `crate::audit::canonical`).
    pub const AUDIT_LOG: &[Column] = &[
        c("seq", Int),
        c("recorded_at", Time),
        c("transaction_id", Text),
        c("request_id", Text),
        c("kind", Text),
        c("user_id", Text),
        c("user_name", Text),
        c("authority", Text),
        c("org_unit", Text),
        c("it_system", Text),
        c("roles_used", Text),
        c("data_area", Text),
        n("purpose_id", Int32),
        c("agreement_id", Text),
        c("citizen", Text),
        c("search_criteria", Text),
        c("decision", Text),
        c("reason", Text),
        c("rows_returned", Int32),
        c("alarms", Text),
        c("prev_hash", Text),
        c("hash", Text),
        c("mac", Text),
    ];

    /// What the batch transaction writes into the notice outbox (the
    /// sequence number and the delivery columns are the database's).
    pub const ADVIS_OUTBOX: &[Column] = &[
        c("notice_id", Uuid),
        c("subscription_id", Uuid),
        c("event_id", Uuid),
        c("aggregate_id", Uuid),
        c("data_area", Text),
        c("event_type", Text),
        c("kind", Text),
        c("occurred_at", Time),
        c("row_authority", Text),
        c("kles", Text),
        c("sensitivity", Int32),
    ];

    pub const AUDIT_TILES: &[Column] = &[c("height", Int32), c("idx", Int), c("hash", Text)];

    /// The names of `cols`, comma-separated.
    pub fn names(cols: &[Column]) -> String {
        cols.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
    }
}

/// The tables holding rows of aggregates of `kind` (the aggregates table
/// excluded).
pub fn tables_of(kind: AggregateKind) -> impl Iterator<Item = (usize, &'static Table)> {
    TABLES.iter().enumerate().filter(move |(_, t)| t.kind == Some(kind))
}

/// The tables of a generation: the serving tables, and the reporting tables
/// if it has them.
pub fn tables(reporting: bool) -> impl Iterator<Item = (usize, &'static Table)> {
    TABLES.iter().enumerate().filter(move |(_, t)| reporting || !t.reporting)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    fn sql_type(self, ty: ColType) -> &'static str {
        match (self, ty) {
            (Dialect::Postgres, Int) => "BIGINT",
            (Dialect::Postgres, Int32) => "INTEGER",
            (Dialect::Postgres, Text) => "TEXT",
            (Dialect::Postgres, Date) => "DATE",
            (Dialect::Postgres, Uuid) => "UUID",
            (Dialect::Postgres, Time) => "TIMESTAMPTZ",
            (Dialect::Postgres, Bytes) => "BYTEA",
            (Dialect::Sqlite, Int | Int32) => "INTEGER",
            (Dialect::Sqlite, Bytes) => "BLOB",
            (Dialect::Sqlite, _) => "TEXT",
        }
    }
}

/// The physical table of `t` in generation `generation`.
pub fn physical(t: &Table, generation: i32) -> String {
    format!("{}_g{generation}", t.name)
}

/// `CREATE TABLE` for `t` in `generation`, primary key included.
pub fn create_table(d: Dialect, t: &Table, generation: i32) -> String {
    create_table_keyed(d, t, generation, true)
}

/// `CREATE TABLE` for `t` in `generation`, with or without its primary key
/// (a bulk load is faster into a table without one; [`add_primary_key`]
/// builds it after).
pub fn create_table_keyed(d: Dialect, t: &Table, generation: i32, keyed: bool) -> String {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("{} {}{}", c.name, d.sql_type(c.ty), if c.nullable { "" } else { " NOT NULL" }))
        .collect();
    let key = if keyed { format!(", PRIMARY KEY ({})", t.primary_key.join(", ")) } else { String::new() };
    format!("CREATE TABLE {} ({}{key})", physical(t, generation), cols.join(", "))
}

/// Adds the primary key to a table created without one (PostgreSQL).
pub fn add_primary_key(t: &Table, generation: i32) -> String {
    format!("ALTER TABLE {} ADD PRIMARY KEY ({})", physical(t, generation), t.primary_key.join(", "))
}

/// The secondary indexes of `t` in `generation`. Built after a rebuild has
/// bulk-loaded the table, which is faster than maintaining them row by row.
/// An index led by a nullable column holds only the rows that have a value
/// (most aggregates have no closing date and no link).
pub fn create_indexes(t: &Table, generation: i32) -> Vec<String> {
    t.indexes
        .iter()
        .map(|cols| {
            let lead = t.columns.iter().find(|c| c.name == cols[0]).expect("an indexed column");
            let only = if lead.nullable { format!(" WHERE {} IS NOT NULL", lead.name) } else { String::new() };
            format!(
                "CREATE INDEX {}_{} ON {} ({}){only}",
                physical(t, generation),
                cols.join("_"),
                physical(t, generation),
                cols.join(", ")
            )
        })
        .collect()
}

pub fn create_view(t: &Table, generation: i32) -> String {
    format!("CREATE VIEW {} AS SELECT * FROM {}", t.name, physical(t, generation))
}

pub fn drop_view(t: &Table) -> String {
    format!("DROP VIEW IF EXISTS {}", t.name)
}

pub fn drop_table(t: &Table, generation: i32) -> String {
    format!("DROP TABLE IF EXISTS {}", physical(t, generation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_starts_with_its_key_and_names_real_columns() {
        for t in TABLES {
            assert_eq!(t.columns[0].name, t.key, "{}", t.name);
            let names: Vec<_> = t.columns.iter().map(|c| c.name).collect();
            for k in t.primary_key.iter().chain(t.indexes.iter().flat_map(|i| i.iter())) {
                assert!(names.contains(k), "{}.{k}", t.name);
            }
        }
        for kind in AggregateKind::ALL {
            assert!(tables_of(kind).count() >= 1, "{kind}");
        }
    }

    #[test]
    fn ddl_is_generation_scoped() {
        let sql = create_table(Dialect::Postgres, &TABLES[CASES], 3);
        assert!(sql.starts_with("CREATE TABLE cases_g3 (case_id UUID NOT NULL,"), "{sql}");
        assert!(sql.contains("closed_on DATE,"), "{sql}");
        assert_eq!(create_indexes(&TABLES[CASES], 3)[0], "CREATE INDEX cases_g3_citizen ON cases_g3 (citizen)");
    }
}
