//! Wire types more than one route answers with.

use keyframe_domain::ledger::CreditLedger;
use serde::Serialize;
use utoipa::ToSchema;

/// What the caller has.
#[derive(Debug, Serialize, ToSchema)]
pub struct Balance {
    /// Credits owned.
    pub balance: i64,
    /// Held for jobs that have not ended.
    pub reserved: i64,
    /// What a new job may use: balance less reserved.
    pub available: i64,
}

impl Balance {
    /// Where `ledger` stands.
    pub fn of(ledger: &CreditLedger) -> Self {
        Self {
            balance: ledger.balance(),
            reserved: ledger.reserved(),
            available: ledger.available(),
        }
    }
}
