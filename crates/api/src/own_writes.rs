//! Each session's newest write, as remembered by the process that took it: what the session's
//! reads wait for (see `consistency`).

use keyframe_domain::ids::SessionId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Sessions remembered at most; beyond it, those idle longest are forgotten first.
const REMEMBERED_SESSIONS: usize = 100_000;

/// How long a session's last write is remembered: far longer than any read model takes to
/// apply it, and a forgotten one only means a read waits for nothing.
const REMEMBERED_FOR: Duration = Duration::from_secs(10 * 60);

/// The last write of each session this process took a command from.
#[derive(Debug, Default)]
pub struct OwnWrites {
    sessions: Mutex<HashMap<SessionId, OwnWrite>>,
}

#[derive(Debug)]
struct OwnWrite {
    /// The global position of the session's newest write.
    position: i64,
    /// When it was written.
    at: Instant,
    /// The read models already seen to have applied it: their reads need not look again.
    applied_by: Vec<&'static str>,
    /// The read models a read already waited for in vain (one that has stopped, say): later
    /// reads look once without waiting, instead of each spending the whole bound.
    waited_for_in_vain: Vec<&'static str>,
}

/// What a read of one read model must do about its session's newest write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingWrite {
    /// Nothing: there is none, or the read model has it.
    Nothing,
    /// Wait for it, up to the bound.
    Wait(i64),
    /// Look whether the read model has it, without waiting (a wait for it already ran out).
    Look(i64),
}

impl OwnWrites {
    /// Remembers `position` as `session`'s newest write (an older one changes nothing).
    pub fn record(&self, session: SessionId, position: i64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sessions.len() >= REMEMBERED_SESSIONS && !sessions.contains_key(&session) {
            forget_oldest(&mut sessions);
        }
        let now = Instant::now();
        let write = sessions.entry(session).or_insert(OwnWrite {
            position,
            at: now,
            applied_by: Vec::new(),
            waited_for_in_vain: Vec::new(),
        });
        if position >= write.position {
            if position > write.position {
                write.applied_by.clear();
                write.waited_for_in_vain.clear();
            }
            write.position = position;
            write.at = now;
        }
    }

    /// What a read of `projection` must do about the session's newest write.
    pub(crate) fn pending(&self, session: SessionId, projection: &str) -> PendingWrite {
        let sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match sessions.get(&session) {
            Some(write) if write.at.elapsed() < REMEMBERED_FOR && !write.applied_by.contains(&projection) => {
                if write.waited_for_in_vain.contains(&projection) {
                    PendingWrite::Look(write.position)
                } else {
                    PendingWrite::Wait(write.position)
                }
            }
            _ => PendingWrite::Nothing,
        }
    }

    /// A wait of `projection` for `position` ran out.
    pub(crate) fn waited_in_vain(&self, session: SessionId, projection: &'static str, position: i64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(write) = sessions.get_mut(&session)
            && write.position == position
            && !write.waited_for_in_vain.contains(&projection)
        {
            write.waited_for_in_vain.push(projection);
        }
    }

    /// `projection` has applied everything up to `position`.
    pub(crate) fn applied(&self, session: SessionId, projection: &'static str, position: i64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(write) = sessions.get_mut(&session)
            && write.position <= position
            && !write.applied_by.contains(&projection)
        {
            write.applied_by.push(projection);
        }
    }
}

/// Makes room: forgets the writes older than [`REMEMBERED_FOR`], or, when none is, the oldest
/// tenth.
fn forget_oldest(sessions: &mut HashMap<SessionId, OwnWrite>) {
    sessions.retain(|_, write| write.at.elapsed() < REMEMBERED_FOR);
    if sessions.len() >= REMEMBERED_SESSIONS {
        let mut ages: Vec<Instant> = sessions.values().map(|write| write.at).collect();
        let cut = ages.len() / 10;
        let (_, threshold, _) = ages.select_nth_unstable(cut);
        let threshold = *threshold;
        sessions.retain(|_, write| write.at > threshold);
    }
}

/// The session a request was authenticated as, filled in by the access-token extractor and read
/// by the middleware that remembers the session's writes once the response is ready.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallerSlot(Arc<OnceLock<SessionId>>);

impl CallerSlot {
    /// Notes the request's session.
    pub(crate) fn fill(&self, session: SessionId) {
        let _ = self.0.set(session);
    }

    /// The request's session, if it was authenticated.
    pub(crate) fn session(&self) -> Option<SessionId> {
        self.0.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_newest_write_is_pending_until_a_read_model_has_applied_it() {
        let writes = OwnWrites::default();
        let session = SessionId::new();
        assert_eq!(writes.pending(session, "project_list"), PendingWrite::Nothing);
        writes.record(session, 10);
        writes.record(session, 7); // older: changes nothing
        assert_eq!(writes.pending(session, "project_list"), PendingWrite::Wait(10));
        writes.applied(session, "project_list", 10);
        assert_eq!(writes.pending(session, "project_list"), PendingWrite::Nothing);
        assert_eq!(
            writes.pending(session, "job_list"),
            PendingWrite::Wait(10),
            "per read model"
        );
        writes.waited_in_vain(session, "job_list", 10);
        assert_eq!(
            writes.pending(session, "job_list"),
            PendingWrite::Look(10),
            "a read model that did not get there in time is looked at, not waited for, again"
        );
        writes.record(session, 12);
        assert_eq!(
            writes.pending(session, "project_list"),
            PendingWrite::Wait(12),
            "a newer write waits again"
        );
        assert_eq!(writes.pending(session, "job_list"), PendingWrite::Wait(12));
        assert_eq!(
            writes.pending(SessionId::new(), "project_list"),
            PendingWrite::Nothing,
            "per session"
        );
    }
}
