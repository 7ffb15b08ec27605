//! The commands of the `Session` aggregate.

use super::{EndRequester, SessionEndReason};
use crate::ids::{SessionId, UserId};
use crate::values::TokenHash;
use chrono::{DateTime, Utc};

/// Commands for [`Session`](super::Session).
#[derive(Debug)]
pub enum SessionCommand {
    /// A successful login starts the session with its first refresh token.
    StartSession {
        /// The new session's id (also the aggregate id).
        session_id: SessionId,
        /// Who logged in.
        user_id: UserId,
        /// Hash of the first refresh token.
        refresh_token_hash: TokenHash,
        /// When that token stops working.
        refresh_expires_at: DateTime<Utc>,
        /// The client's `User-Agent`, as a device description.
        user_agent: Option<String>,
        /// The client's address.
        ip: Option<String>,
        /// When the login happened.
        at: DateTime<Utc>,
    },
    /// Trade the current refresh token for a new one.
    RotateRefreshToken {
        /// Hash of the token the client presented.
        presented_hash: TokenHash,
        /// Hash of the token that replaces it.
        new_hash: TokenHash,
        /// When the new token stops working.
        refresh_expires_at: DateTime<Utc>,
        /// When the refresh happened.
        at: DateTime<Utc>,
    },
    /// Record that a replaced refresh token came back, and end the family.
    RevokeForReuse {
        /// Hash of the token the client presented.
        presented_hash: TokenHash,
        /// When it was presented.
        at: DateTime<Utc>,
    },
    /// End the session: its owner, or Keyframe for a rule the API checked.
    EndSession {
        /// Who asks.
        requested_by: EndRequester,
        /// Why.
        reason: SessionEndReason,
        /// When.
        at: DateTime<Utc>,
    },
}
