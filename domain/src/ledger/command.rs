//! The commands of the `CreditLedger` aggregate.

use super::{GrantSource, MemberCharge};
use crate::ids::{JobId, UserId};
use crate::owner::Owner;
use chrono::{DateTime, Utc};

/// Commands for [`CreditLedger`](super::CreditLedger).
#[derive(Debug, Clone)]
pub enum LedgerCommand {
    /// Add credits.
    Grant {
        /// The ledger's owner (its id is also the aggregate id).
        owner: Owner,
        /// How many, more than zero.
        amount: i64,
        /// Where they come from.
        source: GrantSource,
        /// Why, in words.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Hold credits for a job before it exists.
    Reserve {
        /// The ledger's owner.
        owner: Owner,
        /// The job.
        job_id: JobId,
        /// Which run of it.
        run: u32,
        /// How many, zero or more.
        amount: i64,
        /// The member whose job it is, on an organisation's ledger, and their monthly limit.
        member: Option<MemberCharge>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Charge a job's actual cost from its reservation and release the rest.
    Settle {
        /// The job.
        job_id: JobId,
        /// The run that ended.
        run: u32,
        /// Its actual cost (at most the reservation is charged).
        cost: i64,
        /// When.
        at: DateTime<Utc>,
    },
    /// Give a job's reservation back (it failed, was cancelled, or was never created).
    Release {
        /// The job.
        job_id: JobId,
        /// The run that ended (or never started).
        run: u32,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// An administrator gives credits back.
    Refund {
        /// How many, more than zero.
        amount: i64,
        /// Who refunds.
        admin_id: UserId,
        /// What it refunds (a job id, a ticket), for the record.
        reference: String,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
}
