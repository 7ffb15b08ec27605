//! The `Session` aggregate: one login, from start to end, across refresh-token rotations.
//!
//! The refresh token is opaque to the client and only its hash is kept here; each refresh
//! replaces the hash, so a token works once.

use crate::ids::{SessionId, UserId};
use crate::values::TokenHash;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// A login session.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Session {
    id: Option<SessionId>,
    user_id: Option<UserId>,
    refresh_token_hash: TokenHash,
    refresh_expires_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
}

impl Session {
    /// The user the session belongs to, once started.
    pub fn user_id(&self) -> Option<UserId> {
        self.user_id
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
    /// The user logged out.
    Logout,
}

/// Commands for [`Session`].
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
    /// End the session; only its owner may.
    EndSession {
        /// Who asks.
        actor: UserId,
        /// Why.
        reason: SessionEndReason,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Events of [`Session`].
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
            Self::SessionEnded { .. } => "SessionEnded",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Rules a [`SessionCommand`] can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// `StartSession` on a session that exists.
    #[error("this session has already started")]
    AlreadyStarted,
    /// The session does not exist, or belongs to someone else.
    #[error("no such session")]
    NotFound,
    /// The session was ended (logout).
    #[error("this session has ended")]
    Ended,
    /// The presented refresh token is not the session's current one.
    #[error("the refresh token is not valid")]
    RefreshTokenInvalid,
    /// The refresh token's lifetime is over.
    #[error("the refresh token has expired")]
    RefreshTokenExpired,
}

impl Aggregate for Session {
    const TYPE: &'static str = "Session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = ();

    async fn handle(&mut self, command: SessionCommand, _: &(), sink: &EventSink<Self>) -> Result<(), SessionError> {
        match command {
            SessionCommand::StartSession {
                session_id,
                user_id,
                refresh_token_hash,
                refresh_expires_at,
                user_agent,
                ip,
                at,
            } => {
                if self.id.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                let event = SessionEvent::SessionStarted {
                    session_id,
                    user_id,
                    refresh_token_hash,
                    refresh_expires_at,
                    user_agent,
                    ip,
                    started_at: at,
                };
                sink.write(event, self).await;
            }
            SessionCommand::RotateRefreshToken {
                presented_hash,
                new_hash,
                refresh_expires_at,
                at,
            } => {
                self.ensure_active()?;
                if presented_hash != self.refresh_token_hash {
                    return Err(SessionError::RefreshTokenInvalid);
                }
                if self.refresh_expires_at.is_some_and(|expires| expires <= at) {
                    return Err(SessionError::RefreshTokenExpired);
                }
                let event = SessionEvent::RefreshTokenRotated {
                    refresh_token_hash: new_hash,
                    refresh_expires_at,
                    rotated_at: at,
                };
                sink.write(event, self).await;
            }
            SessionCommand::EndSession { actor, reason, at } => {
                if self.user_id != Some(actor) {
                    return Err(SessionError::NotFound);
                }
                self.ensure_active()?;
                sink.write(SessionEvent::SessionEnded { reason, ended_at: at }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::SessionStarted {
                session_id,
                user_id,
                refresh_token_hash,
                refresh_expires_at,
                ..
            } => {
                self.id = Some(session_id);
                self.user_id = Some(user_id);
                self.refresh_token_hash = refresh_token_hash;
                self.refresh_expires_at = Some(refresh_expires_at);
            }
            SessionEvent::RefreshTokenRotated {
                refresh_token_hash,
                refresh_expires_at,
                ..
            } => {
                self.refresh_token_hash = refresh_token_hash;
                self.refresh_expires_at = Some(refresh_expires_at);
            }
            SessionEvent::SessionEnded { ended_at, .. } => self.ended_at = Some(ended_at),
        }
    }
}

impl Session {
    fn ensure_active(&self) -> Result<(), SessionError> {
        if self.id.is_none() {
            return Err(SessionError::NotFound);
        }
        if self.is_ended() {
            return Err(SessionError::Ended);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use cqrs_es::test::TestFramework;

    struct Given {
        session_id: SessionId,
        user_id: UserId,
        at: DateTime<Utc>,
    }

    impl Given {
        fn new() -> Self {
            Self {
                session_id: SessionId::new(),
                user_id: UserId::new(),
                at: Utc::now(),
            }
        }

        fn started(&self) -> SessionEvent {
            SessionEvent::SessionStarted {
                session_id: self.session_id,
                user_id: self.user_id,
                refresh_token_hash: hash("first"),
                refresh_expires_at: self.at + Duration::days(30),
                user_agent: Some("curl/8".to_owned()),
                ip: Some("127.0.0.1".to_owned()),
                started_at: self.at,
            }
        }

        fn start(&self) -> SessionCommand {
            SessionCommand::StartSession {
                session_id: self.session_id,
                user_id: self.user_id,
                refresh_token_hash: hash("first"),
                refresh_expires_at: self.at + Duration::days(30),
                user_agent: Some("curl/8".to_owned()),
                ip: Some("127.0.0.1".to_owned()),
                at: self.at,
            }
        }

        fn rotate(&self, presented: &str, at: DateTime<Utc>) -> SessionCommand {
            SessionCommand::RotateRefreshToken {
                presented_hash: hash(presented),
                new_hash: hash("second"),
                refresh_expires_at: at + Duration::days(30),
                at,
            }
        }

        fn ended(&self) -> SessionEvent {
            SessionEvent::SessionEnded {
                reason: SessionEndReason::Logout,
                ended_at: self.at,
            }
        }
    }

    fn hash(token: &str) -> TokenHash {
        TokenHash(format!("hash-of-{token}"))
    }

    #[test]
    fn logging_in_starts_a_session() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given_no_previous_events()
            .when(g.start())
            .then_expect_events(vec![g.started()]);
    }

    #[test]
    fn starting_a_started_session_is_refused() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given(vec![g.started()])
            .when(g.start())
            .then_expect_error(SessionError::AlreadyStarted);
    }

    #[test]
    fn refreshing_with_the_current_token_rotates_it() {
        let g = Given::new();
        let at = g.at + Duration::minutes(5);
        TestFramework::<Session>::with(())
            .given(vec![g.started()])
            .when(g.rotate("first", at))
            .then_expect_events(vec![SessionEvent::RefreshTokenRotated {
                refresh_token_hash: hash("second"),
                refresh_expires_at: at + Duration::days(30),
                rotated_at: at,
            }]);
    }

    #[test]
    fn refreshing_with_a_replaced_token_is_refused() {
        let g = Given::new();
        let at = g.at + Duration::minutes(5);
        let rotated = SessionEvent::RefreshTokenRotated {
            refresh_token_hash: hash("second"),
            refresh_expires_at: at + Duration::days(30),
            rotated_at: at,
        };
        TestFramework::<Session>::with(())
            .given(vec![g.started(), rotated])
            .when(g.rotate("first", at))
            .then_expect_error(SessionError::RefreshTokenInvalid);
    }

    #[test]
    fn refreshing_after_the_token_expired_is_refused() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given(vec![g.started()])
            .when(g.rotate("first", g.at + Duration::days(31)))
            .then_expect_error(SessionError::RefreshTokenExpired);
    }

    #[test]
    fn refreshing_an_unknown_session_is_refused() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given_no_previous_events()
            .when(g.rotate("first", g.at))
            .then_expect_error(SessionError::NotFound);
    }

    #[test]
    fn refreshing_an_ended_session_is_refused() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given(vec![g.started(), g.ended()])
            .when(g.rotate("first", g.at))
            .then_expect_error(SessionError::Ended);
    }

    #[test]
    fn logging_out_ends_the_session() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given(vec![g.started()])
            .when(SessionCommand::EndSession {
                actor: g.user_id,
                reason: SessionEndReason::Logout,
                at: g.at,
            })
            .then_expect_events(vec![g.ended()]);
    }

    #[test]
    fn logging_out_twice_is_refused() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given(vec![g.started(), g.ended()])
            .when(SessionCommand::EndSession {
                actor: g.user_id,
                reason: SessionEndReason::Logout,
                at: g.at,
            })
            .then_expect_error(SessionError::Ended);
    }

    #[test]
    fn someone_else_cannot_end_a_session() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given(vec![g.started()])
            .when(SessionCommand::EndSession {
                actor: UserId::new(),
                reason: SessionEndReason::Logout,
                at: g.at,
            })
            .then_expect_error(SessionError::NotFound);
    }
}
