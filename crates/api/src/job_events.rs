//! Live job events for the progress streams (`GET /api/v1/jobs/{id}/events`): one ordered
//! JetStream consumer on the job subjects per process, fanned out in memory to the streams that
//! follow each job. An open stream that has nothing to say costs no query: 1,000 of them cost
//! what one does.
//!
//! The ordered consumer delivers each published job event once and in order, and starts over by
//! itself after a gap. What it cannot give, a follower reads from the event store: the state
//! when it connects, a gap in a job's sequence, and everything after the feed restarted (its
//! followers are told to [`JobFeed::Resync`]) or after the follower fell behind.

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::push};
use futures::StreamExt as _;
use keyframe_domain::log::RecordedEvent;
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

/// The process's job-event feed. Starts its consumer when the first stream follows a job.
pub struct JobEvents {
    nats: async_nats::Client,
    stream: String,
    subject: String,
    started: AtomicBool,
    followers: Arc<Followers>,
}

type Followers = Mutex<HashMap<String, broadcast::Sender<JobFeed>>>;

impl JobEvents {
    /// A feed of `subject` (the job events, `<prefix>.events.Job.>`) on `stream`.
    pub fn new(nats: async_nats::Client, stream: String, subject: String) -> Self {
        Self {
            nats,
            stream,
            subject,
            started: AtomicBool::new(false),
            followers: Arc::default(),
        }
    }

    /// Hears `job_id`'s events from now on.
    pub fn follow(&self, job_id: &str) -> Following {
        if !self.started.swap(true, Ordering::AcqRel) {
            let feed = Feed {
                jetstream: jetstream::new(self.nats.clone()),
                stream: self.stream.clone(),
                subject: self.subject.clone(),
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

/// The consumer's side. It ends once the API that started it is gone.
struct Feed {
    jetstream: jetstream::Context,
    stream: String,
    subject: String,
    followers: Weak<Followers>,
}

impl Feed {
    /// Reads the job events for as long as the process runs, starting over after an error; each
    /// start tells every follower to read the store, since events may have passed meanwhile.
    async fn run(self) {
        while let Some(followers) = self.followers.upgrade() {
            tell_everyone(&followers, JobFeed::Resync);
            drop(followers);
            match self.read().await {
                Ok(()) => return,
                Err(error) => tracing::warn!(
                    error = %error,
                    "the job-event feed stopped; progress streams read the store until it is back"
                ),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Hands the job events to their followers; `Ok` once the API is gone.
    async fn read(&self) -> Result<(), async_nats::Error> {
        let stream = self.jetstream.get_stream(&self.stream).await?;
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.jetstream.client().new_inbox(),
                filter_subject: self.subject.clone(),
                deliver_policy: DeliverPolicy::New,
                description: Some("Keyframe API: live job progress".to_owned()),
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
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
