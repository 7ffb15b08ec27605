//! Whether the session behind an access token still stands.
//!
//! A JWT alone stays valid until it expires (15 minutes by default), long after a logout, a
//! revocation, a refresh-token reuse or a password reset ended its session. So every
//! authenticated request also asks whether the session has ended, and whether its user has
//! since ended every older session (a password reset does). The answers come from the event
//! store (the `Session` and `User` aggregates), not from a read model, so they hold even when
//! the projectors lag; each is kept for
//! [`ApiSettings::session_check_ttl`](crate::settings::ApiSettings) (500 ms by default), which
//! bounds how long a token outlives its session when another process ended it. What this
//! process ends is refused at once.

use crate::ttl_cache::TtlCache;
use chrono::{DateTime, Utc};
use keyframe_domain::ids::{SessionId, UserId};
use keyframe_domain::session::Session;
use keyframe_domain::user::User;
use keyframe_eventlog::commands::{CommandBus, CommandError};
use std::time::Duration;

/// What was last learned about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionStanding {
    /// Started by this user at that time, and not ended.
    Active(UserId, DateTime<Utc>),
    /// Ended, or never started.
    Gone,
}

/// What was last learned about a user, as far as their sessions and rights go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UserStanding {
    /// Sessions started before this are over (a password reset or change, a suspension,
    /// logging out everywhere), except the one kept.
    fence: Option<(DateTime<Utc>, Option<SessionId>)>,
    /// Suspended accounts have no live session.
    suspended: bool,
    /// Holds the `admin` role.
    admin: bool,
}

/// What a live session's user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Whether the user is an administrator (as of at most the guard's TTL ago).
    pub admin: bool,
}

/// Why a command bus could not answer.
pub type GuardError = CommandError<std::convert::Infallible>;

/// The cache of session and user standings.
pub struct SessionGuard {
    ttl: Duration,
    sessions: TtlCache<SessionId, SessionStanding>,
    users: TtlCache<UserId, UserStanding>,
}

impl SessionGuard {
    /// A guard that trusts what it learned for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            sessions: TtlCache::new(),
            users: TtlCache::new(),
        }
    }

    /// What `user` may do through `session`; `None` when the session is not theirs, has
    /// ended, is older than the user's last "end every session", or the user is suspended.
    pub async fn access(
        &self,
        sessions: &CommandBus<Session>,
        users: &CommandBus<User>,
        session: SessionId,
        user: UserId,
    ) -> Result<Option<Access>, GuardError> {
        // An ended session never comes back, so that answer needs no refreshing.
        let standing = match self.sessions.get(&session, self.ttl, |s| *s == SessionStanding::Gone) {
            Some(standing) => standing,
            None => {
                let loaded = sessions.load(&session.to_string()).await.map_err(unavailable)?;
                let standing = match loaded {
                    Some(loaded) if !loaded.is_ended() => match (loaded.user_id(), loaded.started_at()) {
                        (Some(owner), Some(started)) => SessionStanding::Active(owner, started),
                        _ => SessionStanding::Gone,
                    },
                    _ => SessionStanding::Gone,
                };
                self.sessions.put(session, standing, self.ttl);
                standing
            }
        };
        let SessionStanding::Active(owner, started) = standing else {
            return Ok(None);
        };
        if owner != user {
            return Ok(None);
        }
        let user_standing = match self.users.get(&user, self.ttl, |_| false) {
            Some(standing) => standing,
            None => {
                let Some(loaded) = users.load_current(&user.to_string()).await.map_err(unavailable)? else {
                    return Ok(None);
                };
                let standing = UserStanding {
                    fence: loaded.session_fence(),
                    suspended: loaded.suspension().is_some(),
                    admin: loaded.is_admin(),
                };
                self.users.put(user, standing, self.ttl);
                standing
            }
        };
        let fenced = user_standing
            .fence
            .is_some_and(|(from, kept)| started < from && kept != Some(session));
        let live = !user_standing.suspended && !fenced;
        Ok(live.then_some(Access {
            admin: user_standing.admin,
        }))
    }

    /// Records that `session` ended through this process: its tokens are refused from now on.
    pub fn ended(&self, session: SessionId) {
        self.sessions.put(session, SessionStanding::Gone, self.ttl);
    }

    /// Forgets what it knew of `user`, after this process changed it.
    pub fn user_changed(&self, user: UserId) {
        self.users.forget(&user);
    }
}

/// Only whether the store answered matters here; the aggregate's own errors cannot occur on a
/// load.
fn unavailable<E: std::error::Error>(error: CommandError<E>) -> GuardError {
    match error {
        CommandError::Rejected(error) => CommandError::Store(error.to_string()),
        CommandError::Conflict { attempts } => CommandError::Conflict { attempts },
        CommandError::Unavailable(detail) => CommandError::Unavailable(detail),
        CommandError::Store(detail) => CommandError::Store(detail),
    }
}
