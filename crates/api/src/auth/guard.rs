//! Whether the session behind an access token still stands.
//!
//! A JWT alone stays valid until it expires (15 minutes by default), long after a logout, a
//! revocation or a refresh-token reuse ended its session. So every authenticated request also
//! asks whether the session has ended. The answer comes from the event store (the `Session`
//! aggregate), not from a read model, so it holds even when the projectors lag; it is kept for
//! [`ApiSettings::session_check_ttl`](crate::settings::ApiSettings) (500 ms by default), which
//! bounds how long a token outlives its session when another process ended it. A session
//! ended through this process is refused at once.

use keyframe_domain::ids::{SessionId, UserId};
use keyframe_domain::session::{Session, SessionError};
use keyframe_eventlog::commands::{CommandBus, CommandError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// More entries than this and the stale ones are swept out on the next insert.
const SWEEP_ABOVE: usize = 50_000;

/// What was last learned about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Started by this user and not ended.
    Active(UserId),
    /// Ended, or never started.
    Gone,
}

/// The cache of session standings, shared by every request of the process.
pub struct SessionGuard {
    ttl: Duration,
    standings: Mutex<HashMap<SessionId, (Instant, Standing)>>,
}

impl SessionGuard {
    /// A guard that trusts what it learned for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            standings: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `session` belongs to `user` and has not ended.
    pub async fn is_active(
        &self,
        sessions: &CommandBus<Session>,
        session: SessionId,
        user: UserId,
    ) -> Result<bool, CommandError<SessionError>> {
        if let Some(standing) = self.cached(session) {
            return Ok(standing == Standing::Active(user));
        }
        let standing = match sessions.load(&session.to_string()).await? {
            Some(loaded) if !loaded.is_ended() => loaded.user_id().map_or(Standing::Gone, Standing::Active),
            _ => Standing::Gone,
        };
        self.remember(session, standing);
        Ok(standing == Standing::Active(user))
    }

    /// Records that `session` ended through this process: its tokens are refused from now on.
    pub fn ended(&self, session: SessionId) {
        self.remember(session, Standing::Gone);
    }

    fn cached(&self, session: SessionId) -> Option<Standing> {
        let standings = self.standings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (checked, standing) = standings.get(&session)?;
        // An ended session never comes back, so that answer needs no refreshing.
        (*standing == Standing::Gone || checked.elapsed() < self.ttl).then_some(*standing)
    }

    fn remember(&self, session: SessionId, standing: Standing) {
        let mut standings = self.standings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if standings.len() >= SWEEP_ABOVE {
            let ttl = self.ttl;
            standings.retain(|_, (checked, _)| checked.elapsed() < ttl);
        }
        standings.insert(session, (Instant::now(), standing));
    }
}
