//! Wire types more than one route answers with.

use chrono::{DateTime, Utc};
use keyframe_domain::ids::UserId;
use keyframe_domain::ledger::CreditLedger;
use keyframe_domain::user::User;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

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

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// The user's id.
    pub id: Uuid,
    /// Normalised e-mail address.
    pub email: String,
    /// Display name.
    pub full_name: Option<String>,
    /// Roles held.
    pub roles: Vec<String>,
    /// Whether the address was proven with a mailed link.
    pub email_verified: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

impl UserView {
    /// The account `id` as it stands.
    pub fn of(id: UserId, user: &User) -> Self {
        Self {
            id: id.0,
            email: user.email().to_string(),
            full_name: user.full_name().map(|name| name.as_str().to_owned()),
            roles: user.role_names(),
            email_verified: user.email_verified(),
            created_at: user.registered_at().unwrap_or_default(),
        }
    }
}
