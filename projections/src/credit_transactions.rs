//! `credit_transactions`: one row per movement of a user's credits, for the transactions list.

use crate::{Projection, ProjectionError, decode, parse_uuid};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use keyframe_database::{Connection, Database, portable};
use keyframe_domain::ledger::{CreditLedger, GrantSource, LedgerEvent, allowance_period};
use keyframe_domain::log::RecordedEvent;
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// The `credit_transactions` projection.
pub struct CreditTransactions;

/// Its name, as used by checkpoints, consumers and read-your-writes.
pub const NAME: &str = "credit_transactions";

#[async_trait]
impl Projection for CreditTransactions {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[CreditLedger::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["credit_transactions"]
    }

    async fn last_sequences(
        &self,
        conn: Connection<'_>,
        aggregates: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), i64>, ProjectionError> {
        crate::last_sequences_by_id(
            conn,
            "SELECT owner_id, max(sequence) FROM credit_transactions WHERE owner_id {ids} GROUP BY owner_id",
            CreditLedger::TYPE,
            aggregates,
        )
        .await
    }

    async fn apply(&self, mut conn: Connection<'_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        for event in events {
            let owner_id = parse_uuid(event)?;
            let row = match decode::<LedgerEvent>(event)? {
                LedgerEvent::CreditsGranted {
                    amount,
                    source,
                    reason,
                    balance,
                    ..
                } => {
                    let reference = match source {
                        GrantSource::SignupBonus => "signup".to_owned(),
                        GrantSource::Admin { admin_id } => format!("admin:{admin_id}"),
                        GrantSource::Subscription { invoice_id, .. } => format!("invoice:{invoice_id}"),
                        GrantSource::Allowance { plan, period } => format!("allowance:{plan}:{period}"),
                    };
                    Row::new("grant", amount, 0, Some(balance), None, Some(reference), Some(reason))
                }
                LedgerEvent::CreditsReserved {
                    job_id,
                    run,
                    amount,
                    member,
                    reserved_at,
                    ..
                } => {
                    let mut row = Row::new("reservation", 0, amount, None, Some((job_id.0, run)), None, None);
                    row.member = member.map(|member| (member.0, allowance_period(reserved_at)));
                    row
                }
                LedgerEvent::CreditsSettled {
                    job_id,
                    run,
                    charged,
                    released,
                    balance,
                    ..
                } => Row::new(
                    "settlement",
                    -charged,
                    -(charged + released),
                    Some(balance),
                    Some((job_id.0, run)),
                    None,
                    None,
                ),
                LedgerEvent::CreditsReleased {
                    job_id,
                    run,
                    amount,
                    reason,
                    ..
                } => Row::new("release", 0, -amount, None, Some((job_id.0, run)), None, Some(reason)),
                LedgerEvent::CreditsRefunded {
                    amount,
                    admin_id,
                    reference,
                    reason,
                    balance,
                    ..
                } => Row::new(
                    "refund",
                    amount,
                    0,
                    Some(balance),
                    None,
                    Some(format!("admin:{admin_id} {reference}")),
                    Some(reason),
                ),
            };
            // A settlement or release is the member's whose reservation it ends, in its month.
            let (member, period) = match (&row.member, row.job) {
                (Some((member, period)), _) => (Some(*member), Some(period.clone())),
                (None, Some((job_id, run))) if row.kind != "reservation" => {
                    let reservation: Option<(Option<Uuid>, Option<String>)> = portable!(conn.reborrow(), conn => { sqlx::query_as(
                        "SELECT member_id, period FROM credit_transactions
                         WHERE owner_id = $1 AND job_id = $2 AND job_run = $3 AND kind = 'reservation'
                           AND member_id IS NOT NULL",
                    )
                    .bind(owner_id)
                    .bind(job_id)
                    .bind(i64::from(run))
                    .fetch_optional(conn)
                    .await })?;
                    reservation.unwrap_or_default()
                }
                _ => (None, None),
            };
            portable!(conn.reborrow(), conn => { sqlx::query(
                "INSERT INTO credit_transactions (owner_id, sequence, kind, amount, reserved, balance, job_id,
                     job_run, reference, reason, recorded_at, member_id, period)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING",
            )
            .bind(owner_id)
            .bind(event.sequence)
            .bind(row.kind)
            .bind(row.amount)
            .bind(row.reserved)
            .bind(row.balance)
            .bind(row.job.map(|(job_id, _)| job_id))
            .bind(row.job.map(|(_, run)| i64::from(run)))
            .bind(row.reference)
            .bind(row.reason)
            .bind(event.recorded_at)
            .bind(member)
            .bind(period)
            .execute(conn)
            .await .map(|done| done.rows_affected()) })?;
        }
        Ok(())
    }
}

struct Row {
    kind: &'static str,
    amount: i64,
    reserved: i64,
    balance: Option<i64>,
    /// The job and its run, for reservations and their ends.
    job: Option<(Uuid, u32)>,
    reference: Option<String>,
    reason: Option<String>,
    /// On an organisation's ledger, the member of a reservation and its month.
    member: Option<(Uuid, String)>,
}

impl Row {
    fn new(
        kind: &'static str,
        amount: i64,
        reserved: i64,
        balance: Option<i64>,
        job: Option<(Uuid, u32)>,
        reference: Option<String>,
        reason: Option<String>,
    ) -> Self {
        Self {
            kind,
            amount,
            reserved,
            balance,
            job,
            reference,
            reason,
            member: None,
        }
    }
}

/// One movement.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TransactionRow {
    /// Its place in the user's ledger (the cursor).
    pub sequence: i64,
    /// `grant`, `reservation`, `settlement`, `release` or `refund`.
    pub kind: String,
    /// The change to the balance.
    pub amount: i64,
    /// The change to what is reserved.
    pub reserved: i64,
    /// The balance after, where it changed.
    pub balance: Option<i64>,
    /// The job, for reservations and their ends.
    pub job_id: Option<Uuid>,
    /// Which run of the job (a manual retry is a new run); `None` on rows written before runs
    /// were recorded here, until the projection is rebuilt.
    pub job_run: Option<i32>,
    /// Where it came from (`signup`, `admin:<id>`, `invoice:<id>`, `allowance:<plan>:<YYYY-MM>`).
    pub reference: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// On an organisation's ledger, the member whose job it is for.
    pub member_id: Option<Uuid>,
    /// When.
    pub recorded_at: DateTime<Utc>,
}

/// A page of `owner_id`'s movements, newest first, before `cursor`.
pub async fn list_for_owner(
    database: &Database,
    owner_id: Uuid,
    cursor: Option<i64>,
    limit: i64,
) -> Result<Vec<TransactionRow>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(
        "SELECT sequence, kind, amount, reserved, balance, job_id, job_run, reference, reason, member_id, recorded_at
         FROM credit_transactions WHERE owner_id = $1 AND ($2 IS NULL OR sequence < $2)
         ORDER BY sequence DESC LIMIT $3",
    )
    .bind(owner_id)
    .bind(cursor)
    .bind(limit)
    .fetch_all(pool)
    .await })
}

/// What one member's jobs used of an organisation's credits in one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct MemberUsageRow {
    /// The month, `YYYY-MM` (UTC; a job counts in the month its credits were reserved).
    pub period: String,
    /// The member.
    pub member_id: Uuid,
    /// Credits charged for their finished jobs.
    pub charged: i64,
    /// Credits still held for their jobs that have not ended.
    pub held: i64,
    /// Their jobs' runs that were charged.
    pub charged_runs: i64,
}

/// The usage of `owner_id`'s credits per member per month, newest month first; only
/// `member_id`'s when given. At most `months` months.
pub async fn usage_by_member(
    database: &Database,
    owner_id: Uuid,
    member_id: Option<Uuid>,
    months: i64,
) -> Result<Vec<MemberUsageRow>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(
        "WITH recent AS (
             SELECT DISTINCT period FROM credit_transactions
             WHERE owner_id = $1 AND member_id IS NOT NULL AND ($2 IS NULL OR member_id = $2)
             ORDER BY period DESC LIMIT $3
         )
         SELECT t.period, t.member_id,
                CAST(coalesce(-sum(t.amount) FILTER (WHERE t.kind = 'settlement'), 0) AS BIGINT) AS charged,
                CAST(coalesce(sum(t.reserved), 0) AS BIGINT) AS held,
                count(*) FILTER (WHERE t.kind = 'settlement') AS charged_runs
         FROM credit_transactions t JOIN recent USING (period)
         WHERE t.owner_id = $1 AND t.member_id IS NOT NULL AND ($2 IS NULL OR t.member_id = $2)
         GROUP BY t.period, t.member_id
         ORDER BY t.period DESC, charged DESC, t.member_id",
    )
    .bind(owner_id)
    .bind(member_id)
    .bind(months.clamp(1, 120))
    .fetch_all(pool)
    .await })
}
