//! The JetStream feed: one durable pull consumer on `<prefix>.events.>` for all the read models
//! of a deployment, each event delivered once and each delivery acked once.
//!
//! The consumer acks cumulatively (`AckPolicy::All`): one ack for the newest message of a
//! delivery acknowledges every message before it. With an ack per message, JetStream received,
//! parsed and recorded one ack for every event, and the runtime sent one; that was a quarter of
//! the messages NATS handled per event (publish, PubAck, delivery, ack). A cumulative ack is
//! sound here because the runtime has applied everything before the newest message it acks: a
//! first delivery comes in stream order, and whatever an earlier run took without acking (and
//! JetStream would redeliver) was caught up from the event store when this run started.

use super::{Delivery, Feed};
use crate::streams::Naming;
use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use async_trait::async_trait;
use futures::stream::ReadyChunks;
use futures::{FutureExt as _, StreamExt as _};
use keyframe_domain::log::RecordedEvent;
use std::time::Duration;

/// Tuning for the JetStream feed.
#[derive(Debug, Clone, Copy)]
pub struct FeedSettings {
    /// Events in one delivery: at most this many, or twice it when a small delivery lingered
    /// and took in the next.
    pub batch_size: usize,
    /// How long JetStream waits for an ack before redelivering: after a crash, the messages that
    /// were in flight come back this much later. Batches take milliseconds, so it is short.
    pub ack_wait: Duration,
    /// After a delivery smaller than a tenth of `batch_size`, how long to let more arrive before
    /// handing it out (fewer and larger transactions). None by default, as for the relay (see
    /// `RelaySettings::linger`): what is ready is still taken in, without waiting.
    pub linger: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            batch_size: 1_000,
            ack_wait: Duration::from_secs(10),
            linger: Duration::ZERO,
        }
    }
}

/// How long a feed that is behind waits for the next messages of its backlog before it hands
/// out what it has.
const BACKLOG_WAIT: Duration = Duration::from_millis(50);

/// Whether the newest message of `chunk` says more messages wait for this consumer.
fn more_waiting(chunk: &[Result<jetstream::Message, pull::MessagesError>]) -> bool {
    chunk
        .last()
        .and_then(|message| message.as_ref().ok())
        .and_then(|message| message.info().ok())
        .is_some_and(|info| info.pending > 0)
}

/// A durable JetStream consumer as a [`Feed`].
pub struct JetStreamFeed {
    jetstream: jetstream::Context,
    naming: Naming,
    consumer_name: String,
    settings: FeedSettings,
    open: Option<Open>,
}

/// The consumer and its message stream while the feed is open.
struct Open {
    _consumer: jetstream::consumer::PullConsumer,
    chunks: ReadyChunks<pull::Stream>,
}

/// What the feed needs to acknowledge a delivery.
#[derive(Debug, Default)]
pub struct JetStreamReceipt {
    messages: Vec<jetstream::Message>,
}

impl JetStreamFeed {
    /// The feed of the deployment's read models: the durable consumer `projections`.
    pub fn for_projections(jetstream: jetstream::Context, naming: Naming, settings: FeedSettings) -> Self {
        let consumer_name = naming.projections_consumer();
        Self::new(jetstream, naming, consumer_name, settings)
    }

    /// A feed reading through the durable consumer `consumer_name`.
    pub fn new(jetstream: jetstream::Context, naming: Naming, consumer_name: String, settings: FeedSettings) -> Self {
        Self {
            jetstream,
            naming,
            consumer_name,
            settings,
            open: None,
        }
    }

    fn opened(&mut self) -> anyhow::Result<&mut Open> {
        self.open.as_mut().context("the feed is not open")
    }
}

#[async_trait]
impl Feed for JetStreamFeed {
    type Receipt = JetStreamReceipt;

    async fn open(&mut self) -> anyhow::Result<()> {
        self.open = None;
        let stream_name = self.naming.events_stream();
        let stream = self
            .jetstream
            .get_stream(&stream_name)
            .await
            .context("finding the events stream")?;
        let config = pull::Config {
            durable_name: Some(self.consumer_name.clone()),
            description: Some("Keyframe's read models".to_owned()),
            // Every event, not only the types some read model reads: the checkpoints then mark
            // a true place in the log, which read-your-writes compares against.
            filter_subject: self.naming.events_filter(),
            ack_policy: AckPolicy::All,
            ack_wait: self.settings.ack_wait,
            max_ack_pending: 10_000,
            ..Default::default()
        };
        let consumer = match stream.create_consumer(config.clone()).await {
            Ok(consumer) => consumer,
            Err(_) => match self
                .jetstream
                .update_consumer_on_stream(config.clone(), &stream_name)
                .await
            {
                Ok(_) => stream
                    .get_consumer(&self.consumer_name)
                    .await
                    .map_err(|e| anyhow::anyhow!("loading the consumer: {e}"))?,
                Err(refused) => {
                    // JetStream never changes a consumer's ack policy: one made by an earlier
                    // Keyframe (an ack per message) is replaced. The new one starts with the
                    // messages published from now on; the runtime catches every read model up
                    // from the event store before it applies the first of them, which covers
                    // everything published before.
                    tracing::info!(
                        consumer = %self.consumer_name,
                        reason = %refused,
                        "replacing the read models' consumer with one that acks cumulatively"
                    );
                    stream
                        .delete_consumer(&self.consumer_name)
                        .await
                        .map_err(|e| anyhow::anyhow!("deleting the old consumer: {e}"))?;
                    stream
                        .create_consumer(pull::Config {
                            deliver_policy: DeliverPolicy::New,
                            ..config
                        })
                        .await
                        .map_err(|e| anyhow::anyhow!("creating the consumer: {e}"))?
                }
            },
        };
        let messages = consumer
            .stream()
            .max_messages_per_batch(self.settings.batch_size)
            .messages()
            .await
            .context("pulling")?;
        self.open = Some(Open {
            _consumer: consumer,
            chunks: messages.ready_chunks(self.settings.batch_size),
        });
        Ok(())
    }

    async fn next(&mut self, wait: Duration) -> anyhow::Result<Option<Delivery<JetStreamReceipt>>> {
        let settings = self.settings;
        let open = self.opened()?;
        // Each message taken from the subscription spends Tokio's cooperative budget (128 a
        // poll), so `ready_chunks` stopped at 128 however many had arrived: a runtime that fell
        // behind caught up 128 events per transaction. Unconstrained, a chunk takes all that is
        // ready, up to `batch_size`.
        // Waiting for the first messages is cancel-safe: `ready_chunks` holds nothing between
        // polls. After that, nothing waits but the linger.
        let mut chunk = tokio::select! {
            chunk = tokio::task::unconstrained(open.chunks.next()) => chunk.context("the consumer's message stream ended")?,
            () = tokio::time::sleep(wait) => return Ok(None),
        };
        if chunk.len() < settings.batch_size / 10 {
            // Only a linger set on purpose sleeps: Tokio rounds every timer up to the next
            // millisecond, so even a sleep of zero put up to a millisecond into each delivery.
            if !settings.linger.is_zero() {
                tokio::time::sleep(settings.linger).await;
                while chunk.len() < settings.batch_size {
                    match tokio::task::unconstrained(open.chunks.next()).now_or_never() {
                        Some(Some(more)) => chunk.extend(more),
                        _ => break,
                    }
                }
            }
            // A feed that is behind takes its backlog in full deliveries: while the newest
            // message says more are waiting for this consumer, wait for them (they are on their
            // way). At the live edge nothing waits. Without this, a backlog went out a few
            // dozen messages at a time, as they were parsed: up to 211 deliveries for 3,000
            // events instead of 3.
            while chunk.len() < settings.batch_size && more_waiting(&chunk) {
                let more = tokio::time::timeout(BACKLOG_WAIT, tokio::task::unconstrained(open.chunks.next()));
                match more.await {
                    Ok(Some(more)) => chunk.extend(more),
                    _ => break,
                }
            }
        }
        let mut events = Vec::with_capacity(chunk.len());
        let mut messages = Vec::with_capacity(chunk.len());
        for message in chunk {
            let message = message.context("receiving")?;
            match serde_json::from_slice::<RecordedEvent>(&message.payload) {
                Ok(event) => {
                    events.push(event);
                    messages.push(message);
                }
                Err(error) => {
                    tracing::error!(subject = %message.subject, %error, "not a Keyframe event; discarding it");
                    message
                        .ack_with(jetstream::AckKind::Term)
                        .await
                        .map_err(anyhow::Error::msg)?;
                }
            }
        }
        Ok(Some(Delivery {
            events,
            receipt: JetStreamReceipt { messages },
        }))
    }

    async fn applied(&mut self, receipt: JetStreamReceipt) -> anyhow::Result<()> {
        // One ack for the message furthest into the stream acknowledges the whole delivery. A
        // redelivered message may come after newer ones, so the last one handed out is not
        // always the furthest.
        let furthest = receipt
            .messages
            .iter()
            .max_by_key(|message| message.info().map_or(0, |info| info.stream_sequence));
        if let Some(message) = furthest {
            message.ack().await.map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }
}
