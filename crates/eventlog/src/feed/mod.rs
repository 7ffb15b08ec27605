//! Feeds: where the projector runtime reads the log from, in ordered batches with an ack.
//!
//! A feed hands out [`Delivery`]s: events in the log's commit-safe order, bar redeliveries.
//! The runtime applies a delivery to every read model in one transaction and moves their
//! checkpoints to its newest event, then tells the feed, which acknowledges it at its source.
//!
//! A redelivered event is one the runtime has applied already, so a checkpoint never passes an
//! event that is not applied: the runtime catches every read model up from the event store
//! whenever it starts (or starts over), so what an earlier run took and never acknowledged
//! (JetStream hands it out again only after its ack wait, behind newer events) was applied
//! before the first delivery of this run, and the per-aggregate sequence check skips it.
//!
//! With NATS, the feed is a JetStream durable consumer ([`jetstream::JetStreamFeed`]); without
//! it (one process), a feed that tails the log itself ([`tail::TailFeed`]). The runtime knows
//! nothing of either.

pub mod jetstream;
pub mod tail;

use async_trait::async_trait;
use keyframe_domain::log::RecordedEvent;
use std::time::Duration;

/// Events handed out by a feed, with what the feed needs to acknowledge them.
#[derive(Debug)]
pub struct Delivery<Receipt> {
    /// The events, in delivery order.
    pub events: Vec<RecordedEvent>,
    /// The feed's own record of the delivery, given back in [`Feed::applied`].
    pub receipt: Receipt,
}

/// A source of the log's events for the projector runtime.
#[async_trait]
pub trait Feed: Send + 'static {
    /// The feed's record of a delivery, for acknowledging it.
    type Receipt: Send;

    /// Connects (again, after an error): called when the runtime starts applying, and after
    /// each error it recovered from.
    async fn open(&mut self) -> anyhow::Result<()>;

    /// Waits up to `wait` for the next delivery; `None` when nothing came. Dropped before it
    /// answers, it may have taken events that then come back only later, as after a crash: the
    /// runtime drops it only to stop.
    async fn next(&mut self, wait: Duration) -> anyhow::Result<Option<Delivery<Self::Receipt>>>;

    /// The delivery's events are applied and committed: acknowledge them.
    async fn applied(&mut self, receipt: Self::Receipt) -> anyhow::Result<()>;
}
