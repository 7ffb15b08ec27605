//! What a worker needs from its surroundings, whatever carries it: a queue of `JobQueued`
//! entries it takes one at a time ([`JobQueue`]) and a service that answers its requests
//! ([`JobService`]). Over NATS the queue is the workers' durable JetStream consumer and the
//! service is reached by request and reply ([`NatsQueue`], [`NatsService`]); in a process
//! without NATS both are in memory (the `local` module).

use crate::protocol::{WORKER_CONSUMER, WorkerSubjects};
use async_nats::jetstream::{self, AckKind, consumer::PullConsumer};
use async_trait::async_trait;
use futures::StreamExt as _;
use keyframe_eventlog::streams::Naming;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One entry a worker took from the queue: a `JobQueued` event, held by this worker until it
/// acknowledges it or the queue's ack wait passes without a sign of life.
#[async_trait]
pub trait QueueEntry: Send + Sync {
    /// The `JobQueued` event, as the log records it (JSON of a `RecordedEvent`).
    fn payload(&self) -> &[u8];
    /// The same for every delivery of this entry: the worker's claim on the job names it, so a
    /// worker that takes its own entry again is recognised.
    fn entry_id(&self) -> u64;
    /// Done with it: it is not delivered again.
    async fn ack(&self);
    /// Give it back, to be delivered again after `delay` (at once without one).
    async fn nak(&self, delay: Option<Duration>);
    /// Still working on it: the ack wait starts over.
    async fn in_progress(&self);
    /// Unusable: never deliver it again.
    async fn term(&self);
}

/// The queue of job entries workers take from.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Waits until the queue can be taken from; answers its ack wait, or `None` at shutdown.
    async fn ready(&self, shutdown: &CancellationToken) -> anyhow::Result<Option<Duration>>;
    /// The next entry, waiting up to `wait` for one.
    async fn take(&self, wait: Duration) -> anyhow::Result<Option<Box<dyn QueueEntry>>>;
}

/// Where a worker's requests go: `kind` is one of [`crate::protocol::kind`], `request` and the
/// answer are JSON.
#[async_trait]
pub trait JobService: Send + Sync {
    /// Asks the service about `job_id`; an error says why no answer came.
    async fn ask(&self, job_id: &str, kind: &str, request: Vec<u8>) -> Result<Vec<u8>, String>;
}

/// The workers' durable JetStream consumer.
pub struct NatsQueue {
    client: async_nats::Client,
    naming: Naming,
    consumer: tokio::sync::OnceCell<PullConsumer>,
}

impl NatsQueue {
    /// The consumer on `naming`'s events stream, reached through `client`.
    pub fn new(client: async_nats::Client, naming: Naming) -> Self {
        Self {
            client,
            naming,
            consumer: tokio::sync::OnceCell::new(),
        }
    }
}

#[async_trait]
impl JobQueue for NatsQueue {
    async fn ready(&self, shutdown: &CancellationToken) -> anyhow::Result<Option<Duration>> {
        let jetstream = jetstream::new(self.client.clone());
        let stream = self.naming.events_stream();
        loop {
            match jetstream.get_consumer_from_stream(WORKER_CONSUMER, &stream).await {
                Ok(consumer) => {
                    let ack_wait = consumer.cached_info().config.ack_wait;
                    let _ = self.consumer.set(consumer);
                    return Ok(Some(ack_wait));
                }
                Err(error) => tracing::warn!(%error, "the workers' consumer is not there yet (the service makes it)"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn take(&self, wait: Duration) -> anyhow::Result<Option<Box<dyn QueueEntry>>> {
        let consumer = self
            .consumer
            .get()
            .ok_or_else(|| anyhow::anyhow!("the queue is taken from before it is ready"))?;
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|error| anyhow::anyhow!("pulling a job: {error}"))?;
        match batch.next().await {
            Some(Ok(message)) => Ok(Some(Box::new(NatsEntry(message)))),
            Some(Err(error)) => Err(anyhow::anyhow!("receiving a job: {error}")),
            None => Ok(None),
        }
    }
}

/// A message of the workers' consumer.
struct NatsEntry(jetstream::Message);

#[async_trait]
impl QueueEntry for NatsEntry {
    fn payload(&self) -> &[u8] {
        &self.0.payload
    }

    fn entry_id(&self) -> u64 {
        self.0.info().map(|info| info.stream_sequence).unwrap_or_default()
    }

    async fn ack(&self) {
        let _ = self.0.ack().await;
    }

    async fn nak(&self, delay: Option<Duration>) {
        let _ = self.0.ack_with(AckKind::Nak(delay)).await;
    }

    async fn in_progress(&self) {
        let _ = self.0.ack_with(AckKind::Progress).await;
    }

    async fn term(&self) {
        let _ = self.0.ack_with(AckKind::Term).await;
    }
}

/// The service, by NATS request and reply on `<prefix>.worker.jobs.<job_id>.<kind>`.
pub struct NatsService {
    client: async_nats::Client,
    subjects: WorkerSubjects,
}

impl NatsService {
    /// Requests through `client` under `naming`'s prefix.
    pub fn new(client: async_nats::Client, naming: &Naming) -> Self {
        Self {
            client,
            subjects: WorkerSubjects::new(naming.prefix()),
        }
    }
}

#[async_trait]
impl JobService for NatsService {
    async fn ask(&self, job_id: &str, kind: &str, request: Vec<u8>) -> Result<Vec<u8>, String> {
        let subject = self.subjects.request(job_id, kind);
        let reply = tokio::time::timeout(Duration::from_secs(10), self.client.request(subject, request.into()))
            .await
            .map_err(|_| "the service did not answer in time".to_owned())?
            .map_err(|e| format!("asking the service: {e}"))?;
        Ok(reply.payload.to_vec())
    }
}
