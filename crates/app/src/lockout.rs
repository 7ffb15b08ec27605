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

use crate::error::{AppError, Refusal};
use chrono::{DateTime, Utc};
use keyframe_domain::ids::{LoginAttemptId, UserId};
use keyframe_domain::user::{LockoutPolicy, User, UserCommand, UserError};
use keyframe_eventlog::commands::{CommandBus, CommandError};
use keyframe_eventlog::metadata::CommandMetadata;
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

/// How long a verdict is retried while other writers keep getting to the account first. A
/// failure not recorded by then is left to its admission, which counts as one until the
/// window moves past it.
const RECORD_VERDICT_FOR: Duration = Duration::from_secs(10);

/// Judged wrong guesses older than this no longer set how long refusals take: the work of a
/// guess is what they imitate, not how busy the server was a while ago.
const SAMPLE_MAX_AGE: Duration = Duration::from_secs(60);

/// What became of a guess.
#[derive(Debug)]
pub enum Judgment<T> {
    /// Not judged: the account is locked (until when, if that is why), or enough of its guesses
    /// are being judged already.
    NotAdmitted {
        /// When the lock ends, when the account is locked.
        locked_until: Option<DateTime<Utc>>,
    },
    /// Judged wrong, and recorded as a failure.
    Wrong {
        /// How long the guess waited for the account's earlier guesses: queueing, not work.
        queued: Duration,
    },
    /// Judged right: the account as it stood when judged, and what the check found.
    Right(Box<User>, T),
}

/// The login turns and the refusal timing of one process.
#[derive(Default)]
pub struct LoginGate {
    turns: Turns,
    /// When each recent judged wrong guess was answered, and the work it took.
    judged_wrong: Mutex<VecDeque<(Instant, Duration)>>,
}

impl LoginGate {
    /// Admits a guess at `user_id`'s credentials, judges it with `check` against the account
    /// as it stands after the admission (`Some` when right), and records the verdict.
    ///
    /// The account's turn is held from admission to verdict, the hash included: a client that
    /// logs in several times at once then waits in line rather than finding the window full
    /// of its own guesses. (Turns are striped, so an unrelated account may share one, 1 in 1,024.)
    pub async fn judge<T>(
        &self,
        users: &CommandBus<User>,
        policy: LockoutPolicy,
        metadata: &CommandMetadata,
        user_id: UserId,
        check: impl AsyncFnOnce(&User) -> Result<Option<T>, AppError>,
    ) -> Result<Judgment<T>, AppError> {
        let id = user_id.to_string();
        let attempt = LoginAttemptId::new();
        let queued_from = Instant::now();
        let _turn = self.turns.take(&id).await;
        let queued = queued_from.elapsed();
        let admit = || UserCommand::AdmitLoginAttempt {
            attempt,
            policy,
            at: keyframe_domain::clock::now(),
        };
        match users.execute(&id, admit, metadata).await {
            Ok(_) => {}
            Err(CommandError::Rejected(UserError::AccountLocked { until })) => {
                return Ok(Judgment::NotAdmitted {
                    locked_until: Some(until),
                });
            }
            // Other processes kept admitting guesses for this account: refusing is the safe side.
            Err(CommandError::Rejected(_) | CommandError::Conflict { .. }) => {
                return Ok(Judgment::NotAdmitted { locked_until: None });
            }
            Err(error) => return Err(unexpected(error)),
        }
        let user = users
            .load_current(&id)
            .await
            .map_err(unexpected)?
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("an admitted account vanished")))?;
        // Should the check itself fail, the admission stays unjudged and counts as a failure
        // until the window passes it: the safe side for a guess that may have been judged.
        match check(&user).await? {
            Some(found) => {
                let passed = || UserCommand::RecordPassedLoginAttempt {
                    attempt,
                    at: keyframe_domain::clock::now(),
                };
                record_verdict(users, &id, passed, metadata).await?;
                Ok(Judgment::Right(Box::new(user), found))
            }
            None => {
                let failed = || UserCommand::RecordFailedLogin {
                    attempt,
                    policy,
                    at: keyframe_domain::clock::now(),
                };
                if let Err(error) = record_verdict(users, &id, failed, metadata).await {
                    // The admission is on record and counts until the window passes it.
                    tracing::error!(user = %user_id, error = %error, "a judged failure could not be recorded");
                }
                Ok(Judgment::Wrong { queued })
            }
        }
    }

    /// Remembers the work of a judged wrong guess: the time from `started` to its answer, less
    /// what it spent `queued` behind the account's earlier guesses.
    pub fn judged_wrong(&self, started: Instant, queued: Duration) {
        if let Ok(mut samples) = self.judged_wrong.lock() {
            if samples.len() == REFUSAL_SAMPLES {
                samples.pop_front();
            }
            samples.push_back((Instant::now(), started.elapsed().saturating_sub(queued)));
        }
    }

    /// Waits until a refusal that began at `started` has taken as long as one of the judged
    /// wrong guesses of the last minute, drawn at random; with none that recent, as long as the
    /// median of those kept (no wait before any was judged).
    pub async fn pad_refusal(&self, started: Instant) {
        let sample = self.judged_wrong.lock().ok().and_then(|samples| {
            let fresh: Vec<Duration> = samples
                .iter()
                .filter(|(when, _)| when.elapsed() <= SAMPLE_MAX_AGE)
                .map(|(_, took)| *took)
                .collect();
            if fresh.is_empty() {
                let mut kept: Vec<Duration> = samples.iter().map(|(_, took)| *took).collect();
                kept.sort_unstable();
                return kept.get(kept.len() / 2).copied();
            }
            fresh.get(rand::rng().random_range(0..fresh.len())).copied()
        });
        if let Some(sample) = sample {
            let wait = sample.min(LONGEST_PADDING).saturating_sub(TIMER_LATENESS);
            tokio::time::sleep_until((started + wait).into()).await;
        }
    }
}

/// Records a verdict, trying again while other writers get to the account first (every
/// verdict is recorded, none lost to a conflict), for up to [`RECORD_VERDICT_FOR`].
async fn record_verdict(
    users: &CommandBus<User>,
    id: &str,
    command: impl Fn() -> UserCommand + Copy,
    metadata: &CommandMetadata,
) -> Result<(), AppError> {
    let deadline = Instant::now() + RECORD_VERDICT_FOR;
    loop {
        match users.execute(id, command, metadata).await {
            Ok(_) => return Ok(()),
            Err(CommandError::Conflict { .. }) if Instant::now() < deadline => {}
            Err(error) => return Err(unexpected(error)),
        }
    }
}

/// How a guess that was not admitted answers a caller who holds a session (changing the
/// password, turning the second factor on or off, the code of a login): the lock by name, or
/// that `threshold` guesses are being judged.
pub fn refused_guess(locked_until: Option<DateTime<Utc>>, threshold: u32) -> AppError {
    match locked_until {
        Some(until) => Refusal::AccountLocked { until }.into(),
        None => Refusal::TooManyAttempts { threshold }.into(),
    }
}

/// While failed logins lock the account, nothing that checks a password or code may run: the
/// lock would not bound guessing otherwise.
pub fn refuse_while_locked(user: &User) -> Result<(), AppError> {
    match user.locked_until(keyframe_domain::clock::now()) {
        Some(until) => Err(Refusal::AccountLocked { until }.into()),
        None => Ok(()),
    }
}

/// The commands above refuse only with the errors matched where they run; any other refusal
/// is a bug, answered as one.
fn unexpected(error: CommandError<UserError>) -> AppError {
    match error {
        CommandError::Rejected(_) => {
            AppError::Internal(anyhow::anyhow!("the account refused a login step it should not have"))
        }
        other => other.into(),
    }
}
