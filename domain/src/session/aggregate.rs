//! How the `Session` aggregate decides (commands into events) and evolves (events into state).

use super::{EndRequester, Session, SessionCommand, SessionEndReason, SessionError, SessionEvent};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

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
