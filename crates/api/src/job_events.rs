//! Live job events for the progress streams (`GET /api/v1/jobs/{id}/events`): one feed of the
//! job events per process, fanned out in memory to the streams that follow each job. An open
//! stream that has nothing to say costs no query: 1,000 of them cost what one does.
//!
//! With NATS the feed is an ordered JetStream consumer on the job subjects, which delivers each
//! published job event once and in order and starts over by itself after a gap; without it,
//! the process tails the log itself ([`JobEventSource::Log`]). What the feed cannot give, a
//! follower reads from the event store: the state when it connects, a gap in a job's sequence,
//! and everything after the feed (re)started (its followers are told to [`JobFeed::Resync`]
//! once it listens) or after the follower fell behind.

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::push};
use futures::StreamExt as _;
use keyframe_database::Database;
use keyframe_domain::job::Job;
use keyframe_domain::log::RecordedEvent;
use keyframe_eventlog::feed::tail::{TailFeed, TailSettings};
use keyframe_eventlog::wake::LocalRelay;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// Events a follower may fall behind by before it is told to read the store instead.
const FOLLOWER_BACKLOG: usize = 64;

/// What a follower of a job hears.
#[derive(Debug, Clone)]
pub enum JobFeed {
    /// One of the job's events, as published.
    Event(Arc<RecordedEvent>),
    /// Events may have been missed: read the job from the store.
    Resync,
}

/// Where a process hears job events from.
#[derive(Clone)]
pub enum JobEventSource {
    /// The job subjects of the JetStream events stream.
    JetStream {
        /// The NATS connection.
        nats: async_nats::Client,
        /// The events stream.
        stream: String,
        /// The job events' subjects, `<prefix>.events.Job.>`.
        subject: String,
    },
    /// The log, tailed in this process (a deployment without NATS), woken by its commits.
    Log {
        /// The database.
        database: Database,
        /// The process's appends.
        local: LocalRelay,
    },
}

/// The process's job-event feed. Starts when the first stream follows a job.
pub struct JobEvents {
    source: JobEventSource,
    started: AtomicBool,
    followers: Arc<Followers>,
}

type Followers = Mutex<HashMap<String, broadcast::Sender<JobFeed>>>;

impl JobEvents {
    /// A feed of the job events from `source`.
    pub fn new(source: JobEventSource) -> Self {
        Self {
            source,
            started: AtomicBool::new(false),
            followers: Arc::default(),
        }
    }

    /// Hears `job_id`'s events from now on.
    pub fn follow(&self, job_id: &str) -> Following {
        if !self.started.swap(true, Ordering::AcqRel) {
            let feed = Feed {
                source: self.source.clone(),
                followers: Arc::downgrade(&self.followers),
            };
            tokio::spawn(feed.run());
        }
        let receiver = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(job_id.to_owned())
            .or_insert_with(|| broadcast::channel(FOLLOWER_BACKLOG).0)
            .subscribe();
        Following {
            job_id: job_id.to_owned(),
            receiver,
            followers: Arc::clone(&self.followers),
        }
    }
}

/// One stream's hold on a job's events; the job's channel goes when its last follower does.
pub struct Following {
    job_id: String,
    receiver: broadcast::Receiver<JobFeed>,
    followers: Arc<Followers>,
}

impl Following {
    /// The next thing heard; `None` once the feed has stopped for good.
    pub async fn next(&mut self) -> Option<JobFeed> {
        match self.receiver.recv().await {
            Ok(heard) => Some(heard),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(JobFeed::Resync),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut followers = self.followers.lock().unwrap_or_else(PoisonError::into_inner);
        // This follower's receiver is still alive here: one left means it was the last.
        if followers
            .get(&self.job_id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            followers.remove(&self.job_id);
        }
    }
}

/// The feed's side. It ends once the API that started it is gone.
struct Feed {
    source: JobEventSource,
    followers: Weak<Followers>,
}

impl Feed {
    /// Reads the job events for as long as the process runs, starting over after an error; each
    /// start, once it listens, tells every follower to read the store, since events may have
    /// passed meanwhile.
    async fn run(self) {
        while self.followers.strong_count() > 0 {
            let read = match &self.source {
                JobEventSource::JetStream { nats, stream, subject } => {
                    self.read_jetstream(&jetstream::new(nats.clone()), stream, subject)
                        .await
                }
                JobEventSource::Log { database, local } => self.read_log(database, local).await,
            };
            match read {
                Ok(()) => return,
                Err(error) => tracing::warn!(
                    error = %error,
                    "the job-event feed stopped; progress streams read the store until it is back"
                ),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Tells every follower to read the store, if the API is still there.
    fn resync_everyone(&self) {
        if let Some(followers) = self.followers.upgrade() {
            tell_everyone(&followers, JobFeed::Resync);
        }
    }

    /// Hands the job events of the log to their followers; `Ok` once the API is gone.
    async fn read_log(&self, database: &Database, local: &LocalRelay) -> Result<(), async_nats::Error> {
        let mut tail = TailFeed::new(database.clone(), local, TailSettings::default());
        tail.skip_to_end().await?;
        self.resync_everyone();
        loop {
            let events = tail.next_events(Duration::from_secs(60)).await?;
            let Some(followers) = self.followers.upgrade() else {
                return Ok(()); // the API is gone
            };
            for event in events
                .into_iter()
                .filter(|event| event.aggregate_type == <Job as cqrs_es::Aggregate>::TYPE)
            {
                let sender = followers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&event.aggregate_id)
                    .cloned();
                if let Some(sender) = sender {
                    let _ = sender.send(JobFeed::Event(Arc::new(event)));
                }
            }
        }
    }

    /// Hands the job events of `subject` to their followers; `Ok` once the API is gone.
    async fn read_jetstream(
        &self,
        jetstream: &jetstream::Context,
        stream: &str,
        subject: &str,
    ) -> Result<(), async_nats::Error> {
        let stream = jetstream.get_stream(stream).await?;
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: jetstream.client().new_inbox(),
                filter_subject: subject.to_owned(),
                deliver_policy: DeliverPolicy::New,
                description: Some("Keyframe API: live job progress".to_owned()),
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        // Only now does it hear everything published from here on.
        self.resync_everyone();
        while let Some(message) = messages.next().await {
            let message = message?;
            let Some(followers) = self.followers.upgrade() else {
                return Ok(()); // the API is gone
            };
            // Most job events (a worker's progress reports) are of jobs nobody follows: the
            // subject (`<prefix>.events.Job.<id>.<type>`) names the job, so only the followed
            // ones are decoded.
            let Some(job_id) = message.subject.rsplit('.').nth(1) else {
                continue;
            };
            let sender = followers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(job_id)
                .cloned();
            let Some(sender) = sender else {
                continue;
            };
            let Ok(event) = serde_json::from_slice::<RecordedEvent>(&message.payload) else {
                continue;
            };
            // No receiver left means the stream is going away; nothing to do.
            let _ = sender.send(JobFeed::Event(Arc::new(event)));
        }
        Err("the subscription to the job events ended".into())
    }
}

/// Tells every follower the same thing.
fn tell_everyone(followers: &Followers, heard: JobFeed) {
    for sender in followers.lock().unwrap_or_else(PoisonError::into_inner).values() {
        let _ = sender.send(heard.clone());
    }
}
