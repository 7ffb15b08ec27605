//! NATS naming and the JetStream stream of the log.
//!
//! Every subject and stream name starts with the deployment's prefix (`KEYFRAME_NATS_PREFIX`),
//! so several deployments or test runs share one NATS server without meeting.

use async_nats::jetstream::{self, stream};
use keyframe_domain::log::RecordedEvent;
use std::time::Duration;

/// How long JetStream remembers a `Nats-Msg-Id`: a relay that restarts within it republishes
/// without duplicates. Longer than JetStream's 2-minute default to cover slow restarts.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The durable consumer that feeds every read model (on the events stream).
pub const PROJECTIONS_CONSUMER: &str = "projections";

/// Names derived from the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    prefix: String,
}

impl Naming {
    /// Names under `prefix` (letters, digits, `-` and `_`; checked by the configuration).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<PREFIX>_EVENTS`: the stream holding the log.
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.prefix.to_uppercase().replace('-', "_"))
    }

    /// `<prefix>.events.>`: every event subject.
    pub fn events_filter(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// `<prefix>.events.<aggregate_type>.>`: every event of one aggregate type.
    pub fn aggregate_events_filter(&self, aggregate_type: &str) -> String {
        format!("{}.events.{aggregate_type}.>", self.prefix)
    }

    /// `<prefix>.events.<aggregate_type>.<aggregate_id>.<event_type>`.
    pub fn event_subject(&self, event: &RecordedEvent) -> String {
        format!(
            "{}.events.{}.{}.{}",
            self.prefix, event.aggregate_type, event.aggregate_id, event.event_type
        )
    }

    /// The durable consumer that feeds every read model.
    pub fn projections_consumer(&self) -> String {
        PROJECTIONS_CONSUMER.to_owned()
    }

    /// The durable consumer one projection had to itself before they shared one; see
    /// [`delete_retired_consumers`].
    pub fn retired_projector_consumer(&self, projection: &str) -> String {
        format!("projector_{projection}")
    }
}

/// Deletes the consumers each projection had to itself before one consumer fed them all, so
/// that they stop holding the server's attention. Those already gone are skipped.
pub async fn delete_retired_consumers(js: &jetstream::Context, naming: &Naming, projections: &[&str]) {
    let Ok(stream) = js.get_stream(naming.events_stream()).await else {
        return;
    };
    for projection in projections {
        let name = naming.retired_projector_consumer(projection);
        if stream.delete_consumer(&name).await.is_ok() {
            tracing::info!(consumer = %name, "deleted a retired per-projection consumer");
        }
    }
}

/// Creates the events stream, or brings an existing one to this configuration.
///
/// A refusal is tried again a few times over about a second and a half before it is reported:
/// JetStream refuses stream operations while it is still starting, and nats-server 2.9 fails a
/// stream's creation when the account's last other stream is being deleted at that moment (it
/// removes the account's store directory, seen when many test runs come and go).
pub async fn ensure_events_stream(js: &jetstream::Context, naming: &Naming) -> Result<(), async_nats::Error> {
    const ATTEMPTS: u32 = 5;
    let config = stream::Config {
        name: naming.events_stream(),
        subjects: vec![naming.events_filter()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match js.create_or_update_stream(config.clone()).await {
            Ok(_) => return Ok(()),
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(stream = %config.name, %error, attempt, "creating the events stream failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}
