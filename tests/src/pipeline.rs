//! The relay and a projector, started apart from the application, for the event-log tests.

use crate::{TestDatabase, TestNats};

/// A background part (relay or projector) started by a test.
pub struct Running {
    stop: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Asks it to stop and waits.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }

    /// Kills it where it stands, as a crash would (between a publish and its checkpoint, say).
    pub async fn kill(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// Starts a relay from `db` to the test's stream (creating the stream).
pub async fn start_relay(
    db: &TestDatabase,
    nats: &TestNats,
    settings: keyframe_eventlog::relay::RelaySettings,
) -> Running {
    start_relay_woken_by(db, nats, settings, keyframe_eventlog::wake::LocalRelay::default()).await
}

/// [`start_relay`], woken directly by appends through `local` while it leads.
pub async fn start_relay_woken_by(
    db: &TestDatabase,
    nats: &TestNats,
    settings: keyframe_eventlog::relay::RelaySettings,
    local: keyframe_eventlog::wake::LocalRelay,
) -> Running {
    keyframe_eventlog::streams::ensure_events_stream(&nats.jetstream, &nats.naming)
        .await
        .expect("stream");
    let relay = keyframe_eventlog::relay::Relay::new(
        db.pool.clone(),
        db.url.clone(),
        nats.jetstream.clone(),
        nats.naming.clone(),
        settings,
    )
    .woken_by(local);
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    Running {
        stop,
        handle: tokio::spawn(async move { relay.run(token).await }),
    }
}

/// Starts the projector runtime with only the `project_list` read model, fed by the test's
/// stream.
pub async fn start_project_list_projector(
    db: &TestDatabase,
    nats: &TestNats,
    settings: keyframe_eventlog::feed::jetstream::FeedSettings,
    runtime: keyframe_eventlog::projector::ProjectorSettings,
) -> Running {
    let projections: Vec<std::sync::Arc<dyn keyframe_projections::Projection>> =
        vec![std::sync::Arc::new(keyframe_projections::project_list::ProjectList)];
    start_projector(db, nats, projections, settings, runtime).await
}

/// Starts the projector runtime with `projections`, fed by the test's stream.
pub async fn start_projector(
    db: &TestDatabase,
    nats: &TestNats,
    projections: Vec<std::sync::Arc<dyn keyframe_projections::Projection>>,
    settings: keyframe_eventlog::feed::jetstream::FeedSettings,
    runtime: keyframe_eventlog::projector::ProjectorSettings,
) -> Running {
    keyframe_eventlog::streams::ensure_events_stream(&nats.jetstream, &nats.naming)
        .await
        .expect("stream");
    let feed = keyframe_eventlog::feed::jetstream::JetStreamFeed::for_projections(
        nats.jetstream.clone(),
        nats.naming.clone(),
        settings,
    );
    let projector = keyframe_eventlog::projector::Projector::new(db.database.clone(), feed, projections, runtime);
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    Running {
        stop,
        handle: tokio::spawn(async move { projector.run(token).await }),
    }
}
