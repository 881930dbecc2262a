//! Change notices' durable state, once for both backends: subscriptions,
//! and the outbox the batch transaction writes notices into.
//!
//! The outbox is written in the batch's own transaction
//! ([`EngineTx::enqueue_notices`]), so a notice exists exactly when its
//! event committed. Readers (the publisher, `Watch`) page it by sequence
//! number.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::backend::{Backend, Lock, Sql};
use super::engine::{CountRow, Engine, EngineTx, fetch_rows};
use super::rows::{Row, Val};
use super::schema::{ColType, Column, c, durable};
use super::types::{Id, Instant};
use super::*;
use crate::access::filter::Class;
use crate::advis::{self, KlePrefix, Notice, NoticeKind, Privileges, Subscription, Suppression};
use crate::domain::{DataArea, Kle, Sensitivity};
use crate::identity::KleConstraint;

const SUBSCRIPTION_COLS: &str = "id, authority, subscriber, citizen, data_area, kle_prefix, created_at, roles, \
                                 kle_patterns, sensitivity, privileges_until";

const NOTICE_COLS: &str = "o.seq, o.notice_id, o.subscription_id, o.event_id, o.aggregate_id, o.data_area, \
                           o.event_type, o.kind, o.occurred_at, o.row_authority, o.kles, o.sensitivity";

const SUPPRESSIONS: &[Column] = &[c("seq", ColType::Int), c("reason", ColType::Text)];

#[derive(sqlx::FromRow)]
struct SubscriptionRow {
    id: Id,
    authority: String,
    subscriber: String,
    citizen: String,
    data_area: String,
    kle_prefix: String,
    created_at: Instant,
    roles: String,
    kle_patterns: Option<String>,
    sensitivity: i32,
    privileges_until: Instant,
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("advis: {what}"))
}

fn privileges(
    authority: &str,
    subscriber: String,
    roles: &str,
    kle_patterns: Option<&str>,
    sensitivity: i32,
    until: DateTime<Utc>,
) -> Result<Privileges> {
    let roles: Vec<String> = serde_json::from_str(roles).map_err(|_| corrupt("roles"))?;
    let kle = match kle_patterns {
        Some(p) => {
            let patterns: Vec<String> = serde_json::from_str(p).map_err(|_| corrupt("KLE patterns"))?;
            KleConstraint::parse(&patterns).map_err(|_| corrupt("KLE patterns"))?
        }
        None => KleConstraint::any(),
    };
    Ok(Privileges {
        authority: Cvr::parse(authority).map_err(|_| corrupt("authority"))?,
        user_id: subscriber,
        roles,
        kle,
        sensitivity: Sensitivity::from_level(i64::from(sensitivity)).map_err(|_| corrupt("sensitivity"))?,
        until,
    })
}

impl SubscriptionRow {
    fn decode(self) -> Result<Subscription> {
        let privileges = privileges(
            &self.authority,
            self.subscriber,
            &self.roles,
            self.kle_patterns.as_deref(),
            self.sensitivity,
            self.privileges_until.0,
        )?;
        Ok(Subscription {
            id: self.id.0,
            citizen: PartyId::parse(&self.citizen).map_err(|_| corrupt("citizen"))?,
            area: DataArea::parse(&self.data_area).ok_or_else(|| corrupt("data area"))?,
            kle_prefix: match self.kle_prefix.as_str() {
                "" => None,
                p => Some(KlePrefix::parse(p).ok_or_else(|| corrupt("KLE prefix"))?),
            },
            privileges,
            created_at: self.created_at.0,
        })
    }
}

#[derive(sqlx::FromRow)]
struct NoticeRow {
    seq: i64,
    notice_id: Id,
    subscription_id: Id,
    event_id: Id,
    aggregate_id: Id,
    data_area: String,
    event_type: String,
    kind: String,
    occurred_at: Instant,
    row_authority: String,
    kles: String,
    sensitivity: i32,
}

impl NoticeRow {
    fn decode(self) -> Result<(i64, Notice)> {
        let kles = if self.kles.is_empty() {
            Vec::new()
        } else {
            self.kles.split(',').map(|k| Kle::parse(k).map_err(|_| corrupt("KLE"))).collect::<Result<_>>()?
        };
        let notice = Notice {
            id: self.notice_id.0,
            subscription_id: self.subscription_id.0,
            event_id: self.event_id.0,
            aggregate_id: self.aggregate_id.0,
            area: DataArea::parse(&self.data_area).ok_or_else(|| corrupt("data area"))?,
            event_type: self.event_type,
            kind: NoticeKind::parse(&self.kind).ok_or_else(|| corrupt("kind"))?,
            occurred_at: self.occurred_at.0,
            row_authority: Cvr::parse(&self.row_authority).map_err(|_| corrupt("authority"))?,
            class: Class {
                kles,
                sensitivity: Sensitivity::from_level(i64::from(self.sensitivity))
                    .map_err(|_| corrupt("sensitivity"))?,
            },
        };
        Ok((self.seq, notice))
    }
}

/// An unpublished notice with the privileges stored with its subscription.
#[derive(sqlx::FromRow)]
struct PendingRow {
    #[sqlx(flatten)]
    notice: NoticeRow,
    s_authority: Option<String>,
    s_subscriber: Option<String>,
    s_roles: Option<String>,
    s_kle_patterns: Option<String>,
    s_sensitivity: Option<i32>,
    s_until: Option<Instant>,
}

/// An outbox notice the publisher has yet to publish, with the privileges
/// stored with its subscription (`None` when the subscription is gone).
#[derive(Clone, Debug)]
pub struct PendingNotice {
    pub seq: i64,
    pub notice: Notice,
    pub privileges: Option<Privileges>,
}

/// A subscription as asked for, with the privileges of the asking token.
#[derive(Clone, Debug)]
pub struct NewSubscription {
    pub citizen: PartyId,
    pub area: DataArea,
    pub kle_prefix: Option<KlePrefix>,
    pub privileges: Privileges,
}

/// What a subscribe did.
#[derive(Clone, Debug)]
pub enum Subscribed {
    Created(Subscription),
    /// It existed: its stored privileges are now the asking token's.
    Refreshed(Subscription),
    /// The subscriber holds [`advis::MAX_SUBSCRIPTIONS`] already.
    Exhausted,
}

fn privilege_vals(p: &Privileges) -> (String, Option<String>, i64) {
    let roles = serde_json::to_string(&p.roles).expect("roles serialise");
    let kle = p.kle.patterns().map(|k| serde_json::to_string(k).expect("patterns serialise"));
    (roles, kle, p.sensitivity.level())
}

impl<B: Backend> Engine<B> {
    /// Creates a subscription, or refreshes the privileges of the one with
    /// the same (authority, subscriber, citizen, area, prefix); refused
    /// when the subscriber holds the maximum already.
    pub async fn subscribe(&self, s: &NewSubscription) -> Result<Subscribed> {
        let p = &s.privileges;
        let (roles, kle, level) = privilege_vals(p);
        let citizen = s.citizen.urn();
        let prefix = s.kle_prefix.as_ref().map_or("", KlePrefix::as_str);
        let mut tx = self.b.begin(Lock::None).await?;
        let mut q = Sql::<B>::new();
        let (r, k, l, u) = (q.arg(Val::str(&roles)), q.arg(Val::from(kle.clone())), q.arg(level), q.arg(p.until));
        let (a, who, cit, area, pre) = (
            q.arg(Val::str(p.authority.as_str())),
            q.arg(Val::str(&p.user_id)),
            q.arg(Val::str(&citizen)),
            q.arg(Val::str(s.area.as_str())),
            q.arg(Val::str(prefix)),
        );
        let q = q.text(format!(
            "UPDATE advis_subscriptions SET roles = {r}, kle_patterns = {k}, sensitivity = {l},
                    privileges_until = {u}, refreshed_at = {}
             WHERE authority = {a} AND subscriber = {who} AND citizen = {cit} AND data_area = {area}
               AND kle_prefix = {pre}
             RETURNING {SUBSCRIPTION_COLS}",
            B::NOW
        ));
        let updated: Vec<SubscriptionRow> = B::fetch(&mut tx, q).await?;
        if let Some(row) = updated.into_iter().next() {
            tx.commit().await?;
            return Ok(Subscribed::Refreshed(row.decode()?));
        }
        let mut q = Sql::<B>::new();
        let id = q.arg(Uuid::new_v4());
        let (a, who, cit, area, pre) = (
            q.arg(Val::str(p.authority.as_str())),
            q.arg(Val::str(&p.user_id)),
            q.arg(Val::str(&citizen)),
            q.arg(Val::str(s.area.as_str())),
            q.arg(Val::str(prefix)),
        );
        let (r, k, l, u) = (q.arg(Val::str(&roles)), q.arg(Val::from(kle)), q.arg(level), q.arg(p.until));
        let bound = q.arg(advis::MAX_SUBSCRIPTIONS);
        // A concurrent subscribe of the same key came first: its row is
        // refreshed instead.
        let q = q.text(format!(
            "INSERT INTO advis_subscriptions
               (id, authority, subscriber, citizen, data_area, kle_prefix, roles, kle_patterns, sensitivity,
                privileges_until)
             SELECT {id}, {a}, {who}, {cit}, {area}, {pre}, {r}, {k}, {l}, {u}
             WHERE (SELECT count(*) FROM advis_subscriptions WHERE authority = {a} AND subscriber = {who}) < {bound}
             ON CONFLICT (authority, subscriber, citizen, data_area, kle_prefix) DO UPDATE
               SET roles = excluded.roles, kle_patterns = excluded.kle_patterns,
                   sensitivity = excluded.sensitivity, privileges_until = excluded.privileges_until
             RETURNING {SUBSCRIPTION_COLS}"
        ));
        let inserted: Vec<SubscriptionRow> = B::fetch(&mut tx, q).await?;
        tx.commit().await?;
        match inserted.into_iter().next() {
            Some(row) => Ok(Subscribed::Created(row.decode()?)),
            None => Ok(Subscribed::Exhausted),
        }
    }

    /// Removes one of the subscriber's subscriptions; false when there was
    /// none with that id.
    pub async fn unsubscribe(&self, authority: &Cvr, subscriber: &str, id: Uuid) -> Result<bool> {
        let mut q = Sql::<B>::new();
        let (i, a, who) = (q.arg(id), q.arg(Val::str(authority.as_str())), q.arg(Val::str(subscriber)));
        let q = q
            .text(format!("DELETE FROM advis_subscriptions WHERE id = {i} AND authority = {a} AND subscriber = {who}"));
        let mut conn = self.b.pool().acquire().await?;
        Ok(B::execute(&mut conn, q).await? == 1)
    }

    /// The subscriber's subscriptions (at most [`advis::MAX_SUBSCRIPTIONS`]),
    /// oldest first.
    pub async fn subscriptions_of(&self, authority: &Cvr, subscriber: &str) -> Result<Vec<Subscription>> {
        let mut q = Sql::<B>::new();
        let (a, who, limit) =
            (q.arg(Val::str(authority.as_str())), q.arg(Val::str(subscriber)), q.arg(advis::MAX_SUBSCRIPTIONS));
        let q = q.text(format!(
            "SELECT {SUBSCRIPTION_COLS} FROM advis_subscriptions WHERE authority = {a} AND subscriber = {who}
             ORDER BY created_at, id LIMIT {limit}"
        ));
        let rows: Vec<SubscriptionRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter().map(SubscriptionRow::decode).collect()
    }

    /// The subscriber's notices after `after` (an outbox sequence number),
    /// in order, at most `limit`; only those of subscriptions that still
    /// exist.
    pub async fn notices_for(
        &self,
        authority: &Cvr,
        subscriber: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Notice)>> {
        let mut q = Sql::<B>::new();
        let (a, who, after, limit) =
            (q.arg(Val::str(authority.as_str())), q.arg(Val::str(subscriber)), q.arg(after), q.arg(limit));
        let q = q.text(format!(
            "SELECT {NOTICE_COLS} FROM advis_outbox o JOIN advis_subscriptions s ON s.id = o.subscription_id
             WHERE s.authority = {a} AND s.subscriber = {who} AND o.seq > {after}
             ORDER BY o.seq LIMIT {limit}"
        ));
        let rows: Vec<NoticeRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter().map(NoticeRow::decode).collect()
    }

    /// The highest outbox sequence number committed (0 when none): what
    /// watchers wait on to move.
    pub async fn outbox_head(&self) -> Result<i64> {
        let rows: Vec<CountRow> =
            fetch_rows(self.b.pool(), Sql::<B>::of("SELECT COALESCE(max(seq), 0) AS n FROM advis_outbox")).await?;
        Ok(rows.first().map_or(0, |r| r.n))
    }

    /// The first `limit` notices neither published nor suppressed, in
    /// order, each with its subscription's stored privileges.
    pub async fn pending_notices(&self, limit: i64) -> Result<Vec<PendingNotice>> {
        let mut q = Sql::<B>::new();
        let limit = q.arg(limit);
        let q = q.text(format!(
            "SELECT {NOTICE_COLS}, s.authority AS s_authority, s.subscriber AS s_subscriber, s.roles AS s_roles,
                    s.kle_patterns AS s_kle_patterns, s.sensitivity AS s_sensitivity,
                    s.privileges_until AS s_until
             FROM advis_outbox o LEFT JOIN advis_subscriptions s ON s.id = o.subscription_id
             WHERE o.published_at IS NULL AND o.suppressed IS NULL ORDER BY o.seq LIMIT {limit}"
        ));
        let rows: Vec<PendingRow> = fetch_rows(self.b.pool(), q).await?;
        rows.into_iter()
            .map(|r| {
                let privileges = match (r.s_authority, r.s_subscriber, r.s_roles, r.s_sensitivity, r.s_until) {
                    (Some(a), Some(who), Some(roles), Some(level), Some(until)) => {
                        Some(privileges(&a, who, &roles, r.s_kle_patterns.as_deref(), level, until.0)?)
                    }
                    _ => None,
                };
                let (seq, notice) = r.notice.decode()?;
                Ok(PendingNotice { seq, notice, privileges })
            })
            .collect()
    }

    /// Deletes at most `limit` notices that were published or suppressed
    /// before `before`, oldest first; returns how many.
    pub async fn prune_notices(&self, before: DateTime<Utc>, limit: i64) -> Result<u64> {
        let mut q = Sql::<B>::new();
        let (before, limit) = (q.arg(before), q.arg(limit));
        let q = q.text(format!(
            "DELETE FROM advis_outbox WHERE seq IN (
               SELECT seq FROM advis_outbox
               WHERE (published_at IS NOT NULL OR suppressed IS NOT NULL) AND created_at < {before}
               ORDER BY seq LIMIT {limit})"
        ));
        let mut conn = self.b.pool().acquire().await?;
        B::execute(&mut conn, q).await
    }

    /// Marks notices published, and others suppressed with their reason,
    /// in one transaction.
    pub async fn mark_notices(&self, published: &[i64], suppressed: &[(i64, Suppression)]) -> Result<()> {
        let mut tx = self.b.begin(Lock::None).await?;
        if !published.is_empty() {
            let mut q = Sql::<B>::new();
            let list = q.list(ColType::Int, published.iter().map(|s| Val::Int(*s)));
            let q = q.text(format!(
                "UPDATE advis_outbox SET published_at = {} WHERE {} AND published_at IS NULL",
                B::NOW,
                B::in_list("seq", &list)
            ));
            B::execute(&mut tx, q).await?;
        }
        if !suppressed.is_empty() {
            let rows: Vec<Row> = suppressed.iter().map(|(s, why)| vec![Val::Int(*s), Val::str(why.as_str())]).collect();
            let mut q = Sql::<B>::new();
            let src = q.rows(SUPPRESSIONS, &rows, "u");
            let q =
                q.text(format!("UPDATE advis_outbox AS o SET suppressed = u.reason FROM {src} WHERE o.seq = u.seq"));
            B::execute(&mut tx, q).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl<B: Backend> EngineTx<B> {
    /// Ends the stored privileges of a subscriber's subscriptions now: an IT
    /// system's, when the service agreement they rest on is revoked. The
    /// publisher then suppresses their notices until the system subscribes
    /// again under an agreement still active.
    pub async fn lapse_subscriptions(&mut self, authority: &Cvr, subscriber: &str, at: DateTime<Utc>) -> Result<()> {
        let mut q = Sql::<B>::new();
        let (until, a, who) = (q.arg(Val::Time(at)), q.arg(Val::str(authority.as_str())), q.arg(Val::str(subscriber)));
        let q = q.text(format!(
            "UPDATE advis_subscriptions SET privileges_until = {until} WHERE authority = {a} AND subscriber = {who}"
        ));
        B::execute(&mut self.tx, q).await?;
        Ok(())
    }

    /// Writes the notices a batch's plan yields into the outbox, in this
    /// transaction. Costs one cheap query per batch while nobody subscribes.
    pub async fn enqueue_notices(&mut self, plan: &crate::projection::Plan) -> Result<()> {
        if plan.appended.is_empty() {
            return Ok(());
        }
        let any: Vec<CountRow> = B::fetch(
            &mut self.tx,
            Sql::of("SELECT count(*) AS n FROM (SELECT 1 AS x FROM advis_subscriptions LIMIT 1) s"),
        )
        .await?;
        if any.first().is_none_or(|r| r.n == 0) {
            return Ok(());
        }
        let citizens = advis::touched(plan);
        let mut q = Sql::<B>::new();
        let list = q.list(ColType::Text, citizens.iter().map(|c| Val::str(c)));
        let q = q.text(format!(
            "SELECT {SUBSCRIPTION_COLS} FROM advis_subscriptions WHERE {}",
            B::in_list("citizen", &list)
        ));
        let rows: Vec<SubscriptionRow> = B::fetch(&mut self.tx, q.once()).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let subscriptions: Vec<Subscription> = rows.into_iter().map(SubscriptionRow::decode).collect::<Result<_>>()?;
        let wanted = advis::grants_wanted(plan);
        let grants = if wanted.is_empty() { Vec::new() } else { self.load_aggregates(&wanted).await? };
        let notices = advis::notices(plan, &subscriptions, &grants);
        if notices.is_empty() {
            return Ok(());
        }
        if let Some(lock) = B::OUTBOX_LOCK {
            B::execute(&mut self.tx, Sql::of(lock)).await?;
        }
        let kles: Vec<String> =
            notices.iter().map(|n| n.class.kles.iter().map(Kle::as_str).collect::<Vec<_>>().join(",")).collect();
        let rows: Vec<Row> = notices
            .iter()
            .zip(&kles)
            .map(|(n, k)| {
                vec![
                    Val::Uuid(n.id),
                    Val::Uuid(n.subscription_id),
                    Val::Uuid(n.event_id),
                    Val::Uuid(n.aggregate_id),
                    Val::str(n.area.as_str()),
                    Val::str(&n.event_type),
                    Val::str(n.kind.as_str()),
                    Val::Time(n.occurred_at),
                    Val::str(n.row_authority.as_str()),
                    Val::str(k),
                    Val::Int(n.class.sensitivity.level()),
                ]
            })
            .collect();
        let mut q = Sql::<B>::new();
        let names = durable::names(durable::ADVIS_OUTBOX);
        let src = q.rows(durable::ADVIS_OUTBOX, &rows, "u");
        let q = q.text(format!(
            "INSERT INTO advis_outbox ({names}) SELECT {names} FROM {src} WHERE true
             ON CONFLICT (notice_id) DO NOTHING"
        ));
        B::execute(&mut self.tx, q).await?;
        Ok(())
    }
}
