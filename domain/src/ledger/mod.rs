//! The `CreditLedger` aggregate: one per owner, a user or an organisation (its id is the
//! owner's), every movement of the owner's credits as an event with a reason and a reference.
//!
//! Credits are whole numbers. `balance` is what the user owns; `reserved` is held for jobs
//! that have not ended; `available = balance - reserved` is what a new job may reserve. No
//! command can take `available` below zero, so the balance never goes negative. Every command
//! that could arrive twice (a redelivered event, a replayed webhook) is idempotent by its
//! reference: the job and its run for reservations and their settlement, the invoice for
//! subscription grants, the month for the free plan's allowance.
//!
//! On an organisation's ledger each reservation names the member whose job it is. An owner may
//! give a member a monthly limit: what the member's jobs hold or were charged in the calendar
//! month (UTC) plus the new reservation may not pass it. The limit is checked here, under
//! optimistic concurrency, so concurrent requests by one member cannot pass it together.
//!
//! A job's reservation belongs to one run of it (see `Job::run`): a manual retry of a failed or
//! cancelled job is a new run that reserves again, so the late release of the earlier run can
//! never touch the new run's credits.

mod aggregate;
mod command;
mod error;
mod event;

pub use command::LedgerCommand;
pub use error::LedgerError;
pub use event::LedgerEvent;

use crate::ids::{JobId, UserId};
use crate::owner::Owner;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Where granted credits come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GrantSource {
    /// The bonus every new account gets.
    SignupBonus,
    /// An administrator's grant.
    Admin {
        /// Who granted.
        admin_id: UserId,
    },
    /// A subscription period, paid.
    Subscription {
        /// The paid invoice: each grants once.
        invoice_id: String,
        /// The Stripe event that reported it.
        stripe_event_id: String,
    },
    /// A month of the free plan's allowance, for an account without a paid subscription.
    Allowance {
        /// The plan whose allowance it is.
        plan: String,
        /// The calendar month (UTC) it is for, `YYYY-MM` (see [`allowance_period`]): each
        /// grants once.
        period: String,
    },
}

/// The allowance period (calendar month, UTC) that `at` falls in, as `YYYY-MM`.
pub fn allowance_period(at: DateTime<Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// Credits held for one run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Reservation {
    run: u32,
    amount: i64,
    /// The member whose job it is, on an organisation's ledger.
    #[serde(default)]
    member: Option<UserId>,
    /// The month (`YYYY-MM`) it counts towards the member's limit.
    #[serde(default)]
    period: String,
}

/// The member a reservation is for, and the most their jobs may use in a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCharge {
    /// The member who requested the job.
    pub member: UserId,
    /// Their monthly credit limit in the organisation; `None`: none.
    pub monthly_limit: Option<i64>,
}

/// What a member's jobs used (held or were charged) in one month.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
struct MemberUsage {
    /// The month, `YYYY-MM`.
    period: String,
    /// Credits held or charged in it.
    used: i64,
}

/// An owner's credits.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CreditLedger {
    owner: Option<Owner>,
    balance: i64,
    reservations: BTreeMap<JobId, Reservation>,
    /// For each job, its latest run whose reservation was settled or released: ending it again
    /// is a no-op.
    closed: BTreeMap<JobId, u32>,
    /// Invoices already granted.
    invoices: BTreeSet<String>,
    /// Allowance periods (`YYYY-MM`) already granted.
    #[serde(default)]
    allowances: BTreeSet<String>,
    signup_bonus_granted: bool,
    /// Per member, what their jobs used in the latest month they reserved in.
    #[serde(default)]
    member_usage: BTreeMap<UserId, MemberUsage>,
}

impl CreditLedger {
    /// Credits owned.
    pub fn balance(&self) -> i64 {
        self.balance
    }

    /// Credits held for jobs that have not ended.
    pub fn reserved(&self) -> i64 {
        self.reservations.values().map(|r| r.amount).sum()
    }

    /// Credits a new job may reserve.
    pub fn available(&self) -> i64 {
        self.balance - self.reserved()
    }

    /// The open reservation of `job_id`, if any: its run and amount.
    pub fn reservation(&self, job_id: JobId) -> Option<(u32, i64)> {
        self.reservations.get(&job_id).map(|r| (r.run, r.amount))
    }

    /// What `member`'s jobs hold or were charged in the month (`YYYY-MM`) `period`.
    pub fn member_used_in(&self, member: UserId, period: &str) -> i64 {
        self.member_usage
            .get(&member)
            .filter(|usage| usage.period == period)
            .map_or(0, |usage| usage.used)
    }
}

#[cfg(test)]
mod tests;
