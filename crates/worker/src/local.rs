//! Video jobs in a process without NATS: the queue of `JobQueued` entries in memory, fed by
//! tailing the log, and the service answered in the process ([`JobDesk`]).
//!
//! The queue behaves as the workers' JetStream consumer does: an entry taken is held by its
//! worker until acknowledged, given back after the ack wait without a beat, and delivered
//! again after a delay when given back with one. Nothing of it needs to survive the process:
//! at start it is rebuilt from the log, with the newest `JobQueued` of every job still queued
//! or running. A job that was running when the process stopped thus comes back to a worker,
//! whose start (under a new claim: the process's name changed) records the lost attempt, and
//! the job is retried or fails, as when a worker dies in a deployment with NATS.

use crate::coordinator::JobDesk;
use crate::transport::{JobQueue, JobService, QueueEntry};
use anyhow::Context as _;
use async_trait::async_trait;
use cqrs_es::Aggregate as _;
use keyframe_database::Database;
use keyframe_domain::job::Job;
use keyframe_domain::log::RecordedEvent;
use keyframe_eventlog::feed::tail::{TailFeed, TailSettings};
use keyframe_eventlog::projector::checkpoint;
use keyframe_eventlog::reader::newest_event_of;
use keyframe_eventlog::wake::LocalRelay;
use keyframe_projections::job_list;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The queue's name for an entry: the global position of its `JobQueued` event.
type EntryId = i64;

/// The in-memory queue of job entries. Cheap to clone.
#[derive(Clone)]
pub struct LocalJobQueue(Arc<QueueInner>);

struct QueueInner {
    state: Mutex<QueueState>,
    changed: Notify,
    ack_wait: Duration,
}

#[derive(Default)]
struct QueueState {
    /// Entries to hand out, by when they are due.
    waiting: BTreeMap<(Instant, EntryId), Arc<[u8]>>,
    /// Entries a worker holds, with when they come back without a sign of life.
    held: HashMap<EntryId, (Instant, Arc<[u8]>)>,
}

impl QueueState {
    fn knows(&self, id: EntryId) -> bool {
        self.held.contains_key(&id) || self.waiting.keys().any(|(_, waiting)| *waiting == id)
    }

    /// Gives back every held entry whose worker stopped beating.
    fn expire(&mut self, now: Instant) {
        let expired: Vec<EntryId> = self
            .held
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((_, payload)) = self.held.remove(&id) {
                self.waiting.insert((now, id), payload);
            }
        }
    }
}

impl LocalJobQueue {
    /// An empty queue whose entries come back `ack_wait` after their worker's last sign of life.
    pub fn new(ack_wait: Duration) -> Self {
        Self(Arc::new(QueueInner {
            state: Mutex::new(QueueState::default()),
            changed: Notify::new(),
            ack_wait,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `event` (a `JobQueued`) unless the queue has it already.
    fn offer(&self, event: &RecordedEvent) -> anyhow::Result<()> {
        let id = event.global_position;
        let payload: Arc<[u8]> = serde_json::to_vec(event).context("writing a queue entry")?.into();
        {
            let mut state = self.state();
            if state.knows(id) {
                return Ok(());
            }
            state.waiting.insert((Instant::now(), id), payload);
        }
        self.0.changed.notify_waiters();
        Ok(())
    }

    /// Fills the queue from `database`'s log until `shutdown`: first the newest `JobQueued` of
    /// every job still queued or running, then every `JobQueued` committed after the jobs read
    /// model's checkpoint, as it commits (woken by `local`).
    pub async fn feed(self, database: Database, local: LocalRelay, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            let fed = async {
                let mut tail = TailFeed::new(database.clone(), &local, TailSettings::default());
                // What the read model knows of is in its rows; what came after, the tail reads.
                tail.seek(checkpoint(&database, job_list::NAME).await?.unwrap_or_default());
                for job_id in job_list::active_job_ids(&database).await? {
                    let newest = newest_event_of(&database, Job::TYPE, &job_id.to_string(), "JobQueued").await?;
                    if let Some(queued) = newest {
                        self.offer(&queued)?;
                    }
                }
                loop {
                    for event in tail.next_events(Duration::from_secs(60)).await? {
                        if event.aggregate_type == Job::TYPE && event.event_type == "JobQueued" {
                            self.offer(&event)?;
                        }
                    }
                }
                #[allow(unreachable_code)]
                anyhow::Ok(())
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                failed = fed => {
                    let error = failed.err().map(|error| format!("{error:#}")).unwrap_or_default();
                    tracing::error!(error, "feeding the job queue failed; starting over");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

#[async_trait]
impl JobQueue for LocalJobQueue {
    async fn ready(&self, _: &CancellationToken) -> anyhow::Result<Option<Duration>> {
        Ok(Some(self.0.ack_wait))
    }

    async fn take(&self, wait: Duration) -> anyhow::Result<Option<Box<dyn QueueEntry>>> {
        let give_up = Instant::now() + wait;
        loop {
            let changed = self.0.changed.notified();
            let next_due = {
                let now = Instant::now();
                let mut state = self.state();
                state.expire(now);
                let due = state.waiting.first_key_value().map(|(key, _)| *key);
                match due {
                    Some(key @ (at, id)) if at <= now => {
                        let payload = state.waiting.remove(&key).unwrap_or_else(|| Arc::from(Vec::new()));
                        state.held.insert(id, (now + self.0.ack_wait, payload.clone()));
                        return Ok(Some(Box::new(LocalEntry {
                            queue: self.clone(),
                            id,
                            payload,
                        })));
                    }
                    Some((at, _)) => Some(at),
                    None => None,
                }
            };
            // The next look: when something is due, when a held entry may come back, or when
            // the caller stops waiting, whichever is first.
            let mut until = give_up.min(Instant::now() + self.0.ack_wait);
            if let Some(at) = next_due {
                until = until.min(at);
            }
            if Instant::now() >= give_up {
                return Ok(None);
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

/// An entry a worker holds.
struct LocalEntry {
    queue: LocalJobQueue,
    id: EntryId,
    payload: Arc<[u8]>,
}

impl LocalEntry {
    fn settle(&self, back_in: Option<Duration>) {
        {
            let mut state = self.queue.state();
            let Some((_, payload)) = state.held.remove(&self.id) else {
                return; // it came back to the queue meanwhile: another delivery settles it
            };
            if let Some(delay) = back_in {
                state.waiting.insert((Instant::now() + delay, self.id), payload);
            }
        }
        self.queue.0.changed.notify_waiters();
    }
}

#[async_trait]
impl QueueEntry for LocalEntry {
    fn payload(&self) -> &[u8] {
        &self.payload
    }

    fn entry_id(&self) -> u64 {
        u64::try_from(self.id).unwrap_or_default()
    }

    async fn ack(&self) {
        self.settle(None);
    }

    async fn nak(&self, delay: Option<Duration>) {
        self.settle(Some(delay.unwrap_or_default()));
    }

    async fn in_progress(&self) {
        let mut state = self.queue.state();
        let deadline = Instant::now() + self.queue.0.ack_wait;
        if let Some((held_until, _)) = state.held.get_mut(&self.id) {
            *held_until = deadline;
        }
    }

    async fn term(&self) {
        self.settle(None);
    }
}

/// The service in the process: a worker's requests go straight to the desk.
pub struct LocalService(pub Arc<JobDesk>);

#[async_trait]
impl JobService for LocalService {
    async fn ask(&self, job_id: &str, kind: &str, request: Vec<u8>) -> Result<Vec<u8>, String> {
        self.0
            .answer(job_id, kind, &request)
            .await
            .ok_or_else(|| format!("no such request: {kind}"))
    }
}
