//! The `Session` aggregate: one login, from start to end, across refresh-token rotations. A
//! session is a refresh-token family (RFC 9700 section 4.14): each refresh replaces the token,
//! and presenting one that was already replaced means it leaked, so the whole family ends.
//!
//! The refresh token is opaque to the client and only its hash is kept here; each refresh
//! replaces the hash, so a token works once.

mod aggregate;
mod command;
mod error;
mod event;

pub use command::SessionCommand;
pub use error::SessionError;
pub use event::SessionEvent;

use crate::ids::{SessionId, UserId};
use crate::values::TokenHash;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A login session.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Session {
    id: Option<SessionId>,
    user_id: Option<UserId>,
    refresh_token_hash: TokenHash,
    /// Hashes of the tokens this family already traded in: one of them coming back is reuse.
    replaced_token_hashes: Vec<TokenHash>,
    refresh_expires_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
}

impl Session {
    /// The user the session belongs to, once started.
    pub fn user_id(&self) -> Option<UserId> {
        self.user_id
    }

    /// When the session started.
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started_at
    }

    /// Whether the session has been ended.
    pub fn is_ended(&self) -> bool {
        self.ended_at.is_some()
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// The user logged out of this session.
    Logout,
    /// The user logged out everywhere.
    LogoutAll,
    /// The user revoked this session from another one.
    Revoked,
    /// A refresh token of the family was presented after it had been replaced.
    RefreshTokenReused,
    /// The user changed the password (the session that changed it stays).
    PasswordChanged,
    /// The password was reset through the e-mailed link.
    PasswordReset,
    /// An administrator suspended the user.
    UserSuspended,
}

/// Who asks for a session to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndRequester {
    /// The user the session belongs to (logout, revoke one, logout everywhere).
    Owner(UserId),
    /// Keyframe itself, acting on a rule the API already checked (a password reset, a
    /// suspension by an administrator).
    Authority,
}

#[cfg(test)]
mod tests;
