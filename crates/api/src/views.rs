//! Wire types more than one route answers with.

use chrono::{DateTime, Utc};
use keyframe_domain::ids::UserId;
use keyframe_domain::ledger::CreditLedger;
use keyframe_domain::organization::Membership;
use keyframe_domain::user::User;
use keyframe_projections::organizations::MemberRow;
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

/// A member of an organisation.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// The member's user id.
    pub user_id: Uuid,
    /// Their address.
    pub email: String,
    /// Their role.
    #[schema(schema_with = crate::openapi::fields::member_role)]
    pub role: String,
    /// The most credits their jobs may use in a calendar month (UTC); `null`: no limit.
    pub monthly_credit_limit: Option<i64>,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

impl From<MemberRow> for MemberView {
    fn from(row: MemberRow) -> Self {
        Self {
            user_id: row.user_id,
            email: row.email,
            role: row.role,
            monthly_credit_limit: row.monthly_credit_limit,
            joined_at: row.joined_at,
        }
    }
}

impl MemberView {
    /// `membership` of `user_id`, as the members list shows it.
    pub fn of(user_id: UserId, membership: &Membership) -> Self {
        Self {
            user_id: user_id.0,
            email: membership.email.as_str().to_owned(),
            role: membership.role.as_str().to_owned(),
            monthly_credit_limit: membership.monthly_credit_limit,
            joined_at: membership.joined_at,
        }
    }
}
