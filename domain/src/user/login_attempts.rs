//! The lockout: how many guesses at an account's credentials may be judged.
//!
//! A guess (a password, or a second-factor code) is admitted before it is judged, as an event
//! of its own, and its verdict follows as another. Admission is refused while the account is
//! locked, and while the failures within the window plus the guesses admitted and not yet
//! judged reach the threshold. Since admissions are appended under the aggregate's optimistic
//! concurrency, two guesses admitted at the same moment (in one process or in several) cannot
//! both take the last place: at most `threshold` guesses are judged per window, whatever the
//! concurrency. A guess whose verdict never arrives (its process died) keeps counting until
//! the window has moved past it, as if it had failed.

use super::{LockoutPolicy, UserError, UserEvent};
use crate::ids::LoginAttemptId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How long a guess whose verdict never came is kept: longer than any lockout window.
const UNJUDGED_KEPT_FOR: chrono::Duration = chrono::Duration::days(30);

/// An account's guesses, as far as the lockout is concerned.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAttempts {
    /// Failed guesses since the last whole login, lock or reset.
    failures: Vec<DateTime<Utc>>,
    /// Guesses admitted and not judged yet, with when they were admitted.
    pending: Vec<(LoginAttemptId, DateTime<Utc>)>,
    /// When the lock that failures caused ends.
    locked_until: Option<DateTime<Utc>>,
}

impl LoginAttempts {
    /// Until when the account is locked, if it is locked at `now`.
    pub fn locked_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.locked_until.filter(|until| *until > now)
    }

    /// Whether failures were counted since the last whole login, lock or reset.
    pub fn has_failures(&self) -> bool {
        !self.failures.is_empty()
    }

    /// Failures and unjudged guesses that count against the window ending at `at`.
    fn counted(&self, policy: LockoutPolicy, at: DateTime<Utc>) -> usize {
        let window_start = at - policy.window;
        let failures = self.failures.iter().filter(|failed| **failed > window_start).count();
        let pending = self
            .pending
            .iter()
            .filter(|(_, admitted)| *admitted > window_start)
            .count();
        failures + pending
    }

    /// Admits `attempt` to be judged, or says why not.
    pub(super) fn admit(
        &self,
        attempt: LoginAttemptId,
        policy: LockoutPolicy,
        at: DateTime<Utc>,
    ) -> Result<UserEvent, UserError> {
        if let Some(until) = self.locked_until(at) {
            return Err(UserError::AccountLocked { until });
        }
        let threshold = usize::try_from(policy.threshold).unwrap_or(usize::MAX);
        if self.counted(policy, at) >= threshold {
            return Err(UserError::LoginAttemptsExhausted);
        }
        Ok(UserEvent::LoginAttemptAdmitted {
            attempt,
            admitted_at: at,
        })
    }

    /// The events of `attempt` judged wrong: always the failure (it was judged, so it counts),
    /// and the lock when this failure brings the window's failures to the threshold.
    pub(super) fn fail(&self, attempt: LoginAttemptId, policy: LockoutPolicy, at: DateTime<Utc>) -> Vec<UserEvent> {
        let failed = UserEvent::LoginFailed {
            attempt: Some(attempt),
            failed_at: at,
        };
        if self.locked_until(at).is_some() {
            return vec![failed];
        }
        let window_start = at - policy.window;
        let recent = self.failures.iter().filter(|failed| **failed > window_start).count();
        let failures = u32::try_from(recent).unwrap_or(u32::MAX).saturating_add(1);
        if failures < policy.threshold {
            return vec![failed];
        }
        vec![
            failed,
            UserEvent::AccountLocked {
                failures,
                locked_until: at + policy.lock_for,
                locked_at: at,
            },
        ]
    }

    /// `attempt` was admitted at `at`. Guesses whose verdict never came are dropped once no
    /// window could still count them, so they do not pile up in the account.
    pub(super) fn admitted(&mut self, attempt: LoginAttemptId, at: DateTime<Utc>) {
        self.pending.retain(|(_, admitted)| *admitted > at - UNJUDGED_KEPT_FOR);
        self.pending.push((attempt, at));
    }

    /// A guess failed at `at`; `attempt` is absent on failures recorded before admissions.
    pub(super) fn failed(&mut self, attempt: Option<LoginAttemptId>, at: DateTime<Utc>) {
        self.judged(attempt);
        self.failures.push(at);
    }

    /// `attempt` was right.
    pub(super) fn passed(&mut self, attempt: LoginAttemptId) {
        self.judged(Some(attempt));
    }

    fn judged(&mut self, attempt: Option<LoginAttemptId>) {
        if let Some(attempt) = attempt {
            self.pending.retain(|(pending, _)| *pending != attempt);
        }
    }

    /// Failures locked the account until `until`; they stop counting.
    pub(super) fn locked(&mut self, until: DateTime<Utc>) {
        self.locked_until = Some(until);
        self.failures.clear();
    }

    /// A whole login succeeded: earlier failures stop counting.
    pub(super) fn cleared(&mut self) {
        self.failures.clear();
    }

    /// The password was reset through the mailbox: the lock is lifted and nothing counts.
    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    const POLICY: LockoutPolicy = LockoutPolicy {
        threshold: 3,
        window: Duration::minutes(15),
        lock_for: Duration::minutes(30),
    };

    fn admit(attempts: &mut LoginAttempts, at: DateTime<Utc>) -> Result<LoginAttemptId, UserError> {
        let attempt = LoginAttemptId::new();
        attempts.admit(attempt, POLICY, at)?;
        attempts.admitted(attempt, at);
        Ok(attempt)
    }

    #[test]
    fn guesses_being_judged_take_the_places_of_failures() {
        let now = Utc::now();
        let mut attempts = LoginAttempts::default();
        for _ in 0..3 {
            admit(&mut attempts, now).expect("admitted");
        }
        assert_eq!(admit(&mut attempts, now), Err(UserError::LoginAttemptsExhausted));
    }

    #[test]
    fn a_right_guess_frees_its_place_and_a_wrong_one_keeps_it() {
        let now = Utc::now();
        let mut attempts = LoginAttempts::default();
        let right = admit(&mut attempts, now).expect("admitted");
        let wrong = admit(&mut attempts, now).expect("admitted");
        admit(&mut attempts, now).expect("admitted");
        attempts.passed(right);
        attempts.failed(Some(wrong), now);
        admit(&mut attempts, now).expect("the right guess's place is free");
        assert_eq!(admit(&mut attempts, now), Err(UserError::LoginAttemptsExhausted));
    }

    #[test]
    fn a_guess_never_judged_counts_until_the_window_moves_past_it() {
        let now = Utc::now();
        let mut attempts = LoginAttempts::default();
        for _ in 0..3 {
            admit(&mut attempts, now).expect("admitted");
        }
        let later = now + POLICY.window;
        assert_eq!(
            admit(&mut attempts, later - Duration::seconds(1)),
            Err(UserError::LoginAttemptsExhausted)
        );
        admit(&mut attempts, later).expect("the abandoned guesses left the window");
    }

    #[test]
    fn a_guess_never_judged_is_forgotten_once_no_window_could_count_it() {
        let now = Utc::now();
        let mut attempts = LoginAttempts::default();
        admit(&mut attempts, now).expect("admitted");
        admit(&mut attempts, now + UNJUDGED_KEPT_FOR).expect("admitted");
        assert_eq!(attempts.pending.len(), 1, "{:?}", attempts.pending);
    }

    #[test]
    fn a_locked_account_admits_nothing_until_the_lock_ends_or_a_reset() {
        let now = Utc::now();
        let mut attempts = LoginAttempts::default();
        attempts.locked(now + POLICY.lock_for);
        assert_eq!(
            admit(&mut attempts, now),
            Err(UserError::AccountLocked {
                until: now + POLICY.lock_for
            })
        );
        admit(&mut attempts, now + POLICY.lock_for).expect("the lock is over");
        attempts.locked(now + POLICY.lock_for);
        attempts.reset();
        admit(&mut attempts, now).expect("a reset lifts the lock");
    }
}
