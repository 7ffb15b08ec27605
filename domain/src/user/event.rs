//! The events of the `User` aggregate: a published contract (names and payloads never change).

use super::Role;
use crate::ids::{LoginAttemptId, SessionId, UserId};
use crate::values::{ApiKeyProvider, EmailAddress, FullName, PasswordHash, SealedSecret, TokenHash};
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Events of [`User`](super::User).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    /// An account was created.
    UserRegistered {
        /// The user's id.
        user_id: UserId,
        /// Normalised e-mail address.
        email: EmailAddress,
        /// argon2id PHC string; never the password.
        password_hash: PasswordHash,
        /// Optional display name.
        full_name: Option<FullName>,
        /// When it happened.
        registered_at: DateTime<Utc>,
    },
    /// A verification token was mailed.
    EmailVerificationRequested {
        /// SHA-256 of the token (never the token).
        token_hash: TokenHash,
        /// When it stops working.
        expires_at: DateTime<Utc>,
        /// When it was sent.
        requested_at: DateTime<Utc>,
    },
    /// The address was proven.
    EmailVerified {
        /// When.
        verified_at: DateTime<Utc>,
    },
    /// A password-reset token was mailed.
    PasswordResetRequested {
        /// SHA-256 of the token (never the token).
        token_hash: TokenHash,
        /// When it stops working.
        expires_at: DateTime<Utc>,
        /// When it was sent.
        requested_at: DateTime<Utc>,
    },
    /// The password was reset with a mailed token: every session before it is over and any
    /// lockout is lifted.
    PasswordReset {
        /// argon2id PHC string of the new password.
        password_hash: PasswordHash,
        /// When.
        reset_at: DateTime<Utc>,
    },
    /// The user changed the password: every session before it is over but `kept_session`.
    PasswordChanged {
        /// argon2id PHC string of the new password.
        password_hash: PasswordHash,
        /// The session that made the change, which stays.
        #[serde(default)]
        kept_session: Option<SessionId>,
        /// When.
        changed_at: DateTime<Utc>,
    },
    /// The user logged out everywhere: every session before it is over.
    AllSessionsEnded {
        /// When.
        ended_at: DateTime<Utc>,
    },
    /// The user changed the display name.
    ProfileUpdated {
        /// The new name (`null`: removed).
        full_name: Option<FullName>,
        /// When.
        updated_at: DateTime<Utc>,
    },
    /// A guess at the credentials may be judged: until its verdict it counts against the
    /// lockout window like a failure (a verdict lost to a crash leaves it counted).
    LoginAttemptAdmitted {
        /// The guess.
        attempt: LoginAttemptId,
        /// When.
        admitted_at: DateTime<Utc>,
    },
    /// A login gave a wrong password (or a wrong second-factor code).
    LoginFailed {
        /// The admitted guess it judged (absent on events recorded before guesses were admitted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<LoginAttemptId>,
        /// When.
        failed_at: DateTime<Utc>,
    },
    /// An admitted guess was right; it stops counting against the window. (Earlier failures
    /// still count until a whole login clears them.)
    LoginAttemptPassed {
        /// The guess.
        attempt: LoginAttemptId,
        /// When.
        passed_at: DateTime<Utc>,
    },
    /// Too many failed logins: no login until `locked_until`.
    AccountLocked {
        /// Failed logins within the window that caused it.
        failures: u32,
        /// When the lock ends.
        locked_until: DateTime<Utc>,
        /// When it began.
        locked_at: DateTime<Utc>,
    },
    /// A login succeeded after failures; they no longer count.
    FailedLoginsCleared {
        /// When.
        cleared_at: DateTime<Utc>,
    },
    /// A TOTP secret was set up, awaiting a first code.
    TotpEnrolmentStarted {
        /// The secret, sealed under the master key (never in clear).
        secret: SealedSecret,
        /// When.
        started_at: DateTime<Utc>,
    },
    /// The second factor is on.
    TotpEnabled {
        /// The time step of the code that confirmed it.
        step: u64,
        /// When.
        enabled_at: DateTime<Utc>,
    },
    /// The second factor is off.
    TotpDisabled {
        /// The time step of the code that allowed it.
        step: u64,
        /// When.
        disabled_at: DateTime<Utc>,
    },
    /// A login's TOTP code was accepted; no code of this step or earlier works again.
    TotpCodeAccepted {
        /// Its time step.
        step: u64,
        /// When.
        accepted_at: DateTime<Utc>,
    },
    /// A third-party API key was stored.
    ApiKeyStored {
        /// Whose key it is.
        provider: ApiKeyProvider,
        /// The key, sealed under the master key (never in clear).
        key: SealedSecret,
        /// Its last four characters.
        last4: String,
        /// When.
        stored_at: DateTime<Utc>,
    },
    /// A third-party API key was removed.
    ApiKeyRemoved {
        /// Whose key it was.
        provider: ApiKeyProvider,
        /// When.
        removed_at: DateTime<Utc>,
    },
    /// The user's roles changed.
    RolesChanged {
        /// All roles held now (always with `user`).
        roles: BTreeSet<Role>,
        /// The administrator (`null`: Keyframe itself, from configuration).
        changed_by: Option<UserId>,
        /// When.
        changed_at: DateTime<Utc>,
    },
    /// An administrator suspended the account: no login, every session ended.
    UserSuspended {
        /// Why.
        reason: String,
        /// The administrator.
        suspended_by: UserId,
        /// When.
        suspended_at: DateTime<Utc>,
    },
    /// An administrator lifted the suspension.
    UserReactivated {
        /// The administrator.
        reactivated_by: UserId,
        /// When.
        reactivated_at: DateTime<Utc>,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserRegistered { .. } => "UserRegistered",
            Self::EmailVerificationRequested { .. } => "EmailVerificationRequested",
            Self::EmailVerified { .. } => "EmailVerified",
            Self::PasswordResetRequested { .. } => "PasswordResetRequested",
            Self::PasswordReset { .. } => "PasswordReset",
            Self::PasswordChanged { .. } => "PasswordChanged",
            Self::AllSessionsEnded { .. } => "AllSessionsEnded",
            Self::ProfileUpdated { .. } => "ProfileUpdated",
            Self::LoginAttemptAdmitted { .. } => "LoginAttemptAdmitted",
            Self::LoginFailed { .. } => "LoginFailed",
            Self::LoginAttemptPassed { .. } => "LoginAttemptPassed",
            Self::AccountLocked { .. } => "AccountLocked",
            Self::FailedLoginsCleared { .. } => "FailedLoginsCleared",
            Self::TotpEnrolmentStarted { .. } => "TotpEnrolmentStarted",
            Self::TotpEnabled { .. } => "TotpEnabled",
            Self::TotpDisabled { .. } => "TotpDisabled",
            Self::TotpCodeAccepted { .. } => "TotpCodeAccepted",
            Self::ApiKeyStored { .. } => "ApiKeyStored",
            Self::ApiKeyRemoved { .. } => "ApiKeyRemoved",
            Self::RolesChanged { .. } => "RolesChanged",
            Self::UserSuspended { .. } => "UserSuspended",
            Self::UserReactivated { .. } => "UserReactivated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
