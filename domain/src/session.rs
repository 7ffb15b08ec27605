//! The `Session` aggregate: one login, from start to end, across refresh-token rotations. A
//! session is a refresh-token family (RFC 9700 section 4.14): each refresh replaces the token,
//! and presenting one that was already replaced means it leaked, so the whole family ends.
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
    /// The presented refresh token is not the session's current one, nor one it replaced.
    #[error("the refresh token is not valid")]
    RefreshTokenInvalid,
    /// The presented refresh token was already traded in: the family must end
    /// ([`SessionCommand::RevokeForReuse`]).
    #[error("the refresh token was already used")]
    RefreshTokenReused,
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
                    return Err(if self.replaced_token_hashes.contains(&presented_hash) {
                        SessionError::RefreshTokenReused
                    } else {
                        SessionError::RefreshTokenInvalid
                    });
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
            SessionCommand::RevokeForReuse { presented_hash, at } => {
                self.ensure_active()?;
                if !self.replaced_token_hashes.contains(&presented_hash) {
                    return Err(SessionError::RefreshTokenInvalid);
                }
                sink.write(
                    SessionEvent::RefreshTokenReuseDetected {
                        presented_hash,
                        detected_at: at,
                    },
                    self,
                )
                .await;
                let ended = SessionEvent::SessionEnded {
                    reason: SessionEndReason::RefreshTokenReused,
                    ended_at: at,
                };
                sink.write(ended, self).await;
            }
            SessionCommand::EndSession {
                requested_by,
                reason,
                at,
            } => {
                if let EndRequester::Owner(owner) = requested_by
                    && self.user_id != Some(owner)
                {
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
                started_at,
                ..
            } => {
                self.id = Some(session_id);
                self.user_id = Some(user_id);
                self.refresh_token_hash = refresh_token_hash;
                self.refresh_expires_at = Some(refresh_expires_at);
                self.started_at = Some(started_at);
            }
            SessionEvent::RefreshTokenRotated {
                refresh_token_hash,
                refresh_expires_at,
                ..
            } => {
                let replaced = std::mem::replace(&mut self.refresh_token_hash, refresh_token_hash);
                self.replaced_token_hashes.push(replaced);
                self.refresh_expires_at = Some(refresh_expires_at);
            }
            SessionEvent::RefreshTokenReuseDetected { .. } => {}
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

    fn rotated(at: DateTime<Utc>) -> SessionEvent {
        SessionEvent::RefreshTokenRotated {
            refresh_token_hash: hash("second"),
            refresh_expires_at: at + Duration::days(30),
            rotated_at: at,
        }
    }

    #[test]
    fn refreshing_with_a_replaced_token_is_refused_as_reuse() {
        let g = Given::new();
        let at = g.at + Duration::minutes(5);
        TestFramework::<Session>::with(())
            .given(vec![g.started(), rotated(at)])
            .when(g.rotate("first", at))
            .then_expect_error(SessionError::RefreshTokenReused);
    }

    #[test]
    fn refreshing_with_a_token_the_family_never_had_is_refused_as_invalid() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given(vec![g.started()])
            .when(g.rotate("forged", g.at))
            .then_expect_error(SessionError::RefreshTokenInvalid);
    }

    #[test]
    fn a_replaced_token_coming_back_ends_the_family_and_says_why() {
        let g = Given::new();
        let at = g.at + Duration::minutes(5);
        let later = at + Duration::minutes(1);
        TestFramework::<Session>::with(())
            .given(vec![g.started(), rotated(at)])
            .when(SessionCommand::RevokeForReuse {
                presented_hash: hash("first"),
                at: later,
            })
            .then_expect_events(vec![
                SessionEvent::RefreshTokenReuseDetected {
                    presented_hash: hash("first"),
                    detected_at: later,
                },
                SessionEvent::SessionEnded {
                    reason: SessionEndReason::RefreshTokenReused,
                    ended_at: later,
                },
            ]);
    }

    #[test]
    fn revoking_for_reuse_needs_a_token_the_family_replaced() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given(vec![g.started()])
            .when(SessionCommand::RevokeForReuse {
                presented_hash: hash("first"),
                at: g.at,
            })
            .then_expect_error(SessionError::RefreshTokenInvalid);
    }

    #[test]
    fn keyframe_may_end_any_session_for_a_rule_the_api_checked() {
        let g = Given::new();
        TestFramework::<Session>::with(())
            .given(vec![g.started()])
            .when(SessionCommand::EndSession {
                requested_by: EndRequester::Authority,
                reason: SessionEndReason::UserSuspended,
                at: g.at,
            })
            .then_expect_events(vec![SessionEvent::SessionEnded {
                reason: SessionEndReason::UserSuspended,
                ended_at: g.at,
            }]);
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
                requested_by: EndRequester::Owner(g.user_id),
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
                requested_by: EndRequester::Owner(g.user_id),
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
                requested_by: EndRequester::Owner(UserId::new()),
                reason: SessionEndReason::Logout,
                at: g.at,
            })
            .then_expect_error(SessionError::NotFound);
    }
}
