//! Judging guesses at an account's credentials (a password or a second-factor code) under the
//! lockout.
//!
//! Each guess is admitted by the `User` aggregate before it is judged, and its verdict is
//! recorded before the client is answered (see `keyframe_domain::user::LoginAttempts`): the
//! admission, appended under optimistic concurrency, bounds how many guesses are judged per
//! window across every process, and a verdict lost to a crash leaves the admission counted.
//! Within a process the guesses for one account also take turns, from admission to verdict:
//! a burst of guesses then waits in a queue instead of colliding, and a client that logs in
//! several times at once waits for its turn instead of finding the window full of its own
//! guesses.
//!
//! A refused login must not tell which of "no such account", "wrong password" and "locked"
//! it was, by its answer or by its time. The first and the last verify against a dummy hash
//! (the same work as a real guess) and then answer no sooner than a judged wrong guess of late
//! did, drawn from the durations of the last few: the appends a judged guess makes are then
//! hidden too, and the three take alike (the bench's `logins` phase measures them).

use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;
use chrono::Utc;
use keyframe_domain::ids::{LoginAttemptId, UserId};
use keyframe_domain::user::{User, UserCommand};
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::Actor;
use keyframe_eventlog::turns::Turns;
use rand::Rng as _;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many recent judged wrong guesses the refusal times are drawn from.
const REFUSAL_SAMPLES: usize = 64;

/// A refusal waits at most this long to look like a judged guess: a judged guess slowed by an
/// outage should not hold every refusal after it.
const LONGEST_PADDING: Duration = Duration::from_secs(2);

/// How late a timer fires: tokio's wakes at the first millisecond tick at or after its deadline,
/// and the task must then be scheduled. A refusal aims this much early, or it would answer
/// later than the guess it imitates (bench medians: 2-7 % above it without this, 2-4 % with;
/// what remains is the refusals whose own work outlasts the drawn time).
const TIMER_LATENESS: Duration = Duration::from_millis(1);

/// How long a judged failure is retried before it is left to its admission (which keeps
/// counting as a failure until the window moves past it).
const RECORD_FAILURE_FOR: Duration = Duration::from_secs(10);

/// What became of a guess.
#[derive(Debug)]
pub enum Judgment<T> {
    /// Not judged: the account is locked, or enough of its guesses are being judged already.
    NotAdmitted,
    /// Judged wrong, and recorded as a failure.
    Wrong,
    /// Judged right: the account as it stood when judged, and what the check found.
    Right(Box<User>, T),
}

/// The login turns and the refusal timing of one process.
#[derive(Default)]
pub struct LoginGate {
    turns: Turns,
    judged_wrong: Mutex<VecDeque<Duration>>,
}

impl LoginGate {
    /// Admits a guess at `user_id`'s credentials, judges it with `check` against the account
    /// as it stands after the admission (`Some` when right), and records the verdict.
    pub async fn judge<T>(
        &self,
        state: &AppState,
        context: &RequestContext,
        user_id: UserId,
        check: impl AsyncFnOnce(&User) -> Result<Option<T>, ApiError>,
    ) -> Result<Judgment<T>, ApiError> {
        let id = user_id.to_string();
        let metadata = context.metadata(Actor::User(user_id));
        let policy = state.settings.lockout;
        let attempt = LoginAttemptId::new();
        let _turn = self.turns.take(&id).await;
        let admit = || UserCommand::AdmitLoginAttempt {
            attempt,
            policy,
            at: Utc::now(),
        };
        match state.users.execute(&id, admit, &metadata).await {
            Ok(_) => {}
            // Other processes kept admitting guesses for this account: refusing is the safe side.
            Err(CommandError::Rejected(_) | CommandError::Conflict { .. }) => return Ok(Judgment::NotAdmitted),
            Err(error) => return Err(ApiError::from_command(error, |_| unreachable_rejection())),
        }
        let user = state
            .users
            .load(&id)
            .await
            .map_err(|error| ApiError::from_command(error, |_| unreachable_rejection()))?
            .ok_or_else(unreachable_rejection)?;
        // Should the check itself fail, the admission stays unjudged and counts as a failure.
        match check(&user).await? {
            Some(found) => {
                let passed = || UserCommand::RecordPassedLoginAttempt {
                    attempt,
                    at: Utc::now(),
                };
                state
                    .users
                    .execute(&id, passed, &metadata)
                    .await
                    .map_err(|error| ApiError::from_command(error, |_| unreachable_rejection()))?;
                Ok(Judgment::Right(Box::new(user), found))
            }
            None => {
                let failed = || UserCommand::RecordFailedLogin {
                    attempt,
                    policy,
                    at: Utc::now(),
                };
                let deadline = Instant::now() + RECORD_FAILURE_FOR;
                loop {
                    match state.users.execute(&id, failed, &metadata).await {
                        Ok(_) => break,
                        Err(CommandError::Conflict { .. }) if Instant::now() < deadline => continue,
                        Err(error) => {
                            // The admission is on record and counts until the window passes it.
                            tracing::error!(user = %user_id, error = %error, "a judged failure could not be recorded");
                            break;
                        }
                    }
                }
                Ok(Judgment::Wrong)
            }
        }
    }

    /// Remembers how long a judged wrong guess took to answer, from `started`.
    pub fn judged_wrong(&self, started: Instant) {
        if let Ok(mut samples) = self.judged_wrong.lock() {
            if samples.len() == REFUSAL_SAMPLES {
                samples.pop_front();
            }
            samples.push_back(started.elapsed());
        }
    }

    /// Waits until a refusal that began at `started` has taken as long as one of the recent
    /// judged wrong guesses, drawn at random (no wait before any was judged).
    pub async fn pad_refusal(&self, started: Instant) {
        let sample = self.judged_wrong.lock().ok().and_then(|samples| {
            let drawn = rand::rng().random_range(0..samples.len().max(1));
            samples.get(drawn).copied()
        });
        if let Some(sample) = sample {
            let wait = sample.min(LONGEST_PADDING).saturating_sub(TIMER_LATENESS);
            tokio::time::sleep_until((started + wait).into()).await;
        }
    }
}

/// The commands above refuse only with the errors matched where they run; any other refusal
/// is a bug, answered as one.
fn unreachable_rejection() -> ApiError {
    ApiError::Internal(anyhow::anyhow!("the account refused a login step it should not have"))
}
