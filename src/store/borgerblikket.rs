//! Borgerblikket's durable state, once for both backends: each authority's
//! settings (the validated JSON document, read back through the same
//! validation) and the monthly call counts, added to with an upsert.

use chrono::{DateTime, Utc};

use super::backend::{Backend, Sql};
use super::engine::{Engine, EngineTx, execute, fetch_rows};
use super::rows::{Row, Val};
use super::schema::{ColType, Column, c};
use super::types::Instant;
use super::*;
use crate::borgerblikket::{Bucket, CallKind, Month, MonthlyCount, Outcome, Settings};

/// An authority's settings as stored: which version, when and by whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSettings {
    pub authority: Cvr,
    pub settings: Settings,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

#[derive(sqlx::FromRow)]
struct SettingsRow {
    authority: String,
    settings: String,
    version: i64,
    updated_at: Instant,
    updated_by: String,
}

impl SettingsRow {
    fn decode(self) -> Result<StoredSettings> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("borgerblikket settings: {what}"));
        Ok(StoredSettings {
            authority: Cvr::parse(&self.authority).map_err(|_| corrupt("authority"))?,
            settings: Settings::from_json(&self.settings).map_err(|e| corrupt(e.field))?,
            version: self.version,
            updated_at: self.updated_at.0,
            updated_by: self.updated_by,
        })
    }
}

#[derive(sqlx::FromRow)]
struct CountRow {
    call_kind: String,
    with_data: i64,
    without_data: i64,
}

const SETTINGS_READ: &str = "authority, settings, version, updated_at, updated_by";

/// The rows one call adds to the counts.
const CALLS: &[Column] = &[
    c("bucket", ColType::Text),
    c("month", ColType::Text),
    c("call_kind", ColType::Text),
    c("with_data", ColType::Int),
    c("without_data", ColType::Int),
];

impl<B: Backend> Engine<B> {
    /// The settings of those of `authorities` that have any (the lookup
    /// path's read: the authorities of one citizen's rows).
    pub async fn borgerblikket_settings(&self, authorities: &[Cvr]) -> Result<Vec<StoredSettings>> {
        if authorities.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = Sql::<B>::new();
        let list = q.list(ColType::Text, authorities.iter().map(|a| Val::str(a.as_str())));
        let cond = B::in_list("authority", &list);
        let q = q.text(format!("SELECT {SETTINGS_READ} FROM borgerblikket_settings WHERE {cond}")).once();
        let rows: Vec<SettingsRow> = fetch_rows(self.b.lookups(), q).await?;
        rows.into_iter().map(SettingsRow::decode).collect()
    }

    /// Adds one call to the counts of each of its buckets.
    pub async fn count_citizen_call(&self, month: Month, kind: CallKind, tally: &[(Bucket, Outcome)]) -> Result<()> {
        if tally.is_empty() {
            return Ok(());
        }
        let month = month.to_string();
        let rows: Vec<Row> = tally
            .iter()
            .map(|(bucket, outcome)| {
                let with = i64::from(*outcome == Outcome::WithData);
                vec![
                    Val::from(bucket.to_string()),
                    Val::str(&month),
                    Val::str(kind.as_str()),
                    Val::Int(with),
                    Val::Int(1 - with),
                ]
            })
            .collect();
        let mut q = Sql::<B>::new();
        let src = q.rows(CALLS, &rows, "u");
        let names = super::schema::durable::names(CALLS);
        let q = q.text(format!(
            "INSERT INTO borgerblikket_calls ({names}) SELECT {names} FROM {src} WHERE true
             ON CONFLICT (bucket, month, call_kind) DO UPDATE SET
                 with_data = borgerblikket_calls.with_data + excluded.with_data,
                 without_data = borgerblikket_calls.without_data + excluded.without_data"
        ));
        execute(self.b.pool(), q).await?;
        Ok(())
    }

    /// One bucket's counts of one month, one per kind of call (zero where
    /// nothing was counted).
    pub async fn citizen_call_counts(&self, bucket: Bucket, month: Month) -> Result<Vec<MonthlyCount>> {
        let mut q = Sql::<B>::new();
        let (b, m) = (q.arg(Val::from(bucket.to_string())), q.arg(Val::from(month.to_string())));
        let q = q.text(format!(
            "SELECT call_kind, with_data, without_data FROM borgerblikket_calls WHERE bucket = {b} AND month = {m}"
        ));
        let rows: Vec<CountRow> = fetch_rows(self.b.pool(), q).await?;
        let mut out: Vec<MonthlyCount> = CallKind::ALL
            .into_iter()
            .map(|kind| MonthlyCount { bucket, month, kind, with_data: 0, without_data: 0 })
            .collect();
        for r in rows {
            let kind = CallKind::parse(&r.call_kind)
                .ok_or_else(|| StoreError::Corrupt("borgerblikket_calls: call kind".into()))?;
            if let Some(c) = out.iter_mut().find(|c| c.kind == kind) {
                c.with_data = r.with_data;
                c.without_data = r.without_data;
            }
        }
        Ok(out)
    }
}

impl<B: Backend> EngineTx<B> {
    /// Replaces an authority's settings; returns what is stored now.
    pub async fn put_borgerblikket_settings(
        &mut self,
        authority: Cvr,
        settings: &Settings,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<StoredSettings> {
        let mut q = Sql::<B>::new();
        let json = settings.to_json();
        let (a, s, t, u) =
            (q.arg(Val::str(authority.as_str())), q.arg(Val::str(&json)), q.arg(Val::Time(at)), q.arg(Val::str(by)));
        let q = q.text(format!(
            "INSERT INTO borgerblikket_settings ({SETTINGS_READ}) VALUES ({a}, {s}, 1, {t}, {u})
             ON CONFLICT (authority) DO UPDATE SET
                 settings = excluded.settings,
                 version = borgerblikket_settings.version + 1,
                 updated_at = excluded.updated_at,
                 updated_by = excluded.updated_by
             RETURNING {SETTINGS_READ}"
        ));
        let rows: Vec<SettingsRow> = B::fetch(&mut self.tx, q).await?;
        rows.into_iter().next().ok_or_else(|| StoreError::Corrupt("settings not returned".into()))?.decode()
    }
}
