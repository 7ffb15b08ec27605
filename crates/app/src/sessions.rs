//! Sessions: logging in with a password, starting a session once credentials are checked,
//! rotating its refresh token, and ending one session or every session of a user.
//!
//! The access token that rides on a session is the transport's business (the API issues JWTs);
//! what a session hands out here is its opaque refresh token.

use crate::App;
use crate::acting;
use crate::error::{AppError, Refusal};
use crate::lockout::Judgment;
use crate::opaque_tokens::{hash_opaque_token, new_opaque_token, opaque_token_owner};
use chrono::{DateTime, Utc};
use keyframe_domain::ids::{SessionId, UserId};
use keyframe_domain::session::{EndRequester, SessionCommand, SessionEndReason, SessionError};
use keyframe_domain::user::{User, UserCommand};
use keyframe_domain::values::TokenHash;
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use keyframe_projections::session_list;
use std::time::Instant;

/// A session just started or renewed.
#[derive(Debug)]
pub struct SessionStarted {
    /// The session.
    pub session_id: SessionId,
    /// Its user.
    pub user_id: UserId,
    /// The account as it stood.
    pub user: User,
    /// The opaque refresh token (works once).
    pub refresh_token: String,
    /// When it started or was renewed.
    pub at: DateTime<Utc>,
    /// The position of the session's event.
    pub position: i64,
}

/// What a correct password leads to.
#[derive(Debug)]
pub enum LoginOutcome {
    /// A session.
    Started(Box<SessionStarted>),
    /// The account has a second factor: the login goes on with a code.
    SecondFactorRequired(UserId),
}

/// Which sessions [`App::end_all_sessions`] ends, and why.
pub struct EveryLiveSession {
    /// Whose.
    pub user: UserId,
    /// Who asks.
    pub requested_by: EndRequester,
    /// Why.
    pub reason: SessionEndReason,
    /// One more, which may be too new to be in the read model yet (the caller's).
    pub also: Option<SessionId>,
    /// One to leave alone (the caller's, when changing the password).
    pub keep: Option<SessionId>,
    /// Wait (bounded) until the read model has applied this position first: the command that
    /// ends every older session, so that none started before it is missed.
    pub listed_after: Option<i64>,
}

impl App {
    /// Logs in with an e-mail address and a password. No such account, a wrong password and a
    /// locked account all answer `InvalidCredentials`, after the same work and about the same
    /// time, or the answer would tell that the address has an account.
    pub async fn login(
        &self,
        raw_email: &str,
        password: &str,
        origin: &CommandMetadata,
    ) -> Result<LoginOutcome, AppError> {
        let started = Instant::now();
        let user_id = self.find_account_id(raw_email).await?;
        let judgment = match user_id {
            Some(user_id) => {
                let metadata = acting(origin, Actor::User(user_id));
                self.judge_password(user_id, password, &metadata).await?
            }
            None => Judgment::NotAdmitted { locked_until: None },
        };
        let (user_id, user) = match (user_id, judgment) {
            (Some(user_id), Judgment::Right(user, ())) => (user_id, *user),
            (_, Judgment::Wrong { queued }) => {
                self.logins.judged_wrong(started, queued);
                return Err(Refusal::InvalidCredentials.into());
            }
            // No such account, or a locked one: the owner of a locked one gets out by a reset.
            _ => {
                self.passwords.verify(password.to_owned(), None).await?;
                self.logins.pad_refusal(started).await;
                return Err(Refusal::InvalidCredentials.into());
            }
        };
        if user.suspension().is_some() {
            return Err(Refusal::AccountSuspended.into());
        }
        if self.settings.identity.require_email_verification && !user.email_verified() {
            return Err(Refusal::EmailNotVerified.into());
        }
        if user.totp_secret().is_some() {
            return Ok(LoginOutcome::SecondFactorRequired(user_id));
        }
        let session = self.start_session(user_id, user, origin).await?;
        Ok(LoginOutcome::Started(Box::new(session)))
    }

    /// Starts a session for a user whose credentials were checked.
    pub(crate) async fn start_session(
        &self,
        user_id: UserId,
        user: User,
        origin: &CommandMetadata,
    ) -> Result<SessionStarted, AppError> {
        let now = keyframe_domain::clock::now();
        let metadata = acting(origin, Actor::User(user_id));
        // Only a whole login (password, and code when 2FA is on) clears the failures: clearing
        // after the password alone would let a guesser of TOTP codes reset the count at will.
        if user.has_failed_logins() {
            let clear = || UserCommand::ClearFailedLogins { at: now };
            self.execute_on_account(user_id, clear, &metadata).await?;
        }
        let session_id = SessionId::new();
        let (refresh_token, refresh_hash) = new_opaque_token(session_id.0);
        let refresh_expires_at = now + self.settings.identity.refresh_token_ttl;
        let command = || SessionCommand::StartSession {
            session_id,
            user_id,
            refresh_token_hash: refresh_hash.clone(),
            refresh_expires_at,
            user_agent: origin.user_agent.clone(),
            ip: origin.client_ip.clone(),
            at: now,
        };
        let position = self
            .buses
            .sessions
            .execute_new(&session_id.to_string(), command, &metadata)
            .await?;
        Ok(SessionStarted {
            session_id,
            user_id,
            user,
            refresh_token,
            at: now,
            position,
        })
    }

    /// Trades a refresh token for a new one; the presented one stops working. A replaced token
    /// that comes back revokes its session (`RefreshTokenReused`).
    pub async fn refresh_session(&self, presented: &str, origin: &CommandMetadata) -> Result<SessionStarted, AppError> {
        let session_id = opaque_token_owner(presented)
            .map(SessionId)
            .ok_or(AppError::Session(SessionError::RefreshTokenInvalid))?;
        let session = self.buses.sessions.load(&session_id.to_string()).await?;
        let (user_id, started_at) = session
            .and_then(|session| Some((session.user_id()?, session.started_at()?)))
            .ok_or(AppError::Session(SessionError::NotFound))?;
        let user = self.buses.users.load_current(&user_id.to_string()).await?;
        let user = user.ok_or(AppError::Session(SessionError::NotFound))?;
        // A user-wide "end every session" (reset, change, suspension, logout-all) ended this one,
        // whether or not it was reached one by one.
        if user.suspension().is_some() || user.ended_session(session_id, started_at) {
            return Err(SessionError::Ended.into());
        }
        let now = keyframe_domain::clock::now();
        let presented_hash = hash_opaque_token(presented);
        let (refresh_token, new_hash) = new_opaque_token(session_id.0);
        let refresh_expires_at = now + self.settings.identity.refresh_token_ttl;
        let command = || SessionCommand::RotateRefreshToken {
            presented_hash: presented_hash.clone(),
            new_hash: new_hash.clone(),
            refresh_expires_at,
            at: now,
        };
        let metadata = acting(origin, Actor::User(user_id));
        let position = match self
            .buses
            .sessions
            .execute(&session_id.to_string(), command, &metadata)
            .await
        {
            Ok(position) => position,
            Err(CommandError::Rejected(SessionError::RefreshTokenReused)) => {
                return Err(self.revoke_for_reuse(session_id, presented_hash, &metadata).await);
            }
            Err(error) => return Err(error.into()),
        };
        Ok(SessionStarted {
            session_id,
            user_id,
            user,
            refresh_token,
            at: now,
            position,
        })
    }

    /// A replaced refresh token came back: whoever holds it, the family is no longer safe.
    /// Ends the session (recording why) and answers the refusal.
    async fn revoke_for_reuse(
        &self,
        session_id: SessionId,
        presented_hash: TokenHash,
        metadata: &CommandMetadata,
    ) -> AppError {
        let command = || SessionCommand::RevokeForReuse {
            presented_hash: presented_hash.clone(),
            at: keyframe_domain::clock::now(),
        };
        match self
            .buses
            .sessions
            .execute(&session_id.to_string(), command, metadata)
            .await
        {
            // Revoked now, or already ended by a concurrent request: either way, refused.
            Ok(_) | Err(CommandError::Rejected(SessionError::Ended)) => {
                self.session_guard.ended(session_id);
                tracing::warn!(session = %session_id, "a replaced refresh token was presented; the session is revoked");
                Refusal::RefreshTokenReused.into()
            }
            Err(error) => error.into(),
        }
    }

    /// A user ends their current session. Answers the position, when anything was written.
    pub async fn logout(
        &self,
        user_id: UserId,
        session: SessionId,
        origin: &CommandMetadata,
    ) -> Result<Option<i64>, AppError> {
        let requested_by = EndRequester::Owner(user_id);
        Ok(self
            .end_session(session, requested_by, SessionEndReason::Logout, origin)
            .await?)
    }

    /// A user ends one of their sessions (another device's, or this one); someone else's is
    /// not found.
    pub async fn revoke_session(
        &self,
        user_id: UserId,
        session: SessionId,
        origin: &CommandMetadata,
    ) -> Result<Option<i64>, AppError> {
        let requested_by = EndRequester::Owner(user_id);
        self.end_session(session, requested_by, SessionEndReason::Revoked, origin)
            .await
            .map_err(|error| match error {
                CommandError::Rejected(SessionError::NotFound) => AppError::NotFound("session"),
                CommandError::Rejected(other) => Refusal::SessionConflict(other.to_string()).into(),
                other => other.into(),
            })
    }

    /// A user ends every session of theirs, `current` included. Answers the position of the
    /// last event written.
    pub async fn logout_everywhere(
        &self,
        user_id: UserId,
        current: SessionId,
        origin: &CommandMetadata,
    ) -> Result<Option<i64>, AppError> {
        // The fence first: it ends every session started before it at once, listed or not (the
        // guard and refresh check it); ending each listed one then puts it on the record.
        let fence = || UserCommand::EndAllSessions {
            at: keyframe_domain::clock::now(),
        };
        let fenced = self.execute_on_account(user_id, fence, origin).await?;
        self.session_guard.user_changed(user_id);
        let which = EveryLiveSession {
            user: user_id,
            requested_by: EndRequester::Owner(user_id),
            reason: SessionEndReason::LogoutAll,
            also: Some(current),
            keep: None,
            listed_after: Some(fenced),
        };
        self.end_all_sessions(which, origin).await
    }

    /// Ends one session and tells the guard, so its access tokens stop working at once. A
    /// session that had already ended is no error: `None`, nothing written.
    pub(crate) async fn end_session(
        &self,
        session: SessionId,
        requested_by: EndRequester,
        reason: SessionEndReason,
        metadata: &CommandMetadata,
    ) -> Result<Option<i64>, CommandError<SessionError>> {
        let command = || SessionCommand::EndSession {
            requested_by,
            reason,
            at: keyframe_domain::clock::now(),
        };
        let position = match self
            .buses
            .sessions
            .execute(&session.to_string(), command, metadata)
            .await
        {
            Ok(position) => Some(position),
            Err(CommandError::Rejected(SessionError::Ended)) => None,
            // Not ended, and perhaps not the requester's: the guard must not hear of it.
            Err(error) => return Err(error),
        };
        self.session_guard.ended(session);
        Ok(position)
    }

    /// Ends every live session of a user, as listed by the `session_list` read model. Answers
    /// the position of the last event written.
    pub(crate) async fn end_all_sessions(
        &self,
        which: EveryLiveSession,
        metadata: &CommandMetadata,
    ) -> Result<Option<i64>, AppError> {
        let EveryLiveSession {
            user,
            requested_by,
            reason,
            also,
            keep,
            listed_after,
        } = which;
        if let Some(position) = listed_after {
            let timeout = self.settings.identity.sessions_list_wait;
            let listed =
                keyframe_eventlog::projector::wait_until_applied(&self.database, session_list::NAME, position, timeout)
                    .await?;
            if !listed {
                // The user-wide fence has ended them all already; only the record of each waits.
                tracing::warn!(user = %user, "the sessions list lags; sessions it misses end by the fence alone");
            }
        }
        let mut sessions: Vec<SessionId> =
            session_list::active_for_user(&self.database, user.0, keyframe_domain::clock::now())
                .await?
                .into_iter()
                .map(|row| SessionId(row.session_id))
                .collect();
        sessions.extend(also.filter(|session| !sessions.contains(session)));
        let mut last = None;
        for session in sessions.into_iter().filter(|session| Some(*session) != keep) {
            match self.end_session(session, requested_by, reason, metadata).await {
                Ok(position) => last = position.or(last),
                // Gone meanwhile, or not the user's after all: nothing to end.
                Err(CommandError::Rejected(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(last)
    }
}
