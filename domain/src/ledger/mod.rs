//! The `CreditLedger` aggregate: one per user (its id is the user's), every movement of the
//! user's credits as an event with a reason and a reference.
//!
//! Credits are whole numbers. `balance` is what the user owns; `reserved` is held for jobs
//! that have not ended; `available = balance - reserved` is what a new job may reserve. No
//! command can take `available` below zero, so the balance never goes negative. Every command
//! that could arrive twice (a redelivered event, a replayed webhook) is idempotent by its
//! reference: the job and its run for reservations and their settlement, the invoice for
//! subscription grants, the month for the free plan's allowance.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Reservation {
    run: u32,
    amount: i64,
}

/// A user's credits.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CreditLedger {
    owner_id: Option<UserId>,
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
}

#[cfg(test)]
mod tests;
