//! The events of the `CreditLedger` aggregate: a published contract (names and payloads never
//! change).

use super::GrantSource;
use crate::ids::{JobId, UserId};
use crate::owner::Owner;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// Events of [`CreditLedger`](super::CreditLedger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LedgerEvent {
    /// Credits were added.
    CreditsGranted {
        /// The owner: `owner_id`, and `owner_kind: "organization"` for an organisation's.
        #[serde(flatten)]
        owner: Owner,
        /// How many.
        amount: i64,
        /// Where from.
        source: GrantSource,
        /// Why.
        reason: String,
        /// The balance after.
        balance: i64,
        /// When.
        granted_at: DateTime<Utc>,
    },
    /// Credits were held for a job.
    CreditsReserved {
        /// The owner: `owner_id`, and `owner_kind: "organization"` for an organisation's.
        #[serde(flatten)]
        owner: Owner,
        /// The job.
        job_id: JobId,
        /// Which run of it.
        #[serde(default)]
        run: u32,
        /// How many.
        amount: i64,
        /// On an organisation's ledger, the member whose job it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        member: Option<UserId>,
        /// When.
        reserved_at: DateTime<Utc>,
    },
    /// A job's cost was charged and the rest of its reservation released.
    CreditsSettled {
        /// The job.
        job_id: JobId,
        /// The run.
        #[serde(default)]
        run: u32,
        /// Charged.
        charged: i64,
        /// Released.
        released: i64,
        /// The balance after.
        balance: i64,
        /// When.
        settled_at: DateTime<Utc>,
    },
    /// A job's reservation was given back whole.
    CreditsReleased {
        /// The job.
        job_id: JobId,
        /// The run.
        #[serde(default)]
        run: u32,
        /// How many.
        amount: i64,
        /// Why.
        reason: String,
        /// When.
        released_at: DateTime<Utc>,
    },
    /// An administrator refunded credits.
    CreditsRefunded {
        /// How many.
        amount: i64,
        /// Who.
        admin_id: UserId,
        /// What it refunds.
        reference: String,
        /// Why.
        reason: String,
        /// The balance after.
        balance: i64,
        /// When.
        refunded_at: DateTime<Utc>,
    },
}

impl DomainEvent for LedgerEvent {
    fn event_type(&self) -> String {
        match self {
            Self::CreditsGranted { .. } => "CreditsGranted",
            Self::CreditsReserved { .. } => "CreditsReserved",
            Self::CreditsSettled { .. } => "CreditsSettled",
            Self::CreditsReleased { .. } => "CreditsReleased",
            Self::CreditsRefunded { .. } => "CreditsRefunded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
