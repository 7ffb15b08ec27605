//! Video jobs in a process without NATS: the queue of `JobQueued` entries in memory, fed by
//! tailing the log, and the service answered in the process ([`JobDesk`]).
//!
//! The queue behaves as the workers' JetStream consumer does: an entry taken is held by its
//! worker until acknowledged, given back after the ack wait without a beat, and delivered
//! again after a delay when given back with one. Each delivery has a number of its own, which
//! is also the worker's claim: a delivery that was given back (its worker stalled past the ack
//! wait) can no longer settle the entry, and its start, should it still come, is another
//! claim, so the job counts the stalled attempt as lost instead of running it twice. Nothing of it needs to survive the process:
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

/// How long a worker waits for the service's answer, as over NATS.
const ASK_PATIENCE: Duration = Duration::from_secs(10);

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
    /// Entries a worker holds: when they come back without a sign of life, and the delivery.
    held: HashMap<EntryId, Held>,
    /// The last delivery's number.
    deliveries: u64,
}

/// An entry a worker holds.
struct Held {
    until: Instant,
    payload: Arc<[u8]>,
    delivery: u64,
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
            .filter(|(_, held)| held.until <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(held) = self.held.remove(&id) {
                self.waiting.insert((now, id), held.payload);
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
                        state.deliveries += 1;
                        let delivery = state.deliveries;
                        state.held.insert(
                            id,
                            Held {
                                until: now + self.0.ack_wait,
                                payload: payload.clone(),
                                delivery,
                            },
                        );
                        return Ok(Some(Box::new(LocalEntry {
                            queue: self.clone(),
                            id,
                            delivery,
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

/// One delivery of an entry, as its worker has it.
struct LocalEntry {
    queue: LocalJobQueue,
    id: EntryId,
    delivery: u64,
    payload: Arc<[u8]>,
}

impl LocalEntry {
    fn settle(&self, back_in: Option<Duration>) {
        {
            let mut state = self.queue.state();
            // A delivery given back meanwhile settles nothing: the entry is another's now.
            if state
                .held
                .get(&self.id)
                .is_none_or(|held| held.delivery != self.delivery)
            {
                return;
            }
            let Some(held) = state.held.remove(&self.id) else {
                return;
            };
            if let Some(delay) = back_in {
                state.waiting.insert((Instant::now() + delay, self.id), held.payload);
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

    /// The delivery's number: the worker's claim is its own, delivery by delivery.
    fn entry_id(&self) -> u64 {
        self.delivery
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
        if let Some(held) = state
            .held
            .get_mut(&self.id)
            .filter(|held| held.delivery == self.delivery)
        {
            held.until = deadline;
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
    /// As over NATS, a request not answered within 10 s is given up: the worker goes on
    /// beating, and reports again.
    async fn ask(&self, job_id: &str, kind: &str, request: Vec<u8>) -> Result<Vec<u8>, String> {
        tokio::time::timeout(ASK_PATIENCE, self.0.answer(job_id, kind, &request))
            .await
            .map_err(|_| "the service did not answer in time".to_owned())?
            .ok_or_else(|| format!("no such request: {kind}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn queued(global_position: i64) -> RecordedEvent {
        RecordedEvent {
            global_position,
            tx_id: 1,
            aggregate_type: "Job".to_owned(),
            aggregate_id: uuid::Uuid::now_v7().to_string(),
            sequence: 2,
            event_type: "JobQueued".to_owned(),
            event_version: "1".to_owned(),
            payload: RawValue::from_string("{}".to_owned()).expect("json"),
            metadata: HashMap::new(),
            recorded_at: keyframe_domain::clock::now(),
        }
    }

    const SHORT: Duration = Duration::from_millis(20);

    #[tokio::test]
    async fn an_entry_whose_worker_stalls_goes_to_another_and_the_stalled_delivery_settles_nothing() {
        let queue = LocalJobQueue::new(Duration::from_millis(50));
        queue.offer(&queued(7)).expect("offered");
        queue.offer(&queued(7)).expect("a repeat is ignored");
        let stalled = queue.take(SHORT).await.expect("take").expect("the entry");
        assert!(
            queue.take(SHORT).await.expect("take").is_none(),
            "held, and offered once"
        );

        // Past the ack wait without a beat: delivered again (as soon as it is due), as another
        // claim.
        let again = queue
            .take(Duration::from_secs(5))
            .await
            .expect("take")
            .expect("delivered again");
        assert_ne!(again.entry_id(), stalled.entry_id());

        // The stalled delivery's word no longer counts.
        stalled.ack().await;
        stalled.nak(None).await;
        assert!(
            queue.take(SHORT).await.expect("take").is_none(),
            "still held by the second"
        );
        again.in_progress().await;
        again.ack().await;
        // Longer than the ack wait: nothing comes back.
        assert!(
            queue.take(Duration::from_millis(150)).await.expect("take").is_none(),
            "settled for good"
        );
    }

    #[tokio::test]
    async fn an_entry_given_back_with_a_delay_comes_again_when_it_is_due_and_beats_keep_it() {
        let queue = LocalJobQueue::new(Duration::from_millis(60));
        queue.offer(&queued(3)).expect("offered");
        let taken = queue.take(SHORT).await.expect("take").expect("the entry");
        taken.nak(Some(Duration::from_millis(100))).await;
        assert!(queue.take(SHORT).await.expect("take").is_none(), "not due yet");
        let due = queue
            .take(Duration::from_millis(500))
            .await
            .expect("take")
            .expect("due after the delay");
        // Beating keeps it past the ack wait.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            due.in_progress().await;
        }
        assert!(queue.take(SHORT).await.expect("take").is_none(), "still held");
        due.ack().await;
    }
}
