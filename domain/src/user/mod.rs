//! The `User` aggregate: an account, identified by a unique e-mail address and a password hash,
//! with its e-mail verification, password resets and changes, and the lockout that follows
//! repeated failed logins, its second factor (TOTP), the third-party API keys it keeps, its
//! roles, and suspension by an administrator.
//!
//! E-mail uniqueness spans aggregates, so it is enforced before `RegisterUser` runs, by the
//! reservation table (see the API's registration handler); the aggregate guards its own life.
//! Tokens sent by mail reach the aggregate only as hashes, with their expiry; the API passes
//! the time and the lockout policy in, so the rules here are pure.

mod login_attempts;

pub use login_attempts::LoginAttempts;

mod aggregate;
mod command;
mod error;
mod event;

pub use command::UserCommand;
pub use error::UserError;
pub use event::UserEvent;

use crate::ids::{SessionId, UserId};
use crate::values::{ApiKeyProvider, EmailAddress, FullName, PasswordHash, SealedSecret, TokenHash};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A Keyframe account.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct User {
    id: Option<UserId>,
    email: EmailAddress,
    password_hash: PasswordHash,
    full_name: Option<FullName>,
    registered_at: Option<DateTime<Utc>>,
    email_verified_at: Option<DateTime<Utc>>,
    /// The newest verification token sent, until it is used.
    pending_verification: Option<ExpiringToken>,
    /// The newest password-reset token sent, until it is used.
    pending_reset: Option<ExpiringToken>,
    /// Guesses at the credentials: admitted, failed, and the lock they led to.
    login_attempts: LoginAttempts,
    /// Sessions that started before this instant are over (a password reset or change, a
    /// suspension, logging out everywhere), except `session_kept`.
    sessions_valid_from: Option<DateTime<Utc>>,
    /// The one session a password change leaves alive: the one that made it.
    session_kept: Option<SessionId>,
    /// A TOTP secret set up but not yet confirmed with a code.
    totp_pending: Option<SealedSecret>,
    /// The TOTP secret in force, once enabled.
    totp_enabled: Option<SealedSecret>,
    /// The newest 30-second step whose code was accepted: no code of it or before works again.
    totp_last_step: u64,
    /// Third-party API keys, sealed, by provider.
    api_keys: BTreeMap<ApiKeyProvider, StoredApiKey>,
    /// Roles beyond `user`, which everyone holds.
    extra_roles: BTreeSet<Role>,
    /// Why an administrator suspended the account, while it is suspended.
    suspended: Option<String>,
}

/// What a user may do. Everyone is a `user`; an `admin` also administers Keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Uses Keyframe.
    User,
    /// Administers users and the system.
    Admin,
}

impl Role {
    /// The role's name in the API and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }

    /// The role named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A third-party API key as the account keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredApiKey {
    /// The key, sealed.
    pub key: SealedSecret,
    /// Its last four characters.
    pub last4: String,
    /// When it was stored.
    pub stored_at: DateTime<Utc>,
}

/// A single-use token sent by mail, as the aggregate keeps it: its hash and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringToken {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// When failed logins lock an account, and for how long (from configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within `window` that lock the account.
    pub threshold: u32,
    /// How far back failures count.
    pub window: Duration,
    /// How long the lock lasts.
    pub lock_for: Duration,
}

impl User {
    /// The user's id, once registered.
    pub fn id(&self) -> Option<UserId> {
        self.id
    }

    /// The normalised e-mail address.
    pub fn email(&self) -> &EmailAddress {
        &self.email
    }

    /// The password hash to verify a login against.
    pub fn password_hash(&self) -> &PasswordHash {
        &self.password_hash
    }

    /// The name the user gave, if any.
    pub fn full_name(&self) -> Option<&FullName> {
        self.full_name.as_ref()
    }

    /// When the account was created.
    pub fn registered_at(&self) -> Option<DateTime<Utc>> {
        self.registered_at
    }

    /// Whether the owner proved the address by using a mailed token.
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }

    /// Until when the account is locked, if it is locked at `now`.
    pub fn locked_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.login_attempts.locked_until(now)
    }

    /// Whether failed logins were counted since the last success.
    pub fn has_failed_logins(&self) -> bool {
        self.login_attempts.has_failures()
    }

    /// Whether `session`, started at `started_at`, was ended by a user-wide "end every session"
    /// (a reset, a change, a suspension, logging out everywhere), reached or not.
    pub fn ended_session(&self, session: SessionId, started_at: DateTime<Utc>) -> bool {
        self.sessions_valid_from.is_some_and(|from| started_at < from) && self.session_kept != Some(session)
    }

    /// The user-wide fence: sessions started before it are over, except the one kept.
    pub fn session_fence(&self) -> Option<(DateTime<Utc>, Option<SessionId>)> {
        self.sessions_valid_from.map(|from| (from, self.session_kept))
    }

    /// The TOTP secret in force, when the second factor is on.
    pub fn totp_secret(&self) -> Option<&SealedSecret> {
        self.totp_enabled.as_ref()
    }

    /// The TOTP secret set up and awaiting its first code.
    pub fn totp_pending(&self) -> Option<&SealedSecret> {
        self.totp_pending.as_ref()
    }

    /// The stored third-party API keys.
    pub fn api_keys(&self) -> &BTreeMap<ApiKeyProvider, StoredApiKey> {
        &self.api_keys
    }

    /// The roles the user holds: `user`, and whatever was granted.
    pub fn roles(&self) -> BTreeSet<Role> {
        let mut roles = self.extra_roles.clone();
        roles.insert(Role::User);
        roles
    }

    /// The role names, for the API.
    pub fn role_names(&self) -> Vec<String> {
        self.roles().into_iter().map(|role| role.as_str().to_owned()).collect()
    }

    /// Whether the user is an administrator.
    pub fn is_admin(&self) -> bool {
        self.extra_roles.contains(&Role::Admin)
    }

    /// Why the account is suspended, if it is.
    pub fn suspension(&self) -> Option<&str> {
        self.suspended.as_deref()
    }
}

#[cfg(test)]
mod tests;
