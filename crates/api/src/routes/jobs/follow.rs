//! Following a job live: its changes as Server-Sent Events. The state at connection (or after
//! `Last-Event-ID`) comes from the job's events in the store; what follows comes from the
//! process's job-event feed (`crate::job_events`), and from the store again only when the feed
//! may have missed something: an idle stream costs no query.

use super::job_for;
use crate::auth::AuthUser;
use crate::error::{ApiError, Code};
use crate::extract::PathId;
use crate::job_events::{Following, JobFeed};
use crate::state::AppState;
use anyhow::Context as _;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use cqrs_es::Aggregate;
use keyframe_app::policy::Action;
use keyframe_database::{Database, portable};
use keyframe_domain::ids::JobId;
use keyframe_domain::job::{Job, JobEvent};
use keyframe_domain::log::RecordedEvent;
use serde::Serialize;
use std::time::Instant;
use utoipa::ToSchema;

/// One change of a job, as a Server-Sent Event: `id` is the job's event sequence (send it
/// back as `Last-Event-ID` to resume), `event` the event type (`snapshot` for the state at
/// connection), `data` the job's status after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobUpdate {
    /// The event type (`JobStarted`, `JobProgressed`, ...), or `snapshot`.
    pub event: String,
    /// Status after it.
    pub status: String,
    /// Percent done.
    pub progress: u8,
    /// Attempts started.
    pub attempts: u32,
    /// What the attempt is doing.
    pub stage: Option<String>,
    /// The last failure's reason.
    pub error: Option<String>,
}

fn update(event: &str, job: &Job) -> JobUpdate {
    JobUpdate {
        event: event.to_owned(),
        status: job.status().as_str().to_owned(),
        progress: job.progress(),
        attempts: job.attempts(),
        stage: job.stage().map(str::to_owned),
        error: job.error().map(str::to_owned),
    }
}

/// Follow a job: its status and progress as Server-Sent Events until it ends. Without
/// `Last-Event-ID` the stream opens with a `snapshot`; with it, it resumes after that event.
/// Resuming an ended job with nothing new answers 204 (an EventSource then stops).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/events", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event")),
    responses((status = 200, content_type = "text/event-stream", body = JobUpdate),
        (status = 204, description = "The job has ended and nothing followed `Last-Event-ID`"),
        (status = 404, body = crate::error::Problem)))]
pub async fn events(
    State(state): State<AppState>,
    caller: AuthUser,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let job = job_for(&state, &caller, Action::View, id).await?;
    let resume_after = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .ok_or_else(|| ApiError::bad_request(Code::InvalidLastEventId, "Last-Event-ID must be an event id"))?,
        ),
    };
    if let Some(after) = resume_after
        && job.status().is_finished()
    {
        let newest: Option<i64> = portable!(state.database().reader(), pool => {
            sqlx::query_scalar("SELECT max(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2")
                .bind(Job::TYPE)
                .bind(id.to_string())
                .fetch_one(pool)
                .await
        })
        .context("reading the job's newest event")?;
        if newest.is_none_or(|newest| after >= newest) {
            // An ended job with nothing after what the client saw: 204 tells an EventSource
            // to stop reconnecting.
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    let database = state.database().clone();
    let job_id = id.to_string();
    // Heard before the store is read, so nothing falls between the two.
    let feed = state.job_events.follow(&job_id);
    let watcher = Watcher {
        state: state.clone(),
        caller,
        job_id: JobId(id),
        checked: Instant::now(),
    };
    let stream = follow_job(database, job_id, feed, resume_after, watcher);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// Who follows: their right to see the job is asked again while the stream runs, so a member
/// removed from the job's organisation, or a session that ended, stops receiving within the
/// guards' TTL, as every other request does.
struct Watcher {
    state: AppState,
    caller: AuthUser,
    job_id: JobId,
    /// When the right was last asked.
    checked: Instant,
}

impl Watcher {
    /// Whether the follower may still see the job; asked at most once per the session guard's
    /// TTL.
    async fn still_allowed(&mut self) -> bool {
        let ttl = self.state.settings.session_check_ttl;
        if self.checked.elapsed() < ttl {
            return true;
        }
        self.checked = Instant::now();
        let app = &self.state.app;
        let session = app
            .session_guard
            .access(
                &app.buses.sessions,
                &app.buses.users,
                self.caller.session_id,
                self.caller.user_id,
            )
            .await;
        if !matches!(session, Ok(Some(_))) {
            return false;
        }
        app.job_for(&self.caller.actor(), Action::View, self.job_id)
            .await
            .is_ok()
    }
}

struct Follow {
    database: Database,
    watcher: Watcher,
    job_id: String,
    feed: Following,
    job: Job,
    /// Events up to here are folded into `job`.
    folded: i64,
    /// Events up to here were sent.
    sent: i64,
    pending: std::collections::VecDeque<Event>,
    snapshot: bool,
    /// The store must be read before the feed is trusted again.
    read_store: bool,
    done: bool,
}

/// The job's events, folded as they come, sent from `resume_after` on.
fn follow_job(
    database: Database,
    job_id: String,
    feed: Following,
    resume_after: Option<i64>,
    watcher: Watcher,
) -> impl futures::Stream<Item = Result<Event, std::convert::Infallible>> {
    let follow = Follow {
        database,
        watcher,
        job_id,
        feed,
        job: Job::default(),
        folded: 0,
        sent: resume_after.unwrap_or(0),
        pending: Default::default(),
        snapshot: resume_after.is_none(),
        read_store: true,
        done: false,
    };
    futures::stream::unfold(follow, |mut follow| async move {
        loop {
            if let Some(event) = follow.pending.pop_front() {
                if !follow.watcher.still_allowed().await {
                    return None;
                }
                return Some((Ok(event), follow));
            }
            if follow.done {
                return None;
            }
            if follow.read_store {
                if let Err(error) = follow.read().await {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "a job event stream could not read; ending it"
                    );
                    return None;
                }
                continue;
            }
            match follow.feed.next().await {
                Some(JobFeed::Event(event)) => follow.take(&event),
                Some(JobFeed::Resync) => follow.read_store = true,
                // The feed has stopped for good: the client reconnects with `Last-Event-ID`.
                None => return None,
            }
        }
    })
}

impl Follow {
    /// An event from the feed: the next of the job's folds in; one already folded changes
    /// nothing; one after a gap sends the stream to the store for what it missed.
    fn take(&mut self, event: &RecordedEvent) {
        if event.sequence <= self.folded {
            return;
        }
        if event.sequence > self.folded + 1 {
            self.read_store = true;
            return;
        }
        match serde_json::from_str::<JobEvent>(event.payload.get()) {
            Ok(payload) => {
                self.fold(event.sequence, &event.event_type, payload);
                self.done = self.job.status().is_finished();
            }
            Err(_) => self.read_store = true,
        }
    }

    /// Folds in the job's events from the store after what is folded already.
    async fn read(&mut self) -> anyhow::Result<()> {
        self.read_store = false;
        let rows: Vec<(i64, String, serde_json::Value)> = portable!(self.database.reader(), pool => { sqlx::query_as(
            "SELECT sequence, event_type, payload FROM events
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
        )
        .bind(Job::TYPE)
        .bind(&self.job_id)
        .bind(self.folded)
        .fetch_all(pool)
        .await })
        .context("reading the job's events")?;
        for (sequence, event_type, payload) in rows {
            let event: JobEvent = serde_json::from_value(payload).context("reading a job event")?;
            self.fold(sequence, &event_type, event);
        }
        if self.snapshot {
            self.snapshot = false;
            self.push(self.folded, "snapshot");
        }
        // Everything up to now is folded: a job that has ended has nothing more to say.
        self.done = self.job.status().is_finished();
        Ok(())
    }

    /// Folds in the job's event at `sequence`, and sends it unless it was sent already or the
    /// stream opens with a snapshot (which stands for everything folded before it).
    fn fold(&mut self, sequence: i64, event_type: &str, event: JobEvent) {
        self.job.apply(event);
        self.folded = sequence;
        if sequence > self.sent && !self.snapshot {
            self.push(sequence, event_type);
        }
    }

    fn push(&mut self, sequence: i64, event_type: &str) {
        self.sent = sequence;
        let data = serde_json::to_string(&update(event_type, &self.job)).unwrap_or_default();
        self.pending
            .push_back(Event::default().id(sequence.to_string()).event(event_type).data(data));
    }
}
