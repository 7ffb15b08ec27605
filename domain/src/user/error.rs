//! The rules a `User` command can break.

use chrono::{DateTime, Utc};

/// Rules a [`UserCommand`](super::UserCommand) can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The aggregate already holds a registered account.
    #[error("this account is already registered")]
    AlreadyRegistered,
    /// No account under this id.
    #[error("no such account")]
    NotFound,
    /// The address is verified already.
    #[error("the e-mail address is already verified")]
    AlreadyVerified,
    /// The token is not the newest one sent, or it was used.
    #[error("the token is not valid or was already used")]
    TokenInvalid,
    /// The token's time is over.
    #[error("the token has expired")]
    TokenExpired,
    /// The second factor is already on.
    #[error("two-factor authentication is already enabled")]
    TotpAlreadyEnabled,
    /// No TOTP secret was set up to enable.
    #[error("set up two-factor authentication first")]
    TotpNotSetUp,
    /// The second factor is off.
    #[error("two-factor authentication is not enabled")]
    TotpNotEnabled,
    /// A code of this time step (or an earlier one) was already used.
    #[error("this code was already used; wait for the next one")]
    TotpCodeReused,
    /// No key stored for this provider.
    #[error("no API key is stored for this provider")]
    ApiKeyNotFound,
    /// An administrator may not take their own admin role or suspend themselves (Keyframe
    /// would risk having no administrator left).
    #[error("administrators cannot demote or suspend themselves")]
    CannotActOnSelf,
    /// The account is suspended already.
    #[error("the account is already suspended")]
    AlreadySuspended,
    /// The account is not suspended.
    #[error("the account is not suspended")]
    NotSuspended,
    /// Failed logins locked the account; no guess is judged until the lock ends or a reset.
    #[error("the account is locked after repeated failed attempts")]
    AccountLocked {
        /// When the lock ends.
        until: DateTime<Utc>,
    },
    /// The window's failures and the guesses being judged reach the threshold: no more guesses
    /// are judged until one of them is known right, or the window moves on.
    #[error("too many attempts are being judged for this account; try again shortly")]
    LoginAttemptsExhausted,
}
