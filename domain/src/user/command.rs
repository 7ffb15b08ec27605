//! The commands of the `User` aggregate.

use super::{ExpiringToken, LockoutPolicy, Role};
use crate::ids::{LoginAttemptId, SessionId, UserId};
use crate::values::{ApiKeyProvider, EmailAddress, FullName, PasswordHash, SealedSecret, TokenHash};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// Commands for [`User`](super::User).
#[derive(Debug)]
pub enum UserCommand {
    /// Create the account. The e-mail must already be reserved and the password hashed.
    RegisterUser {
        /// The new user's id (also the aggregate id).
        user_id: UserId,
        /// The reserved, normalised address.
        email: EmailAddress,
        /// argon2id hash of the chosen password.
        password_hash: PasswordHash,
        /// Optional display name.
        full_name: Option<FullName>,
        /// The verification token to mail, if the address is to be verified.
        verification: Option<ExpiringToken>,
        /// When the request arrived.
        at: DateTime<Utc>,
    },
    /// Send a new verification token (the previous one stops working).
    RequestEmailVerification {
        /// The new token.
        token: ExpiringToken,
        /// When.
        at: DateTime<Utc>,
    },
    /// Prove the address with the mailed token.
    VerifyEmail {
        /// Hash of the presented token.
        token_hash: TokenHash,
        /// When.
        at: DateTime<Utc>,
    },
    /// Send a password-reset token (the previous one stops working).
    RequestPasswordReset {
        /// The new token.
        token: ExpiringToken,
        /// When.
        at: DateTime<Utc>,
    },
    /// Set a new password with the mailed token; ends every session and lifts a lockout.
    ResetPassword {
        /// Hash of the presented token.
        token_hash: TokenHash,
        /// argon2id hash of the new password.
        password_hash: PasswordHash,
        /// When.
        at: DateTime<Utc>,
    },
    /// Set a new password; the API has checked the current one. Every other session ends.
    ChangePassword {
        /// argon2id hash of the new password.
        password_hash: PasswordHash,
        /// The session that asked, which stays.
        kept_session: Option<SessionId>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Change the display name.
    UpdateProfile {
        /// The new name; `None` removes it.
        full_name: Option<FullName>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Let one guess at the credentials (a password or a second-factor code) be judged: refused
    /// while the account is locked or while the window's failures and the guesses still being
    /// judged reach the policy's threshold. Every guess is admitted before it is judged, so no
    /// concurrency, in one process or many, judges more than the threshold.
    AdmitLoginAttempt {
        /// The guess.
        attempt: LoginAttemptId,
        /// The lockout rule in force.
        policy: LockoutPolicy,
        /// When.
        at: DateTime<Utc>,
    },
    /// An admitted guess was wrong. Always recorded (the guess was judged), and locks the
    /// account when it brings the window's failures to the threshold.
    RecordFailedLogin {
        /// The guess.
        attempt: LoginAttemptId,
        /// The lockout rule in force.
        policy: LockoutPolicy,
        /// When.
        at: DateTime<Utc>,
    },
    /// An admitted guess was right: it no longer counts against the window.
    RecordPassedLoginAttempt {
        /// The guess.
        attempt: LoginAttemptId,
        /// When.
        at: DateTime<Utc>,
    },
    /// End every session of the user (logging out everywhere).
    EndAllSessions {
        /// When.
        at: DateTime<Utc>,
    },
    /// A login succeeded: earlier failures stop counting.
    ClearFailedLogins {
        /// When.
        at: DateTime<Utc>,
    },
    /// Set up a TOTP secret (it works only once confirmed by [`UserCommand::EnableTotp`]).
    StartTotpEnrolment {
        /// The secret, sealed.
        secret: SealedSecret,
        /// When.
        at: DateTime<Utc>,
    },
    /// Turn the second factor on; the API checked a code of the pending secret.
    EnableTotp {
        /// The pending secret the code was checked against (a setup made meanwhile is not it).
        secret: SealedSecret,
        /// The time step of that code.
        step: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// Turn the second factor off; the API checked a code of the secret in force.
    DisableTotp {
        /// The time step of that code.
        step: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// A login's second step: the API checked a code of the secret in force.
    AcceptTotpCode {
        /// The time step of that code.
        step: u64,
        /// When.
        at: DateTime<Utc>,
    },
    /// Keep a third-party API key (replacing one of the same provider).
    StoreApiKey {
        /// Whose key it is.
        provider: ApiKeyProvider,
        /// The key, sealed.
        key: SealedSecret,
        /// Its last four characters.
        last4: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// Forget a third-party API key.
    RemoveApiKey {
        /// Whose key it is.
        provider: ApiKeyProvider,
        /// When.
        at: DateTime<Utc>,
    },
    /// Mark the address verified without a mailed token: for the first administrator, whose
    /// address comes from configuration.
    MarkEmailVerified {
        /// When.
        at: DateTime<Utc>,
    },
    /// Set the user's roles (`user` is always kept); the API checked the actor is an admin.
    SetRoles {
        /// The roles wanted.
        roles: BTreeSet<Role>,
        /// The administrator, or `None` for Keyframe itself (the first admin from configuration).
        by: Option<UserId>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Suspend the account; the API checked the actor is an admin.
    Suspend {
        /// Why, for the record and the user.
        reason: String,
        /// The administrator.
        by: UserId,
        /// When.
        at: DateTime<Utc>,
    },
    /// Lift a suspension; the API checked the actor is an admin.
    Reactivate {
        /// The administrator.
        by: UserId,
        /// When.
        at: DateTime<Utc>,
    },
}
