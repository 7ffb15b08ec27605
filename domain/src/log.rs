//! The shape of one event in the global log, as the relay publishes it to NATS and as exports
//! and projections read it. This is a published contract: fields are only ever added.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::HashMap;

/// One committed event with its place in the global log.
///
/// The payload stays raw JSON text: the relay passes it through to NATS and projections
/// deserialise it straight into their event types, so it is never built as a tree in between.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Position in the global log, unique and increasing in insert order.
    pub global_position: i64,
    /// The writing transaction's id; `(tx_id, global_position)` is the commit-safe order.
    pub tx_id: u64,
    /// `User`, `Session`, `Project`, ...
    pub aggregate_type: String,
    /// The aggregate's id (a UUID in text form).
    pub aggregate_id: String,
    /// The event's sequence within its aggregate, from 1.
    pub sequence: i64,
    /// The event's name, past tense (`ProjectCreated`).
    pub event_type: String,
    /// The payload's schema version.
    pub event_version: String,
    /// The event itself, as the aggregate serialised it.
    pub payload: Box<RawValue>,
    /// Who and what caused it: actor, request, correlation and causation ids, client ip, agent.
    pub metadata: HashMap<String, String>,
    /// When the event was appended.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The JetStream de-duplication id, `<aggregate_type>:<aggregate_id>:<sequence>`.
    pub fn message_id(&self) -> String {
        format!("{}:{}:{}", self.aggregate_type, self.aggregate_id, self.sequence)
    }
}

impl PartialEq for RecordedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.global_position == other.global_position
            && self.tx_id == other.tx_id
            && self.aggregate_type == other.aggregate_type
            && self.aggregate_id == other.aggregate_id
            && self.sequence == other.sequence
            && self.event_type == other.event_type
            && self.event_version == other.event_version
            && self.payload.get() == other.payload.get()
            && self.metadata == other.metadata
            && self.recorded_at == other.recorded_at
    }
}
