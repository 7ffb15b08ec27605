//! The events of the `Session` aggregate: a published contract (names and payloads never change).

use super::SessionEndReason;
use crate::ids::{SessionId, UserId};
use crate::values::TokenHash;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// Events of [`Session`](super::Session).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SessionEvent {
    /// A user logged in.
    SessionStarted {
        /// The session's id.
        session_id: SessionId,
        /// Who logged in.
        user_id: UserId,
        /// SHA-256 of the refresh token (never the token).
        refresh_token_hash: TokenHash,
        /// When the refresh token expires.
        refresh_expires_at: DateTime<Utc>,
        /// The client's `User-Agent`.
        user_agent: Option<String>,
        /// The client's address.
        ip: Option<String>,
        /// When it happened.
        started_at: DateTime<Utc>,
    },
    /// The refresh token was used and replaced.
    RefreshTokenRotated {
        /// SHA-256 of the new refresh token.
        refresh_token_hash: TokenHash,
        /// When the new token expires.
        refresh_expires_at: DateTime<Utc>,
        /// When it happened.
        rotated_at: DateTime<Utc>,
    },
    /// A refresh token this family had already replaced was presented: it leaked, or a client
    /// is replaying it. The family ends with the next event.
    RefreshTokenReuseDetected {
        /// SHA-256 of the presented (replaced) token.
        presented_hash: TokenHash,
        /// When it was presented.
        detected_at: DateTime<Utc>,
    },
    /// The session ended; its refresh token no longer works.
    SessionEnded {
        /// Why.
        reason: SessionEndReason,
        /// When.
        ended_at: DateTime<Utc>,
    },
}

impl DomainEvent for SessionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::SessionStarted { .. } => "SessionStarted",
            Self::RefreshTokenRotated { .. } => "RefreshTokenRotated",
            Self::RefreshTokenReuseDetected { .. } => "RefreshTokenReuseDetected",
            Self::SessionEnded { .. } => "SessionEnded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
